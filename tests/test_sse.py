"""``alltoken.sse``: the WHATWG event-stream interpretation rules, example by example,
and hypothesis properties (split invariance, round trip, a per-character reference,
only ``ProtocolError`` on arbitrary bytes).

Every example is fed whole, one byte at a time, and with its last line held back, via
:func:`decode_all_ways`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alltoken import ProtocolError
from alltoken.sse import Comment, DecoderState, ServerSentEvent, SSEDecoder, encode

Item = object


def feed_chunks(chunks: list[bytes], **kw: int) -> tuple[list[Item], SSEDecoder]:
    d = SSEDecoder(**kw)
    out: list[Item] = []
    for c in chunks:
        out += d.feed(c)
    out += d.end()
    return out, d


def decode_all_ways(stream: bytes) -> list[Item]:
    """Decode *stream* whole, byte by byte, and split before its last byte; all three
    must agree (and agree on last_event_id and retry)."""
    whole, d1 = feed_chunks([stream])
    bytewise, d2 = feed_chunks([stream[i : i + 1] for i in range(len(stream))])
    held, d3 = feed_chunks([stream[:-1], stream[-1:]])
    assert whole == bytewise == held
    assert d1.last_event_id == d2.last_event_id == d3.last_event_id
    assert d1.retry == d2.retry == d3.retry
    return whole


def ev(data: str, event: str = "message", id: str = "") -> ServerSentEvent:
    return ServerSentEvent(data, event, id)


class TestLineEndings:
    @pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
    def test_each_line_ending_ends_a_line(self, eol: bytes) -> None:
        stream = b"data: a" + eol + eol + b"data: b" + eol + eol
        assert decode_all_ways(stream) == [ev("a"), ev("b")]

    def test_mixed_line_endings_in_one_stream(self) -> None:
        assert decode_all_ways(b"data: a\r\n\ndata: b\r\rdata: c\n\r\n") == [
            ev("a"), ev("b"), ev("c")]

    def test_cr_at_chunk_end_then_lf_is_one_line_ending(self) -> None:
        d = SSEDecoder()
        assert d.feed(b"data: x\r") == []
        assert d.feed(b"\n") == []  # the LF completes CRLF: no blank line yet
        assert d.feed(b"\r\n") == [ev("x")]

    def test_cr_then_cr_is_two_line_endings(self) -> None:
        d = SSEDecoder()
        assert d.feed(b"data: x\r") == []
        assert d.feed(b"\r") == [ev("x")]

    def test_lf_after_a_cr_that_was_not_the_last_byte_fed_is_its_own_line_ending(self) -> None:
        d = SSEDecoder()
        assert d.feed(b"data: x\rdata: y") == []
        assert d.feed(b"\n\n") == [ev("x\ny")]


class TestDecoding:
    def test_invalid_utf8_becomes_replacement_characters(self) -> None:
        assert decode_all_ways(b"data: a\xffb\xe2\x82\n\n") == [ev("a\ufffdb\ufffd")]

    def test_multibyte_character_split_across_feeds_decodes_whole(self) -> None:
        euro = "€".encode()
        d = SSEDecoder()
        out = d.feed(b"data: " + euro[:1]) + d.feed(euro[1:2]) + d.feed(euro[2:] + b"\n\n")
        assert out == [ev("€")]

    def test_one_leading_bom_is_dropped(self) -> None:
        assert decode_all_ways(b"\xef\xbb\xbfdata: a\n\n") == [ev("a")]

    def test_a_second_bom_is_kept(self) -> None:
        # The second BOM starts the first line's name, so it is an unknown field.
        assert decode_all_ways(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []

    def test_bom_split_across_feeds_is_still_dropped(self) -> None:
        d = SSEDecoder()
        out = d.feed(b"\xef") + d.feed(b"\xbb") + d.feed(b"\xbfdata: a\n\n")
        assert out == [ev("a")]

    def test_bom_later_in_the_stream_is_data(self) -> None:
        assert decode_all_ways(b"data: \xef\xbb\xbfa\n\n") == [ev("\ufeffa")]


class TestFields:
    def test_one_leading_space_is_removed_from_the_value(self) -> None:
        assert decode_all_ways(b"data:  two\n\ndata:none\n\n") == [ev(" two"), ev("none")]

    def test_spec_example_data_test_with_and_without_space(self) -> None:
        # WHATWG: "data:test" and "data: test" are the same event.
        assert decode_all_ways(b"data:test\n\ndata: test\n\n") == [ev("test"), ev("test")]

    def test_line_without_colon_is_a_field_with_empty_value(self) -> None:
        assert decode_all_ways(b"data\n\n") == [ev("")]

    def test_data_lines_are_joined_with_lf(self) -> None:
        assert decode_all_ways(b"data: a\ndata\ndata: c\n\n") == [ev("a\n\nc")]

    def test_spec_example_stock(self) -> None:
        stream = b"data: YHOO\ndata: +2\ndata: 10\n\n"
        assert decode_all_ways(stream) == [ev("YHOO\n+2\n10")]

    def test_spec_example_first_and_second_event(self) -> None:
        stream = (b": test stream\n\ndata: first event\nid: 1\n\n"
                  b"data:second event\nid\n\ndata:  third event\n\n")
        assert decode_all_ways(stream) == [
            Comment("test stream"), ev("first event", id="1"), ev("second event"),
            ev(" third event")]

    def test_event_type_is_set_and_reset_after_dispatch(self) -> None:
        assert decode_all_ways(b"event: add\ndata: 1\n\ndata: 2\n\n") == [
            ev("1", "add"), ev("2")]

    def test_empty_event_type_means_message(self) -> None:
        assert decode_all_ways(b"event:\ndata: x\n\n") == [ev("x")]

    def test_unknown_fields_are_ignored(self) -> None:
        assert decode_all_ways(b"foo: bar\ndata: x\nDATA: y\n\n") == [ev("x")]

    def test_id_persists_across_events(self) -> None:
        out = decode_all_ways(b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n")
        assert out == [ev("a", id="7"), ev("b", id="7"), ev("c")]

    def test_id_containing_nul_is_ignored(self) -> None:
        assert decode_all_ways(b"id: 1\n\nid: 2\x003\ndata: x\n\n") == [ev("x", id="1")]

    @pytest.mark.parametrize(("value", "expected"), [
        (b"1500", 1500), (b"0", 0), (b"007", 7)])
    def test_retry_with_ascii_digits_is_set(self, value: bytes, expected: int) -> None:
        _, d = feed_chunks([b"retry: " + value + b"\n"])
        assert d.retry == expected

    @pytest.mark.parametrize("value", [
        b"+5", b" 5", b"5ms", b"", b"-1", b"1.5", "\uff15".encode(), "\u00b2".encode()])
    def test_retry_without_only_ascii_digits_is_ignored(self, value: bytes) -> None:
        _, d = feed_chunks([b"retry: 10\nretry: " + value + b"\n"])
        assert d.retry == 10


class TestComments:
    def test_comment_loses_one_leading_space(self) -> None:
        assert decode_all_ways(b":  x\n:y\n:\n") == [Comment(" x"), Comment("y"), Comment("")]

    def test_cost_trailer_comment(self) -> None:
        line = b': {"cost":"0.0012","prompt_tokens":15}\n'
        assert decode_all_ways(b"data: [DONE]\n\n" + line) == [
            ev("[DONE]"), Comment('{"cost":"0.0012","prompt_tokens":15}')]

    def test_comments_do_not_interrupt_an_event(self) -> None:
        assert decode_all_ways(b"data: a\n: ping\ndata: b\n\n") == [Comment("ping"), ev("a\nb")]


class TestDispatch:
    def test_blank_line_with_empty_data_dispatches_nothing_but_sets_last_event_id(self) -> None:
        d = SSEDecoder()
        assert d.feed(b"id: 42\n") == []
        assert d.last_event_id == ""  # set at the dispatch point, not before
        assert d.feed(b"\n") == []
        assert d.last_event_id == "42"

    def test_event_type_alone_is_not_dispatched(self) -> None:
        assert decode_all_ways(b"event: x\n\ndata: y\n\n") == [ev("y")]

    def test_event_is_returned_by_the_feed_that_completes_it(self) -> None:
        d = SSEDecoder()
        assert d.feed(b"data: a\n") == []
        assert d.feed(b"\n") == [ev("a")]

    def test_event_ended_by_cr_last_byte_is_returned_at_once(self) -> None:
        d = SSEDecoder()
        assert d.feed(b"data: a\r\r") == [ev("a")]

    def test_comment_is_returned_by_the_feed_that_completes_it(self) -> None:
        d = SSEDecoder()
        assert d.feed(b": keep-alive") == []
        assert d.feed(b"\n") == [Comment("keep-alive")]


class TestEnd:
    def test_incomplete_event_is_discarded_at_end(self) -> None:
        d = SSEDecoder()
        assert d.feed(b"data: a\n") == []
        assert d.end() == []

    def test_incomplete_line_is_discarded_at_end(self) -> None:
        assert decode_all_ways(b"data: a\n\ndata: b") == [ev("a")]

    def test_final_unterminated_comment_is_returned_by_end(self) -> None:
        d = SSEDecoder()
        assert d.feed(b'data: [DONE]\n\n: {"cost":"1"}') == [ev("[DONE]")]
        assert d.end() == [Comment('{"cost":"1"}')]

    def test_end_resets_for_a_new_stream_but_keeps_id_and_retry(self) -> None:
        d = SSEDecoder()
        d.feed(b"id: 9\nretry: 5\n\nid: 10\nevent: x\ndata: lost\n")
        assert d.end() == []  # the pending event, and its id, are discarded
        assert d.feed(b"\xef\xbb\xbfdata: new\n\n") == [ev("new", id="9")]
        assert d.retry == 5


class TestLimits:
    def test_over_long_complete_line_raises(self) -> None:
        with pytest.raises(ProtocolError, match="max_line_bytes"):
            SSEDecoder(max_line_bytes=8).feed(b"data: 123456789\n\n")

    def test_over_long_incomplete_line_raises_as_it_grows(self) -> None:
        d = SSEDecoder(max_line_bytes=8)
        d.feed(b"data")
        with pytest.raises(ProtocolError):
            d.feed(b": 12345")

    def test_line_at_the_limit_is_fine(self) -> None:
        assert SSEDecoder(max_line_bytes=7).feed(b"data: x\n\n") == [ev("x")]

    def test_cr_only_lines_are_measured_one_by_one(self) -> None:
        stream = b"data: x\r" * 50 + b"\r"
        decoder = SSEDecoder(max_line_bytes=8, max_event_bytes=1000)
        assert decoder.feed(stream) == [ev("\n".join(["x"] * 50))]

    def test_too_much_data_in_one_event_raises(self) -> None:
        d = SSEDecoder(max_line_bytes=12, max_event_bytes=20)
        with pytest.raises(ProtocolError, match="max_event_bytes"):
            d.feed(b"data: 12345\n" * 5)

    def test_after_an_error_every_call_raises(self) -> None:
        d = SSEDecoder(max_line_bytes=4)
        with pytest.raises(ProtocolError):
            d.feed(b"data: toolong\n")
        assert d.state is DecoderState.ERROR
        with pytest.raises(ProtocolError):
            d.feed(b"\n")
        with pytest.raises(ProtocolError):
            d.end()

    @pytest.mark.parametrize(("kw", "exc"), [
        ({"max_line_bytes": 0}, ValueError), ({"max_line_bytes": "1"}, TypeError),
        ({"max_line_bytes": True}, TypeError),
        ({"max_line_bytes": 10, "max_event_bytes": 5}, ValueError)])
    def test_constructor_validates_limits(self, kw: dict[str, object], exc: type) -> None:
        with pytest.raises(exc):
            SSEDecoder(**kw)  # type: ignore[arg-type]

    def test_accepts_bytearray_and_memoryview(self) -> None:
        d = SSEDecoder()
        assert d.feed(bytearray(b"data: a\n")) + d.feed(memoryview(b"\n")) == [ev("a")]

    def test_large_event_fed_one_byte_at_a_time(self) -> None:
        # Linear, not quadratic: 256 KiB byte by byte finishes in well under a second
        # (the benchmark measures the rate; this guards the result).
        payload = b"x" * (256 * 1024)
        d = SSEDecoder()
        out: list[Item] = []
        for i in range(len(payload)):
            out += d.feed(payload[i : i + 1])
        out += d.feed(b"\n\n")
        assert out == [] and d.state is DecoderState.OPEN  # "x..." is an unknown field
        d2 = SSEDecoder()
        stream = b"data: " + payload + b"\n\n"
        out = []
        for i in range(len(stream)):
            out += d2.feed(stream[i : i + 1])
        assert out == [ev(payload.decode())]


class TestEncode:
    def test_event_with_all_fields(self) -> None:
        wire = encode(ServerSentEvent("a\nb", "add", "7"), retry=100)
        assert wire == b"event: add\nid: 7\nretry: 100\ndata: a\ndata: b\n\n"

    def test_comment(self) -> None:
        assert encode(Comment("ping")) == b": ping\n"
        assert encode(Comment("")) == b":\n"

    @pytest.mark.parametrize("item", [
        ServerSentEvent("a\rb"), ServerSentEvent("x", "a\nb"), ServerSentEvent("x", id="a\nb"),
        ServerSentEvent("x", id="a\x00"), Comment("a\nb")])
    def test_unrepresentable_values_are_rejected(self, item: object) -> None:
        with pytest.raises(ValueError):
            encode(item)  # type: ignore[arg-type]

    def test_negative_retry_is_rejected(self) -> None:
        with pytest.raises(ValueError):
            encode(ServerSentEvent("x"), retry=-1)


def test_sse_module_imports_no_io() -> None:
    source = (Path(__file__).resolve().parent.parent / "alltoken" / "sse.py").read_text()
    forbidden = {"socket", "ssl", "http", "threading", "json", "time", "asyncio", "select"}
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & forbidden, imported & forbidden


# -- a per-character reference, written to be obviously correct -----------------------


def reference(stream: bytes) -> tuple[list[Item], str, Optional[int]]:
    """The spec's algorithm, literally: decode, drop one BOM, walk characters."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\r":
            lines.append("".join(current))
            current = []
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
        elif c == "\n":
            lines.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    out: list[Item] = []
    data = ""
    event_type = ""
    id_buffer = ""
    last_event_id = ""
    retry: Optional[int] = None
    for line in lines:
        if line == "":
            last_event_id = id_buffer
            if data == "":
                event_type = ""
                continue
            if data.endswith("\n"):
                data = data[:-1]
            out.append(ServerSentEvent(data, event_type or "message", id_buffer))
            data = ""
            event_type = ""
        elif line.startswith(":"):
            body = line[1:]
            out.append(Comment(body[1:] if body.startswith(" ") else body))
        else:
            if ":" in line:
                name, value = line.split(":", 1)
                if value.startswith(" "):
                    value = value[1:]
            else:
                name, value = line, ""
            if name == "data":
                data += value + "\n"
            elif name == "event":
                event_type = value
            elif name == "id":
                if "\x00" not in value:
                    id_buffer = value
            elif name == "retry":
                if value != "" and all(ch in "0123456789" for ch in value):
                    retry = int(value)
    tail = "".join(current)
    if tail.startswith(":"):  # the one extension: a final unterminated comment
        body = tail[1:]
        out.append(Comment(body[1:] if body.startswith(" ") else body))
    return out, last_event_id, retry


