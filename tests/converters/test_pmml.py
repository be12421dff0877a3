"""scikit-learn -> PMML through sklearn2pmml, scored by JPMML (a real JVM) and compared."""
from __future__ import annotations

import pytest

from packager.conversion import convert
from packager.errors import UnsupportedConversion
from packager.inspection import inspect

pytestmark = pytest.mark.java

PMML_MODELS = ["logreg", "forest", "gboost", "histgb", "svc", "knn", "mlp", "linear", "ridge", "forest_regressor", "kmeans", "columns"]


@pytest.mark.parametrize("name", PMML_MODELS)
def test_pmml_conversion_reproduces_the_model(fixtures, tmp_path, name):
    fixture = fixtures[name]
    package = convert(fixture.model, to="pmml", sample=fixture.sample, out=tmp_path / "pkg", trust=True)
    report = package.manifest.validation
    assert report["status"] == "passed" and report["runtime"] == "jpmml-evaluator"
    first = report["outputs"][0]
    assert first["kind"] != "missing"
    if first["kind"] == "labels":
        assert first["agreement"] == 1.0
    else:
        assert first["max_abs"] < 1e-3


def test_outputs_pmml_cannot_express_are_recorded_not_hidden(fixtures, tmp_path):
    package = convert(fixtures["svc"].model, to="pmml", sample=fixtures["svc"].sample, out=tmp_path / "pkg", trust=True)
    outputs = {o["name"]: o for o in package.manifest.validation["outputs"]}
    assert outputs["probabilities"]["kind"] == "missing"
    assert "not produced by this format" in outputs["probabilities"]["note"]


def test_column_pipeline_keeps_string_fields(fixtures, tmp_path):
    package = convert(fixtures["columns"].model, to="pmml", sample=fixtures["columns"].sample, out=tmp_path / "pkg", trust=True)
    info = inspect(package.model_path)
    assert {"age", "income", "city", "plan"} <= set(info["data_fields"])
    assert info["models"] == ["RegressionModel"]


def test_pipeline_ending_in_a_transformer_is_refused(fixtures, tmp_path):
    with pytest.raises(UnsupportedConversion, match="ends in a transformer \\(PCA\\)"):
        convert(fixtures["pca"].model, to="pmml", out=tmp_path / "pkg", trust=True)
    assert not (tmp_path / "pkg").exists()


def test_a_scikit_learn_newer_than_sklearn2pmml_supports_says_which_version_to_install():
    """sklearn2pmml 0.133.1 under scikit-learn 1.9.1 (what a plain `pip install sklearn2pmml` gave): its
    JVM output, as printed there. The error names the version to install (was: "use --to onnx")."""
    from packager.converters.pmml import _refuse_unsupported_sklearn

    from packager.errors import MissingDependency

    jvm = ["SEVERE: Failed to convert PKL to PMML", "org.jpmml.sklearn.SkLearnException: Scikit-Learn version '1.9.1' is not supported",
           "\tUpgrade the converter to the latest version, or downgrade Scikit-Learn to version '1.9.0'",
           "\tat sklearn.Step.checkSkLearnVersion(Step.java:69)"]
    with pytest.raises(MissingDependency, match=r"does not support scikit-learn 1\.9\.1 \(it supports up to 1\.9\.0\)") as caught:
        _refuse_unsupported_sklearn(jvm)
    assert "pip install 'scikit-learn==1.9.0'" in caught.value.hint
    _refuse_unsupported_sklearn(["SEVERE: something else"])  # other failures are left to the generic message


def test_the_pmml_extra_caps_scikit_learn_below_what_sklearn2pmml_refuses():
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    sklearn = next(Requirement(r) for r in extras["pmml"] if r.startswith("scikit-learn"))
    assert "1.9.0" in sklearn.specifier and "1.9.1" not in sklearn.specifier


def test_jpmml_reads_the_bytes_that_were_checked_not_the_path_again(fixtures, tmp_path, monkeypatch):
    """The file is replaced between the check and JPMML's read: JPMML must still get the document that was checked."""
    from pathlib import Path

    from packager.converters.pmml import PmmlRuntime

    import packager.safety.xml as xml

    package = convert(fixtures["logreg"].model, to="pmml", sample=fixtures["logreg"].sample, out=tmp_path / "pkg", trust=True)
    target = tmp_path / "model.pmml"
    target.write_bytes(package.model_path.read_bytes())
    checked = xml.check_xml

    def check_then_swap(path):
        result = checked(path)
        Path(path).write_text("<not-the-checked-document/>")  # what a racing writer would put there
        return result

    monkeypatch.setattr(xml, "check_xml", check_then_swap)
    evaluator = PmmlRuntime().load(target)
    assert target.read_text() == "<not-the-checked-document/>"
    import numpy as np

    assert len(list(evaluator.getInputFields())) == np.load(fixtures["logreg"].sample).shape[1]  # the checked model, loaded


