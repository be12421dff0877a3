"""Real services for the registry's team backends, started on loopback by the test session:
a PostgreSQL server (Debian's binaries, a throw-away data dir) and moto's S3-compatible server."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: apt-get install postgresql (make setup does it)")
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres() -> tuple[str, callable]:
    """initdb + pg_ctl start on a free port in a fresh temp dir; returns (URL, stop)."""
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="packager-pg-"))  # not under pytest's root-only tmp: postgres must reach it
    data, sockets = workdir / "pgdata", workdir / "pgsock"
    data.mkdir(parents=True)
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]), check=True, capture_output=True
    )
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    subprocess.run(
        _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(workdir / "pg.log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "packager"]),
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/packager", stop


def start_moto() -> tuple[str, callable]:
    """moto's server mode: a real HTTP S3 endpoint on loopback; returns (endpoint URL, stop)."""
    port = free_port()
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if not exe:
        raise RuntimeError("moto_server is not installed: pip install 'moto[server]' (in the dev extra)")
    process = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except Exception:
            time.sleep(0.1)

    def stop() -> None:
        process.terminate()
        process.wait(10)

    return endpoint, stop


def make_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)


def serve_registry_in_thread(catalog: str, blobs: str | None, token_file: Path) -> tuple[str, callable]:
    """The same app and limits `packager serve` runs (create_app over open_registry, limits.server), in a thread of
    this process: for tests of the registry contract over HTTP, where the server's own process is not what they test.
    A `packager serve` subprocess per test cost 1.7-2 s of set-up (interpreter, imports, migrations) over ~70 remote
    registry tests. Tests of the command, its flags, its process or its memory use start_registry_server."""
    import threading

    from packager.registry.backends import open_registry
    from packager.server.app import create_app, read_tokens
    from packager.server.limits import Limits, server

    port = free_port()
    uvicorn_server = server(create_app(open_registry(catalog, blobs), read_tokens(token_file)), "127.0.0.1", port, Limits())
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if uvicorn_server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    if not uvicorn_server.started:
        raise RuntimeError("the registry server thread did not start within 30 s")

    def stop() -> None:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}", stop


def start_registry_server(home: Path, token_file: Path | None = None, read_token: bool = False, blobs: str | None = None,
                          env: dict[str, str] | None = None) -> tuple[str, callable]:
    """`packager serve` in a subprocess on a free loopback port, over the registry in ``home`` (blobs
    there too, or at ``blobs``: an s3:// URL; ``env`` adds e.g. PACKAGER_REGISTRY); returns (URL, stop)."""
    port = free_port()
    command = [sys.executable, "-m", "packager.cli", "serve", "--port", str(port)]
    if token_file:
        command += ["--token-file", str(token_file)]
    if read_token:
        command += ["--read-token"]
    environment = {k: v for k, v in os.environ.items() if k not in ("PACKAGER_REGISTRY", "PACKAGER_BLOBS", "PACKAGER_TOKEN")}
    environment.update({"PACKAGER_HOME": str(home), **({"PACKAGER_BLOBS": blobs} if blobs else {}), **(env or {})})
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"packager serve exited: {process.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("packager serve did not start within 30 s")

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

    stop.pid = process.pid  # for tests that watch the server's memory
    return url, stop
