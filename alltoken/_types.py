"""Response dataclasses and their JSON constructors.

Layer 3 helper. Imports ``_errors`` only. Each class has one ``from_json`` that checks
the shape of what the server sent: a wrong shape raises ``ProtocolError`` naming what
was expected and what came, never a bare ``KeyError`` or ``TypeError``. Missing optional
fields take their defaults; unknown fields are kept: every object holds the JSON it was
built from in ``raw`` (by reference, no copy) and lists the unmapped fields in
``extra``.

``parse_chunk`` is on the streaming hot path (once per chunk), so the constructors use
direct dict access and exact ``type()`` checks rather than any reflection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Optional, Union

from ._errors import ProtocolError, excerpt

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

_NoneType = type(None)


def _bad(what: str, expected: str, got: object) -> ProtocolError:
    return ProtocolError(f"{what}: expected {expected}, got {excerpt(json.dumps(got))}"
                         if _jsonable(got) else f"{what}: expected {expected}, got {got!r}")


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


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
    """Mixin: ``extra`` lists the fields of ``raw`` no attribute maps."""

    raw: dict[str, Any]
    _KNOWN: frozenset[str] = frozenset()

    @property
    def extra(self) -> dict[str, Any]:
        """Fields the server sent that no attribute maps (kept, not dropped)."""
        return {k: v for k, v in self.raw.items() if k not in self._KNOWN}


@dataclass
class FunctionCall:
    """An assembled function call: its name and its JSON arguments text."""

    name: str = ""
    arguments: str = ""


@dataclass
class ToolCall:
    """An assembled tool call."""

    id: str = ""
    type: str = "function"
    function: FunctionCall = field(default_factory=FunctionCall)

    @classmethod
    def from_json(cls, obj: object) -> ToolCall:
        o = _obj(obj, "tool_call")
        fn = o.get("function")
        f = _obj(fn, "tool_call.function") if fn is not None else {}
        return cls(_str(o, "id", "tool_call"), _str(o, "type", "tool_call", "function"),
                   FunctionCall(_str(f, "name", "tool_call.function"),
                                _str(f, "arguments", "tool_call.function")))


@dataclass
class FunctionCallDelta(_Raw):
    """A piece of a streamed function call."""

    name: Optional[str] = None
    arguments: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"name", "arguments"})

    @classmethod
    def from_json(cls, obj: object) -> FunctionCallDelta:
        o = _obj(obj, "tool_calls[].function")
        return cls(_opt_str(o, "name", "function"), _opt_str(o, "arguments", "function"), o)


@dataclass
class ToolCallDelta(_Raw):
    """A piece of a streamed tool call; pieces with the same ``index`` belong together."""

    index: int = 0
    id: Optional[str] = None
    type: Optional[str] = None
    function: Optional[FunctionCallDelta] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"index", "id", "type", "function"})

    @classmethod
    def from_json(cls, obj: object) -> ToolCallDelta:
        o = _obj(obj, "delta.tool_calls[]")
        fn = o.get("function")
        return cls(_int(o, "index", "tool_call"), _opt_str(o, "id", "tool_call"),
                   _opt_str(o, "type", "tool_call"),
                   None if fn is None else FunctionCallDelta.from_json(fn), o)


@dataclass
class Delta(_Raw):
    """What one chunk adds to a choice. ``reasoning_content`` is also read from a
    ``reasoning`` field, which some providers use instead."""

    role: Optional[str] = None
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[ToolCallDelta]] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"role", "content", "reasoning_content", "reasoning", "tool_calls"})

    @classmethod
    def from_json(cls, obj: object) -> Delta:
        if type(obj) is not dict:
            raise _bad("choices[].delta", "a JSON object", obj)
        g = obj.get
        content = g("content")
        if content is not None and type(content) is not str:
            raise _bad("delta.content", "a string or null", content)
        reasoning = g("reasoning_content")
        if reasoning is None:
            reasoning = g("reasoning")
        if reasoning is not None and type(reasoning) is not str:
            raise _bad("delta.reasoning_content", "a string or null", reasoning)
        role = g("role")
        if role is not None and type(role) is not str:
            raise _bad("delta.role", "a string or null", role)
        calls = g("tool_calls")
        tool_calls = None
        if calls is not None:
            if type(calls) is not list:
                raise _bad("delta.tool_calls", "a list or null", calls)
            tool_calls = [ToolCallDelta.from_json(c) for c in calls]
        return cls(role, content, reasoning, tool_calls, obj)


@dataclass
class ChunkChoice(_Raw):
    """One choice of a streamed chunk."""

    index: int = 0
    delta: Delta = field(default_factory=Delta)
    finish_reason: Optional[str] = None
    logprobs: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"index", "delta", "finish_reason", "logprobs"})

    @classmethod
    def from_json(cls, obj: object) -> ChunkChoice:
        if type(obj) is not dict:
            raise _bad("choices[]", "a JSON object", obj)
        g = obj.get
        index = g("index", 0)
        if type(index) is not int:
            raise _bad("choices[].index", "an integer", index)
        if "delta" not in obj:
            raise ProtocolError(f"choices[] has no delta: {excerpt(json.dumps(obj))}")
        finish = g("finish_reason")
        if finish is not None and type(finish) is not str:
            raise _bad("choices[].finish_reason", "a string or null", finish)
        return cls(index, Delta.from_json(obj["delta"]), finish, g("logprobs"), obj)


@dataclass
class Usage(_Raw):
    """Token counts. Nested details (e.g. ``completion_tokens_details``) stay in ``raw``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})

    @classmethod
    def from_json(cls, obj: object) -> Usage:
        o = _obj(obj, "usage")
        prompt = _int(o, "prompt_tokens", "usage")
        completion = _int(o, "completion_tokens", "usage")
        return cls(prompt, completion, _int(o, "total_tokens", "usage", prompt + completion), o)


