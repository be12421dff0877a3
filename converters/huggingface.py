"""Hugging Face model folders (``save_pretrained``: config.json, model.safetensors or pytorch_model.bin, tokenizer files)
as a source: feature extraction (with the pooling a sentence-transformers folder declares), sequence classification and
token classification, to ONNX (dynamic batch and sequence axes; int8 and fp16 through the ONNX quantizer), TorchScript
and safetensors.

Loaded offline (``HF_HUB_OFFLINE``), never with ``trust_remote_code`` unless the user passed ``--trust`` (the folder
was checked by packager.safety.huggingface first). The model is wrapped in one module whose inputs are the token
tensors and whose single output is what a user reads (a pooled embedding or logits), so every torch exporter sees a
plain tensor function. Every package carries the tokenizer (``tokenizer.json`` with padding and truncation set, its
``tokenizer_config.json``) and ``preprocessing.json`` (max length, padding, truncation, pooling, labels), also recorded
in the manifest: ``predict`` tokenizes text with exactly what validation used.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Framework
from packager.deps import require, version_of
from packager.errors import ConversionError, UnsupportedConversion, UsageError, converting, first_line
from packager.plugins import converts, framework
from packager.signature import Signature, TensorSpec
from packager.validation import OutputKind

TASKS = ("feature-extraction", "sequence-classification", "token-classification")
PREPROCESSING = "preprocessing.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                 "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
# Built-in validation texts when no --sample is given: several lengths (4 to ~90 tokens), plain sentences of the kind models
# embed or classify. Measured on all-MiniLM-L6-v2 dynamic int8: cosine >= 0.99 from ~8 tokens; 1-2 word texts reach only
# ~0.97-0.98 (mean pooling over 3 tokens keeps the int8 error of each), so they are not in this set: give --sample for them.
BUILTIN_TEXTS = (
    "Where is the train station?",
    "The weather is lovely today.",
    "I loved this movie, the acting was superb and the plot kept me guessing until the end.",
    "Please reset my password, I cannot log in to my account since yesterday evening.",
    "Quarterly revenue grew by twelve percent, driven by strong demand for cloud services in Europe and Asia.",
    "The patient reported mild headaches and fatigue over the past two weeks, with no fever or nausea.",
    "A transformer encoder maps a sequence of tokens to contextual vectors; mean pooling over the tokens that are not padding "
    "gives one vector per text, and normalising it makes the dot product of two texts their cosine similarity, which is what "
    "semantic search, clustering and deduplication compare when they rank documents against a query.",
    "She opened the old wooden door slowly, and the smell of dust and lavender filled the narrow hallway where her grandmother "
    "used to sit every afternoon with a cup of tea, a newspaper and the radio playing quietly in the background.",
)


def _offline() -> None:
    """Nothing may reach the network at run time: the hub client reads these before any download."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _transformers():
    _offline()
    return require("transformers", "huggingface", "Hugging Face models")


@dataclass(frozen=True)
class Preprocessing:
    """How text becomes the model's inputs and its output becomes an answer: recorded in the package and the manifest."""

    task: str
    input_names: tuple[str, ...]
    output_name: str
    max_length: int
    padding: str = "longest"  # pad each batch to its longest text
    truncation: str = "longest_first"
    pooling: str | None = None  # feature extraction: mean, cls, max, mean_sqrt_len
    normalize: bool = False
    labels: tuple[str, ...] = ()
    architecture: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_names"], data["labels"] = list(self.input_names), list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessing":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "input_names": tuple(known["input_names"]), "labels": tuple(known.get("labels", ()))})


@dataclass
class TextModel:
    """A loaded folder: the wrapped torch module (token tensors in, one output tensor out), its tokenizer, how to use them."""

    module: Any
    tokenizer: Any  # tokenizers.Tokenizer with padding and truncation set
    preprocessing: Preprocessing
    folder: Path
    tokenizer_config: Mapping[str, Any] = field(default_factory=dict)
    hf_model: Any = None

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        return tokenize(self.tokenizer, self.preprocessing, texts)


