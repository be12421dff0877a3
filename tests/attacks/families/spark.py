"""Spark ML PipelineModel folders that make Spark or PySpark run, import or read what the attacker names.

Written by hand, as an attacker would (the JSON Spark writes is easy to imitate): PySpark's reader ``__import__``s the
module named in a stage's ``class`` (``org.apache.spark`` mapped to ``pyspark``) and calls ``.load(path)`` on it, or
calls it with no arguments (``DefaultParamsReader.load``); Spark's JVM reader instantiates the class by reflection;
stage folders are named from ``stageUids``; Hadoop decompresses by extension and skips ``_``/``.`` names; Spark SQL
reads ``key=value`` subfolders as partitions. Each folder is otherwise a complete pipeline layout, so only the check
stands between it and Spark.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from tests.attacks.build_corpus import Attack

SPARK = "org.apache.spark.ml."
ASSEMBLER = SPARK + "feature.VectorAssembler"
LR = SPARK + "classification.LogisticRegressionModel"


def _record(cls: str, uid: str, params: dict | None = None, **extra) -> dict:
    return {"class": cls, "timestamp": 1795848517423, "sparkVersion": "4.2.1", "uid": uid, "paramMap": params or {},
            "defaultParamMap": {}, **extra}


def _write_meta(folder: Path, record: dict | bytes, name: str = "part-00000") -> None:
    meta = folder / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "_SUCCESS").write_bytes(b"")
    (meta / name).write_bytes(record if isinstance(record, bytes) else json.dumps(record).encode() + b"\n")


def _pipeline(folder: Path, stages: list[tuple[str, dict | bytes]], params: dict | None = None) -> Path:
    """A PipelineModel folder whose stages are (uid, record) pairs, each stage folder with its metadata."""
    uids = [uid for uid, _ in stages]
    _write_meta(folder, _record(SPARK + "PipelineModel", "PipelineModel_0a1b2c3d4e5f", {"stageUids": uids, **(params or {})}))
    (folder / "stages").mkdir(parents=True, exist_ok=True)
    digits = len(str(len(uids)))
    for index, (uid, record) in enumerate(stages):
        _write_meta(folder / "stages" / f"{index:0{digits}d}_{uid}", record)
    return folder


def _assembler(uid: str = "VectorAssembler_1a2b3c4d5e6f") -> tuple[str, dict]:
    return uid, _record(ASSEMBLER, uid, {"inputCols": ["a", "b"], "outputCol": "features"})


def _stage(cls: str, uid: str = "Evil_0a0b0c0d0e0f", params: dict | None = None, **extra) -> tuple[str, dict]:
    return uid, _record(cls, uid, params, **extra)


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    out.mkdir(parents=True, exist_ok=True)
    attacks: list[Attack] = []

    def add(name: str, stages: list, params: dict | None = None, expect: str = "unsafe", runs_code: bool = True) -> Path:
        folder = _pipeline(out / name, stages, params)
        attacks.append(Attack(name, folder, expect, runs_code))
        return folder

    # classes PySpark would __import__ (after mapping org.apache.spark -> pyspark) or Spark would reflect on
    add("spark_stage_os_system", [_assembler(), _stage("os.system")])
    add("spark_stage_joblib_loader", [_assembler(), _stage("joblib.numpy_pickle")], {"language": "Python"})
    add("spark_stage_subprocess", [_stage("subprocess.getoutput", params={"cmd": f"touch {marker}"})])
    add("spark_stage_builtins_exec", [_stage("builtins.exec")])
    add("spark_stage_pyspark_mapped_to_os", [_stage("org.apache.spark.ml.os.system")])  # -> pyspark.ml.os.system
    add("spark_stage_python_class_path", [_stage("pyspark.ml.feature.StringIndexerModel")], {"language": "Python"})
    add("spark_stage_jvm_outside_ml", [_stage("org.apache.spark.deploy.SparkSubmit")])
    add("spark_stage_jvm_runtime", [_stage("java.lang.Runtime")])
    add("spark_stage_jvm_scripting", [_stage("javax.script.ScriptEngineManager")])
    add("spark_stage_sql_transformer", [_stage(SPARK + "feature.SQLTransformer", "SQLTransformer_0a0b0c0d0e0f",
                                                {"statement": "SELECT *, reflect('java.lang.System', 'exit', 1) FROM __THIS__"})])
    add("spark_stage_sql_reads_file", [_stage(SPARK + "feature.SQLTransformer", "SQLTransformer_0a0b0c0d0e0f",
                                               {"statement": "SELECT * FROM text.`/etc/passwd`"})])
    add("spark_stage_lookalike_suffix", [_stage(LR + "Evil")])
    add("spark_stage_lookalike_inner_class", [_stage(LR + "$Evil")])
    add("spark_stage_lookalike_trailing_space", [_stage(LR + " ")])
    add("spark_stage_lookalike_cyrillic", [_stage(LR.replace("Logistic", "Lоgistic"))])  # Cyrillic o
    add("spark_stage_class_not_string", [_stage(["os", "system"])])  # type: ignore[arg-type]
    add("spark_stage_pythonClass_key", [_stage(LR, "LogisticRegression_0a0b0c0d0e0f", pythonClass="os.system")])
    add("spark_stage_language_default", [_stage(LR, "LogisticRegression_0a0b0c0d0e0f")], None)
    (out / "spark_stage_language_default" / "metadata" / "part-00000").write_text(json.dumps(
        {**_record(SPARK + "PipelineModel", "PipelineModel_0a1b2c3d4e5f", {"stageUids": ["LogisticRegression_0a0b0c0d0e0f"]}),
         "defaultParamMap": {"language": "Python"}}) + "\n")

    # the same, hidden one or two pipelines deep
    inner = ("PipelineModel_111111111111", _record(SPARK + "PipelineModel", "PipelineModel_111111111111",
                                                   {"stageUids": ["Evil_0a0b0c0d0e0f"]}))
    folder = add("spark_nested_pipeline_hides_os", [_assembler(), inner])
    _write_meta(
        folder / "stages" / "1_PipelineModel_111111111111" / "stages" / "0_Evil_0a0b0c0d0e0f", _record("os.system", "Evil_0a0b0c0d0e0f")
    )
    folder = add("spark_nested_twice_hides_jvm_class", [inner])
    middle = folder / "stages" / "0_PipelineModel_111111111111"
    _write_meta(middle, _record(SPARK + "PipelineModel", "PipelineModel_111111111111", {"stageUids": ["PipelineModel_222222222222"]}))
    _pipeline(middle / "stages" / "0_PipelineModel_222222222222", [_stage("java.lang.ProcessBuilder")])
    (middle / "stages" / "0_PipelineModel_222222222222" / "metadata" / "part-00000").write_text(json.dumps(
        _record(SPARK + "PipelineModel", "PipelineModel_222222222222", {"stageUids": ["Evil_0a0b0c0d0e0f"]})) + "\n")
    deep = out / "spark_nested_too_deep"
    here = _pipeline(deep, [("PipelineModel_000000000000", _record(SPARK + "PipelineModel", "PipelineModel_000000000000"))])
    for _ in range(12):
        stage = here / "stages" / "0_PipelineModel_000000000000"
        _pipeline(stage, [("PipelineModel_000000000000", _record(SPARK + "PipelineModel", "PipelineModel_000000000000"))])
        (stage / "metadata" / "part-00000").write_text(json.dumps(
            _record(SPARK + "PipelineModel", "PipelineModel_000000000000", {"stageUids": ["PipelineModel_000000000000"]})) + "\n")
        here = stage
    attacks.append(Attack("spark_nested_too_deep", deep, "unsafe", runs_code=False))

    # stage folders named from uids: traversal and URI schemes
    outside = _pipeline(out / "spark_outside_target", [_stage("os.system")])
    add("spark_uid_traversal", [("x/../../../spark_outside_target", _record(LR, "LogisticRegression_0a0b0c0d0e0f"))])
    add("spark_uid_uri_scheme", [("file:/etc", _record(LR, "LogisticRegression_0a0b0c0d0e0f"))])
    add("spark_uid_not_string", [], {"stageUids": [{"uid": "x"}]})

    # links out of the folder: a stage folder, a metadata record, a data file
    folder = add("spark_symlinked_stage", [_assembler()])
    os.symlink(outside / "stages" / "0_Evil_0a0b0c0d0e0f", folder / "stages" / "1_Linked_0a0b0c0d0e0f")
    record = folder / "metadata" / "part-00000"
    record.write_text(json.dumps(_record(SPARK + "PipelineModel", "PipelineModel_0a1b2c3d4e5f",
                                         {"stageUids": ["VectorAssembler_1a2b3c4d5e6f", "Linked_0a0b0c0d0e0f"]})) + "\n")
    folder = add("spark_symlinked_metadata", [_assembler()])
    meta = folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "metadata" / "part-00000"
    meta.unlink()
    os.symlink(outside / "stages" / "0_Evil_0a0b0c0d0e0f" / "metadata" / "part-00000", meta)
    folder = add("spark_symlinked_data_to_etc", [_stage(LR, "LogisticRegression_0a0b0c0d0e0f")], runs_code=False)
    os.symlink("/etc", folder / "stages" / "0_LogisticRegression_0a0b0c0d0e0f" / "data")
    folder = add("spark_fifo_in_folder", [_assembler()], runs_code=False)
    os.mkfifo(folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "data")

    # what Spark reads from metadata/ that a first-file check would not see
    folder = add("spark_second_record_line", [_assembler()])
    with (folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "metadata" / "part-00000").open("a") as fh:
        fh.write(json.dumps(_record("os.system", "Evil_0a0b0c0d0e0f")) + "\n")
    folder = add("spark_second_part_file", [_assembler()])
    _write_meta(folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f", _record("os.system", "Evil_0a0b0c0d0e0f"), "part-00001")
    folder = add("spark_evil_first_in_listing", [_assembler()])  # a name that sorts before part-00000 for some listings
    _write_meta(folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f", _record("os.system", "Evil_0a0b0c0d0e0f"), "0")
    # Spark's listing skips '_' names only without '=' (found by an outside attacker: the SQL of a record named _x=1 ran
    # while the decoy part file beside it was the one checked); the payload is padded larger than the decoy
    sql = {"statement": "SELECT *, reflect('java.lang.Runtime', 'exec', 'touch %s') AS x FROM __THIS__" % marker, "pad": "x" * 400}
    for name in ("_x=1", "_SUCCESS=1", ".part-00000"):
        folder = add(f"spark_listed_hidden_name_{name.strip('._=')}", [_assembler()])
        _write_meta(folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f", _record(SPARK + "feature.SQLTransformer",
                                                                                  "VectorAssembler_1a2b3c4d5e6f", sql), name)
    folder = add("spark_gzip_record", [_assembler()])
    stage_meta = folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "metadata"
    (stage_meta / "part-00000").unlink()
    (stage_meta / "part-00000.gz").write_bytes(gzip.compress(json.dumps(_record("os.system", "Evil_0a0b0c0d0e0f")).encode()))
    folder = add("spark_partition_subfolder", [_assembler()])
    partition = folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "metadata" / "class=os.system"
    partition.mkdir()
    (partition / "part-00000").write_text(json.dumps(_record("os.system", "Evil_0a0b0c0d0e0f")) + "\n")
    folder = add("spark_utf16_record", [_assembler()])
    (folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "metadata" / "part-00000").write_bytes(
        json.dumps(_record("os.system", "Evil_0a0b0c0d0e0f")).encode("utf-16"))
    folder = add("spark_duplicate_class_key", [_assembler()])  # json keeps the last "class"; another parser may keep the first
    (folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "metadata" / "part-00000").write_text(
        '{"class":"os.system","class":"%s","uid":"VectorAssembler_1a2b3c4d5e6f","paramMap":{},"defaultParamMap":{}}\n' % ASSEMBLER)

    # sizes
    folder = add("spark_huge_metadata", [_assembler()], runs_code=False)
    big = _record(ASSEMBLER, "VectorAssembler_1a2b3c4d5e6f", {"inputCols": [f"c{i:07d}" for i in range(200_000)], "outputCol": "f"})
    _write_meta(folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f", big)
    folder = add("spark_deep_json", [_assembler()], runs_code=False)
    (folder / "stages" / "0_VectorAssembler_1a2b3c4d5e6f" / "metadata" / "part-00000").write_bytes(b"[" * 200_000 + b"]" * 200_000 + b"\n")
    many = [_stage(ASSEMBLER, f"VectorAssembler_{i:012d}") for i in range(2_500)]
    add("spark_too_many_stages", many, runs_code=False)
    return attacks
