"""Spark ML ``PipelineModel`` folders: every metadata record Spark would read is checked before Spark reads any.

Why a folder of JSON can run code: Spark's reader takes the ``class`` of each stage's metadata and instantiates it by
reflection (``Utils.classForName(className)`` then its static ``read``: any class on the JVM classpath, static
initialisers included); PySpark's own reader, taken when a pipeline's ``paramMap`` says ``"language": "Python"``, maps
``org.apache.spark`` to ``pyspark`` in that name, ``__import__``s the module and calls ``.load(path)`` on what it finds
(``joblib.numpy_pickle`` has a ``load``: a stage path that is a pickle file then runs its code). Stage folders are
named from ``stageUids`` (``stages/{i}_{uid}``), so a uid with ``..`` or a URI scheme reads a pipeline from elsewhere.

The rules, right by construction rather than by pattern:
- every stage ``class`` is one of ``ALLOWED_STAGES`` (exact JVM names of Spark ML models and transformers that compute
  on columns); ``SQLTransformer`` is not among them (its statement is SQL, and SQL calls ``reflect``/reads files);
- a metadata record holds only the keys Spark writes (``TOP_KEYS`` and per-class extras); ``language`` is refused
  (our stages are JVM stages: only the JVM reader is used);
- uids are identifiers, stage folders exist inside the folder, nested ``PipelineModel`` stages are checked the same
  way (depth-bounded);
- a ``metadata/`` directory holds exactly one record in a file named as Spark's writer names it (``PART_FILE``; any
  other name is refused, since Spark's listing skips some names starting with ``_`` but not all): no subdirectory
  (Spark SQL would read ``key=value`` folders as partitions), no second non-empty file, nothing that is not plain
  UTF-8 JSON (Hadoop decompresses ``.gz``/``.bz2``… by extension: such names are not Spark's writer's);
- no symlink, device or FIFO anywhere in the tree; files, bytes and records bounded.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import InputFileError, UnsafeModelError

# The files Spark's metadata writer makes (saveAsTextFile / the text data source: part-00000, or since Spark 3
# part-00000-<uuid>-c000.txt), its _SUCCESS marker and Hadoop's checksums. Any other name is refused, not skipped:
# Spark's listing does not skip every name starting with '_' (a key=value name such as _x=1 is listed and read; found by
# an outside attacker: a SQLTransformer record hidden that way ran its SQL while the allowed decoy was checked).
PART_FILE = re.compile(r"part-\d{5}(-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-c\d{3}(\.txt)?)?")
WRITER_MARKERS = frozenset({"_SUCCESS"})
CHECKSUM = re.compile(r"\.(_SUCCESS|part-[0-9a-f-]+(c\d{3})?(\.txt)?)\.crc")
HINT = "refusing the folder; re-save the pipeline with PipelineModel.write().save(path) (or pass --trust if you trust it)"
PIPELINE = "org.apache.spark.ml.PipelineModel"
PYSPARK_PIPELINE = "pyspark.ml.pipeline.PipelineModel"  # what PySpark's own writer records for a nested Pipeline
_ML = "org.apache.spark.ml."
ALLOWED_STAGES = frozenset(
    {PIPELINE}
    | {
        _ML + name
        for name in (
            "feature.StringIndexerModel",
            "feature.VectorAssembler",
            "feature.OneHotEncoderModel",
            "feature.StandardScalerModel",
            "feature.MinMaxScalerModel",
            "feature.MaxAbsScalerModel",
            "feature.RobustScalerModel",
            "feature.ImputerModel",
            "feature.Bucketizer",
            "feature.Binarizer",
            "feature.VectorIndexerModel",
            "feature.Normalizer",
            "feature.PCAModel",
            "feature.PolynomialExpansion",
            "feature.IndexToString",
            "feature.VectorSlicer",
            "feature.ElementwiseProduct",
            "feature.Interaction",
            "feature.Tokenizer",
            "feature.StopWordsRemover",
            "feature.CountVectorizerModel",
            "feature.IDFModel",
            "feature.HashingTF",
            "feature.NGram",
            "feature.DCT",
            "feature.ChiSqSelectorModel",
            "feature.UnivariateFeatureSelectorModel",
            "feature.VarianceThresholdSelectorModel",
            "classification.LogisticRegressionModel",
            "classification.DecisionTreeClassificationModel",
            "classification.RandomForestClassificationModel",
            "classification.GBTClassificationModel",
            "classification.LinearSVCModel",
            "classification.NaiveBayesModel",
            "classification.MultilayerPerceptronClassificationModel",
            "classification.FMClassificationModel",
            "regression.LinearRegressionModel",
            "regression.DecisionTreeRegressionModel",
            "regression.RandomForestRegressionModel",
            "regression.GBTRegressionModel",
            "regression.GeneralizedLinearRegressionModel",
            "regression.IsotonicRegressionModel",
            "regression.AFTSurvivalRegressionModel",
            "regression.FMRegressionModel",
            "clustering.KMeansModel",
            "clustering.BisectingKMeansModel",
            "clustering.GaussianMixtureModel",
        )
    }
)
TOP_KEYS = frozenset({"class", "timestamp", "sparkVersion", "uid", "paramMap", "defaultParamMap"})
EXTRA_KEYS = frozenset({"numFeatures", "numClasses", "numTrees"})  # tree models write these beside the params (ints)
STEERING_PARAMS = frozenset({"language"})  # PipelineModel: "Python" switches PySpark to its __import__-ing reader
UID = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,199}")
MAX_METADATA_BYTES = 1 << 20  # a VectorAssembler over 5,000 columns writes ~120 KB; labels and weights live in Parquet
MAX_FILES = 20_000
MAX_TOTAL_BYTES = 8 << 30
MAX_DEPTH = 8  # nested PipelineModel stages
MAX_STAGES = 2_000


@dataclass(frozen=True)
class StageRecord:
    """One checked metadata record: where it is, its JVM class and uid, and (for a pipeline) its stage folders."""

    folder: Path
    cls: str
    uid: str
    stages: tuple["StageRecord", ...] = ()


def check_spark_folder(path: str | Path) -> StageRecord:
    """Raise UnsafeModelError unless ``path`` is a PipelineModel folder whose every record passes the rules above."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise InputFileError(f"{root.name} is not a folder", "give the folder written by PipelineModel.write().save(path)")
    _check_tree(root)
    record = _check_stage(root, root, depth=0)
    if record.cls != PIPELINE:
        raise UnsafeModelError(
            f"{root.name}: the top-level metadata names {record.cls}, not a PipelineModel",
            "save the fitted PipelineModel (pipeline.fit(df)) rather than one stage",
        )
    return record


