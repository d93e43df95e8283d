"""A stream's state: ``Stream``, ``TextStream`` and the read loop that feeds them.

Layer 3. Uses ``_request`` (the attempts), ``_transport`` (reading, content decoding),
``sse`` (the tokenizer), ``_types`` (chunks, cost) and ``_errors``; the client facade
creates streams.

Stream lifecycle
----------------
``create(stream=True)`` builds a :class:`~alltoken._request.Request` and constructs a
:class:`Stream`, whose state runs :meth:`Request.open
<alltoken._request.Request.open>`: connect (or reuse an idle pooled connection), send,
and wait for the status line and headers. A non-2xx status is read into an
``APIStatusError`` and retried when the policy says so; the ``Stream`` is returned only
for a 2xx ``text/event-stream`` response, so HTTP errors surface from ``create()``.

Iterating the ``Stream`` runs one generator: ``read1`` on the response (bytes as they
arrive) -> ``SSEDecoder.feed`` -> ``parse_chunk`` -> accumulate -> ``yield``. Before the
first chunk is yielded, a retryable failure (an in-stream error event, a dropped
connection) re-opens the request under the same retry budget; after it, nothing is
retried, because a token must never be handed to the caller twice. ``data: [DONE]`` ends
the chunks, but the body is read to its end for the cost comment that may follow.

Every ending goes through the generator's ``finally``: a body read to its end returns the
connection to the client's pool, anything else (break, ``close()`` from any thread,
error, abort, garbage collection) closes the socket. Accumulated state is updated before
each chunk is yielded and before any error is raised, so it always holds what was
received.
"""

from __future__ import annotations

# At run time too (both are loaded already), so typing.get_type_hints resolves.
import http.client
import time
from collections.abc import Generator, Iterable, Iterator
from http.client import HTTPException
from typing import Callable, Optional, Protocol, TypeVar, cast

from . import _log
from ._errors import (
    AbortedError,
    AllTokenError,
    APIConnectionError,
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
    ChatCompletionChunk,
    Cost,
    ErrorInfo,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
    parse_chunk,
    parse_cost,
    parse_error_body,
)
from .sse import Comment, Item, ServerSentEvent, SSEDecoder

__all__ = ["Stream", "TextStream"]


class Closeable(Protocol):
    """What a :class:`TextStream` closes with itself: the client ``stream()`` made."""

    def close(self) -> None: ...


class _ToolCallBuilder:
    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = "function"
        self.name = ""
        self.arguments: list[str] = []


class _StreamState:
    """The accumulated state and the read loop of a :class:`Stream`.

    Kept apart from ``Stream`` so the read-loop generator references this object and not
    the ``Stream``: without a reference cycle a dropped ``Stream`` is freed (and its
    socket closed) at once by reference counting, not later by the cycle collector.
    """

    def __init__(self, request: Request) -> None:
        self._req = request
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tools: dict[int, _ToolCallBuilder] = {}
        self.finish_reason: Optional[str] = None
        self.usage: Optional[Usage] = None
        self.cost: Optional[Cost] = None
        self.chunks = 0
        self.done = False
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

    # -- accumulated state -------------------------------------------------------------

    @property
    def text(self) -> str:
        parts = self._text
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    @property
    def reasoning(self) -> str:
        parts = self._reasoning
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(b.id, b.type, FunctionCall(b.name, "".join(b.arguments)))
            for _, b in sorted(self._tools.items())
        ]

    def _merge_tools(self, deltas: list[ToolCallDelta]) -> None:
        for d in deltas:
            b = self._tools.get(d.index)
            if b is None:
                b = self._tools[d.index] = _ToolCallBuilder()
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

    # -- the read loop -----------------------------------------------------------------

    def _run(self) -> Generator[ChatCompletionChunk, None, None]:
        req = self._req
        clean = False
        try:
            while True:
                try:
                    yield from self._read()
                    clean = True
                    req.deadlines.check_abort()
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
                    self.cost = None
                    self._conn, self._resp = self._open()
        finally:
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
        idle = dl.timeout.idle
        dl.idle_left = idle
        text = self._text
        reasoning = self._reasoning
        # A polled signal (not a threading.Event) is looked at here too; an Event's set()
        # and close() from another thread set dl.aborted directly.
        polled = dl.signal if dl.polled else None
        inflate = inflater(resp.getheader("content-encoding"), req.request_id)
        done = False
        while True:
            if dl.aborted is not None or (polled is not None and polled.is_set()):
                dl.check_abort()
            try:
                data = read1(READ_SIZE)
            except (OSError, HTTPException, ValueError, APITimeoutError) as exc:
                if done and dl.aborted is None:
                    # The answer is complete at [DONE]: a failure while waiting for the
                    # cost trailer only means there is no cost.
                    _log.debug("no cost trailer after [DONE]: %s", exc)
                    self._drop()  # never pooled: the connection's state is unknown
                    break
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
                    chunk = parse_chunk(d)
                    if type(chunk) is ErrorInfo:
                        raise req.event_error(chunk)
                    assert type(chunk) is ChatCompletionChunk
                    for choice in chunk.choices:
                        if choice.index:
                            continue
                        delta = choice.delta
                        if delta.content:
                            text.append(delta.content)
                        if delta.reasoning_content:
                            reasoning.append(delta.reasoning_content)
                        if delta.tool_calls:
                            self._merge_tools(delta.tool_calls)
                        if choice.finish_reason:
                            self.finish_reason = choice.finish_reason
                    if chunk.usage is not None:
                        self.usage = chunk.usage
                    self.chunks += 1
                    if dl.aborted is not None or (polled is not None and polled.is_set()):
                        dl.check_abort()
                    yield chunk
                elif cast(Comment, item).text[:1] == "{":
                    self._comment(cast(Comment, item).text)
        for item in decoder.end():
            if not isinstance(item, ServerSentEvent) and item.text[:1] == "{":
                self._comment(item.text)
        if not done:
            raise APIConnectionError(
                f"the stream ended before data: [DONE] after {self.chunks} chunks; "
                "the answer is incomplete", request_id=req.request_id)

    def _comment(self, text: str) -> None:
        cost = parse_cost(text)
        if cost is not None:
            self.cost = cost


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

    Only the choice with index 0 is accumulated (``n > 1`` streams yield every choice).
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
        gen = self._gen
        if not getattr(gen, "gi_running", False):  # typeshed's Generator lacks it
            try:
                gen.close()
            except ValueError:  # another thread entered next() after the check
                pass
            else:
                self._state._drop()
                self._state._req.deadlines.release_signal()
                return
        self._state._req.deadlines.interrupt("the stream was closed by another thread")

    def __del__(self) -> None:
        if getattr(self, "_gen", None) is not None:
            self.close()

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
        if getattr(gen, "gi_running", False):
            self.stream.close()  # wakes the reader; the generator's finally does the rest
            return
        try:
            gen.close()
        except ValueError:
            self.stream.close()
            return
        self.stream.close()
        if self._client is not None:
            self._client.close()

    def __del__(self) -> None:
        if getattr(self, "_gen", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"<alltoken.TextStream of {self.stream!r}>"



