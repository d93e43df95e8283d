"""HTTP transport: connections, TLS, proxies, deadlines, abort, and the byte-level read loop.

Layer 2. Imports ``_errors`` only (``sse`` and JSON are the client's business). This is
the one module that catches ``OSError``, ``socket.timeout``, ``ssl.SSLError`` and
``http.client.HTTPException``: :func:`translate` turns them into alltoken errors.

Theory of operation
-------------------
``http.client`` frames the request and the response (status line, headers, chunked
encoding). Underneath it, instead of ``socket.makefile()``, each response reads through a
:class:`_SocketReader`: a raw reader that receives with a socket timeout computed before
*every* receive from the request's :class:`Deadlines` — the read timeout (silence between
bytes), the idle timeout (silence between data events, kept by the stream layer), and the
total deadline — and, when the caller gave an abort signal, caps each wait at
:data:`ABORT_POLL` seconds and checks the signal between waits. A C ``BufferedReader``
sits on top, so ``HTTPResponse.read1()`` returns whatever has arrived as soon as it
arrives: bytes are never held back to fill a buffer.

So an abort is noticed within ``ABORT_POLL`` (2 ms) of ``signal.set()`` wherever the
request is blocked: connecting (a non-blocking connect polled in slices), in the TLS
handshake (driven non-blocking), waiting for the status line, or mid-body. No thread is
started, so none can outlive its stream. **Not interruptible:** the DNS lookup
(``getaddrinfo`` blocks in C); the signal is checked right before and after it.

Connections whose response was read to its end go back to a small :class:`Pool` for the
next request to the same origin; every other ending closes the socket.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import http.client
import io
import os
import select
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Final, NamedTuple, Optional, Union
from urllib.parse import urlsplit

from ._errors import AbortedError, AllTokenError, APIConnectionError, APITimeoutError, ProtocolError

if TYPE_CHECKING:
    pass

__all__ = [
    "ABORT_POLL",
    "Deadlines",
    "Endpoint",
    "Pool",
    "Proxy",
    "Signal",
    "Timeout",
    "check_header",
    "map_exception",
    "proxy_for",
    "translate",
]

#: The longest single wait while an abort signal is being watched. An abort is noticed
#: within this time; a silent stream costs one wake-up per slice. 2 ms keeps the abort
#: latency's p99 well under the 10 ms target (benchmarks/) at about 500 cheap wake-ups a
#: second per *silent* stream; a stream that is receiving data does not wake up at all.
ABORT_POLL: Final = 0.002

#: A reusable idle connection older than this is closed instead of reused: servers and
#: proxies commonly drop idle keep-alive connections after 5-60 s.
POOL_IDLE_SECONDS: Final = 30.0
POOL_MAX_PER_ORIGIN: Final = 8

#: ``read1`` size: large enough that a burst is taken in one call, small enough for L2.
READ_SIZE: Final = 65536


class Signal:
    """What ``signal=`` may be: anything with ``is_set()`` (a ``threading.Event``)."""

    def is_set(self) -> bool:  # pragma: no cover - protocol documentation only
        raise NotImplementedError


SignalLike = Any  # threading.Event or an object with is_set()


@dataclass(frozen=True)
class Timeout:
    """Timeouts for one request, in seconds; None means no limit.

    Args:
        connect: Connecting, TLS handshake and proxy tunnel included.
        read: The longest silence between two received bytes.
        idle: The longest wait between two *data* events of a stream; comments such as
            keep-alives do not reset it, so a stalled generation behind a chatty proxy
            still ends.
        total: A wall-clock deadline from the call until the stream has been read to
            its end, retries and backoff included.

    A plain number given where a ``Timeout`` is accepted sets ``connect`` and ``read``.
    """

    connect: Optional[float] = 60.0
    read: Optional[float] = 60.0
    idle: Optional[float] = None
    total: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("connect", "read", "idle", "total"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Timeout {name} must be a number or None, got {value!r}")
            if not value > 0:
                raise ValueError(f"Timeout {name} must be positive, got {value!r}")

    @classmethod
    def coerce(cls, value: Union[Timeout, float, int, None], name: str = "timeout") -> Timeout:
        """Turn a user's ``timeout=`` argument into a ``Timeout``."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(connect=None, read=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number or alltoken.Timeout, got {value!r}")
        return cls(connect=float(value), read=float(value))


