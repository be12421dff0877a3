"""``packager bench``: every artifact, at every batch size, measured the same way in one run.

Each artifact runs in its own child process (spawned fresh), so load time and peak memory are its
own and not the sum of every framework imported before it; the measurements are still one run,
on the same data, with the same thread setting, so ratios are side by side. The baseline is the
source model in its native framework (``--baseline FILE``), loaded through its framework plugin.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from packager.cpus import check_threads
from packager.errors import PackagerError, UsageError, first_line
from packager.requests import BenchRequest, BenchSettings


@dataclass(frozen=True)
class Measurement:
    """One artifact at one batch size."""

    batch_size: int
    runs: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rows_per_second: float


@dataclass(frozen=True)
class ArtifactBench:
    label: str
    format: str
    runtime: str
    quantization: str | None
    size_bytes: int
    load_seconds: float
    peak_rss_mb: float
    baseline: bool
    measurements: tuple[Measurement, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class BenchReport:
    settings: BenchSettings
    machine: dict[str, Any]
    data: str
    artifacts: tuple[ArtifactBench, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "machine": self.machine,
            "data": self.data,
            "artifacts": [asdict(a) for a in self.artifacts],
        }


def run_bench(
    refs: list[str],
    data: str | Path,
    settings: BenchSettings,
    *,
    baseline: str | None = None,
    model_class: str | None = None,
    registry_url: str | None = None,
    blobs: str | None = None,
) -> BenchReport:
    """Measure ``baseline`` (if given) and every artifact in ``refs``, each in a fresh sandboxed child process
    (``packager.sandbox``: the files are untrusted; registry references are pulled here first)."""
    from packager.batches import open_source
    from packager.sources import local_source

    open_source(data)  # a bad input path fails before any child starts
    check_threads(settings.threads)
    baseline = str(local_source(baseline)) if baseline else baseline
    if any(b < 1 for b in settings.batch_sizes):
        raise UsageError(f"--batch-sizes {settings.batch_sizes} must be positive", "e.g. --batch-sizes 1,32,1024,16384")
    results = [_confined("baseline", baseline, model_class, data, settings)] if baseline else []
    for ref in refs:
        try:
            path, label = _local(ref, registry_url, blobs)
        except PackagerError as exc:
            results.append(ArtifactBench(Path(ref).name, "?", "?", None, 0, 0.0, 0.0, False, (), exc.one_line()))
            continue
        result = _confined("artifact", str(path), None, data, settings)
        results.append(replace(result, label=label) if not result.error else result)
    return BenchReport(settings, describe_machine(settings.threads), str(data), tuple(results))


def _local(ref: str, registry_url: str | None, blobs: str | None) -> tuple[Path, str]:
    """A package folder or model file on this machine (a registry reference is pulled into the cache), and its label."""
    from packager.inference import resolve

    artifact = resolve(ref, registry_url=registry_url, blobs=blobs)
    return (artifact.path.parent if artifact.manifest is not None else artifact.path), artifact.label or ref


def _confined(kind: str, path: str, model_class: str | None, data: str | Path, settings: BenchSettings) -> ArtifactBench:
    """One measurement in a fresh confined child; a failure is that artifact's error row."""
    from packager import confined

    request = BenchRequest(kind=kind, path=str(path), data=str(data), model_class=model_class, settings=asdict(settings))
    try:
        result = confined.bench(request)
        measurements = tuple(Measurement(**m) for m in result.pop("measurements", ()))
        return ArtifactBench(**result, measurements=measurements)
    except PackagerError as exc:
        return ArtifactBench(Path(path).name, "?", "?", None, 0, 0.0, 0.0, kind == "baseline", (), exc.one_line())
    except (KeyError, TypeError, ValueError) as exc:  # the child ran untrusted code: a malformed answer is that row's error
        what = f"the sandboxed model process gave a malformed answer while benchmarking {Path(path).name} ({type(exc).__name__})"
        return ArtifactBench(Path(path).name, "?", "?", None, 0, 0.0, 0.0, kind == "baseline", (), what)


def run_measure(request: BenchRequest) -> ArtifactBench:
    """The bench worker: one measurement in this process (the child ``_confined`` started)."""
    settings = BenchSettings(**{**request.settings, "batch_sizes": tuple(request.settings.get("batch_sizes", BenchSettings.batch_sizes))})
    return _measure_in_child(request.kind, request.path, request.model_class, request.data, settings, None, None)


