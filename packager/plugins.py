"""The plugin registry: which frameworks load, which conversions exist, which formats run here.

A plugin module (ours under ``converters/`` or a third party's) marks its functions and classes
with the decorators below. Marking has no side effect: the registry collects marked objects when
it loads the modules named in the ``packager.converters`` entry-point group, so the support
matrix (``packager formats``) is always exactly what the code can do.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import import_module, metadata
from types import ModuleType
from typing import Any, Callable, Iterable

from packager.errors import PluginError, UnsupportedConversion

ENTRY_POINT_GROUP = "packager.converters"
_MARK = "__packager_plugin__"


@dataclass(frozen=True)
class Conversion:
    """One registered conversion: source framework -> target format."""

    source: str
    target: str
    quantize: frozenset[str]
    func: Callable[..., Any]
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


@dataclass(frozen=True)
class FrameworkPlugin:
    """A source framework: loads its model files, infers signatures, predicts natively."""

    name: str
    cls: type


@dataclass(frozen=True)
class RuntimePlugin:
    """How one target format is loaded and run (or structure-checked) on this machine."""

    format: str
    cls: type
    criteria: Any = None  # {(OutputKind, quantization mode or None): criterion}: how validation judges this format


@dataclass(frozen=True)
class QuantizerPlugin:
    """Post-conversion quantization for one format."""

    format: str
    modes: frozenset[str]
    func: Callable[..., Any]


def converts(source: str, *, to: str, quantize: Iterable[str] = (), note: str = ""):
    """Mark ``func(model, signature, out_path, options) -> Path`` as the source->to conversion."""
    return _mark(lambda obj: Conversion(source, to, frozenset(quantize), obj, note))


def framework(name: str):
    """Mark a class as the loader/predictor of a source framework."""
    return _mark(lambda obj: FrameworkPlugin(name, obj))


def runs(format_name: str, *, criteria: Any = None):
    """Mark a class as the runtime of a target format (used by validation and inference).

    ``criteria`` is how validation judges the format's outputs, one criterion per (output kind, quantization mode),
    built with ``packager.validation.criteria_table``; a format that runs models without declaring them cannot be
    validated (an error, never an exact match by default)::

        @runs("onnx", criteria=criteria_table({None: FLOAT32, "dynamic": INT8}))
        class OnnxRuntime(Runtime): ...
    """
    return _mark(lambda obj: RuntimePlugin(format_name, obj, criteria))


def quantizes(format_name: str, *, modes: Iterable[str]):
    """Mark ``func(src, dst, mode, calibration) -> None`` as the quantizer of a format."""
    return _mark(lambda obj: QuantizerPlugin(format_name, frozenset(modes), obj))


def _mark(make_spec: Callable[[Any], Any]):
    def decorate(obj):
        setattr(obj, _MARK, make_spec(obj))
        return obj

    return decorate


@dataclass
class PluginRegistry:
    """Everything the loaded plugin modules declared. Registering a key twice is an error."""

    conversions: dict[tuple[str, str], Conversion] = field(default_factory=dict)
    frameworks: dict[str, FrameworkPlugin] = field(default_factory=dict)
    runtimes: dict[str, RuntimePlugin] = field(default_factory=dict)
    quantizers: dict[str, QuantizerPlugin] = field(default_factory=dict)

    def add_module(self, module: ModuleType) -> None:
        for obj in list(vars(module).values()):
            spec = getattr(obj, _MARK, None)
            if spec is not None and getattr(obj, "__module__", None) == module.__name__:
                self.add(spec)

    def add(self, spec: Any) -> None:
        table, key = self._slot(spec)
        if key in table:
            raise PluginError(
                f"{key} is registered twice ({_origin(table[key])} and {_origin(spec)})",
                "remove one of the two plugins or uninstall the duplicate package",
            )
        table[key] = spec

    def _slot(self, spec: Any) -> tuple[dict, Any]:
        if isinstance(spec, Conversion):
            return self.conversions, (spec.source, spec.target)
        if isinstance(spec, FrameworkPlugin):
            return self.frameworks, spec.name
        if isinstance(spec, RuntimePlugin):
            return self.runtimes, spec.format
        if isinstance(spec, QuantizerPlugin):
            return self.quantizers, spec.format
        raise PluginError(f"unknown plugin declaration {spec!r}")

    # ---- look-ups with errors that say what exists ----
    def conversion(self, source: str, target: str) -> Conversion:
        found = self.conversions.get((source, target))
        if found is None:
            targets = sorted(t for s, t in self.conversions if s == source)
            raise UnsupportedConversion(
                f"no converter from {source} to {target}",
                f"{source} converts to: {', '.join(targets) or 'nothing'} (see `packager formats`)",
            )
        return found

    def targets_of(self, source: str) -> list[str]:
        return sorted(t for s, t in self.conversions if s == source)

    def framework(self, name: str) -> Any:
        plugin = self.frameworks.get(name)
        if plugin is None:
            raise UnsupportedConversion(f"no plugin loads {name} models", "see `packager formats`")
        return plugin.cls()

    def runtime(self, format_name: str) -> Any | None:
        plugin = self.runtimes.get(format_name)
        return plugin.cls() if plugin else None

    def criteria(self, format_name: str) -> Any:
        """The criteria the format's runtime declared (None when it declared none)."""
        plugin = self.runtimes.get(format_name)
        return plugin.criteria if plugin else None

    def framework_for_object(self, obj: Any) -> str:
        for name, plugin in self.frameworks.items():
            if plugin.cls.claims(obj):
                return name
        raise UnsupportedConversion(
            f"no plugin recognises an object of type {type(obj).__module__}.{type(obj).__qualname__}",
            f"supported frameworks: {', '.join(sorted(self.frameworks))}",
        )

    def framework_for_format(self, format_name: str) -> str:
        for name, plugin in self.frameworks.items():
            if format_name in plugin.cls.file_formats:
                return name
        raise UnsupportedConversion(
            f"no plugin loads {format_name} files as a source model",
            "see `packager formats` for the source formats",
        )


def _origin(spec: Any) -> str:
    obj = getattr(spec, "func", None) or getattr(spec, "cls", None)
    return f"{obj.__module__}.{obj.__qualname__}" if obj is not None else repr(spec)


def load_registry(modules: Iterable[str] | None = None) -> PluginRegistry:
    """Build a registry from the given module names, or from every installed entry point."""
    registry = PluginRegistry()
    if modules is None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            registry.add_module(_load_entry_point(ep))
    else:
        for name in modules:
            registry.add_module(import_module(name))
    return registry


def _load_entry_point(ep: metadata.EntryPoint) -> ModuleType:
    try:
        module = ep.load()
    except Exception as exc:  # a broken third-party plugin must not take the tool down silently
        raise PluginError(
            f"plugin entry point {ep.name} = {ep.value} cannot be loaded ({type(exc).__name__}: {exc})",
            "fix or uninstall the package that provides it",
        ) from exc
    if not isinstance(module, ModuleType):
        raise PluginError(f"plugin entry point {ep.name} must name a module, not {ep.value}")
    return module


@functools.lru_cache(maxsize=1)
def default_registry() -> PluginRegistry:
    return load_registry()
