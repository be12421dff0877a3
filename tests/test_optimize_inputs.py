"""`packager optimize`'s inputs, refused up front with one line (issue 23's outside tester): the public name
``packager.optimize`` in any import order, a search that chooses nothing raising as the CLI exits, data and budgets the
source cannot answer refused before any candidate is built, option values checked, and the flag OutputExists names."""

from __future__ import annotations

import json
import math
import pickle
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from packager.errors import OutputExists, SampleError, UsageError, ValidationFailed
from packager.optimize import optimize
from packager.optimize_budget import Bound, parse_budget
from tests.conftest import invoke_cli, run_cli


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A Ridge on diabetes (a regressor reading its 10 features by name), a scaled LogisticRegression on wine (labels and
    probabilities), and their rows; plus the outsider's bad data: the other model's rows, a renamed column, a text
    column, NaN (Ridge rejects it)."""
    folder = tmp_path_factory.mktemp("inputs")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    Xw, yw = load_wine(return_X_y=True, as_frame=True)
    (folder / "ridge.pkl").write_bytes(pickle.dumps(Ridge().fit(X, y)))
    (folder / "wine.pkl").write_bytes(pickle.dumps(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(Xw, yw)))
    X.to_parquet(folder / "diab.parquet")
    Xw.to_parquet(folder / "wine.parquet")
    X.rename(columns={"bmi": "BMI"}).to_parquet(folder / "renamed.parquet")
    X.assign(bmi=X["bmi"].map(lambda v: f"{v:.3f}")).to_parquet(folder / "strcol.parquet")
    X.assign(bmi=X["bmi"].where(np.arange(len(X)) % 7 != 0)).to_parquet(folder / "nan.parquet")
    return folder


# ---------------------------------------------------------------- D2: packager.optimize is the function, every time


@pytest.mark.parametrize("first", ["import packager.optimize", "packager.optimize", "from packager.optimize import OptimizeResult"])
def test_packager_optimize_is_callable_whatever_was_imported_first(first, tmp_path):
    """A fresh interpreter each (the trap is the first import): importing the submodule made ``packager.optimize`` the
    module, and the documented ``packager.optimize(...)`` raised "'module' object is not callable"."""
    code = f"""
import packager
{first}
import packager.optimize
from packager.errors import InputFileError
for _ in range(2):
    try:
        packager.optimize({str(tmp_path / "missing.pkl")!r}, "rows.parquet", "out")
    except InputFileError as exc:
        print("called:", exc.what)
