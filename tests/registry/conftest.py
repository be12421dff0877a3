"""Every registry test runs on the embedded backend (SQLite + folder) and the team backend
(PostgreSQL + S3, real servers started by tests/conftest.py), each used directly (LocalRegistry)
and through a live `packager serve` (RemoteRegistry): one contract, every backend."""
from __future__ import annotations

import pytest

TOKEN = "registry-suite-token"


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory):
    """An empty MLflow sqlite store, made once: MLflow's schema migrations take seconds per new database."""
    mlflow = pytest.importorskip("mlflow")
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(params=["sqlite+folder", "postgres+s3", pytest.param("mlflow", marks=pytest.mark.mlflow)])
def backend(request, tmp_path):
    """(catalog URL, blob URL) for the embedded and the team backends, and MLflow's registry (its own artifacts)."""
    if request.param == "sqlite+folder":
        return f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects")
    if request.param == "mlflow":
        import shutil

        shutil.copyfile(request.getfixturevalue("mlflow_template_db"), tmp_path / "mlflow.db")
        return f"mlflow:sqlite:///{tmp_path / 'mlflow.db'}", None
    request.applymarker(pytest.mark.postgres)
    return request.getfixturevalue("postgres_url"), request.getfixturevalue("s3_blobs")


@pytest.fixture(params=["local", "remote"])
def registry(request, backend, tmp_path):
    """The registry over ``backend``: opened here, or served by `packager serve` and reached over HTTP."""
    from packager.registry.backends import open_registry

    catalog, blobs = backend
    if request.param == "local":
        return open_registry(catalog, blobs)
    if catalog.startswith("mlflow:"):
        pytest.skip("packager serve refuses an MLflow registry (no blob store to upload into; MLflow serves its own)")
    from tests.services import serve_registry_in_thread

    home = tmp_path / "server-home"
    home.mkdir()
    (home / "tokens").write_text(TOKEN + "\n")
    url, stop = serve_registry_in_thread(catalog, blobs, home / "tokens")
    request.addfinalizer(stop)
    return open_registry(url, token=TOKEN)


@pytest.fixture
def blob_store(backend):
    """The blob store behind ``registry`` (the server's own, for a remote registry)."""
    from packager.registry.blobs import open_blob_store

    if backend[1] is None:
        pytest.skip("MLflow keeps the artifacts: no content-addressed blob store to look into")

    return open_blob_store(backend[1])


@pytest.fixture
def local_only(registry):
    from packager.registry.api import LocalRegistry

    if not isinstance(registry, LocalRegistry):
        pytest.skip("reads the catalog database directly")
    return registry
