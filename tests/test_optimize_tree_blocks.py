"""The tree-blocks runtime variant (packager/optimize_runtime.py ``_split_trees``): an ONNX tree ensemble rewritten as
one operator per tree, summed, so onnxruntime walks one tree over all rows at a time (RandomForest 200 at 16,384 rows:
0.81-0.89x -> 1.47-1.61x scikit-learn here). The rewritten package's outputs are compared with its parent's in
onnxruntime on rows neither saw, and with scikit-learn's."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from packager.conversion import convert
from packager.optimize_runtime import Setting, build_variant, settings_for


def _run(package, X):
    from packager.package import read_manifest

    session = ort.InferenceSession(str(package / read_manifest(package).model_file), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)}), strict=True)), session


@pytest.mark.parametrize(
    "name, load, make",
    [
        ("binary", load_breast_cancer, lambda X, y: RandomForestClassifier(15, max_depth=6, random_state=0).fit(X, y)),
        ("strings", load_iris, lambda X, y: RandomForestClassifier(12, max_depth=5, random_state=0).fit(X, np.array(["a", "b", "c"])[y])),
        ("regressor", load_diabetes, lambda X, y: ExtraTreesRegressor(10, max_depth=6, random_state=0).fit(X, y)),
    ],
)
def test_tree_blocks_keep_every_output_of_the_parent(tmp_path, name, load, make):
    X, y = load(return_X_y=True)
    cut = len(X) * 2 // 3
    model = make(X[:cut], y[:cut])
    parent = convert(model, "onnx", out=tmp_path / "parent", sample=X[:50]).path
    assert "tree-blocks" in [s.suffix for s in settings_for(str(parent), "onnx", None, 1, 16384)]
    assert "tree-blocks" not in [s.suffix for s in settings_for(str(parent), "onnx", None, 1, 1)]  # 0.11x at batch 1
    variant, done = build_variant(str(parent), Setting("tree-blocks", tree_blocks=True), tmp_path / "variant")
    trees = len(model.estimators_)
    assert done == {"tree_blocks": trees}
    want, _ = _run(parent, X[cut:])
    got, session = _run(variant, X[cut:])
    ops = [n.op_type for n in onnx.load(str(next(variant.glob("*.onnx")))).graph.node]
    assert ops.count("TreeEnsembleRegressor") == trees and "TreeEnsembleClassifier" not in ops
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        if value.dtype.kind in "fc":
            assert np.max(np.abs(got[key] - value)) <= 1e-6 * max(1.0, float(np.abs(value).max())), key  # float32 sums reordered
        else:
            np.testing.assert_array_equal(got[key], value)
    rows = X[cut:].astype(np.float32)
    if hasattr(model, "predict_proba"):
        probabilities = [v for v in got.values() if v.dtype.kind == "f"][0]
        assert np.max(np.abs(probabilities - model.predict_proba(rows))) <= 1e-5
        labels = [v for v in got.values() if v.dtype.kind != "f"][0]
        assert (labels.astype(str) == model.predict(rows).astype(str)).all()
    else:
        assert np.max(np.abs(next(iter(got.values())).ravel() - model.predict(rows))) <= 1e-3


def test_no_tree_blocks_for_a_graph_without_a_tree_ensemble(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    parent = convert(LogisticRegression(max_iter=2000).fit(X, y), "onnx", out=tmp_path / "p", sample=X[:20]).path
    assert "tree-blocks" not in [s.suffix for s in settings_for(str(parent), "onnx", None, 1)]