import packager.optimize as module
print("module:", module.OptimizeResult.__name__, module.optimize.__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("called: ") == 2 and "missing.pkl: no such file or folder" in done.stdout
    assert "module: OptimizeResult optimize" in done.stdout


def test_every_lazy_name_is_its_object_after_its_module_is_imported():
    import importlib
    import importlib.util

    import packager

    for name, module in packager._EXPORTS.items():
        target = getattr(importlib.import_module(module), name)
        if importlib.util.find_spec(f"packager.{name}") is not None:
            importlib.import_module(f"packager.{name}")  # a submodule of the same name (optimize) is set on the package
        value = getattr(packager, name)
        assert value is target or (callable(value) and callable(target) and value.__name__ == f"packager.{name}"), name
    with pytest.raises(UsageError, match="--objective 'fast'"):  # the callable module calls the function
        packager.optimize("x.pkl", "rows.parquet", "out", objective="fast")


# ---------------------------------------------------------------- D3: nothing chosen raises, as the CLI exits 9


def test_a_search_that_chooses_nothing_raises_validation_failed_with_the_report(models, tmp_path):
    out = tmp_path / "none"
    with pytest.raises(ValidationFailed, match=f"the report is in {out}") as raised:
        optimize(
            models / "ridge.pkl", models / "diab.parquet", out, formats=["onnx"], budget=["max_abs_diff<=0"], trust=True, min_seconds=0.1
        )
    result = raised.value.report
    assert result.chosen is None and json.loads((out / "optimize.json").read_text())["chosen"] is None
    assert not (out / "best").exists() and {c.status for c in result.candidates} <= {"over-budget", "refused"}
    assert [str(b) for b in result.budget] == ["max_abs_diff<=0"]
    done = invoke_cli(
        "optimize", models / "ridge.pkl", "--data", models / "diab.parquet", "-o", tmp_path / "cli", "--formats", "onnx",
        "--budget", "max_abs_diff<=0", "--trust",
    )  # fmt: skip
    assert done.returncode == ValidationFailed.exit_code, done.stderr
    assert "| candidate |" in done.stdout and "ValidationFailed: no candidate was chosen" in done.stderr.splitlines()[-1]


# ---------------------------------------------------------------- D4: the user's data and budget, checked once up front


def test_data_and_budgets_the_source_cannot_answer_are_one_error_before_any_candidate(models, tmp_path):
    out = tmp_path / "never"
    cases = [  # each message is literal text of the error
        ("ridge.pkl", "wine.parquet", {}, UsageError, "--data wine.parquet lacks the columns [age, sex, bmi"),
        ("ridge.pkl", "renamed.parquet", {}, UsageError, "--data renamed.parquet lacks the column [bmi]"),
        ("ridge.pkl", "strcol.parquet", {}, UsageError, "--data strcol.parquet has text columns, but the model takes a numeric matrix"),
        ("ridge.pkl", "nan.parquet", {}, SampleError, "Ridge itself fails on rows of --data nan.parquet (ValueError: Input X contains NaN"),
        ("ridge.pkl", "diab.parquet", {"text_column": "bmi"}, UsageError, "--text-column bmi: the column holds double, not text"),
        ("wine.pkl", "wine.parquet", {"budget": "r2>=0.5"}, UsageError, "give no r2. bound what they give: agreement, max_abs_diff"),
        ("wine.pkl", "wine.parquet", {"budget": ["top1>=0.9"]}, UsageError, "probabilities (probabilities)) give no top1"),
        ("ridge.pkl", "diab.parquet", {"budget": ["top1>=0.9"]}, UsageError, "(variable (regression)) give no top1"),
        ("ridge.pkl", "diab.parquet", {"budget": ["cosine>=0.9"]}, UsageError, "give no cosine. bound what they give: r2, max_abs_diff"),
        ("ridge.pkl", "diab.parquet", {"budget": ["agreement>=0.9"]}, UsageError, "give no agreement"),
        ("ridge.pkl", "diab.parquet", {"budget": ["r2>=2"]}, UsageError, "r2 is at most 1, so no candidate can meet it"),
    ]  # fmt: skip
    for model, data, options, error, message in cases:
        started = time.monotonic()
        with pytest.raises(error, match=re.escape(message)) as raised:
            optimize(models / model, models / data, out, **{"formats": ["onnx"], "trust": True, **options})
        assert type(raised.value) is error, (data, options)
        text = raised.value.one_line()
        assert "held_out" not in text and "calibration.parquet" not in text and "--sample" not in text, text
        assert time.monotonic() - started < 30 and not out.exists(), (data, options)  # no search ran (one took minutes)


def test_an_onnx_source_failing_on_the_data_is_a_sample_error_not_exit_9(models, tmp_path):
    """An ONNX file as the source: onnxruntime refusing the rows said "the converter produced a graph that fails"
    (ValidationFailed, exit 9) though nothing was converted yet."""
    from packager.conversion import convert

    package = convert(models / "ridge.pkl", "onnx", out=tmp_path / "pkg", sample=models / "diab.parquet", trust=True)
    with pytest.raises(SampleError, match=re.escape("--data wine.parquet: model.onnx itself fails on its rows (onnxruntime")):
        optimize(package.path / "model.onnx", models / "wine.parquet", tmp_path / "o", formats=["openvino"], trust=True)
    assert not (tmp_path / "o").exists()


def test_wrong_columns_are_a_usage_error_through_the_sandbox(models, tmp_path):
    """The real CLI, the source loaded and run in the sandbox child (no --trust): one line, exit 2, nothing written."""
    out = tmp_path / "o"
    done = run_cli("optimize", str(models / "ridge.pkl"), "--data", str(models / "wine.parquet"), "-o", str(out), "--formats", "onnx")
    assert done.returncode == UsageError.exit_code, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--data wine.parquet lacks the columns [age, sex, bmi" in done.stderr
    assert not out.exists()


def test_candidate_reasons_name_the_users_data_not_the_search_files():
    from packager.optimize import _plain

    reason = "UsageError: held_out.parquet lacks the column [x]. give --sample FILE with rows like calibration.parquet"
    assert _plain(reason, "rows.csv") == (
        "UsageError: the held-out rows of rows.csv lacks the column [x]. give --data FILE with rows like the calibration rows of rows.csv"
    )


# ---------------------------------------------------------------- D10: values checked up front, strings taken as one item


def test_option_values_are_refused_up_front(models, tmp_path):
    out = tmp_path / "never"
    ridge, rows = models / "ridge.pkl", models / "diab.parquet"
    for options, message in [
        ({"time_budget": -1}, "--time-budget '-1' must be positive"),
        ({"time_budget": 0.0}, "--time-budget '0.0' must be positive"),
        ({"time_budget": math.nan}, "--time-budget 'nan' must be positive"),
        ({"time_budget": "99999999999999999999h"}, "is more than 168h"),
        ({"threads": 1.5}, "--threads 1.5 is not a positive whole number"),
        ({"threads": 0}, "--threads 0 is not a positive whole number"),
        ({"batch_size": 0}, "--batch-size 0 is not a positive whole number"),
        ({"formats": ""}, "--formats '' names no target"),
        ({"formats": []}, "--formats '' names no target"),
        ({"formats": "onnxx"}, "--formats onnxx: not reachable from a sklearn model"),  # one name, not o, n, x
        ({"formats": "onnx,onnxx"}, "--formats onnxx: not reachable from a sklearn model"),  # a list, as on the CLI
    ]:
        with pytest.raises(UsageError, match=message):
            optimize(ridge, rows, out, **{"trust": True, **options})
    assert not out.exists()
    assert parse_budget("r2>=0.9") == (Bound("r2", ">=", 0.9),)
    for args, message in [
        (("--batch-size", "0"), "--batch-size 0 is not a positive whole number"),
        (("--formats", ""), "--formats '' names no target"),
        (("--time-budget", "99999999999999999999h"), "is more than 168h"),
    ]:
        done = invoke_cli("optimize", ridge, "--data", rows, "-o", out, "--trust", *args)
        assert done.returncode == UsageError.exit_code and message in done.stderr, done.stderr
    assert not out.exists()


# ---------------------------------------------------------------- D5: OutputExists names the flag each command has


def test_output_exists_names_a_flag_every_command_that_raises_it_has(models, tmp_path):
    import click

    from packager.cli import main

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    done = invoke_cli("optimize", models / "ridge.pkl", "--data", models / "diab.parquet", "-o", taken, "--trust")
    assert done.returncode == OutputExists.exit_code and "pass --force" in done.stderr, done.stderr
    # --force is optimize's flag (as convert's, predict's, pull's): it gets past the check to the data's own error
    done = invoke_cli("optimize", models / "ridge.pkl", "--data", models / "wine.parquet", "-o", taken, "--trust", "--force")
    assert done.returncode == UsageError.exit_code and "lacks the columns" in done.stderr, done.stderr
    assert (taken / "keep.txt").read_text() == "mine"  # refused before anything was replaced
    context = click.Context(main)
    for name in ("convert", "predict", "pull", "optimize"):
        command = main.get_command(context, name)
        assert command is not None
        assert any("--force" in p.opts for p in command.params), name


def test_text_column_picks_the_texts_among_several_string_columns(tmp_path):
    """--text-column names the texts; the candidates were built and judged on every column, so a table with an id
    column beside the texts failed every candidate ("the sample has 2 text columns") and nothing was chosen."""
    import joblib
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from packager.optimize import optimize

    texts = ["the cat sat on the mat", "dogs love long walks", "stocks fell sharply today", "the market rallied at noon"] * 12
    labels = [0, 0, 1, 1] * 12
    joblib.dump(make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels), tmp_path / "tfidf.joblib")
    pd.DataFrame({"id": [f"row-{i}" for i in range(len(texts))], "body": texts}).to_parquet(tmp_path / "d.parquet")
    result = optimize(
        tmp_path / "tfidf.joblib",
        tmp_path / "d.parquet",
        tmp_path / "out",
        formats=["onnx"],
        text_column="body",
        trust=True,
        runtime_settings=False,
        rounds=1,
        min_seconds=0.05,
    )
    assert result.chosen is not None and (tmp_path / "out" / "best").is_dir()
    assert all(c.status != "failed" for c in result.candidates), [c.reason for c in result.candidates]
