"""The catalog database: engine set-up per backend, schema migrations on open, and write
transactions that retry on conflicts (a unique (model, version) clash or a busy SQLite)."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from packager.errors import CatalogError, MissingDependency, UsageError, first_line

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
MAX_ATTEMPTS = 60


@dataclass(frozen=True)
class Dialect:
    """What one catalog database needs: how to open it, and which driver errors are a conflict worth
    retrying (a unique (model, version) clash, a busy or deadlocked writer). Read from the driver's
    own error codes, never from message text. A new database is one more entry in DIALECTS."""

    engine: Callable[[str], Any]
    conflict: Callable[[BaseException | None], bool]  # given the driver's error, DBAPIError.orig (None when there is none)
    busy: Callable[[BaseException | None], bool]


def _sqlite_engine(url: str):
    """WAL, busy timeout, foreign keys, BEGIN IMMEDIATE for writers."""
    from sqlalchemy import create_engine, event

    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: str):
    from sqlalchemy import create_engine

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        raise MissingDependency(
            f"the catalog URL {url.split('@')[-1]} needs a database driver ({exc})", "pip install 'packager[postgres]'"
        ) from None


def _sqlite_code(orig: BaseException | None) -> str:
    return getattr(orig, "sqlite_errorname", "")


def _sqlstate(orig: BaseException | None) -> str:
    return getattr(orig, "sqlstate", None) or ""


DIALECTS: dict[str, Dialect] = {
    "sqlite": Dialect(
        _sqlite_engine,
        lambda e: _sqlite_code(e) in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"),
        lambda e: _sqlite_code(e).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")),
    ),
    # 23505 unique_violation; 40001 serialization_failure, 40P01 deadlock_detected
    "postgresql": Dialect(_postgres_engine, lambda e: _sqlstate(e) == "23505", lambda e: _sqlstate(e) in ("40001", "40P01")),
}


def make_engine(url: str):
    """An engine for the catalog at ``url``, set up as its dialect needs."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        raise MissingDependency("the registry needs SQLAlchemy", "pip install packager") from None
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        backend = None
    if backend not in DIALECTS:
        raise UsageError(
            f"invalid catalog URL {url!r}", f"use one of: {', '.join(f'{d}://' for d in DIALECTS)} (e.g. sqlite:///path/catalog.db)"
        )
    return DIALECTS[backend].engine(url)


def migrate(engine) -> None:
    """Bring the schema to the newest revision (idempotent; run on every open)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.exc import OperationalError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise CatalogError(
            f"cannot open the catalog {where}: {first_line(exc.orig or exc)}",
            "check the URL, that the server runs and that you may connect",
        ) from None


def schema_revision(engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _transaction(engine) -> Iterator[Any]:
    with engine.begin() as connection:
        yield connection


def write(engine, work: Callable[[Any], T]) -> T:
    """Run ``work(connection)`` in one transaction; on a conflict roll back and retry with jitter."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    dialect = DIALECTS[engine.dialect.name]
    for attempt in range(MAX_ATTEMPTS):
        try:
            with _transaction(engine) as connection:
                return work(connection)
        except IntegrityError as exc:
            if not dialect.conflict(exc.orig) or attempt == MAX_ATTEMPTS - 1:
                raise
        except OperationalError as exc:
            if not dialect.busy(exc.orig) or attempt == MAX_ATTEMPTS - 1:
                raise CatalogError(
                    f"catalog write failed: {first_line(exc.orig or exc)}", "check the catalog URL and that the database is reachable"
                ) from exc
        time.sleep(random.uniform(0.001, 0.02) * (1 + attempt))
    raise CatalogError("catalog write kept conflicting", "retry later")


@contextmanager
def read(engine) -> Iterator[Any]:
    """A connection for reads: a database that went away is a CatalogError (HTTP 503 from the server), not a driver traceback."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        with engine.connect() as connection:
            yield connection
    except (OperationalError, InterfaceError) as exc:
        raise CatalogError(
            f"cannot read the catalog: {first_line(getattr(exc, 'orig', None) or exc)}", "check that the database is running and reachable"
        ) from exc