@dataclass
class ChatCompletionChunk(_Raw):
    """One streamed ``chat.completion.chunk``. ``choices`` may be empty (usage chunks)."""

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

    @classmethod
    def from_json(cls, obj: Any) -> ChatCompletionChunk:
        if type(obj) is not dict:
            raise _bad("chunk", "a JSON object", obj)
        g = obj.get
        choices = g("choices")
        if choices is None:
            parsed: list[ChunkChoice] = []
        elif type(choices) is list:
            parsed = [ChunkChoice.from_json(c) for c in choices]
        else:
            raise _bad("chunk.choices", "a list", choices)
        usage = g("usage")
        id_, model, created = g("id", ""), g("model", ""), g("created", 0)
        if type(id_) is not str:
            id_ = _str(obj, "id", "chunk")
        if type(model) is not str:
            model = _str(obj, "model", "chunk")
        if type(created) is not int:
            created = _int(obj, "created", "chunk")
        return cls(id_, g("object") or "chat.completion.chunk", created, model, parsed,
                   None if usage is None else Usage.from_json(usage),
                   _opt_str(obj, "system_fingerprint", "chunk"), obj)


@dataclass
class Message(_Raw):
    """The message of a non-streamed choice."""

    role: str = "assistant"
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[ToolCall]] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"role", "content", "reasoning_content", "reasoning", "tool_calls"})

    @classmethod
    def from_json(cls, obj: object) -> Message:
        o = _obj(obj, "choices[].message")
        reasoning = _opt_str(o, "reasoning_content", "message")
        if reasoning is None:
            reasoning = _opt_str(o, "reasoning", "message")
        calls = _list(o, "tool_calls", "message")
        return cls(_str(o, "role", "message", "assistant"), _opt_str(o, "content", "message"),
                   reasoning, None if calls is None else [ToolCall.from_json(c) for c in calls],
                   o)


@dataclass
class Choice(_Raw):
    """One choice of a non-streamed answer."""

    index: int = 0
    message: Message = field(default_factory=Message)
    finish_reason: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"index", "message", "finish_reason"})

    @classmethod
    def from_json(cls, obj: object) -> Choice:
        o = _obj(obj, "choices[]")
        if "message" not in o:
            raise ProtocolError(f"choices[] has no message: {excerpt(json.dumps(o))}")
        return cls(_int(o, "index", "choice"), Message.from_json(o["message"]),
                   _opt_str(o, "finish_reason", "choice"), o)


