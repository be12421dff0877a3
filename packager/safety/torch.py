"""torch files (torch.save zip or legacy, TorchScript, torch.export .pt2), checked before torch opens them.

Members are judged by the role the torch formats give them, never by their first byte (a tensor
storage starts with 0x80 about once in 256; the 105-tensor all-MiniLM-L6-v2 trace always had one):

- ``*.pkl`` / ``*.debug_pkl`` are pickles: every import must be on the torch allow-list;
- ``code/**/*.py`` is TorchScript source: every operator it names must be allowed
  (:mod:`packager.safety.torchscript_code`), since ``torch.jit.load`` runs ``__setstate__`` methods;
- ``models/*.json`` of a .pt2 is a graph: targets, symbolic expressions and guards are checked
  (:mod:`packager.safety.pt2_graph`); its weights/constants are pickles or nested torch archives
  only where the program's own configs say so (``use_pickle``), otherwise raw bytes;
- ``data/N`` storages, ``extra/`` files and version stamps are raw bytes torch never unpickles.

Full-module pickles (``torch.save(model)``) import the model's Python class and are refused:
loading them is exactly what ``weights_only=True`` forbids. Save a state dict or TorchScript.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path, PurePosixPath

from packager.errors import InputFileError, UnsafeModelError
from packager.safety.pickles import TRUST_HINT, scan_pickle_imports
from packager.safety.zips import ZIP_READ_ERRORS, check_zip

TORCH_ALLOWED = frozenset(
    {
        "collections.OrderedDict",
        "builtins.set",
        "__builtin__.set",
        "builtins.slice",
        "builtins.tuple",
        "builtins.list",
        "builtins.dict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_device_tensor_from_numpy",
        "torch._tensor._rebuild_from_type_v2",
        "torch.Size",
        "torch.device",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.nn.parameter.Parameter",
        "torch.Tensor",
        "torch.jit._pickle.build_intlist",
        "torch.jit._pickle.build_tensorlist",
        "torch.jit._pickle.build_doublelist",
        "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensor_from_id",
        "torch.jit._pickle.restore_type_tag",
        # quantization schemes of int8 tensors (a scripted dynamic-int8 MLP's data.pkl holds torch.per_tensor_affine)
        "torch.per_tensor_affine",
        "torch.per_channel_affine",
        "torch.per_tensor_symmetric",
        "torch.per_channel_symmetric",
        "torch.per_channel_affine_float_qparams",
    }
)
STORAGE = re.compile(r"^torch\.(cuda\.)?[A-Z][A-Za-z0-9]*Storage$")
DTYPE = re.compile(r"^torch\.(float|double|half|bfloat16|u?int(8|16|32|64)|bool|complex(32|64|128)|float(16|32|64)|qu?int(8|32)|quint4x2)$")
# C++ (torchbind) classes a TorchScript pickle may rebuild: the int8 packed weights of dynamic quantization.
TORCHBIND = re.compile(r"^__torch__\.torch\.classes\.(quantized|rnn)\.[A-Za-z0-9_]+$")
MAX_NESTING = 2
# .pt2 folders whose contents torch turns into native code (AOTInductor .so, ExecuTorch, MTIA).
PT2_NATIVE = ("data/aotinductor/", "data/executorch/", "data/mtia")


def torch_refusal(dotted: str, torchscript: bool) -> str | None:
    if dotted in TORCH_ALLOWED or STORAGE.match(dotted) or DTYPE.match(dotted):
        return None
    if torchscript and dotted.startswith("__torch__."):
        if dotted.startswith("__torch__.torch.classes.") and not TORCHBIND.match(dotted):
            return "a C++ class outside the quantized-weights namespaces (it runs native code on load)"
        return None  # resolved by TorchScript's own loader against the archive's compiled code, never imported
    if dotted.startswith(("__main__.", "torch.nn.modules.")):
        return "a full pickled module: its Python class is imported and run on load (save a state_dict or TorchScript instead)"
    return "not on the torch allow-list (tensors, storages and containers only)"


def check_torch_file(path: str | Path) -> None:
    """A zip archive (any torch format) or a legacy torch.save stream."""
    path = Path(path)
    with path.open("rb") as stream:
        head = stream.read(4)
    if head == b"PK\x03\x04":
        check_torch_archive(path)
    else:
        check_legacy_torch(path)


def check_torch_archive(path: str | Path, data: bytes | None = None, depth: int = 0, label: str | None = None) -> None:
    """Refuse an archive with a member (pickle, TorchScript code, .pt2 graph) that could run what the allow-lists do not admit."""
    path = Path(path)
    label = label or path.name
    source = io.BytesIO(data) if data is not None else path
    if data is None:
        check_zip(path)
    try:
        archive = zipfile.ZipFile(source)
    except ZIP_READ_ERRORS as exc:
        raise InputFileError(f"{label} is not a valid zip archive ({exc})", "the file is truncated or corrupt; re-export it") from None
    with archive:
        names = archive.namelist()
        torchscript = any("/code/" in n or n.startswith("code/") for n in names)
        pickled = _pt2_pickled_members(archive, names, label)
        for name in names:
            role = _relative(name)
            member = f"{label}:{name}"
            if role.startswith(PT2_NATIVE) or role.endswith((".so", ".dll", ".dylib")):
                raise UnsafeModelError(f"{member} is native code (an AOTInductor/ExecuTorch artifact) that torch would load", TRUST_HINT)
            if name.endswith((".pkl", ".debug_pkl")):
                payload = _read(archive, name, member)
                _check_member(payload, member, torchscript)
                if name.endswith(("data.pkl", "constants.pkl")):  # not traced_inputs.pkl: torch writes its records empty
                    _check_storage_sizes(archive, name, payload, member)
            elif role.startswith("code/") and name.endswith(".py"):
                from packager.safety.torchscript_code import check_torchscript_code

                check_torchscript_code(_text(_read(archive, name, member), member), name, label)
            elif role.startswith("models/") and name.endswith(".json"):
                from packager.safety.pt2_graph import check_program_json

                check_program_json(_read(archive, name, member), member)
            elif name in pickled or role.startswith("data/sample_inputs/"):
                _check_nested(path, _read(archive, name, member), depth, member, torchscript)


def _read(archive: zipfile.ZipFile, name: str, label: str) -> bytes:
    """A member's bytes; a damaged member (bad CRC, a name that differs from its local header, a broken deflate stream,
    an unknown compression: all found by the fuzzer) is an InputFileError. check_zip reads only members' first bytes."""
    try:
        return archive.read(name)
    except ZIP_READ_ERRORS as exc:
        raise InputFileError(f"{label} is a damaged zip member ({exc})", "the file is truncated or corrupt; re-export it") from None


