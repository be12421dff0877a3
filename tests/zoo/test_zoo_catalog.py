"""The zoo catalog through the real CLI: for every entry, ``convert MODEL --to onnx --quantize`` and ``convert MODEL
--to all`` exit 0 or refuse with the documented reason, and every produced file, re-run here in its own runtime on
held-out real data, agrees with the source model (labels, R², cosine). Failures the zoo found are asserted exactly
(``Entry.known``) and listed in benchmarks/results/zoo.md; a new one fails here.

Budget (measured, see the report): the int8 headline for every entry is the `zoo` run; `--to all` (Core ML and the
JVM for PMML take ~15 s per model) is also marked `slow`."""
from __future__ import annotations

import re

import pytest

from tests.conftest import invoke_cli
from tests.zoo.catalog import CATALOG, EMBEDDING, LABELS, Saved
from tests.zoo.runner import BY_DESIGN, FAILED, PASSED, run

pytestmark = pytest.mark.zoo

# floors for the artifact's outputs vs the source model's on held-out rows: (kind, quantized) -> minimum
FLOORS = {(LABELS, False): 0.99, (LABELS, True): 0.9, ("regression", False): 0.999, ("regression", True): 0.95,
          (EMBEDDING, False): 0.999, (EMBEDDING, True): 0.98}


@pytest.fixture(scope="session")
def zoo_files(tmp_path_factory):
    """name -> Saved, each model built once per test process, on first use."""
    folder = tmp_path_factory.mktemp("zoo-models")
    cache: dict[str, Saved] = {}

    def get(entry) -> Saved:
        if entry.name not in cache:
            cache[entry.name] = entry.build(folder)
        return cache[entry.name]
    return get


def _cli_here(*args: str):
    """The CLI in this process (tests/conftest.py's invoke_cli: same entry point, exit codes and output, the static checks
    refusing as the sandbox child would). The zoo tests conversions of real-world models, not the sandbox (tests/attacks
    and tests/test_sandbox.py do); a subprocess and a sandbox child per command were ~640 s of the suite under load. The
    zoo report (benchmarks/results/zoo.md) still runs every command as a user types it."""
    return invoke_cli(*args, env={"HF_HUB_OFFLINE": "1"})


def _params(command_is_slow: bool):
    return [pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.slow or command_is_slow else []) for e in CATALOG]


def _check(outcomes, exit_code, saved, quantized, single):
    assert outcomes, "no target answered"
    for o in outcomes:
        if o.status == FAILED:
            assert o.known, f"{o.model} -> {o.target}: new failure (exit {o.exit_code}): {o.detail}"
        if o.status == PASSED and o.fidelity is not None:
            measure, value = o.fidelity
            floor = FLOORS[(saved.kind, quantized and o.target == "onnx")]
            assert value >= floor, f"{o.model} -> {o.target}: held-out {measure} {value:.4f} < {floor}"
    # several targets: exit 0 unless a target failed; a refusal is an answer, including one the catalog records as a
    # packager limit (known, e.g. mleap and Pipelines). One target: 0 only for a pass
    answered = all(o.status == PASSED for o in outcomes) if single else all(o.status == PASSED or o.cli_refused for o in outcomes)
    assert (exit_code == 0) == answered, (exit_code, [o.detail for o in outcomes if o.status != PASSED])


@pytest.mark.parametrize("entry", _params(False))
def test_onnx_int8_headline(zoo_files, tmp_path, entry):
    saved = zoo_files(entry)
    outcomes, stderr = run(entry, saved, ("onnx",), "dynamic", tmp_path / "out", call=_cli_here)
    (outcome,) = outcomes
    assert outcome.status in (PASSED, BY_DESIGN, FAILED)
    _check(outcomes, outcome.exit_code, saved, quantized=True, single=True)
    if outcome.status == PASSED:
        known = entry.known_failure("stderr", None)
        if stderr.strip():  # the CLI contract: a pass prints nothing on stderr
            assert known and re.search(known.match, stderr), stderr
        assert outcome.detail == "dynamic" and outcome.data_source


@pytest.mark.parametrize("entry", _params(True))
def test_every_target_headline(zoo_files, tmp_path, entry):
    saved = zoo_files(entry)
    outcomes, _ = run(entry, saved, ("all",), None, tmp_path / "out", call=_cli_here)
    _check(outcomes, outcomes[0].exit_code, saved, quantized=False, single=False)
    if not any(o.known for o in outcomes if o.target == "all"):
        assert {"onnx"} <= {o.target for o in outcomes if o.status == PASSED} or entry.refusal("onnx", None)


def test_catalog_has_25_models_saved_every_way_users_save_them():
    assert len(CATALOG) >= 25 and len({e.name for e in CATALOG}) == len(CATALOG)
    ways = {cell.cell_contents for e in CATALOG for cell in e.build.__closure__ if isinstance(cell.cell_contents, str)}
    # pickle, joblib, skops, .keras, .h5, SavedModel folder, traced/scripted .pt, state dict (zip and legacy), .pt2
    assert {".pkl", ".joblib", ".skops", ".keras", ".h5", "", "trace", "script", "state_dict", "legacy", "export"} <= ways
