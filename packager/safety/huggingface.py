"""Hugging Face model folders (``save_pretrained``): what transformers would read, checked as data before it reads it.

A folder runs code only through ``trust_remote_code``: an ``auto_map`` in ``config.json`` or ``tokenizer_config.json``
names Python files of the folder that transformers imports. Such a folder is refused unless the user passes ``--trust``.
A sentence-transformers ``modules.json`` may name any importable class: only the library's own Transformer, Pooling and
Normalize modules are accepted (packager implements their pooling itself and never imports the named class).
The weights transformers would load are checked by their own format's check: safetensors headers (bounds, offsets),
``pytorch_model.bin`` pickles (the torch allow-list; they are then read with ``weights_only=True``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packager.errors import InputFileError, UnsafeModelError
from packager.safety.pickles import TRUST_HINT

MAX_JSON = 16 << 20  # config/tokenizer_config/modules.json are a few KB; a bigger one is not a config
ST_MODULES = frozenset(
    {"sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling", "sentence_transformers.models.Normalize"}
)
CODE_KEYS = ("auto_map",)


def read_json(path: Path, *, what: str) -> Any:
    """A small JSON file read as data (its size bounded), or InputFileError."""
    if path.stat().st_size > MAX_JSON:
        raise InputFileError(f"{path.name} is {path.stat().st_size} bytes: too large for a {what}", "check the model folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(
            f"{path.parent.name}/{path.name} is not valid JSON ({exc})", "re-save the model with save_pretrained"
        ) from None


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers loads from ``folder``: safetensors first (it prefers them), shards by their index."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"), ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            mapping = read_json(folder / index, what="shard index").get("weight_map", {})
            shards = sorted(set(mapping.values())) if isinstance(mapping, dict) else []
            bad = [s for s in shards if not isinstance(s, str) or Path(s).name != s or not (folder / s).is_file()]
            if bad or not shards:
                raise InputFileError(
                    f"{index} names shards {bad or shards} that are not files of the folder", "re-save the model with save_pretrained"
                )
            return [folder / s for s in shards]
    raise InputFileError(
        f"{folder.name} has a config.json but no weights (model.safetensors or pytorch_model.bin)", "re-save the model with save_pretrained"
    )


def check_hf_folder(folder: str | Path) -> None:
    """Refuse remote code and malformed weights; raise UnsafeModelError or InputFileError."""
    folder = Path(folder)
    config = read_json(folder / "config.json", what="model config")
    if not isinstance(config, dict):
        raise InputFileError(f"{folder.name}/config.json is not a JSON object", "re-save the model with save_pretrained")
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        data = (
            config
            if name == "config.json"
            else (read_json(folder / name, what=name[:-5].replace("_", " ")) if (folder / name).is_file() else {})
        )
        found = [key for key in CODE_KEYS if isinstance(data, dict) and key in data]
        if found:
            refs = data[found[0]]
            raise UnsafeModelError(
                f"{folder.name}/{name} declares {found[0]} {json.dumps(refs)[:120]}: "
                "the model runs Python code from the folder "
                "(trust_remote_code)",
                TRUST_HINT,
            )
    if (folder / "modules.json").is_file():
        modules = read_json(folder / "modules.json", what="sentence-transformers module list")
        kinds = [m.get("type") for m in modules if isinstance(m, dict)] if isinstance(modules, list) else [modules]
        foreign = [k for k in kinds if k not in ST_MODULES]
        if foreign:
            raise UnsafeModelError(
                f"{folder.name}/modules.json names module classes {foreign[:3]} outside sentence-transformers' "
                "Transformer/Pooling/Normalize",
                TRUST_HINT,
            )
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            from packager.safety.safetensors import check_safetensors

            check_safetensors(path)
        else:
            from packager.safety.torch import check_torch_file

            check_torch_file(path)
