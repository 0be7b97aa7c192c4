"""The CPU backend's tactics: its table of candidates per layer kind.

``CPU_TACTICS`` is the explicit registry (see ``edge_infer.engine.tactics`` for how a table
is consulted). Native tactics whose compiler is missing here report themselves not
applicable, so the table is the same on every machine.
"""

from __future__ import annotations

from edge_infer.engine.backends.cpu.tactics.cpu_chain import ChainNative
from edge_infer.engine.backends.cpu.tactics.cpu_conv import CONV_TACTICS
from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_direct import DirectNative
from edge_infer.engine.backends.cpu.tactics.cpu_fp16 import fp16_tactics
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import (
    QConvNative,
    QConvNativeOC,
    QConvReference,
)
from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_qpointwise import QPointwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_qwinograd import QWinogradNative
from edge_infer.engine.backends.cpu.tactics.cpu_recurrent import RecurrentGemm, RecurrentNative
from edge_infer.engine.backends.cpu.tactics.cpu_stem import StemNative
from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative
from edge_infer.engine.tactics import TacticTable

#: FP32 convolutions, in the order tried (the first applicable is the default)
_CONV = (
    *CONV_TACTICS,
    DirectNative,
    OcVecNative,
    DepthwiseNative,
    WinogradNative,
    PointwiseNative,
    StemNative,
)

#: layer kind → CPU candidates, in the order tried (the first applicable is the default);
#: FP16 layers get the FP16 form of every FP32 conv tactic, then the other candidates
CPU_TACTICS: TacticTable = {
    "conv": _CONV,
    "recurrent": (RecurrentNative, RecurrentGemm),
    "qconv": (
        QConvReference,
        QConvNative,
        QConvNativeOC,
        QDepthwiseNative,
        QPointwiseNative,
        QWinogradNative,
    ),
    "fp16": fp16_tactics(_CONV, (RecurrentNative, RecurrentGemm)),
    "chain": (ChainNative,),
}

__all__ = ["CPU_TACTICS"]
