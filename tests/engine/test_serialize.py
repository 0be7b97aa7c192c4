"""Tests for the engine file format: round trips, dedupe, corruption, crafted files, atomicity."""

from __future__ import annotations

import errno
import hashlib
import inspect
import json
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_infer.engine import serialize
from edge_infer.engine.serialize import (
    FORMAT_VERSION,
    MAGIC,
    MAX_HEADER_BYTES,
    EngineFile,
    dumps_engine,
    file_sha256,
    loads_engine,
    read_engine,
    write_engine,
)
from edge_infer.errors import EngineCompatibilityError, EngineFileError

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64"]
DTYPES += ["uint8", "uint16", "uint32", "uint64", "bool"]
HEADER = {"plan": {"nodes": ["conv", "relu"]}, "bindings": [{"name": "x", "shape": [1, 3]}]}


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {f"t_{d}": (rng.standard_normal((2, 3)) * 50).astype(d) for d in DTYPES}
    out["scalar"] = np.array(3.5, dtype=np.float32)
    out["empty"] = np.zeros((0, 4), dtype=np.int32)
    out["big_endian"] = np.arange(5, dtype=">i4")
    out["strided"] = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2].T
    return out


SMALL = dumps_engine({"k": "v"}, {"w": np.arange(4, dtype=np.float32)}, {"b": b"xyz"})


def _craft(header: bytes, table: Any, data: bytes, *, version: int = FORMAT_VERSION,
           flags: int = 0, header_len: int | None = None) -> bytes:  # fmt: skip
    """Assemble a file from the documented layout, independently of the writer."""
    table_bytes = table if isinstance(table, bytes) else json.dumps(table).encode()
    length = len(header) if header_len is None else header_len
    body = MAGIC + struct.pack("<IIQ", version, flags, length) + header
    body += struct.pack("<Q", len(table_bytes)) + table_bytes
    body += bytes(-len(body) % 64) + data
    return body + hashlib.sha256(body).digest()


def _entry(**changes: Any) -> dict[str, Any]:
    entry = {"name": "w", "kind": "tensor", "dtype": "float32", "shape": [4], "offset": 0,
             "nbytes": 16}  # fmt: skip
    entry.update(changes)
    return entry


def _assert_same(got: EngineFile, tensors: dict[str, np.ndarray]) -> None:
    assert set(got.tensors) == set(tensors)
    for name, want in tensors.items():
        arr = got.tensors[name]
        assert arr.dtype == want.dtype.newbyteorder("<") and arr.shape == want.shape, name
        np.testing.assert_array_equal(arr, want)
        assert not arr.flags.writeable, name


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("use_mmap", [True, False])
def test_round_trip_file(tmp_path: Path, use_mmap: bool) -> None:
    path = tmp_path / "model.engine"
    tensors, blobs = _tensors(), {"cuda/kernels": b"\x7fELF" + bytes(100), "none": b""}
    written = write_engine(path, HEADER, tensors, blobs)
    assert written == path.stat().st_size
    got = read_engine(path, mmap=use_mmap)
    assert got.header == HEADER
    assert got.blobs == blobs
    _assert_same(got, tensors)


def test_dumps_matches_file_and_loads(tmp_path: Path) -> None:
    tensors = _tensors()
    path = tmp_path / "a.engine"
    write_engine(str(path), HEADER, tensors)
    data = dumps_engine(HEADER, tensors)
    assert path.read_bytes() == data
    _assert_same(loads_engine(data), tensors)
    _assert_same(loads_engine(bytearray(data)), tensors)  # writeable source, read-only arrays


def test_mmap_read_does_not_copy(tmp_path: Path) -> None:
    path = tmp_path / "a.engine"
    write_engine(path, {}, {"w": np.ones((256, 256), np.float32)})
    arr = read_engine(path).tensors["w"]
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    assert arr.ctypes.data % 64 == 0
    with pytest.raises(ValueError):
        arr[0, 0] = 2.0


