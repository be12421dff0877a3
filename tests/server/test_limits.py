"""`packager serve` under slowloris (issue 21, finding 6): a real server on loopback, real sockets.

On 826a172, 1,100 connections that never finish their headers used up the server's 1,024 descriptors:
every normal request timed out and the log grew 40 MB in 30 s. The server here runs with that same soft
descriptor limit; the attackers come from other loopback addresses (127.0.0.2+) so that the per-address
cap does not also stop the normal client on 127.0.0.1.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import free_port

ATTACK = 2000
SOFT_NOFILE = 1024  # a stock `ulimit -n`: what the finding was measured with


def _start(home: Path, log: Path, *options: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PACKAGER_REGISTRY", "PACKAGER_BLOBS", "PACKAGER_TOKEN")}
    env["PACKAGER_HOME"] = str(home)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def stock_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_NOFILE, hard))

    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "packager.cli", "serve", "--port", str(port), *options],
            stdout=subprocess.DEVNULL, stderr=sink, env=env, preexec_fn=stock_limit,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"packager serve exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/api/v1/models", timeout=1)
            return url, process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("packager serve did not start within 30 s")


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(*options: str) -> tuple[str, subprocess.Popen, Path]:
        log = tmp_path / f"serve{len(started)}.log"
        url, process = _start(tmp_path, log, *options)
        started.append(process)
        return url, process, log

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def many_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < ATTACK + 200:
        pytest.skip(f"the hard descriptor limit {hard} is below the {ATTACK} attack sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (ATTACK + 200 if hard == resource.RLIM_INFINITY else hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _slow_connection(port: int, source: str) -> socket.socket:
    """A connection that starts a request and never finishes its headers."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    return sock


def _timed_get(url: str) -> tuple[int, float]:
    start = time.monotonic()
    with urllib.request.urlopen(f"{url}/api/v1/models", timeout=10) as response:
        response.read()
        return response.status, time.monotonic() - start


def test_slowloris_of_2000_connections_leaves_normal_requests_answering(serve, many_descriptors):
    url, process, log = serve()  # the defaults a user gets
    port = int(url.rsplit(":", 1)[1])
    # 400 from one address (over the per-address cap of 50), then 1,600 from 32 addresses (50 each: over the
    # global cap of 1,000 together)
    sources = ["127.0.0.2"] * 400 + [f"127.0.0.{3 + i % 32}" for i in range(ATTACK - 400)]
    attackers = [_slow_connection(port, source) for source in sources]
    time.sleep(1.0)
    for sock in attackers:
        try:
            sock.send(b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            pass  # refused or closed by the server already
    try:
        latencies = []
        for _ in range(5):
            status, seconds = _timed_get(url)
            assert status == 200
            latencies.append(seconds)
            time.sleep(0.2)
        descriptors = len(os.listdir(f"/proc/{process.pid}/fd"))
    finally:
        for sock in attackers:
            sock.close()
    assert max(latencies) < 3.0, latencies
    assert descriptors < 1000 + 100, f"the server held {descriptors} descriptors"  # --max-connections 1000
    time.sleep(0.5)
    assert _timed_get(url)[0] == 200  # and after the attack
    text = log.read_text()
    print(f"\nslowloris of {ATTACK}: GET {[round(t, 3) for t in latencies]} s, {descriptors} descriptors, log {len(text.encode())} B")
    assert len(text.encode()) < 8_000, text[-2000:]  # 40 MB in 30 s on 826a172
    assert "Too many open files" not in text
    assert "(--max-connections-per-client)" in text and "(--max-connections)" in text


def test_a_kept_alive_connection_dribbling_headers_is_closed(serve):
    """uvicorn's keep-alive timer stops at the first byte of the next request; the header timer does not."""
    url, _, log = serve("--header-timeout", "2", "--idle-timeout", "30")
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        sock.settimeout(0.5)
        closed_after = None
        for byte in b"GET /api/v1/models HTTP/1.1\r\nX-Slow: " + b"a" * 40:
            try:
                sock.send(bytes([byte]))
                if sock.recv(100) == b"":
                    closed_after = time.monotonic() - start
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_after = time.monotonic() - start
                break
    assert closed_after is not None and 1.5 < closed_after < 4.0, closed_after
    assert "(--header-timeout)" in log.read_text()
    assert _timed_get(url)[0] == 200


def test_the_limits_are_options_with_defaults():
    from click.testing import CliRunner

    from packager.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--header-timeout", "--idle-timeout", "--max-connections", "--max-connections-per-client"):
        assert option in result.output
    bad = CliRunner().invoke(main, ["serve", "--max-connections", "0"])
    assert bad.exit_code == 2 and "--max-connections" in bad.output


def test_repeated_log_lines_are_rate_limited():
    import io
    import logging

    from packager.server.limits import RateLimit

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RateLimit(burst=5, window=0.3))
    logger = logging.getLogger("tests.server.rate_limit")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(100):
            logger.error("socket.accept() out of system resource: %d", i)
        logger.error("another message")
        time.sleep(0.35)
        logger.error("socket.accept() out of system resource: %d", 100)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 7, lines
    assert lines[-1] == "socket.accept() out of system resource: 100 (95 similar lines dropped in the last 0.3 s)"


