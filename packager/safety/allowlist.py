"""What an untrusted pickle may import: judged on the object an import resolves to, never on its name.

A pickle names an import as ``module`` + dotted ``name``. We import ``module`` (only inside the allowed
packages, never a denied sub-module), walk ``name`` through *classes only* (never through a module
attribute: ``pandas._config.localization`` + ``subprocess.Popen`` reached ``subprocess.Popen`` by walking
``localization.subprocess``), and judge the object reached by its own ``__module__`` + ``__qualname__``:

* a function must be, by identity, one of the explicitly listed ones (:data:`CALLED_FUNCTIONS`, which
  pickles call while rebuilding objects, or :data:`STORED_FUNCTIONS` / numpy and scipy.special ufuncs,
  which models keep as attributes and which the unpickler refuses to call);
* a class must live (its own ``__module__``) in one of :data:`CLASS_MODULES`, outside the denied modules,
  and must not be or subclass a denied class; the pickle must name it by its own qualified name, as a
  real pickler does (so a re-export such as ``numpy.compat.Path`` resolves to ``pathlib.Path`` and is
  judged as that).

Audit (``python -m tests.safety.audit_allowlist``, scikit-learn 1.9.0, numpy 2.4.6, scipy 1.17.1,
pandas 3.1.1, Nov 2026): it imports every sub-module of the packages, lists each class a module
exposes whose own ``__module__`` is outside the package (re-exports: sklearn 65, numpy 27, scipy 73,
pandas 56 of 645/207/664/472 own classes, e.g. ``numpy.lib._format_impl.io`` module walk to ``io.FileIO``, ``pandas.io.common.Path``),
and greps the source of every own class's ``__new__``/``__init__``/``__setstate__`` for file, import,
exec and callable use. What it found is why the allowed modules are a precise list rather than whole
packages: file readers (``numpy.lib._npyio_impl.NpzFile``, ``numpy.lib._datasource.DataSource``,
``numpy.memmap`` whose own module is ``numpy``, ``pandas.io.*`` incl. ``HDFStore``/``ExcelFile``,
``pandas._libs.parsers.TextReader``, ``scipy.io.*`` incl. ``netcdf_file``/``FortranFile``), classes whose
constructors call a callable they are given (``scipy.optimize`` function wrappers, ``scipy.sparse.linalg``
operators, ``scipy.interpolate.Rbf``, ``scipy.stats.sampling`` generators, ``numpy.vectorize``,
``pandas.core.computation`` which evaluates expressions, ``sklearn.utils._mocking``), and ``pandas._config``
(locale switching through ``subprocess``), classes with bases outside the packages (sklearn's
``RichProgressMonitor`` is a ``threading.Thread``; scipy 34, pandas 11 such classes: refused by an MRO rule).
scikit-learn's own classes only store their constructor
arguments (its estimator contract), so all of ``sklearn`` is allowed but its denied sub-modules.
Constructors that *size* memory from a small number (``numpy.ndarray``, ``numpy.void``, sparse shapes,
``SeedSequence``) are allowed and bounded by :mod:`packager.safety.bounds` at call time.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

# Top-level packages whose classes may be rebuilt (joblib only for its array wrapper, builtins by name).
CLASS_PACKAGES = ("sklearn", "numpy", "scipy", "pandas")
# Own modules (prefix at a dot boundary) whose classes a model can need; "numpy" itself is exact (see _NUMPY_TOP).
CLASS_MODULES = (
    "sklearn",
    "numpy.dtypes",
    "numpy.random",
    "numpy.ma.core",
    "numpy.polynomial",
    "numpy.matrixlib.defmatrix",
    "numpy._core.records",
    "pandas.core.frame",
    "pandas.core.series",
    "pandas.core.generic",
    "pandas.core.base",
    "pandas.core.flags",
    "pandas.core.indexes",
    "pandas.core.arrays",
    "pandas.core.dtypes",
    "pandas.core.internals",
    "pandas._libs.tslibs",
    "pandas._libs.internals",
    "pandas._libs.interval",
    "pandas._libs.missing",
    "pandas._libs.arrays",
    "pandas._libs.sparse",
    "pandas._libs.lib",
    "scipy.sparse._",
    "scipy.stats._distn_infrastructure",
    "scipy.stats._continuous_distns",
    "scipy.stats._discrete_distns",
    "scipy.stats._multivariate",
    "scipy.interpolate._interpolate",
    "scipy.interpolate._bsplines",
    "scipy.interpolate._cubic",
    "scipy.interpolate._fitpack2",
    "scipy.interpolate._polyint",
    "scipy.spatial._kdtree",
    "scipy.spatial._ckdtree",
    "scipy.optimize._optimize",
)
# Sub-modules never needed by a model that hold code which runs Python, touches files or calls callables.
DENIED_MODULES = (
    "sklearn.utils._testing",
    "sklearn.utils._mocking",
    "sklearn.utils._show_versions",
    "sklearn.utils.parallel",
    "sklearn.utils._joblib",
    "sklearn.utils._pprint",
    "sklearn.callback._progressbar",
    "sklearn.datasets",
    "sklearn.externals",
    "sklearn._build_utils",
    "sklearn.__check_build",
    "numpy.lib._npyio_impl",
    "numpy.lib.npyio",
    "numpy.lib._datasource",
    "numpy.lib.format",
    "numpy.lib._format_impl",
    "numpy._core.memmap",
    "numpy.ctypeslib",
    "numpy.lib._utils_impl",
    "numpy.f2py",
    "numpy.distutils",
    "pandas.io",
    "pandas.util",
    "pandas._testing",
    "pandas._config",
    "pandas.core.computation",
    "pandas.plotting",
    "pandas._libs.parsers",
    "pandas._libs.writers",
    "pandas._libs.json",
    "pandas._libs.testing",
    "scipy.io",
    "scipy._lib",
    "scipy.datasets",
    "scipy.misc",
    "scipy.sparse.linalg",
    "scipy.sparse.csgraph",
    "scipy.sparse._matrix_io",
    "scipy.stats.sampling",
    "scipy.stats._sampling",
    "scipy.stats._unuran",
)
# Module path segments that mark test, build or entry-point code (importing such a module runs it).
DENIED_SEGMENTS = frozenset({"tests", "testing", "_testing", "conftest", "__main__", "_pytesttester", "_testutils", "benchmarks", "setup"})
# Classes whose own module is "numpy" that a model may hold; numpy.memmap, numpy.nditer, numpy.errstate... are not.
# numpy.vectorize only stores its callable (scipy.stats distributions hold some); calling an instance is refused by the unpickler.
_NUMPY_TOP = ("ndarray", "dtype", "matrix", "recarray", "record", "poly1d", "finfo", "iinfo", "vectorize")
# Modules whose classes may be bases of an allowed class (anything else, e.g. threading.Thread, io.FileIO, is refused).
SAFE_BASE_MODULES = frozenset(
    {
        "builtins",
        "abc",
        "_abc",
        "typing",
        "typing_extensions",
        "collections",
        "collections.abc",
        "enum",
        "numbers",
        "dataclasses",
        "_collections_abc",
    }
)
# Classes whose __module__ is a public facade (pandas sets DataFrame.__module__ = "pandas"), listed by name:
# the facades also export HDFStore, ExcelFile/ExcelWriter (files), Grouper, readers, window objects.
FACADE_CLASSES = {
    "pandas": frozenset(
        {
            "ArrowDtype",
            "BooleanDtype",
            "Categorical",
            "CategoricalDtype",
            "CategoricalIndex",
            "DataFrame",
            "DateOffset",
            "DatetimeIndex",
            "DatetimeTZDtype",
            "Flags",
            "Float32Dtype",
            "Float64Dtype",
            "Index",
            "Int16Dtype",
            "Int32Dtype",
            "Int64Dtype",
            "Int8Dtype",
            "Interval",
            "IntervalDtype",
            "IntervalIndex",
            "MultiIndex",
            "Period",
            "PeriodDtype",
            "PeriodIndex",
            "RangeIndex",
            "Series",
            "SparseDtype",
            "StringDtype",
            "Timedelta",
            "TimedeltaIndex",
            "Timestamp",
            "UInt16Dtype",
            "UInt32Dtype",
            "UInt64Dtype",
            "UInt8Dtype",
        }
    ),
    "pandas.arrays": frozenset(
        {
            "ArrowExtensionArray",
            "ArrowStringArray",
            "BooleanArray",
            "DatetimeArray",
            "FloatingArray",
            "IntegerArray",
            "IntervalArray",
            "NumpyExtensionArray",
            "PeriodArray",
            "SparseArray",
            "StringArray",
            "TimedeltaArray",
        }
    ),
    "pandas.api.typing": frozenset({"FrozenList", "NAType", "NaTType"}),
    "numpy.ma": frozenset({"MaskedArray"}),
}
# Classes denied wherever they are reached from (subclasses too).
DENIED_CLASSES = ("numpy.memmap", "numpy.nditer")

# Functions pickles call while rebuilding objects (REDUCE may call them); each is bounded or checked by bounds.py.
CALLED_FUNCTIONS = (
    "copyreg._reconstructor",
    "copyreg.__newobj__",
    "copyreg.__newobj_ex__",
    "_codecs.encode",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer",
    "numpy.ma.core._mareconstruct",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
    "pandas._libs.internals._unpickle_block",
    "pandas.core.internals.blocks.new_block",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas.core.indexes.base._new_Index",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    "sklearn.neighbors._kd_tree.newObj",
    "sklearn.neighbors._ball_tree.newObj",
    "sklearn.metrics._dist_metrics.newObj",  # Cython helper: cls.__new__(cls) for a DistanceMetric
)
# Old spellings of the same objects (numpy 1.x pickles); judged by identity, so they are the same functions.
_ALIASES = ("numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar", "numpy.core.numeric._frombuffer")
# Functions real models store as attributes (never called while unpickling): HistGradientBoosting's
# preprocessor keeps functools.partial(check_array, ...); FunctionTransformer(func=np.log1p) keeps a ufunc.
STORED_FUNCTIONS = ("sklearn.utils.validation.check_array",)
ALLOWED_BUILTINS = (
    "builtins.set",
    "builtins.frozenset",
    "builtins.slice",
    "builtins.complex",
    "builtins.bytearray",
    "builtins.object",
    "builtins.list",
    "builtins.dict",
    "builtins.tuple",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.str",
    "builtins.bytes",
    "builtins.range",
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.Counter",
    "collections.deque",
    "datetime.datetime",
    "datetime.date",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "functools.partial",
    "builtins.getattr",  # only as getattr(<allowed instance>, <non-dunder name>) -> its bound method (bounds.check_getattr)
    "joblib.numpy_pickle.NumpyArrayWrapper",  # read by packager.safety.joblib, never by joblib's own reader
)
# Classes a plugin's library keeps in pickled models (the gradient-boosting estimators) are declared by that
# plugin (``packager.contract.PickleGlobals``), not listed here: rebuilt from their pickled state only (copyreg:
# object.__new__, then __setstate__), resolved to the class under its own name, never called.


def rebuilt_only() -> frozenset[str]:
    """The rebuilt-only classes the loaded plugins declared (each plugin's ``PickleGlobals``)."""
    from packager.contract import PICKLE_GLOBALS
    from packager.plugins import default_registry

    return frozenset(name for declared in default_registry().extensions_of(PICKLE_GLOBALS) for name in declared.rebuilt_only)


# joblib < 0.10 wrappers: joblib reads them with np.load(<path named in the pickle>, allow_pickle=True)
LEGACY_JOBLIB = frozenset({"joblib.numpy_pickle_compat.NDArrayWrapper", "joblib.numpy_pickle_compat.ZNDArrayWrapper"})


def module_refusal(module: str) -> str | None:
    """Why a module named by a pickle may not even be imported (importing runs its top level), or None."""
    parts = module.split(".")
    if parts[0] not in CLASS_PACKAGES:
        return f"module {module!r} is not on the allow-list"
    if DENIED_SEGMENTS.intersection(parts) or _under(module, DENIED_MODULES):
        return f"module {module!r} is denied (it can run code or touch files)"
    return None


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p if p.endswith("_") else p + ".") for p in prefixes)


