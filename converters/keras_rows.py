"""Validation rows drawn from what a Keras model learned about its inputs, for a model converted without ``--sample``.

Standard-normal rows miss most of a model's input space when the model normalizes its own inputs: a ``Normalization``
layer adapted to prices around 5e5 sees N(0, 1) rows as 5e5 standard deviations away, and an ``Embedding`` with a
vocabulary of 20,000 sees only ids 0-9. So an input consumed directly by an adapted ``Normalization`` gets rows drawn
from N(mean, variance) and one consumed by an ``Embedding`` gets ids over the whole vocabulary. Any other input keeps
the synthetic rows; a model with neither kind of layer gets None (the caller then says its rows are synthetic).
"""

from __future__ import annotations

from typing import Any

from packager.signature import Signature, synthesize


def fitted_rows(model: Any, signature: Signature, rows: int, seed: int = 0) -> dict[str, Any] | None:
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = synthesize(signature, rows, seed)
    drawn = False
    # a model without .inputs (a Sequential never built on an Input) has no consumer lists: nothing is drawn
    for spec, layers in zip(signature.inputs, _consumers(model), strict=False):
        for layer in layers:
            value = _from_normalization(layer, feeds[spec.name].shape, rng) if _is(layer, "Normalization") else None
            if value is None and _is(layer, "Embedding"):
                value = rng.integers(0, int(layer.input_dim), size=feeds[spec.name].shape)
            if value is not None:
                feeds[spec.name] = value.astype(feeds[spec.name].dtype)
                drawn = True
                break
    return feeds if drawn else None


def _consumers(model: Any) -> list[list[Any]]:
    """For each model input (in order), the layers that take it directly."""
    inputs = list(getattr(model, "inputs", None) or ())
    found: list[list[Any]] = [[] for _ in inputs]
    for layer in getattr(model, "layers", ()):
        try:
            given = layer.input
        except (AttributeError, ValueError):  # a layer called on several inputs has no single .input
            continue
        for tensor in given if isinstance(given, (list, tuple)) else [given]:
            for i, model_input in enumerate(inputs):
                if tensor is model_input:
                    found[i].append(layer)
    return found


def _is(layer: Any, name: str) -> bool:
    return any(c.__name__ == name and c.__module__.startswith("keras") for c in type(layer).__mro__)


def _from_normalization(layer: Any, shape: tuple[int, ...], rng: Any) -> Any:
    """Rows with the statistics the layer was adapted to (None for an inverting layer or one never adapted)."""
    import numpy as np

    if getattr(layer, "invert", False):
        return None
    try:
        mean, variance = np.asarray(layer.mean, dtype="float64"), np.asarray(layer.variance, dtype="float64")
        return mean + np.sqrt(np.maximum(variance, 0.0)) * rng.standard_normal(shape)
    except (AttributeError, TypeError, ValueError):  # not adapted yet, or statistics that do not broadcast to the input
        return None
