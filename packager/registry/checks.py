"""The registry holds nothing packager would refuse (issue 21: 81 hostile packages were stored by `push`, exit 0, and
refused only by every later load). A push runs the static check a load runs on the package's model file, before any
blob is stored; the server runs it again on what was uploaded, before the version is recorded (a client's word is not
taken). A check that cannot run here (no installed plugin declares the format, or its checker's library is missing)
is not a pass: the verdict is recorded on the version as the tag ``packager.check``."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from packager.errors import InputFileError, MissingDependency, UsageError

CHECK_TAG = "packager.check"
RESERVED_PREFIX = "packager."  # tags only packager writes: a user's `tag x packager.check=passed` forged the verdict
PASSED = "passed"
TRUSTED = "not run: pushed with trust"

# Content that passed, by (claimed format, digest of its bytes): the same bytes get the same verdict from the same code,
# so this process checks them once. A push checks in a sandbox child (~1.1 s each here, measured: 5 pushes of one ONNX
# package 5.96 s, 5.61 s of it the child); a training script pushing one package under several names, or a server
# receiving the same model again, paid that every time. Only passes are kept: a refusal is raised again in full.
_PASSED_CONTENT: set[tuple[str, str]] = set()
_PASSED_LOCK = threading.Lock()


def refuse_reserved(keys: Iterable[str]) -> None:
    """UsageError when a user sets or removes a tag packager owns (the push verdict is packager's word, not theirs)."""
    reserved = sorted(k for k in keys if str(k).startswith(RESERVED_PREFIX))
    if reserved:
        raise UsageError(
            f"tags starting with {RESERVED_PREFIX!r} are written by packager only: {', '.join(reserved)}",
            "choose another tag name; the check verdict is set by push itself",
        )


def check_package(package_dir: str | Path, manifest: Mapping[str, Any], *, trust: bool = False) -> str:
    """Raise UnsafeModelError/InputFileError when a load would refuse the package's model file; else the verdict to
    record (``passed``, or ``not run: <why>``)."""
    from packager import sandbox
    from packager.package import check_model_file
    from packager.plugins import default_registry

    if trust:
        return TRUSTED
    fmt = manifest.get("format")
    path = Path(package_dir) / check_model_file(manifest.get("model_file"))
    if not path.exists():
        raise InputFileError(f"the manifest names {path.name}, which the package does not hold", "re-create it with `packager convert`")
    registry = default_registry()
    if not isinstance(fmt, str) or fmt not in registry.formats:
        return f"not run: no installed plugin declares the format {fmt!r}"
    key = (fmt, _content_digest(path))
    with _PASSED_LOCK:
        if key in _PASSED_CONTENT:
            return PASSED
    try:
        from packager.safety import formats_to_check

        for claimed in formats_to_check(path, fmt, registry):
            if sandbox.confines(False, registry):
                from packager import confined

                confined.check(path, claimed)
            else:
                from packager.safety import check_file

                check_file(path, claimed, registry)
    except MissingDependency as exc:
        return f"not run: {exc.what}"[:4096]
    with _PASSED_LOCK:
        _PASSED_CONTENT.add(key)
    return PASSED


def _content_digest(path: Path) -> str:
    """sha256 over a model file, or over a model folder's relative paths, kinds and bytes (a SavedModel, a Spark
    folder). Links are hashed as links: the push's private copy refuses them before this runs."""
    import hashlib

    from packager.package import sha256_file

    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for member in sorted(path.rglob("*")):
        kind = "link" if member.is_symlink() else "dir" if member.is_dir() else "file"
        digest.update(f"{member.relative_to(path).as_posix()}\0{kind}\0".encode())
        if kind == "file":
            digest.update(sha256_file(member).encode())
    return digest.hexdigest()


def check_stored(blobs: Any, manifest: Mapping[str, Any], entries: Iterable[Any]) -> str:
    """``check_package`` on the model file(s) of uploaded ``entries``, copied out of the blob store first (the server's
    half of a remote push: what it records is what it checked)."""
    from packager.package import check_model_file
    from packager.registry.versions import safe_join

    model = check_model_file(manifest.get("model_file"))
    with tempfile.TemporaryDirectory(prefix="packager-push-check-") as work:
        root = Path(work)
        for entry in entries:
            if entry.role == "package" and (entry.path == model or entry.path.startswith(model + "/")):
                target = safe_join(root, entry.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                blobs.copy_to(entry.digest, target, entry.size)
        return check_package(root, manifest)


MAX_MANIFEST_BYTES = 16 << 20  # a manifest with its validation report is a few KB; this bounds what the server parses


def stored_manifest(blobs: Any, entries: Iterable[Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest a remote push records: the package's own manifest.json as uploaded (the file a signature covers,
    a pull writes and a predict reads), not the copy the client sent beside it. Taking the client's word, a token
    recorded ``validation: passed`` for a package whose signed manifest.json says failed, and a protected alias
    (``--require validated,signed``) took it (redteam24); the static check also ran on the model file the sent copy
    named, not the one the package's manifest names. Without a manifest.json the sent copy is kept, minus its
    validation claim, which nothing in the package backs."""
    from packager.package import MANIFEST

    entry = next((e for e in entries if e.path == MANIFEST and e.role == "package"), None)
    if entry is None:
        return {k: v for k, v in sent.items() if k != "validation"}
    if entry.size > MAX_MANIFEST_BYTES:
        raise UsageError(
            f"the package's {MANIFEST} is {entry.size} bytes", f"a manifest is a few KB; at most {MAX_MANIFEST_BYTES >> 20} MiB"
        )
    import json

    with tempfile.TemporaryDirectory(prefix="packager-push-manifest-") as work:
        target = Path(work) / MANIFEST
        blobs.copy_to(entry.digest, target, entry.size)
        try:
            manifest = json.loads(target.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InputFileError(
                f"the package's {MANIFEST} is not JSON ({exc})", "push a folder written by `packager convert -o DIR`"
            ) from None
    if not isinstance(manifest, dict):
        raise InputFileError(f"the package's {MANIFEST} is not a JSON object", "push a folder written by `packager convert -o DIR`")
    return manifest
