"""The registry holds nothing packager would refuse (issue 21, lower findings: 81 hostile packages were stored by
`push`, exit 0 on 826a172). A push runs the static check a load runs on the package's model file before any blob is
stored; `packager serve` runs it again on what was uploaded before it records a version; a check that cannot run (no
plugin declares the format) is recorded on the version as the tag packager.check, not passed silently."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from packager.errors import UnsafeModelError
from tests.conftest import run_cli

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

MARKER_PICKLE = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x12touch /tmp/pwned-x\x85R."
TOKEN = "push-check-token"


def _package(root: Path, fmt: str, model_file: str, data: bytes) -> Path:
    root.mkdir(parents=True)
    (root / model_file).write_bytes(data)
    manifest = {
        "format": fmt, "model_file": model_file, "quantization": {"mode": None, "applied": False}, "validation": {"status": "source"}
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _onnx(external: bool, doc: str = "") -> bytes:
    weight = numpy_helper.from_array(__import__("numpy").ones(4, dtype="float32"), "w")
    if external:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "/etc/hostname"), ("offset", "0"), ("length", "16")):
            weight.external_data.add(key=key, value=value)
    io = (
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", *io, [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9, doc_string=doc).SerializeToString()


def _stored(home: Path) -> tuple[int, list[Path]]:
    catalog = home / "catalog.db"
    versions = sqlite3.connect(catalog).execute("select count(*) from versions").fetchone()[0] if catalog.exists() else 0
    blobs = [p for p in (home / "objects").rglob("*") if p.is_file()] if (home / "objects").exists() else []
    return versions, blobs


@pytest.mark.parametrize("fmt, name, data, says", [
    ("pickle", "model.pkl", MARKER_PICKLE, "model.pkl imports os.system"),
    ("onnx", "model.onnx", _onnx(external=True), "model.onnx: tensor 'w'"),
])
def test_push_of_a_hostile_package_is_refused_and_nothing_is_stored(tmp_path, fmt, name, data, says):
    package = _package(tmp_path / "package", fmt, name, data)
    home = tmp_path / "home"
    result = run_cli("push", str(package), "--name", "evil", env={**os.environ, "PACKAGER_HOME": str(home)}, cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert _stored(home) == (0, [])


def test_a_plain_package_is_stored_with_its_verdict_and_an_unknown_format_is_recorded_as_not_checked(tmp_path):
    from packager.registry.api import LocalRegistry

    registry = LocalRegistry(f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects"))
    good = registry.push(_package(tmp_path / "good", "onnx", "model.onnx", _onnx(external=False)), "m")
    assert registry.get(good.id).tags["packager.check"] == "passed"
    odd = registry.push(_package(tmp_path / "odd", "mystery", "model.bin", b"\0" * 16), "m")
    assert registry.get(odd.id).tags["packager.check"] == "not run: no installed plugin declares the format 'mystery'"


def test_the_server_checks_what_it_records_whatever_the_client_did(tmp_path):
    """A client that skips its own check (a hostile or older client) uploads the blobs and asks to record: the server
    copies the model file out of its blob store, runs the check, and refuses; its catalog stays empty."""
    from packager.registry.backend import package_files
    from packager.registry.backends import open_registry
    from tests.services import start_registry_server

    home = tmp_path / "server"
    home.mkdir()
    (home / "tokens").write_text(TOKEN + "\n")
    url, stop = start_registry_server(home, home / "tokens")
    try:
        remote = open_registry(url, token=TOKEN)
        package = _package(tmp_path / "package", "pickle", "model.pkl", MARKER_PICKLE)
        entries = remote.store_files([(path, rel, "package") for rel, path in package_files(package)])
        manifest = json.loads((package / "manifest.json").read_text())
        with pytest.raises(UnsafeModelError, match="model.pkl imports os.system"):
            remote.record("evil", manifest, entries, {}, tags={"packager.check": "passed"})
        assert _stored(home)[0] == 0
        assert not Path("/tmp/pwned-x").exists()
        env = {**os.environ, "PACKAGER_TOKEN": TOKEN}
        result = run_cli("push", str(package), "--name", "evil", "--registry", url, env=env, cwd=tmp_path)
        assert result.returncode == 5 and "model.pkl imports os.system" in result.stderr, result.stderr
        assert _stored(home)[0] == 0
    finally:
        stop()


def test_push_with_trust_stores_it_and_says_it_was_not_checked(tmp_path):
    package = _package(tmp_path / "package", "pickle", "model.pkl", MARKER_PICKLE)
    home = tmp_path / "home"
    env = {**os.environ, "PACKAGER_HOME": str(home)}
    result = run_cli("push", str(package), "--name", "mine", "--trust", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from packager.registry.api import LocalRegistry

    stored = LocalRegistry(f"sqlite:///{home / 'catalog.db'}", str(home / "objects")).get("mine")
    assert stored.tags["packager.check"] == "not run: pushed with trust"
    assert not Path("/tmp/pwned-x").exists()


def test_the_same_bytes_are_checked_once_per_process_and_a_changed_or_hostile_file_every_time(tmp_path, monkeypatch):
    """Pushing one package under several names re-ran the sandboxed check each time (~1.1 s a push here). A pass is
    remembered by the content's digest; a file with one byte changed is checked again, a refusal is refused again."""
    from packager import sandbox
    from packager.registry.api import LocalRegistry

    children = []
    real_run = sandbox.run
    monkeypatch.setattr(sandbox, "run", lambda *a, **k: children.append(a) or real_run(*a, **k))
    registry = LocalRegistry(f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects"))
    data = _onnx(external=False, doc="checked once")  # bytes no other test pushes (a pass is remembered per process)
    package = _package(tmp_path / "first", "onnx", "model.onnx", data)
    for name in ("a", "b", "c"):
        assert registry.get(registry.push(package, name).id).tags["packager.check"] == "passed"
    assert len(children) == 1
    changed = _package(tmp_path / "changed", "onnx", "model.onnx", _onnx(external=False, doc="checked twice"))
    registry.push(changed, "a")
    assert len(children) == 2
    hostile = _package(tmp_path / "hostile", "onnx", "model.onnx", _onnx(external=True))
    for _ in range(2):
        with pytest.raises(UnsafeModelError, match="tensor 'w'"):
            registry.push(hostile, "evil")
    assert len(children) == 4
    assert [v.version for v in registry.list("a")] in ([1, 2], [2, 1]) and registry.list("evil") == []