def import_refusal(module: str, name: str) -> str | None:
    """Why ``module.name`` may not be imported by an untrusted pickle, or None if it may."""
    return judge(module, name)[1]


def judge(module: str, name: str) -> tuple[Any, str | None]:
    """(the object ``module.name`` resolves to, why it is refused or None)."""
    dotted = f"{module}.{name}"
    if dotted in LEGACY_JOBLIB:
        return None, (
            "a joblib < 0.10 array wrapper: joblib reads it with np.load(allow_pickle=True) from a path the file names; "
            "re-save the model with a current joblib"
        )
    explicit = _explicit()
    if dotted in explicit:  # the listed builtins and functions, under the names they are listed by
        return explicit[dotted], None
    if dotted in rebuilt_only():
        cls = _lookup(dotted)
        if isinstance(cls, type) and _own_name(cls) == dotted:
            return cls, None
        return None, f"{dotted} is not installed here (or is not that class)"
    refusal = module_refusal(module)
    if refusal:
        return None, refusal
    obj, why = _resolve(module, name)
    if why:
        return None, why
    if any(obj is allowed for allowed in explicit.values()):
        return obj, None
    if _is_ufunc(obj):
        return obj, None
    if isinstance(obj, type):
        return obj, _class_refusal(obj, dotted)
    if _is_cython_unpickler(obj):
        return obj, None
    own = _own_name(obj)
    return None, f"{dotted} is {'the function ' + own if own else 'not a class'}, not on the list of functions a model may use"


