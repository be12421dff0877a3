"""The rows a validation verdict rests on, where they came from, and the source model's outputs on them.

Data comes from, in this order: the user's ``--sample``; the calibration set; an input example stored with the model
or package; rows the framework plugin draws from what the fitted model knows (``fitted_rows``); standard-normal rows
last, flagged as synthetic. The source runs on the input as the user would feed it (float64, NaN, strings: the
plugin's ``source_input``, a
``packager.contract.Framework`` hook); the artifact gets what its signature declares (``feeds``). Both source outputs are kept:
their difference is what the cast alone does (``cast_effect`` in the report).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from packager.columns import align_table, with_sample_names
from packager.errors import InputFileError, PackagerError, UsageError, first_line, reading
from packager.signature import (
    ShapeSpec,
    Signature,
    TensorSpec,
    parse_dynamic_axes,
    parse_input_specs,
    spec_of,
    synthesize,
    with_dynamic_axes,
)
from packager.validation import OutputKind, infer_kind_why

FITTED_ROWS = 200  # rows drawn from fitted statistics: enough for agreement figures in 0.5% steps


@dataclass(frozen=True)
class Evidence:
    """Validation inputs and the source's outputs on them."""

    signature: Signature
    feeds: Mapping[str, Any]  # as the artifact takes them (the signature's dtypes)
    expected: Mapping[str, Any]  # the source on the user's input, full precision
    cast_expected: Mapping[str, Any] | None  # the source on ``feeds`` (None when they are the user's input already)
    data_source: str
    kinds: Mapping[str, OutputKind]
    source_predict: Callable[[Mapping[str, Any]], Mapping[str, Any]]  # the source on artifact-typed feeds
    kind_rules: Mapping[str, str] = field(default_factory=dict)  # output -> the rule that decided its kind
    # regression output -> (per-column spread of the source on rows drawn from the model's fitted statistics, where
    # it came from), for outputs that do not vary on the validation rows (``model_scales``)
    scales: Mapping[str, tuple[tuple[float, ...], str]] = field(default_factory=dict)
    # the input as the user feeds the source (float64, NaN, strings): what ``predict`` gives a runtime that takes the
    # source's input (``Runtime.takes_source_input``), so its verdict is on what it will be fed; None: ``feeds`` are it
    source_feeds: Mapping[str, Any] | None = None

    @property
    def rows(self) -> int:
        return len(next(iter(self.feeds.values()))) if self.feeds else 0


