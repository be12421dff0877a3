"""Running any artifact over data: resolve what to run (a package, a model file, or a registry
reference), load it once in its own runtime, and stream an input file through it in batches.

The runtime is the one validation uses (registered per format by the plugins), so what ``predict``
runs is exactly what was proven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from packager.errors import UsageError
from packager.formats import detect_format
from packager.package import MANIFEST, Manifest, read_manifest
from packager.plugins import PluginRegistry, default_registry
from packager.requests import PredictRequest
from packager.signature import Signature

if TYPE_CHECKING:  # imported where used: pyarrow and tokenizers stay off the import path
    from packager.batches import FeedPlan
    from packager.text import TextPlan

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Runnable:
    """Something to run: the model file, its format, its signature, and its manifest when packaged.
    (Not ``packager.contract.Artifact``, which is what a converter wrote.)"""

    path: Path
    format: str
    signature: Signature | None
    manifest: Manifest | None = None
    label: str = ""


def resolve(ref_or_path: str | Path, *, registry_url: str | None = None, blobs: str | None = None, verify: str | None = None) -> Runnable:
    """A package folder, a bare model file/folder, an MLflow URI, or a registry reference (pulled once into a cache; its
    signature checked by the trust policy ``verify`` on every use, cached or not)."""
    from packager.sources import local_source

    path = Path(local_source(ref_or_path))
    if path.is_dir() and (path / MANIFEST).is_file():
        return _from_package(path, path.absolute().name)
    if path.exists():
        return Runnable(path, detect_format(path, default_registry()), None, None, path.name)
    if any(sep in str(ref_or_path) for sep in ("/", "\\")) or Path(str(ref_or_path)).suffix:
        from packager.errors import InputFileError

        raise InputFileError(f"{ref_or_path} does not exist", "give a package folder, a model file or a registry reference (name@version)")
    return _from_registry(str(ref_or_path), registry_url, blobs, verify)


def _from_package(folder: Path, label: str) -> Runnable:
    manifest = read_manifest(folder)
    return Runnable(folder / manifest.model_file, manifest.format, manifest.signature, manifest, label)


def _from_registry(ref: str, registry_url: str | None, blobs: str | None, verify: str | None = None) -> Runnable:
    """Pulled into $PACKAGER_HOME/cache/<digest>[-<signing key>]: content-addressed, so a cached pull is never stale.
    The trust policy runs on the cached folder each time too: trust changes, and the cache is a writable folder."""
    from packager.registry.backend import default_home
    from packager.registry.backends import open_registry
    from packager.registry.signing import check, policy_of, untrusted_backend_policy

    registry = open_registry(registry_url, blobs)
    policy = policy_of(verify)
    if not registry.supports_trust:
        untrusted_backend_policy(registry, ref, policy)
    info = registry.get(ref)
    signed = (info.signature or {}).get("fingerprint")
    cache = default_home() / "cache" / (info.digest + (f"-{signed[:16]}" if signed else ""))
    if not (cache / MANIFEST).is_file():
        registry.pull(info.ref, cache, overwrite=True, **({"verify": policy} if registry.supports_trust else {}))
    elif registry.supports_trust:
        check(cache, info.ref, policy, registry.trust_list(with_keys=True) if policy != "off" else [])
    return _from_package(cache, info.ref)


@dataclass
class Predictor:
    """A loaded artifact. Call it with feeds (input name -> array); it returns output name -> array."""

    artifact: Runnable
    signature: Signature
    runtime: Any
    handle: Any
    load_seconds: float
    threads: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return self.runtime.predict(self.handle, self.signature, feeds)

    @property
    def is_source(self) -> bool:
        """The runtime runs the model in its own framework (a pickle, a LightGBM text file): it takes the user's
        dtypes, and casting them to the signature's float32 would change its answers."""
        return bool(getattr(self.runtime, "takes_source_input", False))


