"""numpy trusts a pickled dtype's state: checked against the dtype numpy itself builds from the same description.

Measured (numpy 2.4, fuzz family ``trees``, inputs 67 and 1637): a structured dtype's state whose field entry holds an
int where a dtype belongs is accepted by ``dtype.__setstate__``; the dtype is broken (``.itemsize`` of an int) and the
tree node array built on it segfaults in ``Tree.__setstate__``. The state also carries ``flags`` (whether items hold
object pointers) and ``elsize``, which numpy believes. So the state is accepted only if numpy's public constructor,
given the fields, offsets, sub-array or size the state describes, builds a dtype whose own state is exactly the same.
"""

from __future__ import annotations

from typing import Any

from packager.errors import InputFileError

HINT = "the file is corrupt or crafted; re-export it from the training code"
_ALIGNED_STRUCT = 0x80  # NPY_ALIGNED_STRUCT in a dtype's flags


def check_dtype_state(obj: Any, state: Any, label: str, used: set[int]) -> None:
    """Raise InputFileError unless ``state`` is the state numpy gives the dtype it describes, sized as the dtype already
    is, and the dtype has not been used yet (``used``: ids of dtypes passed to a call or held by a state so far): a
    dtype changed after an array was laid out on it would make numpy read that array with the new layout."""
    import numpy

    if not isinstance(obj, numpy.dtype):
        return
    if id(obj) in used:
        raise InputFileError(f"{label} changes a numpy dtype after it was used or set", HINT)
    try:
        candidate = _rebuild(obj, state)
        same = type(candidate) is type(obj) and candidate.__reduce__()[2] == state
        same = same and (state[5] == -1 or state[5] == obj.itemsize)
    except Exception:  # noqa: BLE001 - any description numpy's constructor refuses is a state we refuse
        same = False
    if not same:
        raise InputFileError(f"{label} holds a numpy dtype whose pickled state numpy would not write ({_short(state)})", HINT)


def mark_used(values: Any, used: set[int]) -> None:
    """Record the dtypes among ``values`` (call arguments, a state: one level of tuples, lists and dicts, and the
    field dtypes of a dtype) as used."""
    import numpy

    items = list(values.values()) if isinstance(values, dict) else list(values) if isinstance(values, (tuple, list)) else [values]
    for item in items:
        if isinstance(item, numpy.dtype):
            used.add(id(item))
            for field in (item.fields or {}).values():
                used.add(id(field[0]))
        elif isinstance(item, tuple):
            mark_used([i for i in item if isinstance(i, numpy.dtype)], used)
        elif isinstance(item, dict):
            mark_used([v for v in item.values() if isinstance(v, (numpy.dtype, tuple))], used)


def _rebuild(obj: Any, state: Any) -> Any:
    import numpy

    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
        raise ValueError("not a dtype state")
    _, order, subarray, names, fields, size, _, flags = state[:8]
    if names is not None:
        for name in names:
            kind, offset = fields[name][0], fields[name][1]
            # numpy's own check overflows: offset 2**31-1 in a 64-byte record is accepted (fuzz trees 5154, SIGSEGV)
            if not (isinstance(offset, int) and 0 <= offset and offset + kind.itemsize <= size):
                raise ValueError(f"field {name!r} at offset {offset} outside the {size}-byte record")
        spec: dict[str, Any] = {
            "names": list(names),
            "formats": [fields[n][0] for n in names],
            "offsets": [fields[n][1] for n in names],
            "itemsize": size,
        }
        titles = [fields[n][2] if len(fields[n]) > 2 else None for n in names]
        if any(t is not None for t in titles):
            spec["titles"] = titles
        return numpy.dtype(spec, align=bool(flags & _ALIGNED_STRUCT))  # type: ignore[call-overload]  # the dict form is untyped
    if subarray is not None:
        return numpy.dtype((subarray[0], subarray[1]))
    if len(state) == 9 and obj.kind in "mM":
        unit, count = state[8][1][0].decode(), state[8][1][1]
        return numpy.dtype(f"{order}{obj.char}8[{count if count != 1 else ''}{unit}]")
    if obj.kind in "SUV" and size != -1:
        return numpy.dtype(f"{order if order in '<>' else '|'}{obj.kind}{size // 4 if obj.kind == 'U' else size}")
    return obj.newbyteorder(order) if order in "<>" else obj


def _short(state: Any) -> str:
    text = repr(state)
    return text if len(text) <= 80 else text[:77] + "..."
