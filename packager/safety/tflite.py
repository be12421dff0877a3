"""TFLite: only builtin operators. A custom operator runs whatever kernel the interpreter finds under its name, and
with TensorFlow installed the interpreter resolves ``Flex*`` custom ops to TensorFlow kernels, file I/O included
(``FlexWriteFile``, ``FlexReadFile``): the graph check for TensorFlow never sees them. So a model with any custom
operator is refused untrusted; packager's own TFLite conversions use builtin operators only."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from packager.errors import InputFileError, MissingDependency, UnsafeModelError, first_line
from packager.safety.pickles import TRUST_HINT

CUSTOM = 32  # BuiltinOperator.CUSTOM in the TFLite schema


@functools.lru_cache(maxsize=1)
def _schema() -> Any:
    """TensorFlow's generated flatbuffer schema, loaded on its own: importing all of TensorFlow takes seconds."""
    spec = importlib.util.find_spec("tensorflow")
    location = Path(spec.origin).parent / "lite" / "python" / "schema_py_generated.py" if spec and spec.origin else None
    if location is None or not location.is_file():
        raise MissingDependency("checking a TFLite model needs TensorFlow's TFLite schema", "pip install 'packager[tensorflow]'")
    module_spec = importlib.util.spec_from_file_location("packager_tflite_schema", location)
    assert module_spec is not None and module_spec.loader is not None  # a .py path always has a spec with a source loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def check_tflite(path: str | Path) -> None:
    path = Path(path)
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    except Exception as exc:  # flatbuffers raises IndexError/struct.error on a truncated buffer
        raise InputFileError(
            f"{path.name} is not a readable TFLite model ({type(exc).__name__}: {first_line(exc)})", "re-export it"
        ) from None
    custom = sorted({_name(code) for code in model.operatorCodes or [] if max(code.builtinCode, code.deprecatedBuiltinCode) == CUSTOM})
    if custom:
        raise UnsafeModelError(
            f"{path.name} uses custom TFLite operators {custom}: their kernels (TensorFlow's, for Flex ops, file I/O "
            "included) are outside the builtin set packager accepts",
            TRUST_HINT,
        )


def _name(code: Any) -> str:
    value = code.customCode
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
