"""Layers import downwards only, ``packager``'s modules form no import cycle (counting imports inside functions too),
and the plugins under ``converters/`` import only packager's plugin-facing modules.

The graph is read from the source with ``ast`` (nothing is imported). Upward imports are refused wherever they are,
inside functions too. The cycle check counts imports inside functions as well: such an import cannot meet a
half-initialised module, but a cycle through one is still a knot of responsibilities (issue 22: conversion, confined,
inference, inspection, bench and the registry formed one 10-module cycle because the sandbox child called the public
functions again). Importing one's own parent package is not an edge: Python initialises a package before its
submodules, so ``from packager.registry import lineage`` inside ``packager.registry.backend`` depends on ``lineage``.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "packager"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def _resolve(name: str) -> str | None:
    """The packager module an import names (``packager.x.y`` may be the attribute ``y`` of module ``packager.x``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, *, module_level: bool) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = _top_level(tree.body) if module_level else _run_time(tree)
    found = set()
    for node in nodes:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            target = _resolve(name) if name.startswith("packager") else None
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


def _run_time(tree: ast.Module) -> list[ast.AST]:
    """Every node that can run: all of the module, functions included, but not ``if TYPE_CHECKING:`` blocks (an
    annotation's import never runs, so it makes no cycle)."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for statement in node.body for n in ast.walk(statement)}  # its else branch does run
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run when the module is imported: the body, and the branches of module-level if/try (not functions,
    classes' methods, or ``if TYPE_CHECKING:`` blocks, which never run)."""
    out = []
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.If, ast.Try)):
            handlers = [s for h in getattr(node, "handlers", []) for s in h.body]
            out += _top_level(node.body + node.orelse + handlers + getattr(node, "finalbody", []))
        elif isinstance(node, ast.ClassDef):
            out += _top_level([s for s in node.body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))])
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(node)
    return out


def _layer(module: str) -> str:
    if module == "packager.cli" or module.startswith("packager.commands"):
        return "cli"
    if module.startswith("packager.server"):
        return "server"
    if module.startswith("packager.registry"):
        return "registry"
    return "core"


FORBIDDEN = {"core": {"cli", "server"}, "registry": {"cli", "server"}, "server": {"cli"}}


def test_no_module_imports_upwards():
    upward = sorted(f"{m} imports {t}" for m in MODULES for t in _imports(m, module_level=False)
                    if _layer(t) in FORBIDDEN.get(_layer(m), ()))
    assert upward == []


def test_the_core_imports_the_registry_only_inside_functions():
    """The pipeline reaches the registry on demand (``predict name@3``); importing the core never loads the catalog code."""
    eager = sorted(f"{m} imports {t}" for m in MODULES if _layer(m) == "core"
                   for t in _imports(m, module_level=True) if _layer(t) == "registry")
    assert eager == []