def test_layout_follows_the_documented_format() -> None:
    data = dumps_engine({"h": 1}, {"a": np.arange(3, dtype=np.int16), "b": np.ones(2)})
    magic, version, flags, header_len = struct.unpack_from("<8sIIQ", data)
    assert (magic, version, flags) == (MAGIC, FORMAT_VERSION, 0)
    assert json.loads(data[24 : 24 + header_len]) == {"h": 1}
    (table_len,) = struct.unpack_from("<Q", data, 24 + header_len)
    table_end = 32 + header_len + table_len
    table = json.loads(data[32 + header_len : table_end])
    start = -(-table_end // 64) * 64
    assert [e["offset"] % 64 for e in table] == [0, 0]
    b = table[1]
    assert (b["dtype"], b["shape"], b["nbytes"]) == ("float64", [2], 16)
    assert data[start + b["offset"] : start + b["offset"] + 16] == np.ones(2).tobytes()
    assert data[-32:] == hashlib.sha256(data[:-32]).digest()


@settings(max_examples=60, deadline=None, database=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in DTYPES]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_round_trip_property(arr: np.ndarray) -> None:
    got = loads_engine(dumps_engine({}, {"a": arr, "b": arr.copy()}, {"k": arr.tobytes()}))
    for name in "ab":
        assert got.tensors[name].dtype == arr.dtype and got.tensors[name].shape == arr.shape
        assert got.tensors[name].tobytes() == arr.tobytes()  # bit-exact, NaN payloads included
    assert got.blobs["k"] == arr.tobytes()


@pytest.mark.parametrize("pad", range(0, 130, 7))
def test_every_alignment_of_the_data_section(pad: int) -> None:
    header = {"p": "x" * pad}
    for tensors in ({}, {"e": np.zeros(0, np.int8)}, {"w": np.arange(pad, dtype=np.uint8)}):
        got = loads_engine(dumps_engine(header, tensors))
        assert got.header == header
        _assert_same(got, tensors)


def test_table_ending_on_the_data_boundary() -> None:
    header = b'{"p":"' + b"x" * 22 + b'"}'  # 24 + 30 + 8 + 2 == 64: no padding, no data
    assert loads_engine(_craft(header, b"[]", b"")).header == {"p": "x" * 22}


def test_identical_tensors_are_stored_once() -> None:
    w = np.random.default_rng(1).standard_normal(1 << 16).astype(np.float32)  # 256 KiB
    k = bytes(range(256)) * 256
    one = dumps_engine({}, {"a": w}, {"k": k})
    many = dumps_engine({}, {"a": w, "b": w.copy(), "c": w[::-1][::-1]}, {"k": k, "k2": k})
    assert len(many) < len(one) + 1024  # only table entries added, no second copy of data
    got = loads_engine(many)
    for name in "abc":
        np.testing.assert_array_equal(got.tensors[name], w)
    assert got.blobs == {"k": k, "k2": k}
    table = _table(many)
    assert table["a"]["offset"] == table["b"]["offset"] == table["c"]["offset"]


def test_same_bytes_other_dtype_or_shape_are_kept_apart() -> None:
    w = np.arange(16, dtype=np.int32)
    data = dumps_engine({}, {"a": w, "b": w.reshape(4, 4), "c": w.view(np.float32)})
    table = _table(data)
    assert len({table[n]["offset"] for n in "abc"}) == 3
    got = loads_engine(data)
    assert got.tensors["b"].shape == (4, 4) and got.tensors["c"].dtype == np.float32


def _table(data: bytes) -> dict[str, dict[str, Any]]:
    (header_len,) = struct.unpack_from("<Q", data, 16)
    (table_len,) = struct.unpack_from("<Q", data, 24 + header_len)
    entries = json.loads(data[32 + header_len : 32 + header_len + table_len])
    return {e["name"]: e for e in entries}


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(os.urandom(3 << 20))
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("header", "tensors", "blobs"),
    [
        ({"x": {1, 2}}, {}, {}),
        ({"x": float("nan")}, {}, {}),
        ({}, {"w": np.zeros(2, dtype=object)}, {}),
        ({}, {"w": np.zeros(2, dtype=np.complex64)}, {}),
        ({}, {"w": [1.0, 2.0]}, {}),
        ({}, {"": np.zeros(2)}, {}),
        ({}, {}, {"k": "not bytes"}),
    ],
)
def test_write_rejects_bad_input(tmp_path: Path, header: Any, tensors: Any, blobs: Any) -> None:
    with pytest.raises(EngineFileError, match="cannot store"):
        write_engine(tmp_path / "a.engine", header, tensors, blobs)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- damaged files


