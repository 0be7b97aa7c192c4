"""The engine file: a safe, versioned, checksummed container for a built engine.

Layout (every integer little-endian; see ``docs/engine-format.md``)::

    MAGIC            8 bytes   b"EDGEINF\\x00"
    format version   u32       FORMAT_VERSION
    flags            u32       0 (reserved: a reader refuses any flag it does not know)
    header length    u64       at most MAX_HEADER_BYTES
    header           UTF-8 JSON object: plan, bindings, build record, ...
    table length     u64       at most MAX_HEADER_BYTES
    table            UTF-8 JSON list of entries
                     {"name", "kind": "tensor" | "blob", "dtype", "shape", "offset", "nbytes"}
    padding          zero bytes up to the next multiple of 64: the data section starts there
    data section     payloads; each entry's ``offset`` is relative to the section start and
                     a multiple of 64, so memory-mapped arrays are aligned
    checksum         32 bytes: SHA-256 of every byte before it

``dtype`` is a numpy dtype name from a whitelist (float16/32/64, int8/16/32/64,
uint8/16/32/64, bool), stored little-endian. A blob is an opaque per-backend artifact
(e.g. compiled kernels) stored as ``uint8`` of shape ``[nbytes]``. Entries with the same
dtype, shape and bytes are stored once; several names may share one offset.

Nothing here deserializes Python objects or evaluates code: the header and table are plain
JSON, and every table entry is checked (dtype, shape, size, bounds) before an array is made
from it, even when the checksum matches: a matching checksum proves integrity, not honesty.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import mmap as _mmap
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edge_infer.atomic import atomic_open
from edge_infer.errors import EngineCompatibilityError, EngineFileError

#: 2: activations carry their storage dtype (fp32 / fp16 / int8 + scale) in the plans; a
#: version-1 file (every activation float32) is refused with the rebuild message
FORMAT_VERSION: int = 2
MAGIC: bytes = b"EDGEINF\x00"
MAX_HEADER_BYTES: int = 16 * 1024 * 1024
ALIGNMENT: int = 64
MAX_NDIM: int = 32

_PREFIX = struct.Struct("<8sIIQ")  # magic, format version, flags, header length
_U64 = struct.Struct("<Q")
_DIGEST_BYTES = 32
_MIN_SIZE = _PREFIX.size + _U64.size + _DIGEST_BYTES
_MAX_NBYTES = 2**62  # numpy refuses shapes whose byte size does not fit in an intp
_DTYPE_NAMES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64"]
_DTYPE_NAMES += ["uint8", "uint16", "uint32", "uint64", "bool"]
_DTYPES: dict[str, np.dtype] = {name: np.dtype(name).newbyteorder("<") for name in _DTYPE_NAMES}
_ENTRY_KEYS = ("name", "kind", "dtype", "shape", "offset", "nbytes")
_REBUILD = "rebuild the engine with `edge-infer build` using this edge_infer version"

_Entry = tuple[str, str, np.dtype, tuple[int, ...], int, int]  # name kind dtype shape off nbytes


@dataclass(frozen=True, eq=False)
class EngineFile:
    """A parsed engine file. Arrays are read-only; with ``mmap=True`` they view the file."""

    header: dict[str, Any]
    tensors: dict[str, np.ndarray]
    blobs: dict[str, bytes]


# --------------------------------------------------------------------------- writing


def write_engine(
    path: str | os.PathLike[str],
    header: Mapping[str, Any],
    tensors: Mapping[str, np.ndarray],
    blobs: Mapping[str, bytes] | None = None,
) -> int:
    """Write an engine file atomically and return the number of bytes written.

    The bytes go to a temporary file in the same directory, which is flushed, fsynced and
    renamed over ``path``; the directory is then fsynced. On any error the temporary file is
    removed and a file already at ``path`` is left untouched.
    """
    target = Path(path)
    chunks = _layout(header, tensors, blobs or {})  # validates before anything touches disk
    try:
        with atomic_open(target, "wb") as f:
            written = _write_chunks(f, chunks)
    except OSError as e:
        raise EngineFileError(f"cannot write engine file {target}: {e}") from e
    return written


def dumps_engine(
    header: Mapping[str, Any],
    tensors: Mapping[str, np.ndarray],
    blobs: Mapping[str, bytes] | None = None,
) -> bytes:
    """Return the bytes :func:`write_engine` would write."""
    buf = io.BytesIO()
    _write_chunks(buf, _layout(header, tensors, blobs or {}))
    return buf.getvalue()


def _layout(
    header: Mapping[str, Any], tensors: Mapping[str, np.ndarray], blobs: Mapping[str, bytes]
) -> list[bytes | memoryview]:
    """Validate the inputs and return the file's chunks in order, without the checksum."""
    if not isinstance(header, Mapping):
        raise EngineFileError(f"engine header must be a mapping, got {type(header).__name__}")
    items = [("tensor", name, *_payload("tensor", name, v)) for name, v in tensors.items()]
    items += [("blob", name, *_payload("blob", name, v)) for name, v in blobs.items()]
    entries: list[dict[str, Any]] = []
    payloads: list[tuple[int, memoryview]] = []
    stored: dict[tuple[str, tuple[int, ...], bytes], int] = {}
    end = 0
    for kind, name, dtype, shape, view in items:
        key = (dtype, shape, hashlib.sha256(view).digest())
        if key not in stored:  # identical content is stored once
            stored[key] = _align(end)
            payloads.append((stored[key], view))
            end = stored[key] + view.nbytes
        entries.append(
            {"name": name, "kind": kind, "dtype": dtype, "shape": list(shape),
             "offset": stored[key], "nbytes": view.nbytes}
        )  # fmt: skip
    head = _encode_json(dict(header), "header")
    table = _encode_json(entries, "table")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(head)) + head
    prefix += _U64.pack(len(table)) + table
    chunks: list[bytes | memoryview] = [prefix, bytes(_align(len(prefix)) - len(prefix))]
    pos = 0
    for offset, view in payloads:
        chunks += [bytes(offset - pos), view]
        pos = offset + view.nbytes
    return chunks


