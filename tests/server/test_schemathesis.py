"""Schemathesis against the live server's own OpenAPI schema: every operation, generated valid and
invalid requests, stateful sequences (push, alias, tag, delete), and every check it has. No request may
get a 5xx, and every answer must match the schema (status, content type, body, headers, Allow on 405).

The seed is fixed so CI replays the same cases; run `schemathesis run` by hand (see the README) to explore
further. The search language cannot be described by a JSON Schema, so a search that parses to an error
may answer 400 (tests/server/schemathesis.toml says so)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest

from packager.registry.api import Registry
from tests.services import start_registry_server

TOKEN = "schemathesis-token"  # a bare line in the token file: full access (admin)
READER = "schemathesis-reader"  # the read scope only: every write answers 403, which the schema documents
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def populated_server(tmp_path_factory, package_dirs):
    """A server over a registry that already holds a model, its int8 child, an alias, params, metrics and tags."""
    home = tmp_path_factory.mktemp("schemathesis-home")
    os.environ["PACKAGER_HOME"], saved = str(home), os.environ.get("PACKAGER_HOME")
    try:
        registry = Registry(f"sqlite:///{home / 'catalog.db'}", str(home / "objects"))
        source = registry.push(
            package_dirs["onnx"], "mlp", params={"lr": "0.01"}, metrics={"accuracy": 0.97}, tags={"team": "fraud"}, aliases=["production"]
        )
        registry.push(package_dirs["int8"], "mlp", parents=[source.ref], metrics={"accuracy": 0.96})
    finally:
        os.environ.pop("PACKAGER_HOME") if saved is None else os.environ.__setitem__("PACKAGER_HOME", saved)
    token_file = home / "tokens"
    token_file.write_text(f"{TOKEN}\n{READER} read name=reader\n")
    url, stop = start_registry_server(home, token_file)
    yield url
    stop()


@pytest.mark.slow
@pytest.mark.parametrize("token", [TOKEN, READER], ids=["admin", "read"])
def test_no_generated_request_gets_a_server_error_or_an_answer_off_schema(populated_server, tmp_path, token):
    # one worker: with two, CPython 3.11's ast.parse (used by hypothesis to describe a filter) can raise
    # "SystemError: AST constructor recursion depth mismatch" across threads (python/cpython#106905).
    # Health checks off and a long request timeout: CI runs this beside other tests on 2 cores.
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{populated_server}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        "30",
        "--seed",
        "20261127",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "60",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
        "--no-color",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    generated = int(re.search(r"(\d+) generated", summary).group(1))
    print(f"schemathesis: {generated} generated requests, no failure")  # shown with pytest -s
    suites = ElementTree.parse(tmp_path / "junit.xml").getroot()
    cases = suites.findall(".//testcase")
    schema = json.loads(urllib.request.urlopen(f"{populated_server}/api/v1/openapi.json").read())
    operations = sum(len(methods) for methods in schema["paths"].values())
    assert f"Tested: {operations}" in summary and len(cases) >= operations  # every operation in the schema was exercised
    assert not suites.findall(".//failure") and not suites.findall(".//error")
    assert generated > 500, summary