def test_every_truncation_is_an_engine_file_error() -> None:
    for cut in range(len(SMALL)):
        with pytest.raises(EngineFileError):
            loads_engine(SMALL[:cut])


@pytest.mark.parametrize("use_mmap", [True, False])
@pytest.mark.parametrize("cut", [0, 5, 8, 30, 100, -33, -1])
def test_truncated_file_on_disk(tmp_path: Path, use_mmap: bool, cut: int) -> None:
    path = tmp_path / "cut.engine"
    path.write_bytes(SMALL[:cut])
    with pytest.raises(EngineFileError, match=r"cut\.engine"):
        read_engine(path, mmap=use_mmap)


def test_every_single_bit_flip_is_detected() -> None:
    for pos in range(len(SMALL)):
        damaged = bytearray(SMALL)
        damaged[pos] ^= 1 << (pos % 8)
        with pytest.raises(EngineFileError):
            loads_engine(bytes(damaged))


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(1, 255)), min_size=1))
def test_random_corruption_is_detected(flips: list[tuple[int, int]]) -> None:
    damaged = bytearray(SMALL)
    for pos, mask in flips:
        damaged[pos] ^= mask
    if bytes(damaged) == SMALL:  # the flips cancelled out
        return
    with pytest.raises(EngineFileError):
        loads_engine(bytes(damaged))


def test_bit_flip_in_weights_says_checksum(tmp_path: Path) -> None:
    path = tmp_path / "flip.engine"
    write_engine(path, {}, {"w": np.zeros(1000, np.float32)})
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10
    path.write_bytes(data)
    with pytest.raises(EngineFileError, match=r"flip\.engine.*corrupt \(checksum mismatch\)"):
        read_engine(path)


@pytest.mark.parametrize("data", [b"\x08\x07\x12\x04onnx" + bytes(100), b"EDGEINF\x01" + SMALL[8:]])
def test_wrong_magic(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    with pytest.raises(EngineFileError, match=r"model\.onnx: not an edge_infer engine file"):
        read_engine(path)


def test_future_version_says_how_to_rebuild() -> None:
    data = _craft(b"{}", [], b"", version=FORMAT_VERSION + 1)
    with pytest.raises(EngineCompatibilityError) as info:
        loads_engine(data, name="new.engine")
    message = str(info.value)
    assert "new.engine" in message and f"format version {FORMAT_VERSION + 1}" in message
    assert f"reads format version {FORMAT_VERSION}" in message
    assert "rebuild the engine with `edge-infer build` using this edge_infer version" in message


def test_unknown_flags_are_refused() -> None:
    with pytest.raises(EngineFileError, match="unknown flags"):
        loads_engine(_craft(b"{}", [], b"", flags=1))


@pytest.mark.parametrize("header_len", [MAX_HEADER_BYTES + 1, 2**64 - 1])
def test_oversized_header_length(header_len: int) -> None:
    with pytest.raises(EngineFileError, match="exceeds the limit"):
        loads_engine(_craft(b"{}", [], b"", header_len=header_len))


def test_header_length_past_end_is_truncation() -> None:
    with pytest.raises(EngineFileError, match="truncated"):
        loads_engine(_craft(b"{}", [], b"", header_len=1000))


def test_crafted_valid_file_loads() -> None:
    data = np.arange(4, dtype="<f4").tobytes()
    got = loads_engine(_craft(b'{"a": [1]}', [_entry()], data))
    assert got.header == {"a": [1]}
    np.testing.assert_array_equal(got.tensors["w"], np.arange(4, dtype=np.float32))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(offset=64), "outside the data section"),
        (_entry(shape=[1 << 40], nbytes=1 << 42), "outside the data section"),
        (_entry(shape=[2**40, 2**40], nbytes=2**82), "too large"),
        (_entry(shape=[0, 2**62], nbytes=0), "too large"),
        (_entry(dtype="object"), "unsupported dtype"),
        (_entry(dtype="complex64"), "unsupported dtype"),
        (_entry(dtype="<f4"), "unsupported dtype"),
        (_entry(dtype=None), "unsupported dtype"),
        (_entry(shape=[-4], nbytes=-16), "invalid shape"),
        (_entry(shape=[True, 4]), "invalid shape"),
        (_entry(shape=[4.0]), "invalid shape"),
        (_entry(shape=[1] * 33), "invalid shape"),
        (_entry(nbytes=12), "nbytes 12"),
        (_entry(offset=-64), "invalid offset"),
        (_entry(offset=4, shape=[1], nbytes=4), "invalid offset"),
        (_entry(kind="weights"), "unknown kind"),
        (_entry(kind="blob"), "is a blob"),
        (_entry(name=""), "no valid name"),
        ({"name": "w"}, "exactly the keys"),
        ({**_entry(), "extra": 1}, "exactly the keys"),
        ("w", "exactly the keys"),
    ],
)
def test_bad_table_entry_with_valid_checksum(entry: Any, message: str) -> None:
    data = np.arange(16, dtype="<f4").tobytes()
    with pytest.raises(EngineFileError, match=message):
        loads_engine(_craft(b"{}", [entry], data))


