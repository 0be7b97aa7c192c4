"""How ``qconv_native`` splits a layer into pool tasks that each lay out their own part of the
input, then run their GEMM on it (:class:`QConvChunks`, a base of
:class:`~.cpu_qconv.QConvNative`): an unpadded 1x1 stride-1 layer of an int8 input in chunks
of positions, a layout of fewer channel quads than threads (a stem) in chunks of output rows.
Each chunk is one task, a layout call then a GEMM call, so a layer is one pool call with no
wait between a whole layout and the GEMMs, and a chunk's layout stays in its thread's cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import split
from edge_infer.engine.tactics.base import Scratch
from edge_infer.engine.tactics.quantized import QConvSpec

#: grid strips handed to one kernel call are multiples of this many positions (every path's
#: register tile width divides it: conv_int8.c NT)
STRIP = 64
#: conv_int8.c's AVX2 path's number (qconv_int8_path)
AVX2_PATH = 2
#: a position chunk's layout (1x1 layers, see QConvNative._position_chunks) at most this big
CHUNK_LAYOUT_BYTES = 192 << 10
#: a layout split or a GEMM chunk below this many int8 multiply-adds is not worth a thread
MIN_TASK_MACS = 1 << 18
#: pool tasks a layer aims at per thread (qconv_native, qconv_native_oc, qwinograd_native),
#: as the FP32 tactics: one more than a thread's own lets an early thread take a late one's
#: work. Three a thread cost YOLOv8n-320's INT8 layers 3 % more work than two (chunk set-up,
#: layouts of a chunk's own, input transforms of the same tiles for two channel blocks)
TASKS_PER_WORKER = 2
#: position chunks on the AVX2 path (both tactics) are multiples of this many positions but
#: the last: its position tiles compute a short tile 8 positions at a time (conv_int8.c
#: tile_shift's nv), its output-channel tiles take 4 (EI_OCP), a run's epilogue 8 at once; so
#: a small map splits evenly between the threads (14 x 14: 48, 48, 48, 52 positions, where
#: strips of 64 left 64, 64, 64, 4). Other paths: whole tiles (QConvNative.chunk_align)
AVX2_CHUNK_ALIGN = 8
#: conv_int8.c's AVX-512 VNNI path (qconv_int8_path): its short tiles also compute only the
#: vectors they have, 16 positions each, so its grid strips are multiples of 16 but the last,
#: and its position chunks where whole tiles would split badly (EVEN_SHARE). ResNet-50 b1 at
#: 2 threads: a 14 x 14 1x1 layer's chunks were 64, 64, 64, 4 (one thread 128 positions, the
#: other 68), a 28 x 28 one's 256, 256, 256, 16
VNNI512_PATH = 4
#: positions per vector of the paths whose short tiles compute only the vectors they have
VECTOR_POSITIONS = {AVX2_PATH: AVX2_CHUNK_ALIGN, VNNI512_PATH: 16}


#: the paths whose 1x1 layers of a batch take position chunks across images (QConvChunks.
#: _batch_chunks) where an image's map is not whole vectors (of VECTOR_POSITIONS): a 7 x 7
#: map's 49 positions fill 4 vectors of 16 (64 computed), a 14 x 14 one's 196 end in a
#: vector of 4 (208). Zen 4, MobileNetV2 b8's layers, 1 thread: 0.82-0.96 of the time on
#: 7 x 7 and 14 x 14 maps; on 28 x 28 (784 positions, whole vectors) 0.98-1.03 (the strips
#: across two images take the generic epilogue), so not there (bench/batch_chunks_ab.py)
BATCH_CHUNK_PATHS = {VNNI512_PATH}
#: ... on maps of at most this many positions (larger ones' last vectors are a small part)
BATCH_CHUNK_MAX_POSITIONS = 1024

#: a GEMM call's fields for positions of one image (conv_int8.c: no run across images)
ONE_IMAGE = {"pimg": 0, "pfirst": 0, "ins": 0}

#: whole-tile position chunks give way to equal ones (VECTOR_POSITIONS) where a thread's
#: share would be this many times the longest of the equal split's: a 14 x 14 map's 64, 64,
#: 64, 4 on 2 threads (128 against 100: 1.28) and a 28 x 28's 256 x 3 + 16 (512 against
#: 400) split evenly, a 56 x 56's 832 x 3 + 640 (1664 against 1568) does not
EVEN_SHARE = 1.1


def _layout_fit(cq: int) -> int:
    """Positions of a 1x1 chunk whose layout (``cq`` int32 quads a position) stays within
    CHUNK_LAYOUT_BYTES: whole strips, one at least."""
    return max(STRIP, CHUNK_LAYOUT_BYTES // (4 * cq) // STRIP * STRIP)


def longest_share(bounds: list[tuple[int, int]], workers: int) -> int:
    """The most positions one of ``workers`` threads computes when the pool hands the chunks
    out in order, each to the thread that is free first."""
    shares = [0] * workers
    for g0, g1 in bounds:
        shares[shares.index(min(shares))] += g1 - g0
    return max(shares)


def _int8_path() -> int:
    """conv_int8.c's dot-product path on this CPU (qconv_int8_path; 0: no library)."""
    lib = native.library()
    path = getattr(lib, "qconv_int8_path", None) if lib is not None else None
    return 0 if path is None else int(path())


