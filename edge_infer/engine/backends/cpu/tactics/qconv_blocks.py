"""The AVX-512 VNNI kernel's blocked copies of a ``qconv_native`` layer's weights
(:class:`QConvBlocks`, a base of :class:`~.cpu_qconv.QConvNative`).

The weight array holds a group's term rows ``[term][coutp]`` int32 (one quad of 4 input
channels' weights an output channel); a register tile reads a few channels of every row, rows
``coutp`` quads (1-8 KB) apart, so in a model a layer's first strip fetched its weights from
memory a line and often a page a term. These copies put each block's terms one after another:
``[group][block][term][width]``, for the position tiles blocks of their ``VNNI_MR`` channels
(conv_int8.c ``wblk``), for a layer whose whole grid takes output-channel tiles vectors of
``OC_VECTOR`` channels (``wblk_oc``: each of a tile's 3-4 vectors one stream). None on other
paths; on huge pages (hugemem: the state's binding prepares them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import hugemem
from edge_infer.engine.backends.cpu.tactics.qconv_chunks import VNNI512_PATH, _int8_path
from edge_infer.engine.tactics.quantized import QConvSpec

#: conv_int8.c's register tile height (MR) on the AVX-512 VNNI path: the position tiles'
#: weights there are blocks of this many channels (:meth:`QConvBlocks._blocked`)
VNNI_MR = 6
#: channels of a vector of the output-channel tiles: calls split channels at its multiples (a
#: thread's share of a 256-channel layer 128, 3 x 48 against 2 x 48 + 16 at whole tiles), its
#: blocked weights come a vector at a time (:meth:`QConvBlocks._blocked_oc`)
OC_VECTOR = 16


class QConvBlocks:
    """The blocked weight copies of :class:`~.cpu_qconv.QConvNative` (which supplies
    ``spec``, ``_prepared`` and ``_oc_tile``)."""

    spec: QConvSpec

    def _prepared(self) -> dict[str, Any]:
        raise NotImplementedError

    def _oc_tile(self) -> int:
        raise NotImplementedError

    def _blocks(self, key: str, width: int, oc_tiles: bool) -> np.ndarray | None:
        """The term rows ``width`` channels a block, made once (``_prepared()[key]``) on the
        AVX-512 VNNI path where the layer's whole grid takes output-channel tiles or not
        (``oc_tiles``); else None."""
        p = self._prepared()
        if key not in p:
            blocked = None
            if _int8_path() == VNNI512_PATH and bool(self._oc_tile()) == oc_tiles:
                wts, terms, coutp = p["wts"], p["terms"], p["coutp"]
                rows = wts[:, :terms].reshape(len(wts), terms, coutp // width, width)
                blocked = hugemem.copy(rows.transpose(0, 2, 1, 3))
            p[key] = blocked
        return p[key]

    def _blocked(self) -> np.ndarray | None:
        """The position tiles' copy, [group][block][term][VNNI_MR] (``wblk``)."""
        return self._blocks("wblk", VNNI_MR, oc_tiles=False)

    def _blocked_oc(self) -> np.ndarray | None:
        """The output-channel tiles' copy, [group][vector][term][OC_VECTOR] (``wblk_oc``)."""
        return self._blocks("wblk_oc", OC_VECTOR, oc_tiles=True)

    def _constants(self) -> tuple[Any, ...]:
        """The prepared arrays every GEMM call of the layer points into (a call's ``keep``)."""
        p = self._prepared()
        return (p["wts"], self._blocked(), self._blocked_oc(), p["wsum"], p["mult"], p["bias"])

    def _weight_fields(self, gi: int, o0: int) -> dict[str, Any]:
        """A GEMM call's blocked weights from group gi's output channel o0 on (a multiple of
        the block: calls split channels at OC_ALIGN, output-channel tile layers at
        OC_VECTOR), NULL where the layer has no such copy."""

        def at(blocked: np.ndarray | None) -> int | None:
            if blocked is None:
                return None
            assert o0 % blocked.shape[-1] == 0
            return int(blocked[gi].ctypes.data) + 4 * o0 * blocked.shape[2]

        return dict(wblk=at(self._blocked()), wblk_oc=at(self._blocked_oc()))