def tokenize(tokenizer: Any, preprocessing: Preprocessing, texts: list[str]) -> dict[str, Any]:
    """int64 arrays (batch, longest) for the model's inputs."""
    import numpy as np

    encodings = tokenizer.encode_batch([str(t) for t in texts])
    arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
              "token_type_ids": [e.type_ids for e in encodings]}
    return {name: np.asarray(arrays[name], dtype=np.int64) for name in preprocessing.input_names}


def configured_tokenizer(tokenizer: Any, preprocessing: Preprocessing, pad_id: int, pad_token: str) -> Any:
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length=preprocessing.max_length, strategy=preprocessing.truncation)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return tokenizer


def _wrapper_class():
    """The torch module class, made on first use (torch is imported inside functions only)."""
    torch = require("torch", "torch", "Hugging Face models")

    class TextTask(torch.nn.Module):
        """Token tensors -> one output: the pooled (and normalised) embedding, or the logits."""

        def __init__(self, model: Any, preprocessing: Preprocessing):
            super().__init__()
            self.model = model
            self.names = list(preprocessing.input_names)
            self.pooling, self.normalize = preprocessing.pooling, preprocessing.normalize
            self.task = preprocessing.task

        def forward(self, *inputs):
            named = dict(zip(self.names, inputs))
            out = self.model(**named)
            if self.task != "feature-extraction":
                return out.logits
            hidden = out.last_hidden_state
            mask = named["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            elif self.pooling == "max":
                pooled = torch.where(mask > 0, hidden, torch.full_like(hidden, -1e9)).max(dim=1).values
            else:
                summed, count = (hidden * mask).sum(dim=1), mask.sum(dim=1).clamp(min=1e-9)
                pooled = summed / (count.sqrt() if self.pooling == "mean_sqrt_len" else count)
            return torch.nn.functional.normalize(pooled, p=2, dim=1) if self.normalize else pooled

    return TextTask


# ---------------------------------------------------------------- loading

def task_of(config: Mapping[str, Any], folder: Path, task: str | None) -> str:
    if task:
        if task not in TASKS:
            raise UsageError(f"--task {task!r} is not one of {', '.join(TASKS)}", "pick the head the folder was trained with")
        return task
    architecture = (config.get("architectures") or [""])[0]
    if architecture.endswith("ForSequenceClassification"):
        return "sequence-classification"
    if architecture.endswith("ForTokenClassification"):
        return "token-classification"
    if (folder / "modules.json").is_file() or architecture.endswith("Model") or not architecture:
        return "feature-extraction"
    raise UnsupportedConversion(f"{folder.name} holds a {architecture}: its task is not one packager exports",
                                f"packager exports {', '.join(TASKS)}; pass --task if the folder fits one of them")


def pooling_of(folder: Path, task: str) -> tuple[str | None, bool]:
    """sentence-transformers: 1_Pooling/config.json says how, a Normalize module whether to normalise; else mean."""
    from packager.safety.huggingface import read_json

    if task != "feature-extraction":
        return None, False
    modules = read_json(folder / "modules.json", what="module list") if (folder / "modules.json").is_file() else []
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    pooling_dir = next((folder / m["path"] for m in modules if m.get("type", "").endswith(".Pooling") and m.get("path")),
        folder / "1_Pooling")
    if (pooling_dir / "config.json").is_file():
        config = read_json(pooling_dir / "config.json", what="pooling config")
        chosen = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
        if len(chosen) != 1:
            raise UnsupportedConversion(f"{pooling_dir.name}/config.json asks for pooling {chosen or 'none'}", "packager implements one of "
                                        f"{sorted(POOLING_MODES.values())} at a time")
        return chosen[0], normalize
    return "mean", normalize


def max_length_of(folder: Path, config: Mapping[str, Any], tokenizer_config: Mapping[str, Any]) -> int:
    from packager.safety.huggingface import read_json

    limits = [config.get("max_position_embeddings"), tokenizer_config.get("model_max_length")]
    if (folder / "sentence_bert_config.json").is_file():
        limits.append(read_json(folder / "sentence_bert_config.json", what="sentence-transformers config").get("max_seq_length"))
    usable = [int(v) for v in limits if isinstance(v, (int, float)) and 0 < v < 1_000_000]
    return min(usable) if usable else 512


def load_folder(folder: Path, *, trust: bool = False, task: str | None = None) -> TextModel:
    """The model (its head chosen by the task), its fast tokenizer and the preprocessing, all read offline."""
    import inspect

    from packager.safety.huggingface import read_json, weight_files

    transformers = _transformers()
    config = read_json(folder / "config.json", what="model config")
    tokenizer_config = read_json(folder / TOKENIZER_CONFIG, what="tokenizer config") if (folder / TOKENIZER_CONFIG).is_file() else {}
    task = task_of(config, folder, task)
    auto = {"feature-extraction": transformers.AutoModel, "sequence-classification": transformers.AutoModelForSequenceClassification,
            "token-classification": transformers.AutoModelForTokenClassification}[task]
    common = {"local_files_only": True, "trust_remote_code": trust}
    safetensors = weight_files(folder)[0].name.startswith("model.safetensors")
    model = auto.from_pretrained(str(folder), use_safetensors=safetensors, **common).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **common)
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedConversion(f"{folder.name} has no fast tokenizer (tokenizer.json)",
            "save the folder with a fast tokenizer (use_fast=True)")
    accepted = set(inspect.signature(model.forward).parameters)
    names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names and n in accepted)
    if "input_ids" not in names or "attention_mask" not in names:
        raise UnsupportedConversion(f"{folder.name}: the tokenizer gives {tokenizer.model_input_names}",
            "packager exports text models taking "
                                    "input_ids and attention_mask")
    pooling, normalize = pooling_of(folder, task)
    labels = tuple(str(config.get("id2label", {}).get(str(i), i)) for i in range(len(config.get("id2label",
        {})))) if task != "feature-extraction" else ()
    preprocessing = Preprocessing(task, names, "sentence_embedding" if task == "feature-extraction" else "logits",
                                  max_length_of(folder, config, tokenizer_config), pooling=pooling, normalize=normalize, labels=labels,
                                  architecture=type(model).__name__)
    backend = require("tokenizers", "huggingface", "tokenizing text").Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend = configured_tokenizer(backend, preprocessing, tokenizer.pad_token_id or 0, tokenizer.pad_token or "[PAD]")
    module = _wrapper_class()(model, preprocessing).eval()
    return TextModel(module, backend, preprocessing, folder, tokenizer_config, model)