def load_predictor(
    artifact: Runnable, *, threads: int | None = None, trust: bool = False, registry: PluginRegistry | None = None
) -> Predictor:
    """Load ``artifact`` in THIS process, with the static checks unless ``trust``. A package gets the same
    checks as a bare file: its manifest's ``trusted_source`` says how it was made, it grants nothing (a
    registry token holder could write it). For a confined run over a file, use ``predict``."""
    registry = registry or default_registry()
    runtime = registry.runtime(artifact.format)
    if runtime is None or not runtime.can_execute(artifact.path):
        from packager.errors import UnsupportedConversion

        why = "it has no runtime on this machine" if runtime is None else f"{runtime.name} cannot execute it here"
        plugin = artifact.manifest.conversion.get("plugin") if artifact.manifest else None
        hint = "convert it to ONNX and run that"
        if runtime is None and isinstance(plugin, dict) and plugin.get("distribution"):
            hint = f"install {plugin['distribution']}=={plugin.get('version', '')} (the plugin that wrote it), or {hint}"
        unrunnable = UnsupportedConversion(f"cannot run {artifact.label or artifact.path.name} ({artifact.format}): {why}", hint)
        if runtime is not None:
            raise unrunnable
        raise registry.missing(unrunnable, artifact.format, plugin.get("distribution", "") if isinstance(plugin, dict) else "")
    if not trust:
        from packager.safety import check_file, formats_to_check

        for fmt in formats_to_check(artifact.path, artifact.format, registry):  # a package's manifest may lie
            check_file(artifact.path, fmt, registry)
    started = time.perf_counter()
    handle = runtime.load(artifact.path, trust=trust, threads=threads)  # the runtime limits its threads (``thread_control``)
    loaded = time.perf_counter() - started
    signature = artifact.signature or _bare_signature(artifact, runtime, handle, registry, trust)
    return Predictor(artifact, signature, runtime, handle, loaded, threads)


def _bare_signature(artifact: Runnable, runtime: Any, handle: Any, registry: PluginRegistry, trust: bool) -> Signature:
    """A model file without a manifest: ask its runtime (ONNX, TFLite) or its source framework."""
    declared = runtime.signature_of(handle)
    if declared is not None:
        return declared
    if registry.loads_as_source(artifact.format):
        from packager.conversion import load_source

        source = load_source(artifact.path, trust=trust, registry=registry)
        try:
            return registry.framework(source.framework).signature(source.model, None)
        except UsageError:
            pass
    raise UsageError(
        f"{artifact.path.name} does not say what inputs it takes",
        "run a package made by `packager convert` (its manifest holds the signature)",
    )


# ---------------------------------------------------------------- predict over a file


@dataclass(frozen=True)
class PredictResult:
    rows: int
    batches: int
    seconds: float
    output: Path
    load_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def predict(
    artifact: Runnable,
    input_path: str | Path,
    output: str | Path,
    *,
    batch_size: int = 1024,
    threads: int | None = None,
    outputs: list[str] | None = None,
    trust: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    text_column: str | None = None,
    keep_columns: list[str] | None = None,
) -> PredictResult:
    """Stream ``input_path`` through ``artifact`` into ``output``: in the sandbox (model and input read-only, the
    output renamed into place after success) unless ``trust``, which loads it here."""
    request = PredictRequest(
        model=str(artifact.path),
        data=str(input_path),
        output=str(output),
        batch_size=batch_size,
        threads=threads,
        outputs=tuple(outputs or ()),
        overwrite=overwrite,
        text_column=text_column,
        keep_columns=tuple(keep_columns or ()),
    )
    return submit_predict(artifact, request, trust=trust, progress=progress)


def submit_predict(artifact: Runnable, request: PredictRequest, *, trust: bool = False, progress: Progress | None = None) -> PredictResult:
    """Run ``request`` on the resolved ``artifact`` (its local folder or file replaces ``request.model``): in the
    sandbox unless ``trust``. The CLI builds the request from its flags and enters here; ``predict`` is the API's way."""
    from packager import sandbox
    from packager.batches import OutputWriter
    from packager.cpus import check_threads

    check_threads(request.threads)
    request = replace(request, model=str(artifact.path.parent if artifact.manifest is not None else artifact.path))
    output = request.output
    if not sandbox.confines(trust):
        return _predict_loaded(load_predictor(artifact, threads=request.threads, trust=trust), request, progress)
    from packager import confined

    OutputWriter(Path(output).absolute(), request.overwrite)  # an unsupported suffix or an existing output fails here, before any work
    result = confined.predict(request, label=artifact.label or artifact.path.name, progress=progress)
    return PredictResult(int(result["rows"]), int(result["batches"]), result["seconds"], Path(output).absolute(), result["load_seconds"])


def run_predict(request: PredictRequest, *, trust: bool = False, progress: Progress | None = None) -> PredictResult:
    """The predict worker: resolve and load the model here (static checks unless ``trust``) and stream the data."""
    return _predict_loaded(load_predictor(resolve(request.model), threads=request.threads, trust=trust), request, progress)


