"""Issue 21, finding 5: native parsers crashed on files that passed the checks. A LightGBM text model with
``tree_sizes=999999999999`` and a scikit-learn tree whose child index is 50,000,000 (pickle and .skops) segfaulted
``lib_lightgbm.so`` / ``_tree.so``: contained by the sandbox for inspect/convert/predict (killed by SIGSEGV), unconfined
in ``predict --engine dask`` workers. Now the structure is checked in Python first and the refusal names the field.

On 826a172 the CLI tests fail (stderr says SIGSEGV, or the Dask workers die); the in-process tests fail because the
crafted objects load without complaint (they would crash only when something predicts)."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from packager.errors import InputFileError, UnsafeModelError
from packager.safety import load_joblib, load_pickle
from tests.conftest import run_cli

CHILD = 50_000_000


def _iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def _with_nodes(model, field: str, node: int, value: int):
    """``model`` with one field of one node of its tree_ replaced (Tree.__setstate__ does not walk the nodes)."""
    from sklearn.tree._tree import Tree

    old = model.tree_
    state = old.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][node] = value
    tree = Tree(old.n_features, np.asarray(old.n_classes, dtype=np.intp), old.n_outputs)
    tree.__setstate__(dict(state, nodes=nodes))
    model.tree_ = tree
    return model


def _bad_tree():
    from sklearn.tree import DecisionTreeClassifier

    X, y = _iris()
    return _with_nodes(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), "left_child", 0, CHILD)


def _lightgbm_text(path: Path) -> Path:
    import lightgbm

    X, y = _iris()
    lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, y).booster_.save_model(str(path))
    return path


def _lying_sizes(path: Path) -> Path:
    text = _lightgbm_text(path).read_text()
    path.write_text(re.sub(r"(?m)^tree_sizes=\d+", "tree_sizes=999999999999", text))
    return path


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    import skops.io as sio

    root = tmp_path_factory.mktemp("natives")
    (root / "tree.pkl").write_bytes(pickle.dumps(_bad_tree()))
    sio.dump(_bad_tree(), root / "tree.skops")
    _lying_sizes(root / "lgbm.txt")
    rows = _iris()[0][:20]
    np.save(root / "rows.npy", rows.astype(np.float32))
    import pandas as pd

    pd.DataFrame(rows, columns=[f"x{i}" for i in range(4)]).to_parquet(root / "rows.parquet")  # --engine dask reads Parquet/CSV
    return root


_EXPECTED = {
    "tree.pkl": f"left_child={CHILD}",
    "tree.skops": f"left_child={CHILD}",
    "lgbm.txt": "tree_sizes gives tree 0 999999999999 bytes",
}


def _refused(done, name: str, *, worker_log: bool = False) -> None:
    """Exit 5 and one line naming the field; with ``worker_log``, Dask's own worker log ("Compute Failed") comes before it."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 5, done.stderr
    assert lines[-1].startswith("error: UnsafeModelError") and _EXPECTED[name] in lines[-1], done.stderr
    assert "SIGSEGV" not in done.stderr, done.stderr
    assert worker_log or len(lines) == 1, done.stderr


@pytest.mark.parametrize("name", sorted(_EXPECTED))
def test_finding_5_refused_by_inspect_convert_and_predict_naming_the_field(crafted, name, tmp_path):
    _refused(run_cli("inspect", str(crafted / name)), name)
    _refused(run_cli("convert", str(crafted / name), "--to", "onnx", "-o", str(tmp_path / "pkg")), name)
    assert not (tmp_path / "pkg").exists()
    _refused(run_cli("predict", str(crafted / name), str(crafted / "rows.npy"), "-o", str(tmp_path / "out.npy")), name)
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("name, target", [("tree.skops", "skops"), ("lgbm.txt", "lightgbm")])
def test_finding_5_refused_in_the_dask_driver_and_workers(crafted, name, target, tmp_path):
    """A package whose model file was swapped for the crafted one: the workers load it unconfined, so the static check
    is what stands between the file and the native code (on 826a172: the workers died of the segfault)."""
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    X, y = _iris()
    if target == "skops":
        sio.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), tmp_path / "good.skops")
        source = tmp_path / "good.skops"
    else:
        source = _lightgbm_text(tmp_path / "good.txt")
    built = run_cli("convert", str(source), "--to", target, "--sample", str(crafted / "rows.npy"), "-o", str(tmp_path / "pkg"))
    assert built.returncode == 0, built.stderr
    model_file = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["model_file"]
    shutil.copy(crafted / name, tmp_path / "pkg" / model_file)
    done = run_cli("predict", str(tmp_path / "pkg"), str(crafted / "rows.parquet"), "-o", str(tmp_path / "out.parquet"), "--engine", "dask")
    _refused(done, name, worker_log=True)
    assert "died" not in done.stderr and "KilledWorker" not in done.stderr


