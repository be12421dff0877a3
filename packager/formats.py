"""File-format detection: content first (magic bytes, zip members, protobuf structure), extension second.

Knows bytes, not frameworks: the answer is a format name that plugins register loaders and runtimes for. The
format's facts (title, suffix, folder or file, content test, safety check) are the plugin's
``packager.contract.Format``, asked through the registry. What stays here is cross-format: the sniffers of the
containers several formats share (a zip, HDF5, a pickle stream, XML, protobuf), named by ``Format.containers``; the
helpers plugins' content tests use to look inside them (``zip_names``, ``looks_like_xml``, ``protobuf_matches``); the
order containers are tried in; and the polyglot rule (a file that reads as two formats is refused). A format's content
test (``Format.detect``) is asked on every file of its container, and a test of a format with no container on every
file. A file that matches nothing, or is truncated, is an ``InputFileError`` with a hint.
"""

from __future__ import annotations

import functools
import re
import zipfile
from pathlib import Path
from typing import Any

from packager.errors import InputFileError, PluginError, UnsafeModelError, first_line

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
COMPRESSION_MAGICS = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x5d\x00\x00": "lzma",
    b"\x04\x22\x4d\x18": "lz4",
    b"\x78\x01": "zlib",
    b"\x78\x5e": "zlib",
    b"\x78\x9c": "zlib",
    b"\x78\xda": "zlib",
}


def detect_format(path: str | Path, registry: Any = None) -> str:
    """Return the format name of ``path``; raise InputFileError when it is none we know."""
    from packager.plugins import default_registry

    registry = registry or default_registry()
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path} does not exist", "check the path")
    if path.is_dir():
        from packager.safety.folders import check_folder_members

        check_folder_members(path)  # before any detector reads a member: a link may lead anywhere (issue 21 finding 1)
        return _ask_plugins(path, b"", _detect_directory(path), registry, "") or _no_directory_format(path, registry)
    head = _read_head(path)
    container, named = _sniff_container(path, head)
    found = _ask_plugins(path, head, named, registry, container)
    _refuse_polyglot(path, head, found, registry)
    if found:
        return found
    by_ext = _by_extension(registry, path)
    hint = f"its extension says {by_ext}, but the content does not match" if by_ext else "the content matches no known model format"
    unknown = InputFileError(
        f"{path.name} is not a model file packager can read ({_describe(head)})",
        f"{hint}; the file may be truncated or corrupt — re-export it from the training code",
    )
    raise registry.missing(unknown, path.suffix.lstrip("."))  # a third-party plugin that failed to load may read it


def _ask_plugins(path: Path, head: bytes, found: str | None, registry: Any, container: str) -> str | None:
    """The content tests plugins declared (``Format.detect``): those of the file's container, and those of formats
    with no container on every file. A file that the container sniffer and a plugin, or two plugins, both claim reads
    as two formats at once and is refused like any polyglot; a plugin format of the same container refines what the
    sniffer named (torch's legacy archive starts as a pickle stream)."""
    claims = [
        f.name
        for f in registry.detectors()
        if f.directory == path.is_dir()
        and (not f.containers or container in f.containers)
        and f.name != found
        and _claims(f, path, head, registry)
    ]
    if len(claims) == 1 and found and container in registry.format(claims[0]).containers:
        return claims[0]
    if claims and found or len(claims) > 1:
        names = " and ".join(sorted({*claims, *([found] if found else [])}))
        raise UnsafeModelError(
            f"{path.name} reads as {names} at once (a polyglot file): what is checked may not be what loads",
            "refusing it; re-export the model from the training code into one format",
        )
    return found or (claims[0] if claims else None)


def _claims(declared: Any, path: Path, head: bytes, registry: Any) -> bool:
    """A plugin's content test; its crash is the plugin's defect, named as such (not "the file is corrupt")."""
    try:
        return bool(declared.detect(path, head))
    except Exception as exc:
        owner = registry.formats[declared.name].owner
        raise PluginError(
            f"the {declared.name} format's content test ({owner}) failed on {path.name}: {type(exc).__name__}: {first_line(exc)}",
            f"a defect in the plugin {owner.split('.')[0]}: update or uninstall it, and report it to its authors",
        ) from exc


