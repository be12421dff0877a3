"""Keras models built as the tutorials build them (tests/zoo/keras_tutorials.py), through packager as a new user would:
Sequential models in memory and from .keras/.h5 files, Normalization adapted on data, lookup and text layers,
an IMDB-style LSTM. Each artifact is re-run here in its own runtime where that matters, not only through packager."""
from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest

from packager.conversion import convert
from packager.errors import ConversionError, InputFileError, OutputExists, UnsupportedConversion
from tests.conftest import run_cli
from tests.zoo import keras_tutorials as zoo


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = zoo.BUILDERS[name]()
        return cache[name]

    return get


def _onnx_outputs(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert len(session.get_inputs()) == 1, [i.name for i in session.get_inputs()]
    return session.run(None, {session.get_inputs()[0].name: x})[0]


# ---------------------------------------------------------------- Sequential (item 1)

@pytest.mark.parametrize("name,suffix,target", [
    ("sequential_iris", ".keras", "onnx"),
    ("sequential_iris", ".h5", "tflite"),
    ("sequential_input_shape_digits", ".keras", "savedmodel"),
    ("sequential_input_shape_digits", ".h5", "onnx"),
])
def test_sequential_model_files_convert_and_validate(built, tmp_path, name, suffix, target):
    model, held_out = built(name)
    model.save(tmp_path / f"model{suffix}")
    package = convert(tmp_path / f"model{suffix}", to=target, sample=held_out, out=tmp_path / "p")
    report = package.manifest.validation
    assert report["status"] == "passed" and report["samples"] == len(held_out), report
    assert report["outputs"][0]["max_abs"] < 1e-4
    assert [o.name for o in package.manifest.signature.outputs] == [model.layers[-1].name]
    if target == "onnx":
        np.testing.assert_allclose(_onnx_outputs(package.model_path, held_out), model(held_out, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("target", ["keras", "hdf5", "pb"])
def test_in_memory_sequential_converts(built, tmp_path, target):
    model, held_out = built("sequential_iris")
    package = convert(model, to=target, sample=held_out, out=tmp_path / "p")
    assert package.manifest.validation["status"] == "passed"


def test_unbuilt_sequential_is_refused_with_the_reason(built, tmp_path):
    model, _ = zoo.sequential_unbuilt()
    model.save(tmp_path / "unbuilt.keras")
    with pytest.raises(InputFileError, match="never built") as caught:
        convert(tmp_path / "unbuilt.keras", to="onnx", out=tmp_path / "p")
    assert "keras.Input" in caught.value.hint
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------- preprocessing layers (item 9)

@pytest.mark.parametrize("name", ["normalization_diabetes", "normalization_sequential_breast_cancer"])
def test_adapted_normalization_is_a_constant_in_onnx(built, tmp_path, name):
    model, held_out = built(name)
    package = convert(model, to="onnx", sample=held_out, out=tmp_path / "p")
    assert package.manifest.validation["status"] == "passed"
    np.testing.assert_allclose(_onnx_outputs(package.model_path, held_out), model(held_out, training=False).numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["normalization_diabetes", "normalization_sequential_breast_cancer", "rescaling_cnn_digits", "imdb_lstm"])
@pytest.mark.parametrize("target", ["savedmodel", "hdf5", "tflite"])
def test_tutorial_models_to_tensorflow_formats(built, tmp_path, name, target):
    model, held_out = built(name)
    if (name, target) == ("imdb_lstm", "tflite"):
        with pytest.raises(ConversionError, match="recurrent layer"):
            convert(model, to=target, sample=held_out, out=tmp_path / "p")
        return
    package = convert(model, to=target, sample=held_out, out=tmp_path / "p")
    report = package.manifest.validation
    assert report["status"] == "passed" and all(o["max_abs"] < 1e-3 for o in report["outputs"]), report


@pytest.mark.parametrize("name,target", [("normalization_sequential_breast_cancer", "onnx"), ("rescaling_cnn_digits", "tflite"),
                                         ("imdb_lstm", "onnx"), ("imdb_lstm", "keras")])
def test_tutorial_models_quantize(built, tmp_path, name, target):
    model, held_out = built(name)
    package = convert(model, to=target, quantize="dynamic", sample=held_out, out=tmp_path / "q")
    assert package.manifest.quantization.applied
    assert package.manifest.validation["status"] == "passed"


def test_lookup_layer_works_where_the_format_keeps_it_and_is_refused_elsewhere(built, tmp_path):
    model, held_out = built("integer_lookup_iris")
    for target in ("keras", "savedmodel"):
        assert convert(model, to=target, sample=held_out, out=tmp_path / target).manifest.validation["status"] == "passed"
    for target in ("onnx", "tflite", "hdf5"):
        with pytest.raises(ConversionError, match="vocabulary") as caught:
            convert(model, to=target, sample=held_out, out=tmp_path / f"no-{target}")
        assert "--to keras" in caught.value.hint or "--to savedmodel" in caught.value.hint
        assert not (tmp_path / f"no-{target}").exists()


@pytest.mark.parametrize("name", ["string_lookup", "text_vectorization"])
def test_string_inputs_are_refused_with_the_reason(built, tmp_path, name):
    model, held_out = built(name)
    with pytest.raises(UnsupportedConversion, match="string input"):
        convert(model, to="onnx", sample=held_out, out=tmp_path / "p")


# ---------------------------------------------------------------- requirements (item 10)

def test_requirements_name_the_distribution_that_provides_tensorflow(built, tmp_path):
    from packaging.requirements import Requirement

    model, held_out = built("normalization_diabetes")  # functional: fails on the requirement alone
    package = convert(model, to="tflite", sample=held_out, out=tmp_path / "p")
    (line,) = [x for x in (package.path / "requirements.txt").read_text().splitlines() if x.strip()]
    requirement = Requirement(line)  # raises on "tensorflow==not installed"
    provider = metadata.packages_distributions()["tensorflow"][0]
    assert requirement.name.replace("-", "_").lower() == provider.replace("-", "_").lower()
    assert requirement.specifier.contains(metadata.version(provider))
    assert package.manifest.validation["runtime_version"] == metadata.version(provider)


# ---------------------------------------------------------------- CLI contract (item 14)

def test_output_exists_is_reported_before_loading(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExists):  # the old code loaded first and failed on the file instead
        convert(tmp_path / "broken.keras", to="onnx", out=tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_cli_keeps_tensorflow_logs_off_stderr(built, tmp_path):
    model, held_out = built("normalization_diabetes")
    model.save(tmp_path / "diabetes.h5")
    tflite = run_cli("convert", str(tmp_path / "diabetes.h5"), "--to", "tflite", "-o", str(tmp_path / "tfl"), "--json")
    assert tflite.returncode == 0 and tflite.stderr == "", tflite.stderr  # was: absl import lines, the XNNPACK notice
    assert json.loads(tflite.stdout)[0]["status"] == "passed"
    model, held_out = built("imdb_lstm")
    model.save(tmp_path / "imdb.keras")
    ok = run_cli("convert", str(tmp_path / "imdb.keras"), "--to", "onnx", "--to", "savedmodel", "-o", str(tmp_path / "ok"), "--json")
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    refused = run_cli("convert", str(tmp_path / "imdb.keras"), "--to", "tflite", "-o", str(tmp_path / "no"))
    assert refused.returncode == ConversionError.exit_code  # was: MLIR error lines from the TFLite converter
    assert len(refused.stderr.strip().splitlines()) == 1 and "recurrent layer" in refused.stderr, refused.stderr
