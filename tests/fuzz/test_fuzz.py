"""Mutated model files through `inspect` and `convert`, one family of formats per test: only
PackagerErrors come out, no input kills the interpreter (segfault, abort) or hangs.

The harness runs the loop in a supervised child process (see harness.py). The CI sizes below keep
the new families to about 3 minutes of the suite on this machine (rates in tests/fuzz/README.md);
the full 10,000 per family is ``python -m tests.fuzz.harness --family X --count 10000`` (``make fuzz``).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# inputs to inspect per family in CI (convert gets 1/20 of it); measured rates: tests/fuzz/README.md
CI_COUNT = {"joblib": 1500, "torchscript": 1000, "keras": 600, "tensorflow": 400}

# Open findings, reported with reproducers in tests/fuzz/crashers/ and owned by the packager/safety
# maintainers: a foreign exception leaking from (file, function). Remove a line when it is fixed;
# any other unexpected exception, and every crash or hang, fails the test.
KNOWN_LEAKS = {
    ("BadZipFile", "packager/safety/torch.py", "check_torch_archive"),
    ("OSError", "packager/safety/torch.py", "check_torch_archive"),
    ("UnicodeDecodeError", "packager/safety/torch.py", "check_torch_archive"),
    ("NotImplementedError", "packager/safety/torch.py", "check_torch_archive"),
    ("error", "packager/safety/torch.py", "check_torch_archive"),  # zlib.error
    ("BadZipFile", "packager/safety/keras.py", "check_keras_archive"),
    ("TypeError", "packager/safety/keras.py", "check_keras_config"),
}


def fuzz(family: str, count: int, convert: int, crashes: Path, env: dict | None = None, timeout: float = 1500, extra=()) -> dict:
    command = [sys.executable, "-m", "tests.fuzz.harness", "--family", family, "--count", str(count), "--convert", str(convert),
               "--seed", "0", "--crashes", str(crashes), *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert done.returncode == 0, done.stderr[-4000:]
    print(f"fuzz {family}: reproducers of any finding are in {crashes}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def leak_key(finding: dict) -> tuple[str, str, str]:
    site = re.match(r'File "([^"]+)", line \d+, in (\S+)', finding.get("at", ""))
    return (finding["outcome"].split(":", 1)[1], *(site.groups() if site else ("?", "?")))


def check_counts(result: dict, action: str, inputs: int) -> dict:
    """Every input has one outcome: accepted, a PackagerError class, or a finding; returns the counts."""
    outcomes = result[action]["outcomes"]
    assert outcomes["inputs"] == inputs
    named = {k: v for k, v in outcomes.items() if k not in ("inputs", "seconds", "reached_framework")}
    assert sum(named.values()) == inputs, named
    findings = result[action]["findings"]
    assert not [f for f in findings if f["outcome"].startswith(("crash", "hang"))], findings
    unknown = [f for f in findings if f["outcome"].startswith("unexpected") and leak_key(f) not in KNOWN_LEAKS]
    assert not unknown, unknown
    return outcomes


@pytest.mark.slow
def test_fuzzing_sklearn_formats_raises_only_packager_errors(tmp_path):
    result = fuzz("sklearn", 10_000, 500, tmp_path / "crashes")
    inspected = check_counts(result, "inspect", 10_000)
    check_counts(result, "convert", 500)
    assert not result["inspect"]["findings"] and not result["convert"]["findings"]
    assert inspected["InputFileError"] > 5000  # most mutations break the file, and are told so


# Families with an open crash (segfault, abort, hang) at a CI input: strict, so the fix turns it red until the mark goes
OPEN_CRASHES = {
    "joblib": "segfault in joblib's read_array (a pickled dtype state marks an object dtype as plain bytes, so pointers come "
              "from the file) and a hang, reproducers tests/fuzz/crashers/joblib-*; packager/safety/pickles.py lets them through",
}


@pytest.mark.slow
@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=OPEN_CRASHES[f])) if f in OPEN_CRASHES else f
                                    for f in sorted(CI_COUNT)])
def test_fuzzing_a_family_raises_only_packager_errors_and_never_crashes(family, tmp_path):
    count = CI_COUNT[family]
    result = fuzz(family, count, count // 20, tmp_path / "crashes")
    inspected = check_counts(result, "inspect", count)
    converted = check_counts(result, "convert", count // 20)
    # structure-aware mutations get past detection and our safety checks into the framework's reader
    assert inspected["reached_framework"] > 0.3 * count, inspected
    # and some still load and run (torch files carry no input shapes: only convert, given --input-shape, runs them)
    assert inspected.get("accepted", 0) + converted.get("accepted", 0) >= 5, (inspected, converted)


def test_supervisor_records_a_segfault_confirms_it_alone_and_resumes(tmp_path):
    result = fuzz("joblib", 12, 0, tmp_path / "crashes", env={"FUZZ_SELF_TEST": "segv:5"}, timeout=300)
    (finding,) = result["inspect"]["findings"]
    assert finding["index"] == 5 and finding["outcome"] == "crash:SIGSEGV" and finding["confirmed_alone"] is True
    saved = Path(finding["saved"])
    assert saved.parent == tmp_path / "crashes" and len([p for p in saved.iterdir() if p.name.startswith("input")]) == 1
    info = json.loads((saved / "info.json").read_text())
    assert info["replay"].endswith("--only 5") and "Fatal Python error: Segmentation fault" in info["detail"]
    assert result["inspect"]["outcomes"]["inputs"] == 12 and result["inspect"]["restarts"] == 1  # the 6 after it still ran


def test_supervisor_kills_an_input_that_hangs(tmp_path):
    result = fuzz("joblib", 4, 0, tmp_path / "crashes", env={"FUZZ_SELF_TEST": "hang:2"}, timeout=300, extra=("--time-scale", "0.25"))
    (finding,) = result["inspect"]["findings"]
    assert finding["index"] == 2 and finding["outcome"] == "hang" and finding["confirmed_alone"] is True
    assert result["inspect"]["outcomes"]["inputs"] == 4
