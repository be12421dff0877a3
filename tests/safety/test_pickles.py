"""Pickle and joblib safety, round two: bypasses through allowed modules, joblib's array reader, array
states numpy trusts, tiny files that exhaust memory; and real scikit-learn models that must still load."""
from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

from packager.errors import InputFileError, UnsafeModelError
from packager.safety import check_file, import_refusal, load_joblib, load_pickle
from tests.attacks.families import pickles_round2 as attacks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("round2")
    marker = out / "PWNED"
    return {a.name: a.path for a in attacks.build(out, str(marker), out)}, marker


@pytest.mark.parametrize("module, name, why", [
    ("pandas._config.localization", "subprocess.Popen", "denied"),
    ("skops.card._parser", "subprocess.Popen", "not on the allow-list"),
    ("numpy.lib._format_impl", "io.FileIO", "denied"),
    ("scipy.sparse._base", "np.lib._format_impl.io.FileIO", "scipy.sparse._base.np is a module"),
    ("sklearn.base", "np.lib._npyio_impl.load", "is a module"),
    ("numpy._configtool", "Path", "is pathlib.Path"),
    ("numpy", "memmap", "not one a model needs"),
    ("numpy", "nditer", "not one a model needs"),
    ("pandas", "HDFStore", "not one a model needs"),
    ("pandas", "ExcelFile", "not one a model needs"),
    ("scipy.io._netcdf", "netcdf_file", "denied"),
    ("sklearn.callback._progressbar", "RichProgressMonitor", "denied"),
    ("joblib.numpy_pickle_compat", "NDArrayWrapper", "np.load(allow_pickle=True)"),
    ("numpy", "add.reduce", "numpy.add is a ufunc; a pickle may not reach objects through it"),
    ("sklearn.base", "BaseEstimator.get_params", "is the function sklearn.base.BaseEstimator.get_params, not on the list"),
    ("sklearn.base.BaseEstimator", "__init__", "module 'sklearn.base.BaseEstimator' cannot be imported"),
])
def test_imports_are_judged_on_the_object_they_resolve_to(module, name, why):
    reason = import_refusal(module, name)
    assert reason is not None and why in reason


@pytest.mark.parametrize("name", ["pandas_localization_popen.pkl", "skops_card_parser_popen.pkl", "numpy_format_impl_fileio.pkl",
                                  "global_opcode_localization_popen.pkl", "inst_opcode_skops_popen.pkl", "memo_walk_localization_popen.pkl",
                                  "scipy_sparse_deep_walk_fileio.pkl", "numpy_top_memmap_writes.pkl", "getattr_dunder_globals.pkl"])
def test_bypass_files_are_refused_by_check_and_by_load(corpus, name):
    files, marker = corpus
    with pytest.raises(UnsafeModelError, match=r"imports \S+ at byte \d+"):
        check_file(files[name], "pickle")
    from packager.safety.bounds import Budget
    from packager.safety.pickles import RestrictedUnpickler

    with pytest.raises(UnsafeModelError, match="imports"):  # the unpickler alone refuses it too (no scan before)
        RestrictedUnpickler(open(files[name], "rb"), name, Budget(name, 100)).load()
    assert not marker.exists()


def test_getattr_only_looks_up_methods_it_never_calls(corpus):
    files, marker = corpus
    check_file(files["getattr_tofile_then_call.pkl"], "pickle")  # every import is allowed: the refusal is the call
    with pytest.raises(UnsafeModelError, match=r"calls numpy\.ndarray\.tofile while loading"):
        load_pickle(files["getattr_tofile_then_call.pkl"])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["joblib_ndarraywrapper_np_load.joblib", "joblib_ndarraywrapper_compressed.joblib",
                                  "joblib_zndarraywrapper_reads_path.joblib", "joblib_object_array_runs_system.joblib"])
def test_joblib_wrappers_never_reach_a_second_unpickler(corpus, name):
    files, marker = corpus
    with pytest.raises(UnsafeModelError, match=r"NDArrayWrapper: a joblib < 0\.10 array wrapper|imports posix\.system"):
        load_joblib(files[name])
    assert not marker.exists()


def _exit_code(code: str, path: Path, limit: int | None = None, timeout: float = 60) -> tuple[int, str, float]:
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n" if limit else ""
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", prelude + code, str(path)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return result.returncode, result.stdout.strip(), time.monotonic() - start


