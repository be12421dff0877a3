"""Layer two of "load untrusted model files safely": containment for what a static check misses.

Every public function that opens an untrusted file (``convert``, ``inspect``, ``validate``,
``package_source``, ``predict``, ``bench``; ``predict --engine dask|spark`` per partition) runs its work
in a child process confined by bubblewrap (``bwrap``). The child sees an allow-list, not the host minus a
deny-list (``packager.sandbox_view``): an empty read-only root holding ``/usr`` (and Debian's merged-/usr
links), ten measured ``/etc`` entries (loader cache, time zone, the JVM's alternatives and config) plus a
written passwd/group/hosts naming only the sandbox's user and host, the interpreter's prefixes, its
``sys.path`` folders and editable-install targets, packager's code, the model's own paths (read-only) and
one writable workspace the parent created and later renames output out of, whose ``tmp/`` is a private
disk-backed ``/tmp`` (``$HOME`` is a folder in it). Not the user's home, not the current folder, not
``/run``, ``/var`` or the host's ``/tmp``: no host unix socket has a path inside, and the network namespace
(loopback only, nothing listening) hides the abstract ones. Environment variables pass by allow-list
(Python's, the frameworks' thread and log settings, locale, packager's limits); credentials never arrive.
Also: its own PID namespace (it cannot see or signal the parent; everything it forks dies with it), no
capabilities, a new session (no TIOCSTI into the user's terminal), ``/dev`` read-only and a 64 MiB
``/dev/shm``, rlimits on memory, CPU time, file size and open files, a task cap and a memory cap for the
whole sandbox (a pids and a memory cgroup where the host lets us make one: ``packager.sandbox_cgroup``;
``RLIMIT_NPROC`` for other users), and a wall-clock timeout from the parent.

What crosses the boundary is data: the request is JSON on the child's stdin (arrays given in
memory go as ``.npy``/``.npz``/``.parquet`` files in a read-only folder), the answer is JSON lines
on a pipe (progress lines, then one result or one error ``{type, what, hint}`` re-raised here as
the same ``packager.errors`` class). A child killed by a signal or a limit becomes one typed
error line. ``trust=True`` (``--trust``) is the only way around the sandbox; trust never comes
from a file, a manifest or a registry.

This module spawns and maps errors; ``packager.confined`` says what each operation sends (its request,
``packager.requests``) and gets back, ``packager._sandbox_child`` is the child's entry point and
``packager.workers`` executes the request there. Nothing tells a process it is the child: the child simply
calls the worker, where the parent calls ``confined``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from packager import errors, settings
from packager import sandbox_cgroup as cgroup
from packager import sandbox_view as view
from packager.errors import InputFileError, MissingDependency, PackagerError, UnsafeModelError, UsageError

ENV_BWRAP = settings.BWRAP  # path of the bwrap binary (default: found on PATH or in BWRAP_PLACES)
BWRAP_PLACES = ("/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap")
# Tests only: the child loads with the static checks off (plain pickle.load, torch.load(weights_only=False),
# Keras unsafe mode), to prove that the sandbox alone contains a payload. Read only by the child's entry point
# (``packager._sandbox_child``) and honoured only under a read-only root, so it can never weaken an unconfined load.
ENV_SKIP_CHECKS = settings.SKIP_STATIC_CHECKS
ENV_MEMORY = settings.SANDBOX_MEMORY_GB
ENV_CPU = settings.SANDBOX_CPU_SECONDS
ENV_FILE = settings.SANDBOX_FILE_GB
ENV_OPEN_FILES = settings.SANDBOX_OPEN_FILES
ENV_TIMEOUT = settings.SANDBOX_TIMEOUT
ENV_PROCESSES = settings.SANDBOX_PROCESSES

MAX_ANSWER_BYTES = 64 << 20  # a child may print progress and one result; more than this is an attack on the parent

INSTALL_HINT = (
    "install bubblewrap (apt-get install bubblewrap; `make setup` does it), "
    "or pass --trust (trust=True) for a file you trust: it then runs unconfined, recorded in the manifest"
)
LIMIT_HINT = "raise it with {env}=... if the model really needs more; nothing was written"


@dataclass(frozen=True)
class Limits:
    """What the child may use. Defaults are sized for real conversions, measured here (Nov 2026):
    TensorFlow + Keras reserve 2.5 GB of address space for a 3-layer MLP (0.7 GB resident), torch and
    onnxruntime about 0.7 GB, and RLIMIT_AS counts reservations, so the memory default is 3/4 of RAM
    (at least 4 GB): a model that fits the machine converts, a payload cannot take the whole machine.
    RLIMIT_AS (not RLIMIT_DATA) because it also caps mmapped files and thread stacks."""

    memory_gb: float
    cpu_seconds: int = 3600  # CPU time sums threads: 2 busy threads for the whole wall-clock budget
    file_gb: float = 32.0  # RLIMIT_FSIZE: larger than any model we package, far below a disk-filling payload
    open_files: int = 4096  # TensorFlow opens a few hundred files; a descriptor bomb stops here
    wall_seconds: float = 1800.0  # the parent kills the sandbox after this long
    # tasks (processes and threads) of the whole sandbox; measured peaks (pids.peak, 2 cores, Dec 2026): sklearn->ONNX 8,
    # sklearn->PMML (JPMML's JVM) 27, Keras->ONNX 19, Keras->TFLite 23, TorchScript->ONNX 7, Spark->ONNX 209,
    # Spark->PMML 228 (the JVM's pools grow with the cores): 0 means 512 + 32 per core (576 here)
    processes: int = 0
    nproc_base: int | None = None  # a non-root user's tasks on the host before the call (RLIMIT_NPROC counts them too)
    shm_mb: float = 64.0  # /dev/shm: POSIX semaphores and small shared segments; nothing we load needs more

    @classmethod
    def from_env(cls) -> "Limits":
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        return cls(
            memory_gb=_env_number(ENV_MEMORY, max(4.0, round(ram_gb * 0.75, 1))),
            cpu_seconds=int(_env_number(ENV_CPU, cls.cpu_seconds)),
            file_gb=_env_number(ENV_FILE, cls.file_gb),
            open_files=int(_env_number(ENV_OPEN_FILES, cls.open_files)),
            wall_seconds=_env_number(ENV_TIMEOUT, cls.wall_seconds),
            processes=int(_env_number(ENV_PROCESSES, 512 + 32 * (os.cpu_count() or 1))),
        )

    def apply(self) -> None:
        """In the forked bwrap process just before exec: bwrap and the child inherit the limits (soft = hard,
        and the child has no CAP_SYS_RESOURCE to raise them)."""
        import resource

        memory = int(self.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 5))  # SIGXCPU, then SIGKILL
        size = int(self.file_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing payload leaves no core file
        if self.nproc_base is not None:  # not for root: the kernel ignores RLIMIT_NPROC for uid 0 (the pids cgroup binds it)
            cap = self.nproc_base + self.processes
            resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))


def _env_number(name: str, default: float) -> float:
    return settings.positive_number(name, default)


def running_confined() -> bool:
    """Whether this process runs under a read-only root, as inside bubblewrap (said in messages; read from the file
    system, not from a flag)."""
    return bool(os.statvfs("/").f_flag & os.ST_RDONLY)


def skip_static_checks() -> bool:
    """The test-only switch, asked only by the child's entry point, and honoured only where the root really is read-only
    (inside bubblewrap): run unconfined, the checks stay on whatever the environment says."""
    return settings.skip_static_checks_asked() and running_confined()


def confines(trust: bool, registry: Any = None) -> bool:
    """Whether this call must delegate to a sandboxed child. A custom plugin registry cannot cross the
    boundary (it is live code): loading an untrusted file with one is refused rather than run unconfined."""
    if trust:
        return False
    if registry is not None:
        from packager.plugins import default_registry

        if registry is not default_registry():
            raise UsageError(
                "a custom plugin registry cannot be passed into the sandbox that loads untrusted files",
                "register plugins through the packager.converters entry point, or pass trust=True for a file you trust",
            )
    return True


def bwrap_path() -> str:
    """The bwrap binary ($PACKAGER_BWRAP, else PATH, else Debian's place: a narrowed PATH must not turn the
    sandbox off), or a one-line MissingDependency (exit 3) saying how to get it."""
    configured = settings.bwrap()
    if configured:
        found = configured if os.access(configured, os.X_OK) and Path(configured).is_file() else None
    else:
        found = shutil.which("bwrap") or next((p for p in BWRAP_PLACES if os.access(p, os.X_OK)), None)
    if not found:
        raise MissingDependency(
            "bubblewrap (bwrap) is not installed, and untrusted model files are only opened inside its sandbox", INSTALL_HINT
        )
    return found


# ---------------------------------------------------------------- the workspace: the one writable folder


class Workspace:
    """A folder the parent owns: ``out/`` is where the child writes, ``tmp/`` is its private /tmp, ``in/``
    holds arrays given in memory (read-only inside). Removed on exit, so nothing half-written remains."""

    def __init__(self, root: Path):
        self.root = root
        self.out, self.tmp, self.inputs, self.etc = root / "out", root / "tmp", root / "in", root / "etc"
        self.shared: dict[str, str] = {}  # host folder -> where the child sees it, read-only
        for folder in (self.out, self.tmp, self.inputs, self.etc, self.tmp / "home"):
            folder.mkdir()

    def share(self, folder: Path) -> None:
        """Show the child a folder of the packager home (what a runtime built for it: ``Runtime.shared_with_child``)
        read-only, at the same place under the child's own packager home, where its load looks first. Read-only by
        the mount: a child that ran hostile code cannot change what the next process loads from there."""
        folder = Path(folder).absolute()
        relative = folder.relative_to(settings.home().absolute())  # ValueError for anything outside the home
        self.shared[str(folder)] = str(Path(CHILD_HOME) / settings.HOME_FOLDER / relative)

    def data(self, name: str, value: Any) -> str | None:
        """A path the child can read for ``value``: a path as given, or an in-memory array written as a file."""
        if value is None or isinstance(value, (str, Path)):
            return str(Path(value).absolute()) if value is not None else None
        import numpy as np

        if hasattr(value, "to_parquet"):  # a DataFrame keeps its column names and dtypes
            path = self.inputs / f"{name}.parquet"
            value.to_parquet(path)
        elif isinstance(value, Mapping):
            path = self.inputs / f"{name}.npz"
            arrays: dict[str, Any] = {str(k): np.asarray(v) for k, v in value.items()}
            np.savez(path, **arrays)
        else:
            array = np.asarray(value)
            if array.dtype == object:
                raise UsageError(
                    f"the {name} array holds Python objects, which cannot cross into the sandbox as data",
                    "pass a DataFrame (strings, categories) or a file path",
                )
            path = self.inputs / f"{name}.npy"
            np.save(path, array, allow_pickle=False)
        return str(path)

    def call(
        self,
        function: str,
        args: Mapping[str, Any],
        *,
        label: str,
        reads: Iterable[Any] = (),
        progress: Callable[[Any], None] | None = None,
        limits: Limits | None = None,
    ) -> Any:
        """Run ``function`` (a name in the child's table) with JSON ``args`` in the sandbox; return its result."""
        if args.get("model_class"):  # the user's own module, imported where they said: the current folder or PYTHONPATH
            reads = [*reads, *user_code_paths()]
        return run(function, args, label=label, workspace=self, reads=reads, progress=progress, limits=limits)


def user_code_paths() -> list[str]:
    """Where ``--model-class module:Name`` is imported from (the hint says so: the current folder or PYTHONPATH), bound
    read-only only for such a call; the allow-list otherwise shows neither (measured: every --model-class conversion
    failed with "No module named 'mymodels'" once the current folder was no longer bound)."""
    entries = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return [str(Path(p).absolute()) for p in entries if p and Path(p).is_dir()]


@contextlib.contextmanager
def workspace(beside: Path | None = None, prefix: str = "packager") -> Iterator[Workspace]:
    """A workspace beside ``beside`` (the output's folder, so the final rename stays on one filesystem)."""
    if beside is not None:
        beside.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{prefix}.", suffix=".sandbox", dir=beside))
    try:
        yield Workspace(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_output(path: Path) -> None:
    """What the child wrote is refused unless it is plain files and folders: a symlink to ~/.ssh in a package
    would be pushed to the registry by the parent, a FIFO would hang it, a hard link would alias a host file."""
    entries = [path, *path.rglob("*")] if path.is_dir() and not path.is_symlink() else [path]
    for entry in entries:
        info = entry.lstat()
        plain = stat.S_ISDIR(info.st_mode) or (stat.S_ISREG(info.st_mode) and info.st_nlink == 1)
        if not plain:
            raise UnsafeModelError(
                f"the sandboxed model process wrote {entry.name}, which is not a plain file or folder",
                "the model file tried to plant a link or device; nothing was kept",
            )


# ---------------------------------------------------------------- spawning


def command(bwrap: str, workspace: Workspace, reads: Iterable[Any], answer_fd: int, limits: Limits | None = None) -> list[str]:
    """The bwrap command line: an allow-list of binds on an empty root (``packager.sandbox_view``). Order matters:
    a mount point is made in what is mounted before it, and the root and /dev turn read-only last."""
    limits = limits or Limits.from_env()
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", view.HOSTNAME]
    args += ["--dev", "/dev", "--proc", "/proc"]
    # /dev/shm is a tmpfs in host memory that RLIMIT_AS does not count: capped (measured: 1 GiB landed there before)
    args += ["--size", str(int(limits.shm_mb * 2**20)), "--tmpfs", "/dev/shm"]
    for kind, path in view.system_paths():
        args += ["--symlink", os.readlink(path), path] if kind == "link" else ["--ro-bind", path, path]
    for path in view.etc_paths():
        args += ["--ro-bind", path, path]
    for name, written in view.write_identity(workspace.etc).items():
        args += ["--ro-bind", str(written), f"/etc/{name}"]
    args += ["--bind", str(workspace.tmp), "/tmp"]  # before the code and reads: a venv or a model under /tmp stays visible
    code = view.code_paths()
    for path in code:
        args += ["--ro-bind", path, path]
    reads = _reads(reads)
    for path in reads:
        args += ["--ro-bind", path, path]
    root = str(workspace.root)
    args += ["--bind", root, root, "--ro-bind", str(workspace.inputs), str(workspace.inputs)]
    for host, inside in workspace.shared.items():  # after /tmp: they appear inside the child's private home
        args += ["--ro-bind", host, inside]
    args += ["--ro-bind", str(workspace.etc), str(workspace.etc)]
    cwd = Path.cwd()
    chdir = str(cwd) if view.visible(cwd, [*code, *reads]) else str(workspace.out)
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", chdir]
    args += ["--", sys.executable, "-m", "packager._sandbox_child", str(answer_fd)]
    return args


def _reads(reads: Iterable[Any]) -> list[str]:
    """The model and its inputs, bound read-only: only these paths of the user's folders are visible."""
    paths = [Path(p).absolute() for p in reads if isinstance(p, (str, os.PathLike))]  # in-memory data travels as files in in/
    return sorted({str(p) for p in paths if p.exists()}, key=len)


CHILD_HOME = "/tmp/home"  # in the private /tmp (Workspace makes it): a payload's ~/ stays there


def _child_env() -> dict[str, str]:
    return view.environment(home=CHILD_HOME)


def run(
    function: str,
    args: Mapping[str, Any],
    *,
    label: str,
    workspace: Workspace,
    reads: Iterable[Any] = (),
    progress: Callable[[Any], None] | None = None,
    limits: Limits | None = None,
) -> Any:
    """Spawn the confined child, send the request, read the answer, map every failure to one typed error."""
    limits = limits or Limits.from_env()
    bwrap = bwrap_path()
    line = command(bwrap, workspace, reads, -1, limits)
    group = cgroup.create(limits.processes, int(limits.memory_gb * 2**30))
    try:
        return _spawn(line, function, args, label, group, limits, progress)
    finally:
        group.remove()


def _spawn(line: list[str], function: str, args: Mapping[str, Any], label: str, group: cgroup.Group, limits: Limits, progress: Any) -> Any:
    if os.getuid() != 0:
        limits = dataclasses.replace(limits, nproc_base=cgroup.user_tasks(os.getuid()))

    def confine() -> None:  # in the forked process before exec: bwrap and all it starts inherit both
        limits.apply()
        group.enter()

    read_end, write_end = os.pipe()
    line[-1] = str(write_end)
    with tempfile.TemporaryFile() as log:  # the child's stdout and stderr, outside every bind (libraries print)
        try:
            process = subprocess.Popen(
                line,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(write_end,),
                env=_child_env(),
                preexec_fn=confine,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_end)
            raise MissingDependency(f"bubblewrap ({line[0]}) cannot be started ({exc.strerror})", INSTALL_HINT) from None
        finally:
            os.close(write_end)
        try:
            with contextlib.suppress(BrokenPipeError):
                assert process.stdin is not None  # Popen(stdin=PIPE)
                process.stdin.write(json.dumps({"function": function, "args": dict(args)}).encode())
                process.stdin.close()
            answer, timed_out = _read_answer(read_end, process, limits, progress)
        except BaseException:  # Ctrl-C or a failing progress callback: the sandbox goes with the parent's attention
            _kill(process)
            raise
        code = process.wait()
        last_line = _last_line(log)
    if answer is not None:
        from packager.logs import replay

        replay(answer.get("log"))
    if answer is not None and code == 0 and "error" not in answer:
        _replay_warnings(answer)
        return answer.get("result")
    if answer is not None and "error" in answer:
        _replay_warnings(answer)
        raise _rebuild_error(answer["error"], label)
    raise _death(code, timed_out, label, limits, last_line)


def _read_answer(fd: int, process: subprocess.Popen, limits: Limits, progress) -> tuple[dict | None, bool]:
    """JSON lines until EOF: progress lines go to ``progress``; the last other line is the answer. EOF comes
    when every process of the sandbox is gone (the PID namespace dies with the child), so a forked
    grandchild cannot keep the parent waiting past the timeout."""
    deadline = time.monotonic() + limits.wall_seconds
    buffer, answer, received = b"", None, 0
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    _kill(process)
                    return None, True
                if not selector.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                received += len(chunk)
                if received > MAX_ANSWER_BYTES:
                    _kill(process)
                    return None, False
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    message = _parse(line)
                    if message is not None and "progress" in message:
                        if progress is not None:
                            progress(message["progress"])
                    elif message is not None:
                        answer = message
    finally:
        os.close(fd)
    if buffer.strip():
        answer = _parse(buffer) or answer
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(process)
        return None, True
    return answer, False


def _parse(line: bytes) -> dict | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _kill(process: subprocess.Popen) -> None:
    """bwrap runs in its own process group; the child dies with it (--die-with-parent, PID namespace)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _replay_warnings(answer: Mapping[str, Any]) -> None:
    import warnings

    for text in answer.get("warnings", [])[:20]:
        if isinstance(text, str):
            warnings.warn(text[:500], errors.PackagerWarning, stacklevel=3)


def _rebuild_error(error: Any, label: str) -> PackagerError:
    """The child's error as the same class, looked up only among packager's own error classes."""
    if not isinstance(error, Mapping):
        return InputFileError(f"the sandboxed model process gave an unreadable answer while {label}", "the file is not a usable model")
    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, PackagerError)):
        cls = InputFileError
    what, hint = (" ".join(str(error.get(key, "")).split())[:1000] for key in ("what", "hint"))
    exc = cls.__new__(cls)
    PackagerError.__init__(exc, what or f"the model failed while {label}", hint)
    if cls is errors.ValidationFailed and isinstance(exc, errors.ValidationFailed):  # (isinstance for the type checker)
        exc.report = _report(error.get("report"))
    trace = str(error.get("trace") or "")[-errors.TRACE_CHARS :]
    exc.child_traceback = "".join(c if c.isprintable() or c == "\n" else "?" for c in trace)  # no terminal escapes
    return exc


def _report(data: Any) -> Any:
    if not isinstance(data, Mapping):
        return None
    from packager.validation import ValidationReport

    with contextlib.suppress(Exception):
        return ValidationReport.from_dict(data)
    return None


def _death(code: int, timed_out: bool, label: str, limits: Limits, last_line: str) -> PackagerError:
    """A child that gave no answer: killed by a signal, a limit or the timeout, or bwrap itself failed."""
    if timed_out:
        return InputFileError(
            f"the model process did not finish within the sandbox's time limit of {limits.wall_seconds:g} s while {label}",
            LIMIT_HINT.format(env=ENV_TIMEOUT),
        )
    if last_line.startswith("bwrap:"):
        return MissingDependency(f"bubblewrap cannot create its sandbox here ({last_line[:200]})", INSTALL_HINT)
    signum = code - 128 if code > 128 else -code if code < 0 else 0
    if signum in (signal.SIGXCPU, signal.SIGKILL) and "MemoryError" not in last_line:
        if signum == signal.SIGXCPU:
            return InputFileError(
                f"the model process exceeded the sandbox's CPU-time limit of {limits.cpu_seconds} s while {label}",
                LIMIT_HINT.format(env=ENV_CPU),
            )
        return InputFileError(
            f"the model process was killed (SIGKILL: out of memory, or the CPU-time limit of {limits.cpu_seconds} s) while {label}",
            LIMIT_HINT.format(env=ENV_MEMORY),
        )
    if signum == signal.SIGXFSZ:
        return InputFileError(
            f"the model process exceeded the sandbox's file-size limit of {limits.file_gb:g} GB while {label}",
            LIMIT_HINT.format(env=ENV_FILE),
        )
    if signum == signal.SIGABRT and ("bad_alloc" in last_line or "memory" in last_line.lower()):
        return InputFileError(
            f"the model process exceeded the sandbox's memory limit of {limits.memory_gb:g} GB while {label}",
            LIMIT_HINT.format(env=ENV_MEMORY),
        )
    if signum:
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
        return UnsafeModelError(
            f"the model process was killed by {name} while {label}",
            "the file crashed its loader inside the sandbox; nothing was written. Re-export it from the training code",
        )
    detail = f" ({last_line[:200]})" if last_line else ""
    return InputFileError(
        f"the model process exited with status {code} without an answer while {label}{detail}",
        "the file ended its loader early; nothing was written. Re-export it from the training code",
    )


def _last_line(log: Any) -> str:
    """The last non-empty line the child (or bwrap) printed, for one-line messages."""
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - 4096))
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def memory_error(limits: Limits | None = None) -> InputFileError:
    limits = limits or Limits.from_env()
    return InputFileError(
        f"the model process exceeded the sandbox's memory limit of {limits.memory_gb:g} GB", LIMIT_HINT.format(env=ENV_MEMORY)
    )
