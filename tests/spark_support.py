"""Spark test support: one SparkSession per test run (start-up ~13 s), shared by every Spark test."""
from __future__ import annotations

import time


def start_session() -> tuple[object, float]:
    from packager.spark_session import session

    started = time.perf_counter()
    spark = session("local[2]")
    return spark, time.perf_counter() - started
