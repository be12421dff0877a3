"""Layers import downwards only, and ``packager``'s modules form no import cycle at module level.

The graph is read from the source with ``ast`` (nothing is imported). Upward imports are refused wherever they are,
inside functions too. The cycle check counts module-level imports only: an import inside a function runs when the
function is called, after every module has finished initialising, so it cannot meet a half-initialised module; it is
also how heavy frameworks stay off ``packager --help`` (measured: importing torch alone takes seconds here).
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
    nodes = _top_level(tree.body) if module_level else list(ast.walk(tree))
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
            if target and target != module:
                found.add(target)
    return found


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


def test_no_import_cycle_at_module_level():
    graph = {m: _imports(m, module_level=True) for m in MODULES}
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
    assert cycles == []


def test_the_graph_reader_sees_what_it_must():
    """The checks above are only as good as the reader: it finds a relative import, a from-import of a module, and
    skips function bodies at module level."""
    assert "packager.contract" in _imports("packager.plugins", module_level=True)
    assert "packager.registry.backend" in _imports("packager.inference", module_level=False)
    assert "packager.registry.backend" not in _imports("packager.inference", module_level=True)


# ---------------------------------------------------------------- the plugins are packager.converters

def test_the_plugins_load_as_packager_converters_and_nothing_is_top_level_converters():
    """Installed, setuptools maps the folder converters/ to packager.converters (no generic top-level name in
    site-packages); a checkout gets the same name from packager/__init__.py. No plugin may reach the folder under its
    bare name: that would load a second copy of the module, with classes the registry does not know."""
    import subprocess
    import sys

    code = (
        "import sys; from packager.plugins import default_registry; r = default_registry(); "
        "print(sorted({p.owner for p in r.formats.values()})); print(sorted(m for m in sys.modules if m.split('.')[0] == 'converters'))"
    )
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
