"""What an attacker's pass over the round-three defences found, each reproduced as the attacker ran it (reproducers in
the session notes): a push that stored a host file swapped in during its check, a manifest that named a format whose
check reads no pickle, a forged ``packager.check`` tag, a Hugging Face config that asked for 61 GB by leaving its width
to transformers' defaults, a sentence-transformers module path outside the folder, and a Keras lookup layer reading
its vocabulary from a host file. Each test fails on the code before the fix."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from packager.errors import UnsafeModelError, UsageError
from tests.conftest import run_cli

MARKER_PICKLE = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x16touch /tmp/pwned-rt3-x\x85R."
SECRET = "kaggle-key-5f1c9e-never-in-the-registry"


def _package(root: Path, fmt: str, model_file: str, data: bytes) -> Path:
    root.mkdir(parents=True)
    (root / model_file).write_bytes(data)
    (root / "notes.txt").write_text("release notes\n")
    manifest = {"format": fmt, "model_file": model_file, "quantization": {"mode": None, "applied": False}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _registry(tmp_path: Path):
    from packager.registry.api import LocalRegistry

    return LocalRegistry(f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects"))


def _blob_texts(tmp_path: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in (tmp_path / "objects").rglob("*") if p.is_file())


def test_a_file_swapped_for_a_link_during_the_check_is_not_what_push_stores(tmp_path, monkeypatch):
    """The check takes seconds (a sandbox child); the package file was stored afterwards by a plain open that followed a
    link swapped in meanwhile: push exit 0, and pull handed back ~/.kaggle/kaggle.json."""
    from packager.registry import checks

    secret = tmp_path / "home" / ".kaggle" / "kaggle.json"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET)
    package = _package(tmp_path / "package", "mystery", "model.bin", b"\0" * 16)
    real = checks.check_package

    def check_then_swap(*args, **kwargs):
        verdict = real(*args, **kwargs)
        (package / "notes.txt").unlink()
        (package / "notes.txt").symlink_to(secret)  # the attacker's swap, while the check runs
        return verdict

    monkeypatch.setattr(checks, "check_package", check_then_swap)
    registry = _registry(tmp_path)
    version = registry.push(package, "m")
    registry.pull(version.ref, tmp_path / "pulled")
    assert (tmp_path / "pulled" / "notes.txt").read_text() == "release notes\n"
    assert SECRET not in _blob_texts(tmp_path)


def test_a_folder_swapped_for_a_link_during_a_copy_is_refused(tmp_path, monkeypatch):
    from packager.safety import folders

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "weights.bin").write_text(SECRET)
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "weights.bin").write_text("plain")
    real = folders.check_folder_members

    def check_then_swap(root):
        real(root)
        (source / "sub" / "weights.bin").unlink()
        (source / "sub").rmdir()
        (source / "sub").symlink_to(outside)

    monkeypatch.setattr(folders, "check_folder_members", check_then_swap)
    with pytest.raises(UnsafeModelError, match="model/sub is a symlink"):
        folders.copy_tree(source, tmp_path / "copy")
    assert not any(SECRET in p.read_text() for p in (tmp_path / "copy").rglob("*") if p.is_file())


@pytest.mark.parametrize("claimed, name", [("xgboost-ubj", "model.ubj"), ("coreml", "model.mlmodel")])
def test_a_manifest_naming_another_format_does_not_get_a_pickle_past_push(tmp_path, claimed, name):
    package = _package(tmp_path / "package", claimed, name, MARKER_PICKLE)
    env = {**os.environ, "PACKAGER_HOME": str(tmp_path / "home")}
    result = run_cli("push", str(package), "--name", "evil", env=env, cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    assert f"{name} imports posix.system" in result.stderr or f"{name} imports os.system" in result.stderr, result.stderr
    assert not (tmp_path / "home" / "catalog.db").exists() or "evil" not in run_cli("list", env=env, cwd=tmp_path).stdout
    assert not Path("/tmp/pwned-rt3-x").exists()


def test_predict_of_such_a_package_is_refused_by_the_content_check(tmp_path):
    """A real package (convert --to pickle), its model file replaced by a hostile pickle that the manifest calls
    xgboost-ubj: predict checks what the content is, not only what the manifest says."""
    import pickle

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    converted = run_cli("convert", str(tmp_path / "model.pkl"), "--to", "pickle", "-o", str(tmp_path / "package"), cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    package = tmp_path / "package"
    manifest = json.loads((package / "manifest.json").read_text())
    (package / manifest["model_file"]).unlink()
    (package / "model.ubj").write_bytes(MARKER_PICKLE)
    (package / "manifest.json").write_text(json.dumps({**manifest, "format": "xgboost-ubj", "model_file": "model.ubj"}))
    (tmp_path / "rows.csv").write_text("a,b,c,d\n1,2,3,4\n")
    result = run_cli("predict", str(package), str(tmp_path / "rows.csv"), "-o", str(tmp_path / "out.csv"), cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    assert "model.ubj imports" in result.stderr and not (tmp_path / "out.csv").exists(), result.stderr
    assert not Path("/tmp/pwned-rt3-x").exists()


def test_the_check_verdict_tag_cannot_be_set_or_removed_by_a_user(tmp_path):
    registry = _registry(tmp_path)
    version = registry.push(_package(tmp_path / "package", "mystery", "model.bin", b"\0" * 16), "m", trust=True)
    with pytest.raises(UsageError, match="written by packager only: packager.check"):
        registry.tag(version.ref, {"packager.check": "passed"})
    with pytest.raises(UsageError, match="written by packager only"):
        registry.tag(version.ref, {}, remove=["packager.check"])
    with pytest.raises(UsageError, match="written by packager only"):
        registry.push(_package(tmp_path / "other", "mystery", "model.bin", b"\1" * 16), "m", tags={"packager.check": "passed"})
    assert registry.get(version.ref).tags["packager.check"] == "not run: pushed with trust"


def test_a_config_that_leaves_its_width_to_the_defaults_is_counted_with_them(tiny_bert, tmp_path):
    """{"model_type": "bert", "intermediate_size": 20000000}: 12 layers x 768 wide by default, 61 GB asked of 3 KB."""
    import shutil

    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert, folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "intermediate_size": 20_000_000}))
    result = run_cli("inspect", str(folder), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "num_hidden_layers 12" in result.stderr and "intermediate_size 20,000,000" in result.stderr, result.stderr


def test_a_sentence_transformers_module_path_outside_the_folder_is_refused(tiny_bert, tmp_path):
    import shutil

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True, "private_key_present": True}))
    folder = tmp_path / "st"
    shutil.copytree(tiny_bert, folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": str(victim), "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    result = run_cli("inspect", str(folder), cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    assert "outside the model folder" in result.stderr and "private_key_present" not in result.stderr, result.stderr


def test_a_lookup_layer_reading_its_vocabulary_from_a_host_file_is_refused_by_our_check(tmp_path):
    from packager.safety.keras import check_keras_archive

    config = {
        "module": "keras.src.models.functional", "class_name": "Functional",
        "config": {"name": "functional", "layers": [{
            "module": "keras.layers", "class_name": "StringLookup",
            "config": {"name": "lookup", "vocabulary": str(Path.home() / ".git-token"), "num_oov_indices": 1},
        }]},
    }  # fmt: skip
    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
    with pytest.raises(UnsafeModelError, match=r"reads its vocabulary from the file '.*\.git-token', outside the model"):
        check_keras_archive(archive)