LOAD = ("import sys\nfrom packager.errors import PackagerError\nfrom packager.safety import load_joblib, load_pickle\n"
        "p = sys.argv[1]\ntry:\n    (load_joblib if p.endswith('.joblib') else load_pickle)(p); print('loaded')\n"
        "except PackagerError as e:\n    print(type(e).__name__, e.what)")


def test_crafted_object_arrays_crash_numpy_natively_but_are_refused_here(tmp_path):
    files = attacks.native_crash_files(tmp_path)
    native = "import sys, pickle, joblib\np = sys.argv[1]\n(joblib.load(p) if p.endswith('.joblib') else pickle.load(open(p, 'rb')))"
    assert _exit_code(native, files["joblib"])[0] == -11  # the crash we prevent: SIGSEGV in joblib's nested unpickler
    assert _exit_code(native, files["pickle4"])[0] == -11  # numpy's 4-tuple array state (the old check looked at 5-tuples only)
    for path in files.values():
        code, out, _ = _exit_code(LOAD, path)
        assert code == 0 and out.startswith("InputFileError") and "does not match its shape (2,)" in out


@pytest.mark.parametrize("name, what", [
    ("bytearray_1gib.pkl", "builtins.bytearray(1073741824) would allocate 1 GiB"),
    ("deque_range_forever.pkl", "range of 4611686018427387904 items"),
    ("list_range_1e12.pkl", "range of 1000000000000 items"),
    ("reconstruct_1tib.pkl", "numpy _reconstruct of shape (1099511627776,) would allocate 1 TiB"),
    ("ndarray_ctor_1tib.pkl", "numpy.ndarray of shape (1099511627776,)"),
    ("numpy_void_1gib.pkl", "numpy.void(1073741824)"),
    ("csr_matrix_huge_shape.pkl", "csr_matrix of shape (1099511627776, 1)"),
    ("reconstructor_bytearray_base.pkl", "builtins.bytearray(2147483648)"),
    ("range_index_2e18.pkl", "pandas RangeIndex of 2305843009213693952 items"),
    ("partial_call_bypasses_bounds.pkl", "calls a functools.partial object"),
    ("generator_ctor_calls_bytearray.pkl", "is given builtins.bytearray to call"),
    ("joblib_wrapper_shape_1tib.joblib", "ends inside a joblib array of shape (137438953472,)"),
])
def test_tiny_files_that_exhaust_memory_are_refused_at_once(corpus, name, what):
    files, _ = corpus
    assert files[name].stat().st_size < 400
    code, out, seconds = _exit_code(LOAD, files[name], limit=3 << 30, timeout=120)
    assert code == 0, out
    assert what in out and out.split()[0] in ("UnsafeModelError", "InputFileError")
    assert seconds < 30  # an interpreter start plus imports; the refusal itself is immediate


# ------------------------------------------------------------------ real models must keep loading

def _text_corpus():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

    lines = [line.strip() for d in (load_iris(), load_wine(), load_breast_cancer(), load_diabetes()) for line in d.DESCR.splitlines()]
    docs = [line for line in lines if len(line.split()) > 3]
    return docs, np.array([len(d) % 2 for d in docs])


