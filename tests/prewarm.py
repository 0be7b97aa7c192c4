"""The cold objects of a full test run, compiled in the background at the lowest priority.

``make test`` runs pytest on one core most of the time (its CPU time is about 1.1 times its
wall time on a 2-core CI machine), while a fresh machine's run compiles minutes of kernel
objects where the tests that need them happen to ask: the NVRTC cubins of every target SM,
the aarch64 replay drivers (every kernel at -O3 for cortex-a78ae, ~80 s of one core), the
x86 vector-path builds. ``tests/conftest.py`` starts this module (``python -m tests.prewarm``)
at the start of a session when ``EI_PREWARM=1`` (the Makefile's test target sets it) and
stops it at the end; it runs at nice 19, so it only takes a core the tests leave idle.

Nothing here is a test and nothing depends on it: each object is compiled exactly as the test
that needs it would compile it (the same functions, the same cache keys and per-object
locks), so a test finds it cached, waits for it under its lock, or compiles it itself if this
process has not got there. A step that fails (a tool missing) is skipped silently: the tests
report such a failure themselves.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable


def _nvrtc() -> None:
    from edge_infer.cuda import compile as nvrtc
    from edge_infer.cuda import library

    for sm in library.TARGET_SMS:
        nvrtc.compile_library(sm, jobs=1)


def _aarch64() -> None:
    from tests.engine.backends.cpu.aarch64 import test_aarch64_kernels as a64
    from tests.sysdeps import missing

    if missing(a64.CROSS, a64.QEMU, "cc"):
        return
    for build in a64.BUILDS:
        a64.compile_driver(a64.HERE, build)


def _x86() -> None:
    from edge_infer.engine.backends.cpu import native
    from tests.engine.backends.cpu import isa_builds

    sources = sorted(native.KERNELS.glob("*.c"), key=lambda p: -p.stat().st_size)
    for flags, needs in isa_builds.X86_BUILDS.values():
        if needs <= isa_builds.host_flags():
            isa_builds.objects("cc", isa_builds.object_flags(flags), sources)
    # the tests' own builds beyond X86_BUILDS (12-14 s of one core each, cold)
    for names, flags in _x86_extra():
        isa_builds.objects(
            "cc", isa_builds.object_flags(flags), [native.KERNELS / n for n in names]
        )


def _x86_extra() -> list[tuple[tuple[str, ...], list[str]]]:
    """(kernel sources, CPU flags) of the x86 builds tests make beside X86_BUILDS that this
    host runs: the pointwise tile-size build and test_qdepthwise_native's (test_int8_layers.py
    shares them), in the order a full run needs them."""
    from tests.engine.backends.cpu import isa_builds
    from tests.engine.backends.cpu import test_qdepthwise_native as qdw
    from tests.engine.backends.cpu.tactics import test_pointwise_native as pw

    # tests/engine/backends/cpu/tactics/ (the pointwise build) runs before the test_*.py files
    # beside it (the depthwise builds)
    extra = [
        (("conv_pointwise.c", "args.c"), list(f))
        for name, (f, needs) in pw.X86_BUILDS.items()
        if name not in isa_builds.X86_BUILDS and needs <= isa_builds.host_flags()
    ]
    extra += [(qdw._SOURCES, list(f)) for name, f in qdw._BUILDS.items() if qdw._runs_here(name)]
    return extra


#: in the order a full run (tests/ alphabetically) first needs them
STEPS: tuple[Callable[[], None], ...] = (_nvrtc, _aarch64, _x86)


def main() -> int:
    with contextlib.suppress(OSError):
        os.nice(19)
    for step in STEPS:
        try:
            step()
        except Exception:  # the tests that need it compile it and report what fails
            continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
