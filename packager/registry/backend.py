"""What every registry backend does (``RegistryBackend``), and what they share: a push is the same
steps wherever the registry lives (check the values, store the blobs, capture lineage, record the
version), so it is written once here on top of the abstract operations each backend implements.

Backends are siblings: ``LocalRegistry`` (a SQL catalog + a blob store, ``api.py``) and
``RemoteRegistry`` (a `packager serve` server over HTTP, ``remote.py``). ``open_registry`` picks one
by URL scheme (``backends.py``).
"""

from __future__ import annotations

import abc
import builtins
import json
import math
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from packager.errors import InputFileError, UsageError
from packager.package import MANIFEST
from packager.registry import lineage as lineage_capture
from packager.registry.refs import ModelRef, check_alias, check_key, check_name, check_value
from packager.registry.versions import FileEntry, VersionInfo, safe_join  # noqa: F401  (safe_join re-exported)

DERIVED_FROM = "derived-from"
Files = list[tuple[Path, str, str]]  # (path on disk, path in the package, role)


def default_home() -> Path:
    from packager import settings

    return settings.home()


class RegistryBackend(abc.ABC):
    """One model registry. ``url`` names it; every operation below is one call of the public API."""

    url: str
    supports_trust = False  # signatures, trust, alias history and rules, audit: the optional operations below

    # ------------------------------------------------------------------ what a backend implements
    @abc.abstractmethod
    def store_files(self, files: Files) -> list[FileEntry]:
        """Put files into the blob store (each once: content-addressed).

        Args: ``files``: (path on disk, path in the package, role) triples.
        Returns: one ``FileEntry`` (path, digest, size, role) per file, in order."""

    @abc.abstractmethod
    def record(
        self,
        name: str,
        manifest: Mapping[str, Any],
        entries: list[FileEntry],
        lineage: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        aliases: Iterable[str] = (),
        description: str | None = None,
        parents: Iterable[str] = (),
    ) -> VersionInfo:
        """The catalog half of a push: every blob of ``entries`` is already stored; one transaction makes
        the next version of ``name`` visible, with its values, aliases and derived-from edges to ``parents``
        (references or ids). Returns the new version."""

    @abc.abstractmethod
    def get(self, ref: str | ModelRef) -> VersionInfo:
        """A version by reference (``name``, ``name@3``, ``name@production``, ``name@sha256:…``) or by id.
        Raises NotFound."""

    @abc.abstractmethod
    def list(self, name: str | None = None, limit: int | None = None) -> list[VersionInfo]:
        """The versions of ``name`` (newest first), or the latest version of every model."""

    @abc.abstractmethod
    def model_summaries(self, names: Iterable[str] | None = None) -> builtins.list[dict[str, Any]]:
        """Per model (all, or ``names``): ``{"name", "versions": count, "formats": its distinct formats, sorted}``."""

    @abc.abstractmethod
    def search(self, expression: str, limit: int = 100) -> builtins.list[VersionInfo]:
        """Versions matching a filter expression (``packager.registry.query``); UsageError if it does not parse."""

    @abc.abstractmethod
    def pull(self, ref: str | ModelRef, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the package files of ``ref`` to the folder ``out`` (digests checked, written atomically).
        Returns the folder's absolute path."""

    @abc.abstractmethod
    def set_alias(self, ref: str | ModelRef, alias: str) -> VersionInfo:
        """Point ``alias`` of the model at ``ref`` (moving it from any other version). Returns the version."""

    @abc.abstractmethod
    def remove_alias(self, name: str, alias: str) -> None:
        """Remove an alias of ``name``; NotFound when it has none by that name."""

    @abc.abstractmethod
    def tag(self, ref: str | ModelRef, tags: Mapping[str, str], remove: Iterable[str] = ()) -> VersionInfo:
        """Set ``tags`` and remove the keys in ``remove`` on a version. Returns the version."""

    @abc.abstractmethod
    def delete(self, ref: str | ModelRef) -> VersionInfo:
        """Remove a version from the catalog (its blobs stay until ``gc``). Returns what was deleted."""

    @abc.abstractmethod
    def gc(self) -> dict[str, int]:
        """Delete blobs no version references. Returns counts: blobs_removed, bytes_freed, temp_files_removed."""

    @abc.abstractmethod
    def verify(self) -> builtins.list[dict[str, Any]]:
        """Re-hash every referenced blob. Returns one row per (version, file) that is missing or corrupt."""

    @abc.abstractmethod
    def lineage(self, ref: str | ModelRef) -> dict[str, Any]:
        """The derivation tree around ``ref``, from its root ancestor down to every descendant."""

    @abc.abstractmethod
    def find_by_file_digest(self, name: str, digest: str) -> VersionInfo | None:
        """The oldest version of ``name`` holding a package file with this digest (a source already pushed)."""

    @abc.abstractmethod
    def children_of(self, version_id: str) -> builtins.list[VersionInfo]:
        """The versions derived from ``version_id``, oldest first."""

    # ------------------------------------------------------------------ optional: trust (signatures, history, audit)
    # A backend that keeps none of this inherits these defaults: each says, in one line, that it is not supported.
    def _unsupported(self, what: str) -> Any:
        raise UsageError(
            f"{what} is not supported by this registry backend ({type(self).__name__})",
            "use a packager registry (sqlite, postgresql or a packager server)",
        )

    def sign(self, ref: str | ModelRef, signature: Any) -> VersionInfo:
        """Store a model-signing ``Signature`` over the version's files with the version (replacing an earlier one)."""
        return self._unsupported("signing")

    def signature_bundle(self, ref: str | ModelRef) -> str | None:
        """The version's signature bundle (JSON text), or None when it is unsigned."""
        return None if not self.supports_trust else self._unsupported("signatures")

    def trust_add(self, name: str, public_key_pem: str) -> Any:
        """Trust a public key (PEM) under ``name``. Returns the ``TrustedKey``."""
        return self._unsupported("trusted keys")

    def trust_list(self, *, with_keys: bool = False) -> builtins.list[Any]:
        """The trusted keys (``TrustedKey``), by name; an empty list for a backend without trust."""
        return []

    def trust_remove(self, name: str) -> None:
        return self._unsupported("trusted keys")

    def alias_history(self, name: str, alias: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every set, move and removal of ``name``'s aliases: {id, model, alias, time, actor, from, to, message}, oldest first."""
        return self._unsupported("alias history")

    def rollback_alias(self, name: str, alias: str, *, message: str | None = None) -> VersionInfo:
        """Move ``alias`` back to the target it had before its latest change."""
        return self._unsupported("alias rollback")

    def alias_rules(self, name: str) -> dict[str, builtins.list[str]]:
        """Promotion rules per alias of ``name`` (alias -> ["signed", "validated"]); none for a backend without rules."""
        return {}

    def protect_alias(self, name: str, alias: str, requires: Iterable[str]) -> dict[str, builtins.list[str]]:
        return self._unsupported("alias promotion rules")

    def audit_log(self, name: str | None = None, since: str | None = None, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        return self._unsupported("the audit log")

    def verify_audit(self, anchor: str | None = None) -> dict[str, Any]:
        """Check the audit log's hash chain: {records, ok, first_bad, reason, head}; ``anchor`` (SEQ:HASH) must be in it."""
        return self._unsupported("the audit log")

    # ------------------------------------------------------------------ built on the above, for every backend
    def sign_with_key(self, ref: str | ModelRef, key_file: str | Path) -> VersionInfo:
        """Sign the stored version's files with a PEM private key (model-signing) and store the signature."""
        from packager.registry.signing import sign_folder

        if not self.supports_trust:
            self._unsupported("signing")
        from packager.registry.signing import public_pem

        public_pem(key_file, private=True)  # an unreadable key: said before the pull
        info = self.get(ref)
        with tempfile.TemporaryDirectory(prefix="packager-sign-") as work:
            folder = self.pull(info.ref, Path(work) / "package", verify="off")  # type: ignore[call-arg]  # backends with trust take it
            return self.sign(info.ref, sign_folder(folder, key_file))

    def push(
        self,
        package_dir: str | Path,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        aliases: Iterable[str] = (),
        data: Iterable[str] = (),
        dockerfile: str | Path | None = None,
        conda_env: str | Path | None = None,
        description: str | None = None,
        parents: Iterable[str] = (),
        lineage: Mapping[str, Any] | None = None,
        capture_cwd: str | Path | None = None,
        trust: bool = False,
        sign_key: str | Path | None = None,
    ) -> VersionInfo:
        """Store a package directory as the next version of ``name``, with the lineage of this machine. The package's
        model file passes the static check a load runs first (``trust`` skips it, recorded on the version).
        ``sign_key`` (a PEM private key) signs exactly the files stored (model-signing); without it, a ``model.sig``
        the folder holds (a pulled package) is kept as the version's signature, checked like any other on pull."""
        check_name(name)
        given = Path(package_dir)
        read_package_manifest(given)  # not a package: said before anything is copied
        checked_values(params, metrics, tags, aliases)  # bad values fail before any upload
        if sign_key is not None or (given / "model.sig").is_file():
            if not self.supports_trust:
                self._unsupported("signing")
            if sign_key is not None:
                from packager.registry.signing import public_pem

                public_pem(sign_key, private=True)  # an unreadable key: said before anything is uploaded
        from packager.registry.checks import CHECK_TAG, check_package, refuse_reserved
        from packager.safety.folders import copy_tree

        refuse_reserved(tags or {})
        with tempfile.TemporaryDirectory(prefix="packager-push-") as work:
            # what is checked is what is stored: a private copy, links refused and never followed (measured by the red
            # team: a file swapped for a link to ~/.kaggle/kaggle.json during the seconds the check takes was stored)
            package_dir = Path(work) / given.name
            copy_tree(given, package_dir)
            manifest = read_package_manifest(package_dir)
            files = package_files(package_dir)
            tags = {**(tags or {}), CHECK_TAG: check_package(package_dir, manifest, trust=trust)}  # refused: nothing stored
            freezing = threading.Thread(target=lineage_capture.pip_freeze, daemon=True)  # overlaps the uploads
            freezing.start()
            signature = _signature_for(package_dir, sign_key)
            entries = self.store_files([(path, rel, "package") for rel, path in files])
            freezing.join()
        record, extra = self._lineage(manifest, data, dockerfile, conda_env, lineage, capture_cwd)
        signed = {"signature": signature} if signature is not None else {}  # a backend without trust never sees the keyword
        return self.record(
            name,
            manifest,
            entries + extra,
            record,
            params=params,
            metrics=metrics,
            tags=tags,
            aliases=aliases,
            description=description,
            parents=parents,
            **signed,
        )

    def _lineage(self, manifest, data, dockerfile, conda_env, override, cwd) -> tuple[dict, builtins.list[FileEntry]]:
        from packager.registry.rows import now

        record: dict[str, Any] = {
            "captured": now().isoformat(timespec="seconds"),
            "git": lineage_capture.git_info(Path(cwd or Path.cwd())),
            "environment": lineage_capture.environment(manifest.get("versions", {})),
            "data": [lineage_capture.data_reference(uri) for uri in data],
        }
        with tempfile.TemporaryDirectory() as work:
            freeze = Path(work) / "pip-freeze.txt"
            freeze.write_text(lineage_capture.pip_freeze())
            files = {"pip_freeze": ("lineage/pip-freeze.txt", freeze)}
            for key, given, rel in (("dockerfile", dockerfile, "lineage/Dockerfile"), ("conda_env", conda_env, "lineage/environment.yml")):
                if given:
                    if not Path(given).is_file():
                        raise InputFileError(f"--{key.replace('_', '-')} {given}: no such file", "give an existing file")
                    files[key] = (rel, Path(given))
            extra = self.store_files([(path, rel, "lineage") for rel, path in files.values()])
            for key, entry in zip(files, extra, strict=True):  # one stored entry per file
                record[key] = {"path": entry.path, "sha256": entry.digest}
        record.update(dict(override or {}))
        return record, extra

    def push_conversion(
        self, package, name: str, source_path: str | Path, *, trust: bool = False, source_options: dict | None = None, **push_args
    ) -> VersionInfo:
        """Push a converted package with a derived-from edge to its source (pushed first when not yet stored).

        A quantized artifact derives from the newest unquantized version of the same format made from
        that source, when there is one, so lineage reads source -> ONNX -> int8 ONNX. ``source_options``
        (sample, input_shape, model_class) are what the source needs to be loaded and described.
        """
        from packager.conversion import package_source

        digest = package.manifest.source.sha256
        source_version = self.find_by_file_digest(name, digest) if digest else None
        if source_version is None:
            with tempfile.TemporaryDirectory() as work:
                source_package = package_source(source_path, Path(work) / "source", trust=trust, **(source_options or {}))
                source_version = self.push(source_package.path, name, description=f"source model {Path(source_path).name}", trust=trust)
        parent = source_version
        if package.manifest.quantization.applied:
            siblings = [v for v in self.children_of(source_version.id) if v.format == package.manifest.format and not v.quantization]
            parent = siblings[-1] if siblings else source_version
        return self.push(package.path, name, parents=[parent.id], trust=trust, **push_args)


# ---------------------------------------------------------------------- shared helpers


def _signature_for(package_dir: Path, sign_key: str | Path | None) -> Any:
    """The signature a push stores: made now over the private copy (what is stored is what was signed), or the
    folder's own model.sig (removed from the copy either way: it is never a package file)."""
    from packager.registry.signing import SIGNATURE_FILE, Signature, sign_folder

    existing = package_dir / SIGNATURE_FILE
    carried = existing.read_text() if existing.is_file() else None
    existing.unlink(missing_ok=True)
    if sign_key is not None:
        return sign_folder(package_dir, sign_key)
    return Signature.from_bundle(carried) if carried is not None else None


def checked_values(params, metrics, tags, aliases) -> tuple[dict, dict, dict, list]:
    return (
        {check_key(k, "param"): check_value(str(v), "param") for k, v in (params or {}).items()},
        {check_key(k, "metric"): _number(k, v) for k, v in (metrics or {}).items()},
        {check_key(k, "tag"): check_value(str(v), "tag") for k, v in (tags or {}).items()},
        [check_alias(a) for a in aliases],
    )


def _number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"metric {key}={value!r} is not a number", "metrics are numbers; use --param or --tag for text") from None
    if not math.isfinite(number):  # JSON cannot carry it, and no comparison means anything
        raise UsageError(f"metric {key}={value!r} is not a finite number", "record NaN or infinite results as a tag")
    return number


def read_package_manifest(package_dir: Path) -> dict[str, Any]:
    path = package_dir / MANIFEST
    if not path.is_file():
        raise InputFileError(f"{package_dir} is not a package (no {MANIFEST})", "push a folder written by `packager convert -o DIR`")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputFileError(f"{path} is not valid JSON ({exc})", "re-create the package with `packager convert`") from None


def package_files(package_dir: Path) -> list[tuple[str, Path]]:
    """Every file of a package folder, after ``check_folder_members``: a link, FIFO or device is refused, not stored."""
    from packager.safety.folders import check_folder_members

    check_folder_members(package_dir)
    files = []
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and path != package_dir / "model.sig":  # the signature is kept beside the version, not as a file
            files.append((path.relative_to(package_dir).as_posix(), path))
    return files
