"""CatBoost: the ``.cbm`` model file as a source and target, and CatBoost's own ONNX export.

Safe to load: ``.cbm`` is CatBoost's flatbuffers model, read by its C++ loader (``load_model`` -> ``_CatBoost._load_model``);
no pickle is involved. (A pickled CatBoost estimator carries the same bytes in its state, but unpickling it imports catboost
classes, which the pickle allow-list does not hold: that stays refused unless --trust.)

Precision: CatBoost quantizes features against float32 borders after casting the input to float32, so float32 feeds are
exact (measured: diabetes, 50 trees, predictions on float64 and float32-cast rows identical), hence SPLIT_DTYPE.

ONNX: onnxmltools has no CatBoost converter; CatBoost's own exporter (``save_model(format="onnx")``) is the path. It writes
classifier probabilities as a ZipMap (a sequence of maps), which is dropped here so they are a (batch, classes) tensor like
every other classifier's; it refuses models with categorical features ("ONNX-ML format export does yet not support
categorical features"), and that message is passed on. Inside a scikit-learn pipeline the same exporter's tree node is
placed in skl2onnx's graph (``register_skl2onnx``), after a cast to float32 when the steps before it run in double.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Framework, PickleGlobals
from packager.deps import require, version_of
from packager.errors import InputFileError, SampleError, UnsupportedConversion, UsageError, converting, first_line
from packager.plugins import converts, framework, runs
from packager.signature import Signature, TensorSpec
from packager.validation import SAME_KERNELS, criteria_table

from ._sklearn_api import NativeRuntime, float32_trees, read_text_head, save_native
from .shared import TreeConverter

SPLIT_DTYPE = "float32"
CBM = "catboost"
LABEL, PROBABILITIES, VARIABLE = "label", "probabilities", "variable"


def _cb():
    return require("catboost", "catboost", "CatBoost models")


@framework("catboost")
class CatBoost(Framework):
    """CatBoost models: ``.cbm`` files and in-memory CatBoostClassifier / CatBoostRegressor objects."""

    file_formats = frozenset({CBM})

    @staticmethod
    def claims(obj: Any) -> bool:
        return type(obj).__module__.split(".")[0] == "catboost" and hasattr(obj, "get_cat_feature_indices")

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        cb = _cb()
        if not read_text_head(path, 4).startswith("CBM1"):
            raise InputFileError(
                f"{path.name} is not a CatBoost model (no CBM1 header)", "give the file written by save_model('model.cbm')"
            )
        try:
            probe = cb.CatBoost()
            probe.load_model(str(path), format="cbm")
            loss = str(probe.get_all_params().get("loss_function", "RMSE"))
            classifier = loss in ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll")
            model = (cb.CatBoostClassifier if classifier else cb.CatBoostRegressor)()
            model.load_model(str(path), format="cbm")
        except Exception as exc:
            raise InputFileError(
                f"CatBoost cannot load {path.name}: {first_line(exc, 200)}", "re-save it with model.save_model('model.cbm')"
            ) from exc
        return model

    def describe(self, model: Any) -> dict[str, Any]:
        return {"estimator": type(model).__name__, "trees": int(model.tree_count_ or 0), "categorical": self._categorical(model)}

    def versions(self) -> dict[str, str]:
        return {"catboost": version_of("catboost"), "numpy": version_of("numpy")}

    def label_outputs(self, model: Any) -> set[str]:
        return {LABEL}

    @staticmethod
    def _categorical(model: Any) -> list[str]:
        names = list(model.feature_names_ or [])
        return [names[i] if i < len(names) else str(i) for i in model.get_cat_feature_indices()]

    def signature(self, model: Any, sample: Any) -> Signature:
        names = [str(n) for n in model.feature_names_ or []]
        categorical = set(self._categorical(model))
        if categorical:
            return Signature(tuple(TensorSpec(n, "str" if n in categorical else "float32", (None, 1)) for n in names), columnar=True)
        return Signature((TensorSpec("X", "float32", (None, len(names))),))

    def feeds(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
        import numpy as np

        from packager.signature import synthesize

        if sample is None:
            feeds = synthesize(signature, rows=200)
            if not signature.columnar:
                feeds["X"] = _border_rows(model, len(feeds["X"]))
            return feeds
        if signature.columnar:
            from .shared import column_feeds

            return column_feeds(signature, sample)
        matrix = np.asarray(sample.to_numpy() if hasattr(sample, "to_numpy") else sample, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != signature.inputs[0].shape[1]:
            raise UsageError(
                f"the sample has shape {matrix.shape}, but the model takes {signature.inputs[0].shape[1]} features",
                "give a sample with one column per feature",
            )
        return {"X": matrix}

    def predict(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        if signature.columnar:
            X = pd.DataFrame({n: feeds[n].reshape(-1) for n in signature.input_names})
        else:
            X = np.asarray(feeds[signature.input_names[0]], dtype=np.float64)
        try:
            if _is_classifier(model):
                return {LABEL: np.asarray(model.predict(X)).reshape(-1), PROBABILITIES: model.predict_proba(X)}
            return {VARIABLE: np.asarray(model.predict(X), dtype=np.float64).reshape(-1, 1)}
        except Exception as exc:
            raise SampleError(
                f"{type(model).__name__} fails on the sample inputs ({first_line(exc, 200)})",
                "give --sample FILE with rows like the training data",
            ) from exc


def _is_classifier(model: Any) -> bool:
    return type(model).__name__ == "CatBoostClassifier"


def _border_rows(model: Any, rows: int) -> Any:
    """Rows drawn around the model's own split borders (the values its trees compare with), not standard-normal rows."""
    import numpy as np

    rng = np.random.default_rng(1)
    borders = model.get_borders() if hasattr(model, "get_borders") else {}
    width = len(model.feature_names_ or [])
    X = rng.standard_normal((rows, width))
    for index, values in (borders or {}).items():
        if values and index < width:
            X[:, index] = rng.choice(np.asarray(values, dtype=np.float64), size=rows) + rng.normal(0, 1e-3, size=rows)
    return X.astype(np.float32)


