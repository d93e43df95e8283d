"""Invariant: decoding a stream in one feed or in any split gives the same events,
last_event_id, retry and unterminated_line (or the same ProtocolError), and nothing but
ProtocolError escapes.

Also checked on every input: decoding byte by byte agrees too (for streams up to 64
bytes), and so does ``SSEDecoder.events`` over the same pieces; items are well-typed;
``end()`` returns nothing (the spec discards the final unterminated line) and leaves that
line's text in ``unterminated_line``; a failed decoder stays failed.

An input is the stream followed by control bytes, which atheris' FuzzedDataProvider reads
from the end: the line limit (small ones, so the limit paths are fuzzed, or the default),
how much more the event limit allows, and up to eight piece sizes that are cycled over
the stream to cut it (0 is an empty feed; no sizes means byte by byte).

Run: ``bash fuzz/run.sh``, or in a venv with atheris
``python fuzz/fuzz_sse.py -max_total_time=60 fuzz/corpus/sse fuzz/seeds/sse``.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Union

try:
    import atheris
except ImportError:  # pragma: no cover - linting and importing without atheris
    atheris = None

if atheris is not None:
    # Coverage feedback from the tokenizer only, not from the client it ships with.
    with atheris.instrument_imports(include=["alltoken.sse"]):
        from alltoken import ProtocolError
        from alltoken.sse import Comment, DecoderState, ServerSentEvent, SSEDecoder
else:  # pragma: no cover
    from alltoken import ProtocolError
    from alltoken.sse import Comment, DecoderState, ServerSentEvent, SSEDecoder

#: None is the default limit (16 MiB), which a fuzz input never reaches.
LINE_LIMITS: list[Optional[int]] = [None, 1, 2, 3, 4, 5, 8, 16, 64]
BYTEWISE_UP_TO = 64

Outcome = Union[tuple[list[Any], str, Optional[int], str], str]
BOM = b"\xef\xbb\xbf"


def plan(data: bytes) -> tuple[bytes, dict[str, int], list[bytes]]:
    """Split a fuzz input into the stream, the decoder's limits and the pieces."""
    fdp = atheris.FuzzedDataProvider(data)
    line = fdp.PickValueInList(LINE_LIMITS)
    extra = fdp.ConsumeIntInRange(0, 255)
    sizes = [fdp.ConsumeIntInRange(0, 255) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    limits = {} if line is None else {"max_line_bytes": line, "max_event_bytes": line + extra}
    if not any(sizes):
        return stream, limits, [stream[i : i + 1] for i in range(len(stream))]
    pieces, at, k = [], 0, 0
    while at < len(stream):
        size = sizes[k % len(sizes)]
        pieces.append(stream[at : at + size])
        at += size
        k += 1
    return stream, limits, pieces


def decode(stream: bytes, pieces: list[bytes], limits: dict[str, int]) -> Outcome:
    """Feed *pieces* (which join to *stream*), end, and check what can be checked alone."""
    decoder = SSEDecoder(**limits)
    out: list[Any] = []
    try:
        for piece in pieces:
            out += decoder.feed(piece)
        left = decoder.end()
    except ProtocolError:
        if decoder.state is not DecoderState.ERROR:
            raise AssertionError("ProtocolError raised, decoder not in ERROR") from None
        for again in (decoder.end, lambda: decoder.feed(b""), lambda: decoder.feed(b"\n")):
            try:
                again()
            except ProtocolError:
                continue
            raise AssertionError("a failed decoder accepted more input") from None
        return "ProtocolError"
    if left:
        raise AssertionError(f"end() returned {left!r}")
    raw = stream[len(BOM) :] if stream.startswith(BOM) else stream
    last = raw[max(raw.rfind(b"\n"), raw.rfind(b"\r")) + 1 :].decode("utf-8", "replace")
    if decoder.unterminated_line != last:
        raise AssertionError(f"unterminated_line {decoder.unterminated_line!r}, want {last!r}")
    for item in out:
        fields = (item.text,) if isinstance(item, Comment) else (
            item.data, item.event, item.id)
        if not isinstance(item, (Comment, ServerSentEvent)) or not all(
                type(f) is str for f in fields):
            raise AssertionError(f"ill-typed item {item!r}")
    return out, decoder.last_event_id, decoder.retry, decoder.unterminated_line


def decode_events(pieces: list[bytes], limits: dict[str, int]) -> Outcome:
    """The same through ``SSEDecoder.events``."""
    decoder = SSEDecoder(**limits)
    try:
        out = list(decoder.events(pieces))
    except ProtocolError:
        return "ProtocolError"
    return out, decoder.last_event_id, decoder.retry, decoder.unterminated_line


def test_one_input(data: bytes) -> None:
    stream, limits, pieces = plan(data)
    whole = decode(stream, [stream], limits)
    split = decode(stream, pieces, limits)
    if split != whole:
        raise AssertionError(
            f"the split changed the result\nlimits={limits}\npieces={pieces!r}\n"
            f"whole: {whole!r}\nsplit: {split!r}")
    through_events = decode_events(pieces, limits)
    if through_events != whole:
        raise AssertionError(
            f"events() changed the result\nlimits={limits}\npieces={pieces!r}\n"
            f"whole: {whole!r}\nevents(): {through_events!r}")
    if len(stream) <= BYTEWISE_UP_TO:
        bytewise = decode(stream, [stream[i : i + 1] for i in range(len(stream))], limits)
        if bytewise != whole:
            raise AssertionError(
                f"byte-by-byte feeding changed the result\nlimits={limits}\n"
                f"stream={stream!r}\nwhole: {whole!r}\nbytewise: {bytewise!r}")


def main() -> None:
    if atheris is None:
        sys.exit("fuzz_sse.py needs atheris: pip install -e '.[fuzz]' (or bash fuzz/run.sh)")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
