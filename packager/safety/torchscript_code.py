"""Scan the TorchScript source a ``.pt`` archive carries (``code/**/*.py``) before torch compiles it.

The text must be checked before ``torch.jit.load``: loading runs code (every ``__setstate__`` of a
scripted module or TorchScript class runs while ``data.pkl`` is unpickled; measured: a
``__setstate__`` calling ``torch.from_file(path, True, 8)`` created the file on ``torch.jit.load``
with no forward). The serialized source is a Python subset that TorchScript's importer resolves
with a fixed environment (torch/csrc/jit/serialization/import_source.cpp): ``torch.X`` is
``aten::X``, ``ops.NS.X`` is ``NS::X``, ``__torch__.*`` are the archive's own classes and
functions (and ``__torch__.torch.classes.NS.*`` are C++ classes), a method call ``value.X(...)``
on a tensor, string, list or dict is ``aten::X``, and a few builtins (``len``, ``print`` ...).
We parse it with :mod:`ast` and check every one of those references, called or not, against the
operator allow-list (:mod:`packager.safety.torch_ops`). What we cannot resolve is refused.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from packager.errors import UnsafeModelError
from packager.safety.torch_ops import DENIED, op_refusal

HINT = "the model's code calls an operator we do not run on untrusted files; if you trust its origin, rerun with --trust (API: trust=True)"

# Builtins the TorchScript compiler resolves by name (ir_emitter.cpp's globals) that only compute.
# ``print`` is not here: it is prim::Print.
BUILTINS = frozenset(
    """
len int float bool str complex range enumerate zip isinstance getattr hasattr annotate uninitialized unchecked_cast
min max abs all any sum list dict tuple round divmod ord chr sorted hash id hex oct bin fork awaitable awaitable_wait
awaitable_nowait wait Tensor Optional List Dict Tuple NoneType Future Await Union Any number Device Stream inf nan
""".split()
)
# Torchbind (C++) classes a model may hold: the int8 packed weights dynamic quantization emits
# (quantized.LinearPackedParamsBase, rnn.CellParamsBase for LSTM/GRU). Others (dist_c10d ...) open sockets.
TORCHBIND_NAMESPACES = frozenset({"quantized", "rnn"})
# Second look at the raw text, independent of the parse: the names of file/print operators and
# custom namespaces, wherever they appear, so that a difference between Python's parser and
# TorchScript's cannot hide one.
RAW = re.compile(r"\b(from_file|_from_file|load_tensor|PythonOp|_print)\b|\bsave\s*\(|\bprint\s*\(|\bload_library\b")
NOT_TORCHSCRIPT = (
    ast.Lambda,
    ast.Import,
    ast.ImportFrom,
    ast.Global,
    ast.Nonlocal,
    ast.AsyncFunctionDef,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
)
RAW_OPS = re.compile(r"\bops\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Refusal:
    """One reference the code makes that may not run, and where."""

    member: str
    where: str
    what: str
    why: str

    def error(self, label: str) -> UnsafeModelError:
        return UnsafeModelError(f"{label}:{self.member} calls {self.what} in {self.where}: {self.why}", HINT)


def check_torchscript_code(text: str, member: str, label: str) -> None:
    """Raise UnsafeModelError naming the first operator of ``text`` that is not allowed."""
    refusal = scan_code(text, member)
    if refusal:
        raise refusal.error(label)


def scan_code(text: str, member: str) -> Refusal | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        return Refusal(member, "its source", "code we cannot parse", f"{type(exc).__name__}: {exc}")
    found = _Scanner(member, _defined_names(tree)).scan(tree)
    if found:
        return found
    raw = RAW.search(text)  # the parse saw nothing: a name TorchScript's own parser might still read as an operator
    if raw:
        what = raw.group(0).rstrip("( ")
        return Refusal(
            member,
            f"line {text.count(chr(10), 0, raw.start()) + 1}",
            what,
            DENIED.get(f"aten::{what}") or DENIED.get(f"prim::{what}") or "a file, print or native-library operation",
        )
    for found_ops in RAW_OPS.finditer(text):
        if found_ops.group(1) not in ("aten", "prim", "quantized", "_quantized"):
            return Refusal(
                member,
                f"line {text.count(chr(10), 0, found_ops.start()) + 1}",
                f"ops.{found_ops.group(1)}",
                f"operator namespace {found_ops.group(1)!r} is not on the allow-list",
            )
    return None


def _defined_names(tree: ast.Module) -> frozenset[str]:
    """Methods, attributes and locals the archive's code defines (a call to one is not an operator)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return frozenset(names)


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None when the root is not a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