class Deadlines:
    """The clocks of one request: what each wait may last, and the abort signal.

    The stream layer moves ``idle_deadline`` forward at every data event.
    """

    __slots__ = ("idle_deadline", "last_byte", "signal", "timeout", "total_deadline")

    def __init__(self, timeout: Timeout, signal: SignalLike = None) -> None:
        self.timeout = timeout
        self.signal = signal
        now = time.monotonic()
        self.total_deadline = None if timeout.total is None else now + timeout.total
        self.idle_deadline: Optional[float] = None
        self.last_byte = now

    def check_abort(self) -> None:
        if self.signal is not None and self.signal.is_set():
            raise AbortedError("the request was aborted by its signal")

    def remaining_total(self) -> Optional[float]:
        if self.total_deadline is None:
            return None
        return self.total_deadline - time.monotonic()

    def wait_limit(self, phase_timeout: Optional[float], since: float) -> tuple[float | None, str]:
        """The longest the next wait may last, and what runs out when it does."""
        now = time.monotonic()
        limit: Optional[float] = None
        what = ""
        if phase_timeout is not None:
            limit, what = since + phase_timeout - now, "read"
        if self.idle_deadline is not None and (limit is None or self.idle_deadline - now < limit):
            limit, what = self.idle_deadline - now, "idle"
        if self.total_deadline is not None and (
            limit is None or self.total_deadline - now < limit
        ):
            limit, what = self.total_deadline - now, "total"
        return limit, what

    def timeout_error(self, what: str) -> APITimeoutError:
        t = self.timeout
        if what == "idle":
            msg = f"no data event for {t.idle:g} s (idle timeout)"
        elif what == "total":
            # Past the deadline there is no time left to retry in.
            return APITimeoutError(
                f"the request did not finish within {t.total:g} s (total timeout)",
                retryable=False)
        elif what == "connect":
            msg = f"connecting took longer than {t.connect:g} s (connect timeout)"
        else:
            msg = f"no byte received for {t.read:g} s (read timeout)"
        return APITimeoutError(msg)

    def wait(self, seconds: float) -> None:
        """Sleep *seconds* (a retry backoff), waking at once if the signal is set."""
        if self.signal is not None:
            waiter = getattr(self.signal, "wait", None)
            if callable(waiter):
                if waiter(seconds):
                    self.check_abort()
                return
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                self.check_abort()
                time.sleep(min(left, ABORT_POLL))
            self.check_abort()
            return
        time.sleep(seconds)


def _wait_socket(sock: socket.socket, write: bool, dl: Deadlines, budget: Optional[float],
                 since: float, what: str) -> None:
    """Block until *sock* is readable (or writable), honouring deadlines and abort."""
    while True:
        dl.check_abort()
        limit, cause = dl.wait_limit(budget, since)
        if budget is not None and cause == "read":
            cause = what
        if limit is not None and limit <= 0:
            raise dl.timeout_error(cause)
        slice_ = limit
        if dl.signal is not None and (slice_ is None or slice_ > ABORT_POLL):
            slice_ = ABORT_POLL
        if write:
            _, ready, _ = select.select([], [sock], [sock], slice_)
        else:
            ready, _, _ = select.select([sock], [], [sock], slice_)
        if ready:
            return


class _SocketReader(io.RawIOBase):
    """A raw, deadline- and abort-aware reader over a connected socket.

    ``http.client`` reads the response through a ``BufferedReader`` over this object;
    each ``readinto`` is at most one successful ``recv_into``.
    """

    def __init__(self, sock: socket.socket, dl: Deadlines) -> None:
        super().__init__()
        self._sock = sock
        self.deadlines = dl

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._sock
        dl = self.deadlines
        read = dl.timeout.read
        watch = dl.signal is not None
        while True:
            if watch and dl.signal.is_set():
                raise AbortedError("the request was aborted by its signal")
            limit, what = dl.wait_limit(read, dl.last_byte)
            if limit is not None and limit <= 0:
                raise dl.timeout_error(what)
            if watch and (limit is None or limit > ABORT_POLL):
                limit = ABORT_POLL
                what = ""
            sock.settimeout(limit)
            try:
                n = sock.recv_into(buffer)
            except socket.timeout:
                if what:
                    raise dl.timeout_error(what) from None
                continue
            except InterruptedError:  # pragma: no cover - PEP 475 retries these already
                continue
            except OSError:
                # An abort shuts nothing down, but a set signal explains any failure.
                if watch and dl.signal.is_set():
                    raise AbortedError("the request was aborted by its signal") from None
                raise
            dl.last_byte = time.monotonic()
            return n

    def close(self) -> None:
        # The socket belongs to the connection, which may be reused: leave it open.
        super().close()


