"""The benchmark server: a raw HTTP/1.1 server over loopback, chunked encoding, in its own
process, one behaviour per path. Standard library only.

    python3 benchmarks/server.py PORT_FILE [CERT KEY]   # serve until killed (Server
                                                        # starts it)

Every client of the suite gets the same bytes. A client's base URL is
``http://127.0.0.1:PORT/MODE`` and it POSTs to ``/MODE/chat/completions`` (the path
``openai`` and ``alltoken`` append to a base URL); the request body is read and ignored.
Given a certificate and its key (PEM files), the server also serves every path over TLS
on a second port (``https://127.0.0.1:TLS_PORT/MODE``), from the same process.

- ``/stream``: the chat corpus of ``corpus.py`` (3,000 delta chunks, usage, ``[DONE]``,
  the cost comment), cut into 1460-byte HTTP chunks, sent at full speed.
- ``/nN`` (e.g. ``/n200000``): the same generator with N delta chunks (built on first
  use, then kept).
- ``/short``: the corpus with 5 chunks (cold start).
- ``/ttft``: headers, then :data:`TTFT_GAP` seconds of silence (the client is now blocked
  in a read), then one event whose ``id`` is the server's ``time.monotonic_ns()`` taken
  just before the write, then a pause of :data:`TTFT_PAUSE` seconds: a client that
  needs more bytes than the event itself to yield it waits that long. If the client is
  still there after the pause, ``[DONE]`` and the end of the body follow.
- ``/silent-K``: headers, then nothing until the client closes the connection (at most
  :data:`SILENT_MAX` seconds); the moment of the close (``monotonic_ns``) is kept under
  the key K.
- ``/closed-K``: ``{"closed_ns": NS or null}`` for ``/silent-K`` (a plain JSON reply):
  whether, and when, the server saw the client close that connection.

Times that cross processes use CLOCK_MONOTONIC (``time.monotonic_ns``), which all
processes on Linux share.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

#: Silence between the headers and the TTFT event (the client is then waiting in a read,
#: as it is while a model thinks).
TTFT_GAP = 0.02
#: Silence after the TTFT event.
TTFT_PAUSE = 1.0
#: How long ``/silent`` waits for the client to hang up.
SILENT_MAX = 10.0
#: Bytes per ``sendall`` of a prepared body (each holds many 1460-byte HTTP chunks).
SEND = 65536

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\nx-request-id: bench\r\n\r\n")


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_bodies: dict[int, bytes] = {}
_bodies_lock = threading.Lock()


def chat_body(n: int) -> bytes:
    """The chunked-encoded wire body of ``corpus.chat_stream(n)``, in 1460-byte chunks."""
    with _bodies_lock:
        body = _bodies.get(n)
        if body is None:
            pieces = corpus.chunked(corpus.chat_stream(n))
            body = _bodies[n] = b"".join([http_chunk(p) for p in pieces]) + b"0\r\n\r\n"
        return body


def ttft_event(t_ns: int) -> bytes:
    return (b'data: {"id":"%d","object":"chat.completion.chunk","created":1732000000,'
            b'"model":"m","choices":[{"index":0,"delta":{"content":"x"},'
            b'"finish_reason":null}]}\n\n' % t_ns)


_closed: dict[str, Optional[int]] = {}


def _handle(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = conn.makefile("rb")
    with conn, f:
        while True:
            line = f.readline()
            if not line:
                return
            path = line.split()[1].decode()
            length = 0
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":")[1])
            f.read(length)
            mode = path.lstrip("/").split("/")[0]
            if mode.startswith("closed-"):
                reply = json.dumps({"closed_ns": _closed.get(mode[7:])}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply))
                continue
            if mode == "stream" or mode == "short" or mode[:1] == "n":
                n = 3000 if mode == "stream" else 5 if mode == "short" else int(mode[1:])
                body = memoryview(HEAD + chat_body(n))
                for i in range(0, len(body), SEND):
                    conn.sendall(body[i : i + SEND])
                continue
            conn.sendall(HEAD)
            if mode == "ttft":
                time.sleep(TTFT_GAP)
                conn.sendall(http_chunk(ttft_event(time.monotonic_ns())))
                conn.settimeout(TTFT_PAUSE)
                try:
                    if not conn.recv(1):
                        return  # the client hung up after its first token
                except socket.timeout:
                    pass
                except OSError:
                    return
                conn.settimeout(None)
                conn.sendall(http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                continue
            if mode.startswith("silent-"):
                key = mode[7:]
                _closed[key] = None
                conn.settimeout(SILENT_MAX)
                try:
                    conn.recv(1)
                except OSError:
                    pass  # a reset is a close too; a timeout leaves closed_ns None
                else:
                    _closed[key] = time.monotonic_ns()
                return
            return


def _handle_tls(conn: socket.socket, ctx: ssl.SSLContext) -> None:
    """:func:`_handle` over TLS; the handshake is done here, in the connection's thread.
    A client that hangs up without a TLS close (the peers stop at ``[DONE]``) ends the
    connection quietly."""
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except OSError:
        conn.close()
        return
    try:
        _handle(tls)
    except OSError:
        pass


def _accept(listener: socket.socket, ctx: Optional[ssl.SSLContext]) -> None:
    while True:
        conn, _ = listener.accept()
        target, args = (_handle, (conn,)) if ctx is None else (_handle_tls, (conn, ctx))
        threading.Thread(target=target, args=args, daemon=True).start()


def serve(port_file: str, cert: Optional[str] = None, key: Optional[str] = None) -> None:
    """Serve until killed; write the port (and, with *cert* and *key*, the TLS port after
    a space) to *port_file*."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    ports = str(listener.getsockname()[1])
    if cert is not None and key is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        tls_listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        ports += f" {tls_listener.getsockname()[1]}"
        threading.Thread(target=_accept, args=(tls_listener, ctx), daemon=True).start()
    Path(port_file).write_text(ports)
    _accept(listener, None)


