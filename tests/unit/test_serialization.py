"""The weights wire format: round trips and every way a blob can be wrong."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from swarm_wire import serialization as ser


@given(
    st.lists(
        arrays(st.sampled_from([np.float32, np.float64, np.int32]), array_shapes(min_dims=0, max_dims=3)),
        min_size=1,
        max_size=5,
    )
)
def test_round_trip_is_exact(tensors):
    tensors = [np.nan_to_num(t) for t in tensors]
    layout = ser.layout_of(tensors)
    back = ser.from_bytes(ser.to_bytes(tensors), layout)
    assert len(back) == len(tensors)
    for a, b in zip(tensors, back, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_layout_and_fingerprint():
    arrays_ = [np.zeros((4, 2), np.float32), np.zeros(2, np.float32), np.zeros((), np.int64)]
    layout = ser.layout_of(arrays_)
    assert layout == "f32[4,2];f32[2];i64[]"
    assert ser.parse_layout(layout) == [
        (np.dtype("float32"), (4, 2)),
        (np.dtype("float32"), (2,)),
        (np.dtype("int64"), ()),
    ]
    assert ser.expected_nbytes(layout) == 4 * 8 + 4 * 2 + 8
    assert len(ser.fingerprint(layout)) == 64


def test_layout_difference_names_the_tensor():
    diff = ser.describe_layout_difference("f32[4,3];f32[3]", "f32[4,2];f32[2]")
    assert diff == "weight tensor 0 is f32[4,3] here but f32[4,2] in the task's model"
    assert "3 weight tensors" in ser.describe_layout_difference("f32[1];f32[1];f32[1]", "f32[1]")


LAYOUT = "f32[4,2];f32[2]"
GOOD = [np.ones((4, 2), np.float32), np.zeros(2, np.float32)]


@pytest.mark.parametrize(
    "data, code, words",
    [
        (b"", "NOT_SAFETENSORS", "shorter"),
        (b"hello world, not a model", "NOT_SAFETENSORS", "header"),
        (struct.pack("<Q", 10) + b"not json!!", "NOT_SAFETENSORS", "not JSON"),
        (
            ser.to_bytes([np.ones((4, 3), np.float32), np.zeros(3, np.float32)]),
            "WRONG_SHAPE",
            "tensor 0 has shape [4, 3]",
        ),
        (
            ser.to_bytes([np.ones((4, 2), np.float64), np.zeros(2, np.float32)]),
            "WRONG_DTYPE",
            "tensor 0 has dtype float64",
        ),
        (ser.to_bytes([np.ones((4, 2), np.float32)]), "WRONG_TENSORS", "1 tensors"),
        (ser.to_bytes([np.full((4, 2), np.nan, np.float32), np.zeros(2, np.float32)]), "NOT_FINITE", "tensor 0 has 8"),
        (
            ser.to_bytes([np.ones((4, 2), np.float32), np.array([np.inf, 1], np.float32)]),
            "NOT_FINITE",
            "tensor 1 has 1",
        ),
    ],
)
def test_bad_blobs_are_named(data, code, words):
    with pytest.raises(ser.WeightsFormatError) as err:
        ser.from_bytes(data, LAYOUT)
    assert err.value.code == code
    assert words in str(err.value)


def test_wrongly_named_tensors_are_refused():
    from safetensors.numpy import save

    data = save({"kernel": GOOD[0], "bias": GOOD[1]})
    with pytest.raises(ser.WeightsFormatError) as err:
        ser.from_bytes(data, LAYOUT)
    assert err.value.code == "WRONG_TENSORS"


def test_too_large_is_refused_before_parsing():
    with pytest.raises(ser.WeightsFormatError) as err:
        ser.from_bytes(ser.to_bytes(GOOD), LAYOUT, max_bytes=10)
    assert err.value.code == "TOO_LARGE"


def test_truncated_blob_is_refused():
    data = ser.to_bytes(GOOD)
    with pytest.raises(ser.WeightsFormatError) as err:
        ser.from_bytes(data[:-5], LAYOUT)
    assert err.value.code == "NOT_SAFETENSORS"


def test_metadata_names_the_format():
    data = ser.to_bytes(GOOD)
    (n,) = struct.unpack("<Q", data[:8])
    assert json.loads(data[8 : 8 + n])["__metadata__"]["format"] == ser.FORMAT


def test_unsupported_dtype_is_named():
    with pytest.raises(ValueError, match="complex64"):
        ser.layout_of([np.zeros(2, np.complex64)])
