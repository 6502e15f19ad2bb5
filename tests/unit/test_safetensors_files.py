"""The weights format written and read chunk by chunk, and parsed in place: the bytes of ``to_bytes``, the
verdicts of the safetensors library."""

from __future__ import annotations

import hashlib
import io
import json
import struct

import numpy as np
import pytest
from safetensors import SafetensorError
from safetensors.numpy import load as library_load

from swarm_wire import safetensors_files as stf
from swarm_wire import serialization
from swarm_wire.serialization import WeightsFormatError

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


def library_from_bytes(data: bytes, layout: str, max_bytes: int | None = None) -> list[np.ndarray]:
    """``from_bytes`` as it was before it parsed blobs itself: the safetensors library's ``load``, then our checks.

    The reference our own parser (``read_spans``, for ``from_bytes`` and ``check_file``) must agree with.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise WeightsFormatError("TOO_LARGE", "size")
    (n,) = struct.unpack("<Q", data[:8]) if len(data) >= 8 else (-1,)
    if n < 0 or n > len(data) - 8 or n > serialization.HEADER_ALLOWANCE:
        raise WeightsFormatError("NOT_SAFETENSORS", "header length")
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        raise WeightsFormatError("NOT_SAFETENSORS", "header not JSON") from None
    if not isinstance(header, dict):
        raise WeightsFormatError("NOT_SAFETENSORS", "header not an object")
    try:
        tensors = library_load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise WeightsFormatError("NOT_SAFETENSORS", str(exc)) from None
    names = sorted(tensors)
    if names != [f"{i:05d}" for i in range(len(names))]:
        raise WeightsFormatError("WRONG_TENSORS", "names")
    arrays = [tensors[k] for k in names]
    spec = serialization.parse_layout(layout)
    if len(spec) != len(arrays):
        raise WeightsFormatError("WRONG_TENSORS", "count")
    for i, (a, (dt, shape)) in enumerate(zip(arrays, spec, strict=True)):
        if shape == () and a.shape == (1,):
            arrays[i] = a = a.reshape(())
        if a.dtype != dt:
            raise WeightsFormatError("WRONG_DTYPE", "dtype")
        if tuple(a.shape) != shape:
            raise WeightsFormatError("WRONG_SHAPE", "shape")
    if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays):
        raise WeightsFormatError("NOT_FINITE", "values")
    return arrays


def _random_model(rng: np.random.Generator, n_tensors: int) -> list[np.ndarray]:
    out = []
    for _ in range(n_tensors):
        dt = np.dtype(rng.choice(DTYPES))
        shape = tuple(int(d) for d in rng.integers(0, 5, size=rng.integers(0, 4)))
        a = (rng.standard_normal(shape) * 10).astype(dt) if dt.kind != "b" else rng.random(shape) > 0.5
        out.append(np.asarray(a, dtype=dt))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_the_chunked_writer_gives_the_bytes_of_to_bytes(seed, tmp_path):
    rng = np.random.default_rng(seed)
    arrays = _random_model(rng, int(rng.integers(1, 14)))
    expected = serialization.to_bytes(arrays)
    path = tmp_path / "m.safetensors"
    sha, size = stf.write_file(arrays, path)
    assert path.read_bytes() == expected
    assert (sha, size) == (hashlib.sha256(expected).hexdigest(), len(expected))
    assert b"".join(stf.blob_chunks(arrays, chunk_bytes=3)) == expected
    assert stf.blob_size(arrays) == len(expected)
    plan = stf.file_plan([(a.dtype, a.shape) for a in arrays])
    assert plan.total_bytes == len(expected) and expected.startswith(plan.header)


def test_non_contiguous_big_endian_and_scalar_arrays_are_written_as_to_bytes_writes_them(tmp_path):
    arrays = [
        np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2],
        np.arange(5, dtype=">f4"),
        np.float64(3.5) * np.ones(()),
        np.zeros((0, 3), np.float32),
    ]
    stf.write_file(arrays, tmp_path / "m")
    assert (tmp_path / "m").read_bytes() == serialization.to_bytes(
        [np.asarray(a, a.dtype.newbyteorder("=")) for a in arrays]
    )


@pytest.mark.parametrize("seed", range(10))
def test_check_file_and_memmap_read_what_from_bytes_reads(seed, tmp_path):
    rng = np.random.default_rng(100 + seed)
    arrays = [a for a in _random_model(rng, 8)]
    data = serialization.to_bytes(arrays)
    path = tmp_path / "m"
    path.write_bytes(data)
    layout = serialization.layout_of(arrays)
    expected = serialization.from_bytes(data, layout)
    spans = stf.check_file(path, layout, serialization.max_blob_bytes(layout))
    got = stf.memmap_arrays(path, spans)
    for a, b in zip(expected, got, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_a_file_bigger_than_a_chunk_is_checked_piece_by_piece(tmp_path, monkeypatch):
    monkeypatch.setattr(stf, "CHUNK_BYTES", 64)
    arrays = [np.ones(1000, np.float32), np.ones((7, 9), np.float64)]
    arrays[1][6, 8] = np.inf
    arrays[0][[3, 500, 999]] = np.nan
    path = tmp_path / "m"
    stf.write_file(arrays, path)
    with pytest.raises(WeightsFormatError) as caught:
        stf.check_file(path, serialization.layout_of(arrays))
    assert caught.value.code == "NOT_FINITE" and str(caught.value) == "tensor 0 has 3 NaN or infinite values"


def _corruptions(data: bytes, layout_arrays: list[np.ndarray]) -> dict[str, bytes]:
    """Bad blobs of many kinds, each made from a good one."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])

    def with_header(h: dict, body: bytes | None = None) -> bytes:
        text = json.dumps(h).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + (data[8 + n :] if body is None else body)

    def edit(fn) -> bytes:
        h = json.loads(data[8 : 8 + n])
        fn(h)
        return with_header(h)

    nan = list(layout_arrays)
    nan[0] = nan[0].copy()
    nan[0].flat[0] = np.nan
    out = {
        "empty": b"",
        "short": data[:5],
        "huge header length": struct.pack("<Q", 1 << 40) + data[8:],
        "header past the end": struct.pack("<Q", len(data)) + data[8:],
        "header not json": data[:8] + b"x" * n + data[8 + n :],
        "header a list": with_header([1, 2]),  # type: ignore[arg-type]
        "header with leading space": struct.pack("<Q", n) + b" " + data[8 : 8 + n - 1] + data[8 + n :],
        "metadata not strings": edit(lambda h: h.__setitem__("__metadata__", {"a": 1})),
        "bfloat16": edit(lambda h: h["00000"].__setitem__("dtype", "BF16")),
        "uint16 for float16": edit(lambda h: h["00002"].__setitem__("dtype", "U16")),
        "wrong dtype": edit(lambda h: h["00000"].__setitem__("dtype", "I32")),
        "shape not ints": edit(lambda h: h["00000"].__setitem__("shape", ["a"])),
        "shape too big for the bytes": edit(lambda h: h["00000"].__setitem__("shape", [5, 2])),
        "offsets reversed": edit(lambda h: h["00000"].__setitem__("data_offsets", h["00000"]["data_offsets"][::-1])),
        "a tensor renamed": edit(lambda h: h.__setitem__("00009", h.pop("00001"))),
        "a tensor missing": with_header({k: v for k, v in header.items() if k != "00002"}, data[8 + n :]),
        "truncated by one byte": data[:-1],
        "truncated in the header": data[: 8 + n // 2],
        "one byte too many": data + b"\0",
        "non-finite": serialization.to_bytes(nan),
        "wrong shape": serialization.to_bytes([np.zeros((2, 4), np.float32), *layout_arrays[1:]]),
        "wrong count": serialization.to_bytes(layout_arrays[:2]),
        "wrong dtype, well formed": serialization.to_bytes([layout_arrays[0].astype(np.float64), *layout_arrays[1:]]),
    }
    for cut in range(0, len(data), max(1, len(data) // 37)):
        out[f"cut at {cut}"] = data[:cut]
    return out


def test_every_bad_blob_gets_the_safetensors_librarys_verdict_from_both_our_readers(tmp_path):
    arrays = [np.ones((4, 2), np.float32), np.arange(3, dtype=np.int64), np.ones(5, np.float16)]
    layout = serialization.layout_of(arrays)
    data = serialization.to_bytes(arrays)
    limit = serialization.max_blob_bytes(layout)
    checked = 0
    for name, bad in _corruptions(data, arrays).items():
        verdicts = []
        path = tmp_path / "bad"
        path.write_bytes(bad)
        for read in (library_from_bytes, serialization.from_bytes, stf.check_file):
            try:
                read(path if read is stf.check_file else bad, layout, limit)
                verdicts.append(None)
            except WeightsFormatError as exc:
                verdicts.append(exc.code)
        assert verdicts[1] == verdicts[0], f"{name}: the library says {verdicts[0]}, from_bytes {verdicts[1]}"
        assert verdicts[2] == verdicts[0], f"{name}: the library says {verdicts[0]}, check_file {verdicts[2]}"
        checked += verdicts[0] is not None
    assert checked > 30


def test_an_oversized_file_is_too_large_before_it_is_read(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"\0" * 1000)
    with pytest.raises(WeightsFormatError) as caught:
        stf.check_file(path, None, max_bytes=999)
    assert caught.value.code == "TOO_LARGE" and "1000 bytes; at most 999" in str(caught.value)


def test_scalars_come_back_with_the_layouts_shape(tmp_path):
    arrays = [np.ones(()), np.ones(3, np.float32)]
    path = tmp_path / "m"
    stf.write_file(arrays, path)
    layout = serialization.layout_of(arrays)
    got = stf.memmap_arrays(path, stf.check_file(path, layout))
    assert got[0].shape == () and got[0] == 1.0 and got[1].shape == (3,)


def test_random_byte_changes_get_the_librarys_verdict_from_both_our_readers(tmp_path):
    rng = np.random.default_rng(7)
    arrays = [np.ones((4, 2), np.float32), np.arange(3, dtype=np.int64), np.ones(5, np.float16)]
    layout = serialization.layout_of(arrays)
    data = serialization.to_bytes(arrays)
    path = tmp_path / "bad"
    for _ in range(300):
        bad = bytearray(data)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            bad[pos] = int(rng.integers(0, 256))
        verdicts = []
        path.write_bytes(bad)
        for read in (library_from_bytes, serialization.from_bytes, stf.check_file):
            try:
                read(path if read is stf.check_file else bytes(bad), layout)
                verdicts.append(None)
            except WeightsFormatError as exc:
                verdicts.append(exc.code)
            except (KeyError, TypeError, OverflowError) as exc:  # a crash of the library is not ours to copy
                verdicts.append(type(exc).__name__)
        if verdicts[0] in ("KeyError", "TypeError", "OverflowError"):
            continue
        assert verdicts[0] == verdicts[1] == verdicts[2], f"{bytes(bad)[:120]!r}: library, from_bytes, file {verdicts}"


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 7])
def test_read_whole_hashes_what_it_reads_as_it_reads(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    digest = hashlib.sha256()
    got = stf.read_whole(io.BytesIO(data), size, digest)
    assert bytes(got) == data and digest.hexdigest() == hashlib.sha256(data).hexdigest()
    grown = hashlib.sha256()  # a file longer than said: one byte more is read, and hashed
    got = stf.read_whole(io.BytesIO(data + b"!"), size, grown)
    assert len(got) == size + 1 and grown.hexdigest() == hashlib.sha256(data + b"!").hexdigest()
