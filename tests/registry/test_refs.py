from __future__ import annotations

import pytest

from packager.errors import UsageError
from packager.registry.refs import ModelRef, check_value, parse_pairs


def test_parse_every_reference_form():
    digest = "a" * 64
    assert ModelRef.parse("fraud") == ModelRef("fraud")
    assert ModelRef.parse("fraud@3") == ModelRef("fraud", version=3)
    assert ModelRef.parse("fraud@production") == ModelRef("fraud", alias="production")
    assert ModelRef.parse(f"fraud@sha256:{digest}") == ModelRef("fraud", digest=digest)
    assert str(ModelRef.parse("fraud@3")) == "fraud@3"


@pytest.mark.parametrize(
    "bad",
    [
        "../etc",
        "a/b",
        "",
        ".hidden",
        "x" * 200,
        "name\x1b[31m",
        "fraud@",
        "fraud@sha256:xyz",
        "fraud@../x",
        "a b",
        "fraud\n",
        "fraud@production\n",
        "fraud@\u00b2",
        "fraud@12345678901234567890",
    ],
)
def test_malformed_references_are_usage_errors(bad):
    with pytest.raises(UsageError):
        ModelRef.parse(bad)


def test_pairs_and_values_are_validated():
    assert parse_pairs(["team=fraud", "lr=0.1"], "tag") == {"team": "fraud", "lr": "0.1"}
    with pytest.raises(UsageError, match="not key=value"):
        parse_pairs(["team"], "tag")
    with pytest.raises(UsageError, match="control characters"):
        check_value("evil\x07bell")
