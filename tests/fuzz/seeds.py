"""Benign seed files per fuzz family, each with the kind of structure its mutator understands.

    python -m tests.fuzz.seeds FAMILY OUT      # writes OUT/seeds.json: [{"path": ..., "kind": ...}, ...]

Built in a child process (harness.build_seeds): the sklearn seeds run PMML validation, which starts a
JVM, and the TF and torch imports are better paid once in the process that builds, not in the fuzzer.
The models are tiny on purpose: a mutation is cheap to load, so more of the 10,000 inputs per family
reach the framework's own parser.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FAMILIES = ("sklearn", "joblib", "tensorflow", "torchscript", "keras", "trees", "boosting")
SEED = 0


def sklearn(out: Path) -> list[dict]:
    from fixtures.build import build
    from packager.conversion import convert

    fixtures = out / "fx"
    build(fixtures)
    seeds = [{"path": fixtures / name, "kind": "pickle"} for name in ("ridge.pkl", "logreg.pkl", "columns.pkl")]
    names = {"onnx": "model.onnx", "pmml": "model.pmml", "skops": "model.skops", "joblib": "model.joblib", "mleap": "model.zip"}
    kinds = {"onnx": "bytes", "pmml": "bytes", "skops": "zip", "joblib": "joblib", "mleap": "zip"}
    for target, name in names.items():
        convert(fixtures / "digits_linear.pkl", to=target, out=out / target, overwrite=True)
        seeds.append({"path": out / target / name, "kind": kinds[target]})
    return seeds


def joblib(out: Path) -> list[dict]:
    """Plain and compressed (zlib, lzma, gzip) dumps of a pipeline with object arrays (one-hot categories),
    a model of numeric arrays, and a bare dict holding a numeric and an object array."""
    import joblib as jl
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fixtures.build import _column_pipeline, customers_frame

    X, y = load_iris(return_X_y=True)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=SEED)).fit(X, y)
    ridge = Ridge().fit(X, X[:, 0])
    frame, target = customers_frame(200)
    columns = _column_pipeline().fit(frame, target)
    arrays = {"weights": np.arange(24, dtype=np.float32).reshape(4, 6), "labels": np.array(["a", 1, None, 2.5], dtype=object)}
    seeds = []
    for name, obj, compress, kind in (
        ("pipeline.joblib", classifier, 0, "joblib"), ("ridge.joblib", ridge, 0, "joblib"), ("columns.joblib", columns, 0, "joblib"),
        ("arrays.joblib", arrays, 0, "joblib"), ("pipeline-zlib.joblib", classifier, ("zlib", 3), "joblib-zlib"),
        ("columns-lzma.joblib", columns, ("lzma", 3), "joblib-lzma"), ("ridge-gzip.joblib", ridge, ("gzip", 3), "joblib-gzip"),
    ):
        jl.dump(obj, out / name, compress=compress)
        seeds.append({"path": out / name, "kind": kind})
    return seeds


def tensorflow(out: Path) -> list[dict]:
    """A Keras model exported as a SavedModel folder, a tf.Module SavedModel, and a frozen GraphDef."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.Dense(8, activation="relu")(inputs)))
    model.export(str(out / "keras_export"), verbose=False)

    class Scaler(tf.Module):
        def __init__(self):
            self.scale = tf.Variable(tf.constant([1.0, 2.0, 3.0]))

        @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.nn.softmax(x * self.scale), "norm": tf.reduce_sum(tf.abs(x), axis=1)}

    module = Scaler()
    tf.saved_model.save(module, str(out / "module"), signatures={"serving_default": module.__call__})
    concrete = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec((None, 4), tf.float32, name="features"))
    (out / "frozen.pb").write_bytes(convert_variables_to_constants_v2(concrete).graph.as_graph_def().SerializeToString())
    return [{"path": out / "keras_export", "kind": "savedmodel"}, {"path": out / "module", "kind": "savedmodel"},
            {"path": out / "frozen.pb", "kind": "graphdef"}]


