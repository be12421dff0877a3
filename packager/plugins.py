"""The plugin registry: which frameworks load, which conversions exist, which formats run here.

A plugin module (ours under ``converters/`` or a third party's) marks its functions and classes
with the decorators below (the contract they promise is ``packager.contract``). Marking has no side
effect: the registry collects marked objects, and the ``Format`` objects a module declares, when it
loads the modules named in the ``packager.converters`` entry-point group, so the support matrix
(``packager formats``) is always exactly what the code can do.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from importlib import import_module, metadata
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any, Callable, Iterable, Mapping, TypeVar

from packager import entry_points
from packager.contract import (
    CONVERTER_PARAMETERS,
    QUANTIZER_PARAMETERS,
    Artifact,
    Converter,
    ConvertOptions,
    Extension,
    Format,
    Framework,
    Quantizer,
    Runtime,
    check_call,
    check_framework,
    check_runtime,
    with_defaults,
)
from packager.errors import PackagerError, PluginError, UnsupportedConversion

ENTRY_POINT_GROUP = "packager.converters"
_MARK = "__packager_plugin__"


@dataclass(frozen=True)
class Conversion:
    """One registered conversion: source framework -> target format.

    ``options`` names the plugin options the converter reads from ``ConvertOptions.plugin`` (name -> help)."""

    source: str
    target: str
    quantize: frozenset[str]
    func: Converter
    note: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    prefer: bool = False  # among equally short paths (packager.graph), one through this edge wins
    adapter: str = ""  # the adapter this edge goes through (``adapts``), named before the converter it reaches
    applies: Callable[[Any], bool] | None = None  # the loaded models it takes (None: any); ``--to all`` skips the others
    applies_to: str = ""  # those models, in words ("tree ensembles")

    @property
    def name(self) -> str:
        converter = f"{self.func.__module__}.{self.func.__qualname__}"
        return f"{self.adapter} -> {converter}" if self.adapter else converter


@dataclass(frozen=True)
class Adapter:
    """A loaded model of framework ``source`` turned into one of framework ``to`` in memory (a Keras model into a
    TensorFlow graph; an XGBClassifier is already a scikit-learn estimator), so that ``to``'s converters to ``targets``
    serve ``source`` too. ``targets`` maps each target format opened this way to the note the support matrix shows."""

    source: str
    to: str
    targets: Mapping[str, str]
    func: Callable[[Any], Any]

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def edge(self, reached: Conversion, note: str) -> Conversion:
        """The conversion ``source -> reached.target``: this adapter, then ``reached`` (its quantization modes,
        options and preference, which are what runs)."""
        adapt, convert, name = self.func, reached.func, self.name

        def adapted(model: Any, signature: Any, out: Path, options: ConvertOptions) -> Artifact:
            artifact = convert(adapt(model), signature, out, options)
            return replace(artifact, details={**artifact.details, "adapter": name})  # the manifest says which adapter ran

        adapted.__module__, adapted.__qualname__ = convert.__module__, convert.__qualname__
        return replace(reached, source=self.source, func=adapted, note=note, adapter=self.name)


@dataclass(frozen=True)
class FrameworkPlugin:
    """A source framework: loads its model files, infers signatures, predicts natively."""

    name: str
    cls: type[Framework]


@dataclass(frozen=True)
class RuntimePlugin:
    """How one target format is loaded and run (or structure-checked) on this machine."""

    format: str
    cls: type[Runtime]
    criteria: Any = None  # {(OutputKind, quantization mode or None): criterion}: how validation judges this format
    declares: Format | None = None  # the format's facts, when declared with the runtime


@dataclass(frozen=True)
class QuantizerPlugin:
    """Post-conversion quantization for one format."""

    format: str
    modes: frozenset[str]
    func: Quantizer


@dataclass(frozen=True)
class FormatPlugin:
    """A format's facts, and the module that declared them."""

    format: Format
    owner: str


_T = TypeVar("_T")  # the decorated function or class, returned as it was: marking changes nothing about its type


