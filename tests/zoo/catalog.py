"""The zoo: one registry of models nobody here designed as fixtures, each saved as the file a user would have.

An :class:`Entry` says how to build the file (and its held-out real data), what the user must add on the
command line, and which targets are refused *by design* with the documented reason. The headline commands
(``convert MODEL --to onnx --quantize`` and ``convert MODEL --to all``) must exit 0 or refuse with that reason;
``tests/zoo/test_zoo_catalog.py`` runs them through the real CLI and ``benchmarks/zoo.py`` writes the table.

Builders reuse ``sklearn_models``, ``keras_tutorials`` and ``torch_models``; nothing here is shaped around
packager's code. Fidelity is judged on held-out rows against the source model's own outputs, computed here
in the source framework, never read from packager's report.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

LABELS, REGRESSION, EMBEDDING = "labels", "regression", "embedding"
HEADLINE = {"onnx-int8": ("--to", "onnx", "--quantize"), "all": ("--to", "all")}


@dataclass(frozen=True)
class Saved:
    """A model file as a user has it, its held-out inputs, and the source model's outputs on them."""

    path: Path
    held_out: Any
    expected: np.ndarray
    kind: str  # LABELS (compared by label / best class), REGRESSION (R²) or EMBEDDING (cosine)
    sample: Path | None = None  # the held-out rows as a file, for entries whose CLI call needs --sample


@dataclass(frozen=True)
class Refusal:
    """A target refused by design: the regex its one-line message must match, and where the limit is documented."""

    match: str
    why: str


@dataclass(frozen=True)
class Entry:
    name: str
    framework: str
    data: str  # where the training and held-out data come from
    build: Callable[[Path], Saved]
    args: tuple[str, ...] = ()  # what the user must add; "{sample}" is replaced by Saved.sample
    refused: Mapping[str, Refusal] = field(default_factory=dict)  # "target" or "target+dynamic" -> Refusal
    known: Mapping[str, Refusal] = field(default_factory=dict)  # failures found and reported, NOT by design (see KNOWN_*)
    slow: bool = False  # > 30 s of CPU for a headline command: runs under the `slow` marker too

    def cli_args(self, saved: Saved) -> list[str]:
        return [a.replace("{sample}", str(saved.sample)) for a in self.args]

    def refusal(self, target: str, quantize: str | None) -> Refusal | None:
        """The documented reason this target is refused (entry first, then the framework's), or None."""
        key = f"{target}+{quantize}" if quantize else target
        return self.refused.get(key) or FRAMEWORK_REFUSED.get(self.framework, {}).get(key)

    def known_failure(self, target: str, quantize: str | None) -> Refusal | None:
        key = f"{target}+{quantize}" if quantize else target
        return self.known.get(key) or FRAMEWORK_KNOWN.get(self.framework, {}).get(key)


# ---------------------------------------------------------------- documented limits (reason text to match)

ORT_ML_OPS = Refusal(r"no operator with int8 weights",
                     "onnxruntime quantize_dynamic quantizes MatMul/Conv/Gather/... weights; ai.onnx.ml tree/SVM operators have none")
MLEAP_ESTIMATOR = Refusal(r"mleap cannot serialise (KMeans|CalibratedClassifierCV|IsolationForest|GradientBoostingClassifier|"
                          r"MultiOutputRegressor|SVC|MLPClassifier|MLPRegressor|GridSearchCV)\b"
                          r"|mleap's scikit-learn support has no ColumnTransformer",
                          "mleap's scikit-learn support lists its estimators (linear models, trees, forests, scalers, PCA); not this one")
S2P_UNSUPPORTED = Refusal(r"sklearn2pmml cannot convert CalibratedClassifierCV",
                          "JPMML-SkLearn's list of supported estimators has no CalibratedClassifierCV")
TORCHSCRIPT_EXPORT = Refusal(r"torch.export cannot export a TorchScript module",
                             "torch.export traces Python nn.Modules; a TorchScript file has no Python module to trace")
