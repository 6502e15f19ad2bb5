"""The weights wire format as files, chunk by chunk: no whole copy of a model in memory.

``serialization.to_bytes`` and ``from_bytes`` hold a blob in memory, which is
right for small models and wrong for models of gigabytes. Here the same
format is written and read in pieces:

- ``blob_chunks(arrays)`` yields exactly the bytes of ``to_bytes(arrays)``,
  the tensors' own memory, never a joined copy; ``write_file`` writes them,
  ``to_buffer`` copies them into one buffer (hashing them on the way).
- ``file_plan(tensors)`` is the header ``to_bytes`` writes for a layout and
  where each tensor's bytes go: a writer that computes tensors piece by
  piece (the leader's streamed merge) writes the same file.
- ``check_file(path, layout)`` makes the checks of ``from_bytes`` (header,
  tensor names, count, dtypes, shapes, finite values) reading the file a
  chunk at a time, and raises the same ``WeightsFormatError`` codes.
- ``memmap_arrays(path, layout)`` gives a checked file's tensors as read-only
  memory maps (pages come from the page cache, not the process's heap).
- ``read_piece`` reads a run of one tensor's values into a caller's buffer.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from safetensors.numpy import save as _st_save

from swarm_wire.serialization import FORMAT, HEADER_ALLOWANCE, WeightsFormatError, new_buffer, parse_layout

CHUNK_BYTES = 16 << 20  # what one read, check or write takes at a time

_ST_DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "I32": "int32",
    "U32": "uint32",
    "I64": "int64",
    "U64": "uint64",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
}
_NP_TO_ST = {v: k for k, v in _ST_DTYPES.items()}


@dataclass(frozen=True)
class TensorSpan:
    """Where tensor ``index`` lies in a blob file: ``nbytes`` from byte ``begin`` of the file."""

    index: int
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    nbytes: int

    @property
    def size(self) -> int:
        """Number of values."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class FilePlan:
    """What ``to_bytes`` writes for a layout: the header (with its length prefix) and the tensors' spans.

    ``order`` lists tensor indices as their bytes follow each other in the file (safetensors sorts
    them by dtype, then name); ``spans[i]`` is tensor i's place in the file.
    """

    header: bytes
    order: list[int]
    spans: list[TensorSpan]

    @property
    def total_bytes(self) -> int:
        """The file's size."""
        return len(self.header) + sum(s.nbytes for s in self.spans)


def _storage_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if shape != () else (1,)  # to_bytes stores a scalar as shape [1] (np.ascontiguousarray)


