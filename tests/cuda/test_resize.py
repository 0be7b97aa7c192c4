"""kernels/resize.cu: Resize / Upsample (nearest, linear) against the engine's reference op.

Tolerance: none for FP32 and FP16 — the taps come from the reference's own coordinate code
and the kernel interpolates with the reference's float32 operations in its order (each
rounded on its own), so outputs are compared for equality.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import resize as rs
from edge_infer.engine.ops.resize import resize as reference
from edge_infer.engine.ops.resize import upsample_9
from edge_infer.errors import BackendError

F32 = np.float32

CASES = [
    # YOLO's neck: nearest x2, asymmetric / floor (the exported Resize of Upsample)
    dict(
        scales=np.array([1, 1, 2, 2], F32),
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    ),
    dict(scales=np.array([1, 1, 0.6, 1.7], F32), mode="nearest"),
    dict(
        sizes=np.array([2, 3, 5, 11]),
        mode="nearest",
        nearest_mode="round_prefer_ceil",
        coordinate_transformation_mode="align_corners",
    ),
    dict(scales=np.array([1, 1, 2, 2], F32), mode="linear"),
    dict(
        sizes=np.array([2, 3, 13, 4]),
        mode="linear",
        coordinate_transformation_mode="pytorch_half_pixel",
    ),
    dict(
        sizes=np.array([2, 3, 9, 9]), mode="linear", coordinate_transformation_mode="align_corners"
    ),
    dict(sizes=np.array([2, 3, 7, 15]), mode="linear"),  # H identity, W resized
    dict(sizes=np.array([8, 6]), axes=[3, 2], mode="linear"),  # W before H
    dict(
        sizes=np.array([2, 3, 6, 8]),
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
        roi=np.array([0, 0, 0.2, -0.1, 1, 1, 0.9, 1.3], F32),
        extrapolation_value=-7.5,
    ),
    dict(
        scales=np.array([1, 1, 1.5, 0.5], F32),
        mode="linear",
        coordinate_transformation_mode="half_pixel_symmetric",
    ),
]


def _run(device, x, y, tables):
    dev = {
        k: None if getattr(tables, k) is None else device.to_device(getattr(tables, k))
        for k in ("row_index", "row_weight", "col_index", "col_weight")
    }
    dx = device.to_device(x)  # held: a KernelCall keeps only addresses
    device.run(rs.resize(dx, y, tables, **dev))
    return device.to_host(y)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_reference(device, case, dtype) -> None:
    attrs = dict(CASES[case])
    x = np.random.default_rng(case).standard_normal((2, 3, 7, 5)).astype(dtype)
    ref = reference(
        x, attrs.pop("roi", None), attrs.pop("scales", None), attrs.pop("sizes", None), **attrs
    )
    attrs = dict(CASES[case])
    tables = rs.resize_tables(x.shape, **attrs)
    assert tables.out_shape == ref.shape
    got = _run(device, x, device.empty(ref.shape, dtype), tables)
    np.testing.assert_array_equal(got, ref)


def test_upsample_writes_into_a_concat_slice(device) -> None:
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6)).astype(np.float16)
    scales = np.array([1, 1, 2, 2], F32)
    tables = rs.resize_tables(
        x.shape, scales=scales, nearest_mode="simple", coordinate_transformation_mode="asymmetric"
    )
    cat = device.empty((2, 10, 10, 12), np.float16)
    _run(device, x, cat[:, 6:], tables)
    out = device.to_host(cat)
    np.testing.assert_array_equal(out[:, 6:], upsample_9(x, scales))
    assert np.isnan(out[:, :6].astype(np.float32)).all()


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    oh=st.integers(1, 12),
    ow=st.integers(1, 12),
    mode=st.sampled_from(["nearest", "linear"]),
    ctm=st.sampled_from(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]),
    seed=st.integers(0, 2**16),
)
def test_property_sizes(emu, h, w, oh, ow, mode, ctm, seed) -> None:
    from tests.cuda.conftest import EmuDevice

    x = np.random.default_rng(seed).standard_normal((1, 2, h, w)).astype(np.float32)
    sizes = np.array([1, 2, oh, ow])
    ref = reference(x, None, None, sizes, mode=mode, coordinate_transformation_mode=ctm)
    tables = rs.resize_tables(x.shape, sizes=sizes, mode=mode, coordinate_transformation_mode=ctm)
    got = _run(EmuDevice(emu), x, np.empty(ref.shape, np.float32), tables)
    np.testing.assert_array_equal(got, ref)


def test_refuses_what_it_does_not_run() -> None:
    with pytest.raises(BackendError, match="nearest or linear"):
        rs.resize_tables((1, 1, 4, 4), scales=np.array([1, 1, 2, 2], F32), mode="cubic")
    with pytest.raises(BackendError, match="H and W only"):
        rs.resize_tables((1, 2, 4, 4), scales=np.array([1, 2, 2, 2], F32))
    tables = rs.resize_tables((1, 1, 4, 4), scales=np.array([1, 1, 2, 2], F32))
    with pytest.raises(BackendError, match="shape"):
        rs.resize(
            np.zeros((1, 1, 4, 4), F32),
            np.zeros((1, 1, 4, 4), F32),
            tables,
            tables.row_index,
            None,
            tables.col_index,
            None,
        )
