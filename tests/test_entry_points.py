"""One loader for the three entry-point groups (packager/entry_points.py): converter plugins, registry backends, blob
stores. A broken entry point in any of them is a PluginError naming it, with the same two failures: the code it names
cannot be imported (whatever it raises), or it names the wrong kind of object. Entry points are importlib.metadata's own
objects, built here: what a distribution's entry_points.txt would give, without installing one."""

from __future__ import annotations

import json
import logging
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from packager.errors import PluginError
from packager.plugins import ENTRY_POINT_GROUP as CONVERTERS
from packager.plugins import _load_entry_point
from packager.registry.backends import ENTRY_POINT_GROUP as REGISTRIES
from packager.registry.backends import _backend
from packager.registry.blobs import BLOB_ENTRY_POINT_GROUP as BLOBSTORES
from packager.registry.blobs import S3, BlobStoreKind, _kind

LOADERS = {CONVERTERS: _load_entry_point, REGISTRIES: _backend, BLOBSTORES: _kind}
KIND = {CONVERTERS: "plugin", REGISTRIES: "registry backend", BLOBSTORES: "blob store"}


@pytest.fixture
def broken_module(tmp_path, monkeypatch):
    """A third-party module that fails on import with an error of its own (not an ImportError)."""
    (tmp_path / "tidy22_broken_plugin.py").write_text("raise RuntimeError('tidy22 marker: the plugin is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tidy22_broken_plugin"


@pytest.mark.parametrize("group", LOADERS)
def test_an_entry_point_whose_code_fails_on_import_is_a_plugin_error_naming_it(group, broken_module):
    ep = EntryPoint(name="brokenthing", value=f"{broken_module}:KIND" if group != CONVERTERS else broken_module, group=group)
    with pytest.raises(PluginError) as caught:
        LOADERS[group](ep)
    assert caught.value.what.startswith(f"{KIND[group]} entry point brokenthing = {ep.value} cannot be loaded (RuntimeError: tidy22 marker")
    assert caught.value.hint == "fix or uninstall the package that provides it"


@pytest.mark.parametrize("group", LOADERS)
def test_an_entry_point_naming_a_missing_module_is_a_plugin_error_naming_it(group):
    ep = EntryPoint(name="gone", value="tidy22_no_such_module:thing", group=group)
    with pytest.raises(PluginError, match=r"entry point gone = tidy22_no_such_module:thing cannot be loaded \(ModuleNotFoundError"):
        LOADERS[group](ep)


@pytest.mark.parametrize(
    ("group", "value", "wanted"),
    [
        (CONVERTERS, "json:dumps", "must name a module"),  # a function where a plugin module is expected
        (REGISTRIES, "json:__doc__", "must name a callable that opens a registry (url, blobs, **options)"),  # a string: nothing to call
        (BLOBSTORES, "json", "must name a BlobStoreKind for the scheme 'wrongkind'"),  # a module, not a BlobStoreKind
    ],
)
def test_an_entry_point_naming_the_wrong_kind_of_object_is_a_plugin_error_naming_it(group, value, wanted):
    with pytest.raises(PluginError) as caught:
        LOADERS[group](EntryPoint(name="wrongkind", value=value, group=group))
    assert caught.value.what == f"{KIND[group]} entry point wrongkind = {value} {wanted}"


def test_the_same_loader_accepts_what_each_group_should_name():
    import packager.converters.onnx as onnx_plugin

    from packager.registry.api import LocalRegistry

    assert _load_entry_point(EntryPoint(name="onnx", value="packager.converters.onnx", group=CONVERTERS)) is onnx_plugin
    assert _backend(EntryPoint(name="sqlite", value="packager.registry.api:LocalRegistry", group=REGISTRIES)) is LocalRegistry
    assert _kind(EntryPoint(name="s3", value="packager.registry.blobs:S3", group=BLOBSTORES)) is S3
    # a BlobStoreKind for another scheme than its entry point's name would serve the wrong URLs: refused
    with pytest.raises(PluginError, match="must name a BlobStoreKind for the scheme 'gs'"):
        _kind(EntryPoint(name="gs", value="packager.registry.blobs:S3", group=BLOBSTORES))


def test_a_table_entry_that_cannot_be_loaded_fails_the_same_way_when_opened(tmp_path):
    """Built-in backends and stores are ``module:attribute`` strings loaded by the same loader when first opened."""
    from packager.registry import backends

    with pytest.raises(PluginError, match=r"registry backend entry point tidy22 = tidy22_no_such_module:Backend cannot be loaded"):
        backends._load("tidy22_no_such_module:Backend", "tidy22")
    kind = BlobStoreKind("tidy22", "tidy22_no_such_module:Store")
    with pytest.raises(PluginError, match=r"blob store entry point tidy22 = tidy22_no_such_module:Store cannot be loaded"):
        kind.open("tidy22://bucket")


# ---------------------------------------------------------------- a broken third party is skipped, ours fail loudly
# Real distributions: a dist-info folder on sys.path, found by importlib.metadata as pip would leave it.

THIRD_PARTY_MARKER = "tables22 marker: the third-party plugin is broken"


def _distribution(site, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """What ``pip install --no-deps --target site`` leaves: the modules and a dist-info declaring ``entry_points``."""
    site.mkdir(exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def broken_third_party(tmp_path, monkeypatch):
    """``packager-npz-linear`` whose module raises on import, and ``tables22-oddthing`` whose entry point names a
    function; ``logs`` forgets what it said, so the warning is this test's."""
    from packager import logs

    site = tmp_path / "site"
    _distribution(site, "packager-npz-linear", "[packager.converters]\nnpz_linear = t22_npz_linear\n",
                  {"t22_npz_linear": f"raise RuntimeError({THIRD_PARTY_MARKER!r})\n"})
    _distribution(site, "tables22-oddthing", "[packager.converters]\noddthing = json:dumps\n", {})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(logs, "_SAID", set())
    return site


def test_a_third_party_plugin_that_fails_to_load_is_skipped_with_one_warning_naming_it(broken_third_party, caplog):
    from packager.errors import InputFileError, UnsupportedConversion
    from packager.formats import detect_format
    from packager.plugins import load_registry

    caplog.set_level(logging.WARNING, logger="packager")
    registry = load_registry()
    registry_again = load_registry()  # a second load (a sandbox child's, here the same process): said once
    assert {"onnx", "sklearn", "openvino"} <= set(registry.formats) | set(registry.frameworks)  # ours all loaded
    # entry points come in the order importlib.metadata finds the distributions (it differed between two runs): sorted
    assert sorted((s.name, s.distribution, s.version) for s in registry.skipped) == [
        ("npz_linear", "packager-npz-linear", "0.3.1"), ("oddthing", "tables22-oddthing", "0.3.1")]
    assert registry_again.skipped == registry.skipped
    warnings = sorted(r.getMessage() for r in caplog.records if r.name == "packager.entry_points")
    assert warnings == [
        "skipped the plugin npz_linear = t22_npz_linear from packager-npz-linear 0.3.1 failed to load "
        f"(RuntimeError: {THIRD_PARTY_MARKER}); fix or uninstall packager-npz-linear to use it",
        "skipped the plugin oddthing = json:dumps from tables22-oddthing 0.3.1 failed to load (it must name a module); "
        "fix or uninstall tables22-oddthing to use it",
    ]

    # what needs the skipped plugin by its name: a PluginError saying it failed to load and why
    with pytest.raises(PluginError) as caught:
        registry.route("sklearn", "npz-linear")
    assert caught.value.what == (
        "no converter from sklearn to npz-linear: the plugin npz_linear = t22_npz_linear from packager-npz-linear 0.3.1 "
        f"failed to load (RuntimeError: {THIRD_PARTY_MARKER})"
    )
    assert caught.value.hint == "fix or uninstall packager-npz-linear"
    with pytest.raises(PluginError, match="no plugin loads oddthing models: the plugin oddthing = json:dumps from tables22-oddthing"):
        registry.framework("oddthing")
    # what any plugin might have provided keeps its own class, with the skipped plugins named as a possible cause
    with pytest.raises(UnsupportedConversion) as caught:
        registry.route("sklearn", "tables22-nothing")
    assert caught.value.what.startswith("no converter from sklearn to tables22-nothing (the plugin npz_linear")
    assert caught.value.what.endswith("failed to load (it must name a module): it may be the plugin that provides it)")
    unknown = broken_third_party / "weights.npz"
    unknown.write_bytes(b"tables22 not a model")
    with pytest.raises(InputFileError, match=r"weights\.npz is not a model file packager can read .*packager-npz-linear 0\.3\.1 failed"):
        detect_format(unknown, registry)


def test_packagers_own_plugin_that_fails_to_load_still_fails_loudly(tmp_path, monkeypatch):
    """The distribution ``packager`` (this dist-info shadows the installed one, as importlib.metadata keeps the first
    of a name on sys.path): its broken entry point stops the load, it is never skipped."""
    from packager.plugins import load_registry

    _distribution(tmp_path / "site", "packager", "[packager.converters]\nonnx = t22_own_plugin\n",
                  {"t22_own_plugin": "raise RuntimeError('tables22 marker: our own plugin is broken')\n"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PluginError) as caught:
        load_registry()
    assert caught.value.what == (
        "plugin entry point onnx = t22_own_plugin cannot be loaded (RuntimeError: tables22 marker: our own plugin is broken)"
    )


def test_a_third_party_blob_store_that_fails_to_load_is_skipped_and_its_urls_say_why(tmp_path, monkeypatch, caplog):
    from packager import logs
    from packager.registry import blobs

    monkeypatch.setattr(blobs, "_KINDS", dict(blobs._KINDS))
    monkeypatch.setattr(blobs, "_SKIPPED", {})
    monkeypatch.setattr(logs, "_SAID", set())
    _distribution(tmp_path / "site", "tables22-blob", "[packager.blobstores]\nt22blob = t22_blob_store:KIND\n",
                  {"t22_blob_store": "import tables22_no_such_dependency\n"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    caplog.set_level(logging.WARNING, logger="packager")
    # every sandboxed call asks for the credentials to hide: the built-in stores' still come back
    assert "AWS_SECRET_ACCESS_KEY" in blobs.hidden_credentials() and "t22blob" not in blobs.blob_store_kinds()
    assert "AWS_SECRET_ACCESS_KEY" in blobs.hidden_credentials()  # asked again: not re-imported, not re-warned
    warnings = sorted(r.getMessage() for r in caplog.records if r.name == "packager.entry_points")
    assert warnings == ["skipped the blob store t22blob = t22_blob_store:KIND from tables22-blob 0.3.1 failed to load "
                        "(ModuleNotFoundError: No module named 'tables22_no_such_dependency'); fix or uninstall tables22-blob to use it"]
    with pytest.raises(PluginError, match=r"^unsupported blob store URL 't22blob://b/p': the blob store t22blob = .* failed to load"):
        blobs.open_blob_store("t22blob://b/p")
    assert (tmp_path / "objects").exists() is False


def test_the_cli_keeps_working_past_a_broken_third_party_plugin_and_names_it_where_needed(tmp_path):
    """Through the real CLI and the sandbox child (which loads the plugins again from the same sys.path): `formats`,
    `inspect` and a sandboxed `convert` work with one warning line each, not one per process; `--to` the broken
    plugin's format is exit 11 in one line saying it failed to load and why."""
    import os
    import pickle

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from tests.conftest import run_cli

    site = tmp_path / "site"
    _distribution(site, "packager-npz-linear", "[packager.converters]\nnpz_linear = t22_npz_linear\n",
                  {"t22_npz_linear": f"raise RuntimeError({THIRD_PARTY_MARKER!r})\n"})
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")]), str(site)]),
           "PACKAGER_HOME": str(tmp_path / "home")}
    X, y = load_iris(return_X_y=True)
    (tmp_path / "iris.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=300).fit(X, y)))
    warning = (f"packager: skipped the plugin npz_linear = t22_npz_linear from packager-npz-linear 0.3.1 failed to load "
               f"(RuntimeError: {THIRD_PARTY_MARKER}); fix or uninstall packager-npz-linear to use it")

    formats = run_cli("formats", "--json", env=env)
    assert formats.returncode == 0 and formats.stderr.splitlines() == [warning], formats.stderr
    assert "npz-linear" not in formats.stdout and '"onnx"' in formats.stdout
    inspected = run_cli("inspect", str(tmp_path / "iris.pkl"), "--json", env=env)  # in the sandbox child
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["format"] == "pickle"
    from_child = warning.replace("packager: ", "packager: child packager.entry_points: ")  # the parent loaded none
    assert [line for line in inspected.stderr.splitlines() if "skipped" in line] == [from_child]
    converted = run_cli("convert", str(tmp_path / "iris.pkl"), "--to", "onnx", "-o", str(tmp_path / "pkg"), "--json", env=env)
    assert converted.returncode == 0, converted.stderr
    assert [line for line in converted.stderr.splitlines() if "skipped" in line] == [warning]  # the parent's; the child's dropped
    assert json.loads((tmp_path / "pkg" / "manifest.json").read_text())["validation"]["status"] == "passed"

    refused = run_cli("convert", str(tmp_path / "iris.pkl"), "--to", "npz-linear", "-o", str(tmp_path / "npz"), env=env)
    assert refused.returncode == 11
    assert refused.stderr.splitlines() == [
        warning,
        "error: PluginError: no converter from sklearn to npz-linear: the plugin npz_linear = t22_npz_linear from "
        f"packager-npz-linear 0.3.1 failed to load (RuntimeError: {THIRD_PARTY_MARKER}). fix or uninstall packager-npz-linear",
    ]
    assert not (tmp_path / "npz").exists()
