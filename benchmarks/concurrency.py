"""Part 7 of the suite: many concurrent streams in one process, one thread per stream.

    python3 benchmarks/concurrency.py            # full: 1, 100 and 1,000 streams
    python3 benchmarks/concurrency.py --quick    # 1 and 1,000 streams, shorter windows
    python3 benchmarks/concurrency.py --no-peers # alltoken only, standard library only

Also run by ``run.py`` (part 7). For each client (alltoken, and the peers ``openai`` and
``httpx`` + ``httpx-sse`` from ``benchmarks/.venv``) and each N, a fresh interpreter (the
*probe*: ``concurrency.py --probe CLIENT N BASE NMAX``) makes ONE client and runs N
streams on it, each in its own thread (the library is synchronous), against a server in
another process (``concurrency.py --serve PORT_FILE``: one ``selectors`` loop, so holding
1,000 connections costs it nothing). The server sends a stream's response headers at once
and then holds it silent (a reasoning model thinking) until the probe tells it to release
the streams (the chat corpus of ``corpus.py`` with K delta chunks each, the bytes of
``server.py``) or to hang up. The request's ``model`` names the stream, so the server can
tell the probe which stream's socket it saw closed, and when.

In the probe, after one warm-up stream (imports, first connection) and a baseline of
threads, file descriptors and RSS:

- phase W (alltoken: no ``signal``): N streams open and wait; the **idle CPU** of the
  whole process over a window of a few seconds (``time.process_time`` over wall time, %
  of one core) and the voluntary context switches of all its threads (wake-ups); then all
  are released at once: **aggregate chunks/s** (JSON chunks read by all streams over the
  wall time from the release to the last stream's end; every stream's text checked) and
  the **peak RSS per stream** (``VmHWM`` minus the baseline RSS, over N; the peak is reset
  after the baseline through ``/proc/self/clear_refs``);
- phase A (alltoken: a ``threading.Event`` per stream as ``signal=``; peers: nothing, they
  have no signal): N streams open and wait (at the largest N, M more beside them for the
  one-of-N trials); idle CPU again. Then **one** of the M extra streams is aborted at a
  time, M times (N or more keep waiting); then **all** N are aborted at once. An abort is
  done from one other thread, stream after stream: alltoken ``signal.set()``; openai
  ``Stream.close()``; httpx-sse ``EventSource.response.close()`` (closing the response
  from another thread: the peers' nearest equivalent). Latency: from the clock read right
  before that call (in the aborting thread) to the clock read first thing in the reader
  thread's ``except`` (alltoken: ``AbortedError``) or after its loop, p50/p99 (nearest
  rank). A reader not ended within a bound (:class:`Settings`) is *not woken*; the
  server then hangs up on it, which ends it (or not: then it is *hung*, until its read
  timeout). ``socket closed``: the streams whose close the server saw.
- **after**: every thread joined: threads and fds against the baseline, with the client
  still open (alltoken keeps up to 8 idle connections per origin in its pool, ready for
  reuse; the baseline holds the warm-up's) and after its ``close()``.

Each client is given a 600 s read timeout, far beyond every wait here, so no timeout ends
a wait early; everything is bounded (a probe exits on its own after :data:`PROBE_MAX`
seconds at most, and the server when its parent goes away). Run alone, it writes
``benchmarks/results/concurrency.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)  # ROOT first: the alltoken of this checkout, never an installed one

RESULTS = HERE / "results"
#: The clients of this part, in the order of the table's columns.
CLIENTS = ("alltoken", "openai", "httpx-sse")
NS = (1, 100, 1000)
#: The N of ``--quick``.
QUICK_NS = (1, 1000)
#: The read timeout given to every client: far beyond every wait of the probe.
READ_TIMEOUT = 600.0
#: Thread stack size for every thread of the probe (the default is 8 MiB of address space).
STACK = 1024 * 1024
#: A probe ends itself after this many seconds whatever happens.
PROBE_MAX = 300.0
#: How long N streams may take to open (send the request, get the headers).
OPEN_MAX = 120.0
#: How long readers may take to end once the server has hung up on them.
HANGUP_WAIT = 1.0
#: Connections the peers' HTTP pools may open (httpx's default is 100; openai's 1,000).
POOL_LIMIT = 2000
MESSAGES = [{"role": "user", "content": "hi"}]


class Settings:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        #: seconds of each idle-CPU window
        self.idle_s = 1.0 if quick else 3.0
        #: chunks all N streams read together when released (at least k_min each)
        self.total_chunks = 10_000 if quick else 30_000
        self.k_min = 20 if quick else 30
        #: rounds of "N wait, then all stream": the best rate is kept; no round is begun
        #: once the rounds have streamed for round_budget seconds
        self.rounds = 1 if quick else 3
        self.round_budget = 15.0
        #: one-of-N abort trials (at the largest N only), and how long each may take
        self.single_trials = 5 if quick else 20
        self.single_wait = 1.0 if quick else 2.0
        #: how long all N readers may take to end after the abort of all
        self.all_wait = 1.0 if quick else 3.0
        #: one-of-N trials stop after this many readers not woken running
        self.give_up = 1 if quick else 2
        #: ... and after this many seconds in all
        self.single_budget = 10.0 if quick else 30.0

    def k(self, n: int) -> int:
        return max(self.k_min, self.total_chunks // n)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pct(values: list[float], q: float) -> float:
    """The nearest-rank *q* quantile."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the server ----------------------------------------------------------------------------


class _Conn:
    __slots__ = ("group", "inbuf", "out", "sid", "sock", "state")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.out: list[memoryview] = []
        self.state = "read"  # read (a request) | held (silent after headers) | send
        self.group = ""
        self.sid = -1


