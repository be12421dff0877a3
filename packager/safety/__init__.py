"""The one safety layer: every file of a format that can execute code on load is checked here,
against allow-lists, before any framework opens it. ``trust=True`` (``--trust``) is the only way
past, and the manifest records it."""
from __future__ import annotations

from pathlib import Path

from packager.errors import UnsafeModelError

from packager.safety.allowlist import import_refusal
from packager.safety.pickles import (TRUST_HINT, PickleImport, check_imports, load_joblib, load_pickle,
                                     scan_pickle_imports)

__all__ = ["TRUST_HINT", "PickleImport", "check_file", "check_imports", "import_refusal", "load_joblib", "load_pickle", "scan_pickle_imports"]

ZIP_FORMATS = frozenset({"skops", "mleap", "keras", "torch", "torchscript", "pt2"})


def check_file(path: str | Path, fmt: str) -> None:
    """Raise UnsafeModelError (or InputFileError) if loading ``path`` as ``fmt`` could run code or escape."""
    path = Path(path)
    if fmt == "pickle":
        with path.open("rb") as stream:
            check_imports(scan_pickle_imports(stream, path.name), path.name)
    elif fmt in ("torch", "torchscript", "pt2"):
        from packager.safety.torch import check_torch_file

        check_torch_file(path)
    elif fmt == "keras":
        from packager.safety.keras import check_keras_archive

        check_keras_archive(path)
    elif fmt == "hdf5":
        from packager.safety.keras import check_keras_h5

        check_keras_h5(path)
    elif fmt == "pmml":
        from packager.safety.xml import check_xml

        check_xml(path)
    elif fmt in ("savedmodel", "pb"):
        from packager.safety.tensorflow import check_graph_def, check_saved_model

        check_saved_model(path) if fmt == "savedmodel" else check_graph_def(path)
    elif fmt == "safetensors":
        from packager.safety.safetensors import check_safetensors

        check_safetensors(path)
    elif fmt == "huggingface":
        from packager.safety.huggingface import check_hf_folder

        check_hf_folder(path)
    elif fmt == "spark":
        from packager.safety.spark import check_spark_folder

        check_spark_folder(path)
    elif fmt == "onnx":
        from packager.safety.onnx import check_onnx

        check_onnx(path)
    elif fmt == "tflite":
        from packager.safety.tflite import check_tflite

        check_tflite(path)
    elif fmt in ZIP_FORMATS and path.is_file():
        from packager.safety.zips import check_zip

        check_zip(path)
    elif fmt not in CHECKED_ELSEWHERE:  # default-deny: a format nobody declared safe is not opened untrusted
        raise UnsafeModelError(f"{path.name}: packager has no safety check for {fmt} files, so it does not open them untrusted",
                               "if you trust the file, rerun with --trust (API: trust=True)")


# Formats with no check above, each with the reason it needs none here (anything else is refused untrusted).
CHECKED_ELSEWHERE = {
    "joblib": "its arrays sit between pickle opcodes, so it is checked while loading (packager.safety.joblib)",
    "coreml": "a protobuf that coremltools reads as data; Core ML models are never executed on Linux",
    "mlpackage": "a folder of protobuf and weights that coremltools reads as data; never executed on Linux",
    "xgboost-json": "data checked in Python and parsed by XGBoost's own reader (converters/xgboost.py)",
    "xgboost-ubj": "data parsed by XGBoost's own reader (converters/xgboost.py)",
    "lightgbm": "text checked tree by tree before LightGBM's reader sees it (converters/lightgbm.py)",
    "catboost": "read by CatBoost's C++ model loader, which unpickles nothing (converters/catboost.py)",
}
