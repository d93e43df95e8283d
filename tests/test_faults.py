"""The fault table: every way a server or the network can fail a streamed request.

Each case runs against a fresh server over real loopback sockets (the bundled
``LocalServer``, or for faults it cannot script a tiny raw-socket server defined here)
through the public API, and asserts four things:

(a) the exact exception class raised, or success;
(b) that ``text`` and ``reasoning`` hold exactly what arrived before the fault, no more
    and no less, and agree with what the caller was handed chunk by chunk;
(c) that the call returned within a bound derived from its timeout: what the fault
    legitimately costs (a read timeout, a deadline, a ``Retry-After``) plus ``SLACK``.
    Faults that cost nothing run with a read timeout longer than the bound, so the bound
    proves no timeout was waited out. A lower bound is asserted only where it means
    something (the timeout did run, the requested wait was slept);
(d) that no socket or thread leaked: after the client and the server are closed, the
    process's threads and file descriptors are those it had before the case.

Cases that hit the limits of the SSE decoder also measure, with ``tracemalloc``, that
memory stayed within a small multiple of the limit. Every case passes: none is
expected to fail.
"""

from __future__ import annotations

import functools
import gc
import gzip
import re
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import formatdate
from typing import Any, Callable, Optional, Union

import pytest
from conftest import assert_back_to, snapshot

import alltoken
import alltoken._stream as client_module
from alltoken import testing as t
from alltoken.sse import DEFAULT_MAX_LINE_BYTES, SSEDecoder

KEY = "sk-test-faults"
MSG = [{"role": "user", "content": "hi"}]

#: Added to every bound: scheduling noise on a loaded 2-core machine.
SLACK = 2.0
#: The timeout of cases whose fault should cost no waiting: longer than any bound, so
#: returning within the bound proves that no timeout was waited out.
PROMPT = alltoken.Timeout(connect=5.0, read=5.0)
#: The decoder's default limits, which the client uses (it exposes no setting for them).
LINE_LIMIT = DEFAULT_MAX_LINE_BYTES
EVENT_LIMIT = 4 * DEFAULT_MAX_LINE_BYTES
#: Memory the client may use besides what a limit allows (buffers, parsed objects).
MEMORY_OVERHEAD = 1 << 20

#: A chunk with ``choices[0].delta.content`` = "%s", as raw SSE bytes.
CONTENT = b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'


# -- a raw-socket server for faults the LocalServer does not script -----------------


Script = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """Serves each connection in turn: reads one request, then runs *script* on the
    socket, then closes it. ``close()`` interrupts a script and joins the thread."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.requests = 0
        self._conn: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="raw-fault-server")
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conn = conn
            try:
                conn.settimeout(5.0)
                if read_request(conn):
                    self.requests += 1
                    self._script(conn, self._stop)
            except OSError:
                pass  # the client hung up, or close() shut the socket
            finally:
                with self._lock:
                    self._conn = None
                conn.close()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(10)
        self._listener.close()

    def wait_for_connections(self, n: int = 0, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if (self._conn is not None) == bool(n):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the client did not hang up")
            time.sleep(0.005)


def read_request(conn: socket.socket) -> bool:
    """Read one request (headers and Content-Length body); False at end of file."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = conn.recv(65536)
        if not more:
            return False
        buf += more
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            return False
        body += more
    return True


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
               b"Transfer-Encoding: chunked\r\nx-request-id: req-raw\r\n\r\n")


def framed(body: bytes) -> bytes:
    """*body* as one HTTP chunk."""
    return b"%x\r\n%s\r\n" % (len(body), body)


def endless(first: bytes, block: bytes) -> Script:
    """Send *first*, then *block* again and again until the client hangs up."""
    head = STREAM_HEAD + framed(first)
    frame = framed(block)

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        while not stop.is_set():
            conn.sendall(frame)

    return script


def long_line(first: bytes, length: int) -> Script:
    """Send *first*, then one line: ``data: `` and *length* bytes ``x`` (in 64 KiB
    chunks), which does end, then a content event and ``[DONE]``."""
    piece = framed(b"x" * 65536)

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(STREAM_HEAD + framed(first + b"data: "))
        sent = 0
        while sent + 65536 <= length and not stop.is_set():
            conn.sendall(piece)
            sent += 65536
        rest = b"x" * (length - sent)
        conn.sendall(framed(rest + b"\n\n" + CONTENT % b"late" + b"data: [DONE]\n\n")
                     + b"0\r\n\r\n")
        read_request(conn)  # hold the connection until the client hangs up

    return script