class _Server:
    """One ``selectors`` loop. Paths: ``/ctl/...`` are commands (a JSON reply); any other
    POST is a chat stream named by its body's ``model``, ``GROUP:ID``, which gets the
    headers at once and is then held silent.

    - ``/ctl/state?g=G``: ``{"held": n, "closed": {ID: monotonic_ns}}``: streams of G
      still held, and those whose client closed the connection while held;
    - ``/ctl/release?g=G&k=K``: every held stream of G gets the chat corpus with K delta
      chunks, then the end of the body (the connection stays open for the next request);
    - ``/ctl/hangup?g=G[&i=ID]``: the server closes the held streams of G (or one).
    """

    def __init__(self) -> None:
        from server import HEAD, chat_body

        self.head, self.chat_body = HEAD, chat_body
        self.sel = selectors.DefaultSelector()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.held: dict[str, dict[int, _Conn]] = {}
        self.closed: dict[str, dict[int, int]] = {}

    def run(self, port_file: str) -> None:
        Path(port_file).write_text(str(self.listener.getsockname()[1]))
        parent = os.getppid()
        while os.getppid() == parent:  # ends when the process that started it is gone
            for key, mask in self.sel.select(timeout=1.0):
                if key.data is None:
                    self._accept()
                    continue
                conn: _Conn = key.data
                if mask & selectors.EVENT_READ:
                    self._read(conn)
                if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                    self._write(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(sock, selectors.EVENT_READ, _Conn(sock))

    def _drop(self, conn: _Conn, by_client: bool) -> None:
        if conn.state == "held":
            self.held.get(conn.group, {}).pop(conn.sid, None)
            if by_client:
                self.closed.setdefault(conn.group, {})[conn.sid] = time.monotonic_ns()
        conn.state = "gone"
        with contextlib.suppress(Exception):
            self.sel.unregister(conn.sock)
        conn.sock.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # a reset is a close too
        if not data:
            self._drop(conn, by_client=True)
            return
        if conn.state != "read":
            return  # nothing is expected from a client while its stream is held or sent
        conn.inbuf += data
        while conn.state == "read":
            end = conn.inbuf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = conn.inbuf[:end].decode("latin-1").split("\r\n")
            length = 0
            for h in head[1:]:
                name, _, value = h.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(conn.inbuf) < end + 4 + length:
                return
            body = conn.inbuf[end + 4 : end + 4 + length]
            conn.inbuf = conn.inbuf[end + 4 + length :]
            self._request(conn, head[0].split()[1], body)

    def _send(self, conn: _Conn, data: bytes) -> None:
        conn.out.append(memoryview(data))
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            try:
                n = conn.sock.send(conn.out[0][:262144])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn, by_client=True)
                return
            if n == len(conn.out[0]):
                conn.out.pop(0)
            else:
                conn.out[0] = conn.out[0][n:]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        with contextlib.suppress(Exception):
            self.sel.modify(conn.sock, events, conn)
        if not conn.out and conn.state == "send":
            conn.state = "read"  # kept alive for the next request

    def _request(self, conn: _Conn, path: str, body: bytes) -> None:
        if path.startswith("/ctl/"):
            url = urlsplit(path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            reply = self._control(url.path[5:], q)
            data = json.dumps(reply).encode()
            self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
            return
        try:
            group, _, sid = json.loads(body)["model"].rpartition(":")
            conn.group, conn.sid = group, int(sid)
        except (ValueError, KeyError, TypeError):
            conn.group, conn.sid = "", -1
        conn.state = "held"
        self.held.setdefault(conn.group, {})[conn.sid] = conn
        self._send(conn, self.head)

    def _control(self, cmd: str, q: dict[str, str]) -> dict[str, Any]:
        g = q.get("g", "")
        if cmd == "state":
            return {"held": len(self.held.get(g, {})), "closed": self.closed.get(g, {})}
        if cmd == "release":
            body = self.chat_body(int(q["k"]))
            conns = list(self.held.pop(g, {}).values())
            for conn in conns:
                conn.state = "send"
                self._send(conn, body)
            return {"released": len(conns)}
        if cmd == "hangup":
            held = self.held.get(g, {})
            ids = [int(q["i"])] if "i" in q else list(held)
            n = 0
            for i in ids:
                one = held.get(i)
                if one is not None:
                    self._drop(one, by_client=False)
                    n += 1
            return {"hung_up": n}
        if cmd == "prepare":
            self.chat_body(int(q["k"]))
            return {}
        return {"error": f"unknown command {cmd}"}


def serve(port_file: str) -> None:
    raise_nofile()
    _Server().run(port_file)


class Server:
    """The server in a child process (``python concurrency.py --serve PORT_FILE``)."""

    def __init__(self, python: str = sys.executable) -> None:
        port_file = RESULTS / f".cport-{os.getpid()}"
        RESULTS.mkdir(exist_ok=True)
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--serve",
                                      str(port_file)])
        for _ in range(1000):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.01)
        else:
            self.close()
            raise RuntimeError("the concurrency server did not start")
        self.port = int(port_file.read_text())
        port_file.unlink(missing_ok=True)
        self.base = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def control(base: str, cmd: str, **q: Any) -> dict[str, Any]:
    """A command to the server (see :class:`_Server`)."""
    port = int(base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        query = "&".join(f"{k}={v}" for k, v in q.items())
        conn.request("GET", f"/ctl/{cmd}?{query}")
        out: dict[str, Any] = json.loads(conn.getresponse().read())
        return out
    finally:
        conn.close()


# -- the clients -----------------------------------------------------------------------------

#: ``open(model, signal) -> (read, abort)``: ``open`` sends the request and returns once
#: the response headers are in; ``read()`` iterates to the end and returns (JSON chunks,
#: content text); ``abort()`` is the client's way to stop it from another thread.
Opened = tuple[Callable[[], tuple[int, str]], Callable[[], None]]


class Adapter:
    name = ""
    dists: tuple[str, ...] = ()
    abort_how = ""
    signals = False

    def open(self, model: str, signal: Optional[threading.Event]) -> Opened:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def version(self) -> str:
        from importlib.metadata import version

        out = []
        for d in self.dists:
            try:
                out.append(f"{d} {version(d)}")
            except Exception:  # informative only
                out.append(d)
        return ", ".join(out)


class AllTokenAdapter(Adapter):
    name = "alltoken"
    abort_how = "signal.set() on the stream's threading.Event (signal=)"
    signals = True

    def __init__(self, base: str) -> None:
        import alltoken

        self.mod = alltoken
        self.client = alltoken.AllToken(api_key="k", base_url=f"{base}/cc", max_retries=0,
                                        timeout=READ_TIMEOUT)

    def version(self) -> str:
        return f"alltoken {self.mod.__version__}"

    def open(self, model: str, signal: Optional[threading.Event]) -> Opened:
        s = self.client.chat.completions.create(model=model, messages=MESSAGES, stream=True,
                                                signal=signal)

        def read() -> tuple[int, str]:
            parts: list[str] = []
            n = 0
            for chunk in s:
                n += 1
                if chunk.choices:
                    c = chunk.choices[0].delta.content
                    if c:
                        parts.append(c)
            return n, "".join(parts)

        return read, (signal.set if signal is not None else s.close)

    def close(self) -> None:
        self.client.close()


class OpenAIAdapter(Adapter):
    name = "openai"
    dists = ("openai", "httpx")
    abort_how = ("no abort API; nearest equivalent: Stream.close() from another thread "
                 "(closes the httpx response)")

    def __init__(self, base: str) -> None:
        import httpx
        import openai

        self.http = openai.DefaultHttpxClient(
            limits=httpx.Limits(max_connections=POOL_LIMIT, max_keepalive_connections=100))
        self.client = openai.OpenAI(api_key="k", base_url=f"{base}/cc", max_retries=0,
                                    timeout=READ_TIMEOUT, http_client=self.http)

    def open(self, model: str, signal: Optional[threading.Event]) -> Opened:
        s = self.client.chat.completions.create(model=model, messages=MESSAGES, stream=True)

        def read() -> tuple[int, str]:
            parts: list[str] = []
            n = 0
            for chunk in s:
                n += 1
                if chunk.choices:
                    c = chunk.choices[0].delta.content
                    if c:
                        parts.append(c)
            return n, "".join(parts)

        return read, s.close

    def close(self) -> None:
        self.client.close()


class HttpxSSEAdapter(Adapter):
    name = "httpx-sse"
    dists = ("httpx", "httpx-sse")
    abort_how = ("no abort API; nearest equivalent: EventSource.response.close() from "
                 "another thread")

    def __init__(self, base: str) -> None:
        import httpx
        from httpx_sse import connect_sse

        self.connect_sse = connect_sse
        self.url = f"{base}/cc/chat/completions"
        self.client = httpx.Client(timeout=READ_TIMEOUT, limits=httpx.Limits(
            max_connections=POOL_LIMIT, max_keepalive_connections=100))

    def open(self, model: str, signal: Optional[threading.Event]) -> Opened:
        body = json.dumps({"model": model, "messages": MESSAGES, "stream": True}).encode()
        cm = self.connect_sse(self.client, "POST", self.url, content=body, headers={
            "Content-Type": "application/json", "Accept": "text/event-stream"})
        es = cm.__enter__()

        def read() -> tuple[int, str]:
            parts: list[str] = []
            n = 0
            loads = json.loads
            try:
                for sse in es.iter_sse():
                    if sse.data == "[DONE]":
                        break
                    obj = loads(sse.data)
                    n += 1
                    choices = obj.get("choices")
                    if choices:
                        c = choices[0]["delta"].get("content")
                        if c:
                            parts.append(c)
            finally:
                cm.__exit__(None, None, None)
            return n, "".join(parts)

        return read, es.response.close

    def close(self) -> None:
        self.client.close()


ADAPTERS: dict[str, Callable[[str], Adapter]] = {
    "alltoken": AllTokenAdapter, "openai": OpenAIAdapter, "httpx-sse": HttpxSSEAdapter}


# -- the probe ---------------------------------------------------------------------------------


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])
    return out


