"""The registry's REST API (``/api/v1``) over one ``Registry``: everything the CLI does, plus the two
halves of a remote push (upload the blobs the server lacks, then record the version).

Reads are open unless the server was started with ``--read-token``; every other route needs a bearer token
from the token file holding the route's scope (``ROUTE_SCOPES``; ``packager.server.tokens``), and a route about
one model also needs the token's ``names=`` globs to cover it (403). Writes run ``acting(token label)``, so the
audit log names the token. Every packager error becomes a JSON body ``{"error", "message", "hint"}``
with a matching status, so the remote client can raise the same typed error.
"""

import hashlib
import pathlib
import tempfile
from typing import Any

# this module is imported only by `packager serve` (FastAPI resolves these annotations at runtime)
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from packager.errors import (
    BlobCorrupt,
    CatalogError,
    Forbidden,
    InputFileError,
    NotFound,
    OutputExists,
    PackagerError,
    PromotionRefused,
    RequestTooLarge,
    SignatureRefused,
    Unauthorized,
    UnsafeModelError,
    UsageError,
)
from packager.registry.audit import acting
from packager.server.downloads import file_response
from packager.server.schemas import (
    ALIAS,
    DIGEST,
    FILE_PATH,
    NAME,
    REF,
    AliasHistoryEntry,
    AliasRules,
    AliasTarget,
    AuditCheck,
    AuditEntry,
    Digests,
    ErrorBody,
    GcReport,
    LineageNode,
    Missing,
    NewVersion,
    Problem,
    Removed,
    RollbackRequest,
    RulesChange,
    SignatureBody,
    TagChange,
    TrustedKeyBody,
    TrustedKeyInfo,
    Uploaded,
    VersionDetail,
    VersionSummary,
)
from packager.server.tokens import ANONYMOUS, Token, find, prune_lineage, require_every_name, require_name, visible

STATUS = {
    RequestTooLarge: 413,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    SignatureRefused: 409,  # --require-signatures refused a push
    PromotionRefused: 409,
    UsageError: 400,
    InputFileError: 400,
    UnsafeModelError: 422,  # a push the static checks refuse: the registry holds nothing a load would refuse
    BlobCorrupt: 409,
    OutputExists: 409,
    CatalogError: 503,
}
CHUNK = 1 << 20
# Request bodies: JSON (a version's manifest, file list, params; digests to look up) is parsed in memory, and
# the largest we write is a few KB (a manifest with its validation report), so 1 MiB leaves room and bounds
# what a client can make the server parse. Blobs are streamed to disk and hashed on the way; the cap is the
# largest archive packager accepts at all (packager.safety.zips.MAX_TOTAL_UNCOMPRESSED, 16 GiB).
MAX_JSON_BODY = 1 << 20
MAX_BLOB_BODY = 16 << 30


def status_of(error: PackagerError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def guards(tokens: tuple[Token, ...], read_token: bool) -> dict[str, Any]:
    """FastAPI dependencies, one per scope: the request's token (constant-time compare against every entry), which must
    hold the scope; reads are open (an anonymous read token) unless ``read_token``. Each returns the ``Token``."""

    def bearer(authorization: str | None) -> str | None:
        if authorization and authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        return None

    def needing(scope: str) -> Any:
        def guard(authorization: str | None = Header(default=None)) -> Token:
            presented = bearer(authorization)
            token = find(tokens, presented) if presented is not None else None
            if scope == "read" and not read_token and token is None:
                return ANONYMOUS
            if not tokens and scope != "read":
                raise Unauthorized("this server was started without --token-file: it is read-only")
            if token is None:
                if presented is not None:
                    raise Unauthorized("the token is not valid for this server: check PACKAGER_TOKEN")
                if scope == "read":
                    raise Unauthorized("reading this registry needs a token: set PACKAGER_TOKEN (sent as 'Authorization: Bearer …')")
                raise Unauthorized(f"writing needs a valid token (scope {scope}): set PACKAGER_TOKEN to one of the server's tokens")
            if not token.allows(scope):
                raise Forbidden(
                    f"the token {token.label!r} lacks the {scope} scope (it has {','.join(sorted(token.scopes))})",
                    "use a token with that scope",
                )
            return token

        guard.checks_authorization = True  # type: ignore[attr-defined]  # a marker read by AuthFirstRoute, before the body is read
        return guard

    return {scope: needing(scope) for scope in ("read", "write", "alias", "admin")}


class AuthFirstRoute(APIRoute):
    """A route that checks the token and the declared body size before anything reads the body.

    FastAPI reads and parses a declared body before it solves the route's dependencies, the token check among
    them: an anonymous 12 MB JSON body cost the server 84 MB of memory before its 401. Here the route's own
    guards (the dependencies marked ``checks_authorization``) run on the headers first, then a Content-Length
    over the route's ``max_body_size`` is a 413; a body sent without a length is cut off at the limit by
    FastAPI's own limiter while it is read. FastAPI still runs the guards again as dependencies (cheap)."""

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        if self.methods and scope.get("method") not in self.methods:  # Starlette answers 405 below: no token needed for that
            await super().handle(scope, receive, send)
            return
        for dependency in self.dependencies:
            guard = dependency.dependency
            if guard is not None and getattr(guard, "checks_authorization", False):
                guard(headers.get("authorization"))
        declared, limit = headers.get("content-length", ""), getattr(self, "max_body_size", None)
        if limit is not None and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"the request body is {int(declared)} bytes, over this endpoint's limit of {_size(limit)}", SIZE_HINT)
        await super().handle(scope, receive, send)


