"""normalization ops (being written)."""

from edge_infer.engine.ops.registry import OpList

OPS = OpList()
