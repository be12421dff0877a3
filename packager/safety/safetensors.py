"""safetensors files: an 8-byte little-endian header length, a JSON header, then raw tensor bytes.

Nothing in the format runs code, so the check is about the reader, not the writer's intent: the header length is
bounded (the safetensors library allocates it whole; 100 MB, its own limit), the header is JSON of the documented
shape, and every tensor's ``data_offsets`` lie inside the data area, agree with its dtype and shape, and do not
overlap. A file that breaks any of these is an ``InputFileError`` before any library maps it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from itertools import pairwise
from math import prod
from pathlib import Path

from packager.errors import InputFileError

MAX_HEADER = 100_000_000  # safetensors' own reader refuses larger headers (MAX_HEADER_SIZE in safetensors/src/tensor.rs)
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
REEXPORT = "re-save it with safetensors.torch.save_file (or save_pretrained) from the training code"


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a checked header declares: tensor name -> (dtype, shape), the metadata, and the data area's size."""

    tensors: dict[str, tuple[str, tuple[int, ...]]]
    metadata: dict[str, str]
    data_bytes: int

    @property
    def parameters(self) -> int:
        return sum(prod(shape) for _, shape in self.tensors.values())


def looks_like_safetensors(head: bytes) -> bool:
    """Content detection: a length prefix, then a JSON object (safetensors pads the header with spaces only)."""
    return len(head) >= 10 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] < 1 << 40


def check_safetensors(path: str | Path) -> SafetensorsHeader:
    """Read and check the header of ``path``; raise InputFileError naming the first thing that is wrong."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise InputFileError(f"{path.name} is too short to be a safetensors file ({size} bytes)", REEXPORT)
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER:
            raise InputFileError(f"{path.name}: safetensors header length {length} exceeds the {MAX_HEADER}-byte limit", REEXPORT)
        if 8 + length > size:
            raise InputFileError(
                f"{path.name}: safetensors header length {length} runs past the end of the file ({size} bytes)",
                "the file is truncated or corrupt; " + REEXPORT,
            )
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path.name}: the safetensors header is not JSON ({exc})", REEXPORT) from None
    if not isinstance(header, dict):
        raise InputFileError(f"{path.name}: the safetensors header is a {type(header).__name__}, not an object", REEXPORT)
    return _check_entries(path.name, header, size - 8 - length)


def _check_entries(name: str, header: dict, data_bytes: int) -> SafetensorsHeader:
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InputFileError(f"{name}: safetensors __metadata__ must map strings to strings", REEXPORT)
    tensors, spans = {}, []
    for tensor, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise InputFileError(f"{name}: tensor {tensor!r} is not {{dtype, shape, data_offsets}}", REEXPORT)
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise InputFileError(f"{name}: tensor {tensor!r} has unknown dtype {dtype!r}", REEXPORT)
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise InputFileError(f"{name}: tensor {tensor!r} has shape {shape!r}, not a list of non-negative integers", REEXPORT)
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise InputFileError(
                f"{name}: tensor {tensor!r} has data_offsets {offsets!r} outside the {data_bytes}-byte data area",
                "the file is truncated or crafted; " + REEXPORT,
            )
        if offsets[1] - offsets[0] != prod(shape) * DTYPE_BYTES[dtype]:
            raise InputFileError(
                f"{name}: tensor {tensor!r} spans {offsets[1] - offsets[0]} bytes, but {dtype} x {shape} needs "
                f"{prod(shape) * DTYPE_BYTES[dtype]}",
                REEXPORT,
            )
        tensors[tensor] = (dtype, tuple(shape))
        spans.append((offsets[0], offsets[1], tensor))
    spans.sort()
    for (_, end, first), (start, _, second) in pairwise(spans):
        if start < end:
            raise InputFileError(f"{name}: tensors {first!r} and {second!r} overlap in the data area", REEXPORT)
    return SafetensorsHeader(tensors, dict(metadata), data_bytes)
