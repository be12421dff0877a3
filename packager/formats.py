"""File-format detection: content first (magic bytes, zip members, protobuf structure), extension second.

Knows bytes, not frameworks: the answer is a format name that plugins register loaders and runtimes
for. A file that matches nothing, or is truncated, is an ``InputFileError`` with a hint.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from packager.errors import InputFileError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
COMPRESSION_MAGICS = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x5d\x00\x00": "lzma",
    b"\x04\x22\x4d\x18": "lz4",
    b"\x78\x01": "zlib",
    b"\x78\x5e": "zlib",
    b"\x78\x9c": "zlib",
    b"\x78\xda": "zlib",
}


@dataclass(frozen=True)
class FormatInfo:
    """A serialization format packager knows about."""

    name: str
    title: str
    extension: str  # the extension packager writes ("" for directories)
    is_directory: bool = False


FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in (
        FormatInfo("pickle", "Python pickle", ".pkl"),
        FormatInfo("joblib", "joblib pickle", ".joblib"),
        FormatInfo("skops", "skops (safe, no code on load)", ".skops"),
        FormatInfo("hdf5", "HDF5 (Keras)", ".h5"),
        FormatInfo("keras", "Keras v3 archive", ".keras"),
        FormatInfo("onnx", "ONNX", ".onnx"),
        FormatInfo("pmml", "PMML (XML)", ".pmml"),
        FormatInfo("torchscript", "TorchScript", ".pt"),
        FormatInfo("pt2", "torch.export program", ".pt2"),
        FormatInfo("torch", "torch.save archive / state dict", ".pt"),
        FormatInfo("coreml", "Core ML model", ".mlmodel"),
        FormatInfo("mlpackage", "Core ML package", ".mlpackage", is_directory=True),
        FormatInfo("mleap", "MLeap bundle", ".zip"),
        FormatInfo("savedmodel", "TensorFlow SavedModel", "", is_directory=True),
        FormatInfo("pb", "TensorFlow frozen GraphDef", ".pb"),
        FormatInfo("tflite", "TensorFlow Lite", ".tflite"),
        FormatInfo("xgboost-json", "XGBoost JSON model", ".json"),
        FormatInfo("xgboost-ubj", "XGBoost UBJSON model", ".ubj"),
        FormatInfo("lightgbm", "LightGBM text model", ".txt"),
        FormatInfo("catboost", "CatBoost model", ".cbm"),
    )
}

_BY_EXTENSION = {
    ".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib", ".skops": "skops",
    ".h5": "hdf5", ".hdf5": "hdf5", ".keras": "keras", ".onnx": "onnx", ".pmml": "pmml",
    ".pt": "torchscript", ".pth": "torch", ".pt2": "pt2", ".mlmodel": "coreml",
    ".mlpackage": "mlpackage", ".zip": "mleap", ".pb": "pb", ".tflite": "tflite",
    ".json": "xgboost-json", ".ubj": "xgboost-ubj", ".cbm": "catboost",
}
CATBOOST_MAGIC = b"CBM1"
LIGHTGBM_HEADER = b"tree\nversion=v"

# top-level protobuf field numbers (wire type) of the message each protobuf format starts with
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
_GRAPHDEF_FIELDS = {1: 2, 2: 2, 3: 0, 4: 2, 5: 2}
_COREML_FIELDS = {1: 0, 2: 2, 10: 0}


def detect_format(path: str | Path) -> str:
    """Return the format name of ``path``; raise InputFileError when it is none we know."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path} does not exist", "check the path")
    if path.is_dir():
        return _detect_directory(path)
    head = _read_head(path)
    found = _detect_by_content(path, head)
    if found:
        return found
    by_ext = _BY_EXTENSION.get(path.suffix.lower())
    hint = f"its extension says {by_ext}, but the content does not match" if by_ext else "the content matches no known model format"
    raise InputFileError(
        f"{path.name} is not a model file packager can read ({_describe(head)})",
        f"{hint}; the file may be truncated or corrupt — re-export it from the training code",
    )


def _read_head(path: Path, size: int = 4096) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(size)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}", "check the file permissions") from exc


def _describe(head: bytes) -> str:
    return "empty file" if not head else f"starts with bytes {head[:8].hex(' ')}"


def _detect_directory(path: Path) -> str:
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return "savedmodel"
    if (path / "Manifest.json").is_file() and path.suffix == ".mlpackage":
        return "mlpackage"
    if (path / "bundle.json").is_file():
        return "mleap"
    raise InputFileError(
        f"{path} is a directory that holds no model packager recognises",
        "give a SavedModel folder (with saved_model.pb), an .mlpackage, or a model file",
    )