def _check_tree(root: Path) -> None:
    """No link or special file anywhere (Spark and Hadoop follow links out of the folder); files and bytes bounded."""
    files = total = 0
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in dirs + names:
            entry = Path(folder) / name
            mode = entry.lstat().st_mode
            rel = entry.relative_to(root)
            if stat.S_ISLNK(mode):
                raise UnsafeModelError(
                    f"{root.name}: {rel} is a symbolic link (Spark would read what it points to, outside the folder)", HINT
                )
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UnsafeModelError(f"{root.name}: {rel} is not a regular file or folder", HINT)
            if stat.S_ISREG(mode):
                files += 1
                total += entry.lstat().st_size
        if files > MAX_FILES or total > MAX_TOTAL_BYTES:
            raise UnsafeModelError(f"{root.name} holds more than {MAX_FILES:,} files or {MAX_TOTAL_BYTES >> 30} GiB", HINT)


def _check_stage(root: Path, folder: Path, depth: int) -> StageRecord:
    if depth > MAX_DEPTH:
        raise UnsafeModelError(f"{root.name}: pipelines nested more than {MAX_DEPTH} deep", HINT)
    where = folder.relative_to(root).as_posix() if folder != root else "."
    record = _read_record(root, folder / "metadata", where)
    cls, uid = record.get("class"), record.get("uid")
    if cls == PYSPARK_PIPELINE:
        raise UnsafeModelError(
            f"{root.name}: stage {where} is a PipelineModel PySpark wrote with its Python writer (a Pipeline nested in a "
            "Pipeline), which only PySpark's module-importing reader loads",
            "flatten it before saving: PipelineModel(stages=[s for p in model.stages for s in getattr(p, 'stages', [p])]).write()"
            ".save(path) (or pass --trust if you trust it)",
        )
    if not isinstance(cls, str) or cls not in ALLOWED_STAGES:
        raise UnsafeModelError(
            f"{root.name}: stage {where} names class {str(cls)[:120]!r}, which is not in the allow-list of Spark ML stages", HINT
        )
    if not isinstance(uid, str) or not UID.fullmatch(uid):
        raise UnsafeModelError(f"{root.name}: stage {where} has uid {str(uid)[:80]!r}, which is not an identifier", HINT)
    unknown = set(record) - TOP_KEYS - EXTRA_KEYS
    if unknown:
        raise UnsafeModelError(
            f"{root.name}: stage {where} metadata has keys Spark does not write: {', '.join(sorted(unknown))[:200]}", HINT
        )
    if any(not isinstance(record[k], int) for k in EXTRA_KEYS & set(record)):
        raise UnsafeModelError(f"{root.name}: stage {where} metadata has a non-integer {', '.join(sorted(EXTRA_KEYS & set(record)))}", HINT)
    params = record.get("paramMap", {})
    defaults = record.get("defaultParamMap", {})
    if not isinstance(params, dict) or not isinstance(defaults, dict):
        raise UnsafeModelError(f"{root.name}: stage {where} paramMap is not a JSON object", HINT)
    steering = STEERING_PARAMS & (set(params) | set(defaults))
    if steering:
        raise UnsafeModelError(
            f"{root.name}: stage {where} sets {', '.join(sorted(steering))} (it routes loading through PySpark's "
            "module-importing reader; the allowed stages are JVM stages)",
            HINT,
        )
    if cls != PIPELINE:
        return StageRecord(folder, cls, uid)
    return StageRecord(
        folder, cls, uid, tuple(_check_stage(root, stage, depth + 1) for stage in _stage_folders(root, folder, params, where))
    )


