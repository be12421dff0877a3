"""Connection limits for ``packager serve``: what uvicorn's h11 protocol lacks against slowloris.

uvicorn 0.55's ``H11Protocol`` has a keep-alive timeout but no timer while request headers arrive (a
client sending one header byte now and then cancels the keep-alive timer and holds its connection for
ever) and no connection cap (``limit_concurrency`` answers 503 only once a request is complete). Measured
on 826a172: 1,100 such connections used up the 1,024 descriptors, every normal request timed out and the
log grew 40 MB in 30 s with "Too many open files". ``guarded_protocol`` wraps (does not rewrite) uvicorn's
protocol with: a header timeout, a per-client-address cap, and a global cap that, when full, closes the
oldest connection still waiting for its headers or idle between requests (so an attacker holding every
slot gives them up to a client that sends a request at once). ``RateLimit`` keeps repeated log lines to a
few per minute.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any

from packager.logs import LOGGER as PACKAGER_LOGGER

# The server's own refusals go to packager's logger (packager/logs.py: stderr as ``packager: ...``, WARNING and up);
# uvicorn's records stay on uvicorn's. Nothing here changes another logger's level or calls ``logging.disable``, which
# is process-wide: it silenced every logger of a host that runs the server in its own process.
LOGGER = f"{PACKAGER_LOGGER}.server"
# Descriptors kept free beside the connections: the catalog, blobs, static files, the listening socket,
# and the sockets asyncio accepts before any protocol sees them (up to the backlog per loop pass, and two
# or three passes go by before connection_made: with 256 spare and a backlog of 128, a 2,000-socket burst
# still hit EMFILE). The soft limit is raised to the hard one (up to SOFT_TARGET), as nginx does.
RESERVE_FDS = 512
SOFT_TARGET = 65536
BUSY_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\nretry-after: 5\r\n"
    b"content-length: 46\r\n\r\ntoo many connections from this address; retry\n"
)


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0  # seconds from connect (or the previous response) to complete request headers
    idle_timeout: int = 5  # seconds a kept-alive connection may wait for its next request (uvicorn's keep-alive)
    max_connections: int = 1000  # open connections in all
    max_per_client: int = 50  # open connections from one client address (IPv6: its /64)
    # A client that owes the server bytes (a request body) or will not take them (a response it does not read) holds
    # its slot: the red team kept every slot with 21 x 49 GETs of an 8 MB blob never read, or slow PUT bodies, and
    # normal requests got 503 for as long as they liked. Such a connection is closed after stall_timeout seconds
    # without the body arriving at min_body_rate, or with the response stuck in the send buffer.
    stall_timeout: float = 20.0
    min_body_rate: int = 1024  # bytes per second, on average since the headers, once stall_timeout has passed


def client_key(host: str) -> str:
    """The address a per-client cap counts: an IPv6 client owns its whole /64 (one host gets 2^64 addresses). IPv4
    loopback addresses stay apart: a reverse proxy on this machine is one of them, and only a local user has 127/8."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        address = address.ipv4_mapped
    return str(address)


