"""A stream's state: ``Stream``, ``TextStream`` and the read loop that feeds them.

Layer 3. Uses ``_request`` (the attempts), ``_transport`` (reading, content decoding),
``sse`` (the tokenizer), ``_types`` (chunks, cost), ``_partial_json`` (tool-call
arguments as they stream) and ``_errors``; the client facade creates streams.

Stream lifecycle
----------------
``create(stream=True)`` builds a :class:`~alltoken._request.Request` and constructs a
:class:`Stream`, whose state runs :meth:`Request.open
<alltoken._request.Request.open>`: connect (or reuse an idle pooled connection), send,
and wait for the status line and headers. A non-2xx status is read into an
``APIStatusError`` and retried when the policy says so; the ``Stream`` is returned only
for a 2xx ``text/event-stream`` response, so HTTP errors surface from ``create()``.

Iterating the ``Stream`` runs one generator: ``read1`` on the response (bytes as they
arrive) -> ``SSEDecoder.feed`` -> ``_ChunkParser.parse`` (``parse_chunk``, faster on the
text the chunks of a stream share) -> accumulate -> ``yield``. Before the
first chunk is yielded, a retryable failure (an in-stream error event, a dropped
connection) re-opens the request under the same retry budget; after it, nothing is
retried, because a token must never be handed to the caller twice. ``data: [DONE]`` ends
the chunks, but the body is read to its end for the cost comment that may follow.

The chunk loop keeps what each chunk adds and nothing more (the first choice's pieces,
the other choices' in ``_ChoiceBuilder``s, the first chunk that names the answer, the
last event's data text, a few clock readings); what is built from them -- the
``completion()``, the parsed tool-call arguments, the ``Timings`` -- is built when asked
for, so a caller that never asks pays only those few stores per chunk (measured: within
the benchmark's noise, about 1%). ``sse()`` relays the data text of each chunk as
received, from the same loop.

Every ending goes through the generator's ``finally``: a body read to its end returns the
connection to the client's pool, anything else (break, ``close()`` from any thread,
error, abort, garbage collection) closes the socket. Accumulated state is updated before
each chunk is yielded and before any error is raised, so it always holds what was
received.
"""

from __future__ import annotations

# At run time too (both are loaded already), so typing.get_type_hints resolves.
import _thread
import http.client
import json
import time
from collections.abc import Generator, Iterable, Iterator
from http.client import HTTPException
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Protocol, TypeVar, cast

from . import _log
from ._errors import (
    AbortedError,
    AllTokenError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ProtocolError,
    excerpt,
)
from ._request import MAX_ERROR_BODY, Request
from ._transport import (
    READ_SIZE,
    _Connection,
    inflater,
    map_exception,
    release,
    translate,
)
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Cost,
    ErrorInfo,
    FunctionCall,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
    _ChunkParser,
    parse_cost,
    parse_error_body,
)
from .sse import Comment, Item, ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    from ._partial_json import PartialJSON

__all__ = ["Stream", "TextStream", "Timings"]


class Closeable(Protocol):
    """What a :class:`TextStream` closes with itself: the client ``stream()`` made."""

    def close(self) -> None: ...


