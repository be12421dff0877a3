"""The plugin contract: what a framework, a converter, a quantizer, a runtime and a format promise the core.

Everything a plugin module may declare is here, with a default for every optional hook, so the core calls hooks and
never probes (no ``getattr``/``hasattr`` on plugins). The registry (``packager.plugins``) checks each declaration when
it is registered: call signatures with ``inspect.signature``, conflicting claims on a format, a runtime without
validation criteria, a format without a safety decision. A broken plugin fails when it is loaded, naming itself,
instead of at the first model that happens to reach the missing piece.

A format plugin owns its facts (detection, file or folder, title and suffix, the safety check, thread control, the
runtime, criteria). A worked example, a whole third-party target format in one module::

    from packager.contract import Artifact, Format, Runtime
    from packager.plugins import converts, runs
    from packager.validation import FLOAT32, criteria_table

    NPZ = Format("linear-npz", title="numpy linear weights", suffix=".npz", detect=is_linear_npz,
                 check=check_linear_npz)

    @runs(NPZ, criteria=criteria_table({None: FLOAT32}))
    class NpzRuntime(Runtime):
        name, distribution = "numpy (linear)", "numpy"
        def load(self, path, *, trust=False, threads=None): ...
        def predict(self, handle, signature, feeds): ...

    @converts("sklearn", to="linear-npz")
    def sklearn_to_npz(model, signature, out, options) -> Artifact: ...
"""

from __future__ import annotations

import inspect as _inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol

from packager.errors import PluginError

# ---------------------------------------------------------------- values exchanged with converters and quantizers


@dataclass(frozen=True)
class ConvertOptions:
    """Options every converter receives. Framework-specific ones (TorchScript's ``script``) are in ``plugin``: a
    conversion declares the names it reads (``@converts(..., options={"script": "help"})``)."""

    opset: int | str | None = None  # 17, or "17,ai.onnx.ml=3" (scikit-learn); the plugin parses what it takes
    quantize: str | None = None
    trust: bool = False
    example: Mapping[str, Any] | None = None  # a few sample rows, for converters that trace the model
    calibration: Mapping[str, Any] | None = None  # calibration rows, for converters that quantize while converting
    plugin: Mapping[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any = None) -> Any:
        """A plugin option's value (``default`` when the user did not give it)."""
        return self.plugin.get(name, default)


@dataclass(frozen=True)
class Artifact:
    """What a converter wrote (a file or folder in the staging dir) and facts about how."""

    path: Path
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuantizeResult:
    """What a quantizer did: ``applied=False`` with a reason when there was nothing to quantize."""

    applied: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- formats


class _Undeclared:
    """The default of ``Format.check``: no decision was made, so untrusted files of the format are refused."""

    def __repr__(self) -> str:
        return "UNDECLARED"


UNDECLARED: Any = _Undeclared()


@dataclass(frozen=True)
class Format:
    """A serialization format and its facts, declared by the plugin that owns it.

    ``detect(path, head)`` is the content test (``head`` is the first 4 KiB; a folder format gets the folder and
    ``b""``): the plugin names its format's magic and layout, with ``packager.formats``' helpers for looking inside
    a container (``zip_names``, ``looks_like_xml``, ``protobuf_matches``). ``containers`` says which containers the
    test refines ("zip", "xml", "protobuf", "pickle"; none: it is asked on every file), so a 60 MB pickle is not
    walked as protobuf by three tests; a refining format may rename what the core's sniffer named (torch's legacy
    archive starts as a pickle stream), any other second claim is a polyglot. ``check(path)`` raises
    UnsafeModelError/InputFileError when loading the file untrusted could run code or escape; a format that cannot
    run code says so with ``check=None`` and ``safe_because``. Leaving ``check`` out means untrusted files of the
    format are refused (deny by default).
    """

    name: str
    title: str = ""
    suffix: str = ""  # the extension packager writes ("" for folders)
    directory: bool = False
    suffixes: tuple[str, ...] = ()  # further extensions that hint at the format (detection still reads content)
    detect: Callable[[Path, bytes], bool] | None = None
    check: Any = UNDECLARED  # Callable[[Path], None] | None | UNDECLARED
    safe_because: str = ""
    containers: tuple[str, ...] = ()  # what the core sniffs ("zip", "xml", "protobuf", "pickle"): detect is asked on those files only
    pickle_members: bool = False  # a zip format whose members are pickles (torch); any other zip holding one is a polyglot

    def __post_init__(self) -> None:
        if self.check is None and not self.safe_because:
            raise PluginError(
                f"format {self.name} declares check=None without saying why it cannot run code", "give safe_because=... or a check function"
            )

    @property
    def extensions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for s in (self.suffix, *self.suffixes) if s))

    @property
    def checked(self) -> bool:
        return self.check is not UNDECLARED