def _zoo():
    import pandas as pd
    from scipy.stats import loguniform, randint
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.datasets import load_diabetes, load_iris, load_wine
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import LinearSVC

    X, y = load_iris(return_X_y=True)
    frame = load_wine(as_frame=True).frame
    frame["band"] = pd.Categorical(np.where(frame["alcohol"] > 13, "high", "low"))
    Xf, yf = frame.drop(columns="target"), frame["target"]
    Xd, yd = load_diabetes(return_X_y=True)
    Xn = X.copy()
    Xn[::7, 1] = np.nan
    docs, labels = _text_corpus()
    columns = ColumnTransformer([("num", StandardScaler(), ["alcohol", "malic_acid"]), ("cat", OneHotEncoder(), ["band"])])
    return {
        "GridSearchCV": (GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}, cv=3), X, y),
        "RandomizedSearchCV": (RandomizedSearchCV(RandomForestClassifier(n_estimators=5, random_state=0),
                                                  {"max_depth": randint(2, 5), "min_impurity_decrease": loguniform(1e-4, 1e-2)},
                                                  n_iter=3, cv=3, random_state=0), X, y),
        "HGB_from_dtype": (HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=10), Xf, yf),
        "CalibratedClassifierCV": (CalibratedClassifierCV(LinearSVC(), cv=3), X, y),
        "TransformedTargetRegressor": (TransformedTargetRegressor(Ridge(), func=np.log1p, inverse_func=np.expm1), Xd, yd),
        "FunctionTransformer_log1p": (make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)), X, y),
        "ColumnTransformer_pandas": (make_pipeline(columns, LogisticRegression(max_iter=1000)), Xf, yf),
        "SimpleImputer": (make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500)), Xn, y),
        "KMeans": (KMeans(3, n_init=2, random_state=0), X, None),
        "IsolationForest": (IsolationForest(n_estimators=10, random_state=0), X, None),
        "Tfidf": (make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=500)), docs, labels),
    }


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    import warnings

    out = tmp_path_factory.mktemp("zoo")
    saved = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (model, X, y) in _zoo().items():
            model.fit(X, y) if y is not None else model.fit(X)
            expected = model.predict(X[:20] if not hasattr(X, "iloc") else X.iloc[:20])
            sample = X[:20] if not hasattr(X, "iloc") else X.iloc[:20]
            paths = {"pickle": out / f"{name}.pkl", "joblib": out / f"{name}.joblib", "joblib_z": out / f"{name}.z.joblib"}
            paths["pickle"].write_bytes(pickle.dumps(model, protocol=5))
            joblib.dump(model, paths["joblib"])
            joblib.dump(model, paths["joblib_z"], compress=3)
            saved[name] = (paths, sample, expected)
    return saved


@pytest.mark.parametrize("name", ["GridSearchCV", "RandomizedSearchCV", "HGB_from_dtype", "CalibratedClassifierCV",
                                  "TransformedTargetRegressor", "FunctionTransformer_log1p", "ColumnTransformer_pandas", "SimpleImputer",
                                  "KMeans", "IsolationForest", "Tfidf"])
def test_real_models_pass_the_check_and_load(zoo, name):
    paths, sample, expected = zoo[name]
    check_file(paths["pickle"], "pickle")
    for kind, path in paths.items():
        model = load_pickle(path) if kind == "pickle" else load_joblib(path)
        np.testing.assert_array_equal(model.predict(sample), expected, err_msg=f"{name} via {kind}")


def test_masked_arrays_rebuild_and_their_state_is_checked(tmp_path):
    masked = np.ma.masked_invalid(np.array([1.0, np.nan, 3.0]))
    good = tmp_path / "masked.pkl"
    good.write_bytes(pickle.dumps({"cv_results_": masked}))
    loaded = load_pickle(good)["cv_results_"]
    assert loaded.mask.tolist() == [False, True, False] and loaded.sum() == 4.0
    bad = tmp_path / "bad_masked.pkl"
    bad.write_bytes(pickle.dumps(attacks._Reduce(np.ma.core._mareconstruct, (np.ma.MaskedArray, np.ndarray, (0,), "b"),
                                                 (1, (3,), np.dtype("f8"), False, b"\0" * 8, b"\0" * 3, None))))
    with pytest.raises(InputFileError, match=r"data \(8\) does not match its shape \(3,\)"):
        load_pickle(bad)


def test_joblib_arrays_round_trip_in_every_layout(tmp_path):
    arrays = {"c": np.arange(12.0).reshape(3, 4), "f": np.asfortranarray(np.arange(12).reshape(3, 4)),
              "obj": np.array(["a", 1, None], dtype=object),
              "be": np.arange(5, dtype=">i4"), "empty": np.zeros((0, 3)), "rec": np.zeros(2, dtype=[("a", "f4"), ("b", "i8")])}
    for compress in (0, 3):
        path = tmp_path / f"arrays{compress}.joblib"
        joblib.dump(arrays, path, compress=compress)
        loaded = load_joblib(path)
        for key, value in arrays.items():
            assert loaded[key].dtype.newbyteorder("=") == value.dtype.newbyteorder("=") and loaded[key].shape == value.shape
            assert loaded[key].tolist() == value.tolist(), key
        assert loaded["f"].flags.f_contiguous and loaded["c"].flags.writeable
