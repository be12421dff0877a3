"""Memory and time bounds for what an untrusted pickle may build, checked before each call it makes.

A 37-byte pickle ``bytearray(1<<30)`` takes 1 GiB and a 58-byte ``collections.deque(range(1<<62), 0)``
never ends: the allow-list says *which* constructors may run, not with *what sizes*. The rule: everything
a load builds from a size it was given (not from bytes present in the file) may total at most
``max(64 MiB, 64 x file size)``. Why that: a real model's arrays, strings and lists are made of bytes the
file holds (numpy's ``_reconstruct`` makes a (0,)-shaped array that BUILD then fills from the file), so
legitimate sized allocations are tiny; 64 MiB covers the fixed-size buffers constructors preallocate,
and 64 x leaves room for a file that legitimately expands (e.g. a ``range`` or ``RangeIndex`` over rows).
Lazy objects with a length (``range``, ``pandas.RangeIndex``) are charged by length when made, because
anything may iterate them later (``list``, ``deque``, ``Series(index=...)``).
"""

from __future__ import annotations

from typing import Any

from packager.errors import UnsafeModelError
from packager.safety.allowlist import _lookup

FLOOR = 64 << 20
RATIO = 64
_POINTER = 8  # bytes per element of a materialised range or index (a CPython list slot; numpy int64)
HINT = "the file asks for far more memory than it holds; it is crafted or corrupt. If you trust it, rerun with --trust"
# For a call whose arguments are outside what a saved model uses (not a size): the memory hint would send the user wrong.
ARGS_HINT = "saved models never make this call; the file is crafted or corrupt. If you trust it, rerun with --trust"


class Budget:
    """The bytes a load may still allocate from sizes it is given; refuses the first call that overspends."""

    def __init__(self, label: str, file_size: int):
        self.label = label
        self.limit = max(FLOOR, RATIO * int(file_size))
        self.spent = 0

    def charge(self, what: str, nbytes: int) -> None:
        self.spent += max(0, nbytes)
        if nbytes > self.limit or self.spent > self.limit:
            raise UnsafeModelError(
                f"{self.label}: {what} would allocate {_human(nbytes)}, more than the {_human(self.limit)} "
                "a file of this size may allocate",
                HINT,
            )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.0f} EiB"


def check_call(func: Any, args: tuple, kwargs: dict, budget: Budget) -> None:
    """Refuse ``func(*args, **kwargs)`` (or ``func.__new__(func, ...)``) if it would size memory past the budget,
    or if it is one of the listed helpers given a callable it would call in turn."""
    import numpy

    name = _name(func)
    if func is getattr:
        check_getattr(args, budget)
    elif isinstance(func, type) and issubclass(func, (bytes, bytearray)) and args and _is_int(args[0]):
        budget.charge(f"{name}({args[0]})", int(args[0]))
    elif func is _fn("copyreg._reconstructor") and len(args) == 3 and args[1] is not object:
        check_call(args[1], (args[2],), {}, budget)  # base.__new__(cls, state); base.__init__(obj, state)
    elif func is _fn("copyreg.__newobj__") and args:
        check_call(args[0], tuple(args[1:]), {}, budget)
    elif func is _fn("copyreg.__newobj_ex__") and len(args) == 3:
        check_call(args[0], tuple(args[1]), dict(args[2]), budget)
    elif func is _fn("_codecs.encode"):
        if len(args) != 2 or str(args[1]).lower().replace("_", "-") not in ("latin1", "latin-1"):
            raise UnsafeModelError(f"{budget.label}: _codecs.encode with codec {args[1:]!r}; pickles only use latin1", ARGS_HINT)
    elif func in (_fn("numpy._core.multiarray._reconstruct"), _fn("numpy.core.multiarray._reconstruct")) and len(args) == 3:
        _require_subclass(args[0], numpy.ndarray, "_reconstruct", budget)
        budget.charge(f"numpy _reconstruct of shape {args[1]!r}", _array_bytes(args[1], args[2]))
    elif func is _fn("numpy.ma.core._mareconstruct") and len(args) == 4:
        _require_subclass(args[0], numpy.ma.MaskedArray, "_mareconstruct", budget)
        _require_subclass(args[1], numpy.ndarray, "_mareconstruct", budget)
        budget.charge(f"numpy _mareconstruct of shape {args[2]!r}", 2 * _array_bytes(args[2], args[3]))
    elif isinstance(func, type) and issubclass(func, numpy.ndarray):
        shape = args[0] if args else kwargs.get("shape", ())
        budget.charge(f"{name} of shape {shape!r}", _array_bytes(shape, args[1] if len(args) > 1 else kwargs.get("dtype", float)))
    elif isinstance(func, type) and issubclass(func, numpy.void) and args and _is_int(args[0]):
        budget.charge(f"{name}({args[0]})", int(args[0]))
    elif isinstance(func, type) and func.__module__.startswith("numpy.random") and func.__name__ == "SeedSequence":
        pool = args[2] if len(args) > 2 else kwargs.get("pool_size", 4)
        budget.charge(f"{name}(pool_size={pool!r})", 4 * int(pool) if _is_int(pool) else 0)
    elif name in ("numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor"):
        if len(args) > 1 and args[1] is not _fn("numpy.random._pickle.__bit_generator_ctor"):
            raise UnsafeModelError(
                f"{budget.label}: {name} is given {_name(args[1])} to call; pickles only pass __bit_generator_ctor", ARGS_HINT
            )
    elif name == "numpy.random._pickle.__bit_generator_ctor" and args and not isinstance(args[0], str):
        bit_generator = _fn("numpy.random.bit_generator.BitGenerator")
        if not (isinstance(args[0], type) and bit_generator is not None and issubclass(args[0], bit_generator)):
            raise UnsafeModelError(f"{budget.label}: {name} is given {_name(args[0])} to call, not a numpy BitGenerator", ARGS_HINT)
    elif name == "pandas.core.indexes.base._new_Index" and args:
        import pandas

        _require_subclass(args[0], pandas.Index, "_new_Index", budget)
    elif isinstance(func, type) and func.__module__.startswith("scipy.sparse") and args and _is_shape(args[0]):
        per_row = 64 if "lil" in func.__name__ else _POINTER  # lil: one list per row; csr/csc: one index per row/column
        budget.charge(f"{name} of shape {args[0]!r}", per_row * (max(int(d) for d in args[0]) + 1))