def gather(
    source: Any,
    plugin: Any,
    *,
    sample: Any = None,
    calibration: Any = None,
    example: Any = None,
    input_shape: str | None = None,
    dynamic_axes: Any = None,
    output_kinds: Mapping[str, OutputKind] | None = None,
    declares: Any = None,
) -> Evidence:
    """Signature, validation rows (first available source in the documented order) and the source's outputs."""
    from packager.samples import load_sample

    data, origin, where = None, "synthetic", ""
    for given, name in ((sample, "sample"), (calibration, "calibration"), (example, "input-example")):
        if given is not None:
            data, origin = (load_sample(given) if isinstance(given, (str, Path)) else given), name
            where = Path(given).name if isinstance(given, (str, Path)) else f"the {name} rows"
            break
    if data is None and input_shape:  # shapes but no data: synthesize rows of those shapes (and dtypes, if named)
        specs = parse_input_specs(input_shape)
        given = Signature(tuple(TensorSpec(n, s.dtype or "float32", (None, *s.shape[1:])) for n, s in specs.items()))
        # an integer input given by shape is an index (an embedding row, a category id): 0 and 1 exist in any table of
        # two or more rows, where 0..9 went out of range of a 4-row embedding
        data, where = synthesize(given, rows=8, int_high=2), f"synthesized from --input-shape {input_shape}"
    label = f"the model in {source.info.file}" if source.info.file else f"the {source.framework} model"
    with reading(label, "it loaded, but is not a usable fitted model; re-export it from the training code"):
        signature = plugin.signature(source.model, data)
        if declares is not None:  # the container's own signature (an MLmodel's), before the user's flags
            signature = declares(signature)
        if input_shape:
            signature = apply_input_shape(signature, parse_input_specs(input_shape))
        if dynamic_axes:
            axes = parse_dynamic_axes(dynamic_axes) if isinstance(dynamic_axes, str) else {k: tuple(v) for k, v in dynamic_axes.items()}
            signature = with_dynamic_axes(signature, axes)
        signature = with_sample_names(signature, data)  # a table sample names the features of a model that has none
        data = align_table(signature, data, where)  # by name when the model knows its features' names
        if data is None:
            drawn = plugin.fitted_rows(source.model, signature, FITTED_ROWS)
            if drawn is not None:  # a plugin may name its rows otherwise (text models: built-in sentences)
                data, origin = drawn, plugin.fitted_rows_source(source.model)
        feeds = plugin.feeds(source.model, signature, data)
        full = plugin.source_input(source.model, signature, data)
    with on_inputs(label, feeds, f"rows: {where or origin}"):
        cast_expected = plugin.predict(source.model, signature, feeds)
        expected = plugin.predict(source.model, signature, full) if full is not None else cast_expected
    kinds, rules = decide_kinds(plugin.output_kinds(source.model, expected), expected)
    unknown = set(output_kinds or {}) - set(expected)
    if unknown:
        raise UsageError(f"--output-kind names unknown outputs {sorted(unknown)}", f"the model's outputs are {list(expected)}")
    kinds.update(output_kinds or {})
    rules.update({name: "--output-kind" for name in output_kinds or {}})
    outputs = tuple(spec_of(name, value) for name, value in expected.items())
    with reading(label, "it loaded, but is not a usable fitted model; re-export it from the training code"):
        scales = model_scales(source.model, plugin, signature, expected, kinds) if origin != "fitted-statistics" else {}
    return Evidence(
        signature.with_outputs(outputs),
        feeds,
        expected,
        cast_expected if full is not None else None,
        origin,
        kinds,
        lambda f: plugin.predict(source.model, signature, f),
        rules,
        scales,
        full,
    )


def model_scales(model: Any, plugin: Any, signature: Signature, expected: Mapping[str, Any], kinds: Mapping[str, OutputKind]):
    """For each regression output whose values do not vary on the validation rows (one row, identical rows), the
    spread of the source's outputs on rows drawn from the model's fitted statistics: the scale an error is measured
    against where the rows give none. Empty when the model keeps no statistics (then the criterion says it cannot
    judge); standard-normal rows are never a scale (unscaled features would make any error look small)."""
    import numpy as np

    flat = []
    for name, value in expected.items():
        array = np.asarray(value)
        if kinds.get(name) is not OutputKind.REGRESSION or array.dtype.kind not in "fiu" or not array.size:
            continue
        columns = array.reshape(len(array), -1).astype(np.float64)
        if not (np.ptp(columns, axis=0) > 0).all():
            flat.append(name)
    if not flat or plugin.fitted_rows_source(model) != "fitted-statistics":
        return {}
    drawn = plugin.fitted_rows(model, signature, FITTED_ROWS)
    if drawn is None:
        return {}
    full = plugin.source_input(model, signature, drawn)
    outputs = plugin.predict(model, signature, full if full is not None else plugin.feeds(model, signature, drawn))
    scales = {}
    for name in flat:
        columns = np.asarray(outputs.get(name), dtype=np.float64)
        if columns.ndim == 0 or len(columns) < 2:
            continue
        stds = columns.reshape(len(columns), -1)
        stds = np.where(np.isfinite(stds), stds, np.nan)
        spread = np.nanstd(stds, axis=0)
        if spread.shape[0] == np.asarray(expected[name]).reshape(len(expected[name]), -1).shape[1] and (spread > 0).any():
            where = f"the spread of the source's outputs on {len(columns)} rows drawn from the model's fitted statistics"
            scales[name] = (tuple(float(v) if v > 0 else 0.0 for v in spread), where)
    return scales