def _relative(name: str) -> str:
    """A member's path inside the archive's root folder (torch puts everything under one top folder)."""
    parts = PurePosixPath(name).parts
    return "/".join(parts[1:]) if len(parts) > 1 else name


def _text(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{label} is not UTF-8 TorchScript source", "the file is corrupt; re-export it") from None


def _pt2_pickled_members(archive: zipfile.ZipFile, names: list[str], label: str) -> set[str]:
    """Members of a .pt2 that torch unpickles: the weights and constants its configs mark use_pickle."""
    pickled = set()
    for name in names:
        role = _relative(name)
        if not (role.startswith(("data/weights/", "data/constants/")) and role.endswith("_config.json")):
            continue
        try:
            config = json.loads(_read(archive, name, f"{label}:{name}"))
        except (ValueError, UnicodeDecodeError):
            raise InputFileError(f"{label}:{name} is not valid JSON", "the file is truncated or corrupt; re-export it") from None
        folder = name.rsplit("/", 1)[0]
        entries = config.get("config", config) if isinstance(config, dict) else {}
        for entry in entries.values() if isinstance(entries, dict) else []:
            if isinstance(entry, dict) and entry.get("use_pickle"):
                pickled.add(f"{folder}/{entry.get('path_name')}")
    return pickled


def _check_nested(path: Path, data: bytes, depth: int, member: str, torchscript: bool) -> None:
    """A member torch unpickles: a torch.save zip (checked as an archive) or a bare pickle."""
    if data[:4] == b"PK\x03\x04":
        if depth >= MAX_NESTING:
            raise UnsafeModelError(f"{member} nests archives more than {MAX_NESTING} deep", "refusing it")
        check_torch_archive(path, data, depth + 1, member)
    else:
        _check_member(data, member, torchscript)


def _check_member(payload: bytes, label: str, torchscript: bool) -> None:
    for found in scan_pickle_imports(io.BytesIO(payload), label):
        reason = torch_refusal(found.dotted, torchscript)
        if reason:
            raise UnsafeModelError(f"{label} imports {found.dotted} at byte {found.offset}: {reason}", TRUST_HINT)


# Bytes per element of the storage classes a torch zip's pickles name in their persistent ids.
ELEMENT_BYTES = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
    "UntypedStorage": 1,
}