class Server:
    """The server in a child process (``python server.py PORT_FILE [CERT KEY]``); with
    *tls* (certificate and key files), also over TLS on :attr:`tls_port`."""

    def __init__(self, python: str = sys.executable, prepare: tuple[int, ...] = (),
                 tls: Optional[tuple[str, str]] = None) -> None:
        port_file = HERE / "results" / f".port-{id(self)}"
        port_file.parent.mkdir(exist_ok=True)
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), str(port_file),
                                      *(tls or ())])
        for _ in range(1000):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.01)
        else:
            self.close()
            raise RuntimeError("the benchmark server did not start")
        ports = [int(p) for p in port_file.read_text().split()]
        port_file.unlink(missing_ok=True)
        self.port = ports[0]
        #: the port of the same paths over TLS, or None without *tls*
        self.tls_port: Optional[int] = ports[1] if len(ports) > 1 else None
        for n in prepare:  # build the long bodies now, not during a measurement
            self.fetch(f"n{n}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_base(self) -> Optional[str]:
        """The base URL over TLS, or None when the server was started without *tls*."""
        return None if self.tls_port is None else f"https://127.0.0.1:{self.tls_port}"

    def url(self, mode: str) -> str:
        """The base URL of *mode* (clients append ``/chat/completions``)."""
        return f"{self.base}/{mode}"

    def fetch(self, mode: str) -> bytes:
        """The decoded body of ``POST /MODE/chat/completions`` (http.client)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", f"/{mode}/chat/completions", b"{}")
            return conn.getresponse().read()
        finally:
            conn.close()

    def closed_ns(self, key: str) -> Optional[int]:
        """When the server saw ``/silent-KEY``'s connection closed, or None."""
        value: Optional[int] = json.loads(self.fetch(f"closed-{key}"))["closed_ns"]
        return value

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    serve(*sys.argv[1:4])