class QConvChunks:
    """The chunked bindings of :class:`~.cpu_qconv.QConvNative` (which supplies ``spec``,
    ``_prepared``, ``_constants``, ``_weight_fields``, ``_by_channels``, ``_split_fields``,
    ``_out_fields`` and ``chunk_align``)."""

    spec: QConvSpec
    chunk_align: int

    def _position_chunks(
        self,
        x: np.ndarray,
        out3: np.ndarray,
        z3: np.ndarray | None,
        workers: int,
        scratch: Scratch,
    ) -> list[Any] | None:
        """An unpadded 1x1 stride-1 conv of an int8 input in chunks of positions, each its
        own layout (``[quad][chunk]``, small enough for the caches) then its GEMM, one pool
        task: a batch's layouts are never all written before they are read back, and the
        layer is one pool call. None where the layer is not such, or has too few chunks to
        share between the threads (small maps: the layout and GEMM calls split apart)."""
        s, p = self.spec, self._prepared()
        n, _, h, w = s.x_shape
        isz = x.itemsize
        if (
            s.kernel != (1, 1)
            or tuple(s.strides) != (1, 1)
            or any(s.pads)
            or s.group != 1
            or np.dtype(x.dtype) != np.int8
            or x.strides[2] != w * isz
        ):
            return None
        cq, positions = p["cq"], h * w
        if self._by_channels(workers):
            return None
        batched = self._batch_chunks(x, out3, z3, workers, scratch)
        if batched is not None:
            return batched
        per_image = -(-positions // _layout_fit(cq))
        if workers > 1:
            per_image = max(per_image, -(-TASKS_PER_WORKER * workers // n))
        most = -(-positions // STRIP)
        # a multiple of the threads in all: ResNet-50 b1's 256 -> 64 and 256 -> 128 layers at
        # 56 x 56 had 5 (3 on one thread, 2 on the other)
        while workers > 1 and (n * per_image) % workers and per_image < most:
            per_image += 1
        per_image = min(per_image, most)
        if workers > 1 and n * per_image < 2 * workers:
            return None
        bounds = self._chunk_bounds(positions, per_image, workers)
        toffs, bufs, keep = self._chunk_layouts(bounds, n, scratch, x, out3, z3)
        tasks = []
        for b in range(n):
            for k, (g0, g1) in enumerate(bounds):
                m, buf = g1 - g0, bufs[b * len(bounds) + k]
                fields = self._split_fields(x, b, 0, 0, cq, buf)
                fields.update(x=fields["x"] + g0 * isz, h=1, w=m, hq=1, wq=m, xrs=m)
                tasks.append(self._chunk_task([fields], buf, toffs[m], out3, z3, b, g0, keep,
                                              g1=m, wg=m, ho=1, wo=m))  # fmt: skip
        return tasks

    def _batch_chunks(
        self,
        x: np.ndarray,
        out3: np.ndarray,
        z3: np.ndarray | None,
        workers: int,
        scratch: Scratch,
    ) -> list[Any] | None:
        """_position_chunks' layer (checked by the caller) of a batch whose map is not whole
        strips, in chunks of the batch's positions taken in order across the images: each
        lays out its images' parts side by side (a layout call a part, the planes a chunk
        apart: the split's ``ps``) and runs one GEMM over them, whose output runs end at the
        images' ends (conv_int8.c ``pimg``). None where the path, the map or the strides do
        not fit (the output's and the residual's images the same elements apart)."""
        s, p = self.spec, self._prepared()
        n, _, h, w = s.x_shape
        positions = h * w
        path = _int8_path()
        vector = VECTOR_POSITIONS.get(path, STRIP)  # (other paths: whole tiles)
        if (
            n < 2
            or path not in BATCH_CHUNK_PATHS
            or positions % vector == 0
            or positions > BATCH_CHUNK_MAX_POSITIONS
        ):
            return None
        ins = out3.strides[0] // out3.itemsize
        if z3 is not None and z3.strides[0] // z3.itemsize != ins:
            return None
        total, cq, isz = n * positions, p["cq"], x.itemsize
        parts = -(-total // _layout_fit(cq))
        if workers > 1:  # at least TASKS_PER_WORKER a thread, a multiple of the threads
            parts = -(-max(parts, TASKS_PER_WORKER * workers) // workers) * workers
        # equal chunks of whole vectors (a chunk's short last strip computes only those)
        bounds = split(total, parts, align=vector)
        toffs, bufs, keep = self._chunk_layouts(bounds, 1, scratch, x, out3, z3)
        tasks = []
        for k, (f0, f1) in enumerate(bounds):
            m, buf = f1 - f0, bufs[k]
            layouts, f = [], f0
            while f < f1:  # the chunk's part of each image it meets
                b, q0 = divmod(f, positions)
                c = min(positions - q0, f1 - f)
                fields = self._split_fields(x, b, 0, 0, cq, buf)
                fields.update(
                    x=fields["x"] + q0 * isz, h=1, w=c, hq=1, wq=c, xrs=c, ps=m,
                    out=buf.ctypes.data + 4 * (f - f0),
                )  # fmt: skip
                layouts.append(fields)
                f += c
            grid = dict(g1=m, wg=m, ho=1, wo=m, pimg=positions, pfirst=f0, ins=ins)
            tasks.append(self._chunk_task(layouts, buf, toffs[m], out3, z3, 0, 0, keep, **grid))
        return tasks

    def _chunk_layouts(
        self,
        bounds: list[tuple[int, int]],
        images: int,
        scratch: Scratch,
        x: np.ndarray,
        out3: np.ndarray,
        z3: np.ndarray | None,
    ) -> tuple[dict[int, np.ndarray], np.ndarray, tuple[Any, ...]]:
        """For 1x1 position chunks ``bounds`` (of each of ``images``): the term offsets of
        each chunk size (term t reads quad order[t], a plane of the chunk's size apart), a
        layout buffer for each chunk (the largest's size), and what the calls keep alive."""
        p = self._prepared()
        sizes = {g1 - g0 for g0, g1 in bounds}
        toffs = {m: p["order"].astype(np.int64) * m for m in sizes}
        shape = (images * len(bounds), p["cq"] * max(sizes) + STRIP)
        bufs = scratch(shape, np.int32, "qconv_layout")
        return toffs, bufs, (*self._constants(), bufs, x, out3, z3, *toffs.values())

    def _chunk_bounds(self, positions: int, parts: int, workers: int) -> list[tuple[int, int]]:
        """``parts`` position chunks of a 1x1 layer's map: of (nearly) equal positions on the
        AVX2 path (14 x 14 as 48, 48, 48, 52, not 64 x 3 + 4); elsewhere of whole tiles
        (``chunk_align``), or on the AVX-512 VNNI path equal ones where whole tiles would
        leave a thread EVEN_SHARE or more of the even split's longest share (its short tiles
        cost: at one thread a 14 x 14 layer of 1024 inputs in chunks of 96 and 100 took 5-8 %
        longer than in 128 and 68; on 2 threads 56 x 56 layers in four 784s 10-13 % longer
        than in 832, 832, 832, 640)."""
        path = _int8_path()
        if path == AVX2_PATH:
            return split(positions, parts, align=AVX2_CHUNK_ALIGN)
        share = -(-positions // parts)
        size = -(-share // self.chunk_align) * self.chunk_align
        whole = [(g0, min(g0 + size, positions)) for g0 in range(0, positions, size)]
        if workers < 2 or path not in VECTOR_POSITIONS:
            return whole
        even = split(positions, parts, align=VECTOR_POSITIONS[path])
        if longest_share(whole, workers) >= EVEN_SHARE * longest_share(even, workers):
            return even
        return whole

    def _row_chunks(
        self,
        x: np.ndarray,
        out3: np.ndarray,
        z3: np.ndarray | None,
        workers: int,
        scratch: Scratch,
    ) -> list[Any] | None:
        """A layer of fewer channel quads than threads (a stem: 3 input channels, one quad),
        whose layout the quad split leaves to one thread, in chunks of output rows (equal but
        one): each lays out the phase rows it reads (its rows and the kernel's more below) in
        its own buffer, then runs its GEMM, one pool task. The rows below are laid out again
        by the next chunk (MobileNetV2's stem: one of 19 or 20). None where the layer is not
        such, or whole images go to the threads."""
        s, p = self.spec, self._prepared()
        n, ho, wo = s.x_shape[0], s.out_shape[2], s.out_shape[3]
        if workers < 2 or s.group != 1 or p["cq"] >= workers or n >= 2 * workers:
            return None
        hq, wq, T = p["hq"], p["wq"], p["terms"]
        plen, sy = hq * wq, s.strides[0]
        macs = p["grid"] * T * 4 * p["cog"]
        per = min(-(-TASKS_PER_WORKER * workers // n), macs // MIN_TASK_MACS, ho)
        if n * per < 2 * workers:
            return None
        bounds = split(ho, per)
        # phase rows below an output row that a tap reads
        below = (s.kernel[0] - 1) * s.dilations[0] // sy
        # the terms' offsets in a chunk's layout of hc phase rows (its planes hc * wq apart)
        heights = {r0: min(hq, r1 + below) - r0 for r0, r1 in bounds}
        toffs = {hc: (p["toff"] // plen) * (hc * wq) + p["toff"] % plen for hc in heights.values()}
        # a layout, and the reads of its last tile's dropped positions
        size = max(p["planes"] * hc * wq for hc in heights.values())
        size = max(size, max(int(t.max()) for t in toffs.values()) + ho * wq) + 2 * STRIP
        bufs = scratch((n * len(bounds), size), np.int32, "qconv_layout")
        keep = (*self._constants(), bufs, x, out3, z3, *toffs.values())
        tasks = []
        for b in range(n):
            for k, (r0, r1) in enumerate(bounds):
                buf, hc = bufs[b * len(bounds) + k], heights[r0]
                fields = self._split_fields(x, b, 0, 0, p["cq"], buf)
                fields.update(pt=s.pads[0] - r0 * sy, hq=hc)  # phase row r0 its first
                # up to the last row's last output: the grid positions after it (dropped
                # columns) would read past the chunk's rows (the tiles' byte range)
                rows = r1 - r0
                grid = dict(g1=(rows - 1) * wq + wo, wg=wq, ho=rows, wo=wo)
                tasks.append(
                    self._chunk_task([fields], buf, toffs[hc], out3, z3, b, r0 * wo, keep, **grid)
                )
        return tasks

    def _chunk_task(
        self,
        split_fields: list[dict[str, Any]],
        buf: np.ndarray,
        toff: np.ndarray,
        out3: np.ndarray,
        z3: np.ndarray | None,
        b: int,
        first: int,
        keep: tuple[Any, ...],
        **grid: int,
    ) -> Any:
        """One pool task of a chunk of image b (position or row chunks): its layout calls
        (``split_fields``: one, or one per image a batch chunk meets) into its own ``buf``,
        then its GEMM call over every output channel of the group, the outputs from position
        ``first`` of each channel plane on; ``grid``: g1, wg, ho, wo of the chunk (and a batch
        chunk's pimg, pfirst, ins)."""
        s, p = self.spec, self._prepared()
        out = self._out_fields(out3, z3, b, 0)
        out["out"] += first * out3.itemsize
        if z3 is not None:
            out["z"] += first * z3.itemsize
        lays = [native.NativeCall("qconv_split_f32", f, keep) for f in split_fields]
        gemm = native.NativeCall(
            "qconv_int8_f32",
            dict(
                layout=buf.ctypes.data, toff=toff.ctypes.data, T=p["terms"],
                wts=p["wts"][0].ctypes.data, coutp=p["coutp"], **self._weight_fields(0, 0),
                cout=s.cout,
                bias=None if p["bias"] is None else p["bias"].ctypes.data,
                wsum=p["wsum"].ctypes.data, mult=p["mult"].ctypes.data, g0=0, **out,
                **{**ONE_IMAGE, **grid},
            ),
            keep,
        )  # fmt: skip
        return native.NativeSequence([*lays, gemm])
