"""The one place pickled files are opened: an allow-list of imports, checked before and during load.

A pickle runs code by importing a callable (GLOBAL / STACK_GLOBAL / INST) and calling it (REDUCE,
BUILD, NEWOBJ). We first walk the opcodes without executing anything and refuse any import that is
not on the allow-list, naming it and its byte offset; then we unpickle with an Unpickler whose
``find_class`` enforces the same list, so nothing the scan missed can slip through.

The allow-list admits *classes* from the numeric/ML stack (their constructors only build data) and
an explicit list of functions; module prefixes alone are not enough (``sklearn.utils._testing``
holds functions that run arbitrary Python, ``numpy.memmap`` writes files).
"""
from __future__ import annotations

import importlib
import io
import lzma
import pickle
import pickletools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from packager.errors import InputFileError, UnsafeModelError

TRUST_HINT = "inspect the file's origin; if you trust it, rerun with --trust (API: trust=True)"

# Packages whose *classes* may be rebuilt from a pickle.
CLASS_PACKAGES = ("sklearn", "numpy", "scipy", "pandas", "xgboost", "lightgbm", "skops")
# Sub-modules of those packages that are never needed by a model and hold dangerous code.
DENIED_MODULE_PREFIXES = (
    "sklearn.utils._testing", "sklearn.datasets", "sklearn.externals", "numpy.testing",
    "numpy.distutils", "numpy.f2py", "numpy.lib._npyio_impl", "numpy.lib.npyio", "pandas.io",
    "pandas.util", "pandas._testing", "scipy.io", "scipy._lib._testutils", "numpy._pytesttester",
)
DENIED_CLASSES = frozenset({"numpy.memmap", "numpy.core.memmap.memmap", "numpy._core.memmap.memmap"})
# Functions (not classes) that scikit-learn/numpy/pandas pickles call when rebuilt.
ALLOWED_FUNCTIONS = frozenset({
    "copyreg._reconstructor", "copyreg.__newobj__", "_codecs.encode",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
    "pandas._libs.internals._unpickle_block", "pandas.core.internals.blocks.new_block",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked", "pandas.core.indexes.base._new_Index",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "scipy.sparse._csr.csr_matrix", "sklearn.tree._tree.__pyx_unpickle_Tree",
    "sklearn.neighbors._kd_tree.newObj", "sklearn.neighbors._ball_tree.newObj",
    "sklearn.metrics._dist_metrics.newObj",  # Cython helper: cls.__new__(cls) for a DistanceMetric
})
ALLOWED_BUILTINS = frozenset({
    "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.complex", "builtins.bytearray",
    "builtins.object", "builtins.list", "builtins.dict", "builtins.tuple", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.str", "builtins.bytes", "builtins.range",
    "collections.OrderedDict", "collections.defaultdict", "collections.Counter", "collections.deque",
    "datetime.datetime", "datetime.date", "datetime.timedelta", "datetime.timezone", "decimal.Decimal",
    "functools.partial",
    "joblib.numpy_pickle.NumpyArrayWrapper", "joblib.numpy_pickle_compat.NDArrayWrapper",
    "joblib.numpy_pickle_compat.ZNDArrayWrapper",
})
_IMPORT_OPS = {"GLOBAL", "INST", "STACK_GLOBAL"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


@dataclass(frozen=True)
class PickleImport:
    """One import a pickle stream asks for, and where."""

    module: str
    name: str
    offset: int

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


def import_refusal(module: str, name: str) -> str | None:
    """Why ``module.name`` may not be imported by an untrusted pickle, or None if it may."""
    dotted = f"{module}.{name}"
    if dotted in ALLOWED_BUILTINS or dotted in ALLOWED_FUNCTIONS:
        return None
    top = module.split(".")[0]
    if top not in CLASS_PACKAGES:
        return f"module {module!r} is not on the allow-list"
    if module.startswith(DENIED_MODULE_PREFIXES):
        return f"module {module!r} is denied (it can run code or touch files)"
    obj = _resolve(module, name)
    if obj is None:
        return f"{dotted} does not exist in the installed {top}"
    if _is_cython_unpickler(module, name):
        return None
    if isinstance(obj, type):
        full = f"{obj.__module__}.{obj.__qualname__}"
        if dotted in DENIED_CLASSES or full in DENIED_CLASSES or _is_memmap(obj):
            return f"class {dotted} can write files"
        return None
    if _is_numpy_ufunc(obj):
        return None
    return f"{dotted} is a function, not a class; only listed functions may be called"


def _resolve(module: str, name: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj
    except Exception:
        return None


def _is_cython_unpickler(module: str, name: str) -> bool:
    """Cython's generated ``__pyx_unpickle_<Class>`` only rebuilds <Class> of the same module."""
    prefix = "__pyx_unpickle_"
    return name.startswith(prefix) and isinstance(_resolve(module, name[len(prefix):]), type)


def _is_memmap(obj: type) -> bool:
    try:
        import numpy

        return issubclass(obj, numpy.memmap)
    except Exception:
        return False


def _is_numpy_ufunc(obj: Any) -> bool:
    try:
        import numpy

        return isinstance(obj, numpy.ufunc)
    except Exception:
        return False


def scan_pickle_imports(stream: BinaryIO, label: str) -> list[PickleImport]:
    """List every import of a pickle stream without executing it (resolving STACK_GLOBAL via the memo)."""
    imports: list[PickleImport] = []
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            name = opcode.name
            if name in _STRING_OPS:
                stack.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                imports.append(PickleImport(module, attr, pos))
                stack.append(None)
            elif name == "STACK_GLOBAL":
                attr = stack.pop() if stack else None
                module = stack.pop() if stack else None
                if not isinstance(module, str) or not isinstance(attr, str):
                    raise UnsafeModelError(
                        f"{label}: STACK_GLOBAL at byte {pos} takes its import from values the scan cannot resolve",
                        TRUST_HINT,
                    )
                imports.append(PickleImport(module, attr, pos))
                stack.append(None)
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = stack[-1] if stack else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(int(arg)))
            elif name == "POP":
                stack.pop() if stack else None
            elif name == "STOP":
                break
            else:
                stack.append(None)
    except UnsafeModelError:
        raise
    except Exception as exc:
        raise InputFileError(
            f"{label} is not a valid pickle ({exc})",
            "the file is truncated or corrupt; re-export it from the training code",
        ) from None
    return imports


def check_imports(imports: list[PickleImport], label: str) -> None:
    for found in imports:
        reason = import_refusal(found.module, found.name)
        if reason:
            raise UnsafeModelError(
                f"{label} imports {found.dotted} at byte {found.offset}: {reason}", TRUST_HINT
            )


def check_ndarray_state(obj: Any, state: Any, label: str) -> None:
    """numpy trusts an array's pickled state: an object array whose element count disagrees with
    its shape, or whose data is raw bytes, makes numpy read memory it does not own (a crash)."""
    try:
        import numpy
    except ImportError:
        return
    if not isinstance(obj, numpy.ndarray) or not isinstance(state, tuple) or len(state) != 5:
        return
    _, shape, dtype, _, data = state
    try:
        count = int(numpy.prod(shape, dtype=numpy.int64)) if isinstance(shape, tuple) else -1
        itemsize = dtype.itemsize if isinstance(dtype, numpy.dtype) else -1
    except Exception:
        count = itemsize = -1
    valid = (
        isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape) and isinstance(dtype, numpy.dtype)
        and (len(data) == count if dtype.hasobject and isinstance(data, list) else
             not dtype.hasobject and isinstance(data, (bytes, bytearray)) and len(data) == count * itemsize)
    )
    if not valid:
        raise InputFileError(f"{label} holds a numpy array whose data does not match its shape {shape!r} and dtype", "the file is corrupt or crafted; re-export it")


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler: find_class enforces the allow-list, BUILD checks numpy array states."""

    label = "pickle"

    def find_class(self, module: str, name: str) -> Any:
        reason = import_refusal(module, name)
        if reason:
            raise UnsafeModelError(f"{self.label} imports {module}.{name}: {reason}", TRUST_HINT)
        return super().find_class(module, name)

    def load_build(self) -> None:
        check_ndarray_state(self.stack[-2], self.stack[-1], self.label)
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def load_pickle(path: str | Path, *, trust: bool = False) -> Any:
    """Unpickle a file; unless ``trust``, scan and restrict its imports to the allow-list."""
    path = Path(path)
    data = path.read_bytes()
    if trust:
        return _guarded_load(lambda: pickle.loads(data), path)
    check_imports(scan_pickle_imports(io.BytesIO(data), path.name), path.name)
    unpickler = _RestrictedUnpickler(io.BytesIO(data))
    unpickler.label = path.name
    return _guarded_load(unpickler.load, path)


def load_joblib(path: str | Path, *, trust: bool = False) -> Any:
    """Load a joblib file; unless ``trust``, restrict its imports to the allow-list while loading."""
    path = Path(path)
    try:
        import joblib
        from joblib.numpy_pickle import NumpyUnpickler, _validate_fileobject_and_memmap
    except ImportError:
        from packager.errors import MissingDependency

        raise MissingDependency("loading joblib files needs joblib", "pip install 'packager[sklearn]'") from None
    if trust:
        return _guarded_load(lambda: joblib.load(path), path)

    class Restricted(NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            reason = import_refusal(module, name)
            if reason:
                offset = self.file_handle.tell() if hasattr(self.file_handle, "tell") else "?"
                raise UnsafeModelError(f"{path.name} imports {module}.{name} near byte {offset}: {reason}", TRUST_HINT)
            return super().find_class(module, name)

        def load_build(self) -> None:
            check_ndarray_state(self.stack[-2], self.stack[-1], path.name)
            super().load_build()

        dispatch = dict(NumpyUnpickler.dispatch)
        dispatch[pickle.BUILD[0]] = load_build

    def load() -> Any:
        with path.open("rb") as raw, _validate_fileobject_and_memmap(raw, str(path), None) as (stream, _):
            if isinstance(stream, str):  # joblib < 0.10 multi-file pickles
                raise InputFileError(f"{path.name} is an old multi-file joblib pickle", "re-save it with a current joblib")
            return Restricted(str(path), stream, "auto", mmap_mode=None).load()

    return _guarded_load(load, path)


def _guarded_load(load, path: Path) -> Any:
    try:
        return load()
    except (UnsafeModelError, InputFileError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError, TypeError, AttributeError, zlib.error, OSError, lzma.LZMAError) as exc:
        raise InputFileError(
            f"{path.name} cannot be unpickled ({type(exc).__name__}: {exc})",
            "the file is truncated, corrupt, or was written by incompatible library versions",
        ) from exc
    except ModuleNotFoundError as exc:
        raise InputFileError(
            f"{path.name} needs module {exc.name!r}, which is not installed",
            f"install the package that provides {exc.name!r}",
        ) from exc
