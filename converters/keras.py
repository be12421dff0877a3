"""Keras 3: a ``.keras`` archive, a legacy ``.h5`` or an in-memory model to ``.keras`` and ``.h5``
(int8 through Keras' own quantization), and, through one tf.function, to everything TensorFlow
reaches (SavedModel, frozen ``.pb``, ONNX, TFLite, Core ML).

Files are safety-checked first (packager.safety.keras) and always loaded with ``safe_mode=True``
unless trusted. ``tf2onnx.convert.from_keras`` is broken on Keras 3, hence the tf.function route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Framework, Runtime
from packager.deps import quiet_output, require, version_of
from packager.errors import ConversionError, InputFileError, UnsafeModelError, UnsupportedConversion, first_line
from packager.plugins import adapts, converts, framework, runs
from packager.safety import TRUST_HINT
from packager.signature import Signature, TensorSpec
from packager.validation import INT8, SAME_KERNELS, criteria_table

from . import tensorflow as tfc


def _keras():
    tfc.tf_module()  # the TensorFlow backend, quietly
    return require("keras", "tensorflow", "Keras models")


@framework("keras")
class Keras(Framework):
    """Keras models; inputs and their shapes come from the model, so a sample is optional."""

    file_formats = frozenset({"keras", "hdf5"})

    @staticmethod
    def claims(obj: Any) -> bool:
        return any(c.__module__.startswith("keras") and c.__name__ == "Model" for c in type(obj).__mro__)

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        return load_keras(path, fmt, trust=trust)

    def describe(self, model: Any) -> dict[str, Any]:
        _refuse_unbuilt(model)  # count_params raises a ValueError on an unbuilt model
        return {"model": type(model).__name__, "parameters": int(model.count_params()), "layers": len(model.layers)}

    def versions(self) -> dict[str, str]:
        return {"keras": version_of("keras"), "tensorflow": version_of("tensorflow")}

    def label_outputs(self, model: Any) -> set[str]:
        return set()

    def output_kinds(self, model: Any, expected: Mapping[str, Any]) -> dict[str, Any]:
        """An output whose last layer ends in sigmoid or softmax is a probability (issue 26: a Dense(1, "sigmoid")
        output was judged as a regression, relative to its spread); other outputs are left to their values."""
        from packager.validation import OutputKind

        layers = _output_layers(model)
        if len(layers) != len(expected):
            return {}
        found = {}
        for name, layer in zip(expected, layers, strict=True):
            activation = getattr(getattr(layer, "activation", None), "__name__", "")
            if activation in ("sigmoid", "softmax"):
                found[name] = (OutputKind.PROBABILITIES, f"Keras last activation {activation}")
        return found

    def signature(self, model: Any, sample: Any) -> Signature:
        specs = input_specs(model)
        text = [spec.name for spec in specs if spec.dtype == "string"]
        if text:  # numpy has no "string" dtype: samples, the input example and every runtime's feeds are numeric arrays here
            raise UnsupportedConversion(
                f"the Keras model takes string input {text} (StringLookup or TextVectorization); packager converts numeric inputs only",
                "keep the text preprocessing outside: convert the model from the layer after it (token ids), ship the vocabulary beside it",
            )
        return Signature(specs)

    def fitted_rows(self, model: Any, signature: Signature, rows: int) -> Any:
        from .keras_rows import fitted_rows

        return fitted_rows(model, signature, rows)

    def feeds(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
        return tfc.feeds_for(signature, sample)

    def predict(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return predict(model, signature, feeds)


def _output_layers(model: Any) -> list[Any]:
    """The layer that makes each model output, in output order ([] when Keras does not say)."""
    try:
        return [tensor._keras_history[0] for tensor in model.outputs]
    except (AttributeError, IndexError, TypeError, ValueError):
        return []


def _refuse_unbuilt(model: Any) -> None:
    if getattr(model, "inputs", None):
        return
    if type(model).__name__ == "Sequential":  # saved before fit/build: no input shape, and no weights to convert either
        raise InputFileError(
            f"the Keras Sequential model {model.name!r} was never built: it has no input shape and no trained weights",
            "start it with keras.Input(shape=...) (or call model.build) and train it before saving",
        )
    raise InputFileError(
        f"the Keras model {model.name!r} has no defined inputs (a subclassed model that was never built)",
        "build it with an Input layer, or call it once on data before converting",
    )


def input_specs(model: Any) -> tuple[TensorSpec, ...]:
    _refuse_unbuilt(model)
    return tuple(TensorSpec(t.name, str(t.dtype), tuple(t.shape)) for t in model.inputs)


def output_names(model: Any) -> tuple[str, ...]:
    """The names of the layers producing the outputs. Functional models list them in ``output_names``; a Keras 3
    ``Sequential`` has no such attribute (measured on 3.15), so read the layer behind each symbolic output."""
    names = getattr(model, "output_names", None)
    if names:
        return tuple(names)
    found = [getattr(getattr(t, "_keras_history", None), "operation", None) for t in model.outputs or ()]
    names = [getattr(op, "name", None) or f"output_{i}" for i, op in enumerate(found)]
    return tuple(names) if len(set(names)) == len(names) else tuple(f"output_{i}" for i in range(len(names)))


def predict(model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np

    args = [feeds[name] for name in signature.input_names]
    result = model(args if len(args) > 1 else args[0], training=False)
    values = (
        [result[k] for k in sorted(result)] if isinstance(result, Mapping) else result if isinstance(result, (list, tuple)) else [result]
    )
    return {name: np.asarray(value) for name, value in zip(output_names(model), values, strict=True)}


def load_keras(path: Path, fmt: str, *, trust: bool = False) -> Any:
    """Open ``path`` as ``fmt`` (what packager detected and checked), never as Keras' own guess: ``load_model``
    picks its reader from the file name (a zip named ``.keras``, else HDF5 for ``.h5``), so a file checked as
    one format could be read as the other. The Keras archive is read from the one open file handle."""
    _keras()
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.saving import saving_lib

    try:
        with quiet_output():
            if fmt == "keras":
                with open(path, "rb") as handle:
                    return saving_lib.load_model(handle, safe_mode=not trust, compile=False)
            if fmt == "hdf5":
                import h5py

                with h5py.File(path, "r") as handle:
                    return legacy_h5_format.load_model_from_hdf5(handle, safe_mode=not trust, compile=False)
            raise InputFileError(f"{Path(path).name} is {fmt}, not a Keras file", "give a .keras archive or a Keras .h5 file")
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise UnsafeModelError(
                f"{Path(path).name} holds Python code (a Lambda layer) that Keras' safe mode refuses", TRUST_HINT
            ) from None
        raise


def as_graph(model: Any) -> tfc.TFGraph:
    """The model as one tf.function over its inputs, in inference mode."""
    inputs = input_specs(model)

    def call(*args: Any) -> Any:
        return model(list(args) if len(args) > 1 else args[0], training=False)

    return tfc.graph_from_callable(call, inputs, output_names(model), "keras", keep_alive=model)


# ---------------------------------------------------------------- Keras' own formats


def _save_native(model: Any, out: Path, suffix: str, options) -> Any:
    """``.keras`` or ``.h5``; ``--quantize dynamic`` applies Keras' int8 (weights int8, activations
    quantized on the fly) to a copy, so the caller's model is left as it was."""
    path = out / f"model{suffix}"
    details: dict[str, Any] = {"saved_by": "keras", "keras": version_of("keras")}
    with quiet_output():
        model.save(str(path))
        if options.quantize == "dynamic":
            size_before = path.stat().st_size
            quantized = _int8_copy(model)
            path.unlink()
            quantized.save(str(path))
            details["quantized_in_conversion"] = {
                "mode": "dynamic",
                "size_before": size_before,
                "layers": "Dense, EinsumDense, Embedding (Keras int8)",
            }
    return Artifact(path, details)


