"""The pickle allow-list: malicious files are refused before anything runs; real models still load."""
from __future__ import annotations

import io
import pickle
import pickletools

import joblib
import pytest

from packager.errors import InputFileError, UnsafeModelError
from packager.safety import import_refusal, load_joblib, load_pickle, scan_pickle_imports


class _SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _stack_global_via_memo(marker) -> bytes:
    """PROTO 4, module and name memoized first, then fetched with BINGET before STACK_GLOBAL."""
    module, name, arg = b"os", b"system", f"touch {marker}".encode()
    return (
        b"\x80\x04"
        + b"\x8c" + bytes([len(module)]) + module + b"\x94" + b"0"  # SHORT_BINUNICODE 'os', MEMOIZE -> 0, POP
        + b"\x8c" + bytes([len(name)]) + name + b"\x94" + b"0"  # 'system', MEMOIZE -> 1, POP
        + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        + b"\x8c" + bytes([len(arg)]) + arg + b"\x85R."  # arg, TUPLE1, REDUCE, STOP
    )


def test_reduce_to_os_system_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_SystemCall(marker)))
    with pytest.raises(UnsafeModelError, match=r"imports (posix|os)\.system at byte \d+: module '(posix|os)' is not on the allow-list"):
        load_pickle(evil)
    assert not marker.exists()


def test_stack_global_with_memo_indirection_is_resolved(tmp_path):
    marker = tmp_path / "pwned"
    data = _stack_global_via_memo(marker)
    pickletools.dis(data, out=io.StringIO())  # a valid pickle
    imports = scan_pickle_imports(io.BytesIO(data), "x")
    assert [(i.module, i.name) for i in imports] == [("os", "system")]
    evil = tmp_path / "memo.pkl"
    evil.write_bytes(data)
    with pytest.raises(UnsafeModelError, match="os.system"):
        load_pickle(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    "dotted",
    [
        "builtins.eval",
        "builtins.exec",
        "builtins.setattr",
        "subprocess.Popen",
        "runpy.run_path",
        "importlib.import_module",
        "pip.main",
        "numpy.memmap",
        "sklearn.utils._testing.assert_run_python_script_without_output",
        "numpy.load",
        "pandas.read_pickle",
        "numpy.lib.npyio.load",
    ],
)
def test_dangerous_callables_are_refused(dotted):
    module, _, name = dotted.rpartition(".")
    assert import_refusal(module, name) is not None


@pytest.mark.parametrize(
    "dotted",
    [
        "sklearn.linear_model._logistic.LogisticRegression",
        "numpy.dtype",
        "numpy._core.multiarray._reconstruct",
        "numpy.log1p",
        "copyreg._reconstructor",
        "sklearn.tree._tree.Tree",
    ],
)
def test_model_building_blocks_are_allowed(dotted):
    module, _, name = dotted.rpartition(".")
    assert import_refusal(module, name) is None


def test_every_fixture_model_loads(fixtures):
    for fixture in fixtures.values():
        model = load_pickle(fixture.model)
        assert hasattr(model, "fit"), fixture.name


def test_joblib_files_load_and_malicious_ones_are_refused(fixtures, tmp_path):
    good = tmp_path / "forest.joblib"
    joblib.dump(load_pickle(fixtures["forest"].model), good, compress=3)
    assert type(load_joblib(good)).__name__ == "RandomForestClassifier"
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.joblib"
    joblib.dump({"model": _SystemCall(marker)}, evil)
    with pytest.raises(UnsafeModelError, match="system"):
        load_joblib(evil)
    assert not marker.exists()


def test_trust_is_the_only_way_past(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_SystemCall(marker)))
    load_pickle(evil, trust=True)
    assert marker.exists()


def test_truncated_pickle_is_an_input_error(fixtures, tmp_path):
    data = open(fixtures["logreg"].model, "rb").read()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputFileError, match="not a valid pickle"):
        load_pickle(cut)


def test_pmml_with_external_entity_is_refused(tmp_path):
    from packager.safety.xml import parse_xml

    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    xxe = tmp_path / "xxe.pmml"
    xxe.write_text(f'<?xml version="1.0"?><!DOCTYPE PMML [<!ENTITY x SYSTEM "file://{secret}">]><PMML version="4.4">&x;</PMML>')
    with pytest.raises(UnsafeModelError, match="DOCTYPE"):
        parse_xml(xxe)
