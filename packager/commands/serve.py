"""`packager serve`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    help="Tokens, one per line: TOKEN [read,write,alias,admin] [names=GLOB,..] [name=LABEL] (bare: full access; TOKEN may be "
    "sha256:HEX). Without it the server is read-only.",
)
@click.option("--read-token", is_flag=True, help="Reads need a token from --token-file too (default: reads are open).")
@click.option("--require-signatures", is_flag=True, help="Refuse pushes not signed by a key the registry trusts (`packager trust add`).")
@click.option("--registry", "registry_url", envvar="PACKAGER_REGISTRY", help="Catalog URL the server fronts (default: the embedded one).")
@click.option("--blobs", envvar="PACKAGER_BLOBS", help="Blob store the server fronts.")
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a connection has to send complete request headers (slowloris).",
)
@click.option("--idle-timeout", default=5, show_default=True, type=click.IntRange(min=1), help="Seconds a kept-alive connection may idle.")
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Open connections in all; when full, the oldest one still waiting for its headers is closed.",
)
@click.option(
    "--max-connections-per-client",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Open connections from one client address (an IPv6 client: its /64); more get 503.",
)
@click.option(
    "--stall-timeout",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a client may leave its response unread, or send its body slower than --min-body-rate, before it is closed.",
)
@click.option(
    "--min-body-rate", default=1024, show_default=True, type=click.IntRange(min=0), help="Bytes per second a request body must average."
)
def command(
    host,
    port,
    token_file,
    read_token,
    require_signatures,
    registry_url,
    blobs,
    header_timeout,
    idle_timeout,
    max_connections,
    max_connections_per_client,
    stall_timeout,
    min_body_rate,
):
    """Serve the registry: web UI at /, REST API under /api/v1 (OpenAPI at /api/v1/openapi.json)."""
    from packager.registry.backends import open_registry
    from packager.server.app import create_app, read_tokens
    from packager.server.limits import Limits, serve

    if registry_url and registry_url.startswith(("http://", "https://")):
        from packager.errors import UsageError

        raise UsageError("packager serve fronts a catalog database, not another server", "give --registry sqlite:///… or postgresql://…")
    app = create_app(
        open_registry(registry_url, blobs), read_tokens(token_file), read_token=read_token, require_signatures=require_signatures
    )
    click.echo(f"packager registry on http://{host}:{port}/  (API: /api/v1, OpenAPI: /api/v1/openapi.json)", err=True)
    serve(app, host, port, Limits(header_timeout, idle_timeout, max_connections, max_connections_per_client, stall_timeout, min_body_rate))
