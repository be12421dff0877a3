"""Subprocess body for the concurrency and crash tests: push one package N times.

With ``--unique``, each push adds a file with fresh content, so every push writes a new blob
(a kill can land between the blob upload and the catalog commit).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from packager.registry.api import Registry

if __name__ == "__main__":
    catalog, blobs, package, name, count, *flags = sys.argv[1:]
    registry = Registry(catalog, blobs)
    if "--unique" in flags:
        copy = Path(tempfile.mkdtemp()) / "package"
        shutil.copytree(package, copy)
        package = copy
    for _ in range(int(count)):
        if "--unique" in flags:
            (Path(package) / "run.txt").write_text(uuid.uuid4().hex * 1000)
        info = registry.push(package, name)
        print(info.version, info.id, flush=True)
