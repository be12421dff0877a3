"""MLflow model folders (a folder with an ``MLmodel`` file) as sources; ``models:/`` and ``runs:/`` URIs resolved to
such folders; and the ``MLmodel`` every package carries so ``mlflow.pyfunc.load_model(package)`` predicts with the
package's runtime.

An MLflow folder is a container: its ``MLmodel`` (YAML) names flavors, and each flavor names a file or folder inside.
Packager reads the MLmodel as data (``yaml.safe_load``), picks the first native flavor it has a plugin for, and hands
that file to the plugin that owns its format, after that format's own safety check. What MLflow itself would run is
never run: ``python_function`` models with custom code (``loader_module`` outside mlflow, a cloudpickled
``python_model``) are refused with the reason; a cloudpickled scikit-learn model goes through the same pickle
allow-list as any pickle; a skops file's ``skops_trusted_types`` from the MLmodel is a request, not a grant (the skops
check uses packager's own allow-list, whatever the MLmodel claims); a pickled whole ``nn.Module`` is refused untrusted,
with the hint to log it with ``export_model=True`` (a torch.export program, which loads without pickle).
"""

from __future__ import annotations

import atexit
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from packager.contract import Delegated, Format, Framework, Runtime, SourceScheme
from packager.errors import InputFileError, UnsafeModelError, UsageError, first_line
from packager.plugins import framework, runs
from packager.validation import SAME_KERNELS, criteria_table

from .mlflow_signature import mlmodel_signature, tensor_dtype

MLMODEL = "MLmodel"
MLMODEL_LIMIT = 1 << 20  # an MLmodel is a few hundred bytes; a YAML bomb needs size
EXAMPLE_LIMIT = 16 << 20
URI_SCHEMES = ("models:/", "runs:/")
TRUST_HINT = "if you trust who logged it, give --trust"

# flavor -> (the MLmodel keys that name its file, the formats that file may be). The first flavor of this table that
# the MLmodel lists is the one loaded (a folder lists its native flavor and python_function).
FLAVORS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "onnx": (("data",), frozenset({"onnx"})),
    "sklearn": (("pickled_model",), frozenset({"pickle", "joblib", "skops"})),
    "xgboost": (("data",), frozenset({"xgboost-json", "xgboost-ubj", "xgboost", "skops", "pickle"})),
    "lightgbm": (("data",), frozenset({"lightgbm", "skops", "pickle"})),
    "catboost": (("data",), frozenset({"catboost", "cbm"})),
    "keras": (("data",), frozenset({"keras", "hdf5", "savedmodel"})),
    "tensorflow": (("saved_model_dir", "data"), frozenset({"savedmodel", "keras", "hdf5"})),  # MLflow 3: data/model.keras
    "transformers": (("model_binary",), frozenset({"huggingface"})),
    "spark": (("model_data",), frozenset({"spark"})),
    "pytorch": (("model_data",), frozenset({"pt2", "torchscript", "torch"})),
}
# keys whose values MLflow joins to the folder to open a file: none may leave the folder
PATH_KEYS = frozenset({"data", "pickled_model", "model_path", "model_data", "saved_model_dir", "model_binary", "code", "artifact_path"})
PATH_KEYS |= {"serving_input_path", "conda", "virtualenv", "components", "python_model", "artifacts"}


@dataclass(frozen=True)
class Folder:
    """An MLflow model folder as packager reads it: the flavor chosen and the path it names."""

    root: Path
    meta: Mapping[str, Any]
    flavor: str
    inner: Path


def is_mlflow_folder(path: Path, head: bytes) -> bool:
    """A folder whose ``MLmodel`` is a YAML mapping with ``flavors`` (by content, not by name)."""
    mlmodel = path / MLMODEL
    if not mlmodel.is_file() or mlmodel.is_symlink() or mlmodel.stat().st_size > MLMODEL_LIMIT:
        return False
    try:
        meta = _yaml(mlmodel)
    except InputFileError:
        return False
    return isinstance(meta.get("flavors"), dict)


def _yaml(mlmodel: Path) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]

    if mlmodel.stat().st_size > MLMODEL_LIMIT:
        raise InputFileError(
            f"{mlmodel.parent.name}/MLmodel is larger than {MLMODEL_LIMIT} bytes", "an MLmodel is a small YAML file; re-log the model"
        )
    try:
        meta = yaml.safe_load(mlmodel.read_bytes())  # data only: no python/object tags
    except yaml.YAMLError as exc:
        raise InputFileError(
            f"{mlmodel.parent.name}/MLmodel is not valid YAML ({first_line(exc, 120)})", "re-log the model with MLflow"
        ) from exc
    if not isinstance(meta, dict):
        raise InputFileError(f"{mlmodel.parent.name}/MLmodel is not a YAML mapping", "re-log the model with MLflow")
    return meta


