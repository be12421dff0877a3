"""Audit of the pickle allow-list's packages: which classes a pickle could name, and which of them
are re-exports of outside classes or have constructors/setstate that touch files, import, exec or call
callables. Its output is summarised in ``packager/safety/allowlist.py``; rerun it after upgrading a pin:

    python -m tests.safety.audit_allowlist
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
import warnings

from packager.safety.allowlist import CLASS_PACKAGES, module_refusal

SUSPECT = re.compile(r"\bopen\(|\bimport\b|\bexec\(|\beval\(|\bos\.|subprocess|Path\(|mmap|\.load\(|\bread_|urlopen|__import__|"
                     r"getattr\(|callable\(|\bfunc\(|\bfunction\(|\bcallback|\bmemmap\b|fromfile|\bto_pickle|\bfilename|\bpath\b")
SAFE_BASE_MODULES = {"builtins", "abc", "typing", "collections.abc", "enum", "numbers", "_abc", "collections", "dataclasses",
                     "typing_extensions"}


def walk(package: str):
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if module_refusal(info.name):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield importlib.import_module(info.name)
        except Exception:
            continue


def audit(package: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"re-exports": [], "outside bases": [], "suspect constructors": []}
    seen: set[int] = set()
    types = 0
    for module in walk(package):
        for attr, obj in list(vars(module).items()):
            if not isinstance(obj, type) or id(obj) in seen:
                continue
            seen.add(id(obj))
            own = getattr(obj, "__module__", "") or ""
            if own.split(".")[0] != package:
                found["re-exports"].append(f"{module.__name__}.{attr} -> {own}.{obj.__qualname__}")
                continue
            if module_refusal(own):
                continue
            types += 1
            outside = [f"{b.__module__}.{b.__qualname__}" for b in obj.__mro__[1:]
                       if b.__module__.split(".")[0] not in CLASS_PACKAGES and b.__module__ not in SAFE_BASE_MODULES]
            if outside:
                found["outside bases"].append(f"{own}.{obj.__qualname__}: {', '.join(outside)}")
            for method in ("__new__", "__init__", "__setstate__", "__cinit__"):
                fn = obj.__dict__.get(method)
                try:
                    src = inspect.getsource(fn) if fn is not None else ""
                except (TypeError, OSError):
                    src = ""
                hits = sorted(set(SUSPECT.findall(src)))
                if hits:
                    found["suspect constructors"].append(f"{own}.{obj.__qualname__}.{method}: {hits}")
    found["classes"] = [str(types)]
    return found


if __name__ == "__main__":
    for pkg in sys.argv[1:] or CLASS_PACKAGES:
        result = audit(pkg)
        print(f"== {pkg}: {result.pop('classes')[0]} own classes")
        for kind, rows in result.items():
            print(f"-- {kind}: {len(rows)}")
            for row in rows:
                print("   ", row)
