"""Keras files (.keras zip, legacy .h5): the model config is read as data and refused when it holds
a Lambda layer (arbitrary Python, at any nesting depth: sub-models, wrappers) or names a module
outside Keras/TensorFlow, before Keras deserializes anything. Keras then loads with safe_mode=True."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

from packager.errors import InputFileError, UnsafeModelError
from packager.safety.pickles import TRUST_HINT
from packager.safety.zips import check_zip

CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
ALLOWED_MODULE_PREFIXES = ("keras", "tensorflow", "tf_keras", "builtins")


def check_keras_archive(path: str | Path) -> None:
    path = Path(path)
    check_zip(path)
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise InputFileError(f"{path.name} has no config.json", "this is not a Keras v3 archive; re-save it with model.save('m.keras')")
        config = _json(archive.read("config.json"), path)
    check_keras_config(config, path.name)


def check_keras_h5(path: str | Path) -> None:
    path = Path(path)
    try:
        import h5py
    except ImportError:
        from packager.errors import MissingDependency

        raise MissingDependency("checking .h5 Keras files needs h5py", "pip install 'packager[tensorflow]'") from None
    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
            outside = _reaches_outside(handle)
    except OSError as exc:
        raise InputFileError(f"{path.name} is not a readable HDF5 file ({exc})", "the file is truncated or corrupt") from None
    if outside:
        raise UnsafeModelError(f"{path.name}: {outside}, which reads another file when the weights load",
                               "re-save the model with model.save('m.keras')")
    if raw is None:
        # Weights only (model.save_weights) or not Keras at all: no architecture, so nothing we could check or load as a
        # model; Keras itself answers "No model found in config file" only after opening it.
        raise InputFileError(f"{path.name} is an HDF5 file without a Keras model config (weights only, or not a Keras model)",
                             "save the whole model (model.save('m.keras')), or load these weights into the model in code")
    check_keras_config(_json(raw if isinstance(raw, (bytes, str)) else bytes(raw), path), path.name)


def _reaches_outside(handle: Any) -> str | None:
    """An external link, a dataset stored in external raw files, or a virtual dataset: each reads another file's bytes."""
    import h5py

    found: list[str] = []

    def link(name: str, info: Any) -> None:
        if isinstance(info, h5py.ExternalLink) and not found:
            found.append(f"{name!r} is an external link to {info.filename!r}")

    def dataset(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and not found and (obj.external or obj.is_virtual):
            found.append(f"dataset {name!r} is stored in {'external files' if obj.external else 'other files (virtual)'}")

    handle.visititems_links(link)
    if not found:
        handle.visititems(dataset)
    return found[0] if found else None


def _json(raw: bytes | str, path: Path) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InputFileError(f"{path.name} has a model config that is not JSON ({exc})", "re-save the model") from None


def check_keras_config(config: Any, label: str) -> None:
    for where, node in _objects(config, "model"):
        name = node.get("class_name")
        if name in CODE_LAYERS:
            raise UnsafeModelError(f"{label}: {where} is a {name} layer, which runs arbitrary Python code", TRUST_HINT)
        if name == "__lambda__" or node.get("module") == "builtins" and name == "function":
            raise UnsafeModelError(f"{label}: {where} holds serialized Python code", TRUST_HINT)
        module = node.get("module")
        if isinstance(module, str) and module and not module.startswith(ALLOWED_MODULE_PREFIXES):
            raise UnsafeModelError(f"{label}: {where} names module {module!r}, outside Keras", TRUST_HINT)


def _objects(node: Any, where: str) -> Iterator[tuple[str, dict]]:
    """Every dict in the config, with a readable path (layers are named when they have names)."""
    if isinstance(node, dict):
        name = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
        here = f"{where}/{name}" if name else where
        yield here, node
        for key, value in node.items():
            yield from _objects(value, here if key == "config" else f"{here}.{key}" if not isinstance(value, list) else here)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item, where)
