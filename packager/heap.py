"""The heap a long step starts with is frozen while it runs (``gc.freeze``): the collections the step triggers, and the
``gc.collect()`` calls converter libraries make, then walk only the objects the step created.

Why: a process that has imported TensorFlow, torch and coremltools holds millions of objects, and each full collection
walks them all. coremltools calls ``gc.collect()`` three times per Keras conversion: 7.8 s of a 9.5 s Core ML
conversion of a 2-layer model (cProfile); a Keras model to all 9 targets took 31.2 s / 33.6 s, and 10.8 s / 10.8 s with
the heap frozen (interleaved, same process, under load). What the step creates and drops is collected as before; what
existed before it is only not *scanned* until the step ends (then it is unfrozen into the oldest generation)."""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

_lock = threading.Lock()
_depth = 0  # steps running now, in any thread: the heap is unfrozen when the last one ends

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def frozen() -> Iterator[None]:
    global _depth
    with _lock:
        if _depth == 0:
            gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()


def frozen_while(step: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``step`` runs inside :func:`frozen`."""

    @functools.wraps(step)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with frozen():
            return step(*args, **kwargs)

    return wrapper
