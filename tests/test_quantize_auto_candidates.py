"""--quantize auto treats a candidate that does not run as data, not as the end of the conversion (found by an outside
user after the round-three merge): a PoissonRegressor's dynamic int8 graph (per-channel weights of a 1-D coefficient
vector) loads in onnxruntime 1.32 and fails at run time in DynamicQuantizeMatMul; auto exited 9 with "try another
--opset" although fp16 passes on its own."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")


def test_auto_skips_an_int8_candidate_that_does_not_run_and_keeps_one_that_passes(tmp_path):
    import onnxruntime as ort
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import PoissonRegressor

    from packager import convert

    x, y = load_diabetes(return_X_y=True)
    model = PoissonRegressor().fit(x, y)
    package = convert(model, to="onnx", quantize="auto", sample=x[:100].astype(np.float32), out=tmp_path / "auto")
    quant = package.manifest.quantization
    dynamic = next(a for a in quant.attempts if a["mode"] == "dynamic")
    assert not dynamic["kept"] and dynamic["why"].startswith("does not run"), quant.attempts
    assert package.manifest.validation["status"] == "passed"
    session = ort.InferenceSession(str(package.path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x[100:].astype(np.float32)})[0].ravel()
    expected = model.predict(x[100:])
    assert np.abs(got - expected).max() / expected.std() < 0.02  # independent of packager: fp16 or fp32, within budget


def test_quantizing_a_linear_svc_names_what_to_do_and_the_hint_works(tmp_path):
    """skl2onnx cannot write LinearSVC in the MatMul form --quantize needs; the hint sent users to "change the
    estimator's parameters as the message says" (there is no such parameter). Its hint, followed, converts."""
    import pickle

    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from tests.conftest import run_cli

    x, y = load_breast_cancer(return_X_y=True)
    (tmp_path / "svc.pkl").write_bytes(pickle.dumps(make_pipeline(StandardScaler(), LinearSVC()).fit(x, y)))
    refused = run_cli(
        "convert", str(tmp_path / "svc.pkl"), "--to", "onnx", "--quantize", "dynamic", "-o", str(tmp_path / "q"), cwd=tmp_path
    )
    assert refused.returncode == 6, refused.stderr
    assert "MatMul weights" in refused.stderr and "--quantize auto" in refused.stderr and "parameters" not in refused.stderr
    assert not (tmp_path / "q").exists()
    followed = run_cli("convert", str(tmp_path / "svc.pkl"), "--to", "onnx", "--quantize", "auto", "-o", str(tmp_path / "a"), cwd=tmp_path)
    assert followed.returncode == 0, followed.stderr
