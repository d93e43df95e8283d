"""``alltoken.sse``: the WHATWG "event stream interpretation" rules, one class per rule,
examples and hypothesis properties side by side.

Every example goes through :func:`tr` (after h11's ``tests/test_io.py``): it is fed
whole, one byte at a time, and followed by a partial line the stream never finishes; all
three must give the expected items, and so must :func:`reference`, a per-character
transcription of the spec written to be obviously correct. The properties then check the
decoder against that reference on generated streams, split at arbitrary points.
"""

from __future__ import annotations

import ast
import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alltoken import ProtocolError
from alltoken.sse import (
    DEFAULT_MAX_LINE_BYTES,
    Comment,
    DecoderState,
    ServerSentEvent,
    SSEDecoder,
    encode,
)

Item = Union[ServerSentEvent, Comment]
#: What decoding a whole stream comes to: the items, ``last_event_id`` and ``retry``
#: afterwards, or the string "ProtocolError".
Outcome = Union[tuple[list[Item], str, Optional[int]], str]

BOM = b"\xef\xbb\xbf"
#: Appended to a stream that ends with a line ending: an incomplete line that ``end()``
#: must discard without changing anything the stream already produced.
PARTIAL = b"data: par"


def ev(data: str, event: str = "message", id: str = "") -> ServerSentEvent:
    return ServerSentEvent(data, event, id)


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def decode(chunks: list[bytes], **limits: int) -> tuple[list[Item], SSEDecoder]:
    """Feed *chunks* to a new decoder, then end the stream."""
    decoder = SSEDecoder(**limits)
    out: list[Item] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    out += decoder.end()
    return out, decoder


def outcome(chunks: list[bytes], **limits: int) -> Outcome:
    try:
        out, decoder = decode(chunks, **limits)
    except ProtocolError:
        return "ProtocolError"
    return out, decoder.last_event_id, decoder.retry


def tr(stream: bytes, expected: list[Item]) -> SSEDecoder:
    """Check that *stream* decodes to *expected* fed whole, byte by byte, and followed by
    a partial line; and that the reference agrees. Returns the decoder fed whole."""
    whole, decoder = decode([stream])
    assert whole == expected
    one_by_one, other = decode(bytewise(stream))
    assert one_by_one == expected
    assert (other.last_event_id, other.retry) == (decoder.last_event_id, decoder.retry)
    assert reference(stream) == (expected, decoder.last_event_id, decoder.retry)
    assert decoder.unterminated_line == other.unterminated_line == unterminated(stream)
    if stream.endswith((b"\n", b"\r")):
        # Prompt: every item of a stream that ends with a line ending comes from feed().
        trailing = SSEDecoder()
        assert trailing.feed(stream + PARTIAL) == expected
        assert trailing.end() == []
        assert trailing.unterminated_line == PARTIAL.decode()
        assert (trailing.last_event_id, trailing.retry) == (decoder.last_event_id, decoder.retry)
    return decoder


# -- the per-character reference ------------------------------------------------------


def reference(
    stream: bytes,
    *,
    end: bool = True,
    max_line_bytes: Optional[int] = None,
    max_event_bytes: Optional[int] = None,
) -> Outcome:
    """The spec's algorithm, literally, on a whole stream.

    Decode with replacement, drop one leading BOM, walk the characters collecting lines
    (CRLF, LF or CR ends one), then apply the spec's steps to each line. The incomplete
    last line is never interpreted, a comment included ("any pending data must be
    discarded"): the result is what a decoder must have returned once it has been fed
    *stream*, and also once it has been ended. (*end* is kept for the callers that say
    which they mean.)

    The limits, when given, are the decoder's: a line (without its ending, and without
    a leading BOM) longer than *max_line_bytes* bytes, or an event whose data buffer
    (values plus one LF each) grows past *max_event_bytes* characters, is a
    ``ProtocolError``.
    """
    raw = stream[len(BOM) :] if stream.startswith(BOM) else stream
    if max_line_bytes is not None:
        length = 0
        for byte in raw:
            if byte in (0x0A, 0x0D):
                length = 0
            else:
                length += 1
                if length > max_line_bytes:
                    return "ProtocolError"
    if max_event_bytes is None and max_line_bytes is not None:
        max_event_bytes = 4 * max_line_bytes

    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\r":
            lines.append(current)
            current = ""
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
        elif c == "\n":
            lines.append(current)
            current = ""
        else:
            current += c
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
            out.append(ServerSentEvent(data, event_type if event_type else "message",
                                       id_buffer))
            data = ""
            event_type = ""
        elif line.startswith(":"):
            comment = line[1:]
            out.append(Comment(comment[1:] if comment.startswith(" ") else comment))
        else:
            if ":" in line:
                name = line[: line.index(":")]
                value = line[line.index(":") + 1 :]
                if value.startswith(" "):
                    value = value[1:]
            else:
                name = line
                value = ""
            if name == "data":
                data = data + value + "\n"
                if max_event_bytes is not None and len(data) > max_event_bytes:
                    return "ProtocolError"
            elif name == "event":
                event_type = value
            elif name == "id":
                if "\x00" not in value:
                    id_buffer = value
            elif name == "retry":
                if value != "" and all(ch in "0123456789" for ch in value):
                    retry = int(value)
    return out, last_event_id, retry


def unterminated(stream: bytes) -> str:
    """What ``SSEDecoder.unterminated_line`` must hold once *stream* has been ended: the
    decoded text after the last line ending, without a leading BOM."""
    raw = stream[len(BOM) :] if stream.startswith(BOM) else stream
    last = max(raw.rfind(b"\n"), raw.rfind(b"\r"))
    return raw[last + 1 :].decode("utf-8", "replace")


# -- strategies -----------------------------------------------------------------------

#: Pieces of streams: fields (well-formed and not), comments, every line ending, BOMs,
#: NULs, multibyte characters whole and cut, invalid UTF-8.
ATOMS = [
    b"data: ", b"data:", b"data", b"data:  x", b"Data: x", b"event: ", b"event:x", b"event",
    b"id: ", b"id: 1", b"id:\x00", b"id", b"retry: ", b"retry: 12", b"retry:+1",
    b"retry:  5", b"retry: \xef\xbc\x95", b"retry: \xc2\xb2", b"retry", b": ", b":", b":x",
    b"\n", b"\r", b"\r\n", b"\n\n", b"\r\n\r\n", b"\r\r", b"x", b" ", b"\t", b"7",
    b'{"a":1}', b"foo: bar", b"data: [DONE]", BOM, b"\xef\xbb", b"\xbf", b"\xe2\x82",
    b"\xac", b"\xf0\x9f\x98", b"\x80", b"\xff", b"\xc0", b"\xed\xa0\x80", b"\x00",
    "é中😀".encode(), b"data: a\n\n", b"data: b\r\n\r\n", b"\n\ndata: ", b"\r\n\r\ndata: ",
]

atoms = st.one_of(
    st.sampled_from(ATOMS),
    st.binary(max_size=3),
    st.text(max_size=3).map(lambda s: s.encode("utf-8", "surrogatepass")),
)
#: Line starts and values for :func:`streams`.
PREFIXES = [b"data: ", b"data: ", b"data:", b"data", b"event: ", b"event:", b"id: ", b"id:",
            b"retry: ", b"retry:", b": ", b":", b"", b"foo: ", b"Data: ", BOM, BOM + b":"]
VALUES = [b"", b"x", b" x", b"7", b"12", b'{"a":1}', b"[DONE]", b"a:b", b"\x00", b"\xff",
          b"\xe2\x82", BOM, "é€😀".encode(), "\uff15".encode(), b"\r", b"x\ry", b"\n"]
