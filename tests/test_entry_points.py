"""One loader for the three entry-point groups (packager/entry_points.py): converter plugins, registry backends, blob
stores. A broken entry point in any of them is a PluginError naming it, with the same two failures: the code it names
cannot be imported (whatever it raises), or it names the wrong kind of object. Entry points are importlib.metadata's own
objects, built here: what a distribution's entry_points.txt would give, without installing one."""

from __future__ import annotations

from importlib.metadata import EntryPoint

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
