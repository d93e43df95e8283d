"""Partial JSON: the value of a prefix of a JSON document, in one call or fed in deltas.

Layer: beside ``sse`` and ``_types``; imports ``json`` and ``re`` from the standard library
and nothing from the package, so the stream (or anyone) can use it on its own.

What a prefix is worth
----------------------
``parse_partial_json(text)`` returns the value of *text* read as the start of a JSON
document, as far as it goes:

- open arrays and objects are closed: ``'{"a": [1, {"b": true'`` is ``{'a': [1, {'b': True}]}``;
- a string in progress is included as received so far (jiter's ``partial_mode=
  "trailing-strings"``), minus an escape still incomplete at the end (``"ab\\`` and
  ``"ab\\u00`` give ``'ab'``), and minus a ``\\uD800``-``\\uDBFF`` escape that the next
  characters could still pair with a low surrogate into one character: a value is always
  a prefix of the final string, never a lone surrogate that later turns into an emoji;
- what could still change is left out: a key without its value (``{"a": 1, "b`` and
  ``{"a": 1, "b":`` give ``{'a': 1}``), an unfinished literal (``[tru``), and a number
  that runs up to the end of the text inside an array or object (``[1, 12`` gives
  ``[1]``: the ``12`` may be the start of ``125``, and a number once seen is final). So
  inside a container, every value of a longer prefix extends the value of a shorter one:
  containers and the last string only grow;
- a complete document gives what ``json.loads`` gives: the same types (``int``, ``float``
  via ``float()``, big ints), duplicate keys last-wins at the first key's position,
  ``NaN``, ``Infinity`` and ``-Infinity`` accepted as ``json.loads`` does by default (the
  very float objects it returns). A top-level number is a complete document, so ``"12"``
  gives ``12`` even though ``"125"`` may follow;
- **nothing yet is None**: empty or whitespace-only text, ``"tr"``, ``"-"`` or ``"1."``
  at the top level give ``None``, as does ``"null"``; ``PartialJSON.complete`` tells them
  apart. Empty text is the prefix of every document, and a stream of deltas starts
  empty, so it is no error.

Text that is not the prefix of any JSON document raises ``json.JSONDecodeError`` (a
``ValueError``) with json's message words and the position: ``{"a" 1}``, ``[1,,2]``,
``tx``, ``{1:2}``, ``"\\x"``, ``01``, ``{} {}``, a raw control character in a string.
The exceptions to "exactly json.loads": a document nested deeper than json's C scanner can
recurse is still parsed (ours keeps an explicit stack), and ``bytes`` are refused
(``TypeError``): decode first.

Theory of operation
-------------------
One resumable parser, ``PartialJSON``, does both jobs; ``parse_partial_json`` is one feed.
The parser keeps a stack of open containers (the real ``list`` and ``dict`` objects that
completed values are put into), the key each open object is reading, and a state saying
what may come next (``_State``; ``_EXPECTING`` has json's words for each). Work on
characters is done by json's own C code and by regular expressions, never by a Python
loop over characters; Python runs once per token at most, and only where a value is cut:

- A value that starts and ends inside the text at hand is parsed by the C code json.loads
  uses: strings by ``json.decoder.scanstring``, arrays and objects by
  ``JSONDecoder.raw_decode``, numbers by one regular expression. So a complete document
  costs one C parse, as in json.loads.
- An array or object still open at the end is entered: its complete children are parsed
  in one ``raw_decode`` of the text up to one of its own commas (found from where json's
  parse of it failed), or, when that does not work out, child by child; only its last
  child is entered in turn.
- A string still open at the end is decoded by ``scanstring`` up to its last few
  characters, and by ``_DECODABLE`` from there; the pieces are kept. A number or literal
  still open is kept as its characters.

Between feeds only that state is kept, plus at most an unfinished escape (11 characters)
of unconsumed text: text already parsed is never scanned again, and a feed costs work in
proportion to its delta. The C parse of a container that is still open fails and its
work is wasted, so each feed lets failed parses scan at most four times its length; past
that, containers are entered child by child, which is slower per value but never
quadratic (``[[[[...`` nested 10 000 deep costs a few linear passes, not 10 000).
Measured by the tests: 1-character deltas of a 1 MiB tool-call argument scan each
character about 1.5 times.

Building the value is separate from parsing it, and is paid for only when asked for
(``PartialJSON.value``), because it cannot be proportional to the delta: the string in
progress is a new ``str`` each time (a 1 MiB string asked for after every 1-byte delta
would copy 512 GiB), and each open container is copied shallowly so that a value handed
out is not changed by later feeds. Completed values inside it are shared, not copied:
**do not mutate a value you got** from ``PartialJSON.value``; ``parse_partial_json``'s
value is yours. Text and decoded pieces are kept in a ``_Rope`` (lists of strings joined
256 at a time), so memory stays near the text's size and each character is copied about
twice, not once per delta.
"""