def gzip_bomb(plain: bytes) -> Script:
    """Send *plain* gzip-compressed (``Content-Encoding: gzip``) in one chunk."""
    head = STREAM_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n")
    body = framed(gzip.compress(plain, 9)) + b"0\r\n\r\n"

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head + body)
        read_request(conn)  # hold the connection until the client hangs up

    return script


# -- the table ---------------------------------------------------------------------


Reply = Any  # an alltoken.testing reply


@dataclass
class Case:
    """One fault and what must come of it.

    ``replies`` builds the LocalServer's queued replies (at run time: some depend on the
    clock); ``raw`` instead runs a :class:`RawServer` script. ``wait`` is what the fault
    may legitimately cost in seconds; the call must return within ``wait + SLACK`` and,
    when ``at_least`` is set, not before it.
    """

    replies: Optional[Callable[[], list[Reply]]] = None
    raw: Optional[Callable[[], Script]] = None
    expect: Optional[type[alltoken.AllTokenError]] = None  # None: success
    text: str = ""
    reasoning: str = ""
    match: Optional[str] = None
    timeout: Union[float, alltoken.Timeout] = PROMPT
    wait: float = 0.0
    at_least: float = 0.0
    max_retries: int = 0
    requests: Optional[int] = 1
    api: str = "create"  # or "stream": alltoken.stream(..., client=client)
    memory_limit: Optional[int] = None  # tracemalloc peak <= multiple * this + overhead
    memory_multiple: float = 2.0
    decoder: dict[str, int] = field(default_factory=dict)  # scaled-down SSE limits
    check: Optional[Callable[[Outcome], None]] = None


@dataclass
class Outcome:
    error: Optional[alltoken.AllTokenError]
    text: str
    reasoning: str
    delivered: str  # the content the caller was handed, piece by piece
    delivered_reasoning: str
    elapsed: float
    stream: Any
    peak: int = 0


def pace(body: bytes, seconds: float) -> list[t.Step]:
    """*body* one byte at a time (each its own HTTP chunk and send), *seconds* apart."""
    steps: list[t.Step] = []
    for i in range(len(body)):
        steps += [t.sleep(seconds), t.raw(body[i : i + 1])]
    return steps


def beats(count: int, every: float) -> list[t.Step]:
    """*count* keep-alive comments, *every* seconds apart."""
    steps: list[t.Step] = []
    for _ in range(count):
        steps += [t.comment("keep-alive"), t.sleep(every)]
    return steps


def retry_after_date(seconds: int) -> str:
    # HTTP dates have whole seconds: the wait asked for is in (seconds - 1, seconds].
    return formatdate(time.time() + seconds, usegmt=True)


def error_code_is_none(out: Outcome) -> None:
    assert isinstance(out.error, alltoken.APIStatusError)
    assert out.error.code is None


def cost_is_read(out: Outcome) -> None:
    assert out.stream.cost is not None and out.stream.cost.cost == Decimal("0.5")


def retry_after_is(seconds: float) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        assert isinstance(out.error, alltoken.RateLimitError)
        assert out.error.retry_after == seconds

    return check


def gzipped(body: bytes) -> list[Reply]:
    return [t.StreamReply([t.raw(gzip.compress(body))], write_size=7,
                          headers={"Content-Encoding": "gzip"})]


SLOW_TAIL = b'data:[DONE]\n\n: {"cost":"0.5"}\n'  # 30 bytes: 1.5 s at 50 ms a byte
SHORT_EVENT_LIMITS = {"max_line_bytes": 4096, "max_event_bytes": 1 << 18}


def _stream(*steps: t.Step, **kw: Any) -> Callable[[], list[Reply]]:
    """A ``replies`` of one :class:`~alltoken.testing.StreamReply` of *steps*."""
    return lambda: [t.StreamReply(list(steps), **kw)]


def _replies(*replies: Reply) -> Callable[[], list[Reply]]:
    return lambda: list(replies)


def _retryable(out: Outcome) -> None:
    assert out.error is not None and out.error.retryable


def _not_retryable(out: Outcome) -> None:
    assert out.error is not None and not out.error.retryable


