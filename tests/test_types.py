"""Response dataclasses from JSON: shapes, defaults, unknown fields, wrong shapes, and the
three parsers the client calls (chunks, cost comments, error bodies)."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alltoken import ProtocolError
from alltoken._types import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Cost,
    Delta,
    ErrorInfo,
    FunctionCall,
    FunctionCallDelta,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
    _ChunkParser,
    parse_chunk,
    parse_cost,
    parse_error_body,
)

CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1732300000,
    "model": "deepseek-reasoner", "system_fingerprint": "fp_1",
    "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": None,
                 "finish_reason": None}],
}


def chunk_with_delta(delta: object, **choice: object) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, **choice}]}


class TestChunk:
    def test_a_typical_chunk(self) -> None:
        c = ChatCompletionChunk.from_json(CHUNK)
        assert (c.id, c.object, c.created, c.model) == (
            "chatcmpl-1", "chat.completion.chunk", 1732300000, "deepseek-reasoner")
        assert c.system_fingerprint == "fp_1" and c.usage is None
        assert c.choices == [ChunkChoice(0, Delta(content="Hi"), None, None)]

    def test_raw_is_the_object_itself_not_a_copy(self) -> None:
        c = ChatCompletionChunk.from_json(CHUNK)
        assert c.raw is CHUNK
        assert c.choices[0].raw is CHUNK["choices"][0]
        assert c.choices[0].delta.raw is CHUNK["choices"][0]["delta"]

    def test_raw_is_left_out_of_repr_and_equality(self) -> None:
        c = ChatCompletionChunk.from_json(CHUNK)
        assert "raw=" not in repr(c)
        assert c == ChatCompletionChunk.from_json(dict(CHUNK, provider="x"))

    def test_missing_top_level_fields_default(self) -> None:
        c = ChatCompletionChunk.from_json({"choices": [{"delta": {}}]})
        assert (c.id, c.object, c.created, c.model) == ("", "chat.completion.chunk", 0, "")
        assert c.system_fingerprint is None and c.usage is None

    def test_null_top_level_fields_default(self) -> None:
        c = ChatCompletionChunk.from_json({"id": None, "model": None, "created": None,
                                           "object": None, "choices": None})
        assert (c.id, c.object, c.created, c.model, c.choices) == (
            "", "chat.completion.chunk", 0, "", [])

    def test_missing_choice_fields_default(self) -> None:
        choice = ChatCompletionChunk.from_json({"choices": [{"delta": {}}]}).choices[0]
        assert (choice.index, choice.finish_reason, choice.logprobs) == (0, None, None)
        assert choice.delta == Delta(None, None, None, None)

    def test_an_empty_object_is_a_chunk_without_choices(self) -> None:
        assert ChatCompletionChunk.from_json({}).choices == []

    def test_unknown_fields_are_kept_in_raw_and_extra(self) -> None:
        obj = dict(CHUNK, provider="deepseek", choices=[
            {"index": 0, "delta": {"content": "x", "audio": {"id": 1}}, "logprobs": None,
             "native_finish_reason": "eos"}])
        c = ChatCompletionChunk.from_json(obj)
        assert c.extra == {"provider": "deepseek"}
        assert c.choices[0].extra == {"native_finish_reason": "eos"}
        assert c.choices[0].delta.extra == {"audio": {"id": 1}}

    def test_extra_is_empty_when_every_field_is_mapped(self) -> None:
        c = ChatCompletionChunk.from_json(CHUNK)
        assert c.extra == {} and c.choices[0].extra == {} and c.choices[0].delta.extra == {}

    @pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
    def test_both_reasoning_field_names_are_read(self, key: str) -> None:
        c = ChatCompletionChunk.from_json(chunk_with_delta({key: "hmm"}))
        assert c.choices[0].delta.reasoning_content == "hmm"

    def test_reasoning_alias_is_not_an_extra_field(self) -> None:
        c = ChatCompletionChunk.from_json(chunk_with_delta({"reasoning": "hmm"}))
        assert c.choices[0].delta.extra == {}

    def test_reasoning_content_wins_over_reasoning(self) -> None:
        delta = {"reasoning_content": "a", "reasoning": "b"}
        c = ChatCompletionChunk.from_json(chunk_with_delta(delta))
        assert c.choices[0].delta.reasoning_content == "a"

    def test_null_reasoning_content_falls_back_to_reasoning(self) -> None:
        delta = {"reasoning_content": None, "reasoning": "b", "content": None}
        c = ChatCompletionChunk.from_json(chunk_with_delta(delta))
        assert c.choices[0].delta.reasoning_content == "b"

    def test_first_delta_with_role_and_nulls(self) -> None:
        delta = {"role": "assistant", "content": None, "reasoning_content": ""}
        d = ChatCompletionChunk.from_json(chunk_with_delta(delta)).choices[0].delta
        assert d == Delta("assistant", None, "", None)

    def test_content_and_reasoning_in_one_delta(self) -> None:
        delta = {"content": "x", "reasoning_content": "y"}
        d = ChatCompletionChunk.from_json(chunk_with_delta(delta)).choices[0].delta
        assert (d.content, d.reasoning_content) == ("x", "y")

    def test_finish_reason_chunk_with_empty_delta(self) -> None:
        c = ChatCompletionChunk.from_json(chunk_with_delta({}, finish_reason="stop"))
        assert c.choices[0].finish_reason == "stop" and c.choices[0].delta.content is None

    def test_several_choices_keep_their_order_and_index(self) -> None:
        c = ChatCompletionChunk.from_json({"choices": [
            {"index": 1, "delta": {"content": "b"}}, {"index": 0, "delta": {"content": "a"}}]})
        assert [(ch.index, ch.delta.content) for ch in c.choices] == [(1, "b"), (0, "a")]

    def test_logprobs_pass_through_as_sent(self) -> None:
        logprobs = {"content": [{"token": "Hi", "logprob": -0.1}]}
        c = ChatCompletionChunk.from_json(chunk_with_delta({"content": "Hi"},
                                                           logprobs=logprobs))
        assert c.choices[0].logprobs is logprobs

    def test_usage_only_chunk(self) -> None:
        c = ChatCompletionChunk.from_json({"id": "x", "choices": [], "usage": {
            "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
            "completion_tokens_details": {"reasoning_tokens": 2}}})
        assert c.choices == [] and c.usage == Usage(3, 4, 7)
        assert c.usage.extra == {"completion_tokens_details": {"reasoning_tokens": 2}}
        assert c.usage.raw["completion_tokens_details"] == {"reasoning_tokens": 2}

    def test_tool_call_deltas(self) -> None:
        c = ChatCompletionChunk.from_json(chunk_with_delta({"tool_calls": [
            {"index": 1, "id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": '{"a"'}}]}))
        calls = c.choices[0].delta.tool_calls
        assert calls == [ToolCallDelta(1, "call_1", "function",
                                       FunctionCallDelta("f", '{"a"'))]

    def test_tool_call_argument_piece_without_id_or_name(self) -> None:
        c = ChatCompletionChunk.from_json(chunk_with_delta({"tool_calls": [
            {"index": 0, "function": {"arguments": ': 1}'}}]}))
        calls = c.choices[0].delta.tool_calls
        assert calls == [ToolCallDelta(0, None, None, FunctionCallDelta(None, ": 1}"))]

    def test_tool_call_without_index_takes_its_position(self) -> None:
        c = ChatCompletionChunk.from_json(chunk_with_delta({"tool_calls": [
            {"id": "a", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "function": {"name": "g", "arguments": "{}"}}]}))
        calls = c.choices[0].delta.tool_calls
        assert calls is not None and [(t.index, t.id) for t in calls] == [(0, "a"), (1, "b")]

    def test_tool_call_delta_unknown_fields_are_kept(self) -> None:
        c = ChatCompletionChunk.from_json(chunk_with_delta({"tool_calls": [
            {"index": 0, "function": {"arguments": "", "strict": True}, "x": 1}]}))
        calls = c.choices[0].delta.tool_calls
        assert calls is not None and calls[0].extra == {"x": 1}
        assert calls[0].function is not None and calls[0].function.extra == {"strict": True}

    @pytest.mark.parametrize(("obj", "where"), [
        ([], "chunk"),
        ({"choices": {"0": {}}}, "chunk.choices"),
        ({"choices": "abc"}, "chunk.choices"),
        ({"choices": ["x"]}, "choices[]"),
        ({"choices": [None]}, "choices[]"),
        ({"choices": [{"index": "0", "delta": {}}]}, "choices[].index"),
        ({"choices": [{"index": 0.0, "delta": {}}]}, "choices[].index"),
        ({"choices": [{"index": True, "delta": {}}]}, "choices[].index"),
        ({"choices": [{"index": 0, "delta": []}]}, "choices[].delta"),
        ({"choices": [{"index": 0, "delta": "Hi"}]}, "choices[].delta"),
        ({"choices": [{"index": 0, "delta": {}, "finish_reason": 1}]},
         "choices[].finish_reason"),
        (chunk_with_delta({"content": 5}), "delta.content"),
        (chunk_with_delta({"content": ["a"]}), "delta.content"),
        (chunk_with_delta({"content": "a", "role": 1}), "delta.role"),
        (chunk_with_delta({"reasoning_content": 1}), "delta.reasoning_content"),
        (chunk_with_delta({"reasoning": {"text": "x"}}), "delta.reasoning"),
        (chunk_with_delta({"tool_calls": {}}), "delta.tool_calls"),
        (chunk_with_delta({"tool_calls": ["x"]}), "delta.tool_calls[]"),
        (chunk_with_delta({"tool_calls": [{"index": "a"}]}), "delta.tool_calls[].index"),
        (chunk_with_delta({"tool_calls": [{"index": 0, "id": 7}]}), "delta.tool_calls[].id"),
        (chunk_with_delta({"tool_calls": [{"index": 0, "function": "f"}]}),
         "delta.tool_calls[].function"),
        (chunk_with_delta({"tool_calls": [{"index": 0, "function": {"arguments": {}}}]}),
         "delta.tool_calls[].function.arguments"),
        ({"choices": [], "usage": "lots"}, "usage"),
        ({"choices": [], "usage": {"prompt_tokens": True}}, "usage.prompt_tokens"),
        ({"choices": [], "usage": {"prompt_tokens": "3"}}, "usage.prompt_tokens"),
        ({"choices": [], "usage": {"completion_tokens": 1.5}}, "usage.completion_tokens"),
        ({"choices": [], "model": 7}, "chunk.model"),
        ({"choices": [], "id": 7}, "chunk.id"),
        ({"choices": [], "created": "now"}, "chunk.created"),
        ({"choices": [], "object": []}, "chunk.object"),
        ({"choices": [], "system_fingerprint": 1}, "chunk.system_fingerprint"),
    ])
    def test_wrong_shapes_are_protocol_errors_naming_the_field(
            self, obj: Any, where: str) -> None:
        with pytest.raises(ProtocolError, match=r"expected|missing") as info:
            ChatCompletionChunk.from_json(obj)
        assert str(info.value).startswith(where)

    def test_wrong_shape_message_shows_what_came(self) -> None:
        with pytest.raises(ProtocolError) as info:
            ChatCompletionChunk.from_json(chunk_with_delta({"content": 5}))
        assert str(info.value) == "delta.content: expected a string or null, got 5"

    def test_wrong_shape_message_shows_strings_as_json(self) -> None:
        with pytest.raises(ProtocolError) as info:
            ChatCompletionChunk.from_json({"choices": [{"index": "0", "delta": {}}]})
        assert str(info.value) == 'choices[].index: expected an integer, got "0"'

    def test_wrong_shape_message_is_bounded(self) -> None:
        with pytest.raises(ProtocolError) as info:
            ChatCompletionChunk.from_json({"choices": "x" * 100_000})
        assert len(str(info.value)) < 300

    def test_each_class_parses_on_its_own(self) -> None:
        assert Delta.from_json({"content": "x"}) == Delta(content="x")
        assert ChunkChoice.from_json({"delta": {}, "index": 2}).index == 2
        assert ToolCallDelta.from_json({"index": 3}).index == 3
        assert FunctionCallDelta.from_json({"name": "f"}) == FunctionCallDelta("f", None)
        with pytest.raises(ProtocolError):
            Delta.from_json(None)


class TestUsage:
    def test_counts(self) -> None:
        assert Usage.from_json({"prompt_tokens": 2, "completion_tokens": 3,
                                "total_tokens": 6}) == Usage(2, 3, 6)

    def test_missing_total_is_the_sum(self) -> None:
        assert Usage.from_json({"prompt_tokens": 2, "completion_tokens": 3}).total_tokens == 5

    def test_missing_counts_are_zero(self) -> None:
        assert Usage.from_json({}) == Usage(0, 0, 0)

    def test_big_counts_stay_exact(self) -> None:
        assert Usage.from_json({"prompt_tokens": 10**20}).prompt_tokens == 10**20


class TestCompletion:
    def test_non_streamed_answer(self) -> None:
        c = ChatCompletion.from_json({"id": "x", "object": "chat.completion", "created": 9,
            "model": "m", "choices": [{
                "index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": None, "reasoning": "r",
                    "tool_calls": [{"id": "call", "type": "function",
                                    "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
        assert (c.id, c.object, c.created, c.model) == ("x", "chat.completion", 9, "m")
        m = c.choices[0].message
        assert m.content is None and m.reasoning_content == "r"
        assert m.tool_calls == [ToolCall("call", "function", FunctionCall("f", "{}"))]
        assert c.choices[0].finish_reason == "tool_calls"
        assert c.usage is not None and c.usage.total_tokens == 3

    def test_plain_answer_with_defaults(self) -> None:
        c = ChatCompletion.from_json({"choices": [{"message": {"content": "hi"}}]})
        assert (c.id, c.object, c.created, c.model, c.usage) == (
            "", "chat.completion", 0, "", None)
        assert c.choices == [Choice(0, Message("assistant", "hi", None, None), None)]

    def test_unknown_fields_are_kept(self) -> None:
        obj = {"choices": [{"message": {"content": "hi", "refusal": None}, "x": 1}], "y": 2}
        c = ChatCompletion.from_json(obj)
        assert c.raw is obj and c.extra == {"y": 2}
        assert c.choices[0].extra == {"x": 1}
        assert c.choices[0].message.extra == {"refusal": None}

    def test_tool_call_defaults_and_extra(self) -> None:
        call = ToolCall.from_json({"id": "c", "index": 0})
        assert call == ToolCall("c", "function", FunctionCall("", ""))
        assert call.extra == {"index": 0}

    def test_assembled_tool_call_defaults(self) -> None:
        assert ToolCall() == ToolCall("", "function", FunctionCall("", ""))
        assert ToolCall().function is not ToolCall().function
        assert ToolCall().raw == {} and ToolCall().extra == {}

    @pytest.mark.parametrize(("obj", "where"), [
        ([], "chat completion"),
        ({"choices": {}}, "chat completion.choices"),
        ({"choices": [{"index": 0}]}, "choices[]: the required field 'message'"),
        ({"choices": [{"message": "hi"}]}, "choices[].message"),
        ({"choices": [{"message": {"content": 1}}]}, "message.content"),
        ({"choices": [{"message": {"role": None, "reasoning_content": 1}}]}, "message"),
        ({"choices": [{"message": {"tool_calls": "x"}}]}, "message.tool_calls"),
        ({"choices": [{"message": {"tool_calls": [1]}}]}, "tool_call"),
        ({"choices": [{"message": {"tool_calls": [{"function": []}]}}]}, "tool_call.function"),
        ({"choices": [{"message": {}, "index": "0"}]}, "choices[].index"),
        ({"choices": [], "usage": []}, "usage"),
        ({"choices": [], "created": 1.5}, "chat completion.created"),
    ])
    def test_wrong_shapes(self, obj: Any, where: str) -> None:
        with pytest.raises(ProtocolError) as info:
            ChatCompletion.from_json(obj)
        assert str(info.value).startswith(where)


class TestParseChunk:
    def test_chunk(self) -> None:
        c = parse_chunk(json.dumps(CHUNK))
        assert isinstance(c, ChatCompletionChunk) and c.choices[0].delta.content == "Hi"

    @pytest.mark.parametrize(("error", "expected"), [
        ({"message": "Rate limit exceeded", "type": "rate_limit_error", "code": 429,
          "param": None}, ErrorInfo("Rate limit exceeded", "rate_limit_error", 429, None)),
        ({"message": "bad model", "type": "invalid_request_error", "code": "model_not_found",
          "param": "model"},
         ErrorInfo("bad model", "invalid_request_error", "model_not_found", "model")),
        ({"message": "upstream"}, ErrorInfo("upstream", None, None, None)),
        ("plain message", ErrorInfo("plain message", None, None, None)),
    ])
    def test_error_events(self, error: object, expected: ErrorInfo) -> None:
        info = parse_chunk(json.dumps({"error": error}))
        assert info == expected

    def test_error_event_keeps_unknown_fields(self) -> None:
        info = parse_chunk('{"error": {"message": "m", "provider": "x", "metadata": {}}}')
        assert isinstance(info, ErrorInfo) and info.extra == {"provider": "x", "metadata": {}}

    def test_string_error_has_a_raw_object(self) -> None:
        info = parse_chunk('{"error": "boom"}')
        assert isinstance(info, ErrorInfo) and info.raw == {"message": "boom"}

    def test_error_beside_chunk_fields_is_an_error(self) -> None:
        info = parse_chunk(json.dumps(dict(CHUNK, error={"message": "late failure"})))
        assert isinstance(info, ErrorInfo) and info.message == "late failure"

    def test_null_error_is_a_chunk(self) -> None:
        assert isinstance(parse_chunk(json.dumps(dict(CHUNK, error=None))),
                          ChatCompletionChunk)

    @pytest.mark.parametrize(("error", "message"), [
        ({"message": None, "code": 500}, '{"message": null, "code": 500}'),
        ({"code": 500}, '{"code": 500}'),
        ({"message": {"detail": "x"}}, '{"detail": "x"}'),
    ])
    def test_error_without_a_string_message_is_still_an_error(
            self, error: object, message: str) -> None:
        info = parse_chunk(json.dumps({"error": error}))
        assert isinstance(info, ErrorInfo) and info.message == message

    def test_error_type_of_a_wrong_type_is_dropped_but_kept_in_raw(self) -> None:
        info = parse_chunk('{"error": {"message": "m", "type": 5}}')
        assert isinstance(info, ErrorInfo) and info.type is None and info.raw["type"] == 5

    @pytest.mark.parametrize("error", ["[1]", "5", "true"])
    def test_error_of_another_shape_is_a_protocol_error(self, error: str) -> None:
        with pytest.raises(ProtocolError, match="error: expected"):
            parse_chunk('{"error": ' + error + "}")

    @pytest.mark.parametrize("data", ['{"choices": [tru', "", "{", "data: {}", "[DONE]",
                                      '{"a": 1} x', "NaN x", "1" * 5000])
    def test_malformed_json(self, data: str) -> None:
        with pytest.raises(ProtocolError, match="malformed JSON in stream chunk"):
            parse_chunk(data)

    @pytest.mark.parametrize("data", ["[1, 2]", '"text"', "null", "3", "true"])
    def test_json_that_is_not_an_object(self, data: str) -> None:
        with pytest.raises(ProtocolError, match="expected a JSON object"):
            parse_chunk(data)

    def test_nesting_deeper_than_the_decoder_allows_is_a_protocol_error(self) -> None:
        with pytest.raises(ProtocolError):
            parse_chunk("[" * 100_000 + "]" * 100_000)
        with pytest.raises(ProtocolError):
            parse_chunk('{"choices": ' + "[" * 100_000 + "]" * 100_000 + "}")

    def test_error_message_excerpt_is_bounded(self) -> None:
        with pytest.raises(ProtocolError) as info:
            parse_chunk("{" + "x" * 10000)
        assert len(str(info.value)) < 300

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(max_size=10),
        lambda kids: st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from([
            "choices", "delta", "index", "content", "reasoning_content", "reasoning",
            "role", "tool_calls", "function", "name", "arguments", "id", "type", "usage",
            "prompt_tokens", "completion_tokens", "total_tokens", "finish_reason",
            "logprobs", "model", "created", "object", "system_fingerprint", "error",
            "message", "code", "x"]) | st.text(max_size=5), kids, max_size=6),
        max_leaves=30)

    @given(json_values)
    def test_any_json_value_gives_a_chunk_an_error_or_protocol_error(self, value: Any) -> None:
        try:
            result = parse_chunk(json.dumps(value))
        except ProtocolError:
            return
        assert isinstance(result, (ChatCompletionChunk, ErrorInfo))

    @given(st.fixed_dictionaries({"choices": st.lists(st.fixed_dictionaries(
        {"index": st.integers(0, 3), "delta": st.fixed_dictionaries({}, optional={
            "content": st.none() | st.text(), "reasoning_content": st.none() | st.text(),
            "role": st.none() | st.just("assistant")})}), max_size=3)}))
    def test_well_formed_chunks_round_trip(self, value: Any) -> None:
        c = parse_chunk(json.dumps(value))
        assert isinstance(c, ChatCompletionChunk)
        for choice, obj in zip(c.choices, value["choices"]):
            assert choice.index == obj["index"]
            assert choice.delta.content == obj["delta"].get("content")
            assert choice.delta.reasoning_content == obj["delta"].get("reasoning_content")

    @given(st.text(max_size=200))
    def test_any_text_gives_nothing_but_protocol_error(self, text: str) -> None:
        try:
            result = parse_chunk(text)
        except ProtocolError:
            return
        assert isinstance(result, (ChatCompletionChunk, ErrorInfo))


class TestCost:
    def test_cost_comment_with_strings_is_exact(self) -> None:
        c = parse_cost('{"cost":"0.0012","input_price":"0.0003","output_price":"0.0009",'
                       '"prompt_tokens":15,"completion_tokens":42}')
        assert c == Cost(Decimal("0.0012"), Decimal("0.0003"), Decimal("0.0009"), 15, 42)
        assert str(c.cost) == "0.0012"

    @pytest.mark.parametrize(("text", "cost"), [
        ('{"cost": 0.0012}', "0.0012"),
        ('{"cost": 0.1}', "0.1"),
        ('{"cost": 1e-7}', "1E-7"),
        ('{"cost": 0.30000000000000004}', "0.30000000000000004"),
        ('{"cost": 3}', "3"),
        ('{"cost": "12.50"}', "12.50"),
        ('{"cost": -0.5}', "-0.5"),
    ])
    def test_numbers_are_read_without_float_rounding(self, text: str, cost: str) -> None:
        c = parse_cost(text)
        assert c is not None and type(c.cost) is Decimal and str(c.cost) == cost

    def test_token_counts_as_ints_or_digit_strings(self) -> None:
        c = parse_cost('{"cost": "1", "prompt_tokens": "15", "completion_tokens": 42}')
        assert c is not None and (c.prompt_tokens, c.completion_tokens) == (15, 42)

    def test_optional_fields_default_to_none(self) -> None:
        assert parse_cost('{"cost": "0"}') == Cost(Decimal(0), None, None, None, None)

    def test_unknown_fields_are_kept(self) -> None:
        c = parse_cost('{"cost": "1", "currency": "USD", "cache_read_tokens": 3}')
        assert c is not None and c.extra == {"currency": "USD", "cache_read_tokens": 3}

    def test_surrounding_whitespace_is_ignored(self) -> None:
        assert parse_cost('  {"cost": "1"}\r') == Cost(Decimal(1))

    @pytest.mark.parametrize("text", [
        "keep-alive", "ping - 2026-11-23 10:00:00.123456", "", " ", "OPENROUTER PROCESSING",
        '{"price": "1"}', "{not json", '{"cost": "1"', '["cost"]', '"cost"', "{}",
        '{"data": {"cost": "1"}}', "[" * 100_000])
    def test_other_comments_are_not_costs(self, text: str) -> None:
        assert parse_cost(text) is None

    @pytest.mark.parametrize("text", [
        '{"cost": "abc"}', '{"cost": null}', '{"cost": true}', '{"cost": "NaN"}',
        '{"cost": "Infinity"}', '{"cost": NaN}', '{"cost": Infinity}', '{"cost": []}',
        '{"cost": {}}', '{"cost": ""}', '{"cost": "1", "input_price": "x"}',
        '{"cost": "1", "output_price": false}', '{"cost": "1", "prompt_tokens": "x"}',
        '{"cost": "1", "prompt_tokens": -1}', '{"cost": "1", "completion_tokens": 1.5}',
        '{"cost": "1", "completion_tokens": true}'])
    def test_an_unreadable_cost_object_is_no_cost_and_is_logged_at_debug(
            self, text: str, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="alltoken")
        assert parse_cost(text) is None
        assert "unreadable cost comment" in caplog.text

    def test_a_whole_number_of_tokens_written_as_a_float_is_read(self) -> None:
        c = parse_cost('{"cost": "0.5", "prompt_tokens": 15.0, "completion_tokens": 2}')
        assert c is not None and c.prompt_tokens == 15 and type(c.prompt_tokens) is int

    @pytest.mark.parametrize("count", ["1e433333333332", "1e19", "1.5e30"])
    def test_an_absurd_token_count_is_no_cost_not_a_huge_integer(self, count: str) -> None:
        assert parse_cost('{"cost": "0.", "prompt_tokens": ' + count + "}") is None

    @pytest.mark.parametrize("delta", ["missing", "null"])
    def test_a_choice_without_a_delta_is_an_empty_delta(self, delta: str) -> None:
        choice: dict[str, Any] = {"index": 0, "finish_reason": None,
                                  "content_filter_results": {"hate": {"filtered": False}}}
        if delta == "null":
            choice["delta"] = None
        chunk = parse_chunk(json.dumps({"id": "c", "choices": [choice]}))
        assert isinstance(chunk, ChatCompletionChunk)
        d = chunk.choices[0].delta
        assert (d.content, d.reasoning_content, d.tool_calls, d.role) == (None,) * 4

    @given(st.decimals(allow_nan=False, allow_infinity=False))
    def test_any_finite_decimal_survives_as_string_and_number(self, amount: Decimal) -> None:
        for text in (json.dumps({"cost": str(amount)}), '{"cost": ' + str(amount) + "}"):
            c = parse_cost(text)
            assert c is not None and c.cost == amount

    @given(st.text(max_size=100))
    def test_any_text_gives_a_cost_none_or_protocol_error(self, text: str) -> None:
        try:
            result = parse_cost(text)
        except ProtocolError:
            return
        assert result is None or isinstance(result, Cost)


class TestErrorBody:
    @pytest.mark.parametrize(("body", "expected"), [
        (b'{"error": {"message": "bad key", "type": "authentication_error", "code": 401}}',
         ErrorInfo("bad key", "authentication_error", 401, None)),
        (b'{"error": {"message": "m", "code": "rate_limited"}}',
         ErrorInfo("m", None, "rate_limited", None)),
        (b'{"error": "plain"}', ErrorInfo("plain", None, None, None)),
        (b'{"message": "top level", "type": "x"}', ErrorInfo("top level", "x", None, None)),
        (b'{"object": "error", "message": "vllm style", "code": 400}',
         ErrorInfo("vllm style", None, 400, None)),
        (b'{"detail": "Not Found"}', ErrorInfo("Not Found", None, None, None)),
        (b'\n  {"error": {"message": "padded"}}  \n', ErrorInfo("padded", None, None, None)),
        ('{"error": {"message": "caf\u00e9"}}'.encode(), ErrorInfo("caf\u00e9", None, None, None)),
    ])
    def test_json_error_bodies(self, body: bytes, expected: ErrorInfo) -> None:
        assert parse_error_body(body, "application/json") == expected

    def test_content_type_is_not_relied_on(self) -> None:
        info = parse_error_body(b'{"error": {"message": "m"}}', "text/plain")
        assert info is not None and info.message == "m"

    def test_raw_is_the_error_object(self) -> None:
        info = parse_error_body(b'{"error": {"message": "m", "request_id": "r1"}}', None)
        assert info is not None and info.raw == {"message": "m", "request_id": "r1"}
        assert info.extra == {"request_id": "r1"}

    @pytest.mark.parametrize("body", [
        b"<html><body>502 Bad Gateway</body></html>", b"", b"   ", b"[]", b"null",
        b'{"ok": 1}', b"{bad", b'{"error": null}', b'{"error": 5}', b'{"message": 5}',
        b'{"detail": [{"loc": ["body"]}]}', b"\xff\xfe{", b"{" * 100_000,
        b'{"error": {"message": "cut off'])
    def test_other_bodies_give_none(self, body: bytes) -> None:
        assert parse_error_body(body, "text/html") is None

    @given(st.binary(max_size=200))
    def test_never_raises(self, body: bytes) -> None:
        result = parse_error_body(body, None)
        assert result is None or isinstance(result, ErrorInfo)


def test_a_cost_comment_with_a_number_decimal_cannot_hold_is_not_a_crash() -> None:
    # Found by fuzz/fuzz_chunk_json.py: decimal.InvalidOperation escaped json.loads.
    from alltoken._types import parse_cost

    text = '{"cost":"0.","prompt_tokens":1e' + "4" * 60 + "}"
    assert parse_cost(text) is None


class TestDataclassBehaviour:
    """repr and == are written once in the shared base (not generated per class): they
    must behave exactly as dataclass(repr=True, eq=True) would."""

    def test_repr_lists_the_repr_fields_in_order_and_leaves_raw_out(self) -> None:
        call = ToolCall("call_1", "function", FunctionCall("f", "{}", {"name": "f"}),
                        {"id": "call_1"})
        assert repr(call) == ("ToolCall(id='call_1', type='function', "
                              "function=FunctionCall(name='f', arguments='{}'))")
        assert repr(Usage(1, 2, 3)) == (
            "Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)")

    def test_equality_compares_the_compare_fields_of_the_same_class_only(self) -> None:
        assert Usage(1, 2, 3, {"a": 1}) == Usage(1, 2, 3, {"b": 2})
        assert Usage(1, 2, 3) != Usage(1, 2, 4)
        assert FunctionCall("f", "") != FunctionCallDelta("f", "")
        assert Usage(1, 2, 3).__eq__(object()) is NotImplemented

    def test_instances_are_unhashable_like_a_mutable_dataclass(self) -> None:
        with pytest.raises(TypeError):
            hash(Usage())

    @staticmethod
    def _hand_written_inits() -> list[type]:
        """Every dataclass of the package whose ``__init__`` is written by hand
        (``init=False``: generating one costs a compile() at import)."""
        import dataclasses
        import importlib
        import pkgutil

        import alltoken

        found = []
        for info in pkgutil.iter_modules(alltoken.__path__, "alltoken."):
            module = importlib.import_module(info.name)
            for c in vars(module).values():
                if (isinstance(c, type) and c.__module__ == module.__name__
                        and dataclasses.is_dataclass(c)
                        and not c.__dataclass_params__.init):  # type: ignore[attr-defined]
                    found.append(c)
        return found

    def test_hand_written_inits_take_the_fields_as_a_generated_one_would(self) -> None:
        import dataclasses
        import inspect

        classes = self._hand_written_inits()
        assert {ChatCompletionChunk, ChunkChoice, Delta, Cost, ErrorInfo} <= set(classes)
        for cls in classes:
            fs = [f for f in dataclasses.fields(cls) if f.init]
            params = list(inspect.signature(cls).parameters.values())
            assert [p.name for p in params] == [f.name for f in fs], cls
            assert {p.kind for p in params} == {inspect.Parameter.POSITIONAL_OR_KEYWORD}, cls
            for p, f in zip(params, fs):
                if f.default_factory is not dataclasses.MISSING:
                    # None stands for "make a new one", as the generated sentinel does.
                    assert p.default is None, (cls, f.name)
                    made = [getattr(cls(), f.name) for _ in range(2)]
                    assert made[0] == f.default_factory() and made[0] is not made[1]
                elif f.default is not dataclasses.MISSING:
                    assert p.default is f.default, (cls, f.name)
                    assert getattr(cls(), f.name) is f.default
                elif f.name not in getattr(cls, "__slots__", ()):
                    # (A slotted class cannot declare a field's default on the class,
                    # so only its __init__ states it: sse.ServerSentEvent's event and id.)
                    assert p.default is inspect.Parameter.empty, (cls, f.name)
            # Timeout checks its values: numbers, still told apart by identity.
            given = ([float(i + 1) for i in range(len(fs))] if cls.__name__ == "Timeout"
                     else [object() for _ in fs])
            by_position = cls(*given)
            by_name = cls(**{f.name: v for f, v in zip(fs, given)})
            for f, v in zip(fs, given):
                assert getattr(by_position, f.name) is v and getattr(by_name, f.name) is v

    def test_every_response_type_is_a_dataclass_with_a_readable_repr(self) -> None:
        import dataclasses

        import alltoken._types as types

        classes = [c for c in vars(types).values()
                   if isinstance(c, type) and c.__module__ == types.__name__
                   and not c.__name__.startswith("_")]
        assert len(classes) >= 13
        for cls in classes:
            assert dataclasses.is_dataclass(cls), cls
            text = repr(cls())
            assert text.startswith(f"{cls.__name__}(") and "raw=" not in text, text
            assert cls() == cls()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=8,
)
_json_texts = st.one_of(
    st.text(max_size=40),
    st.builds(lambda pre, doc, post: pre + doc + post,
              st.sampled_from(["", " ", "\n", "\ufeff", "\t "]),
              _json_values.map(json.dumps),
              st.sampled_from(["", " ", "\r\n", "x", "{}", ",1"])),
)


def _json_outcome(loads: Any, text: str) -> tuple[str, str]:
    try:
        return "ok", repr(loads(text))
    except Exception as exc:  # the exception's type is what must match
        return "error", type(exc).__name__


class TestFastJSON:
    """parse_chunk reads JSON through _loads, json.loads minus its wrapping."""

    @given(_json_texts)
    def test_same_result_or_error_as_json_loads(self, text: str) -> None:
        from alltoken._types import _loads

        assert _json_outcome(_loads, text) == _json_outcome(json.loads, text)

    @pytest.mark.parametrize("text", ['{"a":1}', ' {"a":1}', '{"a":1} ', '{"a":1}x', "",
                                      "\ufeff{}", "[1,2", '"\\ud800"', "NaN", "1e999"])
    def test_edge_cases(self, text: str) -> None:
        from alltoken._types import _loads

        assert _json_outcome(_loads, text) == _json_outcome(json.loads, text)


# -- the stream's chunk parser: parse_chunk, faster on the text chunks share --------------


def _outcome(parse: Any, text: str) -> tuple[str, str]:
    """What parsing *text* gives, as text that tells every difference apart: the typed
    objects' repr, and every ``raw`` as JSON (``1`` and ``1.0``, ``true`` and ``1``
    differ); or the error's type and message."""
    try:
        got = parse(text)
    except ProtocolError as exc:
        return "raises", f"{type(exc).__name__}: {exc}"
    if type(got) is ErrorInfo:
        return repr(got), json.dumps(got.raw)
    raws = [got.raw] + [x for c in got.choices for x in (c.raw, c.delta.raw)]
    return repr(got), json.dumps(raws)


