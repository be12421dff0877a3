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
        check_module_paths(folder, modules)
    weights = weight_files(folder)
    for path in weights:
        if path.suffix == ".safetensors":
            from packager.safety.safetensors import check_safetensors

            check_safetensors(path)
        else:
            from packager.safety.torch import check_torch_file

            check_torch_file(path)
    check_hf_sizes(with_defaults(config), weights, folder.name)


def check_module_paths(folder: Path, modules: Any) -> None:
    """Each sentence-transformers module's ``path`` is a sub-folder of the model folder: an absolute path (red team:
    the Pooling module's config.json read from a host folder, its keys echoed in the error) or ``..`` reads outside."""
    for module in modules if isinstance(modules, list) else []:
        where = module.get("path", "") if isinstance(module, dict) else ""
        inside = isinstance(where, str) and not Path(where).is_absolute() and ".." not in Path(where).parts
        if not inside:
            raise UnsafeModelError(
                f"{folder.name}/modules.json gives a module the path {str(where)[:120]!r}, outside the model folder",
                "re-save the model with sentence-transformers (module paths are sub-folders of the model)",
            )


def with_defaults(config: dict) -> dict:
    """config.json completed with its model type's defaults, as transformers completes it before it allocates: a config
    that states only ``intermediate_size: 20000000`` is built 768 wide and 12 layers deep (red team: 61 GB asked by a
    3 KB folder whose config named no width, so the estimate counted nothing). Unknown types are taken as written
    (transformers cannot build them without remote code, which is refused above)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return config
    try:
        from transformers import CONFIG_MAPPING

        full = CONFIG_MAPPING[model_type].from_dict(dict(config)).to_dict()
    except Exception:  # noqa: BLE001 - not installed, unknown type or a value its config class rejects: as written
        return config
    return full if isinstance(full, dict) else config


# Config sizes against the weights (issue 21 finding 7): transformers builds (and initializes) every tensor the config
# asks for before it reads one weight, so a 58 KB folder whose config.json says vocab_size=120000000 and whose weights
# omit the embedding made it allocate 15 GB. As for Keras (packager/safety/keras.py): the parameters the config implies
# (embedding rows x width, positions x width, per layer 4 x width^2 attention + 2 x width x intermediate), against the
# weight files' bytes (at least half a byte per stored element: int4). PARAMETERS_PER_ESTIMATE absorbs shared layers
# (ALBERT: 12 layers stored once) and factorized embeddings; only a gross mismatch is refused. Measured on
# all-MiniLM-L6-v2: 22.5 M parameters implied, 90.9 MB of weights (limit 1.45 G); the finding's folder: 3.84 G implied by
# 49 KB of weights (limit 1.8 M), refused in 1.2 s instead of a 15 GB allocation.
WIDTH_KEYS = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim")
ROW_KEYS = ("vocab_size", "max_position_embeddings", "n_positions", "type_vocab_size", "num_labels")
LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "encoder_layers", "decoder_layers", "num_decoder_layers")
INNER_KEYS = ("intermediate_size", "d_ff", "n_inner", "ffn_dim", "hidden_dim", "encoder_ffn_dim")
PARAMETERS_PER_ESTIMATE = 8
SLACK = 1 << 20


def check_hf_sizes(config: Any, weights: list[Path], label: str) -> None:
    """InputFileError naming the config key when config.json asks for far more parameters than its weights hold."""
    stored = sum(path.stat().st_size for path in weights)
    most = PARAMETERS_PER_ESTIMATE * 2 * stored + SLACK
    terms = sorted(_terms(config, "config.json"), key=lambda term: term[1], reverse=True)
    implied = sum(size for _, size in terms)
    if implied > most:
        what, _ = terms[0]
        raise InputFileError(
            f"{label}: {what} asks for about {implied:,} parameters in all, but its {stored:,} bytes of weights "
            f"({', '.join(p.name for p in weights)}) hold at most {2 * stored:,}",
            "the config does not belong to these weights (corrupt or crafted); re-save the model with save_pretrained",
        )


def _terms(config: Any, where: str) -> list[tuple[str, int]]:
    """(what, parameters) per size the config implies, in this config and its nested ones (text_config, encoder...)."""
    if not isinstance(config, dict):
        return []
    found: list[tuple[str, int]] = []
    width_key = next((k for k in WIDTH_KEYS if _size(config.get(k))), None)
    width = _size(config.get(width_key)) if width_key else 0
    if width:
        labels = config.get("id2label")
        rows = {key: _size(config.get(key)) for key in ROW_KEYS}
        rows["num_labels"] = rows["num_labels"] or (len(labels) if isinstance(labels, dict) else 0)
        found += [(f"{where} {key} {n:,} x {width_key} {width:,}", n * width) for key, n in rows.items() if n]
        inner_key = next((k for k in INNER_KEYS if _size(config.get(k))), None)
        inner = _size(config.get(inner_key)) if inner_key else 0
        per_layer = 4 * width * width + 2 * width * inner
        found += [
            (
                f"{where} {key} {_size(config.get(key)):,} x (4 x {width_key}^2{f' + 2 x {inner_key} {inner:,}' if inner else ''})",
                _size(config.get(key)) * per_layer,
            )
            for key in LAYER_KEYS
            if _size(config.get(key))
        ]
    for key, value in config.items():
        if isinstance(value, dict) and key not in ("id2label", "label2id"):
            found += _terms(value, f"{where} {key}")
    return found


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