def _by_extension(registry: Any, path: Path) -> str | None:
    """The format a file's extension suggests (a hint: detection reads content)."""
    suffix = path.suffix.lower()
    return next((p.format.name for p in registry.formats.values() if suffix and suffix in p.format.extensions), None)


def _read_head(path: Path, size: int = 4096) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(size)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}", "check the file permissions") from exc


def _describe(head: bytes) -> str:
    return "empty file" if not head else f"starts with bytes {head[:8].hex(' ')}"


PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pth", ".pt")


def _refuse_polyglot(path: Path, head: bytes, found: str | None, registry: Any) -> None:
    """A file that reads as two formats is refused: which one a loader sees depends on where it starts reading
    (a pickle or HDF5 superblock from the start, HDF5 also at 512, 1024, 2048... after a user block, a zip from
    its end), so the format checked could differ from the format loaded."""
    formats = {found} if found else set()
    declared = registry.format(found) if found else None
    zip_based = declared is not None and "zip" in declared.containers
    if (
        zip_based
        and declared is not None
        and not declared.pickle_members
        and any(n.lower().endswith(PICKLE_SUFFIXES) for n in zip_names(path))
    ):
        # none of these formats stores a pickle: a member that is one is there for another reader
        raise UnsafeModelError(
            f"{path.name} reads as {found} and pickle at once (a polyglot file): what is checked may not be what loads",
            "refusing it; re-export the model from the training code into one format",
        )
    if not zip_based and not head.startswith(ZIP_MAGIC) and _has_zip_directory(path):
        formats.add("zip")
    hdf5_at = _hdf5_superblocks(path)
    if zip_based and hdf5_at:
        hdf5_at -= _member_data_offsets(path)  # an HDF5 file stored as a member (a .keras file's weights) is not a second reading
    elif found == "hdf5":
        hdf5_at.discard(0)
    if hdf5_at:
        formats.add("hdf5")
    if len(formats) > 1 or (not found and formats):
        names = " and ".join(sorted(formats)) if found else f"no known model format from its start, but {formats.pop()} from elsewhere"
        raise UnsafeModelError(
            f"{path.name} reads as {names} at once (a polyglot file): what is checked may not be what loads",
            "refusing it; re-export the model from the training code into one format",
        )


def _has_zip_directory(path: Path) -> bool:
    """A zip central directory a reader can open (Python's zipfile, hence Keras, finds one after any prefix)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _hdf5_superblocks(path: Path) -> set[int]:
    """Offsets where the HDF5 library would find a superblock: 0, then 512 doubling to the end of the file."""
    found, offset = set(), 0
    size = path.stat().st_size
    with path.open("rb") as fh:
        while offset + len(HDF5_MAGIC) <= size:
            fh.seek(offset)
            if fh.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                found.add(offset)
            offset = 512 if offset == 0 else offset * 2
    return found


def _member_data_offsets(path: Path) -> set[int]:
    """Where each zip member's data starts (after its local header)."""
    offsets = set()
    try:
        with zipfile.ZipFile(path) as zf, path.open("rb") as fh:
            for info in zf.infolist():
                fh.seek(info.header_offset)
                header = fh.read(30)
                if len(header) == 30 and header[:4] == ZIP_MAGIC:
                    offsets.add(info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little"))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        pass
    return offsets


def _detect_directory(path: Path) -> str | None:
    """An unzipped MLeap bundle: the mleap Format is a file (its runtime zips a folder it is given), so its folder
    form is named here rather than by a content test of a folder format."""
    if (path / "bundle.json").is_file():
        return "mleap"
    return None


def _no_directory_format(path: Path, registry: Any) -> str:
    folders = sorted(p.format.title or p.format.name for p in registry.formats.values() if p.format.directory)
    unknown = InputFileError(
        f"{path} is a directory that holds no model packager recognises",
        f"give a model file or one of these folders: {'; '.join(folders) or 'none are installed'}",
    )
    raise registry.missing(unknown)


def _sniff_container(path: Path, head: bytes) -> tuple[str, str | None]:
    """(the container the file is, the format named by the container itself or None): HDF5 is the Keras h5 format
    and a pickle stream is a pickle or a joblib file; a zip, XML or protobuf is what a plugin's content test says."""
    if not head:
        return "", None
    if head.startswith(HDF5_MAGIC):
        return "hdf5", "hdf5"
    if head.startswith(ZIP_MAGIC):
        zip_names(path)  # a damaged zip is an error of its own, before any plugin reads members
        return "zip", None
    if _xml_encoding(head) is not None:
        return "xml", None
    if _looks_like_pickle(path, head) or _looks_like_old_pickle(path, head):
        return "pickle", "joblib" if b"joblib.numpy_pickle" in head or path.suffix.lower() == ".joblib" else "pickle"
    if any(head.startswith(m) for m in COMPRESSION_MAGICS) and path.suffix.lower() in (".joblib", ".pkl", ".gz", ".z"):
        return "pickle", "joblib"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle", None  # a pickle header whose stream does not end in STOP: a plugin may know the layout
    return "protobuf", None


_XML_ENCODINGS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)
XML_PROLOG_LIMIT = 1 << 20  # comments, processing instructions or a DOCTYPE before the root element


