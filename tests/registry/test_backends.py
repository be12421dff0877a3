"""Registry backends are chosen by URL scheme from one table, third parties register theirs, and
the local and remote backends are siblings under one abstract contract (no import cycle)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from packager.errors import PluginError, UsageError
from packager.registry.api import LocalRegistry
from packager.registry.backend import RegistryBackend
from packager.registry.backends import _BACKENDS, open_registry, register_backend
from packager.registry.remote import RemoteRegistry


def test_the_scheme_picks_the_backend(tmp_path):
    local = open_registry(f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "o"))
    remote = open_registry("http://127.0.0.1:9", token="t")
    assert type(local) is LocalRegistry and type(remote) is RemoteRegistry
    assert isinstance(local, RegistryBackend) and isinstance(remote, RegistryBackend)
    assert not issubclass(RemoteRegistry, LocalRegistry) and not issubclass(LocalRegistry, RemoteRegistry)
    with pytest.raises(UsageError, match=r"no registry backend for the URL 'nonsense://x'.*sqlite://"):
        open_registry("nonsense://x")


def test_a_third_party_backend_is_one_registration(tmp_path, monkeypatch):
    monkeypatch.setitem(_BACKENDS, "sqlite", _BACKENDS["sqlite"])  # restored after the test
    opened = []

    def factory(url, blobs=None, **options):
        opened.append((url, blobs, options))
        return LocalRegistry(f"sqlite:///{tmp_path / 'c.db'}", str(tmp_path / "o"))

    register_backend("memo", factory)
    try:
        registry = open_registry("memo://somewhere", "blobs-here", timeout=3)
        assert isinstance(registry, LocalRegistry) and opened == [("memo://somewhere", "blobs-here", {"timeout": 3})]
        with pytest.raises(PluginError, match="already served by"):
            register_backend("memo", lambda url, blobs=None: None)
        with pytest.raises(PluginError, match="already served by"):
            register_backend("sqlite", factory)
    finally:
        _BACKENDS.pop("memo", None)


def test_a_backend_missing_an_operation_cannot_be_built():
    class Partial(RegistryBackend):
        def get(self, ref):
            raise NotImplementedError

    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_registry_modules_import_alone_in_any_order():
    """Each module imports on its own in a fresh interpreter (a cycle would fail one of these orders)."""
    modules = ["packager.registry.remote", "packager.registry.api", "packager.registry.backends", "packager.registry.backend"]
    for first in modules:
        done = subprocess.run([sys.executable, "-c", f"import {first}"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", ["folder", pytest.param("s3", marks=pytest.mark.s3)])
def test_every_blob_store_streams_ranges_and_says_whether_it_has_a_local_file(kind, tmp_path, request):
    """The BlobStore protocol is what the server calls: chunks (whole or a byte range) and local_path (a file, or None
    for a bucket); the server asks, it no longer probes with hasattr."""
    import os

    from packager.registry.blobs import BlobStore, open_blob_store

    store: BlobStore = open_blob_store(str(tmp_path / "blobs") if kind == "folder" else request.getfixturevalue("s3_blobs"))
    data = os.urandom(3 * 1024 + 17)
    (tmp_path / "f.bin").write_bytes(data)
    digest = store.put_file(tmp_path / "f.bin").digest
    assert b"".join(store.chunks(digest, size=1000)) == data
    assert b"".join(store.chunks(digest, 5, 2050, size=1000)) == data[5:2051]
    local = store.local_path(digest)
    assert (local is not None and local.read_bytes() == data) if kind == "folder" else local is None
