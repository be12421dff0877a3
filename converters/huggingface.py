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
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Artifact, Format, Framework
from packager.deps import require, version_of
from packager.errors import ConversionError, InputFileError, UnsupportedConversion, UsageError, converting, first_line
from packager.plugins import converts, framework
from packager.safety.folders import copy_plain
from packager.signature import Signature, TensorSpec
from packager.validation import OutputKind

TASKS = ("feature-extraction", "sequence-classification", "token-classification", "image-classification")
IMAGE_PROCESSOR = "preprocessor_config.json"
VALIDATION_IMAGES = 16  # drawn images: enough rows for two batch sizes and a top-1 figure in 6% steps
PREPROCESSING = "preprocessing.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
# Built-in validation texts when no --sample is given: several lengths (3 to ~90 tokens), plain sentences of the kind models
# embed or classify. One-word texts are the hardest for int8 (mean pooling over 3 tokens keeps the error of each): measured on
# all-MiniLM-L6-v2, min cosine 0.997 with packager's int8 (int8_for_transformers), 0.948 with quantize_dynamic.
BUILTIN_TEXTS = (
    "Thanks",
    "Good movie.",
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
    extra: Mapping[str, Any] = field(default_factory=dict)  # images: size, mean, std, rescale factor of the image processor
    output_names: tuple[str, ...] = ()  # every output, ``output_name`` first (classifiers add their probabilities)

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.output_names or (self.output_name,)

    @property
    def is_image(self) -> bool:
        return self.task == "image-classification"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_names"], data["labels"], data["output_names"] = list(self.input_names), list(self.labels), list(self.outputs)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessing":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(
            **{
                **known,
                "input_names": tuple(known["input_names"]),
                "labels": tuple(known.get("labels", ())),
                "output_names": tuple(known.get("output_names", ())),
            }
        )


@dataclass
class TextModel:
    """A loaded folder: the wrapped torch module (token tensors in, one output tensor out), its tokenizer, how to use them."""

    module: Any
    tokenizer: Any  # tokenizers.Tokenizer with padding and truncation set (None for an image classifier)
    preprocessing: Preprocessing
    folder: Path
    tokenizer_config: Mapping[str, Any] = field(default_factory=dict)
    hf_model: Any = None
    image_processor: Any = None  # image classification: the folder's processor (validation images go through it)

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        return tokenize(self.tokenizer, self.preprocessing, texts)


def tokenize(tokenizer: Any, preprocessing: Preprocessing, texts: list[str]) -> dict[str, Any]:
    """int64 arrays (batch, longest) for the model's inputs."""
    import numpy as np

    encodings = tokenizer.encode_batch([str(t) for t in texts])
    arrays = {
        "input_ids": [e.ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
    }
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
            self.with_probabilities = len(preprocessing.outputs) > 1

        def forward(self, *inputs):
            named = dict(zip(self.names, inputs, strict=True))  # callers pass one tensor per name
            out = self.model(**named)
            if self.task != "feature-extraction":
                logits = out.logits
                return (logits, torch.softmax(logits, dim=-1)) if self.with_probabilities else logits
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
    """``--task`` when given, else the config's architecture (``*ForSequenceClassification`` ...); a bare encoder
    (``*Model``) or a sentence-transformers folder is feature extraction."""
    if task:
        if task not in TASKS:
            raise UsageError(f"--task {task!r} is not one of {', '.join(TASKS)}", "pick the head the folder was trained with")
        return task
    architecture = (config.get("architectures") or [""])[0]
    for suffix, found in (
        ("ForSequenceClassification", "sequence-classification"),
        ("ForTokenClassification", "token-classification"),
        ("ForImageClassification", "image-classification"),
    ):
        if architecture.endswith(suffix):
            return found
    if (folder / "modules.json").is_file() or architecture.endswith("Model") or not architecture:
        return "feature-extraction"
    raise UnsupportedConversion(
        f"{folder.name} holds a {architecture}: its task is not one packager exports",
        f"packager exports {', '.join(TASKS)}; pass --task if the folder fits one of them",
    )


def _auto_class(transformers: Any, task: str) -> Any:
    return {
        "feature-extraction": transformers.AutoModel,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
        "image-classification": transformers.AutoModelForImageClassification,
    }[task]


# Weights a task may lack without changing its answer: feature extraction reads last_hidden_state, never the pooler.
UNUSED_WHEN_MISSING = {"feature-extraction": ("pooler.",)}


def _load_model(transformers: Any, folder: Path, task: str, trust: bool) -> Any:
    """The model with the task's head; a head (or any weight) the folder does not hold is refused: transformers would
    initialise it at random and every answer would be noise (e.g. --task sequence-classification on a base encoder)."""
    from packager.safety.huggingface import weight_files

    safetensors = weight_files(folder)[0].name.startswith("model.safetensors")
    try:
        model, info = _auto_class(transformers, task).from_pretrained(
            str(folder), use_safetensors=safetensors, local_files_only=True, trust_remote_code=trust, output_loading_info=True
        )
    except ValueError as exc:  # transformers: "Unrecognized configuration class ... for this kind of AutoModel"
        raise UnsupportedConversion(
            f"{folder.name} cannot be loaded for {task} ({first_line(exc, 160)})", "pass the --task the folder was trained for"
        ) from exc
    ignored = UNUSED_WHEN_MISSING.get(task, ())
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(ignored))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        names = (missing or mismatched)[:4]
        raise UnsupportedConversion(
            f"{folder.name} has no trained weights for {task}: {names} would be initialised at random",
            "pass the --task the folder was trained for (feature-extraction for a bare encoder)",
        )
    return model.eval()


def pooling_of(folder: Path, task: str) -> tuple[str | None, bool]:
    """sentence-transformers: 1_Pooling/config.json says how, a Normalize module whether to normalise; else mean."""
    from packager.safety.huggingface import read_json

    if task != "feature-extraction":
        return None, False
    modules = read_json(folder / "modules.json", what="module list") if (folder / "modules.json").is_file() else []
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    pooling_dir = next(
        (folder / m["path"] for m in modules if m.get("type", "").endswith(".Pooling") and m.get("path")), folder / "1_Pooling"
    )
    if (pooling_dir / "config.json").is_file():
        config = read_json(pooling_dir / "config.json", what="pooling config")
        chosen = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
        if len(chosen) != 1:
            raise UnsupportedConversion(
                f"{pooling_dir.name}/config.json asks for pooling {chosen or 'none'}",
                f"packager implements one of {sorted(POOLING_MODES.values())} at a time",
            )
        return chosen[0], normalize
    return "mean", normalize


def max_length_of(folder: Path, config: Mapping[str, Any], tokenizer_config: Mapping[str, Any]) -> int:
    from packager.safety.huggingface import read_json

    limits = [config.get("max_position_embeddings"), tokenizer_config.get("model_max_length")]
    if (folder / "sentence_bert_config.json").is_file():
        limits.append(read_json(folder / "sentence_bert_config.json", what="sentence-transformers config").get("max_seq_length"))
    usable = [int(v) for v in limits if isinstance(v, (int, float)) and 0 < v < 1_000_000]
    return min(usable) if usable else 512


def _labels(config: Mapping[str, Any]) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    return tuple(str(id2label.get(str(i), id2label.get(i, i))) for i in range(len(id2label)))


def load_folder(folder: Path, *, trust: bool = False, task: str | None = None) -> TextModel:
    """The model (its head chosen by the task), its fast tokenizer (or image processor) and the preprocessing, all read
    offline."""
    import inspect

    from packager.safety.huggingface import read_json

    transformers = _transformers()
    config = read_json(folder / "config.json", what="model config")
    task = task_of(config, folder, task)
    if task == "image-classification":
        return _load_image_folder(transformers, folder, config, trust)
    tokenizer_config = read_json(folder / TOKENIZER_CONFIG, what="tokenizer config") if (folder / TOKENIZER_CONFIG).is_file() else {}
    if not (folder / TOKENIZER).is_file() and not (folder / "vocab.txt").is_file() and not tokenizer_config:
        raise UnsupportedConversion(
            f"{folder.name} has no tokenizer files: {task} takes text",
            "save the tokenizer beside the model (tokenizer.save_pretrained), or pass the --task of the folder",
        )
    model = _load_model(transformers, folder, task, trust)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust)
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedConversion(
            f"{folder.name} has no fast tokenizer (tokenizer.json)", "save the folder with a fast tokenizer (use_fast=True)"
        )
    accepted = set(inspect.signature(model.forward).parameters)
    names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names and n in accepted)
    if "input_ids" not in names or "attention_mask" not in names:
        raise UnsupportedConversion(
            f"{folder.name}: the tokenizer gives {tokenizer.model_input_names}",
            "packager exports text models taking input_ids and attention_mask",
        )
    pooling, normalize = pooling_of(folder, task)
    outputs = {"feature-extraction": ("sentence_embedding",), "token-classification": ("logits",)}.get(task, ("logits", "probabilities"))
    preprocessing = Preprocessing(
        task,
        names,
        outputs[0],
        max_length_of(folder, config, tokenizer_config),
        pooling=pooling,
        normalize=normalize,
        labels=_labels(config) if task != "feature-extraction" else (),
        architecture=type(model).__name__,
        output_names=outputs,
    )
    backend = require("tokenizers", "huggingface", "tokenizing text").Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend = configured_tokenizer(backend, preprocessing, tokenizer.pad_token_id or 0, tokenizer.pad_token or "[PAD]")
    module = _wrapper_class()(model, preprocessing).eval()
    return TextModel(module, backend, preprocessing, folder, tokenizer_config, model)