def _fds() -> tuple[int, int]:
    """Open file descriptors of this process, and the highest one."""
    fds = [int(x) for x in os.listdir("/proc/self/fd")]
    return len(fds) - 1, max(fds)  # less the one listdir itself held


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+: ``5`` to ``/proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _switches() -> int:
    """Voluntary context switches of all threads of this process (each one a wake-up)."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            text = Path(f"/proc/self/task/{tid}/status").read_text()
        except OSError:
            continue  # the thread has just ended
        i = text.find("voluntary_ctxt_switches:")
        if i >= 0:
            total += int(text[i + 24 : text.index("\n", i)])
    return total


class Phase:
    """Streams of one group, one reader thread each."""

    def __init__(self, adapter: Adapter, base: str, group: str, signals: bool) -> None:
        self.adapter, self.base, self.group, self.signals = adapter, base, group, signals
        self.sig: dict[int, threading.Event] = {}
        self.abort_fn: dict[int, Callable[[], None]] = {}
        self.done: dict[int, threading.Event] = {}
        #: (outcome, monotonic ns at the end, JSON chunks, text or None)
        self.result: dict[int, tuple[str, int, int, Optional[str]]] = {}
        self.errors: dict[str, int] = {}
        self.threads: list[threading.Thread] = []
        self.cond = threading.Condition()
        self.opened = 0
        self.failed_open = 0

    def _reader(self, i: int) -> None:
        try:
            read, abort = self.adapter.open(f"{self.group}:{i}", self.sig.get(i))
        except BaseException as exc:
            t = time.monotonic_ns()
            self.result[i] = (f"open {type(exc).__name__}", t, 0, None)
            self._note(exc)
            with self.cond:
                self.failed_open += 1
                self.cond.notify_all()
            self.done[i].set()
            return
        self.abort_fn[i] = abort
        with self.cond:
            self.opened += 1
            self.cond.notify_all()
        try:
            n, text = read()
            t = time.monotonic_ns()
            self.result[i] = ("ended", t, n, text)
        except BaseException as exc:
            t = time.monotonic_ns()  # first thing: the moment the reader got the exception
            self.result[i] = (type(exc).__name__, t, 0, None)
            self._note(exc)
        self.done[i].set()

    def _note(self, exc: BaseException) -> None:
        key = f"{type(exc).__name__}: {exc}"[:120]
        self.errors[key] = self.errors.get(key, 0) + 1

    def start(self, ids: range) -> None:
        for i in ids:
            if self.signals:
                self.sig[i] = threading.Event()
            self.done[i] = threading.Event()
            th = threading.Thread(target=self._reader, args=(i,), daemon=True)
            self.threads.append(th)
            th.start()

    def wait_open(self, n: int, timeout: float = 60.0) -> bool:
        """Until *n* streams have their headers (or failed to open)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.opened + self.failed_open >= n, timeout)

    def wait_held(self, n: int, timeout: float = 10.0) -> int:
        """Until the server holds *n* of this group's streams; how many it holds."""
        end = time.monotonic() + timeout
        while True:
            held: int = control(self.base, "state", g=self.group)["held"]
            if held >= n or time.monotonic() > end:
                return held
            time.sleep(0.02)

    def join(self, timeout: float) -> int:
        """Join every reader within *timeout* in all; how many are still running."""
        end = time.monotonic() + timeout
        for th in self.threads:
            th.join(max(0.0, end - time.monotonic()))
        return sum(th.is_alive() for th in self.threads)


