"""numpy trusts an array's pickled state: checked before ``__setstate__`` runs.

Measured (numpy 2.4.6): an object array's state ``(1, (2,), dtype('O'), False, [])`` or its 4-tuple form
``((2,), dtype('O'), False, [])`` makes ``ndarray.__setstate__`` read uninitialised pointers (SIGSEGV,
exit 139) or leave garbage that later passes for data. So an array (or masked array) state must be
one of numpy's own forms, its shape non-negative ints, and its data exactly as long as shape and dtype
say: a list of that many items for object dtypes, that many bytes otherwise.
"""

from __future__ import annotations

from typing import Any

from packager.errors import InputFileError

HINT = "the file is corrupt or crafted; re-export it from the training code"


def check_array_state(obj: Any, state: Any, label: str) -> None:
    """Raise InputFileError unless ``state`` is a state numpy can apply to ``obj`` without reading foreign memory."""
    try:
        import numpy
    except ImportError:
        return
    if isinstance(obj, numpy.ma.MaskedArray):
        # MaskedArray.__setstate__((version, shape, dtype, is_fortran, data, mask, fill_value)) sets data and mask as ndarray states
        if not isinstance(state, tuple) or len(state) != 7:
            raise InputFileError(f"{label} holds a numpy masked array with a state numpy does not write", HINT)
        _, shape, dtype, _, data, mask, _ = state
        _check(shape, dtype, data, label)
        _check(shape, numpy.ma.make_mask_descr(dtype) if isinstance(dtype, numpy.dtype) else None, mask, label)
    elif isinstance(obj, numpy.ndarray):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise InputFileError(f"{label} holds a numpy array with a state numpy does not write", HINT)
        shape, dtype, _, data = state[-4:]
        _check(shape, dtype, data, label)


def _check(shape: Any, dtype: Any, data: Any, label: str) -> None:
    import numpy

    if not (isinstance(shape, tuple) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise InputFileError(f"{label} holds a numpy array with shape {shape!r}", HINT)
    if not isinstance(dtype, numpy.dtype):
        raise InputFileError(f"{label} holds a numpy array whose dtype is a {type(dtype).__name__}", HINT)
    count = 1
    for d in shape:
        count *= d
    if dtype.hasobject:
        valid = isinstance(data, list) and len(data) == count
    else:
        valid = isinstance(data, (bytes, bytearray)) and len(data) == count * dtype.itemsize
    if not valid:
        size = len(data) if isinstance(data, (list, bytes, bytearray)) else type(data).__name__
        raise InputFileError(f"{label} holds a numpy array whose data ({size}) does not match its shape {shape!r} and dtype {dtype}", HINT)