def converts(
    source: str,
    *,
    to: str,
    quantize: Iterable[str] = (),
    note: str = "",
    options: Mapping[str, str] | None = None,
    prefer: bool = False,
    applies: Callable[[Any], bool] | None = None,
    applies_to: str = "",
) -> Callable[[_T], _T]:
    """Mark ``func(model, signature, out, options: ConvertOptions) -> Artifact`` as an edge of the conversion graph
    (``packager.graph``): from a source framework (``model`` is the loaded model) or from a format (``model`` is the
    path of the file or folder the previous hop wrote) to the format ``to``.

    ``options`` declares the plugin options it reads (``options.option("script")``), name -> one-line help;
    ``prefer`` makes paths through this edge win over equally short ones. ``applies(model) -> bool`` says which loaded
    models the converter takes at all (``applies_to`` in words): ``--to all`` skips the target for the others instead of
    printing the converter's refusal (asked for by name, the converter still answers with its reason)."""
    if applies is not None and not applies_to:
        raise PluginError(f"@converts({source!r}, to={to!r}) gives applies= without applies_to=", "say which models it takes, in words")

    def conversion(func: Any) -> Conversion:
        return Conversion(source, to, frozenset(quantize), func, note, dict(options or {}), prefer, applies=applies, applies_to=applies_to)

    return _mark(conversion)


def adapts(source: str, *, to: str, targets: Mapping[str, str]) -> Callable[[_T], _T]:
    """Mark ``func(model) -> model`` as an adapter: a loaded ``source`` model becomes a ``to`` model in memory, and
    ``to``'s converters to each of ``targets`` (format -> matrix note) convert it. Instead of one wrapper converter per
    target, e.g.::

        @adapts("keras", to="tensorflow", targets={"onnx": "tf2onnx from a tf.function", "tflite": "TFLiteConverter"})
        def keras_as_graph(model): return graph_from_callable(...)

    The edges are added once every plugin is loaded (``PluginRegistry.add_adapters``); an adapter naming a target its
    ``to`` framework has no converter for is a PluginError, as is an edge already registered directly."""
    return _mark(lambda obj: Adapter(source, to, dict(targets), obj))


def framework(name: str) -> Callable[[_T], _T]:
    """Mark a class as the loader/predictor of a source framework (``packager.contract.Framework``)."""
    return _mark(lambda obj: FrameworkPlugin(name, obj))


def runs(format_name: str | Format, *, criteria: Any = None, **facts: Any) -> Callable[[_T], _T]:
    """Mark a class as the runtime of a target format (``packager.contract.Runtime``; used by validation and inference).

    ``criteria`` is how validation judges the format's outputs, one criterion per (output kind, quantization mode),
    built with ``packager.validation.criteria_table``; a runtime without them is an error at registration.
    The format's facts come as a ``Format`` in place of the name, or as keyword arguments of ``Format``::

        @runs("onnx", criteria=criteria_table({None: FLOAT32, "dynamic": INT8}), title="ONNX", suffix=".onnx",
              check=None, safe_because="operators come from the runtime's fixed set")
        class OnnxRuntime(Runtime): ...
    """
    declared: Format | None
    if isinstance(format_name, Format):
        if facts:
            raise PluginError(f"@runs({format_name.name}) got a Format and format keywords {sorted(facts)}", "give one or the other")
        declared, name = format_name, format_name.name
    else:
        declared, name = (Format(format_name, **facts) if facts else None), format_name
    return _mark(lambda obj: RuntimePlugin(name, obj, criteria, declared))


def quantizes(format_name: str, *, modes: Iterable[str]) -> Callable[[_T], _T]:
    """Mark ``func(src, dst, mode, calibration) -> QuantizeResult`` as the quantizer of a format."""
    return _mark(lambda obj: QuantizerPlugin(format_name, frozenset(modes), obj))


def _mark(make_spec: Callable[[Any], Any]) -> Callable[[_T], _T]:
    def decorate(obj: _T) -> _T:
        setattr(obj, _MARK, make_spec(obj))
        return obj

    return decorate


