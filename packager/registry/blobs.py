"""Content-addressed blob stores: a local folder (default) and S3-compatible storage (boto3).

``open_blob_store(url)`` picks the store by the URL's scheme from one table (a folder path or ``file://`` is the local
store). A third party adds a store with ``register_blob_store(BlobStoreKind(...))`` or, without touching this code, an
entry point in the ``packager.blobstores`` group (name = scheme, value = ``module:attribute`` naming a
``BlobStoreKind``). A kind declares the environment variables that hold its credentials: the sandbox never passes
them to a model's process (``packager.sandbox_view``), whatever the allow-list of variables says.

Every blob is named by the sha256 of its content, so identical content is stored once. Local writes
hash while copying (one pass), go to a temp file in the destination folder, are fsynced, checked
(digest and size) and renamed into place: a reader never sees a partial blob.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Protocol

from packager import entry_points
from packager.errors import BlobCorrupt, CatalogError, InputFileError, PluginError, first_line

CHUNK = 8 << 20


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


class BlobStore(Protocol):
    url: str

    def put_file(self, path: Path) -> Blob: ...
    def exists(self, digest: str) -> bool: ...
    def size(self, digest: str) -> int | None: ...
    def copy_to(self, digest: str, target: Path, size: int) -> None: ...
    def delete(self, digest: str) -> None: ...
    def digests(self) -> Iterator[str]: ...
    def rehash(self, digest: str) -> str | None: ...
    def clean_incoming(self) -> int: ...
    def chunks(self, digest: str, first: int = 0, last: int | None = None, size: int = 1 << 20) -> Iterator[bytes]: ...
    def local_path(self, digest: str) -> Path | None: ...  # a file on this machine the server can send as is, or None


def hash_file(path: Path) -> Blob:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Blob(digest.hexdigest(), size)


def copy_hashing(source: BinaryIO, target: BinaryIO) -> Blob:
    """Copy a stream while hashing it, in one pass: each chunk is read once, then written by a
    helper thread while this thread hashes it (both release the GIL), so the cost is about
    max(hash, write) rather than their sum."""
    from concurrent.futures import ThreadPoolExecutor

    digest = hashlib.sha256()
    size = 0
    with ThreadPoolExecutor(max_workers=1) as writer:
        while chunk := source.read(CHUNK):
            written = writer.submit(target.write, chunk)
            digest.update(chunk)
            written.result()
            size += len(chunk)
    return Blob(digest.hexdigest(), size)


class LocalBlobStore:
    """``<root>/sha256/ab/cdef…``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest[2:]

    def put_file(self, path: Path) -> Blob:
        folder = self.root / "sha256" / "incoming"
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".blob-")
        try:
            with open(path, "rb") as source, os.fdopen(fd, "wb") as target:
                blob = copy_hashing(source, target)
                target.flush()
                os.fsync(target.fileno())
            final = self._path(blob.digest)
            if final.exists() and final.stat().st_size == blob.size:
                return blob  # deduplicated: the same content is already stored
            if os.path.getsize(temp) != blob.size:
                raise BlobCorrupt(f"short write storing {path.name}", "check free disk space and retry")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, final)
            _fsync_dir(final.parent)
            return blob
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def local_path(self, digest: str) -> Path | None:
        """Where the blob lives on disk (the registry server serves it directly, with Range support)."""
        return self._path(digest)

    def chunks(self, digest: str, first: int = 0, last: int | None = None, size: int = 1 << 20) -> Iterator[bytes]:
        """The blob's bytes ``first``..``last`` (inclusive; all by default), read in pieces of ``size``."""
        with self._path(digest).open("rb") as fh:
            fh.seek(first)
            left = None if last is None else last - first + 1
            while left is None or left > 0:
                chunk = fh.read(size if left is None else min(size, left))
                if not chunk:
                    return
                left = None if left is None else left - len(chunk)
                yield chunk

    def size(self, digest: str) -> int | None:
        path = self._path(digest)
        return path.stat().st_size if path.is_file() else None

    def copy_to(self, digest: str, target: Path, size: int) -> None:
        source = self._path(digest)
        if not source.is_file():
            raise BlobCorrupt(
                f"blob sha256:{digest[:12]}… is missing from the store", "run `packager verify` to see which versions are affected"
            )
        with open(source, "rb") as src, open(target, "wb") as dst:
            got = copy_hashing(src, dst)
        _check(got, digest, size)

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        for folder in (self.root / "sha256").iterdir():
            if folder.is_dir() and len(folder.name) == 2:
                for item in folder.iterdir():
                    yield folder.name + item.name

    def rehash(self, digest: str) -> str | None:
        path = self._path(digest)
        return hash_file(path).digest if path.is_file() else None

    def clean_incoming(self) -> int:
        """Temp files left by a killed writer."""
        folder = self.root / "sha256" / "incoming"
        removed = 0
        for item in folder.glob(".blob-*") if folder.is_dir() else []:
            item.unlink(missing_ok=True)
            removed += 1
        return removed