def texts_of(sample: Any) -> list[str] | None:
    """Texts from a sample: a table with a text column (a .txt sample is one), a list or array of strings."""
    import numpy as np

    if sample is None:
        return None
    if hasattr(sample, "columns"):
        text_columns = [c for c in sample.columns if sample[c].dtype == object]
        column = "text" if "text" in sample.columns else (text_columns[0] if len(text_columns) == 1 else None)
        if column is None:
            raise UsageError(f"the sample has columns {list(sample.columns)[:10]} and no single text column", "name the column 'text', or "
                             "give a .txt file with one text per line")
        return [str(t) for t in sample[column].tolist()]
    if isinstance(sample, (list, tuple)) and all(isinstance(t, str) for t in sample):
        return list(sample)
    array = np.asarray(sample) if not isinstance(sample, dict) else None
    if array is not None and array.dtype.kind in "OUS":
        return [str(t) for t in array.reshape(-1)]
    return None


# what save_pretrained writes: a config and weights (one file, or shards named by an index)
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def is_hf_folder(folder: Path, head: bytes) -> bool:
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in HF_WEIGHTS)


def _check_folder(folder: Path) -> None:
    from packager.safety.huggingface import check_hf_folder

    check_hf_folder(folder)


HUGGINGFACE = Format("huggingface", title="Hugging Face model folder (save_pretrained)", directory=True, detect=is_hf_folder,
                     check=_check_folder)


