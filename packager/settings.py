"""Every ``PACKAGER_*`` environment variable packager reads, read here and nowhere else, typed.

Read at call time, not at import: the server, the tests and a user's shell change them while a process runs. A number
that is not one is a one-line UsageError naming the variable. Which of them reach the sandbox child is
``packager.sandbox_view``'s allow-list (``SANDBOX_PASSED``); credentials and catalog locations never do.
(The CLI's ``--registry``/``--blobs`` flags also name PACKAGER_REGISTRY/PACKAGER_BLOBS as click ``envvar``s, so
``--help`` shows them; the values they give land in the same functions as the flags' fallback.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UsageError

HOME = "PACKAGER_HOME"  # embedded registry, pull cache (default ~/.packager)
REGISTRY = "PACKAGER_REGISTRY"  # catalog URL: sqlite:///..., postgresql://..., http(s)://server
BLOBS = "PACKAGER_BLOBS"  # blob store: a folder or s3://bucket/prefix
TOKEN = "PACKAGER_TOKEN"  # bearer token for a registry server
S3_ENDPOINT = "PACKAGER_S3_ENDPOINT"  # an S3-compatible endpoint (MinIO, moto)
BWRAP = "PACKAGER_BWRAP"  # the bubblewrap binary (default: PATH, then Debian's place)
VERIFY = "PACKAGER_VERIFY"  # trust policy of pull/predict: required | if-signed | off (packager.registry.signing)
ACTOR = "PACKAGER_ACTOR"  # who the audit log names for local writes (default local:<user>)
SKIP_STATIC_CHECKS = "PACKAGER_TEST_SKIP_STATIC_CHECKS"  # tests only; honoured only under a read-only root (the sandbox)
SANDBOX_MEMORY_GB = "PACKAGER_SANDBOX_MEMORY_GB"
SANDBOX_CPU_SECONDS = "PACKAGER_SANDBOX_CPU_SECONDS"
SANDBOX_FILE_GB = "PACKAGER_SANDBOX_FILE_GB"
SANDBOX_OPEN_FILES = "PACKAGER_SANDBOX_OPEN_FILES"
SANDBOX_TIMEOUT = "PACKAGER_SANDBOX_TIMEOUT"
SANDBOX_PROCESSES = "PACKAGER_SANDBOX_PROCESSES"
SANDBOX_LIMITS = (SANDBOX_MEMORY_GB, SANDBOX_CPU_SECONDS, SANDBOX_FILE_GB, SANDBOX_OPEN_FILES, SANDBOX_TIMEOUT, SANDBOX_PROCESSES)
SANDBOX_PASSED = (*SANDBOX_LIMITS, SKIP_STATIC_CHECKS)  # the child needs its limits (to say them) and the test switch


def text(name: str) -> str | None:
    """A setting's value; empty counts as unset (``PACKAGER_REGISTRY= packager ...`` means the default)."""
    return os.environ.get(name) or None


HOME_FOLDER = ".packager"  # the packager home under the user's home when PACKAGER_HOME is not set (a sandbox child's)


def home() -> Path:
    return Path(text(HOME) or Path.home() / HOME_FOLDER)


def registry_url() -> str | None:
    return text(REGISTRY)


def blobs() -> str | None:
    return text(BLOBS)


def token() -> str | None:
    return text(TOKEN)


def s3_endpoint() -> str | None:
    return text(S3_ENDPOINT)


def verify_policy() -> str | None:
    return text(VERIFY)


def actor() -> str | None:
    return text(ACTOR)


def bwrap() -> str | None:
    return text(BWRAP)


def skip_static_checks_asked() -> bool:
    """The test-only switch as set; ``sandbox.skip_static_checks`` decides whether it is honoured."""
    return os.environ.get(SKIP_STATIC_CHECKS) == "1"


def positive_number(name: str, default: float) -> float:
    """A positive number setting (the sandbox limits), ``default`` when unset."""
    raw = text(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number", f"unset it or give a number, e.g. {name}={default:g}") from None
    if value <= 0:
        raise UsageError(f"{name}={raw!r} is not positive", f"unset it or give a number, e.g. {name}={default:g}")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    meaning: str


DOCUMENTED = (
    Setting(HOME, "embedded registry and pull cache (default ~/.packager)"),
    Setting(REGISTRY, "catalog URL (sqlite:///, postgresql://, http(s)://)"),
    Setting(BLOBS, "blob store: a folder or s3://bucket/prefix"),
    Setting(TOKEN, "bearer token for a registry server"),
    Setting(S3_ENDPOINT, "S3-compatible endpoint URL"),
    Setting(BWRAP, "path of the bubblewrap binary"),
    Setting(VERIFY, "trust policy of pull and predict: required, if-signed (default) or off"),
    Setting(ACTOR, "the actor the audit log records for local writes (default local:<user>)"),
    *(Setting(name, "a limit of the sandbox child") for name in SANDBOX_LIMITS),
)