def _predict_loaded(predictor: Predictor, request: PredictRequest, progress: Progress | None) -> PredictResult:
    return predict_file(
        predictor,
        request.data,
        request.output,
        batch_size=request.batch_size,
        outputs=list(request.outputs),
        overwrite=request.overwrite,
        progress=progress,
        text_column=request.text_column,
        keep_columns=list(request.keep_columns),
    )


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output: str | Path,
    *,
    batch_size: int = 1024,
    outputs: list[str] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    text_column: str | None = None,
    keep_columns: list[str] | None = None,
) -> PredictResult:
    """Stream ``input_path`` through the model in batches; memory stays at one batch. ``text_column``: the package
    carries a tokenizer, and this column's texts are tokenized with it batch by batch (packager.text). ``keep_columns``:
    input columns (an id, a timestamp) written first in each output row, as read."""
    from packager.batches import OutputWriter, iter_batches, open_source, plan_feeds

    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size} is not positive", "use e.g. --batch-size 1024")
    source = open_source(input_path)
    plan: TextPlan | FeedPlan
    text_plan: TextPlan | None = None
    if text_column:
        from packager.text import TextPlan, csv_cells

        plan = text_plan = TextPlan.from_package(predictor.artifact.path.parent, text_column)
        plan.check(list(source.columns))
    else:
        plan = plan_feeds(predictor.signature, source, full_precision=predictor.is_source)  # a mismatch fails here, before any work
    writer = OutputWriter(Path(output), overwrite)
    kept = kept_columns(source, keep_columns, writer.kind)
    chosen = _check_outputs(predictor.signature, outputs)
    started, rows, batches = time.perf_counter(), 0, 0
    try:
        for batch in iter_batches(source, batch_size, plan.column_types()):
            produced = predictor(plan.feeds(batch))
            produced = text_plan.answers(produced, batch) if text_plan is not None else produced
            produced = {k: v for k, v in produced.items() if not chosen or k in chosen}
            row = {**kept_from(batch, kept, produced), **produced}
            writer.write(csv_cells(row) if text_plan is not None and writer.kind == "csv" else row)
            rows += len(next(iter(produced.values())))
            batches += 1
            if progress:
                progress(rows)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return PredictResult(rows, batches, time.perf_counter() - started, Path(output), predictor.load_seconds)


def kept_columns(source: Any, wanted: list[str] | None, output_kind: str) -> list[str]:
    """``--keep-columns`` checked before any work: each must be an input column, and the output a table."""
    if not wanted:
        return []
    if output_kind == "npy" or source.kind == "npy":
        raise UsageError("--keep-columns needs named columns in and a table out", "read and write Parquet or CSV (-o out.parquet)")
    missing = [c for c in wanted if c not in source.columns]
    if missing:
        raise UsageError(f"--keep-columns {missing} are not columns of {source.path.name}", f"its columns are {list(source.columns)[:20]}")
    return list(wanted)


def kept_from(batch: Any, kept: list[str], produced: Mapping[str, Any]) -> dict[str, Any]:
    """The kept input columns of one batch, by name; a name an output also has is refused (one would hide the other)."""
    import numpy as np

    from packager.batches import output_columns

    if not kept:
        return {}
    clash = [c for c in kept if c in produced or c in output_columns(dict(produced))]
    if clash:
        raise UsageError(
            f"--keep-columns {clash} collide with the model's outputs", "rename the input column, or choose outputs with --output"
        )
    if isinstance(batch, dict):  # .npz arrays
        deep = [c for c in kept if np.ndim(batch[c]) != 1]
        if deep:
            raise UsageError(f"--keep-columns {deep} hold more than one value per row", "keep one-dimensional arrays (an id per row)")
        return {c: batch[c] for c in kept}
    names = batch.schema.names
    return {c: batch.column(names.index(c)).to_numpy(zero_copy_only=False) for c in kept}


def _check_outputs(signature: Signature, outputs: list[str] | None) -> list[str]:
    if not outputs:
        return []
    known = signature.output_names
    unknown = [o for o in outputs if known and o not in known and o not in ("label", "score", "tokens", "labels", "scores")]
    if unknown:
        raise UsageError(f"--output names unknown outputs {unknown}", f"the model's outputs are {known}")
    return outputs
