"""Shared fixtures: real fitted models built once per test session by fixtures/build.py."""
from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest

# One BLAS/OpenMP thread per test process, set before numpy is first imported (nothing has imported it when pytest loads
# this file; subprocesses and sandbox children inherit it: OMP_/OPENBLAS_/MKL_ are on the sandbox's allow-list). `make
# test` runs two xdist workers on two cores, so each library's default of one thread per core oversubscribes the cores,
# and OpenBLAS/OpenMP threads spin while they wait. Measured fitting the session fixtures (fixtures/build.py) under the
# shared machine's load: MLPClassifier 80.2 s -> 3.0 s, digits LogisticRegression 22.1 s -> 0.13 s, HistGradientBoosting
# 6.7 s -> 0.07 s, same iterations. Tests of thread settings set their own (bench's child, predict --threads).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# A test process imports every framework and builds many small models: collections at Python's default young threshold
# (700 allocations) run all through it. The same setting as the sandbox child (packager/_sandbox_child.py, measured
# there); conversions and validations run with the heap frozen anyway (packager/heap.py). Still collected, less often.
gc.set_threshold(100_000, 50, 100)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.build import build  # noqa: E402
from tests.services import make_bucket, start_moto, start_postgres  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked ``longest`` run first (stable order otherwise). One test of the sandbox suite takes ~290 s; started
    late, it kept one worker busy while the other sat idle (164 s at the end of a 19-minute run, measured): started
    first, the other worker's shorter tests fill the rest of the time."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)


@pytest.fixture(scope="session", autouse=True)
def isolated_registry_home(tmp_path_factory):
    """No test writes to the user's ~/.packager: the embedded registry lives in a temp folder."""
    home = tmp_path_factory.mktemp("packager-home")
    previous = {k: os.environ.pop(k, None) for k in ("PACKAGER_REGISTRY", "PACKAGER_BLOBS")}
    os.environ["PACKAGER_HOME"] = str(home)
    yield home
    os.environ.update({k: v for k, v in previous.items() if v is not None})


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory, worker_id):
    """name -> fixtures.build.Fixture (model pickle + sample file). Built once per test run: under xdist the workers
    share one folder (the first builds it under a lock, the others read its fixtures.json, written last) instead of
    fitting the same seeded models once per worker. Tests only read these files."""
    import fcntl
    import json

    from fixtures.build import Fixture

    if worker_id == "master":  # not under xdist
        return build(tmp_path_factory.mktemp("fixtures"))
    shared = tmp_path_factory.getbasetemp().parent / "fixtures"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "fixtures.json").is_file():
            return build(shared)
    return {name: Fixture(**fields) for name, fields in json.loads((shared / "fixtures.json").read_text()).items()}


@pytest.fixture(scope="session")
def fixture_dir(fixtures) -> Path:
    return Path(next(iter(fixtures.values())).model).parent


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, python_prelude: str = "") -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (its exit code and stderr are part of the contract)."""
    code = f"{python_prelude}\nimport sys\nfrom packager.cli import run\nsys.argv = ['packager', *sys.argv[1:]]\nrun()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env or os.environ.copy(), cwd=cwd, timeout=600
    )


class _Entry:
    """What click's CliRunner calls (``cli.main(args=..., prog_name=...)``), running packager's real entry point
    ``packager.cli.run``: its one-line errors and exit codes are the contract under test, not click's defaults."""

    name = "packager"

    def main(self, args=(), prog_name=None, **_extra):
        from packager.cli import run

        sys.argv = ["packager", *args]
        run()


def invoke_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI in this process (click's CliRunner), for tests where the sandbox is not what they test: the same entry
    point, exit codes, stdout and stderr as run_cli, with the static checks refusing as the sandboxed child would
    (static_checks_here), but without an interpreter start-up and a sandbox child per call. Measured alternately on
    this 2-core machine: `convert logreg.pkl --to onnx` 6.4-9.6 s as a subprocess with its child, 0.5-2.0 s in this
    process without a child (and `inspect` 3.8-4.4 s against 0.01-0.03 s once the frameworks are imported); in this
    process but with the child, 6.2-8.9 s: the child is the cost. Tests of the sandbox, of attacks, of
    tracebacks (--debug), and those needing their own cwd, plugins or a variable read at import time keep run_cli: a
    subprocess each. ``env``: variables set for this call only (packager reads PACKAGER_* when called, not imported).
    The process-wide state the CLI sets (warning filters, logging.disable, os.environ defaults, sys.argv) is restored."""
    from click.testing import CliRunner

    from packager import sandbox

    saved_argv, saved_env, saved_logging, saved_confines = sys.argv, dict(os.environ), logging.root.manager.disable, sandbox.confines
    sandbox.confines = lambda trust, registry=None: False  # as static_checks_here: run here, the static checks still refuse
    levels = {name: logging.getLogger(name).level for name in ("", "packager")}  # packager.logs.configure sets both
    os.environ.update(env or {})
    try:
        with warnings.catch_warnings():
            result = CliRunner().invoke(_Entry(), [str(a) for a in args], catch_exceptions=False)
    finally:
        sys.argv, sandbox.confines = saved_argv, saved_confines
        logging.disable(saved_logging)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for key in set(os.environ) - set(saved_env):
            del os.environ[key]
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["packager", *map(str, args)], result.exit_code, result.stdout, result.stderr)


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
    """Two real packages (ONNX and its int8 variant) to push. trust=True: the pickles are the session's own fixtures
    and the registry tests using them are not about loading untrusted files (a sandbox child per conversion)."""
    from packager.conversion import convert

    out = tmp_path_factory.mktemp("packages")
    mlp = fixtures["mlp"]
    return {
        "onnx": convert(mlp.model, to="onnx", sample=mlp.sample, out=out / "onnx", trust=True).path,
        "int8": convert(mlp.model, to="onnx", quantize="dynamic", sample=mlp.sample, out=out / "int8", trust=True).path,
        "ridge": convert(fixtures["ridge"].model, to="onnx", out=out / "ridge", trust=True).path,
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


# The suites whose subject is the sandbox or the user's path through it: their API calls spawn the real sandbox child.
# Everywhere else the child is not what the test tests, and it was most of the suite's time (a child per call: ~1-2 s of
# interpreter and framework start-up idle, 6-9 s under load, against 0.5-2 s here); `sandboxed` marks one test elsewhere
# that needs the real child. CLI tests through run_cli (a subprocess) always get the real child too.
SANDBOX_SUITES = ("tests/test_sandbox.py", "tests/attacks/", "tests/safety/", "tests/fuzz/", "tests/test_safety")


@pytest.fixture(autouse=True)
def _sandbox_only_where_it_is_the_subject(request, monkeypatch):
    """The public functions ask ``sandbox.confines`` once where to run; answering "here" is what the sandbox child's
    workers do, with the static checks still refusing (as static_checks_here). Not for SANDBOX_SUITES nor `sandboxed`."""
    where = Path(str(request.node.path)).resolve().relative_to(ROOT).as_posix()
    if where.startswith(SANDBOX_SUITES) or request.node.get_closest_marker("sandboxed"):
        return
    from packager import sandbox

    monkeypatch.setattr(sandbox, "confines", _here)


def _here(trust: bool, registry=None) -> bool:
    return False


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
