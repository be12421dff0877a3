"""ONNX quantization (dynamic int8, static QDQ, fp16, auto) and inspection."""
from __future__ import annotations

import onnx
import pytest

from packager.conversion import convert
from packager.errors import NotQuantizable, UnsupportedConversion, UsageError
from packager.inspection import inspect
from packager.validation import FLOAT32, INT8, OutputKind


def test_dynamic_int8_on_the_mlp_is_smaller_and_within_tolerance(fixtures, tmp_path):
    fixture = fixtures["mlp"]
    package = convert(fixture.model, to="onnx", quantize="dynamic", sample=fixture.sample, out=tmp_path / "q", trust=True)
    quant = package.manifest.quantization
    assert quant.applied and quant.mode == "dynamic"
    assert quant.size_after < quant.size_before / 2.5
    report = package.manifest.validation
    assert report["status"] == "passed" and report["criteria"] == {name: INT8[OutputKind(o["kind"])].describe() for name, o in
                                                                   ((o["name"], o) for o in report["outputs"])}
    probabilities = next(o for o in report["outputs"] if o["name"] == "probabilities")
    assert 0 < probabilities["max_abs"] < 0.1
    ops = {n.op_type for n in onnx.load(str(package.model_path)).graph.node}
    assert "MatMulInteger" in ops


def test_fp16_on_a_linear_model(fixtures, tmp_path):
    fixture = fixtures["digits_linear"]
    package = convert(fixture.model, to="onnx", quantize="fp16", sample=fixture.sample, out=tmp_path / "q", trust=True)
    quant = package.manifest.quantization
    assert quant.applied and quant.size_after < quant.size_before
    weights = [t for t in onnx.load(str(package.model_path)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert weights, "weights are stored as float16"
    assert package.manifest.validation["status"] == "passed"


def test_static_int8_with_calibration(fixtures, fixture_dir, tmp_path):
    fixture = fixtures["mlp"]
    package = convert(
        fixture.model,
        to="onnx",
        quantize="static",
        calibration=fixture_dir / "digits_calibration.npy",
        sample=fixture.sample,
        out=tmp_path / "q",
        trust=True,
    )
    ops = {n.op_type for n in onnx.load(str(package.model_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert package.manifest.quantization.size_after < package.manifest.quantization.size_before
    labels = next(o for o in package.manifest.validation["outputs"] if o["name"] == "label")
    assert labels["agreement"] >= 0.9


def test_forest_has_nothing_to_quantize(fixtures, tmp_path):
    with pytest.raises(NotQuantizable, match="no operator with int8 weights \\(only TreeEnsemble"):
        convert(fixtures["forest"].model, to="onnx", quantize="dynamic", out=tmp_path / "q", trust=True)
    assert not (tmp_path / "q").exists()


def test_auto_keeps_fp32_and_records_why(fixtures, tmp_path):
    package = convert(
        fixtures["forest"].model, to="onnx", quantize="auto", sample=fixtures["forest"].sample, out=tmp_path / "q", trust=True
    )
    quant = package.manifest.quantization
    assert not quant.applied and "kept fp32" in quant.reason and "no operator with int8 weights" in quant.reason
    assert [(a["mode"], a["kept"]) for a in quant.attempts] == [("dynamic", False), ("fp16", False), ("static", False)]
    assert package.manifest.validation["criteria"]["probabilities"] == FLOAT32[OutputKind.PROBABILITIES].describe()


def test_quantize_argument_errors(fixtures, tmp_path):
    with pytest.raises(UsageError, match="needs calibration data"):
        convert(fixtures["mlp"].model, to="onnx", quantize="static", out=tmp_path / "q", trust=True)
    with pytest.raises(UsageError, match="unknown quantization mode"):
        convert(fixtures["mlp"].model, to="onnx", quantize="int4", out=tmp_path / "q", trust=True)
    with pytest.raises(UnsupportedConversion, match="does not support --quantize dynamic"):
        convert(fixtures["mlp"].model, to="pmml", quantize="dynamic", out=tmp_path / "q", trust=True)


def test_inspect_reports_opset_and_ir(fixtures, tmp_path):
    package = convert(fixtures["knn"].model, to="onnx", sample=fixtures["knn"].sample, out=tmp_path / "p", trust=True)
    info = inspect(package.model_path)
    assert info["format"] == "onnx" and info["ir_version"] == package.manifest.conversion["ir_version"]
    assert info["opset"]["ai.onnx"] >= 15
    assert info["inputs"] == [{"name": "X", "dtype": "float32", "shape": [None, 13]}]