def _closed_within(sock: socket.socket, seconds: float, keep_sending: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (reset or EOF), reading nothing of what it sends; None if it stays."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        time.sleep(0.25)
        try:
            if keep_sending:
                sock.send(keep_sending)
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                return time.monotonic() - start
        except BlockingIOError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def _drain(sock: socket.socket) -> int:
    """Bytes readable until the server's close (EOF or reset); a connection still open after 10 s idle fails."""
    sock.settimeout(10)
    received = 0
    try:
        while chunk := sock.recv(1 << 16):
            received += len(chunk)
    except ConnectionResetError:
        pass
    return received


def test_a_client_that_does_not_read_or_trickles_its_body_loses_its_slot(serve, tmp_path):
    """Red team (round three): 21 addresses x 49 GETs of an 8 MB blob never read, or slow PUT bodies with a token,
    held every slot and normal requests got 503 for as long as the attacker liked. --stall-timeout closes both."""
    token = "stall-token"
    (tmp_path / "tokens").write_text(token + "\n")
    from packager.registry.api import LocalRegistry

    package = tmp_path / "package"
    package.mkdir()
    (package / "model.bin").write_bytes(os.urandom(64 << 20))  # more than loopback buffers absorb
    (package / "manifest.json").write_text('{"format": "mystery", "model_file": "model.bin"}')
    LocalRegistry(f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "objects")).push(package, "big")
    url, _, log = serve("--token-file", str(tmp_path / "tokens"), "--stall-timeout", "2", "--min-body-rate", "1000")
    port = int(url.rsplit(":", 1)[1])
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", port))
    reader.sendall(b"GET /api/v1/versions/big@1/files/model.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    uploader = socket.create_connection(("127.0.0.1", port))
    uploader.sendall(
        f"PUT /api/v1/blobs/sha256/{'0' * 64} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n".encode()
    )
    try:
        trickled = _closed_within(uploader, 10, keep_sending=b"x")  # one byte per 0.25 s: 4 B/s < 1000 B/s
        time.sleep(3)  # the reader has now read nothing for more than --stall-timeout (reading earlier would un-stall it)
        received = _drain(reader)  # what it gets ends before the 64 MB
    finally:
        reader.close()
        uploader.close()
    assert trickled is not None and trickled < 8, trickled
    assert received < 64 << 20, (received, log.read_text()[-1500:])
    text = log.read_text()
    assert "did not read its response" in text and "slower than --min-body-rate" in text, text[-2000:]
    assert "Traceback" not in text  # the upload's ClientDisconnect is not logged as a crash
    assert _timed_get(url)[0] == 200


def test_the_server_logs_through_packager_and_silences_no_other_logger(caplog):
    """limits.serve called ``logging.disable(logging.INFO)``: process-wide, so a host running the server in its own
    process lost every INFO record of every logger from then on. The refusal must arrive on packager's logger, and a
    record from an unrelated logger must still arrive while the server runs and after it stopped."""
    import logging
    import threading

    from packager.server.limits import BUSY_REPLY, LOGGER, Limits, RateLimit, server

    async def app(scope, receive, send):  # the limits act before any request reaches an app
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="packager")
    other = logging.getLogger("tests.server.another_library")
    port = free_port()
    uvicorn_server = server(app, "127.0.0.1", port, Limits(max_per_client=1))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if uvicorn_server.started:
                break
            time.sleep(0.05)
        assert uvicorn_server.started
        with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port)) as second:
            second.settimeout(5)
            assert second.recv(1000) == BUSY_REPLY  # the per-client cap of 1 refused the second connection
            other.info("during: an INFO record of another logger")
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        for handler in {logging.lastResort, *logging.getLogger().handlers, *logging.getLogger("packager").handlers}:
            for f in [f for f in getattr(handler, "filters", []) if isinstance(f, RateLimit)]:
                handler.removeFilter(f)
    other.info("after: an INFO record of another logger")
    refusals = [r for r in caplog.records if r.name == LOGGER and "refused a connection" in r.getMessage()]
    assert len(refusals) == 1 and "127.0.0.1 already has 1 open" in refusals[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.name == other.name] == [
        "during: an INFO record of another logger",
        "after: an INFO record of another logger",
    ]
    assert not thread.is_alive()
