"""all-MiniLM-L6-v2: packager's artifacts against the peers a user would otherwise pick, side by side in one process.

Measured at batch x tokens 1x32 / 1x128 / 32x32 / 32x128, 1 thread, 5 interleaved rounds (every artifact once per
round, so load hits all alike; each round starts one row later, so no row is always first), median per artifact; every
time is also given as a ratio to packager's fp32 ONNX.

Packager's rows are packages run through ``packager.inference.load_predictor`` (the runtime ``predict``/``bench`` use):
the chosen one (``optimize``'s best/), fp32 ONNX, int8 ONNX (``--quantize dynamic``), OpenVINO fp32, OpenVINO int8
weights (``--quantize weights``, ``weights-bf16``) and OpenVINO static int8 (``--quantize static``, ``static-bf16``,
calibrated on optimize's calibration half of the sentences).

The peers are built without packager, the way each tool's documentation does it, from the same torch module (the
folder's model with its sentence-transformers pooling, so every row computes the same embedding):

- PyTorch eager: the module itself (``torch.set_num_threads(1)``);
- OpenVINO fp32: ``openvino.convert_model(module, example_input=...)``, compiled on the CPU with its default hints but
  one thread and one stream (the CPU plugin's default inference precision is reported: bf16 where the CPU has it);
- OpenVINO int8 weights: the same model through ``nncf.compress_weights`` (INT8_ASYM, the default);
- Optimum (``optimum-onnx``): not run when its requirements refuse the installed transformers (said in the results).

Fidelity: every row's min cosine against PyTorch eager fp32 on the held-out sentences, each sentence on its own
(batch 1, its own length).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

SETTINGS = tuple(tuple(int(n) for n in s.split("x")) for s in os.environ.get("MINILM_SETTINGS", "1x32,1x128,32x32,32x128").split(","))
ROUNDS = 5


def optimum_status() -> str:
    """Why the Optimum peers are or are not measured (their requirements read from the installed metadata or pip's)."""
    from importlib import metadata

    try:
        version = metadata.version("optimum-onnx")
    except metadata.PackageNotFoundError:
        return (
            "not run: optimum-onnx 0.1.0 (the newest on the index) requires transformers<4.58 and the project runs "
            f"transformers {metadata.version('transformers')}; installing it would replace the project's transformers"
        )
    return f"optimum-onnx {version} installed"


def packaged(path: Path) -> Callable[[dict], Any]:
    from packager.inference import load_predictor, resolve

    predictor = load_predictor(resolve(path), threads=1, trust=True)
    return lambda feeds: next(iter(predictor(feeds).values()))


def module_of(folder: Path) -> Any:
    """The folder's torch module as packager wraps it (token tensors in, the pooled sentence embedding out)."""
    from packager.conversion import load_source

    return load_source(folder, trust=True).model.module.eval()


def peers(module: Any, example: dict, note: dict) -> dict[str, Callable[[dict], Any]]:
    """PyTorch eager, OpenVINO fp32 and OpenVINO int8 weights, built by the tools themselves."""
    import numpy as np
    import openvino as ov
    import torch

    os.environ.setdefault("NNCF_CI", "1")  # no usage telemetry from this machine
    import nncf

    torch.set_num_threads(1)

    def eager(feeds: dict) -> Any:
        with torch.no_grad():
            return module(*(torch.from_numpy(feeds[k]) for k in example)).numpy()

    core = ov.Core()
    converted = ov.convert_model(module, example_input=tuple(torch.from_numpy(v) for v in example.values()))
    for port, name in zip(converted.inputs, example, strict=True):
        port.get_tensor().set_names({name})
    config = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}
    compressed = nncf.compress_weights(converted.clone())  # NNCF rewrites the model it is given in place
    fp32 = core.compile_model(converted, "CPU", config)
    note["openvino_peer_default_precision"] = str(fp32.get_property("INFERENCE_PRECISION_HINT"))
    f32 = {**config, "INFERENCE_PRECISION_HINT": "f32"}

    def runner(compiled: Any) -> Callable[[dict], Any]:
        request = compiled.create_infer_request()
        return lambda feeds: np.array(request.infer({k: feeds[k] for k in example})[compiled.outputs[0]])

    return {
        "pytorch_eager": eager,
        "openvino_fp32_peer": runner(fp32),  # the CPU plugin's default precision (bf16 on a CPU with AVX512_BF16)
        "openvino_int8_weights_peer": runner(core.compile_model(compressed, "CPU", config)),
        "openvino_fp32_peer_f32": runner(core.compile_model(converted, "CPU", f32)),  # as packager's runtime runs an IR
        "openvino_int8_weights_peer_f32": runner(core.compile_model(compressed, "CPU", f32)),
    }


