"""Subprocess body for the concurrency and crash tests: push one package N times.

With ``--unique``, each push adds a file with fresh content, so every push writes a new blob
(a kill can land between the blob upload and the catalog commit).

With ``--ready FILE --go FILE``, the pusher opens the registry (imports, migrations, the package copy), touches its
ready file and waits for the go file before the first push: every pusher starts pushing at the same moment instead of
one interpreter start-up (~2-5 s here) after the other. Each printed line is ``version id start end`` (the push's
CLOCK_MONOTONIC interval, the same clock in every process), so a test can prove that pushes really overlapped.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from packager.registry.backends import open_registry


def _flag(flags: list[str], name: str) -> Path | None:
    return Path(flags[flags.index(name) + 1]) if name in flags else None


if __name__ == "__main__":
    catalog, blobs, package, name, count, *flags = sys.argv[1:]
    registry = open_registry(catalog, blobs or None)  # any backend the URL names (sqlite, postgresql, mlflow)
    if "--unique" in flags:
        copy = Path(tempfile.mkdtemp()) / "package"
        shutil.copytree(package, copy)
        package = copy
    ready, go = _flag(flags, "--ready"), _flag(flags, "--go")
    if ready is not None and go is not None:
        ready.touch()
        while not go.exists():
            time.sleep(0.01)
    for _ in range(int(count)):
        if "--unique" in flags:
            (Path(package) / "run.txt").write_text(uuid.uuid4().hex * 1000)
        start = time.monotonic()
        info = registry.push(package, name)
        print(info.version, info.id, start, time.monotonic(), flush=True)