@framework("huggingface")
class HuggingFace(Framework):
    """Hugging Face folders: token tensors in, an embedding or logits out; validated on text."""

    file_formats = frozenset({"huggingface"})
    fitted_rows_source = "built-in-text"

    @staticmethod
    def claims(obj: Any) -> bool:
        return isinstance(obj, TextModel)

    def load(self, path: Path, fmt: str, *, trust: bool = False, task: str | None = None) -> TextModel:
        return load_folder(Path(path), trust=trust, task=task)

    def describe(self, model: TextModel) -> dict[str, Any]:
        parameters = sum(p.numel() for p in model.hf_model.parameters()) if model.hf_model is not None else None
        return {"architecture": model.preprocessing.architecture, "task": model.preprocessing.task, "parameters": parameters,
                "preprocessing": model.preprocessing.to_dict()}

    def versions(self) -> dict[str, str]:
        return {name: version_of(name) for name in ("torch", "transformers", "tokenizers")}

    def label_outputs(self, model: TextModel) -> set[str]:
        return set()

    def signature(self, model: TextModel, sample: Any) -> Signature:
        return Signature(tuple(TensorSpec(name, "int64", (None, None)) for name in model.preprocessing.input_names))

    def fitted_rows(self, model: TextModel, signature: Signature, rows: int) -> list[str]:
        return list(BUILTIN_TEXTS)

    def feeds(self, model: TextModel, signature: Signature, sample: Any) -> dict[str, Any]:
        import numpy as np

        texts = texts_of(sample)
        if texts is not None:
            return model.tokenize(texts)
        if isinstance(sample, dict) and set(model.preprocessing.input_names) <= set(sample):
            return {n: np.asarray(sample[n], dtype=np.int64) for n in model.preprocessing.input_names}
        raise UsageError("a text model's sample must be text",
            "give --sample texts.txt (one text per line) or a table with a 'text' column")

    def predict(self, model: TextModel, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return run_module(model.module, model.preprocessing, feeds)

    def output_kinds(self, model: TextModel, expected: Mapping[str, Any]) -> dict[str, OutputKind]:
        kind = OutputKind.EMBEDDING if model.preprocessing.task == "feature-extraction" else OutputKind.SCORES
        return {model.preprocessing.output_name: kind}


def run_module(module: Any, preprocessing: Preprocessing, feeds: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np

    torch = require("torch", "torch", "Hugging Face models")
    tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.int64)) for n in preprocessing.input_names]
    with torch.no_grad():
        return {preprocessing.output_name: module(*tensors).detach().cpu().numpy()}


# ---------------------------------------------------------------- package files

def write_text_files(model: TextModel, out: Path) -> dict[str, Any]:
    """tokenizer.json (padding and truncation set), tokenizer_config.json, preprocessing.json beside the model file."""
    model.tokenizer.save(str(out / TOKENIZER))
    if (model.folder / TOKENIZER_CONFIG).is_file():
        shutil.copyfile(model.folder / TOKENIZER_CONFIG, out / TOKENIZER_CONFIG)
    (out / PREPROCESSING).write_text(json.dumps(model.preprocessing.to_dict(), indent=2) + "\n")
    return {"preprocessing": model.preprocessing.to_dict(), "tokenizer": TOKENIZER, "transformers": version_of("transformers")}


def read_preprocessing(folder: Path) -> Preprocessing | None:
    """The preprocessing of a package folder (None when it is not a text package)."""
    path = Path(folder) / PREPROCESSING
    if not path.is_file():
        return None
    from packager.safety.huggingface import read_json

    return Preprocessing.from_dict(read_json(path, what="preprocessing spec"))


def load_package_tokenizer(folder: Path) -> Any:
    return require("tokenizers", "huggingface", "tokenizing text").Tokenizer.from_file(str(Path(folder) / TOKENIZER))


# ---------------------------------------------------------------- conversions

def _example(model: TextModel, options) -> tuple:
    import numpy as np

    torch = require("torch", "torch", "Hugging Face models")
    return tuple(torch.from_numpy(np.ascontiguousarray(options.example[n])) for n in model.preprocessing.input_names)


