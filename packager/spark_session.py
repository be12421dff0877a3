"""One SparkSession per process, started on first use and shared by the Spark plugin and ``predict --engine spark``.

Start-up is the expensive part (a JVM through spark-submit: 12-13 s measured here on 2 shared cores, Nov 2026), so
nothing starts Spark at import time and every later caller gets the same session. The configuration keeps a local
session small and quiet: no UI, loopback only (the sandbox has no other interface), 2 shuffle partitions instead of
200 (a 200-row validation frame otherwise schedules 200 empty tasks), logs at ERROR (Spark's INFO/WARN lines would
break the CLI's one-line-on-stderr contract), and JPMML-SparkML's jars on the classpath when pyspark2pmml is installed
(they must be there when the JVM starts).
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from packager.deps import java_version, require

DEFAULT_MASTER = "local[2]"
_LOCK = threading.Lock()
_SESSION: dict[str, Any] = {}
STARTUP: dict[str, float] = {}  # seconds the JVM took to start in this process (for reports and tests)
_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n
"""


def pyspark() -> Any:
    return require("pyspark", "spark", "Spark ML models and --engine spark")


def session(master: str | None = None) -> Any:
    """The process's SparkSession (created with ``master``, default ``local[2]``, on the first call)."""
    with _LOCK:
        if "spark" in _SESSION:
            return _SESSION["spark"]
        java_version()
        pyspark()
        import time

        from pyspark.sql import SparkSession

        started = time.perf_counter()
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this interpreter (and import this packager)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = SparkSession.builder.master(master or DEFAULT_MASTER).appName("packager")
        for key, value in _config().items():
            builder = builder.config(key, value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        STARTUP["seconds"] = time.perf_counter() - started
        _SESSION["spark"] = spark
        return spark


def _config() -> dict[str, str]:
    log4j = Path(tempfile.mkdtemp(prefix="packager-spark-")) / "log4j2.properties"
    log4j.write_text(_LOG4J)
    config = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={log4j.as_uri()}",
        "spark.local.dir": tempfile.gettempdir(),
    }
    try:
        import pyspark2pmml

        config["spark.jars"] = pyspark2pmml.spark_jars()
    except (ImportError, ValueError):  # not installed, or a Spark version JPMML-SparkML does not support: PMML says so itself
        pass
    return config


def started() -> bool:
    return "spark" in _SESSION