class _Scanner:
    def __init__(self, member: str, defined: frozenset[str]) -> None:
        self.member, self.defined, self.where = member, defined, "module level"

    def scan(self, tree: ast.Module) -> Refusal | None:
        for node in tree.body:
            found = self._statement(node, "")
            if found:
                return found
        return None

    def _statement(self, node: ast.AST, owner: str) -> Refusal | None:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Lambda, ast.AsyncFunctionDef)):
            return self._refuse(node, type(node).__name__.lower(), "not TorchScript")
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                found = self._statement(item, node.name)
                if found:
                    return found
            return None
        if isinstance(node, ast.FunctionDef):
            self.where = f"{owner}.{node.name}" if owner else node.name
        return self._expressions(node)

    def _expressions(self, root: ast.AST) -> Refusal | None:
        inner: set[int] = set()  # a.b of a.b.c under torch/ops/__torch__: judged with the whole chain
        for node in ast.walk(root):  # breadth first: an outer attribute comes before the ones it holds
            found = None
            if isinstance(node, ast.Attribute) and id(node) not in inner:
                chain = _chain(node)
                if chain and chain[0] in ("torch", "ops", "__torch__"):
                    value = node.value
                    while isinstance(value, ast.Attribute):
                        inner.add(id(value))
                        value = value.value
                found = self._attribute(node)
            elif isinstance(node, ast.Call):
                found = self._call(node)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in ("torch", "ops"):
                found = None  # judged with the attribute chain it heads
            elif isinstance(node, NOT_TORCHSCRIPT):
                found = self._refuse(node, type(node).__name__.lower(), "not TorchScript")
            if found:
                return found
        return None

    def _attribute(self, node: ast.Attribute) -> Refusal | None:
        chain = _chain(node)
        if chain and chain[0] == "torch":
            return self._torch(node, chain)
        if chain and chain[0] == "ops":
            if len(chain) < 3:
                if len(chain) == 2 and chain[1] in ("aten", "prim", "quantized", "_quantized"):
                    return None
                return self._refuse(node, ".".join(chain), "an incomplete operator reference")
            return self._op(node, f"{chain[1]}::{chain[2]}")
        if chain and chain[0] == "__torch__":
            if chain[1:3] == ["torch", "classes"] and len(chain) > 3 and chain[3] not in TORCHBIND_NAMESPACES:
                return self._refuse(node, ".".join(chain), f"C++ class namespace {chain[3]!r} is not on the allow-list")
            return None  # the archive's own classes and functions, resolved against its code
        return self._method(node, node.attr)

    def _torch(self, node: ast.Attribute, chain: list[str]) -> Refusal | None:
        middle = chain[1:-1]
        if middle and middle != ["autograd"]:
            # torch.autograd.X is aten::X too; torch.ops.*, torch.classes.* ... are not spellings the serializer writes
            return self._refuse(node, ".".join(chain), "not an operator reference the TorchScript serializer writes")
        return self._op(node, f"aten::{chain[-1]}")

    def _method(self, node: ast.Attribute, name: str) -> Refusal | None:
        """``value.name``: a method of a tensor/str/list/dict is aten::name; the archive's own methods are not operators."""
        if f"aten::{name}" in DENIED or f"prim::{name}" in DENIED:
            return self._op(node, f"aten::{name}" if f"aten::{name}" in DENIED else f"prim::{name}")
        if name in self.defined:
            return None
        from packager.safety.torch_ops import _registry

        if f"aten::{name}" in _registry():
            return self._op(node, f"aten::{name}")
        return None  # an attribute or property (shape, dtype, training ...): not an operator

    def _call(self, node: ast.Call) -> Refusal | None:
        func = node.func
        if isinstance(func, ast.Name):
            name = func.id
            if name == "print":
                return self._op(node, "prim::Print")
            if name in ("getattr", "hasattr"):
                return self._getattr(node)
            if name in BUILTINS or name in self.defined:
                return None
            return self._refuse(node, name, "a name TorchScript's importer does not define")
        return None  # attribute calls are judged by _attribute

    def _getattr(self, node: ast.Call) -> Refusal | None:
        if len(node.args) < 2 or not isinstance(node.args[1], ast.Constant) or not isinstance(node.args[1].value, str):
            return self._refuse(node, "getattr", "an attribute name that is not a literal")
        synthetic = ast.Attribute(value=node.args[0], attr=node.args[1].value, ctx=ast.Load())
        ast.copy_location(synthetic, node)
        return self._attribute(synthetic)

    def _op(self, node: ast.AST, qualified: str) -> Refusal | None:
        why = op_refusal(qualified)
        return self._refuse(node, qualified, why) if why else None

    def _refuse(self, node: ast.AST, what: str, why: str) -> Refusal:
        return Refusal(self.member, f"{self.where} (line {getattr(node, 'lineno', '?')})", what, why)
