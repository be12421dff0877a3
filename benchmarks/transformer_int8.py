"""A seeded 4-layer transformer encoder (3.7 M parameters) exported to ONNX, then dynamic int8:
size, batch-1 latency (single thread, side by side in one run) and cosine similarity to fp32.

    python benchmarks/transformer_int8.py     # writes benchmarks/results/transformer_int8.json
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
    from converters.onnx import cpu_has_vnni
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


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(Path(folder))
    out = ROOT / "benchmarks" / "results" / "transformer_int8.json"
    out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(json.dumps({k: figures[k] for k in ("parameters", "size_fp32", "size_int8", "size_ratio", "cosine_min", "latency_batch1_ms", "speedup_batch1", "cpu_has_vnni")}, indent=1))