def read_folder(root: Path) -> Folder:
    """The MLmodel checked (every path inside the folder) and its flavor chosen; nothing from the folder loaded."""
    root = Path(root)
    meta = _yaml(root / MLMODEL)
    flavors = meta.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise InputFileError(
            f"{root.name}/MLmodel lists no flavors", "re-log the model with an MLflow flavor (mlflow.sklearn.log_model, ...)"
        )
    _check_paths(root, meta)
    flavor = next((name for name in FLAVORS if isinstance(flavors.get(name), dict)), None)
    if flavor is None:
        pyfunc = flavors.get("python_function")
        if isinstance(pyfunc, dict):
            code = pyfunc.get("python_model") or pyfunc.get("loader_module") or "custom code"
            raise UnsafeModelError(
                f"{root.name} is an MLflow python_function model with custom code ({code}): loading it runs that code",
                "packager loads MLflow's native flavors only; log the model with its framework's flavor (mlflow.sklearn.log_model, ...)",
            )
        raise InputFileError(
            f"{root.name}/MLmodel lists flavors packager does not read ({', '.join(sorted(map(str, flavors)))})",
            f"packager reads these MLflow flavors: {', '.join(FLAVORS)}",
        )
    keys, _ = FLAVORS[flavor]
    config = flavors[flavor]
    named = next((config[k] for k in keys if isinstance(config.get(k), str)), None)
    if named is None:
        raise InputFileError(
            f"{root.name}/MLmodel's {flavor} flavor names no model file ({'/'.join(keys)})", "re-log the model with MLflow"
        )
    inner = _inside(root, named, f"flavors.{flavor}")
    if flavor in ("xgboost", "lightgbm", "catboost") and inner.is_dir():  # older MLflow: the key names a folder with one file
        members = [p for p in inner.iterdir() if p.is_file()]
        inner = members[0] if len(members) == 1 else inner
    if not inner.exists():
        raise InputFileError(
            f"{root.name}/MLmodel names {named} for its {flavor} flavor, which is not in the folder",
            "the folder is incomplete: download it again",
        )
    if flavor == "pytorch" and inner.is_dir():
        inner = _torch_file(root, inner)
    if flavor in ("keras", "tensorflow") and inner.is_dir():  # MLflow 3, both flavors: data/ holds model.keras (or .h5),
        # or, keras with save_exported_model=True, model/ (a SavedModel with a "serve" endpoint)
        inner = next((inner / n for n in ("model.keras", "model.h5", "model") if (inner / n).exists()), inner)
    return Folder(root, meta, flavor, inner)


def _torch_file(root: Path, data: Path) -> Path:
    """mlflow.pytorch's data folder: ``model.pt2`` (torch.export, ``export_model=True``) or ``model.pth`` (a pickle)."""
    for name in ("model.pt2", "model.pth", "model.pt"):
        if (data / name).is_file():
            return data / name
    raise InputFileError(
        f"{root.name}: the pytorch flavor's folder {data.name} holds no model.pt2 or model.pth", "re-log the model with mlflow.pytorch"
    )


def _check_paths(root: Path, meta: Mapping[str, Any]) -> None:
    """Every value the MLmodel gives as a path (at any depth, under a path key) must stay in the folder."""

    def walk(node: Any, where: str, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{where}.{k}", str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]", key)
        elif isinstance(node, str) and key in PATH_KEYS:
            _inside(root, node, where.lstrip("."))

    walk(meta.get("flavors"), "flavors", "")
    walk(meta.get("saved_input_example_info"), "saved_input_example_info", "")


def _inside(root: Path, named: str, where: str) -> Path:
    """``root / named`` when it stays inside ``root`` (no absolute path, no ``..``, no link on the way)."""
    target = (root / named).resolve()
    base = root.resolve()
    if Path(named).is_absolute() or ".." in Path(named).parts or (target != base and base not in target.parents):
        raise UnsafeModelError(
            f"{root.name}/MLmodel's {where} points outside the folder ({named})",
            "refusing the folder before loading anything; an MLflow folder's paths are relative to it",
        )
    return target


def check_mlflow_folder(root: Path) -> None:
    """The MLmodel's paths, its flavor, then the flavor's file under its own format's check (as any file of that format)."""
    from packager.safety import check_file

    folder = read_folder(root)
    if folder.flavor == "transformers":
        _check_transformers(folder)
        return
    fmt = _inner_format(folder)
    try:
        check_file(folder.inner, fmt)
    except UnsafeModelError as exc:
        if folder.flavor == "pytorch" and fmt == "torch":
            raise UnsafeModelError(
                f"{root.name} holds a pickled whole nn.Module ({folder.inner.name}): loading it runs the pickle's code",
                f"log it with mlflow.pytorch.log_model(..., export_model=True) (a torch.export program loads without pickle); {TRUST_HINT}",
            ) from exc
        raise UnsafeModelError(f"{root.name}/{folder.inner.relative_to(folder.root.resolve())}: {exc.what}", exc.hint) from exc