def _measure_in_child(
    kind: str, ref: str, model_class: str | None, data: str, settings: BenchSettings, registry_url: str | None, blobs: str | None
) -> ArtifactBench:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["OMP_NUM_THREADS"] = str(settings.threads)
    try:
        if kind == "baseline":
            call, info, batch_of = _load_baseline(ref, model_class, settings, data)
        else:
            call, info, batch_of = _load_artifact(ref, settings, data, registry_url, blobs)
        measurements = tuple(_measure(call, batch_of(size), size, settings) for size in settings.batch_sizes)
        return ArtifactBench(measurements=measurements, peak_rss_mb=round(peak_rss_mb(), 1), baseline=kind == "baseline", **info)
    except Exception as exc:  # one artifact failing must not lose the others' measurements
        message = exc.one_line() if isinstance(exc, PackagerError) else f"{type(exc).__name__}: {first_line(exc)}"
        return ArtifactBench(Path(ref).name, "?", "?", None, 0, 0.0, 0.0, kind == "baseline", (), message)


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: ru_maxrss survives fork and exec,
    so a child spawned from a 2 GB parent would report 2 GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_artifact(
    ref: str, settings: BenchSettings, data: str, registry_url: str | None, blobs: str | None
) -> tuple[Any, dict[str, Any], Any]:
    """The packaged artifact in its runtime, and its batches: table columns by name, or texts through the packaged tokenizer."""
    from packager.inference import load_predictor, resolve
    from packager.package import path_size

    artifact = resolve(ref, registry_url=registry_url, blobs=blobs)
    predictor = load_predictor(artifact, threads=settings.threads)
    quant = artifact.manifest.quantization if artifact.manifest else None
    info = {
        "label": artifact.label or ref,
        "format": artifact.format,
        "runtime": f"{predictor.runtime.name} {predictor.runtime.version()}",
        "quantization": quant.mode if quant and quant.applied else None,
        "size_bytes": path_size(artifact.path),
        "load_seconds": round(predictor.load_seconds, 4),
    }
    if settings.text_column:
        from packager.text import TextPlan

        plan = TextPlan.from_package(artifact.path.parent, settings.text_column)
        texts = _texts(data, settings.text_column)
        return predictor, info, lambda size: plan.tokenize(_first(texts, size))
    return predictor, info, _table_batches(predictor.signature, data, max(settings.batch_sizes))


def _load_baseline(path: str, model_class: str | None, settings: BenchSettings, data: str) -> tuple[Any, dict[str, Any], Any]:
    """The source model in its own framework: what the artifacts are compared against. Its
    signature comes from the model, or from the data's first rows where the model has none (torch).
    With ``text_column``, the framework's own ``feeds`` turn the texts into its inputs (a Hugging Face folder's tokenizer)."""
    from packager.conversion import load_source
    from packager.package import path_size
    from packager.plugins import default_registry
    from packager.samples import load_sample

    started = time.perf_counter()
    source = load_source(path, model_class=model_class)
    loaded = time.perf_counter() - started
    plugin = default_registry().framework(source.framework)
    plugin.limit_threads(settings.threads)
    sample = _head(load_sample(data))
    texts = _texts(data, settings.text_column) if settings.text_column else None
    signature = plugin.signature(source.model, sample if texts is None else texts[:8])
    runtime = native_runtime(source.model, source.framework, plugin.versions())
    info = {
        "label": f"{Path(path).name} (native {runtime.split()[0]})",
        "format": source.info.format or source.framework,
        "runtime": runtime,
        "quantization": None,
        "size_bytes": path_size(Path(path)),
        "load_seconds": round(loaded, 4),
    }
    if texts is not None:

        def batch_of(size):
            return plugin.feeds(source.model, signature, _first(texts, size))
    else:
        batch_of = _table_batches(signature, data, max(settings.batch_sizes))
    return _baseline_call(plugin, source.model, signature, batch_of(min(64, max(settings.batch_sizes)))), info, batch_of


def _texts(data: str, column: str) -> list[str]:
    """Every text of the data's ``column`` (bench data is small: it is repeated to the largest batch size)."""
    import pyarrow as pa

    from packager.batches import iter_batches, open_source

    source = open_source(data)
    if column not in source.columns:
        raise UsageError(
            f"the bench data has no column {column!r}", f"it has {list(source.columns)[:20]}; name the text column with --text-column"
        )
    texts = [
        str(t) for batch in iter_batches(source, 65_536, {column: pa.string()}) for t in batch.column(column).to_pylist() if t is not None
    ]
    if not texts:
        raise UsageError(f"the bench data's column {column!r} holds no text", "give a file with texts in that column")
    return texts


