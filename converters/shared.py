"""What plugins share, under public names: one plugin never imports another plugin's private names.

- ``column_feeds``: a table's columns as one (batch, 1) feed per signature input (scikit-learn, Spark and CatBoost
  models that select columns by name);
- ``rename_onnx_outputs``: graph outputs named as the signature says (skl2onnx and onnxmltools graphs);
- ``trace_torch``: a torch module traced once with an example (torch's own export paths and Hugging Face's Core ML);
- the scikit-learn plugin's extension point for tree ensembles of other libraries: a boosting plugin declares a
  ``TreeConverter`` at module level (the registry collects it, as it collects ``Format``s); the scikit-learn plugin
  asks ``tree_converters_for(model)`` and never imports the boosting plugins by name.

Nothing here is registered itself and nothing heavy is imported at module level.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

from packager.contract import Extension
from packager.errors import PluginError, UsageError
from packager.signature import Signature

TREES = "sklearn.trees"


@dataclass(frozen=True)
class TreeConverter(Extension):
    """How the scikit-learn plugin converts a scikit-learn-API tree ensemble of another library (the
    ``register_tree_converter`` hook: declare one at module level of the library's plugin)::

        TREES = TreeConverter("xgboost", register_skl2onnx=register_skl2onnx, split_dtype="float32")

    ``library`` is the top-level package of the estimators' classes (``type(e).__module__.split(".")[0]``);
    ``register_skl2onnx()`` registers the library's skl2onnx converters before a model holding its estimators is
    converted; ``split_dtype`` is the precision of the library's split thresholds ("float64" gives the ONNX input
    float64, so no row crosses a threshold by rounding); ``refuse_pmml(model)`` raises before the JVM starts when no
    JPMML converter knows a step."""

    library: str
    register_skl2onnx: Callable[[], None]
    split_dtype: str = "float32"
    refuse_pmml: Callable[[Any], None] | None = None

    point: ClassVar[str] = TREES

    def __post_init__(self) -> None:
        if self.split_dtype not in ("float32", "float64"):
            raise PluginError(f"tree converter {self.library} declares split_dtype={self.split_dtype!r}", "use 'float32' or 'float64'")

    @property
    def key(self) -> str:
        return self.library


def tree_converters() -> dict[str, TreeConverter]:
    """The declared tree converters by library."""
    from packager.plugins import default_registry

    return {t.library: t for t in default_registry().extensions_of(TREES)}


def tree_converters_for(model: Any) -> list[TreeConverter]:
    """The tree converters of the libraries whose estimators the model holds (alone, pipeline steps,
    ColumnTransformer branches), in library order."""
    known = tree_converters()
    return [known[name] for name in sorted({type(e).__module__.split(".")[0] for e in foreign_estimators(model, known)})]


def foreign_estimators(obj: Any, known: dict[str, TreeConverter] | None = None, seen: set[int] | None = None) -> Iterator[Any]:
    """The estimators of libraries with a declared tree converter that ``obj`` is or holds."""
    known = tree_converters() if known is None else known
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if type(obj).__module__.split(".")[0] in known:
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from foreign_estimators(item, known, seen)
    elif type(obj).__module__.startswith("sklearn.") and hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            if isinstance(value, (list, tuple)) or type(value).__module__.split(".")[0] in ("sklearn", *known):
                yield from foreign_estimators(value, known, seen)


def column_feeds(signature: Signature, sample: Any, full_precision: bool = False) -> dict[str, Any]:
    """One (batch, 1) feed per input column of ``sample`` (a table): strings as object arrays, numbers in the
    signature's dtype, or float64 with ``full_precision`` (the source model's own input)."""
    if not hasattr(sample, "columns"):
        raise UsageError(
            "this model selects columns by name, so the sample must be a table",
            "give --sample as .csv or .parquet with the training columns",
        )
    missing = [s.name for s in signature.inputs if s.name not in sample.columns]
    if missing:
        raise UsageError(f"the sample lacks columns {missing}", f"the model needs {signature.input_names}")
    feeds = {}
    for spec in signature.inputs:
        column = sample[[spec.name]].to_numpy()
        if spec.is_text:
            feeds[spec.name] = column.astype(str).astype(object)
        elif full_precision and column.dtype.kind in "fiu":
            feeds[spec.name] = column.astype("float64") if spec.dtype.startswith("float") else column
        else:
            feeds[spec.name] = column.astype(spec.dtype)
    return feeds


def rename_onnx_outputs(proto: Any, names: list[str]) -> None:
    """Give graph outputs the signature's names (positionally), rewiring the nodes that produce them."""
    renames = {}
    for output, name in zip(proto.graph.output, names, strict=False):  # outputs beyond the names keep theirs
        if output.name != name:
            renames[output.name] = name
    taken = {o for node in proto.graph.node for o in node.output} | {i.name for i in proto.graph.input}
    if any(new in taken and new not in renames for new in renames.values()):
        return  # a clash with an internal name: keep skl2onnx's names (runtime maps positionally)
    for node in proto.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    for output in proto.graph.output:
        output.name = renames.get(output.name, output.name)


def trace_torch(model: Any, example: tuple[Any, ...]) -> Any:
    """``torch.jit.trace`` of a module in eval mode (a ScriptModule is returned as is)."""
    from packager.deps import require

    torch = require("torch", "torch", "PyTorch models")
    if isinstance(model, torch.jit.ScriptModule):
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(model.eval(), example, check_trace=False)
