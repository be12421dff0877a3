"""The registry's REST API (``/api/v1``) over one ``Registry``: everything the CLI does, plus the two
halves of a remote push (upload the blobs the server lacks, then record the version).

Reads are open unless the server was started with ``--read-token``; writes need a bearer token
from the token file. Every packager error becomes a JSON body ``{"error", "message", "hint"}``
with a matching status, so the remote client can raise the same typed error.
"""
import hashlib
import hmac
import tempfile
from pathlib import Path
from typing import Any

# this module is imported only by `packager serve` (FastAPI resolves these annotations at runtime)
from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from packager.errors import BlobCorrupt, CatalogError, InputFileError, NotFound, OutputExists, PackagerError, Unauthorized, UsageError

STATUS = {Unauthorized: 401, NotFound: 404, UsageError: 400, InputFileError: 400, BlobCorrupt: 409, OutputExists: 409, CatalogError: 503}
CHUNK = 1 << 20


def status_of(error: PackagerError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def guards(tokens: frozenset, read_token: bool) -> tuple[Any, Any]:
    """FastAPI dependencies: may this request read, may it write (bearer tokens, constant-time compare)."""
    def bearer(authorization: str | None) -> str | None:
        if authorization and authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        return None

    def allowed(token: str | None) -> bool:
        return token is not None and any(hmac.compare_digest(token, known) for known in tokens)

    def can_read(authorization: str | None = Header(default=None)) -> None:
        if read_token and not allowed(bearer(authorization)):
            raise Unauthorized("reading this registry needs a token: set PACKAGER_TOKEN (sent as 'Authorization: Bearer …')")

    def can_write(authorization: str | None = Header(default=None)) -> None:
        token = bearer(authorization)
        if not tokens:
            raise Unauthorized("this server was started without --token-file: it is read-only")
        if not allowed(token):
            raise Unauthorized("writing needs a valid token: set PACKAGER_TOKEN to one of the server's tokens" if token is None
                               else "the token is not valid for this server: check PACKAGER_TOKEN")

    return can_read, can_write


def build_router(registry: Any, tokens: frozenset, read_token: bool) -> APIRouter:
    can_read, can_write = guards(tokens, read_token)
    read = [Depends(can_read)]
    write = [Depends(can_read), Depends(can_write)]
    router = APIRouter(prefix="/api/v1")

    @router.get("/models", dependencies=read, summary="The latest version of every model")
    def list_models(limit: int | None = Query(default=None, ge=1, le=100_000)) -> list[dict]:
        return [v.to_dict(full=False) for v in registry.list(None, limit)]

    @router.get("/models/{name}/versions", dependencies=read, summary="Every version of one model, newest first")
    def list_versions(name: str, limit: int | None = Query(default=None, ge=1, le=100_000)) -> list[dict]:
        return [v.to_dict(full=False) for v in registry.list(name, limit)]

    @router.get("/search", dependencies=read, summary="Versions matching the filter language (metric.accuracy > 0.9 and tag.team = \"x\")")
    def search(q: str = Query(min_length=1, max_length=2000), limit: int = Query(default=100, ge=1, le=10_000)) -> list[dict]:
        return [v.to_dict(full=False) for v in registry.search(q, limit)]

    @router.get("/versions/{ref}", dependencies=read, summary="One version: manifest, files, params, metrics, tags, lineage")
    def show(ref: str) -> dict:
        return registry.get(ref).to_dict()

    @router.get("/versions/{ref}/lineage", dependencies=read, summary="The derivation tree around a version")
    def lineage(ref: str) -> dict:
        return registry.lineage(ref)

    @router.get("/versions/{ref}/files/{path:path}", dependencies=read, summary="Download one file (ETag = digest; Range supported)")
    def download(ref: str, path: str, request: Request) -> Any:
        info = registry.get(ref)
        entry = next((f for f in info.files if f.path == path), None)
        if entry is None:
            raise NotFound(f"{info.ref} has no file {path!r}", f"its files: {[f.path for f in info.files][:10]}")
        headers = {"ETag": f'"{entry.digest}"', "Cache-Control": "public, max-age=31536000, immutable"}
        if request.headers.get("if-none-match", "").strip('"') == entry.digest:
            return Response(status_code=304, headers=headers)
        if hasattr(registry.blobs, "local_path"):  # a folder store: served from disk, with Range requests
            return FileResponse(registry.blobs.local_path(entry.digest), headers=headers, filename=Path(path).name, media_type="application/octet-stream")
        return StreamingResponse(registry.blobs.chunks(entry.digest), headers={**headers, "Content-Length": str(entry.size)}, media_type="application/octet-stream")

    @router.post("/blobs/missing", dependencies=write, summary="Which of these digests the server lacks (upload only those)")
    def missing(digests: list[str] = Body(embed=True, max_length=100_000)) -> dict:
        return {"missing": [d for d in dict.fromkeys(digests) if not registry.blobs.exists(d)]}

    @router.put("/blobs/{digest}", dependencies=write, summary="Upload one blob (streamed); the server verifies its digest")
    async def upload(digest: str, request: Request) -> dict:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise UsageError(f"{digest!r} is not a sha256 hex digest", "upload to /api/v1/blobs/<sha256 of the content>")
        with tempfile.TemporaryDirectory(prefix="packager-upload-") as work:
            temp = Path(work) / "blob"
            hasher, size = hashlib.sha256(), 0
            with temp.open("wb") as out:
                async for chunk in request.stream():
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if hasher.hexdigest() != digest:
                raise BlobCorrupt(f"the uploaded bytes hash to {hasher.hexdigest()[:16]}…, not {digest[:16]}…", "the upload was damaged in transit: retry")
            registry.blobs.put_file(temp)
        return {"digest": digest, "size": size}

    @router.post("/versions", dependencies=write, summary="Record a version whose blobs are all uploaded")
    def record(body: dict = Body()) -> dict:
        from packager.registry.api import FileEntry

        try:
            entries = [FileEntry(f["path"], f["digest"], int(f["size"]), f.get("role", "package")) for f in body["files"]]
            name, manifest, lineage = body["name"], body["manifest"], body.get("lineage") or {}
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"a version needs name, manifest and files[path, digest, size] ({exc})", "see /api/v1/openapi.json") from None
        return registry.record(name, manifest, entries, lineage, params=body.get("params"), metrics=body.get("metrics"), tags=body.get("tags"),
                               aliases=body.get("aliases") or (), description=body.get("description"), parents=body.get("parents") or ()).to_dict()

    @router.put("/models/{name}/aliases/{alias}", dependencies=write, summary="Point an alias at a version")
    def set_alias(name: str, alias: str, ref: str = Body(embed=True)) -> dict:
        if not ref.startswith(f"{name}@") and "@" in ref:
            raise UsageError(f"{ref} is not a version of {name}", f"give {name}@<version>")
        return registry.set_alias(ref if "@" in ref else f"{name}@{ref}", alias).to_dict(full=False)

    @router.delete("/models/{name}/aliases/{alias}", dependencies=write, summary="Remove an alias")
    def remove_alias(name: str, alias: str) -> dict:
        registry.remove_alias(name, alias)
        return {"removed": f"{name}@{alias}"}

    @router.patch("/versions/{ref}/tags", dependencies=write, summary="Set and remove tags")
    def tag(ref: str, set: dict[str, str] = Body(default_factory=dict), remove: list[str] = Body(default_factory=list)) -> dict:  # noqa: A002
        return registry.tag(ref, set, remove).to_dict(full=False)

    @router.delete("/versions/{ref}", dependencies=write, summary="Delete a version (gc frees its blobs)")
    def delete(ref: str) -> dict:
        return registry.delete(ref).to_dict(full=False)

    @router.post("/gc", dependencies=write, summary="Free blobs no version references")
    def gc() -> dict:
        return registry.gc()

    @router.get("/verify", dependencies=write, summary="Re-hash every stored blob")
    def verify() -> list[dict]:
        return registry.verify()

    return router
