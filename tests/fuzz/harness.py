"""Fuzzing `inspect` and `convert` with mutated fixture files (Hypothesis): nothing may escape but a
PackagerError, and no input may take longer than TIME_LIMIT seconds.

    python -m tests.fuzz.harness [EXAMPLES]     # standalone run with counts
"""
from __future__ import annotations

import collections
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

TIME_LIMIT = 10.0
SUFFIXES = [".pkl", ".joblib", ".skops", ".onnx", ".pmml", ".zip", ".keras", ".h5", ".pt", ".pt2", ".bin", ""]


class InputTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise InputTimeout(f"took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def mutations():
    """(kind, position fraction, payload) edits."""
    position = st.floats(0, 1, allow_nan=False)
    return st.lists(st.one_of(
        st.tuples(st.just("flip"), position, st.integers(1, 255)),
        st.tuples(st.just("truncate"), position, st.just(0)),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), position, st.integers(1, 64)),
        st.tuples(st.just("overwrite"), position, st.binary(min_size=1, max_size=8)),
    ), min_size=1, max_size=4)


def mutate(data: bytes, edits) -> bytes:
    data = bytearray(data)
    for kind, where, payload in edits:
        pos = int(where * max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[pos] ^= payload
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = payload
        elif kind == "delete":
            del data[pos:pos + payload]
        elif kind == "overwrite":
            data[pos:pos + len(payload)] = payload
    return bytes(data)


def run_one(seed: Path, edits, suffix: str | None, action: str, work: Path, outcomes: collections.Counter) -> None:
    """Raise AssertionError for anything but a PackagerError or success."""
    from packager.conversion import convert
    from packager.errors import PackagerError
    from packager.inspection import inspect

    target = work / f"input{seed.suffix if suffix is None else suffix}"
    target.write_bytes(mutate(seed.read_bytes(), edits))
    started = time.perf_counter()
    try:
        with time_limit(TIME_LIMIT):
            if action == "inspect":
                inspect(target)
            else:
                convert(target, to="onnx", out=work / "out", overwrite=True)
        outcomes["accepted"] += 1
    except PackagerError as exc:
        outcomes[type(exc).__name__] += 1
    except InputTimeout as exc:
        raise AssertionError(f"{action} on a mutation of {seed.name} {exc}") from None
    except Exception as exc:
        raise AssertionError(f"{action} on a mutation of {seed.name} ({edits}) raised {type(exc).__name__}: {exc}") from exc
    finally:
        outcomes["seconds"] += time.perf_counter() - started


def fuzz(seeds: list[Path], examples: int, action: str = "inspect") -> collections.Counter:
    outcomes: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as work:

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True, print_blob=True,
                  suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(seeds), mutations(), st.one_of(st.none(), st.sampled_from(SUFFIXES)))
        def check(seed, edits, suffix):
            outcomes["inputs"] += 1
            run_one(seed, edits, suffix, action, Path(work), outcomes)

        check()
    return outcomes


SEED_SCRIPT = """
import sys
from pathlib import Path
from packager.conversion import convert
fixture_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
for target in ("onnx", "pmml", "skops", "joblib", "mleap"):
    convert(fixture_dir / "digits_linear.pkl", to=target, out=out / target, overwrite=True)
"""


def seed_files(fixture_dir: Path, out: Path) -> list[Path]:
    """Small benign files of every format packager reads. Made in a child process: PMML validation
    starts a JVM, and a JVM must not share a process with the SIGALRM time limit."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", SEED_SCRIPT, str(fixture_dir), str(out)], check=True, capture_output=True)
    names = {"onnx": "model.onnx", "pmml": "model.pmml", "skops": "model.skops", "joblib": "model.joblib", "mleap": "model.zip"}
    return [fixture_dir / "ridge.pkl", fixture_dir / "logreg.pkl", fixture_dir / "columns.pkl", *(out / k / v for k, v in names.items())]


def main(count: int) -> dict:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from fixtures.build import build

    with tempfile.TemporaryDirectory() as folder:
        build(Path(folder) / "fx")
        seeds = seed_files(Path(folder) / "fx", Path(folder) / "seeds")
        return {action: dict(fuzz(seeds, n, action)) for action, n in (("inspect", count), ("convert", max(count // 20, 50)))}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
