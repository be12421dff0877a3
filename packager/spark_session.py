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
from packager.errors import MissingDependency

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
            try:
                spark = builder.getOrCreate()
            except Exception as exc:  # a JVM that cannot start is this machine's problem, never "the file is corrupt"
                raise _not_started(exc) from exc
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
        "spark.driver.extraJavaOptions": " ".join([f"-Dlog4j2.configurationFile={log4j.as_uri()}", *_sandbox_java_options()]),
        "spark.local.dir": tempfile.gettempdir(),
    }
    try:
        import pyspark2pmml

        config["spark.jars"] = pyspark2pmml.spark_jars()
    except (ImportError, ValueError):  # not installed, or a Spark version JPMML-SparkML does not support: PMML says so itself
        pass
    return config


def _not_started(exc: Exception) -> MissingDependency:
    """Py4J's first line is "An error occurred while calling None...JavaSparkContext."; the JVM's reason (and its
    root cause, e.g. a NullPointerException under ExceptionInInitializerError) are the exception lines after it."""
    from packager.sandbox import running_confined as inside

    lines = [line.strip(" :\t") for line in str(exc).splitlines()]  # stack frames start with "at ", reasons do not
    reasons = [line for line in lines if line.startswith(("java.", "Caused by:", "org.apache", "py4j."))]
    reasons = reasons or [" ".join(str(exc).split())[:200] or type(exc).__name__]  # PySpark's own, e.g. JAVA_GATEWAY_EXITED
    where = "inside the sandbox" if inside() else "in this process"
    hint = "check that `java -version` runs (Java 17+; apt-get install default-jre-headless) and rerun with --debug for the JVM's log"
    if inside():
        hint += "; for a Spark folder you trust, --trust starts Spark outside the sandbox"
    return MissingDependency(f"Spark's JVM did not start {where}: {' <- '.join(reasons[:2])[:300]}", hint)


def _sandbox_java_options() -> list[str]:
    """JVM options the sandbox needs. Its own cgroup namespace (bwrap --unshare-all) shows the host's memory cgroup
    mounted at root "/../..", outside the namespace's root "/"; OpenJDK 17.0.15's container support then leaves that
    controller's path null, and the first caller of its metrics (Spark's ExecutorMetricType, at SparkContext start)
    dies with ExceptionInInitializerError <- NullPointerException in CgroupUtil.readStringValue (measured here: even
    `java -XshowSettings:system -version` fails that way inside the sandbox). The sandbox bounds memory with
    RLIMIT_AS, not cgroups, so container detection is turned off there only; a trusted run keeps it (a JVM in a
    Docker container must size its heap from the container's limit)."""
    from packager.sandbox import running_confined

    return ["-XX:-UseContainerSupport"] if running_confined() else []


def started() -> bool:
    return "spark" in _SESSION
