"""`packager convert`."""

from __future__ import annotations

from pathlib import Path

import click

from packager.commands._render import conversion_table, progress_reporter, result_row
from packager.errors import NotQuantizable, UnsupportedConversion


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
@click.option(
    "--quantize",
    is_flag=False,
    flag_value="dynamic",
    default=None,
    metavar="[dynamic|static|fp16|weights|auto]",
    help="Quantize the result; bare --quantize means dynamic int8; weights = 8-bit weights only (Core ML).",
)
@click.option("--calibration", type=click.Path(path_type=Path), help="Calibration rows for --quantize static (.npy/.csv/.parquet).")
@click.option("--sample", type=click.Path(path_type=Path), help="Sample inputs for the signature and validation (.npy/.csv/.parquet).")
@click.option("--input-shape", help="Input shape(s) where the model carries none, e.g. 1,20 or ids:1,16;mask:1,16.")
@click.option("--dynamic-axes", help="Axes besides the batch that vary, e.g. 1 (sequence length) or ids:1;mask:1 (PyTorch sources).")
@click.option(
    "--model-class", metavar="MODULE:CLASS", help="For a PyTorch state dict: the nn.Module class (or factory) to load the weights into."
)
@click.option(
    "--task",
    help="Hugging Face folders: feature-extraction, sequence-classification, token-classification or "
    "image-classification (default: the config's architecture).",
)
@click.option("--script", is_flag=True, help="TorchScript: torch.jit.script instead of trace (keeps data-dependent control flow).")
@click.option(
    "--option",
    "plugin_option",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="An option a converter declares for itself (see `packager formats`), e.g. --option script (repeatable).",
)
@click.option(
    "--opset",
    callback=lambda ctx, param, v: int(v) if v and v.strip().isdigit() else v,
    metavar="N[,DOMAIN=N]",
    help="ONNX opset to target (default: the converter's), e.g. 17 or 17,ai.onnx.ml=3 (scikit-learn).",
)
@click.option("--trust", is_flag=True, help="Load the source even if it imports code outside the allow-list (recorded).")
@click.option(
    "--output-kind",
    "output_kind",
    multiple=True,
    metavar="NAME=KIND",
    help="How to judge an output: labels, probabilities, scores, regression, embedding or integer (repeatable).",
)
@click.option(
    "--tolerance", "tolerance", multiple=True, metavar="NAME=ATOL[,RTOL]", help="Judge this output by an absolute tolerance instead."
)
@click.option("--min-agreement", type=float, help="Fraction of rows whose label / best class must agree (overrides the format's).")
@click.option("--accept-mismatch", is_flag=True, help="Keep an artifact that fails validation (recorded in the manifest).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option(
    "--push", "push_name", metavar="NAME", help="Push each package to the registry as a version of NAME (source first, with lineage)."
)
@click.option("--registry", "registry_url", envvar="PACKAGER_REGISTRY", help="Catalog URL for --push (env PACKAGER_REGISTRY).")
@click.option("--blobs", envvar="PACKAGER_BLOBS", help="Blob store for --push (env PACKAGER_BLOBS).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def command(
    source,
    targets,
    out,
    quantize,
    calibration,
    sample,
    input_shape,
    dynamic_axes,
    model_class,
    task,
    script,
    plugin_option,
    opset,
    trust,
    output_kind,
    tolerance,
    min_agreement,
    accept_mismatch,
    force,
    push_name,
    registry_url,
    blobs,
    as_json,
):
    """Convert SOURCE (a model file) to deployable formats; each is validated in its own runtime."""
    from packager.commands._render import emit_json
    from packager.conversion import TargetResult, convert, convert_each
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
    source_options = {"sample": sample, "input_shape": input_shape, "model_class": model_class, **({"task": task} if task else {})}
    options = dict(
        quantize=quantize,
        sample=sample,
        calibration=calibration,
        input_shape=input_shape,
        dynamic_axes=dynamic_axes,
        model_class=model_class,
        plugin_options=_plugin_options(plugin_option, script),
        opset=opset,
        trust=trust,
        accept_mismatch=accept_mismatch,
        output_kind=output_kind,
        tolerance=tolerance,
        min_agreement=min_agreement,
        task=task,
        overwrite=force,
        registry=registry,
    )
    rows, failures = [], []
    with progress_reporter(as_json) as report:
        if several:  # one load (one sandbox child) for every target
            results = convert_each(source, wanted, base, progress=report, **options)
        else:
            results = [
                TargetResult(
                    wanted[0], package=convert(source, to=wanted[0], out=base, progress=lambda m: report(f"{wanted[0]}: {m}"), **options)
                )
            ]
        for result in results:
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
