"""`validate PKG --sample NEW` on a quantized package judges its fp32 parent on NEW too (issue 26 point 2, through
validate; found by an outside user after the round-three merge). A TF-IDF with sublinear_tf agrees with skl2onnx's graph
while no word repeats (convert's sample), and differs once one does (NEW): the fp32 package failed validate on NEW
(exit 9) while the int8 package, judged alone under the int8 criterion with its parent's verdict from the old rows,
passed (exit 0). The independent check runs both ONNX files in onnxruntime on NEW."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from tests.conftest import run_cli

pytest.importorskip("onnxruntime")


def _reviews(rng, n: int, repeat: bool) -> list[str]:
    good, bad = "great excellent wonderful tasty fresh lovely".split(), "awful bad stale bitter rotten horrible".split()
    filler = "the food was and service really very menu table dinner".split()
    return [
        " ".join([*rng.choice(good if i % 2 else bad, 3, replace=repeat), *rng.choice(filler, 4, replace=repeat)]) for i in range(n)
    ]


def test_validate_of_an_int8_package_on_new_rows_fails_where_its_fp32_parent_fails(tmp_path):
    import onnxruntime as ort
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    texts = _reviews(rng, 400, True)
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression()).fit(texts, np.arange(400) % 2)
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(model))
    old = _reviews(rng, 80, False)
    new = [t + f" {t.split()[0]}" * 6 for t in old]
    pd.DataFrame({"text": old}).to_csv(tmp_path / "old.csv", index=False)
    pd.DataFrame({"text": new}).to_csv(tmp_path / "new.csv", index=False)
    source, rows = str(tmp_path / "m.pkl"), ["--sample", str(tmp_path / "old.csv")]
    assert run_cli("convert", source, "--to", "onnx", *rows, "-o", str(tmp_path / "fp32"), cwd=tmp_path).returncode == 0
    quantized = run_cli("convert", source, "--to", "onnx", "--quantize", "dynamic", *rows, "-o", str(tmp_path / "int8"), cwd=tmp_path)
    assert quantized.returncode == 0, quantized.stderr

    expected = model.predict_proba(new)
    session = ort.InferenceSession(str(tmp_path / "fp32" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: np.array(new).reshape(-1, 1)})[1]
    assert np.abs(np.asarray(got) - expected).max() > 1e-4  # the parent really is off on NEW (independent of packager)

    verdicts = {}
    for name in ("fp32", "int8"):
        result = run_cli(
            "validate", str(tmp_path / name), "--source", source, "--sample", str(tmp_path / "new.csv"), "--json", cwd=tmp_path
        )
        verdicts[name] = (result.returncode, json.loads(result.stdout)["status"], result.stderr)
    assert verdicts["fp32"][:2] == (9, "failed"), verdicts["fp32"]
    assert verdicts["int8"][:2] == (9, "failed"), verdicts["int8"]
    assert "its fp32 parent already fails" in verdicts["int8"][2], verdicts["int8"][2]
