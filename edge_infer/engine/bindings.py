"""Caller-owned buffers bound to an execution context's inputs and outputs, by name.

The lower-level path of :class:`~edge_infer.engine.runtime.ExecutionContext`, as in TensorRT
(``setTensorAddress`` then ``enqueueV3``): the caller binds its own buffers once and runs
again and again on them. On the CPU a bound input is read in place and a bound output written
in place — nothing is copied into or out of the engine's arena. Everything is validated when
bound (name, type, dtype, shape against the profile, contiguity) and again, for agreement
between the buffers, when the context runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.errors import BindingError


class Bindings:
    """The buffers bound to one context: ``inputs`` and ``outputs`` by binding name."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.inputs: dict[str, np.ndarray] = {}
        self.outputs: dict[str, np.ndarray] = {}
        self._specs = {b.name: (b, "input") for b in engine.inputs}
        self._specs.update({b.name: (b, "output") for b in engine.outputs})

    def bind(self, name: str, array: Any) -> None:
        """Bind ``array`` to input or output ``name`` (replacing an earlier binding)."""
        if name not in self._specs:
            raise BindingError(
                f"the engine has no input or output called {name!r}; its "
                f"bindings are {sorted(self._specs)}"
            )
        spec, kind = self._specs[name]
        device = not isinstance(array, np.ndarray)
        if device and not self._device_array(array):
            raise BindingError(
                f"{kind} '{name}' must be bound to a numpy array"
                + (" or a device array of this engine's device" if self._takes_device() else "")
                + f", got {type(array).__name__}"
            )
        if np.dtype(array.dtype) != spec.dtype:
            raise BindingError(
                f"{kind} '{name}' must be {spec.dtype.name}, got "
                f"{array.dtype.name}; bind an array of np.{spec.dtype.name}"
            )
        want = list(spec.shape)
        if spec.batched:
            want[0] = -1
        if array.ndim != len(want) or any(
            w >= 0 and w != d for w, d in zip(want, array.shape, strict=True)
        ):
            raise BindingError(
                f"{kind} '{name}' must have shape "
                f"{['N' if w < 0 else w for w in want]}, got {list(array.shape)}"
            )
        if spec.batched:
            p = self.engine.profile
            if not p.min_batch <= array.shape[0] <= p.max_batch:
                raise BindingError(
                    f"{kind} '{name}': batch {array.shape[0]} is outside the "
                    f"engine's profile [{p.min_batch}, {p.max_batch}]"
                )
        if device:
            if not array.contiguous:
                raise BindingError(
                    f"{kind} '{name}' must be a contiguous device array (it is used in place)"
                )
        elif not array.flags.c_contiguous:
            raise BindingError(
                f"{kind} '{name}' must be C-contiguous (it is used in place); "
                "bind np.ascontiguousarray(array), or a slice of whole rows"
            )
        if kind == "output" and not device and not array.flags.writeable:
            raise BindingError(f"output '{name}' must be writeable")
        (self.inputs if kind == "input" else self.outputs)[name] = array

    def _takes_device(self) -> bool:
        from edge_infer.engine.backends import get_backend

        return get_backend(self.engine.backend_name).binds_device_buffers

    def _device_array(self, array: Any) -> bool:
        """A device array this engine's backend takes in place (shape, dtype, contiguous)."""
        return self._takes_device() and all(
            hasattr(array, a) for a in ("shape", "dtype", "contiguous")
        )

    def has_device_arrays(self) -> bool:
        return any(
            not isinstance(a, np.ndarray) for a in [*self.inputs.values(), *self.outputs.values()]
        )

    def unbind(self, name: str) -> None:
        """Forget the buffer bound to ``name`` (an output then comes back as a new array)."""
        if self.inputs.pop(name, None) is None and self.outputs.pop(name, None) is None:
            raise BindingError(
                f"nothing is bound to {name!r}; bound: {sorted([*self.inputs, *self.outputs])}"
            )

    def batch(self) -> int:
        """The batch size of the bound buffers; every input bound, batch sizes agree."""
        missing = [b.name for b in self.engine.inputs if b.name not in self.inputs]
        if missing:
            raise BindingError(
                f"inputs {missing} are not bound; bind a buffer to each with "
                "context.bind(name, array)"
            )
        batch: int | None = None
        for name, array in [*self.inputs.items(), *self.outputs.items()]:
            if not self._specs[name][0].batched:
                continue
            if batch is not None and array.shape[0] != batch:
                raise BindingError(
                    f"bound buffers disagree on the batch size: {batch} and "
                    f"{array.shape[0]} ('{name}')"
                )
            batch = array.shape[0]
        return batch if batch is not None else self.engine.profile.min_batch