def test_text_pipeline_is_scored_on_its_strings(tmp_path):
    """A TfidfVectorizer pipeline's PMML was scored on float64(text): `--to all` ended in an internal error
    ("could not convert string to float"). Scored on its strings, JPMML gives a verdict: its tokenization differs
    from scikit-learn's on these sentences (measured: 97.5% label agreement on synthesized sentences, probabilities off by
    0.12 on the held-out ones), which is reported, not crashed on."""
    from packager.errors import ValidationFailed
    from tests.zoo.sklearn_models import HELD_OUT, tfidf_logreg

    with pytest.raises(ValidationFailed, match=r"pmml artifact does not reproduce the source: .*(labels agree|max abs diff)"):
        convert(tfidf_logreg().model, to="pmml", sample=HELD_OUT * 4, out=tmp_path / "pkg")


# ---------------------------------------------------------------- issue 26: real models, round three (through the CLI)


def _jpmml(path, X):
    """The PMML file scored by jpmml_evaluator directly (not through packager): x1..xn fields, probability columns."""
    import jpmml_evaluator
    import pandas as pd

    evaluator = jpmml_evaluator.make_evaluator(str(path), backend="jpype").verify()
    result = evaluator.evaluateAll(pd.DataFrame(X, columns=[f"x{i + 1}" for i in range(X.shape[1])]))
    assert "errors" not in result.columns or result["errors"].isna().all(), result.get("errors")
    return result[[c for c in result.columns if str(c).startswith("probability(")]].to_numpy(dtype=float)


@pytest.mark.parametrize("builder", ["stacking_shared_scaler", "voting_shared_scaler"])
def test_ensembles_whose_members_scale_the_same_columns_convert_to_pmml(tmp_path, builder):
    """Point 10: JPMML stopped with NamingException "Field 'standardScaler(x1)' is already defined" (exit 7); the members'
    fields are named "<member>/<step>[j]" (sklearn2pmml's MultiAlias) and a stacking member's duplicate probability
    outputs renamed (JPMML-Evaluator answered every row with DuplicateFieldValueException)."""
    import pickle

    import numpy as np

    from tests.conftest import invoke_cli
    from tests.zoo.sklearn_round3 import BUILDERS

    built = BUILDERS[builder]()
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(built.model))
    result = invoke_cli("convert", str(tmp_path / "model.pkl"), "--to", "pmml", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / "model.pmml").read_text()
    assert 'name="lr/standardscaler[0]"' in text and 'name="rf/standardscaler[29]"' in text
    probabilities = _jpmml(tmp_path / "out" / "model.pmml", built.X_test)
    expected = built.model.predict_proba(built.X_test)
    assert np.abs(probabilities - expected).max() < 1e-6
    assert np.mean(probabilities.argmax(1) == built.model.predict(built.X_test)) == 1.0


def test_predict_writes_a_missing_text_label_as_null(tmp_path):
    """Point 7: JPMML gives no label for a row it cannot score; packager's own writer raised ArrowTypeError on str + NaN,
    reported as "the file is not a usable model; re-export it" (exit 4)."""
    import pickle

    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.conftest import invoke_cli

    iris = load_iris(as_frame=True)
    labels = iris.target_names[iris.target]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(iris.data, labels)
    (tmp_path / "iris.pkl").write_bytes(pickle.dumps(model))
    assert invoke_cli("convert", str(tmp_path / "iris.pkl"), "--to", "pmml", "-o", str(tmp_path / "pkg")).returncode == 0
    rows = iris.data.iloc[::15].reset_index(drop=True)
    rows.iloc[2, 1] = np.nan
    rows.to_csv(tmp_path / "rows.csv", index=False)
    for suffix in ("csv", "parquet"):
        result = invoke_cli("predict", str(tmp_path / "pkg"), str(tmp_path / "rows.csv"), "-o", str(tmp_path / f"p.{suffix}"))
        assert result.returncode == 0, result.stderr
        written = pd.read_csv(tmp_path / "p.csv") if suffix == "csv" else pd.read_parquet(tmp_path / "p.parquet")
        assert written["label"].isna().tolist() == [i == 2 for i in range(len(rows))]
        complete = rows.drop(index=2)
        assert (written["label"].drop(index=2).to_numpy() == model.predict(complete)).all()


def test_a_batch_of_missing_labels_does_not_change_the_file_type(tmp_path):
    """A first batch whose labels are all missing typed the column null; the next batch's strings then failed."""
    import numpy as np
    import pandas as pd

    from packager.batches import OutputWriter

    writer = OutputWriter(tmp_path / "out.parquet")
    writer.write({"label": np.array([None, np.nan], dtype=object), "p": np.array([np.nan, np.nan])})
    writer.write({"label": np.array(["setosa", "virginica"], dtype=object), "p": np.array([0.5, 0.25])})
    writer.close()
    written = pd.read_parquet(tmp_path / "out.parquet")
    assert written["label"].tolist()[2:] == ["setosa", "virginica"] and written["label"].isna().sum() == 2
    assert written["p"].tolist()[2:] == [0.5, 0.25]
