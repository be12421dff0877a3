"""``PACKAGER_*`` settings are read in one module (``packager.settings``), typed; nothing else reads them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from packager import settings
from packager.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def _environment_reads(path: Path) -> list[str]:
    """``os.environ.get(X)``, ``os.environ[X]``, ``os.getenv(X)`` where X is a PACKAGER_ literal or a constant naming one
    (``ENV_BWRAP``, ``settings.TOKEN``, as sandbox.py read them before): the places a module reads a setting itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner = ast.unparse(node.func.value)
            if (owner.endswith("environ") and node.func.attr in ("get", "pop", "setdefault")) or ast.unparse(node.func).endswith("getenv"):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            key = node.slice
        if key is None:
            continue
        literal = str(key.value) if isinstance(key, ast.Constant) else ""
        named = ast.unparse(key) if isinstance(key, (ast.Name, ast.Attribute)) else ""
        if literal.startswith("PACKAGER_") or named.startswith(("ENV_", "settings.")) or named.isupper():
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_settings_module_reads_packager_variables():
    files = [*(ROOT / "packager").rglob("*.py"), *(ROOT / "converters").glob("*.py")]
    reads = [r for f in files if f.name != "settings.py" for r in _environment_reads(f)]
    assert reads == []
    assert _environment_reads(ROOT / "packager" / "settings.py")  # the reader sees reads where there are some


def test_settings_are_typed_and_a_bad_number_is_one_usage_error(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.HOME, str(tmp_path))
    monkeypatch.setenv(settings.REGISTRY, "")
    assert settings.home() == tmp_path and settings.registry_url() is None  # empty means unset
    monkeypatch.setenv(settings.SANDBOX_TIMEOUT, "2.5")
    assert settings.positive_number(settings.SANDBOX_TIMEOUT, 1800.0) == 2.5
    monkeypatch.setenv(settings.SANDBOX_TIMEOUT, "soon")
    with pytest.raises(UsageError, match=r"PACKAGER_SANDBOX_TIMEOUT='soon' is not a number"):
        settings.positive_number(settings.SANDBOX_TIMEOUT, 1800.0)
    monkeypatch.setenv(settings.SANDBOX_TIMEOUT, "-1")
    with pytest.raises(UsageError, match="is not positive"):
        settings.positive_number(settings.SANDBOX_TIMEOUT, 1800.0)
