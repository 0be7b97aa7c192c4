"""The INT8 SiLU epilogue's estimate against its exact chain (kernels/conv_int8.c silu_q_vecs
and finish_vecs), output by output, on the host's AVX2 path.

A C driver (written to a temporary folder) compiles conv_int8.c with ``-DEI_SILU_CHECK``,
which adds a switch sending every SiLU output the exact way, and runs ``qconv_int8_finish``
twice on the same accumulators: the estimate with its redo margin, then the exact chain.
Each draw: 6 channels x 4096 positions, y = acc x mult spread over a range drawn from
0.3-120 (a quarter of them over SiLU's bend, -8..8), an output scale from 0.002-5,
multipliers from 1e-7-1e-2, an int8 residual after the activation in a third of the draws.
Prints the outputs compared and how many differ; exits 1 if any does. ``--scale`` builds the
margin (EI_SILU_MARGIN, EI_SILU_MARGIN_Y) times that factor (0: only the absolute part),
to see the check fail where the margin is too thin. Not run by the tests.

    .venv/bin/python bench/silu_margin.py --draws 20000
    .venv/bin/python bench/silu_margin.py --draws 2000 --scale 0
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

KERNELS = Path(__file__).resolve().parent.parent / "edge_infer/engine/backends/cpu/kernels"

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <math.h>
#include "args.h"
extern int ei_silu_exact;
static uint64_t st = 88172645463325252ull;
static uint64_t xr(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return st; }
static double ur(void) { return (double)(xr() >> 11) * (1.0 / 9007199254740992.0); }
static double logu(double a, double b) { return exp(log(a) + ur() * (log(b) - log(a))); }
int main(int argc, char **argv) {
    const long draws = atol(argv[1]), C = 6, P = 4096, S = P + 64;
    int *acc = aligned_alloc(64, sizeof(int) * C * S);
    int8_t *o[2] = {malloc(C * P), malloc(C * P)}, *z = malloc(C * P);
    double mult[6];
    long total = 0, bad = 0;
    for (long d = 0; d < draws; d++) {
        const double ymax = logu(0.3, 120.0), s = logu(0.002, 5.0), m0 = logu(1e-7, 1e-2);
        const int res = xr() % 3 == 0;
        for (int c = 0; c < C; c++) mult[c] = m0 * (0.5 + ur());
        for (long c = 0; c < C; c++)
            for (long i = 0; i < S; i++) {
                double y = (2 * ur() - 1) * (xr() % 4 ? ymax : 8.0), v = y / mult[c];
                acc[c * S + i] = (int)(v > 2e9 ? 2e9 : v < -2e9 ? -2e9 : v);
            }
        for (long i = 0; i < C * P; i++) z[i] = (int8_t)(xr() & 0xff);
        qconv_int8_args a = {0};
        a.cout = C, a.coutp = C, a.mult = mult, a.ocs = P, a.otype = 2, a.oinv = 1.0 / s;
        a.oscale = s, a.act = EI_ACT_SILU, a.wo = P, a.ho = 1, a.wg = P;
        if (res)
            a.residual = 2, a.ztype = 2, a.z = z, a.zcs = P, a.zscale = (float)(s * (0.2 + ur()));
        for (int pass = 0; pass < 2; pass++) {
            ei_silu_exact = pass, a.out = o[pass];
            for (long p = 0; p < P; p += 64) {
                long j = 0, n = 64, pos = p;
                qconv_int8_finish(&a, acc + p, S, 0, C, &j, &n, &pos, 1);
            }
        }
        for (long i = 0; i < C * P; i++) bad += o[0][i] != o[1][i];
        total += C * P;
    }
    printf("%ld outputs, %ld differ\n", total, bad);
    return bad != 0;
}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--scale", type=float, default=None, help="the margin times this")
    args = p.parse_args(argv)
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        print("no C compiler", file=sys.stderr)
        return 2
    flags = ["-O3", "-march=native", "-std=c11", "-ffp-contract=fast", "-fno-math-errno"]
    flags += ["-DEI_SILU_CHECK", f"-I{KERNELS}"]
    if args.scale is not None:
        flags += [
            f"-DEI_SILU_MARGIN={3.0517578125e-5 * args.scale!r}f",
            f"-DEI_SILU_MARGIN_Y={9.5367431640625e-7 * args.scale!r}f",
        ]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "silu_margin.c", Path(tmp) / "silu_margin"
        src.write_text(DRIVER)
        subprocess.run(
            [cc, *flags, str(src), str(KERNELS / "conv_int8.c"), "-o", str(exe), "-lm"], check=True
        )
        return subprocess.run([str(exe), str(args.draws)]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