def _redirect(status: int, location: str) -> Case:
    def check(out: Outcome) -> None:
        assert isinstance(out.error, alltoken.APIStatusError)
        assert out.error.status_code == status and not out.error.retryable

    return Case(replies=_replies(t.ErrorReply(status, headers={"Location": location})),
                expect=alltoken.APIStatusError, match="Location is malformed", check=check)


def _corrupt_gzip() -> list[Reply]:
    # A valid start ("Hel", flushed to a byte boundary), then in the next HTTP chunk a
    # block of the reserved type 3: zlib reports "invalid block type". (Within one piece
    # zlib gives nothing of what precedes the error.)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    start = z.compress(CONTENT % b"Hel") + z.flush(zlib.Z_SYNC_FLUSH)
    return [t.StreamReply([t.raw(start), t.raw(b"\xff" * 16)],
                          headers={"Content-Encoding": "gzip"})]


HELLO = [t.content("Hel"), t.content("lo"), t.done()]
#: The same chunk as CONTENT % b"lo", unfinished: no blank line, or no line ending at all.
UNTERMINATED_EVENT = (CONTENT % b"lo")[:-1]
UNTERMINATED_LINE = (CONTENT % b"lo")[:-2]
#: A content event, then ``event: ping``: the long line that follows (``data: xxx...``)
#: makes an event of a type the client ignores.
PING = CONTENT % b"a" + b"event: ping\n"
HTML_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n")

