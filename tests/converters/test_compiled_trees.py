"""Compiled tree runtimes (converters/compiled_trees.py): lleaves for LightGBM, treelite + tl2cgen for forests.
Predictions compared with the native library's own predict; compilation cached by the model's digest; a package never
brings native code (a shared library placed in it is never loaded: its constructor's marker never appears)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier

from packager.conversion import convert
from packager.errors import InputFileError
from packager.plugins import default_registry


@pytest.fixture(scope="module")
def data():
    Xc, yc = load_breast_cancer(return_X_y=True)
    Xr, yr = load_diabetes(return_X_y=True)
    return Xc, yc, Xr, yr


def _run(package, X):
    from packager.package import read_manifest

    manifest = read_manifest(package.path)
    runtime = default_registry().runtime(manifest.format)
    handle = runtime.load(package.path / manifest.model_file, threads=1)
    return runtime.predict(handle, manifest.signature, {manifest.signature.input_names[0]: X})


@pytest.mark.parametrize(
    "name, make, target",
    [
        ("forest", lambda Xc, yc, Xr, yr: RandomForestClassifier(30, max_depth=6, random_state=0).fit(Xc, yc), "treelite"),
        ("extra", lambda Xc, yc, Xr, yr: ExtraTreesRegressor(30, max_depth=6, random_state=0).fit(Xr, yr), "treelite"),
        ("lightgbm", lambda Xc, yc, Xr, yr: lgb.LGBMClassifier(n_estimators=40, verbose=-1).fit(Xc, yc), "lleaves"),
        ("lightgbm-reg", lambda Xc, yc, Xr, yr: lgb.LGBMRegressor(n_estimators=40, verbose=-1).fit(Xr, yr), "lleaves"),
        ("lightgbm-tl", lambda Xc, yc, Xr, yr: lgb.LGBMClassifier(n_estimators=40, verbose=-1).fit(Xc, yc), "treelite"),
        ("xgboost", lambda Xc, yc, Xr, yr: xgb.XGBClassifier(n_estimators=40, max_depth=4).fit(Xc, yc), "treelite"),
    ],
)
def test_compiled_runtime_matches_the_native_library(data, tmp_path, name, make, target):
    Xc, yc, Xr, yr = data
    model = make(Xc, yc, Xr, yr)
    X = Xc if hasattr(model, "predict_proba") else Xr
    package = convert(model, target, out=tmp_path / name, sample=X[:200])
    assert package.manifest.validation["status"] == "passed" and package.manifest.format == target
    assert not [p for p in package.path.rglob("*") if p.suffix in (".so", ".o", ".dll", ".dylib")]  # data only
    outputs = _run(package, X[200:])
    if hasattr(model, "predict_proba"):
        dtype = np.float32 if name == "xgboost" else np.float64
        expected = model.predict_proba(X[200:].astype(dtype))
        assert np.max(np.abs(outputs["probabilities"] - expected)) <= (1e-6 if name == "xgboost" else 1e-9)
        np.testing.assert_array_equal(outputs["label"], model.predict(X[200:].astype(dtype)))
    else:
        expected = model.predict(X[200:])
        assert np.max(np.abs(outputs["variable"] - expected)) <= 1e-9 * max(1.0, np.abs(expected).max())


def test_compilation_is_cached_by_digest_and_a_changed_model_compiles_again(data, tmp_path):
    from converters.compiled_trees import cache_root

    Xc, yc, *_ = data
    model = RandomForestClassifier(10, max_depth=4, random_state=1).fit(Xc, yc)
    before = set(cache_root().glob("*/model.so"))
    package = convert(model, "treelite", out=tmp_path / "p", sample=Xc[:100])  # its validation compiles it
    runtime = default_registry().runtime("treelite")
    path = package.path / package.manifest.model_file
    runtime.load(path)
    libraries = set(cache_root().glob("*/model.so")) - before
    assert len(libraries) == 1  # validation and this load: one compilation, one library
    (library,) = libraries
    assert library.parent.parent == cache_root() and not library.is_relative_to(package.path)
    stamp = library.stat().st_mtime_ns
    started = time.perf_counter()
    runtime.load(path)
    assert library.stat().st_mtime_ns == stamp and time.perf_counter() - started < 5  # not rebuilt
    other = RandomForestClassifier(10, max_depth=4, random_state=2).fit(Xc, yc)
    convert(other, "treelite", out=tmp_path / "q", sample=Xc[:100])
    assert len(set(cache_root().glob("*/model.so")) - before) == 2  # another digest, another library


def _marker_library(folder: Path, marker: Path) -> Path:
    """A shared library whose constructor writes ``marker``: what an attacker would have a loader pick up."""
    source = folder / "evil.c"
    body = f'FILE *f = fopen("{marker}", "w"); if (f) fclose(f);'
    source.write_text(f"#include <stdio.h>\n__attribute__((constructor)) static void own(void) {{ {body} }}\n")
    evil = folder / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(evil), str(source)], check=True)
    return evil


def test_a_shared_library_in_a_package_is_never_loaded(data, tmp_path):
    """The attacker's package carries model.so (and lib variants) whose constructor writes a marker: predicting with
    the package works and the marker never appears, because the runtime loads only what it compiled into its cache."""
    Xc, yc, *_ = data
    marker = tmp_path / "PWNED"
    evil = _marker_library(tmp_path, marker)
    for target, model in (
        ("treelite", RandomForestClassifier(10, max_depth=4, random_state=3).fit(Xc, yc)),
        ("lleaves", lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(Xc, yc)),
    ):
        package = convert(model, target, out=tmp_path / target, sample=Xc[:100])
        for name in ("model.so", "libmodel.so", "model.o", "predictor.so"):
            (package.path / name).write_bytes(evil.read_bytes())
        outputs = _run(package, Xc[:50])
        np.testing.assert_array_equal(outputs["label"], model.predict(Xc[:50]))
    assert not marker.exists()
    import ctypes

    ctypes.CDLL(str(evil))  # the payload is real: loading it does write the marker
    assert marker.exists()


def test_a_forest_file_with_a_bad_child_index_is_refused_before_treelite_reads_it(data, tmp_path):
    Xc, yc, *_ = data
    package = convert(RandomForestClassifier(5, max_depth=3, random_state=0).fit(Xc, yc), "treelite", out=tmp_path / "p", sample=Xc[:50])
    path = package.path / package.manifest.model_file
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["children_left"][0] = 10_000_000
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    os.replace(bad, path)
    with pytest.raises(InputFileError, match="child index points outside the tree"):
        default_registry().runtime("treelite").load(path)
    arrays["children_left"][0] = 1
    arrays["feature"][0] = 999
    np.savez(bad, **arrays)
    os.replace(bad, path)
    with pytest.raises(InputFileError, match="split feature is outside"):
        default_registry().runtime("treelite").load(path)


# ---------------------------------------------------------------- the compile cache shared with sandboxed children


def _forest_package(data, tmp_path, seed):
    Xc, yc, *_ = data
    model = RandomForestClassifier(8, max_depth=4, random_state=seed).fit(Xc, yc)
    return model, convert(model, "treelite", out=tmp_path / f"forest{seed}", sample=Xc[:100])  # in-process: compiled here


def test_a_sandboxed_bench_child_loads_the_library_its_parent_built(data, tmp_path, monkeypatch):
    """The child runs without a compiler on its PATH: it can only have loaded the library its parent built and bound
    read-only. Control: a model its parent could not build (no gcc for the parent either) fails in the child."""
    import sys
    from dataclasses import asdict

    import pandas as pd

    from packager import confined
    from packager.requests import BenchRequest, BenchSettings

    Xc, *_ = data
    rows = tmp_path / "rows.parquet"
    pd.DataFrame(Xc[:64], columns=[f"x{i}" for i in range(Xc.shape[1])]).to_parquet(rows)
    _, built = _forest_package(data, tmp_path, 11)
    settings = asdict(BenchSettings(batch_sizes=(16,), warmup=1, min_runs=2, min_seconds=0.0))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no gcc, for the parent and the child
    result = confined.bench(BenchRequest(kind="artifact", path=str(built.path), data=str(rows), settings=settings))
    assert result["error"] == "" and result["measurements"][0]["rows_per_second"] > 0
    (folder,) = default_registry().runtime("treelite").shared_with_child(built.path / built.manifest.model_file)
    shutil.rmtree(folder)  # the control: nothing built, and no compiler for the parent either
    failed = confined.bench(BenchRequest(kind="artifact", path=str(built.path), data=str(rows), settings=settings))
    assert "tl2cgen could not compile the model" in failed["error"] and not (folder / "model.so").exists()


def test_a_child_that_ran_hostile_code_cannot_plant_a_library_the_next_load_picks_up(data, tmp_path, monkeypatch):
    """The attacker has code execution in a sandboxed child that sees the parent's compiled forest (the read-only
    share every bench child of that package gets): it overwrites, replaces and adds libraries at the child's view of
    the cache and at the host path. Nothing lands: the library's bytes are unchanged, the next trusted load predicts
    with the real forest, and the poisoned library's constructor marker never appears (it does when loaded directly)."""
    import ctypes
    import hashlib
    import json
    import pickle

    from converters.compiled_trees import cache_root
    from packager import sandbox
    from packager.requests import InspectRequest, to_data
    from tests.attacks.build_corpus import _Reduce

    Xc, *_ = data
    model, package = _forest_package(data, tmp_path, 21)
    runtime = default_registry().runtime("treelite")
    (folder,) = runtime.shared_with_child(package.path / package.manifest.model_file)
    library = folder / "model.so"
    digest = hashlib.sha256(library.read_bytes()).hexdigest()
    marker = tmp_path / "PWNED"
    evil = _marker_library(tmp_path, marker)
    inside = f"/tmp/home/.packager/{folder.relative_to(cache_root().parent.parent)}"
    code = f"""
import json, os, shutil
payload = open({str(evil)!r}, "rb").read()
tried = {{}}
for target in ({inside!r} + "/model.so", {str(library)!r}, {inside!r} + "/lib.so", {str(folder)!r} + "/lib.so"):
    for how in ("write", "replace"):
        try:
            if how == "write":
                open(target, "wb").write(payload)
            else:
                open("/tmp/staged.so", "wb").write(payload)
                os.replace("/tmp/staged.so", target)
            tried[target + " " + how] = "done"
        except OSError as exc:
            tried[target + " " + how] = type(exc).__name__
json.dump({{"seen": os.path.isfile({inside!r} + "/model.so"), "tried": tried}}, open("/tmp/attempts.json", "w"))
"""
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(_Reduce(exec, code), protocol=4))
    monkeypatch.setenv(sandbox.ENV_SKIP_CHECKS, "1")  # the test-only switch: the child unpickles it unchecked
    with sandbox.workspace() as ws:
        ws.share(folder)
        try:
            ws.call("inspect", to_data(InspectRequest(path=str(hostile))), label="hostile", reads=[hostile, evil])
        except Exception:
            pass  # the payload returns no model: the child's error is expected; what it tried is in its /tmp
        attempts = json.loads((ws.tmp / "attempts.json").read_text())
    assert attempts["seen"]  # the hostile code ran, and saw the parent's library
    assert attempts["tried"] and "done" not in attempts["tried"].values()
    assert sorted(p.name for p in folder.iterdir()) == ["model.so"]
    assert hashlib.sha256(library.read_bytes()).hexdigest() == digest
    outputs = _run(package, Xc[:50])
    np.testing.assert_array_equal(outputs["label"], model.predict(Xc[:50]))
    assert not marker.exists()
    ctypes.CDLL(str(evil))  # the payload is real: loading it does write the marker
    assert marker.exists()