OTHER_LIBRARY = {t: Refusal(r"holds (lightgbm|xgboost) models only", f"{t} is the native file of another library's models")
                 for t in ("lightgbm", "xgboost-json", "xgboost-ubj")}
# the targets issue 22/23 added refuse what they do not take: lleaves compiles LightGBM models, treelite tree ensembles,
# and OpenVINO's ONNX front end converts no ai.onnx.ml operator (packager rewrites linear models and tree ensembles only)
COMPILED_TREES = {"lleaves": Refusal(r"an lleaves package holds lightgbm, xgboost models only", "lleaves compiles LightGBM models"),
                  "treelite": Refusal(r"treelite here compiles RandomForest/ExtraTrees, LightGBM and XGBoost models",
                                      "treelite + tl2cgen compile tree ensembles; other estimators have no trees")}
OPENVINO = Refusal(r"hop onnx -> openvino .*(has no conversion rule|has no OpenVINO rewrite|too large for the OpenVINO GEMM|"
                   r"OpenVINO has no conversion rule|the ONNX graph uses opset)",
                   "OpenVINO's ONNX front end has no rule for this operator (or this old opset: skl2onnx writes an SVC at opset "
                   "9), and packager's rewrite covers linear models and trees")
FRAMEWORK_REFUSED: dict[str, dict[str, Refusal]] = {
    "sklearn": {"coreml": Refusal(r"coremltools disables its scikit-learn converter",
                                  "coremltools disables its scikit-learn converter above scikit-learn 1.5.1 (DESIGN.md)"),
                "mleap": MLEAP_ESTIMATOR, "pmml": S2P_UNSUPPORTED, **OTHER_LIBRARY, **COMPILED_TREES, "openvino": OPENVINO},
    "spark": {"openvino": OPENVINO},
    "torch": {"pt2": TORCHSCRIPT_EXPORT,
              "torchscript+dynamic": Refusal(r"int8 needs the Python nn.Module, not a TorchScript or exported program",
                                             "torch's dynamic int8 quantizes the Python nn.Module while tracing; a TorchScript "
                                             "or exported file has none"),
              "safetensors": Refusal(r"a TorchScript module carries its code; safetensors holds only the weights",
                                     "safetensors stores tensors only; the zoo's torch models are TorchScript files, whose "
                                     "code a weights file cannot carry (a state dict or nn.Module converts)")},
}

# Failures the zoo found that are NOT by design (reported to the lead; see benchmarks/results/zoo.md). Each is asserted
# exactly, so a fix shows up as a failing test that asks for the entry to be removed here.
UNSAFE_HGB = Refusal(r"UnsafeModelError: .*sklearn.utils.validation.check_array is a function",
                     "pickle allow-list: a HistGradientBoosting fitted on pandas categoricals pickles check_array")
UNSAFE_MASKED = Refusal(r"UnsafeModelError: .*numpy.ma.core._mareconstruct is a function",
                        "pickle allow-list: GridSearchCV.cv_results_ holds numpy masked arrays")
MLEAP_PIPELINE = Refusal(r"mleap cannot serialise Pipeline",
                         "packager's mleap converter refuses Pipelines, which mleap.sklearn serializes (a packager limit)")
INT8_LOSS = Refusal(r"ValidationFailed: the onnx artifact does not reproduce the source",
                    "dynamic int8 ONNX misses packager's own criteria on this small model")
RNN_COREML_TFLITE = {t: Refusal(r"ConversionError: (coremltools' TensorFlow frontend|TFLite) cannot (convert|lower) this recurrent",
                                "a ConversionError (exit 7) even though the limit is the converter's: --to all fails")
                     for t in ("coreml", "mlpackage", "tflite")}
NEAR_CONSTANT = Refusal(r"ValidationFailed: .*max \|diff\| 5.96e-08 is .* x the expected values' spread",
                        "an almost untrained sigmoid output (spread 0.0015) judged as regression: float noise fails 1e-5 x spread")
