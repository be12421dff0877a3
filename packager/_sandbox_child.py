"""The sandboxed child: ``python -m packager._sandbox_child ANSWER_FD``, started by ``packager.sandbox``
inside bubblewrap. Reads one JSON request on stdin (an operation and its request, ``packager.requests``), executes it
with that operation's worker (``packager.workers``: the public API is not called again, and no global says "this is
the child": the worker is simply called here), and writes JSON lines on ANSWER_FD: throttled progress, then one
result or one error, with the ``packager`` log records of the call. Nothing here is a pickle; nothing here trusts
the file."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

LOG_RECORDS = 100  # packager's own records of one call: a handful; the parent replays at most this many
PROGRESS_EVERY = 0.2  # seconds: a batch-1 prediction over millions of rows must not flood the answer pipe
# A child lives for one call and spends most of it importing a framework. Python's default young-generation threshold
# (700 allocations) runs collections all through those imports: `import tensorflow, sklearn.ensemble, numpy` took
# 4.6-4.9 s of user CPU, 3.9-4.3 s with this threshold; a sandboxed `packager inspect model.keras` 3.62-3.98 s -> 3.03-3.37 s
# (3 runs each, alternated). Still collected, only less often.
YOUNG_COLLECTION_THRESHOLD = (100_000, 50, 100)


def main() -> None:
    import gc

    gc.set_threshold(*YOUNG_COLLECTION_THRESHOLD)
    answer = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    from packager.logs import collect

    records = collect()
    message = _serve(answer)
    message["log"] = records[:LOG_RECORDS]
    from packager.jsonio import json_default

    try:
        answer.write(json.dumps(message, default=json_default) + "\n")
    except (TypeError, ValueError) as exc:  # a result that is not data: our bug, said in one line
        answer.write(
            json.dumps(
                {
                    "error": {
                        "type": "PackagerError",
                        "what": f"the sandboxed call returned {type(exc).__name__}: {exc}",
                        "hint": "report this bug",
                    }
                }
            )
            + "\n"
        )
    answer.flush()
    os._exit(0)  # no interpreter teardown: TF/torch atexit hooks cost ~0.1 s, and a payload's atexit hooks must not run after the answer


def _serve(answer) -> dict:
    import warnings

    from packager.errors import InputFileError, PackagerError, PackagerWarning, first_line

    last = [0.0]

    def progress(value) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            answer.write(json.dumps({"progress": value}) + "\n")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.filterwarnings("always", category=PackagerWarning)
        try:
            request = json.loads(sys.stdin.read(1 << 20))
            from packager.sandbox import skip_static_checks
            from packager.workers import execute

            result = execute(request["function"], request["args"], trust=skip_static_checks(), progress=progress)
            return {"result": result, "warnings": _texts(caught)}
        except PackagerError as exc:
            return {"error": _error(exc), "warnings": _texts(caught)}
        except MemoryError:
            from packager.sandbox import memory_error

            return {"error": _error(memory_error())}
        except Exception as exc:  # a framework failing outside our boundaries: one line, like errors.reading()
            error = InputFileError(
                f"the model failed inside the sandbox ({type(exc).__name__}: {first_line(exc, 300)})",
                "the file is not a usable model; re-export it from the training code",
            )
            error.__cause__ = exc
            return {"error": _error(error)}


def _error(exc) -> dict:
    from packager.sandbox import memory_error

    if _caused_by_memory(exc):
        exc = memory_error()
    from packager.errors import TRACE_CHARS

    report = getattr(exc, "report", None)
    trace = "".join(traceback.format_exception(exc))[-TRACE_CHARS:]  # shown by `packager --debug` (the plugin's file and line)
    return {
        "type": type(exc).__name__,
        "what": exc.what,
        "hint": exc.hint,
        "trace": trace,
        **({"report": report.to_dict()} if report is not None else {}),
    }


def _caused_by_memory(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _texts(caught) -> list[str]:
    from packager.errors import PackagerWarning

    return [str(w.message) for w in caught if issubclass(w.category, PackagerWarning)]


if __name__ == "__main__":
    main()
