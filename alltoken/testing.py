"""A local AllToken-compatible server, for offline use and for tests.

Layer 4, standard library only. It deliberately shares no code with the client
(``_client``, ``_transport``, ``_types``): a client bug cannot hide in common code. It
writes events with :func:`alltoken.sse.encode` and uses nothing else from the package.

With nothing queued, a default model answers every prompt with a plausible streamed
answer — reasoning first, then the answer, then usage, ``[DONE]`` and the cost comment —
at ``pace`` seconds per token, so demos look alive without a network or a key::

    from alltoken import testing as t

    with t.LocalServer() as server:
        print(server.base_url)          # http://127.0.0.1:<free port>/v1

Tests script what the next requests get instead, and inspect what was sent::

    import threading
    from alltoken import testing as t

    gate = threading.Event()
    with t.LocalServer(pace=0) as server:
        server.enqueue(
            t.StreamReply([t.reasoning("Let me think. "), t.content("Hello"),
                           t.wait(gate), t.content(" world"), t.finish(),
                           t.usage(), t.done(), t.cost()], eol="\\r\\n", write_size=1),
            t.ErrorReply(429, type="rate_limit_error", headers={"Retry-After": "2"}),
        )
        ...  # point a client at server.base_url; gate.set() releases " world"
        server.wait_for_requests(1)
        assert server.requests[0].json["stream"] is True

Routes: ``POST /v1/chat/completions`` (the next queued reply, else the default model),
``GET /v1/models``; anything else, whatever the method, is a JSON 404 (405 with
``Allow`` for a known path with the wrong method; an answer to ``HEAD`` has no body). A
request too malformed to parse gets a JSON 400 (414, 431) and closes. Routes match by
the end of the path (``/v2/chat/completions`` is served too, and so is the absolute form
a proxy receives), so check a client's exact path in :attr:`RecordedRequest.path`. With
``api_key`` set, a request without ``Authorization: Bearer <api_key>`` gets a 401 before
any queued reply is used. A chat request whose body is not a JSON object gets a 400.
Every request that parses is recorded in :attr:`LocalServer.requests`, whatever its
method and its answer.

Replies: :class:`StreamReply` (a scripted ``text/event-stream`` answer built from steps),
:class:`ErrorReply`, :class:`JSONReply`, :class:`DropReply`, :class:`DelayedReply` and
:class:`ReplayReply` (a response recorded with ``alltoken chat --record FILE``, sent
back byte for byte; see "Recordings" below)::

    server.enqueue(t.ReplayReply.load("answer.jsonl"))           # as fast as possible
    server.enqueue(t.ReplayReply.load("answer.jsonl", pace="original"))

Steps: :func:`content`, :func:`reasoning`, :func:`role`, :func:`tool_call`,
:func:`finish`, :func:`usage`, :func:`chunk`, :func:`data`, :func:`done`, :func:`cost`,
:func:`comment`, :func:`error_event`, :func:`raw`, :func:`sleep`, :func:`wait`,
:func:`drop`, :func:`end`, :func:`bad_chunk_size`, :func:`truncated_chunk`.

Text: JSON is written as UTF-8 with every character as itself, except a lone surrogate
(half of a UTF-16 pair, such as ``content("\\ud83d")``), which is sent as its ``\\u``
escape, as a server that splits text between UTF-16 units does. Text sent verbatim
(:func:`data`, :func:`comment`, an :class:`ErrorReply` body) and header values that
cannot be sent raise ``ValueError`` when the step or reply is built, never later in the
server's thread.

Recordings. ``alltoken chat --record FILE`` saves a response as it was received;
:class:`ReplayReply` sends it back and :class:`Recording` reads it. The file format,
version 1, is UTF-8 text, one JSON object per line (JSON Lines), meant to be read by a
person too; it never holds the API key or a secret header (what is left out, and why:
:mod:`alltoken._record`)::

    {"format": "alltoken-recording", "version": 1, "recorded_at": "2026-12-01T15:30:00Z",
     "request": {"method": "POST", "url": "https://api.alltoken.ai/v1/chat/completions",
                 "json": {"model": "...", "messages": [...], "stream": true}},
     "t": 0.412, "status": 200, "reason": "OK",
     "headers": [["Content-Type", "text/event-stream"], ["x-request-id", "req-1"]],
     "redacted": ["Set-Cookie"], "framing": "chunked"}
    {"t": 0.415, "text": "data: {\\"id\\":\\"chatcmpl-1\\", ...}\\n\\n"}
    {"t": 0.431, "b64": "ZGF0YTog8J+Y"}
    {"t": 1.930, "end": "complete", "bytes": 5123}

* The first line, the head: ``format`` and ``version`` (readers refuse any version they
  do not know), ``t`` the seconds from sending the request to receiving the status line
  and headers, ``status``, ``reason``, ``headers`` as ``[name, value]`` pairs in the
  order received (repeated names kept), and ``framing``, how the body was delimited:
  ``"chunked"`` (``Transfer-Encoding: chunked``), ``"length"`` (``Content-Length``) or
  ``"close"`` (until the connection closed). ``request`` (``method``, ``url`` without
  its query string, ``json`` the body when it was JSON, else null) may be null.
* One line per piece of the body, in order: ``t`` the seconds from sending the request
  to its arrival, and its bytes as ``text`` when they are valid UTF-8, else as ``b64``
  (standard base64; a multi-byte character split between two reads makes a piece that
  is not UTF-8 on its own). The body is recorded after HTTP de-chunking: the pieces are
  the bytes as each socket read returned them (for a chunked body, usually one HTTP
  chunk each), and a replay sends each as one chunk; the chunk-size lines themselves
  are not kept.
* The last line: ``end`` is ``"complete"`` when the body ended as its framing says,
  ``"incomplete"`` when the connection broke or the client gave up first (a replay
  then breaks off at the same byte); ``bytes`` is the body's length, checked on
  loading; ``t`` the time of the end.

A file without its last line, a line that is not a JSON object of the expected shape,
or a ``bytes`` count that does not match is refused with :class:`RecordingError`,
naming the file and the line.

Threads: one accepts connections, one serves each connection (HTTP/1.1 keep-alive).
All are daemon threads, so a script that never closes the server still exits, even while
a client keeps a connection open.
:meth:`LocalServer.close` stops accepting, shuts down every open connection (which ends
any read, write, ``sleep`` or ``wait`` in progress within about 10 ms) and joins every
thread, so no thread or socket outlives the server. While a script sleeps or waits, a
handler also notices within about 10 ms that its client hung up.

**Not** a general HTTP server: no HTTP/2, no request pipelining guarantees, no checks of
request headers besides ``Authorization``, ``Content-Length``, ``Transfer-Encoding`` and
``Connection``; ``stream_options`` is ignored (usage is always sent).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Optional, Union
from urllib.parse import urlsplit

from .sse import Comment, ServerSentEvent, encode

__all__ = [
    "DelayedReply",
    "DropReply",
    "ErrorReply",
    "JSONReply",
    "LocalServer",
    "Piece",
    "RecordedRequest",
    "Recording",
    "RecordingError",
    "ReplayReply",
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

#: Models listed by ``GET /v1/models`` after the server's own; ``echo`` streams the
#: last user message back word by word.
MODELS: Final = ("echo", "deepseek-reasoner", "deepseek-chat", "claude-sonnet-4")

#: The default limit of a request body, refused beyond with a 413: the server keeps
#: bodies in memory, and a chat request is far smaller.
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024

#: After refusing a request whose body it will not read (413, a broken framing), the
#: server reads and discards what the client still sends before closing, as nginx's
#: lingering close does: closing with unread bytes makes the kernel send an RST, and a
#: client still uploading gets a broken pipe or a reset, never the answer. Bounded by
#: bytes (this many times the body limit, and at least _LINGER_MIN_BYTES), by the
#: longest silence and by the total time.
_LINGER_LIMITS: Final = 4
_LINGER_MIN_BYTES: Final = 64 * 1024 * 1024
_LINGER_SILENCE: Final = 2.0
_LINGER_SECONDS: Final = 10.0

#: How often a sleeping or waiting script checks for ``close()`` and for a client that
#: hung up: the bound on how long either goes unnoticed.
_POLL: Final = 0.01

#: Routes match by the end of the path (see the module docstring).
_CHAT_ROUTE: Final = "/chat/completions"
_MODELS_ROUTE: Final = "/models"


# -- steps ---------------------------------------------------------------------------


@dataclass
class Step:
    """One scripted action of a :class:`StreamReply`. Build them with the step functions
    (:func:`content`, :func:`sleep`, ...); the fields are an implementation detail."""

    kind: str
    payload: Any = None
    seconds: float = 0.0
    gate: Optional[threading.Event] = None
    eol: bool = True


#: A surrogate code point: Python strings may hold one alone (half of a UTF-16 pair, as
#: ``json.loads`` makes of ``"\ud83d"``), but UTF-8 cannot encode it.
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")


def _json_text(obj: Any) -> str:
    """*obj* as JSON text that always encodes as UTF-8: characters as themselves, except
    lone surrogates, which get the ``\\uXXXX`` escape JSON allows for them (they can only
    occur inside strings, where the escape means the same)."""
    text = json.dumps(obj, ensure_ascii=False)
    if _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _json_bytes(obj: Any) -> bytes:
    return _json_text(obj).encode()


def _check_utf8(what: str, text: str) -> None:
    """Raise ValueError when *text*, sent as it is, cannot be encoded as UTF-8."""
    found = _SURROGATE.search(text)
    if found:
        raise ValueError(f"{what} contains a lone surrogate {found.group()!r} at index "
                         f"{found.start()}, which UTF-8 cannot encode (inside JSON, "
                         "chunk() and content() send it as a \\u escape)")


def _check_latin1(what: str, value: object) -> None:
    try:
        str(value).encode("latin-1")  # what http.server writes the head in
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be Latin-1 text to be sent, got {value!r:.60}"
                         ) from None


def _check_reply(status: int, headers: Mapping[str, str], request_id: Optional[str],
                 content_type: Optional[str] = None) -> None:
    # What the handler could not write would fail in its own thread, where the failure
    # can only drop the connection: it is refused when the reply is built instead. What
    # can be written is sent as given, however malformed (a CR or NUL in a value, an
    # odd status): faults are what tests script.
    if not isinstance(status, int):
        raise TypeError(f"status must be an int, got {type(status).__name__}")
    for name, value in headers.items():
        _check_latin1("a header name", name)
        _check_latin1(f"header {name}", value)
    _check_latin1("request_id", request_id or "")
    _check_latin1("content_type", content_type or "")


def _checked(step: Step) -> Step:
    # Encode once now, so that an unencodable value (a CR in data, a line break in a
    # comment, a lone surrogate) raises ValueError at the test's call, not later in the
    # server's thread, where it could only cut the reply off.
    if step.kind == "data":
        _check_utf8("data", step.payload)
        encode(ServerSentEvent(step.payload))
    elif step.kind == "comment":
        _check_utf8("comment", step.payload)
        encode(Comment(step.payload))
    return step


def chunk(obj: Any) -> Step:
    """An event ``data: <json.dumps(obj)>``, with *obj* verbatim (no ``model`` added).

    Args:
        obj: Any JSON-serialisable value: a chunk of your own, a wrong shape, ...

    Returns:
        The step.
    """
    return _checked(Step("data", _json_text(obj)))


def data(text: str) -> Step:
    """An event ``data: <text>`` verbatim, for example malformed JSON.

    Args:
        text: The data; a line feed in it makes several ``data:`` lines.

    Returns:
        The step.

    Raises:
        ValueError: *text* contains a CR (it would be read as a line ending) or a lone
            surrogate (UTF-8 cannot encode it).
    """
    return _checked(Step("data", text))


def _delta_chunk(delta: dict[str, Any], finish_reason: Optional[str] = None) -> dict[str, Any]:
    # "model": None is filled in when the reply is written: the reply's model, else the
    # request's, else the server's.
    return {"id": "chatcmpl-local", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def content(text: str) -> Step:
    """A chunk whose ``choices[0].delta`` is ``{"content": text}``.

    Args:
        text: The answer piece.

    Returns:
        The step.
    """
    return Step("chunk", _delta_chunk({"content": text}))


def reasoning(text: str) -> Step:
    """A chunk whose ``choices[0].delta`` is ``{"reasoning_content": text}``.

    Args:
        text: The reasoning piece.

    Returns:
        The step.
    """
    return Step("chunk", _delta_chunk({"reasoning_content": text}))


def role(role: str = "assistant") -> Step:
    """The opening chunk: ``delta`` is ``{"role": role, "content": ""}``, as OpenAI sends.

    Args:
        role: The role.

    Returns:
        The step.
    """
    return Step("chunk", _delta_chunk({"role": role, "content": ""}))


def tool_call(index: int, *, id: Optional[str] = None, name: Optional[str] = None,
              arguments: Optional[str] = None) -> Step:
    """A chunk with one tool-call delta.

    ``delta.tool_calls`` is ``[{"index", "id", "type": "function", "function": {"name",
    "arguments"}}]`` with every field left None omitted (``type`` comes with ``id``;
    ``function`` appears when it has a field).

    Args:
        index: The tool call's position.
        id: The call id, usually in the first delta of a call only.
        name: The function name, usually in the first delta of a call only.
        arguments: A piece of the JSON arguments string.

    Returns:
        The step.
    """
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
    """A chunk with an empty ``delta`` and ``finish_reason``.

    Args:
        reason: ``"stop"``, ``"length"``, ``"tool_calls"``, ...

    Returns:
        The step.
    """
    return Step("chunk", _delta_chunk({}, reason))


def usage(prompt_tokens: int = 10, completion_tokens: int = 20) -> Step:
    """A usage-only chunk: ``"choices": []`` and ``usage`` with ``total_tokens`` the sum.

    Args:
        prompt_tokens: Tokens in the prompt.
        completion_tokens: Tokens in the answer.

    Returns:
        The step.
    """
    return Step("chunk", {"id": "chatcmpl-local", "object": "chat.completion.chunk",
                          "created": int(time.time()), "model": None, "choices": [],
                          "usage": {"prompt_tokens": prompt_tokens,
                                    "completion_tokens": completion_tokens,
                                    "total_tokens": prompt_tokens + completion_tokens}})


def done() -> Step:
    """The end of the chunk sequence: ``data: [DONE]``.

    Returns:
        The step.
    """
    return Step("data", "[DONE]")


def cost(cost: str = "0.0012", *, input_price: str = "0.0003", output_price: str = "0.0009",
         prompt_tokens: int = 15, completion_tokens: int = 42,
         final_newline: bool = True) -> Step:
    """The cost comment AllToken sends after ``[DONE]``, for example
    ``: {"cost":"0.0012","input_price":"0.0003",...,"completion_tokens":42}``.

    Args:
        cost: The total charge, a decimal string.
        input_price: The prompt's charge.
        output_price: The answer's charge.
        prompt_tokens: Tokens in the prompt.
        completion_tokens: Tokens in the answer.
        final_newline: False leaves the line without its line ending; the response then
            ends right after it (later steps are skipped), as some servers do.

    Returns:
        The step.
    """
    text = json.dumps({"cost": cost, "input_price": input_price, "output_price": output_price,
                       "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
                      separators=(",", ":"))
    return _checked(Step("comment", text, eol=final_newline))


def comment(text: str = "keep-alive") -> Step:
    """A comment line ``: <text>``, such as a keep-alive or a ping.

    Args:
        text: The comment, one line.

    Returns:
        The step.

    Raises:
        ValueError: *text* contains a line break or a lone surrogate.
    """
    return _checked(Step("comment", text))


def error_event(code: Optional[Union[int, str]] = 429, message: str = "Rate limit exceeded",
                type: Optional[str] = "rate_limit_error") -> Step:
    """An in-stream error: ``data: {"error": {"message": ..., "type": ..., "code": ...}}``.

    Args:
        code: The error code (an HTTP status as int, or a string); None omits the key.
        message: The message.
        type: The error type; None omits the key.

    Returns:
        The step.
    """
    err: dict[str, Any] = {"message": message}
    if type is not None:
        err["type"] = type
    if code is not None:
        err["code"] = code
    return _checked(Step("data", json.dumps({"error": err})))


def raw(b: bytes) -> Step:
    """Exact body bytes, with no line-ending conversion (still chunk-framed).

    Args:
        b: The bytes.

    Returns:
        The step.
    """
    return Step("raw", bytes(b))


def sleep(seconds: float) -> Step:
    """Send nothing for *seconds*: a delay between events, or a stall.

    The pause ends early, and the connection closes, when the server closes or the
    client hangs up.

    Args:
        seconds: How long.

    Returns:
        The step.
    """
    return Step("sleep", seconds=seconds)


def wait(event: threading.Event, timeout: float = 10.0) -> Step:
    """Send nothing until the test sets *event* (a gate), or *timeout* passes.

    Args:
        event: The gate.
        timeout: The longest wait in seconds; the script then goes on as if it were set.

    Returns:
        The step.
    """
    return Step("wait", gate=event, seconds=timeout)


def drop(*, reset: bool = False) -> Step:
    """Abort the connection here, leaving the chunked body unfinished.

    Args:
        reset: False closes with a FIN (the client reads end of file); True sends a TCP
            RST (``SO_LINGER`` 0: the client's next read fails with a connection reset).

    Returns:
        The step.
    """
    return Step("drop", payload=reset)


def end() -> Step:
    """Finish the response cleanly now (the terminating zero-size chunk); later steps
    are skipped. No ``[DONE]`` is sent unless a step sent it.

    Returns:
        The step.
    """
    return Step("end")


def bad_chunk_size() -> Step:
    """Write the malformed chunk-size line ``zz\\r\\n``, then close the connection.

    Returns:
        The step.
    """
    return Step("bad_chunk_size")


def truncated_chunk() -> Step:
    """Announce a 256-byte chunk (``100\\r\\n``), write 5 bytes of it, then close.

    Returns:
        The step.
    """
    return Step("truncated_chunk")


# -- replies -------------------------------------------------------------------------


class StreamReply:
    """A streamed answer: the status line and headers, then the steps' bytes.

    When the steps run out the response finishes cleanly (zero-size chunk). Chunks built
    by the step functions name the reply's ``model``, else the request's, else the
    server's.

    Args:
        steps: What to send, in order.
        status: The HTTP status.
        headers: Extra response headers.
        content_type: The ``Content-Type``.
        eol: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"`` for every line the steps write (not
            :func:`raw` bytes).
        write_size: Write the body in pieces of at most this many bytes (1 = byte by
            byte), each its own HTTP chunk and its own ``send``; by default each step is
            one write. Pieces do not span steps.
        chunked: False sends no ``Transfer-Encoding`` but ``Connection: close``; the body
            ends when the connection closes. (An HTTP/1.0 request always gets this.)
        request_id: The ``x-request-id`` header (None: none).
        model: The ``model`` in the chunks.

    Raises:
        ValueError: *eol* or *write_size* is invalid, or a header, *content_type* or
            *request_id* is not Latin-1 text (it could not be sent).
        TypeError: *status* is not an int.
    """

    def __init__(self, steps: Sequence[Step], *, status: int = 200,
                 headers: Optional[Mapping[str, str]] = None,
                 content_type: str = "text/event-stream", eol: str = "\n",
                 write_size: Optional[int] = None, chunked: bool = True,
                 request_id: Optional[str] = "req-local-1", model: Optional[str] = None) -> None:
        if eol not in ("\n", "\r\n", "\r"):
            raise ValueError(f"eol must be '\\n', '\\r\\n' or '\\r', got {eol!r}")
        if write_size is not None and write_size < 1:
            raise ValueError(f"write_size must be at least 1, got {write_size!r}")
        _check_reply(status, headers or {}, request_id, content_type)
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
    """An HTTP error status with a body of known length (``Content-Length``).

    Args:
        status: The HTTP status (e.g. 429, 500, 502).
        message: The message in the default body
            ``{"error": {"message": message, "type": type, "code": status}}``.
        type: The type in the default body.
        json: A JSON value to send instead of the default body.
        body: Raw bytes (or text, sent as UTF-8) instead of JSON, e.g. an HTML 502 page.
        headers: Extra response headers, e.g. ``{"Retry-After": "2"}``.
        content_type: The ``Content-Type``; default ``application/json``, or
            ``text/html; charset=utf-8`` with *body*.
        request_id: The ``x-request-id`` header (None: none).

    Raises:
        ValueError: *body* text holds a lone surrogate (UTF-8 cannot encode it), or a
            header, *content_type* or *request_id* is not Latin-1 text.
        TypeError: *status* is not an int, or *json* is not JSON-serialisable.
    """

    def __init__(self, status: int, *, message: str = "error from the local server",
                 type: Optional[str] = None, json: Any = None,
                 body: Optional[Union[bytes, str]] = None,
                 headers: Optional[Mapping[str, str]] = None,
                 content_type: Optional[str] = None,
                 request_id: Optional[str] = "req-local-err") -> None:
        _check_reply(status, headers or {}, request_id, content_type)
        self.status = status
        self.headers = dict(headers or {})
        self.request_id = request_id
        if body is not None:
            if isinstance(body, str):
                _check_utf8("body", body)
            self.body = body.encode() if isinstance(body, str) else bytes(body)
            self.content_type = content_type or "text/html; charset=utf-8"
        else:
            obj = json if json is not None else {
                "error": {"message": message, "type": type, "code": status}}
            self.body = _json_bytes(obj)
            self.content_type = content_type or "application/json"


class JSONReply:
    """A non-streamed answer: *obj* verbatim, or a built ``chat.completion``.

    Args:
        obj: Any JSON value to send as is; when None a ``chat.completion`` is built from
            the other arguments.
        content: The built message's ``content``.
        reasoning: The built message's ``reasoning_content`` (omitted when None).
        status: The HTTP status.
        headers: Extra response headers.
        request_id: The ``x-request-id`` header (None: none).
        usage: ``(prompt_tokens, completion_tokens)`` of the built completion.
        model: The built completion's ``model`` (default: the request's, else the
            server's).
        finish_reason: The built choice's ``finish_reason``.

    Raises:
        ValueError: a header or *request_id* is not Latin-1 text.
        TypeError: *status* is not an int, or *obj* is not JSON-serialisable.
    """

    def __init__(self, obj: Any = None, *, content: str = "Hello",
                 reasoning: Optional[str] = None, status: int = 200,
                 headers: Optional[Mapping[str, str]] = None,
                 request_id: Optional[str] = "req-local-1",
                 usage: tuple[int, int] = (10, 5), model: Optional[str] = None,
                 finish_reason: str = "stop") -> None:
        _check_reply(status, headers or {}, request_id)
        if obj is not None:
            _json_bytes(obj)  # not serialisable: TypeError here, not in the server thread
        self.obj = obj
        self.content = content
        self.reasoning = reasoning
        self.status = status
        self.headers = dict(headers or {})
        self.request_id = request_id
        self.usage = usage
        self.model = model
        self.finish_reason = finish_reason


class DropReply:
    """Read the whole request, then close the connection without any response.

    Args:
        reset: True closes with a TCP RST (``SO_LINGER`` 0) instead of a FIN.
    """

    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset


class DelayedReply:
    """Send nothing, not even the status line, until *gate* is set; then *reply*.

    Args:
        gate: The event the test sets.
        reply: What to send then.
        timeout: The longest wait in seconds; *reply* is then sent anyway.
    """

    def __init__(self, gate: threading.Event, reply: Reply, *, timeout: float = 10.0) -> None:
        self.gate = gate
        self.reply = reply
        self.timeout = timeout


# -- recordings ----------------------------------------------------------------------


_RECORDING_FORMAT: Final = "alltoken-recording"
#: The version this module writes and the only one it reads.
_RECORDING_VERSION: Final = 1

_FRAMINGS: Final = ("chunked", "length", "close")


class RecordingError(ValueError):
    """A recording file cannot be read: not a recording, an unknown version, truncated
    or corrupt. ``str()`` names the file and the line."""


class Piece(NamedTuple):
    """One piece of a recorded body: *t* seconds after the request, its *data*."""

    t: float
    data: bytes


@dataclass
class Recording:
    """A response as received: what :meth:`load` reads and a replay sends.

    Attributes:
        status: The HTTP status.
        reason: The reason phrase.
        headers: ``(name, value)`` pairs as received, secrets left out.
        framing: ``"chunked"``, ``"length"`` or ``"close"``.
        pieces: The body as it arrived.
        complete: Whether the body ended as its framing says.
        head_time: Seconds from the request to the status line and headers.
        end_time: Seconds from the request to the end of the body.
        request: ``{"method", "url", "json"}`` of the request, or None.
        redacted: The names of the headers left out (and ``"body"`` when a credential
            was replaced in it).
        recorded_at: When, as an ISO 8601 UTC time.
    """

    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    framing: str = "chunked"
    pieces: list[Piece] = field(default_factory=list)
    complete: bool = True
    head_time: float = 0.0
    end_time: float = 0.0
    request: Optional[dict[str, Any]] = None
    redacted: list[str] = field(default_factory=list)
    recorded_at: str = ""

    @property
    def body(self) -> bytes:
        """The body's bytes, joined."""
        return b"".join(p.data for p in self.pieces)

    def header(self, name: str) -> Optional[str]:
        """The last value of header *name* (any case), or None."""
        lower = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == lower:
                found = value
        return found

    # -- writing --

    def dumps(self) -> str:
        """The recording in the version 1 format (see the module docstring)."""
        head = {"format": _RECORDING_FORMAT, "version": _RECORDING_VERSION,
                "recorded_at": self.recorded_at,
                "request": self.request, "t": round(self.head_time, 6),
                "status": self.status, "reason": self.reason,
                "headers": [[k, v] for k, v in self.headers],
                "redacted": self.redacted, "framing": self.framing}
        lines = [json.dumps(head, ensure_ascii=False)]
        total = 0
        for piece in self.pieces:
            item: dict[str, Any] = {"t": round(piece.t, 6)}
            try:
                item["text"] = piece.data.decode("utf-8")
            except UnicodeDecodeError:
                item["b64"] = base64.b64encode(piece.data).decode("ascii")
            lines.append(json.dumps(item, ensure_ascii=False))
            total += len(piece.data)
        lines.append(json.dumps({"t": round(self.end_time, 6),
                                 "end": "complete" if self.complete else "incomplete",
                                 "bytes": total}))
        return "\n".join(lines) + "\n"

    # -- reading --

    @classmethod
    def load(cls, path: Union[str, os.PathLike[str]]) -> Recording:
        """Read a recording file.

        Args:
            path: The file ``alltoken chat --record`` wrote.

        Returns:
            The recording.

        Raises:
            RecordingError: the file is not a recording this version can read.
            OSError: the file cannot be read.
        """
        with open(path, "rb") as f:
            data = f.read()
        return cls.loads(data, name=os.fspath(path))

    @classmethod
    def loads(cls, data: Union[bytes, str], *, name: str = "<recording>") -> Recording:
        """Parse a recording from its text (see :meth:`load`)."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecordingError(f"{name}: not a recording (not UTF-8 text at byte "
                                     f"{exc.start})") from None
        lines = data.splitlines()
        if not lines or not lines[0].strip():
            raise RecordingError(f"{name}: not a recording (the file is empty)")
        head = _object(name, 1, lines[0])
        if head.get("format") != _RECORDING_FORMAT:
            raise RecordingError(f"{name}: not an alltoken recording (line 1 has no "
                                 f'"format": "{_RECORDING_FORMAT}")')
        version = head.get("version")
        if version != _RECORDING_VERSION:
            raise RecordingError(f"{name}: recording format version {version!r} is not "
                                 f"supported (this alltoken reads version {_RECORDING_VERSION}); "
                                 "a newer alltoken may read it")
        rec = cls(status=_field(name, 1, head, "status", int),
                  reason=_field(name, 1, head, "reason", str, ""),
                  framing=_field(name, 1, head, "framing", str),
                  head_time=_time(name, 1, head),
                  recorded_at=_field(name, 1, head, "recorded_at", str, ""))
        if rec.framing not in _FRAMINGS:
            raise RecordingError(f"{name} line 1: framing must be one of "
                                 f"{', '.join(_FRAMINGS)}, got {rec.framing!r}")
        headers = _field(name, 1, head, "headers", list, [])
        for pair in headers:
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(x, str) for x in pair)):
                raise RecordingError(f"{name} line 1: headers must be [name, value] "
                                     f"pairs of strings, got {pair!r:.80}")
            rec.headers.append((pair[0], pair[1]))
        request = head.get("request")
        rec.request = request if isinstance(request, dict) else None
        redacted = head.get("redacted")
        rec.redacted = [str(x) for x in redacted] if isinstance(redacted, list) else []
        for number, line in enumerate(lines[1:], start=2):
            item = _object(name, number, line)
            if "end" in item:
                if number != len(lines):
                    raise RecordingError(f"{name} line {number}: the end line is "
                                         "followed by more lines")
                end = item["end"]
                if end not in ("complete", "incomplete"):
                    raise RecordingError(f"{name} line {number}: end must be "
                                         f"'complete' or 'incomplete', got {end!r:.40}")
                rec.complete = end == "complete"
                rec.end_time = _time(name, number, item)
                size = _field(name, number, item, "bytes", int)
                got = sum(len(p.data) for p in rec.pieces)
                if size != got:
                    raise RecordingError(f"{name}: the body is {got} bytes but the end "
                                         f"line says {size}: the file is corrupt")
                return rec
            rec.pieces.append(Piece(_time(name, number, item), _data(name, number, item)))
        raise RecordingError(f"{name}: the recording ends at line {len(lines)} without "
                             "its end line: the file is truncated")


def _object(name: str, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise RecordingError(f"{name} line {number}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RecordingError(f"{name} line {number}: expected a JSON object, got "
                             f"{line!r:.60}")
    return value


_MISSING: Final[Any] = object()


def _field(name: str, number: int, obj: dict[str, Any], key: str, kind: type,
           default: Any = _MISSING) -> Any:
    value = obj.get(key, default)
    if value is _MISSING:
        raise RecordingError(f"{name} line {number}: {key!r} is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordingError(f"{name} line {number}: {key!r} must be "
                             f"{'a number' if kind is int else 'a ' + kind.__name__}, "
                             f"got {value!r:.60}")
    return value


def _time(name: str, number: int, obj: dict[str, Any]) -> float:
    t = obj.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0:
        raise RecordingError(f"{name} line {number}: 't' must be seconds (a number "
                             f">= 0), got {t!r:.40}")
    return float(t)


def _data(name: str, number: int, item: dict[str, Any]) -> bytes:
    text = item.get("text")
    if isinstance(text, str):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \\ud83d escape
            raise RecordingError(f"{name} line {number}: 'text' is not UTF-8 text "
                                 "(use 'b64')") from None
    b64 = item.get("b64")
    if isinstance(b64, str):
        try:
            return base64.b64decode(b64, validate=True)
        except ValueError:
            raise RecordingError(f"{name} line {number}: 'b64' is not valid "
                                 "base64") from None
    raise RecordingError(f"{name} line {number}: expected 'text' or 'b64' (or 'end')")


class ReplayReply:
    """A recorded response, sent back as it was received: the status line, the headers
    (those left out as secrets excepted), and the body byte for byte, each recorded
    piece its own write (and its own HTTP chunk for a chunked body), then the same
    ending — a clean end, or a connection that breaks off where the recording did.

    The headers that frame the body (``Transfer-Encoding``, ``Content-Length``,
    ``Connection``) are the server's own, chosen from the recorded ``framing``; every
    other recorded header is sent as recorded, ``Date`` and ``Server`` included.

    Args:
        recording: The recording (see :meth:`load`).
        pace: ``"none"`` sends everything at once; ``"original"`` keeps the recorded
            timing (each piece leaves when it arrived after the request, counted from
            this request's arrival).

    Raises:
        ValueError: *pace* is not ``"none"`` or ``"original"``.
    """

    def __init__(self, recording: Recording, *, pace: str = "none") -> None:
        if pace not in ("none", "original"):
            raise ValueError(f"pace must be 'none' or 'original', got {pace!r}")
        if not isinstance(recording, Recording):
            raise TypeError(f"expected a Recording, got {type(recording).__name__}")
        self.recording = recording
        self.pace = pace

    @classmethod
    def load(cls, path: Any, *, pace: str = "none") -> ReplayReply:
        """A reply from a file ``alltoken chat --record`` wrote.

        Args:
            path: The file.
            pace: See the class.

        Returns:
            The reply (reusable: enqueue it as many times as needed).

        Raises:
            RecordingError: the file is not a recording this version reads (unknown
                version, truncated, corrupt); a ``ValueError``.
            OSError: the file cannot be read.
        """
        return cls(Recording.load(path), pace=pace)


Reply = Union[StreamReply, ErrorReply, JSONReply, DropReply, DelayedReply, ReplayReply]
_REPLY_TYPES: Final = (StreamReply, ErrorReply, JSONReply, DropReply, DelayedReply,
                       ReplayReply)

#: Headers a replay does not copy from the recording: they frame this connection's body.
_FRAMING_HEADERS: Final = frozenset({"transfer-encoding", "content-length", "connection",
                                     "keep-alive"})


@dataclass
class RecordedRequest:
    """A request the server received.

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: The request target as sent (with any query string; the absolute form when
            sent to a proxy).
        headers: The headers, names lower-cased (a repeated header keeps its last value).
        body: The body, de-chunked when it was sent chunked.
        json: The body parsed as JSON, or None when empty or not JSON.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    json: Any = None


class _Stop(Exception):
    """The server is closing, the client hung up, or the script dropped the connection."""


class _BadRequest(Exception):
    """The request's framing is broken: answer with this status and close."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- the server ----------------------------------------------------------------------


class LocalServer:
    """A threaded HTTP/1.1 AllToken-compatible server, by default on 127.0.0.1.

    Use it as a context manager, or call :meth:`start` and :meth:`close`.

    Args:
        host: The address to bind (an IPv6 literal such as ``"::1"`` works too).
        port: The port; 0 picks a free one.
        api_key: When set, every request must carry ``Authorization: Bearer <api_key>``
            or gets a 401.
        pace: Seconds between the default model's tokens (0 for tests).
        model: The model named in answers when neither the reply nor the request names
            one; listed first by ``GET /v1/models``.
        ssl_context: A server-side ``ssl.SSLContext`` to serve HTTPS (for testing TLS
            settings); ``base_url`` then starts with ``https://``.
        max_body_bytes: A larger request body is refused with a JSON 413 (the client
            can read it: the server reads and discards the rest of the upload first).

    Attributes:
        requests: Every request received, in order (appended under a lock).
        port: The bound port, once started.

    Raises:
        ValueError: *pace* is negative, or *max_body_bytes* is less than 1.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: Optional[str] = None, pace: float = 0.02,
                 model: str = "alltoken-local", ssl_context: Any = None,
                 max_body_bytes: int = _MAX_BODY_BYTES) -> None:
        if pace < 0:
            raise ValueError(f"pace must not be negative, got {pace!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes!r}")
        self.max_body_bytes = max_body_bytes
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.api_key = api_key
        self.pace = pace
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # requests or connections changed
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []  # one per connection, joined by close()
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1`` (``https`` with an ``ssl_context``).

        Raises:
            RuntimeError: the server is not started.
        """
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        """Client connections currently open (accepted and not yet closed)."""
        with self._lock:
            return len(self._conns)

    @property
    def queued(self) -> int:
        """Replies queued and not yet used."""
        with self._lock:
            return len(self._queue)

    def start(self) -> LocalServer:
        """Bind and serve in a background thread. Does nothing when already started.

        Returns:
            The server itself.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._httpd is not None:
            return self
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.port), _Handler)
        httpd.owner = self
        if self.ssl_context is not None:
            # The handshake happens in the connection's own thread (_Handler.handle),
            # where close() can interrupt it; inside accept() a client that never sends
            # its hello would block the accept loop, and with it close().
            httpd.socket = self.ssl_context.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._stop.clear()
        self._httpd = httpd
        self.port = httpd.server_address[1]
        # close() joins this thread; daemon=True only spares a program that forgets to
        # call close() a hang at exit.
        self._thread = threading.Thread(target=httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="alltoken-local-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, abort open connections and join every thread. Idempotent.

        Scripts that sleep or wait end within about 10 ms; their clients see the
        connection close.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()
        httpd.shutdown()  # the accept loop has ended: no new connection from here on
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            _shutdown(sock)
        httpd.server_close()  # closes the listener
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()  # each ends soon: its connection is shut down
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies for the next ``POST /v1/chat/completions`` requests.

        Each request takes the oldest queued reply (a request refused with 401, 400 or
        404 takes none); with the queue empty the default model answers.

        Args:
            *replies: The replies, in order.

        Raises:
            TypeError: something other than a reply was given.
        """
        for reply in replies:
            if not isinstance(reply, _REPLY_TYPES):
                raise TypeError(f"expected a reply, got {type(reply).__name__}")
        with self._lock:
            self._queue.extend(replies)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least *n* requests have been recorded.

        Args:
            n: The number of requests.
            timeout: Seconds to wait.

        Raises:
            TimeoutError: fewer arrived in time.
        """
        self._wait_until(lambda: len(self.requests) >= n, timeout,
                         lambda: f"{len(self.requests)} of {n} requests arrived")

    def wait_for_connections(self, n: int = 0, timeout: float = 5.0) -> None:
        """Block until exactly *n* client connections are open (by default: none).

        A client's close reaches the server asynchronously: leak tests wait here rather
        than read :attr:`open_connections` at once.

        Args:
            n: The number of open connections to wait for.
            timeout: Seconds to wait.

        Raises:
            TimeoutError: the count still differed after *timeout*.
        """
        self._wait_until(lambda: len(self._conns) == n, timeout,
                         lambda: f"{len(self._conns)} connections open, expected {n}")

    # -- internals used by the handler --

    def _wait_until(self, predicate: Callable[[], bool], timeout: float,
                    describe: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(describe())
                self._changed.wait(left)

    def _record(self, req: RecordedRequest) -> None:
        with self._changed:
            self.requests.append(req)
            self._changed.notify_all()

    def _next_reply(self) -> Optional[Reply]:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _add_thread(self, thread: threading.Thread) -> None:
        with self._lock:  # the finished ones are dropped, so the list stays short
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _add_connection(self, sock: socket.socket) -> None:
        with self._changed:
            self._conns.add(sock)
            self._changed.notify_all()
            closing = self._stop.is_set()
        if closing:  # accepted just before close() took its list of connections
            _shutdown(sock)

    def _remove_connection(self, sock: socket.socket) -> None:
        with self._changed:
            self._conns.discard(sock)
            self._changed.notify_all()

    def _pause(self, seconds: float, gate: Optional[threading.Event] = None,
               conn: Optional[socket.socket] = None) -> None:
        """Wait *seconds* (or until *gate* is set), raising ``_Stop`` within ``_POLL``
        seconds of the server closing or the client hanging up on *conn*."""
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
            (gate or self._stop).wait(min(left, _POLL))


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or reset


def _hung_up(conn: socket.socket) -> bool:
    # A readable socket with nothing to read has been closed (or half-closed) by the
    # client; a readable one with data holds its next request, which is fine.
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except ValueError:
        return False  # a TLS socket refuses MSG_PEEK; a hang-up shows at the next write
    except OSError:
        return True


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are daemons: one waits for a keep-alive client's next request
    # without a timeout, and a script that never calls close() must still exit while a
    # client (a module-level one's pooled connection) keeps its connection open. close()
    # joins them itself: socketserver's server_close() joins non-daemon threads only.
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # tests open several connections at once
    owner: LocalServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # take seconds on a machine without a network; the name is never used here.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address),
                                  name="alltoken-local-connection", daemon=True)
        self.owner._add_thread(thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-response is normal here; log nothing


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "alltoken-local/1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the server never writes to stderr

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.owner._add_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.owner._remove_connection(self.connection)

    def handle(self) -> None:
        try:
            if self.server.owner.ssl_context is not None:
                self.connection.do_handshake()  # accepted with do_handshake_on_connect=False
            super().handle()
        except (_Stop, OSError):
            self.close_connection = True

    # -- requests --

    if not TYPE_CHECKING:  # mypy would let any attribute of the handler through
        def __getattr__(self, name: str) -> Callable[[], None]:
            # http.server calls do_<METHOD> and answers a method without one with an
            # HTML 501 it does not record: every method (HEAD, OPTIONS, TRACE, ...) is
            # routed here instead, to be recorded and get a JSON 404 or 405.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        # http.server's own refusals (a malformed request line, a header line too long,
        # too many headers, ...) in the JSON shape of every other answer, not HTML. The
        # request could not be parsed, so it is not recorded, and the connection closes.
        self.close_connection = True
        if not self.request_version.startswith("HTTP/1."):
            # Not parsed far enough to know the version: http.server would then send the
            # body alone, as to HTTP/0.9; a status line and headers say more.
            self.request_version = "HTTP/1.0"
        phrase = self.responses.get(code, ("error",))[0]
        self._send_error(code, message or phrase, "invalid_request_error")

    def _dispatch(self) -> None:
        owner = self.server.owner
        try:
            body = self._read_body()
        except _BadRequest as exc:
            self._record(b"")
            self.close_connection = True  # the rest of the byte stream cannot be framed
            self._send_error(exc.status, str(exc), "invalid_request_error")
            self._linger()
            return
        req = self._record(body)
        path = urlsplit(self.path).path  # also the absolute form a proxy receives
        route = next((r for r in (_CHAT_ROUTE, _MODELS_ROUTE)
                      if path.rstrip("/").endswith(r)), None)
        if route is None:
            self._send_error(404, f"no route for {self.command} {path}", "not_found_error")
            return
        if owner.api_key is not None and \
                req.headers.get("authorization") != f"Bearer {owner.api_key}":
            self._send_error(401, "Invalid API key", "authentication_error")
            return
        allowed = "POST" if route == _CHAT_ROUTE else "GET"
        if self.command != allowed:
            self._send_error(405, f"{path} accepts {allowed} only",
                             "invalid_request_error", {"Allow": allowed})
            return
        if route == _MODELS_ROUTE:
            names = [owner.model] + [m for m in MODELS if m != owner.model]
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "alltoken-local"}
                for m in names]})
            return
        if not isinstance(req.json, dict):
            problem = "not valid JSON" if req.json is None else "not a JSON object"
            self._send_error(400, f"the request body is {problem}", "invalid_request_error")
            return
        reply = owner._next_reply()
        self._answer(reply if reply is not None else _default_reply(req.json, owner), req)

    def _read_body(self) -> bytes:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise _BadRequest(f"unsupported Transfer-Encoding {encoding!r}", 501)
            return self._read_chunked_body()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        if not length_text.strip().isdigit():
            raise _BadRequest(f"invalid Content-Length {length_text[:40]!r}")
        length = int(length_text)
        if length > self.server.owner.max_body_bytes:
            raise _BadRequest("the request body is too large", 413)
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Stop  # the client hung up mid-body
        return body

    def _linger(self) -> None:
        """Half-close, then read and discard what the client still sends (see
        ``_LINGER_SECONDS``), so that it can read the answer just sent."""
        owner = self.server.owner
        sock = self.connection
        budget = max(_LINGER_LIMITS * owner.max_body_bytes, _LINGER_MIN_BYTES)
        deadline = time.monotonic() + _LINGER_SECONDS
        try:
            sock.shutdown(socket.SHUT_WR)  # the FIN follows the answer: nothing more
            while budget > 0 and not owner._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(min(left, _LINGER_SILENCE))
                piece = self.rfile.read1(min(budget, 65536))
                if not piece:
                    break  # the client closed: it has read the answer, or given up
                budget -= len(piece)
        except OSError:  # a timeout, a reset, or close() shut the socket down
            pass

    def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _Stop
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(f"invalid chunk size {size_text[:20]!r}") from None
            if size == 0:
                break
            total += size
            if total > self.server.owner.max_body_bytes:
                raise _BadRequest("the request body is too large", 413)
            piece = self.rfile.read(size + 2)
            if len(piece) < size + 2:
                raise _Stop
            if piece[-2:] != b"\r\n":
                raise _BadRequest("a chunk of the request body does not end with CRLF")
            parts.append(piece[:-2])
        while True:  # trailer fields, up to the blank line
            line = self.rfile.readline(65537)
            if not line:
                raise _Stop
            if line in (b"\r\n", b"\n"):
                return b"".join(parts)

    def _record(self, body: bytes) -> RecordedRequest:
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:  # UnicodeDecodeError included
                parsed = None
        req = RecordedRequest(self.command, self.path,
                              {k.lower(): v for k, v in self.headers.items()}, body, parsed)
        self.server.owner._record(req)
        return req

    # -- replies --

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
            obj = reply.obj if reply.obj is not None else _completion(req.json, reply, owner)
            self._send(reply.status, _json_bytes(obj), "application/json", reply.headers,
                       reply.request_id)
        elif isinstance(reply, ReplayReply):
            self._replay(reply)
        else:
            self._stream(reply, req)

    def _replay(self, reply: ReplayReply) -> None:
        owner = self.server.owner
        rec = reply.recording
        arrived = time.monotonic()

        def until(t: float) -> None:
            if reply.pace == "original":
                owner._pause(arrived + t - time.monotonic(), None, self.connection)

        until(rec.head_time)
        self.send_response_only(rec.status, rec.reason or None)
        for name, value in rec.headers:
            if name.lower() not in _FRAMING_HEADERS:
                self.send_header(name, value)
        framing = rec.framing
        if framing == "chunked" and self.request_version != "HTTP/1.1":
            framing = "close"  # an HTTP/1.0 client cannot read chunks
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing == "length":
            length = rec.header("Content-Length")
            body_length = len(rec.body)
            self.send_header("Content-Length", length if length is not None and
                             not rec.complete else str(body_length))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        for piece in rec.pieces:
            until(piece.t)
            if framing == "chunked":
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece.data), piece.data))
            else:
                self.wfile.write(piece.data)
            self.wfile.flush()
        until(rec.end_time)
        if not rec.complete:
            self._drop(False)  # cut off where the recorded response was
        if framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _start(self, status: int, content_type: str, headers: Mapping[str, str],
               request_id: Optional[str], extra: Sequence[tuple[str, str]]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        if request_id:
            self.send_header("x-request-id", request_id)
        for name, value in headers.items():
            self.send_header(name, value)  # a "Connection: close" here closes, too
        if self.close_connection and not any(k.lower() == "connection" for k in headers):
            self.send_header("Connection", "close")
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str], request_id: Optional[str]) -> None:
        self._start(status, content_type, headers, request_id,
                    [("Content-Length", str(len(body)))])
        if self.command != "HEAD":  # a HEAD answer's headers describe a body not sent
            self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, _json_bytes(obj), "application/json", {}, None)

    def _send_error(self, status: int, message: str, type: str,
                    headers: Optional[Mapping[str, str]] = None) -> None:
        body = _json_bytes({"error": {"message": message, "type": type, "code": status}})
        self._send(status, body, "application/json", headers or {}, "req-local-err")

    def _drop(self, reset: bool) -> None:
        self.close_connection = True
        sock = self.connection
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # The RST leaves when the descriptor is closed, not at shutdown(); the
                # socket stays open while rfile still refers to it.
                self.rfile.close()
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Stop

    # -- streaming --

    def _stream(self, reply: StreamReply, req: RecordedRequest) -> None:
        owner = self.server.owner
        model = reply.model or (req.json.get("model") if isinstance(req.json, dict) else None)
        if not isinstance(model, str) or not model:
            model = owner.model
        # An HTTP/1.0 client cannot read chunked encoding: it gets a close-delimited body.
        chunked = reply.chunked and self.request_version == "HTTP/1.1"
        extra = [("Cache-Control", "no-cache")]
        if chunked:
            extra.append(("Transfer-Encoding", "chunked"))
        else:
            self.close_connection = True  # the body ends at close
        self._start(reply.status, reply.content_type, reply.headers, reply.request_id, extra)
        write = self._write_chunked if chunked else self._write_plain
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
                write(self._render(step, reply.eol, model), reply.write_size)
                if kind == "comment" and not step.eol:
                    break  # an unterminated last line: the body ends here
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _render(self, step: Step, eol: str, model: str) -> bytes:
        if step.kind == "raw":
            return bytes(step.payload)
        if step.kind == "comment":
            out = encode(Comment(step.payload), eol=eol)
            return out if step.eol else out[: -len(eol)]
        if step.kind == "chunk":
            obj = dict(step.payload)
            if obj.get("model") is None:
                obj["model"] = model
            text = _json_text(obj)
        else:
            text = step.payload
        return encode(ServerSentEvent(text), eol=eol)

    def _write_chunked(self, body: bytes, size: Optional[int]) -> None:
        # Each piece is its own chunk and its own send(): with TCP_NODELAY the pieces
        # leave as separate segments, so a client sees them arrive one by one.
        step = size or len(body) or 1
        for i in range(0, len(body), step):  # an empty body writes nothing: "0" would end
            piece = body[i : i + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()

    def _write_plain(self, body: bytes, size: Optional[int]) -> None:
        step = size or len(body) or 1
        for i in range(0, len(body), step):
            self.wfile.write(body[i : i + step])
            self.wfile.flush()


# -- the default model ---------------------------------------------------------------

#: (pattern, reasoning, answer): the first pattern found in the prompt picks the answer.
_CANNED: Final = (
    (re.compile(r"\bquantum\b", re.IGNORECASE),
     "The user wants an accessible explanation of quantum computing. I should cover "
     "qubits, superposition, entanglement and interference, say where it helps, and "
     "not oversell it.",
     "Quantum computers store information in qubits. A classical bit is 0 or 1; a qubit "
     "can be in a superposition of both, and qubits can be entangled so that measuring "
     "one tells you about another. Algorithms arrange interference so that wrong answers "
     "cancel out and right ones add up. That gives big speedups for a few problems, such "
     "as factoring (Shor's algorithm) and simulating molecules, but not for everything."),
    (re.compile(r"15\s*!\s*/\s*13\s*!"),
     "15! = 15 \u00d7 14 \u00d7 13!, so the 13! cancels in 15! / 13!. What is left is "
     "15 \u00d7 14, which is 210.",
     "15! / 13! = 15 \u00d7 14 = 210: every factor from 13 down to 1 cancels."),
    (re.compile(r"^\W*(hello|hi|hey)\b", re.IGNORECASE),
     "A greeting. I will greet back and say what I can do here.",
     "Hello! I am the offline model of the local AllToken server. Ask me anything and "
     "watch the answer stream in: reasoning first, then the answer, then usage and cost."),
)


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
                if isinstance(value, list):  # content parts: the text ones
                    return " ".join(p["text"] for p in value if isinstance(p, dict)
                                    and isinstance(p.get("text"), str))
    return ""


def _answer_for(prompt: str) -> tuple[str, str]:
    for pattern, thinking, answer in _CANNED:
        if pattern.search(prompt):
            return thinking, answer
    topic = " ".join(prompt.split()[:12]) or "an empty prompt"
    thinking = (f"The user asks about \u201c{topic}\u201d. I am the offline model, so I "
                "should say so plainly and show what a streamed answer looks like.")
    answer = (f"This is the offline model of the local AllToken server, so it cannot "
              f"really answer \u201c{topic}\u201d. Point ALLTOKEN_BASE_URL at the real API "
              "(and set ALLTOKEN_API_KEY) for a real answer; this one shows the streaming: "
              "reasoning first, then the answer, then usage and cost.")
    return thinking, answer


def _default_reply(body: Mapping[str, Any], owner: LocalServer) -> Reply:
    requested = body.get("model")
    model = requested if isinstance(requested, str) and requested else owner.model
    prompt = _prompt(body)
    if model == "echo":
        thinking, answer = "", prompt
    else:
        thinking, answer = _answer_for(prompt)
    prompt_tokens = max(1, len(prompt.split()))
    if not body.get("stream"):
        return JSONReply(content=answer, reasoning=thinking or None, model=model,
                         usage=(prompt_tokens, len(_words(answer)) if answer else 0))
    steps: list[Step] = [role()]
    pace = [sleep(owner.pace)] if owner.pace > 0 else []
    pieces = 0
    for word in _words(thinking) if thinking else []:
        steps += [reasoning(word), *pace]
        pieces += 1
    for word in _words(answer) if answer else []:
        steps += [content(word), *pace]
        pieces += 1
    steps += [finish("stop"), usage(prompt_tokens, pieces), done()]
    # Made-up prices per token in dollars, in Decimal so that cost = input + output exactly.
    charge_in = prompt_tokens * Decimal("0.000002")
    charge_out = pieces * Decimal("0.000008")
    steps.append(cost(f"{charge_in + charge_out:f}", input_price=f"{charge_in:f}",
                      output_price=f"{charge_out:f}", prompt_tokens=prompt_tokens,
                      completion_tokens=pieces))
    return StreamReply(steps, model=model)


def _completion(body: Any, reply: JSONReply, owner: LocalServer) -> dict[str, Any]:
    requested = body.get("model") if isinstance(body, dict) else None
    model = reply.model or (requested if isinstance(requested, str) and requested
                            else owner.model)
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    p, c = reply.usage
    return {"id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}


class _ReplayServer(LocalServer):
    """A server whose every chat request, with nothing queued, gets one recording."""

    def __init__(self, replay: ReplayReply, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._replay = replay

    def _next_reply(self) -> Optional[Reply]:
        return super()._next_reply() or self._replay


def serve(host: str = "127.0.0.1", port: int = 8765, api_key: Optional[str] = None,
          pace: float = 0.02, replay: Optional[ReplayReply] = None) -> None:
    """Run a :class:`LocalServer` until interrupted, printing its base URL once.

    Args:
        host: The address to bind.
        port: The port (0 picks a free one; the printed URL shows it).
        api_key: Require this bearer token (None: accept any request).
        pace: Seconds between the default model's tokens.
        replay: Answer every chat request with this recorded response instead of the
            default model.

    Raises:
        KeyboardInterrupt: on Ctrl-C, after the server has closed.
        OSError: the address cannot be bound.
    """
    if replay is not None:
        server: LocalServer = _ReplayServer(replay, host=host, port=port, api_key=api_key,
                                            pace=pace)
    else:
        server = LocalServer(host=host, port=port, api_key=api_key, pace=pace)
    server.start()
    try:
        print(f"alltoken local server: {server.base_url}", flush=True)
        while True:
            time.sleep(3600)  # unlike a lock or Event wait, interrupted by Ctrl-C everywhere
    finally:
        server.close()
