"""Mutated model files through `inspect` and `convert`, one family of formats per test: only
PackagerErrors come out, no input kills the interpreter (segfault, abort) or hangs.

The harness runs the loop in a supervised child process, confined by bubblewrap like the sandbox child
(see harness.py). The CI sizes below keep these tests within 4 minutes on 2 workers (rates in
tests/fuzz/README.md); the full 10,000 per family is ``python -m tests.fuzz.harness --family X --count 10000``
(``make fuzz``). Every input a full run found is replayed by test_crashers.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# inputs to inspect per family in CI (convert gets 1/20 of it), from the rates in tests/fuzz/README.md: about a minute
# per family with its seeds and imports, so the fuzz tests together stay within 4 minutes on 2 workers. The
# 10,000-input runs are `make fuzz`.
CI_COUNT = {"sklearn": 1000, "joblib": 1500, "torchscript": 1000, "keras": 400, "tensorflow": 250, "trees": 400, "boosting": 400}

# the share of inputs that must get past our checks into a framework's reader. Boosting is lower: since c56741f the
# LightGBM/XGBoost structure checks (packager/safety/boosting.py) are declared Format checks and refuse malformed trees
# before LightGBM's or XGBoost's parser sees them, which is their purpose; at seed 0, 120 of 400 reach the library (30.0%).
MIN_REACHED = {"boosting": 0.25}


def fuzz(family: str, count: int, convert: int, crashes: Path, env: dict | None = None, timeout: float = 1500, extra=()) -> dict:
    command = [sys.executable, "-m", "tests.fuzz.harness", "--family", family, "--count", str(count), "--convert", str(convert),
               "--seed", "0", "--crashes", str(crashes), *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert done.returncode == 0, done.stderr[-4000:]
    print(f"fuzz {family}: reproducers of any finding are in {crashes}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_counts(result: dict, action: str, inputs: int) -> dict:
    """Every input has one outcome: accepted, a PackagerError class, or a finding; returns the counts."""
    outcomes = result[action]["outcomes"]
    assert outcomes["inputs"] == inputs
    named = {k: v for k, v in outcomes.items() if k not in ("inputs", "seconds", "reached_framework")}
    assert sum(named.values()) == inputs, named
    findings = result[action]["findings"]
    assert not findings, findings  # no crash, no hang, no exception but a PackagerError
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(CI_COUNT))
def test_fuzzing_a_family_raises_only_packager_errors_and_never_crashes(family, tmp_path):
    count = CI_COUNT[family]
    result = fuzz(family, count, count // 20, tmp_path / "crashes")
    inspected = check_counts(result, "inspect", count)
    converted = check_counts(result, "convert", count // 20)
    # structure-aware mutations get past detection and our safety checks into the framework's reader
    assert inspected["reached_framework"] > MIN_REACHED.get(family, 0.3) * count, inspected
    # and some still load and run (torch files carry no input shapes: only convert, given --input-shape, runs them)
    assert inspected.get("accepted", 0) + converted.get("accepted", 0) >= 5, (inspected, converted)
    if family == "sklearn":
        assert inspected["InputFileError"] > count / 2  # most mutations break the file, and are told so


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


@pytest.mark.skipif(not any(Path(p).exists() for p in ("/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap")), reason="no bwrap")
def test_the_worker_is_confined_a_write_outside_its_folders_does_not_reach_the_host(tmp_path):
    marker = tmp_path / "escaped"  # under /tmp: inside the worker's sandbox that is its private /tmp
    result = fuzz("joblib", 3, 0, tmp_path / "crashes", env={"FUZZ_SELF_TEST": f"write:1:{marker}"}, timeout=300)
    assert result["inspect"]["outcomes"]["inputs"] == 3 and not result["inspect"]["findings"]
    assert not marker.exists()
    home = Path.home() / ".fuzz-escape-probe"  # the read-only root: the write fails inside, nothing appears here
    result = fuzz("joblib", 3, 0, tmp_path / "crashes2", env={"FUZZ_SELF_TEST": f"write:1:{home}"}, timeout=300)
    assert not home.exists()