@pytest.mark.parametrize(
    ("header", "table", "message"),
    [
        (b"{", b"[]", "header is not valid"),
        (b"\xff\xfe", b"[]", "header is not valid"),
        (b'{"x": NaN}', b"[]", "header is not valid"),
        (b"[" * 100_000, b"[]", "header is not valid"),
        (b"[]", b"[]", "must be a JSON object"),
        (b"{}", b"{}", "must be a JSON object"),
        (b"{}", b"[1,", "table is not valid"),
        (b"{}", json.dumps([_entry(), _entry()]).encode(), "two tensors named 'w'"),
    ],
)
def test_bad_json_with_valid_checksum(header: bytes, table: bytes, message: str) -> None:
    data = np.arange(4, dtype="<f4").tobytes()
    with pytest.raises(EngineFileError, match=message):
        loads_engine(_craft(header, table, data))


@pytest.mark.parametrize("use_mmap", [True, False])
def test_crafted_file_on_disk_is_checked(tmp_path: Path, use_mmap: bool) -> None:
    path = tmp_path / "evil.engine"
    path.write_bytes(_craft(b"{}", [_entry(offset=1 << 20)], bytes(16)))
    with pytest.raises(EngineFileError, match=r"evil\.engine: .*outside the data section"):
        read_engine(path, mmap=use_mmap)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EngineFileError, match=r"nothere\.engine"):
        read_engine(tmp_path / "nothere.engine")


# ------------------------------------------------------------------------- atomic writes


class _DiskFull:
    """A file wrapper that fails once ``limit`` bytes have been written."""

    def __init__(self, f: Any, limit: int, error: BaseException) -> None:
        self.f, self.left, self.error = f, limit, error

    def write(self, chunk: Any) -> int:
        if len(chunk) > self.left:
            self.f.write(bytes(chunk)[: self.left])
            raise self.error
        self.left -= len(chunk)
        return self.f.write(chunk)


def _fail_mid_write(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    real = serialize._write_chunks
    monkeypatch.setattr(serialize, "_write_chunks", lambda f, c: real(_DiskFull(f, 200, error), c))


def _boom(*args: Any) -> None:
    raise OSError(errno.EIO, "simulated I/O error")


@pytest.mark.parametrize("failure", ["disk_full", "interrupt", "fsync", "replace"])
def test_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    path = tmp_path / "model.engine"
    write_engine(path, {"v": 1}, {"w": np.ones(100, np.float32)})
    before = path.read_bytes()
    expected: type[BaseException] = EngineFileError
    if failure == "disk_full":
        _fail_mid_write(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    elif failure == "interrupt":
        _fail_mid_write(monkeypatch, KeyboardInterrupt())
        expected = KeyboardInterrupt
    else:
        monkeypatch.setattr(os, failure, _boom)
    with pytest.raises(expected):
        write_engine(path, {"v": 2}, {"w": np.zeros(1000, np.float32)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.engine"]
    assert read_engine(path).header == {"v": 1}


def test_successful_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "model.engine"
    write_engine(path, {"v": 1}, {})
    write_engine(path, {"v": 2}, {})
    assert [p.name for p in tmp_path.iterdir()] == ["model.engine"]
    assert read_engine(path).header == {"v": 2}


def test_new_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_engine(tmp_path / "a.engine", {}, {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.engine").stat().st_mode & 0o777 == 0o640


def test_module_never_unpickles() -> None:
    source = inspect.getsource(serialize)
    for word in ("pickle", "eval(", "exec(", "np.load("):
        assert word not in source
