"""TFLite files pass only with builtin operators: a Flex (TensorFlow) or other custom op is refused before any
interpreter opens the file, because with TensorFlow installed the interpreter runs Flex ops as TensorFlow kernels."""
from __future__ import annotations

from pathlib import Path

import pytest

from packager.errors import UnsafeModelError
from packager.safety import check_file

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def benign(tmp_path_factory) -> Path:
    """A builtin-only model, as TensorFlow's converter writes it."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def affine(x):
        return tf.nn.relu(x * 2.0 + 1.0)

    path = tmp_path_factory.mktemp("tflite") / "benign.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([affine.get_concrete_function()], affine).convert())
    return path


def _with_custom_op(benign: Path, out: Path, name: bytes) -> Path:
    """The benign model with its first operator turned into a custom op, the way an attacker edits the flatbuffer."""
    import flatbuffers

    from packager.safety.tflite import CUSTOM, _schema

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(benign.read_bytes()), 0)
    code = model.operatorCodes[0]
    code.builtinCode, code.deprecatedBuiltinCode, code.customCode = CUSTOM, CUSTOM, name
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(builder.Output())
    return out


def test_a_builtin_only_model_passes(benign):
    check_file(benign, "tflite")


@pytest.mark.parametrize("op", [b"FlexWriteFile", b"FlexReadFile", b"MyCustomKernel"])
def test_a_custom_or_flex_operator_is_refused_naming_it(benign, tmp_path, op):
    from packager.formats import detect_format

    evil = _with_custom_op(benign, tmp_path / "evil.tflite", op)
    assert detect_format(evil) == "tflite"
    with pytest.raises(UnsafeModelError, match=f"custom TFLite operators \\['{op.decode()}'\\]"):
        check_file(evil, "tflite")
