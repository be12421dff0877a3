"""Format detection: content first, extension second; clear errors for junk."""
from __future__ import annotations

import os
import random
import shutil
import zipfile
from pathlib import Path

import pytest

from packager.errors import InputFileError
from packager.formats import detect_format


@pytest.fixture(scope="module")
def artifacts(fixtures, tmp_path_factory):
    from packager.conversion import convert

    out = tmp_path_factory.mktemp("artifacts")
    paths = {}
    for target in ("onnx", "pmml", "joblib", "skops", "mleap"):
        package = convert(fixtures["digits_linear"].model, to=target, sample=fixtures["digits_linear"].sample, out=out / target, trust=True)
        paths[target] = package.model_path
    paths["pickle"] = fixtures["digits_linear"].model
    return paths


@pytest.mark.parametrize("fmt", ["onnx", "pmml", "joblib", "skops", "mleap", "pickle"])
def test_detects_each_format_by_content(artifacts, fmt):
    assert detect_format(artifacts[fmt]) == fmt


@pytest.mark.parametrize("fmt,wrong_name", [("onnx", "model.pkl"), ("pickle", "model.onnx"), ("pmml", "model.bin"), ("skops", "model.zip")])
def test_content_wins_over_a_wrong_extension(artifacts, tmp_path, fmt, wrong_name):
    target = tmp_path / wrong_name
    shutil.copy(artifacts[fmt], target)
    assert detect_format(target) == fmt


def test_hdf5_magic_and_savedmodel_folder(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert detect_format(tmp_path / "w.h5") == "hdf5"
    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    assert detect_format(saved) == "savedmodel"


def test_torch_zip_layouts(tmp_path):
    script = tmp_path / "m.pt"
    with zipfile.ZipFile(script, "w") as zf:
        zf.writestr("m/data.pkl", b"x")
        zf.writestr("m/code/__torch__/m.py", b"")
    assert detect_format(script) == "torchscript"
    state = tmp_path / "w.pth"
    with zipfile.ZipFile(state, "w") as zf:
        zf.writestr("w/data.pkl", b"x")
    assert detect_format(state) == "torch"


@pytest.mark.parametrize("fmt", ["onnx", "pickle", "skops", "pmml"])
def test_truncated_files_are_refused_with_a_hint(artifacts, tmp_path, fmt):
    data = artifacts[fmt].read_bytes() if hasattr(artifacts[fmt], "read_bytes") else open(artifacts[fmt], "rb").read()
    target = tmp_path / f"cut{os.path.splitext(str(artifacts[fmt]))[1]}"
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated|corrupt|damaged"):
        detect_format(target) if fmt != "pmml" else _parse_pmml(target)


def _parse_pmml(path):
    from packager.safety.xml import parse_xml

    detect_format(path)
    parse_xml(path)


def test_random_bytes_and_empty_files(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(random.Random(4096).randbytes(4096))  # seeded: random bytes can form a valid file
    with pytest.raises(InputFileError, match="not a model file packager can read.*extension says onnx"):
        detect_format(junk)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty file"):
        detect_format(empty)


def test_missing_path_and_unknown_directory(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        detect_format(tmp_path / "nope.pkl")
    with pytest.raises(InputFileError, match="directory that holds no model"):
        detect_format(tmp_path)


# ------------------------------------------------------------------ polyglots: one file, two readings

def _keras_zip(marker: Path) -> bytes:
    import io
    import json

    code = f"lambda x: (__import__('os').system('touch {marker}'), x)[1]"
    function = {"class_name": "__lambda__", "config": {"code": code}}
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "evil", "function": function}}]}}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", "{}")
        zf.writestr("model.weights.h5", b"")
    return buffer.getvalue()


def test_hdf5_and_zip_polyglot_named_keras_is_refused(tmp_path):
    """HDF5 from its start (no model_config: the old check had nothing to look at), a Keras zip from its end."""
    import h5py

    from packager.errors import UnsafeModelError
    from packager.inspection import inspect

    path = tmp_path / "model.keras"
    with h5py.File(path, "w") as handle:
        handle["w"] = [1.0, 2.0]
    path.write_bytes(path.read_bytes() + _keras_zip(tmp_path / "PWNED"))
    assert zipfile.is_zipfile(path)
    with pytest.raises(UnsafeModelError, match=r"model.keras reads as hdf5 and zip at once \(a polyglot file\)"):
        detect_format(path)
    with pytest.raises(UnsafeModelError, match="polyglot"):
        inspect(path)
    assert not (tmp_path / "PWNED").exists()


