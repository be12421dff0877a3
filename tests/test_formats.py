"""Format detection: content first, extension second; clear errors for junk."""
from __future__ import annotations

import os
import shutil
import zipfile

import pytest

from packager.errors import InputFileError
from packager.formats import detect_format


@pytest.fixture(scope="module")
def artifacts(fixtures, tmp_path_factory):
    from packager.conversion import convert

    out = tmp_path_factory.mktemp("artifacts")
    paths = {}
    for target in ("onnx", "pmml", "joblib", "skops", "mleap"):
        package = convert(fixtures["digits_linear"].model, to=target, sample=fixtures["digits_linear"].sample, out=out / target)
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
    junk.write_bytes(os.urandom(4096))
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
