"""Generate the attack corpus: files that run code, read files or exhaust resources when loaded
naively. Every payload's side effect is creating ``marker`` — the tests check it never appears.

    python -m tests.attacks.build_corpus OUT_DIR MARKER
"""
from __future__ import annotations

import json
import pickle
import shutil
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Attack:
    name: str
    path: Path
    expect: str  # "unsafe" (UnsafeModelError) or "input" (InputFileError) or "either", or "harmless": either, or it
    # unpickles to plain data that is refused as no model (UnsupportedConversion), its payload never reached
    runs_code: bool = True  # its payload runs code or touches files when loaded naively (the sandbox must contain it)


# ------------------------------------------------------------------ raw pickle building blocks

def _s(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


def _call(module: str, name: str, *args: str, proto: int = 4) -> bytes:
    """PROTO n; STACK_GLOBAL module.name; args as strings; TUPLE; REDUCE; STOP."""
    body = _s(module) + _s(name) + b"\x93" + b"(" + b"".join(_s(a) for a in args) + b"tR"
    return b"\x80" + bytes([proto]) + body + b"."


def _global_call(module: str, name: str, arg: str) -> bytes:
    """Protocol 0: GLOBAL 'module name', MARK, STRING arg, TUPLE, REDUCE."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def _inst(module: str, name: str, arg: str) -> bytes:
    """Protocol 0 INST: MARK, args, INST module name."""
    return f"(S'{arg}'\ni{module}\n{name}\n.".encode()


def _memo_stack_global(module: str, name: str, arg: str) -> bytes:
    return (b"\x80\x04" + _s(module) + b"\x94" + b"0" + _s(name) + b"\x94" + b"0" + b"N0"
            + b"h\x00h\x01\x93" + _s(arg) + b"\x85R.")


def _getattr_chain(marker: str) -> bytes:
    """getattr(__import__('os'), 'system')('touch marker') without naming os in a GLOBAL."""
    return (b"\x80\x04" + _s("builtins") + _s("getattr") + b"\x93"
            + b"(" + _s("builtins") + _s("__import__") + b"\x93" + b"(" + _s("os") + b"tR" + _s("system") + b"tR"
            + b"(" + _s(f"touch {marker}") + b"tR.")


def _nested_torch_bytes(marker: str) -> bytes:
    inner = _call("os", "system", f"touch {marker}")
    return b"\x80\x04" + _s("torch.storage") + _s("_load_from_bytes") + b"\x93" + b"(" + b"C" + bytes([len(inner)]) + inner + b"tR."


class _Reduce:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def pickles(out: Path, marker: str) -> list[Attack]:
    import os
    import subprocess

    touch = f"touch {marker}"
    write = f"open({marker!r}, 'w').write('pwned')"
    payloads = {
        "reduce_os_system.pkl": pickle.dumps(_Reduce(os.system, touch), protocol=2),
        "reduce_os_system_proto0.pkl": _global_call("os", "system", touch),
        "reduce_posix_system.pkl": _call("posix", "system", touch),
        "subprocess_popen.pkl": pickle.dumps(_Reduce(subprocess.Popen, ["touch", marker]), protocol=4),
        "subprocess_check_call.pkl": _call("subprocess", "check_call", "touch", marker),
        "builtins_eval.pkl": _call("builtins", "eval", write),
        "builtins_exec.pkl": _call("builtins", "exec", write),
        "stack_global_memo.pkl": _memo_stack_global("os", "system", touch),
        "getattr_chain.pkl": _getattr_chain(marker),
        "pip_main.pkl": _call("pip", "main", "install", "--target", marker, "nothing-to-install"),
        "pip_internal_main.pkl": _call("pip._internal.cli.main", "main", "--version"),
        "runpy_run_path.pkl": _call("runpy", "run_path", marker),
        "runpy_run_module.pkl": _call("runpy", "run_module", "this"),
        "importlib_import_module.pkl": _call("importlib", "import_module", "antigravity"),
        "inst_opcode.pkl": _inst("os", "system", touch),
        "nested_torch_load_from_bytes.pkl": _nested_torch_bytes(marker),
        "numpy_memmap_writes_file.pkl": _call("numpy", "memmap", marker, "uint8", "w+"),
        "sklearn_testing_runs_python.pkl": _call("sklearn.utils._testing", "assert_run_python_script_without_output", write),
        "numpy_load_pickle.pkl": _call("numpy.lib._npyio_impl", "load", marker),
        "pandas_read_pickle.pkl": _call("pandas", "read_pickle", marker),
        "codecs_then_exec.pkl": _call("builtins", "exec", "import os; os.system(" + repr(touch) + ")"),
        "types_function_marshal.pkl": _call("types", "FunctionType", "x"),
        "ufunc_reconstruct_gadget.pkl": _call("numpy._core", "_ufunc_reconstruct", "os", "system"),
    }
    attacks = []
    for name, data in payloads.items():
        (out / name).write_bytes(data)
        attacks.append(Attack(name, out / name, "unsafe"))
    return attacks


def joblibs(out: Path, marker: str) -> list[Attack]:
    import os

    import joblib

    plain, compressed = out / "evil_plain.joblib", out / "evil_compressed.joblib"
    joblib.dump({"model": _Reduce(os.system, f"touch {marker}")}, plain)
    joblib.dump({"model": _Reduce(os.system, f"touch {marker}")}, compressed, compress=3)
    return [Attack(p.name, p, "unsafe") for p in (plain, compressed)]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def torch_files(out: Path, marker: str, benign: Path) -> list[Attack]:
    evil = _call("os", "system", f"touch {marker}")
    attacks = []

    def replaced(source: Path, target: Path, member_suffix: str, payload: bytes) -> Path:
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
            for item in src.infolist():
                data = payload if item.filename.endswith(member_suffix) else src.read(item.filename)
                dst.writestr(item, data)
        return target

    attacks.append(
        Attack(
            "torchscript_evil_data_pkl.pt",
            replaced(benign / "script.pt", out / "torchscript_evil_data_pkl.pt", "/data.pkl", evil),
            "unsafe",
        )
    )
    attacks.append(
        Attack(
            "torchscript_evil_constants.pt",
            replaced(benign / "script.pt", out / "torchscript_evil_constants.pt", "/constants.pkl", evil),
            "unsafe",
        )
    )
    attacks.append(Attack("state_dict_evil.pth", replaced(benign / "state.pth", out / "state_dict_evil.pth", "/data.pkl", evil), "unsafe"))
    attacks.append(
        Attack(
            "state_dict_nested_load_from_bytes.pth",
            replaced(benign / "state.pth", out / "state_dict_nested_load_from_bytes.pth", "/data.pkl", _nested_torch_bytes(marker)),
            "unsafe",
        )
    )
    shutil.copy(benign / "full_module.pt", out / "full_module_pickle.pt")
    attacks.append(Attack("full_module_pickle.pt", out / "full_module_pickle.pt", "unsafe"))
    nested = replaced(benign / "state.pth", out / "inner.pth", "/data.pkl", evil).read_bytes()
    (out / "inner.pth").unlink()
    attacks.append(
        Attack(
            "pt2_nested_evil_archive.pt2",
            replaced(benign / "program.pt2", out / "pt2_nested_evil_archive.pt2", "/sample_inputs/model.pt", nested),
            "unsafe",
        )
    )
    return attacks


def _keras_config(layers: list[dict]) -> dict:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": layers}, "registered_name": None}


def _dense(name: str) -> dict:
    return {"module": "keras.layers", "class_name": "Dense", "config": {"name": name, "units": 2}, "registered_name": None}


def _lambda(name: str, marker: str) -> dict:
    code = f"lambda x: (__import__('os').system('touch {marker}'), x)[1]"
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {"name": name, "function": {"class_name": "__lambda__", "config": {"code": code}}},
        "registered_name": None,
    }


def keras_files(out: Path, marker: str) -> list[Attack]:
    meta = json.dumps({"keras_version": "3.15.1", "date_saved": "2026-11-27"}).encode()
    top = _keras_config([_dense("d1"), _lambda("evil", marker)])
    sub = _keras_config([_dense("d1"), {"module": "keras", "class_name": "Functional", "config": {"name": "inner", "layers": [
        {"module": "keras.layers", "class_name": "TimeDistributed", "config": {"name": "wrap", "layer": _lambda("deep_evil", marker)}}]}}])
    custom = _keras_config(
        [{"module": "os", "class_name": "system", "config": {"name": "x", "command": f"touch {marker}"}, "registered_name": "system"}]
    )
    attacks = []
    for name, config in (("lambda_top_level.keras", top), ("lambda_nested_submodel.keras", sub), ("custom_module_os.keras", custom)):
        _zip(out / name, {"metadata.json": meta, "config.json": json.dumps(config).encode(), "model.weights.h5": b""})
        attacks.append(Attack(name, out / name, "unsafe"))
    import h5py

    with h5py.File(out / "lambda_in_model_config.h5", "w") as handle:
        handle.attrs["model_config"] = json.dumps(_keras_config([_lambda("evil", marker)]))
        handle.attrs["keras_version"] = "2.15.0"
    attacks.append(Attack("lambda_in_model_config.h5", out / "lambda_in_model_config.h5", "unsafe"))
    return attacks


def xml_files(out: Path, marker: str) -> list[Attack]:
    secret = out / "secret.txt"
    secret.write_text("password=hunter2")
    xxe = (
        f'<?xml version="1.0"?>\n<!DOCTYPE PMML [<!ENTITY leak SYSTEM "file://{secret}">]>\n'
        '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header description="&leak;"/></PMML>'
    )
    laughs = (
        '<?xml version="1.0"?>\n<!DOCTYPE PMML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>\n'
        '<PMML version="4.4"><Header description="&d;&d;&d;&d;"/></PMML>'
    )
    (out / "xxe.pmml").write_text(xxe)
    (out / "billion_laughs.pmml").write_text(laughs)
    return [Attack("xxe.pmml", out / "xxe.pmml", "unsafe"), Attack("billion_laughs.pmml", out / "billion_laughs.pmml", "unsafe")]


def zip_attacks(out: Path, benign: Path) -> list[Attack]:
    attacks = []
    bomb = b"\0" * (64 << 20)
    for name, members in {
        "bomb.skops": {"schema.json": b"{}", "big.npy": bomb},
        "bomb.keras": {"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": bomb},
        "traversal.skops": {"schema.json": b"{}", "../../escaped.txt": b"x"},
        "traversal.keras": {"config.json": b"{}", "metadata.json": b"{}", "../../../tmp/escaped.h5": b"x"},
        "absolute_member.zip": {"bundle.json": b"{}", "/etc/cron.d/evil": b"x"},
        "traversal_mleap.zip": {"bundle.json": b"{}", "root/../../escaped.json": b"{}"},
    }.items():
        attacks.append(Attack(name, _zip(out / name, members), "unsafe"))
    with zipfile.ZipFile(benign / "script.pt") as src, zipfile.ZipFile(out / "traversal_torchscript.pt", "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("script/code/../../../escaped.py", b"x")
    attacks.append(Attack("traversal_torchscript.pt", out / "traversal_torchscript.pt", "unsafe"))
    return attacks


def damaged(out: Path, sources: dict[str, Path]) -> list[Attack]:
    """Truncated and random-byte versions of one benign file per format."""
    import random

    rng = random.Random(0)
    attacks = []
    for fmt, source in sources.items():
        data = source.read_bytes()
        cut = out / f"truncated_{fmt}{source.suffix}"
        cut.write_bytes(data[: len(data) // 2])
        noise = out / f"random_{fmt}{source.suffix}"
        noise.write_bytes(bytes(rng.getrandbits(8) for _ in range(2048)))
        attacks += [Attack(cut.name, cut, "either", runs_code=False), Attack(noise.name, noise, "either", runs_code=False)]
    return attacks


def _net_class():
    import torch

    global Net

    class Net(torch.nn.Module):  # module level, so torch.save(model) can pickle it
        def __init__(self):
            super().__init__()
            self.fc, self.bn = torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)

        def forward(self, x):
            return self.bn(self.fc(x))

    Net.__qualname__ = "Net"
    return Net


def benign_torch(out: Path) -> Path:
    """A real module saved as state dict, TorchScript, torch.export program and full pickle."""
    import torch

    torch.manual_seed(0)
    net = _net_class()().eval()
    example = torch.randn(2, 4)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "state.pth")
    torch.jit.save(torch.jit.trace(net, example), out / "script.pt")
    torch.export.save(torch.export.export(net, (example,)), out / "program.pt2")
    torch.save(net, out / "full_module.pt")
    return out


def benign_keras(out: Path) -> Path:
    import keras

    inputs = keras.Input((4,))
    inner = keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)], name="inner")
    model = keras.Model(inputs, keras.layers.Dense(1)(inner(inputs)))
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    model.save(out / "model.h5")
    return out


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    out.mkdir(parents=True, exist_ok=True)
    attacks = pickles(out, marker) + joblibs(out, marker) + torch_files(out, marker, benign) + keras_files(out, marker)
    attacks += xml_files(out, marker) + zip_attacks(out, benign)
    sources = {"pickle": out / "reduce_os_system.pkl", "torchscript": benign / "script.pt", "pt2": benign / "program.pt2",
               "keras": benign / "model.keras", "hdf5": benign / "model.h5", "state_dict": benign / "state.pth"}
    attacks += damaged(out, sources)
    for family in families():
        family_out = out / family.__name__.rsplit(".", 1)[-1]
        family_out.mkdir(exist_ok=True)
        attacks += family.build(family_out, marker, benign)
    return attacks


def families() -> list:
    """Attack families beyond the ones above: every module in ``tests/attacks/families/`` with a
    ``build(out, marker, benign) -> list[Attack]`` (one module per family, so they grow apart)."""
    import importlib
    import pkgutil

    from tests.attacks import families as package

    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
    ]


if __name__ == "__main__":
    target, marker_path = Path(sys.argv[1]), sys.argv[2]
    benign_dir = benign_keras(benign_torch(target / "benign"))
    for attack in build(target / "attacks", marker_path, benign_dir):
        print(f"{attack.expect:7} {attack.name}")