@dataclass
class PluginRegistry:
    """Everything the loaded plugin modules declared. Registering a key twice, or two plugins claiming one format's
    files, is an error naming both; so is a declaration that does not fit ``packager.contract``."""

    conversions: dict[tuple[str, str], Conversion] = field(default_factory=dict)
    frameworks: dict[str, FrameworkPlugin] = field(default_factory=dict)
    runtimes: dict[str, RuntimePlugin] = field(default_factory=dict)
    quantizers: dict[str, QuantizerPlugin] = field(default_factory=dict)
    formats: dict[str, FormatPlugin] = field(default_factory=dict)
    extensions: dict[tuple[str, str], tuple[Extension, str]] = field(default_factory=dict)  # (point, key) -> (declaration, owner)
    adapters: dict[tuple[str, str, str], Adapter] = field(default_factory=dict)  # (source, to, adapter) -> adapter
    skipped: list[entry_points.Skipped] = field(default_factory=list)  # third parties' plugins that failed to load

    def missing(self, error: PackagerError, *wanted: str) -> PackagerError:
        """``error`` (a format, framework, runtime or route not found) naming the skipped plugins that may be why; one
        whose name is in ``wanted`` is the cause (``entry_points.explain``)."""
        return entry_points.explain(error, self.skipped, *wanted)

    def add_module(self, module: ModuleType) -> None:
        for obj in list(vars(module).values()):
            if isinstance(obj, Format):
                self.add_format(obj, module.__name__)
                continue
            if isinstance(obj, Extension):
                self.add_extension(obj, module.__name__)
                continue
            spec = vars(obj).get(_MARK) if isinstance(obj, (type, FunctionType)) else None
            if spec is not None and obj.__module__ == module.__name__:
                self.add(spec)

    def add_format(self, declared: Format, owner: str) -> None:
        known = self.formats.get(declared.name)
        if known is not None and known.format is not declared:
            raise PluginError(
                f"format {declared.name} is declared twice ({known.owner} and {owner})",
                "remove one of the two plugins or uninstall the duplicate package",
            )
        if known is None:
            self.formats[declared.name] = FormatPlugin(declared, owner)

    def add_extension(self, declared: Extension, owner: str) -> None:
        """A module-level declaration for an extension point (``packager.contract.Extension``); one owner per key."""
        slot = (declared.point, declared.key)
        known = self.extensions.get(slot)
        if known is not None and known[0] is not declared:
            raise PluginError(
                f"{declared.point} {declared.key} is declared twice ({known[1]} and {owner})",
                "remove one of the two plugins or uninstall the duplicate package",
            )
        self.extensions[slot] = (declared, owner)

    def extensions_of(self, point: str) -> list[Any]:
        """The declarations made for ``point``, in key order."""
        return [self.extensions[slot][0] for slot in sorted(s for s in self.extensions if s[0] == point)]

    def quantize_modes(self) -> frozenset[str]:
        """Every mode a registered quantizer or a quantizing conversion offers (what ``--quantize`` may name)."""
        modes = {m for q in self.quantizers.values() for m in q.modes}
        return frozenset(modes | {m for c in self.conversions.values() for m in c.quantize})

    def add(self, spec: Any) -> None:
        spec = self._checked(spec)
        table, key = self._slot(spec)
        if key in table:
            raise PluginError(
                f"{key} is registered twice ({_origin(table[key])} and {_origin(spec)})",
                "remove one of the two plugins or uninstall the duplicate package",
            )
        if isinstance(spec, FrameworkPlugin):
            for other in self.frameworks.values():
                shared = sorted(spec.cls.file_formats & other.cls.file_formats)
                if shared:
                    raise PluginError(
                        f"{_origin(other)} and {_origin(spec)} both load {', '.join(shared)} files",
                        "one framework owns a file format: uninstall one plugin or drop the format from one",
                    )
        if isinstance(spec, RuntimePlugin) and spec.declares is not None:
            self.add_format(spec.declares, spec.cls.__module__)
        table[key] = spec

    def _checked(self, spec: Any) -> Any:
        """The declaration checked against the contract; plugin classes get the contract's default hooks."""
        origin = _origin(spec)
        if isinstance(spec, Conversion):
            check_call(spec.func, len(CONVERTER_PARAMETERS), (), "a converter func(model, signature, out, options) -> Artifact", origin)
        elif isinstance(spec, Adapter):
            check_call(spec.func, 1, (), "an adapter func(model) -> model", origin)
        elif isinstance(spec, QuantizerPlugin):
            check_call(spec.func, len(QUANTIZER_PARAMETERS), (), "a quantizer func(src, dst, mode, calibration) -> QuantizeResult", origin)
        elif isinstance(spec, FrameworkPlugin):
            spec = replace(spec, cls=with_defaults(spec.cls, Framework))
            check_framework(spec.cls, origin)
        elif isinstance(spec, RuntimePlugin):
            spec = replace(spec, cls=with_defaults(spec.cls, Runtime))
            check_runtime(spec.cls, origin)
            if not spec.criteria:
                raise PluginError(
                    f"runtime {origin} for {spec.format} declares no validation criteria",
                    "give @runs(..., criteria=criteria_table({...})): validation cannot judge the format without them",
                )
        return spec

    def _slot(self, spec: Any) -> tuple[dict[Any, Any], Any]:
        if isinstance(spec, Conversion):
            return self.conversions, (spec.source, spec.target)
        if isinstance(spec, Adapter):
            return self.adapters, (spec.source, spec.to, spec.name)
        if isinstance(spec, FrameworkPlugin):
            return self.frameworks, spec.name
        if isinstance(spec, RuntimePlugin):
            return self.runtimes, spec.format
        if isinstance(spec, QuantizerPlugin):
            return self.quantizers, spec.format
        raise PluginError(f"unknown plugin declaration {spec!r}")

    def add_adapters(self) -> None:
        """The edges the adapters open, once every module is loaded (the converter an adapter reaches may come from a
        plugin loaded after it). Registered like any conversion: a key already taken is an error naming both."""
        for adapter in self.adapters.values():
            for target, note in adapter.targets.items():
                if (adapter.source, target) in self.conversions and self.conversions[(adapter.source, target)].adapter == adapter.name:
                    continue  # added by an earlier call
                reached = self.conversions.get((adapter.to, target))
                if reached is None:
                    raise PluginError(
                        f"adapter {adapter.name} opens {adapter.source} -> {target}, but {adapter.to} has no converter to {target}",
                        f"drop {target} from its targets, or register a {adapter.to} -> {target} converter",
                    )
                self.add(adapter.edge(reached, note))

    def check_complete(self) -> None:
        """Every format a runtime, a framework, a quantizer or a conversion names has its facts declared."""
        named = {r.format: _origin(r) for r in self.runtimes.values()}
        named.update({q.format: _origin(q) for q in self.quantizers.values()})
        named.update({c.target: _origin(c) for c in self.conversions.values()})
        named.update({f: _origin(p) for p in self.frameworks.values() for f in p.cls.file_formats})
        missing = sorted(set(named) - set(self.formats))
        if missing:
            raise PluginError(
                "no Format declaration for " + ", ".join(f"{m} (named by {named[m]})" for m in missing),
                "declare it with a Format(...) in the plugin module or @runs(..., title=..., suffix=..., check=...)",
            )

    # ---- look-ups with errors that say what exists ----
    def format(self, name: str) -> Format:
        """The declared facts of a format (an undeclared name gets none: no check, so untrusted files are refused)."""
        plugin = self.formats.get(name)
        return plugin.format if plugin else Format(name, title=name)

    def detectors(self) -> list[Format]:
        """The formats that declared a content test."""
        return [p.format for p in self.formats.values() if p.format.detect is not None]

    def conversion(self, source: str, target: str) -> Conversion:
        """The direct edge source -> target (``route`` finds a path of several)."""
        found = self.conversions.get((source, target))
        if found is None:
            from packager.graph import no_route

            raise self.missing(no_route(self, source, target), target, source)
        return found

    def route(self, source: str, target: str) -> Any:
        """The path of conversions from ``source`` to ``target`` (``packager.graph.Route``)."""
        from packager.graph import find_route, no_route

        found = find_route(self, source, target)
        if found is None:
            raise self.missing(no_route(self, source, target), target, source)
        return found

    def targets_of(self, source: str) -> list[str]:
        """Every format ``source`` reaches, directly or through other formats."""
        from packager.graph import reachable

        return sorted(reachable(self, source))

    def framework(self, name: str) -> Framework:
        plugin = self.frameworks.get(name)
        if plugin is None:
            raise self.missing(UnsupportedConversion(f"no plugin loads {name} models", "see `packager formats`"), name)
        return plugin.cls()

    def runtime(self, format_name: str) -> Runtime | None:
        plugin = self.runtimes.get(format_name)
        return plugin.cls() if plugin else None

    def provider(self, format_name: str) -> dict[str, str] | None:
        """The third-party distribution whose runtime runs ``format_name`` (None for packager's own plugins): a package
        of that format needs it installed to run, so the package says so."""
        plugin = self.runtimes.get(format_name)
        if plugin is None:
            return None
        module = plugin.cls.__module__
        names = _distributions_providing(module.split(".")[0])
        if not names or "packager" in names:
            return None
        return {"module": module, "distribution": names[0], "version": metadata.version(names[0])}

    def criteria(self, format_name: str) -> Any:
        """The criteria the format's runtime declared (None when it has no runtime)."""
        plugin = self.runtimes.get(format_name)
        return plugin.criteria if plugin else None

    def framework_for_object(self, obj: Any) -> str:
        for name, plugin in self.frameworks.items():
            if plugin.cls.claims(obj):
                return name
        unknown = UnsupportedConversion(
            f"no plugin recognises an object of type {type(obj).__module__}.{type(obj).__qualname__}",
            f"supported frameworks: {', '.join(sorted(self.frameworks))}",
        )
        raise self.missing(unknown, type(obj).__module__.partition(".")[0])

    def loads_as_source(self, format_name: str) -> bool:
        return any(format_name in p.cls.file_formats for p in self.frameworks.values())

    def framework_for_format(self, format_name: str) -> str:
        for name, plugin in self.frameworks.items():
            if format_name in plugin.cls.file_formats:
                return name
        unknown = UnsupportedConversion(f"no plugin loads {format_name} files as a source model", "see `packager formats`")
        raise self.missing(unknown, format_name)