EOLS = [b"\n", b"\r\n", b"\r"]


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Streams that are mostly lines of fields, comments and blank lines, with one line
    ending preferred (as real servers have), sprinkled with arbitrary atoms."""
    eol = draw(st.sampled_from(EOLS))
    parts = []
    if draw(st.booleans()):
        # The shape of a chat stream, which the decoder reads on a fast path: blocks of
        # one "data: " line and a blank line, with an odd line ending here and there.
        for _ in range(draw(st.integers(0, 8))):
            value = draw(st.one_of(st.sampled_from(VALUES), atoms))
            odd = draw(st.sampled_from([*EOLS, b"", eol, eol, eol, eol, eol, eol]))
            parts.append(b"data: " + value + odd + eol)
    for _ in range(draw(st.integers(0, 16))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            parts.append(draw(atoms))
        elif kind <= 2:
            parts.append(eol)  # a blank line, if the previous line ended
        else:
            line = draw(st.sampled_from(PREFIXES)) + draw(
                st.one_of(st.sampled_from(VALUES), st.binary(max_size=4)))
            if draw(st.integers(0, 5)) == 0:
                parts.append(line + draw(st.sampled_from([*EOLS, b""])))
            else:
                parts.append(line + eol)
    if draw(st.integers(0, 2)) == 0:  # an unterminated last line, for end()
        parts.append(draw(st.sampled_from(PREFIXES)) + draw(st.sampled_from(VALUES)))
    return b"".join(parts)


@st.composite
def line_limit_near_a_line(draw: st.DrawFn, stream: bytes) -> int:
    """A line limit at or just below the length of one of *stream*'s lines (at least 2:
    see :meth:`TestReference.test_agrees_with_the_reference_on_limits`)."""
    lines = stream.replace(b"\r", b"\n").split(b"\n")
    length = len(draw(st.sampled_from(lines)))
    return max(2, length - draw(st.integers(0, 1)))


line_limits = st.one_of(st.none(), st.integers(1, 16))


@st.composite
def splits(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    """*stream* cut at arbitrary points (empty pieces included), or byte by byte."""
    if draw(st.integers(0, 4)) == 0:
        return bytewise(stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    pieces, prev = [], 0
    for cut in [*cuts, len(stream)]:
        pieces.append(stream[prev:cut])
        prev = cut
    return pieces


def limits(line: Optional[int], event: Optional[int] = None) -> dict[str, int]:
    kw = {}
    if line is not None:
        kw["max_line_bytes"] = line
    if event is not None:
        kw["max_event_bytes"] = event
    return kw


line_text = st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)),
                    max_size=20)


# -- the rules, one class each --------------------------------------------------------


class TestUTF8Decoding:
    @pytest.mark.parametrize(("raw", "text"), [
        (b"a\xffb", "a\ufffdb"),
        (b"\xe2\x82", "\ufffd"),  # a sequence cut short: one U+FFFD for the whole of it
        (b"\xf0\x9f\x98x", "\ufffdx"),
        (b"\xc0\xaf", "\ufffd\ufffd"),  # an overlong encoding: neither byte can start one
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate
        (b"\xf4\x90\x80\x80", "\ufffd" * 4),  # beyond U+10FFFF
        (b"\x80\x80", "\ufffd\ufffd"),
    ])
    def test_invalid_utf8_becomes_replacement_characters(self, raw: bytes, text: str) -> None:
        tr(b"data: " + raw + b"\n\n", [ev(text)])

    def test_a_sequence_cut_short_by_a_line_ending_does_not_swallow_it(self) -> None:
        tr(b"data: \xe2\ndata: \xf0\x9f\r\n\r\n", [ev("\ufffd\n\ufffd")])

    @pytest.mark.parametrize("char", ["é", "€", "😀"])
    def test_multibyte_character_split_across_feeds_decodes_whole(self, char: str) -> None:
        raw = char.encode()
        for cut in range(1, len(raw)):
            decoder = SSEDecoder()
            out = decoder.feed(b"data: " + raw[:cut]) + decoder.feed(raw[cut:] + b"\n\n")
            assert out == [ev(char)]

    def test_invalid_utf8_in_a_field_name_makes_an_unknown_field(self) -> None:
        tr(b"dat\xe1: x\n\ndata: y\n\n", [ev("y")])

    def test_invalid_utf8_in_an_id_is_replaced_too(self) -> None:
        tr(b"id: \xff\ndata: x\n\n", [ev("x", id="\ufffd")])

    def test_nul_and_control_characters_in_data_are_kept(self) -> None:
        tr(b"data: a\x00b\x0bc\x1f\n\n", [ev("a\x00b\x0bc\x1f")])


class TestByteOrderMark:
    def test_one_leading_bom_is_dropped(self) -> None:
        tr(BOM + b"data: a\n\n", [ev("a")])

    def test_leading_bom_before_a_comment_is_dropped(self) -> None:
        tr(BOM + b": hi\n", [Comment("hi")])

    def test_leading_bom_alone_on_the_first_line_leaves_a_blank_line(self) -> None:
        tr(BOM + b"\r\ndata: a\r\n\r\n", [ev("a")])

    @pytest.mark.parametrize("cut", [1, 2, 3])
    def test_bom_split_across_feeds_is_still_dropped(self, cut: int) -> None:
        out, _ = decode([BOM[:cut], BOM[cut:] + b"data: a\n\n"])
        assert out == [ev("a")]

    def test_a_second_bom_is_kept(self) -> None:
        # The second BOM starts the first line's field name: an unknown field.
        tr(BOM + BOM + b"data: a\n\ndata: b\n\n", [ev("b")])

    def test_a_second_bom_in_a_value_is_kept(self) -> None:
        tr(BOM + b"data: " + BOM + b"a\n\n", [ev("\ufeffa")])

    def test_bom_after_the_first_line_is_not_dropped(self) -> None:
        tr(b": x\n" + BOM + b"data: a\n\ndata: b\n\n", [Comment("x"), ev("b")])
        tr(b"\n" + BOM + b"data: a\n\n", [])

    def test_bom_later_in_the_stream_stays_in_the_unterminated_line(self) -> None:
        assert tr(b"data: a\n\n" + BOM + b": x", [ev("a")]).unterminated_line == "\ufeff: x"

    def test_a_partial_bom_is_not_a_bom(self) -> None:
        tr(b"\xef\xbbdata: a\n\n", [])
        tr(b"\xef\xbb: a\n", [])


class TestLineEndings:
    @pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
    def test_each_line_ending_ends_a_line(self, eol: bytes) -> None:
        stream = b"data: a" + eol + b"data: b" + eol + eol + b": c" + eol
        tr(stream, [ev("a\nb"), Comment("c")])

    def test_mixed_line_endings_in_one_stream(self) -> None:
        tr(b"data: a\r\n\ndata: b\r\rdata: c\n\r\n", [ev("a"), ev("b"), ev("c")])

    def test_a_lone_cr_in_a_crlf_stream_ends_a_line(self) -> None:
        tr(b"data: a\rdata: b\r\n\r\ndata: c\rid: 1\r\n\r\n", [ev("a\nb"), ev("c", id="1")])

    def test_a_lone_lf_in_a_crlf_stream_ends_a_line(self) -> None:
        tr(b"data: a\ndata: b\r\n\r\ndata: c\nid: 1\r\n\r\n", [ev("a\nb"), ev("c", id="1")])

    def test_lf_then_cr_is_two_line_endings(self) -> None:
        tr(b"data: a\n\r", [ev("a")])

    def test_cr_at_chunk_end_then_lf_is_one_line_ending(self) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"data: x\r") == []
        assert decoder.feed(b"\n") == []  # the LF completes CRLF: no blank line yet
        assert decoder.feed(b"\r\n") == [ev("x")]

    def test_cr_then_cr_across_feeds_is_two_line_endings(self) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"data: x\r") == []
        assert decoder.feed(b"\r") == [ev("x")]

    def test_cr_then_empty_feed_then_lf_is_one_line_ending(self) -> None:
        decoder = SSEDecoder()
        out = decoder.feed(b"data: a\r") + decoder.feed(b"") + decoder.feed(b"\ndata: b\r\n\r\n")
        assert out == [ev("a\nb")]

    def test_lf_first_in_a_feed_after_a_cr_that_was_not_the_last_byte_is_a_line_ending(
        self,
    ) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"data: x\rdata: y") == []
        assert decoder.feed(b"\n\n") == [ev("x\ny")]
        # The same with the CR followed by a byte that is not a line ending at all.
        stream = b"\r\x80:\n:  : \n"
        assert SSEDecoder().feed(stream) == decode([stream[:3], stream[3:6], stream[6:]])[0] \
            == [Comment(" : ")]

    def test_crlf_cut_between_feeds_inside_an_event(self) -> None:
        out, _ = decode([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
        assert out == [ev("a\nb")]


class TestFieldParsing:
    def test_one_leading_space_is_removed_from_the_value(self) -> None:
        tr(b"data: one\n\ndata:  two\n\ndata:   three\n\n", [ev("one"), ev(" two"), ev("  three")])

    def test_spec_example_data_test_with_and_without_space_are_the_same(self) -> None:
        # WHATWG: "The following stream fires two identical events".
        tr(b"data:test\n\ndata: test\n\n", [ev("test"), ev("test")])

    def test_only_a_space_is_removed_not_a_tab(self) -> None:
        tr(b"data:\tx\n\n", [ev("\tx")])

    def test_the_value_is_everything_after_the_first_colon(self) -> None:
        tr(b"data: a: b:c\n\n", [ev("a: b:c")])

    def test_line_without_colon_is_a_field_with_empty_value(self) -> None:
        tr(b"data\n\n", [ev("")])

    def test_field_names_are_case_sensitive(self) -> None:
        tr(b"Data: x\nDATA: y\n\n", [])

    def test_space_before_the_colon_is_part_of_the_field_name(self) -> None:
        tr(b"data : x\n\n data: y\n\n", [])

    def test_unknown_fields_are_ignored(self) -> None:
        tr(b"foo: bar\ndata: x\nfoo\nretryx: 5\n\n", [ev("x")])


class TestComments:
    @pytest.mark.parametrize(("line", "text"), [
        (b": x", "x"), (b":x", "x"), (b":  x", " x"), (b":", ""), (b": ", ""),
        (b":a:b", "a:b"), (b":data: x", "data: x"),
    ])
    def test_comment_text_loses_one_leading_space(self, line: bytes, text: str) -> None:
        tr(line + b"\n", [Comment(text)])

    def test_comments_do_not_interrupt_an_event(self) -> None:
        tr(b"data: a\n: ping\ndata: b\n\n", [Comment("ping"), ev("a\nb")])

    def test_a_comment_dispatches_nothing(self) -> None:
        tr(b"id: 3\ndata: a\n: ping\n", [Comment("ping")])

    def test_cost_trailer_after_done(self) -> None:
        trailer = b': {"cost":"0.0012","prompt_tokens":15}\n'
        tr(b"data: [DONE]\n\n" + trailer,
           [ev("[DONE]"), Comment('{"cost":"0.0012","prompt_tokens":15}')])

    @given(line_text)
    def test_any_comment_line_comes_back_as_its_text(self, text: str) -> None:
        expected = text[1:] if text.startswith(" ") else text
        assert SSEDecoder().feed(b":" + text.encode() + b"\n") == [Comment(expected)]


class TestDataField:
    def test_data_with_empty_value_yields_an_event_with_empty_data(self) -> None:
        tr(b"data:\n\ndata\n\ndata: \n\n", [ev(""), ev(""), ev("")])

    def test_data_lines_are_joined_with_lf(self) -> None:
        tr(b"data: a\ndata\ndata: c\n\n", [ev("a\n\nc")])

    def test_an_empty_last_data_line_leaves_a_final_newline(self) -> None:
        tr(b"data: a\ndata\n\n", [ev("a\n")])

    def test_spec_example_stock(self) -> None:
        tr(b"data: YHOO\ndata: +2\ndata: 10\n\n", [ev("YHOO\n+2\n10")])

    def test_spec_example_empty_data_newline_data_and_an_undispatched_block(self) -> None:
        # WHATWG: "The first block fires events with the data set to the empty string ...
        # The middle block fires an event with the data set to a single newline
        # character. The last block is discarded because it is not followed by a blank
        # line."
        tr(b"data\n\ndata\ndata\n\ndata:", [ev(""), ev("\n")])


class TestEventField:
    def test_event_field_sets_the_type(self) -> None:
        tr(b"event: add\ndata: 1\n\n", [ev("1", "add")])

    def test_event_type_resets_after_dispatch(self) -> None:
        tr(b"event: add\ndata: 1\n\ndata: 2\n\n", [ev("1", "add"), ev("2")])

    def test_empty_event_type_means_message(self) -> None:
        tr(b"event:\ndata: x\n\nevent\ndata: y\n\n", [ev("x"), ev("y")])

    def test_the_last_event_field_of_a_block_wins(self) -> None:
        tr(b"event: a\ndata: x\nevent: b\n\n", [ev("x", "b")])

    def test_a_type_without_data_is_reset_by_the_blank_line(self) -> None:
        tr(b"event: lost\n\ndata: y\n\n", [ev("y")])

    def test_spec_example_typed_events(self) -> None:
        stream = (b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n"
                  b"event: add\ndata: 113411\n\n")
        tr(stream, [ev("73857293", "add"), ev("2153", "remove"), ev("113411", "add")])


class TestIdField:
    def test_id_sets_the_event_id(self) -> None:
        tr(b"id: 7\ndata: a\n\n", [ev("a", id="7")])

    def test_id_after_data_in_the_same_block_applies_to_that_event(self) -> None:
        tr(b"data: a\nid: 7\n\n", [ev("a", id="7")])

    def test_id_persists_across_events(self) -> None:
        tr(b"id: 7\ndata: a\n\ndata: b\n\n", [ev("a", id="7"), ev("b", id="7")])

    def test_empty_id_resets_it(self) -> None:
        tr(b"id: 7\ndata: a\n\nid\ndata: b\n\nid: 8\n\nid:\ndata: c\n\n",
           [ev("a", id="7"), ev("b"), ev("c")])

    def test_id_keeps_spaces_and_colons_after_the_first_space(self) -> None:
        tr(b"id:  a:b \ndata: x\n\n", [ev("x", id=" a:b ")])

    def test_id_containing_nul_is_ignored(self) -> None:
        decoder = tr(b"id: 1\n\nid: 2\x003\ndata: x\n\nid: \x00\ndata: y\n\n",
                     [ev("x", id="1"), ev("y", id="1")])
        assert decoder.last_event_id == "1"

    @given(line_text, line_text)
    def test_an_id_with_nul_anywhere_never_replaces_the_last_one(self, a: str, b: str) -> None:
        stream = b"id: 1\nid: " + (a + "\x00" + b).encode() + b"\ndata: x\n\n"
        assert SSEDecoder().feed(stream) == [ev("x", id="1")]


class TestRetryField:
    @pytest.mark.parametrize(("value", "expected"), [
        (b"1500", 1500), (b"0", 0), (b"007", 7), (b"9" * 30, int("9" * 30)),
    ])
    def test_retry_with_ascii_digits_is_set(self, value: bytes, expected: int) -> None:
        decoder = tr(b"retry: " + value + b"\n", [])
        assert decoder.retry == expected

    @pytest.mark.parametrize("value", [
        b"+5", b" 5", b"5ms", b"", b"-1", b"1.5", b"1 ", b"0x10", b"5\x00", b"1_000",
        "\uff15".encode(),  # FULLWIDTH DIGIT FIVE
        "\u00b2".encode(),  # SUPERSCRIPT TWO
        "\u0661".encode(),  # ARABIC-INDIC DIGIT ONE
    ])
    def test_retry_without_only_ascii_digits_is_ignored(self, value: bytes) -> None:
        # " 5" is "retry:  5" with one space removed.
        decoder = tr(b"retry: 10\nretry: " + value + b"\nretry\n", [])
        assert decoder.retry == 10

    def test_retry_dispatches_nothing_and_takes_effect_at_once(self) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"retry: 5\n") == []
        assert decoder.retry == 5
        assert decoder.feed(b"\n") == []

    def test_retry_in_an_event_never_dispatched_still_applies(self) -> None:
        decoder = tr(b"retry: 5\ndata: x\n", [])
        assert decoder.retry == 5

    def test_a_retry_too_long_to_convert_cheaply_is_ignored(self) -> None:
        # int() of n digits is quadratic in n (CPython caps it at 4300 digits); such a
        # value is no reconnection time anyway.
        decoder = SSEDecoder()
        decoder.feed(b"retry: 3\nretry: " + b"1" * 5000 + b"\n")
        assert decoder.retry == 3

    @given(st.text(st.sampled_from("0123456789 +-.x\u00b2\uff15\u0661\x00"), max_size=8))
    def test_retry_is_set_exactly_when_the_value_is_all_ascii_digits(self, value: str) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"retry: 1\nretry:" + value.encode() + b"\n")
        v = value[1:] if value.startswith(" ") else value
        valid = v != "" and all(c in "0123456789" for c in v)
        assert decoder.retry == (int(v) if valid else 1)


class TestDispatch:
    def test_blank_line_with_empty_data_dispatches_nothing_but_sets_last_event_id(self) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"id: 42\n") == []
        assert decoder.last_event_id == ""  # set at the dispatch point, not before
        assert decoder.feed(b"\n") == []
        assert decoder.last_event_id == "42"

    def test_blank_lines_in_a_row_dispatch_nothing(self) -> None:
        tr(b"\n\n\r\n\r\r", [])

    def test_last_event_id_follows_each_dispatch(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"id: 1\ndata: a\n\n")
        assert decoder.last_event_id == "1"
        decoder.feed(b"id\n")
        assert decoder.last_event_id == "1"
        decoder.feed(b"\n")
        assert decoder.last_event_id == ""

    def test_spec_example_comment_and_ids(self) -> None:
        # WHATWG: four blocks; the comment fires nothing, the second sets the last event
        # ID to "1", the third resets it to "", the last has data " third event".
        blocks = [b": test stream\n\n", b"data: first event\nid: 1\n\n",
                  b"data:second event\nid\n\n", b"data:  third event\n\n"]
        tr(b"".join(blocks), [Comment("test stream"), ev("first event", id="1"),
                              ev("second event"), ev(" third event")])
        decoder = SSEDecoder()
        ids = []
        for block in blocks:
            decoder.feed(block)
            ids.append(decoder.last_event_id)
        assert ids == ["", "1", "", ""]

    def test_the_last_event_needs_a_blank_line(self) -> None:
        # WHATWG: "the end of the stream is not enough to trigger the dispatch".
        tr(b"data: first\n\ndata: second\n", [ev("first")])


class TestPromptness:
    """An item comes back from the very ``feed`` call whose bytes complete it."""

    @pytest.mark.parametrize(("head", "last"), [
        (b"data: a\n", b"\n"), (b"data: a\r\n", b"\r"), (b"data: a\r", b"\r"),
        (b"data: a\n", b"\r"), (b"data: a", b"\n\n"), (b"data: a", b"\r\r"),
    ])
    def test_event_comes_back_from_the_feed_of_its_last_byte(self, head: bytes,
                                                             last: bytes) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(head) == []
        assert decoder.feed(last) == [ev("a")]

    def test_a_blank_line_ended_by_crlf_dispatches_at_its_cr(self) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"data: a\r\n\r") == [ev("a")]
        assert decoder.feed(b"\n") == []

    @pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
    def test_comment_comes_back_from_the_feed_of_its_line_ending(self, eol: bytes) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b": keep-alive") == []
        assert decoder.feed(eol[:1]) == [Comment("keep-alive")]
        assert decoder.feed(eol[1:]) == []

    def test_each_item_comes_back_from_the_byte_that_completes_it(self) -> None:
        stream = b": a\r\ndata: b\r\rdata: c\n\n"
        decoder = SSEDecoder()
        arrivals = [(i, item) for i, byte in enumerate(bytewise(stream))
                    for item in decoder.feed(byte)]
        assert arrivals == [(3, Comment("a")), (13, ev("b")), (22, ev("c"))]

    @given(st.data(), streams())
    def test_every_feed_returns_exactly_what_its_bytes_completed(self, data: st.DataObject,
                                                                 stream: bytes) -> None:
        decoder = SSEDecoder()
        got: list[Item] = []
        fed = b""
        for chunk in data.draw(splits(stream)):
            got += decoder.feed(chunk)
            fed += chunk
            assert (got, decoder.last_event_id, decoder.retry) == reference(fed, end=False)


class TestEnd:
    def test_incomplete_line_is_discarded(self) -> None:
        tr(b"data: a\n\ndata: b", [ev("a")])

    def test_undispatched_event_is_discarded_with_its_type_and_id(self) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b"id: 5\nevent: x\ndata: a\n") == []
        assert decoder.end() == []
        assert decoder.last_event_id == ""
        assert decoder.feed(b"data: b\n\n") == [ev("b")]

    def test_an_incomplete_field_line_takes_no_effect(self) -> None:
        decoder = tr(b"id: 1\n\nid: 2\nretry: 5", [])
        assert (decoder.last_event_id, decoder.retry) == ("1", None)

    @pytest.mark.parametrize(("tail", "text"), [
        (b': {"cost":"1"}', ': {"cost":"1"}'), (b":x", ":x"), (b":", ":"),
        (b": a\xe2\x82", ": a\ufffd"), (b"data: x", "data: x"), (b"", ""),
    ])
    def test_final_unterminated_line_is_discarded_but_kept_for_the_caller(
        self, tail: bytes, text: str,
    ) -> None:
        # A comment too: the spec discards any pending data at the end of the stream.
        decoder = SSEDecoder()
        assert decoder.feed(b"data: [DONE]\n\n" + tail) == [ev("[DONE]")]
        assert decoder.unterminated_line == ""  # set by end(), not by feed()
        assert decoder.end() == []
        assert decoder.unterminated_line == text
        assert tr(b"data: [DONE]\n\n" + tail, [ev("[DONE]")]).unterminated_line == text

    def test_final_unterminated_comment_after_a_leading_bom(self) -> None:
        assert tr(BOM + b": only", []).unterminated_line == ": only"

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
    def test_a_final_line_with_its_line_ending_leaves_no_unterminated_line(
        self, eol: bytes,
    ) -> None:
        decoder = SSEDecoder()
        assert decoder.feed(b": cost" + eol) == [Comment("cost")]
        assert decoder.end() == []
        assert decoder.unterminated_line == ""

    def test_each_end_sets_the_unterminated_line_afresh(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b": one")
        decoder.end()
        assert decoder.unterminated_line == ": one"
        decoder.feed(b"data: a\n\n")
        decoder.end()
        assert decoder.unterminated_line == ""

    def test_end_of_a_fresh_decoder_returns_nothing(self) -> None:
        decoder = SSEDecoder()
        assert decoder.end() == []
        assert decoder.end() == []

    def test_end_resets_for_a_new_stream_but_keeps_last_event_id_and_retry(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"id: 9\nretry: 5\n\nid: 10\nevent: x\ndata: lost\n: cut")
        assert decoder.end() == []
        assert decoder.unterminated_line == ": cut"
        assert decoder.end() == []
        assert decoder.unterminated_line == ""  # the line is not kept twice
        assert (decoder.last_event_id, decoder.retry) == ("9", 5)
        # A new stream: it may start with a BOM again, and the id buffer starts from
        # the last event ID.
        assert decoder.feed(BOM + b"data: new\n\n") == [ev("new", id="9")]

    def test_a_cr_that_ended_the_last_stream_does_not_pair_with_the_next_streams_lf(
        self,
    ) -> None:
        # The new stream starts with a blank line, so the BOM after it is no leading BOM
        # and makes the field name unknown.
        decoder = SSEDecoder()
        decoder.feed(b"data: old\r")
        decoder.end()
        assert decoder.feed(b"\n" + BOM + b"data: x\n\n") == []


class TestLineLimit:
    @pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
    def test_line_at_the_limit_is_accepted_without_its_line_ending(self, eol: bytes) -> None:
        for chunks in ([b"data: x" + eol * 2], bytewise(b"data: x" + eol * 2)):
            assert decode(chunks, max_line_bytes=7)[0] == [ev("x")]

    @pytest.mark.parametrize("how", ["whole", "bytewise", "pieces"])
    def test_over_long_complete_line_raises(self, how: str) -> None:
        stream = b"data: a\n\ndata: 12345678\n\n"
        chunks = {"whole": [stream], "bytewise": bytewise(stream),
                  "pieces": [stream[:12], stream[12:16], stream[16:]]}[how]
        with pytest.raises(ProtocolError, match="max_line_bytes"):
            decode(chunks, max_line_bytes=8)

    @pytest.mark.parametrize("how", ["whole", "bytewise", "pieces"])
    def test_over_long_incomplete_line_raises_from_feed(self, how: str) -> None:
        stream = b"data: a\n\ndata: 123"
        chunks = {"whole": [stream], "bytewise": bytewise(stream),
                  "pieces": [stream[:12], stream[12:16], stream[16:]]}[how]
        decoder = SSEDecoder(max_line_bytes=8)
        assert decoder.feed(b"") == []
        with pytest.raises(ProtocolError, match="max_line_bytes"):
            for chunk in chunks:
                decoder.feed(chunk)

    def test_incomplete_line_at_the_limit_is_accepted(self) -> None:
        for chunks in ([b"data: a\n\n: 12345"], bytewise(b"data: a\n\n: 12345")):
            out, decoder = decode(chunks, max_line_bytes=7)
            assert (out, decoder.unterminated_line) == ([ev("a")], ": 12345")

    def test_bytes_are_counted_not_characters(self) -> None:
        with pytest.raises(ProtocolError):
            SSEDecoder(max_line_bytes=8).feed("data: é€".encode())

    def test_comments_and_unknown_fields_are_limited_too(self) -> None:
        for line in (b": 12345678\n", b"123456789\n", b"event: 99\n"):
            with pytest.raises(ProtocolError):
                SSEDecoder(max_line_bytes=8).feed(line)

    def test_leading_bom_does_not_count_toward_the_limit_however_it_is_split(self) -> None:
        stream = BOM + b": abcde\ndata: x\n\n"
        assert decode([stream], max_line_bytes=7)[0] == [Comment("abcde"), ev("x")]
        assert decode(bytewise(stream), max_line_bytes=7)[0] == [Comment("abcde"), ev("x")]
        with pytest.raises(ProtocolError):
            SSEDecoder(max_line_bytes=6).feed(stream)

    def test_cr_only_lines_are_measured_one_by_one(self) -> None:
        stream = b"data: x\r" * 50 + b"\r"
        decoder = SSEDecoder(max_line_bytes=8, max_event_bytes=1000)
        assert decoder.feed(stream) == [ev("\n".join(["x"] * 50))]

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
    @pytest.mark.parametrize("ends_a_line", [False, True])
    def test_one_byte_feeds_raise_at_the_first_byte_over_the_limit_on_every_line(
        self, eol: bytes, ends_a_line: bool,
    ) -> None:
        # Lines at the limit, fed a byte at a time after lines (short or not), then a
        # piece of several bytes (ending a short line or not) and bytes one at a time up
        # to the limit; then one byte too many.
        decoder = SSEDecoder(max_line_bytes=8)
        for line in (b"data: ab", b":", b": 345678", b":"):
            for byte in bytewise(line + eol):
                decoder.feed(byte)
        decoder.feed((b":" + eol if ends_a_line else b"") + b"data")
        for byte in bytewise(b": ef"):
            decoder.feed(byte)
        with pytest.raises(ProtocolError, match="max_line_bytes"):
            decoder.feed(b"g")

    def test_a_limit_beyond_any_count_of_pieces_is_taken_one_byte_at_a_time(self) -> None:
        stream = b"data: x\n\n" * 3
        assert decode(bytewise(stream), max_line_bytes=2**70)[0] == [ev("x")] * 3

    def test_default_limit_is_16_mib(self) -> None:
        assert DEFAULT_MAX_LINE_BYTES == 16 * 1024 * 1024
        line = b"data: " + b"x" * (DEFAULT_MAX_LINE_BYTES - 6)
        decoder = SSEDecoder()
        assert decoder.feed(line[: 1 << 20]) == []
        assert len(decoder.feed(line[1 << 20 :] + b"\n\n")[0].data) == len(line) - 6
        with pytest.raises(ProtocolError):
            SSEDecoder().feed(line + b"x")


class TestEventLimit:
    @pytest.mark.parametrize("field", [b"data: ", b"data:"])
    def test_data_at_the_limit_is_accepted(self, field: bytes) -> None:
        # Each data line adds its value and one LF: 5 + 1 + 5 + 1 = 12.
        stream = (field + b"12345\n") * 2 + b"\n"
        assert decode([stream], max_line_bytes=12, max_event_bytes=12)[0] == [
            ev("12345\n12345")]
        with pytest.raises(ProtocolError, match="max_event_bytes"):
            decode([stream], max_line_bytes=11, max_event_bytes=11)

    @pytest.mark.parametrize("how", ["whole", "bytewise", "pieces"])
    def test_too_much_data_across_data_lines_raises(self, how: str) -> None:
        stream = b"data: 12345\n" * 3
        chunks = {"whole": [stream], "bytewise": bytewise(stream),
                  "pieces": [stream[:13], stream[13:30], stream[30:]]}[how]
        with pytest.raises(ProtocolError, match="max_event_bytes"):
            decode(chunks, max_line_bytes=12, max_event_bytes=12)

    def test_the_limit_is_per_event(self) -> None:
        stream = b"data: 12345\ndata: 12345\n\n" * 20
        assert len(decode([stream], max_line_bytes=12, max_event_bytes=12)[0]) == 20

    def test_the_count_starts_again_after_end(self) -> None:
        decoder = SSEDecoder(max_line_bytes=12, max_event_bytes=12)
        decoder.feed(b"data: 12345\n")
        decoder.end()
        assert decoder.feed(b"data: 12345\ndata: 12345\n\n") == [ev("12345\n12345")]

    def test_other_fields_and_comments_do_not_count(self) -> None:
        stream = b"data: 12345\n: 123456\nevent: 1234\nid: 1234567\ndata: 12345\n\n"
        assert decode([stream], max_line_bytes=12, max_event_bytes=12)[0] == [
            Comment("123456"), ev("12345\n12345", "1234", "1234567")]

    def test_default_is_four_times_the_line_limit(self) -> None:
        assert len(SSEDecoder(max_line_bytes=10).feed(b"data: 123\n" * 10 + b"\n")) == 1
        with pytest.raises(ProtocolError, match="max_event_bytes"):
            SSEDecoder(max_line_bytes=10).feed(b"data: 123\n" * 11)


class TestErrorState:
    @pytest.mark.parametrize("bad", [b"data: 123456789\n", b"data: 123456789",
                                     b"data: 1234\n" * 9])
    def test_after_a_protocol_error_every_feed_and_end_raises(self, bad: bytes) -> None:
        decoder = SSEDecoder(max_line_bytes=10)
        assert decoder.state is DecoderState.OPEN
        with pytest.raises(ProtocolError):
            decoder.feed(bad)
        assert decoder.state is DecoderState.ERROR
        for later in (b"", b"x", b"\n", b"\r", b"data: a\n\n"):
            with pytest.raises(ProtocolError):
                decoder.feed(later)
        with pytest.raises(ProtocolError):
            decoder.end()
        assert decoder.state is DecoderState.ERROR

    @given(st.data(), st.binary(max_size=60), st.integers(1, 8))
    def test_once_failed_always_failed(self, data: st.DataObject, blob: bytes,
                                       limit: int) -> None:
        decoder = SSEDecoder(max_line_bytes=limit)
        failed = False
        for chunk in [*data.draw(splits(blob)), b"", b"\n"]:
            try:
                decoder.feed(chunk)
            except ProtocolError:
                failed = True
            else:
                assert not failed
        assert (decoder.state is DecoderState.ERROR) == failed


class TestConstructor:
    @pytest.mark.parametrize(("kw", "exc"), [
        ({"max_line_bytes": 0}, ValueError), ({"max_line_bytes": -1}, ValueError),
        ({"max_line_bytes": "1"}, TypeError), ({"max_line_bytes": True}, TypeError),
        ({"max_line_bytes": 1.5}, TypeError), ({"max_line_bytes": None}, TypeError),
        ({"max_line_bytes": 10, "max_event_bytes": 5}, ValueError),
        ({"max_event_bytes": "1"}, TypeError), ({"max_event_bytes": False}, TypeError),
        ({"max_line_bytes": 10, "max_event_bytes": 10.0}, TypeError),
    ])
    def test_invalid_limits_are_rejected(self, kw: dict[str, Any], exc: type) -> None:
        with pytest.raises(exc):
            SSEDecoder(**kw)

    def test_limits_are_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            SSEDecoder(100)  # type: ignore[misc]

    def test_smallest_limits_are_accepted(self) -> None:
        assert SSEDecoder(max_line_bytes=1, max_event_bytes=1).feed(b"a\n") == []

    def test_a_new_decoder_is_open_with_no_id_and_no_retry(self) -> None:
        decoder = SSEDecoder()
        assert (decoder.state, decoder.last_event_id, decoder.retry) == (
            DecoderState.OPEN, "", None)


class TestItemsAreDataclasses:
    """The items' __init__, __repr__ and __eq__ are written out (generating them costs a
    compile() each at import); they behave as dataclass would generate them."""

    @pytest.mark.parametrize("cls, values", [
        (ServerSentEvent, [("a",), ("a", "message"), ("a", "message", ""), ("a", "x", "7"),
                           ("b", "x", "7"), ("", "m", "\n"), ("a", "x", "8")]),
        (Comment, [("a",), ("",), ("b",), ("a'\"",)]),
    ])
    def test_as_generated(self, cls: Any, values: list[tuple[str, ...]]) -> None:
        import dataclasses

        assert dataclasses.is_dataclass(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        ref_cls = dataclasses.make_dataclass(cls.__name__, names)
        full = [cls(*v) for v in values]
        ours = [cls(*v) for v in values]
        refs = [ref_cls(*[getattr(o, n) for n in names]) for o in full]
        assert [repr(o) for o in ours] == [repr(r) for r in refs]
        assert [[a == b for b in ours] for a in ours] == [[a == b for b in refs] for a in refs]
        assert [[a != b for b in ours] for a in ours] == [[a != b for b in refs] for a in refs]
        assert ours[0].__eq__(refs[0]) is NotImplemented and ours[0] != refs[0]
        for o in (ours[0], refs[0]):
            with pytest.raises(TypeError, match="unhashable"):
                hash(o)
        assert dataclasses.astuple(ours[-1]) == dataclasses.astuple(refs[-1])
        assert dataclasses.replace(ours[0], **{names[0]: "z"}) == cls("z", *values[0][1:])


class TestInputTypes:
    def test_feed_accepts_bytearray_and_memoryview(self) -> None:
        decoder = SSEDecoder()
        out = decoder.feed(bytearray(b"data: a\n")) + decoder.feed(memoryview(b"xx\n\n")[2:])
        assert out == [ev("a")]

    def test_a_buffer_of_wider_items_is_read_as_its_bytes(self) -> None:
        # A memoryview or array of 4-byte items has a len() and an `in` of items: the
        # decoder must see the bytes, line endings and limits included.
        import array

        wide = memoryview(b"data: x\n\n\n\n\n").cast("I")
        assert len(wide) == 3
        assert SSEDecoder().feed(wide) == [ev("x")]
        assert SSEDecoder().feed(array.array("I", b"data: yz\n\n\n\n")) == [ev("yz")]
        decoder = SSEDecoder()
        assert decoder.feed(memoryview(b"data: a\n").cast("H")) == []
        assert decoder.feed(memoryview(b"\n\n").cast("H")) == [ev("a")]
        with pytest.raises(ProtocolError, match="max_line_bytes"):
            SSEDecoder(max_line_bytes=4).feed(memoryview(b"abcdefgh").cast("I"))
        with pytest.raises(ProtocolError, match="max_line_bytes"):
            list(SSEDecoder(max_line_bytes=4).events([memoryview(b"abcdefgh").cast("I")]))

    def test_the_decoder_keeps_no_reference_to_a_callers_buffer(self) -> None:
        buffer = bytearray(b"data: ab")
        decoder = SSEDecoder()
        decoder.feed(buffer)
        buffer[:] = b"XXXXXXXX"
        assert decoder.feed(b"\n\n") == [ev("ab")]

    @pytest.mark.parametrize("bad", ["data: a\n\n", 5, None, [10]])
    def test_feed_rejects_what_is_not_bytes(self, bad: object) -> None:
        # bytes(5) would be five NULs and bytes([10]) a line ending.
        with pytest.raises(TypeError):
            SSEDecoder().feed(bad)  # type: ignore[arg-type]


class TestLinearTime:
    """A large event fed in tiny pieces costs time proportional to its size.

    Wall-clock ratios are flaky on shared machines; instead the profiler lists the C
    functions each ``feed`` calls. One more byte of a long line must cost the same calls
    (and no join, find or decode) whether the line holds a hundred bytes or a hundred
    thousand, and one more line of a long event the same calls whatever came before.
    benchmarks/bench_sse.py measures the rate.
    """

    @staticmethod
    def calls(feed: Callable[[bytes], object], chunk: bytes) -> list[str]:
        names: list[str] = []

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call":
                names.append(frame.f_code.co_name)
            elif event == "c_call":
                names.append(arg.__name__)

        # Without the cycle collector: a collection in the middle would run finalizers of
        # other tests' garbage (a stream's __del__, say) and record their calls here.
        enabled = gc.isenabled()
        gc.disable()
        sys.setprofile(profile)
        try:
            feed(chunk)
        finally:
            sys.setprofile(None)
            if enabled:
                gc.enable()
        return names

    def test_one_more_byte_of_a_long_line_costs_the_same_whatever_its_length(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"data: ")
        profiles = {}
        for i in range(200_000):
            if i in (100, 199_999):
                profiles[i] = self.calls(decoder.feed, b"x")
            else:
                decoder.feed(b"x")
        assert profiles[100] == profiles[199_999]
        scans = {"join", "find", "rfind", "count", "split", "decode", "replace"}
        assert not scans & set(profiles[100]), profiles[100]
        assert self.calls(decoder.feed, b"\n").count("join") <= 1  # the line, copied once
        assert decoder.feed(b"\n") == [ev("x" * 200_000)]

    def test_one_more_line_of_a_long_event_costs_the_same_whatever_came_before(self) -> None:
        # Apart from compaction: the lines collected so far are joined into one string
        # now and then (after a number of new lines proportional to their size, so the
        # copying is linear in all), to bound the memory of an event of short lines.
        decoder = SSEDecoder()
        profiles = {}
        compactions = 0
        for n in range(5_000):
            for byte in bytewise(b"data: 12345"):
                decoder.feed(byte)
            calls = self.calls(decoder.feed, b"\n")
            if "_compact" in calls:
                compactions += 1
                i = calls.index("_compact")
                assert calls[i : i + 2] == ["_compact", "join"]
                del calls[i : i + 2]
            profiles[n] = calls
        assert profiles[10] == profiles[4_999] == profiles[2_500]
        assert 0 < compactions < 100
        assert decoder.feed(b"\n") == [ev("\n".join(["12345"] * 5_000))]

    def test_a_quarter_mebibyte_event_fed_one_byte_at_a_time(self) -> None:
        stream = b"data: " + b"x" * (256 * 1024) + b"\r\n\r\n"
        decoder = SSEDecoder()
        out: list[Item] = []
        for i in range(len(stream)):
            out += decoder.feed(stream[i : i + 1])
        assert out == [ev("x" * (256 * 1024))]


class TestSplitInvariance:
    @given(st.data(), streams(), line_limits)
    def test_the_result_never_depends_on_the_split(self, data: st.DataObject, stream: bytes,
                                                   line: Optional[int]) -> None:
        # Events, last_event_id, retry -- or the ProtocolError of a limit.
        kw = limits(line)
        assert outcome(data.draw(splits(stream)), **kw) == outcome([stream], **kw)

    @given(st.data(), streams(), st.integers(1, 12), st.integers(0, 24))
    def test_event_limit_errors_never_depend_on_the_split(self, data: st.DataObject,
                                                          stream: bytes, line: int,
                                                          extra: int) -> None:
        kw = limits(line, line + extra)
        assert outcome(bytewise(stream), **kw) == outcome([stream], **kw)
        assert outcome(data.draw(splits(stream)), **kw) == outcome([stream], **kw)


class TestReference:
    """The decoder agrees with :func:`reference`; :func:`tr` also checks the reference
    against every example above."""

    @given(st.data(), streams())
    def test_agrees_with_the_per_character_reference(self, data: st.DataObject,
                                                     stream: bytes) -> None:
        expected = reference(stream)
        assert outcome([stream]) == expected
        assert outcome(data.draw(splits(stream))) == expected

    @given(st.data(), streams(), st.integers(0, 12))
    def test_agrees_with_the_reference_on_limits(self, data: st.DataObject, stream: bytes,
                                                 extra: int) -> None:
        # From 2 bytes up: with a 1-byte limit, a stream that ends inside a leading BOM's
        # first two bytes is an incomplete line the decoder cannot measure before end()
        # (it may still become a BOM), and end() discards it unmeasured.
        line = data.draw(line_limit_near_a_line(stream))
        kw = limits(line, line + extra)
        expected = reference(stream, max_line_bytes=line, max_event_bytes=line + extra)
        assert outcome([stream], **kw) == expected
        assert outcome(data.draw(splits(stream)), **kw) == expected


#: Streams of the shape feed()'s fast path takes ("data: value" + blank line, repeated),
#: with LF or CRLF, some values that break the shape, and an incomplete last line.
chat_streams = st.builds(
    lambda values, eol, tail: b"".join(b"data: " + v + eol + eol for v in values) + tail,
    st.lists(st.one_of(st.binary(max_size=8).filter(lambda v: 10 not in v and 13 not in v),
                       st.sampled_from([b"\xf0\x9f\x98\x80", b"\xff", b"a\nb", b"",
                                        b"x" * 30])),
             max_size=4),
    st.sampled_from([b"\n", b"\r\n"]),
    st.one_of(st.just(b""), st.binary(max_size=40).filter(lambda v: 10 not in v and 13 not in v),
              st.sampled_from([b"data: partial", b": comment\n", b"data: x\n", b"\r"])),
)


class TestFastPathShape:
    """The fast path of feed() against the reference, limits included: where a limit
    falls inside a value, after the last blank line, or across chunks."""

    @settings(max_examples=600)  # cheap examples; the interesting ones are narrow
    @given(st.data(), chat_streams, st.integers(0, 16))
    def test_agrees_with_the_reference_on_chat_shaped_streams(
        self, data: st.DataObject, stream: bytes, extra: int,
    ) -> None:
        # The fast path is tried from the second feed on (the first one may start with a
        # BOM): one event first, fed alone, then the stream whole and split.
        first = b"data: 0\n\n"
        line = data.draw(st.one_of(line_limit_near_a_line(stream), st.integers(7, 40)))
        kw = limits(line, line + extra)
        expected = reference(first + stream, max_line_bytes=line, max_event_bytes=line + extra)
        assert outcome([first, stream], **kw) == expected
        assert outcome([first, *data.draw(splits(stream))], **kw) == expected
        assert events_outcome([first, *data.draw(splits(stream))], **kw) == expected


    @given(st.lists(st.binary(min_size=1, max_size=6).filter(
               lambda v: 10 not in v and 13 not in v), min_size=1, max_size=2),
           st.sampled_from([b"\n", b"\r\n"]), st.integers(1, 40), st.integers(7, 40))
    def test_a_line_held_back_after_fast_path_events_is_bounded_too(
        self, values: list[bytes], eol: bytes, tail: int, line: int,
    ) -> None:
        first = b"data: 0" + eol + eol
        stream = b"".join(b"data: " + v + eol + eol for v in values) + b"x" * tail
        kw = limits(line)
        expected = reference(first + stream, max_line_bytes=line)
        assert outcome([first, stream], **kw) == expected
        assert outcome([first, stream, b"y"], **kw) == reference(
            first + stream + b"y", max_line_bytes=line)

    @pytest.mark.parametrize("stream, expected", [
        (b"data: a\nb\n\ndata: c\n\n", [ev("a"), ev("c")]),
        (b"data: a\n\ndata: b\ndata: c\n\n", [ev("a"), ev("b\nc")]),
        (b"data: a\n\ndata: b\n\n\n", [ev("a"), ev("b")]),
        (b"data: a\r\nb\r\n\r\ndata: c\r\n\r\n", [ev("a"), ev("c")]),
        (b"data: a\rb\r\n\r\ndata: c\r\n\r\n", [ev("a"), ev("c")]),
        (b"data: a\nb\r\n\r\ndata: c\r\n\r\n", [ev("a"), ev("c")]),
        (b"data: a\r\n\r\ndata: b\rdata: c\r\n\r\n", [ev("a"), ev("b\nc")]),
        (b"data: a\r\n\r\ndata: b\r\n\n", [ev("a"), ev("b")]),
        (b"data: a\r\n\r\ndata: b\r\r\n\r\n", [ev("a"), ev("b")]),
        (b"data: a\r\n\r\ndata: b\nc\r\n\r\n", [ev("a"), ev("b")]),
    ], ids=repr)
    def test_a_block_of_more_than_one_line_is_read_as_lines(
        self, stream: bytes, expected: list[Item],
    ) -> None:
        # Each block looks like the common shape until its line endings are counted.
        d = SSEDecoder()
        d.feed(b"data: 0\n\n")
        assert d.feed(stream) == expected
        assert reference(b"data: 0\n\n" + stream)[0][1:] == expected

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
    @pytest.mark.parametrize("one_byte", [True, False], ids=["one byte a feed", "one feed"])
    def test_a_data_line_held_back_raises_at_its_first_byte_over_the_limit(
        self, eol: bytes, one_byte: bool,
    ) -> None:
        # The fast path holds an incomplete "data: " line back in pieces of its own; the
        # line is measured exactly as any other. (It takes a feed no longer than the
        # limit.)
        limit = 40
        d = SSEDecoder(max_line_bytes=limit)
        d.feed(b"data: 0" + eol + eol)
        line = b"data: xxxx"
        assert d.feed(b"data: 1" + eol + eol + line) == [ev("1")]
        rest = b"y" * (limit - len(line))
        for piece in bytewise(rest) if one_byte else [rest]:
            assert d.feed(piece) == []
        with pytest.raises(ProtocolError, match="max_line_bytes"):
            d.feed(b"z")

    def test_a_feed_that_completes_no_block_sets_no_last_event_id(self) -> None:
        # Found by hypothesis on Python 3.9 (TestPromptness): the fast path set the last
        # event ID for a feed that dispatched nothing, its one line ending inside the
        # piece read line by line.
        d = SSEDecoder()
        assert d.feed(b"id: x\n") == []
        assert d.feed(b"data: \ndata: ") == []
        assert d.last_event_id == ""
        assert d.feed(b"\n\n") == [ev("\n", id="x")]
        assert d.last_event_id == "x"

    def test_a_cr_that_ends_a_feed_ends_the_data_line_at_once(self) -> None:
        # The last piece of a feed of blocks is held back only when it holds no line
        # ending: here the CR ends the line "data: v", and the next feed, with LF
        # endings, must not join the two.
        stream = [b"data: 0\r\n\r\n", b"data: a\r\n\r\ndata: v\r", b"x\n\n"]
        d = SSEDecoder()
        assert [d.feed(piece) for piece in stream] == [[ev("0")], [ev("a")], [ev("v")]]
        assert reference(b"".join(stream))[0] == [ev("0"), ev("a"), ev("v")]

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
    def test_the_line_after_a_held_back_one_has_the_whole_limit(self, eol: bytes) -> None:
        limit = 40
        d = SSEDecoder(max_line_bytes=limit)
        d.feed(b"data: 0" + eol + eol)
        assert d.feed(b"data: 1" + eol + eol + b"data: " + b"x" * 10) == [ev("1")]
        assert d.feed(b"x" + eol + eol) == [ev("x" * 11)]
        line = b"data: " + b"y" * (limit - 6)
        assert d.feed(line[:2]) == []
        assert d.feed(line[2:] + eol + eol) == [ev("y" * (limit - 6))]

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
    def test_a_data_line_held_back_is_the_unterminated_line_at_end(self, eol: bytes) -> None:
        d = SSEDecoder()
        d.feed(b"data: 0" + eol + eol)
        assert d.feed(b"data: 1" + eol + eol + b"data: par") == [ev("1")]
        assert d.end() == []
        assert d.unterminated_line == "data: par"

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
    def test_a_data_line_held_back_goes_on_as_any_line(self, eol: bytes) -> None:
        # Continued by what is not the common shape: a second data line, an id, a type.
        d = SSEDecoder()
        d.feed(b"data: 0" + eol + eol)
        assert d.feed(b"data: 1" + eol + eol + b"data: par") == [ev("1")]
        assert d.feed(b"t" + eol + b"data: more" + eol + b"id: 7" + eol + eol) == [
            ev("part\nmore", id="7")]
        assert d.feed(b"data: a" + eol + eol + b"data: b") == [ev("a", id="7")]
        assert d.feed(b"c" + eol + eol) == [ev("bc", id="7")]


#: Streams shaped like benchmarks/corpus.py's large events: ``event:`` and ``id:`` lines,
#: then many ``data:`` lines of text (some non-ASCII, some long), then a blank line; LF or
#: CRLF; now and then a comment or an odd line inside an event, an unterminated end.
large_values = st.one_of(
    st.sampled_from([b"", b"x", "caf\u00e9 \u4e2d\u6587 \U0001f642".encode(), b"[DONE]",
                     b"a:b", b"\xff", b"x" * 200]),
    line_text.map(str.encode),
)


@st.composite
def large_streams(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    parts = []
    for number in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            parts.append(b"event: result" + eol)
        if draw(st.booleans()):
            parts.append(b"id: big-%d" % number + eol)
        for _ in range(draw(st.integers(1, 40))):
            if draw(st.integers(0, 19)) == 0:
                parts.append(draw(st.sampled_from([b": ping", b"retry: 7", b"data", b"id: x",
                                                   b"data:no-space"])) + eol)
            parts.append(b"data: " + draw(large_values) + eol)
        parts.append(eol)
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from([b": {\"cost\":\"1\"}", b"data: cut", b""])))
    return b"".join(parts)


class TestLargeEventShape:
    """Multi-line events, the shape of the large-events benchmark corpus, against the
    reference: whole, split anywhere, in fixed-size chunks and byte by byte."""

    @settings(max_examples=300)
    @given(st.data(), large_streams(), st.sampled_from([3, 7, 64, 1460]))
    def test_agrees_with_the_reference_on_large_events(
        self, data: st.DataObject, stream: bytes, size: int,
    ) -> None:
        expected = reference(stream)
        fixed = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert outcome([stream]) == expected
        assert outcome(fixed) == expected
        assert outcome(data.draw(splits(stream))) == expected
        assert events_outcome(fixed) == expected

    @settings(max_examples=200)
    @given(st.data(), large_streams())
    def test_agrees_with_the_reference_on_large_events_with_limits(
        self, data: st.DataObject, stream: bytes,
    ) -> None:
        line = data.draw(st.one_of(line_limit_near_a_line(stream), st.integers(7, 300)))
        extra = data.draw(st.integers(0, 400))
        kw = limits(line, line + extra)
        expected = reference(stream, max_line_bytes=line, max_event_bytes=line + extra)
        assert outcome([stream], **kw) == expected
        assert outcome(data.draw(splits(stream)), **kw) == expected

    def test_a_byte_at_a_time(self) -> None:
        stream = (b"event: result\nid: big-0\n"
                  + b"".join(b"data: line %d \xc3\xa9\n" % i for i in range(50)) + b"\n")
        assert outcome(bytewise(stream)) == reference(stream)


class TestArbitraryBytes:
    @given(st.data(), st.binary(max_size=300), line_limits)
    def test_arbitrary_bytes_raise_nothing_but_protocol_error(
        self, data: st.DataObject, blob: bytes, line: Optional[int],
    ) -> None:
        try:
            out, decoder = decode(data.draw(splits(blob)), **limits(line))
        except ProtocolError:
            return
        for item in out:
            if isinstance(item, Comment):
                assert isinstance(item.text, str)
            else:
                assert isinstance(item, ServerSentEvent)
                assert all(isinstance(v, str) for v in (item.data, item.event, item.id))
        assert decoder.retry is None or decoder.retry >= 0


class TestEncode:
    def test_event_with_every_field(self) -> None:
        wire = encode(ServerSentEvent("a\nb", "add", "7"), retry=100)
        assert wire == b"event: add\nid: 7\nretry: 100\ndata: a\ndata: b\n\n"

    def test_message_type_empty_id_and_empty_data_lines_are_written_short(self) -> None:
        assert encode(ServerSentEvent("\na")) == b"data\ndata: a\n\n"

    @pytest.mark.parametrize("eol", ["\r\n", "\r"])
    def test_other_line_endings(self, eol: str) -> None:
        assert encode(ServerSentEvent("x", id="1"), eol=eol) == \
            f"id: 1{eol}data: x{eol}{eol}".encode()

    def test_comment(self) -> None:
        assert encode(Comment("ping")) == b": ping\n"
        assert encode(Comment("")) == b":\n"

    @pytest.mark.parametrize("item", [
        ServerSentEvent("a\rb"), ServerSentEvent("x", "a\nb"), ServerSentEvent("x", "a\rb"),
        ServerSentEvent("x", id="a\nb"), ServerSentEvent("x", id="a\x00"), Comment("a\nb"),
        Comment("a\rb"),
    ])
    def test_unrepresentable_values_are_rejected(self, item: Item) -> None:
        with pytest.raises(ValueError):
            encode(item)

    @pytest.mark.parametrize("retry", [-1, True, 1.5])
    def test_invalid_retry_is_rejected(self, retry: Any) -> None:
        with pytest.raises(ValueError):
            encode(ServerSentEvent("x"), retry=retry)

    def test_invalid_eol_and_item_are_rejected(self) -> None:
        with pytest.raises(ValueError):
            encode(ServerSentEvent("x"), eol="\n\n")
        with pytest.raises(TypeError):
            encode("x")  # type: ignore[arg-type]

    wire_items = st.one_of(
        st.builds(Comment, line_text),
        st.builds(
            ServerSentEvent,
            st.text(st.characters(exclude_characters="\r", exclude_categories=("Cs",)),
                    max_size=30),
            st.one_of(st.just("message"), line_text),
            st.one_of(st.just(""), line_text.filter(lambda s: "\x00" not in s)),
        ),
    )

    @given(st.data(), st.lists(st.tuples(wire_items, st.one_of(st.none(),
                                                                st.integers(0, 10**12))),
                               max_size=8),
           st.sampled_from(["\n", "\r\n", "\r"]))
    def test_encode_then_decode_round_trips(
        self, data: st.DataObject, items: list[tuple[Item, Optional[int]]], eol: str,
    ) -> None:
        expected: list[Item] = []
        last_id = ""
        last_retry = None
        wire = b""
        for item, retry in items:
            if isinstance(item, Comment):
                wire += encode(item, eol=eol)
                expected.append(item)
                continue
            wire += encode(item, retry=retry, eol=eol)
            # encode omits an empty id, so the decoder keeps the last one; an empty type
            # is written as "event: ", which means "message".
            last_id = item.id or last_id
            last_retry = last_retry if retry is None else retry
            expected.append(ServerSentEvent(item.data, item.event or "message", last_id))
        out, decoder = decode(data.draw(splits(wire)))
        assert out == expected
        assert (decoder.last_event_id, decoder.retry) == (last_id, last_retry)


class TestTypeHints:
    def test_type_hints_of_every_public_callable_resolve_on_this_python(self) -> None:
        # from __future__ import annotations keeps annotations as strings; get_type_hints
        # evaluates them, which fails on Python 3.9 for "X | Y" between classes.
        import typing

        import alltoken.sse as sse

        checked = []
        for name in sse.__all__:
            obj = getattr(sse, name)
            if isinstance(obj, type):
                members = [obj.__init__, *(v for k, v in vars(obj).items()
                                           if callable(v) and not k.startswith("_"))]
            elif callable(obj):
                members = [obj]
            else:
                continue
            for member in members:
                hints = typing.get_type_hints(member)
                assert "return" in hints, member
                checked.append(member.__qualname__)
        assert {"SSEDecoder.feed", "SSEDecoder.events", "SSEDecoder.end", "encode",
                "ServerSentEvent.__init__", "Comment.__init__"} <= set(checked), checked


class TestRegressions:
    """Bugs found by differential testing against the reference, by the fuzzer and by
    tests/test_faults.py, each kept as the example that found it."""

    def test_feed_makes_no_cell_on_a_call(self) -> None:
        # Found by benchmarks/bench_sse.py (1-byte feeding 10% slower): a comprehension
        # in feed() read one of its locals, which made that local a cell, created on
        # every call -- and feed() is called once a byte in 1-byte feeding.
        assert SSEDecoder.feed.__code__.co_cellvars == ()

    def test_cr_followed_by_a_non_lf_byte_in_the_same_feed_does_not_eat_the_next_lf(self) -> None:
        # b"\r" then b"\x80:" in one feed: the CR is not the last byte fed, so an LF at the
        # start of the next feed is a line ending of its own, not the second half of CRLF.
        stream = b"\r\x80:\n:  : \n"
        whole = SSEDecoder().feed(stream)
        d = SSEDecoder()
        split = d.feed(stream[:3]) + d.feed(stream[3:6]) + d.feed(stream[6:])
        assert whole == split == [Comment(" : ")]


    def test_leading_bom_does_not_count_toward_the_line_limit_however_it_is_split(self) -> None:
        # Found by fuzz/fuzz_sse.py: the BOM was counted while the first line was incomplete.
        stream = b"\xef\xbb\xbf: nt\ndata: x\n\n"
        expected = [Comment("nt"), ServerSentEvent("x")]
        assert SSEDecoder(max_line_bytes=8).feed(stream) == expected
        d = SSEDecoder(max_line_bytes=8)
        out = []
        for i in range(len(stream)):
            out += d.feed(stream[i : i + 1])
        assert out == expected


    def test_an_empty_feed_between_cr_and_lf_keeps_them_one_line_ending(self) -> None:
        # Found by the round-trip property: b"" between b"\r" and b"\n" used to count as
        # pending line content, so the LF became a second (blank) line.
        d = SSEDecoder()
        out = d.feed(b"data: a\r") + d.feed(b"") + d.feed(b"\ndata: b\r\n\r\n")
        assert out == [ServerSentEvent("a\nb")]
        d.feed(b"")
        assert not d._tail  # nor do empty feeds accumulate


    def test_the_start_of_a_bom_then_another_byte_counts_in_full_however_it_is_split(
        self,
    ) -> None:
        # Found by fuzz/fuzz_sse.py: after b"\xef\xbb" (perhaps a BOM, not counted) a
        # byte that makes it no BOM was let through when fed on its own.
        import pytest

        from alltoken import ProtocolError

        stream = b"\xef\xbb\x00"
        for chunks in ([stream], bytewise(stream), [stream[:2], stream[2:]]):
            decoder = SSEDecoder(max_line_bytes=1)
            with pytest.raises(ProtocolError, match="max_line_bytes"):
                for chunk in chunks:
                    decoder.feed(chunk)
        decoder = SSEDecoder(max_line_bytes=1)  # a whole BOM is not counted
        for chunk in bytewise(BOM + b":\n"):
            decoder.feed(chunk)

    def test_after_a_failure_even_an_empty_feed_raises(self) -> None:
        import pytest

        from alltoken import ProtocolError

        d = SSEDecoder(max_line_bytes=4)
        with pytest.raises(ProtocolError):
            d.feed(b"toolong")
        with pytest.raises(ProtocolError):
            d.feed(b"")


    def test_feed_refuses_what_is_not_bytes_like(self) -> None:
        import pytest

        d = SSEDecoder()
        for bad in (5, "data: x\n", None, [10]):
            with pytest.raises(TypeError):
                d.feed(bad)  # type: ignore[arg-type]


    def test_an_over_long_incomplete_line_after_fast_path_events_raises(self) -> None:
        # The fast path for "data: value" blocks must still bound the incomplete line that
        # follows the last blank line of a feed.
        import pytest

        from alltoken import ProtocolError

        d = SSEDecoder(max_line_bytes=8)
        assert d.feed(b"data: a\n\n") == [ServerSentEvent("a")]
        with pytest.raises(ProtocolError):
            d.feed(b"data: b\n\n" + b"x" * 10)
        with pytest.raises(ProtocolError):
            d.feed(b"")


    def test_fast_path_hands_complete_lines_after_the_last_blank_line_to_the_general_path(
        self,
    ) -> None:
        d = SSEDecoder()
        assert d.feed(b"data: a\n\n") == [ServerSentEvent("a")]
        out = d.feed(b"data: b\n\n: cost\nevent: x\ndata: c\n")
        assert out == [ServerSentEvent("b"), Comment("cost")]
        assert d.feed(b"\n") == [ServerSentEvent("c", "x")]
        assert d.feed(b"id: 7\r\n\r\ndata: d\r\n\r\ndata: e\r\n\r\n") == [
            ServerSentEvent("d", id="7"), ServerSentEvent("e", id="7")]


    def test_an_endless_event_of_short_data_lines_stays_within_a_few_times_its_limit(self) -> None:
        # Found by tests/test_faults.py: each data line kept as its own str cost ~50 bytes
        # besides its characters, so "data: xy" lines took ~20x max_event_bytes of memory.
        import tracemalloc

        import pytest

        from alltoken import ProtocolError

        d = SSEDecoder(max_line_bytes=64 * 1024)  # max_event_bytes: 256 KiB
        chunk = b"data: xy\n" * 1000
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match="max_event_bytes"):
                for _ in range(1000):
                    d.feed(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * 256 * 1024, peak


    def test_compacted_data_lines_still_join_with_line_feeds(self) -> None:
        d = SSEDecoder()
        lines = [f"line {i}" for i in range(5000)]
        stream = b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"
        assert d.feed(stream) == [ServerSentEvent("\n".join(lines))]
        d = SSEDecoder()
        out = []
        for i in range(0, len(stream), 7):
            out += d.feed(stream[i : i + 7])
        assert out == [ServerSentEvent("\n".join(lines))]


    def test_an_over_long_line_is_refused_before_its_pieces_are_joined(self) -> None:
        # Found by tests/test_faults.py: the pieces of an over-long line were joined (a
        # second copy of up to max_line_bytes) and split again before the limit was checked.
        import tracemalloc

        import pytest

        from alltoken import ProtocolError

        limit = 1 << 20
        d = SSEDecoder(max_line_bytes=limit)
        d.feed(b"data: ok\n\n")
        for _ in range(16):
            d.feed(b"x" * (limit // 16 - 1))
        end = b"x" * 100 + b"\n\n"
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match="max_line_bytes"):
                d.feed(end)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < limit // 4, peak


class TestSansIO:
    def test_sse_module_imports_no_io_and_no_json(self) -> None:
        source = (Path(__file__).resolve().parent.parent / "alltoken" / "sse.py").read_text()
        forbidden = {"socket", "ssl", "http", "threading", "json", "time", "asyncio", "select"}
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
                pytest.fail("sse.py imports dynamically")
        assert imported, "the import scan found nothing: is this still sse.py?"
        assert not imported & forbidden, imported & forbidden


def events_outcome(chunks: list[bytes], **limits: int) -> Outcome:
    """:func:`outcome` through ``SSEDecoder.events`` instead of ``feed``/``end``."""
    decoder = SSEDecoder(**limits)
    try:
        out = list(decoder.events(chunks))
    except ProtocolError:
        return "ProtocolError"
    return out, decoder.last_event_id, decoder.retry


class TestEventsIterator:
    """``SSEDecoder.events(chunks)``: feed every chunk, then end, yielding as it goes."""

    @given(st.data(), streams(), line_limits)
    def test_same_outcome_as_feed_and_end_whatever_the_split(
        self, data: st.DataObject, stream: bytes, line: Optional[int],
    ) -> None:
        chunks = data.draw(splits(stream))
        kw = limits(line)
        assert events_outcome(chunks, **kw) == outcome(chunks, **kw)
        assert events_outcome(bytewise(stream), **kw) == outcome([stream], **kw)

    def test_each_item_comes_before_the_next_chunk_is_read(self) -> None:
        read: list[bytes] = []

        def chunks() -> Iterator[bytes]:
            for chunk in (b"da", b"ta: a\n", b"\nda", b"ta: b\n\n: c", b"ost"):
                read.append(chunk)
                yield chunk

        seen = []
        decoder = SSEDecoder()
        for item in decoder.events(chunks()):
            seen.append((item, len(read)))
        assert seen == [(ev("a"), 3), (ev("b"), 4)]
        assert decoder.unterminated_line == ": cost"

    def test_an_over_long_line_raises_once_the_limit_is_passed(self) -> None:
        read: list[bytes] = []

        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                read.append(b"x")
                yield b"x"

        with pytest.raises(ProtocolError):
            list(SSEDecoder(max_line_bytes=10).events(chunks()))
        assert len(read) == 11

    def test_a_failed_decoder_raises_at_the_first_chunk(self) -> None:
        decoder = SSEDecoder(max_line_bytes=4)
        with pytest.raises(ProtocolError):
            decoder.feed(b"toolong")
        with pytest.raises(ProtocolError):
            next(decoder.events([b"x"]))

    @pytest.mark.parametrize("bad", ["data: a\n\n", 5, None])
    def test_a_chunk_that_is_not_bytes_raises_type_error(self, bad: object) -> None:
        with pytest.raises(TypeError):
            list(SSEDecoder().events([b"data: a", bad]))  # type: ignore[list-item]

    def test_bytearray_and_memoryview_chunks(self) -> None:
        chunks = [bytearray(b"data: a"), memoryview(b"bc\n\n")]
        assert list(SSEDecoder().events(chunks)) == [ev("abc")]  # type: ignore[arg-type]

    @pytest.mark.parametrize("chunks", [
        [b"id: 7\nretry: 5\n\ndata: pa", b"r"],  # the line held by the decoder and here
        [b"id: 7\nretry: 5\n\ndata: par"],  # held by the decoder
        [b"id: 7\nretry: 5\n\n", b"data: ", b"par"],  # collected here, not yet fed
        [b"id: 7\nretry: 5\n\nevent: x\nid: 8\ndata: half\n", b"data: par"],  # an event
    ])
    def test_a_source_error_ends_the_stream_as_end_would(self, chunks: list[bytes]) -> None:
        # A reconnection reuses the decoder for its last_event_id: nothing of the lost
        # stream may be glued onto the new one ("data: par" + "data: new" -> "pardata: new").
        def source() -> Iterator[bytes]:
            yield from chunks
            raise ConnectionResetError("lost")

        decoder = SSEDecoder()
        with pytest.raises(ConnectionResetError):
            list(decoder.events(source()))
        assert decoder.unterminated_line == "data: par"
        assert (decoder.last_event_id, decoder.retry) == ("7", 5)
        assert list(decoder.events([b"data: new\n\n"])) == [ev("new", id="7")]

    def test_a_source_error_after_a_protocol_error_leaves_the_decoder_failed(self) -> None:
        def source() -> Iterator[bytes]:
            yield b"x" * 10
            raise ConnectionResetError("lost")

        decoder = SSEDecoder(max_line_bytes=4)
        with pytest.raises(ProtocolError):
            list(decoder.events(source()))
        assert decoder.state is DecoderState.ERROR
        with pytest.raises(ProtocolError):
            decoder.end()

    def test_closing_the_iterator_early_ends_nothing(self) -> None:
        decoder = SSEDecoder()
        items = decoder.events([b"data: a\n\ndata: b\n", b"\n"])
        assert next(items) == ev("a")
        items.close()
        assert decoder.feed(b"\n") == [ev("b")]

    def test_a_long_line_fed_byte_by_byte_is_joined_once(self) -> None:
        # Linear time: the incomplete line's pieces are joined when its line ending
        # arrives, not on every chunk.
        stream = [b"data: "] + [b"x"] * 100_000 + [b"\n\n"]
        decoder = SSEDecoder()
        calls: list[str] = []

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "c_call" and arg.__name__ == "join":
                calls.append("join")

        sys.setprofile(profile)
        try:
            out = list(decoder.events(stream))
        finally:
            sys.setprofile(None)
        assert out == [ev("x" * 100_000)]
        assert 1 <= len(calls) <= 3, len(calls)
