"""a proxy that accepts the TCP connection and never answers ``CONNECT``.

DESIGN.md, Timeouts: ``connect`` bounds connecting; ``_Connection.connect`` says "One
connect clock for TCP, the proxy's tunnel and TLS". But http.client's ``_tunnel()`` reads
the proxy's answer through ``response_class`` -- our ``_Response`` and its
``_SocketReader`` -- whose waits are ``"read"`` waits: the tunnel is bounded by ``read``
(restarted at every byte), not by the connect clock, and the error says "read timeout".
With the usual ``Timeout(connect=small, read=large)`` a dead proxy hangs for ``read``.
FAILS on main at ff87555.
"""

from __future__ import annotations

import socket
import threading
import time

import alltoken


def test_a_silent_proxy_tunnel_is_bounded_by_the_connect_timeout() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(lsock.accept()[0])
            except OSError:
                return

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    client = alltoken.AllToken(
        api_key="k", base_url="https://api.example.invalid/v1",
        proxy=f"http://127.0.0.1:{lsock.getsockname()[1]}", max_retries=0,
        timeout=alltoken.Timeout(connect=0.5, read=6))
    t0 = time.monotonic()
    try:
        try:
            client.chat.completions.create(model="m", messages=[{"role": "user",
                                           "content": "x"}], stream=True)
        except alltoken.APITimeoutError as exc:
            err = exc
        took = time.monotonic() - t0
        assert took < 3, f"the dead proxy held the request {took:.1f} s: {err}"
        assert "connect" in str(err)
    finally:
        lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        lsock.close()
        for s in held:
            s.close()
        th.join(5)
        client.close()
