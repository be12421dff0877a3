"""`packager demo`: the whole path on a small bundled model, in one command."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True)
@click.option("--json", "as_json", is_flag=True)
def command(out, as_json):
    """Train a seeded LogisticRegression on scikit-learn's digits, convert it to every target
    (plus int8 and fp16 ONNX), validate each in its own runtime, and print the results."""
    from packager.cli import emit_json
    from packager.commands._render import conversion_table, progress_reporter, result_row
    from packager.conversion import convert
    from packager.errors import PackagerError
    from packager.plugins import default_registry

    model_path, sample_path = _build_demo_model(out)
    jobs = [(t, None) for t in default_registry().targets_of("sklearn")] + [("onnx", "dynamic"), ("onnx", "fp16")]
    rows = []
    with progress_reporter(as_json) as report:
        for target, quantize in jobs:
            label = f"{target}+{quantize}" if quantize else target
            try:
                package = convert(model_path, to=target, quantize=quantize, sample=sample_path, out=out / label, overwrite=True,
                                  progress=lambda m, l=label: report(f"{l}: {m}"))
                rows.append(result_row(label, package=package))
            except PackagerError as exc:
                rows.append(result_row(label, error=exc))
    if as_json:
        emit_json(rows)
    else:
        click.echo(f"source: {model_path} (LogisticRegression, 64 features, 10 classes); sample: {sample_path}")
        conversion_table(rows)
    if any(r["status"] == "failed" for r in rows):
        raise SystemExit(1)


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
