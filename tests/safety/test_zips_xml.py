"""Zip archives (one expansion budget, names, links, nesting) and XML (DTDs refused by a parser, in any encoding)."""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from packager.errors import InputFileError, UnsafeModelError
from packager.safety.xml import check_xml, parse_xml
from packager.safety.zips import check_zip


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _raw_names(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """Members written under names zipfile would normalise (backslashes, NUL, duplicates): ZipInfo keeps them as given."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            info = zipfile.ZipInfo("placeholder")
            info.filename = info.orig_filename = name
            zf.writestr(info, data)
    return path


def test_members_of_exactly_one_mib_count_in_one_budget(tmp_path):
    """The old per-member test skipped members of exactly 1 MiB: 200 of them, 224 KB on disk, expanded to 200 MiB."""
    members = {f"assets/{i}": b"\0" * (1 << 20) for i in range(200)}
    bomb = _zip(tmp_path / "bomb.keras", {"config.json": b"{}", "metadata.json": b"{}", **members})
    assert os.path.getsize(bomb) < 300_000
    with pytest.raises(UnsafeModelError, match=r"bomb.keras would expand to more than 64 MiB"):
        check_zip(bomb)


def test_many_small_members_and_one_just_under_the_old_threshold(tmp_path):
    from packager.safety.zips import FLOOR_UNCOMPRESSED

    pieces = {f"{i}.npy": b"\0" * 65536 for i in range(2000)}  # 125 MiB in 64 KiB pieces
    small = _zip(tmp_path / "small.skops", {"schema.json": b"{}", **pieces})
    with pytest.raises(UnsafeModelError, match="zip bomb"):
        check_zip(small)
    under = _zip(tmp_path / "under.skops", {"schema.json": b"{}", "a.npy": b"\0" * ((FLOOR_UNCOMPRESSED) - 100)})
    assert check_zip(under).uncompressed == FLOOR_UNCOMPRESSED - 100 + 2  # a small archive may expand to the floor
    over = _zip(tmp_path / "over.skops", {"schema.json": b"{}", "a.npy": b"\0" * (FLOOR_UNCOMPRESSED + 1)})
    with pytest.raises(UnsafeModelError):
        check_zip(over)


def test_budget_numbers():
    from packager.safety.zips import MAX_RATIO, expansion_budget

    assert expansion_budget(10_000) == 64 << 20
    assert expansion_budget(9 << 20) == MAX_RATIO * (9 << 20)  # a 9 MB file: 900 MiB, not the old 8 GiB
    assert expansion_budget(1 << 40) == 16 << 30


def test_nested_archive_shares_the_budget(tmp_path):
    inner = _zip(tmp_path / "inner.zip", {f"{i}": b"\0" * (1 << 20) for i in range(100)})
    outer = _zip(tmp_path / "outer.skops", {"schema.json": b"{}", "weights.zip": inner.read_bytes()}, zipfile.ZIP_STORED)
    with pytest.raises(UnsafeModelError, match=r"outer.skops:weights.zip would expand"):
        check_zip(outer)


def test_symlink_member_is_refused(tmp_path):
    path = tmp_path / "link.skops"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("schema.json", b"{}")
        info = zipfile.ZipInfo("model.npy")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeModelError, match="'model.npy' is a symbolic link"):
        check_zip(path)


@pytest.mark.parametrize("name,why", [("a\\..\\..\\evil.txt", "a backslash"), ("C:/Windows/evil.dll", "a drive letter"),
                                      ("c:evil", "a drive letter"), ("ok.json\0../../evil", "a NUL byte"),
                                      ("/etc/cron.d/x", "an absolute path"), ("x/../../y", "a '..' part")])
def test_names_that_escape_or_confuse_are_refused(tmp_path, name, why):
    path = _raw_names(tmp_path / "names.skops", [("schema.json", b"{}"), (name, b"x")])
    with pytest.raises(UnsafeModelError, match=rf"escapes its folder or reads differently per extractor \({why}\)"):
        check_zip(path)


@pytest.mark.parametrize("second", ["schema.json", "./schema.json"])
def test_duplicate_member_names_are_refused(tmp_path, second):
    path = _raw_names(tmp_path / "dup.skops", [("schema.json", b"{}"), (second, b'{"evil": 1}')])
    with pytest.raises(UnsafeModelError, match="two members named"):
        check_zip(path)


def test_overlapping_members_are_refused(tmp_path):
    """Central-directory entries that all point at one compressed stream (the non-recursive zip bomb)."""
    import struct

    path = _zip(tmp_path / "one.skops", {"schema.json": b"{}"}, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack("<I", data[eocd + 16:eocd + 20])[0]
    entry = bytes(data[cd_offset:eocd])
    copies = [entry.replace(b"schema.json", f"schema{i:03d}.js".encode()[:11]) for i in range(50)]
    body = bytes(data[:cd_offset]) + b"".join(copies)
    tail = bytearray(data[eocd:])
    struct.pack_into("<HHII", tail, 8, 50, 50, len(b"".join(copies)), cd_offset)
    path.write_bytes(body + bytes(tail))
    assert len(zipfile.ZipFile(path).infolist()) == 50
    with pytest.raises(UnsafeModelError, match="overlapping members"):
        check_zip(path)


def test_member_count_limit_kept(tmp_path, monkeypatch):
    import packager.safety.zips as zips

    monkeypatch.setattr(zips, "MAX_MEMBERS", 10)
    path = _zip(tmp_path / "many.skops", {f"{i}.json": b"{}" for i in range(11)})
    with pytest.raises(UnsafeModelError, match="11 members"):
        check_zip(path)


def test_real_archives_pass(tmp_path):
    """skops from scikit-learn's bundled iris, stored and deflated; their ratio is far below the budget."""
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = tmp_path / f"forest{compression}.skops"
        sio.dump(model, path, compression=compression)
        facts = check_zip(path)
        assert facts.uncompressed < 20 * path.stat().st_size  # measured: 0.96 stored, about 3 deflated


def test_damaged_zip_is_an_input_error(tmp_path):
    path = _zip(tmp_path / "cut.skops", {"schema.json": b"{}" * 1000})
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(InputFileError, match="damaged zip"):
        check_zip(path)


# ------------------------------------------------------------------ XML

DOCTYPE = ('<?xml version="1.0" encoding="{enc}"?>\n<!DOCTYPE PMML [<!ENTITY leak SYSTEM "file:///etc/passwd">]>\n'
           '<PMML version="4.4"><Header description="&leak;"/></PMML>')


@pytest.mark.parametrize("label,data", [
    ("utf16", DOCTYPE.format(enc="UTF-16").encode("utf-16")),
    ("utf16be_no_bom", DOCTYPE.format(enc="UTF-16").encode("utf-16-be")),
    ("utf8_bom", b"\xef\xbb\xbf" + DOCTYPE.format(enc="UTF-8").encode()),
    ("long_comment", ("<?xml version='1.0'?><!--" + "x" * 70_000 + "-->" + DOCTYPE.format(enc="UTF-8").split("\n", 1)[1]).encode()),
    ("external_dtd", b'<?xml version="1.0"?><!DOCTYPE PMML SYSTEM "http://127.0.0.1:9/pmml.dtd"><PMML version="4.4"/>'),
    ("parameter_entity", b'<?xml version="1.0"?><!DOCTYPE PMML [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><PMML version="4.4"/>'),
])
def test_doctype_is_refused_in_any_encoding_and_position(tmp_path, label, data):
    path = tmp_path / f"{label}.pmml"
    path.write_bytes(data)
    with pytest.raises(UnsafeModelError, match=r"declares a DOCTYPE \(PMML\)") as caught:
        check_xml(path)
    assert "\n" not in caught.value.one_line() and caught.value.hint


def test_xinclude_is_refused_and_plain_pmml_parses(tmp_path):
    path = tmp_path / "inc.pmml"
    path.write_text('<PMML xmlns:xi="http://www.w3.org/2001/XInclude" version="4.4"><xi:include href="/etc/passwd" parse="text"/></PMML>')
    with pytest.raises(UnsafeModelError, match="XInclude"):
        check_xml(path)
    path.write_text('<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/></PMML>')
    assert parse_xml(path).get("version") == "4.4"
    assert check_xml(path) == path.read_bytes()


def test_malformed_xml_is_an_input_error(tmp_path):
    path = tmp_path / "cut.pmml"
    path.write_text('<PMML version="4.4"><Header/>')
    with pytest.raises(InputFileError, match="not well-formed XML"):
        check_xml(path)
