"""Hugging Face model folders (``save_pretrained``: config.json, model.safetensors or pytorch_model.bin, tokenizer files)
as a source: feature extraction (with the pooling a sentence-transformers folder declares), sequence classification and
token classification on text, image classification on pixels, to ONNX (dynamic batch and sequence axes; int8 and fp16
through the ONNX quantizer), TorchScript and safetensors. The task comes from the config's architecture or ``--task``; a
task whose head has no weights in the folder is refused (transformers would initialise it at random).

Loaded offline (``HF_HUB_OFFLINE``), never with ``trust_remote_code`` unless the user passed ``--trust`` (the folder
was checked by packager.safety.huggingface first). The model is wrapped in one module whose inputs are the token
tensors (or pixels) and whose outputs are what a user reads (a pooled embedding; logits, and for classifiers of a whole
input their softmax probabilities too, so validation judges top-1 and the probability difference), so every torch exporter
sees a plain tensor function. Every package carries the tokenizer (``tokenizer.json`` with padding and truncation set, its
``tokenizer_config.json``) and ``preprocessing.json`` (max length, padding, truncation, pooling, labels), also recorded
in the manifest: ``predict`` tokenizes text with exactly what validation used. An image classifier's package carries
its ``preprocessor_config.json`` instead, and is validated on images made here and prepared by its own image processor.

This module is what the registry loads (the format, the framework, the conversions); its parts: loading the folder
(``huggingface_loading``), export helpers (``huggingface_export``), the files a package carries and reading them back
(``huggingface_package``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Framework
from packager.deps import require, version_of
from packager.errors import ConversionError, UsageError, converting, first_line
from packager.plugins import converts, framework
from packager.safety.folders import copy_plain
from packager.signature import Signature, TensorSpec
from packager.validation import OutputKind

from .huggingface_export import _register_coreml_new_ones, example_inputs, int8_for_transformers
from .huggingface_loading import BUILTIN_TEXTS, TextModel, load_folder, texts_of, validation_images
from .huggingface_package import run_module, write_text_files

# what save_pretrained writes: a config and weights (one file, or shards named by an index)
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def is_hf_folder(folder: Path, head: bytes) -> bool:
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in HF_WEIGHTS)


def _check_folder(folder: Path) -> None:
    from packager.safety.huggingface import check_hf_folder

    check_hf_folder(folder)


HUGGINGFACE = Format(
    "huggingface", title="Hugging Face model folder (save_pretrained)", directory=True, detect=is_hf_folder, check=_check_folder
)


@framework("huggingface")
class HuggingFace(Framework):
    """Hugging Face folders: token tensors (or pixels) in, an embedding or logits (and probabilities) out; validated on
    text, or on images prepared by the folder's image processor."""

    file_formats = frozenset({"huggingface"})
    takes_task = True

    @staticmethod
    def claims(obj: Any) -> bool:
        return isinstance(obj, TextModel)

    @staticmethod
    def fitted_rows_source(model: TextModel) -> str:
        return "image-processor" if model.preprocessing.is_image else "built-in-text"

    def load(self, path: Path, fmt: str, *, trust: bool = False, task: str | None = None) -> TextModel:
        return load_folder(Path(path), trust=trust, task=task)

    def describe(self, model: TextModel) -> dict[str, Any]:
        parameters = sum(p.numel() for p in model.hf_model.parameters()) if model.hf_model is not None else None
        return {
            "architecture": model.preprocessing.architecture,
            "task": model.preprocessing.task,
            "parameters": parameters,
            "preprocessing": model.preprocessing.to_dict(),
        }

    def versions(self) -> dict[str, str]:
        return {name: version_of(name) for name in ("torch", "transformers", "tokenizers")}

    def label_outputs(self, model: TextModel) -> set[str]:
        return set()

    def signature(self, model: TextModel, sample: Any) -> Signature:
        if model.preprocessing.is_image:
            extra = model.preprocessing.extra
            shape = (None, int(extra["num_channels"]), *(int(v) for v in extra["image_size"]))
            return Signature((TensorSpec("pixel_values", "float32", shape),))
        return Signature(tuple(TensorSpec(name, "int64", (None, None)) for name in model.preprocessing.input_names))

    def fitted_rows(self, model: TextModel, signature: Signature, rows: int) -> Any:
        if model.preprocessing.is_image:
            return validation_images(model.image_processor)
        return list(BUILTIN_TEXTS)

    def feeds(self, model: TextModel, signature: Signature, sample: Any) -> dict[str, Any]:
        import numpy as np

        if model.preprocessing.is_image:
            return {"pixel_values": pixels_of(model, signature, sample)}
        texts = texts_of(sample)
        if texts is not None:
            return model.tokenize(texts)
        if isinstance(sample, dict) and set(model.preprocessing.input_names) <= set(sample):
            return {n: np.asarray(sample[n], dtype=np.int64) for n in model.preprocessing.input_names}
        raise UsageError(
            "a text model's sample must be text", "give --sample texts.txt (one text per line) or a table with a 'text' column"
        )

    def predict(self, model: TextModel, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return run_module(model.module, model.preprocessing, feeds)

    def output_kinds(self, model: TextModel, expected: Mapping[str, Any]) -> dict[str, OutputKind]:
        """Embeddings by cosine; logits by top-1 (per token for token classification); probabilities by their difference."""
        kinds = {"sentence_embedding": OutputKind.EMBEDDING, "logits": OutputKind.SCORES, "probabilities": OutputKind.PROBABILITIES}
        return {name: kinds[name] for name in model.preprocessing.outputs}


def pixels_of(model: TextModel, signature: Signature, sample: Any) -> Any:
    """An image classifier's sample: pixel values as the processor makes them (N, C, H, W floats, e.g. a .npy), or images
    (N, H, W, C uint8) that go through the processor first."""
    import numpy as np

    array = sample.get("pixel_values") if isinstance(sample, dict) else sample
    array = np.asarray(array) if array is not None and not hasattr(array, "columns") else None
    if array is not None and array.ndim == 4 and array.dtype == np.uint8:
        return np.asarray(model.image_processor(images=list(array), return_tensors="np")["pixel_values"], dtype=np.float32)
    expected = tuple(signature.inputs[0].shape[1:])
    if array is None or array.ndim != 4 or tuple(array.shape[1:]) != expected or array.dtype.kind != "f":
        got = f"{array.dtype} {array.shape}" if array is not None else type(sample).__name__
        raise UsageError(
            f"an image classifier's sample must be pixel values (N, {', '.join(map(str, expected))}) or uint8 images "
            f"(N, H, W, C); got {got}",
            "save the image processor's pixel_values, or the images as uint8, with np.save",
        )
    return np.ascontiguousarray(array, dtype=np.float32)


@converts(
    "huggingface",
    to="onnx",
    quantize={"dynamic", "fp16"},
    note="torch.onnx (TorchScript exporter, dynamo as fallback) with dynamic batch and sequence axes; int8 = 8-bit weight "
    "blocks (MatMulNBits, int8 compute) + int8 embeddings; tokenizer + preprocessing packaged",
)
def hf_to_onnx(model: TextModel, signature: Signature, out: Path, options) -> Any:
    """Both axes of every input dynamic; the TorchScript-based exporter first: on all-MiniLM-L6-v2 it took 3.2 s against
    11.6 s for dynamo, for the same operators and the same latency (10.3 ms, batch 1, seq 32, one thread)."""
    from packager.deps import quiet_output

    torch = require("torch", "torch", "ONNX export")
    onnx = require("onnx", "torch", "ONNX export")
    names, outputs = list(model.preprocessing.input_names), list(model.preprocessing.outputs)
    example, path, failures = example_inputs(model, options), out / "model.onnx", []
    per_token = model.preprocessing.task == "token-classification"
    for dynamo in (False, True):
        try:
            with quiet_output():
                if dynamo:
                    batch, sequence = torch.export.Dim("batch", min=1, max=1 << 20), torch.export.Dim("sequence", min=1, max=1 << 16)
                    shapes = tuple({0: batch} if model.preprocessing.is_image else {0: batch, 1: sequence} for _ in names)
                    torch.onnx.export(
                        model.module,
                        example,
                        str(path),
                        input_names=names,
                        output_names=outputs,
                        dynamo=True,
                        dynamic_shapes=shapes,
                        external_data=False,
                        opset_version=options.opset,
                    )
                else:
                    axes = {n: {0: "batch"} if model.preprocessing.is_image else {0: "batch", 1: "sequence"} for n in names}
                    axes.update({o: {0: "batch", 1: "sequence"} if per_token else {0: "batch"} for o in outputs})
                    torch.onnx.export(
                        model.module,
                        example,
                        str(path),
                        input_names=names,
                        output_names=outputs,
                        dynamo=False,
                        dynamic_axes=axes,
                        opset_version=options.opset or 17,
                    )
            break
        except Exception as exc:
            failures.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {first_line(exc, 160)}")
            path.unlink(missing_ok=True)
    else:
        raise ConversionError(
            f"torch.onnx.export failed on {model.preprocessing.architecture} ({'; '.join(failures)})", "try another --opset"
        )
    proto = onnx.load(str(path), load_external_data=False)
    details = {
        "exporter": "torchscript" if not failures else "dynamo (torchscript failed)",
        "export_error": failures[0] if failures else None,
        "opset": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
        "torch": version_of("torch"),
    }
    if options.quantize == "dynamic":
        size_before = path.stat().st_size
        details["quantization"] = int8_for_transformers(path)
        details["quantized_in_conversion"] = {"mode": "dynamic", "size_before": size_before}
    return Artifact(path, {**details, **write_text_files(model, out)})


@converts(
    "huggingface",
    to="torchscript",
    note="torch.jit.trace of the wrapped model (embedding or logits out); tokenizer + preprocessing packaged",
)
def hf_to_torchscript(model: TextModel, signature: Signature, out: Path, options) -> Any:
    from .torch import torch_to_torchscript

    artifact = torch_to_torchscript(model.module, signature, out, options)
    return type(artifact)(artifact.path, {**artifact.details, **write_text_files(model, out)})


@converts(
    "huggingface",
    to="safetensors",
    note="the weights as safetensors beside config.json, tokenizer and preprocessing (runs in transformers)",
)
def hf_to_safetensors(model: TextModel, signature: Signature, out: Path, options) -> Any:
    safetensors_torch = require("safetensors.torch", "huggingface", "writing safetensors")
    path = out / "model.safetensors"
    with converting(f"safetensors could not save {model.preprocessing.architecture}", "check the model's state_dict"):
        safetensors_torch.save_model(model.hf_model, str(path), metadata={"format": "pt"})
    copy_plain(model.folder / "config.json", out / "config.json")
    return Artifact(path, {"safetensors": version_of("safetensors"), **write_text_files(model, out)})


@converts(
    "huggingface",
    to="mlpackage",
    quantize={"weights"},
    note="coremltools ML program from the traced model (fp16 compute); structure checked on Linux, runs on macOS",
)
def hf_to_mlpackage(model: TextModel, signature: Signature, out: Path, options) -> Any:
    """Token ids as int32 with RangeDim batch and sequence axes (up to the model's max length); pixels as float32 with a
    RangeDim batch. The package keeps the tokenizer (or image processor config) and preprocessing.json."""
    import numpy as np

    from packager.contract import Artifact
    from packager.deps import quiet_output
    from packager.errors import first_line

    from .shared import trace_torch

    ct = require("coremltools", "coreml", "Core ML export")
    _register_coreml_new_ones()
    preprocessing = model.preprocessing
    if preprocessing.is_image:
        shape = tuple(ct.RangeDim(1, 4096) if d is None else d for d in signature.inputs[0].shape)
        inputs = [ct.TensorType(name="pixel_values", shape=shape, dtype=np.float32)]
    else:
        shape = (ct.RangeDim(1, 4096), ct.RangeDim(1, preprocessing.max_length))
        inputs = [ct.TensorType(name=n, shape=shape, dtype=np.int32) for n in preprocessing.input_names]
    try:
        traced = trace_torch(model.module, example_inputs(model, options))
        with quiet_output():
            converted = ct.convert(
                traced, inputs=inputs, outputs=[ct.TensorType(name=o) for o in preprocessing.outputs], convert_to="mlprogram"
            )
    except Exception as exc:
        raise ConversionError(
            f"coremltools cannot convert {preprocessing.architecture}: {type(exc).__name__}: {first_line(exc, 200)}", "use --to onnx"
        ) from exc
    path = out / "model.mlpackage"
    converted.save(str(path))
    details = {"converter": "coremltools (traced TorchScript)", "converter_version": version_of("coremltools"), "model_type": "mlprogram"}
    return Artifact(path, {**details, **write_text_files(model, out)})
