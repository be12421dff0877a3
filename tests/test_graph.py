"""The conversion graph on a registry of small real plugins (numpy files, no ML framework): which path the core takes,
how each hop runs, what the manifest learns, and how a failing hop is named."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from packager.contract import Artifact, ConvertOptions, Format, Framework, Runtime
from packager.errors import ConversionError, UnsupportedConversion
from packager.graph import HOPS_FOLDER, as_conversion, find_route, reachable
from packager.plugins import converts, framework, load_registry, runs
from packager.validation import FLOAT32, criteria_table


def _format(name: str) -> Format:
    return Format(name, title=name, suffix=f".{name}", check=None, safe_because="a test format of plain numbers")


def _plugin(monkeypatch, **edges) -> types.ModuleType:
    """A module declaring formats a, b, c, d (each runs as plain text numbers), a framework ``nums`` and the edges given
    as name -> (source, target, prefer): each edge writes the previous values plus one, so the path is visible."""
    module = types.ModuleType("graph_toy")
    for name in "abcd":
        setattr(module, f"FMT_{name}", _format(name))

        @runs(name, criteria=criteria_table({None: FLOAT32}))
        class TextRuntime(Runtime):
            distribution = "numpy"

            def load(self, path, *, trust=False, threads=None):
                return np.loadtxt(path, ndmin=1)

            def predict(self, handle, signature, feeds):
                return {"y": handle}

        TextRuntime.__module__ = "graph_toy"
        setattr(module, f"Runtime_{name}", TextRuntime)

    @framework("nums")
    class Nums(Framework):
        file_formats = frozenset()

        @staticmethod
        def claims(obj):
            return isinstance(obj, np.ndarray)

        def load(self, path, fmt, *, trust=False):
            raise NotImplementedError

        def signature(self, model, sample):
            return None

        def feeds(self, model, signature, sample):
            return {}

        def predict(self, model, signature, feeds):
            return {"y": model}

    Nums.__module__ = "graph_toy"
    module.Nums = Nums
    for name, (source, target, prefer) in edges.items():

        def edge(model, signature, out, options, _target=target, _name=name):
            values = np.asarray(model) if isinstance(model, np.ndarray) else np.loadtxt(model, ndmin=1)
            if _name == "broken":
                raise KeyError("boom")
            path = Path(out) / f"model.{_target}"
            np.savetxt(path, values + 1)
            (Path(out) / f"companion-of-{_name}.json").write_text("{}")
            return Artifact(path, {"edge": _name})

        edge.__module__, edge.__qualname__, edge.__name__ = "graph_toy", name, name
        setattr(module, name, converts(source, to=target, prefer=prefer)(edge))
    monkeypatch.setitem(sys.modules, "graph_toy", module)
    return module


def _registry(monkeypatch, **edges):
    _plugin(monkeypatch, **edges)
    return load_registry(["graph_toy"])


def test_the_direct_edge_wins_and_else_the_fewest_hops(monkeypatch):
    registry = _registry(
        monkeypatch,
        nums_a=("nums", "a", False),
        a_b=("a", "b", False),
        b_c=("b", "c", False),
        a_c=("a", "c", False),
        nums_c=("nums", "c", False),
    )
    assert find_route(registry, "nums", "c").describe() == "nums -> c"
    assert find_route(registry, "nums", "b").describe() == "nums -> a -> b"
    assert find_route(registry, "a", "c").describe() == "a -> c"
    assert find_route(registry, "nums", "d") is None
    assert sorted(reachable(registry, "nums")) == ["a", "b", "c"]


def test_a_preferred_edge_breaks_a_tie_between_equally_short_paths(monkeypatch):
    plain = _registry(monkeypatch, nums_a=("nums", "a", False), nums_b=("nums", "b", False), a_d=("a", "d", False), b_d=("b", "d", False))
    assert plain.route("nums", "d").describe() == "nums -> a -> d"  # registration order
    preferred = _registry(
        monkeypatch, nums_a=("nums", "a", False), nums_b=("nums", "b", False), a_d=("a", "d", False), b_d=("b", "d", True)
    )
    assert preferred.route("nums", "d").describe() == "nums -> b -> d"


def test_no_path_is_an_unsupported_conversion_listing_what_the_source_reaches(monkeypatch):
    registry = _registry(monkeypatch, nums_a=("nums", "a", False), a_b=("a", "b", False))
    with pytest.raises(UnsupportedConversion, match=r"no converter from nums to d\. nums converts to: a, b"):
        registry.route("nums", "d")


def test_each_hop_gets_the_previous_file_and_only_the_artifact_and_companions_remain(monkeypatch, tmp_path):
    registry = _registry(monkeypatch, nums_a=("nums", "a", False), a_b=("a", "b", False), b_c=("b", "c", False))
    chain = as_conversion(registry.route("nums", "c"))
    assert chain.name == "graph_toy.b_c" and chain.source == "nums" and chain.target == "c"
    artifact = chain.func(np.array([1.0, 2.0]), None, tmp_path, ConvertOptions())
    assert np.array_equal(np.loadtxt(artifact.path), [4.0, 5.0])  # three hops, each +1: every hop ran on its predecessor
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "companion-of-a_b.json",
        "companion-of-b_c.json",
        "companion-of-nums_a.json",
        "model.c",
    ]
    assert artifact.details["route"] == "nums -> a -> b -> c"
    assert [(h["from"], h["to"], h["converter"], h["edge"]) for h in artifact.details["hops"]] == [
        ("nums", "a", "graph_toy.nums_a", "nums_a"),
        ("a", "b", "graph_toy.a_b", "a_b"),
        ("b", "c", "graph_toy.b_c", "b_c"),
    ]


def test_a_failing_hop_is_named_and_leaves_no_intermediate_file(monkeypatch, tmp_path):
    registry = _registry(monkeypatch, nums_a=("nums", "a", False), broken=("a", "b", False))
    chain = as_conversion(registry.route("nums", "b"))
    with pytest.raises(ConversionError, match=r"hop a -> b \(graph_toy.broken\) of nums -> a -> b failed: KeyError: 'boom'"):
        chain.func(np.array([1.0]), None, tmp_path, ConvertOptions())
    assert not (tmp_path / HOPS_FOLDER).exists()


def test_an_edge_from_a_framework_is_never_a_later_hop(monkeypatch):
    """keras is a framework and a format: the keras -> onnx converter takes a model object, never a .keras file a
    previous hop wrote. Here "a" is both a framework name and a format: its edge serves only as a first hop."""
    module = _plugin(monkeypatch, nums_a=("nums", "a", False), a_b=("a", "b", False))

    @framework("a")
    class A(module.Nums):
        @staticmethod
        def claims(obj):
            return False

    A.__module__ = "graph_toy"
    module.A = A
    registry = load_registry(["graph_toy"])
    assert find_route(registry, "nums", "b") is None
    A.model_is_file = True  # a framework whose model is its file (ONNX): its edges are later hops too
    assert find_route(registry, "nums", "b").describe() == "nums -> a -> b"