class _Response(http.client.HTTPResponse):
    """An ``HTTPResponse`` reading through :class:`_SocketReader`."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: Optional[str] = None,
                 url: Optional[str] = None, *, deadlines: Deadlines) -> None:
        super().__init__(sock, debuglevel, method, url)
        # We read through our own reader, but keep the file http.client made (unread):
        # when a response will close the connection, http.client closes its socket at
        # once and relies on this file to keep it open until the response is closed.
        self._sockfile: Optional[io.IOBase] = self.fp
        self.fp = io.BufferedReader(_SocketReader(sock, deadlines), READ_SIZE)

    def _close_conn(self) -> None:
        try:
            super()._close_conn()  # type: ignore[misc]
        finally:
            f, self._sockfile = self._sockfile, None
            if f is not None:
                f.close()


class Proxy(NamedTuple):
    """An HTTP proxy: ``http://[user:pass@]host:port``.

    (Named tuples, this and :class:`Endpoint`: immutable and hashable, as the pool's
    keys need, at a fraction of a frozen dataclass's import-time cost.)
    """

    host: str
    port: int
    authorization: Optional[str] = None

    def __repr__(self) -> str:
        auth = ", with credentials" if self.authorization else ""
        return f"Proxy({self.host}:{self.port}{auth})"

    @classmethod
    def parse(cls, url: str) -> Proxy:
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", ""):
            raise ValueError(f"only http:// proxies are supported, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("proxy URL has no host")
        check_header("proxy", url)
        auth = None
        if parts.username is not None:
            import base64
            from urllib.parse import unquote

            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, parts.port or 8080, auth)


def _env(name: str) -> str:
    return os.environ.get(name.lower()) or os.environ.get(name.upper()) or ""


def _bypass(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY (comma-separated hosts, domains, ``*``, optional ports) matches."""
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", "").split(","):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if want_port and want_port != str(port):
            continue
        name = name.lower().lstrip(".").strip("[]")
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(scheme: str, host: str, port: int, explicit: Union[str, Proxy, bool, None]
              ) -> Optional[Proxy]:
    """The proxy to use: *explicit* (a URL, or False for none), else the environment's
    ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` matches."""
    if explicit is False:
        return None
    if isinstance(explicit, Proxy):
        return explicit
    if isinstance(explicit, str) and explicit:
        return Proxy.parse(explicit)
    url = _env(f"{scheme}_proxy") or _env("all_proxy")
    if not url or _bypass(host, port, _env("no_proxy")):
        return None
    return Proxy.parse(url)


def check_header(name: str, value: str) -> None:
    """Reject a header name or value that could inject into the request.

    ``http.client`` lets ``"\\r\\n "`` (obsolete line folding) through; we allow no CR,
    LF or NUL at all.
    """
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{name} must not contain CR, LF or NUL characters")


class Endpoint(NamedTuple):
    """Where requests go: scheme, host, port, path prefix, and TLS and proxy settings."""

    scheme: str
    host: str
    port: int
    prefix: str
    proxy: Optional[Proxy]
    ssl_context: Any = None

    @property
    def origin(self) -> tuple[str, str, int, Optional[Proxy]]:
        return (self.scheme, self.host, self.port, self.proxy)


class _Connection(http.client.HTTPConnection):
    """An ``HTTPConnection`` whose connect, handshake and reads honour :class:`Deadlines`."""

    deadlines: Deadlines
    idle_since: float = 0.0
    _last_response: Optional[_Response] = None
    _handing_over = False

    def __init__(self, ep: Endpoint, dl: Deadlines) -> None:
        self.endpoint = ep
        self.deadlines = dl
        if ep.proxy is not None:
            super().__init__(ep.proxy.host, ep.proxy.port, timeout=dl.timeout.connect)
            if ep.scheme == "https":
                headers = {}
                if ep.proxy.authorization:
                    headers["Proxy-Authorization"] = ep.proxy.authorization
                self.set_tunnel(ep.host, ep.port, headers)
        else:
            super().__init__(ep.host, ep.port, timeout=dl.timeout.connect)
        self.response_class = self._make_response  # type: ignore[assignment]
        self._create_connection = self._connect_socket

    def _make_response(self, sock: socket.socket, debuglevel: int = 0,
                       method: Optional[str] = None, url: Optional[str] = None) -> _Response:
        resp = self._last_response = _Response(sock, debuglevel, method, url,
                                               deadlines=self.deadlines)
        return resp

    def getresponse(self) -> http.client.HTTPResponse:
        self._handing_over = True
        try:
            return super().getresponse()
        finally:
            self._handing_over = False

    def close(self) -> None:
        """Close the socket, and the last response: http.client forgets a response that
        will close the connection (it calls this method to hand the socket over to it),
        and such a response holds the socket open."""
        try:
            super().close()
        finally:
            if not self._handing_over:
                resp, self._last_response = self._last_response, None
                if resp is not None:
                    resp.close()

    def _connect_socket(self, address: tuple[str, int], timeout: Any = None,
                        source_address: Any = None) -> socket.socket:
        dl = self.deadlines
        dl.check_abort()
        host, port = address
        started = time.monotonic()
        # An ASCII host goes as bytes: for a str, getaddrinfo runs the "idna" codec, and
        # importing it (with unicodedata and stringprep) is a tenth of a cold start.
        infos = socket.getaddrinfo(host.encode() if host.isascii() else host, port, 0,
                                   socket.SOCK_STREAM)
        dl.check_abort()
        error: Optional[BaseException] = None
        for family, type_, proto, _, sockaddr in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                rc = sock.connect_ex(sockaddr)
                if rc not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                    raise OSError(rc, os.strerror(rc))
                if rc != 0:
                    _wait_socket(sock, True, dl, dl.timeout.connect, started, "connect")
                    rc = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if rc:
                        raise OSError(rc, os.strerror(rc))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(dl.timeout.connect)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise error if error else OSError("getaddrinfo returned no address")

    def connect(self) -> None:
        super().connect()
        if self.endpoint.scheme == "https":
            self._start_tls()

    def _start_tls(self) -> None:
        import ssl

        dl = self.deadlines
        ctx = self.endpoint.ssl_context
        sock = ctx.wrap_socket(self.sock, server_hostname=self.endpoint.host,
                               do_handshake_on_connect=False)
        self.sock = sock
        started = time.monotonic()
        sock.setblocking(False)
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                _wait_socket(sock, False, dl, dl.timeout.connect, started, "connect")
            except ssl.SSLWantWriteError:
                _wait_socket(sock, True, dl, dl.timeout.connect, started, "connect")
        sock.settimeout(dl.timeout.connect)

    def send(self, data: Any) -> None:
        # Sending is bounded by the connect timeout and stops on abort between writes.
        self.deadlines.check_abort()
        if self.sock is not None:
            self.sock.settimeout(self.deadlines.timeout.connect)
        super().send(data)


class Pool:
    """Idle keep-alive connections by origin. Thread-safe."""

    def __init__(self) -> None:
        self._idle: dict[tuple[Any, ...], list[_Connection]] = {}
        self._lock = _thread.allocate_lock()  # threading is not imported for one lock
        self._closed = False

    def get(self, ep: Endpoint, dl: Deadlines) -> tuple[_Connection, bool]:
        """A connection to *ep*: an idle one (``True``) or a new, unconnected one."""
        now = time.monotonic()
        with self._lock:
            conns = self._idle.get(ep.origin)
            while conns:
                conn = conns.pop()
                if now - conn.idle_since < POOL_IDLE_SECONDS and not _peer_closed(conn):
                    conn.deadlines = dl
                    return conn, True
                conn.close()
        return _Connection(ep, dl), False

    def put(self, conn: _Connection) -> None:
        """Keep *conn* for reuse (its response was read to the end)."""
        conn.idle_since = time.monotonic()
        with self._lock:
            if self._closed:
                conn.close()
                return
            conns = self._idle.setdefault(conn.endpoint.origin, [])
            conns.append(conn)
            while len(conns) > POOL_MAX_PER_ORIGIN:
                conns.pop(0).close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def __del__(self) -> None:
        # A client dropped without close() must not leak its idle sockets.
        for conns in getattr(self, "_idle", {}).values():
            for conn in conns:
                conn.close()

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return sum(map(len, self._idle.values()))


def _peer_closed(conn: _Connection) -> bool:
    """Whether an idle connection is unusable: closed by the peer, or holding bytes no
    request asked for."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        if conn.endpoint.scheme != "https":
            return True  # EOF or stray bytes: either way not reusable
        # TLS 1.3 servers send session tickets after the handshake, which make an idle
        # socket readable; reading them yields no application data.
        import ssl

        sock.setblocking(False)
        try:
            sock.recv(1)
        except ssl.SSLWantReadError:
            return False
        return True
    except (OSError, ValueError):
        return True


_PHASE_HINT: Final = {
    "connect": "could not connect",
    "send": "could not send the request",
    "response": "no response",
    "stream": "the connection failed while streaming",
}


@contextlib.contextmanager
def translate(phase: str, dl: Optional[Deadlines] = None,
              request_id: Optional[str] = None) -> Iterator[None]:
    """Map network and ``http.client`` failures in the block to alltoken errors.

    ``AllTokenError`` passes through unchanged. A failure while the abort signal is set
    becomes ``AbortedError`` (closing the socket is how some failures arise).
    """
    try:
        yield
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise map_exception(exc, phase, dl, request_id) from exc


def map_exception(exc: BaseException, phase: str, dl: Optional[Deadlines] = None,
                  request_id: Optional[str] = None) -> AllTokenError:
    """The alltoken error for a network or framing failure *exc* during *phase*."""
    if dl is not None and dl.signal is not None and dl.signal.is_set():
        return AbortedError("the request was aborted by its signal", request_id=request_id)
    return _network_error(phase, exc, request_id)


def _network_error(phase: str, exc: BaseException, request_id: Optional[str]) -> AllTokenError:
    hint = _PHASE_HINT.get(phase, phase)
    if isinstance(exc, socket.timeout):
        return APITimeoutError(f"{hint}: timed out", request_id=request_id)
    ssl_mod = sys.modules.get("ssl")
    if ssl_mod is not None and isinstance(exc, ssl_mod.SSLCertVerificationError):
        return APIConnectionError(
            f"{hint}: TLS certificate verification failed: {exc.verify_message}",
            request_id=request_id, retryable=False)
    if ssl_mod is not None and isinstance(exc, ssl_mod.SSLError):
        return APIConnectionError(f"{hint}: TLS error: {exc}", request_id=request_id)
    if isinstance(exc, http.client.IncompleteRead):
        return APIConnectionError(
            f"{hint}: the response ended early ({len(exc.partial)} bytes of a chunk read"
            + (f", {exc.expected} more expected)" if exc.expected else ")"),
            request_id=request_id)
    if isinstance(exc, (http.client.LineTooLong,)):
        return ProtocolError(f"{hint}: {exc}", request_id=request_id)
    if isinstance(exc, http.client.RemoteDisconnected):
        # Also a BadStatusLine, but it is a network failure: often a pooled connection
        # the server had closed, or a server restarting. Retryable.
        return APIConnectionError(f"{hint}: the server closed the connection without a "
                                  "response", request_id=request_id)
    if isinstance(exc, http.client.BadStatusLine):
        return ProtocolError(f"{hint}: malformed HTTP status line {exc.args!r}"[:300],
                             request_id=request_id)
    if isinstance(exc, ValueError):
        return ProtocolError(f"{hint}: malformed HTTP framing: {exc}", request_id=request_id)
    if isinstance(exc, http.client.HTTPException):
        return APIConnectionError(f"{hint}: {type(exc).__name__}: {exc}", request_id=request_id)
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return APIConnectionError(f"{hint}: {type(exc).__name__}: {detail}", request_id=request_id)


Reader = Callable[[int], bytes]
