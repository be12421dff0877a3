"""The ``packager`` logger, configured in one place (instead of ``logging.disable``, which also silenced packager).

Libraries (torch.onnx, onnxruntime.quantization, TensorFlow) log warnings that our one-line errors already say better,
so the CLI keeps the root logger at ERROR; packager's own records go to stderr as ``packager: ...`` (warnings, and
everything with ``--debug``, which also lets the libraries speak). In the sandbox child, packager's records are
collected and sent back with the answer, where the parent logs them under ``packager.sandbox`` (``replay``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

LOGGER = "packager"
MAX_RECORDS = 100  # per sandboxed call: packager logs a handful of lines per operation
MAX_CHARS = 1000
ONCE_PER_PROCESS = frozenset({"packager.entry_points"})  # loggers whose records are said once (``warn_once``)
_SAID: set[tuple[str, str]] = set()


def configure(debug: bool) -> None:
    """The CLI's logging: packager's records to stderr, the libraries' below ERROR dropped unless ``debug``.

    The root logger's level quiets the libraries that log through it (onnxruntime.quantization, TensorFlow's Python
    logger, absl: measured here, none printed at ERROR). torch installs its own stderr handler and level on the
    ``torch`` logger when imported, past the root's level (measured: a torch.onnx warning still printed), so it is
    told through its own setting, ``TORCH_LOGS=-all`` (every torch component at ERROR; measured: none printed)."""
    if not debug:
        os.environ.setdefault("TQDM_DISABLE", "1")  # converters' progress bars (coremltools) stay off the terminal
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up notices, whoever imports it
        os.environ.setdefault("TORCH_LOGS", "-all")
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.ERROR)
    own = logging.getLogger(LOGGER)
    own.setLevel(logging.DEBUG if debug else logging.WARNING)  # (propagates: a host's handlers, pytest's caplog, see them)
    if not any(isinstance(h, _Stderr) for h in own.handlers):  # configured twice (CliRunner in one process): one handler
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("packager: %(message)s"))
        own.addHandler(handler)


class _Stderr(logging.StreamHandler):
    """stderr as it is when a record is written: click's CliRunner swaps sys.stderr per call, and a handler holding the
    first call's stream would write into a closed buffer on the next."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Collector(logging.Handler):
    def __init__(self, into: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.into) < MAX_RECORDS:
            self.into.append({"name": record.name, "level": record.levelno, "message": record.getMessage()[:MAX_CHARS]})


def collect() -> list[dict[str, Any]]:
    """In the sandbox child: the libraries' records below ERROR dropped (as the CLI does), packager's collected into
    the returned list (sent back with the answer)."""
    logging.getLogger().setLevel(logging.ERROR)
    records: list[dict[str, Any]] = []
    own = logging.getLogger(LOGGER)
    own.setLevel(logging.DEBUG)
    own.propagate = False
    own.addHandler(_Collector(records))
    return records


def warn_once(name: str, message: str) -> None:
    """A warning on logger ``name`` (one of ``ONCE_PER_PROCESS``) said once per process, here or replayed from a
    sandboxed child: a broken third-party plugin is skipped by the CLI and again by every child it starts, and the
    user needs one line about it, not one per process."""
    if (name, message) in _SAID:
        return
    _SAID.add((name, message))
    logging.getLogger(name).warning("%s", message)


def replay(records: Any) -> None:
    """The child's records, logged here under ``packager.sandbox``: strings and levels only, capped (the child ran
    untrusted code; a record is data, never a format string)."""
    if not isinstance(records, Iterable) or isinstance(records, (str, bytes)):
        return
    log = logging.getLogger(f"{LOGGER}.sandbox")
    for record in list(records)[:MAX_RECORDS]:
        if not isinstance(record, dict):
            continue
        level = record.get("level")
        level = level if isinstance(level, int) and logging.DEBUG <= level <= logging.CRITICAL else logging.INFO
        name, message = str(record.get("name", ""))[:100], str(record.get("message", ""))[:MAX_CHARS]
        if name in ONCE_PER_PROCESS:
            if (name, message) in _SAID or len(_SAID) >= MAX_RECORDS:  # bounded: a child's records are untrusted data
                continue
            _SAID.add((name, message))
        log.log(level, "child %s: %s", name, message, extra={"sandboxed": True})


# Native notices printed to file descriptor 2 by C++ code that Python's redirections cannot reach, known harmless:
# tl2cgen 1.0.0 carries treelite 4.1.2, and reading a model serialized by the installed treelite 4.8.1 prints "The model
# you are loading originated from a newer Treelite version" and the two versions on every compile. Checked harmless
# (issue 23 D13): a 100-tree LightGBM regressor compiled this way predicts the diabetes rows with max |diff| 0.0 against
# LightGBM and treelite 4.8.1's own gtil.predict. A mismatch that did matter fails the validation, not this notice.
TREELITE_VERSION_NOTICE = (
    "originated from a newer Treelite version",
    "Currently running Treelite version",
    "The model checkpoint was generated from Treelite version",
)


@contextlib.contextmanager
def native_stderr_without(notices: Iterable[str]) -> Iterator[None]:
    """Around a native call: what C/C++ writes to file descriptor 2 is held in a temporary file and written back after
    the call without the lines holding one of ``notices`` (everything else, errors included, is kept, in order). With
    --debug nothing is dropped: see ``configure``."""
    import tempfile

    if logging.getLogger(LOGGER).isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True) if not any(n.encode() in line for n in notices)]
            if kept:
                os.write(2, b"".join(kept))