def _detect_by_content(path: Path, head: bytes) -> str | None:
    if not head:
        return None
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(ZIP_MAGIC):
        return _detect_zip(path)
    if _looks_like_xml(head, b"PMML"):
        return "pmml"
    if head[4:8] == b"TFL3":
        return "tflite"
    boosting = _detect_boosting(head)
    if boosting:
        return boosting
    if _looks_like_pickle(path, head) or _looks_like_old_pickle(path, head):
        return "joblib" if b"joblib.numpy_pickle" in head or path.suffix.lower() == ".joblib" else "pickle"
    if any(head.startswith(m) for m in COMPRESSION_MAGICS) and path.suffix.lower() in (".joblib", ".pkl", ".gz", ".z"):
        return "joblib"
    return _detect_protobuf(path, head)


def _detect_boosting(head: bytes) -> str | None:
    """Gradient-boosting model files: CatBoost's magic, LightGBM's text header, XGBoost's JSON or UBJSON object whose
    first key is "learner" (XGBoost writes it first; a re-serialised JSON may not, so "learner" anywhere in the head
    of a JSON object counts too)."""
    if head.startswith(CATBOOST_MAGIC):
        return "catboost"
    if head.replace(b"\r\n", b"\n").startswith(LIGHTGBM_HEADER):
        return "lightgbm"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"{") and b'"learner"' in text:
        return "xgboost-json"
    if len(head) > 2 and head[:1] == b"{" and head[1:2] in b"iUIlL" and b"learner" in head[2:18]:
        return "xgboost-ubj"
    return None


def _looks_like_xml(head: bytes, root: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text.startswith(b"<"):
        return False
    return b"<" + root in text[:4096]


def _looks_like_pickle(path: Path, head: bytes) -> bool:
    """Protocol 2+ starts with PROTO; the whole file must end with STOP ('.')."""
    if len(head) < 2 or head[0] != 0x80 or head[1] not in (2, 3, 4, 5):
        return False
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        if size < 3:
            return False
        if path.suffix.lower() == ".joblib" or b"joblib.numpy_pickle" in head:
            return True  # joblib appends raw array bytes after pickle opcodes; STOP is not last
        fh.seek(-1, 2)
        return fh.read(1) == b"."


def _looks_like_old_pickle(path: Path, head: bytes) -> bool:
    """Protocol 0/1 pickles have no PROTO header: accept them when the opcodes parse to STOP."""
    import pickletools

    if head[:1] not in b"(cSIVNFLdl]}iKJMGTUX" or path.stat().st_size > 64 << 20:
        return False
    try:
        for opcode, _, _ in pickletools.genops(path.read_bytes()):
            if opcode.name == "STOP":
                return True
    except Exception:
        return False
    return False


def _detect_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise InputFileError(
            f"{path.name} is a damaged zip archive",
            "the file is probably truncated; re-export or re-download it",
        ) from None
    name_set = set(names)
    if "schema.json" in name_set:
        return "skops"
    if "config.json" in name_set and ("metadata.json" in name_set or any(n.endswith(".weights.h5") for n in names)):
        return "keras"
    if "bundle.json" in name_set or any(n.endswith("/bundle.json") and n.count("/") == 1 for n in names):
        return "mleap"
    if any(n.endswith(("/archive_format", "serialized_exported_program.json")) for n in names):
        return "pt2"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "torch"
    return None


def _detect_protobuf(path: Path, head: bytes) -> str | None:
    """Tell ONNX, GraphDef and Core ML apart by walking the top-level protobuf fields."""
    data = path.read_bytes() if path.stat().st_size <= 64 * 1024 * 1024 else None
    candidates = []
    if data is not None:
        fields = _top_level_fields(data)
        if fields:
            if 7 in fields and fields <= set(_ONNX_FIELDS) and _wire_types_match(data, _ONNX_FIELDS):
                candidates.append("onnx")
            if fields <= set(_GRAPHDEF_FIELDS) and 1 in fields and _wire_types_match(data, _GRAPHDEF_FIELDS):
                candidates.append("pb")
            if 1 in fields and 2 in fields and fields <= set(_COREML_FIELDS) | set(range(200, 600)) and _wire_types_match(data, _COREML_FIELDS):
                candidates.append("coreml")
    elif head[:1] == b"\x08":
        candidates.append("onnx")
    by_ext = _BY_EXTENSION.get(path.suffix.lower())
    if by_ext in candidates:
        return by_ext
    return candidates[0] if candidates else None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _walk(data: bytes):
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field 0")
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError("bad wire type")
        if pos > len(data):
            raise ValueError("truncated")
        yield number, wire


def _top_level_fields(data: bytes) -> set[int] | None:
    try:
        return {number for number, _ in _walk(data)}
    except ValueError:
        return None


def _wire_types_match(data: bytes, expected: dict[int, int]) -> bool:
    return all(expected.get(n, w) == w for n, w in _walk(data))
