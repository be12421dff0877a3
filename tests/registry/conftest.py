"""Every registry test runs on the embedded backend (SQLite + folder) and the team backend
(PostgreSQL + S3, real servers started by tests/conftest.py)."""
from __future__ import annotations

import pytest


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
