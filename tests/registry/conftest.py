from __future__ import annotations

import os
import uuid

import pytest

from tests.services import make_bucket, start_moto, start_postgres

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


@pytest.fixture(params=["sqlite+folder", "postgres+s3"])
def backend(request, tmp_path):
    """(catalog URL, blob URL) for the embedded and the team backends."""
    if request.param == "sqlite+folder":
        return f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects")
    request.applymarker(pytest.mark.postgres)
    return request.getfixturevalue("postgres_url"), request.getfixturevalue("s3_blobs")


@pytest.fixture
def registry(backend):
    from packager.registry.api import Registry

    return Registry(*backend)
