"""Hugging Face folders loaded (part of the huggingface plugin): the task from the config, the model class for it, the
tokenizer or image processor configured as packager uses them (``Preprocessing``), the wrapper module whose inputs are
token tensors or pixels and whose outputs are what a user reads, and the built-in texts and drawn images validation
runs on. Moved out of ``converters/huggingface.py`` unchanged (issue 22 item 5).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from packager.deps import require
from packager.errors import UnsupportedConversion, UsageError, first_line

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
    transformers = require("transformers", "huggingface", "Hugging Face models")
    # its "Loading weights: 100%|####|" bar on stderr: the sandbox child sets TQDM_DISABLE, but with --trust the load
    # runs in the user's process and a passing convert printed it (the CLI contract: a pass prints nothing on stderr)
    transformers.utils.logging.disable_progress_bar()
    return transformers


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
