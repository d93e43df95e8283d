"""Invariant: decoding an input in one feed or in any split gives the same events (or the
same ProtocolError), and nothing but ProtocolError ever escapes the decoder.

Run: ``bash fuzz/run.sh`` (all targets), or ``python fuzz/fuzz_sse.py CORPUS fuzz/seeds/sse``
in a venv with atheris. The fuzzer's input supplies the line limit, the cut points and
the stream bytes.
"""

from __future__ import annotations

import sys

try:
    import atheris
except ImportError:  # pragma: no cover - linting without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from alltoken import ProtocolError
        from alltoken.sse import SSEDecoder
else:  # pragma: no cover
    from alltoken import ProtocolError
    from alltoken.sse import SSEDecoder


def outcome(chunks: list[bytes], limit: int) -> object:
    decoder = SSEDecoder(max_line_bytes=limit)
    out: list[object] = []
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
        out += decoder.end()
    except ProtocolError:
        return "ProtocolError"
    return out, decoder.last_event_id, decoder.retry


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    limit = fdp.PickValueInList([4, 16, 256, 1 << 24])
    cuts = sorted(fdp.ConsumeIntInRange(0, 1 << 16) for _ in range(fdp.ConsumeIntInRange(0, 24)))
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    pieces, prev = [], 0
    for cut in cuts:
        cut %= len(stream) + 1
        if cut >= prev:
            pieces.append(stream[prev:cut])
            prev = cut
    pieces.append(stream[prev:])
    whole = outcome([stream], limit)
    split = outcome(pieces, limit)
    if whole != split:
        raise AssertionError(f"split changed the result: {pieces!r}\n{whole!r}\n{split!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
