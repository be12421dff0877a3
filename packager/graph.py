"""The conversion graph: converters are edges (framework -> format, or format -> format) and a conversion is a path.

A plugin that turns ONNX into a new format declares one edge (``@converts("onnx", to="newformat")``) and every source
that reaches ONNX reaches the new format: the core finds the path, runs each hop into a folder of its own, and the
pipeline validates the final artifact against the *original* source (``packager.conversion``), never hop by hop
against an intermediate file. Measured on main before the graph: 25 of 46 converters were one-line wrappers around
another converter, and a target reached through ONNX needed one converter per framework.

Path choice: the direct edge when there is one; else the fewest hops (breadth-first); among equally short paths, the
one with the most edges a plugin marked ``prefer=True``, then the first registered. A path only ends on a format that
has a runtime here (a path to a format nothing can run could never be validated).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from packager.contract import Artifact, ConvertOptions
from packager.errors import ConversionError, PackagerError, PluginError, UnsupportedConversion, first_line

if TYPE_CHECKING:
    from packager.plugins import Conversion, PluginRegistry

HOPS_FOLDER = ".hops"  # inside the staging folder; removed once the last hop has written the artifact
MAX_HOPS = 4  # a longer chain compounds every converter's error; none of ours needs more than 2


@dataclass(frozen=True)
class Route:
    """The hops from a source (framework, or format for a later hop) to a target format."""

    hops: tuple[Conversion, ...]

    @property
    def source(self) -> str:
        return self.hops[0].source

    @property
    def target(self) -> str:
        return self.hops[-1].target

    @property
    def via(self) -> tuple[str, ...]:
        """The intermediate formats (empty for a direct conversion)."""
        return tuple(h.target for h in self.hops[:-1])

    def describe(self) -> str:
        return " -> ".join([self.source, *(h.target for h in self.hops)])


def edges_from(registry: PluginRegistry, node: str, first: bool) -> list[Conversion]:
    """The edges leaving ``node``: from the source framework on the first hop, from a file format after it. An edge
    whose source is a framework's name takes a loaded model, never a file, so it is no later hop (keras is both a
    framework and a format: the keras -> onnx converter cannot take a .keras file a previous hop wrote), unless the
    framework's model is the file itself (``Framework.model_is_file``: ONNX)."""

    def takes_files(source: str) -> bool:
        plugin = registry.frameworks.get(source)
        return plugin is None or plugin.cls.model_is_file

    return [c for (s, _), c in registry.conversions.items() if s == node and (first or takes_files(s))]


def find_route(registry: PluginRegistry, source: str, target: str) -> Route | None:
    """The path from ``source`` to ``target`` (see the module docstring), or None."""
    direct = registry.conversions.get((source, target))
    if direct is not None:
        return Route((direct,))
    order = {key: i for i, key in enumerate(registry.conversions)}
    frontier: list[tuple[Conversion, ...]] = [(c,) for c in edges_from(registry, source, True)]
    seen = {source} | {p[-1].target for p in frontier}
    for _ in range(MAX_HOPS - 1):
        longer: list[tuple[Conversion, ...]] = []
        for path in frontier:
            for edge in edges_from(registry, path[-1].target, False):
                if edge.target == target or edge.target not in seen:
                    longer.append((*path, edge))
        done = [p for p in longer if p[-1].target == target]
        if done:
            best = max(done, key=lambda p: (sum(h.prefer for h in p), [-order[(h.source, h.target)] for h in p]))
            return Route(best)
        frontier = longer
        seen |= {p[-1].target for p in longer}
        if not frontier:
            break
    return None


def reachable(registry: PluginRegistry, source: str) -> dict[str, Route]:
    """Every format ``source`` reaches, with the route the core would take (formats without a runtime left out when
    they are only reachable through another hop: nothing could validate them)."""
    found: dict[str, Route] = {}
    targets = {t for _, t in registry.conversions}
    for target in sorted(targets):
        route = find_route(registry, source, target)
        if route is not None and (len(route.hops) == 1 or target in registry.runtimes):
            found[target] = route
    return found


