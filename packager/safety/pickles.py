"""The one place pickled files are opened: an allow-list of imports, checked before and during load.

A pickle runs code by importing a callable (GLOBAL / STACK_GLOBAL / INST) and calling it (REDUCE,
BUILD, NEWOBJ). We first walk the opcodes without executing anything and refuse any import that is
not on the allow-list, naming it and its byte offset; then we unpickle with an Unpickler whose
``find_class`` enforces the same list, so nothing the scan missed can slip through.

What may be imported is judged on the resolved object (packager.safety.allowlist); what may be
called, with what sizes, is checked before each call (packager.safety.bounds); array states before
numpy applies them (packager.safety.arrays). The unpickler returns the very object it judged, and
calls (REDUCE, NEWOBJ, INST/OBJ) only allowed classes and the listed rebuild functions, never an
instance or a stored function (``functools.partial``, a ufunc), so nothing reaches a call unjudged.
"""

from __future__ import annotations

import copyreg
import io
import lzma
import pickle
import pickletools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, ClassVar

from packager.errors import InputFileError, UnsafeModelError
from packager.safety.allowlist import import_refusal, judge, may_call
from packager.safety.arrays import check_array_state
from packager.safety.boosting import check_booster_state
from packager.safety.bounds import Budget, check_call, check_result
from packager.safety.dtypes import check_dtype_state, mark_used
from packager.safety.trees import check_estimator, check_native_call, check_state

