"""Regressions found by differential testing of ``alltoken.sse`` against a reference."""

from __future__ import annotations

from alltoken.sse import Comment, ServerSentEvent, SSEDecoder


def test_cr_followed_by_a_non_lf_byte_in_the_same_feed_does_not_eat_the_next_lf() -> None:
    # b"\r" then b"\x80:" in one feed: the CR is not the last byte fed, so an LF at the
    # start of the next feed is a line ending of its own, not the second half of CRLF.
    stream = b"\r\x80:\n:  : \n"
    whole = SSEDecoder().feed(stream)
    d = SSEDecoder()
    split = d.feed(stream[:3]) + d.feed(stream[3:6]) + d.feed(stream[6:])
    assert whole == split == [Comment(" : ")]


def test_leading_bom_does_not_count_toward_the_line_limit_however_it_is_split() -> None:
    # Found by fuzz/fuzz_sse.py: the BOM was counted while the first line was incomplete.
    stream = b"\xef\xbb\xbf: nt\ndata: x\n\n"
    expected = [Comment("nt"), ServerSentEvent("x")]
    assert SSEDecoder(max_line_bytes=8).feed(stream) == expected
    d = SSEDecoder(max_line_bytes=8)
    out = []
    for i in range(len(stream)):
        out += d.feed(stream[i : i + 1])
    assert out == expected


def test_an_empty_feed_between_cr_and_lf_keeps_them_one_line_ending() -> None:
    # Found by the round-trip property: b"" between b"\r" and b"\n" used to count as
    # pending line content, so the LF became a second (blank) line.
    d = SSEDecoder()
    out = d.feed(b"data: a\r") + d.feed(b"") + d.feed(b"\ndata: b\r\n\r\n")
    assert out == [ServerSentEvent("a\nb")]
    d.feed(b"")
    assert d._tail == []  # nor do empty feeds accumulate


def test_after_a_failure_even_an_empty_feed_raises() -> None:
    import pytest

    from alltoken import ProtocolError

    d = SSEDecoder(max_line_bytes=4)
    with pytest.raises(ProtocolError):
        d.feed(b"toolong")
    with pytest.raises(ProtocolError):
        d.feed(b"")


def test_feed_refuses_what_is_not_bytes_like() -> None:
    import pytest

    d = SSEDecoder()
    for bad in (5, "data: x\n", None, [10]):
        with pytest.raises(TypeError):
            d.feed(bad)  # type: ignore[arg-type]


def test_an_over_long_incomplete_line_after_fast_path_events_raises() -> None:
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


def test_fast_path_hands_complete_lines_after_the_last_blank_line_to_the_general_path() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\n\n") == [ServerSentEvent("a")]
    out = d.feed(b"data: b\n\n: cost\nevent: x\ndata: c\n")
    assert out == [ServerSentEvent("b"), Comment("cost")]
    assert d.feed(b"\n") == [ServerSentEvent("c", "x")]
    assert d.feed(b"id: 7\r\n\r\ndata: d\r\n\r\ndata: e\r\n\r\n") == [
        ServerSentEvent("d", id="7"), ServerSentEvent("e", id="7")]


def test_an_endless_event_of_short_data_lines_stays_within_a_few_times_its_limit() -> None:
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


def test_compacted_data_lines_still_join_with_line_feeds() -> None:
    d = SSEDecoder()
    lines = [f"line {i}" for i in range(5000)]
    stream = b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"
    assert d.feed(stream) == [ServerSentEvent("\n".join(lines))]
    d = SSEDecoder()
    out = []
    for i in range(0, len(stream), 7):
        out += d.feed(stream[i : i + 7])
    assert out == [ServerSentEvent("\n".join(lines))]


def test_an_over_long_line_is_refused_before_its_pieces_are_joined() -> None:
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