from __future__ import annotations

import enum
import json
import re
from json import JSONDecodeError
from typing import Any, Callable, Final, NoReturn, Union

__all__ = ["PartialJSON", "parse_partial_json"]


class _State(enum.Enum):
    #: a value: the top-level one, an array item after ``,``, an object value after ``:``
    VALUE = enum.auto()
    #: a value or ``]``: just after ``[``
    VALUE_OR_CLOSE = enum.auto()
    #: a key or ``}``: just after ``{``
    KEY_OR_CLOSE = enum.auto()
    #: a key: after ``,`` in an object
    KEY = enum.auto()
    #: ``:`` after a key
    COLON = enum.auto()
    #: ``,`` or the closing bracket of the innermost container, after an item or member
    COMMA_OR_CLOSE = enum.auto()
    #: the top-level value is complete; only whitespace may follow
    END = enum.auto()
    #: inside a string value
    STRING = enum.auto()
    #: inside an object key
    KEY_STRING = enum.auto()
    #: inside a number (it ends at the first character that cannot continue it)
    NUMBER = enum.auto()
    #: inside ``true``, ``false``, ``null``, ``NaN``, ``Infinity`` or ``-Infinity``
    LITERAL = enum.auto()


# Module-level names for the states: a global lookup is cheaper than an Enum attribute
# in the per-token loop.
_VALUE: Final = _State.VALUE
_VALUE_OR_CLOSE: Final = _State.VALUE_OR_CLOSE
_KEY_OR_CLOSE: Final = _State.KEY_OR_CLOSE
_KEY: Final = _State.KEY
_COLON: Final = _State.COLON
_COMMA_OR_CLOSE: Final = _State.COMMA_OR_CLOSE
_END: Final = _State.END
_STRING: Final = _State.STRING
_KEY_STRING: Final = _State.KEY_STRING
_NUMBER_STATE: Final = _State.NUMBER
_LITERAL: Final = _State.LITERAL

#: What each state expects, in json's words: the message of the error raised when
#: something else comes, and of ``end()``'s error when the text stops there.
_EXPECTING: Final[dict[_State, str]] = {
    _VALUE: "Expecting value",
    _VALUE_OR_CLOSE: "Expecting value",
    _KEY_OR_CLOSE: "Expecting property name enclosed in double quotes",
    _KEY: "Expecting property name enclosed in double quotes",
    _COLON: "Expecting ':' delimiter",
    _COMMA_OR_CLOSE: "Expecting ',' delimiter",
    _END: "Extra data",
    _STRING: "Unterminated string starting at",
    _KEY_STRING: "Unterminated string starting at",
    _NUMBER_STATE: "Incomplete number",
    _LITERAL: "Incomplete literal",
}

