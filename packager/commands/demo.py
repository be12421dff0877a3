"""`packager demo`: the whole path on a small bundled model, in one command."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True)
@click.option("--name", default="digits-demo", show_default=True, help="Model name in the registry.")
@click.option(
    "--registry", "registry_url", envvar="PACKAGER_REGISTRY", help="Catalog URL (default: the embedded one under $PACKAGER_HOME)."
)
@click.option("--blobs", envvar="PACKAGER_BLOBS")
@click.option("--json", "as_json", is_flag=True)
def command(out, name, registry_url, blobs, as_json):
    """Train a seeded LogisticRegression on scikit-learn's digits, convert it to every target
    (plus int8 and fp16 ONNX), validate each in its own runtime, push every package into the
    registry with its lineage, and print the results, the registry's list and a lineage tree."""
    from packager.commands._render import conversion_table, emit_json, progress_reporter, result_row
    from packager.conversion import convert
    from packager.errors import PackagerError
    from packager.plugins import default_registry
    from packager.registry.backends import open_registry

    model_path, sample_path = _build_demo_model(out)
    store = open_registry(registry_url, blobs)
    jobs = [(t, None) for t in default_registry().targets_of("sklearn")] + [("onnx", "dynamic"), ("onnx", "fp16")]
    rows = []
    with progress_reporter(as_json) as report:
        for target, quantize in jobs:
            label = f"{target}+{quantize}" if quantize else target
            try:
                package = convert(
                    model_path,
                    to=target,
                    quantize=quantize,
                    sample=sample_path,
                    out=out / label,
                    overwrite=True,
                    progress=lambda m, lbl=label: report(f"{lbl}: {m}"),
                )
                row = result_row(label, package=package)
                row["pushed"] = store.push_conversion(package, name, model_path, metrics={"accuracy": _accuracy(package)}).ref
                rows.append(row)
            except PackagerError as exc:
                rows.append(result_row(label, error=exc))
    pushed = [r["pushed"] for r in rows if r.get("pushed")]
    if as_json:
        emit_json({"results": rows, "registry": store.url, "lineage": store.lineage(pushed[-2]) if len(pushed) > 1 else None})
    else:
        click.echo(f"source: {model_path} (LogisticRegression, 64 features, 10 classes); sample: {sample_path}")
        conversion_table(rows)
        _show_registry(store, name, pushed)
    if any(r["status"] == "failed" for r in rows):
        raise SystemExit(1)


def _accuracy(package) -> float:
    """Label agreement with the source on the sample: the demo's stand-in for an evaluation metric."""
    agreements = [o["agreement"] for o in package.manifest.validation["outputs"] if o.get("agreement") is not None]
    return agreements[0] if agreements else 0.0


def _show_registry(store, name: str, pushed: list[str]) -> None:
    from packager.commands.registry import lineage, list_

    click.echo(f"\nregistry: {store.url}\n$ packager list {name}")
    show_list, show_lineage = list_.callback, lineage.callback
    assert show_list is not None and show_lineage is not None  # click types a command's callback as optional
    show_list(name=name, registry_url=store.url, blobs=store.blobs.url, as_json=False)
    onnx_int8 = next((ref for ref in pushed if store.get(ref).quantization == "dynamic"), pushed[-1] if pushed else None)
    if onnx_int8:
        click.echo(f"\n$ packager lineage {onnx_int8}")
        show_lineage(ref=onnx_int8, registry_url=store.url, blobs=store.blobs.url, as_json=False)


def _build_demo_model(out: Path) -> tuple[Path, Path]:
    import pickle

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    model = LogisticRegression(max_iter=2000, random_state=0).fit(X[:1500], y[:1500])
    out.mkdir(parents=True, exist_ok=True)
    model_path, sample_path = out / "digits_logreg.pkl", out / "digits_sample.npy"
    with model_path.open("wb") as fh:
        pickle.dump(model, fh)
    np.save(sample_path, X[1500:1700])
    return model_path, sample_path
