"""Core ML: coremltools' scikit-learn converter where it still works, and a structure check as the
"runtime" (Core ML predicts only on macOS: reported as not executed, never as passed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.contract import Artifact, Format, QuantizeResult, Runtime
from packager.deps import quiet_output, require, version_of
from packager.errors import ConversionError, InputFileError, UnsupportedConversion, first_line
from packager.plugins import converts, quantizes, runs
from packager.validation import FLOAT32, FP16, INT8, criteria_table

SKLEARN_MAX = (1, 5, 1)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


@converts("sklearn", to="coreml", note="coremltools' scikit-learn converter: scikit-learn <= 1.5.1 only")
def sklearn_to_coreml(model: Any, signature, out: Path, options) -> Any:
    installed = version_of("scikit-learn")
    if _version_tuple(installed) > SKLEARN_MAX:
        raise UnsupportedConversion(
            f"coremltools disables its scikit-learn converter above scikit-learn 1.5.1 (installed: {installed})",
            "convert to ONNX instead (Core ML apps can load ONNX via coremltools' ONNX-free paths), "
            "or run this conversion in an environment with scikit-learn<=1.5.1",
        )
    ct = require("coremltools", "coreml", "Core ML export")
    names = signature.input_names if signature.columnar else [f"x{i}" for i in range(signature.inputs[0].shape[1])]
    try:
        mlmodel = ct.converters.sklearn.convert(model, names, signature.output_names[0])
    except Exception as exc:
        raise ConversionError(f"coremltools cannot convert {type(model).__name__}: {exc}", "use --to onnx") from exc
    path = out / "model.mlmodel"
    mlmodel.save(str(path))
    return Artifact(path, {"converter": "coremltools", "converter_version": version_of("coremltools")})


def convert_to_coreml(
    convertible: Any, specs, out: Path, *, package: bool, origin: str, what: str, hint: str = "use --to onnx", **kwargs: Any
) -> Any:
    """One coremltools conversion for every deep-learning source: dynamic axes become RangeDims;
    ``package`` picks an ML program (.mlpackage) over a neural network (.mlmodel)."""
    ct = require("coremltools", "coreml", "Core ML export")
    inputs = [ct.TensorType(name=s.name, shape=tuple(ct.RangeDim(1, 4096) if d is None else d for d in s.shape)) for s in specs]
    kind = "mlprogram" if package else "neuralnetwork"
    try:
        with quiet_output():
            model = ct.convert(convertible, inputs=inputs, convert_to=kind, **kwargs)
    except Exception as exc:
        raise ConversionError(f"coremltools cannot convert {what}: {type(exc).__name__}: {first_line(exc)}", hint) from exc
    path = out / ("model.mlpackage" if package else "model.mlmodel")
    model.save(str(path))
    return Artifact(path, {"converter": f"coremltools ({origin})", "converter_version": version_of("coremltools"), "model_type": kind})


# Not executed on Linux (structure checked); declared for macOS runs and so the matrix is complete.
COREML_CRITERIA = criteria_table({None: FLOAT32, "weights": INT8, "fp16": FP16})


_SPEC_ONLY = "never executed here: Core ML predicts only on macOS, so packager only parses the spec (protobuf)"
# top-level fields (number -> wire type) of CoreML.Specification.Model: specificationVersion (1) and description (2)
# required, the model type one of the oneof fields 200-599
_MODEL_SPEC = {1: 0, 2: 2, 10: 0}


def is_coreml(path: Path, head: bytes) -> bool:
    from packager.formats import protobuf_matches

    return protobuf_matches(path, head, _MODEL_SPEC, required=(1, 2), extra=range(200, 600))


def is_mlpackage(path: Path, head: bytes) -> bool:
    return path.suffix == ".mlpackage" and (path / "Manifest.json").is_file()


COREML = Format(
    "coreml", title="Core ML model", suffix=".mlmodel", check=None, safe_because=_SPEC_ONLY, detect=is_coreml, containers=("protobuf",)
)
MLPACKAGE = Format(
    "mlpackage", title="Core ML package", suffix=".mlpackage", directory=True, check=None, safe_because=_SPEC_ONLY, detect=is_mlpackage
)


@runs(COREML, criteria=COREML_CRITERIA)
class CoreMLStructureCheck(Runtime):
    """Reads the spec: inputs, outputs, spec version. Execution needs macOS."""

    name = "coremltools (structure check)"
    distribution = "coremltools"
    executes = False

    def check(self, path: Path, signature) -> dict[str, Any]:
        return {"reason": "Core ML models execute only on macOS; the spec was read and checked", **self.inspect(path)}

    def inspect(self, path: Path) -> dict[str, Any]:
        ct = require("coremltools", "coreml", "reading Core ML models")
        try:
            spec = ct.utils.load_spec(str(path))
        except Exception as exc:
            raise InputFileError(f"{Path(path).name} is not a readable Core ML model: {exc}", "re-export it") from exc
        return {
            "spec_version": spec.specificationVersion,
            "model_type": spec.WhichOneof("Type"),
            "inputs": [f.name for f in spec.description.input],
            "outputs": [f.name for f in spec.description.output],
        }


@runs(MLPACKAGE, criteria=COREML_CRITERIA)
class MLPackageStructureCheck(CoreMLStructureCheck):
    """The same check for ML programs (.mlpackage folders)."""


# ---------------------------------------------------------------- quantization (weights only: runs on Linux)


@quantizes("coreml", modes={"weights", "fp16"})
def quantize_neural_network(src: Path, dst: Path, mode: str, calibration) -> Any:
    """8-bit linear (``weights``) or 16-bit float weights for a neural network .mlmodel."""
    ct = require("coremltools", "coreml", "Core ML quantization")
    from coremltools.models.neural_network import quantization_utils

    bits = 8 if mode == "weights" else 16
    with quiet_output():
        quantized = quantization_utils.quantize_weights(
            ct.models.MLModel(str(src), skip_model_load=True), nbits=bits, quantization_mode="linear"
        )
    ct.utils.save_spec(quantized.get_spec(), str(dst))
    return QuantizeResult(True, "", {"mode": mode, "bits": bits, "tool": f"coremltools {version_of('coremltools')} quantization_utils"})


@quantizes("mlpackage", modes={"weights"})
def quantize_ml_program(src: Path, dst: Path, mode: str, calibration) -> Any:
    """8-bit symmetric linear weights for an ML program (its default weights are already fp16)."""
    ct = require("coremltools", "coreml", "Core ML quantization")
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric"))
    with quiet_output():
        quantized = linear_quantize_weights(ct.models.MLModel(str(src), skip_model_load=True), config=config)
        quantized.save(str(dst))
    return QuantizeResult(True, "", {"mode": mode, "bits": 8, "tool": f"coremltools {version_of('coremltools')} optimize.coreml"})
