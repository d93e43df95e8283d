"""Invariant: whatever bytes a server answers with, the whole client (http.client framing,
status and error mapping, retries, redirects, gzip, the SSE decoder, chunk parsing and
accumulation) raises nothing but ``alltoken.AllTokenError``; ``text`` and ``reasoning``
are ``str`` and equal to the pieces handed out; a stream that ends without an error saw
``data: [DONE]``; and every socket the client was given is closed afterwards.

An input is a raw HTTP response followed by ONE control byte (the last byte): bit 0 set
makes a non-streamed request (``create()`` without ``stream=True``), bit 1 set passes an
(unset) abort ``signal``, which reads through the abort-polling path. The response is
written into one end of a ``socket.socketpair()``, that end is shut down for writing,
and the client reads the other end: the fuzz target replaces ``_Connection.connect`` so
each connection the client opens gets a fresh pair carrying the same response (a retry
or a redirect reads it again). One retry is allowed and backoff waits are skipped, so
the retry path is fuzzed without sleeping.

Run: ``bash fuzz/run.sh fuzz/fuzz_client.py``, or in a venv with atheris
``python fuzz/fuzz_client.py -max_total_time=60 fuzz/corpus/client fuzz/seeds/client``.
To make a seed from a response ``r`` for a streamed request: ``r + b"\\x00"``.

Seeds (``fuzz/seeds/client/``): a chunked stream with reasoning, content, ``[DONE]`` and
the cost comment (also with the abort signal), the same gzip-encoded, a Content-Length
JSON error, a 429 with ``Retry-After: 0``, a truncated chunk, a bad chunk size, a
close-delimited stream, no response at all, a non-streamed completion, a redirect loop,
and the minimal inputs of defects this target found, now fixed:
``redirect_location_*.bin`` (a 307/308 with an unusable ``Location`` made ``create()``
raise ``ValueError``) and ``close_delimited_429_left_open.bin`` (a close-delimited error
response left its socket open until garbage collection).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from typing import Any

try:
    import atheris
except ImportError:  # pragma: no cover - linting and importing without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["alltoken", "http.client"]):
        import http.client  # noqa: F401  (instrumented: the response framing is fuzzed)

        import alltoken
        from alltoken import _transport
else:  # pragma: no cover
    import alltoken
    from alltoken import _transport

#: More than a socketpair's buffer would block the single-threaded writer.
MAX_RESPONSE = 100_000
MESSAGES = [{"role": "user", "content": "hi"}]

_response = b""
_opened: list[socket.socket] = []
_peers: list[socket.socket] = []


def _connect(self: Any) -> None:
    """Stands in for ``_Connection.connect``: a socket whose peer has sent *_response*."""
    ours, theirs = socket.socketpair()
    _opened.append(ours)
    _peers.append(theirs)  # kept open until the input is done: the client's request fits
    theirs.sendall(_response)
    theirs.shutdown(socket.SHUT_WR)  # the client reads the response, then end of file
    self.sock = ours


def _no_wait(self: Any, seconds: float) -> None:
    self.check_abort()


# Retries log a warning, which would reach logging's last-resort handler on every retry.
logging.getLogger("alltoken").setLevel(logging.ERROR)
_transport._Connection.connect = _connect  # type: ignore[method-assign]
_transport.Deadlines.wait = _no_wait  # type: ignore[method-assign]


def test_one_input(data: bytes) -> None:
    global _response
    if not data:
        return
    control = data[-1]
    _response = data[:-1][:MAX_RESPONSE]
    del _opened[:]
    signal = threading.Event() if control & 2 else None
    client = alltoken.AllToken(api_key="sk-fuzz", base_url="http://fuzz.invalid/v1",
                               timeout=alltoken.Timeout(connect=2.0, read=2.0),
                               max_retries=1, proxy=False)
    try:
        if control & 1:
            complete(client, signal)
        else:
            stream_(client, signal)
    finally:
        client.close()
        for peer in _peers:
            peer.close()
        del _peers[:]
    leaked = [s for s in _opened if s.fileno() != -1]
    assert not leaked, f"{len(leaked)} of {len(_opened)} sockets left open"


def complete(client: alltoken.AllToken, signal: Any) -> None:
    try:
        answer = client.chat.completions.create(model="m", messages=MESSAGES, signal=signal)
    except alltoken.AllTokenError:
        return
    for choice in answer.choices:
        content = choice.message.content
        assert content is None or type(content) is str, repr(content)


def stream_(client: alltoken.AllToken, signal: Any) -> None:
    pieces: list[str] = []
    reasoning: list[str] = []
    stream = None
    failed = False
    try:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                                signal=signal)
        with stream:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.index == 0:
                        pieces.append(choice.delta.content or "")
                        reasoning.append(choice.delta.reasoning_content or "")
    except alltoken.AllTokenError:
        failed = True
    if stream is None:
        return
    text = stream.text
    assert type(text) is str, repr(text)
    assert type(stream.reasoning) is str, repr(stream.reasoning)
    assert text == "".join(pieces), (text, pieces)
    assert stream.reasoning == "".join(reasoning), (stream.reasoning, reasoning)
    if not failed:
        assert stream.done, "a stream ended without an error but without data: [DONE]"
    stream.close()


def main() -> None:
    if atheris is None:
        sys.exit("fuzz_client.py needs atheris: pip install -e '.[fuzz]' (or bash fuzz/run.sh)")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