def _graph(module_level: bool) -> dict[str, set[str]]:
    return {m: _imports(m, module_level=module_level) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def test_no_import_cycle_at_module_level():
    assert _cycles(_graph(module_level=True)) == []


def test_no_import_cycle_counting_imports_inside_functions():
    assert _cycles(_graph(module_level=False)) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_body():
    """The check above can fail: requests importing the pipeline inside a function (which imports requests) is a cycle."""
    graph = _graph(module_level=False)
    graph["packager.requests"] = graph["packager.requests"] | {"packager.conversion"}
    assert any("packager.requests" in cycle for cycle in _cycles(graph))


def _plugins_named_by_the_core() -> list[str]:
    """packager modules that import a plugin (``packager.converters.x``) or name one in a string (``import_module("...")``):
    the import graph above cannot see those, because the plugins are not under packager/."""
    named = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " not in node.value:
                names = [node.value]
            named += [f"{module} names {n}" for n in names if n.startswith("packager.converters.")]
    return sorted(set(named))


def test_the_core_names_no_plugin():
    """The core asks the registry (``extensions_of``, ``framework``...) and never names a plugin: packager.sources once
    called ``import_module("packager.converters.mlflow")`` for models:/ URIs; now the plugin declares a SourceScheme."""
    assert _plugins_named_by_the_core() == []


# ---------------------------------------------------------------- what a plugin may import

PLUGIN_API = {
    "packager",  # the package itself (``from packager import safety``)
    "packager.contract",  # what a plugin promises (Artifact, ConvertOptions, Runtime, Format)
    "packager.plugins",  # the decorators that mark it
    "packager.errors",
    "packager.deps",  # optional frameworks: require(), version_of()
    "packager.signature",
    "packager.validation",  # criteria a format declares
    "packager.columns",
    "packager.spark_session",
    "packager.formats",  # container sniffing and its helpers for Format.detect (zip_names, looks_like_xml...)
    "packager.settings",  # PACKAGER_* read in one place (the compiled-tree cache lives under the home)
    "packager.logs",  # native_stderr_without: a library's known, harmless notices dropped from fd 2
}
PLUGIN_API_PACKAGES = ("packager.safety",)  # the static checks a loader runs before loading


def _plugin_imports() -> dict[str, set[str]]:
    """packager modules each plugin file imports (anywhere in it); relative imports stay among the plugins."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "converters").glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names if a.name.split(".")[0] == "packager"}
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "packager":
                module = node.module or ""
                names |= {_resolve(f"{module}.{a.name}") or module for a in node.names}
        found[path.name] = names
    return found


def test_plugins_import_only_the_plugin_api():
    """A plugin reaches the core through the contract (``packager.contract``), the decorators, the errors, the checks and
    a few helpers; never the pipeline, the sandbox, the requests, the registry or the CLI (the core calls plugins, not
    the other way round)."""
    reached = sorted(
        f"converters/{name} imports {module}"
        for name, modules in _plugin_imports().items()
        for module in modules
        if module not in PLUGIN_API and module not in PLUGIN_API_PACKAGES
        and not module.startswith((*(p + "." for p in PLUGIN_API_PACKAGES), "packager.converters"))
    )
    assert reached == []


def test_the_plugin_import_reader_sees_what_it_must():
    imports = _plugin_imports()
    assert "packager.contract" in imports["onnx.py"]
    assert "packager.safety" in imports["sklearn.py"]  # ``from packager import safety`` names the subpackage


def test_the_graph_reader_sees_what_it_must():
    """The checks above are only as good as the reader: it finds a relative import, a from-import of a module, and
    skips function bodies at module level."""
    assert "packager.contract" in _imports("packager.plugins", module_level=True)
    assert "packager.registry.backend" in _imports("packager.inference", module_level=False)
    assert "packager.registry.backend" not in _imports("packager.inference", module_level=True)
    assert "packager.registry.lineage" in _imports("packager.registry.backend", module_level=True)
    assert "packager.registry" not in _imports("packager.registry.backend", module_level=False)  # its own parent


# ---------------------------------------------------------------- the plugins are packager.converters

def test_the_plugins_load_as_packager_converters_and_nothing_is_top_level_converters():
    """Installed, setuptools maps the folder converters/ to packager.converters (no generic top-level name in
    site-packages); a checkout gets the same name from packager/__init__.py. No plugin may reach the folder under its
    bare name: that would load a second copy of the module, with classes the registry does not know."""
    import subprocess
    import sys

    code = ("import sys; from packager.plugins import default_registry; r = default_registry(); "
            "print(sorted({p.owner for p in r.formats.values()})); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'converters'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    owners, bare = result.stdout.splitlines()
    assert bare == "[]", result.stderr
    assert all(o.startswith("packager.converters.") for o in eval(owners)), owners


def test_pyproject_lists_every_package_folder_and_maps_converters():
    """The package list is explicit (a mapped folder cannot be found by setuptools' find): it must name every folder."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.relative_to(ROOT).parts) for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    assert set(config["packages"]) == folders | {"packager", "packager.converters"}
    assert config["package-dir"] == {"packager.converters": "converters"}
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["packager.converters"]
    assert all(v.startswith("packager.converters.") for v in entry_points.values())
    assert {f"packager.converters.{p.stem}" for p in (ROOT / "converters").glob("*.py")} >= set(entry_points.values())