def _load_image_folder(transformers: Any, folder: Path, config: Mapping[str, Any], trust: bool) -> TextModel:
    """An image classifier: pixels (batch, channels, height, width) from its image processor in, logits and probabilities
    out. The processor's size, mean and std are recorded: they are how a user turns an image into these pixels."""
    from packager.safety.huggingface import read_json

    if not (folder / IMAGE_PROCESSOR).is_file():
        raise UnsupportedConversion(
            f"{folder.name} has no {IMAGE_PROCESSOR}: image-classification needs the image processor's size, mean and std",
            "save the image processor beside the model (processor.save_pretrained)",
        )
    spec = read_json(folder / IMAGE_PROCESSOR, what="image processor config")
    model = _load_model(transformers, folder, "image-classification", trust)
    processor = image_processor(folder, trust)
    height, width = _image_size(spec, config)
    extra = {
        "image_size": [height, width],
        "num_channels": int(config.get("num_channels", 3)),
        "image_mean": spec.get("image_mean"),
        "image_std": spec.get("image_std"),
        "rescale_factor": spec.get("rescale_factor"),
        "image_processor": type(processor).__name__,
    }
    preprocessing = Preprocessing(
        "image-classification",
        ("pixel_values",),
        "logits",
        0,
        padding="",
        truncation="",
        labels=_labels(config),
        architecture=type(model).__name__,
        extra=extra,
        output_names=("logits", "probabilities"),
    )
    module = _wrapper_class()(model, preprocessing).eval()
    return TextModel(module, None, preprocessing, folder, {}, model, processor)