def run_route(route: Route, model: Any, signature: Any, out: Path, options: ConvertOptions) -> Artifact:
    """Each hop in turn: the first gets the loaded source model, each later one the path of the previous artifact.
    Intermediate artifacts live in ``out/.hops`` and are removed at the end (their companion files are kept, see
    ``_carry_companions``); only the last hop quantizes. The
    artifact's details carry every hop (converter, formats, what it reported) for the manifest."""
    if len(route.hops) == 1:
        return route.hops[0].func(model, signature, out, options)
    hops_dir = Path(out) / HOPS_FOLDER
    records: list[dict[str, Any]] = []
    merged: dict[str, Any] = {}
    current: Any = model
    companions: list[tuple[Path, str]] = []
    try:
        for index, hop in enumerate(route.hops):
            last = index == len(route.hops) - 1
            folder = Path(out) if last else hops_dir / f"{index}-{hop.target}"
            folder.mkdir(parents=True, exist_ok=True)
            hop_options = options if last else replace(options, quantize=None, calibration=None)
            artifact = _run_hop(hop, route, current, signature, folder, hop_options)
            records.append({"from": hop.source, "to": hop.target, "converter": hop.name, **_plain(artifact.details)})
            merged.update({k: v for k, v in artifact.details.items() if k != "hops"})
            current = Path(artifact.path)
            if not last:
                companions.append((folder, current.name))
        for folder, artifact_name in companions:
            _carry_companions(folder, artifact_name, Path(out))
    finally:
        shutil.rmtree(hops_dir, ignore_errors=True)
    return Artifact(current, {**merged, "route": route.describe(), "hops": records})


def _carry_companions(folder: Path, artifact_name: str, out: Path) -> None:
    """Files a hop wrote beside its artifact describe the model, not the file format (a Hugging Face tokenizer and its
    preprocessing.json beside model.onnx): they travel to the package. The artifact and files named after it (ONNX
    external data, ``model.onnx.data``) stay behind; a name the last hop wrote itself is kept as the last hop wrote it.
    Measured: MiniLM -> onnx -> next format lost tokenizer.json, and predicting on texts failed."""
    for member in sorted(folder.iterdir()):
        if member.name.startswith(artifact_name) or (out / member.name).exists():
            continue
        shutil.move(str(member), str(out / member.name))


def _run_hop(hop: Conversion, route: Route, model: Any, signature: Any, folder: Path, options: ConvertOptions) -> Artifact:
    """One hop, its failure named as that hop's (the chain's name alone would blame the wrong converter)."""
    where = f"hop {hop.source} -> {hop.target} ({hop.name}) of {route.describe()}"
    try:
        artifact = hop.func(model, signature, folder, options)
    except PackagerError as exc:  # same type and exit code, with the hop named
        exc.what = f"{where}: {exc.what}"
        exc.args = (f"{exc.what}. {exc.hint}" if exc.hint else exc.what,)
        raise
    except Exception as exc:
        raise ConversionError(
            f"{where} failed: {type(exc).__name__}: {first_line(exc)}",
            "a defect in that converter plugin: report it with --debug output (or try another --to)",
        ) from exc
    if not isinstance(artifact, Artifact) or not Path(artifact.path).exists():
        raise PluginError(f"{where} returned {artifact!r}, not an Artifact of a file it wrote", "a defect in the converter plugin")
    return artifact


def _plain(details: Mapping[str, Any]) -> dict[str, Any]:
    """A hop's details as JSON-able values (paths as names)."""
    return {k: (v.name if isinstance(v, Path) else v) for k, v in details.items() if k not in ("hops", "route")}


def no_route(registry: PluginRegistry, source: str, target: str) -> UnsupportedConversion:
    targets = sorted(reachable(registry, source))
    return UnsupportedConversion(
        f"no converter from {source} to {target}",
        f"{source} converts to: {', '.join(targets) or 'nothing'} (see `packager formats`)",
    )


def as_conversion(route: Route) -> Conversion:
    """The route as one conversion the pipeline runs like any other: the direct edge itself, or a chain named after
    its last hop (the converter that wrote the artifact) whose details list every hop. Built with ``replace`` on
    the last hop, so this module imports nothing of ``packager.plugins`` at run time (which imports it: a cycle)."""
    if len(route.hops) == 1:
        return route.hops[0]
    last = route.hops[-1]

    def chain(model: Any, signature: Any, out: Path, options: ConvertOptions) -> Artifact:
        return run_route(route, model, signature, out, options)

    chain.__module__, chain.__qualname__ = last.func.__module__, last.func.__qualname__
    options = {name: text for hop in route.hops for name, text in hop.options.items()}
    note = f"via {', '.join(route.via)}" + (f"; {last.note}" if last.note else "")
    return replace(last, source=route.source, target=route.target, func=chain, note=note, options=options, prefer=False)