@converts("huggingface", to="onnx", quantize={"dynamic", "fp16"},
          note="torch.onnx (TorchScript exporter, dynamo as fallback) with dynamic batch and sequence axes; "
               "tokenizer + preprocessing packaged")
def hf_to_onnx(model: TextModel, signature: Signature, out: Path, options) -> Any:
    """Both axes of every input dynamic; the TorchScript-based exporter first: on all-MiniLM-L6-v2 it took 3.2 s against
    11.6 s for dynamo, for the same operators and the same latency (10.3 ms, batch 1, seq 32, one thread)."""
    from packager.deps import quiet_output

    torch = require("torch", "torch", "ONNX export")
    onnx = require("onnx", "torch", "ONNX export")
    names, output = list(model.preprocessing.input_names), model.preprocessing.output_name
    example, path, failures = _example(model, options), out / "model.onnx", []
    for dynamo in (False, True):
        try:
            with quiet_output():
                if dynamo:
                    batch, sequence = torch.export.Dim("batch", min=1, max=1 << 20), torch.export.Dim("sequence", min=1, max=1 << 16)
                    torch.onnx.export(model.module, example, str(path), input_names=names, output_names=[output], dynamo=True,
                                      dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names), external_data=False,
                                          opset_version=options.opset)
                else:
                    axes = {n: {0: "batch", 1: "sequence"} for n in names}
                    axes[output] = {0: "batch", 1: "sequence"} if model.preprocessing.task == "token-classification" else {0: "batch"}
                    torch.onnx.export(model.module, example, str(path), input_names=names, output_names=[output], dynamo=False,
                                      dynamic_axes=axes, opset_version=options.opset or 17)
            break
        except Exception as exc:
            failures.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {first_line(exc, 160)}")
            path.unlink(missing_ok=True)
    else:
        raise ConversionError(f"torch.onnx.export failed on {model.preprocessing.architecture} ({'; '.join(failures)})",
            "try another --opset")
    proto = onnx.load(str(path), load_external_data=False)
    details = {"exporter": "torchscript" if not failures else "dynamo (torchscript failed)",
        "export_error": failures[0] if failures else None,
               "opset": {op.domain or "ai.onnx": op.version for op in proto.opset_import}, "torch": version_of("torch")}
    return Artifact(path, {**details, **write_text_files(model, out)})


@converts("huggingface", to="torchscript",
    note="torch.jit.trace of the wrapped model (embedding or logits out); tokenizer + preprocessing packaged")
def hf_to_torchscript(model: TextModel, signature: Signature, out: Path, options) -> Any:
    from packager.converters.torch import torch_to_torchscript

    artifact = torch_to_torchscript(model.module, signature, out, options)
    return type(artifact)(artifact.path, {**artifact.details, **write_text_files(model, out)})


@converts("huggingface", to="safetensors",
    note="the weights as safetensors beside config.json, tokenizer and preprocessing (runs in transformers)")
def hf_to_safetensors(model: TextModel, signature: Signature, out: Path, options) -> Any:
    safetensors_torch = require("safetensors.torch", "huggingface", "writing safetensors")
    path = out / "model.safetensors"
    with converting(f"safetensors could not save {model.preprocessing.architecture}", "check the model's state_dict"):
        safetensors_torch.save_model(model.hf_model, str(path), metadata={"format": "pt"})
    shutil.copyfile(model.folder / "config.json", out / "config.json")
    return Artifact(path, {"safetensors": version_of("safetensors"), **write_text_files(model, out)})


def load_saved_text_model(path: Path) -> Any:
    """A package's model.safetensors + config.json + preprocessing.json back into the wrapped module (for the runtime)."""
    folder = Path(path).parent
    preprocessing = read_preprocessing(folder)
    transformers = _transformers()
    auto = {"feature-extraction": transformers.AutoModel, "sequence-classification": transformers.AutoModelForSequenceClassification,
            "token-classification": transformers.AutoModelForTokenClassification}[preprocessing.task]
    model = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False).eval()
    return _wrapper_class()(model, preprocessing).eval(), preprocessing
