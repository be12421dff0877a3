"""What a Hugging Face package carries and how it is read back (part of the huggingface plugin): the tokenizer files
and ``preprocessing.json`` written next to the model, and the TorchScript/safetensors model reloaded and run with them.
Moved out of ``converters/huggingface.py`` unchanged (issue 22 item 5).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from packager.deps import require, version_of
from packager.errors import InputFileError
from packager.safety.folders import copy_plain

from .huggingface_loading import (
    IMAGE_PROCESSOR,
    PREPROCESSING,
    TOKENIZER,
    TOKENIZER_CONFIG,
    Preprocessing,
    TextModel,
    _auto_class,
    _transformers,
    _wrapper_class,
)


def run_module(module: Any, preprocessing: Preprocessing, feeds: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np

    torch = require("torch", "torch", "Hugging Face models")
    dtype = np.float32 if preprocessing.is_image else np.int64
    tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=dtype)) for n in preprocessing.input_names]
    with torch.no_grad():
        produced = module(*tensors)
    produced = produced if isinstance(produced, tuple) else (produced,)
    return {name: value.detach().cpu().numpy() for name, value in zip(preprocessing.outputs, produced, strict=True)}


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