CASES: dict[str, Case] = {
    # -- the connection -----------------------------------------------------------------
    "reset_mid_stream": Case(
        replies=_stream(t.content("Hel"), t.sleep(0.1), t.drop(reset=True)),
        expect=alltoken.APIConnectionError, text="Hel", match="failed while streaming"),
    "reset_mid_stream_through_stream": Case(
        replies=_stream(t.content("Hel"), t.sleep(0.1), t.drop(reset=True)),
        expect=alltoken.APIConnectionError, text="Hel", match="failed while streaming",
        api="stream"),
    "fin_inside_chunked_body": Case(
        replies=_stream(t.content("Hel"), t.sleep(0.1), t.drop()),
        expect=alltoken.APIConnectionError, text="Hel", match="ended early",
        check=_retryable),
    "clean_close_before_done": Case(
        replies=_stream(t.content("Hel"), t.content("lo"), t.end()),
        expect=alltoken.APIConnectionError, text="Hello",
        match=r"ended before data: \[DONE\] after 2 chunks"),
    "drop_before_status_line": Case(
        replies=_replies(t.DropReply()),
        expect=alltoken.APIConnectionError, match="closed the connection without a response",
        check=_retryable),
    "drop_before_status_line_retried": Case(
        replies=_replies(t.DropReply(), t.StreamReply(HELLO)),
        text="Hello", max_retries=1, requests=2, wait=0.5, at_least=0.25),
    "reset_before_status_line_retried": Case(
        replies=_replies(t.DropReply(reset=True), t.StreamReply(HELLO)),
        text="Hello", max_retries=1, requests=2, wait=0.5, at_least=0.25),
    "truncated_chunk": Case(
        replies=_stream(t.content("Hel"), t.truncated_chunk()),
        expect=alltoken.APIConnectionError, text="Hel", match="ended early"),
    "malformed_chunk_size": Case(
        replies=_stream(t.content("Hel"), t.bad_chunk_size()),
        expect=alltoken.APIConnectionError, text="Hel", match="ended early",
        check=_retryable),
    "close_delimited_body": Case(
        replies=_stream(*HELLO, t.cost("0.5"), chunked=False),
        text="Hello", check=cost_is_read),
    "connection_close_on_chunked_stream": Case(
        replies=_stream(*HELLO, t.cost("0.5"), headers={"Connection": "close"}),
        text="Hello", check=cost_is_read),
    # -- time ---------------------------------------------------------------------------
    "stall_past_read_timeout": Case(
        replies=_stream(t.content("Hel"), t.sleep(30)),
        expect=alltoken.APITimeoutError, text="Hel", match=r"no byte received for 0\.5 s",
        timeout=alltoken.Timeout(connect=5.0, read=0.5), wait=0.5, at_least=0.5),
    "one_byte_every_50_ms": Case(
        replies=_stream(t.content("Hel"), t.content("lo"), *pace(SLOW_TAIL, 0.05)),
        text="Hello", timeout=alltoken.Timeout(connect=5.0, read=1.0),
        wait=1.5, at_least=1.5, check=cost_is_read),
    "keep_alives_longer_than_read_timeout": Case(
        replies=_stream(t.content("Hel"), *beats(6, 0.25), t.content("lo"), t.done()),
        text="Hello", timeout=alltoken.Timeout(connect=5.0, read=0.5),
        wait=1.5, at_least=1.5),
    "idle_timeout_despite_keep_alives": Case(
        replies=_stream(t.content("Hel"), *beats(100, 0.1)),
        expect=alltoken.APITimeoutError, text="Hel", match=r"no data event for 1 s",
        timeout=alltoken.Timeout(connect=5.0, read=0.5, idle=1.0), wait=1.0, at_least=1.0),
    "total_deadline": Case(
        replies=_stream(t.content("Hel"), *beats(100, 0.1)),
        expect=alltoken.APITimeoutError, text="Hel", match=r"within 1 s \(total timeout\)",
        timeout=alltoken.Timeout(connect=5.0, read=5.0, total=1.0), wait=1.0, at_least=1.0,
        check=_not_retryable),
    "total_deadline_shorter_than_retry_after": Case(
        # The wait asked for would outlast the deadline: the 429 is raised at once.
        replies=_replies(t.ErrorReply(429, type="rate_limit_error",
                                      headers={"Retry-After": "5"})),
        expect=alltoken.RateLimitError, max_retries=2,
        timeout=alltoken.Timeout(connect=5.0, read=5.0, total=1.0), check=retry_after_is(5)),
    # -- bytes --------------------------------------------------------------------------
    "invalid_utf8_is_replaced": Case(
        replies=_stream(t.raw(CONTENT % b"H\xffe\xc3"), t.content("llo"), t.done()),
        text="H\ufffde\ufffdllo"),
    "nul_in_a_json_string": Case(
        replies=_stream(t.raw(CONTENT % b"H\\u0000el"), t.content("lo"), t.done()),
        text="H\x00ello"),
    "nul_in_an_id_field": Case(
        replies=_stream(t.raw(b"id: a\x00b\n" + CONTENT % b"Hel"), t.content("lo"), t.done()),
        text="Hello"),
    "line_over_the_limit": Case(
        # Past the limit before its line ending arrives (each HTTP chunk is read apart).
        raw=lambda: long_line(PING, LINE_LIMIT),
        expect=alltoken.ProtocolError, text="a", match="max_line_bytes",
        memory_limit=LINE_LIMIT),
    "line_at_the_limit": Case(
        raw=lambda: long_line(PING, LINE_LIMIT - len(b"data: ")),
        text="alate", memory_limit=LINE_LIMIT, memory_multiple=6.0),
    "unterminated_event_at_eof": Case(
        replies=_stream(t.content("Hel"), t.raw(UNTERMINATED_EVENT)),
        expect=alltoken.APIConnectionError, text="Hel",
        match=r"ended before data: \[DONE\] after 1 chunks"),
    "unterminated_line_at_eof": Case(
        replies=_stream(t.content("Hel"), t.raw(UNTERMINATED_LINE)),
        expect=alltoken.APIConnectionError, text="Hel",
        match=r"ended before data: \[DONE\] after 1 chunks"),
    "malformed_json": Case(
        replies=_stream(t.content("Hel"), t.data('{"choices": [')),
        expect=alltoken.ProtocolError, text="Hel", match="malformed JSON"),
    "choices_not_a_list": Case(
        replies=_stream(t.content("Hel"), t.chunk({"choices": {"index": 0}})),
        expect=alltoken.ProtocolError, text="Hel", match=r"chunk\.choices: expected a list"),
    "delta_missing_is_an_empty_delta": Case(
        replies=_stream(t.content("Hel"), t.chunk({"choices": [{"index": 0}]}),
                        t.content("lo"), t.done()),
        text="Hello"),
    "error_event_without_code_or_type": Case(
        replies=_stream(t.content("Hel"),
                        t.error_event(code=None, type=None, message="upstream failed")),
        expect=alltoken.InternalServerError, text="Hel", match="^500 upstream failed",
        check=error_code_is_none),
    "error_event_with_a_type_only": Case(
        replies=_stream(t.content("Hel"),
                        t.error_event(code=None, type="invalid_request_error",
                                      message="bad stop sequence")),
        expect=alltoken.BadRequestError, text="Hel",
        match=r"^400 bad stop sequence \(type=invalid_request_error\)",
        check=error_code_is_none),
    "unknown_event_type": Case(
        replies=_stream(t.content("Hel"), t.raw(b'event: ping\ndata: {"choices": 7}\n\n'),
                        t.content("lo"), t.done()),
        text="Hello"),
    "gzip": Case(
        replies=lambda: gzipped(CONTENT % b"Hel" + CONTENT % b"lo" + b"data: [DONE]\n\n"
                                b': {"cost":"0.5"}\n'),
        text="Hello", check=cost_is_read),
    "corrupt_gzip": Case(
        replies=_corrupt_gzip,
        expect=alltoken.ProtocolError, text="Hel", match="corrupt gzip stream"),
    # -- HTTP ---------------------------------------------------------------------------
    "json_error_body": Case(
        replies=_replies(t.ErrorReply(400, message="no such model: m",
                                      type="invalid_request_error")),
        expect=alltoken.BadRequestError,
        match=r"^400 no such model: m \(type=invalid_request_error\)"),
    "html_502_from_a_proxy": Case(
        replies=_replies(t.ErrorReply(502, body=HTML_502)),
        expect=alltoken.InternalServerError, match=r"^502 HTTP 502: '<html>.*502 Bad Gateway",
        check=error_code_is_none),
    "empty_error_body": Case(
        replies=_replies(t.ErrorReply(503, body=b"")),
        expect=alltoken.InternalServerError, match=r"^503 HTTP 503: \(empty body\)"),
    "retry_after_seconds": Case(
        replies=_replies(*[t.ErrorReply(429, type="rate_limit_error",
                                        headers={"Retry-After": "1"})] * 2),
        expect=alltoken.RateLimitError, max_retries=1, requests=2, wait=1.0, at_least=1.0,
        check=retry_after_is(1)),
    "retry_after_http_date": Case(
        # Built when the case runs: the date asks for a wait in (1, 2] seconds.
        replies=lambda: [t.ErrorReply(429, type="rate_limit_error",
                                      headers={"Retry-After": retry_after_date(2)}),
                         t.StreamReply(HELLO)],
        text="Hello", max_retries=1, requests=2, wait=2.0, at_least=0.9),
    "rate_limit_storm": Case(
        replies=_replies(*[t.ErrorReply(429, type="rate_limit_error",
                                        headers={"Retry-After": "0.1"})] * 4),
        expect=alltoken.RateLimitError, max_retries=3, requests=4, wait=0.3, at_least=0.3,
        check=retry_after_is(0.1)),
    "redirect_location_with_a_nul": _redirect(307, "/v1/chat/\x00"),
    "redirect_location_not_a_url": _redirect(308, "http://[x/v1"),
    "redirect_location_port_out_of_range": _redirect(307, "http://h:99999/v1"),
    "json_reply_to_a_streaming_request": Case(
        replies=_replies(t.JSONReply()),
        expect=alltoken.ProtocolError, match="expected a text/event-stream response, got "
                                             "application/json"),
    # -- memory -------------------------------------------------------------------------
    "endless_line": Case(
        raw=lambda: endless(CONTENT % b"a" + b"data: ", b"x" * 65536),
        expect=alltoken.ProtocolError, text="a", match="max_line_bytes",
        memory_limit=LINE_LIMIT),
    "endless_event_of_long_data_lines": Case(
        raw=lambda: endless(CONTENT % b"a", b"data: " + b"x" * 65529 + b"\n"),
        expect=alltoken.ProtocolError, text="a", match="max_event_bytes",
        memory_limit=EVENT_LIMIT),
    "gzip_bomb": Case(
        # 64 KiB on the wire inflate to 64 MiB: one line, four times the line limit.
        raw=lambda: gzip_bomb(CONTENT % b"a" + b"data: " + b"x" * (4 * LINE_LIMIT)),
        expect=alltoken.ProtocolError, text="a", match="max_line_bytes",
        memory_limit=LINE_LIMIT),
    "endless_event_of_short_data_lines": Case(
        raw=lambda: endless(CONTENT % b"a", b"data: xy\n" * 7000),
        expect=alltoken.ProtocolError, text="a", match="max_event_bytes",
        memory_limit=SHORT_EVENT_LIMITS["max_event_bytes"], decoder=SHORT_EVENT_LIMITS,
        memory_multiple=4.0, wait=1.0),
}