class _ToolCallBuilder:
    __slots__ = ("arguments", "fed", "id", "name", "parser", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = "function"
        self.name = ""
        self.arguments: list[str] = []
        # The incremental parse of the arguments, made on the first
        # Stream.tool_call_arguments() call for this call (plain text streams and callers
        # that never ask pay nothing); ``fed`` counts the pieces of ``arguments`` it has
        # read, and is -1 once they turned out not to be JSON.
        self.parser: Optional[PartialJSON] = None
        self.fed = 0

    def tool_call(self) -> ToolCall:
        arguments = "".join(self.arguments)
        function = {"name": self.name, "arguments": arguments}
        return ToolCall(self.id, self.type, FunctionCall(self.name, arguments, function),
                        {"id": self.id, "type": self.type, "function": function})

    def parsed_arguments(self) -> Any:
        parser = self.parser
        if parser is None:
            from ._partial_json import PartialJSON  # loaded only when asked for

            parser = self.parser = PartialJSON()
        pieces = self.arguments
        fed = self.fed
        n = len(pieces)  # once: the reader may append meanwhile (another thread's call)
        if 0 <= fed < n:
            # Only the pieces that arrived since the last call: the work is in proportion
            # to the new text, however long the arguments already are.
            self.fed = n
            feed = parser.feed
            try:
                for i in range(fed, n):
                    feed(pieces[i])
            except ValueError as exc:  # json.JSONDecodeError: not the start of any JSON
                self.fed = -1
                _log.debug("tool call %r: its arguments are not JSON: %s", self.name, exc)
        return parser.value


def _merge_tools(tools: dict[int, _ToolCallBuilder], deltas: list[ToolCallDelta]) -> None:
    for d in deltas:
        b = tools.get(d.index)
        if b is None:
            b = tools[d.index] = _ToolCallBuilder()
        if d.id:
            b.id = d.id
        if d.type:
            b.type = d.type
        f = d.function
        if f is not None:
            if f.name:
                b.name += f.name
            if f.arguments:
                b.arguments.append(f.arguments)


def _joined(parts: list[str]) -> str:
    """The text of *parts*, which is left holding it as one piece (asking again is free)."""
    # Safe while the reader appends in another thread: join a fixed count of pieces and
    # replace just those (one slice store); a piece appended meanwhile stays after them.
    n = len(parts)
    if n > 1:
        text = "".join(parts[:n])
        parts[:n] = [text]
        return text
    return parts[0] if n else ""


class _ChoiceBuilder:
    """What the chunks said so far of one choice other than the first (``n > 1``); the
    first choice's state lives on :class:`_StreamState` itself, where the per-chunk loop
    reaches it without an indirection."""

    __slots__ = ("finish_reason", "reasoning", "role", "text", "tools")

    def __init__(self) -> None:
        self.role: Optional[str] = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tools: dict[int, _ToolCallBuilder] = {}
        self.finish_reason: Optional[str] = None


def _choice(index: int, role: Optional[str], text: str, reasoning: str,
            tools: dict[int, _ToolCallBuilder], finish_reason: Optional[str]) -> Choice:
    """A choice as a non-streamed answer has it: ``content`` is None only for a message
    of tool calls without text, as the API sends it; ``reasoning_content`` and
    ``tool_calls`` are None when none came. ``raw`` is the JSON of the same answer."""
    calls = [b.tool_call() for _, b in sorted(tools.items())] or None
    content = text if text or calls is None else None
    role = role or "assistant"
    raw: dict[str, Any] = {"role": role, "content": content}
    if reasoning:
        raw["reasoning_content"] = reasoning
    if calls is not None:
        raw["tool_calls"] = [c.raw for c in calls]
    message = Message(role, content, reasoning or None, calls, raw)
    return Choice(index, message, finish_reason,
                  {"index": index, "message": raw, "finish_reason": finish_reason})


class _StreamState:
    """The accumulated state and the read loop of a :class:`Stream`.

    Kept apart from ``Stream`` so the read-loop generator references this object and not
    the ``Stream``: without a reference cycle a dropped ``Stream`` is freed (and its
    socket closed) at once by reference counting, not later by the cycle collector.

    The first choice (index 0) is accumulated in attributes of its own, which the chunk
    loop updates directly; other choices (``n > 1``) go to ``_choices``, off that path.
    ``completion()`` builds the whole answer only when asked.
    """

    def __init__(self, request: Request) -> None:
        self._req = request
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tools: dict[int, _ToolCallBuilder] = {}
        self._role: Optional[str] = None
        self._choices: dict[int, _ChoiceBuilder] = {}
        #: The first chunk that named its ``id`` or ``model``: the answer's id, model
        #: and creation time (every chunk repeats them; a first one may leave them out).
        self._head: Optional[ChatCompletionChunk] = None
        #: The data of the last chunk event, as received (for sse()).
        self._data = ""
        #: The text of the cost comment, as received (for sse()).
        self._cost_text: Optional[str] = None
        self.finish_reason: Optional[str] = None
        self.usage: Optional[Usage] = None
        self.cost: Optional[Cost] = None
        self.chunks = 0
        self.done = False
        #: The thread that iterates: the creating thread until the first next().
        self.reader = _thread.get_ident()
        # time.monotonic() of the response headers (of the attempt read), of the first
        # chunk with content, reasoning or a tool call, and of the end of the read loop.
        self.t_headers: Optional[float] = None
        self.t_first: Optional[float] = None
        self.t_end: Optional[float] = None
        self._conn: Optional[_Connection] = None
        self._resp: Optional[http.client.HTTPResponse] = None
        self._conn, self._resp = self._open()

    @property
    def request_id(self) -> Optional[str]:
        return self._req.request_id

    def _open(self) -> tuple[_Connection, http.client.HTTPResponse]:
        req = self._req
        while True:
            conn, resp = req.open()
            self.t_headers = time.monotonic()
            ctype = (resp.getheader("content-type") or "").split(";")[0].strip().lower()
            if ctype == "text/event-stream":
                return conn, resp
            # A 2xx that is not a stream: a JSON error body is that error; else a protocol
            # violation (a caching proxy, a gateway that ignored stream=true, ...).
            try:
                with translate("response", req.deadlines, req.request_id):
                    body = resp.read(MAX_ERROR_BODY)
            finally:
                conn.close()
            info = parse_error_body(body, ctype) if "json" in ctype else None
            if info is not None:
                req.recover(req.event_error(info))
                continue
            raise ProtocolError(
                f"expected a text/event-stream response, got {ctype or 'no content type'}: "
                f"{excerpt(body)}", request_id=req.request_id)

    def _drop(self) -> None:
        conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            conn.close()  # closes its response too, which may hold the socket

    def _release(self) -> None:
        """A stream closed from outside its read loop: the connection, the signal's
        wake-up, and the end time (when it ended before it was read to its end)."""
        self._drop()
        self._req.deadlines.release_signal()
        if self.t_end is None:
            self.t_end = time.monotonic()

    # -- accumulated state -------------------------------------------------------------

    @property
    def text(self) -> str:
        return _joined(self._text)

    @property
    def reasoning(self) -> str:
        return _joined(self._reasoning)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [b.tool_call() for _, b in sorted(self._tools.items())]

    def tool_call_arguments(self, index: int) -> Any:
        b = self._tools.get(index)
        return None if b is None else b.parsed_arguments()

    def completion(self) -> ChatCompletion:
        others = self._choices
        choices = [_choice(i, b.role, _joined(b.text), _joined(b.reasoning), b.tools,
                           b.finish_reason) for i, b in list(others.items())]
        if (not others or self._text or self._reasoning or self._tools
                or self.finish_reason is not None or self._role is not None):
            # The first choice is there whenever it said anything, and always with
            # n == 1: choices[0] exists as in a non-streamed answer.
            choices.append(_choice(0, self._role, self.text, self.reasoning, self._tools,
                                   self.finish_reason))
        choices.sort(key=lambda c: c.index)
        head = self._head
        id_, created, model = ("", 0, "") if head is None else (head.id, head.created,
                                                                head.model)
        usage = self.usage
        raw: dict[str, Any] = {"id": id_, "object": "chat.completion", "created": created,
                               "model": model, "choices": [c.raw for c in choices],
                               "usage": None if usage is None else usage.raw}
        if head is not None and head.system_fingerprint is not None:
            raw["system_fingerprint"] = head.system_fingerprint
        return ChatCompletion(id_, "chat.completion", created, model, choices, usage, raw)

    def _merge_choice(self, choice: ChunkChoice) -> None:
        """A choice other than the first: off the per-chunk path of ``n == 1``."""
        b = self._choices.get(choice.index)
        if b is None:
            b = self._choices[choice.index] = _ChoiceBuilder()
        delta = choice.delta
        if delta.role:
            b.role = delta.role
        if delta.content:
            b.text.append(delta.content)
        if delta.reasoning_content:
            b.reasoning.append(delta.reasoning_content)
        if delta.tool_calls:
            _merge_tools(b.tools, delta.tool_calls)
        if choice.finish_reason:
            b.finish_reason = choice.finish_reason
        if self.t_first is None and (delta.content or delta.reasoning_content
                                     or delta.tool_calls):
            self.t_first = time.monotonic()

    # -- the read loop -----------------------------------------------------------------

    def _run(self) -> Generator[ChatCompletionChunk, None, None]:
        req = self._req
        clean = False
        self.reader = _thread.get_ident()
        try:
            while True:
                try:
                    yield from self._read()
                    clean = True
                    _log.debug("stream complete: %d chunks in %.1f ms", self.chunks,
                                 (time.monotonic() - req.started) * 1000)
                    return
                except AllTokenError as err:
                    if err.request_id is None:
                        err.request_id = req.request_id
                    self._drop()
                    if self.chunks or isinstance(err, (AbortedError, ProtocolError)):
                        raise
                    req.recover(err)  # raises when not retrying
                    self.cost = self._cost_text = None
                    self._conn, self._resp = self._open()
        finally:
            self.t_end = time.monotonic()
            req.deadlines.release_signal()
            conn, resp = self._conn, self._resp
            if clean and conn is not None and resp is not None:
                self._conn = self._resp = None
                release(req.pool, conn, resp)
            else:
                self._drop()

    def _read(self) -> Iterator[ChatCompletionChunk]:
        req = self._req
        dl = req.deadlines
        resp = self._resp
        assert resp is not None
        read1 = resp.read1
        decoder = SSEDecoder()
        feed = decoder.feed
        parse = _ChunkParser().parse
        idle = dl.timeout.idle
        dl.idle_left = idle
        text = self._text
        reasoning = self._reasoning
        tools = self._tools
        head = self._head
        # Until the first token: then one test of a local per chunk.
        waiting = self.t_first is None
        # A polled signal (not a threading.Event) is looked at here too; an Event's set()
        # and close() from another thread set dl.aborted directly.
        polled = dl.signal if dl.polled else None
        inflate = inflater(resp.getheader("content-encoding"), req.request_id)
        done = False
        while True:
            if dl.aborted is not None or (polled is not None and polled.is_set()):
                if done:  # the answer is whole: an abort only gives up the cost trailer
                    self._drop()
                    break
                dl.check_abort()
            try:
                data = read1(READ_SIZE)
            except (OSError, HTTPException, ValueError, AbortedError, APITimeoutError) as exc:
                if done:
                    # The answer is complete at [DONE]: a failure (or an abort) while
                    # waiting for the cost trailer only means there is no cost.
                    _log.debug("no cost trailer after [DONE]: %s", exc)
                    self._drop()  # never pooled: the connection's state is unknown
                    break
                if isinstance(exc, AbortedError):
                    raise
                if isinstance(exc, APITimeoutError):
                    raise
                raise map_exception(exc, "stream", dl, req.request_id) from exc
            if not data:
                break
            for item in (feed(data) if inflate is None else _feed_all(feed, inflate(data))):
                if type(item) is ServerSentEvent:
                    if done:
                        continue
                    d = item.data
                    if d == "[DONE]":
                        done = self.done = True
                        dl.after_done = True
                        continue
                    if item.event != "message" and item.event != "error":
                        _log.debug("ignoring an event of type %r", item.event)
                        continue
                    dl.idle_left = idle
                    chunk = parse(d)
                    if type(chunk) is ErrorInfo:
                        raise req.event_error(chunk)
                    assert type(chunk) is ChatCompletionChunk
                    self._data = d
                    if head is None and (chunk.id or chunk.model):
                        head = self._head = chunk
                    for choice in chunk.choices:
                        if choice.index:
                            self._merge_choice(choice)
                            continue
                        delta = choice.delta
                        if delta.content:
                            text.append(delta.content)
                        if delta.reasoning_content:
                            reasoning.append(delta.reasoning_content)
                        if delta.tool_calls:
                            _merge_tools(tools, delta.tool_calls)
                        if delta.role:
                            self._role = delta.role
                        if choice.finish_reason:
                            self.finish_reason = choice.finish_reason
                    if waiting and (text or reasoning or tools or self.t_first is not None):
                        waiting = False
                        if self.t_first is None:
                            self.t_first = time.monotonic()
                    if chunk.usage is not None:
                        self.usage = chunk.usage
                    self.chunks += 1
                    if dl.aborted is not None or (polled is not None and polled.is_set()):
                        dl.check_abort()
                    yield chunk
                elif cast(Comment, item).text[:1] == "{":
                    self._comment(cast(Comment, item).text)
        decoder.end()  # returns nothing: the spec discards an unterminated last line...
        # ...whose text the decoder keeps: a cost trailer without its final newline.
        line = decoder.unterminated_line
        if line[:1] == ":":
            comment = line[2:] if line[1:2] == " " else line[1:]
            if comment[:1] == "{":
                self._comment(comment)
        if not done:
            raise APIConnectionError(
                f"the stream ended before data: [DONE] after {self.chunks} chunks; "
                "the answer is incomplete", request_id=req.request_id)

    def _comment(self, text: str) -> None:
        cost = parse_cost(text)
        if cost is not None:
            self.cost = cost
            self._cost_text = text


class Timings(NamedTuple):
    """Monotonic facts of a streamed request: seconds since ``create()`` was called
    (``time.monotonic()``), each None until it happened.

    A snapshot: :attr:`Stream.timings` builds a new one on each access. (An immutable
    named tuple: a frozen dataclass would cost a cold start about as much as the whole
    stream module.)

    Attributes:
        headers: When the response's status and headers arrived (of the attempt that
            was read, after any retries).
        first_token: When the first chunk with content, reasoning or a tool call arrived
            (read from the socket and parsed; not when your loop got to it).
        end: When the stream ended: read to its end, failed, aborted or closed.
        attempts: Requests sent so far, retries (and a redirect or a key refresh)
            included.
    """

    headers: Optional[float]
    first_token: Optional[float]
    end: Optional[float]
    attempts: int


def _since(moment: Optional[float], started: float) -> Optional[float]:
    return None if moment is None else moment - started


class _Answer:
    """The accumulated attributes of a stream, defined once for :class:`Stream` and
    :class:`TextStream` (each keeps the stream's state in ``_state``)."""

    __slots__ = ()
    _state: _StreamState

    @property
    def text(self) -> str:
        """The content received so far."""
        return self._state.text

    @property
    def reasoning(self) -> str:
        """The reasoning content received so far."""
        return self._state.reasoning

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Tool calls assembled from the deltas so far, in index order."""
        return self._state.tool_calls

    @property
    def finish_reason(self) -> Optional[str]:
        """The first choice's finish reason, once sent."""
        return self._state.finish_reason

    @property
    def usage(self) -> Optional[Usage]:
        """The last ``Usage`` the server sent, or None."""
        return self._state.usage

    @property
    def cost(self) -> Optional[Cost]:
        """The ``Cost`` from the trailer after ``[DONE]``, or None."""
        return self._state.cost

    @property
    def request_id(self) -> Optional[str]:
        """The server's ``x-request-id``, or None."""
        return self._state.request_id

    @property
    def chunks(self) -> int:
        """How many chunks have been yielded."""
        return self._state.chunks

    @property
    def done(self) -> bool:
        """Whether ``data: [DONE]`` arrived."""
        return self._state.done

    @property
    def timings(self) -> Timings:
        """When the headers, the first token and the end came, and how many requests
        were sent (a fresh :class:`Timings` snapshot on each access)."""
        s = self._state
        req = s._req
        started = req.started
        return Timings(_since(s.t_headers, started), _since(s.t_first, started),
                       _since(s.t_end, started), req.attempts)

    def completion(self) -> ChatCompletion:
        """The answer assembled from the chunks so far, shaped as a non-streamed
        ``create()`` returns it.

        ``id``, ``model`` and ``created`` come from the first chunk that names an id or
        a model; ``choices`` holds every choice by ``index`` (``n > 1`` included; with
        ``n == 1`` ``choices[0]`` is there even before anything arrived), each with
        ``message.content``, ``message.reasoning_content`` and ``message.tool_calls``
        assembled from the deltas, and its ``finish_reason``; ``usage`` is the last usage
        sent. ``raw`` holds the same answer as the JSON a non-streamed response would
        have carried. Callable at any time, from the thread reading the stream: mid-stream,
        and after an error, an abort or ``close()`` it holds what arrived. Built anew on
        each call (the chunk loop only collects the pieces), in time proportional to the
        answer: call it when you need it, not after every chunk.
        """
        return self._state.completion()

    def tool_call_arguments(self, index: int = 0) -> Any:
        """The arguments of the tool call with this ``index`` (as the deltas number
        them: 0 is the first call of the first choice), parsed as JSON as far as they have
        arrived -- for example ``{"path": "a.txt", "content": "Hel"}`` while the content
        is still streaming (see :func:`alltoken.parse_partial_json` for what a prefix is
        worth).

        Incremental: each call parses only the text that arrived since the previous one,
        so following a long argument costs work in proportion to its length, not to the
        number of calls times its length. Building the value handed out still copies what
        is open (the string in progress and the containers around it): for an argument of
        megabytes, ask at the rate a display needs (every 50 ms, say), not after every
        delta. Do not mutate the value: its completed parts are shared with later values.

        Returns:
            The parsed value so far; None when the call has not started (or no such tool
            call exists yet) or nothing is settled yet (``{"pa``). Arguments that turn
            out not to be JSON never raise: the value stays that of the longest prefix
            that was (compare :attr:`tool_calls`, which holds the text as sent).
        """
        return self._state.tool_call_arguments(index)


class Stream(_Answer):
    """A streamed chat completion: an iterator of ``ChatCompletionChunk``.

    Use it as a context manager (or call :meth:`close`) so the connection is released
    even when the loop ends early. Its accumulated attributes are always current,
    including after an error or an abort:

    Attributes:
        text: The content received so far.
        reasoning: The reasoning content received so far.
        tool_calls: ``ToolCall`` objects assembled from deltas, in index order.
        finish_reason: The first choice's finish reason, once sent.
        usage: The last ``Usage`` the server sent, or None.
        cost: The ``Cost`` from the trailer after ``[DONE]``, or None.
        request_id: The server's ``x-request-id``, or None.
        chunks: How many chunks have been yielded.
        done: Whether ``data: [DONE]`` arrived.
        timings: A :class:`Timings` snapshot: when the headers, the first token and the
            end came, and how many requests were sent.

    These attributes are those of the first choice (index 0); :meth:`completion` has
    every choice of an ``n > 1`` stream. Also: :meth:`completion` (the answer as a
    non-streamed call returns it), :meth:`tool_call_arguments` (parsed while they
    stream), :meth:`sse` (the stream re-served as Server-Sent Events) and
    :attr:`timings`.

    Iterating raises ``APIStatusError`` for an in-stream error event,
    ``APIConnectionError`` when the connection fails or the body ends before
    ``[DONE]``, ``APITimeoutError`` for read/idle/total timeouts, ``ProtocolError`` for
    malformed data and ``AbortedError`` when the signal is set.
    """

    __slots__ = ("_gen", "_state")

    def __init__(self, request: Request) -> None:
        self._state = _StreamState(request)
        self._gen = self._state._run()

    def __repr__(self) -> str:
        s = self._state
        state = "done" if s.done else ("open" if s._conn is not None else "closed")
        return f"<alltoken.Stream {state} chunks={s.chunks} request_id={s.request_id!r}>"

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        # Not the read-loop generator itself: a `for` over a temporary
        # (`for c in client...create(stream=True)`) holds only what __iter__ returns,
        # and if that did not reference the Stream, the Stream would be freed at once and
        # its __del__ would close the stream before the first chunk.
        return _iterate(self, self._gen)

    def __next__(self) -> ChatCompletionChunk:
        return next(self._gen)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the connection (closing its socket unless the body was
        read to its end). Idempotent, and safe from any thread: called while another
        thread is reading the stream, it wakes that reader at once, which raises
        ``AbortedError`` and releases the connection itself."""
        state = self._state
        running = getattr(self._gen, "gi_running", False)  # typeshed's Generator lacks it
        if state.reader != _thread.get_ident() or running:
            # Another thread reads (or is to read) the stream: never run its generator
            # here (that reader would get a silent end, or ValueError). Wake it instead;
            # it raises AbortedError and releases the connection itself.
            state._req.deadlines.interrupt("the stream was closed by another thread")
            if not running:
                # Nobody is inside it now: release the connection here too. A reader
                # that resumes later meets the abort before it touches the socket.
                state._release()
            return
        self._close_here()

    def _close_here(self) -> None:
        try:
            self._gen.close()
        except ValueError:  # another thread entered next() after all
            self._state._req.deadlines.interrupt("the stream was closed by another thread")
            return
        self._state._release()

    def sse(self) -> Iterator[bytes]:
        """The stream re-served as Server-Sent Events, for a web backend to relay to a
        browser: return it from a WSGI view as the response body (``Content-Type:
        text/event-stream``).

        Yields, as the chunks arrive: ``data: <the chunk's JSON, exactly as received>``
        then a blank line for each chunk; ``data: [DONE]``; then the cost comment
        ``: <its text as received>`` when one came. Each piece is one ``bytes`` (UTF-8),
        so a server sends it at once. Chunks already iterated before the call are not
        sent again: call it instead of iterating. Other comments (keep-alives) and
        events of other types are not relayed. ``data: [DONE]`` is sent once the
        upstream body has ended (the cost comment follows ``[DONE]`` at once in practice;
        the wait is bounded by the read timeout).

        A failure ends the iterator with one last event in the AllToken error shape,
        ``data: {"error": {"message": ..., "type": ..., "code": ...}}``, never an
        exception (the response has started; an exception would only cut it): an
        in-stream error event gives its own ``message``, ``type`` and ``code`` (the HTTP
        status when it had no code); otherwise ``type`` and ``code`` are
        ``"timeout_error"``/504 for a timeout, ``"api_connection_error"``/502 for a
        network failure or an upstream body that ended before ``[DONE]``,
        ``"protocol_error"``/502 for malformed data, and ``"aborted"``/499 when the
        signal was set. The stream's attributes keep what arrived, as after any error.

        The iterator has ``close()``, which a WSGI server calls when the response ends
        or the browser has gone away (the write to it failed): it closes this stream
        and its upstream connection at once, so nobody keeps paying for tokens no one
        reads. Closing it, or reading it to its end, closes the stream.

        Returns:
            An iterator of ``bytes`` with a ``close()`` method.
        """
        return _Relay(self)

    def __del__(self) -> None:
        # Nobody else holds the stream (or it would not be freed): close it here, in
        # whichever thread dropped it last.
        if getattr(self, "_gen", None) is not None:
            self._close_here()

class _Relay(Iterator[bytes]):
    """What :meth:`Stream.sse` returns: a WSGI response iterable. A class, not the
    generator itself, so that ``close()`` closes the stream even when called before
    the first ``next()`` (a generator's ``finally`` would not run then)."""

    __slots__ = ("_gen", "_stream")

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._gen = _relay(stream)

    def __iter__(self) -> _Relay:
        return self

    def __next__(self) -> bytes:
        return next(self._gen)

    def close(self) -> None:
        """Stop relaying and close the stream (and its connection). Idempotent."""
        try:
            self._gen.close()
        except ValueError:  # running in another thread: Stream.close() wakes it
            pass
        self._stream.close()


def _relay(stream: Stream) -> Generator[bytes, None, None]:
    state = stream._state
    try:
        for _ in stream._gen:
            data = state._data
            if "\n" in data:  # an event of several data lines: as many lines again
                data = data.replace("\n", "\ndata: ")
            yield f"data: {data}\n\n".encode()
        if not state.done:  # iterated to its end (or closed) before this call
            raise APIConnectionError("the stream was closed before data: [DONE]",
                                     request_id=state.request_id)
        yield b"data: [DONE]\n\n"
        if state._cost_text is not None:
            yield f": {state._cost_text}\n\n".encode()
    except AllTokenError as err:
        yield _error_event(err)
    finally:
        stream.close()


def _error_event(err: AllTokenError) -> bytes:
    """*err* as the AllToken error event, ``data: {"error": {...}}``."""
    kind: Optional[str]
    code: object
    if isinstance(err, APIStatusError):
        kind, code = err.type, err.status_code if err.code is None else err.code
    elif isinstance(err, APITimeoutError):
        kind, code = "timeout_error", 504
    elif isinstance(err, APIConnectionError):
        kind, code = "api_connection_error", 502
    elif isinstance(err, ProtocolError):
        kind, code = "protocol_error", 502
    elif isinstance(err, AbortedError):
        kind, code = "aborted", 499
    else:
        kind, code = "api_error", 500
    body = json.dumps({"error": {"message": err.message, "type": kind, "code": code}})
    return f"data: {body}\n\n".encode()


def _feed_all(feed: Callable[[bytes], list[Item]], pieces: Iterable[bytes]) -> Iterator[Item]:
    for piece in pieces:
        yield from feed(piece)


_T = TypeVar("_T")


def _iterate(owner: object, gen: Iterator[_T]) -> Iterator[_T]:
    """Iterate *gen* while holding *owner* (the Stream or TextStream) alive.

    A plain ``for`` loop, not ``yield from``: when this iterator is dropped after a
    partial loop (``next(iter(s))``, ``islice``), closing it must not close *gen* — the
    owner may still be iterated. Dropping it only drops its reference to *owner*; when
    that was the last one, the owner's ``__del__`` closes the connection.
    """
    for item in gen:  # noqa: UP028 - `yield from` would close gen when this is dropped
        yield item
    del owner


def _pieces(stream: Stream, owned: Optional[Closeable]) -> Generator[str, None, None]:
    # A function, not a method: the generator must not reference the TextStream.
    try:
        for chunk in stream:
            for choice in chunk.choices:
                if not choice.index and choice.delta.content:
                    yield choice.delta.content
    finally:
        stream.close()
        if owned is not None:
            owned.close()


class TextStream(_Answer):
    """What :func:`stream` returns: an iterator of content pieces (``str``) with the
    accumulated attributes of the underlying :class:`Stream`."""

    def __init__(self, stream: Stream, owned_client: Optional[Closeable] = None) -> None:
        self.stream = stream
        self._state = stream._state
        self._client = owned_client
        self._gen = _pieces(stream, owned_client)

    def __iter__(self) -> Iterator[str]:
        return _iterate(self, self._gen)  # keeps the TextStream alive: see Stream.__iter__

    def __next__(self) -> str:
        return next(self._gen)

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (and the client :func:`stream` made, if any). Safe from
        any thread, as :meth:`Stream.close` is."""
        gen = self._gen
        if (getattr(gen, "gi_running", False)
                or self._state.reader != _thread.get_ident()):
            self.stream.close()  # wakes the reader; the generator's finally does the rest
            return
        self._close_here()

    def _close_here(self) -> None:
        try:
            self._gen.close()
        except ValueError:
            self.stream.close()
            return
        self.stream._close_here()
        if self._client is not None:
            self._client.close()

    def __del__(self) -> None:
        # Nobody else holds the stream (or it would not be freed): close it here, in
        # whichever thread dropped it last.
        if getattr(self, "_gen", None) is not None:
            self._close_here()

    def __repr__(self) -> str:
        return f"<alltoken.TextStream of {self.stream!r}>"