PMML = {"tfidf": Refusal(r"ValidationFailed: the pmml artifact does not reproduce the source",
                         "JPMML tokenizes the TfidfVectorizer's text differently from scikit-learn (97.5% label agreement)"),
        "isolation": Refusal(r"ValidationFailed: the pmml artifact does not reproduce the source: label: labels agree on 0.00%",
                             "IsolationForest in PMML: JPMML's outlier output is not mapped to scikit-learn's -1/1 labels"),
        "multioutput": Refusal(r"ConversionError: sklearn2pmml failed on MultiOutputRegressor: java.lang.ClassCastException",
                               "JPMML-SkLearn crashes on MultiOutputRegressor (ContinuousLabel cast to MultiLabel)")}
COREML_SCRIPT = Refusal(r"ConversionError: coremltools cannot convert RecursiveScriptModule: TypeError",
                        "coremltools fails inside its TorchScript frontend on the traced MiniLM")
TF_STDERR = Refusal(r"absl::InitializeLog|oneDNN custom operations",
                    "packager/safety/tensorflow.py imports tensorflow.core outside native_stderr_quiet: TF's start-up lines reach stderr")
PT2_AGAIN = Refusal(r"Guard failed|pt2",
                    ".pt2 -> .pt2: the dynamic re-export of ExportedProgram.module() fails, the static fallback fixes the batch")
FRAMEWORK_KNOWN: dict[str, dict[str, Refusal]] = {
    "sklearn": {"mleap": MLEAP_PIPELINE},
    "keras": {"openvino": Refusal(r"ConversionError: hop onnx -> openvino",
                                  "OpenVINO's ONNX front end fails on tf2onnx's recurrent graph (the BiGRU): exit 7, not a refusal"),
              "tflite+dynamic": RNN_COREML_TFLITE["tflite"]},
}
FUNCTION_TRANSFORMER = Refusal(r"FunctionTransformer is not supported unless the transform function is None",
                               "skl2onnx converts a FunctionTransformer only without a function (identity)")
MLEAP_ENSEMBLE = Refusal(r"mleap cannot serialise (HistGradientBoostingClassifier|StackingClassifier|VotingClassifier)\b",
                         "mleap's scikit-learn support lists its estimators; no HistGradientBoosting, stacking or voting")
TRUST = ("--trust",)  # HistGradientBoosting on pandas categoricals pickles check_array (UNSAFE_HGB): the user's own file


# ---------------------------------------------------------------- builders

def _sklearn(builder: str, suffix: str, kind: str) -> Callable[[Path], Saved]:
    def build(folder: Path) -> Saved:
        from tests.zoo import sklearn_models, sklearn_round3

        built = {**sklearn_models.BUILDERS, **sklearn_round3.BUILDERS}[builder]()
        path = folder / f"{builder}{suffix}"
        if suffix == ".joblib":
            import joblib

            joblib.dump(built.model, path)
        elif suffix == ".skops":
            import skops.io

            skops.io.dump(built.model, path)
        else:
            path.write_bytes(pickle.dumps(built.model, protocol=pickle.HIGHEST_PROTOCOL))
        return Saved(path, built.X_test, np.asarray(built.model.predict(built.X_test)), kind)
    return build


def _keras(builder: str, suffix: str, kind: str) -> Callable[[Path], Saved]:
    def build(folder: Path) -> Saved:
        from tests.zoo.keras_tutorials import BUILDERS

        model, held_out = BUILDERS[builder]()
        path = folder / f"{builder}{suffix}"
        if suffix == "":  # a SavedModel folder, as model.export writes it for TF Serving
            model.export(str(path), verbose=False)
        else:
            model.save(path)
        return Saved(path, held_out, np.asarray(model(held_out, training=False)), kind)
    return build


