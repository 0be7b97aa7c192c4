"""edge_infer/cuda/compile.py: every kernel compiled by NVRTC for sm_72, sm_87 and sm_90, the
cubins' target architecture and entry points checked, no spills, the on-disk cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_infer.cuda import compile as nvrtc
from edge_infer.cuda import library
from edge_infer.errors import KernelCompileError

TEST_KERNELS = Path(__file__).resolve().parent / "kernels"
#: CI has its 2 cores to itself; a shared development machine compiles one source at a time
JOBS = 2 if os.environ.get("CI") else 1


@pytest.fixture(scope="module", params=library.TARGET_SMS, ids=lambda sm: f"sm_{sm}")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    sm = request.param
    out = tmp_path_factory.mktemp(f"sm_{sm}")
    cubins = nvrtc.compile_library(sm, out_dir=out, jobs=JOBS)
    return sm, out, cubins


def test_every_cubin_targets_its_sm_and_exports_its_entries(built) -> None:
    sm, _, cubins = built
    for source in library.sources():
        info = nvrtc.read_cubin(cubins[source.name].read_bytes())
        assert info.sm == sm, source.name
        expected = {
            s.entry for s in library.specs().values() if s.source == source.name and s.min_sm <= sm
        }
        missing = expected - info.functions
        assert not missing, f"{source.name} for sm_{sm} lacks entry points {sorted(missing)}"


def test_manifest_reports_every_kernel_without_spills(built) -> None:
    sm, out, _ = built
    manifest = json.loads((out / f"manifest-sm_{sm}.json").read_text())
    assert manifest["sm"] == sm and manifest["compiler"].startswith("nvrtc ")
    assert set(manifest["cubins"]) == {s.name for s in library.sources()}
    kernels = manifest["kernels"]
    missing = {e for e, s in library.specs().items() if s.min_sm <= sm} - set(kernels)
    assert not missing, f"no resource report for {sorted(missing)}"
    spills = {
        e: (k["spill_stores"], k["spill_loads"])
        for e, k in kernels.items()
        if k["spill_stores"] or k["spill_loads"]
    }
    assert not spills, f"kernels spill registers on sm_{sm} (stores, loads bytes): {spills}"
    for entry, k in kernels.items():
        assert 0 < k["registers"] <= 255, entry
        assert k["shared_bytes"] <= 48 * 1024, f"{entry}: static shared memory over 48 KiB"


def test_spill_check_sees_a_real_spill() -> None:
    _, log = nvrtc.nvrtc_compile(TEST_KERNELS / "spill_probe.cu", 87, ["-maxrregcount=24"])
    report = nvrtc.parse_resources(log, "spill_probe.cu")["ei_probe_spill"]
    assert report.spills and report.spill_stores > 0 and report.registers <= 24


def test_compile_errors_are_typed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cu"
    bad.write_text('#include "ei_cuda.cuh"\nextern "C" __global__ void k() { undefined_x(); }\n')
    with pytest.raises(KernelCompileError, match="bad.cu for sm_87.*undefined_x"):
        nvrtc.compile_source(bad, 87, cache_dir=tmp_path / "cache")


def test_cache_is_keyed_by_source_and_reused(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "k.cu"
    src.write_text(
        '#include "ei_cuda.cuh"\nextern "C" __global__ void ei_k(float* y) '
        "{ y[threadIdx.x] = 1.0f; }\n"
    )
    cache = tmp_path / "cache"
    first, report = nvrtc.compile_source(src, 87, cache_dir=cache)
    assert report["ei_k"].registers > 0

    def refuse(*args, **kwargs):
        raise AssertionError("a cached cubin was compiled again")

    monkeypatch.setattr(nvrtc, "nvrtc_compile", refuse)
    again, _ = nvrtc.compile_source(src, 87, cache_dir=cache)
    assert again == first
    monkeypatch.undo()
    src.write_text(src.read_text().replace("1.0f", "2.0f"))
    changed, _ = nvrtc.compile_source(src, 87, cache_dir=cache)
    assert changed != first and changed.exists() and first.exists()
    assert not list(cache.rglob("*.tmp")), "a temporary file was left behind"


def test_read_cubin_refuses_other_files() -> None:
    with pytest.raises(KernelCompileError, match="not a 64-bit CUDA ELF"):
        nvrtc.read_cubin(b"\x7fELF" + bytes(60))


def test_parse_resources_reads_ptxas_lines() -> None:
    log = """ptxas info    : Compiling entry function 'ei_a' for 'sm_87'
ptxas info    : Function properties for ei_a
ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 4096 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'ei_b' for 'sm_87'
ptxas info    : Function properties for ei_b
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers, 392 bytes cmem[0]
"""
    got = nvrtc.parse_resources(log, "x.cu")
    assert got["ei_a"] == nvrtc.KernelResources("ei_a", "x.cu", 64, 4096, 16, 8, 4, 400)
    assert got["ei_a"].spills and not got["ei_b"].spills
    assert got["ei_b"].shared_bytes == 0 and got["ei_b"].registers == 12
