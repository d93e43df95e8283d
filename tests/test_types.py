"""Response dataclasses from JSON: shapes, defaults, unknown fields, wrong shapes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alltoken import ProtocolError
from alltoken._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ErrorInfo,
    Usage,
    parse_chunk,
    parse_cost,
    parse_error_body,
)

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}


class TestChunk:
    def test_a_typical_chunk(self) -> None:
        c = ChatCompletionChunk.from_json(CHUNK)
        assert (c.id, c.object, c.created, c.model) == ("c1", "chat.completion.chunk", 5, "m")
        assert c.choices[0].delta.content == "Hi" and c.choices[0].finish_reason is None
        assert c.usage is None

    def test_missing_fields_default(self) -> None:
        c = ChatCompletionChunk.from_json({"choices": [{"delta": {}}]})
        assert (c.id, c.model, c.created) == ("", "", 0)
        assert c.choices[0].index == 0 and c.choices[0].delta.content is None

    def test_unknown_fields_are_kept_in_raw_and_extra(self) -> None:
        obj = dict(CHUNK, provider="deepseek", choices=[
            {"index": 0, "delta": {"content": "x", "audio": {"id": 1}}, "logprobs": None}])
        c = ChatCompletionChunk.from_json(obj)
        assert c.raw is obj and c.extra == {"provider": "deepseek"}
        assert c.choices[0].delta.extra == {"audio": {"id": 1}}

    @pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
    def test_both_reasoning_field_names_are_read(self, key: str) -> None:
        c = ChatCompletionChunk.from_json({"choices": [{"index": 0, "delta": {key: "hmm"}}]})
        assert c.choices[0].delta.reasoning_content == "hmm"

    def test_usage_only_chunk(self) -> None:
        c = ChatCompletionChunk.from_json({"choices": [], "usage": {
            "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
            "completion_tokens_details": {"reasoning_tokens": 2}}})
        assert c.choices == [] and c.usage == Usage(3, 4, 7)
        assert c.usage.extra == {"completion_tokens_details": {"reasoning_tokens": 2}}

    def test_total_tokens_defaults_to_the_sum(self) -> None:
        assert Usage.from_json({"prompt_tokens": 2, "completion_tokens": 3}).total_tokens == 5

    def test_tool_call_deltas(self) -> None:
        c = ChatCompletionChunk.from_json({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": "{\"a\""}}]}}]})
        call = c.choices[0].delta.tool_calls[0]  # type: ignore[index]
        assert (call.index, call.id, call.type) == (1, "call_1", "function")
        assert call.function is not None and call.function.arguments == '{"a"'

    @pytest.mark.parametrize(("obj", "where"), [
        ({"choices": {"0": {}}}, "choices"),
        ({"choices": ["x"]}, "choices[]"),
        ({"choices": [{"index": "0", "delta": {}}]}, "index"),
        ({"choices": [{"index": 0}]}, "delta"),
        ({"choices": [{"index": 0, "delta": []}]}, "delta"),
        ({"choices": [{"index": 0, "delta": {"content": 5}}]}, "content"),
        ({"choices": [{"index": 0, "delta": {"tool_calls": {}}}]}, "tool_calls"),
        ({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "a"}]}}]}, "index"),
        ({"choices": [], "usage": "lots"}, "usage"),
        ({"choices": [], "usage": {"prompt_tokens": True}}, "prompt_tokens"),
        ({"choices": [], "model": 7}, "model"),
    ])
    def test_wrong_shapes_are_protocol_errors_naming_the_field(
            self, obj: dict[str, Any], where: str) -> None:
        with pytest.raises(ProtocolError, match=r"expected|no delta") as info:
            ChatCompletionChunk.from_json(obj)
        assert where.split("[")[0] in str(info.value)


class TestParseChunk:
    def test_chunk(self) -> None:
        c = parse_chunk(json.dumps(CHUNK))
        assert isinstance(c, ChatCompletionChunk)

    @pytest.mark.parametrize(("error", "code"), [
        ({"message": "Rate limit exceeded", "type": "rate_limit_error", "code": 429}, 429),
        ({"message": "upstream"}, None),
        ("plain message", None),
    ])
    def test_error_events(self, error: object, code: object) -> None:
        info = parse_chunk(json.dumps({"error": error}))
        assert isinstance(info, ErrorInfo) and info.code == code
        assert info.message in ("Rate limit exceeded", "upstream", "plain message")

    @pytest.mark.parametrize("data", ['{"choices": [tru', "[1, 2]", '"text"', "", "null"])
    def test_malformed_or_non_object_json(self, data: str) -> None:
        with pytest.raises(ProtocolError):
            parse_chunk(data)

    def test_error_message_excerpt_is_bounded(self) -> None:
        with pytest.raises(ProtocolError) as info:
            parse_chunk("{" + "x" * 10000)
        assert len(str(info.value)) < 400

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(max_size=10),
        lambda kids: st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(["choices", "delta", "index", "content",
                                           "reasoning_content", "tool_calls", "usage",
                                           "function", "error", "id", "model", "x"]),
                          kids, max_size=5),
        max_leaves=20)

    @given(json_values)
    def test_any_json_value_gives_a_chunk_an_error_or_protocol_error(self, value: Any) -> None:
        try:
            result = parse_chunk(json.dumps(value))
        except ProtocolError:
            return
        assert isinstance(result, (ChatCompletionChunk, ErrorInfo))

    @given(st.text(max_size=200))
    def test_any_text_gives_nothing_but_protocol_error(self, text: str) -> None:
        try:
            parse_chunk(text)
        except ProtocolError:
            pass


class TestCost:
    def test_cost_comment_with_strings_is_exact(self) -> None:
        c = parse_cost('{"cost":"0.0012","input_price":"0.0003","output_price":"0.0009",'
                       '"prompt_tokens":15,"completion_tokens":42}')
        assert c is not None
        assert c.cost == Decimal("0.0012") and str(c.cost) == "0.0012"
        assert (c.input_price, c.output_price) == (Decimal("0.0003"), Decimal("0.0009"))
        assert (c.prompt_tokens, c.completion_tokens) == (15, 42)

    def test_numbers_are_read_without_float_rounding(self) -> None:
        c = parse_cost('{"cost": 0.1}')
        assert c is not None and c.cost == Decimal("0.1")

    @pytest.mark.parametrize("text", ["keep-alive", "ping - 2026-11-23 10:00:00", "",
                                      '{"price": "1"}', "{not json", '["cost"]'])
    def test_other_comments_are_not_costs(self, text: str) -> None:
        assert parse_cost(text) is None

    @pytest.mark.parametrize("text", ['{"cost": "abc"}', '{"cost": null}', '{"cost": true}',
                                      '{"cost": "NaN"}', '{"cost": "1", "prompt_tokens": "x"}'])
    def test_malformed_cost_objects_are_protocol_errors(self, text: str) -> None:
        with pytest.raises(ProtocolError):
            parse_cost(text)


class TestErrorBody:
    @pytest.mark.parametrize(("body", "message"), [
        (b'{"error": {"message": "bad key", "type": "authentication_error"}}', "bad key"),
        (b'{"error": "plain"}', "plain"),
        (b'{"message": "top level"}', "top level"),
    ])
    def test_json_error_bodies(self, body: bytes, message: str) -> None:
        info = parse_error_body(body, "application/json")
        assert info is not None and info.message == message

    @pytest.mark.parametrize("body", [b"<html>502</html>", b"", b"[]", b'{"ok": 1}', b"{bad"])
    def test_other_bodies_give_none(self, body: bytes) -> None:
        assert parse_error_body(body, "text/html") is None


class TestCompletion:
    def test_non_streamed_answer(self) -> None:
        c = ChatCompletion.from_json({"id": "x", "model": "m", "choices": [{
            "index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "reasoning": "r",
                "tool_calls": [{"id": "call", "type": "function",
                                "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
        m = c.choices[0].message
        assert m.content is None and m.reasoning_content == "r"
        assert m.tool_calls is not None and m.tool_calls[0].function.name == "f"
        assert c.usage is not None and c.usage.total_tokens == 3

    @pytest.mark.parametrize("obj", [[], {"choices": [{"index": 0}]},
                                     {"choices": [{"message": "hi"}]}])
    def test_wrong_shapes(self, obj: Any) -> None:
        with pytest.raises(ProtocolError):
            ChatCompletion.from_json(obj)
