"""One stored file as an HTTP response: ``ETag`` = its digest (304 on a match), immutable caching, and
byte ranges (206, or 416 outside the file) whether the blob is a local file or an S3 object."""

from __future__ import annotations

import itertools
import pathlib
import re
from typing import Any, Iterator, Mapping

from fastapi import HTTPException, Response
from fastapi.responses import FileResponse, StreamingResponse

from packager.errors import NotFound

OCTETS = "application/octet-stream"


def file_response(registry: Any, info: Any, path: str, request_headers: Mapping[str, str]) -> Any:
    entry = next((f for f in info.files if f.path == path), None)
    if entry is None:
        raise NotFound(f"{info.ref} has no file {path!r}", f"its files: {[f.path for f in info.files][:10]}")
    headers = {"ETag": f'"{entry.digest}"', "Cache-Control": "public, max-age=31536000, immutable"}
    if request_headers.get("if-none-match", "").strip('"') == entry.digest:
        return Response(status_code=304, headers=headers)
    local = registry.blobs.local_path(entry.digest)
    if local is not None:  # a folder store: Starlette serves the file, ranges included
        return FileResponse(local, headers=headers, filename=pathlib.PurePosixPath(path).name, media_type=OCTETS)
    return _streamed(registry.blobs, entry.digest, entry.size, request_headers.get("range"), headers)


def _streamed(blobs: Any, digest: str, size: int, range_header: str | None, headers: dict[str, str]) -> Any:
    """A blob from a store with no local file (S3), whole or one byte range (206), as FileResponse does for folders."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    span = byte_range(range_header, size) if range_header else None
    if span is None:
        return StreamingResponse(_started(blobs.chunks(digest)), headers={**headers, "Content-Length": str(size)}, media_type=OCTETS)
    first, last = span
    headers.update({"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(last - first + 1)})
    return StreamingResponse(_started(blobs.chunks(digest, first, last)), status_code=206, headers=headers, media_type=OCTETS)


def _started(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Read the first chunk now: a store that fails fails before the status line is sent (a 503, not a cut-off 200)."""
    return itertools.chain([next(chunks, b"")], chunks)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a single ``bytes=`` range; None (send it all) for anything else; 416 when it misses the file."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or match.groups() == ("", ""):
        return None  # several ranges or another unit: the whole file is a valid answer (RFC 9110 14.2)
    start, end = match.groups()
    if start == "":
        first, last = max(size - int(end), 0), size - 1  # the last N bytes
    else:
        first, last = int(start), min(int(end), size - 1) if end else size - 1
    if first > last or first >= size:
        raise HTTPException(416, f"the range {header!r} is outside the file's {size} bytes", headers={"Content-Range": f"bytes */{size}"})
    return first, last
