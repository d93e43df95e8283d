"""Every way an abort or a watchdog close() must reach a reader (DESIGN.md: Timeouts,
What each clock counts, Abort).

Every test here failed on the code it was written against (main at ff87555): each one
is a defect found by trying the rebuilt waiting core as a demanding user would. Real
loopback sockets only; every wait is bounded, and every server is released at the end
of its test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import alltoken
from alltoken import testing as t

KEY = "sk-abort-paths"
MSG = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[t.LocalServer]:
    with t.LocalServer(pace=0) as srv:
        yield srv


def client_for(url: str, **kw: Any) -> alltoken.AllToken:
    kw.setdefault("max_retries", 0)
    return alltoken.AllToken(api_key=KEY, base_url=url, proxy=False, **kw)


def chat(client: alltoken.AllToken, **kw: Any) -> alltoken.Stream:
    return client.chat.completions.create(model="m", messages=MSG, stream=True, **kw)


def drain_in_thread(stream: alltoken.Stream) -> tuple[threading.Thread, list[Any]]:
    """Iterate *stream* to its end in a thread; the outcome lands in the list."""
    out: list[Any] = []

    def run() -> None:
        try:
            for _ in stream:
                pass
            out.append("end")
        except Exception as exc:
            out.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


# -- an abort must wake a reader whatever socket it reads from ---------------------------


class TestAbortWakesEveryReader:
    """``interrupt()`` can only shut down the socket ``Deadlines`` was told about
    (``attach``). Two common readers are never attached: a pooled connection reused by a
    later request, and a response that will close its connection (``Connection: close``,
    an HTTP/1.0 proxy, a close-delimited SSE stream), whose socket ``_Connection.close``
    detaches when http.client hands it over to the response. Setting the signal then
    wakes nobody: the abort is seen only when the ``read`` timeout runs out."""

    READ = 4.0

    def _abort_mid_body(self, server: t.LocalServer, *, reuse: bool, chunked: bool) -> None:
        gate = threading.Event()
        client = client_for(server.base_url,
                            timeout=alltoken.Timeout(connect=5, read=self.READ))
        try:
            if reuse:
                server.enqueue(t.StreamReply([t.content("warm"), t.done()]))
                with chat(client) as first:
                    assert "".join(c.choices[0].delta.content or "" for c in first) == "warm"
            server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.content("b"),
                                          t.done()], chunked=chunked))
            ev = threading.Event()
            stream = chat(client, signal=ev)
            next(iter(stream))
            th, out = drain_in_thread(stream)
            time.sleep(0.2)  # the reader is now blocked waiting for "b"
            ev.set()
            t0 = time.monotonic()
            th.join(self.READ + 2)
            took = time.monotonic() - t0
            assert out and isinstance(out[0], alltoken.AbortedError), out
            assert took < 1.0, f"the abort took {took:.2f} s (read timeout {self.READ} s)"
        finally:
            gate.set()
            client.close()

    def test_abort_wakes_a_reader_on_a_reused_pooled_connection(
            self, server: t.LocalServer) -> None:
        self._abort_mid_body(server, reuse=True, chunked=True)

    def test_abort_wakes_a_reader_of_a_close_delimited_stream(
            self, server: t.LocalServer) -> None:
        self._abort_mid_body(server, reuse=False, chunked=False)

    def test_abort_wakes_a_request_waiting_for_headers_on_a_reused_connection(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        client = client_for(server.base_url,
                            timeout=alltoken.Timeout(connect=5, read=self.READ))
        try:
            server.enqueue(t.StreamReply([t.content("warm"), t.done()]))
            with chat(client) as first:
                list(first)
            server.enqueue(t.DelayedReply(gate, t.StreamReply([t.content("a"), t.done()])))
            ev = threading.Event()
            out: list[Any] = []

            def run() -> None:
                try:
                    chat(client, signal=ev).close()
                    out.append("returned")
                except Exception as exc:
                    out.append(exc)

            th = threading.Thread(target=run, daemon=True)
            th.start()
            server.wait_for_requests(2)
            time.sleep(0.2)
            ev.set()
            t0 = time.monotonic()
            th.join(self.READ + 2)
            took = time.monotonic() - t0
            assert out and isinstance(out[0], alltoken.AbortedError), out
            assert took < 1.0, f"the abort took {took:.2f} s (read timeout {self.READ} s)"
        finally:
            gate.set()
            client.close()

    def test_watchdog_close_wakes_a_reader_on_a_reused_pooled_connection(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        client = client_for(server.base_url,
                            timeout=alltoken.Timeout(connect=5, read=self.READ))
        try:
            server.enqueue(t.StreamReply([t.content("warm"), t.done()]))
            with chat(client) as first:
                list(first)
            server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.done()]))
            stream = chat(client)
            next(iter(stream))
            th, out = drain_in_thread(stream)
            time.sleep(0.2)
            stream.close()
            t0 = time.monotonic()
            th.join(self.READ + 2)
            took = time.monotonic() - t0
            assert out and isinstance(out[0], alltoken.AbortedError), out
            assert took < 1.0, f"close() took {took:.2f} s to wake the reader"
        finally:
            gate.set()
            client.close()


# -- a polled signal must not disable the read timeout -----------------------------------


class _Flag:
    """A signal that is not a threading.Event (multiprocessing.Event, a custom flag)."""

    def __init__(self) -> None:
        self.value = False

    def is_set(self) -> bool:
        return self.value


def test_a_polled_signal_does_not_disable_the_read_timeout(server: t.LocalServer) -> None:
    """With a signal that can only be polled, ``wait_for`` waits in 2 ms slices, and
    ``readinto`` calls ``wait_for`` again after each slice -- with a fresh ``read`` clock
    every time. The read timeout never runs out: a silent server hangs the stream
    forever (the same for the send wait)."""
    gate = threading.Event()
    client = client_for(server.base_url, timeout=alltoken.Timeout(connect=5, read=0.5))
    flag = _Flag()
    try:
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.done()]))
        stream = chat(client, signal=flag)
        th, out = drain_in_thread(stream)
        th.join(4)
        flag.value = True  # release the reader however it went
        th.join(4)
        assert out and isinstance(out[0], alltoken.APITimeoutError), out
    finally:
        gate.set()
        client.close()


# -- Stream.close() from a watchdog while the caller is in its loop body -----------------


def test_watchdog_close_between_chunks_raises_aborted_not_a_silent_end(
        server: t.LocalServer) -> None:
    """A watchdog calls ``stream.close()`` while the reading thread is in its loop body
    (not inside ``next()``). ``close()`` then runs ``gen.close()`` in the watchdog's
    thread, and the reader's next ``next()`` gets ``StopIteration``: the ``for`` loop
    ends normally with a truncated answer, and the caller cannot tell it from a
    complete one without checking ``stream.done``. DESIGN.md: close() from another
    thread "wakes the reader, which raises AbortedError"."""
    client = client_for(server.base_url, timeout=5)
    try:
        server.enqueue(t.StreamReply([t.content("a")] * 50 + [t.done()]))
        stream = chat(client)
        got = []
        in_body = threading.Event()
        closed = threading.Event()

        def watchdog() -> None:
            in_body.wait(5)
            stream.close()
            closed.set()

        th = threading.Thread(target=watchdog, daemon=True)
        th.start()
        outcome: Any = "end"
        try:
            for chunk in stream:
                got.append(chunk)
                if len(got) == 3:
                    in_body.set()
                    closed.wait(5)  # the loop body is running when close() is called
        except alltoken.AbortedError as exc:
            outcome = exc
        th.join(5)
        assert not stream.done
        assert isinstance(outcome, alltoken.AbortedError), (
            f"the loop ended normally after {len(got)} of 50 chunks")
    finally:
        client.close()


def test_watchdog_close_never_raises_value_error_in_the_reader(
        server: t.LocalServer) -> None:
    """Race ``close()`` from a watchdog against a reader iterating a fast stream: when
    the watchdog is running ``gen.close()`` (a socket close, the signal's release) as the
    reader calls ``next()``, the reader gets ``ValueError: generator already
    executing`` -- not an alltoken error at all."""
    client = client_for(server.base_url, timeout=5)
    bad: list[BaseException] = []
    try:
        deadline = time.monotonic() + 20
        rounds = 0
        while rounds < 60 and not bad and time.monotonic() < deadline:
            rounds += 1
            server.enqueue(t.StreamReply([t.content("a")] * 100 + [t.done()]))
            stream = chat(client)

            def watchdog(s: alltoken.Stream = stream) -> None:
                time.sleep(0.02)
                s.close()

            th = threading.Thread(target=watchdog, daemon=True)
            th.start()
            try:
                for _ in stream:
                    time.sleep(0.001)
            except alltoken.AllTokenError:
                pass
            except ValueError as exc:
                bad.append(exc)
            th.join(5)
        assert not bad, f"after {rounds} rounds: {bad[0]!r}"
    finally:
        client.close()


# -- Event.set() from a signal handler -------------------------------------------------


_SIGNAL_HANDLER_SCRIPT = textwrap.dedent("""
    import signal, sys, threading
    import alltoken
    from alltoken import _transport
    from alltoken import testing as t

    TARGET, NTH = sys.argv[1], int(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *a: stop.set())   # the usual graceful stop
    lines = []

    def tracer(frame, event, arg):
        # Deliver SIGUSR1 once: at the NTH line event of the first call of TARGET.
        if frame.f_code.co_name == TARGET and frame.f_code.co_filename == _transport.__file__:
            def local(frame, event, arg):
                if event == "line" and len(lines) < NTH:
                    lines.append(frame.f_lineno)
                    if len(lines) == NTH:
                        signal.raise_signal(signal.SIGUSR1)
                return local
            return local
        return None

    with t.LocalServer(pace=0) as srv:
        client = alltoken.AllToken(api_key="k", base_url=srv.base_url, proxy=False,
                                   max_retries=0, timeout=5)
        srv.enqueue(t.StreamReply([t.content("a"), t.done()]))
        sys.settrace(tracer)
        try:
            with client.chat.completions.create(model="m", messages=[{"role": "user",
                    "content": "x"}], stream=True, signal=stop) as s:
                for _ in s:
                    pass
        except alltoken.AbortedError:
            pass
        sys.settrace(None)
    print("finished; signal at lines", lines)
""")


@pytest.mark.parametrize("nth", range(1, 7))
@pytest.mark.parametrize("target", ["release_signal", "attach"])
def test_event_set_from_a_signal_handler_never_deadlocks(target: str, nth: int) -> None:
    """``signal.signal(SIGINT, lambda *a: stop.set())`` is the usual graceful stop. A
    Python signal handler runs in the main thread between two bytecodes -- also while
    that thread holds a lock the handler's ``set()`` needs: the event's condition lock
    (``Deadlines.__init__``/``release_signal`` take it around ``_waiters``) or the
    request's own ``Deadlines._lock`` (``attach``/``detach``/``interrupt``/``wait``),
    which ``_Wakeup.release -> interrupt`` takes again. Neither lock is reentrant: the
    process hangs forever. The signal is delivered at each line of the function in turn
    (on main at ff87555: release_signal's 5th and 6th lines, attach's 2nd to 4th)."""
    try:
        proc = subprocess.run([sys.executable, "-c", _SIGNAL_HANDLER_SCRIPT, target, str(nth)],
                              capture_output=True, text=True, timeout=8, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        pytest.fail(f"deadlock: Event.set() in a signal handler at line event {nth} of "
                    f"Deadlines.{target}")
    assert "finished" in proc.stdout, proc.stdout + proc.stderr


def test_watchdog_close_of_a_text_stream_between_pieces_raises_aborted(
        server: t.LocalServer) -> None:
    """The same for ``alltoken.stream()``'s ``TextStream``: its ``close()`` from a
    watchdog runs ``gen.close()`` on the pieces generator in the watchdog's thread, and
    the reader's loop then ends normally with a truncated text."""
    client = client_for(server.base_url, timeout=5)
    try:
        server.enqueue(t.StreamReply([t.content("a")] * 50 + [t.done()]))
        text = alltoken.stream("hi", model="m", client=client)
        got = []
        in_body = threading.Event()
        closed = threading.Event()

        def watchdog() -> None:
            in_body.wait(5)
            text.close()
            closed.set()

        th = threading.Thread(target=watchdog, daemon=True)
        th.start()
        outcome: Any = "end"
        try:
            for piece in text:
                got.append(piece)
                if len(got) == 3:
                    in_body.set()
                    closed.wait(5)
        except alltoken.AbortedError as exc:
            outcome = exc
        th.join(5)
        assert not text.done
        assert isinstance(outcome, alltoken.AbortedError), (
            f"the loop ended normally after {len(got)} of 50 pieces")
    finally:
        client.close()