def _idle(seconds: float, n: int) -> dict[str, Any]:
    """CPU of the whole process while every stream waits, % of one core; wake-ups."""
    s0 = _switches()
    c0, w0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    s1 = _switches()
    return {"cpu_pct": cpu / wall * 100, "wall_s": wall,
            "wakeups_per_s_per_stream": (s1 - s0) / wall / max(1, n)}


def _abort(ph: Phase, ids: list[int], wait: float) -> dict[str, Any]:
    """Abort *ids* from one other thread, one after the other, and wait up to *wait*
    seconds for their readers to end; then hang up on those still running."""
    t_set: dict[int, int] = {}
    fails: dict[str, int] = {}

    def run() -> None:
        for i in ids:
            fn = ph.abort_fn[i]
            t_set[i] = time.monotonic_ns()  # the clock starts in the aborting thread
            try:
                fn()
            except Exception as exc:  # reported; the reader may still be woken
                k = f"{type(exc).__name__}: {exc}"[:100]
                fails[k] = fails.get(k, 0) + 1

    th = threading.Thread(target=run, daemon=True)
    th.start()
    end = time.monotonic() + wait
    for i in ids:
        ph.done[i].wait(max(0.0, end - time.monotonic()))
    th.join(max(0.0, end - time.monotonic()))
    # A reader that ended before its abort (an error of its own) is left out of the figures.
    early = {i for i in ids if ph.done[i].is_set() and (i not in t_set or
                                                        ph.result[i][1] < t_set[i])}
    woken = [i for i in ids if ph.done[i].is_set() and i not in early]
    ms = [(ph.result[i][1] - t_set[i]) / 1e6 for i in woken]
    # Sockets the server saw closed (give the closes a moment to arrive).
    want = set(ids)
    closed: dict[int, int] = {}
    until = time.monotonic() + (0.5 if len(woken) == len(ids) else 0.2)
    while time.monotonic() < until:
        closed = {int(k): v for k, v in control(ph.base, "state", g=ph.group)["closed"].items()
                  if int(k) in want}
        if len(closed) == len(ids):
            break
        time.sleep(0.02)
    closed_ms = [(v - t_set[i]) / 1e6 for i, v in closed.items() if i in t_set]
    if len(woken) < len(ids):
        if len(woken) == 0 and len(ids) > 1:
            control(ph.base, "hangup", g=ph.group)
        else:
            for i in ids:
                if not ph.done[i].is_set():
                    control(ph.base, "hangup", g=ph.group, i=i)
        end = time.monotonic() + HANGUP_WAIT
        for i in ids:
            ph.done[i].wait(max(0.0, end - time.monotonic()))
    outcomes: dict[str, int] = {}
    for i in ids:
        o = ph.result.get(i, ("running",))[0]
        outcomes[o] = outcomes.get(o, 0) + 1
    # A reader still running now is stuck until its read timeout: the server's close did
    # not wake it either (its socket's fd was closed by the abort and may be reused).
    hung = sum(1 for i in ids if not ph.done[i].is_set())
    return {"n": len(ids) - len(early), "ended_before_abort": len(early), "woken": len(woken),
            "hung": hung, "ms": ms, "closed": len(closed),
            "closed_ms": closed_ms, "outcomes": outcomes, "abort_errors": fails,
            "aborter_stuck": th.is_alive()}


