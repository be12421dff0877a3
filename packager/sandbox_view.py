"""What the sandboxed child sees (see ``packager.sandbox``): an allow-list of paths and of environment variables.

Nothing of the host is visible unless listed here: the interpreter and its environment, packager's code (and
the editable installs on ``sys.path``), the system folders (``/usr`` and Debian's merged-/usr links), a few
``/etc`` files measured as needed, the Java runtime, the model's own paths and the workspace. The user's
home, the current folder, ``/run``, ``/var``, the host's ``/tmp`` (and every unix socket in them) are absent.
"""

from __future__ import annotations

import ast
import glob
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from packager import settings

# Merged-/usr Debian: /bin, /sbin, /lib, /lib64 are links into /usr (recreated as the same links); bound when real folders.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# /etc files the frameworks read, measured with strace -f on `import torch, onnxruntime, sklearn, tensorflow`,
# a JPMML validation and `java -XshowSettings` (Dec 2026). Everything else in /etc (hostname, machine-id, ssh,
# postgresql, pip.conf, resolv.conf...) stays out: nothing inside has a network to resolve names for.
ETC = {
    "ld.so.cache": "the dynamic loader's index of library folders (every process start reads it)",
    "ld.so.conf": "the loader's folder list, read by ldconfig-style lookups (ctypes.util.find_library)",
    "ld.so.conf.d": "the same, per package",
    "nsswitch.conf": "how getpwuid looks users up (Java's user.name, Hadoop's login for Spark, getpass)",
    "localtime": "the time zone of time.localtime and the JVM",
    "timezone": "the time zone's name (Java reads it when TZ is unset)",
    "os-release": "platform probes at import (TensorFlow, torch, Spark's Python check)",
    "alternatives": "/usr/bin/java -> /etc/alternatives/java -> /usr/lib/jvm/...: the JVM for PMML validation and Spark",
    "java-*": "Debian's JDK keeps conf/ (security, logging properties) as links into /etc/java-N-openjdk",
    "mime.types": "mimetypes.init() (Spark's and the HTTP libraries' content types)",
}
# Written by the parent instead of bound: only the sandbox's own user, and a hosts file naming the sandbox's host.
HOSTNAME = "sandbox"

# Environment variables by allow-list: what Python, the frameworks, their thread settings, locale and packager's own
# non-secret settings read (grep of packager/, converters/ and the frameworks' documented knobs). Everything else is
# dropped (MYSQL_PWD, AZURE_STORAGE_CONNECTION_STRING, GH_PAT, MLFLOW_TRACKING_URI, PACKAGER_REGISTRY, ...).
ENV_NAMES = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "USER",
        "LOGNAME",
        "TERM",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONUNBUFFERED",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONWARNINGS",
        "PYTHONNOUSERSITE",
        "PYTHONSAFEPATH",
        "VIRTUAL_ENV",
        "JAVA_HOME",
        "JAVA_TOOL_OPTIONS",
        "SPARK_HOME",
        "PYSPARK_PYTHON",
        "PYSPARK_DRIVER_PYTHON",
        "SPARK_LOCAL_IP",
        "CUDA_VISIBLE_DEVICES",
        "TOKENIZERS_PARALLELISM",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_DISABLE_TELEMETRY",
        "HF_DATASETS_OFFLINE",
        "TQDM_DISABLE",
        "KERAS_BACKEND",
        "TF_CPP_MIN_LOG_LEVEL",
        "TF_CPP_MAX_VLOG_LEVEL",
        "TF_ENABLE_ONEDNN_OPTS",
        "TF_NUM_INTEROP_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_USE_LEGACY_KERAS",
        "TF_DETERMINISTIC_OPS",
        "TF_XLA_FLAGS",
        "TF_FORCE_GPU_ALLOW_GROWTH",
        *settings.SANDBOX_PASSED,
        "PACKAGER_TEST_LISTEN_PORT",
        "PACKAGER_TEST_UNIX_SOCKETS",
        "PACKAGER_TEST_READ_FILES",
    }
)
ENV_PREFIXES = ("LC_", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO_", "BLIS_", "NUMEXPR_", "VECLIB_", "ORT_")
# Belt and braces: an allowed name that still looks like a secret, or a value holding a password in a URL, stays out.
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PWD", "CREDENTIAL", "PRIVATE", "API_KEY", "ACCESS_KEY", "AUTH")
_URL_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]*@")


