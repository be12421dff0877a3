"""A live `packager serve` per test module (loopback, free port, its own PACKAGER_HOME), and the two
versions the UI and browser tests look at."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import start_registry_server

TOKEN = "s3cret-token-for-tests"


def remote(url: str, token: str | None):
    from packager.registry.remote import RemoteRegistry

    return RemoteRegistry(url, token=token)


@pytest.fixture(scope="module")
def server_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-home")


@pytest.fixture(scope="module")
def server(server_home):
    token_file = server_home / "tokens"
    token_file.write_text(f"# writers\n{TOKEN}\n")
    url, stop = start_registry_server(server_home, token_file)
    yield url
    stop()


@pytest.fixture(scope="module")
def pushed(server, package_dirs):
    """ui-model@1 (ONNX) and its int8 child ui-model@2 (alias production), with params and metrics that differ."""
    writer = remote(server, TOKEN)
    source = writer.push(
        package_dirs["onnx"], "ui-model", params={"depth": "6"}, metrics={"accuracy": 0.91, "auc": 0.95}, tags={"team": "fraud"}
    )
    child = writer.push(
        package_dirs["int8"],
        "ui-model",
        params={"depth": "8"},
        metrics={"accuracy": 0.93, "auc": 0.95},
        parents=[source.id],
        aliases=["production"],
    )
    return source, child