def _first(texts: list[str], size: int) -> list[str]:
    return (texts * -(-size // len(texts)))[:size]


def _table_batches(signature: Any, data: str, rows: int) -> Any:
    feeds = _bench_feeds(signature, data, rows)
    return lambda size: {k: v[:size] for k, v in feeds.items()}


def _baseline_call(plugin: Any, model: Any, signature: Any, probe: dict[str, Any]) -> Any:
    """The framework's single-pass ``serve`` (every output from one call, as a deployment would) when
    it gives the same outputs as ``predict`` on the probe rows; ``predict`` otherwise."""
    import numpy as np

    def predict(feeds):
        return plugin.predict(model, signature, feeds)

    serve = plugin.serve
    fast, exact = serve(model, signature, probe), predict(probe)
    same = fast.keys() == exact.keys() and all(np.array_equal(np.asarray(fast[k]), np.asarray(exact[k])) for k in exact)
    return (lambda feeds: serve(model, signature, feeds)) if same else predict


def _head(sample: Any) -> Any:
    return sample.head(8) if hasattr(sample, "head") else sample[:8]


def _bench_feeds(signature: Any, data: str, rows: int) -> dict[str, Any]:
    """The first ``rows`` rows of the data (repeated when the file is shorter)."""
    import numpy as np

    from packager.batches import iter_batches, open_source, plan_feeds

    source = open_source(data)
    plan = plan_feeds(signature, source)
    feeds = plan.feeds(next(iter_batches(source, rows)))
    have = len(next(iter(feeds.values())))
    if have < rows:
        repeats = -(-rows // have)
        feeds = {k: np.concatenate([v] * repeats)[:rows] for k, v in feeds.items()}
    return feeds


def _measure(call: Any, feeds: dict[str, Any], size: int, settings: BenchSettings) -> Measurement:
    import numpy as np

    batch = {k: np.ascontiguousarray(v[:size]) for k, v in feeds.items()}
    for _ in range(settings.warmup):
        call(batch)
    latencies: list[float] = []
    began = time.perf_counter()
    while True:
        start = time.perf_counter()
        call(batch)
        latencies.append(time.perf_counter() - start)
        spent = time.perf_counter() - began
        if (
            (len(latencies) >= settings.min_runs and spent >= settings.min_seconds)
            or (spent >= settings.max_seconds and len(latencies) >= 3)
            or len(latencies) >= 100_000
        ):
            break
    ms = np.array(latencies) * 1000
    p50, p95, p99 = (round(float(np.percentile(ms, q)), 4) for q in (50, 95, 99))
    return Measurement(size, len(latencies), p50, p95, p99, round(size * len(latencies) / sum(latencies), 1))


BOOSTING_LIBRARIES = ("lightgbm", "xgboost", "catboost")


def native_runtime(model: Any, framework: str, versions: dict[str, str]) -> str:
    """The library whose predict the baseline runs, with its version. A LightGBM text model or an XGBoost JSON file
    is loaded through the framework plugin "sklearn" (as LGBMRegressor, XGBClassifier) but runs LightGBM's or XGBoost's
    own code: optimize called that baseline "native sklearn" (issue 23, D9)."""
    library = type(model).__module__.split(".")[0]
    if library in BOOSTING_LIBRARIES:
        from packager.deps import version_of

        return f"{library} {version_of(library)}"
    return f"{framework} {versions.get(framework) or versions.get(_DISTRIBUTIONS.get(framework, ''), '')}".strip()


_DISTRIBUTIONS = {"sklearn": "scikit-learn"}  # a framework name whose plugin reports its version under the distribution's


def describe_machine(threads: int) -> dict[str, Any]:
    import os

    from packager.deps import version_of

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), platform.processor())
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "threads": threads,
        "avx2": " avx2" in flags,
        "avx512": " avx512f" in flags,
        "vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": {d: version_of(d) for d in ("onnxruntime", "scikit-learn", "torch", "tensorflow", "keras", "numpy")},
    }


# ---------------------------------------------------------------- reports


def write_reports(report: BenchReport, out: str | Path) -> dict[str, Path]:
    """bench.json, bench.md and bench.png under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "plot": out / "bench.png"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(markdown(report))
    plot(report, paths["plot"])
    return paths


def markdown(report: BenchReport) -> str:
    m = report.machine
    text = f" (the texts of column `{report.settings.text_column}`, tokenized per batch)" if report.settings.text_column else ""
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; threads={m['threads']};"
        f" AVX2={m['avx2']}, VNNI={m['vnni']}; Python {m['python']}.",
        f"Data: `{Path(report.data).name}`{text}."
        f" Latency per batch after {report.settings.warmup} warm-up calls; ratios against the baseline at the same batch size.",
        "",
        "| artifact | format | quant | size | load s | peak RSS MB | batch | p50 ms | p95 ms | p99 ms | rows/s | × baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = next((a for a in report.artifacts if a.baseline and not a.error), None)
    base_rate = {m.batch_size: m.rows_per_second for m in base.measurements} if base else {}
    for a in report.artifacts:
        if a.error:
            lines.append(f"| {a.label} | — | — | — | — | — | — | — | — | — | — | error: {a.error} |")
            continue
        for x in a.measurements:
            ratio = f"{x.rows_per_second / base_rate[x.batch_size]:.2f}×" if base_rate.get(x.batch_size) and not a.baseline else "—"
            lines.append(
                f"| {a.label} | {a.format} | {a.quantization or '—'} | {a.size_bytes:,} | "
                f"{a.load_seconds:.3f} | {a.peak_rss_mb:.0f} | {x.batch_size:,} | "
                f"{x.p50_ms:.3f} | {x.p95_ms:.3f} | {x.p99_ms:.3f} | {x.rows_per_second:,.0f} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def plot(report: BenchReport, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for a in report.artifacts:
        if a.error or not a.measurements:
            continue
        sizes = [m.batch_size for m in a.measurements]
        ax.plot(sizes, [m.rows_per_second for m in a.measurements], marker="o", linestyle="--" if a.baseline else "-", label=a.label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (rows)")
    ax.set_ylabel("throughput (rows/s)")
    ax.set_title(f"throughput by batch size ({report.machine['threads']} thread(s))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
