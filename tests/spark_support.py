"""Spark test support: one SparkSession per test run, and the spark plugin visible to the registry.

The plugin registry reads the ``packager.converters`` entry points of the installed distribution; until the shared
environment is reinstalled from a tree that has ``spark = "converters.spark"`` in pyproject.toml, a throw-away
dist-info (on sys.path and PYTHONPATH, so CLI subprocesses and sandbox children see it too) declares it. Once the
installed metadata has it, nothing is added.
"""
from __future__ import annotations

import os
import sys
import time
from importlib import metadata
from pathlib import Path


def ensure_spark_plugin(tmp: Path) -> None:
    if any(ep.name == "spark" for ep in metadata.entry_points(group="packager.converters")):
        return
    info = tmp / "packager_spark_dev-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: packager-spark-dev\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[packager.converters]\nspark = converters.spark\n")
    sys.path.insert(0, str(tmp))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    from packager.plugins import default_registry

    default_registry.cache_clear()


def start_session() -> tuple[object, float]:
    from packager.spark_session import session

    started = time.perf_counter()
    spark = session("local[2]")
    return spark, time.perf_counter() - started
