"""Spark ML: a saved ``PipelineModel`` folder as a source, converted to PMML (pyspark2pmml / JPMML-SparkML) and ONNX
(onnxmltools' Spark ML converter), validated against Spark's own predictions on the same rows.

Safe to load: the folder is checked by ``packager.safety.spark`` (every stage class in an allow-list, no record that
steers PySpark's importing reader, no link out of the folder), then copied to a private folder, checked again there,
and only the copy is given to Spark's JVM reader: what was checked is what loads.

The signature is the pipeline's raw input columns (read from the stages' ``inputCol``/``inputCols`` minus the columns
earlier stages produce), one (batch, 1) input each: strings for what a StringIndexer reads, float32 numbers otherwise
(onnxmltools' converters take float tensors); Spark itself is fed float64, as a user would.

Versions: pyspark2pmml 0.12.0 bundles JPMML-SparkML 3.4.0, which supports Spark 3.4-4.2 and refuses 4.3 when its
classes load ("Expected Apache Spark ML version '4.2', got '4.3'"), so the ``spark`` extra pins pyspark below 4.3.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, cast

from packager.contract import Artifact, Format, Framework
from packager.deps import version_of
from packager.errors import ConversionError, InputFileError, UnsupportedConversion, converting, first_line
from packager.plugins import converts, framework
from packager.signature import Signature, TensorSpec

LABEL, PROBABILITIES, VARIABLE = "label", "probabilities", "variable"  # the names the PMML and ONNX runtimes map
INPUT_PARAMS = ("inputCol", "inputCols", "featuresCol")
OUTPUT_PARAMS = ("outputCol", "outputCols", "predictionCol", "probabilityCol", "rawPredictionCol")
TEXT_STAGES = frozenset({"StringIndexerModel", "Tokenizer", "RegexTokenizer"})
ROW = "__packager_row"  # row order through Spark (a transform may repartition)
MLEAP_REFUSAL = (
    "MLeap's Spark serializer (mleap-spark) is JVM code published only to Maven repositories, which this project cannot fetch or bundle"
)


@dataclass(frozen=True)
class SparkPipeline:
    """A loaded PipelineModel, its flattened stages and the checked folder it came from (None: built in memory)."""

    model: Any
    folder: Path | None = None


def _session() -> Any:
    from packager.spark_session import session

    return session()


def _check_folder(path: Path) -> None:
    from packager.safety.spark import check_spark_folder

    check_spark_folder(path)


def _detect(path: Path, head: bytes) -> bool:
    from packager.safety.spark import looks_like_spark_pipeline

    return path.is_dir() and looks_like_spark_pipeline(path)


# Every metadata record is checked (allow-listed JVM stage classes, no record steering PySpark's importing reader, no
# links) before Spark reads the folder: packager.safety.spark.
SPARK = Format("spark", title="Spark ML PipelineModel folder (metadata/ + stages/)", directory=True, detect=_detect, check=_check_folder)


@framework("spark")
class Spark(Framework):
    """Spark ML PipelineModel folders (and in-memory ``pyspark.ml.PipelineModel`` objects)."""

    file_formats = frozenset({"spark"})

    @staticmethod
    def claims(obj: Any) -> bool:
        return type(obj).__module__.startswith("pyspark.ml") and type(obj).__name__ == "PipelineModel" or isinstance(obj, SparkPipeline)

    def load(self, path: Path, fmt: str, *, trust: bool = False) -> SparkPipeline:
        from packager.safety.spark import check_spark_folder

        copy = _private_copy(Path(path))
        if not trust:
            check_spark_folder(copy)  # the copy is what Spark reads: a swap in the user's folder after the check changes nothing
        spark = _session()
        from pyspark.ml import PipelineModel
        from pyspark.ml.util import JavaMLReader

        try:
            model = JavaMLReader(cast(Any, PipelineModel)).load(copy.as_uri())  # the JVM reader only: PySpark's own one __import__s names
        except Exception as exc:
            raise InputFileError(
                f"Spark cannot load {Path(path).name}: {first_line(exc, 240)}",
                "re-save it with PipelineModel.write().save(path) from a Spark 3.4-4.2 session",
            ) from exc
        del spark
        pipeline = SparkPipeline(model, copy)
        weakref.finalize(pipeline, shutil.rmtree, copy.parent, True)
        return pipeline

    def describe(self, model: Any) -> dict[str, Any]:
        return {"stages": [type(s).__name__ for s in _stages(model)], "spark": version_of("pyspark")}

    def versions(self) -> dict[str, str]:
        return {"pyspark": version_of("pyspark"), "numpy": version_of("numpy")}

    def label_outputs(self, model: Any) -> set[str]:
        return {LABEL}

    def signature(self, model: Any, sample: Any) -> Signature:
        text, numbers = _raw_inputs(scoring_stages(model))
        specs = [TensorSpec(name, "str", (None, 1)) if name in text else TensorSpec(name, "float32", (None, 1)) for name in numbers]
        return Signature(tuple(specs), columnar=True)

    def feeds(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any]:
        from .shared import column_feeds

        return column_feeds(signature, sample, full_precision=False)

    def source_input(self, model: Any, signature: Signature, sample: Any) -> dict[str, Any] | None:
        from .shared import column_feeds

        return None if sample is None else column_feeds(signature, sample, full_precision=True)

    def fitted_rows(self, model: Any, signature: Signature, rows: int) -> Any:
        from .spark_rows import fitted_rows

        return fitted_rows(scoring_stages(model), signature, rows)

    def fitted_rows_source(self, model: Any) -> str:
        from .spark_rows import informed

        return "fitted-statistics" if informed(_stages(model), self.signature(model, None)) else "synthetic"

    def output_kinds(self, model: Any, expected: Mapping[str, Any]) -> dict[str, Any]:
        from packager.validation import OutputKind

        kinds = {LABEL: OutputKind.LABELS, PROBABILITIES: OutputKind.PROBABILITIES, VARIABLE: OutputKind.REGRESSION}
        return {name: kinds[name] for name in expected if name in kinds}

    def predict(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return score(model, signature, feeds)

    def serve(self, model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return self.predict(model, signature, feeds)


def score(model: Any, signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
    """Spark's own transform on ``feeds`` (one column each), outputs in row order: ``label`` + ``probabilities`` for a
    classifier, ``variable`` for a regressor."""
    import numpy as np
    import pandas as pd

    spark = _session()
    from pyspark.ml.functions import vector_to_array

    pipeline = _pipeline(model)
    last = _stages(model)[-1]
    columns = {name: np.asarray(feeds[name]).reshape(-1) for name in signature.input_names}
    frame = pd.DataFrame({name: (v.astype(str) if v.dtype.kind in "OUS" else v.astype("float64")) for name, v in columns.items()})
    frame[ROW] = np.arange(len(frame))
    outputs = _output_columns(last)
    try:
        scored = pipeline.transform(spark.createDataFrame(frame))
        picked = [
            scored[ROW],
            *(vector_to_array(scored[c]).alias(n) if n == PROBABILITIES else scored[c].alias(n) for n, c in outputs.items()),
        ]
        result = scored.select(*picked).toPandas().sort_values(ROW)
    except Exception as exc:
        from packager.errors import SampleError

        raise SampleError(
            f"Spark fails on the sample rows: {first_line(exc, 240)}", "give --sample FILE with the pipeline's input columns"
        ) from exc
    produced = {}
    for name in outputs:
        values = result[name].to_numpy()
        produced[name] = np.stack([np.asarray(v, dtype="float64") for v in values]) if name == PROBABILITIES else values.astype("float64")
    names = label_names(_stages(model))
    if names is not None and LABEL in produced:  # the label as trained on ("class_0"), as JPMML-SparkML answers it
        produced[LABEL] = np.asarray(names, dtype=object)[produced[LABEL].astype(np.int64)]
    return produced


def label_names(stages: list[Any]) -> list[str] | None:
    """The string labels a label indexer learnt (index i is labels[i]), or None without one."""
    last = stages[-1]
    for stage in label_indexers(stages):
        if _param(stage, "outputCol") == _param(last, "labelCol"):
            return [str(v) for v in stage.labelsArray[0]]
    return None


def _output_columns(last: Any) -> dict[str, str]:
    prediction = _param(last, "predictionCol")
    if prediction is None:
        raise UnsupportedConversion(
            f"the pipeline ends in {type(last).__name__}, which predicts nothing",
            "save PipelineModel(stages=model.stages[:-1]): packager's label output is the predicted index, which the "
            "StringIndexer's labels map to names"
            if type(last).__name__ == "IndexToString"
            else "save a pipeline whose last stage is a fitted classifier or regressor",
        )
    probability = _param(last, "probabilityCol")
    if probability:
        return {LABEL: prediction, PROBABILITIES: probability}
    return {VARIABLE: prediction}


def _pipeline(model: Any) -> Any:
    return model.model if isinstance(model, SparkPipeline) else model


def _stages(model: Any) -> list[Any]:
    """The stages in order, nested PipelineModels flattened (Spark applies them in that order)."""
    found = []
    for stage in _pipeline(model).stages:
        found += _stages(stage) if type(stage).__name__ == "PipelineModel" else [stage]
    return found


def label_indexers(stages: list[Any]) -> list[Any]:
    """StringIndexers that index the label (their output is some stage's ``labelCol``), the first stage of Spark's own
    tutorials. Scoring rows have no label, and Spark's StringIndexerModel.transform skips itself when its input column
    is absent (DESIGN.md): these stages are not needed to score, and their input is not a scoring column."""
    labels = {_param(s, "labelCol") for s in stages} - {None}
    consumed = {c for s in stages for name in INPUT_PARAMS for c in _as_list(_param(s, name))}
    return [
        s
        for s in stages
        if type(s).__name__ == "StringIndexerModel"
        and _param(s, "outputCol") in labels
        and _param(s, "outputCol") not in consumed  # a column a feature stage reads is a feature, whatever its name
    ]


def scoring_stages(model: Any) -> list[Any]:
    """The stages a scoring row goes through: all but the label indexers."""
    stages = _stages(model)
    skipped = label_indexers(stages)
    return [s for s in stages if all(s is not k for k in skipped)]


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _param(stage: Any, name: str) -> Any:
    if not stage.hasParam(name):
        return None
    param = stage.getParam(name)
    return stage.getOrDefault(param) if stage.isDefined(param) else None


def _raw_inputs(stages: list[Any]) -> tuple[set[str], list[str]]:
    """(columns read as text, every raw input column in first-use order): what no earlier stage produced."""
    produced: set[str] = set()
    order: list[str] = []
    text: set[str] = set()
    for stage in stages:
        for name in INPUT_PARAMS:
            value = _param(stage, name)
            for column in [value] if isinstance(value, str) else (value or []):
                if column not in produced and column not in order:
                    order.append(column)
                    if type(stage).__name__ in TEXT_STAGES:
                        text.add(column)
        for name in OUTPUT_PARAMS:
            value = _param(stage, name)
            produced.update([value] if isinstance(value, str) else (value or []))
    if not order:
        raise UnsupportedConversion("the pipeline reads no named input columns", "save a pipeline that starts from table columns")
    return text, order


def _private_copy(path: Path) -> Path:
    """The folder copied into a fresh 0700 temp folder; a link, FIFO or device is refused, never followed or copied."""
    if not path.is_dir():
        raise InputFileError(f"{path.name} is not a folder", "give the folder written by PipelineModel.write().save(path)")
    private = Path(tempfile.mkdtemp(prefix="packager-spark-model-"))
    target = private / "pipeline"
    from packager.safety.folders import copy_tree

    copy_tree(path, target)
    return target


# ---------------------------------------------------------------- conversions


@converts("spark", to="pmml", note="pyspark2pmml / JPMML-SparkML (Java, AGPL-3.0)")
def spark_to_pmml(model: Any, signature: Signature, out: Path, options) -> Any:
    """JPMML-SparkML reads the fitted stages through the JVM and writes one PMML document over the raw columns."""
    from packager.deps import java_version, require

    require("pyspark2pmml", "spark", "PMML export of Spark pipelines")
    spark = _session()
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType
    from pyspark2pmml import PMMLBuilder

    pipeline = _pipeline(model)
    last = _stages(model)[-1]
    fields = [StructField(s.name, StringType() if s.is_text else DoubleType()) for s in signature.inputs]
    label = _param(last, "labelCol")
    indexed = label_indexers(_stages(model))
    fields += [StructField(_param(s, "inputCol"), StringType()) for s in indexed]  # the string label, as trained on
    if label and label not in signature.input_names and not indexed:
        fields.append(StructField(label, DoubleType()))  # JPMML-SparkML declares the target field from the schema
    path = out / "model.pmml"
    try:
        PMMLBuilder(StructType(fields), pipeline).buildFile(str(path))
    except Exception as exc:
        message = _java_message(exc)
        if "not supported" in message.lower() or "IllegalArgument" in message:
            raise UnsupportedConversion(f"JPMML-SparkML cannot convert this pipeline: {message}", "use --to onnx") from exc
        raise ConversionError(f"pyspark2pmml failed: {message}", "run with --debug to see the JVM error") from exc
    del spark
    return Artifact(
        path,
        {
            "converter": "pyspark2pmml",
            "converter_version": version_of("pyspark2pmml"),
            "java": java_version(),
            "active_fields": signature.input_names,
        },
    )


@converts("spark", to="onnx", note="onnxmltools' Spark ML converter (StringIndexer, VectorAssembler, linear and tree models...)")
def spark_to_onnx(model: Any, signature: Signature, out: Path, options) -> Any:
    from packager.deps import require

    require("onnxmltools", "spark", "ONNX export of Spark pipelines")
    spark = _session()
    from onnxmltools.convert.common.data_types import FloatTensorType, StringTensorType
    from onnxmltools.convert.sparkml import convert as convert_sparkml

    _refuse_unconvertible(_stages(model))
    initial = [(s.name, StringTensorType([None, 1]) if s.is_text else FloatTensorType([None, 1])) for s in signature.inputs]
    opset = {} if options.opset is None else {"target_opset": int(options.opset)}
    with converting("onnxmltools cannot convert this Spark pipeline", "use --to pmml", mapping={Exception: UnsupportedConversion}):
        proto = convert_sparkml(_scoring_pipeline(model), "spark-pipeline", initial_types=initial, spark_session=spark, **opset)
    from .shared import rename_onnx_outputs

    _restore_input_names(proto, signature)
    _cast_indices_before_concat(proto)
    rename_onnx_outputs(proto, list(_output_columns(_stages(model)[-1])))
    _label_as_double(proto, label_names(_stages(model)))
    path = out / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    return Artifact(
        path,
        {
            "converter": "onnxmltools.convert_sparkml",
            "onnxmltools": version_of("onnxmltools"),
            "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0),
        },
    )


def _scoring_pipeline(model: Any) -> Any:
    """The pipeline without its label indexers (onnxmltools would make the label an input of the graph)."""
    if not label_indexers(_stages(model)):
        return _pipeline(model)
    from pyspark.ml import PipelineModel

    return PipelineModel(stages=scoring_stages(model))


def _restore_input_names(proto: Any, signature: Signature) -> None:
    """onnxmltools renames inputs whose column names hold spaces or brackets ("mean radius" -> "mean_radius", as every
    DataFrame built from scikit-learn's datasets has): the graph gets the pipeline's own column names back, so the
    package reads the columns the user has (found by an outside user: every such pipeline failed validation)."""
    from packager.columns import restore_onnx_input_names

    restore_onnx_input_names(proto, signature.input_names, "the Spark pipeline's columns")


def _cast_indices_before_concat(proto: Any) -> None:
    """onnxmltools 1.16 feeds a StringIndexer's int64 index straight into the VectorAssembler's float Concat, which
    onnxruntime refuses to load ("Type parameter (T) of Optype (Concat) bound to different types (tensor(float) and
    tensor(int64)"); Spark's assembler casts the index to double, so a Cast to float restores what Spark computes."""
    from onnx import TensorProto, helper

    int64_outputs = {
        out
        for node in proto.graph.node
        if node.op_type == "LabelEncoder" and any(a.name == "values_int64s" for a in node.attribute)
        for out in node.output
    }
    nodes = []
    for node in proto.graph.node:
        if node.op_type == "Concat":
            for position, name in enumerate(node.input):
                if name in int64_outputs:
                    cast = f"{name}__as_float"
                    nodes.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT, name=f"cast_{name}"))
                    node.input[position] = cast
        nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def _label_as_double(proto: Any, names: list[str] | None = None) -> None:
    """Spark's prediction column is a double (the class index as 0.0, 1.0...); onnxmltools writes int64. The artifact
    keeps Spark's type so its labels compare (and are written) as Spark's are; with a label indexer, the index maps to
    the label it learnt (ai.onnx.ml LabelEncoder), as the source's label output does."""
    from onnx import TensorProto, helper

    output = next((o for o in proto.graph.output if o.name == LABEL and o.type.tensor_type.elem_type == TensorProto.INT64), None)
    if output is None:
        return
    raw = f"{LABEL}__int64"
    for node in proto.graph.node:
        node.output[:] = [raw if o == LABEL else o for o in node.output]
        node.input[:] = [raw if i == LABEL else i for i in node.input]
    if names is None:
        proto.graph.node.append(helper.make_node("Cast", [raw], [LABEL], to=TensorProto.DOUBLE, name="label_as_double"))
        output.type.tensor_type.elem_type = TensorProto.DOUBLE
        return
    encoder = helper.make_node(
        "LabelEncoder", [raw], [LABEL], domain="ai.onnx.ml", name="label_names", keys_int64s=list(range(len(names))), values_strings=names
    )
    proto.graph.node.append(encoder)
    output.type.tensor_type.elem_type = TensorProto.STRING
    ml = [o for o in proto.opset_import if o.domain == "ai.onnx.ml"]
    if not ml:
        proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", 2))
    elif ml[0].version < 2:  # keys_int64s/values_strings came with LabelEncoder-2
        ml[0].version = 2


def _java_message(exc: Exception) -> str:
    """Py4J's first line is "An error occurred while calling o123.buildFile."; the JVM's reason is the line after."""
    lines = [line.strip(" :") for line in str(exc).splitlines() if "Exception" in line or "Error:" in line]
    return (lines[0] if lines else first_line(exc, 300))[:300]


def _onnx_known_wrong(stage: Any) -> str:
    """Models onnxmltools 1.16 converts without error into wrong graphs; validation caught both (exit 9), found by an outside
    user with tutorial pipelines, so they are refused up front with the measurement instead."""
    name = type(stage).__name__
    if name == "LogisticRegressionModel" and getattr(stage, "numClasses", 2) > 2:
        return "multinomial: on iris, probabilities 0.5 off and the best class agreeing on 78% of rows"
    if name == "GBTRegressionModel":
        return "on diabetes, predictions up to 358 off for targets spread over 64"
    return ""


def _refuse_unconvertible(stages: list[Any]) -> None:
    """Name the stage onnxmltools has no converter for (its own error is a KeyError on a Python class), and refuse
    trees with categorical splits: onnxmltools 1.16 writes every split as a numeric threshold (measured on wine: a
    random forest splitting on a StringIndexer column moved probabilities by 0.1 on 43 of 178 rows)."""
    from onnxmltools.convert.sparkml.ops_names import sparkml_operator_name_map

    for stage in stages:
        wrong = _onnx_known_wrong(stage)
        if wrong:
            raise UnsupportedConversion(
                f"onnxmltools {version_of('onnxmltools')} converts {type(stage).__name__} to a graph whose outputs differ "
                f"from Spark's ({wrong})",
                "use --to pmml (JPMML-SparkML reproduces Spark on these models)",
            )
        debug = getattr(stage, "toDebugString", None)
        if isinstance(debug, str) and " in {" in debug:
            import re

            features = sorted({int(f) for f in re.findall(r"feature (\d+) (?:not )?in \{", debug)})
            raise UnsupportedConversion(
                f"onnxmltools {version_of('onnxmltools')} cannot convert {type(stage).__name__} categorical splits (features {features}: "
                "the StringIndexer/VectorIndexer columns Spark treats as categories)",
                "use --to pmml, or one-hot encode those columns (OneHotEncoder) before the trees",
            )

    known = {cls.__name__ for cls in sparkml_operator_name_map}
    missing = [type(s).__name__ for s in stages if type(s).__name__ not in known]
    if missing:
        raise UnsupportedConversion(
            f"onnxmltools {version_of('onnxmltools')} has no ONNX converter for Spark stage {', '.join(missing)}",
            "use --to pmml (JPMML-SparkML covers more stages)",
        )


@converts("spark", to="mleap", note="refused: " + MLEAP_REFUSAL)
def spark_to_mleap(model: Any, signature: Signature, out: Path, options) -> Any:
    raise UnsupportedConversion(f"cannot write MLeap bundles from Spark: {MLEAP_REFUSAL}", "use --to pmml or --to onnx for Spark pipelines")
