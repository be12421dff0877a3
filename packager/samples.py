"""Reading user-supplied sample and calibration data (.npy, .npz, .csv, .parquet, .jsonl, .txt: one text per line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from packager.errors import InputFileError, MissingDependency

SAMPLE_SUFFIXES = (".npy", ".npz", ".csv", ".parquet", ".jsonl", ".txt")


def load_sample(path: str | Path) -> Any:
    """Return a numpy array (.npy), a dict of arrays (.npz) or a pandas DataFrame (tables; .txt is a one-column
    table named "text", one row per non-empty line, for models that take text)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"sample file {path} does not exist", "check the --sample/--calibration path")
    suffix = path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise InputFileError(
            f"sample file {path.name} has an unsupported type {suffix or '(none)'}",
            f"use one of {', '.join(SAMPLE_SUFFIXES)}",
        )
    try:
        return _READERS[suffix](path)
    except (InputFileError, MissingDependency):
        raise
    except Exception as exc:
        raise InputFileError(
            f"cannot read sample file {path.name} ({type(exc).__name__}: {exc})",
            "check that the file is a valid " + suffix[1:] + " file",
        ) from exc


def _npy(path: Path):
    import numpy as np

    return np.load(path, allow_pickle=False)


def _npz(path: Path):
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _pandas():
    try:
        import pandas
    except ImportError:
        raise MissingDependency("reading tables needs pandas", "pip install 'packager[sklearn]'") from None
    return pandas


def _csv(path: Path):
    return _pandas().read_csv(path)


def _parquet(path: Path):
    return _pandas().read_parquet(path)


def _jsonl(path: Path):
    return _pandas().read_json(path, lines=True)


def _txt(path: Path):
    """One text per line (blank lines skipped): a CSV would split sentences at their commas."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise InputFileError(f"sample file {path.name} has no text lines", "write one text per line")
    return _pandas().DataFrame({"text": lines})


_READERS = {".txt": _txt, ".npy": _npy, ".npz": _npz, ".csv": _csv, ".parquet": _parquet, ".jsonl": _jsonl}