def test_a_search_skips_treelite_builds_that_cannot_fit_the_time_left_or_cannot_win(tmp_path):
    """optimize passes ``search_seconds``: the converter estimates gcc's time from the node count (2.3 ms a node,
    measured) and refuses, before writing anything, a forest whose code cannot win (over 100,000 nodes: the 293,492-node
    forest ran at 0.24x native) or whose build cannot finish in the time left. Without the option it builds."""
    from converters._forest_arrays import SECONDS_PER_NODE, WIN_NODES
    from packager.errors import UnsupportedConversion

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5000, 5)), rng.integers(0, 2, 5000)  # random labels: deep trees, many nodes
    big = RandomForestClassifier(60, random_state=0, n_jobs=1).fit(X, y)
    nodes = sum(e.tree_.node_count for e in big.estimators_)
    assert nodes > WIN_NODES
    with pytest.raises(UnsupportedConversion, match=f"skipped in the search: {nodes:,} nodes .* beyond the cache"):
        convert(big, "treelite", out=tmp_path / "big", sample=X[:20], plugin_options={"search_seconds": "none"})
    small = RandomForestClassifier(8, max_depth=6, random_state=0).fit(X, y)
    small_nodes = sum(e.tree_.node_count for e in small.estimators_)
    assert small_nodes * SECONDS_PER_NODE > 0.5
    with pytest.raises(UnsupportedConversion, match=f"~{small_nodes * SECONDS_PER_NODE:.0f} s of gcc for {small_nodes:,} nodes, 0 s left"):
        convert(small, "treelite", out=tmp_path / "small", sample=X[:20], plugin_options={"search_seconds": "0"})
    assert not (tmp_path / "big").exists() and not (tmp_path / "small").exists()


