"""joblib files, read with our unpickler and our own array reader: joblib's reader is never used.

joblib stores each numpy array as a ``NumpyArrayWrapper`` followed by its raw bytes; its unpickler
replaces the wrapper by ``wrapper.read(...)``. Measured with joblib 1.6.0, that reader:
* for object arrays, unpickles the nested stream with a fresh ``pickle._Unpickler`` that inherits
  ``find_class`` but not our call bounds or array-state check: a crafted ``_reconstruct`` state
  segfaults numpy (exit 139) or yields uninitialised pointers that pass validation;
* for other arrays, allocates ``np.empty(count)`` from the wrapper's shape before reading a byte
  (a 1 KB file asking for a 1 TiB array);
* memory-maps the file when the loader asks for ``mmap_mode``;
* for joblib < 0.10 ``NDArrayWrapper``, calls ``np.load(<path named in the pickle>, allow_pickle=True)``:
  a second, unrestricted unpickler on any file (refused by the allow-list).
Here object arrays go through :class:`RestrictedUnpickler` (same budget, same checks), raw arrays
are read in chunks so memory only grows with bytes actually present, and nothing is ever mapped.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from packager.errors import InputFileError, MissingDependency
from packager.safety.arrays import HINT
from packager.safety.bounds import Budget
from packager.safety.pickles import RestrictedUnpickler, guarded_load

_CHUNK = 16 << 20  # joblib's own BUFFER_SIZE: reads of > 2**32 bytes break crc32 on gzip streams


class JoblibUnpickler(RestrictedUnpickler):
    """RestrictedUnpickler that replaces each NumpyArrayWrapper by the array read from the stream after it."""

    def load_build(self) -> None:
        super().load_build()
        from joblib.numpy_pickle import NumpyArrayWrapper

        if isinstance(self.stack[-1], NumpyArrayWrapper):
            self.stack[-1] = read_wrapped_array(self.stack[-1], self)

    dispatch = dict(RestrictedUnpickler.dispatch)  # typed by RestrictedUnpickler.dispatch
    dispatch[pickle.BUILD[0]] = load_build


def read_wrapped_array(wrapper: Any, unpickler: RestrictedUnpickler) -> Any:
    """The array a NumpyArrayWrapper stands for, read from ``unpickler``'s stream (never mapped, never a path)."""
    import numpy
    from joblib.numpy_pickle_utils import _ensure_native_byte_order

    label, stream = unpickler.label, unpickler.stream
    shape, dtype, order = getattr(wrapper, "shape", None), getattr(wrapper, "dtype", None), getattr(wrapper, "order", None)
    subclass = getattr(wrapper, "subclass", None)
    if not (
        isinstance(shape, tuple)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        and isinstance(dtype, numpy.dtype)
        and order in ("C", "F")
        and isinstance(subclass, type)
        and issubclass(subclass, numpy.ndarray)
    ):
        raise InputFileError(
            f"{label} holds a joblib array header that is not one joblib writes "
            f"(shape {shape!r}, dtype {type(dtype).__name__}, order {order!r})",
            HINT,
        )
    if dtype.hasobject:
        # joblib pickles object arrays as a nested stream; read it like the outer one, sharing the budget
        array = JoblibUnpickler(stream, label, unpickler.budget).load()
        if not isinstance(array, numpy.ndarray) or array.shape != shape:
            raise InputFileError(f"{label} holds a joblib object array whose nested pickle is not an array of shape {shape!r}", HINT)
        return array
    if getattr(wrapper, "numpy_array_alignment_bytes", None) is not None:  # joblib >= 1.2: one length byte, then padding
        padding = stream.read(1)
        if padding:
            stream.read(padding[0])
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    data = bytearray()
    while len(data) < nbytes:  # grow with what the stream holds, never np.empty(count) up front
        chunk = stream.read(min(_CHUNK, nbytes - len(data)))
        if not chunk:
            raise InputFileError(
                f"{label} ends inside a joblib array of shape {shape!r} ({len(data)} of {nbytes} bytes)",
                "the file is truncated or crafted; re-save it with joblib.dump",
            )
        data += chunk
    array = numpy.frombuffer(data, dtype=dtype, count=count) if dtype.itemsize else numpy.empty(count, dtype)
    array = array.reshape(shape[::-1]).transpose() if order == "F" else array.reshape(shape)
    return _ensure_native_byte_order(array)


def load_joblib(path: str | Path, *, trust: bool = False) -> Any:
    """Load a joblib file; unless ``trust``, every import, call and array goes through our checks."""
    path = Path(path)
    try:
        import joblib
        from joblib.numpy_pickle import _validate_fileobject_and_memmap
    except ImportError:
        raise MissingDependency("loading joblib files needs joblib", "pip install 'packager[sklearn]'") from None
    if trust:
        return guarded_load(lambda: joblib.load(path), path)
    budget = Budget(path.name, path.stat().st_size)

    def load() -> Any:
        with path.open("rb") as raw, _validate_fileobject_and_memmap(raw, str(path), None) as (stream, _):
            if isinstance(stream, str):  # joblib < 0.10 multi-file pickles
                raise InputFileError(f"{path.name} is an old multi-file joblib pickle", "re-save it with a current joblib")
            return JoblibUnpickler(stream, path.name, budget).load()

    return guarded_load(load, path)
