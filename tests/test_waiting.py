"""The waiting core, from a user's day: what the caller does between chunks, on other
threads and in other processes, and what waiting costs.

Each test here failed before the clocks counted only waiting, before wake-ups replaced
polling and before the pool belonged to one process (DESIGN.md: Timeouts, "What each
clock counts", Abort, Processes). Servers are real sockets on loopback: the package's
``LocalServer`` where it can play the part, else a small raw server written here (a
``Content-Length`` stream, a slow reader, connection counting).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from conftest import KEY, wait_closed

import alltoken
from alltoken import _transport
from alltoken import testing as t

MSG = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parent.parent


def client_for(server_url: str, **kw: Any) -> alltoken.AllToken:
    kw.setdefault("max_retries", 2)
    return alltoken.AllToken(api_key=kw.pop("api_key", KEY), base_url=server_url,
                             proxy=False, **kw)


def chat(client: alltoken.AllToken, **kw: Any) -> alltoken.Stream:
    kw.setdefault("model", "m")
    kw.setdefault("messages", MSG)
    return client.chat.completions.create(stream=True, **kw)


# -- a raw HTTP/1.1 server for what LocalServer does not do ------------------------------


class RawServer:
    """Answers every POST with *respond(body) -> bytes* on keep-alive connections, and
    counts connections. *read_slowly* makes it read request bodies at most 64 KiB every
    20 ms: a slow link (about 3 MB/s)."""

    def __init__(self, respond: Callable[[bytes], bytes], *, read_slowly: bool = False
                 ) -> None:
        self.respond = respond
        self.read_slowly = read_slowly
        self.connections = 0
        self.requests: list[int] = []  # the connection number of each request
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            th = threading.Thread(target=self._serve, args=(conn, self.connections),
                                  daemon=True)
            self.threads.append(th)
            th.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(10)
        buf = b""
        with conn:
            try:
                while not self.stop.is_set():
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buf) < length:
                        if self.read_slowly:
                            time.sleep(0.02)
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    body, buf = buf[:length], buf[length:]
                    self.requests.append(number)
                    conn.sendall(self.respond(body))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for th in self.threads:
            th.join(5)


def sse_answer(text: str, *, framing: str = "length") -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    if framing == "length":
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    return (f"{head}Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n".encode() + body
            + b"\r\n0\r\n\r\n")


def echo_prompt(body: bytes) -> bytes:
    return sse_answer(json.loads(body)["messages"][-1]["content"])


# -- 1-3: the clocks count only waiting, and every attempt starts fresh ------------------


class TestClocksCountOnlyWaiting:
    def test_a_slow_loop_body_never_causes_a_read_or_idle_timeout(
            self, server: t.LocalServer) -> None:
        # "b" and "c" arrive while the loop body works: they wait in the socket buffer
        server.enqueue(t.StreamReply([t.content("a"), t.sleep(0.1), t.content("b"),
                                      t.sleep(0.1), t.content("c"), t.done(), t.cost()]))
        with client_for(server.base_url, timeout=alltoken.Timeout(read=0.3, idle=0.3)) as c:
            got = []
            with chat(c) as stream:
                for chunk in stream:
                    got.append(chunk)
                    time.sleep(0.6)  # a text-to-speech call, a tool call, a breakpoint
            assert stream.text == "abc" and stream.cost is not None

    def test_a_retry_after_longer_than_the_read_timeout_still_gets_its_answer(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(429, headers={"retry-after-ms": "700"}),
                       t.StreamReply([t.content("late but whole"), t.done()]))
        with client_for(server.base_url, timeout=alltoken.Timeout(read=0.3)) as c:
            with chat(c) as stream:
                text = "".join(ch.choices[0].delta.content or "" for ch in stream
                               if ch.choices)
        assert text == "late but whole"
        assert len(server.requests) == 2

    def test_a_slow_callable_key_is_not_charged_to_the_first_read(
            self, server: t.LocalServer) -> None:
        def slow_key() -> str:
            time.sleep(0.5)
            return KEY

        server.enqueue(t.StreamReply([t.content("ok"), t.done()]))
        with client_for(server.base_url, api_key=slow_key,
                        timeout=alltoken.Timeout(read=0.3)) as c:
            with chat(c) as stream:
                list(stream)
        assert stream.text == "ok"

    def test_with_idle_set_a_failed_attempt_is_retried_and_answers(
            self, server: t.LocalServer) -> None:
        # The first answer drops before any chunk after its headers, while the idle clock
        # runs; the retry's backoff (0.25-0.5 s) outlasts the idle timeout.
        server.enqueue(t.StreamReply([t.comment("ping"), t.drop()]),
                       t.StreamReply([t.content("second try"), t.done()]))
        with client_for(server.base_url,
                        timeout=alltoken.Timeout(read=5, idle=0.2)) as c:
            with chat(c) as stream:
                list(stream)
        assert stream.text == "second try"
        assert len(server.requests) == 2

    def test_the_idle_timeout_still_ends_a_stalled_stream_behind_keep_alives(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        pings: list[t.Step] = []
        for _ in range(40):
            pings += [t.comment("keep-alive"), t.sleep(0.05)]
        server.enqueue(t.StreamReply([t.content("a"), *pings, t.wait(gate, 30)]))
        try:
            with client_for(server.base_url, max_retries=0,
                            timeout=alltoken.Timeout(read=5, idle=0.5)) as c:
                stream = chat(c)
                started = time.monotonic()
                with pytest.raises(alltoken.APITimeoutError, match="idle"):
                    for _ in stream:
                        pass
                assert time.monotonic() - started < 1.9
                assert stream.text == "a"
        finally:
            gate.set()


# -- 4: no file-descriptor ceiling -------------------------------------------------------


def test_a_request_works_in_a_process_with_more_than_1023_open_files(
        server: t.LocalServer) -> None:
    resource = pytest.importorskip("resource", reason="needs POSIX resource limits")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the fd limit cannot be raised to {want} (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held: list[int] = []
    try:
        r, w = os.pipe()
        held += [r, w]
        while max(held) < 1030:
            held.append(os.dup(r))
        server.enqueue(t.StreamReply([t.content("fd ok"), t.done()]))
        with client_for(server.base_url, max_retries=0) as c:
            with chat(c, signal=threading.Event()) as stream:
                list(stream)
            assert stream.text == "fd ok"
            # the pooled connection's fd is above 1023, and its reuse check works too
            server.enqueue(t.StreamReply([t.content("again"), t.done()]))
            with chat(c) as stream:
                list(stream)
            assert stream.text == "again"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- 5: a pooled connection belongs to one process ---------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_a_child_opens_its_own_connection_and_the_parent_keeps_its_own(
        tmp_path: Path) -> None:
    raw = RawServer(echo_prompt)
    script = tmp_path / "prefork.py"
    script.write_text(textwrap.dedent("""\
        import os, sys
        import alltoken

        client = alltoken.AllToken(api_key="k", base_url=sys.argv[1], proxy=False)

        def ask(prompt):
            s = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": prompt}], stream=True)
            with s:
                for _ in s:
                    pass
            return s.text

        print("parent", ask("parent 1"), flush=True)  # leaves a pooled connection
        pid = os.fork()
        if pid == 0:
            print("child", ask("child"), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", ask("parent 2"), flush=True)
    """), encoding="utf-8")
    try:
        out = subprocess.run([sys.executable, str(script), raw.url], capture_output=True,
                             text=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        raw.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "parent parent 1\nchild child\nparent parent 2\n"
    # the child's request came on a connection of its own; the parent reused its own
    assert raw.requests == [1, 2, 1]


# -- 6: close() from another thread ------------------------------------------------------


class TestCloseFromAnotherThread:
    @pytest.mark.parametrize("kind", ["stream", "text_stream"])
    def test_a_watchdog_close_wakes_the_blocked_reader_at_once(
            self, server: t.LocalServer, kind: str) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("kept"), t.wait(gate, 30), t.done()]))
        errors: list[BaseException] = []
        try:
            with client_for(server.base_url, timeout=30.0) as c:
                s: Any = chat(c) if kind == "stream" else alltoken.stream(
                    "x", model="m", client=c)
                first = next(iter(s))
                assert first is not None

                def reader() -> None:
                    try:
                        for _ in s:
                            pass
                    except BaseException as exc:
                        errors.append(exc)

                th = threading.Thread(target=reader)
                th.start()
                time.sleep(0.2)  # the reader is blocked on the silent socket
                started = time.monotonic()
                s.close()  # must not raise "generator already executing"
                th.join(5)
                assert not th.is_alive()
                assert time.monotonic() - started < 1.0
                assert len(errors) == 1 and isinstance(errors[0], alltoken.AbortedError)
                assert s.text == "kept"
                s.close()  # idempotent once the reader has gone
            wait_closed(server)
        finally:
            gate.set()


# -- 7-8: sending is bounded by progress, and an abort interrupts it ---------------------


class TestSending:
    def test_a_large_body_over_a_slow_link_is_sent_while_bytes_keep_moving(self) -> None:
        raw = RawServer(lambda body: sse_answer(f"got {len(body)}"), read_slowly=True)
        try:
            big = "x" * (6 * 1024 * 1024)  # ~2 s through the slow reader
            with client_for(raw.url, max_retries=0,
                            timeout=alltoken.Timeout(connect=0.3, read=10)) as c:
                with chat(c, messages=[{"role": "user", "content": big}]) as stream:
                    list(stream)
            assert stream.text.startswith("got ") and int(stream.text[4:]) > len(big)
        finally:
            raw.close()

    def test_an_abort_interrupts_sending_the_body(self) -> None:
        raw = RawServer(lambda body: sse_answer("never"), read_slowly=True)
        signal = threading.Event()
        try:
            big = "x" * (8 * 1024 * 1024)
            with client_for(raw.url, max_retries=0,
                            timeout=alltoken.Timeout(connect=30, read=30)) as c:
                timer = threading.Timer(0.3, signal.set)
                timer.start()
                started = time.monotonic()
                with pytest.raises(alltoken.AbortedError):
                    chat(c, messages=[{"role": "user", "content": big}], signal=signal)
                assert time.monotonic() - started < 2.0
        finally:
            raw.close()


# -- 9: after [DONE] the answer stands --------------------------------------------------


class TestAfterDone:
    def test_a_connection_failure_after_done_keeps_the_complete_answer(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("whole"), t.done(), t.drop(reset=True)]))
        with client_for(server.base_url, max_retries=0) as c:
            with chat(c) as stream:
                list(stream)
            assert stream.text == "whole" and stream.done and stream.cost is None
            assert len(c._pool) == 0  # a connection in an unknown state is not kept

    @pytest.mark.parametrize("timeout", [alltoken.Timeout(read=0.3),
                                         alltoken.Timeout(read=None, idle=0.3)])
    def test_the_trailer_wait_is_bounded_and_its_timeout_is_not_an_error(
            self, server: t.LocalServer, timeout: alltoken.Timeout) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("whole"), t.done(), t.wait(gate, 30)]))
        try:
            with client_for(server.base_url, max_retries=0, timeout=timeout) as c:
                started = time.monotonic()
                with chat(c) as stream:
                    list(stream)
                assert time.monotonic() - started < 2.0
                assert stream.text == "whole" and stream.cost is None
        finally:
            gate.set()


# -- 10: a Content-Length stream is pooled ----------------------------------------------


def test_a_stream_framed_by_content_length_returns_its_connection_to_the_pool() -> None:
    raw = RawServer(echo_prompt)
    try:
        with client_for(raw.url, max_retries=0) as c:
            for word in ("one", "two", "three"):
                with chat(c, messages=[{"role": "user", "content": word}]) as stream:
                    list(stream)
                assert stream.text == word
                assert len(c._pool) == 1
        assert raw.requests == [1, 1, 1]
    finally:
        raw.close()


# -- 11: waiting costs nothing; an abort still lands at once -----------------------------


class CountingClock:
    """Counts the transport's clock readings: every wait reads the clock, so a waiter
    that wakes up periodically reads it many times."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = time.monotonic

    def __call__(self) -> float:
        self.calls += 1
        return self.real()


class TestWakeUps:
    def test_a_stream_waiting_with_a_signal_does_not_wake_up_while_it_waits(
            self, server: t.LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate, 30), t.content("b"),
                                      t.done()]))
        clock = CountingClock()
        with client_for(server.base_url, timeout=30.0) as c:
            with chat(c, signal=threading.Event()) as stream:
                it = iter(stream)
                next(it)
                monkeypatch.setattr(_transport, "time", SimpleNamespace(
                    monotonic=clock, sleep=time.sleep, time=time.time))
                threading.Timer(0.5, gate.set).start()
                next(it)  # waits 0.5 s for "b"
                monkeypatch.undo()
                list(it)
        assert stream.text == "ab"
        # one wait (two clock readings), not one every few milliseconds (~250 before)
        assert clock.calls <= 6

    def test_a_signal_set_from_another_thread_aborts_a_silent_wait_at_once(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("kept"), t.wait(gate, 30), t.done()]))
        signal = threading.Event()
        try:
            with client_for(server.base_url, timeout=30.0) as c:
                stream = chat(c, signal=signal)
                it = iter(stream)
                next(it)
                threading.Timer(0.2, signal.set).start()
                started = time.monotonic()
                with pytest.raises(alltoken.AbortedError):
                    next(it)
                assert time.monotonic() - started < 1.0
                assert stream.text == "kept"
            wait_closed(server)
        finally:
            gate.set()

    @pytest.mark.parametrize("how", ["signal", "close"])
    def test_an_abort_wakes_a_stream_on_a_reused_pooled_connection(
            self, server: t.LocalServer, how: str) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("first"), t.done()]),
                       t.StreamReply([t.content("kept"), t.wait(gate, 30), t.done()]))
        signal = threading.Event()
        try:
            with client_for(server.base_url, timeout=30.0) as c:
                with chat(c) as first:
                    list(first)
                assert len(c._pool) == 1
                stream = chat(c, signal=signal)  # reuses the pooled connection
                assert len(c._pool) == 0
                it = iter(stream)
                next(it)
                threading.Timer(0.2, signal.set if how == "signal" else stream.close).start()
                started = time.monotonic()
                with pytest.raises(alltoken.AbortedError):
                    next(it)
                assert time.monotonic() - started < 2.0
        finally:
            gate.set()

    def test_one_event_shared_by_many_sequential_requests_collects_no_waiters(
            self, server: t.LocalServer) -> None:
        signal = threading.Event()
        with client_for(server.base_url) as c:
            for i in range(20):
                server.enqueue(t.StreamReply([t.content(str(i)), t.done()]))
                with chat(c, signal=signal) as stream:
                    list(stream)
            server.enqueue(t.StreamReply([t.content("dropped"), t.done()]))
            chat(c, signal=signal)  # never iterated, dropped at once
            c.chat.completions.create(model="m", messages=MSG, signal=signal)
        assert len(signal._cond._waiters) == 0  # type: ignore[attr-defined]

    def test_a_signal_that_is_not_an_event_still_aborts(self, server: t.LocalServer) -> None:
        class Flag:
            def __init__(self) -> None:
                self.value = False

            def is_set(self) -> bool:
                return self.value

        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("kept"), t.wait(gate, 30), t.done()]))
        flag = Flag()
        try:
            with client_for(server.base_url, timeout=30.0) as c:
                stream = chat(c, signal=flag)
                it = iter(stream)
                next(it)
                threading.Timer(0.2, setattr, (flag, "value", True)).start()
                with pytest.raises(alltoken.AbortedError):
                    next(it)
        finally:
            gate.set()

    def test_fifty_waiting_streams_all_abort_when_their_signals_are_set(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        n = 50
        for _ in range(n):
            server.enqueue(t.StreamReply([t.content("a"), t.wait(gate, 30), t.done()]))
        signals = [threading.Event() for _ in range(n)]
        outcomes: list[str] = []
        lock = threading.Lock()
        ready = threading.Barrier(n + 1)
        try:
            with client_for(server.base_url, timeout=30.0) as c:
                def run(sig: threading.Event) -> None:
                    stream = chat(c, signal=sig)
                    it = iter(stream)
                    next(it)
                    ready.wait(10)
                    try:
                        next(it)
                        result = "not aborted"
                    except alltoken.AbortedError:
                        result = "aborted"
                    with lock:
                        outcomes.append(result)

                threads = [threading.Thread(target=run, args=(s,)) for s in signals]
                for th in threads:
                    th.start()
                ready.wait(10)
                for sig in signals:
                    sig.set()
                for th in threads:
                    th.join(10)
            assert outcomes == ["aborted"] * n
        finally:
            gate.set()


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="needs setitimer")
def test_setting_the_event_from_a_signal_handler_never_deadlocks(server: t.LocalServer,
                                                                  tmp_path: Path) -> None:
    """The CLI's Ctrl-C handler calls ``Event.set()`` in the main thread, between any two
    bytecodes of the request: also while that thread holds the event's lock or the
    request's. A timer fires such a handler hundreds of times across many requests."""
    script = tmp_path / "handler.py"
    script.write_text(textwrap.dedent("""\
        import signal, sys, threading
        import alltoken

        client = alltoken.AllToken(api_key="k", base_url=sys.argv[1], max_retries=0)
        current = [threading.Event()]
        signal.signal(signal.SIGALRM, lambda *_: current[0].set())
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        outcomes = {"aborted": 0, "done": 0}
        for i in range(300):
            current[0] = threading.Event()
            try:
                s = client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
                    signal=current[0])
                with s:
                    for _ in s:
                        pass
                outcomes["done"] += 1
            except alltoken.AbortedError:
                outcomes["aborted"] += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(sum(outcomes.values()))
    """), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script), server.base_url], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "300\n"