def check_getattr(args: tuple, budget: Budget) -> None:
    """``getattr`` is how pickle stores a bound method (scipy.stats distributions keep ``vectorize(getattr(dist, '_entropy'))``):
    allowed only on an instance of a class from the allowed packages, for a non-dunder name. Its result must be that
    instance's bound method (check_result), which the unpickler never calls; no walking to modules, globals or classes."""
    from packager.safety.allowlist import CLASS_PACKAGES

    obj, name = (args + (None, None))[:2] if len(args) == 2 else (None, None)
    if not (
        isinstance(name, str)
        and not name.startswith("__")
        and not isinstance(obj, type)
        and callable(getattr(type(obj), name, None))
        and type(obj).__module__.split(".")[0] in CLASS_PACKAGES
    ):
        raise UnsafeModelError(
            f"{budget.label}: getattr({_name(type(obj)) + ' object' if obj is not None else '?'}, {name!r}) "
            "is not a method lookup on a model object",
            ARGS_HINT,
        )


def check_result(obj: Any, budget: Budget) -> None:
    """Charge lazy objects by their length as soon as they exist, before anything iterates them."""
    if isinstance(obj, range):
        budget.charge(f"range of {_range_len(obj)} items", _POINTER * _range_len(obj))
    elif type(obj).__name__ == "RangeIndex" and type(obj).__module__.startswith("pandas"):
        length = _range_len(range(obj.start, obj.stop, obj.step))
        budget.charge(f"pandas RangeIndex of {length} items", _POINTER * length)


def _range_len(r: range) -> int:
    if r.step > 0:
        return max(0, (r.stop - r.start + r.step - 1) // r.step)
    return max(0, (r.start - r.stop - r.step - 1) // -r.step)


def _array_bytes(shape: Any, dtype: Any) -> int:
    import numpy

    dims = (shape,) if _is_int(shape) else tuple(shape) if isinstance(shape, (tuple, list)) else ()
    count = 1
    for d in dims:
        count *= max(0, int(d)) if _is_int(d) else 0
    try:
        itemsize = numpy.dtype(dtype).itemsize
    except Exception:
        itemsize = 8
    return count * max(1, itemsize)


def _require_subclass(cls: Any, base: type, what: str, budget: Budget) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UnsafeModelError(f"{budget.label}: {what} is given {_name(cls)}, not a {base.__module__}.{base.__qualname__}", ARGS_HINT)


def _is_int(value: Any) -> bool:
    import numpy

    return isinstance(value, (int, numpy.integer)) and not isinstance(value, bool)


def _is_shape(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(_is_int(d) for d in value)


def _name(obj: Any) -> str:
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{mod}.{qual}" if mod and qual else type(obj).__name__


_FNS: dict[str, Any] = {}


def _fn(dotted: str) -> Any:
    if dotted not in _FNS:
        _FNS[dotted] = _lookup(dotted)
    return _FNS[dotted]
