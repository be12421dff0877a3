"""Registry commands: each is one call of ``packager.registry.Registry``, rendered as text or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from packager.commands._render import console, human_size


def registry_options(func):
    func = click.option("--blobs", envvar="PACKAGER_BLOBS", help="Blob store: a folder or s3://bucket/prefix (env PACKAGER_BLOBS).")(func)
    func = click.option(
        "--registry",
        "registry_url",
        envvar="PACKAGER_REGISTRY",
        help="Catalog URL: sqlite:///… or postgresql://… (env PACKAGER_REGISTRY; default under $PACKAGER_HOME).",
    )(func)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def open_registry(url: str | None, blobs: str | None):
    from packager.registry.backends import open_registry

    return open_registry(url, blobs)


def _emit(data: Any) -> None:
    from packager.commands._render import emit_json

    emit_json(data)


@click.command("push")
@click.argument("package_dir", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Model name.")
@click.option("--param", "params", multiple=True, metavar="K=V")
@click.option("--metric", "metrics", multiple=True, metavar="K=V")
@click.option("--tag", "tags", multiple=True, metavar="K=V")
@click.option("--alias", "aliases", multiple=True, help="Point this alias at the new version (repeatable).")
@click.option("--data", multiple=True, help="Training/evaluation data reference: a local file (hashed) or a URI.")
@click.option("--dockerfile", type=click.Path(path_type=Path))
@click.option("--conda-env", type=click.Path(path_type=Path))
@click.option("--description")
@click.option(
    "--lineage",
    "lineage_file",
    type=click.Path(path_type=Path),
    help="JSON object whose keys override the captured lineage (e.g. git, data).",
)
@click.option("--trust", is_flag=True, help="Store it without the static check a load runs (recorded as tag packager.check).")
@registry_options
def push(
    package_dir,
    name,
    params,
    metrics,
    tags,
    aliases,
    data,
    dockerfile,
    conda_env,
    description,
    lineage_file,
    trust,
    registry_url,
    blobs,
    as_json,
):
    """Store PACKAGE_DIR (written by `packager convert -o`) as the next version of NAME."""
    from packager.registry.refs import parse_pairs

    registry = open_registry(registry_url, blobs)
    info = registry.push(
        package_dir,
        name,
        params=parse_pairs(params, "param"),
        metrics=parse_pairs(metrics, "metric"),
        tags=parse_pairs(tags, "tag"),
        aliases=aliases,
        data=data,
        dockerfile=dockerfile,
        conda_env=conda_env,
        description=description,
        lineage=_read_lineage(lineage_file) if lineage_file else None,
        trust=trust,
    )
    uploaded = getattr(registry, "bytes_uploaded", None)  # through a server: what actually crossed the wire
    if as_json:
        _emit({**info.to_dict(full=False), **({"uploaded_bytes": uploaded} if uploaded is not None else {})})
    else:
        click.echo(f"{info.ref} {info.id}" + (f"  ({uploaded:,} bytes uploaded)" if uploaded is not None else ""))


def _read_lineage(path: Path) -> dict:
    import json

    from packager.errors import InputFileError

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"--lineage {path}: cannot read a JSON object ({exc})", "give a JSON file such as {\"git\": {\"commit\": \"...\"}}"
        ) from None
    if not isinstance(data, dict):
        raise InputFileError(f"--lineage {path}: the JSON is not an object", "give a JSON object whose keys replace captured ones")
    return data


@click.command("pull")
@click.argument("ref")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing folder.")
@registry_options
def pull(ref, out, force, registry_url, blobs, as_json):
    """Write REF's package files into OUT, checking every file's sha256."""
    path = open_registry(registry_url, blobs).pull(ref, out, overwrite=force)
    _emit({"ref": ref, "path": str(path)}) if as_json else click.echo(str(path))


@click.command("list")
@click.argument("name", required=False)
@registry_options
def list_(name, registry_url, blobs, as_json):
    """Every model's latest version, or all versions of NAME."""
    versions = open_registry(registry_url, blobs).list(name)
    if as_json:
        _emit([v.to_dict(full=False) for v in versions])
    else:
        _versions_table(versions, "versions of " + name if name else "models (latest version)")


