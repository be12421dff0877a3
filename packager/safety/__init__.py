"""The one safety gate: every file loaded untrusted passes the check its format plugin declared (``Format.check``),
against allow-lists, before any framework opens it. A format whose plugin declared no check is refused (deny by
default); one that cannot run code says so (``check=None`` with ``safe_because``). ``trust=True`` (``--trust``) is the
only way past, and the manifest records it. The checks themselves live in this package, one module per family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.errors import UnsafeModelError
from packager.safety.allowlist import import_refusal
from packager.safety.joblib import load_joblib
from packager.safety.pickles import TRUST_HINT, PickleImport, check_imports, load_pickle, scan_pickle_imports

__all__ = [
    "TRUST_HINT",
    "PickleImport",
    "check_file",
    "check_imports",
    "check_pickle_file",
    "check_zip_file",
    "import_refusal",
    "load_joblib",
    "load_pickle",
    "scan_pickle_imports",
]


def check_file(path: str | Path, fmt: str, registry: Any = None) -> None:
    """Raise UnsafeModelError (or InputFileError) if loading ``path`` as ``fmt`` could run code or escape."""
    from packager.plugins import default_registry

    path = Path(path)
    registry = registry or default_registry()
    declared = registry.format(fmt)
    if not declared.checked:
        owner = registry.formats[fmt].owner if fmt in registry.formats else None
        who = f"its plugin ({owner}) declares no safety check for it" if owner else f"no installed plugin declares a safety check for {fmt}"
        raise UnsafeModelError(f"{path.name} is a {fmt} file, and {who}", f"packager refuses formats it cannot check; {TRUST_HINT}")
    if path.is_dir():  # every folder format, checked or declared safe: no member may point outside the folder
        from packager.safety.folders import check_folder_members

        check_folder_members(path)
    if declared.check is not None:
        declared.check(path)


def formats_to_check(path: Path, claimed: str, registry: Any) -> list[str]:
    """The manifest's format, and the format the content says where they differ: a manifest that calls a hostile pickle
    ``xgboost-ubj`` (a format whose check reads no pickle) was pushed as ``passed`` (red team). Both checks must pass;
    a package's manifest, like any file, grants nothing."""
    from packager.errors import InputFileError
    from packager.formats import detect_format

    try:
        found = detect_format(path, registry)
    except InputFileError:
        return [claimed]  # content no detector knows: the claimed format's own check decides
    return [claimed] if found == claimed else [found, claimed]  # what the content is first: a pickle is refused as one


def check_pickle_file(path: Path) -> None:
    """Every import a pickle makes is matched against the allow-list before anything is unpickled."""
    with Path(path).open("rb") as stream:
        check_imports(scan_pickle_imports(stream, Path(path).name), Path(path).name)


def check_zip_file(path: Path) -> None:
    """Zip-based formats whose loader checks the content itself (skops types, MLeap nodes): the container's members
    (names, sizes, links) are checked here. A folder form has no container to check."""
    if Path(path).is_file():
        from packager.safety.zips import check_zip

        check_zip(path)
