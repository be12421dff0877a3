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
@click.option(
    "--sign-key",
    type=click.Path(path_type=Path),
    help="Sign the package with this PEM private key (OpenSSF model signing, elliptic curve); kept with the version.",
)
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
    sign_key,
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
        **({"sign_key": sign_key} if sign_key else {}),
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


def verify_option(func):
    return click.option(
        "--verify",
        "verify_policy",
        type=click.Choice(["required", "if-signed", "off"]),
        envvar="PACKAGER_VERIFY",
        help="Signature policy: required (signed by a trusted key), if-signed (default: a signature must be good and "
        "trusted), off. Env PACKAGER_VERIFY. A refusal writes nothing and exits 12.",
    )(func)


@click.command("pull")
@click.argument("ref")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing folder.")
@verify_option
@registry_options
def pull(ref, out, force, verify_policy, registry_url, blobs, as_json):
    """Write REF's package files (and its signature, model.sig) into OUT, checking every file's sha256 and the signature."""
    from packager.registry.signing import untrusted_backend_policy

    registry = open_registry(registry_url, blobs)
    if registry.supports_trust:
        path = registry.pull(ref, out, overwrite=force, verify=verify_policy)
    else:  # a backend that keeps no signatures: `required` cannot be met and is refused, the others change nothing
        untrusted_backend_policy(registry, ref, verify_policy)
        path = registry.pull(ref, out, overwrite=force)
    _emit({"ref": ref, "path": str(path)}) if as_json else click.echo(str(path))


@click.command("sign")
@click.argument("ref")
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path), help="PEM private key (elliptic curve).")
@registry_options
def sign(ref, key_file, registry_url, blobs, as_json):
    """Sign the stored version REF's files with KEY (OpenSSF model signing) and keep the signature with it."""
    info = open_registry(registry_url, blobs).sign_with_key(ref, key_file)
    if as_json:
        _emit(info.to_dict(full=False))
    else:
        signature = info.signature or {}
        click.echo(f"{info.ref} signed: key {str(signature.get('fingerprint'))[:16]}… ({signature.get('signer') or 'not a trusted key'})")


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
    for column in ("ref", "format", "quantization", "size", "validation", "signed", "aliases", "metrics", "created"):
        table.add_column(column)
    for v in versions:
        metrics = ", ".join(f"{k}={val:g}" for k, val in sorted(v.metrics.items()))
        table.add_row(
            v.ref,
            v.format,
            v.quantization or "—",
            human_size(v.size),
            v.validation or "—",
            _signed_cell(v.signature),
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
        "signature": _signature_text(info.signature),
        "params": _pairs(info.params),
        "metrics": _pairs(info.metrics),
        "tags": _pairs(info.tags),
        "validation": f"{validation.get('status')} ({validation.get('runtime')}"
        f" {validation.get('runtime_version')}, {validation.get('samples')} samples)",
        "source": f"{info.manifest.get('source', {}).get('file')} sha256:{str(info.manifest.get('source', {}).get('sha256'))[:16]}…",
        "code": f"{git.get('commit', '—')} {git.get('branch') or ''}{' (dirty)' if git.get('dirty') else ''} {git.get('remote') or ''}",
        "environment": f"Python {info.lineage.get('environment', {}).get('python')}"
        f" on {info.lineage.get('environment', {}).get('platform')}",
        "data": ", ".join(d["uri"] for d in info.lineage.get("data", [])) or "—",
        "derived from": ", ".join(info.parents) or "—",
        "files": "\n".join(f"{f.path}  {human_size(f.size)}  sha256:{f.digest[:16]}…" for f in info.files),
    }
    for key, value in rows.items():
        table.add_row(key, escape(str(value)))
    console()(table)


def _signature_text(signature) -> str:
    if not signature:
        return "unsigned"
    signer = signature.get("signer") or "a key this registry does not trust"
    return f"{signer}, key sha256:{signature['fingerprint'][:16]}…, {signature['signed_at']} (stored by {signature['signed_by']})"


def _signed_cell(signature) -> str:
    if not signature:
        return "—"
    return f"{signature.get('signer') or 'untrusted'} {signature['fingerprint'][:8]} {signature['signed_at']}"


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
@click.option("--message", "-m", help="Why (kept in the alias history).")
@registry_options
def alias_set(ref, name, message, registry_url, blobs, as_json):
    """Point alias NAME at REF (atomically moved from its previous version; recorded in its history)."""
    registry = open_registry(registry_url, blobs)
    info = registry.set_alias(ref, name, **({"message": message} if message else {}))
    _emit(info.to_dict(full=False)) if as_json else click.echo(f"{info.name}@{name} -> {info.ref}")


@alias.command("rm")
@click.argument("model")
@click.argument("name")
@click.option("--message", "-m", help="Why (kept in the alias history).")
@registry_options
def alias_rm(model, name, message, registry_url, blobs, as_json):
    """Remove alias NAME of MODEL."""
    open_registry(registry_url, blobs).remove_alias(model, name, **({"message": message} if message else {}))
    _emit({"removed": f"{model}@{name}"}) if as_json else click.echo(f"removed {model}@{name}")


