"""The plugin registry: entry points, one-line registrations, duplicates refused, matrix generated."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

from packager.errors import PluginError, UnsupportedConversion
from packager.matrix import matrix_markdown, support_matrix
from packager.plugins import PluginRegistry, converts, default_registry, load_registry, runs


def _module(name: str, **members) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in members.items():
        value.__module__ = name
        setattr(module, key, value)
    return module


def test_our_converters_come_from_the_entry_point_group():
    registry = default_registry()
    assert ("sklearn", "onnx") in registry.conversions
    assert registry.conversions[("sklearn", "onnx")].quantize == {"dynamic", "static", "fp16"}
    assert set(registry.runtimes) >= {"onnx", "pmml", "pickle", "joblib", "skops", "coreml", "mleap"}


def test_a_third_party_module_registers_the_same_way(monkeypatch):
    from packager.validation import FLOAT32, criteria_table

    @converts("sklearn", to="toy")
    def to_toy(model, signature, out, options):
        return out

    @runs("toy", criteria=criteria_table({None: FLOAT32}), title="toy", suffix=".toy", check=None, safe_because="a test")
    class ToyRuntime:
        name, executes = "toy", True

        def load(self, path, *, trust=False, threads=None): ...
        def predict(self, handle, signature, feeds): ...

    module = _module("third_party_toy", to_toy=to_toy, ToyRuntime=ToyRuntime)
    monkeypatch.setitem(sys.modules, "third_party_toy", module)
    registry = load_registry(["packager.converters.sklearn", "packager.converters.pickles", "packager.converters.onnx", "third_party_toy"])
    assert registry.conversion("sklearn", "toy").func is to_toy
    rows = {(r.source, r.target): r for r in support_matrix(registry)}
    assert rows[("sklearn", "toy")].validated_by == "toy"


def test_registering_a_conversion_twice_is_an_error(monkeypatch):
    @converts("sklearn", to="onnx")
    def again(model, signature, out, options):
        return out

    monkeypatch.setitem(sys.modules, "dup_plugin", _module("dup_plugin", again=again))
    with pytest.raises(PluginError, match=r"\('sklearn', 'onnx'\) is registered twice"):
        load_registry(["packager.converters.sklearn", "packager.converters.pickles", "dup_plugin"])


def test_imported_names_are_not_registered_twice():
    registry = PluginRegistry()
    import packager.converters.sklearn as module

    registry.add_module(module)
    registry.add_module(types.SimpleNamespace(__name__="other", **{"sklearn_to_onnx": module.sklearn_to_onnx}))  # re-export
    assert len([k for k in registry.conversions if k == ("sklearn", "onnx")]) == 1


def test_unknown_pair_lists_what_exists():
    targets = "coreml, joblib, lightgbm, lleaves, mleap, onedal, onnx, openvino, pickle, pmml, skops, treelite, xgboost-json, xgboost-ubj"
    with pytest.raises(UnsupportedConversion, match=f"sklearn converts to: {targets}"):  # openvino through onnx: the graph
        default_registry().conversion("sklearn", "tflite")


def test_matrix_markdown_has_a_row_per_conversion():
    rows = support_matrix()
    text = matrix_markdown(rows)
    assert text.count("\n| sklearn |") == len([r for r in rows if r.source == "sklearn"])
    assert "not executed" in text  # Core ML says so


def test_readme_support_matrix_is_generated_from_the_registry():
    from pathlib import Path

    from packager.matrix import render_readme

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert render_readme(readme, support_matrix()) == readme, "run `make readme` to refresh the README's support matrix"


def test_threads_asking_for_the_default_registry_at_once_get_the_same_one():
    """The server's request threads ask at the same moment; two registries made ``sandbox.confines`` refuse the second as
    "a custom plugin registry" (CI, stop 27). Run in a fresh process so the registry is not yet loaded."""
    code = ("import threading; from packager.plugins import default_registry; b = threading.Barrier(8); out = []\n"
            "def go():\n    b.wait(); out.append(default_registry())\n"
            "ts = [threading.Thread(target=go) for _ in range(8)]; [t.start() for t in ts]; [t.join() for t in ts]\n"
            "print(len({id(r) for r in out}), len(out))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["1", "8"]