# ---------------------------------------------------------------- in-process: each structure the checks cover


def _dump(obj, path: Path) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


@pytest.mark.parametrize(
    "field, node, value, message",
    [
        ("right_child", 0, 0, "right_child=0: outside"),  # a cycle back to the root
        ("feature", 0, 4, "feature=4: outside 0..3"),
        ("left_child", 1, -5, "left_child=-5"),
    ],
)
def test_a_tree_node_out_of_range_is_refused_in_pickle_and_joblib(field, node, value, message, tmp_path):
    import joblib
    from sklearn.tree import DecisionTreeClassifier

    X, y = _iris()
    model = _with_nodes(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), field, node, value)
    with pytest.raises(UnsafeModelError, match=re.escape(message)):
        load_pickle(_dump(model, tmp_path / "m.pkl"))
    joblib.dump(model, tmp_path / "m.joblib")
    with pytest.raises(UnsafeModelError, match=re.escape(message)):
        load_joblib(tmp_path / "m.joblib")


def test_a_tree_narrower_than_its_estimator_and_a_forest_tree_of_another_width_are_refused(tmp_path):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, y = _iris()
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    tree.n_features_in_ = 2  # predict would accept 2-column rows and the tree reads column 3
    with pytest.raises(UnsafeModelError, match="tree_ n_features=4 but n_features_in_=2"):
        load_pickle(_dump(tree, tmp_path / "t.pkl"))
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    forest.n_features_in_ = 3  # forests call their trees with check_input=False
    for member in forest.estimators_:
        member.n_features_in_ = 3
    with pytest.raises(UnsafeModelError, match="n_features=4 but n_features_in_=3"):
        load_pickle(_dump(forest, tmp_path / "f.pkl"))


def test_gradient_boosting_estimators_wider_than_its_outputs_is_refused(tmp_path):
    """predict_stages writes out[:, k] for every column of estimators_, unchecked."""
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = _iris()
    model = GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y)
    model.estimators_ = np.concatenate([model.estimators_, model.estimators_], axis=1)
    with pytest.raises(UnsafeModelError, match=r"estimators_ has shape \(3, 6\), not \(n, n_trees_per_iteration_=3\)"):
        load_pickle(_dump(model, tmp_path / "gb.pkl"))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.nodes.__setitem__("left", np.where(p.nodes["is_leaf"] == 0, 10**6, p.nodes["left"])), "left=1000000"),
        (lambda p: p.nodes.__setitem__("feature_idx", np.where(p.nodes["is_leaf"] == 0, 9, p.nodes["feature_idx"])), "feature_idx=9"),
        (lambda p: p.nodes.__setitem__("bitset_idx", np.where(p.nodes["is_categorical"] == 1, 99, 0)), "bitset_idx=99"),
    ],
)
def test_a_hist_gradient_boosting_predictor_out_of_range_is_refused(change, message, tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _iris()
    Xc = np.c_[np.random.default_rng(0).integers(0, 5, len(X)), X]
    model = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0], random_state=0).fit(Xc, y)
    assert any(p.nodes["is_categorical"].any() for it in model._predictors for p in it)
    for iteration in model._predictors:
        for predictor in iteration:
            change(predictor)
    with pytest.raises(UnsafeModelError, match=re.escape(message)):
        load_pickle(_dump(model, tmp_path / "hgb.pkl"))