@alias.command("history")
@click.argument("model")
@click.argument("name", required=False)
@registry_options
def alias_history(model, name, registry_url, blobs, as_json):
    """Every set, move and removal of MODEL's aliases (or of alias NAME), oldest first: time, actor, from, to, message."""
    events = open_registry(registry_url, blobs).alias_history(model, name)
    if as_json:
        _emit(events)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"alias history of {model}" + (f"@{name}" if name else ""))
    for column in ("time", "actor", "alias", "from", "to", "message"):
        table.add_column(column)
    for e in events:
        version = lambda n: "—" if n is None else f"v{n}"  # noqa: E731
        table.add_row(e["time"], escape(e["actor"]), e["alias"], version(e["from"]), version(e["to"]), escape(e["message"] or ""))
    console()(table)


@alias.command("rollback")
@click.argument("model")
@click.argument("name")
@click.option("--message", "-m", help="Why (kept in the alias history).")
@registry_options
def alias_rollback(model, name, message, registry_url, blobs, as_json):
    """Move alias NAME of MODEL back to the version it pointed at before its latest change."""
    info = open_registry(registry_url, blobs).rollback_alias(model, name, **({"message": message} if message else {}))
    _emit(info.to_dict(full=False)) if as_json else click.echo(f"{model}@{name} -> {info.ref}")


@alias.command("protect")
@click.argument("model")
@click.argument("name")
@click.option("--require", "requires", default="", help="Comma-separated: validated, signed (empty: remove the rules).")
@registry_options
def alias_protect(model, name, requires, registry_url, blobs, as_json):
    """Promotion rules: alias NAME of MODEL may point only at versions that pass them (validated: validation passed;
    signed: signed by a trusted key, checked against the files)."""
    rules = open_registry(registry_url, blobs).protect_alias(model, name, requires.split(","))
    if as_json:
        _emit(rules)
    else:
        click.echo(f"{model}@{name} requires {','.join(rules[name])}" if rules.get(name) else f"{model}@{name} is not protected")


@click.group("trust")
def trust():
    """The public keys whose signatures this registry trusts (what --verify accepts)."""


@trust.command("add")
@click.argument("public_key", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Who holds the private key (shown as the signer).")
@registry_options
def trust_add(public_key, name, registry_url, blobs, as_json):
    """Trust PUBLIC_KEY (a PEM file) under NAME."""
    from packager.registry.signing import public_pem

    key = open_registry(registry_url, blobs).trust_add(name, public_pem(public_key, private=False))
    _emit(key.to_dict()) if as_json else click.echo(f"trusted {key.name}: sha256:{key.fingerprint}")


@trust.command("list")
@registry_options
def trust_list(registry_url, blobs, as_json):
    """The trusted keys."""
    keys = open_registry(registry_url, blobs).trust_list()
    if as_json:
        _emit([k.to_dict() for k in keys])
        return
    for key in keys:
        click.echo(f"{key.name}  sha256:{key.fingerprint}  added {key.added} by {key.added_by}")
    if not keys:
        click.echo("no trusted keys (add one with `packager trust add PUB.pem --name NAME`)")


@trust.command("rm")
@click.argument("name")
@registry_options
def trust_rm(name, registry_url, blobs, as_json):
    """Stop trusting the key NAME."""
    open_registry(registry_url, blobs).trust_remove(name)
    _emit({"removed": name}) if as_json else click.echo(f"removed {name}")


@click.command("audit")
@click.option("--name", help="Only records about this model (or the trusted key so named).")
@click.option("--since", help="Only records at or after this ISO date/time (UTC when no zone is given).")
@registry_options
def audit(name, since, registry_url, blobs, as_json):
    """The audit log: every write (time, actor, action, target, before/after), oldest first."""
    records = open_registry(registry_url, blobs).audit_log(name, since)
    if as_json:
        _emit(records)
        return
    import json

    from rich.markup import escape
    from rich.table import Table

    table = Table(title="audit log")
    for column in ("seq", "time", "actor", "action", "target", "before", "after"):
        table.add_column(column)
    for r in records:
        cells = [json.dumps(r[k], sort_keys=True) if r[k] is not None else "—" for k in ("before", "after")]
        table.add_row(str(r["seq"]), r["time"], escape(r["actor"]), r["action"], escape(r["target"]), *map(escape, cells))
    console()(table)


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
@click.option(
    "--anchor", metavar="SEQ:HASH", help="A head printed by an earlier verify and kept outside the registry: it must still be in the chain."
)
def verify(registry_url, blobs, as_json, anchor):
    """Re-hash every blob and check the audit log's hash chain; exit 12 on a missing or corrupt blob or a broken chain."""
    from packager.errors import BlobCorrupt, UsageError

    registry = open_registry(registry_url, blobs)
    if anchor and not registry.supports_trust:
        raise UsageError("--anchor needs a registry with an audit log", "verify a sqlite:// or postgresql:// catalog")
    problems = registry.verify()
    chain = registry.verify_audit(anchor) if registry.supports_trust else None
    if as_json:
        _emit({"problems": problems, **({"audit": chain} if chain is not None else {})})
    else:
        if chain is not None:  # first: the blob summary stays the last line, as scripts read it
            intact = f"audit log: {chain['records']} records, chain intact" + (f", head {chain['head']}" if chain["head"] else "")
            click.echo(intact if chain["ok"] else f"audit log: {chain['reason']}")
        for p in problems:
            click.echo(f"{p['problem']:8} {p['ref']}  {p['path']}  sha256:{p['digest'][:16]}…")
        click.echo("all blobs verified" if not problems else f"{len(problems)} problem(s)")
    if chain is not None and not chain["ok"]:
        raise BlobCorrupt(
            f"the audit log's hash chain breaks at record {chain['first_bad']}: {chain['reason']}",
            "the catalog was edited outside packager; compare that record with a backup",
        )
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