def _same_as_parse_chunk(texts: list[str]) -> _ChunkParser:
    parser = _ChunkParser()
    for text in texts:
        assert _outcome(parser.parse, text) == _outcome(parse_chunk, text), text
    return parser


def _chunk_text(content: object, key: str = "content", **top: object) -> str:
    obj = {**CHUNK, **top}
    obj["choices"] = [{**CHUNK["choices"][0], "delta": {key: content}}]
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class TestChunkParser:
    """``_ChunkParser.parse`` is ``parse_chunk`` for every text; on the text a stream's
    chunks share, it decodes only the string that differs."""

    def test_a_stream_of_one_template_decodes_only_the_string(self) -> None:
        texts = [_chunk_text(t) for t in ["Hel", "lo", "", " \"q\" \\ \u00e9 \U0001f680", "\n"]]
        parser = _same_as_parse_chunk(texts)
        assert parser.learned == 1
        assert parser._hits == len(texts) - 1

    @pytest.mark.parametrize("colon", [":", ": ", " : ", ":\t", "\r\n:\n "])
    def test_whitespace_around_the_colon_is_json_too(self, colon: str) -> None:
        texts = [_chunk_text(t).replace('"content":', f'"content"{colon}') for t in "abc"]
        assert _same_as_parse_chunk(texts).learned == 1

    def test_reasoning_then_content_learns_each_shape(self) -> None:
        texts = ([_chunk_text(t, "reasoning_content") for t in "abc"]
                 + [_chunk_text(t) for t in "xyz"])
        assert _same_as_parse_chunk(texts).learned == 2

    @pytest.mark.parametrize("second", [
        # the varying string is not a string, or not one valid string
        _chunk_text(None), _chunk_text(5), _chunk_text(["x"]),
        _chunk_text("x").replace('"x"', '"a\tb"'),  # a raw control character
        _chunk_text("x").replace('"x"', '"a\\qb"'),  # an invalid escape
        _chunk_text("x").replace('"x"', '"a" "b"'),  # two strings
        _chunk_text("x").replace('"x"', '"a"+"b"'),
        _chunk_text("x").replace('"x"', '"ab'),  # unterminated
        _chunk_text("x").replace('"x"', '"a\\"'),
        _chunk_text("x").replace('"x"', '"a"   '),  # whitespace, then the suffix
        _chunk_text("x")[:-1], _chunk_text("x") + " ", _chunk_text("x") + "x",
        # the same prefix and suffix around something that is no string at all
        _chunk_text("x").replace('"x"', '"a","b":"c"'),
        _chunk_text("x").replace('"x"', '"a"},"role":{"x":"'),
    ])
    def test_text_that_only_looks_like_the_template_is_parsed_in_full(
            self, second: str) -> None:
        _same_as_parse_chunk([_chunk_text("first"), _chunk_text("again"), second,
                              _chunk_text("after")])

    @pytest.mark.parametrize("first", [
        # the key written another way, or found where it is not the delta's string
        _chunk_text("a").replace('"content":"a"', '"\\u0063ontent":"a"'),
        _chunk_text("a", model='"content":"'),
        _chunk_text("a").replace('"index":0', '"x":{"content":"a"},"index":0'),
        _chunk_text("a").replace('{"index":0', '{"index":0,"meta":"\\"content\\":\\"a"'),
        _chunk_text("a").replace('"delta":{', '"delta":{"content":"z",'),  # a duplicate key
        _chunk_text("a").replace('"delta":{"content":"a"}',
                                 '"delta":{"content":"a"},"delta":{"content":"a"}'),
        _chunk_text("a").replace('"choices":', '"choices":[],"choices":'),
        _chunk_text("a", usage={"prompt_tokens": 1}),  # a nested value
        _chunk_text("a").replace('"logprobs":null', '"logprobs":{"content":[]}'),
        _chunk_text("a", x=float("nan")),
        _chunk_text("a", error=None),
    ])
    def test_a_template_is_kept_only_where_the_string_is_proved_the_deltas(
            self, first: str) -> None:
        variants = [first.replace('"a"', f'"{t}"', 1) for t in ("b", "c", "d")]
        _same_as_parse_chunk([first, *variants, first])

    def test_the_key_elsewhere_with_the_same_text_is_told_apart(self) -> None:
        # The first '"content":"' is a top-level field's, and its string equals the
        # delta's: only the proof (another string in its place) shows it is not the
        # delta's.
        first = '{"content":"a","choices":[{"index":0,"delta":{"content" :"a"}}]}'
        parser = _same_as_parse_chunk([first, first.replace('"a"', '"b"', 1), first])
        assert parser.learned == 0

    def test_a_duplicate_key_is_told_apart(self) -> None:
        first = '{"choices":[{"index":0,"delta":{"content":"z","content":"a"}}]}'
        parser = _same_as_parse_chunk([first, first.replace('"z"', '"y"'), first])
        assert parser.learned == 0

    def test_chunks_share_no_mutable_object(self) -> None:
        parser = _ChunkParser()
        first = parser.parse(_chunk_text("a"))
        second = parser.parse(_chunk_text("b"))
        assert isinstance(first, ChatCompletionChunk) and isinstance(second, ChatCompletionChunk)
        assert parser._hits == 1
        for chunk in (first, second):  # a caller changes what it was given
            chunk.raw["id"] = "changed"
            chunk.raw["choices"][0]["index"] = 9
            chunk.choices[0].raw["finish_reason"] = "changed"
            chunk.choices[0].delta.raw["content"] = "changed"
            chunk.id = "changed"
            chunk.choices.append(chunk.choices[0])
        _same_as_parse_chunk([_chunk_text(t) for t in "cde"])
        third = parser.parse(_chunk_text("c"))
        assert parser._hits == 2
        assert _outcome(lambda _: third, "") == _outcome(parse_chunk, _chunk_text("c"))

    def test_chunks_that_never_repeat_their_text_learn_ever_more_rarely(self) -> None:
        texts = [_chunk_text(str(i), nonce=f"n{i}") for i in range(1000)]
        parser = _same_as_parse_chunk(texts)
        # Waits of 1, 2, 4 ... 64 chunks, then 64: about 20 templates in 1,000 chunks.
        assert 10 <= parser.learned <= 25

    def test_a_template_that_stops_matching_is_replaced_at_once(self) -> None:
        texts = ([_chunk_text(t, nonce="n1") for t in "abcd"]
                 + [_chunk_text(t, nonce="n2") for t in "efgh"])
        parser = _same_as_parse_chunk(texts)
        assert parser.learned == 2 and parser._hits == 3

    def test_a_template_that_matches_ends_the_waiting(self) -> None:
        never = [_chunk_text(str(i), nonce=f"n{i}") for i in range(200)]
        texts = (never  # waits grow to 64 chunks
                 + [_chunk_text(str(i), nonce="one") for i in range(80)]  # learned, matched
                 + never[:3]  # a template that matches nothing: wait 1 chunk, not 64
                 + [_chunk_text(t, nonce="two") for t in "abcdef"])
        parser = _same_as_parse_chunk(texts)
        assert parser._hits == 5

    def test_errors_and_other_chunks_between_template_chunks(self) -> None:
        texts = [_chunk_text("a"), _chunk_text("b"),
                 '{"error":{"message":"Rate limit exceeded","type":"rate_limit_error"}}',
                 _chunk_text("c"), json.dumps(chunk_with_delta({"role": "assistant"})),
                 "not json", "[1]", _chunk_text("d"), _chunk_text("e")]
        _same_as_parse_chunk(texts)

    _strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8) | st.sampled_from(
        ["", '"', "\\", "\n", "\u2028", "\U0001f680", "\x00"])
    _scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _strings

    @given(
        top=st.fixed_dictionaries(
            {"id": _strings, "created": st.integers(0, 2**40)},
            optional={"model": _strings, "x": _scalars, "usage": st.none(),
                      "error": st.none(), "object": _scalars})
        | st.dictionaries(st.sampled_from(["id", "model", "created", "object", "x",
                                           "system_fingerprint", "usage", "error"]),
                          _scalars | st.lists(_scalars, max_size=2), max_size=4),
        choice=st.dictionaries(st.sampled_from(["index", "finish_reason", "logprobs", "y"]),
                               _scalars, max_size=3),
        key=st.sampled_from(["content", "content", "reasoning_content", "reasoning", "role"]),
        contents=st.lists(_strings, min_size=1, max_size=6) | st.lists(_scalars, max_size=3),
        ascii=st.booleans(),
        seps=st.sampled_from([(",", ":"), (",", ":"), (", ", ":"), (",", ": ")]),
        edits=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 400), _strings),
                       max_size=2) | st.just([]),
    )
    def test_any_stream_of_chunk_texts_parses_as_parse_chunk_parses_it(
            self, top: dict[str, Any], choice: dict[str, Any], key: str,
            contents: list[Any], ascii: bool, seps: tuple[str, str],
            edits: list[tuple[int, int, str]]) -> None:
        texts = []
        for content in contents:
            obj = {**top, "choices": [{**choice, "delta": {key: content}}]}
            texts.append(json.dumps(obj, separators=seps, ensure_ascii=ascii))
        for which, at, insert in edits:  # text that is not quite the template
            if which < len(texts):
                texts[which] = texts[which][:at] + insert + texts[which][at:]
        _same_as_parse_chunk(texts + texts)

    @given(contents=st.lists(st.text(), min_size=1, max_size=8),
           key=st.sampled_from(["content", "reasoning_content"]), ascii=st.booleans())
    def test_any_strings_in_the_template_are_read_as_parse_chunk_reads_them(
            self, contents: list[str], key: str, ascii: bool) -> None:
        texts = [json.dumps({**CHUNK, "choices": [{**CHUNK["choices"][0], "delta": {key: c}}]},
                            separators=(",", ":"), ensure_ascii=ascii) for c in contents]
        parser = _same_as_parse_chunk(texts + texts)
        assert (parser.learned, parser._hits) == (1, 2 * len(texts) - 1)