def _summary(ms: list[float]) -> dict[str, Any]:
    if not ms:
        return {}
    return {"p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "max_ms": max(ms)}


def probe(name: str, n: int, base: str, quick: bool, n_max: int) -> dict[str, Any]:
    s = Settings(quick)
    raise_nofile()
    threading.stack_size(STACK)
    adapter = ADAPTERS[name](base)
    import clients  # the truth of the corpus (expected text)

    out: dict[str, Any] = {"client": name, "n": n, "version": adapter.version(),
                           "abort_how": adapter.abort_how, "nofile": raise_nofile()}
    t_start = time.monotonic()
    timeline: dict[str, float] = {}

    def mark(what: str) -> None:
        timeline[what] = round(time.monotonic() - t_start, 3)

    out["timeline_s"] = timeline
    k = s.k(n)
    want_text, n_json = clients.expected_text(k)
    control(base, "prepare", k=k)
    control(base, "prepare", k=20)

    # Warm-up: one whole stream (imports, the first connection, code paths).
    warm = Phase(adapter, base, f"{name}-{n}-warm", signals=False)
    warm.start(range(1))
    warm.wait_open(1)
    control(base, "release", g=warm.group, k=20)
    warm.join(30)
    gc.collect()
    st, (fds0, _) = _status(), _fds()
    base_rss = st["VmRSS"]
    base_threads, base_py_threads = st["Threads"], threading.active_count()
    out["baseline"] = {"rss_kb": base_rss, "threads": base_threads, "fds": fds0,
                       "py_threads": base_py_threads}
    out["hwm_reset"] = _reset_hwm()

    mark("warm")
    # Phase W: N streams wait without a signal, then all stream.
    w = Phase(adapter, base, f"{name}-{n}-W", signals=False)
    t0 = time.monotonic()
    w.start(range(n))
    w.wait_open(n, OPEN_MAX)
    opened_s = time.monotonic() - t0
    held = w.wait_held(w.opened)
    time.sleep(0.3)  # every reader is now blocked in its read
    st, (fds_w, maxfd_w) = _status(), _fds()
    ph_w: dict[str, Any] = {"opened": w.opened, "failed_open": w.failed_open, "held": held,
                            "open_s": opened_s, "threads": st["Threads"], "fds": fds_w,
                            "max_fd": maxfd_w, "rss_wait_kb": st["VmRSS"]}
    mark("W open")
    ph_w["idle"] = _idle(s.idle_s, w.opened)

    def release(ph: Phase) -> dict[str, Any]:
        gc.collect()
        c0, w0 = time.process_time(), time.monotonic_ns()
        released = control(base, "release", g=ph.group, k=k)["released"]
        left = ph.join(120)
        cpu = time.process_time() - c0
        ends = [r[1] for r in ph.result.values() if r[0] == "ended"]
        chunks = sum(r[2] for r in ph.result.values())
        wall = (max(ends) - w0) / 1e9 if ends else None
        return {"released": released, "still_running": left, "chunks": chunks,
                "text_ok": sum(1 for r in ph.result.values()
                               if r[0] == "ended" and r[3] == want_text),
                "wall_s": wall, "cpu_s": cpu,
                "chunks_s": chunks / wall if wall and chunks else None}

    rounds = [release(w)]
    st = _status()
    ph_w.update(k=k, json_chunks_per_stream=n_json, hwm_kb=st["VmHWM"],
                rss_per_stream_kb=(st["VmHWM"] - base_rss) / n,
                rss_wait_per_stream_kb=(ph_w["rss_wait_kb"] - base_rss) / n)
    for j in range(1, s.rounds):  # more rounds for the rate only: the best is kept
        if sum(r["wall_s"] or 0.0 for r in rounds) > s.round_budget:
            break
        again = Phase(adapter, base, f"{name}-{n}-W{j}", signals=False)
        again.start(range(n))
        again.wait_open(n, OPEN_MAX)
        again.wait_held(again.opened)
        time.sleep(0.2)
        rounds.append(release(again))
        w.errors.update({f"round {j + 1}: {e}": c for e, c in again.errors.items()})
    best = max(rounds, key=lambda r: r["chunks_s"] or 0.0)
    ph_w.update(rounds=rounds, released=sum(r["released"] for r in rounds),
                text_ok=sum(r["text_ok"] for r in rounds),
                still_running=sum(r["still_running"] for r in rounds),
                chunks=best["chunks"], stream_wall_s=best["wall_s"],
                stream_cpu_s=best["cpu_s"], chunks_s=best["chunks_s"],
                cpu_s_per_1000=best["cpu_s"] / best["chunks"] * 1000 if best["chunks"]
                else None, errors=w.errors)
    gc.collect()
    ph_w["fds_after"], _ = _fds()
    ph_w["threads_after"] = _status()["Threads"]
    out["W"] = ph_w
    mark("W streamed")

    # Phase A: N streams wait with a signal each (alltoken); then aborts. At the largest N,
    # M more streams wait beside the N, for the one-of-N trials.
    m = s.single_trials if n == n_max and n > 1 else 0
    a = Phase(adapter, base, f"{name}-{n}-A", signals=adapter.signals)
    t0 = time.monotonic()
    a.start(range(n + m))
    a.wait_open(n + m, OPEN_MAX)
    opened_s = time.monotonic() - t0
    held = a.wait_held(a.opened)
    time.sleep(0.3)
    st, (fds_a, maxfd_a) = _status(), _fds()
    ph_a: dict[str, Any] = {"signals": adapter.signals, "streams": n + m, "opened": a.opened,
                            "failed_open": a.failed_open, "held": held, "open_s": opened_s,
                            "threads": st["Threads"], "fds": fds_a, "max_fd": maxfd_a}
    mark("A open")
    ph_a["idle"] = _idle(s.idle_s, a.opened)
    live = [i for i in range(n) if i in a.abort_fn and not a.done[i].is_set()]
    if m:
        # One of N at a time: each trial aborts one of the M extra streams, so N or more
        # keep waiting throughout.
        extra = [i for i in range(n, n + m) if i in a.abort_fn and not a.done[i].is_set()]
        single: list[dict[str, Any]] = []
        not_woken = 0
        budget = time.monotonic() + s.single_budget
        while extra and not_woken < s.give_up and time.monotonic() < budget:
            r = _abort(a, [extra.pop(0)], s.single_wait)
            if r["ended_before_abort"]:
                continue  # that stream had already ended (an error of its own): no trial
            single.append({"ms": r["ms"][0] if r["ms"] else None, "closed": r["closed"],
                           "hung": r["hung"], "outcomes": r["outcomes"]})
            not_woken = 0 if r["woken"] else not_woken + 1
            time.sleep(0.02)
        for i in extra:  # those left when a client was not tried further
            control(base, "hangup", g=a.group, i=i)
        ms = [t["ms"] for t in single if t["ms"] is not None]
        ph_a["one"] = {"trials": len(single), "woken": len(ms),
                       "closed": sum(t["closed"] for t in single),
                       "hung": sum(t["hung"] for t in single),
                       "outcomes": [t["outcomes"] for t in single], **_summary(ms)}
    mark("A one")
    r = _abort(a, live, s.all_wait)
    ph_a["all"] = {k2: v for k2, v in r.items() if k2 not in ("ms", "closed_ms")}
    ph_a["all"].update(_summary(r["ms"]))
    if r["closed_ms"]:
        ph_a["all"]["closed_p50_ms"] = pct(r["closed_ms"], 0.5)
    mark("A all")
    ph_a["still_running"] = a.join(0.5)
    ph_a["errors"] = a.errors
    out["A"] = ph_a
    mark("A joined")

    # After: back to the baseline?
    del w, a
    gc.collect()
    time.sleep(0.1)
    st, (fds1, _) = _status(), _fds()
    after = {"threads": st["Threads"], "py_threads": threading.active_count(), "fds": fds1}
    adapter.close()
    gc.collect()
    st, (fds2, _) = _status(), _fds()
    after.update(threads_closed=st["Threads"], fds_closed=fds2)
    out["after"] = after
    mark("after")
    return out


# -- the parent ----------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[concurrency] {msg}", file=sys.stderr, flush=True)


def available(names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """The clients importable by this Python, and why each other one is not."""
    found, missing = [], {}
    mods = {"alltoken": ["alltoken"], "openai": ["openai", "httpx"],
            "httpx-sse": ["httpx", "httpx_sse"]}
    import importlib

    for name in names:
        try:
            for m in mods[name]:
                importlib.import_module(m)
        except Exception as exc:  # an absent peer is reported, not fatal
            missing[name] = f"{type(exc).__name__}: {exc}"[:120]
            continue
        found.append(name)
    return found, missing


def measure(names: list[str], quick: bool, ns: Optional[tuple[int, ...]] = None
            ) -> dict[str, Any]:
    """Every probe (client, N) in a fresh interpreter of this Python, against one server."""
    s = Settings(quick)
    ns = ns or (QUICK_NS if quick else NS)
    runs: dict[str, dict[str, Any]] = {name: {} for name in names}
    started = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = Server()
    try:
        for n in ns:
            for name in names:
                log(f"{name}, {n:,} stream{'s' if n > 1 else ''}")
                try:
                    r = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                        "--probe", name, str(n), server.base, str(max(ns)),
                                        *(["--quick"] if quick else [])], env=env,
                                       capture_output=True, text=True, timeout=PROBE_MAX + 30)
                except subprocess.TimeoutExpired:
                    runs[name][str(n)] = {"failed": f"the probe ran over {PROBE_MAX + 30:g} s"}
                    continue
                if r.returncode != 0 or not r.stdout.strip():
                    why = (r.stderr.strip().splitlines() or ["failed"])[-1][:160]
                    runs[name][str(n)] = {"failed": f"probe exited {r.returncode}: {why}"}
                    continue
                runs[name][str(n)] = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        server.close()
    return {"meta": {"quick": quick, "ns": list(ns), "idle_s": s.idle_s,
                     "total_chunks": s.total_chunks, "k_min": s.k_min, "rounds": s.rounds,
                     "single_trials": s.single_trials, "single_wait_s": s.single_wait,
                     "all_wait_s": s.all_wait, "read_timeout_s": READ_TIMEOUT,
                     "stack_bytes": STACK, "seconds": round(time.monotonic() - started, 1)},
            "clients": names, "runs": runs}


