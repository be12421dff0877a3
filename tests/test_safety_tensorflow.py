"""TensorFlow graphs must not touch files: every attack of the tensorflow_graphs family is refused by
inspect, convert (every target), validate and predict with one line naming op, node and function, and
its marker never appears; benign graphs (Keras 3 exports, tf.saved_model.save, frozen graphs, packager's
own SavedModel/.pb targets, lookup tables and a vocabulary asset) pass and still load."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from packager.errors import UnsafeModelError
from tests.attacks.families import tensorflow_graphs
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_attacks")
    marker = root / "PWNED"
    built = tensorflow_graphs.build(root / "files", str(marker), root)
    return {a.name: a.path for a in built}, marker


def test_family_is_large_enough(attacks):
    files, _ = attacks
    assert len(files) >= 12
    assert any(p.suffix == ".pb" for p in files.values()) and any(p.is_dir() for p in files.values())


def test_the_write_is_real_when_trusted(attacks, tmp_path):
    """The finding reproduced: a trusted (unchecked) inspect runs the serving function and writes the file.
    On the code before the check, the same happened without --trust."""
    from packager.inspection import inspect

    files, marker = attacks
    inspect(files["sm_write_serving"], trust=True)
    assert marker.read_text() == "pwned"
    marker.unlink()


@pytest.mark.parametrize("entry", ["inspect", "onnx", "tflite"])
def test_every_attack_is_refused_naming_op_and_node(attacks, entry, tmp_path, static_checks_here):
    """The static check, in this process (no sandbox behind it). The source is checked before any target is touched, so
    three entries stand for all (each target through the sandbox cost 65 s of suite time); test_attacks runs a sample of
    this family as users call it, through the sandbox."""
    from packager.conversion import convert
    from packager.inspection import inspect

    files, marker = attacks
    for name, path in files.items():
        out = tmp_path / name
        with pytest.raises(UnsafeModelError) as caught:
            inspect(path) if entry == "inspect" else convert(path, to=entry, out=out)
        line = caught.value.one_line()
        assert "\n" not in line and " op " in line and "(node '" in line, line
        assert not out.exists()
    assert not marker.exists()


def test_messages_name_the_function(attacks, static_checks_here):
    from packager.inspection import inspect

    files, _ = attacks
    with pytest.raises(UnsafeModelError, match=r"op WriteFile \(node 'while/WriteFile' in function while_body_\d+\) writes files"):
        inspect(files["sm_write_while_body"])
    with pytest.raises(UnsafeModelError, match=r"op WriteFile \(node '.*WriteFile' in function __inference_inner_\d+\)"):
        inspect(files["sm_write_nested_function"])
    with pytest.raises(UnsafeModelError, match=r"calls 'WriteFile', which is no function of the file"):
        inspect(files["sm_call_raw_op_by_name"])
    with pytest.raises(UnsafeModelError, match=r"op PrintV2 .* prints"):
        inspect(files["sm_print_to_file"])
    with pytest.raises(UnsafeModelError, match=r"op RestoreV2 .*outside the SavedModel's own variable save/restore"):
        inspect(files["sm_restore_from_elsewhere"])
    with pytest.raises(UnsafeModelError, match=r"InitializeTableFromTextFileV2 .*not one of the SavedModel's assets"):
        inspect(files["sm_asset_traversal"])
    with pytest.raises(UnsafeModelError, match=r"pb_write_file_control_dep\.pb: op WriteFile \(node 'evil' in the main graph\)"):
        inspect(files["pb_write_file_control_dep.pb"])


def test_cli_inspect_exits_5_with_one_line(attacks):
    files, marker = attacks
    result = run_cli("inspect", str(files["sm_write_serving"]))
    assert result.returncode == 5
    errors = [line for line in result.stderr.splitlines() if "UnsafeModelError" in line]
    assert len(errors) == 1 and "op WriteFile" in errors[0]
    assert not marker.exists()


@pytest.fixture(scope="module")
def benign_keras(tmp_path_factory):
    """A Keras MLP exported as a SavedModel, and packager's own SavedModel/.pb conversions of it."""
    from fixtures import keras_models
    from packager.conversion import convert

    root = tmp_path_factory.mktemp("tf_benign")
    model, sample = keras_models.mlp()
    model.export(str(root / "exported"), verbose=False)
    packages = {to: convert(model, to=to, sample=sample, out=root / to) for to in ("savedmodel", "pb")}
    return root / "exported", packages, sample


def test_secret_never_reaches_an_output(attacks, benign_keras, tmp_path):
    """ReadFile whose content is an output: refused by validate (as the artifact) and predict, the secret printed nowhere."""
    from packager.inference import Runnable, load_predictor
    from packager.inspection import validate

    files, _ = attacks
    exported, _, sample = benign_keras
    leak = files["sm_read_file_exfil"]
    with pytest.raises(UnsafeModelError, match="op ReadFile"):
        validate(leak, exported, sample=sample)
    with pytest.raises(UnsafeModelError, match="op ReadFile"):
        load_predictor(Runnable(leak, "savedmodel", None, None, "leak"))
    rows = tmp_path / "rows.npy"
    np.save(rows, np.ones((8, 4), "float32"))
    result = run_cli("predict", str(leak), str(rows), "-o", str(tmp_path / "out.npy"))
    assert result.returncode == 5
    assert tensorflow_graphs.SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "out.npy").exists()