def _versions_table(versions, title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for column in ("ref", "format", "quantization", "size", "validation", "aliases", "metrics", "created"):
        table.add_column(column)
    for v in versions:
        metrics = ", ".join(f"{k}={val:g}" for k, val in sorted(v.metrics.items()))
        table.add_row(
            v.ref,
            v.format,
            v.quantization or "—",
            human_size(v.size),
            v.validation or "—",
            ", ".join(v.aliases),
            escape(metrics),
            v.created,
        )
    console()(table)


@click.command("show")
@click.argument("ref")
@registry_options
def show(ref, registry_url, blobs, as_json):
    """Manifest, params, metrics, validation and lineage of REF."""
    info = open_registry(registry_url, blobs).get(ref)
    if as_json:
        _emit(info.to_dict())
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, title=f"{info.ref}  ({info.id})")
    validation = info.manifest.get("validation", {})
    git = info.lineage.get("git") or {}
    rows = {
        "digest": f"sha256:{info.digest}",
        "format": info.format,
        "quantization": info.quantization or "—",
        "size": human_size(info.size),
        "aliases": ", ".join(info.aliases) or "—",
        "params": _pairs(info.params),
        "metrics": _pairs(info.metrics),
        "tags": _pairs(info.tags),
        "validation": f"{validation.get('status')} ({validation.get('runtime')}"
        " {validation.get('runtime_version')}, {validation.get('samples')} samples)",
        "source": f"{info.manifest.get('source', {}).get('file')} sha256:{str(info.manifest.get('source', {}).get('sha256'))[:16]}…",
        "code": f"{git.get('commit', '—')} {git.get('branch') or ''}{' (dirty)' if git.get('dirty') else ''} {git.get('remote') or ''}",
        "environment": f"Python {info.lineage.get('environment', {}).get('python')}"
        " on {info.lineage.get('environment', {}).get('platform')}",
        "data": ", ".join(d["uri"] for d in info.lineage.get("data", [])) or "—",
        "derived from": ", ".join(info.parents) or "—",
        "files": "\n".join(f"{f.path}  {human_size(f.size)}  sha256:{f.digest[:16]}…" for f in info.files),
    }
    for key, value in rows.items():
        table.add_row(key, escape(str(value)))
    console()(table)


def _pairs(mapping) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(mapping.items())) or "—"


@click.command("compare")
@click.argument("refs", nargs=-1, required=True)
@registry_options
def compare(refs, registry_url, blobs, as_json):
    """Params and metrics of REFS side by side; rows that differ are highlighted."""
    registry = open_registry(registry_url, blobs)
    infos = [registry.get(r) for r in refs]
    rows = _comparison(infos)
    if as_json:
        _emit({"versions": [i.ref for i in infos], "rows": rows})
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="compare")
    table.add_column("")
    for info in infos:
        table.add_column(info.ref)
    for row in rows:
        style = "bold yellow" if row["differs"] else ""
        table.add_row(escape(row["key"]), *[escape("—" if v is None else str(v)) for v in row["values"]], style=style)
    console()(table)


def _comparison(infos) -> list[dict[str, Any]]:
    rows = []
    for label, getter in (
        ("format", lambda i: {"": i.format}),
        ("quantization", lambda i: {"": i.quantization}),
        ("size", lambda i: {"": i.size}),
        ("param", lambda i: i.params),
        ("metric", lambda i: i.metrics),
        ("tag", lambda i: i.tags),
    ):
        keys = sorted({k for info in infos for k in getter(info)})
        for key in keys:
            values = [getter(info).get(key) for info in infos]
            rows.append({"key": f"{label}.{key}" if key else label, "values": values, "differs": len({repr(v) for v in values}) > 1})
    return rows


