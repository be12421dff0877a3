"""The search language: parsing, errors, and semantics against a real catalog."""
from __future__ import annotations

import pytest

from packager.errors import UsageError
from packager.registry.query import BoolOp, Comparison, parse


def test_precedence_and_parentheses():
    node = parse('metric.acc > 0.9 and tag.team = "fraud" or not format = onnx')
    assert node == BoolOp("or", (BoolOp("and", (Comparison("metric.acc", ">", 0.9), Comparison("tag.team", "=", "fraud"))),
                                 BoolOp("not", (Comparison("format", "=", "onnx"),))))
    grouped = parse("metric.acc > 0.9 and (tag.team = fraud or alias = production)")
    assert grouped.op == "and" and grouped.items[1].op == "or"


@pytest.mark.parametrize("bad,message", [("metric.acc >", "ends too early"), ("colour = red", "unknown search field"),
                                         ("metric.acc > 0.9 and", "ends too early"), ("(format = onnx", "not closed"),
                                         ("format onnx", "expected an operator"), ("metric.acc > high", "is a number")])
def test_bad_expressions_say_what_is_wrong(registry, bad, message):
    with pytest.raises(UsageError, match=message):
        registry.search(bad)


def test_semantics(registry, package_dirs):
    onnx, int8 = package_dirs["onnx"], package_dirs["int8"]
    registry.push(
        onnx, "fraud", metrics={"accuracy": 0.95, "auc": 0.97}, params={"depth": "6"}, tags={"team": "fraud"}, aliases=["production"]
    )
    registry.push(int8, "fraud", metrics={"accuracy": 0.91}, params={"depth": "12"}, tags={"team": "fraud"})
    registry.push(onnx, "churn", metrics={"accuracy": 0.88}, tags={"team": "growth"})

    def refs(expression):
        return sorted(v.ref for v in registry.search(expression))

    assert refs('metric.accuracy > 0.9 and tag.team = "fraud" and format = "onnx"') == ["fraud@1", "fraud@2"]
    assert refs("metric.accuracy >= 0.95") == ["fraud@1"]
    assert refs("quantization = dynamic") == ["fraud@2"]
    assert refs("alias = production") == ["fraud@1"]
    assert refs("param.depth > 8") == ["fraud@2"]  # numeric comparison of a param
    assert refs("metric.auc > 0") == ["fraud@1"]  # versions without the metric never match
    assert refs("not tag.team = fraud") == ["churn@1"]
    assert refs("name ~ ur or version = 2") == ["churn@1", "fraud@2"]
    assert refs("metric.accuracy < 0.9 or (tag.team = fraud and metric.accuracy < 0.92)") == ["churn@1", "fraud@2"]


def test_values_beyond_database_integers_and_non_ascii_strings(registry, package_dirs):
    registry.push(package_dirs["onnx"], "huge", metrics={"accuracy": 0.95}, tags={"team": 'fraud "é"'})

    def refs(expression):
        return [v.ref for v in registry.search(expression)]

    assert refs("metric.accuracy > -99999999999999999999999 and param.x < 99999999999999999999") == []  # no integer overflow
    assert refs("metric.accuracy > -99999999999999999999999") == ["huge@1"]
    with pytest.raises(UsageError, match="whole number"):
        refs("version < 99999999999999999999999")
    with pytest.raises(UsageError, match="is a number"):
        refs("metric.accuracy < 1e400")  # not a finite number
    assert refs(r'tag.team = "fraud \"é\""') == ["huge@1"]  # backslash escapes the quote; non-ASCII is kept
    assert parse(r'tag.x = "a\\b"') == Comparison("tag.x", "=", "a\\b")


def test_numeric_comparisons_skip_text_values_and_bad_literals_are_usage_errors(registry, package_dirs):
    """Postgres raises on CAST('auto' AS FLOAT) and on comparing an integer column with text: both were server errors."""
    registry.push(package_dirs["onnx"], "mixed", params={"lr": "0.1"})
    registry.push(package_dirs["onnx"], "mixed", params={"lr": "auto"})
    registry.push(package_dirs["onnx"], "mixed", params={"lr": "6abc"})
    assert [v.ref for v in registry.search("param.lr > 0.05")] == ["mixed@1"]
    assert [v.ref for v in registry.search("param.lr = auto")] == ["mixed@2"]
    assert len(registry.search('created >= "2000-01-01" and created < "2999-01-01T00:00:00+00:00"')) == 3
    for bad, message in [("version > abc", "whole number"), ("version = 1.5", "whole number"), ("created > yesterday", "is a date")]:
        with pytest.raises(UsageError, match=message):
            registry.search(bad)


@pytest.mark.parametrize("expression,message", [
    ("(" * 300 + "format = onnx" + ")" * 300, "nests parentheses and 'not' more than 20 deep"),  # was RecursionError
    ("not " * 495 + "format = onnx", "nests parentheses and 'not' more than 20 deep"),
    (" and ".join(["format = onnx"] * 51), "more than 50 comparisons"),
    ("format = " + "x" * 5000, "characters long"),
])
def test_nesting_and_size_are_bounded_with_a_usage_error(registry, expression, message):
    with pytest.raises(UsageError, match=message):
        registry.search(expression)


def test_the_bounds_leave_real_filters_alone(registry):
    deep = "(" * 10 + "not " * 10 + "format = onnx" + ")" * 10
    assert parse(deep).op == "not"
    assert len(parse(" and ".join(["format = onnx"] * 50)).items) == 50
    assert registry.search(deep) == []


@pytest.mark.parametrize("limit", [0, -5, 2 ** 70])
def test_limits_out_of_range_are_usage_errors(registry, limit):
    """SQLite reads a negative LIMIT as no limit, and a 70-bit one raised OverflowError (exit 70)."""
    with pytest.raises(UsageError, match=f"limit {limit} is out of range"):
        registry.search("format = onnx", limit=limit)


def test_cli_search_too_deep_exits_2_with_one_line(tmp_path):
    import os

    from tests.conftest import run_cli

    result = run_cli("search", "(" * 300 + "format = onnx" + ")" * 300, env={**os.environ, "PACKAGER_HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "more than 20 deep" in result.stderr and "internal error" not in result.stderr