# -- running a case ----------------------------------------------------------------


def consume(client: alltoken.AllToken, case: Case, measure: bool) -> Outcome:
    """Make the request, read it to its end or its error, and time it."""
    delivered: list[str] = []
    delivered_reasoning: list[str] = []
    stream: Any = None
    error: Optional[alltoken.AllTokenError] = None
    if measure:
        gc.collect()
        tracemalloc.start()
    started = time.monotonic()
    try:
        if case.api == "stream":
            stream = alltoken.stream(MSG, model="m", client=client)
            with stream:
                delivered.extend(stream)
            delivered_reasoning.append(stream.reasoning)  # TextStream yields content only
        else:
            stream = client.chat.completions.create(model="m", messages=MSG, stream=True)
            with stream:
                for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index == 0:
                            delivered.append(choice.delta.content or "")
                            delivered_reasoning.append(choice.delta.reasoning_content or "")
    except alltoken.AllTokenError as exc:  # anything else fails the test as it is
        error = exc
        if case.api == "stream" and stream is not None:
            delivered_reasoning[:] = [stream.reasoning]
    elapsed = time.monotonic() - started
    peak = 0
    if measure:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    text = stream.text if stream is not None else ""
    reasoning = stream.reasoning if stream is not None else ""
    return Outcome(error, text, reasoning, "".join(delivered), "".join(delivered_reasoning),
                   elapsed, stream, peak)