def _torch(builder: str, how: str, kind: str) -> Callable[[Path], Saved]:
    """how: "trace" / "script" (.pt), "state_dict" / "legacy" (.pth), "export" (.pt2)."""
    def build(folder: Path) -> Saved:
        import torch

        from tests.zoo import torch_models

        model, held_out = getattr(torch_models, builder)()
        with torch.no_grad():
            expected = model(torch.from_numpy(held_out)).numpy()
        suffix = {"trace": ".pt", "script": ".pt", "state_dict": ".pth", "legacy": ".pth", "export": ".pt2"}[how]
        path = folder / f"{builder}_{how}{suffix}"
        if how == "trace":
            torch.jit.save(torch_models.trace(model, held_out[:2]), path)
        elif how == "script":
            torch.jit.save(torch.jit.script(model), path)
        elif how == "export":
            batch = torch.export.Dim("batch", min=1, max=1024)
            with torch.no_grad():
                program = torch.export.export(model, (torch.from_numpy(held_out[:2]),), dynamic_shapes=({0: batch},))
            torch.export.save(program, path)
        else:
            torch.save(model.state_dict(), path, _use_new_zipfile_serialization=(how != "legacy"))
        sample = folder / f"{builder}_held_out.npy"
        np.save(sample, held_out)
        return Saved(path, held_out, expected, kind, sample)
    return build


SAMPLE = ("--sample", "{sample}")  # torch files carry no input shapes: the user gives rows


def _mc(cls: str) -> tuple[str, ...]:
    return ("--model-class", f"tests.zoo.torch_models:{cls}")


def _sk(name: str, builder: str, suffix: str, kind: str, data: str, known: Mapping[str, Refusal] | None = None,
        **refused: Refusal) -> Entry:
    return Entry(name, "sklearn", data, _sklearn(builder, suffix, kind), refused=_keys(refused), known=_keys(known or {}))


def _keys(refused: Mapping[str, Refusal]) -> dict[str, Refusal]:
    return {k.replace("__", "+"): v for k, v in refused.items()}  # onnx__dynamic= -> "onnx+dynamic"


ROUND3_SKLEARN: tuple[Entry, ...] = (
    _sk("wine_frame_slash_column_transformer", "wine_slash_column_transformer", ".joblib", LABELS,
        "load_wine(as_frame=True) ('od280/od315_of_diluted_wines') + a text band, OneHotEncoder(handle_unknown='ignore')"),
    _sk("breast_cancer_hgb_nan", "hgb_nan", ".pkl", LABELS, "breast_cancer, 20% cells NaN", onnx__dynamic=ORT_ML_OPS,
        mleap=MLEAP_ENSEMBLE),
    _sk("breast_cancer_stacking_shared_scaler", "stacking_shared_scaler", ".joblib", LABELS, "breast_cancer",
        onnx__dynamic=ORT_ML_OPS, mleap=MLEAP_ENSEMBLE),
    _sk("breast_cancer_voting_shared_scaler", "voting_shared_scaler", ".pkl", LABELS, "breast_cancer", onnx__dynamic=ORT_ML_OPS,
        mleap=MLEAP_ENSEMBLE),
    Entry("diabetes_hgb_categorical_regressor", "sklearn", "diabetes, 'sex' as a pandas categorical",
          _sklearn("hgb_categorical_regressor", ".pkl", REGRESSION), TRUST, refused={"onnx+dynamic": ORT_ML_OPS}),
    Entry("wine_hgb_categorical_binary_text_labels", "sklearn", "wine + a 4-band categorical column, 2 text classes",
          _sklearn("hgb_categorical_binary", ".pkl", LABELS), TRUST, refused={"onnx+dynamic": ORT_ML_OPS}),
    _sk("wine_function_transformer_log1p", "function_transformer_logreg", ".pkl", LABELS, "wine",
        onnx=FUNCTION_TRANSFORMER, onnx__dynamic=FUNCTION_TRANSFORMER),
)


def _round3(name: str) -> Callable[[Path], Saved]:
    return lambda folder: getattr(__import__("tests.zoo.dl_round3", fromlist=[name]), name)(folder)