# ---------------------------------------------------------------- extension points


class Extension:
    """A declaration a plugin module makes at module level for a named extension point (``point``), collected by the
    registry like a ``Format``: no import side effect, one owner per ``(point, key)``, a duplicate is an error naming
    both. The core owns the point ``pickle-globals`` (``PickleGlobals``); a plugin may own others (the scikit-learn
    plugin's ``sklearn.trees``, ``packager.converters.shared.TreeConverter``) and asks
    ``default_registry().extensions_of(point)`` instead of importing the plugins that extend it by name."""

    point: ClassVar[str] = ""

    @property
    def key(self) -> str:
        raise NotImplementedError


PICKLE_GLOBALS = "pickle-globals"
SOURCE_SCHEMES = "source-schemes"


@dataclass(frozen=True)
class SourceScheme(Extension):
    """A URI prefix whose sources a plugin fetches to this machine (the mlflow plugin's ``models:/`` and ``runs:/``),
    for ``packager.sources``: the core knows no scheme by name. ``resolve(uri)`` runs in the parent, before any sandbox
    starts (the child sees neither the network nor a tracking store), and returns the local file or folder and the
    lineage the manifest's source records (``{"mlflow": {"uri": ..., "version": ...}}``). The lineage travels in the
    request (``ConvertRequest.lineage``), never in the downloaded files: a local folder could carry forged ones."""

    prefix: str
    resolve: Callable[[str], tuple[Path, Mapping[str, Any]]]

    point: ClassVar[str] = SOURCE_SCHEMES

    def __post_init__(self) -> None:
        if ":" not in self.prefix or self.prefix.startswith(("/", ".")):
            raise PluginError(f"source scheme {self.prefix!r} is not a URI prefix", "declare e.g. SourceScheme('models:/', resolve)")

    @property
    def key(self) -> str:
        return self.prefix


@dataclass(frozen=True)
class PickleGlobals(Extension):
    """Classes of a plugin's library that pickled models hold, merged into the pickle allow-list
    (``packager.safety.allowlist``) as *rebuilt only*: a pickle may name them, each is resolved to the class and
    must be that class under its own ``__module__.__qualname__``, and it is rebuilt from its pickled state
    (copyreg: ``object.__new__``, then ``__setstate__``), never called. Everything else stays refused (deny by
    default). ``why`` says what ``__setstate__`` does with the state, for the reviewer of the declaration."""

    library: str
    rebuilt_only: tuple[str, ...]
    why: str

    point: ClassVar[str] = PICKLE_GLOBALS

    def __post_init__(self) -> None:
        bad = [n for n in self.rebuilt_only if n.count(".") < 1 or n.split(".")[0] != self.library]
        if bad or not self.why:
            raise PluginError(
                f"pickle globals of {self.library} must be classes of {self.library} with a reason ({bad or 'no why'})",
                "list dotted class names under the library's own package and say what __setstate__ does",
            )

    @property
    def key(self) -> str:
        return self.library


# ---------------------------------------------------------------- framework and runtime bases


