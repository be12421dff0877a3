"""Runtime-settings candidates of ``packager optimize``: the same ONNX graph run with other onnxruntime settings
(graph optimization level, execution mode) or rewritten by ``onnxruntime.transformers``' fusion. They change speed,
not what the model computes, so each is a variant of a candidate already judged against the source (its parent).

A variant is not taken on faith: its outputs on every held-out row are compared with its parent's, in its own runtime
with its settings. Floats may move by float32 reordering (fused kernels sum in another order); a variant whose outputs
move by more than ``MAX_REL_CHANGE`` of the parent's magnitude is over budget. Its fidelity is the parent's, moved by
what was measured (errors grow by the change, scores shrink by it, label agreement by the rows whose label changed):
a bound that holds for the variant, never a copy of the parent's figures.

The settings are written into the package (``conversion.runtime_options``), and the ONNX runtime reads them at every
load (``converters.onnx.package_settings``), so ``OUT/best`` runs in predict/bench/serve as it was measured here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

LEVELS = ("basic", "extended")  # "all" is onnxruntime's default: that is the parent itself
# fused operators of onnxruntime.transformers' BERT-family optimizer; none fused: the graph is not a transformer's
FUSED = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu")
MAX_REL_CHANGE = 1e-3  # fused float32 kernels moved MiniLM's embeddings by ~1e-6 relative here; 1e-3 is a change of meaning


@dataclass(frozen=True)
class Setting:
    """One runtime setting to try on a parent candidate."""

    suffix: str
    options: dict[str, str] = field(default_factory=dict)
    fuse: bool = False
    tree_blocks: bool = False  # the tree ensemble split into one operator per tree (``_split_trees``)


def settings_for(package: str, fmt: str, quantize: str | None, threads: int, batch: int | None = None) -> list[Setting]:
    """The variants worth building from an ONNX candidate: the two lower graph levels, the parallel executor when
    there are threads to run it, the transformer fusion for an fp32 graph with attention (fusing a quantized
    graph finds nothing: its MatMuls are already integer operators), and tree blocks for a tree ensemble at batches
    of TREE_BLOCKS_MIN_BATCH rows or more (``batch`` None: offered)."""
    if fmt != "onnx":
        return []
    found = [Setting(f"ort-{level}", {"graph_optimization_level": level}) for level in LEVELS]
    if threads > 1:  # with one thread the parallel executor has nobody to run in parallel
        found.append(Setting("parallel", {"execution_mode": "parallel"}))
    if quantize is None and _has_attention(Path(package)):
        found.append(Setting("fusion", fuse=True))
    if quantize is None and (batch is None or batch >= TREE_BLOCKS_MIN_BATCH) and _tree_ensemble(Path(package)) is not None:
        found.append(Setting("tree-blocks", tree_blocks=True))
    return found


def _has_attention(package: Path) -> bool:
    import onnx

    from packager.package import read_manifest

    model = onnx.load(str(package / read_manifest(package).model_file), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    return {"Softmax", "MatMul"} <= ops


def build_variant(parent_package: str, setting: Setting, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Copy the parent package to ``folder`` with ``setting`` applied; return it and what was done (recorded)."""
    from packager.package import MANIFEST, digest_files, read_manifest

    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(parent_package, folder)
    manifest = read_manifest(folder)
    done: dict[str, Any] = dict(setting.options)
    if setting.fuse:
        done["transformer_fusion"] = _fuse(folder / manifest.model_file)
    if setting.tree_blocks:
        done["tree_blocks"] = _split_trees(folder / manifest.model_file)
    data = json.loads((folder / MANIFEST).read_text())
    conversion = dict(data.get("conversion") or {})
    if setting.options:
        conversion["runtime_options"] = {**(conversion.get("runtime_options") or {}), **setting.options}
    if setting.fuse:
        conversion["transformer_fusion"] = done["transformer_fusion"]
    if setting.tree_blocks:
        conversion["tree_blocks"] = done["tree_blocks"]
    if setting.fuse or setting.tree_blocks:  # the model file was rewritten
        data["files"] = {k: v for k, v in digest_files(folder).items() if k != MANIFEST}
    data["conversion"] = conversion
    (folder / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
    return folder, done


def _fuse(model: Path) -> dict[str, int]:
    """``onnxruntime.transformers.optimizer.optimize_model`` (offline fusion only, opt_level 0: onnxruntime still
    applies its own graph optimizations at load), written over the copy's model file."""
    from onnxruntime.transformers import optimizer

    from packager.errors import NotQuantizable

    fused = optimizer.optimize_model(str(model), model_type="bert", opt_level=0, use_gpu=False)
    stats = {k: int(v) for k, v in (fused.get_fused_operator_statistics() or {}).items() if k in FUSED and v}
    if not stats:
        raise NotQuantizable("the transformer fusion found nothing to fuse in this graph", "it is not a BERT-family encoder")
    fused.save_model_to_file(str(model))
    return stats


# ---------------------------------------------------------------- a tree ensemble, one operator per tree
# onnxruntime's TreeEnsemble walks each row through every tree: RandomForest 200 trees of depth 12 (293,492 nodes) ran
# at 0.89x scikit-learn at 16,384 rows, 1 thread. The same trees as k operators, each over all rows, summed (load 1.9,
# 5 interleaved rounds): k=10 1.07x, 20 1.12x, 40 1.23x, 200 (one tree each) 1.47x; max abs diff 2-9e-7. Only an
# ensemble whose scores are plain sums (post_transform NONE, aggregate SUM) is split: the sum of the parts is the whole.
# one operator per tree costs a kernel call each: the 200-tree forest in one graph vs split, 1 thread, load 4.8: batch 1
# 0.009 vs 0.080 ms (0.11x), 64 rows 0.96x, 1,024 rows 1.35x, 4,096 1.27x: offered from 1,024 rows
TREE_BLOCKS_MIN_BATCH = 1024
_NODE_KEYS = (
    "nodes_falsenodeids", "nodes_featureids", "nodes_hitrates", "nodes_missing_value_tracks_true", "nodes_modes",
    "nodes_nodeids", "nodes_treeids", "nodes_truenodeids", "nodes_values",
)  # fmt: skip


def _tree_ensemble(package: Path) -> Any:
    """The package's one ai.onnx.ml TreeEnsembleClassifier/Regressor with plain summed scores over 2+ trees, or None."""
    import onnx

    from packager.package import read_manifest

    model = onnx.load(str(package / read_manifest(package).model_file) if package.is_dir() else str(package))
    found = [n for n in model.graph.node if n.domain == "ai.onnx.ml" and n.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor")]
    if len(found) != 1:
        return None
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in found[0].attribute}
    plain = attrs.get("post_transform", b"NONE") == b"NONE" and attrs.get("aggregate_function", b"SUM") == b"SUM"
    if (
        not plain
        or not set(attrs) >= set(_NODE_KEYS)
        or any(k.endswith("_as_tensor") for k in attrs)
        or len(set(attrs["nodes_treeids"])) < 2
    ):
        return None
    return model, found[0], attrs


def _split_trees(path: Path) -> int:
    """Rewrite the ensemble at ``path`` as one TreeEnsembleRegressor per tree, summed, with the original outputs: a
    regressor's sum as is; a classifier's class scores (onnxruntime's binary form, one score column s of positive
    weights, as [1 - s, s]) and the label of the highest score (ties: the first, as onnxruntime's s > 0.5)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from packager.errors import NotQuantizable

    found = _tree_ensemble(path)
    if found is None:
        raise NotQuantizable("no tree ensemble with summed scores to split", "tree blocks apply to TreeEnsemble operators")
    model, node, attrs = found
    classifier = node.op_type == "TreeEnsembleClassifier"
    prefix = "class" if classifier else "target"
    ids = np.asarray(attrs[f"{prefix}_ids"])
    labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or []
    binary = classifier and len(labels) == 2 and len(set(ids.tolist())) == 1
    if binary and min(attrs["class_weights"]) < 0:
        raise NotQuantizable("a binary ensemble with negative scores", "onnxruntime's form for it is not split here")
    width = 1 if binary else (len(labels) if classifier else int(attrs.get("n_targets", 1)))
    tree_of_node, tree_of_leaf = np.asarray(attrs["nodes_treeids"]), np.asarray(attrs[f"{prefix}_treeids"])
    base = list(attrs.get("base_values") or [])
    x, tag = node.input[0], node.name or "trees"
    parts, new = [], []
    for number, tree in enumerate(np.unique(tree_of_node)):
        at, leaves = np.flatnonzero(tree_of_node == tree), np.flatnonzero(tree_of_leaf == tree)
        kwargs: dict[str, Any] = {key: [attrs[key][i] for i in at] for key in _NODE_KEYS}
        kwargs.update(
            n_targets=width,
            target_ids=[0 if binary else int(ids[i]) for i in leaves],
            target_nodeids=[attrs[f"{prefix}_nodeids"][i] for i in leaves],
            target_treeids=[attrs[f"{prefix}_treeids"][i] for i in leaves],
            target_weights=[attrs[f"{prefix}_weights"][i] for i in leaves],
            aggregate_function="SUM",
            post_transform="NONE",
        )
        if number == 0 and base:
            kwargs["base_values"] = base
        parts.append(f"{tag}_tree{number}")
        new.append(helper.make_node("TreeEnsembleRegressor", [x], [parts[-1]], domain="ai.onnx.ml", name=parts[-1], **kwargs))
    total = f"{tag}_sum"
    new.append(helper.make_node("Sum", parts, [total], name=total))
    if not classifier:
        new.append(helper.make_node("Identity", [total], [node.output[0]], name=f"{tag}_out"))
    else:
        label_out, scores_out = node.output[0], node.output[1]
        if binary:
            one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), f"{tag}_one")
            new.append(helper.make_node("Constant", [], [one.name], value=one))
            new.append(helper.make_node("Sub", [one.name, total], [f"{tag}_neg"]))
            new.append(helper.make_node("Concat", [f"{tag}_neg", total], [scores_out], axis=1))
        else:
            new.append(helper.make_node("Identity", [total], [scores_out]))
        new.append(helper.make_node("ArgMax", [scores_out], [f"{tag}_best"], axis=1, keepdims=0))
        table = helper.make_tensor(
            f"{tag}_labels",
            TensorProto.STRING if attrs.get("classlabels_strings") else TensorProto.INT64,
            [len(labels)],
            list(labels),
        )
        new.append(helper.make_node("Constant", [], [table.name], value=table))
        new.append(helper.make_node("Gather", [table.name, f"{tag}_best"], [label_out], axis=0))
    position = list(model.graph.node).index(node)
    kept = list(model.graph.node)
    model.graph.ClearField("node")
    model.graph.node.extend(kept[:position] + new + kept[position + 1 :])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(parts)


def judge_variant(
    variant: Path, parent: str, held_out: Path, parent_fidelity: dict[str, float | None], text_column: str | None, threads: int
) -> tuple[dict[str, float | None], str]:
    """The variant's fidelity against the source, bounded from its parent's and the change measured between the two on
    every held-out row (both in onnxruntime here: ONNX files are data, checked as any package is); and a reason when
    the change is beyond float32 reordering ('' otherwise)."""
    import numpy as np

    changes = _compare(_outputs(Path(parent), held_out, text_column, threads), _outputs(variant, held_out, text_column, threads))
    rel = max((c["rel"] for c in changes.values()), default=0.0)
    abs_ = max((c["abs"] for c in changes.values()), default=0.0)
    flipped = max((c["flipped"] for c in changes.values()), default=0.0)
    measured = dict(parent_fidelity)
    for key in ("max_abs_diff", "max_rel_diff"):
        if measured.get(key) is not None:
            measured[key] = float(measured[key] or 0.0) + (abs_ if key == "max_abs_diff" else rel)
    for key in ("cosine", "r2"):
        if measured.get(key) is not None:
            measured[key] = float(measured[key] or 0.0) - 2 * rel
    for key in ("agreement", "top1"):
        if measured.get(key) is not None:
            measured[key] = float(measured[key] or 0.0) - flipped
    measured["change_vs_parent_rel"] = float(np.float64(rel))
    if rel > MAX_REL_CHANGE or flipped > 0:
        worst = max(changes, key=lambda k: (changes[k]["flipped"], changes[k]["rel"]))
        return measured, (
            f"the settings changed output {worst!r} vs its parent: {changes[worst]['rel']:.3g} relative, "
            f"{changes[worst]['flipped']:.3%} of rows' labels (allowed: {MAX_REL_CHANGE:g}, none)"
        )
    return measured, ""


def _outputs(package: Path, rows: Path, text_column: str | None, threads: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from packager.inference import load_predictor, predict_file, resolve

    predictor = load_predictor(resolve(package), threads=threads)
    out = package.with_name(package.name + ".outputs.parquet")
    predict_file(predictor, rows, out, batch_size=256, text_column=text_column, overwrite=True)
    table = pq.read_table(out)
    out.unlink()
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _compare(want: dict[str, Any], got: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per output: the largest absolute and relative (to the parent's largest magnitude) change, and the share of rows
    whose label (a non-float output, or a float row's argmax) changed."""
    import numpy as np

    from packager.errors import ValidationFailed

    if set(want) != set(got):
        raise ValidationFailed(f"the variant's outputs {sorted(got)} are not its parent's {sorted(want)}", "report this as a bug")
    changes = {}
    for name, values in want.items():
        a, b = np.asarray(values, dtype=object), np.asarray(got[name], dtype=object)
        fa: Any = None
        fb: Any = None
        try:
            fa, fb = np.asarray(values, dtype=np.float64), np.asarray(got[name], dtype=np.float64)
        except (TypeError, ValueError):
            pass  # strings, ragged lists: compared as labels below
        if fa is None or fb is None or fa.shape != fb.shape or not np.issubdtype(np.asarray(values).dtype, np.floating):
            flipped = float(np.mean([x != y for x, y in zip(a.tolist(), b.tolist(), strict=True)])) if len(a) else 0.0
            changes[name] = {"abs": 0.0 if flipped == 0 else float("inf"), "rel": 0.0 if flipped == 0 else float("inf"), "flipped": flipped}
            continue
        diff = float(np.max(np.abs(fa - fb))) if fa.size else 0.0
        scale = max(float(np.max(np.abs(fa))) if fa.size else 0.0, 1e-12)
        flipped = float(np.mean(fa.argmax(axis=-1) != fb.argmax(axis=-1))) if fa.ndim == 2 and fa.shape[1] > 1 else 0.0
        changes[name] = {"abs": diff, "rel": diff / scale, "flipped": flipped}
    return changes


def variant_candidate(parent: Any, setting: Setting) -> Any:
    """The variant's row in the search (a ``packager.optimize.Candidate``)."""
    return replace(
        parent,
        id=f"{parent.id}+{setting.suffix}",
        options={
            **parent.options,
            "parent": parent.id,
            **setting.options,
            **({"transformer_fusion": True} if setting.fuse else {}),
            **({"tree_blocks": True} if setting.tree_blocks else {}),
        },
        status="",
        reason="",
        latency_ms=None,
        p95_ms=None,
        rows_per_s=None,
        peak_rss_mb=None,
        package="",
    )