# issue 26: two-input torch (int64 id, dict outputs) and Keras (BatchNormalization) models, a tf.Module, a token classifier,
# a Spark pipeline indexing its label first (tests/zoo/dl_round3.py)
ROUND3_DL: tuple[Entry, ...] = (
    Entry("wine_torch_two_inputs_dict", "torch", "wine + alcohol band id", _round3("zoo_torch_two_inputs"), SAMPLE),
    Entry("wine_keras_two_inputs_bn", "keras", "wine + alcohol band id", _round3("zoo_keras_two_inputs"), SAMPLE),
    Entry("diabetes_tf_module", "tensorflow", "diabetes", _round3("zoo_tf_module"), known={"stderr": TF_STDERR}),
    Entry("ner_bert_token_classifier", "huggingface", "hand-written sentences", _round3("zoo_token_classifier")),
    Entry("wine_spark_label_indexer_first", "spark", "wine, string label", _round3("zoo_spark_label_indexer"), SAMPLE, slow=True,
          refused={"onnx+dynamic": Refusal(r"spark -> onnx does not support --quantize dynamic",
                                           "the support matrix lists no quantization for Spark -> ONNX (tree operators only)"),
                   "mleap": Refusal(r"cannot write MLeap bundles from Spark",
                                    "MLeap's Spark serializer is JVM code on Maven only (DESIGN.md: no registry here provides it)")}),
)

