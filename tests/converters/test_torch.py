"""PyTorch -> TorchScript / ONNX / .pt2 / Core ML, validated in each runtime, on the shapes real
models have: an MLP, a CNN with BatchNorm and Dropout, an LSTM over integer ids, two inputs and outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures import torch_models
from packager.conversion import convert
from packager.errors import UsageError
from tests.conftest import run_cli

MODELS = ["mlp", "cnn", "lstm_ids", "two_inputs"]


@pytest.fixture(scope="module")
def models():
    return {name: getattr(torch_models, name)() for name in MODELS}


@pytest.mark.parametrize("target", ["torchscript", "onnx", "pt2"])
@pytest.mark.parametrize("name", MODELS)
def test_every_shape_converts_and_validates(models, tmp_path, name, target):
    model, sample = models[name]
    package = convert(model, to=target, sample=sample, out=tmp_path / "p")
    report = package.manifest.validation
    assert report["status"] == "passed"
    assert all(o["max_abs"] < 1e-4 for o in report["outputs"])
    rows = len(next(iter(sample.values()))) if isinstance(sample, dict) else len(sample)
    assert report["samples"] == rows
    if target == "onnx":
        assert package.manifest.conversion["exporter"] == "dynamo"
        import onnx

        first = onnx.load(str(package.model_path)).graph.input[0].type.tensor_type.shape.dim[0]
        assert not first.HasField("dim_value")  # dynamic batch axis


def test_integer_ids_stay_integers(models, tmp_path):
    model, sample = models["lstm_ids"]
    package = convert(model, to="onnx", sample=sample, out=tmp_path / "p")
    assert package.manifest.signature.inputs[0].dtype == "int64"
    import onnxruntime as ort

    session = ort.InferenceSession(str(package.model_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(int64)"
    assert session.run(None, {session.get_inputs()[0].name: sample[:3]})[0].shape == (3, 3)  # another batch size


@pytest.mark.parametrize("name,target", [("mlp", "torchscript"), ("lstm_ids", "torchscript"), ("mlp", "onnx")])
def test_dynamic_int8_is_smaller_and_within_tolerance(models, tmp_path, name, target):
    model, sample = models[name]
    package = convert(model, to=target, quantize="dynamic", sample=sample, out=tmp_path / "q")
    quant = package.manifest.quantization
    assert quant.applied and quant.size_after < quant.size_before
    assert package.manifest.validation["status"] == "passed" and package.manifest.validation["tolerance"]["atol"] == 0.1


def test_coreml_is_structure_checked_never_passed(models, tmp_path):
    model, sample = models["cnn"]
    package = convert(model, to="coreml", sample=sample, out=tmp_path / "p")
    report = package.manifest.validation
    assert report["status"] == "structure-checked, not executed"
    assert report["details"]["inputs"] == ["input_0"] and report["details"]["model_type"] == "neuralNetwork"


def test_a_module_without_sample_needs_shapes(models, tmp_path):
    model, _ = models["mlp"]
    with pytest.raises(UsageError, match="carries no input shapes"):
        convert(model, to="torchscript", out=tmp_path / "p")
    package = convert(model, to="torchscript", input_shape="1,20", out=tmp_path / "ok")
    assert package.manifest.signature.inputs[0].shape == (None, 20)


def test_torchscript_file_through_the_cli(models, tmp_path):
    import torch

    model, sample = models["cnn"]
    torch.jit.save(torch.jit.trace(model, torch.from_numpy(sample[:2])), tmp_path / "cnn.pt")
    np.save(tmp_path / "x.npy", sample)
    result = run_cli("convert", str(tmp_path / "cnn.pt"), "--to", "onnx", "--sample", str(tmp_path / "x.npy"), "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["status"] == "passed" and row["max_abs_diff"] < 1e-4
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    refused = run_cli("convert", str(tmp_path / "weights.pth"), "--sample", str(tmp_path / "x.npy"), "-o", str(tmp_path / "o2"))
    assert refused.returncode == 2 and "state dict" in refused.stderr


@pytest.mark.slow
def test_transformer_encoder_int8_stays_close_to_fp32(tmp_path):
    model, ids = torch_models.transformer_encoder()
    assert sum(p.numel() for p in model.parameters()) > 3_000_000
    fp32 = convert(model, to="onnx", sample=ids, out=tmp_path / "fp32")
    int8 = convert(model, to="onnx", quantize="dynamic", sample=ids, out=tmp_path / "int8")
    assert fp32.manifest.validation["status"] == "passed" and int8.manifest.validation["status"] == "passed"
    assert int8.manifest.validation["outputs"][0]["cosine"] >= 0.99
    quant = int8.manifest.quantization
    assert quant.size_before / quant.size_after > 3