def file_plan(tensors: Sequence[tuple[np.dtype, tuple[int, ...]]]) -> FilePlan:
    """The header and spans ``to_bytes`` gives arrays of these dtypes and shapes (byte for byte)."""
    names = [f"{i:05d}" for i in range(len(tensors))]
    # The order in which safetensors lays tensors out, asked of safetensors itself on empty arrays.
    empty = _st_save({n: np.zeros(0, np.dtype(dt)) for n, (dt, _) in zip(names, tensors, strict=True)})
    (n,) = struct.unpack("<Q", empty[:8])
    order = [int(k) for k in json.loads(empty[8 : 8 + n]) if k != "__metadata__"]
    entries: dict[str, object] = {"__metadata__": {"format": FORMAT}}
    offset = 0
    ranges: dict[int, tuple[int, int]] = {}
    for i in order:
        dt, shape = np.dtype(tensors[i][0]), _storage_shape(tuple(tensors[i][1]))
        nbytes = dt.itemsize * int(np.prod(shape, dtype=np.int64))
        entries[names[i]] = {
            "dtype": _NP_TO_ST[dt.name],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        ranges[i] = (offset, nbytes)
        offset += nbytes
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    header = struct.pack("<Q", len(text)) + text
    spans = [
        TensorSpan(i, np.dtype(dt), _storage_shape(tuple(shape)), len(header) + ranges[i][0], ranges[i][1])
        for i, (dt, shape) in enumerate(tensors)
    ]
    return FilePlan(header, order, spans)


def _little_endian(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


def blob_chunks(arrays: Sequence[np.ndarray], chunk_bytes: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """The bytes of ``to_bytes(arrays)`` in pieces of at most ``chunk_bytes`` (views of the arrays' memory)."""
    plan = file_plan([(a.dtype, a.shape) for a in arrays])
    yield memoryview(plan.header)
    for i in plan.order:
        view = memoryview(_little_endian(arrays[i]).reshape(-1).view(np.uint8))
        for start in range(0, len(view), chunk_bytes):
            yield view[start : start + chunk_bytes]


def to_buffer(arrays: Sequence[np.ndarray]) -> tuple[memoryview, str]:
    """The bytes of ``to_bytes(arrays)`` in a ``serialization.new_buffer`` (read-only), and their sha256.

    Each piece is hashed right after it is copied, while it is still in the cache; no ``bytes`` of the
    blob's size is made (see ``new_buffer``).
    """
    buffer = new_buffer(blob_size(arrays))
    digest, at = hashlib.sha256(), 0
    for chunk in blob_chunks(arrays, 1 << 20):
        piece = buffer[at : at + len(chunk)]
        piece[:] = chunk
        digest.update(piece)
        at += len(chunk)
    return buffer.toreadonly(), digest.hexdigest()


def blob_size(arrays: Sequence[np.ndarray]) -> int:
    """``len(to_bytes(arrays))``, without making it."""
    return file_plan([(a.dtype, a.shape) for a in arrays]).total_bytes


def write_file(arrays: Sequence[np.ndarray], path: str | Path) -> tuple[str, int]:
    """Writes ``to_bytes(arrays)`` to ``path`` chunk by chunk; returns its sha256 and size."""
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as fh:
        for chunk in blob_chunks(arrays):
            digest.update(chunk)
            fh.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_whole(fh: BinaryIO, size: int, digest: hashlib._Hash | None = None) -> memoryview:
    """Reads an open file of ``size`` bytes into one ``new_buffer``; the bytes read, read-only.

    Reads up to one byte more than ``size``: a result longer than ``size`` says the file grew meanwhile.
    ``digest``: updated with the bytes read, a megabyte at a time as they come (a socket's body is
    hashed while the rest of it is still on the way, each piece while it is in the cache).
    """
    buffer = new_buffer(size + 1)
    got = 0
    step = 1 << 20 if digest is not None else len(buffer)
    while got < len(buffer) and (n := fh.readinto(buffer[got : got + step])):  # type: ignore[attr-defined]
        if digest is not None:
            digest.update(buffer[got : got + n])
        got += n
    return buffer[:got].toreadonly()


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file, read chunk by chunk."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- reading


def _bad(message: str) -> WeightsFormatError:
    return WeightsFormatError("NOT_SAFETENSORS", f"not a valid safetensors blob: {message}")


class BufferReader:
    """The ``read`` and ``seek`` of a file over bytes in memory, for ``read_spans`` (reads copy, the rest stays)."""

    def __init__(self, view: memoryview) -> None:
        self.view, self.pos = view, 0

    def seek(self, pos: int) -> int:
        self.pos = pos
        return pos

    def read(self, n: int) -> bytes:
        out = bytes(self.view[self.pos : self.pos + n])
        self.pos += len(out)
        return out


def read_spans(fh: BinaryIO | BufferReader, file_size: int) -> list[TensorSpan]:
    """The tensors of an open safetensors file (or a ``BufferReader``), by index, after safetensors' own
    structural checks.

    Raises WeightsFormatError: ``NOT_SAFETENSORS`` (header, offsets, a size that does not add up)
    or ``WRONG_TENSORS`` (names other than 00000, 00001, ...), as ``from_bytes`` does.
    """
    fh.seek(0)
    prefix = fh.read(8)
    if len(prefix) < 8:
        raise WeightsFormatError("NOT_SAFETENSORS", "the body is shorter than a safetensors header")
    (n,) = struct.unpack("<Q", prefix)
    if n > file_size - 8 or n > HEADER_ALLOWANCE:
        raise WeightsFormatError("NOT_SAFETENSORS", "the safetensors header length is out of range")
    raw = fh.read(n)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise WeightsFormatError("NOT_SAFETENSORS", f"the safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WeightsFormatError("NOT_SAFETENSORS", "the safetensors header is not an object")
    # What safetensors checks before it hands out a tensor (its read_metadata and validate).
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _bad("__metadata__ is not an object of strings")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise _bad(f"tensor {name!r} is not described by an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _ST_DTYPES:
            raise _bad(f"tensor {name!r} has dtype {str(dtype)[:20]!r}, which numpy cannot read")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise _bad(f"tensor {name!r} has no valid shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
            raise _bad(f"tensor {name!r} has no valid data_offsets")
        entries.append((name, np.dtype(_ST_DTYPES[dtype]).newbyteorder("<"), tuple(shape), offsets[0], offsets[1]))
    end = 0
    for name, dt, shape, begin, stop in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != end or stop < begin:
            raise _bad(f"tensor {name!r} has invalid offsets [{begin}, {stop}]")
        if (stop - begin) != dt.itemsize * int(np.prod(shape, dtype=object)):
            raise _bad(f"tensor {name!r}: {stop - begin} bytes do not hold shape {list(shape)} of {dt.name}")
        end = stop
    if 8 + n + end != file_size:
        raise _bad(f"the data is {file_size - 8 - n} bytes; the header describes {end}")
    names = sorted(e[0] for e in entries)
    if names != [f"{i:05d}" for i in range(len(names))]:
        raise WeightsFormatError(
            "WRONG_TENSORS", f"tensors must be named 00000..{len(names) - 1:05d} in order, got {names[:5]}..."
        )
    return [TensorSpan(int(nm), dt, shape, 8 + n + b, s - b) for nm, dt, shape, b, s in sorted(entries)]


def check_layout(spans: list[TensorSpan], layout: str) -> list[TensorSpan]:
    """Checks the tensors' count, dtypes and shapes against the layout (as ``from_bytes``); scalars get shape ()."""
    spec = parse_layout(layout)
    if len(spec) != len(spans):
        raise WeightsFormatError(
            "WRONG_TENSORS", f"the blob has {len(spans)} tensors; the task's model has {len(spec)}"
        )
    out = []
    for i, (span, (dt, shape)) in enumerate(zip(spans, spec, strict=True)):
        if shape == () and span.shape == (1,):
            span = TensorSpan(span.index, span.dtype, (), span.begin, span.nbytes)
        if span.dtype != dt:
            raise WeightsFormatError("WRONG_DTYPE", f"tensor {i} has dtype {span.dtype}; the task's model has {dt}")
        if span.shape != shape:
            raise WeightsFormatError(
                "WRONG_SHAPE", f"tensor {i} has shape {list(span.shape)}; the task's model has {list(shape)}"
            )
        out.append(span)
    return out


def read_piece(fh: BinaryIO, span: TensorSpan, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Values ``start`` to ``stop`` of the tensor at ``span`` (flat, in its dtype), read with one ``readinto``.

    ``out``: a buffer of at least ``stop - start`` values of the tensor's dtype to read into.
    """
    count = stop - start
    buf = np.empty(count, span.dtype) if out is None else out[:count]
    fh.seek(span.begin + start * span.dtype.itemsize)
    view = memoryview(buf).cast("B")
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise WeightsFormatError("NOT_SAFETENSORS", "the file ended inside a tensor (it changed while read)")
        got += n
    return buf


def check_file(path: str | Path, layout: str | None = None, max_bytes: int | None = None) -> list[TensorSpan]:
    """The checks of ``from_bytes`` on a file, read a chunk at a time; returns its tensors' spans by index.

    Raises ``WeightsFormatError`` with the code ``from_bytes`` gives the same bytes: ``TOO_LARGE``,
    ``NOT_SAFETENSORS``, ``WRONG_TENSORS``, ``WRONG_DTYPE``, ``WRONG_SHAPE``, ``NOT_FINITE``.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise WeightsFormatError("TOO_LARGE", f"the blob has {size} bytes; at most {max_bytes} allowed")
        spans = read_spans(fh, size)
        if layout is not None:
            spans = check_layout(spans, layout)
        buf = np.empty(CHUNK_BYTES, np.uint8)
        for span in spans:
            if span.dtype.kind != "f":
                continue
            step = CHUNK_BYTES // span.dtype.itemsize
            bad = 0
            for start in range(0, span.size, step):
                stop = min(span.size, start + step)
                piece = read_piece(fh, span, start, stop, buf.view(span.dtype))
                bad += int(piece.size - np.count_nonzero(np.isfinite(piece)))
            if bad:
                raise WeightsFormatError("NOT_FINITE", f"tensor {span.index} has {bad} NaN or infinite values")
    return spans


def memmap_arrays(path: str | Path, spans: list[TensorSpan]) -> list[np.ndarray]:
    """A checked file's tensors (``check_file``'s spans) as read-only memory maps of the file, by index.

    The maps stay valid after the file is deleted (until dropped); their pages are the page cache's.
    """
    if os.path.getsize(path) == 0:
        return [np.empty(s.shape, s.dtype) for s in spans]
    whole = np.memmap(path, dtype=np.uint8, mode="r")
    return [whole[s.begin : s.begin + s.nbytes].view(s.dtype).reshape(s.shape) for s in spans]
