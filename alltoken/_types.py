"""Response dataclasses and their JSON constructors.

Layer 3 helper: imports ``_errors`` only, and no I/O. Each class has one ``from_json``
that checks the shape of what the server sent; a wrong shape raises ``ProtocolError``
naming the field, what was expected and (bounded) what came -- never a bare
``KeyError``, ``TypeError`` or ``AttributeError``. Missing optional fields take their
defaults. Unknown fields are kept, not dropped: every object holds the JSON object it
was built from in ``raw`` (by reference, no copy; a streamed chunk whose text repeats
the one before it but for the delta's string gets new dicts equal to what ``json.loads``
would give, see :class:`_ChunkParser`) and ``extra`` returns the fields no attribute
maps.

``parse_chunk`` runs once per streamed chunk, so the chunk constructors are written
out by hand: direct ``dict.get``, exact ``type()`` checks (JSON decoding only ever
yields exact ``dict``/``list``/``str``/``int``, so ``isinstance`` buys nothing, and
``type(x) is int`` also rejects ``True``), positional construction, and no
``dataclasses.fields()`` or other reflection at run time. Error messages are only
built on the error path.

What these constructors do **not** do: they never copy the JSON, never coerce a
wrong type into a right one (a ``"5"`` index is an error, not ``5``), and never
validate values beyond their JSON type (an unknown ``finish_reason`` passes through).
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Final, Optional, Union

from ._errors import EXCERPT_CHARS, ProtocolError, excerpt

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "Choice",
    "ChunkChoice",
    "Cost",
    "Delta",
    "ErrorInfo",
    "FunctionCall",
    "FunctionCallDelta",
    "Message",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "parse_chunk",
    "parse_cost",
    "parse_error_body",
]


class _LazyModule:
    """A module imported when one of its attributes is first read.

    ``decimal`` (and ``numbers``, which it imports) adds to every cold start and is needed
    only when a cost trailer arrives, yet ``Cost``'s annotations must resolve at any time
    (``typing.get_type_hints``): they name ``decimal.Decimal`` through this.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(__import__(self._name), attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


if TYPE_CHECKING:
    import decimal
else:
    decimal = _LazyModule("decimal")


def _zero() -> decimal.Decimal:
    """``Cost.cost`` when the trailer has none."""
    return decimal.Decimal(0)


# -- error-path helpers (never called while the input is well formed) --------------------


def _show(value: object) -> str:
    """Server data for an error message: as JSON, as the server wrote it, cut to
    ``EXCERPT_CHARS``."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        # A Decimal from the cost parser, or nesting deeper than the encoder allows:
        # fall back rather than fail while reporting a failure.
        text = (str(value) if type(value).__module__ == "decimal"
                else f"<{type(value).__name__}>")
    if len(text) > EXCERPT_CHARS:
        return f"{text[:EXCERPT_CHARS]}... ({len(text)} characters)"
    return text


def _bad(what: str, expected: str, got: object) -> ProtocolError:
    return ProtocolError(f"{what}: expected {expected}, got {_show(got)}")


def _missing(what: str, field_name: str, obj: dict[str, Any]) -> ProtocolError:
    return ProtocolError(f"{what}: the required field {field_name!r} is missing in {_show(obj)}")


# -- shared field readers (used off the per-chunk path) ----------------------------------


def _obj(value: object, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(what, "a JSON object", value)
    return value


def _opt_str(obj: dict[str, Any], key: str, what: str) -> Optional[str]:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise _bad(f"{what}.{key}", "a string or null", value)


def _str(obj: dict[str, Any], key: str, what: str, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is str:
        return value
    raise _bad(f"{what}.{key}", "a string", value)


def _int(obj: dict[str, Any], key: str, what: str, default: int = 0) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is int:
        return value
    raise _bad(f"{what}.{key}", "an integer", value)


def _list(obj: dict[str, Any], key: str, what: str) -> Optional[list[Any]]:
    value = obj.get(key)
    if value is None or type(value) is list:
        return value
    raise _bad(f"{what}.{key}", "a list or null", value)


class _Raw:
    """Mixin: ``extra`` lists the fields of ``raw`` that no attribute maps.

    Each class declares ``raw`` last, as ``field(default_factory=dict, repr=False,
    compare=False)``: left out of ``repr`` (it repeats every mapped field) and of ``==``
    (objects with the same mapped values are equal whatever JSON carried them).
    """

    raw: dict[str, Any]
    #: The JSON field names this class maps to attributes (aliases included).
    _KNOWN: ClassVar[frozenset[str]] = frozenset()

    # repr and == as dataclass(repr=True, eq=True) would generate them, written once
    # here: generating them for every class costs a compile() each, and a cold start
    # is measured in milliseconds (benchmarks/).
    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                          for f in fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = [f.name for f in fields(self) if f.compare]  # type: ignore[arg-type]
        return [getattr(self, n) for n in names] == [getattr(other, n) for n in names]

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    @property
    def extra(self) -> dict[str, Any]:
        """Fields the server sent that no attribute maps (kept, not dropped).

        Built on each access from ``raw``; the parser never builds it.
        """
        known = self._KNOWN
        return {k: v for k, v in self.raw.items() if k not in known}


# -- assembled tool calls ----------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class FunctionCall(_Raw):
    """A complete function call: its name and its arguments as JSON text."""

    name: str = ""
    arguments: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"name", "arguments"})

    def __init__(
        self, name: str = "", arguments: str = "", raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.name = name
        self.arguments = arguments
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> FunctionCall:
        """Build from a ``function`` object of a non-streamed tool call.

        Raises:
            ProtocolError: *obj* is not an object, or a field has the wrong type.
        """
        o = _obj(obj, "tool_call.function")
        return cls(_str(o, "name", "tool_call.function"),
                   _str(o, "arguments", "tool_call.function"), o)


@dataclass(init=False, repr=False, eq=False)
class ToolCall(_Raw):
    """A complete tool call: from a non-streamed message, or assembled by the stream
    from its deltas."""

    id: str = ""
    type: str = "function"
    function: FunctionCall = field(default_factory=FunctionCall)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"id", "type", "function"})

    def __init__(
        self, id: str = "", type: str = "function", function: Optional[FunctionCall] = None,
        raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.id = id
        self.type = type
        self.function = FunctionCall() if function is None else function
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> ToolCall:
        """Build from one entry of a non-streamed message's ``tool_calls``.

        Raises:
            ProtocolError: *obj* is not an object, or a field has the wrong type.
        """
        o = _obj(obj, "tool_call")
        fn = o.get("function")
        return cls(_str(o, "id", "tool_call"), _str(o, "type", "tool_call", "function"),
                   FunctionCall() if fn is None else FunctionCall.from_json(fn), o)


# -- streamed pieces ---------------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class FunctionCallDelta(_Raw):
    """A piece of a streamed function call: a name and/or more arguments text."""

    name: Optional[str] = None
    arguments: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"name", "arguments"})

    def __init__(
        self, name: Optional[str] = None, arguments: Optional[str] = None,
        raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.name = name
        self.arguments = arguments
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> FunctionCallDelta:
        """Build from the ``function`` object of a tool-call delta.

        Raises:
            ProtocolError: *obj* is not an object, or a field has the wrong type.
        """
        o = _obj(obj, "delta.tool_calls[].function")
        return cls(_opt_str(o, "name", "delta.tool_calls[].function"),
                   _opt_str(o, "arguments", "delta.tool_calls[].function"), o)


@dataclass(init=False, repr=False, eq=False)
class ToolCallDelta(_Raw):
    """A piece of a streamed tool call; pieces with the same ``index`` belong together.

    A missing ``index`` defaults to the delta's position in its chunk's ``tool_calls``
    list (some OpenAI-compatible providers omit it when each chunk carries whole calls).
    """

    index: int = 0
    id: Optional[str] = None
    type: Optional[str] = None
    function: Optional[FunctionCallDelta] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"index", "id", "type", "function"})

    def __init__(
        self, index: int = 0, id: Optional[str] = None, type: Optional[str] = None,
        function: Optional[FunctionCallDelta] = None, raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.index = index
        self.id = id
        self.type = type
        self.function = function
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object, position: int = 0) -> ToolCallDelta:
        """Build from one entry of ``delta.tool_calls``.

        Args:
            obj: The decoded JSON entry.
            position: Its position in the list: the ``index`` when the entry has none.

        Raises:
            ProtocolError: *obj* is not an object, or a field has the wrong type.
        """
        o = _obj(obj, "delta.tool_calls[]")
        index = o.get("index")
        if index is None:
            index = position
        elif type(index) is not int:
            raise _bad("delta.tool_calls[].index", "an integer", index)
        fn = o.get("function")
        return cls(index, _opt_str(o, "id", "delta.tool_calls[]"),
                   _opt_str(o, "type", "delta.tool_calls[]"),
                   None if fn is None else FunctionCallDelta.from_json(fn), o)


def _tool_call_deltas(calls: object) -> list[ToolCallDelta]:
    if type(calls) is not list:
        raise _bad("delta.tool_calls", "a list or null", calls)
    return [ToolCallDelta.from_json(c, i) for i, c in enumerate(calls)]


@dataclass(init=False, repr=False, eq=False)
class Delta(_Raw):
    """What one chunk adds to a choice.

    ``reasoning_content`` is read from ``reasoning_content`` or, when that is absent or
    null, from ``reasoning`` (the name some providers use for the same text).
    """

    role: Optional[str] = None
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[ToolCallDelta]] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"role", "content", "reasoning_content", "reasoning", "tool_calls"})

    def __init__(
        self, role: Optional[str] = None, content: Optional[str] = None,
        reasoning_content: Optional[str] = None,
        tool_calls: Optional[list[ToolCallDelta]] = None, raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.role = role
        self.content = content
        self.reasoning_content = reasoning_content
        self.tool_calls = tool_calls
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> Delta:
        """Build from a choice's ``delta`` object.

        Raises:
            ProtocolError: *obj* is not an object, or a field has the wrong type.
        """
        return _delta(obj)


def _delta(obj: object) -> Delta:
    # Per chunk, unless _chunk_choice's one-key shortcut applies: keep to dict.get and
    # identity checks.
    if type(obj) is not dict:
        raise _bad("choices[].delta", "a JSON object", obj)
    get = obj.get
    content = get("content")
    if content is not None and type(content) is not str:
        raise _bad("delta.content", "a string or null", content)
    reasoning = get("reasoning_content")
    if reasoning is None:
        reasoning = get("reasoning")
        if reasoning is not None and type(reasoning) is not str:
            raise _bad("delta.reasoning", "a string or null", reasoning)
    elif type(reasoning) is not str:
        raise _bad("delta.reasoning_content", "a string or null", reasoning)
    role = get("role")
    if role is not None and type(role) is not str:
        raise _bad("delta.role", "a string or null", role)
    calls = get("tool_calls")
    return Delta(role, content, reasoning, None if calls is None else _tool_call_deltas(calls),
                 obj)


@dataclass(init=False, repr=False, eq=False)
class ChunkChoice(_Raw):
    """One choice of a streamed chunk. A missing or null ``delta`` is an empty one."""

    index: int = 0
    delta: Delta = field(default_factory=Delta)
    finish_reason: Optional[str] = None
    logprobs: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"index", "delta", "finish_reason", "logprobs"})

    def __init__(
        self, index: int = 0, delta: Optional[Delta] = None,
        finish_reason: Optional[str] = None, logprobs: Any = None,
        raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.index = index
        self.delta = Delta() if delta is None else delta
        self.finish_reason = finish_reason
        self.logprobs = logprobs
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> ChunkChoice:
        """Build from one entry of a chunk's ``choices``.

        Raises:
            ProtocolError: *obj* is not an object, ``delta`` is missing or not an object,
                or a field has the wrong type.
        """
        return _chunk_choice(obj)


def _chunk_choice(obj: object) -> ChunkChoice:
    if type(obj) is not dict:
        raise _bad("choices[]", "a JSON object", obj)
    get = obj.get
    index = get("index", 0)
    if type(index) is not int:
        raise _bad("choices[].index", "an integer", index)
    finish = get("finish_reason")
    if finish is not None and type(finish) is not str:
        raise _bad("choices[].finish_reason", "a string or null", finish)
    delta = get("delta")
    if type(delta) is dict and len(delta) == 1:
        # The common delta, {"content": "..."} or {"reasoning_content": "..."}, read
        # here rather than through _delta: one call fewer per chunk (see _delta).
        text = delta.get("content")
        if type(text) is str:
            return ChunkChoice(index, Delta(None, text, None, None, delta), finish,
                               get("logprobs"), obj)
        text = delta.get("reasoning_content")
        if type(text) is str:
            return ChunkChoice(index, Delta(None, None, text, None, delta), finish,
                               get("logprobs"), obj)
    elif delta is None:
        # No delta, or "delta": null: content-filter annotations (Azure-backed gateways)
        # and finish-only choices. An empty delta, not a protocol error.
        return ChunkChoice(index, Delta(), finish, get("logprobs"), obj)
    return ChunkChoice(index, _delta(delta), finish, get("logprobs"), obj)


@dataclass(init=False, repr=False, eq=False)
class Usage(_Raw):
    """Token counts. Nested details (``completion_tokens_details``, ...) stay in ``raw``
    and ``extra``. A missing ``total_tokens`` is the sum of the other two."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})

    def __init__(
        self, prompt_tokens: int = 0, completion_tokens: int = 0, total_tokens: int = 0,
        raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = total_tokens
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> Usage:
        """Build from a ``usage`` object.

        Raises:
            ProtocolError: *obj* is not an object, or a count is not an integer
                (``true`` and ``"5"`` included).
        """
        o = _obj(obj, "usage")
        prompt = _int(o, "prompt_tokens", "usage")
        completion = _int(o, "completion_tokens", "usage")
        return cls(prompt, completion, _int(o, "total_tokens", "usage", prompt + completion), o)


@dataclass(init=False, repr=False, eq=False)
class ChatCompletionChunk(_Raw):
    """One streamed ``chat.completion.chunk``.

    ``choices`` may be empty: the usage chunk at the end of a stream has only ``usage``.
    A missing ``id``, ``model`` or ``created`` is ``""``, ``""`` or ``0``: gateways differ
    in which of them they repeat on every chunk.
    """

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = field(default_factory=list)
    usage: Optional[Usage] = None
    system_fingerprint: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"id", "object", "created", "model", "choices", "usage",
                        "system_fingerprint"})

    def __init__(
        self, id: str = "", object: str = "chat.completion.chunk", created: int = 0,
        model: str = "", choices: Optional[list[ChunkChoice]] = None,
        usage: Optional[Usage] = None, system_fingerprint: Optional[str] = None,
        raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.id = id
        self.object = object
        self.created = created
        self.model = model
        self.choices = [] if choices is None else choices
        self.usage = usage
        self.system_fingerprint = system_fingerprint
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: Any) -> ChatCompletionChunk:  # ``object`` is a field here
        """Build from a decoded chunk.

        Raises:
            ProtocolError: *obj* is not an object, or any field, at any depth, has the
                wrong shape.
        """
        return _chunk(obj)


