"""PMML: export scikit-learn with sklearn2pmml (Java), score with jpmml_evaluator (Java) to validate.

Both are AGPL-3.0 and need a JVM (11+); they live in the optional ``pmml`` extra.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from packager.contract import Artifact, Format, Runtime
from packager.deps import java_version, require, version_of
from packager.errors import ConversionError, InputFileError, MissingDependency, UnsupportedConversion, ValidationFailed, first_line
from packager.plugins import converts, runs
from packager.validation import FLOAT32, criteria_table

TARGET_FIELD = "y"


@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """sklearn2pmml prints the JVM's log and a banner; keep them off the user's terminal, keep them for errors."""
    lines: list[str] = []
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield lines
    finally:
        lines.extend(buffer.getvalue().splitlines())


def _refuse_unsupported_sklearn(lines: list[str]) -> None:
    """JPMML-SkLearn checks the scikit-learn version of every pickled step: a newer scikit-learn than the
    converter knows fails every model (sklearn2pmml 0.133.1 refuses 1.9.1, "downgrade Scikit-Learn to
    version '1.9.0'"). That is an environment to fix, not a model to convert elsewhere."""
    import re

    text = "\n".join(lines)
    found = re.search(r"Scikit-Learn version '([^']+)' is not supported.*?downgrade Scikit-Learn to version '([^']+)'", text, re.S)
    if found:
        installed, supported = found.groups()
        raise MissingDependency(
            f"sklearn2pmml {version_of('sklearn2pmml')} does not support scikit-learn {installed} (it supports up to {supported})",
            f"pip install 'scikit-learn=={supported}' (the packager[pmml] extra pins it), or upgrade sklearn2pmml when a newer one exists",
        )


def _java_failure(lines: list[str]) -> str:
    interesting = [line for line in lines if "Exception" in line or "SEVERE" in line or "not supported" in line.lower()]
    return (interesting[-1] if interesting else (lines[-1] if lines else "no output")).strip()[:300]


@converts("sklearn", to="pmml", note="sklearn2pmml (Java, AGPL-3.0)")
def sklearn_to_pmml(model: Any, signature, out: Path, options) -> Any:
    """Wrap in a PMMLPipeline with the signature's field names and run the sklearn2pmml JVM."""
    if not hasattr(model, "predict"):
        last = model.steps[-1][1] if hasattr(model, "steps") else model
        raise UnsupportedConversion(
            f"PMML cannot hold a model that ends in a transformer ({type(last).__name__}): a PMML document needs a model element",
            "export a Pipeline that ends in an estimator, or use --to onnx / skops",
        )
    from .shared import tree_converters_for

    for trees in tree_converters_for(model):  # a step no JPMML converter knows is refused before the JVM starts
        if trees.refuse_pmml is not None:
            trees.refuse_pmml(model)
    java = java_version()
    s2p = require("sklearn2pmml", "pmml", "PMML export")
    fields = pmml_field_names(signature)
    path = out / "model.pmml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _member_fields_named(_resolved_response_method(model))
        pipeline = s2p.make_pmml_pipeline(model, active_fields=fields, target_fields=[TARGET_FIELD])
        with _captured_output() as jvm_lines:
            try:
                s2p.sklearn2pmml(pipeline, str(path), java_opts=list(CONVERTER_JVM_OPTIONS))
                failure = None
            except Exception as exc:
                failure = exc
    if failure is not None or not path.exists():
        _refuse_unsupported_sklearn(jvm_lines)
        detail = _java_failure(jvm_lines)
        if "not supported" in detail.lower() or "IllegalArgumentException" in detail:
            raise UnsupportedConversion(
                f"sklearn2pmml cannot convert {type(model).__name__}: {detail}", "use --to onnx or skops for this model"
            )
        raise ConversionError(f"sklearn2pmml failed on {type(model).__name__}: {detail}", "run with --debug to see the JVM output")
    _unique_chain_outputs(path)
    return Artifact(
        path, {"converter": "sklearn2pmml", "converter_version": version_of("sklearn2pmml"), "java": java, "active_fields": fields}
    )


def _member_fields_named(model: Any) -> Any:
    """A copy of an ensemble whose members' transformer outputs carry the member's name.

    JPMML names a transformer's output after its function and input ("standardScaler(x1)"): two members of a
    StackingClassifier/VotingClassifier that both scale the same columns define that field twice, and JPMML stops
    with NamingException "Field 'standardScaler(x1)' is already defined" (exit 7 before). sklearn2pmml's own answer
    is its MultiAlias decoration (sklearn2pmml.decoration, prefit=True): each fitted transformer keeps its values and
    its outputs are named "<member>/<step>[j]". The model given is not changed; a model without such members is
    returned as it is."""
    members = [m for m in _ensemble_members(model) if getattr(m[1], "steps", None) and len(m[1].steps) > 1]
    if not members:
        return model
    import copy
    import importlib

    MultiAlias = importlib.import_module("sklearn2pmml.decoration").MultiAlias  # noqa: N806 (a class; sklearn2pmml ships no stubs)

    model = copy.deepcopy(model)
    for member, pipeline in _ensemble_members(model):
        for index, (step, transformer) in enumerate(list(getattr(pipeline, "steps", None) or [])[:-1]):
            width = _output_width(transformer)
            if width:
                names = [f"{member}/{step}[{j}]" for j in range(width)]
                pipeline.steps[index] = (step, MultiAlias(transformer, names, prefit=True))
    return model


def _unique_chain_outputs(path: Path) -> None:
    """Rename output fields that two segments of a model chain both declare, in place.

    JPMML-SkLearn names the probability outputs of a StackingClassifier member "probability(<segment>, <class>)",
    but a member that is a Pipeline gets the bare "probability(<class>)" that the final estimator declares too:
    JPMML-Evaluator then answers every row with DuplicateFieldValueException (labels agreed on 0% of rows,
    measured on breast_cancer with StandardScaler+LogisticRegression and MinMaxScaler+RandomForest members). The
    member's copy is renamed the way JPMML names the others; nothing refers to it (the final estimator reads the
    "predict_proba(<segment>, <class>)" fields)."""
    import re
    import xml.etree.ElementTree as ET

    from packager.safety.xml import parse_xml

    root = parse_xml(path)
    namespace = root.tag[1 : root.tag.index("}")] if root.tag.startswith("{") else ""
    ns = f"{{{namespace}}}" if namespace else ""
    referenced = {e.get("field") for e in root.iter(f"{ns}FieldRef")}
    changed = False
    for chain in (s for s in root.iter(f"{ns}Segmentation") if s.get("multipleModelMethod") == "modelChain"):
        segments = chain.findall(f"{ns}Segment")
        final = {f.get("name") for f in segments[-1].iter(f"{ns}OutputField")} if segments else set()
        for segment in segments[:-1]:
            for field in segment.iter(f"{ns}OutputField"):
                name = field.get("name") or ""
                if name in final and name not in referenced and re.fullmatch(r"\w+\([^,()]*\)", name):
                    field.set("name", name.replace("(", f"({segment.get('id')}, ", 1))
                    changed = True
    if changed:
        ET.register_namespace("", namespace)
        ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)