def torchscript(out: Path) -> list[dict]:
    """Traced and scripted modules, a state dict and a torch.export program (.pt2)."""
    import torch

    torch.manual_seed(SEED)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()

    class Gate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)
            self.register_buffer("threshold", torch.tensor([0.5, -0.5]))

        def forward(self, x):
            y = self.linear(x)
            if bool(y.sum() > 0):
                return torch.where(y > self.threshold, y, -y)
            return y * 2.0

    example = torch.randn(2, 4)
    torch.jit.trace(mlp, example).save(str(out / "traced.pt"))
    torch.jit.script(Gate().eval()).save(str(out / "scripted.pt"))
    torch.save(mlp.state_dict(), out / "state.pth")
    torch.export.save(torch.export.export(mlp, (example,)), str(out / "program.pt2"))
    return [{"path": out / name, "kind": "torchzip"} for name in ("traced.pt", "scripted.pt", "state.pth", "program.pt2")]


def keras(out: Path) -> list[dict]:
    """A small functional model with a normalization layer, saved as .keras and as legacy .h5."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras as k
    import numpy as np

    k.utils.set_random_seed(SEED)
    inputs = k.Input((4,), name="features")
    hidden = k.layers.BatchNormalization()(k.layers.Dense(8, activation="relu")(inputs))
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="probs")(hidden), name="small")
    model.predict(np.zeros((1, 4), "float32"), verbose=0)
    model.save(out / "small.keras")
    model.save(out / "small.h5")
    return [{"path": out / "small.keras", "kind": "keraszip"}, {"path": out / "small.h5", "kind": "h5"}]


def trees(out: Path) -> list[dict]:
    """scikit-learn tree models as pickles and .skops: a decision tree, a best-first regression tree, a random forest,
    gradient boosting (3 trees per iteration) and HistGradientBoosting with NaN and a categorical feature."""
    import pickle

    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(SEED)
    Xh = np.c_[rng.integers(0, 5, len(X)), X]
    Xh[::9, 2] = np.nan
    models = {
        "tree": DecisionTreeClassifier(max_depth=4, random_state=SEED).fit(X, y),
        "best_first": DecisionTreeRegressor(max_leaf_nodes=8, random_state=SEED).fit(X, X[:, 0]),
        "forest": RandomForestClassifier(n_estimators=3, max_depth=3, random_state=SEED).fit(X, y),
        "gradient": GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=SEED).fit(X, y),
        "hist": HistGradientBoostingClassifier(max_iter=3, max_depth=3, categorical_features=[0], random_state=SEED).fit(Xh, y),
    }
    seeds = []
    for name, model in models.items():
        (out / f"{name}.pkl").write_bytes(pickle.dumps(model, protocol=4))
        sio.dump(model, out / f"{name}.skops")
        seeds += [{"path": out / f"{name}.pkl", "kind": "treepickle"}, {"path": out / f"{name}.skops", "kind": "treeskops"}]
    return seeds


def boosting(out: Path) -> list[dict]:
    """LightGBM text models (binary, multiclass with a categorical feature, a linear tree) and XGBoost JSON and UBJSON
    models (multiclass, regression with a categorical feature)."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]).assign(
        c=pd.Categorical(np.random.default_rng(SEED).integers(0, 4, len(X)))
    )
    lgb.LGBMClassifier(n_estimators=3, num_leaves=5, verbose=-1).fit(X, y == 1).booster_.save_model(str(out / "binary.txt"))
    lgb.LGBMClassifier(n_estimators=2, num_leaves=5, verbose=-1).fit(frame, y).booster_.save_model(str(out / "multi_cat.txt"))
    lgb.LGBMRegressor(n_estimators=2, num_leaves=4, linear_tree=True, verbose=-1).fit(X, y).booster_.save_model(str(out / "linear.txt"))
    xgb.XGBClassifier(n_estimators=2, max_depth=2).fit(X, y).save_model(out / "multi.json")
    xgb.XGBClassifier(n_estimators=2, max_depth=2).fit(X, y).save_model(out / "multi.ubj")
    categorical = xgb.XGBRegressor(n_estimators=2, max_depth=3, enable_categorical=True, tree_method="hist").fit(frame, y)
    categorical.save_model(out / "cat.json")
    categorical.save_model(out / "cat.ubj")
    return [{"path": out / f"{name}.txt", "kind": "lightgbm"} for name in ("binary", "multi_cat", "linear")] + [
        {"path": out / name, "kind": "xgboost-ubj" if name.endswith(".ubj") else "xgboost-json"}
        for name in ("multi.json", "multi.ubj", "cat.json", "cat.ubj")
    ]


def build(family: str, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    seeds = globals()[family](out)
    found = [{"path": str(s["path"]), "kind": s["kind"]} for s in seeds]
    (out / "seeds.json").write_text(json.dumps(found))
    return found


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    build(sys.argv[1], Path(sys.argv[2]))