@dataclass
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

    @classmethod
    def from_json(cls, obj: Any) -> ChatCompletion:
        o = _obj(obj, "chat completion")
        choices = _list(o, "choices", "chat completion") or []
        usage = o.get("usage")
        return cls(_str(o, "id", "completion"), _str(o, "object", "completion",
                                                     "chat.completion"),
                   _int(o, "created", "completion"), _str(o, "model", "completion"),
                   [Choice.from_json(c) for c in choices],
                   None if usage is None else Usage.from_json(usage), o)


@dataclass
class Cost(_Raw):
    """The cost trailer AllToken sends after ``[DONE]``. Money is exact (``Decimal``)."""

    cost: Decimal = Decimal(0)
    input_price: Optional[Decimal] = None
    output_price: Optional[Decimal] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"cost", "input_price", "output_price", "prompt_tokens",
                        "completion_tokens"})


def _money(obj: dict[str, Any], key: str) -> Optional[Decimal]:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, (str, int, Decimal)):
        raise _bad(f"cost.{key}", "a decimal string or number", value)
    try:
        money = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise _bad(f"cost.{key}", "a decimal string or number", value) from None
    if not money.is_finite():
        raise _bad(f"cost.{key}", "a finite amount", value)
    return money


def _count(obj: dict[str, Any], key: str) -> Optional[int]:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is int:
        return value
    if type(value) is str and value.isdigit() and value.isascii():
        return int(value)
    raise _bad(f"cost.{key}", "an integer", value)


def parse_cost(text: str) -> Optional[Cost]:
    """The ``Cost`` in an SSE comment's text, or None if it is not a cost comment.

    A cost comment is a JSON object with a ``cost`` field. Other comments (keep-alives,
    ``ping - ...``) return None. A cost object with malformed amounts raises
    ``ProtocolError``.
    """
    text = text.strip()
    if not text.startswith("{") or '"cost"' not in text:
        return None
    try:
        obj = json.loads(text, parse_float=Decimal)
    except ValueError:
        return None
    if type(obj) is not dict or "cost" not in obj:
        return None
    cost = _money(obj, "cost")
    if cost is None:
        raise _bad("cost.cost", "a decimal string or number", None)
    return Cost(cost, _money(obj, "input_price"), _money(obj, "output_price"),
                _count(obj, "prompt_tokens"), _count(obj, "completion_tokens"), obj)


@dataclass
class ErrorInfo(_Raw):
    """An ``{"error": ...}`` object, from an error response or an in-stream event."""

    message: str = ""
    type: Optional[str] = None
    code: object = None
    param: object = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _KNOWN = frozenset({"message", "type", "code", "param"})

    @classmethod
    def from_json(cls, obj: object) -> ErrorInfo:
        if type(obj) is str:
            return cls(obj, None, None, None, {"message": obj})
        o = _obj(obj, "error")
        message = o.get("message")
        if type(message) is not str:
            message = json.dumps(message) if message is not None else "unknown error"
        type_ = o.get("type")
        return cls(message, type_ if type(type_) is str else None, o.get("code"),
                   o.get("param"), o)


def parse_chunk(data: str) -> Union[ChatCompletionChunk, ErrorInfo]:
    """Parse one SSE ``data`` payload: a chunk, or the ``ErrorInfo`` of an error event.

    Raises:
        ProtocolError: malformed JSON, or JSON that is not a chunk.
    """
    try:
        obj = json.loads(data)
    except ValueError:
        raise ProtocolError(f"malformed JSON in stream chunk: {excerpt(data)}") from None
    if type(obj) is not dict:
        raise ProtocolError(f"stream chunk is not a JSON object: {excerpt(data)}")
    if "error" in obj:
        return ErrorInfo.from_json(obj["error"])
    return ChatCompletionChunk.from_json(obj)


def parse_error_body(body: bytes, content_type: Optional[str]) -> Optional[ErrorInfo]:
    """The ``ErrorInfo`` in an HTTP error body, or None if it holds none.

    Accepts ``{"error": {...}}``, ``{"error": "message"}`` and ``{"message": ...}``;
    anything else (HTML, plain text, empty) returns None.
    """
    text = body.strip()
    if not text.startswith(b"{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if type(obj) is not dict:
        return None
    if "error" in obj:
        try:
            return ErrorInfo.from_json(obj["error"])
        except ProtocolError:
            return None
    if type(obj.get("message")) is str:
        return ErrorInfo.from_json(obj)
    return None