# -- the figures: table rows and targets ----------------------------------------------------------


def _get(r: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(r, dict) or p not in r:
            return None
        r = r[p]
    return r


def _abort_cell(r: dict[str, Any], which: str, key: str) -> str:
    x = r.get(which)
    if x is None:
        return "-"
    n = x.get("n", x.get("trials", 0))
    if x["woken"] < n:
        return f"woke {x['woken']}/{n}"
    return f"{x[key]:.2f}" if key in x else "-"


def rows(conc: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """``(label, {client: cell})`` per row, for this script's table and ``run.py``'s."""
    out: list[tuple[str, dict[str, str]]] = []
    runs = conc.get("runs", {})
    ns = conc.get("meta", {}).get("ns", [])

    def add(label: str, cell: Callable[[dict[str, Any], str], str], n: int) -> None:
        cells = {}
        for name, by_n in runs.items():
            r = by_n.get(str(n))
            if r is None:
                continue
            cells[name] = "failed" if "failed" in r else cell(r, name)
        if cells:
            out.append((label, cells))

    def f(v: Optional[float], fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for n in ns:
        lead = f"7 {n:,} stream{'s' if n > 1 else ''}:"
        add(f"{lead} idle CPU % core, no signal",
            lambda r, c: f(_get(r, "W", "idle", "cpu_pct"), ".2f"), n)
        add(f"{lead} idle CPU % core, signal",
            lambda r, c: f(_get(r, "A", "idle", "cpu_pct"), ".2f")
            if _get(r, "A", "signals") else "n/a", n)
        add(f"{lead} peak RSS KiB / stream",
            lambda r, c: f(_get(r, "W", "rss_per_stream_kb"), ",.1f"), n)

        def rate(r: dict[str, Any], c: str) -> str:
            w = r["W"]
            if w["text_ok"] < w["released"] or w["still_running"]:
                return f"WRONG {w['released'] - w['text_ok']}/{w['released']}"
            return f(w["chunks_s"], ",.0f")

        add(f"{lead} aggregate chunks/s", rate, n)
        add(f"{lead} abort all p50 ms", lambda r, c: _abort_cell(r["A"], "all", "p50_ms"), n)
        add(f"{lead} abort all p99 ms", lambda r, c: _abort_cell(r["A"], "all", "p99_ms"), n)
        add(f"{lead} abort all, socket closed",
            lambda r, c: f"{r['A']['all']['closed']}/{r['A']['all']['n']}", n)
        if n == max(ns) and n > 1:
            add(f"{lead} abort one p50 ms", lambda r, c: _abort_cell(r["A"], "one", "p50_ms"), n)
            add(f"{lead} abort one p99 ms", lambda r, c: _abort_cell(r["A"], "one", "p99_ms"), n)
        add(f"{lead} threads/fds after, +base",
            lambda r, c: f"{r['after']['threads'] - r['baseline']['threads']:+d}/"
                         f"{r['after']['fds'] - r['baseline']['fds']:+d}", n)
    return out


def targets(conc: dict[str, Any]) -> list[dict[str, Any]]:
    """alltoken's targets at the largest N, each met or missed."""
    runs = conc.get("runs", {})
    ns = conc.get("meta", {}).get("ns", [])
    if not ns:
        return []
    n = max(ns)
    mine = runs.get("alltoken", {}).get(str(n))
    label = f"{n:,} streams"
    if mine is None or "failed" in mine:
        why = (mine or {}).get("failed", "not measured")
        return [{"target": f"concurrency ({label})", "met": False, "figure": why}]
    out = []
    idle = _get(mine, "A", "idle", "cpu_pct")
    out.append({"target": f"idle CPU <= 1% of one core, {label} waiting with signals",
                "met": idle is not None and idle <= 1.0,
                "figure": f"{idle:.2f}% ({_get(mine, 'A', 'idle', 'wakeups_per_s_per_stream'):.0f}"
                          " wake-ups/s per stream)" if idle is not None else "-"})
    for which, what in (("all", f"{label} aborted at once"), ("one", f"one of {label}")):
        x = mine["A"].get(which)
        if x is None:
            continue
        n_ = x.get("n", x.get("trials", 0))
        met = x["woken"] == n_ and "p99_ms" in x and x["p99_ms"] <= 5.0
        fig = (f"p99 {x['p99_ms']:.2f} ms, p50 {x['p50_ms']:.2f} ms" if "p99_ms" in x else "-")
        if x["woken"] < n_:
            fig = f"not woken in {n_ - x['woken']} of {n_}; " + fig
        out.append({"target": f"abort p99 <= 5 ms, {what}", "met": met, "figure": fig})
    peers_r = {k: v.get(str(n)) for k, v in runs.items() if k != "alltoken"}
    peers_r = {k: v for k, v in peers_r.items() if v and "failed" not in v}
    if peers_r:
        rss = {k: v["W"]["rss_per_stream_kb"] for k, v in peers_r.items()}
        best = min(rss, key=lambda k: rss[k])
        m = mine["W"]["rss_per_stream_kb"]
        out.append({"target": f"peak RSS per stream <= the best peer's, {label}",
                    "met": m <= rss[best],
                    "figure": f"{m:,.1f} KiB, best peer {best} {rss[best]:,.1f} KiB"})
        cs = {k: v["W"]["chunks_s"] or 0.0 for k, v in peers_r.items()}
        best = max(cs, key=lambda k: cs[k])
        m = mine["W"]["chunks_s"] or 0.0
        ok = mine["W"]["text_ok"] == mine["W"]["released"]
        out.append({"target": f"aggregate chunks/s >= the best peer's, {label}",
                    "met": ok and m >= cs[best],
                    "figure": f"{m:,.0f}, best peer {best} {cs[best]:,.0f}"
                              + ("" if ok else " (alltoken's text WRONG)")})
    return out


def notes(conc: dict[str, Any]) -> list[str]:
    """What a reader needs beside the table: each client's abort, errors, fd ceilings."""
    out = []
    runs = conc.get("runs", {})
    meta = conc.get("meta", {})
    for name, by_n in runs.items():
        how = next((r.get("abort_how") for r in by_n.values() if "abort_how" in r), "")
        out.append(f"{name}: {how}")
        for n, r in by_n.items():
            n_int = int(n)
            lead = f"{n_int:,} stream{'s' if n_int > 1 else ''}:"
            if "failed" in r:
                out.append(f"  {lead} {r['failed']}")
                continue
            errs = {**r["W"]["errors"], **r["A"]["errors"]}
            if r["W"]["failed_open"] or r["A"]["failed_open"]:
                out.append(f"  {lead} {r['W']['failed_open']} + {r['A']['failed_open']}"
                           " streams failed to open")
            shown = [(k, v) for k, v in errs.items() if not k.startswith("AbortedError")]
            for k, v in shown[:3]:
                out.append(f"  {lead} x{v} {k}")
            hung = r["A"]["all"].get("hung", 0) + r["A"].get("one", {}).get("hung", 0)
            if hung:
                out.append(f"  {lead} {hung} reader(s) not ended by the server's hang-up "
                           "either: stuck until the read timeout (the close freed the socket's "
                           "fd, which another socket may reuse, while the reader polls it)")
            top = max(r["W"]["max_fd"], r["A"]["max_fd"])
            if top >= 1000:
                out.append(f"  {lead} highest fd {top} (a client that waited with "
                           "select.select() could not go past 1023)")
            early = r["A"]["all"].get("ended_before_abort", 0)
            if early:
                out.append(f"  {lead} {early} reader(s) ended before their abort (see the "
                           "errors): left out of the abort figures")
            slow = [f"{ph} {r[ph]['open_s']:.1f} s" for ph in ("W", "A")
                    if r[ph]["open_s"] > 5]
            if slow:
                out.append(f"  {lead} opening the streams took (W no signal, A "
                           f"{'signals' if r['A']['signals'] else 'the same'}): "
                           + ", ".join(slow))
            if r["W"]["opened"] < n_int or r["A"]["opened"] < r["A"]["streams"]:
                out.append(f"  {lead} opened only {r['W']['opened']} (W) and "
                           f"{r['A']['opened']} of {r['A']['streams']} (A) within "
                           f"{OPEN_MAX:g} s")
            one = r["A"].get("one")
            if one and one["trials"] < r["A"]["streams"] - n_int and one["woken"] == \
                    one["trials"]:
                out.append(f"  {lead} {one['trials']} one-of-N trials in the time allowed")
            aft = r["after"]
            if aft["fds_closed"] != r["baseline"]["fds"] or aft["threads"] != \
                    r["baseline"]["threads"]:
                out.append(f"  {lead} after: threads {aft['threads']} (baseline "
                           f"{r['baseline']['threads']}), fds {aft['fds']} with the client "
                           f"open, {aft['fds_closed']} after close() (baseline "
                           f"{r['baseline']['fds']})")
    out.append(f"idle windows {meta.get('idle_s')} s; chunks per stream max({meta.get('k_min')},"
               f" {meta.get('total_chunks'):,} / N), chunks/s the best of {meta.get('rounds')} "
               f"round(s); a reader not ended {meta.get('all_wait_s')}"
               f" s after the abort of all ({meta.get('single_wait_s')} s for one) is 'not "
               "woken' and is then hung up on by the server")
    return out


def print_report(conc: dict[str, Any]) -> None:
    cols = [c for c in CLIENTS if c in conc.get("runs", {})]
    rs = rows(conc)
    width = max([len(r[0]) for r in rs] + [10]) + 1
    cw = max(14, *(len(c) + 2 for c in cols))
    meta = conc["meta"]
    print(f"\nConcurrency: N streams in one process sharing one client, one thread each"
          f"{' - QUICK run' if meta['quick'] else ''} ({meta['seconds']:.0f} s)")
    print(f"{'':<{width}}" + "".join(f"{c:>{cw}}" for c in cols))
    for label, cells in rs:
        print(f"{label:<{width}}" + "".join(f"{cells.get(c, ''):>{cw}}" for c in cols))
    for line in notes(conc):
        print(f"  {line}")
    print("\nTargets for alltoken (concurrency):")
    for t in targets(conc):
        print(f"  {'PASS' if t['met'] else 'MISS'}  {t['target']}: {t['figure']}")


def main(argv: Optional[list[str]] = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    if args_in[:1] == ["--serve"]:
        serve(args_in[1])
        return 0
    p = argparse.ArgumentParser(prog="concurrency", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter windows (under a minute)")
    p.add_argument("--no-peers", action="store_true", help="alltoken only, no .venv")
    p.add_argument("--ns", help=f"numbers of streams (default: {','.join(map(str, NS))}; "
                   f"with --quick {','.join(map(str, QUICK_NS))})")
    p.add_argument("--json", default=str(RESULTS / "concurrency.json"),
                   help="default: %(default)s")
    p.add_argument("--probe", nargs=4, metavar=("CLIENT", "N", "BASE", "NMAX"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(args_in)
    if args.probe:
        name, n, base, n_max = args.probe
        killer = threading.Timer(PROBE_MAX, os._exit, (3,))
        killer.daemon = True
        killer.start()
        print(json.dumps(probe(name, int(n), base, args.quick, int(n_max))), flush=True)
        os._exit(0)  # no waiting for stray threads at exit
    import peers

    if not args.no_peers and not peers.in_venv():
        vpy = peers.setup()
        if vpy is not None:
            log(f"re-running under {vpy}")
            return subprocess.run([str(vpy), str(Path(__file__).resolve()), *args_in]
                                  ).returncode
        log("the peers' venv could not be built: alltoken only")
    names, missing = available(("alltoken",) if args.no_peers else CLIENTS)
    ns = tuple(int(x) for x in args.ns.split(",")) if args.ns else None
    conc = measure(names, args.quick, ns)
    conc["missing"] = missing
    print_report(conc)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(conc, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