TRUST_HINT = "inspect the file's origin; if you trust it, rerun with --trust (API: trust=True)"
_IMPORT_OPS = {"GLOBAL", "INST", "STACK_GLOBAL"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


@dataclass(frozen=True)
class PickleImport:
    """One import a pickle stream asks for, and where."""

    module: str
    name: str
    offset: int | None  # pickletools gives no position on a stream without tell()

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


def scan_pickle_imports(stream: BinaryIO, label: str) -> list[PickleImport]:
    """List every import of a pickle stream without executing it (resolving STACK_GLOBAL via the memo)."""
    imports: list[PickleImport] = []
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    arg: Any  # typed Any | None by typeshed; which opcodes carry an argument is pickletools' table, not a type
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
                top = stack.pop() if stack else None
                below = stack.pop() if stack else None
                if not isinstance(below, str) or not isinstance(top, str):
                    raise UnsafeModelError(
                        f"{label}: STACK_GLOBAL at byte {pos} takes its import from values the scan cannot resolve",
                        TRUST_HINT,
                    )
                imports.append(PickleImport(below, top, pos))
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
            raise UnsafeModelError(f"{label} imports {found.dotted} at byte {found.offset}: {reason}", TRUST_HINT)


class RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with every import judged, every call bounded and every array state checked."""

    # state of the pure-Python unpickler (pickle._Unpickler) that typeshed does not declare
    stack: list[Any]
    append: Callable[[Any], None]

    def __init__(self, file: BinaryIO, label: str, budget: Budget):
        super().__init__(file)
        self.stream, self.label, self.budget = file, label, budget
        self.used_dtypes: set[int] = set()  # dtypes passed to a call or held by a state: BUILD may not change them

    def find_class(self, module: str, name: str) -> Any:
        obj, reason = judge(module, name)
        if reason:
            raise UnsafeModelError(f"{self.label} imports {module}.{name}: {reason}", TRUST_HINT)
        return obj  # the object judged, not a second lookup by name

    def _call(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if not may_call(func):
            raise UnsafeModelError(
                f"{self.label} calls {_describe(func)} while loading; only allowed classes and the listed rebuild functions may be called",
                TRUST_HINT,
            )
        reconstructor = copyreg._reconstructor  # type: ignore[attr-defined]  # private to copyreg, absent from typeshed
        if func is reconstructor and len(args) == 3 and args[1] is not object and not may_call(args[1]):
            # _reconstructor(cls, base, state) runs base.__init__(obj, state): as good as calling base
            raise UnsafeModelError(f"{self.label} rebuilds an object through the constructor of {_describe(args[1])}", TRUST_HINT)
        check_call(func, tuple(args), dict(kwargs), self.budget)
        check_native_call(func, tuple(args), self.label)
        mark_used([*args, *kwargs.values()], self.used_dtypes)
        result = func(*args, **kwargs)
        if func is getattr and getattr(result, "__self__", None) is not args[0]:
            raise UnsafeModelError(f"{self.label}: getattr(..., {args[1]!r}) is not a bound method of the object", TRUST_HINT)
        check_result(result, self.budget)
        return result

    def _new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        if not isinstance(cls, type):
            raise UnsafeModelError(f"{self.label} calls __new__ of {_describe(cls)}, which is not a class", TRUST_HINT)
        check_call(cls, tuple(args), dict(kwargs), self.budget)
        check_native_call(cls, tuple(args), self.label)
        mark_used([*args, *kwargs.values()], self.used_dtypes)
        result = cls.__new__(cls, *args, **kwargs)
        check_result(result, self.budget)
        return result

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, {})

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _instantiate(self, klass: Any, args: tuple) -> None:  # INST and OBJ
        if args or not isinstance(klass, type) or hasattr(klass, "__getinitargs__"):
            self.append(self._call(klass, tuple(args), {}))
        else:
            self.append(self._new(klass, (), {}))

    def load_build(self) -> None:
        obj = self.stack[-2]
        check_array_state(obj, self.stack[-1], self.label)
        check_dtype_state(obj, self.stack[-1], self.label, self.used_dtypes)  # numpy applies a dtype's state as given
        mark_used(self.stack[-1], self.used_dtypes)
        mark_used([obj], self.used_dtypes)
        check_state(obj, self.stack[-1], self.label)  # tree arrays before sklearn's Cython applies them
        check_booster_state(obj, self.stack[-1], self.label)  # model text/snapshot before LightGBM/XGBoost parse it
        super().load_build()  # type: ignore[misc]  # pickle._Unpickler's load_* methods are not in typeshed
        check_estimator(obj, self.label)  # its trees against n_features_in_, before anything predicts

    # the opcode table calls these with the unpickler; typeshed types its values for the base class only
    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


def _describe(obj: Any) -> str:
    owner = getattr(obj, "__self__", None)
    if (
        owner is not None
        and not isinstance(owner, type)
        and type(owner).__name__ != "module"
        and isinstance(getattr(obj, "__name__", None), str)
    ):
        return f"{type(owner).__module__}.{type(owner).__qualname__}.{obj.__name__}"  # a bound method
    if isinstance(obj, type) or type(obj).__name__ in ("function", "builtin_function_or_method", "ufunc", "cython_function_or_method"):
        return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def load_pickle(path: str | Path, *, trust: bool = False) -> Any:
    """Unpickle a file; unless ``trust``, scan and restrict its imports to the allow-list."""
    path = Path(path)
    data = path.read_bytes()
    if trust:
        return guarded_load(lambda: pickle.loads(data), path)
    check_imports(scan_pickle_imports(io.BytesIO(data), path.name), path.name)
    unpickler = RestrictedUnpickler(io.BytesIO(data), path.name, Budget(path.name, len(data)))
    return guarded_load(unpickler.load, path)


def guarded_load(load, path: Path) -> Any:
    try:
        return load()
    except (UnsafeModelError, InputFileError):
        raise
    except MemoryError:
        raise InputFileError(
            f"{path.name} needs more memory than is available to unpickle",
            "load it on a machine with more memory, or check where the file comes from",
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        zlib.error,
        OSError,
        lzma.LZMAError,
        OverflowError,
    ) as exc:
        raise InputFileError(
            f"{path.name} cannot be unpickled ({type(exc).__name__}: {exc})",
            "the file is truncated, corrupt, or was written by incompatible library versions",
        ) from exc
    except ModuleNotFoundError as exc:
        raise InputFileError(
            f"{path.name} needs module {exc.name!r}, which is not installed",
            f"install the package that provides {exc.name!r}",
        ) from exc
