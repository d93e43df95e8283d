"""A local AllToken-compatible server, for offline use and for tests.

Layer 4, standard library only. It deliberately shares no code with the client
(``_client``, ``_transport``, ``_types``): a client bug cannot hide in common code. It
writes events with :func:`alltoken.sse.encode`.

    from alltoken import testing as t

    with t.LocalServer(pace=0) as server:
        server.enqueue(t.StreamReply([t.content("Hello"), t.done(), t.cost()]))
        ...  # point a client at server.base_url
        assert server.requests[0].json["stream"] is True

``POST /v1/chat/completions`` answers with the next queued reply, or, with none queued,
with a default model that streams plausible reasoning and an answer at ``pace`` seconds
per token (model ``"echo"`` streams the last user message back word by word).
``GET /v1/models`` lists models. Every request is recorded in ``requests``.

Replies: :class:`StreamReply` (a scripted ``text/event-stream`` answer built from steps),
:class:`ErrorReply`, :class:`JSONReply`, :class:`DropReply` and :class:`DelayedReply`.
Steps: :func:`content`, :func:`reasoning`, :func:`role`, :func:`tool_call`,
:func:`finish`, :func:`usage`, :func:`chunk`, :func:`data`, :func:`done`, :func:`cost`,
:func:`comment`, :func:`error_event`, :func:`raw`, :func:`sleep`, :func:`wait`,
:func:`drop`, :func:`end`, :func:`bad_chunk_size`, :func:`truncated_chunk`.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union

from .sse import Comment, ServerSentEvent, encode

__all__ = [
    "DelayedReply",
    "DropReply",
    "ErrorReply",
    "JSONReply",
    "LocalServer",
    "RecordedRequest",
    "Reply",
    "Step",
    "StreamReply",
    "bad_chunk_size",
    "chunk",
    "comment",
    "content",
    "cost",
    "data",
    "done",
    "drop",
    "end",
    "error_event",
    "finish",
    "raw",
    "reasoning",
    "role",
    "serve",
    "sleep",
    "tool_call",
    "truncated_chunk",
    "usage",
    "wait",
]

MODELS = ("alltoken-local", "echo", "deepseek-reasoner", "deepseek-chat", "claude-sonnet-4")


# -- steps ---------------------------------------------------------------------------


@dataclass
class Step:
    """One scripted action of a :class:`StreamReply`. Build them with the functions."""

    kind: str
    payload: Any = None
    seconds: float = 0.0
    gate: Optional[threading.Event] = None
    eol: bool = True


def chunk(obj: Any) -> Step:
    """``data: <json>`` with *obj* verbatim."""
    return Step("data", json.dumps(obj, ensure_ascii=False))


def data(text: str) -> Step:
    """``data: <text>`` verbatim (e.g. malformed JSON)."""
    return Step("data", text)


def _delta_chunk(delta: dict[str, Any], finish_reason: Optional[str] = None) -> dict[str, Any]:
    return {"id": "chatcmpl-local", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def content(text: str) -> Step:
    """A chunk with ``delta.content``."""
    return Step("chunk", _delta_chunk({"content": text}))


def reasoning(text: str) -> Step:
    """A chunk with ``delta.reasoning_content``."""
    return Step("chunk", _delta_chunk({"reasoning_content": text}))


def role(name: str = "assistant") -> Step:
    """A chunk with ``delta.role``."""
    return Step("chunk", _delta_chunk({"role": name, "content": ""}))


def tool_call(index: int, *, id: Optional[str] = None, name: Optional[str] = None,
              arguments: Optional[str] = None) -> Step:
    """A chunk with one tool-call delta (fields left None are omitted)."""
    call: dict[str, Any] = {"index": index}
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if arguments is not None:
        fn["arguments"] = arguments
    if fn:
        call["function"] = fn
    return Step("chunk", _delta_chunk({"tool_calls": [call]}))


def finish(reason: str = "stop") -> Step:
    """A chunk with an empty delta and ``finish_reason``."""
    return Step("chunk", _delta_chunk({}, reason))


def usage(prompt_tokens: int = 10, completion_tokens: int = 20) -> Step:
    """A usage-only chunk: ``"choices": []``."""
    return Step("chunk", {"id": "chatcmpl-local", "object": "chat.completion.chunk",
                          "created": int(time.time()), "model": None, "choices": [],
                          "usage": {"prompt_tokens": prompt_tokens,
                                    "completion_tokens": completion_tokens,
                                    "total_tokens": prompt_tokens + completion_tokens}})


def done() -> Step:
    """``data: [DONE]``."""
    return Step("data", "[DONE]")


def cost(cost: str = "0.0012", *, input_price: str = "0.0003", output_price: str = "0.0009",
         prompt_tokens: int = 15, completion_tokens: int = 42,
         final_newline: bool = True) -> Step:
    """The cost comment AllToken sends after ``[DONE]``; ``final_newline=False`` leaves
    the line unterminated (the body then ends)."""
    text = json.dumps({"cost": cost, "input_price": input_price, "output_price": output_price,
                       "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
                      separators=(",", ":"))
    return Step("comment", text, eol=final_newline)


def comment(text: str = "keep-alive") -> Step:
    """A comment line, e.g. a keep-alive."""
    return Step("comment", text)


def error_event(code: Union[int, str, None] = 429, message: str = "Rate limit exceeded",
                type: Optional[str] = "rate_limit_error") -> Step:
    """``data: {"error": {...}}`` (keys whose value is None are omitted)."""
    err: dict[str, Any] = {"message": message}
    if type is not None:
        err["type"] = type
    if code is not None:
        err["code"] = code
    return Step("data", json.dumps({"error": err}))


def raw(b: bytes) -> Step:
    """Exact bytes, with no line-ending conversion."""
    return Step("raw", bytes(b))


def sleep(seconds: float) -> Step:
    """Send nothing for *seconds* (a stall)."""
    return Step("sleep", seconds=seconds)


def wait(event: threading.Event, timeout: float = 10.0) -> Step:
    """Send nothing until the test sets *event* (or *timeout* passes)."""
    return Step("wait", gate=event, seconds=timeout)


def drop(*, reset: bool = False) -> Step:
    """Abort the connection here, leaving the chunked body unfinished (``reset=True``
    sends a TCP RST)."""
    return Step("drop", payload=reset)


def end() -> Step:
    """Finish the response cleanly now; later steps are skipped."""
    return Step("end")


def bad_chunk_size() -> Step:
    """Write a malformed chunk-size line, then close."""
    return Step("bad_chunk_size")


def truncated_chunk() -> Step:
    """Announce a chunk longer than what is written, then close."""
    return Step("truncated_chunk")


# -- replies -------------------------------------------------------------------------


class StreamReply:
    """A streamed answer: HTTP headers, then the steps' bytes.

    Args:
        steps: What to send, in order.
        status: The HTTP status.
        headers: Extra response headers.
        content_type: The ``Content-Type``.
        eol: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"`` for every line the steps write.
        write_size: Write the body in pieces of this many bytes (1 = byte by byte), each
            its own HTTP chunk; by default each step is one write.
        chunked: False sends no ``Transfer-Encoding``; the body ends when the connection
            closes.
        request_id: The ``x-request-id`` header (None: none).
        model: The ``model`` in the chunks (default: the request's).
    """

    def __init__(self, steps: Sequence[Step], *, status: int = 200,
                 headers: Optional[Mapping[str, str]] = None,
                 content_type: str = "text/event-stream", eol: str = "\n",
                 write_size: Optional[int] = None, chunked: bool = True,
                 request_id: Optional[str] = "req-local-1", model: Optional[str] = None) -> None:
        if eol not in ("\n", "\r\n", "\r"):
            raise ValueError(f"eol must be '\\n', '\\r\\n' or '\\r', got {eol!r}")
        if write_size is not None and write_size < 1:
            raise ValueError("write_size must be at least 1")
        self.steps = list(steps)
        self.status = status
        self.headers = dict(headers or {})
        self.content_type = content_type
        self.eol = eol
        self.write_size = write_size
        self.chunked = chunked
        self.request_id = request_id
        self.model = model


class ErrorReply:
    """An HTTP error status with a JSON error body (or *body* verbatim)."""

    def __init__(self, status: int, *, message: str = "error from the local server",
                 type: Optional[str] = None, json: Any = None,
                 body: Union[bytes, str, None] = None,
                 headers: Optional[Mapping[str, str]] = None,
                 content_type: Optional[str] = None,
                 request_id: Optional[str] = "req-local-err") -> None:
        self.status = status
        self.headers = dict(headers or {})
        self.request_id = request_id
        if body is not None:
            self.body = body.encode() if isinstance(body, str) else body
            self.content_type = content_type or "text/html; charset=utf-8"
        else:
            obj = json if json is not None else {
                "error": {"message": message, "type": type, "code": status}}
            self.body = _json_bytes(obj)
            self.content_type = content_type or "application/json"


class JSONReply:
    """A non-streamed 200 answer: *obj* verbatim, or a built ``chat.completion``."""

    def __init__(self, obj: Any = None, *, content: str = "Hello",
                 reasoning: Optional[str] = None, status: int = 200,
                 headers: Optional[Mapping[str, str]] = None,
                 request_id: Optional[str] = "req-local-1",
                 usage: tuple[int, int] = (10, 5)) -> None:
        self.obj = obj
        self.content = content
        self.reasoning = reasoning
        self.status = status
        self.headers = dict(headers or {})
        self.request_id = request_id
        self.usage = usage


class DropReply:
    """Read the request, then close the connection without answering (``reset=True``:
    with a TCP RST)."""

    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset


class DelayedReply:
    """Send nothing, not even the status line, until *gate* is set; then *reply*."""

    def __init__(self, gate: threading.Event, reply: Reply, *, timeout: float = 10.0) -> None:
        self.gate = gate
        self.reply = reply
        self.timeout = timeout


Reply = Union[StreamReply, ErrorReply, JSONReply, DropReply, DelayedReply]


@dataclass
class RecordedRequest:
    """A request the server received. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    json: Any = None


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


class _Stop(Exception):
    """The server is closing, or the script dropped the connection."""


# -- the server ----------------------------------------------------------------------


class LocalServer:
    """A threaded HTTP/1.1 AllToken-compatible server on loopback.

    Args:
        host: The address to bind.
        port: The port; 0 picks a free one.
        api_key: When set, requests must carry ``Authorization: Bearer <api_key>``.
        pace: Seconds between the default model's tokens (0 for tests).
        model: The default model's name in answers when the request names none.
        ssl_context: A server-side ``ssl.SSLContext`` to serve HTTPS (for testing TLS
            settings); ``base_url`` then starts with ``https://``.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: Optional[str] = None, pace: float = 0.02,
                 model: str = "alltoken-local", ssl_context: Any = None) -> None:
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.api_key = api_key
        self.pace = pace
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._requests_changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        with self._lock:
            return len(self._conns)

    def start(self) -> LocalServer:
        """Bind and serve in a background thread; returns self."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.owner = self
        if self.ssl_context is not None:
            httpd.socket = self.ssl_context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="alltoken-local-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, abort open connections and join every thread. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()
        httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()  # joins the handler threads (block_on_close)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies for the next chat-completion requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        """Block until *n* requests have been recorded (``TimeoutError`` otherwise)."""
        deadline = time.monotonic() + timeout
        with self._requests_changed:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {n} requests arrived")
                self._requests_changed.wait(left)

    # internals used by the handler

    def _record(self, req: RecordedRequest) -> None:
        with self._requests_changed:
            self.requests.append(req)
            self._requests_changed.notify_all()

    def _next_reply(self) -> Optional[Reply]:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _pause(self, seconds: float, gate: Optional[threading.Event] = None,
               conn: Optional[socket.socket] = None) -> None:
        """Wait *seconds* (or for *gate*), raising ``_Stop`` as soon as the server closes
        or the client hangs up on *conn*."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stop.is_set():
                raise _Stop
            if gate is not None and gate.is_set():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if conn is not None and _hung_up(conn):
                raise _Stop
            (gate or self._stop).wait(min(left, 0.01))


def _hung_up(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    owner: LocalServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up is normal here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "alltoken-local/1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        owner = self.server.owner
        with owner._lock:
            owner._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        owner = self.server.owner
        with owner._lock:
            owner._conns.discard(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except (_Stop, OSError):
            self.close_connection = True

    # -- requests --

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, body: bytes) -> RecordedRequest:
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        req = RecordedRequest(self.command, self.path,
                              {k.lower(): v for k, v in self.headers.items()}, body, parsed)
        self.server.owner._record(req)
        return req

    def do_GET(self) -> None:
        self._record(b"")
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "alltoken-local"} for m in MODELS]})
        else:
            self._send_error(404, f"no route for GET {self.path}", "not_found_error")

    def do_POST(self) -> None:
        body = self._read_body()
        req = self._record(body)
        owner = self.server.owner
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_error(404, f"no route for POST {self.path}", "not_found_error")
            return
        if owner.api_key is not None and req.headers.get("authorization") != \
                f"Bearer {owner.api_key}":
            self._send_error(401, "Invalid API key", "authentication_error")
            return
        reply = owner._next_reply()
        if reply is None:
            if not isinstance(req.json, dict):
                self._send_error(400, "the body is not a JSON object", "invalid_request_error")
                return
            reply = _default_reply(req.json, owner)
        self._answer(reply, req)

    def _answer(self, reply: Reply, req: RecordedRequest) -> None:
        owner = self.server.owner
        if isinstance(reply, DelayedReply):
            owner._pause(reply.timeout, reply.gate, self.connection)
            self._answer(reply.reply, req)
        elif isinstance(reply, DropReply):
            self._drop(reply.reset)
        elif isinstance(reply, ErrorReply):
            self._send(reply.status, reply.body, reply.content_type, reply.headers,
                       reply.request_id)
        elif isinstance(reply, JSONReply):
            obj = reply.obj if reply.obj is not None else _completion(
                req.json, reply.content, reply.reasoning, reply.usage, owner.model)
            self._send(reply.status, _json_bytes(obj), "application/json", reply.headers,
                       reply.request_id)
        else:
            self._stream(reply, req)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str], request_id: Optional[str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("x-request-id", request_id)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, _json_bytes(obj), "application/json", {}, None)

    def _send_error(self, status: int, message: str, type: str) -> None:
        self._send(status, _json_bytes({"error": {"message": message, "type": type,
                                                  "code": status}}),
                   "application/json", {}, "req-local-err")

    def _drop(self, reset: bool) -> None:
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Stop

    # -- streaming --

    def _stream(self, reply: StreamReply, req: RecordedRequest) -> None:
        owner = self.server.owner
        model = reply.model or (req.json.get("model") if isinstance(req.json, dict) else None)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Cache-Control", "no-cache")
        if reply.request_id:
            self.send_header("x-request-id", reply.request_id)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        for step in reply.steps:
            kind = step.kind
            if kind == "sleep":
                owner._pause(step.seconds, None, self.connection)
            elif kind == "wait":
                owner._pause(step.seconds, step.gate, self.connection)
            elif kind == "drop":
                self._drop(bool(step.payload))
            elif kind == "end":
                break
            elif kind == "bad_chunk_size":
                self.wfile.write(b"zz\r\n")
                self._drop(False)
            elif kind == "truncated_chunk":
                self.wfile.write(b"100\r\nshort")
                self._drop(False)
            else:
                self._write(reply, self._render(step, reply.eol, model))
        if reply.chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _render(self, step: Step, eol: str, model: Optional[str]) -> bytes:
        if step.kind == "raw":
            return bytes(step.payload)
        if step.kind == "comment":
            out = encode(Comment(step.payload), eol=eol)
            return out if step.eol else out[: -len(eol)]
        if step.kind == "chunk":
            obj = dict(step.payload)
            if obj.get("model") is None:
                obj["model"] = model or self.server.owner.model
            text = json.dumps(obj, ensure_ascii=False)
        else:
            text = step.payload
        return encode(ServerSentEvent(text), eol=eol)

    def _write(self, reply: StreamReply, body: bytes) -> None:
        size = reply.write_size or len(body) or 1
        for i in range(0, len(body), size):
            piece = body[i : i + size]
            if reply.chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
            self.wfile.flush()


# -- the default model ---------------------------------------------------------------

_CANNED = {
    "quantum": (
        "The user wants an accessible explanation of quantum computing. I should cover "
        "qubits, superposition, entanglement and why they matter, then stay concrete.",
        "Quantum computers store information in qubits. A classical bit is 0 or 1; a qubit "
        "can be in a superposition of both, and qubits can be entangled so that measuring "
        "one tells you about another. Algorithms arrange interference so that wrong answers "
        "cancel out and right ones add up. That gives big speedups for a few problems, such "
        "as factoring (Shor's algorithm) and simulating molecules, but not for everything.",
    ),
}


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _prompt(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                value = message.get("content")
                if isinstance(value, str):
                    return value
    return ""


def _answer_for(prompt: str) -> tuple[str, str]:
    lowered = prompt.lower()
    for key, (thinking, answer) in _CANNED.items():
        if key in lowered:
            return thinking, answer
    topic = " ".join(prompt.split()[:12]) or "the question"
    thinking = (f"The user asks about \u201c{topic}\u201d. I will answer briefly and "
                "say what I would need to know to be more precise.")
    answer = (f"This is the offline model of the local AllToken server, so it cannot "
              f"really answer \u201c{topic}\u201d. Point ALLTOKEN_BASE_URL at the real API "
              "(and set ALLTOKEN_API_KEY) for a real answer; this one shows the streaming: "
              "reasoning first, then the answer, then usage and cost.")
    return thinking, answer


def _default_reply(body: Mapping[str, Any], owner: LocalServer) -> Reply:
    model = body.get("model") if isinstance(body.get("model"), str) else owner.model
    prompt = _prompt(body)
    if model == "echo":
        thinking, answer = "", prompt
    else:
        thinking, answer = _answer_for(prompt)
    if not body.get("stream"):
        return JSONReply(content=answer, reasoning=thinking or None,
                         usage=(len(prompt.split()), len(_words(answer))))
    steps: list[Step] = [role()]
    pieces = 0
    for word in _words(thinking) if thinking else []:
        steps += [reasoning(word), sleep(owner.pace)]
        pieces += 1
    for word in _words(answer):
        steps += [content(word), sleep(owner.pace)]
        pieces += 1
    prompt_tokens = max(1, len(prompt.split()))
    steps += [finish("stop"), usage(prompt_tokens, pieces), done()]
    price_in, price_out = 0.000002, 0.000008
    total = prompt_tokens * price_in + pieces * price_out
    steps.append(cost(f"{total:.6f}", input_price=f"{prompt_tokens * price_in:.6f}",
                      output_price=f"{pieces * price_out:.6f}", prompt_tokens=prompt_tokens,
                      completion_tokens=pieces))
    if owner.pace == 0:
        steps = [s for s in steps if s.kind != "sleep"]
    return StreamReply(steps, model=model)


def _completion(body: Any, content_text: str, reasoning_text: Optional[str],
                usage_counts: tuple[int, int], default_model: str) -> dict[str, Any]:
    model = body.get("model") if isinstance(body, dict) else None
    message: dict[str, Any] = {"role": "assistant", "content": content_text}
    if reasoning_text is not None:
        message["reasoning_content"] = reasoning_text
    p, c = usage_counts
    return {"id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()),
            "model": model or default_model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}


def serve(host: str = "127.0.0.1", port: int = 8765, api_key: Optional[str] = None,
          pace: float = 0.02) -> None:
    """Run a :class:`LocalServer` until interrupted (Ctrl-C), printing its base URL."""
    server = LocalServer(host=host, port=port, api_key=api_key, pace=pace).start()
    try:
        print(f"alltoken local server: {server.base_url}", flush=True)
        while True:
            time.sleep(3600)
    finally:
        server.close()