def _check(got: Blob, digest: str, size: int) -> None:
    if got.digest != digest or got.size != size:
        raise BlobCorrupt(
            f"blob sha256:{digest[:12]}… is corrupt (its content hashes to sha256:{got.digest[:12]}…, {got.size} bytes, expected {size})",
            "the stored copy was damaged; re-push the version from its source package",
        )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _s3_failures(method):
    """An unreachable endpoint, refused credentials or a missing bucket become CatalogError (HTTP 503
    from the server) naming the store; generators (streamed reads) are wrapped while they run."""
    import functools
    import inspect

    def failure(self, exc: Exception) -> CatalogError:
        return CatalogError(
            f"the blob store {self.url} failed: {type(exc).__name__}: {first_line(exc)}",
            "check PACKAGER_S3_ENDPOINT, the bucket and the credentials",
        )

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streamed(self, *args, **kwargs):
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                yield from method(self, *args, **kwargs)
            except (BotoCoreError, ClientError) as exc:
                raise failure(self, exc) from exc

        return streamed

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(self, *args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise failure(self, exc) from exc

    return call


class S3BlobStore:
    """``s3://bucket/prefix`` through boto3; ``PACKAGER_S3_ENDPOINT`` (or endpoint_url) for MinIO/moto/…"""

    def __init__(self, url: str, endpoint_url: str | None = None):
        from packager.deps import require

        boto3 = require("boto3", "s3", "S3 blob storage")
        rest = url[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/")
        self.url = url
        from packager import settings

        endpoint = endpoint_url or settings.s3_endpoint()
        self.client = boto3.client("s3", endpoint_url=endpoint)

    def _key(self, digest: str) -> str:
        return "/".join(p for p in (self.prefix, "sha256", digest[:2], digest[2:]) if p)

    @_s3_failures
    def put_file(self, path: Path) -> Blob:
        blob = hash_file(path)
        if self.size(blob.digest) == blob.size:
            return blob
        # an S3 PUT is atomic: the object becomes visible only once complete
        self.client.upload_file(str(path), self.bucket, self._key(blob.digest))
        return blob

    def exists(self, digest: str) -> bool:
        return self.size(digest) is not None

    @_s3_failures
    def size(self, digest: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(digest))["ContentLength"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def local_path(self, digest: str) -> Path | None:
        return None  # objects live in the bucket: the server streams them (chunks)

    @_s3_failures
    def chunks(self, digest: str, first: int = 0, last: int | None = None, size: int = 1 << 20) -> Iterator[bytes]:
        """The blob's bytes ``first``..``last`` (inclusive; all by default), streamed for the server's downloads."""
        extra = {"Range": f"bytes={first}-{'' if last is None else last}"} if first or last is not None else {}
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(digest), **extra)["Body"]
        while chunk := body.read(size):
            yield chunk

    @_s3_failures
    def copy_to(self, digest: str, target: Path, size: int) -> None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))["Body"]
        except ClientError:
            raise BlobCorrupt(f"blob sha256:{digest[:12]}… is missing from {self.url}", "run `packager verify`") from None
        with open(target, "wb") as dst:
            got = copy_hashing(body, dst)
        _check(got, digest, size)

    @_s3_failures
    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(digest))

    @_s3_failures
    def digests(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        start = "/".join(p for p in (self.prefix, "sha256") if p) + "/"
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                parts = item["Key"][len(start) :].split("/")
                if len(parts) == 2:
                    yield parts[0] + parts[1]

    @_s3_failures
    def rehash(self, digest: str) -> str | None:
        import hashlib as _h

        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))["Body"]
        except ClientError:
            return None
        sha = _h.sha256()
        for chunk in iter(lambda: body.read(CHUNK), b""):
            sha.update(chunk)
        return sha.hexdigest()

    def clean_incoming(self) -> int:
        return 0


