"""Reading one ONNX tensor's external data, every field checked before it is used.

A model's ``external_data`` entries are text written by whoever made the file: ``location``
must be a relative path inside the model's folder (no ``..``, no absolute path, no NUL, no
symlink, no hard link — a link could be made to any file the builder may read), ``offset``
and ``length`` decimal integers whose range lies inside the file, and ``length`` the byte size
the tensor's dims and type need. The file is opened without following a final symlink and
without blocking (a FIFO is refused, not waited on), and checked on the open descriptor, so it
cannot be swapped between the check and the read.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import onnx

from edge_infer.engine.dtypes import numpy_dtype
from edge_infer.errors import ExternalDataError

#: the keys of an ONNX external data entry (onnx/external_data_helper.py)
KEYS = frozenset({"location", "offset", "length", "checksum", "basepath"})
_MAX_DIGITS = 20  # a u64


def read_external(tensor: onnx.TensorProto, base: Path, where: str) -> bytes:
    """The bytes of ``tensor``'s external data, read from inside the folder ``base``."""
    info = {e.key: e.value for e in tensor.external_data}
    unknown = sorted(set(info) - KEYS)
    if unknown:
        raise ExternalDataError(f"{where}: unknown external data keys {unknown}; the keys are "
                                f"{', '.join(sorted(KEYS))}")  # fmt: skip
    file = _checked_location(info.get("location", ""), base, where)
    offset = _count(info, "offset", where)
    length = _count(info, "length", where)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(file, flags)
    except OSError as exc:
        raise ExternalDataError(f"{where}: cannot open it: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ExternalDataError(f"{where}: is not a regular file")
        if st.st_nlink > 1:
            raise ExternalDataError(
                f"{where}: the file has {st.st_nlink} hard links; like "
                "symlinks, hard links are refused: copy the file instead"
            )
        offset = 0 if offset is None else offset
        if offset > st.st_size:
            raise ExternalDataError(f"{where}: offset {offset} is past the end of the file "
                                    f"({st.st_size} bytes)")  # fmt: skip
        length = st.st_size - offset if length is None else length
        if offset + length > st.st_size:
            raise ExternalDataError(f"{where}: offset {offset} + length {length} is larger "
                                    f"than the file ({st.st_size} bytes)")  # fmt: skip
        _check_tensor_size(tensor, length, where)
        raw = _pread_all(fd, length, offset)
    except OSError as exc:
        raise ExternalDataError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) != length:
        raise ExternalDataError(f"{where}: file is shorter than the declared length")
    return raw


def _checked_location(location: str, base: Path, where: str) -> Path:
    parts = Path(location).parts
    if not location or os.path.isabs(location) or ".." in parts or "\x00" in location:
        raise ExternalDataError(f"{where}: must be a relative path inside the model's folder")
    if len(location.encode("utf-8", "surrogateescape")) > 4096:
        raise ExternalDataError(f"{where}: the location is longer than any path")
    file = base / location
    try:
        inside = file.resolve().is_relative_to(base)
        link = file.is_symlink()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long for the system
        raise ExternalDataError(f"{where}: cannot resolve the location: {exc}") from None
    if link or not inside:
        raise ExternalDataError(f"{where}: symlinks and paths leaving the folder are refused")
    return file


def _count(info: Mapping[str, str], key: str, where: str) -> int | None:
    """A non-negative decimal integer (``int()`` alone would take " 1", "+1" or "1_0")."""
    text = info.get(key)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS):
        raise ExternalDataError(f"{where}: {key} {text[:40]!r} is not a non-negative integer")
    return int(text)


def _check_tensor_size(tensor: onnx.TensorProto, length: int, where: str) -> None:
    """The data holds exactly the tensor's elements (a fixed-size element type)."""
    dtype = numpy_dtype(tensor.data_type, where)
    if any(d < 0 for d in tensor.dims):
        raise ExternalDataError(f"{where}: tensor dims {list(tensor.dims)} are negative")
    need = math.prod(tensor.dims) * dtype.itemsize
    if need != length:
        raise ExternalDataError(f"{where}: the tensor {dtype.name}{list(tensor.dims)} needs "
                                f"{need} bytes, the external data has {length}")  # fmt: skip


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    done = 0
    while done < length:
        chunk = os.pread(fd, min(length - done, 1 << 26), offset + done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)
