"""Scan a torch.export ``.pt2`` program (``models/*.json``) before ``torch.export.load`` reads it.

A .pt2 graph is data, but three parts of it become code when torch loads or runs it (measured on
torch 2.13): a node's ``target`` string is resolved by attribute lookup from ``torch``, ``math`` or
``_operator`` (so ``torch.from_file`` or ``torch.ops.aten.from_file.default`` becomes a call); every
symbolic-shape ``expr_str`` is passed to ``sympy.sympify``, which evaluates Python (an edited
``expr_str`` created a file on ``torch.export.load``); and ``guards_code`` lines are pasted into a
function that is ``exec``-ed and run before the first forward. So: targets go through the operator
allow-list, expressions and guards through a small grammar of names, numbers and calls to listed
sympy functions, checked with :mod:`ast` (no attributes, no dunders, no unlisted callables).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Iterator

from packager.errors import InputFileError, UnsafeModelError
from packager.safety.torch_ops import op_refusal

HINT = "the exported program refers to code we do not run on untrusted files; if you trust its origin, rerun with --trust (API: trust=True)"

# Python-level targets torch.export writes for symbolic-shape arithmetic (torch/_export/serde).
OPERATOR_TARGETS = frozenset(
    {
        "getitem",
        "add",
        "sub",
        "mul",
        "floordiv",
        "truediv",
        "mod",
        "neg",
        "pos",
        "pow",
        "abs",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and_",
        "or_",
        "not_",
        "xor",
    }
)
TORCH_TARGETS = frozenset(
    {
        "torch.sym_int",
        "torch.sym_float",
        "torch.sym_max",
        "torch.sym_min",
        "torch.sym_not",
        "torch.sym_ite",
        "torch.sym_sum",
        "torch.sym_sqrt",
        "torch._sym_sqrt",
    }
)
MATH_TARGETS = frozenset({"ceil", "floor", "sqrt", "trunc", "exp", "log", "log2", "pow", "fabs", "isnan", "isinf"})
# Callables a symbolic expression may use: sympy core and torch.utils._sympy.functions (the
# deserializer's sympy_functions). Anything else in sympy's namespace may run code (lambdify, preview, var...).
SYMPY_CALLS = frozenset(
    """
Symbol Integer Rational Float Add Mul Pow Mod Max Min Abs Eq Ne Lt Le Gt Ge StrictLessThan StrictGreaterThan LessThan
GreaterThan Equality Unequality And Or Not Piecewise ITE floor ceiling sqrt
FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv LShift RShift PowByNatural FloatPow
FloatTrueDiv IntTrueDiv IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity
""".split()
)
CONSTANT_NAMES = frozenset({"oo", "zoo", "nan", "true", "false", "True", "False", "S", "inf"})
SYMBOL = re.compile(r"^[a-z]{1,8}\d+$")
GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})


def check_program_json(data: bytes, label: str) -> None:
    """Refuse a serialized ExportedProgram whose targets, expressions or guards are not allowed."""
    try:
        program = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{label} is not valid JSON ({exc})", "the file is truncated or corrupt; re-export it") from None
    for node in _nodes(program):
        target = node.get("target")
        why = target_refusal(target) if isinstance(target, str) else "a node target that is not a string"
        if why:
            raise UnsafeModelError(f"{label}: node {node.get('name', '?')!r} calls {target}: {why}", HINT)
    for path, text in _strings_under(program, "expr_str"):
        why = expression_refusal(text)
        if why:
            raise UnsafeModelError(f"{label}: symbolic expression at {path} is not plain arithmetic ({why}): {text[:80]!r}", HINT)
    if isinstance(program, dict):
        for key, kind in (("range_constraints", dict), ("guards_code", list)):
            if not isinstance(program.get(key) or kind(), kind):  # an int here was a TypeError (fuzzer)
                raise InputFileError(
                    f"{label}: {key} is a {type(program[key]).__name__}, not a {kind.__name__}",
                    "the file is truncated or corrupt; re-export it",
                )
        for key in program.get("range_constraints") or {}:
            if not SYMBOL.match(str(key)):
                raise UnsafeModelError(f"{label}: range constraint on {str(key)[:80]!r}, which is not a symbol name", HINT)
        for line in program.get("guards_code") or []:
            why = expression_refusal(line, guard=True) if isinstance(line, str) else "not a string"
            if why:
                raise UnsafeModelError(f"{label}: guard {str(line)[:80]!r} is not a shape check ({why})", HINT)


def target_refusal(target: str) -> str | None:
    """Why a node target may not be called, or None. Forms: torch.ops.NS.OP.OVERLOAD, _operator.X, math.X, torch.sym_*."""
    parts = target.split(".")
    if parts[:2] == ["torch", "ops"] and len(parts) in (4, 5):
        return op_refusal(f"{parts[2]}::{parts[3]}")
    if parts[0] == "_operator" and len(parts) == 2:
        return None if parts[1] in OPERATOR_TARGETS else "not an arithmetic operator"
    if parts[0] == "math" and len(parts) == 2:
        return None if parts[1] in MATH_TARGETS else "not a listed math function"
    if target in TORCH_TARGETS:
        return None
    return "not an operator reference torch.export writes for a model (torch.ops.NS.OP, _operator.X, math.X)"


def expression_refusal(text: str, guard: bool = False) -> str | None:
    """Why ``text`` is not a plain symbolic-shape expression (or, with ``guard``, a shape guard), or None."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:
        return f"it does not parse: {exc.__class__.__name__}"
    for node in ast.walk(tree):
        if isinstance(
            node,
            (
                ast.Expression,
                ast.BinOp,
                ast.UnaryOp,
                ast.BoolOp,
                ast.Compare,
                ast.operator,
                ast.unaryop,
                ast.boolop,
                ast.cmpop,
                ast.Load,
                ast.keyword,
                ast.Tuple,
            ),
        ):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool, str)) and "__" not in str(node.value):
            continue
        if isinstance(node, ast.Name) and (
            node.id in SYMPY_CALLS or node.id in CONSTANT_NAMES or SYMBOL.match(node.id) or guard and node.id == "L"
        ):
            continue
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in SYMPY_CALLS:
                continue
            if guard and isinstance(func, ast.Attribute) and func.attr in GUARD_METHODS:
                continue
            return "a call to something other than a listed sympy function"
        if guard and isinstance(node, ast.Subscript):
            continue
        if guard and isinstance(node, ast.Attribute) and node.attr in GUARD_METHODS:
            continue
        return f"{type(node).__name__} is not allowed"
    return None


def _nodes(value: Any) -> Iterator[dict]:
    """Every graph node, nested subgraphs (control flow) included."""
    if isinstance(value, dict):
        if "target" in value and "inputs" in value:
            yield value
        for item in value.values():
            yield from _nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _strings_under(value: Any, key: str, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, item in value.items():
            if k == key and isinstance(item, str):
                yield f"{path}/{k}", item
            else:
                yield from _strings_under(item, key, f"{path}/{k}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings_under(item, key, f"{path}/{i}")