def _int8_copy(model: Any) -> Any:
    keras = _keras()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    try:
        copy.quantize("int8")
    except Exception as exc:
        raise ConversionError(
            f"Keras int8 quantization failed: {type(exc).__name__}: {first_line(exc)}",
            "int8 applies to Dense, EinsumDense and Embedding layers; drop --quantize",
        ) from exc
    return copy


@converts("keras", to="keras", quantize={"dynamic"}, note="Keras v3 archive; int8 via model.quantize")
def keras_to_keras(model: Any, signature: Signature, out: Path, options) -> Any:
    return _save_native(model, out, ".keras", options)


@converts("keras", to="hdf5", quantize={"dynamic"}, note="legacy HDF5; int8 via model.quantize")
def keras_to_hdf5(model: Any, signature: Signature, out: Path, options) -> Any:
    lookups = [layer.name for layer in model._flatten_layers() if hasattr(layer, "lookup_table")]
    if lookups:  # measured, Keras 3.15: the .h5 reloads with an empty table and fails "Table not initialized" on the first call
        raise ConversionError(
            f"the legacy HDF5 format does not keep the vocabulary of lookup layers {lookups}",
            "use --to keras (the .keras archive keeps it) or --to savedmodel",
        )
    return _save_native(model, out, ".h5", options)


