"""ONNX: a graph of operators, no code, with two ways to reach outside itself. External data: an
initializer stored in "another file" names that file's path, and onnxruntime reads it (``../../etc/passwd``
or ``/root/.ssh/id_rsa`` become weights, and so outputs). Custom operator domains: onnxruntime resolves
them to kernels of custom-op libraries a session may have loaded. Untrusted files get neither: every tensor
is stored in the file, and every node is in a domain onnxruntime ships (ai.onnx, ai.onnx.ml, com.microsoft)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from packager.errors import InputFileError, UnsafeModelError, first_line
from packager.safety.pickles import TRUST_HINT

SHIPPED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"})


def check_onnx(path: str | Path) -> None:
    path = Path(path)
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except ImportError:
        return  # no onnx package: no runtime here opens the file either (the runtime needs onnxruntime + onnx)
    except Exception as exc:
        raise InputFileError(
            f"{path.name} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc)})",
            "the file is truncated or corrupt; re-export it",
        ) from None
    for where, tensor in _tensors(model.graph, "graph"):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            source = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise UnsafeModelError(
                f"{path.name}: tensor {tensor.name!r} ({where}) is read from the external file {source!r}",
                "packager loads ONNX models with every tensor stored in the file; " + TRUST_HINT,
            )
    local = {(f.domain, f.name) for f in model.functions}  # model-local functions (torch.onnx's dynamo export writes them)
    bodies = [(f"function {f.domain}.{f.name}", node) for f in model.functions for node in f.node]
    for where, node in [*_nodes(model.graph, "graph"), *bodies]:
        if node.domain not in SHIPPED_DOMAINS and (node.domain, node.op_type) not in local:
            raise UnsafeModelError(
                f"{path.name}: node {node.name or node.op_type!r} ({where}) is operator {node.op_type} of the custom "
                f"domain {node.domain!r}, run by whatever custom-op library provides it",
                TRUST_HINT,
            )


def _subgraphs(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def _nodes(graph: Any, where: str) -> Iterator[tuple[str, Any]]:
    for node in graph.node:
        yield where, node
        for sub in _subgraphs(node):
            yield from _nodes(sub, f"{where} > {node.op_type} {node.name!r}")


def _tensors(graph: Any, where: str) -> Iterator[tuple[str, Any]]:
    for tensor in graph.initializer:
        yield where, tensor
    for sparse in graph.sparse_initializer:
        yield where, sparse.values
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield f"{where} > attribute of {node.op_type} {node.name!r}", attribute.t
            yield from ((f"{where} > attribute of {node.op_type}", t) for t in attribute.tensors)
        for sub in _subgraphs(node):
            yield from _tensors(sub, f"{where} > {node.op_type} {node.name!r}")