def min_cosine(runs: dict[str, Callable[[dict], Any]], tokenize: Callable[[list[str]], dict], texts: list[str]) -> dict[str, float]:
    """Each row's min cosine against PyTorch eager on ``texts``, one sentence at a time (no padding)."""
    import numpy as np

    worst = dict.fromkeys(runs, 1.0)
    for text in texts:
        feeds = tokenize([text])
        want = np.asarray(runs["pytorch_eager"](feeds), dtype=np.float64).ravel()
        for name, fn in runs.items():
            got = np.asarray(fn(feeds), dtype=np.float64).ravel()
            cosine = float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got)))
            worst[name] = min(worst[name], cosine)
    return {k: round(v, 5) for k, v in worst.items()}


def side_by_side(runs: dict[str, Callable[[dict], Any]], tokenize: Callable[[list[str]], dict], long_text: str) -> dict[str, Any]:
    """Median ms per row at each setting, interleaved rounds, and each row's time over packager's fp32 ONNX."""
    import numpy as np

    figures: dict[str, Any] = {}
    for batch, tokens in SETTINGS:
        feeds = {k: np.ascontiguousarray(v[:, :tokens]) for k, v in tokenize([long_text] * batch).items()}
        assert all(v.shape == (batch, tokens) for v in feeds.values()), {k: v.shape for k, v in feeds.items()}
        samples: dict[str, list[float]] = {k: [] for k in runs}
        for fn in runs.values():  # warm-up: first-call allocations and OpenVINO's shape-specific kernels
            fn(feeds)
            fn(feeds)
        count = 20 if batch == 1 else 3
        names = list(runs)
        for round_ in range(ROUNDS):
            # each round starts one row later: a fixed order measured the first row (always "chosen") 1.08-1.16x slower
            # than the same package loaded again as a later row (1x32 / 1x128, 15 rounds, load 4)
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                fn = runs[name]
                started = time.perf_counter()
                for _ in range(count):
                    fn(feeds)
                samples[name].append((time.perf_counter() - started) / count * 1000)
        med = {k: statistics.median(v) for k, v in samples.items()}
        base = med["onnx_fp32"]
        peers_only = {k: v for k, v in med.items() if "_peer" in k or k == "pytorch_eager"}
        fastest_peer = min(peers_only, key=peers_only.__getitem__)
        figures[f"{batch}x{tokens}"] = {
            "ms": {k: round(v, 3) for k, v in med.items()},
            "vs_onnx_fp32": {k: round(v / base, 3) for k, v in med.items()},
            "fastest_peer": fastest_peer,
            "chosen_vs_fastest_peer": round(med["chosen"] / peers_only[fastest_peer], 3),
            "vs_fastest_peer": {k: round(v / peers_only[fastest_peer], 3) for k, v in med.items()},
            "eager_vs_chosen": round(med["pytorch_eager"] / med["chosen"], 3),
            "load": round(os.getloadavg()[0], 1),
        }
        print(f"  minilm {batch}x{tokens}: {figures[f'{batch}x{tokens}']}", flush=True)
    return figures


def measure(folder: Path, best: Path, packages: dict[str, Path], held_out: list[str], long_text: str) -> dict[str, Any]:
    """The whole comparison: ``packages`` maps row names (onnx_fp32, onnx_int8, ...) to package folders."""
    from packager.text import TextPlan

    plan = TextPlan.from_package(best, "text")
    example = plan.tokenize(held_out[:2])
    note: dict[str, Any] = {"optimum": optimum_status()}
    runs: dict[str, Callable[[dict], Any]] = {"chosen": packaged(best)}
    runs.update({name: packaged(path) for name, path in packages.items()})
    runs.update(peers(module_of(folder), example, note))
    return {
        "rows": list(runs),
        "notes": note,
        "min_cosine_vs_eager": min_cosine(runs, plan.tokenize, held_out),
        "settings": side_by_side(runs, plan.tokenize, long_text),
    }