def _origin(spec: Any) -> str:
    if isinstance(spec, Conversion):
        return spec.name  # an adapted edge: the adapter and the converter it reaches
    obj = spec.func if isinstance(spec, (QuantizerPlugin, Adapter)) else spec.cls
    return f"{obj.__module__}.{obj.__qualname__}"


def load_registry(modules: Iterable[str] | None = None) -> PluginRegistry:
    """Build a registry from the given module names, or from every installed entry point. A third party's entry point
    that fails to load is skipped with a warning and kept in ``registry.skipped`` (``entry_points.load_or_skip``);
    packager's own, or a named module, fail loudly."""
    registry = PluginRegistry()
    if modules is None:
        for ep in entry_points.group(ENTRY_POINT_GROUP):
            loaded = entry_points.load_or_skip(ep, "plugin", accept=_is_module, must_name="a module")
            if isinstance(loaded, entry_points.Skipped):
                registry.skipped.append(loaded)
            else:
                registry.add_module(loaded)
        # by name: the warnings and the errors naming them read the same whatever order the distributions were found in
        # (importlib.metadata's order differed between two runs of the suite)
        registry.skipped.sort(key=lambda skipped: (skipped.name, skipped.distribution))
    else:
        for name in modules:
            registry.add_module(import_module(name))
    registry.add_adapters()
    registry.check_complete()
    return registry