def _xml_encoding(head: bytes) -> str | None:
    stripped = head.lstrip()
    return next((enc for bom, enc in _XML_ENCODINGS if stripped.startswith(bom)), "utf-8" if stripped.startswith(b"<") else None)


def looks_like_xml(path: Path, head: bytes, root: str) -> bool:
    """XML in any encoding an XML parser detects (a BOM, or UTF-16 without one) whose root element is ``root``,
    however long the prolog before it (a long comment must not move a document out of sight of the check)."""
    encoding = _xml_encoding(head)
    if encoding is None:
        return False
    with path.open("rb") as fh:
        text = fh.read(XML_PROLOG_LIMIT).decode(encoding, errors="replace")
    return re.search(rf"<(?:[A-Za-z_][\w.-]*:)?{root}[\s/>]", text) is not None


def _looks_like_pickle(path: Path, head: bytes) -> bool:
    """Protocol 2+ starts with PROTO; the whole file must end with STOP ('.')."""
    if len(head) < 2 or head[0] != 0x80 or head[1] not in (2, 3, 4, 5):
        return False
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        if size < 3:
            return False
        if path.suffix.lower() == ".joblib" or b"joblib.numpy_pickle" in head:
            return True  # joblib appends raw array bytes after pickle opcodes; STOP is not last
        fh.seek(-1, 2)
        return fh.read(1) == b"."


def _looks_like_old_pickle(path: Path, head: bytes) -> bool:
    """Protocol 0/1 pickles have no PROTO header: accept them when the opcodes parse to STOP."""
    import pickletools

    if head[:1] not in b"(cSIVNFLdl]}iKJMGTUX" or path.stat().st_size > 64 << 20:
        return False
    try:
        for opcode, _, _ in pickletools.genops(path.read_bytes()):
            if opcode.name == "STOP":
                return True
    except Exception:
        return False
    return False


def zip_names(path: Path) -> list[str]:
    """The member names of a zip (read once per file version); a damaged zip is an ``InputFileError``."""
    stat = path.stat()
    return list(_zip_names(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _zip_names(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    try:
        with zipfile.ZipFile(path) as zf:
            return tuple(zf.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, NotImplementedError):  # bad UTF-8 name; unknown zip version
        raise InputFileError(
            f"{Path(path).name} is a damaged zip archive",
            "the file is probably truncated; re-export or re-download it",
        ) from None


PROTOBUF_READ_LIMIT = 64 * 1024 * 1024


def protobuf_matches(
    path: Path, head: bytes, fields: dict[int, int], required: tuple[int, ...], extra: range | None = None, unwalked_key: int | None = None
) -> bool:
    """Whether the file walks as a protobuf message whose top-level fields are among ``fields`` (number -> wire
    type; numbers in ``extra`` allowed with any wire type), with every ``required`` field present. A file over
    64 MiB is not walked: it matches when its first byte is ``unwalked_key`` (never when that is None)."""
    if path.stat().st_size > PROTOBUF_READ_LIMIT:
        return unwalked_key is not None and head[:1] == bytes([unwalked_key])
    try:
        seen = list(_walk(path.read_bytes()))
    except ValueError:
        return False
    numbers = {n for n, _ in seen}
    if not numbers or not set(required) <= numbers:
        return False
    return all(fields.get(n) == w if n in fields else extra is not None and n in extra for n, w in seen)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _walk(data: bytes):
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field 0")
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError("bad wire type")
        if pos > len(data):
            raise ValueError("truncated")
        yield number, wire
