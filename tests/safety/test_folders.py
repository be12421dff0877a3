"""Folders cannot point outside themselves (issue 21 finding 1): a Hugging Face folder as `git clone` of a Hub repo gives
it, with links to a credential, a shell history and /etc/hostname. `convert --to onnx --push` refused it with exit 0 on
826a172 and put the credential into the package and the history into the registry. Every folder format is checked
member by member with lstat before anything is read; every copy packager makes refuses links."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from packager.errors import UnsafeModelError
from packager.safety.folders import check_folder_members, copy_plain, copy_tree
from tests.conftest import run_cli

SECRET = "KAGGLE-KEY-3f9a1c7e"
HISTORY = "export AWS_SECRET=HISTORY-4b2d"


def _cloned(tiny_bert: Path, tmp_path: Path) -> Path:
    """The folder as a git clone restores it: the attacker's symlinks beside real files."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "victim", "key": SECRET}))
    (home / ".bash_history").write_text(HISTORY + "\n")
    folder = tmp_path / "clone"
    copy_tree(tiny_bert, folder)
    (folder / "tokenizer_config.json").unlink()
    (folder / "tokenizer_config.json").symlink_to(home / ".kaggle" / "kaggle.json")
    (folder / "README.md").symlink_to(home / ".bash_history")
    (folder / "NOTICE").symlink_to("/etc/hostname")
    return folder


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()) if root.exists() else b""


def test_convert_push_of_a_cloned_folder_with_links_is_refused_and_nothing_is_stored(tiny_bert, tmp_path):
    folder = _cloned(tiny_bert, tmp_path)
    registry = tmp_path / "registry"
    env = {**os.environ, "PACKAGER_HOME": str(registry)}
    out = tmp_path / "out"
    result = run_cli("convert", str(folder), "--to", "onnx", "-o", str(out), "--push", "bert", env=env, cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: UnsafeModelError: clone/"), lines
    assert "symlink" in lines[0] and "cp -rL" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    everything = _all_bytes(registry) + _all_bytes(tmp_path / "out")
    assert SECRET.encode() not in everything and HISTORY.encode() not in everything
    catalog = registry / "catalog.db"
    if catalog.exists():
        assert sqlite3.connect(catalog).execute("select count(*) from versions").fetchone() == (0,)


def test_the_hint_works_a_dereferenced_copy_converts(tiny_bert, tmp_path):
    """A Hugging Face cache snapshot links every file to a blob: refused as it is, converted after `cp -rL` (the hint)."""
    import subprocess

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for member in tiny_bert.iterdir():
        (snapshot / member.name).symlink_to(member)
    refused = run_cli("convert", str(snapshot), "--to", "onnx", "-o", str(tmp_path / "refused"), cwd=tmp_path)
    assert refused.returncode == 5 and "cp -rL" in refused.stderr and not (tmp_path / "refused").exists()
    subprocess.run(["cp", "-rL", str(snapshot), str(tmp_path / "plain")], check=True)
    result = run_cli("convert", str(tmp_path / "plain"), "--to", "onnx", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    copied = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert copied == json.loads((tiny_bert / "tokenizer_config.json").read_text())


@pytest.mark.parametrize("kind", ["inside_link", "outside_link", "hard_link", "fifo", "link_to_folder"])
def test_every_member_kind_but_plain_files_and_folders_is_refused(tmp_path, kind):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    member = folder / "sub" / "member"
    if kind == "inside_link":  # a Hub clone's link to a file of the same folder: still refused (one edit from outside)
        member.symlink_to("../config.json")
    elif kind == "outside_link":
        member.symlink_to("/etc/hostname")
    elif kind == "hard_link":
        (tmp_path / "elsewhere").write_text(SECRET)
        os.link(tmp_path / "elsewhere", member)
    elif kind == "fifo":
        os.mkfifo(member)
    else:
        member.symlink_to(tmp_path)
    with pytest.raises(UnsafeModelError, match=r"model/sub/member is a (symlink|hard link|FIFO)") as caught:
        check_folder_members(folder)
    assert "cp -rL" in caught.value.hint
    with pytest.raises(UnsafeModelError, match="member"):
        copy_tree(folder, tmp_path / "copy")


def test_a_copy_refuses_a_link_swapped_in_after_the_check(tmp_path):
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "tokenizer_config.json").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafeModelError, match="tokenizer_config.json is a symlink"):
        copy_plain(tmp_path / "tokenizer_config.json", tmp_path / "copy.json")
    assert not (tmp_path / "copy.json").exists()