_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # json's: RFC 8259 section 2
# A complete number (json.scanner's NUMBER_RE with ASCII digits, as its C scanner reads).
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# A prefix of a number. The exponent branch comes first so that ``match`` returns the
# longest valid prefix, which is where an invalid number's error is reported.
_NUMBER_PREFIX: Final = re.compile(
    r"-?(?:(?:0|[1-9][0-9]*)(?:(?:\.[0-9]+)?[eE][-+]?[0-9]*|\.[0-9]*)?)?"
)
_NUMBER_CHARS: Final = "-+.eE0123456789"
_NUMBER_RUN: Final = re.compile(r"[-+.eE0-9]*")
# String content with no quote, backslash or control character: a delta in a string.
_PLAIN: Final = re.compile(r'[^"\\\x00-\x1f]*\Z')
# The longest run of string content that can be decoded now: plain characters and whole
# escapes, except a high-surrogate escape that the rest of the text could still pair
# with a low one (``\uD83D`` then ``\uDE00`` is one character, U+1F600).
_LOW_ESCAPE_START: Final = r"(?:\\(?:u(?:[dD](?:[c-fC-F][0-9a-fA-F]?)?)?)?)?\Z"
_DECODABLE: Final = re.compile(
    r'(?:[^"\\\x00-\x1f]+'
    r'|\\["\\/bfnrt]'
    r"|\\u(?![dD][89abAB])[0-9a-fA-F]{4}"
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}(?!" + _LOW_ESCAPE_START + r")"
    r")*"
)
# What may be held back at the end of the text: an unfinished escape, or a high-surrogate
# escape and the start of a low one.
_HELD_BACK: Final = re.compile(
    r"\\(?:u[0-9a-fA-F]{0,3})?|\\u[dD][89abAB][0-9a-fA-F]{2}" + _LOW_ESCAPE_START
)
# A string in progress longer than this has most of it decoded by scanstring.
_BIG_STRING: Final = 256
# The start of an escape, to find the first character of an invalid one.
_ESCAPE_PREFIX: Final = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{0,4})?')
_LITERALS: Final[dict[str, str]] = {
    "t": "true", "f": "false", "n": "null", "N": "NaN", "I": "Infinity",
}
# json.loads returns the same float objects for NaN and the infinities each time; so do
# we, so that ``[NaN] == json.loads("[NaN]")`` holds as it does between two json.loads.
_CONSTANTS: Final[dict[str, Any]] = {
    "true": True, "false": False, "null": None,
    "NaN": json.loads("NaN"), "Infinity": json.loads("Infinity"),
    "-Infinity": json.loads("-Infinity"),
}
# json.loads's own parsers (C where available): a whole value from an index, and a string
# from after its opening quote.
_DECODER: Final = json.JSONDecoder()
_scanstring: Final[Callable[[str, int], tuple[str, int]]] = (
    json.decoder.scanstring  # type: ignore[attr-defined]
)

_Container = Union[list[Any], dict[str, Any]]


class _Missing(enum.Enum):
    MISSING = enum.auto()  #: no value (yet), as opposed to ``None`` for ``null``


_MISSING: Final = _Missing.MISSING

# A level of a _Rope is joined into one string when it holds this many pieces: each
# character is then copied once per level (3 levels cover 16 Mi pieces), and a rope of
# 1-character pieces costs about 8 bytes of list per character, not a str object each.
_ROPE_FANOUT: Final = 256


class _Rope:
    """Text appended in pieces and joined on demand, without quadratic copying."""

    __slots__ = ("_copied", "_levels")

    def __init__(self, copied: list[int]) -> None:
        # _levels[k + 1] holds text older than all of _levels[k].
        self._levels: list[list[str]] = [[]]
        self._copied = copied  # copied[0] counts characters copied by joins (for tests)

    def append(self, piece: str) -> None:
        level = self._levels[0]
        level.append(piece)
        if len(level) >= _ROPE_FANOUT:
            self._carry()

    def _carry(self) -> None:
        levels = self._levels
        k = 0
        while len(levels[k]) >= _ROPE_FANOUT:
            joined = "".join(levels[k])
            self._copied[0] += len(joined)
            levels[k].clear()
            if k + 1 == len(levels):
                levels.append([])
            levels[k + 1].append(joined)
            k += 1

    def join(self) -> str:
        """All the text; the pieces are replaced by the result, so asking again is free."""
        levels = self._levels
        filled = [level for level in levels if level]
        if len(filled) <= 1 and all(len(level) == 1 for level in filled):
            return filled[0][0] if filled else ""
        text = "".join(["".join(level) for level in reversed(levels)])
        self._copied[0] += len(text)
        # Kept at the top level so that the next carries do not copy it again.
        self._levels = [[] for _ in range(max(len(levels), 2) - 1)]
        self._levels.append([text])
        return text

    def __bool__(self) -> bool:
        return any(self._levels)