MAGIC = b"CBM1"
CBM_FORMAT = Format(
    CBM,
    title="CatBoost model",
    suffix=".cbm",
    detect=lambda path, head: head.startswith(MAGIC),
    check=None,
    safe_because="CatBoost's flatbuffers model, read by its C++ loader, which unpickles nothing",
)

# The library's own predict on its own file: the same kernels as the source, so the same results.
NATIVE_CRITERIA = criteria_table({None: SAME_KERNELS})


@runs(CBM, criteria=NATIVE_CRITERIA)
class CatBoostRuntime(NativeRuntime):
    name, distribution, framework, native_format = "catboost", "catboost", "catboost", CBM


@converts("catboost", to=CBM)
def catboost_to_cbm(model: Any, signature, out: Path, options) -> Any:
    return save_native("catboost", lambda path: model.save_model(path, format="cbm"), out / "model.cbm")


@converts("catboost", to="onnx", quantize={"dynamic", "static", "fp16"}, note="CatBoost's own ONNX exporter (numeric features only)")
def catboost_to_onnx(model: Any, signature, out: Path, options) -> Any:
    onnx = require("onnx", "catboost", "ONNX export")
    path = out / "model.onnx"
    refusal = (UnsupportedConversion, "use --to catboost (.cbm), or train without cat_features (one-hot/ordinal-encode them first)")
    # CatBoostError is how its exporter refuses a model (categorical features: "ONNX-ML format export does yet not support ...")
    with converting(f"CatBoost's ONNX exporter refuses {type(model).__name__}", mapping={_cb().CatBoostError: refusal}):
        model.save_model(str(path), format="onnx")
    proto = onnx.load(str(path))
    _tensor_outputs(proto, signature)
    onnx.save(proto, str(path))
    opsets = {op.domain or "ai.onnx": op.version for op in proto.opset_import}
    return Artifact(path, {"opset": opsets, "converter": "catboost save_model(format='onnx')", "converter_version": version_of("catboost")})


def _tensor_outputs(proto: Any, signature: Signature) -> None:
    """Drop the ZipMap (its input, a (batch, classes) float tensor, becomes the output), name input and outputs as the
    signature does, and give the regressor's output its real (batch, 1) shape (CatBoost declares (batch,))."""
    from onnx import TensorProto, helper

    graph = proto.graph
    for node in [n for n in graph.node if n.op_type == "ZipMap"]:
        source, target = node.input[0], node.output[0]
        graph.node.remove(node)
        for output in graph.output:
            if output.name == target:
                output.CopyFrom(helper.make_tensor_value_info(source, TensorProto.FLOAT, ["N", None]))
    renames = {graph.input[0].name: signature.input_names[0]} if not signature.columnar else {}
    # positional, and the signature may name fewer outputs than the graph has: the rest keep their names
    renames.update({o.name: name for o, name in zip(graph.output, signature.output_names, strict=False)})
    for node in graph.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
        node.output[:] = [renames.get(o, o) for o in node.output]
    for value in (*graph.input, *graph.output):
        value.name = renames.get(value.name, value.name)
    if signature.output_names == [VARIABLE]:
        graph.output[0].CopyFrom(helper.make_tensor_value_info(VARIABLE, TensorProto.FLOAT, ["N", 1]))


