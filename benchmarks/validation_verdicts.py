"""Validation verdicts before and after the rework of issue 13, model by model.

    python benchmarks/validation_verdicts.py [--before /tmp/old] [--out benchmarks/results/validation_verdicts.md]

``--before`` is a checkout of the code before the rework (``git worktree add /tmp/old 4c298df``). Every fixture of
``fixtures/build.py`` and every zoo model (``tests/zoo``: scikit-learn, Keras, the PyTorch digits CNN) is converted to
ONNX as a user would type it (no ``--sample`` unless the framework needs one), unquantized and with ``--quantize
dynamic``, plus static int8 with ``--calibration`` and fp16 where a model has calibration rows. Each side runs in its
own child process with its own code first on ``PYTHONPATH``; the models come from this checkout's builders (seeded, so
both sides convert the same weights). ``--accept-mismatch`` is on so a failing check still yields its report.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(relative: str):
    """A builder module loaded from this checkout by path (the other side's tree may lack it or differ)."""
    path = ROOT / relative
    name = f"_verdicts_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def cases(work: Path) -> list[dict]:
    """(name, group, model file or builder, options) for every conversion, described as plain data."""
    fixtures = json.loads((work / "fixtures" / "fixtures.json").read_text())
    found = []
    for name, fixture in fixtures.items():
        for mode in (None, "dynamic"):
            found.append({"group": "fixture", "name": name, "model": fixture["model"], "quantize": mode})
        if fixture["sample"].endswith("digits_sample.npy"):
            found.append({"group": "fixture", "name": name, "model": fixture["model"], "quantize": "static",
                          "calibration": str(work / "fixtures" / "digits_calibration.npy")})
    for name in _module("tests/zoo/sklearn_models.py").BUILDERS:
        for mode in (None, "dynamic"):
            found.append({"group": "sklearn zoo", "name": name, "builder": "sklearn", "quantize": mode})
    for name in _module("tests/zoo/keras_tutorials.py").BUILDERS:
        for mode in (None, "dynamic"):
            found.append({"group": "keras zoo", "name": name, "builder": "keras", "quantize": mode})
    cnn = {"group": "keras zoo", "name": "rescaling_cnn_digits", "builder": "keras"}
    found += [{**cnn, "quantize": "static", "calibration": "held-out"}, {**cnn, "quantize": "fp16"}]
    for mode in (None, "dynamic", "fp16"):
        found.append({"group": "torch zoo", "name": "cnn_digits", "builder": "torch", "quantize": mode, "sample": "held-out"})
    found.append({"group": "torch zoo", "name": "cnn_digits", "builder": "torch", "quantize": "static", "calibration": "held-out"})
    return found


def _build(case: dict, work: Path, cache: dict):
    """The model object (zoo) or file (fixture), and held-out rows saved where the case needs a file."""
    import numpy as np

    key = (case.get("builder"), case["name"])
    if key not in cache:
        if case.get("builder") == "sklearn":
            cache[key] = (_module("tests/zoo/sklearn_models.py").BUILDERS[case["name"]]().model, None)
        elif case.get("builder") == "keras":
            cache[key] = _module("tests/zoo/keras_tutorials.py").BUILDERS[case["name"]]()
        elif case.get("builder") == "torch":
            model, images, _ = _module("tests/zoo/torch_digits.py").cnn_digits()
            cache[key] = (model, images)
        else:
            cache[key] = (case["model"], None)
    model, held_out = cache[key]
    rows = None
    if held_out is not None and isinstance(held_out, np.ndarray) and held_out.dtype.kind == "f":
        rows = work / f"{case['name']}_held_out.npy"
        np.save(rows, held_out)
    return model, rows


def run_side(work: Path, out: Path) -> None:
    """Child: every case through this side's ``packager.conversion.convert``; one JSON line per case."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore")
    _own_plugins_only(Path.cwd())
    from packager.conversion import convert
    from packager.errors import PackagerError

    cache: dict = {}
    results = []
    for index, case in enumerate(cases(work)):
        started = time.perf_counter()
        entry = {**case, "verdict": "", "data_source": "", "note": ""}
        try:
            model, rows = _build(case, work, cache)
            options = {"quantize": case["quantize"], "accept_mismatch": True, "out": work / "out" / str(os.getpid()) / str(index)}
            if case.get("sample") == "held-out":
                options["sample"] = rows
            if case.get("calibration"):
                options["calibration"] = rows if case["calibration"] == "held-out" else case["calibration"]
            package = convert(model, to="onnx", **options)
            report = package.manifest.validation
            quant = package.manifest.quantization
            entry["verdict"] = report.get("status", "?") + (" (accepted mismatch)" if report.get("accepted_mismatch") else "")
            if report.get("accepted_mismatch"):
                entry["verdict"] = "failed"
            entry["data_source"] = report.get("data_source") or "—"
            if case["quantize"] and not quant.applied:
                entry["note"] = f"not quantized: {quant.reason}"
            failing = [f"{o['name']}: {o.get('note', '')}" for o in report.get("outputs", []) if not o.get("passed")]
            entry["note"] = "; ".join(filter(None, [entry["note"], *failing]))
        except PackagerError as exc:
            entry["verdict"], entry["note"] = "error", f"{type(exc).__name__}: {exc.what}"
        except Exception as exc:  # a crash on one side is a verdict too
            entry["verdict"], entry["note"] = "crash", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        entry["seconds"] = round(time.perf_counter() - started, 2)
        results.append(entry)
        print(f"{index:3d} {case['name']:<40} {case['quantize'] or 'fp32':<8} {entry['verdict']}", file=sys.stderr, flush=True)
    out.write_text(json.dumps(results, indent=1, default=str))


def _own_plugins_only(code: Path) -> None:
    """Entry points of the shared venv name the plugins of its newest install (converters.catboost...), which the
    older tree cannot load (measured: "cannot import name 'SAME_KERNELS'"): keep those whose module is in ``code``."""
    from importlib import metadata

    original = metadata.entry_points

    def entry_points(**kwargs):
        found = original(**kwargs)
        if kwargs.get("group", "").startswith("packager"):
            # packager.converters.x is the folder converters/ of a source tree (installed, setuptools maps it under packager)
            parts = lambda ep: code.joinpath(*ep.value.split(":")[0].replace("packager.converters", "converters", 1).split("."))
            found = [ep for ep in found if parts(ep).with_suffix(".py").is_file() or (parts(ep) / "__init__.py").is_file()]
        return found

    metadata.entry_points = entry_points


def _child(code: Path, work: Path, out: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(work), str(out)], env=env, cwd=str(code), check=True)
    return json.loads(out.read_text())


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(before: list[dict], after: list[dict], before_label: str) -> str:
    lines = [
        "# Validation verdicts before and after issue 13",
        "",
        f"Generated by `benchmarks/validation_verdicts.py`: before = {before_label}, after = this branch. Each model converted",
        "to ONNX as typed without `--sample` (the torch CNN needs its held-out rows as `--sample`); `--accept-mismatch` on,",
        "so a failed check is shown as `failed`. `error`: the conversion stopped with that message.",
        "",
    ]
    changed = sum(b["verdict"] != a["verdict"] for b, a in zip(before, after))
    sources: dict[str, int] = {}
    for a in after:
        sources[a["data_source"] or "—"] = sources.get(a["data_source"] or "—", 0) + 1
    lines += [f"{len(after)} conversions; verdict changed on {changed}. Data sources after: "
              + ", ".join(f"{k} {v}" for k, v in sorted(sources.items(), key=lambda kv: -kv[1])) + ".", ""]
    lines += ["| group | model | quantize | before | after | data source after | note (after; before when it errs) |",
              "|---|---|---|---|---|---|---|"]
    for b, a in zip(before, after):
        note = a["note"] or (b["note"] if b["verdict"] in ("error", "crash", "failed") else "")
        mode = a["quantize"] or "—"
        if a.get("calibration"):
            mode += " (+calibration)"
        lines.append(f"| {a['group']} | {a['name']} | {mode} | {b['verdict']} | {a['verdict']} | {a['data_source']} | {_short(note)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="/tmp/old", help="checkout of the code before the rework (4c298df)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "validation_verdicts.md"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_side(Path(args.child[0]), Path(args.child[1]))
        return
    before_root = Path(args.before)
    label = subprocess.run(["git", "-C", str(before_root), "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="verdicts-") as temp:
        work = Path(temp)
        sys.path.insert(0, str(ROOT))
        _module("fixtures/build.py").build(work / "fixtures")
        after = _child(ROOT, work, work / "after.json")
        before = _child(before_root, work, work / "before.json")
    out = Path(args.out)
    out.write_text(render(before, after, f"`{_short(label, 60)}`"))
    out.with_suffix(".json").write_text(json.dumps({"before": before, "after": after}, indent=1, default=str))
    print(out)


if __name__ == "__main__":
    main()