def decide_kinds(declared: Mapping[str, Any], expected: Mapping[str, Any]) -> tuple[dict[str, OutputKind], dict[str, str]]:
    """Each output's kind and the rule that decided it: what the framework plugin knows about the model first (a plugin
    may give ``(kind, reason)``, e.g. "LGBMRanker is a ranker"), the values last (``infer_kind_why``)."""
    kinds, rules = {}, {}
    for name, value in expected.items():
        given = declared.get(name)
        if given:
            kind, why = given if isinstance(given, tuple) else (given, "")
            kinds[name], rules[name] = OutputKind(kind), f"plugin: {why}" if why else "plugin"
        else:
            kinds[name], why = infer_kind_why(value)
            rules[name] = f"values: {why}"
    return kinds, rules


@contextmanager
def on_inputs(label: str, feeds: Mapping[str, Any], where: str):
    """The source model run on the validation rows: a failure there is about the inputs (a missing input, a float where
    an id goes), so the error names each input as it was fed, where the rows came from, and how to give them."""
    try:
        yield
    except PackagerError:
        raise
    except Exception as exc:
        if "NotFitted" in type(exc).__name__:  # the model, not its inputs: scikit-learn's unfitted estimator
            raise InputFileError(
                f"{label} is not fitted ({type(exc).__name__}: {first_line(exc)})", "re-export it from the training code after fit()"
            ) from exc
        fed = ", ".join(f"{name} {getattr(v, 'dtype', '?')} {tuple(getattr(v, 'shape', ()))}" for name, v in feeds.items())
        shapes = ";".join(
            f"{name}:{','.join(map(str, (1, *getattr(v, 'shape', (0,))[1:])))}:{getattr(v, 'dtype', '?')}" for name, v in feeds.items()
        )
        raise UsageError(
            f"{label} fails on its inputs as given ({fed}; {where}): {type(exc).__name__}: {_cause(exc)}",
            f"give one array per input, each of its dtype: --sample rows.npz with arrays {', '.join(feeds)}, or name each dtype "
            f"in --input-shape '{shapes}' (an id or index input takes int64)",
        ) from exc


def _cause(exc: BaseException) -> str:
    """TorchScript's first line is "The following operation failed in the TorchScript interpreter."; the cause is last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        return lines[-1].removeprefix(f"{type(exc).__name__}: ")[:300]
    return first_line(exc)


def apply_input_shape(signature: Signature, shapes: Mapping[str, ShapeSpec]) -> Signature:
    """The signature with the shapes (and dtypes, where named) of ``--input-shape``."""
    if len(shapes) == 1 and len(signature.inputs) == 1:
        (only,) = shapes.values()
        specs: tuple[TensorSpec, ...] = (_given(signature.inputs[0], only),)
    else:
        unknown = set(shapes) - set(signature.input_names)
        if unknown:
            raise UsageError(f"--input-shape names unknown inputs {sorted(unknown)}", f"the model's inputs are {signature.input_names}")
        specs = tuple(_given(s, shapes[s.name]) if s.name in shapes else s for s in signature.inputs)
    for old, new in zip(signature.inputs, specs, strict=True):
        if old.shape[1:] and None not in old.shape[1:] and old.shape[1:] != new.shape[1:]:
            raise UsageError(
                f"--input-shape gives {old.name} shape {new.shape[1:]}, but the model expects {old.shape[1:]}",
                "drop --input-shape or fix it",
            )
    return Signature(specs, signature.outputs, signature.columnar)


def _given(spec: TensorSpec, given: ShapeSpec) -> TensorSpec:
    return replace(spec, shape=(None, *given.shape[1:]), dtype=given.dtype or spec.dtype)