def _number_value(token: str) -> Any:
    """``token`` (a complete JSON number) as json.loads reads it."""
    if "." in token or "e" in token or "E" in token:
        return float(token)
    return int(token)  # may raise ValueError past sys.int_info's digit limit, as json does


class PartialJSON:
    """An incremental parser: feed a JSON document in deltas, read its value at any point.

    ``parser.value`` after any feed equals ``parse_partial_json(parser.text)``. Feeding
    costs time proportional to the delta (amortized); reading ``value`` costs the size
    of what is still open (the string in progress and the open containers, copied), so
    read it when you need it, not necessarily after every delta. Not thread-safe.

    Example::

        parser = PartialJSON()
        for delta in ['{"path": "a.t', 'xt", "lines": [1, 2', "]}"]:
            parser.feed(delta)
            print(parser.value)
        # {'path': 'a.t'}
        # {'path': 'a.txt', 'lines': [1]}
        # {'path': 'a.txt', 'lines': [1, 2]}
    """

    def __init__(self) -> None:
        # Work measures for the tests: characters examined by the scanning, and
        # characters copied by _Rope joins.
        self._scanned = 0
        self._copied = [0]
        self._text = _Rope(self._copied)
        self._fed = 0  # characters fed so far
        self._rest = ""  # fed but not consumed: an escape not yet complete
        self._state = _VALUE
        self._stack: list[_Container] = []  # the open containers, outermost first
        self._keys: list[str] = []  # per open container: the key being read, if a dict
        self._pieces = _Rope(self._copied)  # the string or key in progress, decoded
        self._string_start = 0  # where it started (for end()'s message)
        self._number = _Rope(self._copied)  # the number in progress, as text
        self._number_length = 0
        self._number_last = ""  # its last character
        self._number_start = 0
        self._literal = ""  # the literal in progress and how much of it has come
        self._literal_length = 0
        self._result: Any = None  # the top-level value, once complete
        self._cache: Any = _MISSING  # the last value built, until something changes
        self._error: Union[tuple[str, int], None] = None
        self._budget = 0  # characters failed C parses of containers may still scan

    # -- the public surface ---------------------------------------------------------

    def feed(self, delta: str) -> None:
        """Parse the next piece of the document.

        Args:
            delta: the next characters of the text (any split: mid-string, mid-escape,
                mid-number and mid-literal are all fine; ``""`` does nothing).

        Raises:
            json.JSONDecodeError: (a ``ValueError``) the text so far is not the start of
                any JSON document; ``pos`` is the first offending character. The parser
                is then failed: every later ``feed`` and ``end`` raises the same error,
                while ``value`` keeps the value of the text before ``pos``.
            TypeError: *delta* is not a ``str``.
        """
        if not isinstance(delta, str):
            raise TypeError(f"delta must be str, not {type(delta).__name__}")
        if self._error is not None:
            raise self._fail(*self._error)
        if not delta:
            return
        self._text.append(delta)
        start = self._fed
        self._fed += len(delta)
        state = self._state
        if (
            (state is _STRING or state is _KEY_STRING)
            and not self._rest
            and _PLAIN.match(delta) is not None
        ):
            # The common delta: more characters of the string in progress.
            self._pieces.append(delta)
            self._scanned += len(delta)
            if state is _STRING:
                self._cache = _MISSING
            return
        rest = self._rest
        self._rest = ""
        self._run(rest + delta if rest else delta, start - len(rest))

    @property
    def value(self) -> Any:
        """The value of the text so far (see ``parse_partial_json``); ``None`` when
        nothing is settled yet. Containers still open are fresh copies; everything
        completed inside them is shared with earlier and later values: do not mutate."""
        if self._cache is _MISSING:
            self._cache = self._build(copy=True)
        return self._cache

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return self._text.join()

    @property
    def complete(self) -> bool:
        """Whether the text so far is a whole JSON document (``json.loads`` accepts
        it). A top-level number is complete even though more digits may follow."""
        if self._error is not None:
            return False
        if self._state is _END:
            return True
        if self._state is _NUMBER_STATE and not self._stack:
            return _NUMBER.fullmatch(self._number.join()) is not None
        return False

    def end(self) -> Any:
        """Call at the end of the input: the document's value, as ``json.loads(text)``.

        Raises:
            json.JSONDecodeError: the text is not a complete document (json's message
                for what is missing, at the end of the text, or where the unterminated
                string starts), or an earlier ``feed`` failed.
        """
        if self._error is not None:
            raise self._fail(*self._error)
        if self.complete:
            return self.value
        state = self._state
        where = self._string_start if state is _STRING or state is _KEY_STRING else self._fed
        if state is _NUMBER_STATE and _NUMBER.fullmatch(self._number.join()) is not None:
            state = _COMMA_OR_CLOSE  # a whole number in a container: what comes after it
        self._raise(_EXPECTING[state], where, record=False)

    def __repr__(self) -> str:
        status = "failed" if self._error else "complete" if self.complete else "open"
        return f"<PartialJSON {self._fed} chars, {status}>"

    # -- errors -------------------------------------------------------------------------

    def _fail(self, message: str, pos: int) -> JSONDecodeError:
        return JSONDecodeError(message, self._text.join(), pos)

    def _raise(self, message: str, pos: int, record: bool = True) -> NoReturn:
        if record:
            self._error = (message, pos)
        raise self._fail(message, pos)

    # -- parsing --------------------------------------------------------------------------

    def _run(self, buf: str, offset: int) -> None:
        """Consume *buf*, which starts at *offset* in the text."""
        self._cache = _MISSING
        self._budget = 4 * len(buf)
        n = len(buf)
        i = 0
        while True:
            state = self._state
            if state is _STRING or state is _KEY_STRING:
                i = self._continue_string(buf, i, offset, False)
                if i < 0:
                    return
                continue
            if state is _NUMBER_STATE:
                i = self._continue_number(buf, i, offset)
                if i < 0:
                    return
                continue
            if state is _LITERAL:
                i = self._continue_literal(buf, i, offset)
                if i < 0:
                    return
                continue
            if i < n and buf[i] in " \t\n\r":
                j = _WHITESPACE.match(buf, i).end()  # type: ignore[union-attr]
                self._scanned += j - i
                i = j
            if i == n:
                return
            c = buf[i]
            if state is _COMMA_OR_CLOSE:
                if c == ",":
                    self._state = _VALUE if type(self._stack[-1]) is list else _KEY
                    i += 1
                elif c == ("]" if type(self._stack[-1]) is list else "}"):
                    self._close()
                    i += 1
                else:
                    self._raise(_EXPECTING[state], offset + i)
            elif state is _VALUE or state is _VALUE_OR_CLOSE:
                if c == "]" and state is _VALUE_OR_CLOSE:
                    self._close()
                    i += 1
                else:
                    i = self._start_value(buf, i, offset)
                    if i < 0:
                        return
            elif state is _KEY_OR_CLOSE or state is _KEY:
                if c == '"':
                    i = self._start_string(buf, i, offset, _KEY_STRING)
                    if i < 0:
                        return
                elif c == "}" and state is _KEY_OR_CLOSE:
                    self._close()
                    i += 1
                else:
                    self._raise(_EXPECTING[state], offset + i)
            elif state is _COLON:
                if c != ":":
                    self._raise(_EXPECTING[state], offset + i)
                self._state = _VALUE
                i += 1
            else:  # _END
                self._raise(_EXPECTING[state], offset + i)

    def _put(self, value: Any) -> None:
        """A value is complete: it becomes the result, an item or a member."""
        stack = self._stack
        if not stack:
            self._result = value
            self._state = _END
            return
        top = stack[-1]
        if type(top) is list:
            top.append(value)
        else:
            top[self._keys[-1]] = value  # type: ignore[call-overload]
        self._state = _COMMA_OR_CLOSE

    def _ends_value(self, c: str) -> bool:
        """Whether *c* may follow a value where the parser is (a number ends there)."""
        if c in " \t\n\r":
            return True
        stack = self._stack
        if not stack:
            return False
        return c == "," or c == ("]" if type(stack[-1]) is list else "}")

    def _close(self) -> None:
        self._keys.pop()
        self._put(self._stack.pop())

    def _start_value(self, buf: str, i: int, offset: int) -> int:
        """Read the value starting at ``buf[i]``; return where reading goes on, or -1
        when the value runs past the end of buf."""
        c = buf[i]
        if c == '"':
            return self._start_string(buf, i, offset, _STRING)
        n = len(buf)
        if c == "{" or c == "[":
            if self._budget > 0:
                try:
                    value, j = _DECODER.raw_decode(buf, i)
                except (ValueError, RecursionError) as exc:
                    # Open at the end of buf (or invalid: found again below), or too deep
                    # for json's recursive C scanner: enter it.
                    self._budget -= n - i
                    self._scanned += n - i
                    stop = exc.pos if isinstance(exc, JSONDecodeError) else -1
                    j = self._enter_parsed(buf, i, stop)
                    if j > 0:
                        return j
                else:
                    self._scanned += j - i
                    self._put(value)
                    return j
            self._stack.append({} if c == "{" else [])
            self._keys.append("")
            self._state = _KEY_OR_CLOSE if c == "{" else _VALUE_OR_CLOSE
            return i + 1
        if c in _NUMBER_CHARS:  # '+', '.', 'e' and 'E' fail in _continue_number
            match = _NUMBER.match(buf, i)
            if match is not None:
                j = match.end()
                if j < n and self._ends_value(buf[j]):
                    self._scanned += j - i
                    token = match.group()
                    try:
                        value = float(token) if match.lastindex else int(token)
                    except ValueError as exc:  # too many digits for an int
                        self._raise(str(exc), offset + i)
                    self._put(value)
                    return j
            self._state = _NUMBER_STATE
            self._number = _Rope(self._copied)
            self._number_length = 0
            self._number_last = ""
            self._number_start = offset + i
            return i
        literal = _LITERALS.get(c)
        if literal is None:
            self._raise(_EXPECTING[_VALUE], offset + i)
        self._state = _LITERAL
        self._literal = literal
        self._literal_length = 0
        return i

    def _enter_parsed(self, buf: str, i: int, stop: int) -> int:
        """Enter the container open at ``buf[i]`` with its complete children parsed by
        json's C scanner in one go, rather than one by one; return the index of the
        comma after them, or -1 when that does not work out.

        json's parse of the container failed at *stop*, inside its last child (or at the
        end of buf), so some comma before *stop* ends the complete children: try the last
        one, and the last one before the last bracket opened (a comma inside an open
        last child would be the first). If ``buf[i:cut]`` closed is a whole container,
        ``cut`` is one of its own commas and what it holds is exactly what parsing child
        by child would give.
        """
        if stop <= i or self._budget <= 0:
            return -1
        closer = "}" if buf[i] == "{" else "]"
        last = buf.rfind(",", i + 1, stop)
        opened = max(buf.rfind("{", i + 1, stop), buf.rfind("[", i + 1, stop))
        before = buf.rfind(",", i + 1, opened) if opened > i else -1
        for cut in (last, before) if before != last else (last,):
            if cut <= i or self._budget <= 0:
                continue
            self._budget -= cut - i
            self._scanned += cut - i
            try:
                value, j = _DECODER.raw_decode(buf[i:cut] + closer)
            except (ValueError, RecursionError):
                continue
            if j == cut - i + 1:
                self._stack.append(value)
                self._keys.append("")
                self._state = _COMMA_OR_CLOSE
                return cut
        return -1

    def _start_string(self, buf: str, i: int, offset: int, state: _State) -> int:
        """A string (a value or a key) starts at the quote ``buf[i]``; return the index
        after its closing quote, or -1 when it runs past the end of buf."""
        j = -1
        if buf.find('"', i + 1) >= 0:
            try:
                value, j = _scanstring(buf, i + 1)
            except JSONDecodeError:
                j = -1  # invalid: found again by _continue_string
        if j < 0:
            self._scanned += len(buf) - i
            self._state = state
            self._pieces = _Rope(self._copied)
            self._string_start = offset + i
            return self._continue_string(buf, i + 1, offset, True)
        self._scanned += j - i
        if state is _STRING:
            self._put(value)
        else:
            self._keys[-1] = value
            self._state = _COLON
        return j

    def _continue_string(self, buf: str, i: int, offset: int, tried: bool) -> int:
        """Go on reading the string in progress from ``buf[i]``; return the index after
        its closing quote, or -1 when it runs past the end of buf."""
        n = len(buf)
        if not tried and buf.find('"', i) >= 0:
            try:
                value, j = _scanstring(buf, i)
            except JSONDecodeError:
                self._scanned += n - i
            else:
                self._scanned += j - i
                if self._pieces:
                    self._pieces.append(value)
                    value = self._pieces.join()
                self._pieces = _Rope(self._copied)
                if self._state is _STRING:
                    self._put(value)
                else:
                    self._keys[-1] = value
                    self._state = _COLON
                return j
        # The string does not end in buf, or something in it is invalid. Decode what can
        # be decoded now, then see what stopped it.
        if n - i > _BIG_STRING:
            i = self._decode_head(buf, i)
        end = _DECODABLE.match(buf, i).end()  # type: ignore[union-attr]
        if end > i:
            part = buf[i:end]
            self._scanned += 2 * (end - i)
            if "\\" in part:
                part = _scanstring(part + '"', 0)[0]
            self._pieces.append(part)
        if end < n:
            # A quote cannot stop it here: then scanstring would have succeeded.
            if buf[end] != "\\":
                self._raise("Invalid control character at", offset + end)
            if _HELD_BACK.fullmatch(buf, end) is None:
                good = _ESCAPE_PREFIX.match(buf, end).end()  # type: ignore[union-attr]
                if buf.startswith("\\u", end):
                    self._raise("Invalid \\uXXXX escape", offset + good)
                self._raise("Invalid \\escape", offset + good)
            self._rest = buf[end:]
        return -1

    def _decode_head(self, buf: str, i: int) -> int:
        """Decode most of a long string in progress with json's C ``scanstring``, which
        is several times faster than ``_DECODABLE`` where escapes are dense; return where
        the rest starts (*i* when it cannot, and ``_DECODABLE`` does it all)."""
        # Stop short of the end, where an escape may be unfinished, at a place that is no
        # escape's middle: one of any 6 places in a row is (an escape is 2 or 6 long).
        # A head ending in a high surrogate is not taken: the rest may pair it.
        for cut in range(len(buf) - 16, len(buf) - 22, -1):
            try:
                head = _scanstring(buf[i:cut] + '"', 0)[0]
            except JSONDecodeError:
                continue
            finally:
                self._scanned += 2 * (cut - i)
            if head and not "\ud800" <= head[-1] <= "\udbff":
                self._pieces.append(head)
                return cut
        return i

    def _continue_number(self, buf: str, i: int, offset: int) -> int:
        """Go on reading the number in progress from ``buf[i]``; return where it ends,
        or -1 when it runs to the end of buf."""
        j = _NUMBER_RUN.match(buf, i).end()  # type: ignore[union-attr]
        if j > i:
            run = buf[i:j]
            self._scanned += j - i
            # Digits after a digit extend a valid prefix, unless the integer part is a
            # lone 0; anything else is checked against the whole number so far, which
            # a valid number needs at most four times (-, ., e and the exponent's sign).
            if not (
                run.isdigit()
                and "0" <= self._number_last <= "9"
                and (self._number_length > 2 or self._number.join() not in ("0", "-0"))
            ):
                token = self._number.join() + run
                self._scanned += len(token)
                if _NUMBER_PREFIX.fullmatch(token) is None:
                    good = _NUMBER_PREFIX.match(token).end()  # type: ignore[union-attr]
                    self._number.append(run[: good - self._number_length])
                    self._raise("Invalid number", self._number_start + good)
            self._number.append(run)
            self._number_length += j - i
            self._number_last = run[-1]
        if j == len(buf):
            return -1
        token = self._number.join()
        if token == "-" and buf[j] == "I":
            self._state = _LITERAL
            self._literal = "-Infinity"
            self._literal_length = 1
            return j
        self._scanned += len(token)
        if _NUMBER.fullmatch(token) is None:
            self._raise(_EXPECTING[_NUMBER_STATE], offset + j)
        if not self._ends_value(buf[j]):
            # Raised before the number is put, so that value stays that of the text
            # before the error, where the number had not ended.
            self._raise(_EXPECTING[_END if not self._stack else _COMMA_OR_CLOSE], offset + j)
        try:
            value = _number_value(token)
        except ValueError as exc:  # too many digits for an int
            self._raise(str(exc), self._number_start)
        self._number = _Rope(self._copied)
        self._put(value)
        return j

    def _continue_literal(self, buf: str, i: int, offset: int) -> int:
        """Go on reading the literal in progress from ``buf[i]``; return where it ends,
        or -1 when it runs to the end of buf."""
        literal = self._literal
        want = literal[self._literal_length :]
        got = buf[i : i + len(want)]
        self._scanned += len(got)
        if not want.startswith(got):
            bad = next(k for k in range(len(got)) if got[k] != want[k])
            self._raise(f"Expecting {literal!r}", offset + i + bad)
        if len(got) < len(want):
            self._literal_length += len(got)
            return -1
        self._put(_CONSTANTS[literal])
        return i + len(want)

    # -- the value ----------------------------------------------------------------------

    def _build(self, copy: bool) -> Any:
        """The value of the text so far. With *copy*, the open containers are copied;
        without, the parser's own are completed in place (and the parser is spent)."""
        state = self._state
        if state is _END:
            return self._result
        inner: Any = _MISSING
        stack = self._stack
        if state is _STRING:
            inner = self._pieces.join()
        elif state is _NUMBER_STATE and not stack:
            token = self._number.join()
            if _NUMBER.fullmatch(token) is not None:
                inner = _number_value(token)
        keys = self._keys
        for depth in range(len(stack) - 1, -1, -1):
            frame = stack[depth]
            if copy:
                frame = frame.copy()
            if inner is not _MISSING:
                if type(frame) is list:
                    frame.append(inner)
                else:
                    frame[keys[depth]] = inner  # type: ignore[call-overload]
            inner = frame
        return None if inner is _MISSING else inner


def parse_partial_json(text: str) -> Any:
    """The value of *text* read as the start of a JSON document, as far as it goes.

    Open arrays and objects are closed, a string in progress is included as far as it
    has come, and what may still change is left out: an unfinished number, literal or
    escape, or a key without its value. A complete document gives what ``json.loads``
    gives. Empty text, or text whose first value has not settled, gives ``None``. The
    module docstring has every rule.

    Args:
        text: the start of a JSON document.

    Returns:
        The value: ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or ``None``.

    Raises:
        json.JSONDecodeError: (a ``ValueError``) *text* is not the start of any JSON
            document; ``pos`` is the first character that makes it so.
        TypeError: *text* is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    parser = PartialJSON()
    parser.feed(text)
    return parser._build(copy=False)