BLOB_ENTRY_POINT_GROUP = "packager.blobstores"


@dataclass(frozen=True)
class BlobStoreKind:
    """A blob store served for ``scheme://`` URLs: ``factory(url)`` opens one (a callable, or "module:attribute" so
    that opening one store imports nothing of the others); ``credentials`` are the environment variables that hold
    its secrets, which the sandbox hides from model code."""

    scheme: str
    factory: str | Callable[[str], BlobStore]
    credentials: tuple[str, ...] = ()

    def open(self, url: str) -> BlobStore:
        if not isinstance(self.factory, str):
            return self.factory(url)
        ep = entry_points.reference(BLOB_ENTRY_POINT_GROUP, self.scheme, self.factory)
        factory = entry_points.load(ep, "blob store", accept=callable, must_name="a callable that opens a store (url)")
        store: BlobStore = factory(url)
        return store


# boto3 reads these (and ~/.aws, which the sandbox does not bind); PACKAGER_S3_ENDPOINT is an address, not a secret
S3 = BlobStoreKind(
    "s3",
    "packager.registry.blobs:S3BlobStore",
    credentials=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"),
)
_KINDS: dict[str, BlobStoreKind] = {"s3": S3, "file": BlobStoreKind("file", LocalBlobStore)}


def register_blob_store(kind: BlobStoreKind, *, replace: bool = False) -> None:
    """Make ``kind.scheme://`` URLs open with ``kind``. Taking a scheme that exists is refused unless ``replace``."""
    known = _KINDS.get(kind.scheme)
    if known is not None and known != kind and not replace:
        raise PluginError(f"blob store scheme {kind.scheme!r} is already served by {known.factory}", "pass replace=True to take it over")
    _KINDS[kind.scheme] = kind


def blob_store_kinds() -> dict[str, BlobStoreKind]:
    """Every blob store: the table, then the entry points not in it (loaded: their credentials must be known). A third
    party's store that fails to load is skipped with a warning (every sandboxed call asks for the credentials, so one
    broken store stopped every command) and not tried again in this process; its URLs get the reason."""
    for ep in entry_points.group(BLOB_ENTRY_POINT_GROUP):
        if ep.name not in _KINDS and ep.name not in _SKIPPED:
            loaded = _kind(ep, skip=True)
            if isinstance(loaded, entry_points.Skipped):
                _SKIPPED[ep.name] = loaded
            else:
                _KINDS[ep.name] = loaded
    return dict(_KINDS)


_SKIPPED: dict[str, entry_points.Skipped] = {}  # scheme -> the third party's store that failed to load


def _kind(ep: metadata.EntryPoint, *, skip: bool = False) -> Any:
    """The BlobStoreKind ``ep`` names (or, with ``skip``, an ``entry_points.Skipped`` for a third party's that fails)."""

    def serves_the_scheme(kind: object) -> bool:
        return isinstance(kind, BlobStoreKind) and kind.scheme == ep.name

    must_name = f"a BlobStoreKind for the scheme {ep.name!r}"
    if skip:
        return entry_points.load_or_skip(ep, "blob store", accept=serves_the_scheme, must_name=must_name)
    return entry_points.load(
        ep,
        "blob store",
        accept=serves_the_scheme,
        must_name=must_name,
        hint="declare BlobStoreKind(scheme, factory, credentials=...) in the plugin and point the entry point at it",
    )


def hidden_credentials() -> frozenset[str]:
    """The environment variables every blob store declares as its credentials."""
    return frozenset(name for kind in blob_store_kinds().values() for name in kind.credentials)


def open_blob_store(url: str) -> BlobStore:
    if "://" not in url:
        return LocalBlobStore(url)
    scheme = url.partition("://")[0].lower()
    kind = _KINDS.get(scheme) or blob_store_kinds().get(scheme)
    if kind is None:
        known = ", ".join(f"{s}://" for s in sorted(blob_store_kinds()))
        unknown = InputFileError(f"unsupported blob store URL {url!r}", f"use a folder path or one of {known}")
        raise entry_points.explain(unknown, _SKIPPED.values(), scheme)
    return kind.open(url[len("file://") :] if scheme == "file" else url)
