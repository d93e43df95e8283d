"""A sans-IO, incremental, spec-strict Server-Sent Events tokenizer.

Layer 1 (bottom). Bytes in, dataclass events out. This module must not import socket,
ssl, http, threading, json or time (a test reads its imports and enforces it), so it can
be driven by any transport, or by none.

Theory of operation
-------------------
The WHATWG HTML Living Standard, section "Server-sent events", subsection "Event stream
interpretation", defines the parser as a loop over *lines* of decoded text. We keep its
semantics but not its shape, because a Python loop per character (or even per line) is
the slow part of every pure-Python SSE parser.

* Line endings are found on the raw bytes. CR (0x0D) and LF (0x0A) never occur inside a
  UTF-8 multi-byte sequence, so splitting bytes at them splits characters nowhere, and a
  split point is always a character boundary for the decoder.
* The bytes after the last line ending (the incomplete line) are held as a list of
  pieces, joined once, when the line ending arrives. A ``feed`` without a line ending
  only appends to it and checks its length (or its room, below), so a line fed one byte
  at a time costs time proportional to its length. The length is kept as a limit on
  the number of pieces (the pieces held plus the bytes still allowed), so a one-byte
  piece costs no arithmetic. After a one-byte feed the decoder holds the incomplete
  line's *room*: an iterator that yields the set of the one-byte pieces that end no
  line once for each piece the line may still take. The next feed is looked up in what
  the room yields, which answers "one byte", "no line ending" and "within the limit"
  at once; a room that has run out yields nothing, and the feed goes the general way,
  which checks the length and makes a new room. A lone CR or LF, the other half of
  1-byte feeding, leaves the room as it is (what is left of it is no more than a new
  line has), and a lone LF ends the incomplete line without a search.
* A ``feed`` with a line ending takes one of two paths, and which one depends only on
  the decoder's state and the bytes, never on how they were split:

  - **The common shape**, tried only *between events* (no field of an event seen since
    the last dispatch, no CR pending, past the start of the stream) on a feed of more
    than one byte with an LF: the incomplete line plus the feed starts with a run of
    blocks of one ``data: value`` line and a blank line each -- an LLM stream's
    ``data: {json}`` chunks. It is cut once, at each separator plus ``data: ``, and
    the separator that ends it, if it does, cut off first; it has that shape when it
    starts with ``data: `` and no value holds a CR or LF (the values: every piece when
    it ended with a separator, else every piece but the last). The values are decoded
    with one ``map`` and the events built with another. Else the last piece is the
    value of one more ``data:`` line, still incomplete, when it holds no line ending:
    it is held as two pieces, ``data: `` and the value, so that the next feed joins
    the value alone. Otherwise (a separator cut by the end of the feed, or lines of
    another kind after the last block) that piece alone is read line by line.
  - **Line by line**, for everything else: the complete lines are joined with the
    incomplete line, normalised (CRLF and CR become LF), split, and interpreted one by
    one by the rules quoted from the spec next to the code
    (:meth:`SSEDecoder._interpret`), each line decoded on its own with
    ``bytes.decode(..., "replace")``; ``data:`` lines, the bulk of a large event, inline
    in that loop.

* A CR that is the last byte fed so far ends its line at once (an event it completes is
  returned by that very ``feed``); the decoder remembers to drop an LF at the start of
  the next ``feed``, since CRLF is one line ending.
* The limits are checked before memory is spent: an incomplete line as it grows, a
  complete one before it is joined, an event's data as each line is added.
* State: :class:`DecoderState` is ``OPEN`` until a limit is broken, then ``ERROR`` for
  good (:meth:`SSEDecoder._fail`, the one place that fails). ``end()`` discards what is
  pending, as the spec says, and keeps the last unterminated line's text for the caller.

The result of any input does not depend on how it is split across ``feed`` calls.

**Not done here:** JSON decoding, reconnection, or any I/O. Comments, which the spec
ignores, are returned as :class:`Comment` so a client can read the cost trailer and see
keep-alives.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Final, NoReturn, Optional, Union

from ._errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "Comment",
    "SSEDecoder",
    "ServerSentEvent",
    "encode",
]

#: The longest line ``SSEDecoder`` accepts by default. A chat-completion chunk is a few
#: hundred bytes; a whole non-streamed answer or a large tool-call argument sent as one
#: ``data:`` line can reach megabytes. 16 MiB leaves room for those while bounding what a
#: hostile or broken server can make the client hold (browsers impose no limit at all;
#: h11 bounds an incomplete HTTP event at 16 KiB, which is too small for SSE data).
DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024

_BOM: Final = b"\xef\xbb\xbf"
#: The first piece of an incomplete ``data: `` line held back by the common shape.
_DATA_FIELD: Final = b"data: "
#: Every one-byte ``bytes`` but CR and LF. One hashed lookup (a one-byte ``bytes``
#: caches its hash) tells feed() both that a piece is one byte and that it ends no line.
#: Made by slicing: CPython hands out one cached object per value for a one-byte slice
#: of a ``bytes``, so a piece cut off a larger ``bytes`` is the very object in the set,
#: and the lookup needs no comparison of bytes.
_EVERY_BYTE: Final = bytes(range(256))
_ONE_PLAIN_BYTE: Final = frozenset(_EVERY_BYTE[b : b + 1] for b in range(256)
                                   if b not in (10, 13))
#: The room of a decoder whose last feed was not one byte: no piece goes the 1-byte way.
_NO_ROOM: Final = repeat(_ONE_PLAIN_BYTE, 0)
#: The most pieces one room allows (a ``repeat`` count is a C ``Py_ssize_t``); a line
#: that outgrows it is looked at when the room runs out, and given a new one.
_MAX_ROOM: Final = 2**31 - 1
#: A ``retry`` value longer than this is ignored: converting it to ``int`` would cost
#: time quadratic in its length (CPython caps int-from-str at 4300 digits for that reason).
_MAX_RETRY_DIGITS: Final = 4300
#: An event keeps this many data lines, plus 1/64 of its characters, one ``str`` each;
#: see :func:`_compact`.
_MAX_DATA_PIECES: Final = 64


# Slotted, with a hand-written __init__: it builds an event faster than the generated
# __init__ of a plain dataclass, and an event is built for every chunk of a stream
# (benchmarks/bench_sse.py). Not frozen: a frozen dataclass's __init__ goes through
# object.__setattr__, several times slower. __repr__ and __eq__ are the ones
# dataclass(repr=True, eq=True) would generate, written out: generating each costs a
# compile() when alltoken is imported.
@dataclass(init=False, repr=False, eq=False)
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        data: The event's data lines joined with ``"\\n"``.
        event: The event type; ``"message"`` when the block set none.
        id: The last event ID *at dispatch*. It persists across events until an ``id``
            field changes it.
    """

    __slots__ = ("data", "event", "id")
    data: str
    event: str
    id: str

    def __init__(self, data: str, event: str = "message", id: str = "") -> None:
        self.data = data
        self.event = event
        self.id = id

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}(data={self.data!r}, event={self.event!r}, "
                f"id={self.id!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.data, self.event, self.id) == (other.data, other.event, other.id)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


@dataclass(init=False, repr=False, eq=False)  # written out, as ServerSentEvent's
class Comment:
    """A comment line (``:`` first), with one leading space of its text removed.

    The spec ignores comments; servers use them for keep-alives and trailers such as
    AllToken's cost line.
    """

    __slots__ = ("text",)
    text: str

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(text={self.text!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.text == other.text

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


#: What ``feed``, ``end`` and ``events`` return: an event or a comment. A runtime alias, so
#: ``typing.Union`` (``X | Y`` between classes needs Python 3.10).
Item = Union[ServerSentEvent, Comment]


class DecoderState(enum.Enum):
    """The states of :class:`SSEDecoder`: ``OPEN`` until a call raises
    ``ProtocolError``, then ``ERROR`` for good. ``end()`` leaves an open decoder open."""

    #: Accepting bytes. ``end()`` returns here, ready for a new stream.
    OPEN = "open"
    #: A ``ProtocolError`` was raised; every later ``feed`` or ``end`` raises again.
    ERROR = "error"


class SSEDecoder:
    """Incremental event-stream parser.

    Args:
        max_line_bytes: The longest line, in bytes and without its line ending, that is
            accepted; a longer one raises :class:`~alltoken.ProtocolError`.
        max_event_bytes: The most data, in characters, one event may collect over its
            ``data`` lines before dispatch (an endless run of ``data:`` lines with no
            blank line must not exhaust memory). Defaults to four times
            ``max_line_bytes``; it cannot be smaller than ``max_line_bytes``.

    Attributes:
        last_event_id: The spec's "last event ID string", set at every dispatch point
            (every blank line, even one that dispatches nothing). A reconnecting client
            sends it as ``Last-Event-ID``.
        retry: The last valid ``retry`` value in milliseconds, else None.
        unterminated_line: The decoded text of the stream's final line when it had no
            line ending (a leading BOM removed), else ``""``: set by :meth:`end`, which
            discards that line as the spec requires. The text is the whole line, field
            name or ``:`` included; AllToken's client reads a cost trailer whose final
            newline is missing from it (``if line.startswith(":")``).

    Errors: once ``feed`` or ``end`` has raised ``ProtocolError`` the decoder is in the
    ``ERROR`` state and every later call raises ``ProtocolError`` again.
    """

    __slots__ = (
        "_at_start",
        "_between_events",
        "_data",
        "_data_len",
        "_event",
        "_id",
        "_max_event",
        "_max_line",
        "_room",
        "_skip_lf",
        "_state",
        "_tail",
        "_tail_limit",
        "last_event_id",
        "retry",
        "unterminated_line",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: Optional[int] = None,
    ) -> None:
        if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int):
            raise TypeError(f"max_line_bytes must be an int, got {type(max_line_bytes).__name__}")
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
        if max_event_bytes is None:
            max_event_bytes = 4 * max_line_bytes
        elif isinstance(max_event_bytes, bool) or not isinstance(max_event_bytes, int):
            raise TypeError(
                f"max_event_bytes must be an int, got {type(max_event_bytes).__name__}"
            )
        elif max_event_bytes < max_line_bytes:
            raise ValueError(
                f"max_event_bytes ({max_event_bytes}) must be at least "
                f"max_line_bytes ({max_line_bytes})"
            )
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self.last_event_id = ""
        self.retry: Optional[int] = None
        self.unterminated_line = ""
        self._state = DecoderState.OPEN
        self._reset_stream()

    @property
    def state(self) -> DecoderState:
        """The decoder's :class:`DecoderState`."""
        return self._state

    def _reset_stream(self) -> None:
        self._id = self.last_event_id  # the spec's "last event ID buffer"
        self._event = ""  # the spec's "event type buffer"
        self._data: list[str] = []  # the spec's "data buffer", one item per data line
        self._data_len = 0
        # The incomplete line (the bytes after the last line ending) in pieces, joined
        # once, when its line ending arrives: a line fed a byte at a time costs time
        # linear in its length.
        self._tail: list[bytes] = []
        # How many pieces the tail may hold before feed() looks closer: the pieces it
        # holds plus the bytes the line may still take (so one more one-byte piece
        # needs no arithmetic); -1 once failed, so that every feed() looks, and raises.
        self._tail_limit = self._max_line
        # The last byte fed was a CR ending a line, so an LF first in the next feed is the
        # second half of CRLF. Only meaningful while the tail is empty.
        self._skip_lf = False
        self._at_start = True  # no line ending seen yet: a BOM may still lead
        # While the last feed that was not empty was one byte: yields _ONE_PLAIN_BYTE
        # once for each piece the incomplete line may still take (at most: _tail_limit
        # says exactly), until feed() looks closer. Exhausted otherwise, and once failed.
        self._room: Iterator[frozenset[bytes]] = _NO_ROOM
        # No field of an event seen since the last dispatch (the data and event type
        # buffers are empty), no CR pending, past the start: a feed may begin with the
        # common shape, which feed() then reads without going line by line.
        self._between_events = False

    def feed(self, data: bytes) -> list[Item]:
        """Parse the next piece of the stream.

        Args:
            data: Any number of bytes (``bytes``, ``bytearray`` or ``memoryview``).

        Returns:
            The events and comments that *data* completed, in stream order.

        Raises:
            ProtocolError: a line is longer than ``max_line_bytes``, an event's data
                longer than ``max_event_bytes``, or the decoder failed earlier.
            TypeError: *data* is not bytes-like.
        """
        try:
            # After a one-byte feed this one most likely is one byte too: one lookup
            # tells that it is one byte, ends no line and fits in the incomplete line's
            # room. (Otherwise the room is empty, and `in ()` hashes nothing where the
            # set would hash the whole piece. A read-only one-byte memoryview matches
            # too, and is kept as it is.)
            if data in next(self._room, ()):
                self._tail.append(data)
                return []
        except (TypeError, ValueError):  # unhashable: bytearray, writable memoryview
            pass
        if type(data) is not bytes:
            # Anything else as a copy of its bytes, through memoryview: no reference to a
            # caller's buffer stays, a memoryview or array of wider items would count and
            # compare items, and bytes(5) would be five NULs, bytes([10]) a line ending.
            data = bytes(memoryview(data))
        if self._between_events and 10 in data and len(data) > 1:
            # The common shape of an LLM stream: blocks of one "data: value" line and a
            # blank line each. `held` is the incomplete line held back plus this feed,
            # its leading "data: " cut off, then cut at each separator plus "data: ":
            # the pieces before the last are values; the last is the value of the
            # feed's last block when `held` ends with a separator (cut off first), else
            # the value of a line still incomplete, held back as "data: " and itself --
            # or, when it holds a line ending, what is read line by line after the
            # events. `held` has that shape when it starts with "data: " and no value
            # holds a CR or LF -- a CR or LF in one is a block of more than one line.
            # For such a block the spec's steps reduce to: data buffer = value + LF;
            # dispatch strips the LF; the type is "message" (the type buffer is empty
            # between events); the id is the id buffer. Anything else is read line by
            # line, from the same state: nothing has changed yet. (Between events is
            # false once the decoder has failed. The incomplete line holds no line
            # ending, so the feed alone tells whether `held` has a CR.)
            tail = self._tail
            # Every line is within the limit when all of `held` is; said before the
            # join, which would copy up to max_line_bytes. (The tail's limit less its
            # pieces is the room left.) `start`: where the first value starts.
            start = 6
            if len(data) + len(tail) > self._tail_limit:
                held = None
            elif len(tail) == 2 and tail[0] is _DATA_FIELD:
                # The line this path held back: its "data: " is not joined again.
                held = tail[1] + data
                start = 0
            elif tail:
                tail.append(data)
                held = b"".join(tail)
                del tail[-1]
            else:
                held = data
            if held is not None and (start == 0 or held[:6] == b"data: "):
                # Cut off: the "data: " that starts `held`, and the separator that ends
                # it when the feed ends with a block; else the last piece, after the
                # last separator, is taken off. (A slice of all of a bytes is no copy.)
                if 13 in data:
                    if held[-1] == 10 and held[-4:] == b"\r\n\r\n":
                        pieces = held[start:-4].split(b"\r\n\r\ndata: ")
                        held = None
                    else:
                        pieces = held[start:].split(b"\r\n\r\ndata: ")
                        held = pieces.pop()
                    joined = b"".join(pieces)
                    plain = 13 not in joined and 10 not in joined
                else:
                    if held[-1] == 10 == held[-2]:
                        pieces = held[start:-2].split(b"\n\ndata: ")
                        held = None
                    else:
                        pieces = held[start:].split(b"\n\ndata: ")
                        held = pieces.pop()
                    plain = 10 not in b"".join(pieces)
                # (No values, no dispatch: a feed with no separator but in its last
                # piece is no common shape.)
                if plain and pieces:
                    self._room = _NO_ROOM
                    rest = None
                    if held is not None and (10 in held or 13 in held):
                        # The last piece is more than the value of an incomplete line
                        # (a line ending cuts the separator, or other lines follow):
                        # read line by line, after the events.
                        rest = _DATA_FIELD + held
                        held = None
                    if held is None:
                        if tail:
                            self._tail = []
                            self._tail_limit = self._max_line
                    else:
                        # The value of the line still incomplete, held as two pieces:
                        # no copy of the line. The limit: the two pieces, plus what the
                        # line may still take after its six bytes of "data: " and the
                        # value's.
                        self._tail = [_DATA_FIELD, held]
                        self._tail_limit = self._max_line - len(held) - 4
                    # "Set the last event ID string ... to the last event ID buffer."
                    last_id = self.last_event_id = self._id
                    out: list[Item]
                    try:
                        # Each value decoded on its own: decoding them at once would
                        # widen all of them to 4 bytes a character for one emoji.
                        if last_id:
                            out = list(map(ServerSentEvent, map(bytes.decode, pieces),
                                           repeat("message"), repeat(last_id)))
                        else:
                            out = list(map(ServerSentEvent, map(bytes.decode, pieces)))
                    except UnicodeDecodeError:
                        # (A comprehension that read last_id would make it a cell, made
                        # on every call of feed().)
                        out = list(map(ServerSentEvent,
                                       [p.decode("utf-8", "replace") for p in pieces],
                                       repeat("message"), repeat(last_id)))
                    if rest is None:
                        return out
                    return out + self._line_by_line(rest)
        # Integer membership is a memchr; `b"\n" in data` goes through the buffer protocol
        # and costs several times more for a short piece.
        if 10 not in data and 13 not in data:
            # No line ending: the bytes only extend the incomplete line.
            tail = self._tail
            if data:
                tail.append(data)
                self._tail_limit -= len(data) - 1
            if len(tail) > self._tail_limit:
                self._check_tail()
            if len(data) == 1:
                self._room = repeat(_ONE_PLAIN_BYTE,
                                    min(self._tail_limit - len(tail), _MAX_ROOM))
            elif data:
                self._room = _NO_ROOM
            return []
        if len(data) == 1:
            # A lone CR or LF, the other half of 1-byte feeding. It leaves the room as
            # it is: what is left of the line's room is no more than a new line has.
            return self._line_by_line(data)
        self._room = _NO_ROOM
        return self._line_by_line(data)

    def _check_tail(self) -> None:
        """The incomplete line passed ``_tail_limit``: raise if the decoder failed, or if
        the line is longer than ``max_line_bytes`` -- a leading BOM not counted."""
        if self._state is not DecoderState.OPEN:
            raise ProtocolError("the SSE decoder already failed; create a new one")
        tail = self._tail
        credit = self._bom_credit()
        size = sum(map(len, tail))
        if size - credit > self._max_line:
            self._fail(f"a line is longer than max_line_bytes ({self._max_line} bytes)")
        # Only a whole BOM is sure to stay one: the start of one may be followed by a
        # byte that makes it no BOM, and that byte must be looked at again.
        self._tail_limit = self._max_line + (credit if credit == 3 else 0) - size + len(tail)

    def _line_by_line(self, data: bytes) -> list[Item]:
        """Interpret the lines that *data*, which holds a line ending, completes."""
        if self._state is not DecoderState.OPEN:
            raise ProtocolError("the SSE decoder already failed; create a new one")
        tail = self._tail
        out: list[Item] = []
        if self._skip_lf:
            self._skip_lf = False
            # "CRLF ... LF ... CR": a CR fed last and an LF fed first are one line ending.
            if not tail and data[0] == 10:
                data = data[1:]
                if 10 not in data and 13 not in data:
                    return self.feed(data)
        if data == b"\n" and not self._at_start:
            # A lone LF, as in 1-byte feeding: it ends the incomplete line, which holds
            # no line ending and was measured as it grew, so it needs no search and no
            # check.
            if tail:
                line = b"".join(tail)
                self._tail = []
                self._tail_limit = self._max_line
                self._interpret([line], out)
            else:
                self._dispatch(out)  # a blank line
            self._between_events = not self._data and not self._event
            return out
        end = data.rfind(10)
        if 13 in data:
            cr = data.rfind(13)
            if cr > end:
                end = cr
        if tail and not self._at_start:
            # The incomplete line may end over the limit: say so before joining it (a
            # join would hold a second copy of up to max_line_bytes).
            room = self._tail_limit - len(tail)
            if room < len(data) and _next_eol(data) > room:
                self._fail(f"a line is longer than max_line_bytes ({self._max_line} bytes)")
        end += 1
        if tail:
            tail.append(data[:end])
            complete = b"".join(tail)
        else:
            complete = data[:end] if end < len(data) else data
        rest = data[end:]
        if rest:
            self._tail = [rest]
            self._tail_limit = self._max_line - len(rest) + 1
            if len(rest) > self._max_line:
                self._fail(f"a line is longer than max_line_bytes ({self._max_line} bytes)")
        else:
            self._tail = []
            self._tail_limit = self._max_line
        # Only a CR that is the last byte fed so far may pair with a later LF.
        self._skip_lf = not rest and complete[-1] == 13
        if self._at_start:
            self._at_start = False
            # "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are
            # present" -- only at the very start of the stream.
            if complete[:3] == _BOM:
                complete = complete[3:]
        if len(complete) > self._max_line and _longest_line(complete) > self._max_line:
            self._fail(f"a line is longer than max_line_bytes ({self._max_line} bytes)")
        if 13 in complete:
            complete = complete.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = complete.split(b"\n")
        lines.pop()  # b"" after the final line ending
        self._interpret(lines, out)
        self._between_events = not self._data and not self._event and not self._skip_lf
        return out

    def events(self, chunks: Iterable[bytes]) -> Iterator[Item]:
        """Parse a whole stream given as an iterable of chunks, then :meth:`end` it.

        The same as calling :meth:`feed` with each chunk and :meth:`end` after the last,
        yielding every item as soon as the chunk that completes it has been read: for
        a transport that hands over chunks as they arrive, nothing waits for the next
        one. It is cheaper than ``feed`` for many small chunks: chunks that only extend
        the incomplete line are collected here without a method call each, and handed
        to ``feed`` in one piece with the chunk that ends the line (or when they reach
        ``max_line_bytes``, so memory stays bounded and an over-long line raises as
        early as it would with ``feed``).

        When *chunks* raises (a connection lost mid-stream), the stream ends there as
        :meth:`end` would end it -- pending data discarded, :attr:`unterminated_line`
        set, ``last_event_id`` and ``retry`` kept -- and the exception propagates, so a
        reconnection may reuse the decoder. Closing the generator early (``break``)
        ends nothing: the decoder stays as the last ``feed`` left it.

        Raises:
            ProtocolError: as :meth:`feed` and :meth:`end`.
            TypeError: a chunk is not bytes-like.
            Exception: whatever *chunks* raises.
        """
        feed = self.feed
        pending: list[bytes] = []
        room = 0
        try:
            for data in chunks:
                if type(data) is bytes and 10 not in data and 13 not in data:
                    if not pending:
                        # The bytes the line may still take; negative once failed.
                        room = self._tail_limit - len(self._tail)
                    pending.append(data)
                    room -= len(data)
                    if room >= 0:
                        continue
                    # Over the limit: feed() raises, or (a leading BOM) lets it pass.
                    data = b"".join(pending)
                    pending.clear()
                elif pending:
                    pending.append(data)
                    data = b"".join(pending)
                    pending.clear()
                yield from feed(data)
            if pending:
                feed(b"".join(pending))
        except GeneratorExit:
            raise
        except BaseException:
            # The stream ends here, as end() would end it; a reconnection that reuses
            # the decoder must not see a piece of this stream's last line.
            if self._state is DecoderState.OPEN:
                self._tail += pending  # within the limit, or feed() had them
                self._end_stream()
            raise
        yield from self.end()

    def end(self) -> list[Item]:
        """Signal the end of the stream.

        "Once the end of the file is reached, any pending data must be discarded": an
        incomplete line and an undispatched event are dropped, so ``end`` returns no
        item (it returns a list so that ``out += decoder.end()`` reads like ``feed``).
        The incomplete line, a comment included, is left in :attr:`unterminated_line`
        for a caller that wants it (AllToken's cost trailer may lack its final newline).

        The decoder is then ready for a new stream; ``last_event_id`` and ``retry``
        persist, as they do across a reconnection.

        Returns:
            An empty list.

        Raises:
            ProtocolError: the decoder failed earlier.
        """
        if self._state is not DecoderState.OPEN:
            raise ProtocolError("the SSE decoder already failed; create a new one")
        self._end_stream()
        return []

    def _end_stream(self) -> None:
        """Discard what is pending, keeping the last line that had no line ending."""
        line = b"".join(self._tail)
        if self._at_start and line[:3] == _BOM:
            line = line[3:]
        self.unterminated_line = line.decode("utf-8", "replace")
        self._reset_stream()

    def _bom_credit(self) -> int:
        """Bytes of a leading BOM (or of its start) in the first, incomplete line: they
        are not part of the line, and must not count toward its length."""
        if not self._at_start:
            return 0
        head = b"".join(self._tail)[:3]
        return len(head) if _BOM.startswith(head) else 0

    def _fail(self, message: str) -> NoReturn:
        """Move to ``ERROR`` (the one place that does) and raise."""
        self._state = DecoderState.ERROR
        self._tail = []  # what was held is of no use any more
        self._tail_limit = -1
        self._room = _NO_ROOM
        self._between_events = False
        self._data = []
        raise ProtocolError(message)

    def _interpret(self, lines: list[bytes], out: list[Item]) -> None:
        """Interpret *lines* (without their line endings) one by one, appending what
        they complete to *out*. Each is decoded on its own: decoding many lines at once
        would widen all of them to 4 bytes a character for one emoji, and cutting the
        text into lines and values would copy it twice more. (A line ending never falls
        inside a UTF-8 sequence, so the result is the same.) ``data:`` lines, the bulk
        of a large event, are read inline."""
        data = self._data
        for line in lines:
            if line[:6] == b"data: ":
                # "Append the field value to the data buffer, then append a single
                # U+000A LINE FEED (LF) character to the data buffer."
                value = line[6:].decode("utf-8", "replace")
                n = self._data_len + len(value) + 1
                if n > self._max_event:
                    self._fail(
                        f"an event's data is longer than max_event_bytes ({self._max_event})")
                self._data_len = n
                data.append(value)
                if len(data) > (n >> 6) + _MAX_DATA_PIECES:
                    _compact(data)
            elif line:
                self._field(line.decode("utf-8", "replace"), out)
            else:
                # "If the line is empty (a blank line): Dispatch the event."
                self._dispatch(out)

    def _dispatch(self, out: list[Item]) -> None:
        # "Set the last event ID string of the event source to the value of the last
        # event ID buffer."
        self.last_event_id = self._id
        data = self._data
        if data:
            # "If the data buffer's last character is a U+000A LINE FEED (LF) character,
            # then remove the last character from the data buffer." (joining does both)
            # "Initialize event's type attribute to "message"... If the event type buffer
            # has a value other than the empty string, change the type ... to that."
            out.append(ServerSentEvent("\n".join(data), self._event or "message", self._id))
            data.clear()
            self._data_len = 0
        # "Set the data buffer and the event type buffer to the empty string."
        self._event = ""

    def _field(self, line: str, out: list[Item]) -> None:
        """Interpret a line that is neither blank nor a ``data: `` line."""
        # "If the line starts with a U+003A COLON character (:): Ignore the line."
        # Returned as a Comment instead, for keep-alives and the cost trailer.
        if line[0] == ":":
            text = line[1:]
            out.append(Comment(text[1:] if text[:1] == " " else text))
            return
        # "If the line contains a U+003A COLON character: collect the characters on the
        # line before the first U+003A COLON character, and let field be that string.
        # Collect the characters on the line after the first U+003A COLON character, and
        # let value be that string. If value starts with a U+0020 SPACE character, remove
        # it from value." "Otherwise, ... using the whole line as the field name, and the
        # empty string as the field value."
        field, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            # "Append the field value to the data buffer, then append a single U+000A
            # LINE FEED (LF) character to the data buffer."
            self._data_len += len(value) + 1
            if self._data_len > self._max_event:
                self._fail(f"an event's data is longer than max_event_bytes ({self._max_event})")
            self._data.append(value)
            if len(self._data) > (self._data_len >> 6) + _MAX_DATA_PIECES:
                _compact(self._data)
        elif field == "event":
            # "Set the event type buffer to the field value."
            self._event = value
        elif field == "id":
            # "If the field value does not contain U+0000 NULL, then set the last event
            # ID buffer to the field value. Otherwise, ignore the field."
            if "\x00" not in value:
                self._id = value
        elif field == "retry":
            # "If the field value consists of only ASCII digits, then interpret the field
            # value as an integer in base ten, and set the event stream's reconnection
            # time to that integer. Otherwise, ignore the field."
            if value.isdigit() and value.isascii() and len(value) <= _MAX_RETRY_DIGITS:
                self.retry = int(value)
        # "Otherwise: The field is ignored."


def encode(
    item: Item, *, retry: Optional[int] = None, eol: str = "\n"
) -> bytes:
    """Encode one event or comment as event-stream bytes (UTF-8).

    An event is written as ``event:`` (omitted for ``"message"``), ``id:`` (omitted when
    empty), ``retry:`` (when given), one ``data:`` line per line of ``data``, and a blank
    line. A comment is one ``:`` line. Since the last event ID persists in a decoder, an
    event encoded with an empty ``id`` decodes with whatever id an earlier event set.

    Args:
        item: The event or comment.
        retry: A reconnection time in milliseconds to send with an event.
        eol: The line ending to use: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"``.

    Raises:
        ValueError: a value cannot be represented: CR in any field, LF in the event
            type, id or comment, U+0000 in the id, or a negative ``retry``.
    """
    if eol not in ("\n", "\r\n", "\r"):
        raise ValueError(f"eol must be '\\n', '\\r\\n' or '\\r', got {eol!r}")
    if isinstance(item, Comment):
        _check_line("comment", item.text)
        return f":{' ' if item.text else ''}{item.text}{eol}".encode()
    if not isinstance(item, ServerSentEvent):
        raise TypeError(f"expected ServerSentEvent or Comment, got {type(item).__name__}")
    if "\r" in item.data:
        raise ValueError("event data cannot contain CR: it would be read as a line ending")
    parts = []
    if item.event != "message":
        _check_line("event type", item.event)
        parts.append(f"event: {item.event}{eol}")
    if item.id:
        _check_line("id", item.id)
        if "\x00" in item.id:
            raise ValueError("id cannot contain U+0000: the decoder would ignore it")
        parts.append(f"id: {item.id}{eol}")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"retry must be a non-negative int, got {retry!r}")
        parts.append(f"retry: {retry}{eol}")
    for line in item.data.split("\n"):
        parts.append(f"data: {line}{eol}" if line else f"data{eol}")
    parts.append(eol)
    return "".join(parts).encode()


def _compact(data: list[str]) -> None:
    """Join an event's data lines so far into one string, in place.

    Each line kept as a ``str`` of its own costs about 50 bytes besides its characters,
    so an endless event of short ``data`` lines would take many times
    ``max_event_bytes`` of memory. Called when the lines outnumber 64 plus 1/64 of the
    characters, it keeps that overhead below the characters' own size (plus a few KiB);
    each call copies what was collected, after at least 1/64 as many new lines, so the
    total cost stays linear in the event's size.
    """
    data[:] = ["\n".join(data)]


def _next_eol(data: Union[bytes, bytearray], start: int = 0) -> int:
    """The index of the first CR or LF in *data* at or after *start*, else its length."""
    lf = data.find(10, start)
    cr = data.find(13, start, lf if lf >= 0 else len(data))
    return cr if cr >= 0 else lf if lf >= 0 else len(data)


def _longest_line(data: Union[bytes, bytearray]) -> int:
    """The length of the longest line in *data*, whatever its line endings. Called only
    for more than ``max_line_bytes`` of lines: it measures them without copying any."""
    longest = start = 0
    while start < len(data):
        stop = _next_eol(data, start)
        if stop - start > longest:
            longest = stop - start
        start = stop + 1
    return longest


def _check_line(what: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} cannot contain CR or LF, got {value!r}")
