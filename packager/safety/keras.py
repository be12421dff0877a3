"""Keras files (.keras zip, legacy .h5): the model config is read as data and refused when it holds
a Lambda layer (arbitrary Python, at any nesting depth: sub-models, wrappers) or names a module
outside the modelling modules Keras's safe mode resolves, before Keras deserializes anything; the weights
file (the .h5 itself, or the .keras archive's model.weights.h5) may not read other files. Keras then loads
with safe_mode=True."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from packager.errors import InputFileError, UnsafeModelError
from packager.safety.pickles import TRUST_HINT
from packager.safety.zips import ZIP_READ_ERRORS, check_zip

# TorchModuleWrapper: its config holds a pickled torch module (torch.load of code)
CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "TorchModuleWrapper"})
# The modules a model's config names (its layers, ops, initializers, regularizers, constraints, optimizers and their
# schedules, losses, metrics, activations, dtype policies), matched whole or on a dot boundary: what keras 3.15's
# serialization_lib resolves for a model (``keras.<api>`` through its export table, ``keras.src.<package>`` by import)
# and what tf_keras writes. A prefix test let ``kerasx.evil`` through, and ``keras``/``tensorflow``/``builtins`` as a
# whole admitted the five CVE shapes (``keras.utils.get_file``: CVE-2025-8747; ``keras.config.
# enable_unsafe_deserialization``: CVE-2025-9906; ``tensorflow.io.write_file``; ``builtins.exec``), which only Keras
# itself stopped (issue 21).
MODEL_PACKAGES = (
    "layers", "models", "ops", "initializers", "regularizers", "constraints", "optimizers", "losses", "metrics",
    "activations", "dtype_policies", "engine",
)  # fmt: skip
ROOTS = ("keras", "tf_keras")
MODULE_PACKAGES = frozenset(f"{root}.{package}" for root in (*ROOTS, "keras.src", "tf_keras.src") for package in MODEL_PACKAGES)
ROOT_CLASSES = frozenset(
    {"Sequential", "Model", "Functional", "DTypePolicy", "FloatDTypePolicy", "QuantizedDTypePolicy", "InputSpec", "Variable"}
)  # what keras writes with module "keras" (measured: DTypePolicy, Sequential); keras.<anything else> is refused


def check_keras_archive(path: str | Path) -> None:
    path = Path(path)
    check_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise InputFileError(
                    f"{path.name} has no config.json", "this is not a Keras v3 archive; re-save it with model.save('m.keras')"
                )
            raw = archive.read("config.json")
            weights = archive.getinfo("model.weights.h5").file_size if "model.weights.h5" in archive.namelist() else 0
    except ZIP_READ_ERRORS as exc:
        raise InputFileError(f"{path.name} is a damaged zip archive ({exc})", "re-export or re-download it") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {path.name}: {exc.strerror or exc}", "check the path and its permissions") from None
    config = _json(raw, path)
    check_keras_config(config, path.name)
    check_keras_sizes(config, weights, path.name)
    if weights:
        check_archive_weights(path)


def check_archive_weights(path: Path) -> None:
    """The archive's model.weights.h5 checked like a legacy .h5 (issue 21): an external link, external storage or a
    virtual dataset reads another file's bytes when Keras loads the weights. Extracted to a private temp file (its size
    already bounded by check_zip's expansion budget) because h5py reads a file by seeking, and a deflated member
    re-inflates from the start on every backward seek."""
    with tempfile.TemporaryDirectory(prefix="packager-keras-") as work:
        inner = Path(work) / "model.weights.h5"
        try:
            with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as source, inner.open("xb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        except ZIP_READ_ERRORS as exc:
            raise InputFileError(f"{path.name} is a damaged zip archive ({exc})", "re-export or re-download it") from None
        outside = _h5_outside(inner, f"{path.name}/model.weights.h5")
    if outside:
        raise UnsafeModelError(
            f"{path.name}: model.weights.h5 {outside}, which reads another file when the weights load",
            "re-save the model with model.save('m.keras')",
        )


def _h5_outside(path: Path, label: str) -> str | None:
    try:
        import h5py
    except ImportError:
        from packager.errors import MissingDependency

        raise MissingDependency("checking Keras weights needs h5py", "pip install 'packager[tensorflow]'") from None
    try:
        with h5py.File(path, "r") as handle:
            return _reaches_outside(handle)
    except (OSError, KeyError, RuntimeError, ValueError, SystemError) as exc:  # as in check_keras_h5
        raise InputFileError(f"{label} is not a readable HDF5 file ({exc})", "the file is truncated or corrupt") from None


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
    # h5py walking a damaged file (fuzzer): KeyError, RuntimeError, and a link name that is not UTF-8 surfaces as SystemError
    # (a UnicodeDecodeError inside h5py's lock's __exit__)
    except (OSError, KeyError, RuntimeError, ValueError, SystemError) as exc:
        raise InputFileError(f"{path.name} is not a readable HDF5 file ({exc})", "the file is truncated or corrupt") from None
    if outside:
        raise UnsafeModelError(
            f"{path.name}: {outside}, which reads another file when the weights load", "re-save the model with model.save('m.keras')"
        )
    if raw is None:
        # Weights only (model.save_weights) or not Keras at all: no architecture, so nothing we could check or load as a
        # model; Keras itself answers "No model found in config file" only after opening it.
        raise InputFileError(
            f"{path.name} is an HDF5 file without a Keras model config (weights only, or not a Keras model)",
            "save the whole model (model.save('m.keras')), or load these weights into the model in code",
        )
    config = _json(raw if isinstance(raw, (bytes, str)) else bytes(raw), path)
    check_keras_config(config, path.name)
    check_keras_sizes(config, path.stat().st_size, path.name)  # a legacy .h5 holds its weights in the same file


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
        for key in ("class_name", "module"):
            if node.get(key) is not None and not isinstance(node.get(key), str):
                raise InputFileError(
                    f"{label}: {where} has a {key} that is not a string ({type(node.get(key)).__name__})",
                    "the model config is corrupt; re-save the model",
                )
        if name in CODE_LAYERS:
            raise UnsafeModelError(f"{label}: {where} is a {name} layer, which runs arbitrary Python code", TRUST_HINT)
        if name == "__lambda__" or node.get("module") == "builtins" and name == "function":
            raise UnsafeModelError(f"{label}: {where} holds serialized Python code", TRUST_HINT)
        inner = node.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("vocabulary"), str):
            # StringLookup/IntegerLookup/TextVectorization read a vocabulary *path* when the layer is built: a host file
            # read by reference (red team; only Keras 3.15's own safe mode refused it). Saved models carry it inline.
            raise UnsafeModelError(
                f"{label}: {where} reads its vocabulary from the file {inner['vocabulary'][:120]!r}, outside the model",
                "re-save the model with the vocabulary adapted into the layer (layer.adapt or a list), then convert that",
            )
        module = node.get("module")
        if isinstance(module, str) and module and not allowed_module(module, name):
            raise UnsafeModelError(
                f"{label}: {where} names {module}.{_named(node)}, outside the modules a Keras model is made of", TRUST_HINT
            )


def _named(node: dict) -> str:
    """What a config object names: a function's name is its ``config`` (``{"class_name": "function", "config": "exec"}``)."""
    inner = node.get("config")
    return inner if node.get("class_name") == "function" and isinstance(inner, str) else str(node.get("class_name"))


