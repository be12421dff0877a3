"""`packager convert`."""

from __future__ import annotations

from pathlib import Path

import click

from packager.commands._options import request_fields, request_options
from packager.commands._render import SKIPPED, conversion_table, library_prints_to_stderr, progress_reporter, result_row
from packager.errors import NotApplicable, NotQuantizable, UnsupportedConversion
from packager.requests import ConvertRequest


@click.command("convert")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "targets",
    multiple=True,
    default=("onnx",),
    show_default=True,
    help="Target format (repeatable); 'all' = every target the source framework reaches.",
)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Package directory (one sub-folder per target when several).")
@request_options(ConvertRequest)
@click.option("--script", is_flag=True, help="TorchScript: torch.jit.script instead of trace (keeps data-dependent control flow).")
@click.option(
    "--option",
    "plugin_option",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="An option a converter declares for itself (see `packager formats`), e.g. --option script (repeatable).",
)
@click.option("--trust", is_flag=True, help="Load the source even if it imports code outside the allow-list (recorded).")
@click.option(
    "--push", "push_name", metavar="NAME", help="Push each package to the registry as a version of NAME (source first, with lineage)."
)
@click.option("--registry", "registry_url", envvar="PACKAGER_REGISTRY", help="Catalog URL for --push (env PACKAGER_REGISTRY).")
@click.option("--blobs", envvar="PACKAGER_BLOBS", help="Blob store for --push (env PACKAGER_BLOBS).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def command(source, targets, out, script, plugin_option, trust, push_name, registry_url, blobs, as_json, **fields):
    """Convert SOURCE (a model file) to deployable formats; each is validated in its own runtime."""
    from dataclasses import replace

    from packager.commands._render import emit_json
    from packager.conversion import TargetResult, submit, submit_each
    from packager.plugins import default_registry

    registry = default_registry()
    store = None
    if push_name:
        from packager.registry.backends import open_registry
        from packager.registry.refs import check_name

        check_name(push_name)  # before any conversion work
        store = open_registry(registry_url, blobs)
    wanted = list(dict.fromkeys(targets))
    several = len(wanted) > 1 or "all" in wanted
    base = out or Path.cwd() / f"{source.stem}-packages" if several else out
    request = ConvertRequest(
        path=str(source),
        out=str(base) if base is not None else None,
        plugin_options=_plugin_options(plugin_option, script),
        **request_fields(ConvertRequest, fields),
    )
    source_options = {
        "sample": request.sample,
        "input_shape": request.input_shape,
        "model_class": request.model_class,
        **({"task": request.task} if request.task else {}),
    }
    rows, failures = [], []
    with progress_reporter(as_json) as report, library_prints_to_stderr():
        if several:  # one load (one sandbox child) for every target
            results = submit_each(replace(request, targets=tuple(wanted)), trust=trust, progress=report, registry=registry)
        else:
            target = wanted[0]
            package = submit(replace(request, to=target), trust=trust, progress=lambda m: report(f"{target}: {m}"), registry=registry)
            results = [TargetResult(target, package=package)]
        for result in results:
            if isinstance(result.error, NotApplicable):  # --to all: a target for other models, in the summary line only
                rows.append({"target": result.target, "status": SKIPPED, "error": result.error.one_line()})
                continue
            if result.error is not None:
                by_design = isinstance(result.error, REFUSED_BY_DESIGN)
                failures += [] if by_design else [result.error]
                rows.append(result_row(result.target, error=result.error, by_design=by_design))
                continue
            row = result_row(result.target, package=result.package)
            if store is not None:
                report(f"{result.target}: pushing to the registry")
                row["pushed"] = store.push_conversion(result.package, push_name, source, trust=trust, source_options=source_options).ref
            rows.append(row)
    if as_json:
        emit_json(rows)
    else:
        conversion_table(rows)
    if failures:  # a target refused by design (a documented limit) is an answer; anything else fails the run
        raise SystemExit(failures[0].exit_code)


def _plugin_options(given: tuple[str, ...], script: bool) -> dict[str, object]:
    """``--option NAME=VALUE`` pairs (a bare NAME is True); ``--script`` is the TorchScript converter's ``script``."""
    options: dict[str, object] = {"script": True} if script else {}
    for item in given:
        name, sep, value = item.partition("=")
        options[name.strip()] = value if sep else True
    return options


# The converter or format documents that it cannot take this model or quantization: with several
# targets, such a refusal is part of the answer (exit 0); every other error is a failure.
REFUSED_BY_DESIGN = (UnsupportedConversion, NotQuantizable)
