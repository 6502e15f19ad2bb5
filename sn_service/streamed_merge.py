"""The leader's merge of models too big to stack in memory: contributions read from their files in chunks.

``merge_files`` merges stored contributions (safetensors files, already checked
against the task's layout) into a new blob written chunk by chunk, so the
leader holds about one chunk of every contribution at a time instead of an
(n, P) matrix. The coordinate-wise methods (``mean``, ``coordmedian``,
``trimmedmean``) compute each parameter from its own column, so a column
chunk at a time gives the same model, bit for bit, as ``StackedModels``; the
methods that compare whole models (``krum``, ``multikrum``, ``geomedian``)
stack them in memory as before, and are refused when that would not fit
(``in_memory_merge_problem``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sn_service.blob_store import IncomingBlob
from sn_service.merge import merge
from sn_service.merge.stacked_models import StackedModels, float_columns
from swarm_wire.safetensors_files import TensorSpan, blob_chunks, file_plan, memmap_arrays, read_piece
from swarm_wire.serialization import parse_layout

COLUMN_WISE = ("mean", "coordmedian", "trimmedmean")
CHUNK_BYTES = 48 << 20  # of all contributions together, per column chunk
_MIN_COLUMNS = 4096


class MergeTooLarge(ValueError):
    """A merge method that needs every contribution in memory, for models that do not fit."""


def memory_available() -> int:
    """Bytes of memory the system can give without swapping (``MemAvailable``), or a large number if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62


def in_memory_merge_problem(
    method: str, model_bytes: int, contributors: int, available: int | None = None
) -> str | None:
    """Why ``method`` cannot merge ``contributors`` models of ``model_bytes`` here (None: it can).

    ``krum``, ``multikrum`` and ``geomedian`` need every contribution in one matrix, plus the
    result: more than 80 % of the memory available is refused, naming the method and the sizes.
    """
    if method in COLUMN_WISE:
        return None
    need = (contributors + 1) * model_bytes
    available = memory_available() if available is None else available
    if need <= 0.8 * available:
        return None
    return (
        f"merge method {method!r} compares whole models, so it holds all {contributors} contributions in memory: "
        f"{contributors} x {model_bytes / 1e9:.2f} GB plus the result is {need / 1e9:.1f} GB, more than 80 % of the "
        f"{available / 1e9:.1f} GB this machine has available; for a model this size use mean, coordmedian or "
        f"trimmedmean (merged a column chunk at a time), or a leader with more memory"
    )


def merge_files(
    method: str,
    layout: str,
    sources: Sequence[tuple[Path, list[TensorSpan]]],
    weights: np.ndarray,
    out: IncomingBlob,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Merges the contributions stored at ``sources`` (path and checked spans each) into ``out``.

    Writes the bytes ``to_bytes(StackedModels(...).merge(method, weights))`` would give, without
    that copy: float tensors merged per column chunk, other tensors (integer counters) copied from
    the first source, as ``StackedModels`` takes them from its first model. Raises MergeTooLarge
    for a whole-model method whose stack would not fit in memory.
    """
    if not sources:
        raise ValueError("no models to merge")
    tensors = parse_layout(layout)
    weights = np.asarray(weights, dtype=np.float64)
    if method not in COLUMN_WISE:
        _merge_in_memory(method, tensors, sources, weights, out)
        return
    first = sources[0]
    merged = list(sources)
    if (weights > 0).any() and not (weights > 0).all():
        # As StackedModels.merge: a weight-0 site (checkinModelOnTrainEnd "inactive") is left out.
        merged = [s for s, w in zip(sources, weights, strict=True) if w > 0]
        weights = weights[weights > 0]
    _, _, stack_dtype = float_columns(tensors)
    columns = max(_MIN_COLUMNS, chunk_bytes // (len(merged) * stack_dtype.itemsize))
    plan = file_plan(tensors)
    out.write(plan.header)
    with contextlib.ExitStack() as files:
        handles = [files.enter_context(open(path, "rb")) for path, _ in merged]
        first_fh = handles[0] if first is merged[0] else files.enter_context(open(first[0], "rb"))
        block = np.empty((len(merged), columns), stack_dtype)
        for i in plan.order:
            dt, _ = tensors[i]
            size = plan.spans[i].size
            if dt.kind != "f":
                _copy_tensor(first_fh, first[1][i], out, chunk_bytes)
                continue
            piece = np.empty(columns, dt)
            for start in range(0, size, columns):
                stop = min(size, start + columns)
                rows = block[:, : stop - start]
                for k, (fh, (_, spans)) in enumerate(zip(handles, merged, strict=True)):
                    rows[k] = read_piece(fh, spans[i], start, stop, piece)
                flat = merge(method, rows, weights)
                result = flat.astype(dt).astype(dt.newbyteorder("<"), copy=False)
                out.write(memoryview(np.ascontiguousarray(result).view(np.uint8)))


def copy_model(layout: str, source: tuple[Path, list[TensorSpan]], out: IncomingBlob) -> None:
    """Writes a checked blob file's model to ``out`` as ``to_bytes`` writes it (``to_bytes(from_bytes(...))``)."""
    plan = file_plan(parse_layout(layout))
    out.write(plan.header)
    with open(source[0], "rb") as fh:
        for i in plan.order:
            _copy_tensor(fh, source[1][i], out, CHUNK_BYTES)


def _copy_tensor(fh: BinaryIO, span: TensorSpan, out: IncomingBlob, chunk_bytes: int) -> None:
    step = max(1, chunk_bytes // span.dtype.itemsize)
    for start in range(0, span.size, step):
        out.write(memoryview(read_piece(fh, span, start, min(span.size, start + step)).view(np.uint8)))


def _merge_in_memory(
    method: str,
    tensors: list[tuple[np.dtype, tuple[int, ...]]],
    sources: Sequence[tuple[Path, list[TensorSpan]]],
    weights: np.ndarray,
    out: IncomingBlob,
) -> None:
    model_bytes = sum(dt.itemsize * int(np.prod(shape)) for dt, shape in tensors)
    problem = in_memory_merge_problem(method, model_bytes, len(sources))
    if problem is not None:
        raise MergeTooLarge(problem)
    stack = StackedModels(tensors, len(sources))
    for path, spans in sources:
        stack.add(memmap_arrays(path, spans))
    for chunk in blob_chunks(stack.merge(method, weights)):
        out.write(chunk)