def test_zip_with_hdf5_after_a_user_block_is_refused(tmp_path):
    """HDF5 finds a superblock at 512, 1024, 2048...: a zip padded so that one sits there reads as both."""
    import h5py

    from packager.errors import UnsafeModelError

    h5 = tmp_path / "w.h5"
    with h5py.File(h5, "w", userblock_size=1024) as handle:
        handle.attrs["model_config"] = "{}"
    import struct

    data = bytearray(h5.read_bytes())
    archive = _keras_zip(tmp_path / "PWNED")
    eocd = archive.rfind(b"PK\x05\x06")
    directory_at = struct.unpack("<I", archive[eocd + 16:eocd + 20])[0]
    data[:directory_at] = archive[:directory_at]  # the user block holds the zip's members; its directory goes to the end
    tail = bytearray(archive[directory_at:])
    struct.pack_into("<I", tail, eocd - directory_at + 16, len(data))
    path = tmp_path / "model.keras"
    path.write_bytes(bytes(data) + bytes(tail))
    with h5py.File(path, "r") as handle:
        assert "model_config" in handle.attrs  # h5py opens it
    assert zipfile.is_zipfile(path)
    with pytest.raises(UnsafeModelError, match="reads as hdf5 and keras at once"):
        detect_format(path)


def test_pickle_with_a_zip_appended_is_refused(tmp_path):
    """A pickle is read from the start, a zip from the end; the zip comment ends with the pickle's STOP byte."""
    import io
    import pickle

    from packager.errors import UnsafeModelError

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
        zf.comment = b"."
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"benign": True}, protocol=4) + buffer.getvalue())
    with pytest.raises(UnsafeModelError, match=r"reads as pickle and zip at once"):
        detect_format(path)


def test_pmml_with_a_zip_in_a_trailing_comment_is_refused(tmp_path):
    import io

    from packager.errors import UnsafeModelError

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("bundle.json", "{}")
    path = tmp_path / "model.pmml"
    path.write_bytes(b'<PMML version="4.4"><Header/></PMML>\n<!--' + buffer.getvalue().replace(b"--", b"-_") + b"-->")
    with pytest.raises(UnsafeModelError, match=r"reads as pmml and zip at once"):
        detect_format(path)


def test_keras_archive_with_a_pickle_member_or_two_formats_is_refused(tmp_path):
    from packager.errors import UnsafeModelError

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("metadata.json", "{}")
        zf.writestr("archive/data.pkl", b"x")
    with pytest.raises(UnsafeModelError, match="reads as keras and torch at once"):
        detect_format(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("schema.json", "{}")
        zf.writestr("extra.pkl", b"x")
    with pytest.raises(UnsafeModelError, match="reads as skops and pickle at once"):
        detect_format(path)


def test_utf16_pmml_and_a_long_prolog_are_detected_as_pmml(tmp_path):
    """Detection by content: an XML parser reads UTF-16 and skips comments, so the format check must too."""
    doc = '<?xml version="1.0" encoding="UTF-16"?>\n<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/></PMML>'
    (tmp_path / "a.pmml").write_bytes(doc.encode("utf-16"))
    assert detect_format(tmp_path / "a.pmml") == "pmml"
    (tmp_path / "b.xml").write_text("<?xml version='1.0'?>\n<!--" + "licence " * 2000 + "-->\n<PMML version='4.4'/>")
    assert detect_format(tmp_path / "b.xml") == "pmml"


def test_hdf5_without_model_config_is_not_nothing_to_check(tmp_path):
    """A weights-only HDF5 names no architecture: there is no Keras model to check or load, so it is refused as input."""
    import h5py

    from packager.safety import check_file

    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as handle:
        handle["layer/kernel"] = [[1.0]]
    with pytest.raises(InputFileError, match="HDF5 file without a Keras model config"):
        check_file(path, "hdf5")


def test_hdf5_reaching_other_files_is_refused(tmp_path):
    import h5py

    from packager.errors import UnsafeModelError
    from packager.safety import check_file

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"password" * 8)
    path = tmp_path / "external.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = "{}"
        handle.create_dataset("model_weights/w", shape=(64,), dtype="u1", external=[(str(secret), 0, 64)])
    with pytest.raises(UnsafeModelError, match="stored in external files"):
        check_file(path, "hdf5")
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = "{}"
        handle["model_weights"] = h5py.ExternalLink(str(secret), "/")
    with pytest.raises(UnsafeModelError, match="external link"):
        check_file(path, "hdf5")


def test_zip_member_name_flagged_utf8_but_not_utf8_is_an_input_error(tmp_path):
    """Found by the torchscript fuzzer (a member name with one byte flipped): zipfile raises
    UnicodeDecodeError, not BadZipFile, for a central-directory name with the UTF-8 flag and invalid bytes."""
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    raw = bytearray(path.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 8:central + 10] = (0x800).to_bytes(2, "little")  # general purpose flags: names are UTF-8
    name_at = central + 46
    raw[name_at + 2] = 0xC4  # "model/..." -> "mo\xc4el/...": not valid UTF-8
    path.write_bytes(bytes(raw))
    with pytest.raises(InputFileError, match="damaged zip archive"):
        detect_format(path)


def test_zip_needing_an_unknown_zip_version_is_an_input_error(tmp_path):
    """Found by the fuzzer: zipfile raises NotImplementedError ("zip file version 16.6") for a central
    directory entry whose version-needed-to-extract it does not know."""
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    raw = bytearray(path.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 6:central + 8] = (166).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(InputFileError, match="damaged zip archive"):
        detect_format(path)