class Framework:
    """A source framework: loads its model files, infers signatures, predicts natively.

    Required: ``claims``, ``load``, ``signature``, ``feeds``, ``predict``. Every other hook has a default here; a
    plugin class that does not subclass this one gets these defaults mixed in when it is registered."""

    file_formats: frozenset[str] = frozenset()  # the formats whose files this framework loads as source models
    takes_model_class = False  # True when ``load`` accepts ``model_class`` (code for a weights-only file)
    takes_task = False  # True when ``load`` accepts ``task`` (a Hugging Face folder's head)
    # True when the loaded model is the file itself (ONNX): the framework's conversions then also serve as later hops of
    # a path in the conversion graph, where a converter receives the file the previous hop wrote (packager.graph)
    model_is_file = False

    @staticmethod
    def claims(obj: Any) -> bool:
        """Whether an in-memory object is a model of this framework."""
        return False

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> Any:
        raise NotImplementedError

    def describe(self, model: Any) -> dict[str, Any]:
        return {}

    def fitted_rows_source(self, model: Any) -> str:
        """How the report names the rows ``fitted_rows`` drew (text models: "built-in-text", images: "image-processor")."""
        return "fitted-statistics"

    def versions(self) -> dict[str, str]:
        return {}

    def label_outputs(self, model: Any) -> set[str]:
        return set()

    def signature(self, model: Any, sample: Any) -> Any:
        raise NotImplementedError

    def feeds(self, model: Any, signature: Any, sample: Any) -> dict[str, Any]:
        raise NotImplementedError

    def predict(self, model: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def serve(self, model: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Every output from one call, as a deployment would (bench's baseline); ``predict`` unless faster."""
        return self.predict(model, signature, feeds)

    def fitted_rows(self, model: Any, signature: Any, rows: int) -> Any:
        """Validation rows drawn from what the fitted model knows, or None."""
        return None

    def source_input(self, model: Any, signature: Any, sample: Any) -> Any:
        """The input as the user would feed the source (float64, strings), or None when it is ``feeds``."""
        return None

    def output_kinds(self, model: Any, expected: Mapping[str, Any]) -> dict[str, Any]:
        """Output name -> OutputKind where the framework knows better than inference from values."""
        return {}

    def limit_threads(self, threads: int | None) -> None:
        """Limit the framework's own threads (bench's native baseline); nothing by default."""


class Runtime:
    """How one format is loaded and run (or structure-checked) here. Required: ``load`` and ``predict`` when it
    ``executes``, ``check`` when it does not.

    Threads: ``load`` takes ``threads`` (None: the runtime's default). ``thread_control`` says how the runtime honours
    it: "session" (per loaded model), "process" (process-wide, e.g. torch.set_num_threads) or "none"."""

    name = ""
    distribution = ""
    executes = True
    thread_control = "none"
    may_omit_auxiliary_outputs = False  # a format that may drop auxiliary outputs (PMML: SVC probabilities)

    def version(self) -> str:
        from packager.deps import version_of

        return version_of(self.distribution)

    def versions(self) -> dict[str, str]:
        return {self.distribution: self.version()}

    def requirements(self) -> list[str]:
        from packager.deps import requirement

        return [requirement(self.distribution)]

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        raise NotImplementedError

    def predict(self, handle: Any, signature: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def can_execute(self, path: Path) -> bool:
        """Whether this particular file can be run here (MLeap: only estimators its Python package reads back)."""
        return self.executes

    def check(self, path: Path, signature: Any) -> dict[str, Any]:
        """For files not executed: what was checked instead (reported as "structure checked, not executed")."""
        return {}

    def details(self, handle: Any) -> dict[str, Any]:
        return {}

    def inspect(self, path: Path) -> dict[str, Any]:
        return {}

    def signature_of(self, handle: Any) -> Any:
        """The signature a bare file declares itself (ONNX, TFLite), or None."""
        return None

    def shared_with_child(self, path: Path) -> list[Path]:
        """Native code this runtime builds at load (a compiled tree ensemble), built HERE, in the parent, from the file
        it checked, before a sandboxed child loads ``path``: the folders returned (under the packager home) are bound
        read-only into the child, which loads what they hold instead of building it again. A child never writes
        anything another process loads. Default: nothing to share."""
        return []


# ---------------------------------------------------------------- registration checks

CONVERTER_PARAMETERS = ("model", "signature", "out", "options")
QUANTIZER_PARAMETERS = ("src", "dst", "mode", "calibration")


class Converter(Protocol):
    """What ``@converts`` registers (checked by name with ``check_call`` at registration, typed here for mypy)."""

    __qualname__: str

    def __call__(self, model: Any, signature: Any, out: Path, options: ConvertOptions, /) -> Artifact: ...


class Quantizer(Protocol):
    """What ``@quantizes`` registers: ``src`` quantized into ``dst`` in ``mode`` (calibration feeds for static)."""

    __qualname__: str

    def __call__(self, src: Path, dst: Path, mode: str, calibration: Mapping[str, Any] | None, /) -> QuantizeResult: ...


def package_conversion_record(model_file: Path) -> Mapping[str, Any]:
    """The ``conversion`` record of the package that holds ``model_file`` ({} for a bare file, or a package whose model
    is another file): a runtime reads what its package says about running it (``packager optimize`` records the
    onnxruntime settings it measured) through the plugin API, not the package writer."""
    from packager.package import MANIFEST, read_manifest

    folder = model_file.parent
    if not (folder / MANIFEST).is_file():
        return {}
    manifest = read_manifest(folder)
    return manifest.conversion if manifest.model_file == model_file.name else {}


def check_call(func: Callable[..., Any], positional: int, keywords: tuple[str, ...], what: str, origin: str) -> None:
    """``func`` must accept ``positional`` positional arguments and the given keywords (its declared contract)."""
    try:
        _inspect.signature(func).bind(*([None] * positional), **{k: None for k in keywords})
    except TypeError as exc:
        raise PluginError(
            f"{origin} does not fit the contract of {what} ({exc})", "see packager.contract for the plugin signatures"
        ) from None
    except ValueError:  # a builtin without a signature: nothing to check
        return


def with_defaults(cls: type, base: type) -> type:
    """``cls`` with ``base``'s default hooks under it (a plugin class written without subclassing the base)."""
    if issubclass(cls, base):
        return cls
    return type(cls.__name__, (cls, base), {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})


def check_framework(cls: type[Framework], origin: str) -> None:
    for hook in ("load", "signature", "feeds", "predict"):
        if getattr(cls, hook) is getattr(Framework, hook):
            raise PluginError(
                f"framework {origin} does not define {hook}()", "a framework plugin defines load, signature, feeds and predict"
            )
    check_call(cls.load, 3, ("trust",), "a framework's load(path, fmt, *, trust=False)", origin)
    if cls.takes_model_class:
        check_call(cls.load, 3, ("trust", "model_class"), "a framework's load(..., model_class=None)", origin)


def check_runtime(cls: type[Runtime], origin: str) -> None:
    if cls.thread_control not in ("session", "process", "none"):
        raise PluginError(f"runtime {origin} declares thread_control={cls.thread_control!r}", "use 'session', 'process' or 'none'")
    if not cls.executes:
        return
    for hook in ("load", "predict"):
        if getattr(cls, hook) is getattr(Runtime, hook):
            raise PluginError(f"runtime {origin} executes but does not define {hook}()", "define load and predict, or set executes = False")
    check_call(cls.load, 2, ("trust", "threads"), "a runtime's load(path, *, trust=False, threads=None)", origin)
    check_call(cls.predict, 4, (), "a runtime's predict(handle, signature, feeds)", origin)


@dataclass(frozen=True)
class Delegated:
    """What a container format's ``Framework.load`` returns (an MLflow model folder): the model it holds, the framework
    that owns that model (which then converts, predicts and describes it), and what the container says about it:
    ``example`` (validation rows, reported as "input-example"), ``details`` (lineage for the manifest's source) and
    ``declares`` (its signature)."""

    framework: str
    model: Any
    example: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)
    # what the container declares about the inputs, applied to the owning plugin's inferred signature (an MLmodel's
    # schema: its column names and types); None: the plugin's signature as inferred
    declares: Callable[[Any], Any] | None = None
