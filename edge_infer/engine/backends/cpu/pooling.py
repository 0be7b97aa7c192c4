"""Native 2-D max pooling bound to its arena views, split between threads by planes.

float32 and float16 planes go to ``maxpool_planes`` (kernels/maxpool.c: each output row from
its input rows' maximum, vectors along the rows), int8 planes to ``maxpool_s8``
(kernels/reformat.c). Both take N x C strides, so a channel slice of a concat qualifies, and
both give the reference's values exactly (a maximum is one of its inputs; padding never wins).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import share, split

Run = Callable[[], None]

#: a pooling is split between threads from this many output values times window taps
#: (each part at least half of it): the ResNet stem's 64 x 56 x 56 x 9 makes 4 parts
SPLIT = 1 << 18
#: storage dtype → the kernel's half bits (x: 1, y: 2)
_HALF = {np.dtype(np.float32): 0, np.dtype(np.float16): 3}


@dataclass(frozen=True)
class Window:
    """A 2-D pooling window: kernel, strides, top/left pads, dilations (rows, columns)."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int]
    dilations: tuple[int, int]

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> Window | None:
        """The window of a MaxPool node's attributes; None when not a plain 2-D one."""
        k = list(attrs.get("kernel_shape", []))
        s = list(attrs.get("strides", [1, 1]))
        p = list(attrs.get("pads", [0, 0, 0, 0]))
        d = list(attrs.get("dilations", [1, 1]))
        if len(k) != 2 or len(s) != 2 or len(p) != 4 or len(d) != 2:
            return None
        if attrs.get("auto_pad", "NOTSET") != "NOTSET" or min(*k, *s, *d) < 1 or min(p) < 0:
            return None
        return cls((k[0], k[1]), (s[0], s[1]), (p[0], p[1]), (d[0], d[1]))

    def fields(self) -> dict[str, int]:
        """The kernels' window fields (kernels/args.h)."""
        (kh, kw), (sy, sx), (pt, pl), (dy, dx) = (
            self.kernel,
            self.strides,
            self.pads,
            self.dilations,
        )
        return dict(kh=kh, kw=kw, sy=sy, sx=sx, pt=pt, pl=pl, dy=dy, dx=dx)


def _planes(a: Any, dtype: Any) -> bool:
    """``a`` an (N, C, H, W) ndarray of ``dtype`` whose (H, W) planes are contiguous."""
    return (
        isinstance(a, np.ndarray)
        and a.dtype == dtype
        and a.ndim == 4
        and a.strides[3] == a.itemsize
        and a.strides[2] == a.shape[3] * a.itemsize
        and a.strides[1] % a.itemsize == 0
        and a.strides[0] % a.itemsize == 0
    )


def bind_maxpool(
    x: Any, out: np.ndarray, window: Window, *, workers: int = 1, pool: Any = None
) -> Run | None:
    """``out`` = max pooling of ``x`` (float32, float16 or int8 planes, same dtype), or None
    when the native kernels cannot run it."""
    if not (_planes(x, out.dtype) and _planes(out, x.dtype)) or native.library() is None:
        return None
    if x.shape[:2] != out.shape[:2] or not x.size or not out.size:
        return None
    n, c, h, w = x.shape
    ho, wo = out.shape[2:]
    geometry = dict(h=h, w=w, ho=ho, wo=wo, **window.fields())
    es = x.itemsize
    strides = dict(xis=x.strides[0] // es, xcs=x.strides[1] // es,
                   yis=out.strides[0] // es, ycs=out.strides[1] // es)  # fmt: skip
    cost = out.size * window.kernel[0] * window.kernel[1]
    parts = max(1, min(2 * workers, n * c, cost // (SPLIT // 2))) if workers > 1 else 1
    calls: list[native.NativeCall] = []
    if x.dtype == np.int8:  # channel ranges: maxpool_s8 walks n x c planes from its base
        for c0, c1 in split(c, parts):
            base = dict(
                x=x.ctypes.data + c0 * x.strides[1], y=out.ctypes.data + c0 * out.strides[1]
            )
            args = dict(**base, n=n, c=c1 - c0, **strides, **geometry)
            calls.append(native.NativeCall("maxpool_s8_f32", args, (x, out)))
    elif x.dtype in _HALF:
        for p0, p1 in split(n * c, parts):
            args = dict(x=x.ctypes.data, y=out.ctypes.data, n=n, c=c, **strides, **geometry,
                        p0=p0, p1=p1, half=_HALF[x.dtype])  # fmt: skip
            calls.append(native.NativeCall("maxpool_planes_f32", args, (x, out)))
    else:
        return None
    return share(calls, pool)