def _payload(kind: str, name: Any, value: Any) -> tuple[str, tuple[int, ...], memoryview]:
    """Return the dtype name, shape and little-endian bytes of one tensor or blob to store."""
    what = f"cannot store {kind} {name!r}"
    if not isinstance(name, str) or not name:
        raise EngineFileError(f"{what}: its name must be a non-empty str")
    if kind == "blob":
        if not isinstance(value, bytes | bytearray):
            raise EngineFileError(f"{what}: expected bytes, got {type(value).__name__}")
        view = memoryview(value)
        return "uint8", (view.nbytes,), view
    if not isinstance(value, np.ndarray) or value.dtype.name not in _DTYPES:
        got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise EngineFileError(f"{what}: expected a numpy array of {', '.join(_DTYPES)}; got {got}")
    flat = np.ascontiguousarray(value, dtype=_DTYPES[value.dtype.name]).reshape(-1)
    return value.dtype.name, tuple(int(d) for d in value.shape), memoryview(flat.view(np.uint8))


def _encode_json(obj: Any, what: str) -> bytes:
    try:
        data = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        raw = data.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise EngineFileError(f"cannot store the engine {what}: it is not plain JSON: {e}") from e
    if len(raw) > MAX_HEADER_BYTES:
        raise EngineFileError(
            f"the engine {what} is {len(raw)} bytes; the limit is {MAX_HEADER_BYTES} bytes"
        )
    return raw


def _write_chunks(f: BinaryIO, chunks: list[bytes | memoryview]) -> int:
    """Write the chunks and their SHA-256 to ``f``; return the number of bytes written."""
    digest = hashlib.sha256()
    written = 0
    for chunk in chunks:
        digest.update(chunk)
        f.write(chunk)
        written += len(chunk)
    f.write(digest.digest())
    return written + _DIGEST_BYTES


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


# --------------------------------------------------------------------------- reading


