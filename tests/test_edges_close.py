"""close() of a stream from a thread other than the one that last read it, while no
thread is reading it.

A stream often changes hands between threads: created and started in a request
handler, then kept in a session table and closed later by a cleanup task, a timeout
sweeper, or a server that runs each ``next()`` in a worker pool. DESIGN.md: ``close()``
releases the connection ("any other ending closes the socket"), and ``timings.end`` is
set once the stream was closed. Here nobody will ever call ``next()`` again, so
nothing but ``close()`` itself can release it.
"""

from __future__ import annotations

import threading

from conftest import assert_back_to, snapshot

import alltoken
from alltoken import testing as t


def _started_elsewhere(client: alltoken.AllToken) -> alltoken.Stream:
    """A stream created in another thread, which read one chunk and went away."""
    box: list[alltoken.Stream] = []

    def handler() -> None:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True)
        next(iter(stream))
        box.append(stream)

    th = threading.Thread(target=handler)
    th.start()
    th.join(10)
    return box[0]


def test_close_from_another_thread_releases_a_stream_no_thread_is_reading() -> None:
    gate = threading.Event()
    with t.LocalServer(pace=0) as srv:
        client = alltoken.AllToken(api_key="k", base_url=srv.base_url, timeout=5,
                                   max_retries=0)
        try:
            baseline = snapshot()
            srv.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.content("b"),
                                       t.done()]))
            stream = _started_elsewhere(client)
            stream.close()  # the cleanup task; the stream is still referenced
            assert_back_to(baseline)
            assert stream.timings.end is not None
            assert "closed" in repr(stream)
            assert stream.text == "a"
        finally:
            gate.set()
            client.close()


def test_closing_a_relay_from_another_thread_releases_its_upstream_connection() -> None:
    gate = threading.Event()
    with t.LocalServer(pace=0) as srv:
        client = alltoken.AllToken(api_key="k", base_url=srv.base_url, timeout=5,
                                   max_retries=0)
        try:
            baseline = snapshot()
            srv.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.content("b"),
                                       t.done()]))
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True)
            relay = stream.sse()
            first: list[bytes] = []
            th = threading.Thread(target=lambda: first.append(next(relay)))
            th.start()  # the server's worker sends the first event
            th.join(10)
            assert first and first[0].startswith(b"data: ")
            relay.close()  # the server, from another thread: the browser went away
            assert_back_to(baseline)  # the view still holds the stream (a log line)
            assert stream.timings.end is not None
        finally:
            gate.set()
            client.close()
