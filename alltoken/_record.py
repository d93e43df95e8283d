"""The recording proxy behind ``alltoken chat --record FILE``: responses saved as they
were received on the wire.

Layer 4, standard library only. It uses :mod:`alltoken.testing` for the recording
itself (:class:`~alltoken.testing.Recording`, which :class:`~alltoken.testing.ReplayReply`
sends back) and shares no code with the client: a recording shows what the server
sent, not what the client made of it.

How a response is recorded. :class:`Recorder` is a small HTTP/1.1 forwarding proxy on
127.0.0.1, run in threads for one command. The command line points its client at the
recorder's ``base_url`` (the real base URL's path on a loopback port); the recorder
sends each request on to the real server (``http://`` or ``https://`` with certificate
verification, through ``http.client``), passes the response back piece by piece as it
arrives, and keeps the status, the headers and every piece of the body with the time
it arrived. The client is unchanged and knows nothing of it; its timeouts and abort
work as without recording (an abort closes the upstream request too, at
:meth:`Recorder.close`). **Not** supported: an ``HTTPS_PROXY``/``HTTP_PROXY`` between
the recorder and the server (the recorder connects directly).

Secrets. The key passes through the recorder (it must reach the server) and is never
written: request headers are not recorded at all; response headers named
``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie`` or
``Set-Cookie2``, or whose name contains ``key``, ``token`` or ``secret``, are left out
(their names are listed under ``"redacted"``), and so is any header whose value contains
a credential the request carried (the bearer token, the value of a request header named
as above). Should such a credential appear in the body (an error message that quotes
the key), it is replaced by ``<redacted>`` — the one case where the body is not kept
byte for byte, also listed under ``"redacted"`` (as ``"body"``). The request body is
recorded (``"request"``), with the same replacement: it says which question the
answer is to.

The file format is described in :mod:`alltoken.testing` ("Recordings"), which reads
it (:class:`alltoken.testing.Recording`); this module writes it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Final, Optional
from urllib.parse import urlsplit

from .testing import Piece, Recording

__all__ = ["Recorder"]

_REDACTED: Final = b"<redacted>"
#: Response headers never written, whatever their value.
_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie",
                                    "set-cookie", "set-cookie2"})
_SECRET_WORDS: Final = ("key", "token", "secret")
#: Hop-by-hop headers (RFC 9110 7.6.1): about one connection, never forwarded.
_HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "proxy-connection", "te",
                                "trailer", "transfer-encoding", "upgrade",
                                "proxy-authenticate", "proxy-authorization"})
#: A credential shorter than this is not searched for in bodies: replacing every "ab"
#: would garble the recording and protect nothing.
_MIN_SECRET: Final = 8
_READ_SIZE: Final = 65536
#: How long :meth:`Recorder.close` waits for its threads; only one still connecting
#: to the server takes more than milliseconds.
_CLOSE_WAIT: Final = 2.0


def _is_secret_header(name: str) -> bool:
    lower = name.lower()
    return lower in _SECRET_HEADERS or any(w in lower for w in _SECRET_WORDS)


# -- secrets -------------------------------------------------------------------------


def _credentials(headers: Iterable[tuple[str, str]]) -> set[bytes]:
    """The credentials a request carries: the whole value and the token of
    ``Authorization``-like headers, and the values of headers named like a secret."""
    found: set[bytes] = set()
    for name, value in headers:
        if not _is_secret_header(name):
            continue
        candidates = [value.strip()]
        scheme, _, token = value.strip().partition(" ")
        if token:
            candidates.append(token.strip())
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                decoded = base64.b64decode(token.strip(), validate=True).decode("latin-1")
                candidates += [decoded, decoded.partition(":")[2]]
        for c in candidates:
            if len(c) >= _MIN_SECRET:
                found.add(c.encode("latin-1", "replace"))
    return found


def _scrub(pieces: list[Piece], secrets: set[bytes]) -> tuple[list[Piece], bool]:
    """*pieces* with every secret replaced; pieces a secret straddles are merged first.
    Returns the pieces and whether anything was replaced."""
    body = b"".join(p.data for p in pieces)
    spans = []
    for secret in secrets:
        start = body.find(secret)
        while start >= 0:
            spans.append((start, start + len(secret)))
            start = body.find(secret, start + 1)
    if not spans:
        return pieces, False
    merged: list[Piece] = []
    offset = 0
    for piece in pieces:
        start, offset = offset, offset + len(piece.data)
        # Join this piece to the previous one when a secret spans their boundary.
        if merged and any(a < start < b for a, b in spans):
            last = merged.pop()
            piece = Piece(piece.t, last.data + piece.data)
        merged.append(piece)
    out = []
    for piece in merged:
        data = piece.data
        for secret in sorted(secrets, key=len, reverse=True):
            data = data.replace(secret, _REDACTED)
        out.append(Piece(piece.t, data))
    return out, True


def _scrub_text(text: str, secrets: set[bytes]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret.decode("latin-1"), _REDACTED.decode())
    return text


# -- the recording proxy ---------------------------------------------------------------


class _Exchange:
    """One request forwarded and its response, while it is recorded."""

    def __init__(self, secrets: set[bytes], request: dict[str, Any]) -> None:
        self.secrets = secrets
        self.request = request
        self.started = time.monotonic()
        self.recorded_at = datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        self.recording: Optional[Recording] = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def finish(self, complete: bool) -> Recording:
        rec = self.recording
        assert rec is not None
        rec.complete = complete
        rec.end_time = self.elapsed()
        return rec


class Recorder:
    """A recording forwarding proxy on 127.0.0.1 for one upstream base URL.

    Args:
        upstream: The real base URL (``http://`` or ``https://``).
        timeout: Seconds for connecting to the upstream server and for each read.
        ssl_context: For an ``https`` upstream (default: ``ssl.create_default_context()``,
            which verifies certificates).

    Attributes:
        recording: The last response recorded (None before one's headers arrived),
            credentials already removed.
        error: Why the last upstream request failed (None when it did not).
    """

    def __init__(self, upstream: str, *, timeout: Optional[float] = 60.0,
                 ssl_context: Any = None) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"cannot record from {upstream!r}: not an http(s) URL")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._ssl_context = ssl_context
        self.recording: Optional[Recording] = None
        self.error: Optional[str] = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._httpd: Optional[_ProxyServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def upstream_origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}"

    @property
    def base_url(self) -> str:
        """The URL to point the client at: the upstream's path on the local port."""
        if self._httpd is None:
            raise RuntimeError("the recorder is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.prefix}"

    def start(self) -> Recorder:
        """Listen on a free loopback port and serve in a thread.

        Raises:
            OSError: no port could be bound.
        """
        httpd = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="alltoken-recorder", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop; end every forwarded request still running (the upstream one too) and
        join the threads. The recording of a response cut off here is incomplete."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._closing.set()
        httpd.shutdown()
        with self._lock:
            socks = list(self._sockets)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        with self._lock:
            threads, self._threads = self._threads, []
        # A request still connecting to the server cannot be interrupted (http.client
        # has no socket to shut down before connect() returns): it is left to its
        # connect timeout in its daemon thread rather than waited for.
        deadline = time.monotonic() + _CLOSE_WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dumps(self) -> Optional[str]:
        """The last recording as file text, or None when nothing was recorded."""
        rec = self.recording
        return rec.dumps() if rec is not None else None

    # -- used by the handler --

    def _track(self, sock: Optional[socket.socket], add: bool) -> None:
        if sock is None:
            return
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)
        if add and self._closing.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            context = self._ssl_context
            if context is None:
                import ssl

                context = ssl.create_default_context()
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _store(self, exchange: _Exchange, complete: bool) -> None:
        rec = exchange.finish(complete)
        pieces, replaced = _scrub(rec.pieces, exchange.secrets)
        rec.pieces = pieces
        if replaced and "body" not in rec.redacted:
            rec.redacted.append("body")
        with self._lock:
            self.recording = rec


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: Recorder

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (socket.getfqdn()) that can
        # take seconds without a network; the name is never used.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address),
                                  name="alltoken-recorder-connection", daemon=True)
        with self.owner._lock:
            self.owner._threads = [t for t in self.owner._threads if t.is_alive()]
            self.owner._threads.append(thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Broken(Exception):
    """The client or the upstream connection broke: close the client's connection."""


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, False)

    def handle(self) -> None:
        try:
            super().handle()
        except (_Broken, OSError, http.client.HTTPException):
            self.close_connection = True

    def do_POST(self) -> None:
        self._forward()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size + 2)[:-2])
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        owner = self.server.owner
        body = self._read_body()
        headers = [(k, v) for k, v in self.headers.items()
                   if k.lower() not in _HOP_BY_HOP and k.lower() not in ("host",
                                                                          "content-length")]
        secrets = _credentials(self.headers.items())
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        path = urlsplit(self.path).path
        request = {"method": self.command, "url": owner.upstream_origin + path,
                   "json": parsed}
        if secrets:
            request = json.loads(_scrub_text(json.dumps(request), secrets))
        exchange = _Exchange(secrets, request)
        upstream = owner._connection()
        try:
            try:
                upstream.putrequest(self.command, self.path, skip_host=False,
                                    skip_accept_encoding=True)
                for name, value in headers:
                    upstream.putheader(name, value)
                if body or self.command in ("POST", "PUT", "PATCH"):
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders()
                owner._track(upstream.sock, True)
                if body:
                    upstream.send(body)
                resp = upstream.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                owner.error = _describe(exc, owner.upstream_origin)
                if _is_certificate_error(exc):
                    # Not retryable, as the client itself would treat it: an answer
                    # the client does not retry, rather than a hang-up it would.
                    self._refuse(owner.error)
                    return
                raise _Broken from exc
            owner.error = None
            self._relay(resp, exchange)
        finally:
            owner._track(upstream.sock, False)
            upstream.close()

    def _refuse(self, message: str) -> None:
        body = json.dumps({"error": {"message": message, "type": "recorder_error",
                                     "code": 495}}).encode()
        self.send_response_only(495, "SSL Certificate Error")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _relay(self, resp: http.client.HTTPResponse, exchange: _Exchange) -> None:
        owner = self.server.owner
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        if resp.chunked:
            framing = "chunked"
        elif resp.length is not None or no_body:
            framing = "length"
        else:
            framing = "close"
        kept: list[tuple[str, str]] = []
        redacted: list[str] = []
        secrets = exchange.secrets
        for name, value in resp.getheaders():
            if _is_secret_header(name) or any(s in value.encode("latin-1", "replace")
                                              for s in secrets):
                redacted.append(name)
            else:
                kept.append((name, value))
        exchange.recording = Recording(
            status=resp.status, reason=resp.reason or "", headers=kept, framing=framing,
            head_time=exchange.elapsed(), request=exchange.request, redacted=redacted,
            recorded_at=exchange.recorded_at, complete=False)
        owner._store(exchange, complete=False)  # the head alone, until the body ends
        self.send_response_only(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        if no_body:
            owner._store(exchange, complete=True)
            return
        chunked = framing == "chunked"
        complete = False
        try:
            while True:
                try:
                    piece = resp.read1(_READ_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    if not owner._closing.is_set():
                        owner.error = _describe(exc, owner.upstream_origin)
                    break
                if not piece:
                    complete = not owner._closing.is_set()
                    break
                exchange.recording.pieces.append(Piece(exchange.elapsed(), piece))
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked
                                     else piece)
                    self.wfile.flush()
                except OSError:
                    break  # the client went away (an abort): stop, the upstream too
        finally:
            # Stored before the client can see the end, so that a command that has read
            # the whole answer always finds its recording complete.
            owner._store(exchange, complete=complete)
        if not complete:
            raise _Broken
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        if framing == "close":
            self.close_connection = True


def _is_certificate_error(exc: BaseException) -> bool:
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLCertVerificationError)


def _describe(exc: BaseException, origin: str) -> str:
    if _is_certificate_error(exc):
        return f"{origin}: certificate verify failed: {getattr(exc, 'verify_message', '')}"
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return f"{origin}: {reason or type(exc).__name__}"

