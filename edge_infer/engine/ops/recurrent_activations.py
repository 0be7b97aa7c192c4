"""The activation functions of ONNX's recurrent layers (``activations`` with
``activation_alpha``/``activation_beta``), applied in place so a cell allocates nothing.

Each takes ``(x, tmp, alpha, beta)``; ``tmp`` is a scratch array of ``x``'s shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge_infer.errors import EdgeInferError

#: the default activations of one direction
DEFAULT_ACTIVATIONS = {
    "LSTM": ("Sigmoid", "Tanh", "Tanh"),
    "GRU": ("Sigmoid", "Tanh"),
    "RNN": ("Tanh",),
}


def _sigmoid(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.negative(x, out=x)
    with np.errstate(over="ignore"):  # exp overflow gives 1 / inf = 0, the right limit
        np.exp(x, out=x)
    np.add(x, 1.0, out=x)
    np.reciprocal(x, out=x)


def _tanh(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.tanh(x, out=x)


def _relu(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.maximum(x, 0.0, out=x)


def _affine(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.multiply(x, a, out=x)
    np.add(x, b, out=x)


def _leaky_relu(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.minimum(x, 0.0, out=tmp)
    np.maximum(x, 0.0, out=x)
    np.multiply(tmp, a, out=tmp)
    np.add(x, tmp, out=x)


def _thresholded_relu(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.greater(x, a, out=tmp)
    np.multiply(x, tmp, out=x)


def _scaled_tanh(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.multiply(x, b, out=x)
    np.tanh(x, out=x)
    np.multiply(x, a, out=x)


def _hard_sigmoid(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.multiply(x, a, out=x)
    np.add(x, b, out=x)
    np.clip(x, 0.0, 1.0, out=x)


def _elu(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.minimum(x, 0.0, out=tmp)
    np.expm1(tmp, out=tmp)
    np.multiply(tmp, a, out=tmp)
    np.maximum(x, 0.0, out=x)
    np.add(x, tmp, out=x)


def _softsign(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.abs(x, out=tmp)
    np.add(tmp, 1.0, out=tmp)
    np.divide(x, tmp, out=x)


def _softplus(x: np.ndarray, tmp: np.ndarray, a: float, b: float) -> None:
    np.logaddexp(x, 0.0, out=x)


#: lower-case name → (function, default alpha or None when unused, default beta or None).
#: Defaults are those of the ONNX operators of the same name (Affine and ScaledTanh as the
#: ONNX 1.x experimental ops defined them).
ACTIVATIONS: dict[str, tuple[Callable[..., None], float | None, float | None]] = {
    "sigmoid": (_sigmoid, None, None),
    "tanh": (_tanh, None, None),
    "relu": (_relu, None, None),
    "affine": (_affine, 1.0, 0.0),
    "leakyrelu": (_leaky_relu, 0.01, None),
    "thresholdedrelu": (_thresholded_relu, 1.0, None),
    "scaledtanh": (_scaled_tanh, 1.0, 1.0),
    "hardsigmoid": (_hard_sigmoid, 0.2, 0.5),
    "elu": (_elu, 1.0, None),
    "softsign": (_softsign, None, None),
    "softplus": (_softplus, None, None),
}


@dataclass(frozen=True)
class Activation:
    """One activation function of a cell with its alpha/beta."""

    name: str
    alpha: float = 0.0
    beta: float = 0.0

    def __call__(self, x: np.ndarray, tmp: np.ndarray) -> None:
        ACTIVATIONS[self.name.lower()][0](x, tmp, self.alpha, self.beta)


def parse_activations(
    op: str,
    directions: int,
    names: Sequence[str] | None,
    alphas: Sequence[float] | None,
    betas: Sequence[float] | None,
) -> list[list[Activation]]:
    """The activations of each direction: ``activations`` with ``activation_alpha/beta``
    consumed in order by the functions that take them (ONNX's rule); one direction's list is
    used for both directions of a bidirectional layer, as onnxruntime does."""
    per_direction = len(DEFAULT_ACTIVATIONS[op])
    names = list(names) if names else list(DEFAULT_ACTIVATIONS[op]) * directions
    if directions == 2 and len(names) == per_direction:
        names = names * 2
    if len(names) != per_direction * directions:
        raise EdgeInferError(
            f"{op}: {len(names)} activations given, need {per_direction} per direction "
            f"({per_direction * directions} for {directions} direction(s))"
        )
    alpha_list, beta_list = list(alphas or ()), list(betas or ())
    parsed: list[Activation] = []
    for name in names:
        entry = ACTIVATIONS.get(str(name).lower())
        if entry is None:
            raise EdgeInferError(
                f"{op}: activation {name!r} is not one of ONNX's recurrent "
                f"activations ({', '.join(sorted(ACTIVATIONS))})"
            )
        _, alpha, beta = entry
        if alpha is not None and alpha_list:
            alpha = alpha_list.pop(0)
        if beta is not None and beta_list:
            beta = beta_list.pop(0)
        parsed.append(Activation(str(name), float(alpha or 0.0), float(beta or 0.0)))
    return [parsed[d * per_direction : (d + 1) * per_direction] for d in range(directions)]
