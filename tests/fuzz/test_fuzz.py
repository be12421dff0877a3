"""10,000 mutated inputs to `inspect` and 500 to `convert`: only PackagerErrors escape, each input
within the harness's time limit. Runs in its own process (no JVM there: see harness.seed_files)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fuzzing_inspect_and_convert_raises_only_packager_errors():
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.harness", "10000"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["inspect"]["inputs"] == 10_000 and result["convert"]["inputs"] == 500
    for action in ("inspect", "convert"):
        refused = sum(v for k, v in result[action].items() if k.endswith("Error") or k in ("UnsupportedConversion", "NotQuantizable"))
        assert refused + result[action].get("accepted", 0) == result[action]["inputs"]
    assert result["inspect"]["InputFileError"] > 5000  # most mutations break the file, and are told so
