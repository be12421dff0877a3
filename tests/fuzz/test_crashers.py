"""Every input the fuzzer saved under tests/fuzz/crashers/ (crashes, hangs, leaked exceptions) replayed through
``inspect`` or ``convert`` the way the sandbox child runs them (in-process, static checks on): each ends in one
PackagerError, in seconds, and the process survives. One child process per family, because an abort (the
TensorFlow dtype crasher) cannot be caught in the process it kills; the child says which input it was on.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRASHERS = ROOT / "tests" / "fuzz" / "crashers"
FAMILIES = sorted({folder.name.split("-")[0] for folder in CRASHERS.iterdir() if folder.is_dir()})
SECONDS_PER_INPUT = 15.0  # the harness's hang limit is 20 s; a refused input takes < 1 s here once the framework is imported

REPLAY = r"""
import faulthandler, json, sys, time, traceback
from pathlib import Path
faulthandler.enable()
from packager.errors import PackagerError
from packager.workers import execute  # as packager._sandbox_child: the workers run here, with the static checks on
import packager.conversion, packager.inspection  # imported before the first input's clock, as the old replay's imports were
for folder in map(Path, sys.argv[2:]):
    info = json.loads((folder / "info.json").read_text())
    path = next(p for p in folder.iterdir() if p.name not in ("info.json", "child.log"))  # a file, or a SavedModel folder
    print(json.dumps({"started": folder.name}), flush=True)
    faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)  # a hang prints its stack and exits 1
    began = time.perf_counter()
    try:
        if info["action"] == "inspect":
            execute("inspect", {"path": str(path)})
        else:
            execute("convert", {"path": str(path), "to": "onnx", "out": str(Path(sys.argv[0]).parent / "out"), "overwrite": True,
                                **({"input_shape": "2,4"} if info["family"] == "torchscript" else {})})
        outcome, what = "accepted", ""
    except PackagerError as exc:
        outcome, what = type(exc).__name__, exc.what
    except Exception as exc:
        outcome, what = "unexpected:" + type(exc).__name__, traceback.format_exc()[-2000:]
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps({"folder": folder.name, "outcome": outcome, "what": what, "seconds": time.perf_counter() - began}), flush=True)
"""


def replay(folders: list[Path], work: Path) -> dict[str, dict]:
    script = work / "replay.py"
    script.write_text(REPLAY)
    done = subprocess.run([sys.executable, str(script), str(SECONDS_PER_INPUT), *map(str, folders)], cwd=work, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = {line["folder"]: line for line in lines if "folder" in line}
    if done.returncode != 0:
        last = next((line["started"] for line in reversed(lines) if "started" in line), "?")
        pytest.fail(f"the replay died (exit {done.returncode}) on {last}:\n{done.stderr[-3000:]}")
    return results


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_crashers_end_in_one_packager_error(family, tmp_path):
    folders = sorted(f for f in CRASHERS.iterdir() if f.is_dir() and f.name.startswith(f"{family}-"))
    results = replay(folders, tmp_path)
    assert sorted(results) == [f.name for f in folders]
    for name, result in results.items():
        assert not result["outcome"].startswith("unexpected"), (name, result["what"])
        assert result["outcome"] != "accepted", name  # each is a damaged or crafted file
        assert result["seconds"] < SECONDS_PER_INPUT, (name, result)
    if family == "tensorflow":  # the SIGABRT: a Const tensor of dtype -2**31, refused before TF runs the graph
        assert "has data type -2147483648, which is no TensorFlow DataType" in results["tensorflow-inspect-crash-SIGABRT-5154"]["what"]
        # a RestoreV2 with no inputs in the restore function: IndexError in the saver check, now an op outside the saver's use
        assert "op RestoreV2" in results["tensorflow-inspect-unexpected-IndexError-6386"]["what"]
    if family == "keras":  # a non-string class_name / module: a one-line refusal, not TypeError
        assert "has a class_name that is not a string (dict)" in results["keras-inspect-unexpected-TypeError-174"]["what"]
        # h5py walking a damaged legacy .h5 raises KeyError / RuntimeError, not only OSError
        assert "is not a readable HDF5 file" in results["keras-inspect-unexpected-KeyError-339"]["what"]
        assert "Link visitation failed" in results["keras-inspect-unexpected-RuntimeError-102"]["what"]
        assert "is not a readable HDF5 file" in results["keras-inspect-unexpected-SystemError-7558"]["what"]  # a non-UTF-8 link name
    if family == "torchscript":  # members read past check_zip's first bytes: bad CRC, renamed header, a shape of the wrong type
        assert "is a damaged zip member (Bad CRC-32" in results["torchscript-inspect-unexpected-BadZipFile-138"]["what"]
        assert "and header" in results["torchscript-inspect-unexpected-BadZipFile-2846"]["what"]
        assert "range_constraints is a int, not a dict" in results["torchscript-inspect-unexpected-TypeError-2425"]["what"]
        # a storage record shorter than the elements its pickle declares: TorchScript read past it (SIGSEGV)
        assert "declares storage '0' of 2 FloatStorage elements (8 bytes), but its record holds 0 bytes" in \
            results["torchscript-convert-crash-SIGSEGV-297"]["what"]
    if family == "joblib":  # n_features_in_ = 2**31 - 1: the rows' allocation fails at once instead of a per-feature list spinning
        assert "MemoryError" in results["joblib-inspect-hang-8308"]["what"]


def test_keras_config_asking_for_more_parameters_than_its_weights_hold_is_refused(tmp_path):
    """The keras hang crasher with only its size mutation kept (its other mutation, a boolean module, is refused
    first): BatchNormalization built for 2**32 features, in a file whose weights hold 17 KB."""
    from packager.errors import InputFileError
    from packager.safety.keras import check_keras_archive

    source = CRASHERS / "keras-inspect-hang-2109" / "input.keras"
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    fixed = json.dumps(config).replace('"module": true', '"module": "keras.initializers"')
    assert '"input_shape": [null, 4294967296]' in fixed
    target = tmp_path / "huge.keras"
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, fixed if name == "config.json" else data)
    with pytest.raises(InputFileError, match=r"asks for about 4,294,967,\d+ parameters, but its [\d,]+ bytes of weights"):
        check_keras_archive(target)
    # the same file with the real size loads past the check
    restored = tmp_path / "small.keras"
    with zipfile.ZipFile(restored, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, fixed.replace("4294967296", "8") if name == "config.json" else data)
    check_keras_archive(restored)


def test_zip_member_with_a_broken_deflate_stream_is_a_damaged_archive(tmp_path):
    """zlib.error from a member's deflate stream (torchscript crashers 10 and 304) is an InputFileError."""
    from packager.errors import InputFileError
    from packager.safety.zips import check_zip

    source = CRASHERS / "torchscript-convert-unexpected-error-304"
    path = next(p for p in source.iterdir() if p.name.startswith("input"))
    shutil.copy(path, tmp_path / "model.pt")
    with pytest.raises(InputFileError, match="damaged zip archive .*Error -3 while decompressing"):
        check_zip(tmp_path / "model.pt")