def _ensemble_members(model: Any) -> list[tuple[str, Any]]:
    """(name, fitted member) of a Stacking/Voting ensemble, the model itself or a Pipeline's last step."""
    while getattr(model, "steps", None):
        model = model.steps[-1][1]
    named = getattr(model, "named_estimators_", None)
    if named is None or not hasattr(model, "estimators_"):
        return []
    return [(str(name), member) for name, member in named.items() if member not in (None, "drop")]


def _output_width(transformer: Any) -> int:
    """How many columns a fitted transformer writes (0 when it cannot say: then it keeps JPMML's own names)."""
    try:
        return len(transformer.get_feature_names_out())
    except Exception:  # transformers without feature-name support: left as they are
        return 0


def pmml_field_names(signature) -> list[str]:
    """PMML field names: the column names of a columnar signature, else x1..xn for a matrix input."""
    if signature.columnar:
        return signature.input_names
    return [f"x{i + 1}" for i in range(signature.inputs[0].shape[1])]


PMML_CRITERIA = criteria_table({None: FLOAT32})  # JPMML computes in double from the float32-declared inputs


def _check_pmml(path: Path) -> None:
    from packager.safety.xml import check_xml

    check_xml(path)


def is_pmml(path: Path, head: bytes) -> bool:
    """An XML document whose root element is PMML (any encoding, any prolog length)."""
    from packager.formats import looks_like_xml

    return looks_like_xml(path, head, "PMML")


