"""Zip-based model formats (.keras, .skops, MLeap, TorchScript, torch.export): refuse member names that
escape or confuse an extractor, links, and archives that expand beyond one budget.

The budget is over the whole archive, every member counted, because a per-member test has an edge to
hide under (200 members of exactly 1 MiB each passed the old per-member ratio test: 224 KB -> 200 MiB).
Measured on real archives (uncompressed total / file size): Keras 3 ``.keras`` 0.99, skops 0.96, a
TorchScript or torch.export file 0.78 (all store members uncompressed), an MLeap bundle (deflated JSON)
about 5. Deflate reaches 1032:1 on zeros, so a real model sits two orders of magnitude below it.
"""

from __future__ import annotations

import lzma
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import IO

from packager.errors import InputFileError, UnsafeModelError

# Every archive may expand to 64 MiB whatever its ratio (a small, deflated model with zero-filled arrays
# reaches ratios of hundreds); beyond that, to MAX_RATIO x its own size, and never beyond MAX_TOTAL.
FLOOR_UNCOMPRESSED = 64 << 20
MAX_RATIO = 100
MAX_TOTAL_UNCOMPRESSED = 16 << 30  # above the largest single-archive models we package (a 7B fp16 checkpoint is ~14 GB)
MAX_MEMBERS = 100_000
MAX_NESTING = 3  # a zip inside a zip inside a zip (torch.export keeps a TorchScript archive inside its own)
REFUSE_HINT = "refusing to extract it; re-export the model, or pass --trust if you made this file yourself"
_DRIVE = re.compile(r"^[A-Za-z]:")
# What zipfile raises on a damaged archive besides BadZipFile, found by the fuzzer (tests/fuzz/crashers/): a deflate
# stream cut or mis-coded (zlib.error), an lzma member (LZMAError), an encrypted member (RuntimeError: password required),
# an unknown compression method (NotImplementedError), a lying size (EOFError).
ZIP_READ_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class ZipFacts:
    """What the check saw: the member count and the total bytes the archive expands to (nested archives included)."""

    members: int
    uncompressed: int


def expansion_budget(archive_size: int) -> int:
    """How many bytes an archive of ``archive_size`` bytes may expand to."""
    return min(MAX_TOTAL_UNCOMPRESSED, max(FLOOR_UNCOMPRESSED, MAX_RATIO * archive_size))


def check_zip(path: str | Path) -> ZipFacts:
    """Raise UnsafeModelError for a member name that escapes or is ambiguous (absolute, ``..``, drive letter,
    backslash, NUL, duplicate), a symlink member, overlapping members, too many members, or an expansion
    beyond the budget (nested archives count in the same budget); InputFileError for a damaged archive."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            return _check_open(handle, size, path.name, expansion_budget(size), depth=0)
    except OSError as exc:
        raise InputFileError(f"cannot read {path.name}: {exc.strerror or exc}", "check the path and its permissions") from None


def _check_open(handle: IO[bytes], size: int, label: str, budget: int, depth: int) -> ZipFacts:
    try:
        with zipfile.ZipFile(handle) as zf:
            infos = zf.infolist()
            facts = _check_members(infos, size, label, budget)
            nested = _check_nested(zf, infos, label, budget - facts.uncompressed, depth)
    except ZIP_READ_ERRORS as exc:
        raise InputFileError(f"{label} is a damaged zip archive ({exc})", "re-export or re-download it") from None
    return ZipFacts(facts.members + nested.members, facts.uncompressed + nested.uncompressed)


def _check_members(infos: list[zipfile.ZipInfo], size: int, label: str, budget: int) -> ZipFacts:
    if len(infos) > MAX_MEMBERS:
        raise UnsafeModelError(f"{label} has {len(infos)} members (limit {MAX_MEMBERS})", "this is not a model archive")
    seen: set[str] = set()
    total = stored = 0
    for info in infos:
        key = _member_key(info, label)
        if key in seen:
            raise UnsafeModelError(f"{label} has two members named {info.filename!r}: extractors disagree on which one wins", REFUSE_HINT)
        seen.add(key)
        if _is_link(info):
            raise UnsafeModelError(f"{label}: member {info.filename!r} is a symbolic link, which can point outside the model", REFUSE_HINT)
        total += info.file_size
        stored += info.compress_size
        if total > budget:
            raise UnsafeModelError(
                f"{label} would expand to more than {budget >> 20} MiB ({_ratio(total, size)} its size; zip bomb?)", REFUSE_HINT
            )
    if stored > size or _overlap(infos):  # members that share compressed bytes: the non-recursive (overlapping-entry) bomb
        raise UnsafeModelError(f"{label}: its members share bytes of the file (overlapping members, a zip bomb layout)", REFUSE_HINT)
    return ZipFacts(len(infos), total)


def _overlap(infos: list[zipfile.ZipInfo]) -> bool:
    """True when a member's local header and data reach past the start of the next member."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    return any(a.header_offset + 30 + a.compress_size > b.header_offset for a, b in pairwise(ordered))


def _member_key(info: zipfile.ZipInfo, label: str) -> str:
    """The member's name as an extractor will see it; refuse names that escape the folder or read differently per tool."""
    raw = info.orig_filename  # zipfile cuts ``filename`` at a NUL; the original keeps it
    bad = (
        "a NUL byte"
        if "\0" in raw
        else "a backslash"
        if "\\" in raw
        else "a drive letter"
        if _DRIVE.match(raw) or ":" in raw.split("/")[0]
        else "an absolute path"
        if raw.startswith("/")
        else "a '..' part"
        if ".." in raw.split("/")
        else "no name"
        if not raw.strip("/")
        else None
    )
    if bad:
        raise UnsafeModelError(
            f"{label} has a member that escapes its folder or reads differently per extractor ({bad}): {raw!r}", REFUSE_HINT
        )
    return "/".join(p for p in PurePosixPath(raw).parts if p != ".") + ("/" if raw.endswith("/") else "")


def _is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return bool(mode) and stat.S_ISLNK(mode)


def _check_nested(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], label: str, budget: int, depth: int) -> ZipFacts:
    """Members that are archives themselves are checked with what is left of the budget."""
    members = total = 0
    for info in infos:
        if info.is_dir() or info.file_size < 22:
            continue
        with zf.open(info) as member:
            if member.read(4) != b"PK\x03\x04":
                continue
        if depth + 1 > MAX_NESTING:
            raise UnsafeModelError(f"{label}: archives nested more than {MAX_NESTING} deep ({info.filename!r})", REFUSE_HINT)
        inner_budget = min(budget - total, expansion_budget(info.file_size))
        with zf.open(info) as member:  # seekable: read in place, never held in memory
            facts = _check_open(member, info.file_size, f"{label}:{info.filename}", inner_budget, depth + 1)
        members, total = members + facts.members, total + facts.uncompressed
    return ZipFacts(members, total)


def _ratio(total: int, size: int) -> str:
    return f"{total / max(size, 1):.0f}x"