def _check_storage_sizes(archive: zipfile.ZipFile, name: str, payload: bytes, label: str) -> None:
    """Each storage a pickle declares (``('storage', FloatStorage, key, location, numel)``) must fit in its record
    ``<folder>/<pickle name>/<key>``: TorchScript's loader trusts numel, and a record shorter than it made the model read
    past the buffer and segfault (fuzzer: tests/fuzz/crashers/torchscript-convert-crash-SIGSEGV-297, an emptied data/0).
    The pickle is replayed with stand-ins for every global (nothing is imported or called) to read the ids."""
    sizes = {info.filename: info.file_size for info in archive.infolist()}
    prefix = name[: -len(".pkl")] + "/"
    for key, storage, numel in _declared_storages(payload):
        record = prefix + key
        need = numel * ELEMENT_BYTES.get(storage, 1)
        if record in sizes and sizes[record] < need:
            raise InputFileError(
                f"{label} declares storage {key!r} of {numel:,} {storage} elements ({need:,} bytes), "
                f"but its record holds {sizes[record]:,} bytes",
                "the file is truncated or corrupt; re-export it",
            )


class _StandIn:
    """Whatever a global, a call or a BUILD makes while the storage ids are read: inert."""

    name = ""

    def __init__(self, *args: object, **kwargs: object):
        pass

    def __call__(self, *args: object, **kwargs: object) -> "_StandIn":
        return _StandIn()

    def __setstate__(self, state: object) -> None:
        pass


def _declared_storages(payload: bytes) -> list[tuple[str, str, int]]:
    """(key, storage class name, numel) of every persistent id; [] when the pickle does not replay (other checks say why)."""
    import pickle

    found: list[tuple[str, str, int]] = []

    class Reader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            return type("StandIn", (_StandIn,), {"name": str(name)})  # a class: NEWOBJ needs one

        def persistent_load(self, pid: object) -> object:
            if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[2], str) and isinstance(pid[4], int):
                found.append((pid[2], getattr(pid[1], "name", ""), max(pid[4], 0)))
            return _StandIn()

    try:
        Reader(io.BytesIO(payload)).load()
    except Exception:  # noqa: BLE001 - a pickle that does not replay is refused or reported by the import scan and by torch
        return found
    return found


def check_legacy_torch(path: str | Path) -> None:
    """``torch.save(..., _use_new_zipfile_serialization=False)``: five pickles (magic number, protocol
    version, system info, the object, its storage keys), then raw storage bytes torch reads as data.
    The first three and the last hold plain values only; the object goes through the torch allow-list."""
    path = Path(path)
    with path.open("rb") as stream:
        for index, role in enumerate(("magic number", "protocol version", "system info", "object", "storage keys")):
            start = stream.tell()
            label = f"{path.name} ({role}, byte {start})"
            imports = scan_pickle_imports(stream, label)
            if index != 3 and imports:
                raise UnsafeModelError(f"{label} imports {imports[0].dotted}: the legacy torch format holds plain values there", TRUST_HINT)
            for found in imports:
                reason = torch_refusal(found.dotted, False)
                if reason:
                    raise UnsafeModelError(f"{path.name} imports {found.dotted} at byte {found.offset}: {reason}", TRUST_HINT)
            if stream.tell() == start:
                raise InputFileError(f"{label} is missing: the file ends early", "the file is truncated; re-export it")