CATALOG: tuple[Entry, ...] = (
    # scikit-learn: the bundled real datasets, each as the file format a project would save
    _sk("breast_cancer_scaler_logreg", "scaler_logreg", ".pkl", LABELS, "breast_cancer"),
    _sk("digits_mlp_classifier", "mlp_classifier", ".joblib", LABELS, "digits"),
    _sk("diabetes_mlp_regressor", "mlp_regressor", ".skops", REGRESSION, "diabetes"),
    _sk("wine_svc", "svc", ".pkl", LABELS, "wine", onnx__dynamic=ORT_ML_OPS),
    _sk("iris_random_forest", "random_forest", ".joblib", LABELS, "iris", onnx__dynamic=ORT_ML_OPS),
    _sk("sentences_tfidf_logreg", "tfidf_logreg", ".pkl", LABELS, "hand-written sentences",
        known={"pmml": PMML["tfidf"]}),
    _sk("wine_hgb_categorical", "hgb_categorical", ".pkl", LABELS, "wine + 2 binned categorical columns",
        known={"all": UNSAFE_HGB, "all__dynamic": UNSAFE_HGB, "onnx__dynamic": UNSAFE_HGB}, onnx__dynamic=ORT_ML_OPS),
    _sk("iris_kmeans", "kmeans64", ".pkl", LABELS, "iris"),
    _sk("breast_cancer_calibrated_svc", "calibrated_linear_svc", ".joblib", LABELS, "breast_cancer"),
    _sk("wine_grid_search", "grid_search", ".pkl", LABELS, "wine",
        known=dict.fromkeys(("all", "all__dynamic", "onnx__dynamic"), UNSAFE_MASKED)),
    _sk("breast_cancer_isolation_forest", "isolation_forest", ".skops", LABELS, "breast_cancer", known={"pmml": PMML["isolation"]},
        onnx__dynamic=ORT_ML_OPS),
    _sk("breast_cancer_imputer_nan", "imputer_nan", ".joblib", LABELS, "breast_cancer, 5% cells NaN"),
    _sk("linnerud_multioutput_ridge", "linnerud_multioutput", ".pkl", REGRESSION, "linnerud",
        known={"pmml": PMML["multioutput"], "onnx__dynamic": INT8_LOSS}),
    _sk("breast_cancer_gradient_boosting", "gradient_boosting", ".skops", LABELS, "breast_cancer", onnx__dynamic=ORT_ML_OPS),
    _sk("digits_pca_logreg", "pca_logreg", ".skops", LABELS, "digits"),
    *ROUND3_SKLEARN,  # issue 26: tests/zoo/sklearn_round3.py
    # Keras: tutorial code, fitted for a few epochs
    Entry("iris_keras_sequential", "keras", "iris", _keras("sequential_iris", ".keras", LABELS)),
    Entry("digits_keras_input_shape_h5", "keras", "digits", _keras("sequential_input_shape_digits", ".h5", LABELS)),
    Entry("diabetes_keras_normalization", "keras", "diabetes", _keras("normalization_diabetes", ".keras", REGRESSION)),
    Entry("breast_cancer_keras_normalization_h5", "keras", "breast_cancer", _keras("normalization_sequential_breast_cancer", ".h5", LABELS),
          known={"onnx+dynamic": INT8_LOSS}),
    Entry("digits_keras_cnn", "keras", "digits 8x8", _keras("rescaling_cnn_digits", ".keras", LABELS)),
    Entry("imdb_style_keras_lstm", "keras", "random token ids", _keras("imdb_lstm", ".keras", LABELS),
          known={**RNN_COREML_TFLITE, **{t: NEAR_CONSTANT for t in ("keras", "hdf5", "pb", "savedmodel")}}),
    Entry("imdb_style_keras_bigru", "keras", "random token ids", _keras("imdb_gru", ".keras", LABELS),
          known={**RNN_COREML_TFLITE, "onnx+dynamic": INT8_LOSS}),
    Entry("iris_tf_savedmodel", "tensorflow", "iris", _keras("sequential_iris", "", LABELS), known={"stderr": TF_STDERR}),
    # PyTorch: tutorial modules on digits/diabetes, every way a user saves them; the real MiniLM encoder
    Entry("digits_torch_sequential_traced", "torch", "digits", _torch("digits_mlp", "trace", LABELS), SAMPLE),
    Entry("digits_torch_cnn_scripted", "torch", "digits 8x8", _torch("digits_cnn", "script", LABELS), SAMPLE),
    Entry("digits_torch_cnn_exported", "torch", "digits 8x8", _torch("digits_cnn", "export", LABELS), SAMPLE, known={"pt2": PT2_AGAIN}),
    Entry("digits_torch_state_dict", "torch", "digits", _torch("digits_mlp", "state_dict", LABELS), SAMPLE + _mc("DigitsMLP")),
    Entry("diabetes_torch_legacy_state_dict", "torch", "diabetes", _torch("diabetes_regressor", "legacy", REGRESSION),
          SAMPLE + _mc("DiabetesRegressor")),
    Entry("text_torch_gru_traced", "torch", "random token ids", _torch("text_gru", "trace", LABELS), SAMPLE),
    Entry("minilm_traced", "torch", "MiniLM checkpoint, its tokenizer on 12 sentences", _torch("minilm", "trace", EMBEDDING),
          SAMPLE, known={"coreml": COREML_SCRIPT, "mlpackage": COREML_SCRIPT}, slow=True),
    *ROUND3_DL,  # issue 26: tests/zoo/dl_round3.py
)
CATALOG += __import__("tests.zoo.verdict_models", fromlist=["entries"]).entries()  # issue 26: the verdict's models
BY_NAME = {e.name: e for e in CATALOG}


# ---------------------------------------------------------------- fidelity, independent of packager

