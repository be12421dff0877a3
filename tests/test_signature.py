from __future__ import annotations

import numpy as np
import pytest

from packager.errors import UsageError
from packager.signature import Signature, TensorSpec, parse_input_shape, synthesize


def test_parse_input_shape_single_and_named():
    assert parse_input_shape("1,20") == {"input_0": (1, 20)}
    assert parse_input_shape("ids:1,16;mask:-1,16") == {"ids": (1, 16), "mask": (None, 16)}


@pytest.mark.parametrize("bad", ["", "a,b", "1,0", "x:1,-5"])
def test_parse_input_shape_rejects_nonsense(bad):
    with pytest.raises(UsageError):
        parse_input_shape(bad)


def test_signature_round_trips_through_dict():
    sig = Signature(
        (TensorSpec("age", "float32", (None, 1)), TensorSpec("city", "str", (None, 1))),
        (TensorSpec("label", "int64", (None,)),),
        columnar=True,
    )
    assert Signature.from_dict(sig.to_dict()) == sig


def test_synthesize_is_deterministic_and_typed():
    sig = Signature((TensorSpec("x", "float32", (None, 3)), TensorSpec("ids", "int64", (None, 4)), TensorSpec("c", "str", (None, 1))))
    a, b = synthesize(sig, rows=7), synthesize(sig, rows=7)
    assert a["x"].shape == (7, 3) and a["x"].dtype == np.float32
    assert a["ids"].dtype == np.int64 and a["c"].dtype == object
    np.testing.assert_array_equal(a["x"], b["x"])
