"""Keys, CLI calls and catalog edits shared by the trust tests (signatures, policy, history, audit, tokens)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from packager.errors import PackagerError


def make_key(folder: Path, name: str) -> tuple[Path, Path]:
    """A P-256 key pair as PEM files (private unencrypted, public SubjectPublicKeyInfo), made with cryptography."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def packager(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The CLI in-process (click's CliRunner), with the exit code and the one-line error `packager` itself prints."""
    from click.testing import CliRunner

    from packager.cli import main

    result = CliRunner().invoke(main, list(args), env=env, standalone_mode=False, catch_exceptions=True)
    if isinstance(result.exception, PackagerError):
        return result.exception.exit_code, result.stdout, result.exception.one_line()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, ""


def openssf_verify(folder: Path, public_key: Path) -> subprocess.CompletedProcess:
    """OpenSSF's own CLI, as a user would run it on a pulled package."""
    tool = Path(sys.executable).with_name("model_signing")
    return subprocess.run(
        [str(tool), "verify", "key", str(folder), "--signature", str(folder / "model.sig"), "--public_key", str(public_key)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )


def sqlite_path(url: str) -> str:
    return url[len("sqlite:///") :]


def point_file_at(catalog: str, ref_name: str, version: int, path: str, digest: str, size: int) -> None:
    """Edit the catalog as someone with database access would: a version's file now names another stored blob (its
    digest and size agree with the blob, so only the signature can tell)."""
    with sqlite3.connect(sqlite_path(catalog)) as db:
        version_id = db.execute(
            "SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = ? AND v.version = ?", (ref_name, version)
        ).fetchone()[0]
        done = db.execute("UPDATE files SET digest = ?, size = ? WHERE version_id = ? AND path = ?", (digest, size, version_id, path))
        assert done.rowcount == 1
