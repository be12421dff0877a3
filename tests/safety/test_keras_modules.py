"""Keras configs (issue 21, lower findings): module names matched on dot boundaries against the modules a Keras model is
made of; on 826a172 a prefix test let ``kerasx.evil`` through, and four CVE shapes passed packager's own check (only
Keras stopped them). A .keras archive's inner model.weights.h5 is checked like a legacy .h5: on 826a172 an external
dataset in it passed the check."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from packager.errors import UnsafeModelError
from packager.safety.keras import check_keras_archive, check_keras_config
from tests.conftest import run_cli


def _model(activation: object) -> dict:
    dense = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": activation}}
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 3], "name": "x"}}, dense]
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": layers}}


def _function(module: str, name: str) -> dict:
    return {"module": module, "class_name": "function", "config": name, "registered_name": name}


CVE_SHAPES = {
    "CVE-2025-8747 get_file": _function("keras.utils", "get_file"),
    "CVE-2025-9906 unsafe deserialization": _function("keras.config", "enable_unsafe_deserialization"),
    "tensorflow.io.write_file": _function("tensorflow.io", "write_file"),
    "builtins.exec as a class": {"module": "builtins", "class_name": "exec", "config": {"source": "import os"}},
    "builtins.exec as a function": _function("builtins", "exec"),
    "kerasx.evil": {"module": "kerasx.evil", "class_name": "Payload", "config": {}},
    "keras.layersx (no dot boundary)": {"module": "keras.layersx", "class_name": "Dense", "config": {}},
    "keras.get_file (top level)": {"module": "keras", "class_name": "get_file", "config": {}},
}


@pytest.mark.parametrize("shape", sorted(CVE_SHAPES))
def test_the_cve_shapes_are_refused_by_packagers_own_check(shape):
    with pytest.raises(UnsafeModelError, match=r"model/seq/dense\.activation (names|holds)"):
        check_keras_config(_model(CVE_SHAPES[shape]), "m.keras")


def test_what_keras_writes_passes():
    check_keras_config(_model({"module": "keras.activations", "class_name": "function", "config": "relu"}), "m.keras")
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}
    functional = {"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "f", "dtype": policy}}
    check_keras_config(functional, "m.keras")
    check_keras_config({"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay", "config": {}}, "m.keras")


def _archive(path: Path, weights: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(_model("linear")))
        archive.write(weights, "model.weights.h5")
    return path


def test_an_archive_whose_weights_read_an_external_file_is_refused_through_inspect(tmp_path):
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.env"
    secret.write_bytes(b"AWS_SECRET_ACCESS_KEY=abcdef12345")
    weights = tmp_path / "w.h5"
    with h5py.File(weights, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", shape=(32,), dtype="u1", external=[(str(secret), 0, 32)])
    model = _archive(tmp_path / "external.keras", weights)
    with pytest.raises(UnsafeModelError, match=r"model.weights.h5 dataset 'layers/dense/vars/0' is stored in external files"):
        check_keras_archive(model)
    result = run_cli("inspect", str(model), cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "model.weights.h5" in result.stderr
    assert "AWS_SECRET" not in result.stdout + result.stderr


def test_an_archive_with_plain_weights_passes_the_check(tmp_path):
    h5py = pytest.importorskip("h5py")
    weights = tmp_path / "w.h5"
    with h5py.File(weights, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=[[1.0, 2.0]] * 3)
    check_keras_archive(_archive(tmp_path / "plain.keras", weights))
