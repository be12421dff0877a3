"""Convolutional classifiers through quantization (issue 13): a PyTorch CNN and the Keras tutorial CNN, both trained on
scikit-learn's 8x8 digits. Static int8 with ``--calibration`` is judged on the calibration rows (and says so) by top-1
agreement of the logits; fp16 by the fp16 class-score criterion (top-1, top-5), not by an absolute tolerance on logits.

Before the rework (4c298df): the torch CNN with ``--calibration`` alone stopped with "no sample inputs" (calibration rows
were not validation data), fp16 was judged by atol 0.01 + rtol 0.01 on the logits and the report named no criterion,
and the Keras Sequential CNN did not load ("'Sequential' object has no attribute 'output_names'").
"""
from __future__ import annotations

import numpy as np
import pytest

from packager.conversion import convert

TOP1 = "top-1 agrees on"


@pytest.fixture(scope="module")
def torch_cnn(tmp_path_factory):
    from tests.zoo.torch_digits import cnn_digits

    model, images, labels = cnn_digits()
    folder = tmp_path_factory.mktemp("torch_cnn")
    np.save(folder / "rows.npy", images)
    return model, images, labels, folder / "rows.npy"


@pytest.fixture(scope="module")
def keras_cnn(tmp_path_factory):
    from tests.zoo.keras_tutorials import rescaling_cnn_digits

    model, images = rescaling_cnn_digits()
    folder = tmp_path_factory.mktemp("keras_cnn")
    np.save(folder / "rows.npy", images)
    return model, images, folder / "rows.npy"


def _logits_output(report: dict) -> dict:
    (output,) = report["outputs"]
    assert output["kind"] == "scores", output
    return output


def _onnx_logits(path, images) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def test_torch_cnn_static_int8_is_judged_on_the_calibration_rows_by_top1(torch_cnn, tmp_path):
    import torch

    model, images, labels, rows = torch_cnn
    package = convert(model, to="onnx", quantize="static", calibration=rows, out=tmp_path / "static")
    report = package.manifest.validation
    assert package.manifest.quantization.applied and package.manifest.quantization.mode == "static"
    assert report["status"] == "passed" and report["data_source"] == "calibration" and report["samples"] == len(images)
    output = _logits_output(report)
    assert output["criterion"].startswith(TOP1) and output["figures"]["top1_confident"] >= 0.97
    # re-checked without packager: the int8 graph's argmax against the torch module's, on the same rows
    with torch.no_grad():
        want = model(torch.from_numpy(images)).numpy().argmax(axis=1)
    got = _onnx_logits(package.model_path, images).argmax(axis=1)
    assert np.mean(got == want) == pytest.approx(output["figures"]["top1"])
    assert np.mean(got == labels) > 0.9  # still a digit classifier after int8


def test_torch_cnn_fp16_is_judged_by_the_fp16_class_score_criterion(torch_cnn, tmp_path):
    model, images, _, rows = torch_cnn
    package = convert(model, to="onnx", quantize="fp16", sample=rows, out=tmp_path / "fp16")
    report = package.manifest.validation
    assert report["status"] == "passed" and report["data_source"] == "sample" and "tolerance" not in report
    output = _logits_output(report)
    assert output["criterion"] == "top-1 agrees on >= 99.00% of confident rows, top-5 overlap >= 95.00%"
    assert output["figures"]["top1"] == 1.0 and output["figures"]["top5_overlap"] >= 0.99  # measured 0.9994: ranks 4-5 swap
    assert 0 < output["max_abs"] < 0.05  # the logits do move in fp16: what is judged is their ranking


def test_keras_cnn_static_int8_is_judged_on_the_calibration_rows_by_top1(keras_cnn, tmp_path):
    model, images, rows = keras_cnn
    package = convert(model, to="onnx", quantize="static", calibration=rows, out=tmp_path / "static")
    report = package.manifest.validation
    assert package.manifest.quantization.applied
    assert report["status"] == "passed" and report["data_source"] == "calibration" and report["samples"] == len(images)
    output = _logits_output(report)
    assert output["criterion"].startswith(TOP1) and output["figures"]["top1_confident"] >= 0.97
    want = model(images, training=False).numpy().argmax(axis=1)
    assert np.mean(_onnx_logits(package.model_path, images).argmax(axis=1) == want) == pytest.approx(output["figures"]["top1"])


def test_keras_cnn_fp16_is_judged_by_the_fp16_class_score_criterion(keras_cnn, tmp_path):
    model, images, rows = keras_cnn
    package = convert(model, to="onnx", quantize="fp16", sample=rows, out=tmp_path / "fp16")
    report = package.manifest.validation
    assert report["status"] == "passed" and report["data_source"] == "sample"
    output = _logits_output(report)
    assert output["criterion"].startswith(TOP1) and output["figures"]["top1"] == 1.0
