"""Fuzzing ``inspect`` and ``convert`` with mutated model files, one family of formats at a time:
nothing may escape but a PackagerError, no input may kill the interpreter, none may hang.

    python -m tests.fuzz.harness --family tensorflow --count 10000        # counts as JSON on the last line
    python -m tests.fuzz.harness --family torchscript --only 1234         # re-run one input alone

A segfault or an abort cannot be caught inside the process it kills, so the loop runs in a child
process (``--worker``) supervised from here. Before each input the child writes the input to disk
and its index to ``current``; when the child dies by a signal, or stays on one input longer than the
time limit (killed: a C++ hang ignores SIGALRM, and a JVM must not share a process with SIGALRM),
the supervisor copies that input to the crash folder, re-runs it alone in a fresh child to confirm,
and restarts the loop after it. Input ``i`` is a pure function of (family, seed, action, i), so any
input is rebuilt by index alone.

The worker is itself the confined process: it calls the inspect and convert workers
(``packager.workers.execute``, as ``packager._sandbox_child`` does), in-process with the static checks
on, instead of spawning a sandbox per input (a bwrap child costs ~1 s here: 50 inputs/s would become
one), and it runs under bubblewrap with the same confinement and rlimits as that child (read-only
root, no network, own PID namespace, secrets hidden; writable: its work folder and the crash folder),
so an input that gets past every check is contained as it would be in production. A signal kills
the worker inside bwrap, which then exits 128 + signal; the supervisor reads that as the signal.
Without bwrap on the machine (``--no-bwrap``, or none installed) the worker runs unconfined.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = [".pkl", ".joblib", ".skops", ".onnx", ".pmml", ".zip", ".keras", ".h5", ".pt", ".pt2", ".pth", ".pb", ".bin", ".txt", ".json", ".ubj", ""]
CONVERT_TO = {"sklearn": "onnx", "joblib": "onnx", "tensorflow": "onnx", "torchscript": "onnx", "keras": "onnx", "trees": "onnx", "boosting": "onnx"}
CONVERT_OPTIONS = {"torchscript": {"input_shape": "2,4"}}  # torch files carry no input shapes; every torch seed takes (N, 4)
PRELOAD = {"sklearn": "sklearn", "joblib": "sklearn", "tensorflow": "tensorflow", "keras": "tensorflow", "torchscript": "torch", "trees": "skops.io",
           "boosting": "xgboost"}  # imported before the clock starts
TIME_LIMIT = {"inspect": 20.0, "convert": 120.0}  # per input; a normal input takes < 2 s (inspect) / 15 s (convert) here
SAVED_PER_KIND = 3  # reproducers kept per (outcome, message) so one bug does not fill the disk
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
             "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONFAULTHANDLER": "1"}


# ------------------------------------------------------------------ one input

def make_input(family: str, seeds: list[dict], seed: int, action: str, index: int, folder: Path) -> tuple[Path, str]:
    """Write input ``index`` into the empty ``folder``; return its path and what it was made from."""
    from tests.fuzz import mutators as m

    rng = random.Random(f"{family}:{seed}:{action}:{index}")
    entry = rng.choice(seeds)
    source, kind = Path(entry["path"]), entry["kind"]
    if kind == "savedmodel":
        target = folder / source.name
        part = m.mutate_saved_model(source, target, rng)
        return target, f"{source.name} ({kind}: {part})"
    data = source.read_bytes()
    if kind == "pickle":
        data = m.mutate_pickle(data, rng) if rng.random() < 0.6 else m.mutate_bytes(data, rng)
    elif kind.startswith("joblib"):
        data = m.mutate_joblib(data, kind, rng)
    elif kind in ("zip", "torchzip", "keraszip"):
        data = m.mutate_zip(data, rng)
    elif kind == "h5":
        data = m.mutate_h5(data, rng)
    elif kind == "graphdef":
        data = m.mutate_graphdef(data, rng)
    elif kind == "treepickle":
        data = m.mutate_tree_pickle(data, rng)
    elif kind == "treeskops":
        data = m.mutate_tree_skops(data, rng)
    elif kind == "lightgbm":
        data = m.mutate_lightgbm(data, rng)
    elif kind.startswith("xgboost"):
        data = m.mutate_xgboost(data, kind, rng)
    else:
        data = m.mutate_bytes(data, rng)
    suffix = rng.choice(SUFFIXES) if rng.random() < 0.2 else source.suffix  # content detection must not trust the name
    target = folder / f"input{suffix}"
    target.write_bytes(data)
    return target, f"{source.name} ({kind}) as {target.name}"


def run_input(path: Path, action: str, family: str, out: Path) -> str:
    """The outcome name: "accepted", a PackagerError class name, or "unexpected:<type>" (raised as-is)."""
    from packager.workers import execute

    if action == "inspect":
        execute("inspect", {"path": str(path)})
    else:
        execute("convert", {"path": str(path), "to": CONVERT_TO[family], "out": str(out), "overwrite": True, **CONVERT_OPTIONS.get(family, {})})
    return "accepted"


def _count_reaching_frameworks(reached: list[bool]) -> None:
    """Mark when an input gets past detection and the safety checks into a framework's loader (the
    figure that says how much of the fuzzing exercises TensorFlow/torch/Keras, not our own checks)."""
    from packager.plugins import default_registry

    registry = default_registry()
    for plugin in [*registry.frameworks.values(), *registry.runtimes.values()]:
        for name in ("load", "inspect"):
            original = getattr(plugin.cls, name, None)  # inherited too (the boosting plugins' load is SklearnApiFramework's)
            if original is None or getattr(original, "_fuzz_counted", False):
                continue

            def counted(self, *args, __original=original, **kwargs):
                reached[0] = True
                return __original(self, *args, **kwargs)

            counted._fuzz_counted = True
            setattr(plugin.cls, name, counted)


# ------------------------------------------------------------------ the child: a loop over inputs

def worker(args: argparse.Namespace) -> None:
    from packager.errors import PackagerError

    work, crashes = Path(args.work), Path(args.crashes)
    seeds = json.loads(Path(args.seeds).read_text())
    __import__(PRELOAD[args.family])
    import packager.conversion  # noqa: F401  (imports are not the first input's time)
    import packager.inspection  # noqa: F401
    import packager.workers  # noqa: F401
    reached = [False]
    _count_reaching_frameworks(reached)
    saved = collections.Counter()
    with (work / "results.jsonl").open("a") as results:
        for index in range(args.start, args.stop):
            folder = work / "in"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            (work / "current").write_text(json.dumps({"index": index, "started": time.time(), "origin": "crashed while mutating"}))
            path, origin = make_input(args.family, seeds, args.seed, args.action, index, folder)
            (work / "current").write_text(json.dumps({"index": index, "started": time.time(), "origin": origin}))
            reached[0] = False
            started = time.perf_counter()
            error = reason = None
            try:
                _self_test(index)
                outcome = run_input(path, args.action, args.family, work / "out")
            except PackagerError as exc:
                outcome = type(exc).__name__
                reason = refusal_kind(exc)
            except MemoryError:  # the rlimit the sandbox child also has; the child answers with sandbox.memory_error()
                outcome = "InputFileError"
            except Exception as exc:  # noqa: BLE001 - the finding this harness exists for
                outcome = f"unexpected:{type(exc).__name__}"
                error = "".join(traceback.format_exception(exc))
            seconds = time.perf_counter() - started
            if error is not None:
                key = (outcome, leak_site(error))
                saved[key] += 1
                if saved[key] <= SAVED_PER_KIND:
                    save_reproducer(crashes, args, index, outcome, origin, folder, error)
            results.write(json.dumps({"i": index, "outcome": outcome, "seconds": round(seconds, 4), "reached": reached[0], "why": reason,
                                      **({"error": error.strip().splitlines()[-1][:300], "at": leak_site(error)} if error else {})}) + "\n")
            results.flush()


def refusal_kind(exc: Exception) -> str:
    """Which check refused an input, for the outcome split: the message without the file name, numbers and quoted values."""
    import re

    text = str(exc).split(". ")[0]
    text = re.sub(r"^input[\w.]*(:| )\s*", "", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|\[[^]]*\]", "…", text)
    return re.sub(r"-?\d[\d.e+-]*", "N", text)[:80]


def _fatal_part(log: str) -> str:
    """faulthandler's report (signal and Python stack) without its long list of extension modules."""
    start = log.rfind("Fatal Python error")
    if start < 0:
        return log[-6000:]
    end = log.find("Extension modules", start)
    return log[start:end if end > 0 else start + 6000]