PMML = Format("pmml", title="PMML (XML)", suffix=".pmml", check=_check_pmml, detect=is_pmml, containers=("xml",))


@runs(PMML, criteria=PMML_CRITERIA)
class PmmlRuntime(Runtime):
    """JPMML-Evaluator through jpmml_evaluator (JPype backend)."""

    name = "jpmml-evaluator"
    distribution = "jpmml_evaluator"
    may_omit_auxiliary_outputs = True  # e.g. no probabilities for SVC, affinities instead of KMeans distances

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "sklearn2pmml": version_of("sklearn2pmml")}

    def requirements(self) -> list[str]:
        return [*super().requirements(), "JPype1", "pandas", "# and a Java 11+ runtime"]

    def load(self, path: Path, *, trust: bool = False, threads: int | None = None) -> Any:
        """JPMML reads a private copy of the bytes that were checked, not ``path`` again (which may have changed since)."""
        import tempfile

        from packager.safety.xml import check_xml

        checked = check_xml(path)
        java_version()
        jpmml = require("jpmml_evaluator", "pmml", "scoring PMML")
        _start_jvm(len(checked))
        with tempfile.TemporaryDirectory(prefix="packager-pmml-") as private:  # mode 0700: no one else can swap the copy
            copy = Path(private) / "model.pmml"
            copy.write_bytes(checked)
            try:
                evaluator = jpmml.make_evaluator(str(copy), backend="jpype").verify()
            except Exception as exc:
                raise InputFileError(
                    f"JPMML cannot load {Path(path).name}: {first_line(exc, 300)}", "the PMML document is invalid or has no scorable model"
                ) from exc
        return evaluator

    def predict(self, evaluator: Any, signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        if signature.columnar:
            frame = pd.DataFrame({n: feeds[n].reshape(-1) for n in signature.input_names})
        else:
            # a text pipeline's one column stays str: casting every matrix to float64 ended `--to all` on a TfidfVectorizer
            # pipeline in an internal error ("could not convert string to float") instead of a verdict
            dtype = object if signature.inputs[0].dtype == "str" else np.float64
            frame = pd.DataFrame(np.asarray(feeds[signature.input_names[0]], dtype=dtype), columns=pmml_field_names(signature))
        try:
            result = evaluator.evaluateAll(frame)
        except Exception as exc:
            raise ValidationFailed(
                f"JPMML cannot score the sample: {first_line(exc, 300)}", "the PMML document does not accept these inputs"
            ) from exc
        return _map_outputs(result, signature.output_names)

    def inspect(self, path: Path) -> dict[str, Any]:
        from packager.safety.xml import parse_xml

        root = parse_xml(path)
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        fields = [f.get("name") for f in root.iter(f"{ns}DataField")]
        models = [child.tag.replace(ns, "") for child in root if child.tag.replace(ns, "").endswith("Model")]
        return {"pmml_version": root.get("version"), "models": models, "data_fields": fields}


# The converter's JVM lives for one conversion: the C1 compiler only and a single GC thread suit that. Measured on this
# 2-core machine, interleaved, under load: a 20-tree forest 8.7-12.1 s -> 2.2-7.7 s, a 200-tree forest (30 MB of PMML)
# 32.7-38.7 s -> 28.5-30.4 s. Same PMML bytes (the options change how the JVM compiles, not what the converter does).
CONVERTER_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

HEAP_PER_MODEL_BYTE = 40  # measured: a 12 MB RandomForest (200 trees) PMML scores 8,192-row batches in a 512 MB heap
HEAP_MIN_MB, HEAP_MAX_MB = 256, 1024


def _start_jvm(model_bytes: int) -> None:
    """Start JPype's JVM with a heap sized to the model, before jpmml_evaluator starts one with Java's default (a
    quarter of the machine's memory: the 200-tree forest's `predict` of 100,000 rows peaked at 2.4-4.6 GB RSS with it,
    1.06 GB with -Xmx768m, measured side by side). One JVM per process: a started one is kept as it is."""
    import jpype  # type: ignore[import-untyped]

    if jpype.isJVMStarted():
        return
    from jpmml_evaluator.jpype import _classpath  # type: ignore[import-untyped]  # the evaluator's own jars

    heap = max(HEAP_MIN_MB, min(HEAP_MAX_MB, 64 + HEAP_PER_MODEL_BYTE * model_bytes // (1 << 20)))
    jpype.startJVM(f"-Xmx{heap}m", "-XX:+UseSerialGC", classpath=_classpath([]))


def _resolved_response_method(model: Any) -> Any:
    """FixedThresholdClassifier / TunedThresholdClassifierCV with ``response_method="auto"`` (the default):
    JPMML-SkLearn refuses the value ("Attribute 'response_method' has an unsupported value 'auto'", exit 7, after the
    ONNX refusal sent users here). scikit-learn resolves "auto" to the fitted estimator's predict_proba, else
    decision_function: a shallow copy naming that method converts the same model (the caller's object is untouched)."""
    _refuse_wide_labels(model)
    refusal = threshold_refusal(model)
    if refusal:
        raise UnsupportedConversion(refusal, "use --to skops or joblib, which keep the model as it is")
    if type(model).__name__ not in THRESHOLD_CLASSIFIERS or getattr(model, "response_method", None) != "auto":
        return model
    import copy

    resolved = copy.copy(model)
    resolved.response_method = "predict_proba"
    return resolved


THRESHOLD_CLASSIFIERS = ("FixedThresholdClassifier", "TunedThresholdClassifierCV")
INT32 = (-(2**31), 2**31 - 1)  # JPMML reads integer class labels as Java ints (Math.toIntExact: "integer overflow")


def _refuse_wide_labels(model: Any) -> None:
    """Integer class labels outside Java's int range: sklearn2pmml's JVM failed with "java.lang.ArithmeticException:
    integer overflow", exit 7, "run with --debug" (labels like 2**40, an outside user). Refused before the JVM starts,
    naming the label."""
    import numpy as np

    from .sklearn_walk import nested

    for obj in nested(model):
        classes = getattr(obj, "classes_", None)
        if classes is None or isinstance(classes, list):
            continue
        array = np.asarray(classes)
        if array.dtype.kind not in "iu" or not array.size:
            continue
        wide = array[(array < INT32[0]) | (array > INT32[1])]
        if wide.size:
            raise UnsupportedConversion(
                f"PMML (JPMML) reads integer class labels as 32-bit ints, and {type(obj).__name__} has label {int(wide[0])} "
                f"outside {INT32[0]}..{INT32[1]}",
                "use --to onnx, skops or joblib, or fit on labels that fit in 32 bits (or strings)",
            )


def threshold_refusal(model: Any) -> str:
    """Why PMML cannot hold this threshold classifier, or "": JPMML-SkLearn thresholds predict_proba only
    ("Attribute 'response_method' has an unsupported value 'decision_function'": a LinearSVC inside, measured)."""
    if type(model).__name__ not in THRESHOLD_CLASSIFIERS:
        return ""
    method = getattr(model, "response_method", None)
    fitted = getattr(model, "estimator_", None)
    if method == "auto" and hasattr(fitted, "predict_proba"):
        return ""
    if method == "predict_proba":
        return ""
    inner = type(fitted).__name__ if fitted is not None else "its estimator"
    uses = "decision_function" if method == "auto" else method
    return f"JPMML-SkLearn thresholds only predict_proba, and this {type(model).__name__} thresholds {inner}'s {uses}"


def _map_outputs(result: Any, names: list[str]) -> dict[str, Any]:
    """JPMML columns -> signature outputs: target (or cluster) -> first output, probability(*) -> probabilities."""
    import numpy as np

    columns = list(result.columns)
    probability_columns = [c for c in columns if str(c).startswith("probability(")]
    # a threshold classifier's decision is JPMML's "thresholded(y)"; "y" is the argmax label, which ignores the
    # threshold (FixedThresholdClassifier(threshold=0.3) on breast_cancer: 8 of 569 rows differ, 1 of 100 validation
    # rows: inside the 99% label criterion, a false pass)
    thresholded = f"thresholded({TARGET_FIELD})"
    primary = next((c for c in (thresholded, TARGET_FIELD, "cluster") if c in columns), columns[0])
    mapped: dict[str, Any] = {}
    for index, name in enumerate(names):
        if name == "probabilities" and probability_columns:
            mapped[name] = result[probability_columns].to_numpy(dtype=np.float64)
        elif index == 0:
            values = result[primary].to_numpy()
            mapped[name] = values.astype(np.float64) if name == "variable" else values
    return mapped