def _stage_folders(root: Path, folder: Path, params: dict, where: str) -> list[Path]:
    """The folders Spark reads for ``stageUids``: ``stages/{index zero-padded to the count's digits}_{uid}``."""
    uids = params.get("stageUids")
    if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids) or len(uids) > MAX_STAGES:
        raise UnsafeModelError(f"{root.name}: pipeline {where} has no list of stage uids (or more than {MAX_STAGES})", HINT)
    digits = len(str(len(uids)))
    folders = []
    for index, uid in enumerate(uids):
        if not UID.fullmatch(uid):
            raise UnsafeModelError(
                f"{root.name}: pipeline {where} lists stage uid {uid[:80]!r}, which is not an identifier (stage folders are named from it)",
                HINT,
            )
        stage = folder / "stages" / f"{index:0{digits}d}_{uid}"
        if not stage.is_dir():
            raise InputFileError(
                f"{root.name}: pipeline {where} lists stage {uid} but {stage.relative_to(root)} is missing",
                "the folder is incomplete; copy the whole saved pipeline",
            )
        folders.append(stage)
    return folders


def _read_record(root: Path, metadata: Path, where: str) -> dict[str, Any]:
    """The one JSON record of a ``metadata/`` folder, read the way Spark lists it (hidden names skipped)."""
    if not metadata.is_dir():
        raise InputFileError(
            f"{root.name}: stage {where} has no metadata folder", "give the folder written by PipelineModel.write().save(path)"
        )
    lines: list[bytes] = []
    for entry in sorted(metadata.iterdir()):
        if entry.is_dir():
            raise UnsafeModelError(
                f"{root.name}: {entry.relative_to(root)} is a folder inside metadata/ (Spark would read it as a partition)", HINT
            )
        if entry.name in WRITER_MARKERS or CHECKSUM.fullmatch(entry.name):
            continue  # _SUCCESS and the .crc checksums Hadoop writes beside each file: not records
        if not PART_FILE.fullmatch(entry.name):
            raise UnsafeModelError(
                f"{root.name}: {entry.relative_to(root)} is not a file Spark's writer makes (part-NNNNN...txt, _SUCCESS, .crc); "
                "Spark's listing may read it as a record (a name such as _x=1 is listed although it starts with '_')",
                HINT,
            )
        size = entry.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise UnsafeModelError(
                f"{root.name}: {entry.relative_to(root)} is {size:,} bytes; Spark metadata records are small "
                f"(limit {MAX_METADATA_BYTES:,})",
                HINT,
            )
        lines += [line for line in entry.read_bytes().splitlines() if line.strip()]
    if len(lines) != 1:
        raise UnsafeModelError(
            f"{root.name}: {metadata.relative_to(root)} holds {len(lines)} records, not 1 "
            "(Spark reads whichever it lists first, so the one checked may not be the one loaded)",
            HINT,
        )
    try:
        record = json.loads(lines[0].decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise UnsafeModelError(
            f"{root.name}: {metadata.relative_to(root)} repeats the key {str(exc)[:80]!r} (which one a reader keeps "
            "differs between JSON parsers)",
            HINT,
        ) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UnsafeModelError(
            f"{root.name}: {metadata.relative_to(root)} is not one plain JSON record (compressed or corrupt)", HINT
        ) from None
    if not isinstance(record, dict):
        raise UnsafeModelError(f"{root.name}: {metadata.relative_to(root)} is JSON but not an object", HINT)
    return record


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _DuplicateKey(next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


def looks_like_spark_pipeline(path: Path) -> bool:
    """Detection only, by layout (``metadata/`` beside ``stages/``): whatever the records say is judged by the check, so a
    hostile record is refused as unsafe rather than passed over as "not a model"."""
    return (path / "metadata").is_dir() and (path / "stages").is_dir()