def _self_test(index: int) -> None:
    """FUZZ_SELF_TEST=segv:I|abort:I|hang:I|write:I:PATH makes input I crash, hang or write PATH, so the tests can show the
    supervisor sees it and the confinement holds."""
    kind, _, at = os.environ.get("FUZZ_SELF_TEST", "").partition(":")
    at, _, target = at.partition(":")
    if at != str(index):
        return
    if kind == "write":  # write:I:PATH: a payload writing outside the worker's folders (the confinement test)
        with contextlib.suppress(OSError):
            Path(target).write_text("escaped")
        return
    if kind == "segv":
        import ctypes

        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "hang":
        while True:
            time.sleep(1)


def leak_site(error: str) -> str:
    """The last frame of packager's own code in a traceback: where a foreign exception got through."""
    frames = [line.strip() for line in error.splitlines() if line.strip().startswith("File ")]
    ours = [f for f in frames if str(ROOT) in f and "/tests/fuzz/" not in f]
    return (ours or frames or ["?"])[-1].replace(str(ROOT) + "/", "")


def save_reproducer(crashes: Path, args: argparse.Namespace, index: int, outcome: str, origin: str, folder: Path, detail: str) -> Path:
    """The input and how to replay it, under CRASHES/<family>-<action>-<outcome>-<index>/."""
    name = f"{args.family}-{args.action}-{outcome.replace(':', '-')}-{index}"
    target = crashes / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(folder, target)
    replay = f"python -m tests.fuzz.harness --family {args.family} --action {args.action} --seed {args.seed} --only {index}"
    info = {"family": args.family, "action": args.action, "seed": args.seed, "index": index, "outcome": outcome, "made_from": origin,
            "replay": replay, "detail": _fatal_part(detail)}
    (target / "info.json").write_text(json.dumps(info, indent=1))
    (target / "child.log").write_text(detail)
    return target


