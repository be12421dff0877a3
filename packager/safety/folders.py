"""Model folders (Hugging Face, SavedModel, Spark, Core ML packages, packages): every member is a regular file or a
folder, checked with ``lstat`` before anything in the folder is read or copied.

A folder can point outside itself in four ways, and each turned host files into package content (issue 21 finding 1:
a ``git clone`` of a Hub repo with ``tokenizer_config.json -> ~/.kaggle/kaggle.json`` put the credential into the
converted package and the shell history into the registry): a symlink (any: one pointing inside today is one edit away
from pointing outside, and git, tar and unzip all restore them), a hard link (a second name of a file elsewhere on the
disk: ``st_nlink > 1``), and devices, FIFOs and sockets, which are not files at all (reading a FIFO blocks forever,
``/dev/zero`` never ends). Each is refused by an allow-list of member kinds; the hint says how to make the folder plain.
Copies packager makes of such files go through ``copy_plain`` / ``copy_tree``, which open with ``O_NOFOLLOW`` and refuse
the same kinds, so a file swapped for a link after the check is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from packager.errors import InputFileError, UnsafeModelError

MAX_MEMBERS = 1_000_000  # a SavedModel or Spark folder holds tens to thousands of files; a million is not a model
PLAIN_HINT = "copy the folder with its links resolved (`cp -rL SRC DST`) or re-save the model, then use the copy"


def check_folder_members(root: str | Path) -> None:
    """UnsafeModelError naming the first member of ``root`` that is not a plain file or folder. ``root`` itself may be
    reached through a link (the user named it); nothing below it may be."""
    root = Path(root)
    pending, seen = [root], 0
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                members = [(Path(entry.path), entry.stat(follow_symlinks=False)) for entry in entries]
        except OSError as exc:
            raise InputFileError(f"cannot list {folder.name} in {root.name}: {exc.strerror or exc}", "check its permissions") from None
        seen += len(members)
        if seen > MAX_MEMBERS:
            raise UnsafeModelError(f"{root.name} holds more than {MAX_MEMBERS:,} files", "this is not a model folder")
        for path, info in members:
            if stat.S_ISDIR(info.st_mode):
                pending.append(path)
            else:
                check_member(path, info, root)


def check_member(path: Path, info: os.stat_result, root: Path) -> None:
    """A regular file with one name, or UnsafeModelError saying what it is instead."""
    why = refusal(path, info)
    if why:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        raise UnsafeModelError(f"{root.name}/{rel} is {why}: a model folder holds plain files only", PLAIN_HINT)


def refusal(path: Path, info: os.stat_result) -> str | None:
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return f"a symlink (to {os.readlink(path)!r}), which would read a file outside what was checked"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"{kind}, not a file"
    if info.st_nlink > 1:
        return f"a hard link ({info.st_nlink} names for one file), which may be a file outside the folder"
    return None


def open_plain(path: str | Path) -> int:
    """A file descriptor for reading ``path``, refusing a symlink (``O_NOFOLLOW``), and anything but a regular file with
    one name (checked on the open descriptor, so a swap between check and open is caught)."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # O_NONBLOCK: a FIFO must not block
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            check_member(path, os.lstat(path), path.parent)
        raise UnsafeModelError(f"cannot open {path.name} as a plain file ({exc.strerror or exc})", PLAIN_HINT) from None
    info = os.fstat(fd)
    if refusal(path, info):
        os.close(fd)
        check_member(path, info, path.parent)
    return fd


def copy_plain(source: str | Path, target: str | Path) -> None:
    """Copy one file, refusing links, devices and FIFOs (``shutil.copyfile`` follows a link and reads what it names)."""
    fd = open_plain(source)
    with os.fdopen(fd, "rb") as reading, open(target, "xb") as writing:
        _copy_fd(reading.fileno(), writing.fileno())


def copy_tree(source: str | Path, target: str | Path) -> None:
    """Copy a folder (or one file) whose members are all plain, walking it by open folder descriptors: every member is
    opened relative to its already-opened parent with ``O_NOFOLLOW``, so a file or a sub-folder swapped for a link
    between the check and the copy is refused, never followed (a path-based walk follows a swapped parent folder:
    the red team's push race put ``~/.kaggle/kaggle.json`` into the registry that way)."""
    source = Path(source)
    if not source.is_dir():  # the root may be a link the user named
        copy_plain(source, target)
        return
    check_folder_members(source)
    root_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _copy_members(root_fd, source, Path(target))
    finally:
        os.close(root_fd)


_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK  # O_NONBLOCK: a FIFO swapped in must not block the open


def _copy_members(folder_fd: int, shown: Path, target: Path) -> None:
    target.mkdir()
    for name in sorted(os.listdir(folder_fd)):
        info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=folder_fd)
            except OSError as exc:  # swapped for a link since the stat: ELOOP/ENOTDIR
                raise UnsafeModelError(f"{shown.name}/{name} changed while it was copied ({exc.strerror or exc})", PLAIN_HINT) from None
            try:
                _copy_members(child, shown / name, target / name)
            finally:
                os.close(child)
            continue
        check_member(shown / name, info, shown)
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=folder_fd)
        except OSError as exc:
            raise UnsafeModelError(f"cannot open {shown.name}/{name} as a plain file ({exc.strerror or exc})", PLAIN_HINT) from None
        try:
            opened = os.fstat(fd)
            if refusal(shown / name, opened) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                raise UnsafeModelError(f"{shown.name}/{name} changed while it was copied", PLAIN_HINT)
            with open(target / name, "xb") as writing:
                _copy_fd(fd, writing.fileno())
        finally:
            os.close(fd)


def _copy_fd(source: int, target: int) -> None:
    """In-kernel copy where the kernel offers it (copy_file_range), else blocks through user space."""
    try:
        while os.copy_file_range(source, target, 1 << 30):
            pass
        return
    except OSError:
        pass  # a filesystem pair without copy_file_range: fall back from where it stopped
    while block := os.read(source, 1 << 20):
        view = memoryview(block)
        while view:
            view = view[os.write(target, view) :]