def allowed_module(module: str, name: Any = None) -> bool:
    """``module`` is inside one of MODULE_PACKAGES on a dot boundary (``keras.layers.core``; never ``kerasx`` nor
    ``keras.utils``), or is the top-level ``keras`` naming one of its model classes."""
    if module in ROOTS:
        return name in ROOT_CLASSES
    parts = module.split(".")
    return any(".".join(parts[:n]) in MODULE_PACKAGES for n in range(2, len(parts) + 1))


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


# Layer sizes against the weights: Keras creates (and initializes) every variable a config asks for before it reads
# a single weight, so a config whose Dense/BatchNormalization asks for 2**32 units made Keras allocate 16 GB and spin
# for minutes (fuzzer, tests/fuzz/crashers/keras-inspect-hang-2109). A layer's variables hold about
# input_dim x units x kernel elements (Dense, Conv*, Embedding exactly; BatchNormalization 4x its dimension, LSTM 4x:
# hence the factor); every stored element takes at least half a byte (int4), so a file of B weight bytes holds at most
# 2B elements. SLACK covers parameter-free layers whose input dimension the estimate counts.
SIZE_KEYS = ("units", "filters", "output_dim", "num_heads", "key_dim", "value_dim", "depth_multiplier")
PARAMETERS_PER_ESTIMATE = 8
SLACK = 1 << 20
MAX_INPUT_ELEMENTS = 1 << 28  # per sample: inspect runs the model on a sample of this shape (1 GiB of float32)


def check_keras_sizes(config: Any, weight_bytes: int, label: str) -> None:
    """InputFileError when the config asks for far more parameters than the weights file can hold, or for
    inputs no sample could be built for: a corrupt or crafted config, refused before Keras allocates it."""
    estimate = 0
    for where, node in _objects(config, "model"):
        layer = node.get("config")
        if not isinstance(layer, dict):
            continue
        for key in ("batch_shape", "batch_input_shape"):
            per_sample = _product(layer.get(key))
            if per_sample > MAX_INPUT_ELEMENTS:
                raise InputFileError(
                    f"{label}: {where} takes inputs of {per_sample:,} values per sample (limit {MAX_INPUT_ELEMENTS:,})",
                    "the model config is corrupt or crafted; re-save the model",
                )
        estimate += _layer_parameters(node, layer)
    most = PARAMETERS_PER_ESTIMATE * 2 * weight_bytes + SLACK
    if estimate > most:
        raise InputFileError(
            f"{label}: its config asks for about {estimate:,} parameters, but its {weight_bytes:,} bytes of weights "
            f"hold at most {2 * weight_bytes:,}",
            "the model config is corrupt or crafted; re-save the model",
        )


def _layer_parameters(node: dict, layer: dict) -> int:
    """About how many elements the variables of this layer hold: input dimension x sizes x kernel (0 if it states none)."""
    build = node.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    found = [_positive(layer.get("input_dim")) or _last_dim(shape)]
    found += [_positive(layer.get(key)) for key in SIZE_KEYS]
    kernel = layer.get("kernel_size")
    found.append(_positive(kernel) if not isinstance(kernel, list) else _product(kernel))
    known = [n for n in found if n]
    product = 1
    for n in known:
        product *= n
    return product if known else 0


def _positive(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _last_dim(shape: Any) -> int:
    if isinstance(shape, list) and shape and isinstance(shape[0], list):  # several inputs: the largest
        return max((_last_dim(s) for s in shape), default=0)
    return _positive(shape[-1]) if isinstance(shape, list) and shape else 0


def _product(shape: Any) -> int:
    dims = [_positive(d) for d in shape if d is not None] if isinstance(shape, list) else []
    product = 1
    for d in dims:
        product *= d or 1
    return product if dims else 0
