"""A process-count and memory cap for the whole sandbox, where the host lets us make a cgroup.

``RLIMIT_NPROC`` does not bind root: the kernel exempts the init user namespace's uid 0 (and bwrap's user
namespace maps the child back to it), measured here: 2,000 forks succeeded under ``RLIMIT_NPROC=64`` as root.
For other users it counts every task of the uid on the host, so it is set to what the user already runs plus
the cap. A pids cgroup binds everyone; a memory cgroup adds what ``RLIMIT_AS`` misses: tmpfs pages and the sum
over processes (each process has its own ``RLIMIT_AS``). Both are used when the cgroup v1 hierarchy of
the parent's own group is writable (it is in this container); a cgroup v2 delegation is not attempted.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_COUNTER = itertools.count()


@dataclass(frozen=True)
class Group:
    """The cgroup folders one sandbox runs in (empty when none could be made)."""

    folders: tuple[Path, ...] = ()

    def enter(self) -> None:
        """In the forked process before exec (bwrap and everything it starts inherit the group)."""
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        for folder in self.folders:
            for _ in range(50):  # the PID namespace's processes are reaped asynchronously after bwrap exits
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    import time

                    time.sleep(0.01)

    def peak(self) -> int | None:
        """The highest task count seen (pids.peak), for measurements."""
        for folder in self.folders:
            with contextlib.suppress(OSError, ValueError):
                return int((folder / "pids.peak").read_text())
        return None


def create(processes: int, memory_bytes: int) -> Group:
    name = f"packager-sandbox-{os.getpid()}-{next(_COUNTER)}"
    folders = []
    for controller, settings in (
        ("pids", {"pids.max": str(processes)}),
        ("memory", {"memory.limit_in_bytes": str(memory_bytes)}),
    ):
        folder = _own(controller)
        if folder is None:
            continue
        try:
            (folder / name).mkdir()
            for key, value in settings.items():
                (folder / name / key).write_text(value)
        except OSError:
            with contextlib.suppress(OSError):
                (folder / name).rmdir()
            continue
        folders.append(folder / name)
    return Group(tuple(folders))


def _own(controller: str) -> Path | None:
    """This process's group in the v1 hierarchy of ``controller``, if it is mounted and writable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            folder = ROOT / controller / path.lstrip("/")
            return folder if folder.is_dir() and os.access(folder, os.W_OK) else None
    return None


def user_tasks(uid: int) -> int:
    """Tasks (threads) the uid runs on the host now: RLIMIT_NPROC counts them all for a non-root user."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = dict(line.split(":", 1) for line in Path(entry.path, "status").read_text().splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
    return total