def refuse_pmml(model: Any) -> None:
    """sklearn2pmml bundles JPMML converters for scikit-learn, XGBoost, LightGBM, H2O and statsmodels, none for CatBoost:
    a pipeline with a CatBoost step failed in the JVM with "Cannot cast net.razorvine.pickle.objects.ClassDict to
    sklearn.Estimator" (measured, sklearn2pmml 0.133.1), so it is refused here with the reason instead."""
    raise UnsupportedConversion(
        f"sklearn2pmml {version_of('sklearn2pmml')} has no CatBoost converter (its JPMML converters cover "
        "scikit-learn, XGBoost, LightGBM, H2O and statsmodels)",
        "use --to onnx (CatBoost's exporter inside the pipeline's graph), or skops/joblib",
    )


# ---------------------------------------------------------------- skl2onnx registration


def register_skl2onnx() -> None:
    """Make skl2onnx convert CatBoostClassifier/CatBoostRegressor as a pipeline step with CatBoost's own exporter
    (onnxmltools has none): its one TreeEnsemble node, without the ZipMap it appends. Idempotent."""
    cb = _cb()
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes

    converter = float32_trees(_convert_in_pipeline)
    update_registered_converter(
        cb.CatBoostClassifier,
        "CatBoostCatBoostClassifier",
        calculate_linear_classifier_output_shapes,
        converter,
        parser=_parse_classifier,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(cb.CatBoostRegressor, "CatBoostCatBoostRegressor", calculate_linear_regressor_output_shapes, converter)


def _parse_classifier(scope, model, inputs, custom_parsers=None):
    """A label and a probabilities output: CatBoostClassifier is no scikit-learn ClassifierMixin, so skl2onnx's own parsers
    would declare one output (measured: "at least 2 output(s) is(are) required but we got 1")."""
    from skl2onnx._parse import _apply_zipmap
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    operator = scope.declare_local_operator(sklearn_operator_name_map[type(model)], model)
    operator.inputs = inputs
    text = getattr(model, "classes_", None) is not None and model.classes_.dtype.kind in "OUS"
    label = scope.declare_local_variable("label", StringTensorType() if text else Int64TensorType())
    probabilities = scope.declare_local_variable("probabilities", FloatTensorType())
    operator.outputs.append(label)
    operator.outputs.append(probabilities)
    options = scope.get_options(model, {"zipmap": True})
    if options.get("zipmap"):
        return list(_apply_zipmap(options["zipmap"], scope, model, label.type, [label, probabilities]))
    return list(operator.outputs)


def _convert_in_pipeline(scope, operator, container):
    from onnx import helper

    model = operator.raw_operator
    try:
        from catboost.utils import convert_to_onnx_object

        proto = convert_to_onnx_object(model)
    except Exception as exc:
        raise UnsupportedConversion(
            f"CatBoost's ONNX exporter refuses {type(model).__name__}: {first_line(exc, 200).split(': ')[-1]}",
            "use --to catboost (.cbm) on the model alone, or skops/joblib for the pipeline",
        ) from exc
    trees = [n for n in proto.graph.node if n.op_type.startswith("TreeEnsemble")]
    if len(trees) != 1 or len(proto.graph.node) - len(trees) > int(any(n.op_type == "ZipMap" for n in proto.graph.node)):
        raise UnsupportedConversion(
            f"CatBoost {version_of('catboost')} exported {type(model).__name__} as "
            f"{[n.op_type for n in proto.graph.node]}, not one tree ensemble node",
            "use --to catboost (.cbm) on the model alone, or skops/joblib for the pipeline",
        )
    node = trees[0]
    opsets = {d.domain: d.version for d in proto.opset_import}
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    outputs = operator.output_full_names[: len(node.output)]
    container.add_node(
        node.op_type,
        operator.input_full_names,
        outputs,
        op_domain=node.domain,
        op_version=opsets.get(node.domain),
        name=scope.get_unique_operator_name(node.op_type),
        **attributes,
    )


# ---------------------------------------------------------------- what this plugin declares to others

# the scikit-learn plugin converts pipelines holding CatBoost estimators through this (its extension point)
TREES = TreeConverter("catboost", register_skl2onnx=register_skl2onnx, split_dtype=SPLIT_DTYPE, refuse_pmml=refuse_pmml)
# pickled scikit-learn-API models hold these; the pickle allow-list rebuilds them, never calls them
PICKLED = PickleGlobals(
    "catboost",
    rebuilt_only=("catboost.core.CatBoostClassifier", "catboost.core.CatBoostRegressor"),
    why="__setstate__ hands state['__model'] (bytes) to CatBoost's model deserializer (the .cbm reader) and keeps the rest "
    "as training parameters; its constructor is never called, and fit (which writes train_dir) is never run on a loaded model",
)
