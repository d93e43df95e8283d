"""an abort of a TLS request, landing at an unlucky instant.

``Deadlines.interrupt`` runs in the *setting* thread and calls ``sock.shutdown()`` on
the request's socket. For TLS that socket is an ``ssl.SSLSocket``, whose ``shutdown``
first sets ``self._sslobj = None`` -- mutating the object the reading thread is using.
A reader that is between two steps then calls a method on ``None``: the caller gets a
raw ``AttributeError`` from ``create()`` (handshake) or from the iteration (mid-body)
instead of ``AbortedError``.

The race is made deterministic here: a trace function calls ``Event.set()`` exactly at
the instant between the reader's check and its use (what another thread's ``set()``
does when the GIL is handed over there). FAILS on main at ff87555.
"""

from __future__ import annotations

import shutil
import ssl
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

import alltoken
from alltoken import _transport
from alltoken import testing as t

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _line_of(path: str, func: str, text: str) -> int:
    src = Path(path).read_text().splitlines()
    start = next(i for i, line in enumerate(src) if line.strip().startswith(f"def {func}("))
    return next(i for i in range(start, len(src)) if text in src[i]) + 1


def _set_at(path: str, func: str, text: str, action: Callable[[], None],
            armed: list[bool]) -> tuple[Callable[..., Any], list[int]]:
    """A trace function that runs *action* once, right before line *text* of *func*."""
    line = _line_of(path, func, text)
    fired: list[int] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_name == func and frame.f_code.co_filename == path:
            def local(frame: Any, event: str, arg: Any) -> Any:
                if event == "line" and armed[0] and not fired and frame.f_lineno == line:
                    fired.append(1)
                    action()
                return local
            return local
        return None

    return tracer, fired


def _client(srv: t.LocalServer, certs: Path) -> alltoken.AllToken:
    return alltoken.AllToken(api_key="k", base_url=srv.base_url,
                             ca_file=str(certs / "ca.pem"), max_retries=0, timeout=5)


def test_an_abort_at_the_handshake_raises_aborted_not_attribute_error(
        https_server: t.LocalServer, certs: Path) -> None:
    https_server.enqueue(t.StreamReply([t.content("a"), t.done()]))
    ev = threading.Event()
    tracer, fired = _set_at(_transport.__file__, "_start_tls", "sock.do_handshake()",
                            ev.set, [True])
    with _client(https_server, certs) as client:
        sys.settrace(tracer)
        try:
            with pytest.raises(alltoken.AbortedError):
                client.chat.completions.create(model="m", messages=[{"role": "user",
                                               "content": "x"}], stream=True, signal=ev)
        finally:
            sys.settrace(None)
    assert fired


def test_an_abort_mid_body_over_tls_raises_aborted_not_attribute_error(
        https_server: t.LocalServer, certs: Path) -> None:
    https_server.enqueue(t.StreamReply([t.content("a"), t.sleep(0.2)]
                                       + [t.content("b")] * 20 + [t.done()]))
    ev = threading.Event()
    armed = [False]
    tracer, fired = _set_at(ssl.__file__, "read", "return self._sslobj.read(len, buffer)",
                            ev.set, armed)
    with _client(https_server, certs) as client:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True, signal=ev)
        it = iter(stream)
        next(it)
        armed[0] = True
        sys.settrace(tracer)
        try:
            with pytest.raises(alltoken.AbortedError):
                for _ in it:
                    pass
        finally:
            sys.settrace(None)
            stream.close()
    assert fired