def _inner_format(folder: Folder) -> str:
    from packager.formats import detect_format

    fmt = detect_format(folder.inner)
    allowed = FLAVORS[folder.flavor][1]
    if fmt not in allowed:
        raise UnsafeModelError(
            f"{folder.root.name}/MLmodel calls {folder.inner.name} a {folder.flavor} model, but its content is {fmt}",
            "refusing it: what the flavor says must be what loads; re-log the model with MLflow",
        )
    return fmt


def _check_transformers(folder: Folder) -> None:
    from packager.safety import check_file
    from packager.safety.folders import check_folder_members

    for part in _transformers_parts(folder):
        check_folder_members(part)
    check_file(_merged_transformers(folder), "huggingface")


def _transformers_parts(folder: Folder) -> list[Path]:
    config = folder.meta["flavors"]["transformers"]
    components = config.get("components") or []
    parts = [folder.inner]
    for name in components if isinstance(components, list) else []:
        part = _inside(folder.root, f"components/{name}", "flavors.transformers.components")
        if part.is_dir():
            parts.append(part)
    return parts


_MERGED: dict[Path, Path] = {}


def _merged_transformers(folder: Folder) -> Path:
    """mlflow.transformers saves the weights in ``model/`` and the tokenizer in ``components/tokenizer/``; the
    Hugging Face plugin reads one folder, so the parts are copied side by side (files only; links were refused)."""
    key = folder.root.resolve()
    if key in _MERGED:
        return _MERGED[key]
    merged = Path(tempfile.mkdtemp(prefix="packager-mlflow-hf-")) / folder.root.name
    merged.mkdir()
    atexit.register(shutil.rmtree, merged.parent, True)
    for part in _transformers_parts(folder):
        for member in part.rglob("*"):
            target = merged / member.relative_to(part)
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(member, target)
    _MERGED[key] = merged
    return merged


def read_example(folder: Folder) -> Any:
    """The MLmodel's ``input_example`` as rows: a DataFrame (``pandas_orient: split``) or an array in the dtype of the
    signature's tensor spec (JSON has only float64). None when there is none or it cannot be read as rows."""
    info = folder.meta.get("saved_input_example_info")
    if not isinstance(info, dict) or not isinstance(info.get("artifact_path"), str):
        return None
    path = _inside(folder.root, info["artifact_path"], "saved_input_example_info.artifact_path")
    if not path.is_file() or path.stat().st_size > EXAMPLE_LIMIT:
        return None
    import numpy as np

    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    if info.get("type") == "dataframe" and isinstance(data, dict) and "columns" in data and "data" in data:
        import pandas as pd

        return pd.DataFrame(data["data"], columns=data["columns"])
    if info.get("type") == "ndarray":
        rows = data.get("inputs", data) if isinstance(data, dict) else data
        try:
            return np.asarray(rows, dtype=tensor_dtype(folder.meta) or None)
        except (TypeError, ValueError):
            return None
    return None


def lineage(folder: Folder) -> dict[str, Any]:
    """What the MLmodel says about where the model came from, for the manifest's source details."""
    keep = ("run_id", "artifact_path", "model_uuid", "model_id", "mlflow_version", "utc_time_created")
    found = {k: folder.meta[k] for k in keep if isinstance(folder.meta.get(k), (str, int, float))}
    # the URI, registry version and tracking store are not the folder's to say: they come with the request, from the
    # download (``resolve_uri``), so a folder cannot claim a registry version it was never (issue 25 review)
    return {"mlflow": {"flavor": folder.flavor, **found}}


@framework("mlflow")
class MlflowFolder(Framework):
    """An MLflow model folder: loads the file its native flavor names through the plugin of that file's format."""

    file_formats = frozenset({"mlflow"})

    @staticmethod
    def claims(obj: Any) -> bool:
        return False

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        from packager.plugins import default_registry
        from packager.safety import check_file

        registry = default_registry()
        folder = read_folder(path)
        if folder.flavor == "transformers":
            inner, inner_fmt = _merged_transformers(folder), "huggingface"
        else:
            inner, inner_fmt = folder.inner, _inner_format(folder)
        if not trust:
            check_file(inner, inner_fmt, registry)  # again, on what loads (a merged folder is a new copy)
        name = registry.framework_for_format(inner_fmt)
        plugin = registry.framework(name)
        model = plugin.load(inner, inner_fmt, trust=trust)
        if not plugin.claims(model):
            name = registry.framework_for_object(model)
        meta = folder.meta
        return Delegated(name, model, read_example(folder), lineage(folder), lambda inferred: mlmodel_signature(meta, inferred))

    def signature(self, model: Any, sample: Any) -> Any:
        raise UsageError("an MLflow folder is loaded through its flavor's plugin", "this is a packager defect if you see it")

    feeds = predict = signature  # type: ignore[assignment]


