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
    for where, tensor in tensors(model, "model"):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            source = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise UnsafeModelError(
                f"{path.name}: tensor {tensor.name!r} ({where}) is read from the external file {source!r}",
                "packager loads ONNX models with every tensor stored in the file; " + TRUST_HINT,
            )
    local = {(f.domain, f.name) for f in model.functions}  # model-local functions (torch.onnx's dynamo export writes them)
    for where, node in messages(model, "model", "onnx.NodeProto"):
        if node.domain not in SHIPPED_DOMAINS and (node.domain, node.op_type) not in local:
            raise UnsafeModelError(
                f"{path.name}: node {node.name or node.op_type!r} ({where}) is operator {node.op_type} of the custom "
                f"domain {node.domain!r}, run by whatever custom-op library provides it",
                TRUST_HINT,
            )


def tensors(message: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every TensorProto inside ``message`` (initializers, sparse initializers' values and indices, attributes of every
    kind, subgraphs, model-local functions, training info, and any field a later ONNX adds). A list of places missed a
    Constant's ``sparse_value`` and the nodes of ``model.functions`` (issue 21 finding 2): both named a file onnxruntime
    read into the outputs."""
    return messages(message, where, "onnx.TensorProto")


def messages(message: Any, where: str, kind: str) -> Iterator[tuple[str, Any]]:
    """Every message of type ``kind`` (a full protobuf name) inside ``message``, found by one walk over the set fields
    of every message (ListFields, from the descriptors): a place the schema adds cannot be missed."""
    pending = [(where, message)]
    while pending:
        here, current = pending.pop()
        if current.DESCRIPTOR.full_name == kind:
            yield here, current
        name = getattr(current, "name", "") or getattr(current, "op_type", "")
        for field, value in current.ListFields():
            if field.message_type is None:
                continue
            label = f"{here} > {name}.{field.name}" if name else f"{here}.{field.name}"
            items = value.values() if field.message_type.GetOptions().map_entry else value if _repeated(field) else [value]
            pending.extend((label, item) for item in items)


def _repeated(field: Any) -> bool:
    label = getattr(field, "label", None)  # protobuf >= 5 marks repeated fields with is_repeated; older with label 3
    return bool(getattr(field, "is_repeated", label == field.LABEL_REPEATED))
