"""`packager inspect`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--sample", type=click.Path(path_type=Path), help="Sample inputs, for models that carry no input shapes (.npy/.npz/.csv/.parquet)."
)
@click.option("--input-shape", help="Input shape(s) where the model carries none, e.g. 1,20 or ids:1,16;mask:1,16.")
@click.option("--dynamic-axes", help="Axes besides the batch that vary, e.g. 1 (sequence length) or ids:1;mask:1 (PyTorch sources).")
@click.option(
    "--model-class", metavar="MODULE:CLASS", help="For a PyTorch state dict: the nn.Module class (or factory) to load the weights into."
)
@click.option("--trust", is_flag=True, help="Load files that import code outside the allow-list.")
@click.option("--json", "as_json", is_flag=True)
def command(file, sample, input_shape, dynamic_axes, model_class, trust, as_json):
    """Show FILE's format, framework, signature, size (and opset / IR version for ONNX).

    The signature options are those of `convert`; without them, what needs them is named in a note."""
    from packager.commands._render import emit_json, human_size
    from packager.inspection import inspect

    info = inspect(file, trust=trust, sample=sample, input_shape=input_shape, model_class=model_class, dynamic_axes=dynamic_axes)
    if as_json:
        emit_json(info)
        return
    from rich.markup import escape
    from rich.table import Table

    from packager.commands._render import console

    table = Table(show_header=False, title=str(file))
    for key, value in info.items():
        table.add_row(key, human_size(value) if key == "size" else escape(_show(value)))
    console()(table)


def _show(value) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
