"""The command line: parse, call the public API, render. Commands are imported only when run."""

from __future__ import annotations

import importlib
import sys

import click

COMMANDS = {
    "convert": ("packager.commands.convert", "Convert a model to deployable formats, quantize, validate, package."),
    "validate": ("packager.commands.validate", "Check that an artifact reproduces its source model."),
    "inspect": ("packager.commands.inspect", "Show a model file's format, framework, signature and size."),
    "formats": ("packager.commands.formats", "Show the support matrix: sources, targets, quantization, runtimes."),
    "predict": ("packager.commands.predict", "Run a package, model file or registry version over a data file, in batches."),
    "bench": ("packager.commands.bench", "Latency, throughput, memory and size of artifacts side by side, per batch size."),
    "optimize": ("packager.commands.optimize", "The fastest artifact within an accuracy budget, searched across formats and runtimes."),
    "serve": ("packager.commands.serve", "Serve the registry over HTTP: web UI and REST API for teams (--registry http://… on clients)."),
    "demo": ("packager.commands.demo", "Convert a bundled model to every format, push it to the registry, show the results."),
    "push": ("packager.commands.registry:push", "Store a package as the next version of a model in the registry."),
    "pull": ("packager.commands.registry:pull", "Write a stored version's files to a folder (digests re-verified)."),
    "list": ("packager.commands.registry:list_", "List models (latest versions), or the versions of one model."),
    "show": ("packager.commands.registry:show", "Show one version: manifest, params, metrics, validation, lineage."),
    "compare": ("packager.commands.registry:compare", "Params and metrics of several versions side by side."),
    "search": ("packager.commands.registry:search", 'Find versions: metric.accuracy > 0.9 and tag.team = "fraud".'),
    "alias": ("packager.commands.registry:alias", "Point an alias at a version, remove it, see its history, roll it back, protect it."),
    "tag": ("packager.commands.registry:tag", "Set or remove tags on a version."),
    "sign": ("packager.commands.registry:sign", "Sign a stored version with a PEM key (OpenSSF model signing)."),
    "trust": ("packager.commands.registry:trust", "Add, list or remove the public keys whose signatures the registry trusts."),
    "audit": ("packager.commands.registry:audit", "The audit log of every registry write (hash-chained; `verify` checks it)."),
    "delete": ("packager.commands.registry:delete", "Delete a version (its blobs are freed by gc)."),
    "gc": ("packager.commands.registry:gc", "Free blobs that no version references."),
    "verify": ("packager.commands.registry:verify", "Re-hash every stored blob and check the audit log's hash chain."),
    "lineage": ("packager.commands.registry:lineage", "Print the derivation tree of a version (source -> ONNX -> int8)."),
}


class LazyGroup(click.Group):
    """click group whose subcommands are imported on first use, so `--help` stays instant."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module), attribute or "command")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and library warnings.")
@click.version_option(package_name="packager")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """packager: convert, quantize, validate and package trained ML models."""
    ctx.obj = {"debug": debug}
    _configure_warnings(debug)


def _configure_warnings(debug: bool) -> None:
    import warnings

    from packager.errors import PackagerWarning
    from packager.logs import configure

    configure(debug)  # packager's records to stderr; the libraries' (torch.onnx, onnxruntime.quantization) only with --debug
    if debug:
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("always", category=PackagerWarning)
    warnings.showwarning = lambda message, category, *a, **k: click.echo(f"warning: {message}", err=True)


INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report it
TERMINATED_EXIT = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so the same ``finally`` blocks run: the
    staging folders (``package.staging_dir``, ``.NAME.partial`` outputs) are removed and sandboxed children killed.
    Python's default SIGTERM ends the process at once, which left ``.OUT.XXXX.partial/`` holding copies of the
    user's rows (issue 23, D6)."""


def _terminate(signum: int, frame: object) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated()


def run() -> None:
    """Entry point: PackagerErrors become one line on stderr and their exit code; SIGTERM cleans up as Ctrl-C does."""
    import signal
    import threading

    debug = "--debug" in sys.argv[1:]
    main_thread = threading.current_thread() is threading.main_thread()  # only the main thread may set a handler
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        _run(debug)
    finally:  # an in-process caller (the tests' invoke_cli) gets its own handler back
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _run(debug: bool) -> None:
    from packager.errors import PackagerError

    try:
        main.main(standalone_mode=False)
    except PackagerError as exc:
        if debug:
            if exc.child_traceback:
                click.echo(f"in the sandboxed child:\n{exc.child_traceback}", err=True)
            raise
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt (and so Terminated) into Abort
        terminated = isinstance(exc.__cause__, Terminated)
        click.echo("terminated" if terminated else "aborted", err=True)
        sys.exit(TERMINATED_EXIT if terminated else INTERRUPTED_EXIT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Terminated:
        sys.exit(TERMINATED_EXIT)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED_EXIT)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback and report it)", err=True)
        sys.exit(70)


if __name__ == "__main__":
    run()