@converts("keras", to="savedmodel", note="model.export (serving_default signature)")
def keras_to_savedmodel(model: Any, signature: Signature, out: Path, options) -> Any:
    path = out / "saved_model"
    with quiet_output():
        model.export(str(path), format="tf_saved_model", verbose=False)
    return Artifact(path, {"converter": "keras Model.export", "keras": version_of("keras")})


# Keras' model as a TensorFlow graph: TensorFlow's converters to these formats convert it (five one-line wrappers before)
@adapts(
    "keras",
    to="tensorflow",
    targets={
        "coreml": "coremltools from a concrete function (.mlmodel)",
        "mlpackage": "coremltools ML program from a concrete function",
        "onnx": "tf2onnx from a tf.function (from_keras is broken on Keras 3)",
        "pb": "frozen GraphDef from the model's tf.function",
        "tflite": "TFLiteConverter; post-training int8 (calibrated) and fp16",
    },
)
def keras_as_graph(model: Any) -> tfc.TFGraph:
    return as_graph(model)


# ---------------------------------------------------------------- runtimes


class _KerasRuntime(Runtime):
    name = "keras.models.load_model(safe_mode=True)"
    distribution = "keras"
    format = "keras"

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        return load_keras(Path(path), self.format, trust=trust)

    def predict(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return tfc.by_signature(signature, predict(model, signature, feeds))


KERAS_CRITERIA = criteria_table({None: SAME_KERNELS, "dynamic": INT8})  # Keras' own int8 (model.quantize) is "dynamic"


def _check_keras_archive(path: Path) -> None:
    from packager.safety.keras import check_keras_archive

    check_keras_archive(path)


def _check_keras_h5(path: Path) -> None:
    from packager.safety.keras import check_keras_h5

    check_keras_h5(path)


def is_keras_archive(path: Path, head: bytes) -> bool:
    """A Keras v3 archive: config.json with metadata.json or a .weights.h5 member."""
    from packager.formats import zip_names

    names = zip_names(path)
    return "config.json" in names and ("metadata.json" in names or any(n.endswith(".weights.h5") for n in names))


KERAS = Format("keras", title="Keras v3 archive", suffix=".keras", check=_check_keras_archive, detect=is_keras_archive, containers=("zip",))
HDF5 = Format("hdf5", title="HDF5 (Keras)", suffix=".h5", suffixes=(".hdf5",), check=_check_keras_h5)


@runs(KERAS, criteria=KERAS_CRITERIA)
class KerasArchiveRuntime(_KerasRuntime):
    pass


@runs(HDF5, criteria=KERAS_CRITERIA)
class KerasH5Runtime(_KerasRuntime):
    format = "hdf5"