def _resolve(module: str, name: str) -> tuple[Any, str | None]:
    """Import ``module`` and walk ``name``; only classes may be walked through (nested classes)."""
    try:
        obj: Any = importlib.import_module(module)
    except Exception:
        return None, f"module {module!r} cannot be imported here"
    parts = name.split(".")
    for i, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except Exception:
            return None, f"{module}.{name} does not exist in the installed {module.split('.')[0]}"
        if i < len(parts) - 1 and not isinstance(obj, type):
            kind = "module" if type(obj).__name__ == "module" else type(obj).__name__
            return None, f"{module}.{'.'.join(parts[: i + 1])} is a {kind}; a pickle may not reach objects through it"
    return obj, None


def _own_name(obj: Any) -> str:
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{mod}.{qual}" if isinstance(mod, str) and isinstance(qual, str) else ""


def _class_refusal(cls: type, dotted: str) -> str | None:
    own = _own_name(cls)
    module = cls.__module__
    if own != dotted:
        return f"{dotted} is {own}, which a pickle names by its own name; a different path to it is refused"
    if module in FACADE_CLASSES:
        if cls.__qualname__ not in FACADE_CLASSES[module]:
            return f"class {own} is not one a model needs (file, reader or grouping object)"
    elif module == "numpy":
        if cls.__qualname__ not in _NUMPY_TOP and not _is_numpy_scalar_type(cls):
            return f"class {own} is not one a model needs (file, iterator or callable wrapper)"
    elif module_refusal(module) or not _under(module, CLASS_MODULES):
        return f"class {own} lives in module {module!r}, which is not on the allow-list"
    outside = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] not in CLASS_PACKAGES and b.__module__ not in SAFE_BASE_MODULES]
    if outside:
        return f"class {own} is a {_own_name(outside[0])} (a base class outside the allow-list)"
    for denied in _denied_classes():
        if issubclass(cls, denied):
            return f"class {own} is a {_own_name(denied)} (it maps or opens files, or calls what it is given)"
    return None