def test_evil_artifact_given_to_validate_and_predict_is_refused(attacks, benign_keras):
    """An artifact is untrusted too: the SavedModel and .pb runtimes check before loading."""
    from packager.inference import Runnable, load_predictor
    from packager.inspection import validate

    files, marker = attacks
    exported, _, sample = benign_keras
    for name in ("sm_write_serving", "pb_write_file_control_dep.pb"):
        with pytest.raises(UnsafeModelError, match="op WriteFile"):
            validate(files[name], exported, sample=sample)
        manifest_says_converted = Runnable(files[name], "savedmodel" if files[name].is_dir() else "pb", None, None, name)
        with pytest.raises(UnsafeModelError, match="op WriteFile"):
            load_predictor(manifest_says_converted)
    assert not marker.exists()


def test_benign_exports_and_packagers_own_targets_pass_and_run(benign_keras):
    from packager.inference import Runnable, load_predictor
    from packager.inspection import inspect, validate
    from packager.safety import check_file

    exported, packages, sample = benign_keras
    check_file(exported, "savedmodel")
    assert inspect(exported)["format"] == "savedmodel"
    for to, package in packages.items():
        check_file(package.model_path, to)
        report = validate(package.model_path, exported, sample=sample)
        assert report.passed
        predictor = load_predictor(Runnable(package.model_path, to, package.manifest.signature, None, to))
        out = predictor({predictor.signature.input_names[0]: sample[:3]})
        assert next(iter(out.values())).shape[0] == 3


def _benign_models(tf, keras, out: Path) -> list[Path]:
    """Tutorial-style models in every export route (the ones ALLOWED_OPS was collected from, smaller)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    layers = keras.layers
    rng = np.random.default_rng(0)
    norm = layers.Normalization()
    norm.adapt(rng.standard_normal((50, 5)).astype("float32"))
    text = layers.TextVectorization(max_tokens=30, output_sequence_length=6)
    text.adapt(["the cat sat", "a dog ran", "hello world"])
    builders = {
        "cnn_bn": (lambda i: layers.Dense(3)(layers.Flatten()(layers.MaxPooling2D()(layers.BatchNormalization()(layers.Conv2D(4, 3)(i))))),
                   keras.Input((12, 12, 3)), tf.TensorSpec([None, 12, 12, 3])),
        "lstm": (lambda i: layers.Dense(1)(layers.LSTM(8)(layers.Embedding(50, 8)(i))),
                 keras.Input((None,), dtype="int32"), tf.TensorSpec([None, None], tf.int32)),
        "norm": (lambda i: layers.Dense(1)(norm(i)), keras.Input((5,)), tf.TensorSpec([None, 5])),
        "text": (lambda i: layers.Dense(1)(layers.GlobalAveragePooling1D()(layers.Embedding(30, 4)(text(i)))),
                 keras.Input((1,), dtype="string"), None),
        "lookup": (lambda i: layers.Dense(2)(layers.Flatten()(layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(i))),
                   keras.Input((1,), dtype="string"), None),
    }
    paths = []
    for name, (body, inputs, spec) in builders.items():
        model = keras.Model(inputs, body(inputs))
        model.export(str(out / name), verbose=False)
        paths.append(out / name)
        if spec is not None:
            concrete = tf.function(lambda x, m=model: m(x, training=False)).get_concrete_function(spec)
            frozen = out / f"{name}.pb"
            frozen.write_bytes(convert_variables_to_constants_v2(concrete).graph.as_graph_def().SerializeToString())
            paths.append(frozen)
    mobile = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.35)
    mobile.export(str(out / "mobilenet"), verbose=False)
    paths.append(out / "mobilenet")

    vocab = out / "vocab.txt"
    vocab.write_text("x\ny\nz\n")

    class Tables(tf.Module):
        def __init__(self):
            self.static = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["a", "b"], [1, 2]), -1)
            self.vocab = tf.lookup.StaticVocabularyTable(tf.lookup.TextFileInitializer(
                str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), 1)
            self.w = tf.Variable(tf.ones([3]))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="k"), tf.TensorSpec([None, 3], name="x")])
        def serve(self, k, x):
            y = tf.cond(tf.reduce_sum(x) > 0, lambda: x * self.w, lambda: x - self.w)
            _, y = tf.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a + 1.0), [tf.constant(0), y])
            return {"ids": self.static.lookup(k) + tf.cast(self.vocab.lookup(k), tf.int32), "y": y}

    module = Tables()
    tf.saved_model.save(module, str(out / "tables"), signatures={"serving_default": module.serve})
    paths.append(out / "tables")
    return paths


def test_benign_models_pass(tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from packager.formats import detect_format
    from packager.safety import check_file
    from packager.safety.tensorflow import ALLOWED_OPS, graph_ops

    paths = _benign_models(tf, keras, tmp_path)
    for path in paths:
        check_file(path, detect_format(path))
    seen = set().union(*(graph_ops(p) for p in paths))
    assert {"While", "HashTableV2", "LookupTableFindV2", "DepthwiseConv2dNative", "InitializeTableFromTextFileV2", "SaveV2", "RestoreV2"} \
        <= seen
    assert {"SaveV2", "RestoreV2", "InitializeTableFromTextFileV2"}.isdisjoint(ALLOWED_OPS)  # allowed only in place
    loaded = tf.saved_model.load(str(tmp_path / "tables"))  # the asset still loads and looks up after the check
    out = loaded.signatures["serving_default"](k=tf.constant(["a", "y"]), x=tf.ones([1, 3]))
    assert out["ids"].numpy().tolist() == [1 + 3, -1 + 1]