def params() -> Iterator[Any]:
    for name, case in CASES.items():
        if isinstance(case, Case):
            yield pytest.param(case, id=name)
        else:
            yield pytest.param(*case.values, marks=case.marks, id=name)


@pytest.mark.parametrize("case", list(params()))
def test_fault(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.decoder:
        # The client exposes no setting for the decoder's limits: scale them down here
        # so that the case runs in a second instead of reaching the default limits.
        monkeypatch.setattr(client_module, "SSEDecoder",
                            functools.partial(SSEDecoder, **case.decoder))
    baseline = snapshot()
    server: Any
    if case.raw is not None:
        server = RawServer(case.raw())
    else:
        assert case.replies is not None
        server = t.LocalServer(pace=0).start()
    try:
        if case.replies is not None:
            server.enqueue(*case.replies())
        client = alltoken.AllToken(api_key=KEY, base_url=server.base_url,
                                   timeout=case.timeout, max_retries=case.max_retries)
        try:
            out = consume(client, case, measure=case.memory_limit is not None)
        finally:
            client.close()
        # The client let go of every socket: the server sees no connection open.
        server.wait_for_connections(0)
        requests = server.requests if case.raw is not None else len(server.requests)
    finally:
        server.close()
    del server, client
    stream, out.stream = out.stream, None
    if stream is not None:
        stream.close()  # idempotent; the with-block closed it already

    # (a) the exact outcome
    if case.expect is None:
        assert out.error is None, f"expected success, got {out.error!r}"
    else:
        assert type(out.error) is case.expect, f"expected {case.expect}, got {out.error!r}"
        if case.match is not None:
            assert re.search(case.match, str(out.error)), str(out.error)
    if case.requests is not None:
        assert requests == case.requests
    # (b) exactly what arrived before the fault
    assert (out.text, out.reasoning) == (case.text, case.reasoning)
    assert (out.delivered, out.delivered_reasoning) == (case.text, case.reasoning)
    # memory stayed bounded by the limit that ended the stream
    if case.memory_limit is not None:
        ceiling = case.memory_multiple * case.memory_limit + MEMORY_OVERHEAD
        assert out.peak <= ceiling, (
            f"peak {out.peak / 2**20:.1f} MiB for a limit of "
            f"{case.memory_limit / 2**20:.1f} MiB")
    # (c) returned within the bound its timeout allows
    bound = case.wait + SLACK
    if case.wait == 0.0:
        read = case.timeout.read if isinstance(case.timeout, alltoken.Timeout) \
            else case.timeout
        assert read is not None and read > bound  # so the bound shows no timeout ran
    assert case.at_least <= out.elapsed <= bound, f"took {out.elapsed:.3f} s"
    if case.check is not None:
        out.stream = stream
        case.check(out)
    del stream, out
    # (d) nothing leaked
    assert_back_to(baseline)
