"""The CLI contract: exit codes, one-line errors without tracebacks, JSON output, nothing half-written."""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import invoke_cli, run_cli


def _no_partial_dirs(folder: Path) -> bool:
    return not any(".partial" in p.name for p in folder.iterdir())


def test_convert_onnx_quantized_end_to_end(fixtures, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "convert", fixtures["mlp"].model, "--to", "onnx", "--quantize", "--sample", fixtures["mlp"].sample, "-o", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["status"] == "passed" and row["quantization"] == "dynamic"
    assert row["size"] < row["size_before_quantization"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["applied"] is True


def test_convert_to_several_targets_writes_one_folder_each(fixtures, tmp_path):
    out = tmp_path / "many"
    result = invoke_cli("convert", fixtures["ridge"].model, "--to", "onnx", "--to", "skops", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "onnx" / "model.onnx").is_file() and (out / "skops" / "model.skops").is_file()
    assert "passed" in result.stdout


def test_table_output_names_each_target(fixtures, tmp_path):
    result = invoke_cli("convert", fixtures["forest"].model, "--to", "onnx", "--quantize", "auto", "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "onnx" in result.stdout and "passed" in result.stdout and "kept fp32" in result.stdout


@pytest.mark.parametrize("case", ["truncated", "random", "wrong_extension_junk", "missing"])
def test_bad_input_files_give_one_line_and_exit_4(fixtures, tmp_path, case):
    data = Path(fixtures["logreg"].model).read_bytes()
    source = tmp_path / "model.pkl"
    if case == "truncated":
        source.write_bytes(data[: len(data) // 2])
    elif case == "random":
        # seeded: os.urandom once gave bytes that unpickle to None (a valid pickle that is no model: exit 6, CI-flaky)
        source.write_bytes(random.Random(2048).randbytes(2048))
    elif case == "wrong_extension_junk":
        source = tmp_path / "model.onnx"
        source.write_bytes(b"this is not a model\n" * 20)
    out = tmp_path / "out"
    result = invoke_cli("convert", str(source if case != "missing" else tmp_path / "absent.pkl"), "-o", str(out))
    assert result.returncode == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: InputFileError: ")
    assert "Traceback" not in result.stderr
    assert not out.exists() and _no_partial_dirs(tmp_path)


def test_wrong_extension_with_valid_content_still_converts(fixtures, tmp_path):
    source = tmp_path / "model.onnx"
    shutil.copy(fixtures["linear"].model, source)
    result = invoke_cli("convert", str(source), "--to", "onnx", "-o", str(tmp_path / "o"), "--json")
    assert result.returncode == 0, result.stderr


def test_unsafe_pickle_is_refused_with_exit_5_and_trust_is_recorded(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    result = run_cli("convert", str(evil), "-o", str(tmp_path / "o"))
    assert result.returncode == 5
    assert "imports posix.system" in result.stderr or "imports os.system" in result.stderr
    assert "--trust" in result.stderr and not marker.exists()


def test_inspect_of_an_allow_list_bypass_exits_5_with_one_line_naming_the_import(tmp_path):
    from tests.attacks.families.pickles_round2 import _popen_via

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(_popen_via("pandas._config.localization", str(marker)))
    result = run_cli("inspect", str(evil))
    assert result.returncode == 5
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "imports pandas._config.localization.subprocess.Popen at byte" in lines[0], result.stderr
    assert "--trust" in lines[0] and not marker.exists() and result.stdout == ""


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unsupported_estimator_exits_6(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.semi_supervised import LabelSpreading

    X, y = load_iris(return_X_y=True)
    source = tmp_path / "ls.pkl"
    source.write_bytes(pickle.dumps(LabelSpreading().fit(X, y)))
    result = invoke_cli("convert", str(source), "-o", str(tmp_path / "o"))
    assert result.returncode == 6
    assert result.stderr.count("\n") == 1 and "skl2onnx has no ONNX converter for LabelSpreading" in result.stderr


def test_missing_optional_dependency_exits_3(fixtures, tmp_path):
    prelude = "import sys; sys.modules['skl2onnx'] = None"
    # --trust: the prelude hides skl2onnx in this process only; a sandboxed conversion runs in a fresh child
    result = run_cli("convert", fixtures["logreg"].model, "-o", str(tmp_path / "o"), "--trust", python_prelude=prelude)
    assert result.returncode == 3
    assert "pip install 'packager[sklearn]'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.java
def test_missing_java_exits_3(fixtures, tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = run_cli("convert", fixtures["logreg"].model, "--to", "pmml", "-o", str(tmp_path / "o"), env=env)
    assert result.returncode == 3
    assert "default-jre-headless" in result.stderr
    assert not (tmp_path / "o").exists()


def test_not_quantizable_exits_8(fixtures, tmp_path):
    result = invoke_cli("convert", fixtures["forest"].model, "--quantize", "-o", str(tmp_path / "o"))
    assert result.returncode == 8
    assert "TreeEnsembleClassifier" in result.stderr and "--quantize auto" in result.stderr


def test_existing_output_needs_force(fixtures, tmp_path):
    out = tmp_path / "o"
    assert invoke_cli("convert", fixtures["ridge"].model, "-o", str(out)).returncode == 0
    again = invoke_cli("convert", fixtures["ridge"].model, "-o", str(out))
    assert again.returncode == 10 and "--force" in again.stderr
    assert invoke_cli("convert", fixtures["ridge"].model, "-o", str(out), "--force").returncode == 0


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "convert", str(tmp_path / "absent.pkl"), "-o", str(tmp_path / "o"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_validate_passes_for_the_right_source_and_fails_for_another(fixtures, tmp_path):
    out = tmp_path / "o"
    assert invoke_cli("convert", fixtures["ridge"].model, "-o", str(out)).returncode == 0
    good = invoke_cli(
        "validate", str(out / "model.onnx"), "--source", fixtures["ridge"].model, "--sample", fixtures["ridge"].sample, "--json"
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["status"] == "passed"
    bad = invoke_cli(
        "validate",
        str(out / "model.onnx"),
        "--source",
        fixtures["linear"].model,
        "--sample",
        fixtures["ridge"].sample,
        "--atol",
        "1e-6",
        "--rtol",
        "1e-7",
    )
    assert bad.returncode == 9 and "validation failed" in bad.stderr


def test_inspect_json(fixtures):
    result = invoke_cli("inspect", fixtures["columns"].model, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "pickle" and info["framework"] == "sklearn" and info["estimator"] == "Pipeline"
    assert [s["name"] for s in info["signature"]["inputs"]] == ["age", "income", "city", "plan"]


def test_formats_json_is_the_registry():
    result = invoke_cli("formats", "--json")
    rows = json.loads(result.stdout)
    pairs = {(r["source"], r["target"]) for r in rows}
    assert {("sklearn", "onnx"), ("sklearn", "pmml"), ("sklearn", "skops")} <= pairs


def test_accept_mismatch_keeps_the_artifact_and_records_it(tmp_path):
    import numpy as np
    from sklearn.decomposition import KernelPCA

    rng = np.random.default_rng(0)
    X = np.abs(rng.standard_normal((200, 8))).astype(np.float32)
    source = tmp_path / "kpca.pkl"
    source.write_bytes(pickle.dumps(KernelPCA().fit(X[:160])))
    np.save(tmp_path / "rows.npy", X[160:])
    strict = invoke_cli("convert", str(source), "--sample", str(tmp_path / "rows.npy"), "-o", str(tmp_path / "strict"))
    assert strict.returncode == 9 and "x the expected values' spread" in strict.stderr and not (tmp_path / "strict").exists()
    kept = invoke_cli("convert", str(source), "--sample", str(tmp_path / "rows.npy"), "--accept-mismatch", "-o", str(tmp_path / "kept"))
    assert kept.returncode == 0, kept.stderr
    manifest = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    assert manifest["accepted_mismatch"] is True and manifest["validation"]["status"] == "failed"


def test_csv_sample_for_a_column_pipeline(fixtures, fixture_dir, tmp_path):
    result = invoke_cli(
        "convert", fixtures["columns"].model, "--sample", str(fixture_dir / "customers_sample.csv"), "-o", str(tmp_path / "o"), "--json"
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["samples"] == 150 and row["label_agreement"] == 1.0


def test_demo_converts_to_every_reachable_target(tmp_path):
    result = invoke_cli("demo", "-o", str(tmp_path / "demo"), "--json", env={"PACKAGER_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {r["target"]: r for r in report["results"]}
    for target in ("onnx", "onnx+dynamic", "onnx+fp16", "pmml", "skops", "joblib", "pickle", "mleap"):
        assert rows[target]["status"] == "passed", rows[target]
        assert rows[target]["pushed"].startswith("digits-demo@")
    assert rows["coreml"]["status"] == "refused" and "1.5.1" in rows["coreml"]["error"]
    assert report["registry"] == f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
    onnx = next(c for c in report["lineage"]["children"] if c["ref"] == rows["onnx"]["pushed"])
    assert {c["quantization"] for c in onnx["children"]} == {"dynamic", "fp16"}


def test_one_line_errors_survive_exceptions_without_a_message():
    """Wrapping a library failure must not fail itself: an empty message once meant IndexError in the except block."""
    from packager.errors import first_line

    assert first_line(ValueError()) == "ValueError"
    assert first_line(RuntimeError("  first\nsecond")) == "first"
    assert len(first_line(OSError("x" * 500), 300)) == 300


def test_to_all_exits_0_when_every_target_passed_or_was_refused_by_design(fixtures, tmp_path):
    """Core ML and MLeap refuse scikit-learn models by design: an answer, not a failure (was exit 1). The targets made
    for other models (``@converts(applies=...)``) are skipped and named in the summary line (tests/test_to_all.py)."""
    result = invoke_cli("convert", fixtures["ridge"].model, "--to", "all", "-o", str(tmp_path / "all"))
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert "passed" in last and "refused by design" in last and "failed" not in last
    skipped = ["lightgbm", "lleaves", "onedal", "treelite", "xgboost-json", "xgboost-ubj"]
    assert last.endswith(f"6 skipped as made for other models ({', '.join(skipped)})"), last
    assert not any(f" {t} " in line for t in skipped for line in result.stdout.splitlines()[:-1])
    assert not any((tmp_path / "all" / t).exists() for t in skipped) and (tmp_path / "all" / "onnx" / "model.onnx").is_file()


def test_several_targets_exit_with_the_failures_code_and_say_which_failed(fixtures, tmp_path):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3), dtype=np.float32))  # the ridge model takes more features
    result = invoke_cli("convert", fixtures["ridge"].model, "--to", "onnx", "--to", "skops", "--sample", str(tmp_path / "wrong.npy"),
                     "-o", str(tmp_path / "two"), "--json")
    rows = json.loads(result.stdout)
    assert result.returncode == 2 and [r["status"] for r in rows] == ["error", "error"]
    assert all(r["error"].startswith(("UsageError", "SampleError")) for r in rows)


def test_a_library_that_prints_does_not_break_json_output_with_trust(tmp_path):
    """With --trust the work runs in this process: tl2cgen prints its compile log ("Parallel compilation enabled") to
    stdout, which made `convert --to all --json` unparseable (the zoo catalog, iris RandomForest). Library prints now go
    to stderr while a command works; stdout is packager's answer only."""
    import pickle

    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from tests.conftest import invoke_cli

    x, y = load_iris(return_X_y=True)
    (tmp_path / "forest.pkl").write_bytes(pickle.dumps(RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(x, y)))
    done = invoke_cli("convert", tmp_path / "forest.pkl", "--to", "treelite", "-o", tmp_path / "out", "--trust", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["target"] == "treelite" and row["status"] == "passed"
    assert "compilation" in done.stderr.lower()  # the library did print, and it went to stderr
