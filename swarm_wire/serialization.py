"""The weights wire format: a list of numpy arrays as safetensors bytes.

No pickle ever crosses a process boundary. Tensors are named by position
(``00000``, ``00001``, ...) in ``model.get_weights()`` order. A model's
*layout* (``f32[20,64];f32[64];...``) names every tensor's dtype and shape;
its sha256 is the model fingerprint the ledger compares at join.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
from safetensors.numpy import save as _st_save

from swarm_wire.names import SHA256_RE

FORMAT = "swarm-keras/1"
_DTYPE_CODES = {
    "float16": "f16",
    "float32": "f32",
    "float64": "f64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "bool": "b1",
}
_CODE_DTYPES = {v: k for k, v in _DTYPE_CODES.items()}
_ENTRY_RE = re.compile(r"([a-z]+[0-9]+)\[([0-9,]*)\]")
# Room for the safetensors JSON header beyond the tensor bytes.
HEADER_ALLOWANCE = 64 * 1024


class WeightsFormatError(ValueError):
    """Bytes that are not a valid weights blob for the expected layout.

    ``code`` is machine-readable: ``NOT_SAFETENSORS``, ``WRONG_TENSORS``,
    ``WRONG_SHAPE``, ``WRONG_DTYPE``, ``NOT_FINITE``, ``TOO_LARGE``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def layout_of(arrays: Sequence[np.ndarray]) -> str:
    """The layout string of a list of arrays: ``f32[4,2];f32[2]``."""
    parts = []
    for i, a in enumerate(arrays):
        code = _DTYPE_CODES.get(np.dtype(a.dtype).name)
        if code is None:
            raise ValueError(
                f"tensor {i} has dtype {a.dtype}, which the swarm cannot carry; use one of {sorted(_DTYPE_CODES)}"
            )
        parts.append(f"{code}[{','.join(str(d) for d in a.shape)}]")
    return ";".join(parts)


def parse_layout(layout: str) -> list[tuple[np.dtype, tuple[int, ...]]]:
    """The (dtype, shape) of every tensor in a layout string."""
    out = []
    for entry in layout.split(";"):
        m = _ENTRY_RE.fullmatch(entry)
        if not m or m.group(1) not in _CODE_DTYPES:
            raise ValueError(f"bad layout entry {entry!r}: expected like 'f32[20,64]'")
        dims = tuple(int(d) for d in m.group(2).split(",") if d != "")
        out.append((np.dtype(_CODE_DTYPES[m.group(1)]), dims))
    return out


def fingerprint(layout: str) -> str:
    """The model fingerprint: sha256 hex of the layout string."""
    return hashlib.sha256(layout.encode()).hexdigest()


def expected_nbytes(layout: str) -> int:
    """Bytes of tensor data a blob of this layout holds."""
    return sum(dt.itemsize * int(np.prod(shape)) for dt, shape in parse_layout(layout))


def max_blob_bytes(layout: str) -> int:
    """The largest blob a model of this layout can produce: its tensor bytes and room for the header."""
    return expected_nbytes(layout) + HEADER_ALLOWANCE


def describe_layout_difference(ours: str, theirs: str) -> str:
    """One sentence naming the first tensor where two layouts differ."""
    a, b = ours.split(";"), theirs.split(";")
    if len(a) != len(b):
        return f"this model has {len(a)} weight tensors, the task's model has {len(b)}"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            return f"weight tensor {i} is {x} here but {y} in the task's model"
    return "the layouts are equal"


BIG_BUFFER_BYTES = 1 << 20  # a blob this size or larger is read into ``new_buffer``, not into ``bytes``


def new_buffer(nbytes: int) -> memoryview:
    """A writable buffer of ``nbytes`` (not zeroed) for a blob, to read or write it in place.

    What it saves against ``bytes``: reading a body in chunks and joining them, or reading into a
    ``bytearray`` (zeroed first) and copying that into ``bytes``, touches the blob's size of new memory
    two or three times; this, once. numpy memory, so ``np.frombuffer`` views of it are writable.
    A buffer of a megabyte or more comes from the process's ``buffer_pool.POOL``: a block whose last
    view is gone is handed out again, without fresh pages to fault in.
    """
    from swarm_wire.buffer_pool import POOL

    return POOL.take(nbytes)


def to_bytes(arrays: Sequence[np.ndarray]) -> bytes:
    """Serialises arrays to safetensors bytes."""
    tensors = {f"{i:05d}": np.ascontiguousarray(a) for i, a in enumerate(arrays)}
    # One metadata key only: safetensors writes metadata in hash-map order, and
    # the same weights must always give the same bytes (and so the same sha256).
    return _st_save(tensors, metadata={"format": FORMAT})


def from_bytes(
    data: bytes | bytearray | memoryview, layout: str | None = None, max_bytes: int | None = None
) -> list[np.ndarray]:
    """Parses and checks a weights blob; raises WeightsFormatError naming the problem.

    With ``layout``, the tensor count, every shape and dtype must match, and
    every float value must be finite. The arrays are read-only views of
    ``data`` (no copy; they keep it alive), after the structural checks the
    safetensors library makes before it hands out a tensor (header, offsets,
    sizes: ``safetensors_files.read_spans``, tested against the library).
    """
    from swarm_wire import safetensors_files  # here, not at the top: that module builds on this one

    view = memoryview(data).cast("B")
    if max_bytes is not None and len(view) > max_bytes:
        raise WeightsFormatError("TOO_LARGE", f"the blob has {len(view)} bytes; at most {max_bytes} allowed")
    spans = safetensors_files.read_spans(safetensors_files.BufferReader(view), len(view))
    if layout is not None:
        spans = safetensors_files.check_layout(spans, layout)
    arrays = []
    for span in spans:
        if span.nbytes == 0:
            a = np.empty(span.shape, span.dtype)
        else:
            a = np.frombuffer(view, dtype=span.dtype, count=span.size, offset=span.begin).reshape(span.shape)
        a.flags.writeable = False
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise WeightsFormatError("NOT_FINITE", f"tensor {span.index} has {bad} NaN or infinite values")
        arrays.append(a)
    return arrays


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a sha256 hex digest (64 lowercase hex characters)."""
    return SHA256_RE.fullmatch(text) is not None


def sha256_hex(data: bytes) -> str:
    """sha256 hex digest of bytes."""
    return hashlib.sha256(data).hexdigest()
