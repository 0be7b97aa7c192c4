"""ctypes mirror of ``kernels/gemm.cu`` (``GemmParams``) and the GEMM tactics.

``Y = act(alpha * A @ B + beta * C)`` per batch item; every operand is addressed through
(batch, row, column) element strides, so a transposed operand, a broadcast batch (stride 0)
or a broadcast bias row is only a choice of strides. The INT8 tactics compute the engine's
QGemm: ``act((A_q @ B_q + C_q) * x_scale * w_scale[j])`` with int32 ``C_q``, stored as int8
(``y_scale``), FP16 or FP32.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from edge_infer.cuda.library import KernelCall, KernelSpec


class GemmParams(ctypes.Structure):
    """Field for field ``struct GemmParams`` (pointers are device addresses as integers)."""

    _fields_ = (
        ("a", ctypes.c_void_p),
        ("b", ctypes.c_void_p),
        ("c", ctypes.c_void_p),
        ("w_scale", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        *((name, ctypes.c_int64) for name in ("a_batch", "b_batch", "c_batch", "y_batch")),
        *(
            (name, ctypes.c_int32)
            for name in (
                "a_row",
                "a_col",
                "b_row",
                "b_col",
                "c_row",
                "c_col",
                "y_row",
                "m",
                "n",
                "k",
                "batch",
            )
        ),
        ("alpha", ctypes.c_float),
        ("beta", ctypes.c_float),
        ("act", ctypes.c_int32),
        ("act_p0", ctypes.c_float),
        ("act_p1", ctypes.c_float),
        ("x_scale", ctypes.c_float),
        ("y_scale", ctypes.c_float),
    )


@dataclass(frozen=True)
class GemmTactic:
    """One GEMM entry point: a tile of BM rows x BN columns of Y, ``threads`` per block."""

    entry: str
    precision: str  # fp32 (float A, B, Y), fp16 (__half A, B, Y; float C), int8 (see above)
    bm: int
    bn: int
    threads: int
    out: str  # Y's element type: f32, f16 or s8
    min_sm: int = 72

    def launch_dims(
        self, m: int, n: int, batch: int = 1
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``(grid, block)`` for an ``m x n`` output, ``batch`` times."""
        return (-(-n // self.bn), -(-m // self.bm), batch), (self.threads, 1, 1)

    def call(self, params: GemmParams) -> KernelCall:
        """The launch of this tactic on ``params`` (its m, n and batch set)."""
        grid, block = self.launch_dims(params.m, params.n, params.batch)
        return KernelCall(self.entry, grid, block, params)

    def spec(self) -> KernelSpec:
        """The library registration of this entry point."""
        return KernelSpec(self.entry, "gemm.cu", GemmParams, self.min_sm)


TACTICS: tuple[GemmTactic, ...] = (
    GemmTactic("ei_gemm_f32_64x64", "fp32", 64, 64, 256, "f32"),
    GemmTactic("ei_gemm_f32_32x32", "fp32", 32, 32, 128, "f32"),
    GemmTactic("ei_gemm_f16_wmma_64x64", "fp16", 64, 64, 128, "f16"),
    GemmTactic("ei_gemm_f16_wmma_32x32", "fp16", 32, 32, 128, "f16"),
    *(
        GemmTactic(f"ei_gemm_s8_wmma_{tile}x{tile}_{out}", "int8", tile, tile, 128, out)
        for tile in (64, 32)
        for out in ("s8", "f16", "f32")
    ),
)

SPECS: tuple[KernelSpec, ...] = tuple(t.spec() for t in TACTICS)