def test_skops_tree_with_a_short_value_array_and_a_node_count_past_capacity(tmp_path):
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    from converters.sklearn import load_skops

    X, y = _iris()
    model = _with_nodes(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), "feature", 2, 7)
    sio.dump(model, tmp_path / "m.skops")
    with pytest.raises(UnsafeModelError, match="feature=7: outside 0..3"):
        load_skops(tmp_path / "m.skops")


def _lightgbm_booster(tmp_path):
    import lightgbm

    X, y = _iris()
    return lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y)


def test_a_pickled_lightgbm_booster_is_checked_as_its_text_is(tmp_path):
    """Booster.__setstate__ hands the model string to LGBM_BoosterLoadModelFromString: its first tree size is made
    all nines (same length, so the pickle stays valid)."""
    data = pickle.dumps(_lightgbm_booster(tmp_path))
    first = re.search(rb"tree_sizes=(\d+)", data)
    (tmp_path / "lgb.pkl").write_bytes(data[: first.start(1)] + b"9" * len(first.group(1)) + data[first.end(1) :])
    with pytest.raises(UnsafeModelError, match="LightGBM model inside.*tree_sizes gives tree 0 9+ bytes"):
        load_pickle(tmp_path / "lgb.pkl")


def _xgboost(tmp_path):
    import xgboost

    X, y = _iris()
    return xgboost.XGBClassifier(n_estimators=3, max_depth=3).fit(X, y)


def _bad_children(document: dict) -> dict:
    tree = document["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["left_children"][0] = CHILD
    return document


def test_xgboost_json_and_ubj_with_a_child_out_of_range_are_refused(tmp_path):
    from converters.xgboost import XGBoost
    from packager.safety.boosting import read_ubjson

    model = _xgboost(tmp_path)
    model.save_model(tmp_path / "m.json")
    model.save_model(tmp_path / "m.ubj")
    document = _bad_children(json.loads((tmp_path / "m.json").read_text()))
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(UnsafeModelError, match=f"bad.json: tree 0: node 0 has left_children={CHILD}"):
        XGBoost().load_native(tmp_path / "bad.json", "xgboost-json")
    ubj = (tmp_path / "m.ubj").read_bytes()
    left = read_ubjson(ubj)["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"]
    packed = left.astype(left.dtype).tobytes()
    patched = left.copy()
    patched[0] = CHILD
    at = ubj.index(packed, ubj.index(b"left_children"))  # tree 0's array
    (tmp_path / "bad.ubj").write_bytes(ubj[:at] + patched.tobytes() + ubj[at + len(packed) :])
    with pytest.raises(UnsafeModelError, match=f"bad.ubj: tree 0: node 0 has left_children={CHILD}"):
        XGBoost().load_native(tmp_path / "bad.ubj", "xgboost-ubj")


def test_a_truncated_ubj_is_one_input_error(tmp_path):
    from converters.xgboost import XGBoost

    _xgboost(tmp_path).save_model(tmp_path / "m.ubj")
    (tmp_path / "cut.ubj").write_bytes((tmp_path / "m.ubj").read_bytes()[:500])
    with pytest.raises(InputFileError, match="cut.ubj is not valid UBJSON .*runs past the end"):
        XGBoost().load_native(tmp_path / "cut.ubj", "xgboost-ubj")


def test_real_tree_models_still_load_and_predict_the_same(tmp_path):
    """What fit writes passes every rule (best-first trees, NaN and categorical HGB, boosting pickles, skops)."""
    import skops.io as sio
    from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor, RandomForestClassifier
    from sklearn.tree import DecisionTreeRegressor

    from converters.sklearn import load_skops

    X, y = _iris()
    Xn = X.copy()
    Xn[::5, 1] = np.nan
    models = [
        DecisionTreeRegressor(max_leaf_nodes=7).fit(X, y),
        RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y),
        GradientBoostingRegressor(n_estimators=4).fit(X, y),
        HistGradientBoostingRegressor(max_iter=4).fit(Xn, y),
        _xgboost(tmp_path),
        _lightgbm_booster(tmp_path),
    ]
    for model in models:
        rows = Xn if isinstance(model, HistGradientBoostingRegressor) else X
        np.testing.assert_array_equal(load_pickle(_dump(model, tmp_path / "m.pkl")).predict(rows), model.predict(rows))
        if type(model).__module__.startswith("sklearn"):
            sio.dump(model, tmp_path / "m.skops")
            np.testing.assert_array_equal(load_skops(tmp_path / "m.skops").predict(rows), model.predict(rows))