# ------------------------------------------------------------------ the parent: supervise, restart, confirm

def build_seeds(family: str, folder: Path) -> list[dict]:
    """In a child process: PMML validation starts a JVM, and the frameworks' imports stay out of this process."""
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.seeds", family, str(folder)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **CHILD_ENV, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"building the {family} seeds failed:\n{done.stderr[-3000:]}")
    return json.loads((folder / "seeds.json").read_text())


def _child(args: argparse.Namespace, action: str, start: int, stop: int, work: Path, seeds: Path, crashes: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.fuzz.harness", "--worker", "--family", args.family, "--action", action, "--seed", str(args.seed),
               "--start", str(start), "--stop", str(stop), "--work", str(work), "--seeds", str(seeds), "--crashes", str(crashes)]
    log = (work / "child.log").open("ab")
    limits = None
    if args.bwrap:
        command, limits = _confined(command, work, seeds, crashes)
    return subprocess.Popen(command, cwd=work, stdout=log, stderr=log, start_new_session=True, preexec_fn=limits.apply if limits else None,
                            env={**os.environ, **CHILD_ENV, "PYTHONPATH": str(ROOT)})


def _confined(worker_command: list[str], work: Path, seeds: Path, crashes: Path) -> tuple[list[str], object]:
    """The worker command inside the sandbox child's bwrap command line and rlimits (``packager.sandbox.command``):
    the work folder is its workspace (writable, its ``tmp/`` is /tmp), the crash folder is writable too, the seeds
    and the repository are read-only."""
    from packager import sandbox

    shutil.rmtree(work / "sandbox", ignore_errors=True)  # a restarted worker gets a fresh /tmp
    (work / "sandbox").mkdir()
    crashes.mkdir(parents=True, exist_ok=True)  # bwrap binds existing folders only
    space = sandbox.Workspace(work / "sandbox")
    line = sandbox.command(sandbox.bwrap_path(), space, [seeds.parent, ROOT], answer_fd=1)
    tail = line.index("--")
    line = [*line[:tail], "--bind", str(work), str(work), "--bind", str(crashes), str(crashes), "--chdir", str(work), "--",
            *worker_command]
    limits = sandbox.Limits.from_env()
    # one worker runs thousands of inputs: the CPU limit is for the whole loop (the supervisor times each input)
    return line, dataclasses.replace(limits, cpu_seconds=10 * 3600)


def _watch(child: subprocess.Popen, work: Path, limit: float) -> str | None:
    """Wait for the child; kill it when one input runs past ``limit``. Return "hang" or None."""
    while child.poll() is None:
        time.sleep(0.25)
        try:
            current = json.loads((work / "current").read_text())
        except (OSError, ValueError):
            continue
        if time.time() - current["started"] > limit:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return "hang"
    return None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code if code < 0 else code - 128).name  # bwrap exits 128 + the signal that killed its child
    except ValueError:
        return f"signal{-code}"