def environment(home: str, tmp: str = "/tmp") -> dict[str, str]:
    """The child's environment: allowed names only, HOME a private folder, temp files in the private /tmp."""
    from packager.registry.blobs import hidden_credentials  # the blob stores' declared secrets, whatever their names

    hidden = hidden_credentials()
    env = {k: v for k, v in os.environ.items() if _allowed(k, v) and k not in hidden}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TQDM_DISABLE", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the code is read-only: no failed attempts to write .pyc files
    env.update(HOME=home, TMPDIR=tmp, HOSTNAME=HOSTNAME)
    return env


def _allowed(name: str, value: str) -> bool:
    listed = name in ENV_NAMES or name.startswith(ENV_PREFIXES)
    return listed and not any(word in name.upper() for word in SECRET_WORDS) and not _URL_PASSWORD.search(value)


def code_paths() -> list[str]:
    """Folders the child imports from: the interpreter's prefixes, the existing ``sys.path`` entries (never the
    current folder, the home folder or ``/``: a checkout on ``sys.path`` shows only packager's own folders),
    the targets of editable installs, packager's code, and the Java runtime."""
    import packager

    code = Path(packager.__file__).resolve().parent
    paths = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths |= {Path(os.path.realpath(sys.executable)).parent, code, code.parent / "converters"}
    # /tmp too: a sys.path entry of /tmp (PYTHONPATH=/tmp:...) was bound read-only over the child's private /tmp, which
    # showed the host's /tmp inside and left the child no writable temp dir (torch, Spark's JVM: "No usable temporary
    # directory"); entries below it (a test's own folder) are still listed one by one
    unsafe = {Path.cwd(), Path.home(), Path("/"), Path("/tmp"), Path(tempfile.gettempdir())}
    for entry in sys.path:
        path = Path(entry) if entry and os.path.isabs(entry) else None
        if path is None or not path.exists():
            continue
        if any(path == u or path in u.parents for u in unsafe):
            continue  # '' or a checkout that holds the current folder: its packages are listed one by one above
        paths.add(path)
        paths |= _editable_targets(path)
    for name in ("JAVA_HOME", "SPARK_HOME"):
        if os.environ.get(name):
            paths.add(Path(os.path.realpath(os.environ[name])))
    return _outermost(p for p in paths if p.exists())


def _editable_targets(folder: Path) -> set[Path]:
    """setuptools' editable finders (``__editable___*_finder.py``) map package names to source folders."""
    targets: set[Path] = set()
    if not folder.is_dir():
        return targets
    for finder in folder.glob("__editable___*_finder.py"):
        try:
            text = finder.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("MAPPING"):
                try:
                    mapping = ast.literal_eval(line.split("=", 1)[1].strip())
                except (ValueError, SyntaxError):
                    continue
                targets |= {Path(p) for p in mapping.values() if isinstance(p, str)}
    return targets


def system_paths() -> list[tuple[str, str]]:
    """(kind, path): the system folders, as links where the host has links (merged /usr)."""
    found = []
    for path in SYSTEM:
        if os.path.islink(path):
            found.append(("link", path))
        elif os.path.isdir(path):
            found.append(("bind", path))
    return found


def etc_paths() -> list[str]:
    found: set[str] = set()
    for name in ETC:
        found |= {p for p in glob.glob(f"/etc/{name}") if os.path.exists(p)}
    return sorted(found)


def write_identity(folder: Path) -> dict[str, Path]:
    """/etc/passwd, /etc/group and /etc/hosts for the child: its own user only (Java and Hadoop ask getpwuid for a
    name; measured, Spark fails without one), and a host name that resolves to loopback (Spark binds to it)."""
    uid, gid = os.getuid(), os.getgid()
    files = {
        "passwd": f"sandbox:x:{uid}:{gid}:sandbox:/tmp/home:/bin/sh\n",
        "group": f"sandbox:x:{gid}:\n",
        "hosts": f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n",
    }
    folder.mkdir(exist_ok=True)
    written = {}
    for name, text in files.items():
        (folder / name).write_text(text)
        written[name] = folder / name
    return written


def visible(path: Path, bound: Iterable[str]) -> bool:
    """Whether ``path`` lies in a bound folder (the child can chdir there)."""
    return any(path == Path(b) or Path(b) in path.parents for b in bound)


def _outermost(paths: Iterable[Path]) -> list[str]:
    """Each folder once, none inside another bound one or inside /usr (already bound), shortest first."""
    chosen: list[Path] = []
    for path in sorted({p.absolute() for p in paths}, key=lambda p: (len(p.parts), str(p))):
        if any(path == c or c in path.parents for c in [*chosen, Path("/usr")]):
            continue
        chosen.append(path)
    return [str(p) for p in chosen]
