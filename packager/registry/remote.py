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
    ``blobs`` is accepted for the common factory signature and ignored: the server keeps its own store.
    A pull applies the trust policy here, on the client, with the keys the registry trusts (``GET /trust``)."""

    supports_trust = True

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
        signature: Any = None,
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
            **({"signature": signature.bundle} if signature is not None else {}),
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

    def pull(self, ref: str | ModelRef, out: str | Path, *, overwrite: bool = False, verify: str | None = None) -> Path:
        from packager.registry.signing import SIGNATURE_FILE, check, policy_of

        policy = policy_of(verify)
        info = self.get(ref)
        destination = Path(out)
        with staging_dir(destination, overwrite) as staging:
            for entry in info.files:
                if entry.role == "package":
                    self._download(info, entry, safe_join(staging, entry.path))
            bundle = self.signature_bundle(info.ref) if info.signature else None
            if bundle is not None:
                (staging / SIGNATURE_FILE).write_text(bundle)
            check(staging, info.ref, policy, self.trust_list(with_keys=True) if policy != "off" else [])
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
    def set_alias(self, ref: str | ModelRef, alias: str, *, message: str | None = None) -> VersionInfo:
        name = str(ref).partition("@")[0]
        body = {"ref": str(ref), **({"message": message} if message is not None else {})}
        return VersionInfo.from_dict(self._call("PUT", f"/models/{_q(name)}/aliases/{_q(alias)}", json=body))

    def remove_alias(self, name: str, alias: str, *, message: str | None = None) -> None:
        self._call("DELETE", f"/models/{_q(name)}/aliases/{_q(alias)}")  # a removal's message is not sent (DELETE has no body)

    def alias_history(self, name: str, alias: str | None = None) -> builtins.list[dict[str, Any]]:
        return self._call("GET", f"/models/{_q(name)}/alias-history", params={"alias": alias} if alias else {})

    def rollback_alias(self, name: str, alias: str, *, message: str | None = None) -> VersionInfo:
        body = {"message": message} if message is not None else {}
        return VersionInfo.from_dict(self._call("POST", f"/models/{_q(name)}/aliases/{_q(alias)}/rollback", json=body))

    def alias_rules(self, name: str) -> dict[str, builtins.list[str]]:
        return self._call("GET", f"/models/{_q(name)}/alias-rules")["rules"]

    def protect_alias(self, name: str, alias: str, requires: Iterable[str]) -> dict[str, builtins.list[str]]:
        from packager.registry.history import check_requires

        return self._call("PUT", f"/models/{_q(name)}/aliases/{_q(alias)}/rules", json={"requires": check_requires(requires)})["rules"]

    def sign(self, ref: str | ModelRef, signature: Any) -> VersionInfo:
        return VersionInfo.from_dict(self._call("PUT", f"/versions/{_q(ref)}/signature", json={"bundle": signature.bundle}))

    def signature_bundle(self, ref: str | ModelRef) -> str | None:
        try:
            return self._call("GET", f"/versions/{_q(ref)}/signature")["bundle"]
        except NotFound:
            return None

    def trust_add(self, name: str, public_key_pem: str) -> Any:
        from packager.registry.signing import TrustedKey

        return TrustedKey(**self._call("POST", "/trust", json={"name": name, "public_key": public_key_pem}))

    def trust_list(self, *, with_keys: bool = False) -> builtins.list[Any]:
        from packager.registry.signing import TrustedKey

        keys = [TrustedKey(**row) for row in self._call("GET", "/trust")]
        return keys if with_keys else [TrustedKey(k.name, k.fingerprint, "", k.added, k.added_by) for k in keys]

    def trust_remove(self, name: str) -> None:
        self._call("DELETE", f"/trust/{_q(name)}")

    def audit_log(self, name: str | None = None, since: str | None = None, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        params = {k: v for k, v in (("name", name), ("since", since), ("limit", limit)) if v}
        return self._call("GET", "/audit", params=params)

    def verify_audit(self, anchor: str | None = None) -> dict[str, Any]:
        return self._call("GET", "/audit/verify", params={"anchor": anchor} if anchor else {})

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
