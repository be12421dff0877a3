"""The sandbox (layer two): what a static check misses stays inside a bubblewrap child.

Containment is proven with the static checks OFF (the test-only switch, honoured only by a confined
child): every code-running attack of the corpus, plus payloads that try the sandbox's own walls
(``tests/attacks/families/sandbox_escape.py``), leaves no trace outside and comes back as one typed line.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from packager import sandbox
from packager.errors import InputFileError, MissingDependency, OutputExists, PackagerError, UnsafeModelError
from tests.attacks.build_corpus import _Reduce, benign_keras, benign_torch, build
from tests.attacks.families.sandbox_escape import SLEEPER, home_marker, tmp_marker
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("iris")
    X, y = load_iris(return_X_y=True)
    path = root / "iris.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(X, y)))
    np.save(root / "rows.npy", X[:40].astype(np.float32))
    return path, root / "rows.npy"


def _evil(path: Path, code: str) -> Path:
    path.write_bytes(pickle.dumps(_Reduce(exec, code), protocol=4))
    return path


@pytest.fixture
def unchecked(monkeypatch):
    """The test-only switch: the child loads with the static checks off, so only the sandbox stands."""
    monkeypatch.setenv(sandbox.ENV_SKIP_CHECKS, "1")


def _sleepers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", SLEEPER.encode()]:
                found.append(int(entry.name))
        except OSError:
            pass
    return found


# ---------------------------------------------------------------- containment with the static checks off


@pytest.fixture(scope="module")
def hostile_world(tmp_path_factory):
    """A home with planted secrets, a registry home with a catalog, a token, and a loopback listener."""
    root = tmp_path_factory.mktemp("world")
    home = root / "home"
    for name, text in {".ssh/id_ed25519": "SSH-SECRET-7f3a", ".aws/credentials": "AWS-SECRET-9c1d"}.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    registry_home = root / "packager-home"
    registry_home.mkdir()
    (registry_home / "catalog.db").write_text("CATALOG-SECRET-44e2")
    (home / ".cache/huggingface").mkdir(parents=True)
    (home / ".cache/huggingface/token").write_text("HF-SECRET-2d4e")
    cwd = root / "cwd"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("CWD-SECRET-6a8c")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    run = Path("/run") if os.access("/run", os.W_OK) else Path("/var/tmp")
    socket_paths = [cwd / "db.sock", Path(f"/tmp/packager-world-{os.getpid()}.sock"), run / f"packager-world-{os.getpid()}.sock"]
    unix = [_unix_listener(path) for path in socket_paths]
    env_secrets = {"MYSQL_PWD": "MYSQL-SECRET-1b3d", "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=AZURE-SECRET-5f7a",
                   "GH_PAT": "GH-SECRET-9e1c", "MLFLOW_TRACKING_URI": "https://ml:MLFLOW-SECRET-3a5b@mlflow.example"}
    machine_id = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else ""
    yield {"home": home, "cwd": cwd, "packager_home": registry_home, "listener": listener, "unix": unix,
           "sockets": socket_paths, "env": env_secrets,
           "reads": [home / ".ssh/id_ed25519", home / ".aws/credentials", home / ".cache/huggingface/token", cwd / "notes.txt"],
           "secrets": ("SSH-SECRET-7f3a", "AWS-SECRET-9c1d", "CATALOG-SECRET-44e2", "TOKEN-SECRET-0b9e", "HF-SECRET-2d4e",
                       "CWD-SECRET-6a8c", "MYSQL-SECRET-1b3d", "AZURE-SECRET-5f7a", "GH-SECRET-9e1c", "MLFLOW-SECRET-3a5b",
                       *([machine_id] if len(machine_id) >= 16 else []))}
    listener.close()
    for server, path in zip(unix, socket_paths, strict=True):
        server.close()
        path.unlink(missing_ok=True)


def _convert_sample(attacks: list) -> list:
    """convert binds a writable workspace the inspect child lacks: every attack aimed at it (escape_*), and one attack per
    family and file kind for the rest (the load inside convert is inspect's load; all of them go through inspect)."""
    seen, chosen = set(), []
    for attack in attacks:
        kind = (attack.path.parent.name, attack.path.suffix or "folder")
        if attack.name.startswith("escape_") or kind not in seen:
            seen.add(kind)
            chosen.append(attack)
    return chosen


# With the checks off every Spark folder starts a JVM in the child (measured: 35 folders, 207 s, the suite's largest
# growth); the static checks refuse all of them in-process (tests/attacks), and the sandbox around the JVM is the same for
# each: these stand for the ways a folder runs code (SQL, a Python module, a JVM class, a listed hidden record, a link).
SPARK_CONTAINMENT = frozenset({"spark_stage_sql_reads_file", "spark_stage_sql_transformer", "spark_stage_joblib_loader",
                               "spark_stage_jvm_runtime", "spark_listed_hidden_name_x=1", "spark_symlinked_metadata"})


@pytest.mark.slow
@pytest.mark.longest
@pytest.mark.parametrize("entry", ["inspect", "convert"])
def test_every_code_running_attack_is_contained_with_static_checks_off(entry, hostile_world, tmp_path, monkeypatch, unchecked):
    """With the static checks off only the sandbox stands. A payload may then run, and a load may even succeed (a
    TorchScript that prints, a graph whose WriteFile lands in the sandbox's tmpfs): that is the sandbox doing its job.
    What must hold: no marker or secret reaches the host, nothing connects out, no process outlives the call, and every
    failure is one typed line."""
    from packager.conversion import convert
    from packager.inspection import inspect

    world = hostile_world
    monkeypatch.setenv("HOME", str(world["home"]))
    monkeypatch.setenv("PACKAGER_HOME", str(world["packager_home"]))
    monkeypatch.setenv("PACKAGER_TOKEN", "TOKEN-SECRET-0b9e")
    monkeypatch.setenv("PACKAGER_TEST_LISTEN_PORT", str(world["listener"].getsockname()[1]))
    monkeypatch.setenv("PACKAGER_TEST_UNIX_SOCKETS", ":".join(str(p) for p in world["sockets"]))
    monkeypatch.setenv("PACKAGER_TEST_READ_FILES", ":".join(str(p) for p in world["reads"]))
    for name, value in world["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(world["cwd"])
    monkeypatch.setenv(sandbox.ENV_CPU, "4")
    monkeypatch.setenv(sandbox.ENV_TIMEOUT, "60")
    monkeypatch.setenv(sandbox.ENV_FILE, "1")
    monkeypatch.setenv(sandbox.ENV_MEMORY, "8")
    marker = tmp_path / "PWNED"
    benign = benign_keras(benign_torch(tmp_path / "benign"))
    attacks = [a for a in build(tmp_path / "attacks", str(marker), benign) if a.runs_code]
    assert len(attacks) >= 50 and any(a.name.startswith("escape_") for a in attacks)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    assert SPARK_CONTAINMENT <= {a.name for a in attacks}
    attacks = [a for a in attacks if not a.name.startswith("spark_") or a.name in SPARK_CONTAINMENT]
    if entry == "convert":
        attacks = _convert_sample(attacks)
        assert len(attacks) >= 20
    load = inspect if entry == "inspect" else (lambda path: convert(path, to="onnx", out=outputs / path.name))
    problems, answers = {}, []
    for attack in attacks:
        try:
            answers.append(repr(load(attack.path)))
        except PackagerError as exc:
            line = exc.one_line()
            answers.append(line)
            if "\n" in line or len(line) > 1200:
                problems[attack.name] = f"not one line: {line!r}"
        except Exception as exc:  # anything else escaping is a defect
            problems[attack.name] = f"{type(exc).__name__}: {exc}"
    for server in [world["listener"], *world["unix"]]:
        with pytest.raises(TimeoutError):
            server.accept()  # nothing connected: not the loopback port, not a unix socket in the cwd, /tmp or /run
    assert problems == {}
    assert not marker.exists(), "a payload wrote outside the sandbox"
    assert not Path(tmp_marker(str(marker))).exists(), "the sandbox's /tmp is the host's"
    assert not home_marker(str(marker)).exists()
    assert not (outputs / "PWNED.parent").exists() and not (Path.cwd() / "PWNED.parent").exists()
    written = b"".join(p.read_bytes() for p in outputs.rglob("*") if p.is_file())
    for secret in world["secrets"]:
        assert secret.encode() not in written and all(secret not in a for a in answers), f"{secret} left the sandbox"
    assert _sleepers() == [], "a process outlived the sandbox"
    if entry == "inspect":  # every attack ran, the secret-reading ones included: they did run, and read nothing
        assert any("stolen: " in answer for answer in answers), "the secret-reading payload did run"
        cap = sandbox.Limits.from_env().processes
        forks = [int(m) for a in answers for m in re.findall(r"forked (\d+)", a)]
        assert forks and all(1 <= n < cap for n in forks), forks  # it ran, and stopped below the task cap
        shm = [int(m) for a in answers for m in re.findall(r"shm MiB (\d+)", a)]
        assert shm and all(n <= 64 for n in shm), shm


def test_limits_and_signals_become_one_typed_line(tmp_path, monkeypatch, unchecked):
    from packager.inspection import inspect

    monkeypatch.setenv(sandbox.ENV_CPU, "2")
    monkeypatch.setenv(sandbox.ENV_MEMORY, "4")
    segv = _evil(tmp_path / "segv.pkl", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(UnsafeModelError, match=r"killed by SIGSEGV while inspecting segv\.pkl"):
        inspect(segv)
    hog = _evil(tmp_path / "hog.pkl", "x = bytearray(30 * 2**30)")
    with pytest.raises(InputFileError, match=r"exceeded the sandbox's memory limit of 4 GB.*PACKAGER_SANDBOX_MEMORY_GB"):
        inspect(hog)
    spin = _evil(tmp_path / "spin.pkl", "while True: pass")
    with pytest.raises(InputFileError, match=r"CPU-time limit of 2 s while inspecting spin\.pkl"):
        inspect(spin)
    monkeypatch.setenv(sandbox.ENV_TIMEOUT, "2")
    sleeper = _evil(tmp_path / "sleep.pkl", "import time; time.sleep(60)")
    with pytest.raises(InputFileError, match=r"time limit of 2 s while inspecting sleep\.pkl"):
        inspect(sleeper)
    quitter = _evil(tmp_path / "quit.pkl", "import os; os._exit(3)")
    with pytest.raises(InputFileError, match=r"exited with status 3 without an answer"):
        inspect(quitter)


def test_nothing_half_written_when_the_child_dies_mid_conversion(tmp_path, monkeypatch, unchecked):
    from packager.conversion import convert

    crash = _evil(tmp_path / "crash.pkl", "import os, signal, pathlib\n"
                  "for p in pathlib.Path('/').glob('**/out'):\n"
                  "    if os.access(p, os.W_OK): (p / 'half.onnx').write_text('half')\n"
                  "os.kill(os.getpid(), signal.SIGSEGV)")
    out = tmp_path / "dest"
    with pytest.raises(UnsafeModelError, match="SIGSEGV"):
        convert(crash, to="onnx", out=out / "pkg")
    assert not (out / "pkg").exists()
    assert list(out.iterdir()) == [], "the workspace was not removed"


def test_a_registry_in_the_current_folder_under_tmp_stays_hidden(tmp_path, monkeypatch):
    """Run from a folder under /tmp that holds the registry (catalog + blob folder inside it): the catalog is not there
    (nothing of the current folder is bound), and a model inside the blob folder is readable (bound on its own)."""
    import shutil

    registry = tmp_path / "reg"
    (registry / "blobs").mkdir(parents=True)
    (registry / "catalog.db").write_text("CATALOG-SECRET-5d1c")
    model = registry / "blobs" / "model.bin"
    model.write_text("MODEL-BYTES")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PACKAGER_REGISTRY", f"sqlite:///{registry}/catalog.db")
    monkeypatch.setenv("PACKAGER_BLOBS", str(registry / "blobs"))
    with sandbox.workspace() as ws:
        args = sandbox.command(shutil.which("bwrap"), ws, [model], 3)
        script = f"cat {registry}/catalog.db; ls {registry}; cat {model}; echo x > {registry}/planted"
        run = subprocess.run([*args[: args.index("--")], "--", "/bin/sh", "-c", script], capture_output=True, text=True)
    assert "MODEL-BYTES" in run.stdout, run.stderr
    assert "CATALOG-SECRET" not in run.stdout + run.stderr and "catalog.db" not in run.stdout
    assert "catalog.db: No such file" in run.stderr and not (registry / "planted").exists()


# ---------------------------------------------------------------- the allow-list (issue 21, finding 3)


def _probe_report(path: Path, monkeypatch) -> dict[str, str]:
    """Inspect ``path`` (a probe payload, checks off) and parse the one line it raised: ``probe k=v k=v``."""
    from packager.inspection import inspect

    with pytest.raises(InputFileError) as caught:
        inspect(path)
    line = caught.value.what
    assert "probe " in line, line
    return dict(item.split("=", 1) for item in line.split("probe ", 1)[1].rstrip(")").split())


def _unix_listener(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    listener.settimeout(0.1)
    return listener


@pytest.fixture
def host_sockets(tmp_path, monkeypatch):
    """Listening unix sockets in the current folder, in /tmp and in /run (the host's, where a database listens)."""
    monkeypatch.chdir(tmp_path)
    run = Path("/run") if os.access("/run", os.W_OK) else Path("/var/tmp")
    paths = [tmp_path / "cwd.sock", Path(f"/tmp/packager-probe-{os.getpid()}.sock"), run / f"packager-probe-{os.getpid()}.sock"]
    listeners = [_unix_listener(p) for p in paths]
    yield paths, listeners
    for listener, path in zip(listeners, paths, strict=True):
        listener.close()
        path.unlink(missing_ok=True)


def test_a_payload_sees_only_the_allow_list(tmp_path, monkeypatch, unchecked, host_sockets):
    """With the checks off a payload runs: it cannot connect to a host unix socket (current folder, /tmp, /run), read a
    file under the home folder or the current folder or an /etc file off the list, see a variable off the allow-list,
    start more tasks than the cap, or put more than the /dev/shm cap in memory. The model's own file it can read."""
    sockets, listeners = host_sockets
    home = tmp_path / "home"
    (home / ".cache/huggingface").mkdir(parents=True)
    (home / ".cache/huggingface/token").write_text("HF-TOKEN-SECRET-1a2b")
    (tmp_path / "notes.txt").write_text("CWD-SECRET-3c4d")
    monkeypatch.setenv("HOME", str(home))
    secrets = {"MYSQL_PWD": "MYSQL-SECRET-5e6f", "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=AZURE-SECRET-7a8b",
               "GH_PAT": "GH-SECRET-9c0d", "MLFLOW_TRACKING_URI": "https://ml:MLFLOW-SECRET-1e2f@mlflow.example"}
    for name, value in {**secrets, "PROBE_UNLISTED_SETTING": "1", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(sandbox.ENV_PROCESSES, "64")
    model = tmp_path / "probe.pkl"
    reads = [str(model), str(home / ".cache/huggingface/token"), str(tmp_path / "notes.txt"), "/etc/hostname", "/etc/pip.conf"]
    names = [*secrets, "PROBE_UNLISTED_SETTING", "OMP_NUM_THREADS"]
    _evil(model, "exec(%r, {})" % f"""
import os, socket, time
def bit(action):
    try:
        action()
        return '1'
    except OSError:
        return '0'
def connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(path)
    s.sendall(b'escaped')
sock = ''.join(bit(lambda p=p: connect(p)) for p in {[str(p) for p in sockets]!r})
read = ''.join(bit(lambda p=p: open(p, 'rb').read()) for p in {reads!r})
env = ','.join(n for n in {names!r} if n in os.environ) or '-'
forks = 0
for _ in range(300):
    try:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        forks += 1
    except OSError:
        break
shm = 0
try:
    with open('/dev/shm/fill', 'wb') as fh:
        for _ in range(256):
            fh.write(b'x' * 2**20)
            fh.flush()
            shm += 1
except OSError:
    pass
dev = bit(lambda: open('/dev/fill', 'wb').write(b'x'))
raise ValueError(f'probe sock={{sock}} read={{read}} env={{env}} forks={{forks}} shm={{shm}} dev={{dev}} home={{os.environ["HOME"]}}')
""")
    report = _probe_report(model, monkeypatch)
    assert report["sock"] == "000", report  # the payload ran and failed to connect to each
    for listener in listeners:
        with pytest.raises(TimeoutError):
            listener.accept()
    assert report["read"] == "10000", report  # only the model itself
    assert report["env"] == "OMP_NUM_THREADS", report  # an allowed thread setting passes; the rest never arrives
    assert 1 <= int(report["forks"]) < 64, report
    assert int(report["shm"]) <= 64 and report["dev"] == "0", report
    assert report["home"] == "/tmp/home", report


def test_the_child_environment_is_the_allow_list_only(monkeypatch):
    from packager import sandbox_view

    monkeypatch.setenv("MYSQL_PWD", "x")
    monkeypatch.setenv("TF_VAR_db_password", "x")  # Terraform's, not TensorFlow's
    monkeypatch.setenv("OMP_PROXY_URL", "https://u:pw@proxy")  # an allowed prefix with a password in the value
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = sandbox._child_env()
    assert "LC_ALL" in env and env["HOME"] == "/tmp/home" and env["TMPDIR"] == "/tmp"
    assert not {"MYSQL_PWD", "TF_VAR_db_password", "OMP_PROXY_URL", "PACKAGER_REGISTRY", "PACKAGER_BLOBS"} & set(env)
    unlisted = [k for k in env if k not in sandbox_view.ENV_NAMES and not k.startswith(sandbox_view.ENV_PREFIXES)]
    assert set(unlisted) <= {"PYTHONDONTWRITEBYTECODE", "HOME", "TMPDIR", "HOSTNAME"}, unlisted


def test_the_bwrap_command_binds_no_root_home_or_current_folder(tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m.pkl"
    model.write_bytes(b"x")
    with sandbox.workspace() as ws:
        args = sandbox.command(shutil.which("bwrap"), ws, [model], 3)
    binds = [args[i + 1] for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
    assert "/" not in binds and str(Path.home()) not in binds and str(tmp_path) not in binds
    assert not any(b in ("/run", "/var", "/var/run", "/tmp", "/etc", "/home") for b in binds)
    assert str(model) in binds and args[args.index("--chdir") + 1] == str(ws.out)


def test_registry_flags_are_hidden_like_the_variables(iris, tmp_path):
    """--registry/--blobs given as flags, the catalog in the current folder: a payload (checks off) cannot read it."""
    (tmp_path / "catalog.db").write_text("CATALOG-SECRET-8f7e")
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "blob").write_text("BLOB-SECRET-6d5c")
    evil = _evil(tmp_path / "evil.pkl", f"""
found = []
for p in ({str(tmp_path / 'catalog.db')!r}, {str(tmp_path / 'blobs' / 'blob')!r}):
    try:
        found.append(open(p).read())
    except OSError as exc:
        found.append(type(exc).__name__)
raise ValueError('probe ' + ' '.join(found))
""")
    _, rows = iris
    env = {**os.environ, sandbox.ENV_SKIP_CHECKS: "1"}
    done = run_cli("predict", str(evil), str(rows), "-o", str(tmp_path / "out.parquet"), "--registry", f"sqlite:///{tmp_path}/catalog.db",
                   "--blobs", str(tmp_path / "blobs"), env=env, cwd=tmp_path)
    assert done.returncode != 0 and "probe FileNotFoundError FileNotFoundError" in done.stderr, done.stderr
    assert "SECRET" not in done.stderr + done.stdout


def test_planted_links_in_the_output_are_refused(tmp_path):
    folder = tmp_path / "package"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"x")
    sandbox.check_output(folder)
    (folder / "id_rsa").symlink_to("/root/.ssh/id_rsa")
    with pytest.raises(UnsafeModelError, match="id_rsa, which is not a plain file"):
        sandbox.check_output(folder)


# ---------------------------------------------------------------- the protocol


def test_errors_cross_as_the_same_class_and_message(tmp_path):
    from packager.inspection import inspect

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R.")
    with pytest.raises(UnsafeModelError, match=r"evil\.pkl imports os\.system at byte \d+") as caught:
        inspect(evil)
    assert caught.value.hint and caught.value.exit_code == 5
    with pytest.raises(InputFileError, match="random.bin"):
        inspect(tmp_path / "random.bin") if (tmp_path / "random.bin").write_bytes(random.Random(300).randbytes(300)) else None


def test_only_packager_error_classes_are_rebuilt():
    assert type(sandbox._rebuild_error({"type": "UnsafeModelError", "what": "w", "hint": "h"}, "x")) is UnsafeModelError
    for name in ("SystemExit", "KeyboardInterrupt", "Warning", "os", "__class__", "PackagerWarning"):
        error = sandbox._rebuild_error({"type": name, "what": "w", "hint": "h"}, "x")
        assert type(error) is InputFileError, name
    assert type(sandbox._rebuild_error(["not", "a", "dict"], "x")) is InputFileError


def test_benign_model_same_answer_in_and_out_of_the_sandbox_and_trust_is_recorded(iris, tmp_path):
    from packager.conversion import convert
    from packager.inspection import inspect, validate

    model, rows = iris
    assert inspect(model) == inspect(model, trust=True)
    confined = convert(model, to="onnx", out=tmp_path / "confined", sample=np.load(rows))
    trusted = convert(model, to="onnx", out=tmp_path / "trusted", sample=rows, trust=True)
    assert confined.manifest.validation["status"] == trusted.manifest.validation["status"] == "passed"
    assert confined.manifest.trusted_source is False and trusted.manifest.trusted_source is True
    assert json.loads((tmp_path / "confined" / "manifest.json").read_text())["trusted_source"] is False
    import onnxruntime as ort  # the sandboxed package re-checked independently

    session = ort.InferenceSession(str(confined.model_path))
    labels = session.run(None, {session.get_inputs()[0].name: np.load(rows)})[0]
    assert (labels == pickle.loads(model.read_bytes()).predict(np.load(rows))).all()
    report = validate(tmp_path / "confined", model, sample=rows)
    assert report.status == "passed" and report.samples == 40
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(OutputExists):
        convert(model, to="onnx", out=tmp_path / "confined")


def test_the_parent_only_delegates_it_imports_no_framework(iris, tmp_path):
    model, rows = iris
    code = ("import sys; from packager.conversion import convert; from packager.inspection import inspect\n"
            f"inspect({str(model)!r}); convert({str(model)!r}, to='onnx', out={str(tmp_path / 'out')!r}, sample={str(rows)!r})\n"
            "heavy = ('sklearn', 'onnx', 'onnxruntime', 'skl2onnx', 'torch', 'tensorflow', 'keras', 'scipy')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_the_skip_switch_is_ignored_outside_the_sandbox(tmp_path, monkeypatch):
    """Run the child entry point directly, unconfined, with the switch set: the checks still run."""
    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "evil.pkl", f"open({str(marker)!r}, 'w')")
    read_end, write_end = os.pipe()
    env = {**os.environ, sandbox.ENV_SKIP_CHECKS: "1"}
    request = json.dumps({"function": "inspect", "args": {"path": str(evil)}})
    subprocess.run([sys.executable, "-m", "packager._sandbox_child", str(write_end)], input=request.encode(), pass_fds=(write_end,),
                   env=env, timeout=120, check=True, capture_output=True)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        error = json.loads(answer.read().splitlines()[-1])["error"]
    assert error["type"] == "UnsafeModelError" and "builtins.exec" in error["what"]
    assert not marker.exists()
    monkeypatch.setenv(sandbox.ENV_SKIP_CHECKS, "1")
    assert sandbox.skip_static_checks() is False


# ---------------------------------------------------------------- bwrap missing, CLI contract


def test_missing_bwrap_is_one_line_exit_3_and_trust_still_works(iris, tmp_path, monkeypatch):
    from packager.inspection import inspect

    model, _ = iris
    monkeypatch.setenv(sandbox.ENV_BWRAP, str(tmp_path / "no-bwrap"))
    with pytest.raises(MissingDependency, match=r"bubblewrap.*apt-get install bubblewrap.*--trust"):
        inspect(model)
    assert inspect(model, trust=True)["framework"] == "sklearn"
    env = {**os.environ, sandbox.ENV_BWRAP: str(tmp_path / "no-bwrap")}
    result = run_cli("inspect", str(model), env=env)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "MissingDependency" in result.stderr and "apt-get install bubblewrap" in result.stderr
    assert run_cli("inspect", str(model), "--trust", "--json", env=env).returncode == 0


def test_cli_refusals_with_checks_off_are_one_line(tmp_path):
    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "evil.pkl", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    env = {**os.environ, sandbox.ENV_SKIP_CHECKS: "1"}
    result = run_cli("convert", str(evil), "-o", str(tmp_path / "out"), env=env)
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1 and "killed by SIGSEGV while converting evil.pkl" in result.stderr
    assert not (tmp_path / "out").exists() and not marker.exists()


# ---------------------------------------------------------------- trust never comes from a file (finding 7)


@pytest.fixture
def forged_registry(iris, tmp_path, monkeypatch):
    """A package whose manifest claims trusted_source and whose model is an evil pickle, pushed as fraud@production."""
    from packager.conversion import convert
    from packager.package import digest_files
    from packager.registry.api import Registry

    model, rows = iris
    marker = tmp_path / "PWNED"
    folder = convert(model, to="pickle", out=tmp_path / "forged", sample=rows).path
    manifest = json.loads((folder / "manifest.json").read_text())
    _evil(folder / manifest["model_file"], f"open({str(marker)!r}, 'w').write('pwned')")
    manifest["trusted_source"] = True
    (folder / "manifest.json").unlink()
    manifest["files"] = digest_files(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("PACKAGER_HOME", str(tmp_path / "home"))
    registry_args = ["--registry", f"sqlite:///{tmp_path / 'catalog.db'}", "--blobs", str(tmp_path / "objects")]
    # pushed with trust (an insider, or an older registry): push itself now refuses it, and predict must still refuse it
    Registry(registry_args[1], registry_args[3]).push(folder, "fraud", aliases=["production"], trust=True)
    return folder, rows, marker, registry_args


def test_a_forged_trusted_package_from_the_registry_is_refused_by_predict(forged_registry, tmp_path):
    _, rows, marker, registry_args = forged_registry
    result = run_cli("predict", "fraud@production", str(rows), "-o", str(tmp_path / "out.npy"), *registry_args)
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1 and "UnsafeModelError" in result.stderr and "builtins.exec" in result.stderr
    assert not marker.exists() and not (tmp_path / "out.npy").exists()


def test_a_forged_trusted_package_is_refused_by_validate_and_bench(forged_registry, iris, tmp_path):
    folder, rows, marker, registry_args = forged_registry
    model, _ = iris
    result = run_cli("validate", str(folder), "--source", str(model), "--sample", str(rows))
    assert result.returncode == 5 and "builtins.exec" in result.stderr, result.stderr
    bench = run_cli("bench", "fraud@production", str(folder), "--data", str(rows), "--batch-sizes", "1", "--min-seconds", "0.01",
                    "-o", str(tmp_path / "bench"), "--json", *registry_args)
    assert bench.returncode == 0, bench.stderr
    errors = [a["error"] for a in json.loads(bench.stdout)["artifacts"]]
    assert len(errors) == 2 and all("UnsafeModelError" in e and "builtins.exec" in e for e in errors), errors
    assert not marker.exists()


def test_in_process_load_predictor_ignores_trusted_source(forged_registry):
    from packager.inference import load_predictor, resolve

    folder, _, marker, _ = forged_registry
    with pytest.raises(UnsafeModelError, match="builtins.exec"):
        load_predictor(resolve(folder))
    assert not marker.exists()


def test_dask_refuses_an_untrusted_bare_file(iris, tmp_path):
    import pandas as pd

    model, rows = iris
    pd.DataFrame(np.load(rows), columns=[f"x{i}" for i in range(4)]).to_parquet(tmp_path / "rows.parquet")
    result = run_cli("predict", str(model), str(tmp_path / "rows.parquet"), "-o", str(tmp_path / "out"), "--engine", "dask")
    assert result.returncode == 2 and "which the sandbox does not confine" in result.stderr and result.stderr.count("\n") == 1


# ---------------------------------------------------------------- cluster engines (issue 21, finding 5)


def _forge_package(iris, folder: Path, model_bytes: bytes) -> Path:
    """A real pickle package whose model file is replaced (digests recomputed, as an attacker would)."""
    from packager.conversion import convert
    from packager.package import digest_files

    model, rows = iris
    package = convert(model, to="pickle", out=folder, sample=rows).path
    manifest = json.loads((package / "manifest.json").read_text())
    (package / manifest["model_file"]).write_bytes(model_bytes)
    (package / "manifest.json").unlink()
    manifest["files"] = digest_files(package)
    (package / "manifest.json").write_text(json.dumps(manifest))
    return package


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("warning: ")]


@pytest.fixture(scope="module")
def iris_rows(iris, tmp_path_factory):
    import pandas as pd

    path = tmp_path_factory.mktemp("rows") / "rows.parquet"
    pd.DataFrame(np.load(iris[1]), columns=[f"x{i}" for i in range(4)]).to_parquet(path)
    return path


@pytest.mark.slow
def test_dask_runs_an_untrusted_package_inside_the_sandbox(iris, iris_rows, tmp_path):
    """A payload package (checks off: only the sandbox stands) through --engine dask: its code runs in a sandboxed child
    per partition, not in a worker: the marker never appears and the crash comes back as one line."""
    marker = tmp_path / "PWNED"
    code = f"open({str(marker)!r}, 'w').write('pwned')\nimport os, signal\nos.kill(os.getpid(), signal.SIGSEGV)"
    package = _forge_package(iris, tmp_path / "evil", pickle.dumps(_Reduce(exec, code), protocol=4))
    env = {**os.environ, sandbox.ENV_SKIP_CHECKS: "1"}
    done = run_cli("predict", str(package), str(iris_rows), "-o", str(tmp_path / "out"), "--engine", "dask", env=env)
    assert done.returncode == 5 and "killed by SIGSEGV while predicting" in done.stderr, done.stderr[-2000:]
    assert len(_error_lines(done.stderr)) == 1 and not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dask_a_crashing_tree_kills_no_worker(iris, iris_rows, tmp_path):
    """Finding 5 as filed: a scikit-learn tree whose child indices point 50,000,000 nodes away, in a package, with the
    checks on: it used to segfault every Dask worker ("4 workers died"); now it crashes (or is refused) in a sandbox."""
    from sklearn.tree import DecisionTreeClassifier

    X = np.load(iris[1])
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, np.arange(len(X)) % 3)
    state = tree.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = nodes["right_child"][0] = 50_000_000
    tree.tree_.__setstate__({**state, "nodes": nodes})
    package = _forge_package(iris, tmp_path / "tree", pickle.dumps(tree))
    done = run_cli("predict", str(package), str(iris_rows), "-o", str(tmp_path / "out"), "--engine", "dask")
    lines = _error_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert "died" not in done.stderr and "KilledWorker" not in done.stderr


@pytest.mark.slow
def test_dask_untrusted_sandboxed_and_trusted_equal_the_local_engine(iris, iris_rows, tmp_path):
    import pandas as pd

    from packager.conversion import convert

    model, rows = iris
    package = convert(model, to="pickle", out=tmp_path / "pkg", sample=rows).path
    runs = {"local": ["-o", str(tmp_path / "local.parquet")], "dask": ["-o", str(tmp_path / "dask"), "--engine", "dask"],
            "trusted": ["-o", str(tmp_path / "trusted"), "--engine", "dask", "--trust"]}
    for name, args in runs.items():
        done = run_cli("predict", str(package), str(iris_rows), *args)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
    local, dask, trusted = (pd.read_parquet(tmp_path / n) for n in ("local.parquet", "dask", "trusted"))
    assert len(local) == 40 and list(dask.columns) == list(local.columns) == list(trusted.columns)
    pd.testing.assert_frame_equal(dask, local)
    pd.testing.assert_frame_equal(trusted, local)


def test_tmp_on_the_python_path_is_not_bound_over_the_private_tmp(tmp_path, monkeypatch):
    """PYTHONPATH=/tmp:... bound the host's /tmp read-only over the child's private /tmp: the host's temp files were
    visible inside, and torch and Spark's JVM found no writable temp dir (15 failures of a profiling run). A folder
    below /tmp on the path is still bound (it may hold the user's code)."""
    import shutil
    import tempfile

    below = tmp_path / "site"
    below.mkdir()
    monkeypatch.syspath_prepend(str(below))
    monkeypatch.syspath_prepend(tempfile.gettempdir())
    monkeypatch.syspath_prepend("/tmp")
    model = tmp_path / "m.pkl"
    model.write_bytes(b"x")
    with sandbox.workspace() as ws:
        args = sandbox.command(shutil.which("bwrap"), ws, [model], 3)
    binds = [args[i + 1] for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
    assert "/tmp" not in binds and tempfile.gettempdir() not in binds
    assert str(below) in binds