class _DtypeState:
    """Pickles as numpy.dtype('V16') with the given state applied by BUILD (what a crafted file can hold)."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return (np.dtype, ("V16", False, True), self.state)


@pytest.mark.parametrize(
    "fields",
    [
        {"a": (np.dtype("int64"), 0), "b": (np.dtype("int64"), 2**31 - 1)},  # numpy's own offset check overflows
        {"a": (np.dtype("int64"), 0), "b": (5, 8)},  # an int where a dtype belongs
    ],
)
def test_a_pickled_dtype_state_numpy_would_not_write_is_refused(fields, tmp_path):
    """Found by the trees fuzz family (inputs 5154 and 1637): such a dtype under a tree's node array segfaulted."""
    state = (3, "|", None, ("a", "b"), fields, 16, 1, 16)
    (tmp_path / "d.pkl").write_bytes(pickle.dumps(_DtypeState(state)))
    with pytest.raises(InputFileError, match="holds a numpy dtype whose pickled state numpy would not write"):
        load_pickle(tmp_path / "d.pkl")
    good = np.dtype([("a", "<i8"), ("b", "<i8")])
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(good))
    assert load_pickle(tmp_path / "ok.pkl") == good


def test_push_runs_the_structure_check_of_a_lightgbm_text_model(tmp_path):
    """The LightGBM/XGBoost structure checks ran only inside their loaders (the formats declared check=None), so
    push recorded a lying tree_sizes file as packager.check=passed; they are the formats' checks now."""
    import json

    from packager.errors import UnsafeModelError
    from packager.registry.api import LocalRegistry

    package = tmp_path / "package"
    package.mkdir()
    _lying_sizes(_lightgbm_text(package / "model.txt"))
    (package / "manifest.json").write_text(json.dumps({"format": "lightgbm", "model_file": "model.txt"}))
    registry = LocalRegistry(f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects"))
    with pytest.raises(UnsafeModelError, match="tree_sizes gives tree 0 999999999999 bytes"):
        registry.push(package, "m")
    assert not [p for p in (tmp_path / "objects").rglob("*") if p.is_file() and "incoming" not in p.parts]


def _rewrite_schema(path: Path, edit) -> Path:
    """The .skops archive at ``path`` with its schema.json passed through ``edit`` (the .npy members unchanged)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    edit(schema)
    members["schema.json"] = json.dumps(schema).encode()
    out = path.with_name("edited.skops")
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out


def _seed_sequence(schema: dict) -> dict:
    return schema["content"]["content"]["_feature_subsample_rng"]["content"]["seed_seq"]["content"]


@pytest.mark.parametrize("attack", ["shared_id", "own_node"])
def test_skops_refuses_a_seed_pool_that_would_hang_its_load(tmp_path, attack):
    """Fuzz finding (trees 6357/9138): skops gives every node of one ``__id__`` the first value built, so a number
    changed anywhere reached a numpy SeedSequence's ``pool_size``, whose mixing is quadratic (no answer in 25 s).
    Both forms are refused before skops builds anything; the genuine file loads."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier

    from converters.sklearn import load_skops

    X, y = _iris()
    model = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    sio.dump(model, tmp_path / "hgb.skops")
    assert (load_skops(tmp_path / "hgb.skops").predict(X) == model.predict(X)).all()

    def edit(schema: dict) -> None:
        pool = _seed_sequence(schema)["pool_size"]
        if attack == "own_node":
            pool.update(content="4294967297", __id__=1)  # an id nothing else has
        else:  # the pool keeps "4"; another node of its id (the same small int) is built first with another value
            content = schema["content"]["content"]  # built in key order: the new attribute first
            schema["content"]["content"] = {"tables22_first": {**pool, "content": "4294967297"}, **content}

    with pytest.raises(UnsafeModelError) as refused:
        load_skops(_rewrite_schema(tmp_path / "hgb.skops", edit))
    wanted = "pool_size is 4294967297" if attack == "own_node" else "two values share the object id"
    assert wanted in refused.value.what, refused.value.what
