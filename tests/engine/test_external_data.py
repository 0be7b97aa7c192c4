"""Every external data field is checked before it is used: bad offsets, lengths and locations
are ExternalDataError (never ValueError, OSError or MemoryError), and a hard-linked data file
is refused like a symlink (issue 17, item 3)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from edge_infer.engine.onnx_import import import_model
from edge_infer.errors import ExternalDataError
from tests.engine.conftest import small_model


def external_model(folder: Path, omit: tuple[str, ...] = (), **fields: str) -> Path:
    """small_model with its conv weights in ``weights.bin`` (after 64 bytes of other data);
    ``fields`` replace the external data entries (location, offset, length), ``omit`` drops
    some."""
    model = small_model()
    w = model.graph.initializer[0]
    raw = numpy_helper.to_array(w).tobytes()
    (folder / "weights.bin").write_bytes(bytes(64) + raw)
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entries = {"location": "weights.bin", "offset": "64", "length": str(len(raw)), **fields}
    for key, value in entries.items():
        if key in omit:
            continue
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_good_external_data_loads(tmp_path) -> None:
    g = import_model(external_model(tmp_path))
    want = numpy_helper.to_array(small_model().graph.initializer[0])
    np.testing.assert_array_equal(g.value("w").const, want)


def test_without_a_length_the_rest_of_the_file_is_read(tmp_path) -> None:
    g = import_model(external_model(tmp_path, omit=("length",)))
    assert g.value("w").const.shape == (4, 3, 3, 3)
    with pytest.raises(ExternalDataError, match="needs 432 bytes, the external data has 496"):
        import_model(external_model(tmp_path, omit=("length", "offset")))


def test_an_unknown_key_is_refused(tmp_path) -> None:
    with pytest.raises(ExternalDataError, match="unknown external data keys"):
        import_model(external_model(tmp_path, lengthh="432"))


BAD_FIELDS = {
    "offset text": ({"offset": "abc"}, "offset 'abc' is not a non-negative integer"),
    "offset negative": ({"offset": "-64"}, "not a non-negative integer"),
    "offset spaced": ({"offset": " 64"}, "not a non-negative integer"),
    "offset huge": ({"offset": "9" * 400}, "not a non-negative integer"),
    "offset past end": ({"offset": "100000"}, "past the end of the file"),
    "length past end": ({"length": "99999999999999"}, "larger than the file"),
    "length short": ({"length": "8"}, "needs 432 bytes, the external data has 8"),
    "length text": ({"length": "0x10"}, "not a non-negative integer"),
    "nul in location": ({"location": "weights\x00.bin"}, "relative path inside"),
    "long location": ({"location": "a" * 5000}, "longer than any path"),
    "long component": ({"location": "a" * 300}, "cannot"),
    "directory": ({"location": "."}, "not a regular file"),
    "missing": ({"location": "nothing.bin"}, "No such file"),
    "empty": ({"location": ""}, "relative path inside"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_bad_fields_are_refused(tmp_path, case) -> None:
    fields, message = BAD_FIELDS[case]
    with pytest.raises(ExternalDataError, match=message):
        import_model(external_model(tmp_path, **fields))


def test_a_hard_linked_data_file_is_refused(tmp_path) -> None:
    path = external_model(tmp_path, location="linked.bin")
    os.link(tmp_path / "weights.bin", tmp_path / "linked.bin")
    with pytest.raises(ExternalDataError, match="hard links"):
        import_model(path)


def test_a_fifo_is_refused_without_waiting(tmp_path) -> None:
    path = external_model(tmp_path, location="pipe.bin")
    os.mkfifo(tmp_path / "pipe.bin")
    with pytest.raises(ExternalDataError, match="not a regular file"):
        import_model(path)  # a blocking open would wait here for a writer forever