def run_action(args: argparse.Namespace, action: str, start: int, stop: int, seeds: Path, crashes: Path, confirm: bool = True) -> dict:
    """Inputs start..stop-1 of ``action``; crashes and hangs recorded, confirmed alone, and skipped."""
    outcomes: collections.Counter = collections.Counter()
    refusals: collections.Counter = collections.Counter()
    findings: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{args.family}-") as tmp:
        work = Path(tmp)
        position, restarts = start, 0
        while position < stop:
            (work / "current").unlink(missing_ok=True)
            child = _child(args, action, position, stop, work, seeds, crashes)
            died = _watch(child, work, TIME_LIMIT[action] * args.time_scale)
            if died is None and child.returncode == 0:
                break
            if died is None and 0 < child.returncode <= 128:  # the loop itself failed: a harness bug, not a finding
                raise RuntimeError(f"the fuzz worker exited with {child.returncode}:\n{(work / 'child.log').read_text()[-3000:]}")
            restarts += 1
            if not (work / "current").exists():
                raise RuntimeError(f"the fuzz worker died before its first input:\n{(work / 'child.log').read_text()[-3000:]}")
            current = json.loads((work / "current").read_text())
            index = current["index"]
            outcome = "hang" if died else f"crash:{_signal_name(child.returncode)}"
            log_tail = (work / "child.log").read_text(errors="replace")[-200_000:]
            saved = save_reproducer(crashes, _with(args, action), index, outcome, current["origin"], work / "in", log_tail)
            finding = {"index": index, "outcome": outcome, "made_from": current["origin"], "saved": str(saved)}
            if confirm:
                alone = run_action(args, action, index, index + 1, seeds, crashes / "confirm", confirm=False)
                finding["confirmed_alone"] = any(k.startswith(("crash", "hang")) for k in alone["outcomes"])
            findings.append(finding)
            outcomes[outcome] += 1
            outcomes["inputs"] += 1
            position = index + 1
        for line in (work / "results.jsonl").read_text().splitlines() if (work / "results.jsonl").exists() else []:
            row = json.loads(line)
            outcomes["inputs"] += 1
            outcomes[row["outcome"]] += 1
            outcomes["reached_framework"] += row["reached"]
            outcomes["seconds"] += row["seconds"]
            if row.get("why"):
                refusals[f"{row['outcome']}: {row['why']}"] += 1
            if row["outcome"].startswith("unexpected"):
                findings.append({"index": row["i"], "outcome": row["outcome"], "error": row.get("error", ""), "at": row.get("at", "")})
    outcomes["seconds"] = round(outcomes["seconds"], 1)
    return {"outcomes": dict(outcomes), "findings": findings, "restarts": restarts, "refused_by": dict(refusals.most_common(25))}


def _with(args: argparse.Namespace, action: str) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "action": action})


def fuzz_family(args: argparse.Namespace) -> dict:
    crashes = Path(args.crashes).resolve()
    crashes.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-seeds-{args.family}-") as tmp:
        started = time.perf_counter()
        build_seeds(args.family, Path(tmp))
        seeds = Path(tmp) / "seeds.json"
        report: dict = {"family": args.family, "seed": args.seed, "crash_folder": str(crashes),
                        "seed_seconds": round(time.perf_counter() - started, 1)}
        plan = [(args.action, args.only, args.only + 1)] if args.only is not None else [("inspect", 0, args.count), ("convert", 0, args.convert)]
        for action, start, stop in plan:
            if stop <= start:
                continue
            began = time.perf_counter()
            result = run_action(args, action, start, stop, seeds, crashes)
            wall = time.perf_counter() - began
            result.update(wall_seconds=round(wall, 1), inputs_per_second=round((stop - start) / wall, 2))
            report[action] = result
    return report


def parse(argv: list[str]) -> argparse.Namespace:
    from tests.fuzz.seeds import FAMILIES

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.harness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=FAMILIES, default="sklearn")
    parser.add_argument("--count", type=int, default=10_000, help="inputs to inspect (default 10,000)")
    parser.add_argument("--convert", type=int, default=None, help="inputs to convert (default count/20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, default=None, help="re-run input ONLY of --action alone")
    parser.add_argument("--action", choices=("inspect", "convert"), default="inspect")
    parser.add_argument("--crashes", default=str(Path(tempfile.gettempdir()) / "packager-fuzz-crashes"))
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply the per-input time limits (a loaded machine)")
    parser.add_argument("--no-bwrap", dest="bwrap", action="store_false",
                        help="run the worker unconfined (default: under bwrap when installed)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--start", "--stop"):
        parser.add_argument(hidden, type=int, default=0, help=argparse.SUPPRESS)
    for hidden in ("--work", "--seeds"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bwrap and not args.worker:
        from packager import sandbox

        try:
            sandbox.bwrap_path()
        except Exception:  # noqa: BLE001 - MissingDependency: no bwrap here, the worker runs unconfined
            args.bwrap = False
    if args.convert is None:
        args.convert = max(args.count // 20, 1) if args.count >= 20 else 0
    return args


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    arguments = parse(sys.argv[1:])
    if arguments.worker:
        worker(arguments)
    else:
        print(f"crash reproducers go to {arguments.crashes}", file=sys.stderr)
        print(json.dumps(fuzz_family(arguments)))
