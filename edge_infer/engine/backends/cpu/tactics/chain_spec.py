"""What a conv chain is: an inverted-residual run of FP32 convolutions computed in one pass.

MobileNet-class blocks are ``1x1 expand → depthwise k×k → 1x1 project`` (the first block has
no expand). Run layer by layer, the expanded tensor (6× the block's channels) goes out to
memory and comes back; run as a chain, strips of rows go through all three layers while
they are in cache, and only the block's input and output touch memory.

``ChainSpec`` is the CPU backend's description of such a run (``backends/cpu/chains.py``
finds them in a graph whose layers have their tactics, times a chain tactic against the
members' own times, and fuses where it wins); a chain tactic's ``bind`` gets the first
member's input (and the residual, if the project layer takes one) and writes the last
member's output.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_infer.engine.tactics.base import ConvSpec


def is_pointwise(spec: ConvSpec) -> bool:
    """A plain 1x1 conv: stride 1, no padding, no groups."""
    return (
        spec.kernel == (1, 1)
        and spec.strides == (1, 1)
        and spec.pads == (0, 0, 0, 0)
        and spec.group == 1
    )


def is_depthwise(spec: ConvSpec) -> bool:
    """One filter per channel, as many outputs as inputs."""
    return spec.group > 1 and spec.group == spec.cin == spec.cout


@dataclass(frozen=True)
class ChainSpec:
    """``[expand 1x1 →] depthwise → project 1x1`` on one tensor, NCHW float32.

    ``expand`` is ``None`` when the chain starts at the depthwise layer. Only ``project`` may
    carry a residual (``project.residual``: ``pre`` = act(conv + b + z), ``post`` =
    act(conv + b) + z). The members' biases and activations are in their specs.
    """

    expand: ConvSpec | None
    depthwise: ConvSpec
    project: ConvSpec

    def __post_init__(self) -> None:
        if self.expand is not None and (
            not is_pointwise(self.expand) or self.expand.residual != "none"
        ):
            raise ValueError("chain: the expand layer must be a plain 1x1 conv, no residual")
        if not is_depthwise(self.depthwise) or self.depthwise.residual != "none":
            raise ValueError("chain: the middle layer must be a depthwise conv, no residual")
        if not is_pointwise(self.project):
            raise ValueError("chain: the project layer must be a plain 1x1 conv")
        if self.expand is not None and self.expand.out_shape != self.depthwise.x_shape:
            raise ValueError("chain: expand output and depthwise input shapes differ")
        if self.depthwise.out_shape != self.project.x_shape:
            raise ValueError("chain: depthwise output and project input shapes differ")

    @property
    def layers(self) -> tuple[ConvSpec, ...]:
        return tuple(s for s in (self.expand, self.depthwise, self.project) if s is not None)

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return self.layers[0].x_shape

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return self.project.out_shape

    @property
    def residual(self) -> str:
        return self.project.residual

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.layers)

    def signature(self) -> str:
        """The timing-cache key of this chain."""
        return "chain " + " | ".join(s.signature() for s in self.layers)
