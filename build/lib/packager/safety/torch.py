"""torch archives (torch.save, TorchScript, torch.export .pt2): every pickled member is scanned
against a torch allow-list before torch sees the file; nested archives are checked too.

Full-module pickles (``torch.save(model)``) import the model's Python class and are refused:
loading them is exactly what ``weights_only=True`` forbids. Save a state dict or TorchScript.
"""
from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from packager.errors import UnsafeModelError
from packager.safety.pickles import TRUST_HINT, scan_pickle_imports
from packager.safety.zips import check_zip

TORCH_ALLOWED = frozenset({
    "collections.OrderedDict", "builtins.set", "__builtin__.set", "builtins.slice", "builtins.tuple", "builtins.list", "builtins.dict",
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy", "torch._tensor._rebuild_from_type_v2", "torch.Size", "torch.device",
    "torch.storage.UntypedStorage", "torch.storage.TypedStorage", "torch.nn.parameter.Parameter", "torch.Tensor",
    "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_tensorlist", "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist", "torch.jit._pickle.build_tensor_from_id", "torch.jit._pickle.restore_type_tag",
})
STORAGE = re.compile(r"^torch\.(cuda\.)?[A-Z][A-Za-z0-9]*Storage$")
DTYPE = re.compile(r"^torch\.(float|double|half|bfloat16|u?int(8|16|32|64)|bool|complex(32|64|128)|float(16|32|64)|qu?int(8|32)|quint4x2)$")
MAX_NESTING = 2


def torch_refusal(dotted: str, torchscript: bool) -> str | None:
    if dotted in TORCH_ALLOWED or STORAGE.match(dotted) or DTYPE.match(dotted):
        return None
    if torchscript and dotted.startswith("__torch__."):
        return None  # resolved by TorchScript's own loader against the archive's compiled code, never imported
    if dotted.startswith(("__main__.", "torch.nn.modules.")):
        return "a full pickled module: its Python class is imported and run on load (save a state_dict or TorchScript instead)"
    return "not on the torch allow-list (tensors, storages and containers only)"


def check_torch_archive(path: str | Path, data: bytes | None = None, depth: int = 0, label: str | None = None) -> None:
    """Refuse an archive with a pickled member that imports anything outside the allow-list."""
    path = Path(path)
    label = label or path.name
    source = io.BytesIO(data) if data is not None else path
    if data is None:
        check_zip(path)
    with zipfile.ZipFile(source) as archive:
        names = archive.namelist()
        torchscript = any("/code/" in n for n in names)
        for name in names:
            head = archive.open(name).read(4)
            if name.endswith(".pkl") or name.endswith(".debug_pkl") or head[:1] == b"\x80":
                _check_member(archive.read(name), f"{label}:{name}", torchscript)
            elif head == b"PK\x03\x04":
                if depth >= MAX_NESTING:
                    raise UnsafeModelError(f"{label}:{name} nests archives more than {MAX_NESTING} deep", "refusing it")
                check_torch_archive(path, archive.read(name), depth + 1, f"{label}:{name}")


def _check_member(payload: bytes, label: str, torchscript: bool) -> None:
    for found in scan_pickle_imports(io.BytesIO(payload), label):
        reason = torch_refusal(found.dotted, torchscript)
        if reason:
            raise UnsafeModelError(f"{label} imports {found.dotted} at byte {found.offset}: {reason}", TRUST_HINT)