MLFLOW = Format(
    "mlflow",
    title="MLflow model folder",
    directory=True,
    detect=is_mlflow_folder,
    check=check_mlflow_folder,
)


@runs(MLFLOW, criteria=criteria_table({None: SAME_KERNELS}))  # the flavor's own model, as MLflow would run it
class MlflowRuntime(Runtime):
    """``packager predict`` and ``bench`` on an MLflow folder (or a ``models:/`` URI downloaded to one): the model its
    native flavor names, loaded and run by the plugin that owns it (``MlflowFolder.load``: the same checks as convert).
    The signature is the MLmodel's when it has one (``signature_of``), else the owning plugin's."""

    name, distribution = "mlflow (the flavor's own framework)", "mlflow"
    takes_source_input = True  # the model itself runs: floats as read, not cast to float32 (issue 26)

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        from packager.plugins import default_registry

        registry = default_registry()
        carried = MlflowFolder().load(Path(path), "mlflow", trust=trust)
        plugin = registry.framework(carried.framework)
        plugin.limit_threads(threads)
        return plugin, carried.model, read_folder(Path(path))

    def predict(self, handle: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        plugin, model, _ = handle
        return dict(plugin.predict(model, signature, feeds))

    def signature_of(self, handle: Any) -> Any:
        plugin, model, folder = handle
        return mlmodel_signature(folder.meta, plugin.signature(model, read_example(folder)))

    def details(self, handle: Any) -> dict[str, Any]:
        return {"framework": handle[0].__class__.__name__, "flavor": handle[2].flavor}


# ---------------------------------------------------------------- models:/ and runs:/ URIs


def is_uri(source: Any) -> bool:
    return isinstance(source, (str, Path)) and str(source).startswith(URI_SCHEMES)


def resolve_uri(uri: str) -> tuple[Path, dict[str, Any]]:
    """Download ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``runs:/RUN_ID/PATH`` with MLflow's client (against
    ``MLFLOW_TRACKING_URI``) into a temporary folder kept for this process; returns it with the lineage (the URI, run
    id, model version and tracking store) that ``packager.sources`` carries in the request, outside the folder."""
    from packager.deps import require

    mlflow = require("mlflow", "mlflow", "models:/ and runs:/ sources")
    from mlflow.exceptions import MlflowException

    uri = str(uri)
    target = Path(tempfile.mkdtemp(prefix="packager-mlflow-"))
    atexit.register(shutil.rmtree, target, True)
    origin: dict[str, Any] = {"uri": uri, "tracking_uri": _public_uri(mlflow.get_tracking_uri())}
    try:
        if uri.startswith("models:/"):
            origin.update(_model_version(mlflow, uri))
        slug = "-".join(p for p in re.split(r"[^A-Za-z0-9_.-]+", uri.split(":/", 1)[1]) if p.strip(".")) or "model"
        (target / slug).mkdir()  # the folder's name is the package's default name: iris-champion, not a temp name
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target / slug)))
    except MlflowException as exc:
        raise InputFileError(
            f"MLflow cannot resolve {uri}: {first_line(exc, 200)}", "check the name, version or alias, and MLFLOW_TRACKING_URI"
        ) from exc
    if not (local / MLMODEL).is_file():
        raise InputFileError(
            f"{uri} holds no MLmodel (it is not an MLflow model)", "give the URI of a logged model (runs:/RUN_ID/ARTIFACT_PATH)"
        )
    meta = _yaml(local / MLMODEL)
    origin.setdefault("run_id", meta.get("run_id"))
    return local, {"mlflow": origin}


MODELS_URIS = SourceScheme("models:/", resolve_uri)  # packager.sources asks the registry for these (no core import)
RUNS_URIS = SourceScheme("runs:/", resolve_uri)


def _model_version(mlflow: Any, uri: str) -> dict[str, Any]:
    client = mlflow.MlflowClient()
    ref = uri[len("models:/") :]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = ref.partition("/")
        if not number.isdigit():
            return {"name": name}
        version = client.get_model_version(name, number)
    return {"name": name, "version": str(version.version), "run_id": version.run_id}


def _public_uri(uri: str) -> str:
    """A tracking URI without a password (it goes into a manifest)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password:
        host = parts.hostname or ""
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")))
    return uri
