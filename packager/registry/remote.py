"""``Registry("http://host:port")``: the same API, through a `packager serve` server.

A push hashes files locally, asks the server which digests it lacks, uploads only those (streamed),
then records the version; lineage is captured here, on the machine that trained the model. A pull
streams each file and checks its digest. Server errors come back as the same typed errors.
"""

from __future__ import annotations

import builtins
import hashlib
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from packager import errors
from packager.errors import BlobCorrupt, CatalogError, MissingDependency, NotFound, PackagerError
from packager.package import staging_dir
from packager.registry.backend import Files, RegistryBackend, safe_join
from packager.registry.blobs import hash_file
from packager.registry.refs import ModelRef
from packager.registry.versions import FileEntry, VersionInfo

CHUNK = 1 << 20


class RemoteRegistry(RegistryBackend):
    """A registry client over HTTP. ``token`` (or PACKAGER_TOKEN) authorizes writes (and reads when the server asks).
    ``blobs`` is accepted for the common factory signature and ignored: the server keeps its own store."""

    def __init__(self, url: str | None = None, blobs: str | None = None, *, token: str | None = None, timeout: float = 300.0):
        try:
            import httpx
        except ImportError:
            raise MissingDependency("a remote registry needs httpx", "pip install 'packager[server]'") from None
        from packager import settings

        given = url or settings.registry_url()
        if not given:
            from packager.errors import UsageError

            raise UsageError("no registry server URL given", f"pass --registry https://HOST or set {settings.REGISTRY}")
        self.url = given.rstrip("/")
        token = token or settings.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=timeout)
        self.bytes_uploaded = 0
        self.blobs_uploaded = 0

    # ------------------------------------------------------------------ transport
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CatalogError(
                f"cannot reach the registry server {self.url} ({type(exc).__name__}: {exc})",
                "check the URL and that `packager serve` runs there",
            ) from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json() if response.content else None

    # ------------------------------------------------------------------ push
    def store_files(self, files: Files) -> list[FileEntry]:
        """Hash locally, ask the server which digests it lacks, upload only those."""
        entries = []
        for path, rel, role in files:
            blob = hash_file(path)
            entries.append((FileEntry(rel, blob.digest, blob.size, role), path))
        missing = set(self._call("POST", "/blobs/missing", json={"digests": [e.digest for e, _ in entries]})["missing"])
        for entry, path in entries:
            if entry.digest in missing:
                self._upload(path, entry.digest)
                missing.discard(entry.digest)
        return [entry for entry, _ in entries]

    def _upload(self, path: Path, digest: str) -> None:
        def stream():
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        self._call("PUT", f"/blobs/sha256/{digest}", content=stream(), headers={"Content-Type": "application/octet-stream"})
        self.bytes_uploaded += path.stat().st_size
        self.blobs_uploaded += 1

    def record(
        self,
        name: str,
        manifest: Mapping[str, Any],
        entries: list[FileEntry],
        lineage: Mapping[str, Any],
        *,
        params=None,
        metrics=None,
        tags=None,
        aliases: Iterable[str] = (),
        description: str | None = None,
        parents: Iterable[str] = (),
    ) -> VersionInfo:
        body = {
            "name": name,
            "manifest": dict(manifest),
            "files": {e.path: {"digest": e.digest, "size": e.size, "role": e.role} for e in entries},
            "lineage": dict(lineage),
            "params": {k: str(v) for k, v in (params or {}).items()},
            "metrics": dict(metrics or {}),
            "tags": dict(tags or {}),
            "aliases": list(aliases),
            "description": description,
            "parents": list(parents),
        }
        return VersionInfo.from_dict(self._call("POST", "/versions", json=body))

    # ------------------------------------------------------------------ read
    def get(self, ref: str | ModelRef) -> VersionInfo:
        return VersionInfo.from_dict(self._call("GET", f"/versions/{_q(ref)}"))

    def list(self, name: str | None = None, limit: int | None = None) -> list[VersionInfo]:
        from packager.registry.query import check_limit

        params = {"limit": check_limit(limit)} if limit else {}
        rows = self._call("GET", f"/models/{_q(name)}/versions" if name else "/models", params=params)
        return [VersionInfo.from_dict(r) for r in rows]

    def search(self, expression: str, limit: int = 100) -> builtins.list[VersionInfo]:
        """The expression and limit are checked here first, so a bad one gets the same error as from a local registry."""
        from packager.registry.query import check_limit, parse

        parse(expression)
        check_limit(limit)
        return [VersionInfo.from_dict(r) for r in self._call("GET", "/search", params={"q": expression, "limit": limit})]

    def lineage(self, ref: str | ModelRef) -> dict[str, Any]:
        return self._call("GET", f"/versions/{_q(ref)}/lineage")

    def model_summaries(self, names: Iterable[str] | None = None) -> builtins.list[dict[str, Any]]:
        """From the versions of each model (one request per model): the server has no summary route."""
        wanted = sorted(names) if names is not None else [v.name for v in self.list()]
        summaries = []
        for name in wanted:
            try:
                versions = self.list(name)
            except NotFound:
                continue
            if versions:
                summaries.append({"name": name, "versions": len(versions), "formats": sorted({v.format for v in versions})})
        return summaries

    def pull(self, ref: str | ModelRef, out: str | Path, *, overwrite: bool = False) -> Path:
        info = self.get(ref)
        destination = Path(out)
        with staging_dir(destination, overwrite) as staging:
            for entry in info.files:
                if entry.role == "package":
                    self._download(info, entry, safe_join(staging, entry.path))
        return destination.absolute()

    def _download(self, info: VersionInfo, entry: FileEntry, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        with self.http.stream("GET", f"/versions/{_q(info.ref)}/files/{quote(entry.path)}") as response:
            if response.status_code >= 400:
                response.read()
                raise _error_from(response)
            with open(target, "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
        if hasher.hexdigest() != entry.digest:
            raise BlobCorrupt(
                f"{info.ref}: {entry.path} arrived with digest {hasher.hexdigest()[:16]}…, expected {entry.digest[:16]}…",
                "retry the pull; run `packager verify` on the server",
            )

    def find_by_file_digest(self, name: str, digest: str) -> VersionInfo | None:
        try:
            return VersionInfo.from_dict(self._call("GET", f"/models/{_q(name)}/versions/by-file/{digest}"))
        except NotFound:
            return None

    def children_of(self, version_id: str) -> builtins.list[VersionInfo]:
        return [VersionInfo.from_dict(row) for row in self._call("GET", f"/versions/{_q(version_id)}/children")]

    # ------------------------------------------------------------------ change
    def set_alias(self, ref: str | ModelRef, alias: str) -> VersionInfo:
        name = str(ref).partition("@")[0]
        return VersionInfo.from_dict(self._call("PUT", f"/models/{_q(name)}/aliases/{_q(alias)}", json={"ref": str(ref)}))

    def remove_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", f"/models/{_q(name)}/aliases/{_q(alias)}")

    def tag(self, ref: str | ModelRef, tags: Mapping[str, str], remove: Iterable[str] = ()) -> VersionInfo:
        return VersionInfo.from_dict(self._call("PATCH", f"/versions/{_q(ref)}/tags", json={"set": dict(tags), "remove": list(remove)}))

    def delete(self, ref: str | ModelRef) -> VersionInfo:
        return VersionInfo.from_dict(self._call("DELETE", f"/versions/{_q(ref)}"))

    def gc(self) -> dict[str, int]:
        return self._call("POST", "/gc")

    def verify(self) -> builtins.list[dict[str, Any]]:
        return self._call("GET", "/verify")


def _q(ref: Any) -> str:
    return quote(str(ref), safe="@:")


def _error_from(response: Any) -> PackagerError:
    """The server's typed error, raised again here (unknown names become CatalogError)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    cls = getattr(errors, str(body.get("error", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, PackagerError)):
        cls = CatalogError
    message = body.get("message") or f"the registry server answered HTTP {response.status_code}"
    return cls(message, body.get("hint", ""))