def read_engine(path: str | os.PathLike[str], *, mmap: bool = True) -> EngineFile:
    """Read and fully check an engine file; raise :class:`EngineFileError` naming the file.

    With ``mmap=True`` the tensors are read-only views of a read-only memory map, so weights
    are not copied. Engine files are replaced by rename, never rewritten in place, so a
    mapping stays valid while a newer engine is written over the same path.
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as f:
            if not mmap or os.fstat(f.fileno()).st_size < _MIN_SIZE:  # cannot map 0 bytes
                return _parse(f.read(), where)
            buf = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
    except OSError as e:
        raise EngineFileError(f"cannot read engine file {where}: {e.strerror or e}") from e
    try:
        return _parse(buf, where)
    except BaseException:
        # A view still held by the traceback blocks close(); the map then closes when the
        # traceback is collected, so there is nothing to leak.
        with contextlib.suppress(BufferError):
            buf.close()
        raise


def loads_engine(data: bytes, *, name: str = "<bytes>") -> EngineFile:
    """Parse an engine file held in memory; ``name`` is used in error messages."""
    return _parse(data, name)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks (used for model hashes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse(buf: Any, where: str) -> EngineFile:
    with memoryview(buf) as view:  # released before arrays are made from ``buf``
        header, entries, data_start = _check_layout(view, where)
    tensors: dict[str, np.ndarray] = {}
    blobs: dict[str, bytes] = {}
    for name, kind, dtype, shape, offset, nbytes in entries:
        start = data_start + offset
        if kind == "blob":
            blobs[name] = bytes(buf[start : start + nbytes])
            continue
        array = np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=start)
        array = array.reshape(shape)
        array.flags.writeable = False
        tensors[name] = array
    return EngineFile(header=header, tensors=tensors, blobs=blobs)


def _check_layout(view: memoryview, where: str) -> tuple[dict[str, Any], list[_Entry], int]:
    """Check every structural fact about the file; return header, entries, data start."""
    size = view.nbytes
    if bytes(view[: len(MAGIC)]) != MAGIC[: min(size, len(MAGIC))]:
        raise EngineFileError(f"{where}: not an edge_infer engine file (bad magic bytes)")
    if size < _MIN_SIZE:
        raise EngineFileError(f"{where}: engine file is truncated ({size} bytes)")
    _, version, flags, header_len = _PREFIX.unpack_from(view)
    if version != FORMAT_VERSION:
        age = "newer" if version > FORMAT_VERSION else "older"
        raise EngineCompatibilityError(
            f"{where}: engine file has format version {version}, {age} than this edge_infer, "
            f"which reads format version {FORMAT_VERSION}; {_REBUILD}"
        )
    if flags != 0:
        raise EngineFileError(f"{where}: engine file has unknown flags 0x{flags:08x}; {_REBUILD}")
    data_end = size - _DIGEST_BYTES
    # The header is followed by the u64 table length; the table by the (maybe empty) data.
    table_pos = _check_length(header_len, _PREFIX.size, data_end - _U64.size, "header", where)
    (table_len,) = _U64.unpack_from(view, table_pos)
    table_end = _check_length(table_len, table_pos + _U64.size, data_end, "table", where)
    data_start = _align(table_end)
    if data_start > data_end:
        raise EngineFileError(f"{where}: engine file is truncated (data section missing)")
    if hashlib.sha256(view[:data_end]).digest() != bytes(view[data_end:]):
        raise EngineFileError(
            f"{where}: engine file is corrupt (checksum mismatch); it was truncated or changed "
            "after it was written: copy it again or rebuild it"
        )
    header = _load_json(bytes(view[_PREFIX.size : table_pos]), "header", where)
    table = _load_json(bytes(view[table_pos + _U64.size : table_end]), "table", where)
    if not isinstance(header, dict) or not isinstance(table, list):
        raise EngineFileError(f"{where}: engine header must be a JSON object, table a list")
    entries = [_check_entry(e, i, data_end - data_start, where) for i, e in enumerate(table)]
    seen: set[tuple[str, str]] = set()
    for name, kind, *_ in entries:
        if (kind, name) in seen:
            raise EngineFileError(f"{where}: engine table has two {kind}s named {name!r}")
        seen.add((kind, name))
    return header, entries, data_start


def _check_length(length: int, start: int, limit: int, what: str, where: str) -> int:
    """Bound a section by MAX_HEADER_BYTES and by ``limit``; return where the section ends."""
    if length > MAX_HEADER_BYTES:
        raise EngineFileError(
            f"{where}: engine {what} length {length} exceeds the limit of {MAX_HEADER_BYTES} bytes"
        )
    if start + length > limit:
        raise EngineFileError(f"{where}: engine file is truncated ({what} runs past the end)")
    return start + length


def _load_json(raw: bytes, what: str, where: str) -> Any:
    def reject(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=reject)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise EngineFileError(f"{where}: engine {what} is not valid UTF-8 JSON: {e}") from e


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0  # bool is an int subclass: excluded


def _check_entry(entry: Any, index: int, data_len: int, where: str) -> _Entry:
    """Check one table entry against the whitelist and the data section bounds."""

    def bad(why: str) -> EngineFileError:
        label = entry.get("name") if isinstance(entry, dict) else None
        return EngineFileError(f"{where}: engine table entry {index} ({label!r}) {why}")

    if not isinstance(entry, dict) or sorted(entry) != sorted(_ENTRY_KEYS):
        raise bad(f"must have exactly the keys {', '.join(_ENTRY_KEYS)}")
    name, kind, dtype, shape, offset, nbytes = (entry[key] for key in _ENTRY_KEYS)
    if not isinstance(name, str) or not name:
        raise bad("has no valid name")
    if kind not in ("tensor", "blob"):
        raise bad(f"has unknown kind {kind!r}")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise bad(f"has unsupported dtype {dtype!r}; supported: {', '.join(_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(map(_is_count, shape)):
        raise bad(f"has invalid shape {shape!r} (a list of at most {MAX_NDIM} ints >= 0)")
    if kind == "blob" and (dtype != "uint8" or len(shape) != 1):
        raise bad("is a blob but not uint8 of shape [nbytes]")
    itemsize = _DTYPES[dtype].itemsize
    if math.prod(d for d in shape if d) * itemsize >= _MAX_NBYTES:
        raise bad(f"has a shape too large for any array: {shape}")
    if not _is_count(offset) or not _is_count(nbytes) or offset % ALIGNMENT:
        raise bad(f"has invalid offset {offset!r} or nbytes {nbytes!r}")
    if nbytes != math.prod(shape) * itemsize:
        raise bad(f"has nbytes {nbytes}, but shape {shape} of {dtype} needs a different size")
    if offset + nbytes > data_len:
        raise bad(f"lies outside the data section ({offset}+{nbytes} > {data_len} bytes)")
    return name, kind, _DTYPES[dtype], tuple(shape), offset, nbytes
