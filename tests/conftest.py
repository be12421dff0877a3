"""Shared fixtures: real fitted models built once per test session by fixtures/build.py."""
from __future__ import annotations

import os
import subprocess
import uuid
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.build import build  # noqa: E402
from tests.services import make_bucket, start_moto, start_postgres  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def isolated_registry_home(tmp_path_factory):
    """No test writes to the user's ~/.packager: the embedded registry lives in a temp folder."""
    home = tmp_path_factory.mktemp("packager-home")
    previous = {k: os.environ.pop(k, None) for k in ("PACKAGER_REGISTRY", "PACKAGER_BLOBS")}
    os.environ["PACKAGER_HOME"] = str(home)
    yield home
    os.environ.update({k: v for k, v in previous.items() if v is not None})


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory):
    """name -> fixtures.build.Fixture (model pickle + sample file)."""
    return build(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="session")
def fixture_dir(fixtures) -> Path:
    return Path(next(iter(fixtures.values())).model).parent


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, python_prelude: str = "") -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (its exit code and stderr are part of the contract)."""
    code = f"{python_prelude}\nimport sys\nfrom packager.cli import run\nsys.argv = ['packager', *sys.argv[1:]]\nrun()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env or os.environ.copy(), cwd=cwd, timeout=600)


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run (start-up ~13 s), shared by every Spark test (tests/spark_support.py)."""
    pytest.importorskip("pyspark")
    from tests.spark_support import start_session

    session, seconds = start_session()
    print(f"\nSpark session started in {seconds:.1f} s")
    return session


@pytest.fixture(scope="session")
def package_dirs(fixtures, tmp_path_factory):
    """Two real packages (ONNX and its int8 variant) to push."""
    from packager.conversion import convert

    out = tmp_path_factory.mktemp("packages")
    mlp = fixtures["mlp"]
    return {
        "onnx": convert(mlp.model, to="onnx", sample=mlp.sample, out=out / "onnx").path,
        "int8": convert(mlp.model, to="onnx", quantize="dynamic", sample=mlp.sample, out=out / "int8").path,
        "ridge": convert(fixtures["ridge"].model, to="onnx", out=out / "ridge").path,
    }


# ---------------------------------------------------------------- team backends (real servers on loopback)

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def postgres_server():
    url, stop = start_postgres()
    yield url
    stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    endpoint, stop = start_moto()
    os.environ["PACKAGER_S3_ENDPOINT"] = endpoint
    yield endpoint
    stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database per test on the session's server."""
    import sqlalchemy

    name = "t" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(postgres_server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return postgres_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def s3_blobs(s3_endpoint):
    bucket = "b" + uuid.uuid4().hex[:12]
    make_bucket(s3_endpoint, bucket)
    return f"s3://{bucket}/models"


@pytest.fixture
def static_checks_here(monkeypatch):
    """Run the API in this process as the sandbox child would: the static checks do all the refusing, with no sandbox
    child per call. Corpus-wide tests of the checks use it (one child per attack file costs ~1 s of imports and framework
    start-up: 350 s of suite time for the corpus); tests/test_sandbox.py proves the sandbox on its own, with the checks
    off, and test_attacks keeps a sandboxed sample of every family. The test-only skip switch stays off here: it also
    needs a read-only root. (The public functions ask ``sandbox.confines`` once where to run; answering "here" is what
    the sandbox child's workers do.)"""
    from packager import sandbox

    monkeypatch.setattr(sandbox, "confines", lambda trust, registry=None: False)