@click.command("search")
@click.argument("expression")
@click.option("--limit", default=100, show_default=True)
@registry_options
def search(expression, limit, registry_url, blobs, as_json):
    """Versions matching EXPRESSION, e.g. 'metric.accuracy > 0.9 and tag.team = "fraud" and format = "onnx"'."""
    versions = open_registry(registry_url, blobs).search(expression, limit=limit)
    if as_json:
        _emit([v.to_dict(full=False) for v in versions])
    else:
        _versions_table(versions, f"search: {expression}")


@click.group("alias")
def alias():
    """Set or remove an alias."""


@alias.command("set")
@click.argument("ref")
@click.argument("name")
@registry_options
def alias_set(ref, name, registry_url, blobs, as_json):
    """Point alias NAME at REF (atomically moved from its previous version)."""
    info = open_registry(registry_url, blobs).set_alias(ref, name)
    _emit(info.to_dict(full=False)) if as_json else click.echo(f"{info.name}@{name} -> {info.ref}")


@alias.command("rm")
@click.argument("model")
@click.argument("name")
@registry_options
def alias_rm(model, name, registry_url, blobs, as_json):
    """Remove alias NAME of MODEL."""
    open_registry(registry_url, blobs).remove_alias(model, name)
    _emit({"removed": f"{model}@{name}"}) if as_json else click.echo(f"removed {model}@{name}")


@click.command("tag")
@click.argument("ref")
@click.argument("pairs", nargs=-1)
@click.option("--rm", "remove", multiple=True, help="Tag key to remove.")
@registry_options
def tag(ref, pairs, remove, registry_url, blobs, as_json):
    """Set tags K=V on REF (and remove --rm KEY)."""
    from packager.registry.refs import parse_pairs

    info = open_registry(registry_url, blobs).tag(ref, parse_pairs(pairs, "tag"), remove)
    _emit(info.to_dict(full=False)) if as_json else click.echo(f"{info.ref}: {_pairs(info.tags)}")


@click.command("delete")
@click.argument("ref")
@registry_options
def delete(ref, registry_url, blobs, as_json):
    """Delete version REF from the catalog (run gc to free its blobs)."""
    info = open_registry(registry_url, blobs).delete(ref)
    _emit({"deleted": info.ref, "id": info.id}) if as_json else click.echo(f"deleted {info.ref}")


@click.command("gc")
@registry_options
def gc(registry_url, blobs, as_json):
    """Delete blobs that no version references."""
    result = open_registry(registry_url, blobs).gc()
    _emit(result) if as_json else click.echo(f"removed {result['blobs_removed']} blob(s), freed {human_size(result['bytes_freed'])}")


@click.command("verify")
@registry_options
def verify(registry_url, blobs, as_json):
    """Re-hash every blob; list missing or corrupt ones by version. Exit 12 if any."""
    from packager.errors import BlobCorrupt

    problems = open_registry(registry_url, blobs).verify()
    if as_json:
        _emit({"problems": problems})
    else:
        for p in problems:
            click.echo(f"{p['problem']:8} {p['ref']}  {p['path']}  sha256:{p['digest'][:16]}…")
        click.echo("all blobs verified" if not problems else f"{len(problems)} problem(s)")
    if problems:
        raise BlobCorrupt(f"{len(problems)} stored file(s) are missing or corrupt", "re-push the affected versions from their packages")


@click.command("lineage")
@registry_options
@click.argument("ref")
def lineage(ref, registry_url, blobs, as_json):
    """The derivation tree of REF (source -> ONNX -> int8), with each node's digest."""
    tree = open_registry(registry_url, blobs).lineage(ref)
    if as_json:
        _emit(tree)
        return
    from rich.tree import Tree

    def label(node):
        quant = f" {node['quantization']}" if node["quantization"] else ""
        mark = "[bold]" if node["focus"] else ""
        return (
            f"{mark}{node['ref']}[/] {node['format']}{quant}  sha256:{node['digest'][:16]}…"
            if mark
            else f"{node['ref']} {node['format']}{quant}  sha256:{node['digest'][:16]}…"
        )

    def grow(branch, node):
        for child in node["children"]:
            grow(branch.add(label(child)), child)

    root = Tree(label(tree))
    grow(root, tree)
    console()(root)