def descriptor_cap(wanted: int) -> tuple[int, int]:
    """(connection cap, backlog) the process's descriptors allow: raises the soft RLIMIT_NOFILE towards the
    hard one; the cap is ``wanted`` or less so that RESERVE_FDS stay free, and the backlog (asyncio's
    accepts per loop pass as well as listen()'s queue) a third of what is left, within 64..2048. A small
    listen queue drops SYNs in a flood and normal clients then wait 1 s for a retry: measured here, so it
    is kept at uvicorn's 2048 whenever the descriptors allow."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(wanted + RESERVE_FDS, SOFT_TARGET)
    target = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted, 2048
    cap = max(1, min(wanted, soft - RESERVE_FDS))
    return cap, min(2048, max(64, (soft - cap - 64) // 3))


class _Registry:
    """Open connections: in order of last activity (for eviction) and counted per client address."""

    def __init__(self) -> None:
        self.open: OrderedDict[Any, None] = OrderedDict()
        self.per_client: defaultdict[str, int] = defaultdict(int)

    def oldest_waiting(self) -> Any | None:
        return next((p for p in self.open if p.waiting_for_headers() or p.stalling()), None)


def guarded_protocol(limits: Limits, max_connections: int) -> type:
    """uvicorn's h11 protocol class with ``limits`` applied; pass it as ``uvicorn.Config(http=...)``."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    registry = _Registry()
    log = logging.getLogger(LOGGER)

    class GuardedH11Protocol(H11Protocol):
        _counted: str | None = None
        _header_timer: Any = None
        _stall_timer: Any = None
        _body_started: float = 0.0
        _body_bytes: int = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            host = client_key(self.client[0]) if self.client else "?"
            if registry.per_client[host] >= limits.max_per_client:
                log.warning("refused a connection: %s already has %d open (--max-connections-per-client)", host, limits.max_per_client)
                transport.write(BUSY_REPLY)
                transport.close()
                return
            if len(registry.open) >= max_connections:
                victim = registry.oldest_waiting()
                if victim is None:
                    log.warning("refused a connection: %d open, all busy (--max-connections)", max_connections)
                    transport.write(BUSY_REPLY.replace(b"from this address", b"          in all"))
                    transport.close()
                    return
                log.warning("closed the oldest connection waiting for headers or stalling: %d open (--max-connections)", max_connections)
                victim.drop()
            self._counted = host
            registry.per_client[host] += 1
            registry.open[self] = None
            self._arm_header_timer()

        def waiting_for_headers(self) -> bool:
            return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

        def stalling(self) -> bool:
            """Holding a slot while the client does not keep up: its response unread, or its body below the rate."""
            if self.transport.is_closing():
                return False
            if self._writing_paused_since is not None:
                return True
            elapsed = self.loop.time() - self._body_started
            return self.conn.their_state is h11.SEND_BODY and elapsed > 1 and self._body_bytes < limits.min_body_rate * elapsed

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(limits.header_timeout, self._header_timeout)

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.waiting_for_headers():
                log.warning("closed a connection that sent no complete request headers in %g s (--header-timeout)", limits.header_timeout)
                self.drop()

        def drop(self) -> None:
            self.transport.abort()  # connection_lost follows and uncounts it

        def data_received(self, data: bytes) -> None:
            if self in registry.open:
                registry.open.move_to_end(self)
            sending_body = self.conn.their_state is h11.SEND_BODY
            super().data_received(data)
            if sending_body:
                self._body_bytes += len(data)
            elif self.conn.their_state is h11.SEND_BODY:  # these bytes ended the headers: the body is owed from now
                self._body_started, self._body_bytes = self.loop.time(), 0
                self._arm_stall_timer()

        def _arm_stall_timer(self) -> None:
            if self._stall_timer is None:
                self._stall_timer = self.loop.call_later(limits.stall_timeout, self._stalled)

        def _stalled(self) -> None:
            """Fires stall_timeout after a body began or writing paused; re-arms while the client keeps up."""
            self._stall_timer = None
            if self.transport.is_closing():
                return
            owed = self.conn.their_state is h11.SEND_BODY
            slow = owed and self._body_bytes < limits.min_body_rate * (self.loop.time() - self._body_started)
            if slow or self._writing_paused_since is not None and self.loop.time() - self._writing_paused_since >= limits.stall_timeout:
                what = "sent its request body slower than --min-body-rate" if slow else "did not read its response"
                log.warning("closed a connection that %s for %g s", what, limits.stall_timeout)
                self.drop()
            elif owed or self._writing_paused_since is not None:
                self._arm_stall_timer()

        _writing_paused_since: float | None = None

        def pause_writing(self) -> None:  # the send buffer is full: the client is not reading
            super().pause_writing()
            self._writing_paused_since = self.loop.time()
            self._arm_stall_timer()

        def resume_writing(self) -> None:
            super().resume_writing()
            self._writing_paused_since = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()  # the next request's headers get the same time

        def connection_lost(self, exc: Exception | None) -> None:
            for timer in (self._header_timer, self._stall_timer):
                if timer is not None:
                    timer.cancel()
            self._header_timer = self._stall_timer = None
            if self._counted is not None:
                registry.open.pop(self, None)
                registry.per_client[self._counted] -= 1
                if registry.per_client[self._counted] <= 0:
                    del registry.per_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

    return GuardedH11Protocol


class RateLimit(logging.Filter):
    """At most ``burst`` records per message template per ``window`` seconds; the next record let through
    says how many were dropped. The 40 MB log of the slowloris was one message repeated."""

    def __init__(self, burst: int = 5, window: float = 60.0) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self.seen: dict[tuple[str, str], list[float]] = {}
        self.dropped: defaultdict[tuple[str, str], int] = defaultdict(int)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        recent = [t for t in self.seen.get(key, []) if now - t < self.window]
        if len(recent) >= self.burst:
            self.seen[key] = recent
            self.dropped[key] += 1
            return False
        recent.append(now)
        self.seen[key] = recent
        if len(self.seen) > 1000:  # messages with varying templates: forget the oldest
            self.seen.pop(next(iter(self.seen)))
        if dropped := self.dropped.pop(key, 0):
            record.msg = f"{record.msg} ({dropped} similar lines dropped in the last {self.window:g} s)"
        return True


def rate_limit_logs() -> RateLimit:
    """Installs one ``RateLimit`` on every handler that writes the server's log: packager's, uvicorn's, the root
    logger's and ``logging.lastResort`` (where asyncio's "socket.accept() out of system resource" goes)."""
    limit = RateLimit()
    handlers = {logging.lastResort, *logging.getLogger().handlers}
    for name in (PACKAGER_LOGGER, LOGGER, "uvicorn", "uvicorn.error", "uvicorn.access"):
        handlers.update(logging.getLogger(name).handlers)
    for handler in handlers:
        if handler is not None:
            handler.addFilter(limit)
    return limit


def server(app: Any, host: str, port: int, limits: Limits) -> Any:
    """A ``uvicorn.Server`` with the limits (not started); the protocol class is uvicorn's own, wrapped."""
    import uvicorn

    cap, backlog = descriptor_cap(limits.max_connections)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=guarded_protocol(limits, cap),
        timeout_keep_alive=limits.idle_timeout,
        backlog=backlog,
    )
    rate_limit_logs()  # after Config(), whose dictConfig makes uvicorn's handlers
    if cap < limits.max_connections:
        logging.getLogger(LOGGER).warning(
            "--max-connections %d lowered to %d: the descriptor limit (ulimit -n) leaves no more", limits.max_connections, cap
        )
    return uvicorn.Server(config)


def serve(app: Any, host: str, port: int, limits: Limits) -> None:
    """``uvicorn.run`` with the limits, until stopped."""
    server(app, host, port, limits).run()