ATOMS = [b"data: ", b"data:", b"data", b"event: ", b"event:x", b"id: ", b"id: 1",
         b"id:\x00", b"retry: ", b"retry: 12", b"retry:+1", b": ", b":", b"\n", b"\r",
         b"\r\n", b"\n\n", b"\r\n\r\n", b"x", b'{"a":1}', b"\xef\xbb\xbf", b"\xe2\x82",
         b"\xac", b"\xff", b" ", b"7", b"foo: bar", b"\xf0\x9f\x98", b"\x80", b"\x00",
         b"data: [DONE]", "é中".encode()]

streams = st.lists(st.sampled_from(ATOMS), max_size=40).map(b"".join)


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    pieces, prev = [], 0
    for c in [*cuts, len(data)]:
        pieces.append(data[prev:c])
        prev = c
    return pieces


def decode_outcome(chunks: list[bytes], **kw: int) -> object:
    try:
        out, d = feed_chunks(chunks, **kw)
    except ProtocolError:
        return "ProtocolError"
    return out, d.last_event_id, d.retry


class TestProperties:
    @given(st.data(), streams)
    def test_result_never_depends_on_the_split(self, data: st.DataObject,
                                               stream: bytes) -> None:
        chunks = data.draw(splits(stream))
        assert decode_outcome(chunks) == decode_outcome([stream])
        assert decode_outcome([stream[i : i + 1] for i in range(len(stream))]) == \
            decode_outcome([stream])

    @given(st.data(), streams, st.integers(1, 12))
    def test_limit_errors_never_depend_on_the_split(self, data: st.DataObject, stream: bytes,
                                                    limit: int) -> None:
        chunks = data.draw(splits(stream))
        assert decode_outcome(chunks, max_line_bytes=limit) == \
            decode_outcome([stream], max_line_bytes=limit)

    @given(st.data(), streams)
    def test_agrees_with_the_per_character_reference(self, data: st.DataObject,
                                                     stream: bytes) -> None:
        chunks = data.draw(splits(stream))
        assert decode_outcome(chunks) == reference(stream)

    @given(st.data(), st.binary(max_size=300))
    def test_arbitrary_bytes_raise_nothing_but_protocol_error(self, data: st.DataObject,
                                                              blob: bytes) -> None:
        chunks = data.draw(splits(blob))
        for limit in (4, 64, 1 << 20):
            try:
                feed_chunks(chunks, max_line_bytes=limit)
            except ProtocolError:
                pass

    line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                        max_size=20)

    @given(st.lists(st.tuples(
        st.lists(line_text, min_size=1, max_size=3).map("\n".join),
        st.sampled_from(["message", "add", "update"]),
        st.one_of(st.just(""), line_text.filter(lambda s: "\x00" not in s)),
    ), max_size=8), st.sampled_from(["\n", "\r\n", "\r"]), st.data())
    def test_encode_then_decode_round_trips(self, specs: list[tuple[str, str, str]], eol: str,
                                            data: st.DataObject) -> None:
        events = []
        current_id = ""
        for body, etype, id_ in specs:
            if id_:
                current_id = id_  # encode omits empty ids; the last one persists
            events.append(ServerSentEvent(body, etype, current_id))
        wire = b"".join(encode(ServerSentEvent(b, t, i), eol=eol) for b, t, i in specs)
        out, _ = feed_chunks(data.draw(splits(wire)))
        assert out == events

    @given(line_text)
    def test_comments_round_trip(self, text: str) -> None:
        assert SSEDecoder().feed(encode(Comment(text))) == [Comment(text)]