@lru_cache(maxsize=1)
def _explicit() -> dict[str, Any]:
    """Listed names -> the objects they are in the installed libraries (absent ones are skipped)."""
    found: dict[str, Any] = {}
    for dotted in (*ALLOWED_BUILTINS, *CALLED_FUNCTIONS, *_ALIASES, *STORED_FUNCTIONS):
        obj = _lookup(dotted)
        if obj is not None:
            found[dotted] = obj
    return found


@lru_cache(maxsize=1)
def called_functions() -> tuple[Any, ...]:
    """The objects REDUCE may call besides allowed classes."""
    return tuple(obj for d in (*CALLED_FUNCTIONS, *_ALIASES) if (obj := _lookup(d)) is not None)


def may_call(obj: Any) -> bool:
    """Whether REDUCE may call ``obj``: an allowed class (judged when imported), a listed rebuild function, or a
    Cython ``__pyx_unpickle_<Class>``; never an instance or a stored function."""
    if isinstance(obj, type):
        return _own_name(obj) not in rebuilt_only()
    return obj is getattr or any(obj is f for f in called_functions()) or _is_cython_unpickler(obj)


@lru_cache(maxsize=1)
def _denied_classes() -> tuple[type, ...]:
    return tuple(obj for d in DENIED_CLASSES if isinstance(obj := _lookup(d), type))


def _lookup(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:
        return None


def _is_ufunc(obj: Any) -> bool:
    """numpy and scipy.special ufuncs, the objects found under their own name there (models store them)."""
    try:
        import numpy
    except ImportError:
        return False
    if not isinstance(obj, numpy.ufunc):
        return False
    if getattr(numpy, obj.__name__, None) is obj:
        return True
    try:
        import scipy.special

        return getattr(scipy.special, obj.__name__, None) is obj
    except ImportError:
        return False


def _is_numpy_scalar_type(cls: type) -> bool:
    import numpy

    return issubclass(cls, numpy.generic)


def _is_cython_unpickler(obj: Any) -> bool:
    """Cython's generated ``__pyx_unpickle_<Class>`` (own module allowed) only rebuilds <Class> of its own module."""
    name, module = getattr(obj, "__name__", ""), getattr(obj, "__module__", None)
    prefix = "__pyx_unpickle_"
    if not isinstance(name, str) or not name.startswith(prefix) or not isinstance(module, str) or not _under(module, CLASS_MODULES):
        return False
    if module_refusal(module) or type(obj).__name__ not in ("builtin_function_or_method", "cython_function_or_method", "function"):
        return False
    target = _lookup(f"{module}.{name[len(prefix) :]}")
    return isinstance(target, type) and target.__module__ == module
