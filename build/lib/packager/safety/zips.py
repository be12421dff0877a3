"""Zip-based model formats (.keras, .skops, MLeap, TorchScript): refuse traversal names and zip bombs."""
from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from packager.errors import InputFileError, UnsafeModelError

MAX_TOTAL_UNCOMPRESSED = 8 << 30  # 8 GiB
MAX_RATIO = 200
MAX_MEMBERS = 100_000


def check_zip(path: str | Path) -> None:
    """Raise UnsafeModelError for absolute/.. member names, too many members, or bomb-like ratios."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputFileError(f"{path.name} is a damaged zip archive ({exc})", "re-export or re-download it") from None
    if len(infos) > MAX_MEMBERS:
        raise UnsafeModelError(f"{path.name} has {len(infos)} members (limit {MAX_MEMBERS})", "this is not a model archive")
    total = 0
    for info in infos:
        name = PurePosixPath(info.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or ":" in info.filename.split("/")[0]:
            raise UnsafeModelError(f"{path.name} has a member that escapes its folder: {info.filename!r}", "refusing to extract it; re-export the model")
        total += info.file_size
        if info.compress_size and info.file_size / max(info.compress_size, 1) > MAX_RATIO and info.file_size > 1 << 20:
            raise UnsafeModelError(f"{path.name}: member {info.filename!r} expands {info.file_size // max(info.compress_size, 1)}x (zip bomb?)", "refusing to extract it")
    if total > MAX_TOTAL_UNCOMPRESSED:
        raise UnsafeModelError(f"{path.name} would expand to {total >> 20} MiB (limit {MAX_TOTAL_UNCOMPRESSED >> 20} MiB)", "refusing to extract it")