def _is_module(obj: object) -> bool:
    return isinstance(obj, ModuleType)


def _load_entry_point(ep: metadata.EntryPoint) -> ModuleType:
    module: ModuleType = entry_points.load(ep, "plugin", accept=_is_module, must_name="a module")
    return module


_DEFAULT_LOCK = threading.RLock()
_DEFAULT: list[PluginRegistry] = []


def default_registry() -> PluginRegistry:
    """The installed plugins, loaded once per process (logged: the acceptance test counts the loads).

    Under a lock, not ``functools.lru_cache``: the server's request threads asked for it at the same moment, lru_cache
    built two registries, and ``sandbox.confines`` (which compares by identity) refused the second as "a custom plugin
    registry" (CI, stop 27: one of four push clients got that error from the server)."""
    with _DEFAULT_LOCK:
        if not _DEFAULT:
            registry = load_registry()
            logging.getLogger(__name__).debug("loaded the plugins: %d modules", len({p.owner for p in registry.formats.values()}))
            _DEFAULT.append(registry)
        return _DEFAULT[0]


def _distributions_providing(top_level: str) -> list[str]:
    """The distributions that install the import package ``top_level``, from the cached map of every installed RECORD
    (``packages_distributions()`` read them all on every package written: 0.4-2 s a target, measured on a Keras model to
    9 targets). A package not in the map is looked up once more in a fresh one (a plugin installed since), once per
    name: a module no distribution installs (a plugin on sys.path) would otherwise re-read them all at every write."""
    from packager.deps import module_providers

    names = module_providers().get(top_level)
    if names is None and top_level not in _REFRESHED_FOR:
        _REFRESHED_FOR.add(top_level)
        module_providers.cache_clear()
        names = module_providers().get(top_level)
    return list(names or [])


_REFRESHED_FOR: set[str] = set()  # import packages the map was re-read for (see _distributions_providing)
