"""The CPUs this process may use, and the thread counts that fit them: a leaf module, so bench, predict and optimize
check ``--threads`` alike without importing each other (bench -> inference -> bench was an import cycle)."""

from __future__ import annotations

from packager.errors import UsageError


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container or taskset gives fewer than the machine has)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_threads(threads: int | None) -> None:
    """Refuse more runtime threads than usable CPUs: ``optimize --threads 1000`` ran over 300 s where 1 thread took 30 s
    (1000 onnxruntime threads spinning on 2 cores, issue 23 D7); no runtime is faster with more threads than CPUs."""
    cpus = usable_cpus()
    if threads is not None and threads > cpus:
        raise UsageError(
            f"--threads {threads} is more than the {cpus} CPU(s) this machine gives packager", f"use --threads {cpus} or fewer"
        )