def _chunk(obj: object) -> ChatCompletionChunk:
    if type(obj) is not dict:
        raise _bad("chunk", "a JSON object", obj)
    get = obj.get
    choices = get("choices")
    if type(choices) is list:
        # One choice is the common case; skip the comprehension's frame for it.
        parsed = ([_chunk_choice(choices[0])] if len(choices) == 1
                  else [_chunk_choice(c) for c in choices])
    elif choices is None:
        parsed = []
    else:
        raise _bad("chunk.choices", "a list", choices)
    id_ = get("id", "")
    model = get("model", "")
    created = get("created", 0)
    kind = get("object", "chat.completion.chunk")
    fingerprint = get("system_fingerprint")
    usage = get("usage")
    if (type(id_) is not str or type(model) is not str or type(created) is not int
            or type(kind) is not str
            or (fingerprint is not None and type(fingerprint) is not str)):
        # Re-read through the checking helpers: they accept null and name the culprit.
        id_ = _str(obj, "id", "chunk")
        model = _str(obj, "model", "chunk")
        created = _int(obj, "created", "chunk")
        kind = _str(obj, "object", "chunk", "chat.completion.chunk")
        fingerprint = _opt_str(obj, "system_fingerprint", "chunk")
    return ChatCompletionChunk(id_, kind, created, model, parsed,
                               None if usage is None else Usage.from_json(usage),
                               fingerprint, obj)