def image_processor(folder: Path, trust: bool) -> Any:
    """The folder's image processor on its PIL backend: the torchvision one (transformers' default) is not installed."""
    transformers = _transformers()
    try:
        return transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust, backend="pil")
    except (TypeError, ValueError):
        return transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust, use_fast=False)


def _image_size(spec: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[int, int]:
    size = spec.get("crop_size") if spec.get("do_center_crop") else spec.get("size")
    if isinstance(size, Mapping) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if isinstance(size, int):
        return size, size
    side = int(config.get("image_size", 224) if not isinstance(config.get("image_size"), (list, tuple)) else config["image_size"][0])
    return side, side


def validation_images(processor: Any, count: int = VALIDATION_IMAGES) -> Any:
    """Pixels for validation when no --sample is given: seeded images of several sizes and kinds (noise, gradients, blocks
    of colour, stripes) put through the model's own image processor (resize, rescale, normalise), as a user's would be."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        h, w = int(rng.integers(24, 300)), int(rng.integers(24, 300))
        y, x = np.mgrid[0:h, 0:w]
        kind = i % 4
        if kind == 0:
            image = rng.integers(0, 256, (h, w, 3))
        elif kind == 1:
            image = np.stack([x * 255 / w, y * 255 / h, np.full((h, w), rng.integers(0, 256))], axis=-1)
        elif kind == 2:
            image = np.repeat(np.repeat(rng.integers(0, 256, (4, 4, 3)), -(-h // 4), 0), -(-w // 4), 1)[:h, :w]
        else:
            image = ((np.sin(x / rng.uniform(2, 12)) + 1) * 127.5)[..., None] * rng.uniform(0, 1, 3)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.asarray(processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float32)


def texts_of(sample: Any) -> list[str] | None:
    """Texts from a sample: a table with a text column (a .txt sample is one), a list or array of strings."""
    import numpy as np

    if sample is None:
        return None
    if hasattr(sample, "columns"):
        text_columns = [c for c in sample.columns if sample[c].dtype == object]
        column = "text" if "text" in sample.columns else (text_columns[0] if len(text_columns) == 1 else None)
        if column is None:
            raise UsageError(
                f"the sample has columns {list(sample.columns)[:10]} and no single text column",
                "name the column 'text', or give a .txt file with one text per line",
            )
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


def run_module(module: Any, preprocessing: Preprocessing, feeds: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np

    torch = require("torch", "torch", "Hugging Face models")
    dtype = np.float32 if preprocessing.is_image else np.int64
    tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=dtype)) for n in preprocessing.input_names]
    with torch.no_grad():
        produced = module(*tensors)
    produced = produced if isinstance(produced, tuple) else (produced,)
    return {name: value.detach().cpu().numpy() for name, value in zip(preprocessing.outputs, produced, strict=True)}


# ---------------------------------------------------------------- package files


def write_text_files(model: TextModel, out: Path) -> dict[str, Any]:
    """tokenizer.json (padding and truncation set), tokenizer_config.json, preprocessing.json beside the model file; an
    image classifier's preprocessor_config.json instead of the tokenizer."""
    if model.preprocessing.is_image:
        copy_plain(model.folder / IMAGE_PROCESSOR, out / IMAGE_PROCESSOR)
        files = {"image_processor": IMAGE_PROCESSOR}
    else:
        model.tokenizer.save(str(out / TOKENIZER))
        if (model.folder / TOKENIZER_CONFIG).is_file():
            copy_plain(model.folder / TOKENIZER_CONFIG, out / TOKENIZER_CONFIG)  # a link (git clone) is refused
        files = {"tokenizer": TOKENIZER}
    (out / PREPROCESSING).write_text(json.dumps(model.preprocessing.to_dict(), indent=2) + "\n")
    return {"preprocessing": model.preprocessing.to_dict(), **files, "transformers": version_of("transformers")}


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
    example, path, failures = _example(model, options), out / "model.onnx", []
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


INT8_BLOCK = 32  # weights and activations quantized per block of 32 along the inner dimension


def int8_for_transformers(path: Path) -> dict[str, Any]:
    """Dynamic int8 tuned for transformer encoders, in place: MatMul weights as 8-bit blocks of 32 (MatMulNBits) run with
    accuracy_level 4, i.e. int8 products on activations quantized per block at run time; the embedding tables (Gather)
    as int8 too, so the file is ~0.27x of fp32.

    Why not onnxruntime's quantize_dynamic on MatMul: it quantizes each activation tensor with one scale, and the FFN
    down-projection's input (GELU output) has outliers. Measured on all-MiniLM-L6-v2 against its fp32 export, min cosine
    on 1-5 / 10-20 / 60-90-word texts (30 each; benchmarks/results/transformer_int8_variants.md): quantize_dynamic
    per-channel 0.947 / 0.987 / 0.987 (MatMul only 0.962 / 0.989 / 0.987; reduce_range, per-tensor or the last layer in
    fp32 no better; the FFN in fp32 0.992 but as slow as fp32); this 0.997 / 0.999 / 0.999 at 3.4 ms against 9.3 ms fp32
    and 2.0 ms quantize_dynamic (batch 1, sequence 32, one thread, VNNI CPU)."""
    import onnx

    require("onnxruntime", "onnx", "ONNX quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from packager.deps import quiet_output
    from packager.errors import NotQuantizable, first_line

    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    if not ops & {"MatMul", "Gather"}:
        raise NotQuantizable("--quantize dynamic: the exported graph has no MatMul or Gather with weights", "drop --quantize")
    staged = path.with_name("model.nbits.onnx")
    try:
        with quiet_output():
            quantizer = MatMulNBitsQuantizer(model, block_size=INT8_BLOCK, is_symmetric=True, accuracy_level=4, bits=8)
            quantizer.process()
            quantizer.model.save_model_to_file(str(staged), use_external_data_format=False)
            # per-tensor: one scale per table measured the same cosines as per-channel and ran 2x faster (3.4 vs 7.4 ms)
            quantize_dynamic(str(staged), str(path), weight_type=QuantType.QInt8, per_channel=False, op_types_to_quantize=["Gather"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime int8 quantization failed: {first_line(exc, 200)}", "try --quantize fp16") from exc
    finally:
        staged.unlink(missing_ok=True)
    done = onnx.load(str(path), load_external_data=False)
    counts = {op: sum(n.op_type == op for n in done.graph.node) for op in ("MatMulNBits", "DynamicQuantizeLinear", "MatMul")}
    return {
        "mode": "dynamic",
        "operators": ["MatMul", "Gather"],
        "method": "MatMulNBits int8 weights, accuracy_level 4 (int8 compute, activations per block); Gather int8",
        "block_size": INT8_BLOCK,
        "per_channel": False,
        "reduce_range": False,
        "nodes": counts,
        "tool": f"onnxruntime {version_of('onnxruntime')}",
    }


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


def load_saved_text_model(path: Path) -> Any:
    """A package's model.safetensors + config.json + preprocessing.json back into the wrapped module (for the runtime)."""
    folder = Path(path).parent
    preprocessing = read_preprocessing(folder)
    if preprocessing is None:
        raise InputFileError(
            f"{folder.name} has no preprocessing.json beside {Path(path).name}: it is not a package packager wrote",
            "run the package folder `packager convert` wrote, or re-create it from the model folder",
        )
    transformers = _transformers()
    auto_class = _auto_class(transformers, preprocessing.task)
    model = auto_class.from_pretrained(str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False).eval()
    return _wrapper_class()(model, preprocessing).eval(), preprocessing


# ---------------------------------------------------------------- Core ML


def _register_coreml_new_ones() -> None:
    """coremltools 9.0's torch frontend has no ``aten::new_ones``, which transformers 5 emits while building the attention
    mask (measured: all-MiniLM-L6-v2 fails with "PyTorch convert function for op 'new_ones' not implemented", eager and sdpa
    attention alike). It is ``ones`` of a given size and dtype; registered once, only when coremltools lacks it."""
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import NUM_TO_NUMPY_DTYPE, _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    if "new_ones" in _TORCH_OPS_REGISTRY:
        return

    def new_ones(context, node):
        inputs = _get_inputs(context, node)
        size = inputs[1]
        if size.val is not None:  # the usual case: a constant size, often () for a scalar
            shape = tuple(int(v) for v in np.atleast_1d(size.val)) if np.size(size.val) else ()
            ones = mb.const(val=np.ones(shape, dtype=np.float32))
        else:
            ones = mb.fill(shape=mb.cast(x=size, dtype="int32"), value=1.0)
        dtype = inputs[2].val if len(inputs) > 2 and inputs[2] is not None else None
        target = {bool: "bool", np.bool_: "bool", np.int32: "int32", np.float16: "fp16"}.get(NUM_TO_NUMPY_DTYPE.get(dtype))
        context.add(mb.cast(x=ones, dtype=target, name=node.name) if target else mb.identity(x=ones, name=node.name))

    register_torch_op(new_ones)


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

    from .torch import _trace

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
        traced = _trace(model.module, _example(model, options))
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