def labels_of(y: Any) -> np.ndarray:
    """Labels as a user reads them: the best class of a score matrix, 0/1 of a single sigmoid column, else the values."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1 and y.dtype.kind == "f":
        return y.argmax(axis=1)
    if y.ndim == 2 and y.shape[1] == 1 and y.dtype.kind == "f":
        return (y[:, 0] > 0.5).astype(np.int64)
    return y.reshape(-1)


def fidelity(kind: str, expected: np.ndarray, got: Any) -> tuple[str, float]:
    """("agreement" | "r2" | "min_cosine", value): the artifact's outputs judged against the source model's."""
    got = np.asarray(got)
    if kind == LABELS:
        return "agreement", float(np.mean(labels_of(got) == labels_of(expected)))
    if kind == REGRESSION:
        from sklearn.metrics import r2_score

        return "r2", float(r2_score(expected.reshape(len(expected), -1), got.astype(np.float64).reshape(len(expected), -1)))
    a, b = expected.reshape(len(expected), -1), got.astype(np.float64).reshape(len(expected), -1)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return "min_cosine", float(cosine.min())


def _onnx(path: Path, x: Any) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if isinstance(x, dict):  # one array per named input
        feeds = {i.name: _typed(i.type, x[i.name]) for i in inputs}
    elif hasattr(x, "columns") and len(inputs) > 1:  # a column pipeline: one input per column
        feeds = {i.name: _typed(i.type, x[i.name].to_numpy().reshape(-1, 1)) for i in inputs}
    else:
        feeds = {inputs[0].name: _typed(inputs[0].type, x.to_numpy() if hasattr(x, "to_numpy") else x)}
    return session.run(None, feeds)[0]


def _typed(onnx_type: str, x: Any) -> np.ndarray:
    kind = onnx_type[len("tensor("):-1]
    if kind == "string":
        return np.asarray(x, dtype=object).reshape(-1, 1) if np.ndim(x) == 1 else np.asarray(x, dtype=object)
    return np.asarray(x).astype({"float": np.float32, "double": np.float64, "int64": np.int64, "int32": np.int32}[kind])


def _tflite(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    details = interpreter.get_input_details()
    # a dict of inputs: TFLite names them serving_default_<name>:0
    pairs = [(d, next(v for k, v in x.items() if k in d["name"])) for d in details] if isinstance(x, dict) else [(details[0], x)]
    for detail, array in pairs:
        interpreter.resize_tensor_input(detail["index"], list(np.shape(array)))
    interpreter.allocate_tensors()
    for detail, array in pairs:
        interpreter.set_tensor(detail["index"], np.asarray(array).astype(detail["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _savedmodel(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = list(serve.structured_input_signature[1].values())
    arrays = x if isinstance(x, dict) else {specs[0].name: x}
    outputs = serve(**{s.name: tf.constant(np.asarray(arrays[s.name]).astype(s.dtype.as_numpy_dtype)) for s in specs})
    return next(iter(outputs.values())).numpy()


def _sklearn_file(loader: Callable[[Path], Any]) -> Callable[[Path, Any], np.ndarray]:
    return lambda path, x: np.asarray(loader(path).predict(x))


def _skops_load(path: Path) -> Any:
    import skops.io

    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))  # our own file, built in this run


def _keras_load(path: Path, x: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.models.load_model(path, safe_mode=True)(x, training=False))


def _torchscript(path: Path, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = torch.jit.load(str(path)).eval()(*(torch.from_numpy(v) for v in (x.values() if isinstance(x, dict) else [x])))
    return next(iter(out.values())).numpy() if isinstance(out, dict) else out.numpy()


def _pt2(path: Path, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.export.load(str(path)).module()(torch.from_numpy(x)).numpy()


def _joblib_load(path: Path) -> Any:
    import joblib

    return joblib.load(path)


# target -> how to run its file on held-out inputs without packager; targets missing here are reported "not re-run"
# (Core ML predicts on macOS only; PMML needs a JVM, MLeap bundles a Scala runtime; a frozen .pb has no signature)
RUNTIMES: dict[str, Callable[[Path, Any], np.ndarray]] = {
    "onnx": _onnx, "tflite": _tflite, "savedmodel": _savedmodel, "keras": _keras_load, "hdf5": _keras_load,
    "torchscript": _torchscript, "pt2": _pt2,
    "pickle": _sklearn_file(lambda p: pickle.loads(p.read_bytes())), "joblib": _sklearn_file(_joblib_load),
    "skops": _sklearn_file(_skops_load),
}


def rerun(target: str, path: Path, saved: Saved) -> tuple[str, float] | None:
    """The produced file run in its own runtime on the held-out inputs, judged against the source; None if no runtime here."""
    runner = RUNTIMES.get(target)
    return None if runner is None else fidelity(saved.kind, saved.expected, runner(Path(path), saved.held_out))