# -- the non-streamed answer -------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class Message(_Raw):
    """The message of a non-streamed choice. ``reasoning_content`` is read as in
    :class:`Delta`."""

    role: str = "assistant"
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[ToolCall]] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"role", "content", "reasoning_content", "reasoning", "tool_calls"})

    def __init__(
        self, role: str = "assistant", content: Optional[str] = None,
        reasoning_content: Optional[str] = None, tool_calls: Optional[list[ToolCall]] = None,
        raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.role = role
        self.content = content
        self.reasoning_content = reasoning_content
        self.tool_calls = tool_calls
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> Message:
        """Build from a choice's ``message`` object.

        Raises:
            ProtocolError: *obj* is not an object, or a field has the wrong type.
        """
        o = _obj(obj, "choices[].message")
        reasoning = _opt_str(o, "reasoning_content", "message")
        if reasoning is None:
            reasoning = _opt_str(o, "reasoning", "message")
        calls = _list(o, "tool_calls", "message")
        return cls(_str(o, "role", "message", "assistant"), _opt_str(o, "content", "message"),
                   reasoning, None if calls is None else [ToolCall.from_json(c) for c in calls],
                   o)


@dataclass(init=False, repr=False, eq=False)
class Choice(_Raw):
    """One choice of a non-streamed answer. ``message`` is required."""

    index: int = 0
    message: Message = field(default_factory=Message)
    finish_reason: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"index", "message", "finish_reason"})

    def __init__(
        self, index: int = 0, message: Optional[Message] = None,
        finish_reason: Optional[str] = None, raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.index = index
        self.message = Message() if message is None else message
        self.finish_reason = finish_reason
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> Choice:
        """Build from one entry of a completion's ``choices``.

        Raises:
            ProtocolError: *obj* is not an object, ``message`` is missing, or a field
                has the wrong type.
        """
        o = _obj(obj, "choices[]")
        if "message" not in o:
            raise _missing("choices[]", "message", o)
        return cls(_int(o, "index", "choices[]"), Message.from_json(o["message"]),
                   _opt_str(o, "finish_reason", "choices[]"), o)


@dataclass(init=False, repr=False, eq=False)
class ChatCompletion(_Raw):
    """A non-streamed ``chat.completion``."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = field(default_factory=list)
    usage: Optional[Usage] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"id", "object", "created", "model", "choices", "usage"})

    def __init__(
        self, id: str = "", object: str = "chat.completion", created: int = 0, model: str = "",
        choices: Optional[list[Choice]] = None, usage: Optional[Usage] = None,
        raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.id = id
        self.object = object
        self.created = created
        self.model = model
        self.choices = [] if choices is None else choices
        self.usage = usage
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: Any) -> ChatCompletion:  # ``object`` is a field here
        """Build from a decoded response body.

        Raises:
            ProtocolError: *obj* is not an object, or any field, at any depth, has the
                wrong shape.
        """
        o = _obj(obj, "chat completion")
        choices = _list(o, "choices", "chat completion") or []
        usage = o.get("usage")
        return cls(_str(o, "id", "chat completion"),
                   _str(o, "object", "chat completion", "chat.completion"),
                   _int(o, "created", "chat completion"), _str(o, "model", "chat completion"),
                   [Choice.from_json(c) for c in choices],
                   None if usage is None else Usage.from_json(usage), o)


# -- cost trailer ------------------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class Cost(_Raw):
    """The cost comment AllToken may send after ``data: [DONE]``.

    Money is exact: ``Decimal`` built from the JSON text (a string or a number), never
    through a ``float``. Token counts are ``int``.
    """

    cost: decimal.Decimal = field(default_factory=_zero)
    input_price: Optional[decimal.Decimal] = None
    output_price: Optional[decimal.Decimal] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"cost", "input_price", "output_price", "prompt_tokens",
                        "completion_tokens"})

    def __init__(
        self, cost: Optional[decimal.Decimal] = None,
        input_price: Optional[decimal.Decimal] = None,
        output_price: Optional[decimal.Decimal] = None, prompt_tokens: Optional[int] = None,
        completion_tokens: Optional[int] = None, raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.cost = _zero() if cost is None else cost
        self.input_price = input_price
        self.output_price = output_price
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> Cost:
        """Build from a decoded cost object.

        Decode with ``json.loads(text, parse_float=Decimal)`` so numbers keep every digit;
        a ``float`` amount is refused rather than silently rounded.

        Raises:
            ProtocolError: *obj* is not an object, ``cost`` is missing or null, an amount
                is not a finite decimal, or a count is not a non-negative integer.
        """
        o = _obj(obj, "cost comment")
        cost = _money(o, "cost")
        if cost is None:
            raise _bad("cost.cost", "a decimal string or number", o.get("cost"))
        return cls(cost, _money(o, "input_price"), _money(o, "output_price"),
                   _count(o, "prompt_tokens"), _count(o, "completion_tokens"), o)


def _money(obj: dict[str, Any], key: str) -> Optional[decimal.Decimal]:
    value = obj.get(key)
    if value is None:
        return None
    kind = type(value)
    try:
        if kind is decimal.Decimal:
            money: decimal.Decimal = value
        elif kind is str or kind is int:
            money = decimal.Decimal(value)
        else:
            raise decimal.InvalidOperation
    except decimal.InvalidOperation:
        raise _bad(f"cost.{key}", "a decimal string or number", value) from None
    if not money.is_finite():
        raise _bad(f"cost.{key}", "a finite amount", value)
    return money


def _count(obj: dict[str, Any], key: str) -> Optional[int]:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value
    if type(value) is str and value.isdigit() and value.isascii():
        return int(value)
    if (type(value) is decimal.Decimal and value.is_finite() and value >= 0
            and value.adjusted() < 19 and value == value.to_integral_value()):
        # 15.0: a whole number written as a float. Below 10**19 only: int() of 1e433333333
        # would build a number of a gigabyte (found by fuzz_chunk_json).
        return int(value)
    raise _bad(f"cost.{key}", "a non-negative integer", value)


def parse_cost(text: str) -> Optional[Cost]:
    """The :class:`Cost` in an SSE comment's text, or None if it is not a cost comment.

    A cost comment is a JSON object with a ``cost`` field, e.g.
    ``{"cost": "0.0012", "input_price": "0.0003", "prompt_tokens": 15}``. Anything else
    -- keep-alives, ``ping - 2026-11-23 ...``, text that only looks like JSON, a JSON
    object without ``cost`` -- returns None; text not starting with ``{`` returns before
    any JSON decoding.

    Args:
        text: A comment's text (the line after ``:``).

    Returns:
        The cost, or None.

    The trailer is optional metadata after a complete answer: a cost object that cannot
    be read (``"cost": null``, ``"cost": ""``, ``"prompt_tokens": -1``) is logged at debug
    level and gives None, never an error.
    """
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text, parse_float=decimal.Decimal)
    except (ValueError, RecursionError, ArithmeticError):
        # ArithmeticError: decimal.InvalidOperation for a number Decimal cannot hold
        # (e.g. an exponent of 10**60), raised from inside json.loads (found by fuzzing).
        return None
    if type(obj) is not dict or "cost" not in obj:
        return None
    try:
        return Cost.from_json(obj)
    except ProtocolError as exc:
        from . import _log

        _log.debug("ignoring an unreadable cost comment: %s", exc)
        return None


# -- errors ------------------------------------------------------------------------------


@dataclass(init=False, repr=False, eq=False)
class ErrorInfo(_Raw):
    """The ``error`` of an error response or of an in-stream error event.

    Read leniently on purpose: the server is reporting a failure, and a field of an
    unexpected type must not hide it behind a ``ProtocolError``. A non-string ``message``
    becomes its JSON text, a missing one the error object's JSON text; a non-string
    ``type`` is None (the original stays in ``raw``). ``code`` and ``param`` are kept as
    sent (int, str or None in practice).
    """

    message: str = ""
    type: Optional[str] = None
    code: object = None
    param: object = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"message", "type", "code", "param"})

    def __init__(
        self, message: str = "", type: Optional[str] = None, code: object = None,
        param: object = None, raw: Optional[dict[str, Any]] = None,
    ) -> None:
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.raw = {} if raw is None else raw

    @classmethod
    def from_json(cls, obj: object) -> ErrorInfo:
        """Build from an ``error`` value: an object, or a plain message string.

        For a string, ``raw`` is ``{"message": <the string>}``.

        Raises:
            ProtocolError: *obj* is neither an object nor a string.
        """
        if type(obj) is str:
            return cls(obj, None, None, None, {"message": obj})
        if type(obj) is not dict:
            raise _bad("error", "a JSON object or a string", obj)
        message = obj.get("message")
        if type(message) is not str:
            source = obj if message is None else message
            try:
                message = json.dumps(source, ensure_ascii=False)
            except (TypeError, ValueError, RecursionError):
                message = "the server reported an error"
            if len(message) > 1000:
                message = message[:1000] + "..."
        kind = obj.get("type")
        return cls(message, kind if type(kind) is str else None, obj.get("code"),
                   obj.get("param"), obj)


#: The C scanner behind ``json.loads``, called directly by :func:`_loads`.
_scan_once: Final[Callable[[str, int], tuple[Any, int]]] = (
    json.JSONDecoder().scan_once)  # type: ignore[attr-defined]
#: The JSON decoder's string reader (C): ``(text, index after the closing quote)``.
_scanstring: Final[Callable[[str, int], tuple[str, int]]] = json.decoder.scanstring  # type: ignore[attr-defined]
#: The characters JSON allows between tokens.
_JSON_SPACE: Final = " \t\n\r"
#: The types of JSON scalars as ``json.loads`` returns them.
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def _loads(data: str) -> Any:
    """``json.loads(data)``, without its Python-level wrapping on the common path.

    ``json.loads`` checks the type, looks for a BOM, and matches a whitespace pattern
    before and after the document; called once per chunk, that is a tenth of a
    stream's CPU (benchmarks/run.py). A chunk's data is one JSON document with no
    surrounding whitespace, so the scanner alone reads it; anything else (whitespace,
    trailing data, an error to report) goes through ``json.loads`` itself, so the result
    and the errors are exactly those of ``json.loads``.
    """
    try:
        obj, end = _scan_once(data, 0)
    except StopIteration:
        return json.loads(data)
    if end != len(data):
        return json.loads(data)
    return obj


def parse_chunk(data: str) -> Union[ChatCompletionChunk, ErrorInfo]:
    """Parse one SSE ``data`` payload: a chunk, or the error an error event carries.

    An object with a non-null ``error`` field is an error event (OpenAI-compatible
    servers send ``data: {"error": {...}}`` mid-stream); ``"error": null`` is a chunk.

    Args:
        data: The event's data.

    Returns:
        The :class:`ChatCompletionChunk`, or the :class:`ErrorInfo` of an error event.

    Raises:
        ProtocolError: The data is not JSON, not a JSON object, or not shaped like a
            chunk or an error event. Nothing else escapes, whatever the input.
    """
    try:
        obj = _loads(data)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and over-long integer literals;
        # RecursionError a nesting deeper than the decoder's stack.
        raise ProtocolError(f"malformed JSON in stream chunk: {excerpt(data)}") from None
    if type(obj) is not dict:
        raise ProtocolError(f"stream chunk: expected a JSON object, got {excerpt(data)}")
    if "error" in obj:
        error = obj["error"]
        if error is not None:
            return ErrorInfo.from_json(error)
    return _chunk(obj)


class _ChunkParser:
    """``parse_chunk`` for the chunks of one stream, faster on the shape they share.

    The chunks of a streamed answer are, as text, one template: the same ``id``,
    ``model``, ``created``, fingerprint and choice fields every time, around a delta of
    one string, ``{"content": "..."}`` or ``{"reasoning_content": "..."}``. Once a chunk
    of that shape has been parsed, the parser keeps its text before and after that
    string; a chunk whose text starts and ends the same way differs from it only in
    the string, so only the string is decoded (``json.decoder.scanstring``, the JSON
    decoder's own string reader) and the chunk is built from the kept fields. Anything
    else goes through :func:`parse_chunk`.

    The result is the one :func:`parse_chunk` gives for the same text, ``raw``
    included: JSON's grammar makes a string literal one token, so replacing it changes
    that one value and nothing around it. Which value it is, is proved when a template
    is learned: the text with another string in its place is parsed in full, and
    must differ from the parsed chunk in the delta's string alone. A template is kept
    only when every other field of the chunk and of its choice is a JSON scalar, so
    chunks built from it share no mutable value; their ``raw`` dicts are new for each
    chunk, copied from the template's own copies (a caller may change a chunk's
    ``raw``; no later chunk sees it).

    Learning costs one more full parse. A stream whose chunks never repeat their
    text (a field that changes every time) would pay it on every chunk, so after a
    template that matched nothing the parser waits 1, 2, 4 ... up to 64 chunks before
    it learns again.
    """

    __slots__ = ("_at", "_backoff", "_choice", "_choice_raw", "_chunk_raw", "_head",
                 "_hits", "_key", "_prefix", "_skip", "_suffix", "learned")

    #: The longest wait, in chunks, between two attempts to learn a template.
    MAX_BACKOFF: ClassVar[int] = 64

    def __init__(self) -> None:
        self._prefix: Optional[str] = None  # the text before the string, quote included
        self._suffix = ""  # the text after the string's closing quote
        self._at = 0  # len(self._prefix)
        self._key = ""  # "content" or "reasoning_content"
        self._head: tuple[str, str, int, str, Optional[str]] = ("", "", 0, "", None)
        self._choice: tuple[int, Optional[str], Any] = (0, None, None)
        self._chunk_raw: dict[str, Any] = {}
        self._choice_raw: dict[str, Any] = {}
        self._hits = 0  # chunks the current template has built
        self._backoff = 0  # the last wait, in chunks
        self._skip = 0  # chunks still to wait before learning again
        #: How many templates were learned (each cost one more full parse).
        self.learned = 0

    def parse(self, data: str) -> Union[ChatCompletionChunk, ErrorInfo]:
        """What ``parse_chunk(data)`` returns, and raises."""
        prefix = self._prefix
        if prefix is not None and data.startswith(prefix) and data.endswith(self._suffix):
            try:
                text, end = _scanstring(data, self._at)
            except ValueError:  # not a string: parse_chunk reports it
                pass
            else:
                if end == len(data) - len(self._suffix):
                    self._hits += 1
                    delta_raw = {self._key: text}
                    choice_raw = self._choice_raw.copy()
                    choice_raw["delta"] = delta_raw
                    raw = self._chunk_raw.copy()
                    raw["choices"] = [choice_raw]
                    delta = (Delta(None, text, None, None, delta_raw)
                             if self._key == "content"
                             else Delta(None, None, text, None, delta_raw))
                    index, finish, logprobs = self._choice
                    id_, kind, created, model, fingerprint = self._head
                    return ChatCompletionChunk(
                        id_, kind, created, model,
                        [ChunkChoice(index, delta, finish, logprobs, choice_raw)],
                        None, fingerprint, raw)
        chunk = parse_chunk(data)
        if self._skip:
            self._skip -= 1
        elif prefix is not None and not self._hits:
            # The last template matched no chunk: wait longer before the next.
            self._backoff = min(self._backoff * 2 or 1, self.MAX_BACKOFF)
            self._skip = self._backoff
            self._prefix = None
        else:
            if self._hits:
                self._backoff = 0
            self._learn(data, chunk)
        return chunk

    def _learn(self, data: str, chunk: Union[ChatCompletionChunk, ErrorInfo]) -> None:
        """Keep *data* (just parsed into *chunk*) as the template, if it has the shape."""
        self._prefix = None
        self._hits = 0
        if type(chunk) is not ChatCompletionChunk or len(chunk.choices) != 1:
            return
        choice = chunk.choices[0]
        delta_raw = choice.delta.raw
        if len(delta_raw) != 1:
            return
        key, value = next(iter(delta_raw.items()))
        if (key != "content" and key != "reasoning_content") or type(value) is not str:
            return
        raw, choice_raw = chunk.raw, choice.raw
        if any(type(v) not in _SCALARS for k, v in raw.items() if k != "choices") or any(
                type(v) not in _SCALARS for k, v in choice_raw.items() if k != "delta"):
            return
        # The key (written plainly: an escaped one is not found) and its colon, then
        # the string; JSON allows whitespace around the colon.
        mark = f'"{key}"'
        at = data.find(mark)
        if at < 0:
            return
        after = data[at + len(mark):]
        value_text = after.lstrip(_JSON_SPACE)
        if value_text[:1] != ":":
            return
        value_text = value_text[1:].lstrip(_JSON_SPACE)
        if value_text[:1] != '"':
            return
        at = len(data) - len(value_text) + 1  # the first character inside the quotes
        try:
            text, end = _scanstring(data, at)
        except ValueError:
            return
        # The proof: another string in its place changes the delta's string, only.
        probe = text + "\x00"
        try:
            proved = json.loads(data[: at - 1] + json.dumps(probe) + data[end:])
        except (ValueError, RecursionError):
            return
        want_choice = dict(choice_raw)
        want_choice["delta"] = {key: probe}
        want = dict(raw)
        want["choices"] = [want_choice]
        if proved != want:
            return
        self._prefix, self._suffix, self._at, self._key = data[:at], data[end:], at, key
        self._head = (chunk.id, chunk.object, chunk.created, chunk.model,
                      chunk.system_fingerprint)
        self._choice = (choice.index, choice.finish_reason, choice.logprobs)
        # Copies: the chunk's own dicts are the caller's to change.
        self._chunk_raw = dict(raw)
        self._choice_raw = dict(choice_raw)
        self.learned += 1


def parse_error_body(body: bytes, content_type: Optional[str]) -> Optional[ErrorInfo]:
    """The :class:`ErrorInfo` in an HTTP error response's body, or None.

    Recognised: ``{"error": {...}}``, ``{"error": "message"}``, and a top-level
    ``{"message": "..."}`` or ``{"detail": "..."}`` (servers built on common web
    frameworks). Anything else -- HTML from a proxy, plain text, an empty body, other
    JSON -- returns None and the caller reports an excerpt of the text.

    Args:
        body: The (possibly truncated) response body.
        content_type: The response's ``Content-Type``. Not relied on: the body is
            sniffed, since gateways label JSON errors ``text/plain`` and HTML pages
            ``application/json``.

    Returns:
        The error, or None. Never raises.
    """
    text = body.strip()
    if not text.startswith(b"{"):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if type(obj) is not dict:
        return None
    error = obj.get("error")
    if type(error) is dict or type(error) is str:
        return ErrorInfo.from_json(error)
    if type(obj.get("message")) is str:
        return ErrorInfo.from_json(obj)
    detail = obj.get("detail")
    if type(detail) is str:
        return ErrorInfo(detail, None, None, None, obj)
    return None