def _manifest_schema(manifest: dict[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError

    from packager.server.schemas import Manifest

    try:
        return Manifest.model_validate(manifest).model_dump(exclude_unset=True)
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        raise InputFileError(
            f"the package's manifest.json does not match the manifest schema: {where}: {errors[0]['msg'] if errors else 'invalid'}",
            "push a folder written by `packager convert -o DIR`",
        ) from None


SIZE_HINT = "JSON bodies are small (a manifest, a file list); upload model files one blob at a time to PUT /api/v1/blobs/sha256/{digest}"


def _size(count: int) -> str:
    return f"{count >> 30} GiB" if count >= 1 << 30 else f"{count >> 20} MiB"


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (all share one body)."""
    return {
        status: {"model": ErrorBody, "description": DESCRIPTIONS[status]} for status in sorted({400, 401, 403, 413, 422, 503, *statuses})
    }


DESCRIPTIONS = {
    400: "Bad request (UsageError)",
    401: "Missing or wrong token (Unauthorized)",
    403: "The token lacks this route's scope, or the model is outside its names= (Forbidden)",
    404: "No such model, version or file (NotFound)",
    409: "Blob digest mismatch, blobs not uploaded yet (BlobCorrupt), a push refused by --require-signatures (SignatureRefused), "
    "or a protected alias refused the version (PromotionRefused)",
    413: "The request body is larger than this route accepts (RequestTooLarge)",
    422: "The request does not match this schema, or the pushed model file is refused by the static checks (UnsafeModelError)",
    503: "The catalog or blob store is unavailable (CatalogError)",
}
NAME_PATH = Path(pattern=NAME)
KEY_NAME_PATH = Path(pattern=NAME)  # its own object: a shared Path() takes the first parameter's name in the schema
ALIAS_PATH = Path(pattern=ALIAS)
REF_PATH = Path(pattern=REF, max_length=300)
LIMIT = Query(default=None, ge=1, le=100_000)


def build_router(registry: Any, tokens: tuple[Token, ...], read_token: bool) -> APIRouter:
    guard = guards(tokens, read_token)
    read = [Depends(guard["read"])]
    write = [Depends(guard["write"])]
    alias_scope = [Depends(guard["alias"])]
    admin = [Depends(guard["admin"])]
    READER = Depends(guard["read"])
    WRITER = Depends(guard["write"])
    ALIASER = Depends(guard["alias"])
    ADMIN = Depends(guard["admin"])
    router = APIRouter(prefix="/api/v1", route_class=AuthFirstRoute, max_body_size=MAX_JSON_BODY)

    def name_of(ref: str) -> str:
        """The model a reference (or a version id) belongs to, for the token's names= check."""
        return registry.get(ref).name if "@" not in ref and len(ref) == 36 and ref.count("-") == 4 else ref.partition("@")[0]

    @router.get("/models", dependencies=read, responses=_errors(), summary="The latest version of every model")
    def list_models(limit: int | None = LIMIT, token: Token = READER) -> list[VersionSummary]:
        found = visible(token, registry.list(None, None if token.names else limit))  # one row per model: filtered, then cut
        return [v.to_dict(full=False) for v in found[:limit]]

    @router.get("/models/{name}/versions", dependencies=read, responses=_errors(), summary="Every version of one model, newest first")
    def list_versions(name: str = NAME_PATH, limit: int | None = LIMIT, token: Token = READER) -> list[VersionSummary]:
        require_name(token, name)
        return [v.to_dict(full=False) for v in registry.list(name, limit)]

    @router.get(
        "/models/{name}/versions/by-file/{digest}",
        dependencies=read,
        responses=_errors(404),
        summary="The oldest version of a model that holds a package file with this digest (how a conversion finds its source)",
    )
    def by_file(name: str = NAME_PATH, digest: str = Path(pattern=DIGEST), token: Token = READER) -> VersionSummary:
        require_name(token, name)
        found = registry.find_by_file_digest(name, digest)
        if found is None:
            raise NotFound(f"no version of {name} holds a file with digest {digest[:16]}…", "push the source model first")
        return found.to_dict(full=False)

    @router.get(
        "/search",
        dependencies=read,
        responses=_errors(),
        summary="Versions matching the filter language (metric.accuracy > 0.9 and tag.team = \"x\")",
    )
    def search(
        q: str = Query(min_length=1, max_length=2000, examples=['metric.accuracy > 0.9 and tag.team = "fraud"', "format = onnx"]),
        limit: int = Query(default=100, ge=1, le=10_000),
        token: Token = READER,
    ) -> list[VersionSummary]:
        # a names-limited token: the matches are filtered, then cut, so other teams' versions cannot crowd out its own
        # (up to the search language's own cap on matches, MAX_LIMIT)
        from packager.registry.query import MAX_LIMIT

        found = visible(token, registry.search(q, MAX_LIMIT if token.names else limit))
        return [v.to_dict(full=False) for v in found[:limit]]

    @router.get(
        "/versions/{ref}", dependencies=read, responses=_errors(404), summary="One version: manifest, files, params, metrics, tags, lineage"
    )
    def show(ref: str = REF_PATH, token: Token = READER) -> VersionDetail:
        require_name(token, name_of(ref))  # before the lookup: a 404 would tell which other models exist
        return registry.get(ref).to_dict()

    @router.get("/versions/{ref}/lineage", dependencies=read, responses=_errors(404), summary="The derivation tree around a version")
    def lineage(ref: str = REF_PATH, token: Token = READER) -> LineageNode:
        require_name(token, name_of(ref))
        return LineageNode.model_validate(prune_lineage(token, registry.lineage(ref)))

    @router.get(
        "/versions/{ref}/children", dependencies=read, responses=_errors(404), summary="The versions derived directly from this one"
    )
    def children(ref: str = REF_PATH, token: Token = READER) -> list[VersionSummary]:
        require_name(token, name_of(ref))
        info = registry.get(ref)
        return [v.to_dict(full=False) for v in visible(token, registry.children_of(info.id))]

    @router.get(
        "/versions/{ref}/files/{path:path}",
        dependencies=read,
        response_class=Response,
        summary="Download one file (ETag = digest; Range supported)",
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"},
            206: {"content": {"application/octet-stream": {}}, "description": "The requested byte range"},
            304: {"description": "Not modified (If-None-Match matched the digest)"},
            416: {"description": "The requested range is not satisfiable"},
            **_errors(404),
        },
    )
    def download(request: Request, ref: str = REF_PATH, path: str = Path(pattern=FILE_PATH, max_length=512), token: Token = READER) -> Any:
        require_name(token, name_of(ref))
        info = registry.get(ref)
        return file_response(registry, info, path, request.headers)

    @router.post(
        "/blobs/missing", dependencies=write, responses=_errors(), summary="Which of these digests the server lacks (upload only those)"
    )
    def missing(body: Digests) -> Missing:  # the write scope; names are checked when the version is recorded
        return Missing(missing=[d for d in dict.fromkeys(body.digests) if not registry.blobs.exists(d)])

    @router.put(
        "/blobs/sha256/{digest}",
        dependencies=write,
        responses=_errors(409),
        max_body_size=MAX_BLOB_BODY,
        summary=f"Upload one blob (streamed, at most {MAX_BLOB_BODY >> 30} GiB); the server verifies its digest",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
        },
    )
    async def upload(request: Request, digest: str = Path(pattern=DIGEST)) -> Uploaded:
        with tempfile.TemporaryDirectory(prefix="packager-upload-") as work:
            temp = pathlib.Path(work) / "blob"
            hasher, size = hashlib.sha256(), 0
            try:
                with open(temp, "wb") as out:
                    async for chunk in request.stream():
                        hasher.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except ClientDisconnect:  # the client left (or --stall-timeout closed it): nothing stored, no traceback
                return Response(status_code=499)  # type: ignore[return-value]  # nobody reads it: the connection is gone
            if hasher.hexdigest() != digest:
                raise BlobCorrupt(
                    f"the uploaded bytes hash to {hasher.hexdigest()[:16]}…, not {digest[:16]}…", "the upload was damaged in transit: retry"
                )
            registry.blobs.put_file(temp)
        return Uploaded(digest=digest, size=size)

    @router.post("/versions", dependencies=write, responses=_errors(403, 404, 409), summary="Record a version whose blobs are all uploaded")
    def record(body: NewVersion, token: Token = WRITER) -> VersionDetail:
        from packager.registry.checks import CHECK_TAG, check_stored, stored_manifest
        from packager.registry.signing import Signature
        from packager.registry.versions import FileEntry

        require_name(token, body.name)
        for parent in body.parents or ():  # a lineage edge reads the parent: it must be one of the token's models too
            require_name(token, name_of(parent))
        if body.aliases and not token.allows("alias"):
            raise Forbidden(
                f"the token {token.label!r} lacks the alias scope that --alias needs",
                "push without --alias, or use a token with the alias scope",
            )
        signed = {"signature": Signature.from_bundle(body.signature)} if body.signature else {}

        entries = [FileEntry(path, f.digest, f.size, f.role) for path, f in body.files.items()]
        manifest = body.manifest.model_dump(exclude_unset=True)
        uploaded = all(registry.blobs.exists(e.digest) for e in entries)  # else record refuses it (BlobCorrupt, 409)
        if uploaded:  # what is stored is recorded, not what is said beside it; held to the same schema as the body
            manifest = _manifest_schema(stored_manifest(registry.blobs, entries, manifest))
        verdict = check_stored(registry.blobs, manifest, entries) if uploaded else ""  # the server's own check
        with acting(token.label):
            return registry.record(
                body.name,
                manifest,
                entries,
                body.lineage.model_dump(exclude_unset=True),
                params=body.params,
                metrics=body.metrics,
                tags={**(body.tags or {}), CHECK_TAG: verdict},
                aliases=body.aliases,
                description=body.description,
                parents=body.parents,
                **signed,
            ).to_dict()

    @router.put(
        "/models/{name}/aliases/{alias}", dependencies=alias_scope, responses=_errors(403, 404, 409), summary="Point an alias at a version"
    )
    def set_alias(body: AliasTarget, name: str = NAME_PATH, alias: str = ALIAS_PATH, token: Token = ALIASER) -> VersionSummary:
        require_name(token, name)
        ref = body.ref
        if "@" in ref and not ref.startswith(f"{name}@"):
            raise NotFound(f"{ref} is not a version of {name}", f"give {name}@<version>")
        with acting(token.label):
            return registry.set_alias(ref if "@" in ref else f"{name}@{ref}", alias, message=body.message).to_dict(full=False)

    @router.delete("/models/{name}/aliases/{alias}", dependencies=alias_scope, responses=_errors(403, 404), summary="Remove an alias")
    def remove_alias(name: str = NAME_PATH, alias: str = ALIAS_PATH, token: Token = ALIASER) -> Removed:
        require_name(token, name)
        with acting(token.label):
            registry.remove_alias(name, alias)
        return Removed(removed=f"{name}@{alias}")

    @router.post(
        "/models/{name}/aliases/{alias}/rollback",
        dependencies=alias_scope,
        responses=_errors(403, 404, 409),
        summary="Move an alias back to the target it had before its latest change",
    )
    def rollback(body: RollbackRequest, name: str = NAME_PATH, alias: str = ALIAS_PATH, token: Token = ALIASER) -> VersionSummary:
        require_name(token, name)
        with acting(token.label):
            return registry.rollback_alias(name, alias, message=body.message).to_dict(full=False)

    @router.get(
        "/models/{name}/alias-history",
        dependencies=read,
        responses=_errors(),
        summary="Every set, move and removal of the model's aliases",
    )
    def alias_history(
        name: str = NAME_PATH, alias: str | None = Query(default=None, pattern=ALIAS), token: Token = READER
    ) -> list[AliasHistoryEntry]:
        require_name(token, name)
        return registry.alias_history(name, alias)

    @router.get("/models/{name}/alias-rules", dependencies=read, responses=_errors(), summary="Promotion rules per alias")
    def alias_rules(name: str = NAME_PATH, token: Token = READER) -> AliasRules:
        require_name(token, name)
        return AliasRules(rules=registry.alias_rules(name))

    @router.put(
        "/models/{name}/aliases/{alias}/rules",
        dependencies=admin,
        responses=_errors(403),
        summary="Set an alias's promotion rules (none: unprotect)",
    )
    def protect(body: RulesChange, name: str = NAME_PATH, alias: str = ALIAS_PATH, token: Token = ADMIN) -> AliasRules:
        require_name(token, name)
        with acting(token.label):
            return AliasRules(rules=registry.protect_alias(name, alias, body.requires))

    @router.patch("/versions/{ref}/tags", dependencies=write, responses=_errors(403, 404), summary="Set and remove tags")
    def tag(body: TagChange, ref: str = REF_PATH, token: Token = WRITER) -> VersionSummary:
        require_name(token, name_of(ref))
        with acting(token.label):
            return registry.tag(ref, body.set, body.remove).to_dict(full=False)

    @router.put(
        "/versions/{ref}/signature",
        dependencies=write,
        responses=_errors(403, 404),
        summary="Store a model-signing signature over the version's files",
    )
    def sign(body: SignatureBody, ref: str = REF_PATH, token: Token = WRITER) -> VersionSummary:
        from packager.registry.signing import Signature

        require_name(token, name_of(ref))
        with acting(token.label):
            return registry.sign(ref, Signature.from_bundle(body.bundle)).to_dict(full=False)

    @router.get(
        "/versions/{ref}/signature",
        dependencies=read,
        responses=_errors(404),
        summary="The version's signature bundle (written as model.sig on pull)",
    )
    def signature(ref: str = REF_PATH, token: Token = READER) -> SignatureBody:
        require_name(token, name_of(ref))
        bundle = registry.signature_bundle(ref)
        if bundle is None:
            raise NotFound(f"{ref} is not signed", f"sign it with `packager sign {ref} --key KEY.pem`")
        return SignatureBody(bundle=bundle)

    @router.delete("/versions/{ref}", dependencies=write, responses=_errors(403, 404), summary="Delete a version (gc frees its blobs)")
    def delete(ref: str = REF_PATH, token: Token = WRITER) -> VersionSummary:
        require_name(token, name_of(ref))
        with acting(token.label):
            return registry.delete(ref).to_dict(full=False)

    @router.get("/trust", dependencies=read, responses=_errors(), summary="The trusted public keys (what `--verify` accepts)")
    def trust_list() -> list[TrustedKeyInfo]:
        return [k.to_dict(with_key=True) for k in registry.trust_list(with_keys=True)]

    @router.post("/trust", dependencies=admin, responses=_errors(403), summary="Trust a public key (PEM) under a name")
    def trust_add(body: TrustedKeyBody, token: Token = ADMIN) -> TrustedKeyInfo:
        from packager.registry.signing import public_key_text

        require_every_name(token, "the trust list")
        with acting(token.label):
            return registry.trust_add(body.name, public_key_text(body.public_key)).to_dict(with_key=True)

    @router.delete("/trust/{key_name}", dependencies=admin, responses=_errors(403, 404), summary="Stop trusting a key")
    def trust_remove(key_name: str = KEY_NAME_PATH, token: Token = ADMIN) -> Removed:
        require_every_name(token, "the trust list")
        with acting(token.label):
            registry.trust_remove(key_name)
        return Removed(removed=key_name)

    @router.get("/audit", dependencies=read, responses=_errors(), summary="The audit log, oldest first")
    def audit_log(
        name: str | None = Query(default=None, pattern=NAME),
        since: str | None = Query(default=None, max_length=40),
        limit: int | None = LIMIT,
        token: Token = READER,
    ) -> list[AuditEntry]:
        if name:
            require_name(token, name)
        if not token.names:
            return registry.audit_log(name, since, limit)
        # a names-limited token sees the records about its models (targets are model@selector, or a key or "blobs")
        return visible(token, registry.audit_log(name, since, None), lambda r: r["target"].partition("@")[0])[:limit]

    @router.get("/audit/verify", dependencies=read, responses=_errors(), summary="Check the audit log's hash chain")
    def audit_verify(anchor: str | None = Query(default=None, pattern=r"^[0-9]{1,18}:[0-9a-f]{64}$")) -> AuditCheck:
        return registry.verify_audit(anchor) if anchor else registry.verify_audit()

    @router.post("/gc", dependencies=admin, responses=_errors(403), summary="Free blobs no version references")
    def gc(token: Token = ADMIN) -> GcReport:
        require_every_name(token, "gc")
        with acting(token.label):
            return registry.gc()

    @router.get("/verify", dependencies=admin, responses=_errors(403), summary="Re-hash every stored blob")
    def verify(token: Token = ADMIN) -> list[Problem]:
        return visible(token, registry.verify(), lambda p: p["ref"].partition("@")[0])

    return router