def test_a_forest_fed_float64_rows_answers_as_scikit_learn_and_validation_judges_what_predict_feeds(data, tmp_path, monkeypatch):
    """scikit-learn compares float32 rows with float64 thresholds. treelite's library took float64 rows as given, so a
    row between float32(x) and a threshold went the other way (a diabetes forest: 4.66 off on 22 of 442 rows, found
    by an outside user), and validation, which fed the signature's float32, passed it. Now the runtime casts as
    scikit-learn does, and validation feeds a runtime that takes the source's input what predict will feed it."""
    import joblib
    from packager.converters.compiled_trees import TreeliteRuntime
    from sklearn.ensemble import RandomForestRegressor

    from packager.errors import ValidationFailed
    from tests.conftest import invoke_cli

    _, _, Xr, yr = data
    model = RandomForestRegressor(30, max_depth=6, random_state=0).fit(Xr, yr)
    package = convert(model, "treelite", out=tmp_path / "ok", sample=Xr)
    assert package.manifest.validation["status"] == "passed"
    outputs = _run(package, Xr)  # float64 rows, as predict reads them from a table
    assert np.max(np.abs(outputs["variable"] - model.predict(Xr))) <= 1e-9 * np.abs(yr).max()
    # `validate` reads the package's format from its manifest (a forest.npz is a zip to content sniffing: it was exit 4)
    joblib.dump(model, tmp_path / "rf.joblib")
    np.save(tmp_path / "rows.npy", Xr)
    done = invoke_cli("validate", str(package.path), "--source", str(tmp_path / "rf.joblib"), "--sample", str(tmp_path / "rows.npy"))
    assert done.returncode == 0 and "passed" in done.stdout, done.stderr

    load = TreeliteRuntime.load
    monkeypatch.setattr(TreeliteRuntime, "load", lambda self, path, **kw: (*load(self, path, **kw)[:3], False))  # the old cast
    with pytest.raises(ValidationFailed, match=r"variable: max \|diff\|"):
        convert(model, "treelite", out=tmp_path / "old", sample=Xr)
    assert not (tmp_path / "old").exists()


@pytest.mark.parametrize("target", ["treelite", "onedal"])
def test_a_multi_output_forest_is_refused_as_unsupported_before_anything_is_written(data, tmp_path, target):
    """It passed the converter and failed at load as an unreadable package (exit 4, "re-create it with --to treelite")."""
    from sklearn.ensemble import RandomForestRegressor

    from packager.errors import UnsupportedConversion

    _, _, Xr, yr = data
    model = RandomForestRegressor(3, max_depth=3, random_state=0).fit(Xr, np.c_[yr, np.sqrt(yr)])
    with pytest.raises(UnsupportedConversion, match="use --to onnx") as refused:
        convert(model, target, out=tmp_path / "p", sample=Xr[:50])
    assert refused.value.exit_code == 6 and not (tmp_path / "p").exists()
