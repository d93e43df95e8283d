"""Why the SSE target "at least 0.9x the contract floor on chat" is out of reach: the contract
floor's own steps, done per 1460-byte chunk as an incremental decoder must, against the
contract floor, in one run.

    python3 benchmarks/incremental_floor.py

``incremental floor``: per chunk, the bytes held back and the chunk joined, cut at the
chunk's last blank line, decoded, split at the separators, one ``ServerSentEvent`` per
event -- no checks, limits or state beyond the held bytes (right for the chat corpora
only: one ``data:`` line per event). ``... without events``: the same, the events not
built. Both are checked against the corpus (the second by its data), then timed as
``bench_sse.py`` times parsers: best of N, garbage collector off, interleaved with the
contract floor in a rotating order. A decoder that honours the contract does at least
the first one's work.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parent), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_sse  # noqa: E402
import corpus  # noqa: E402
import peers  # noqa: E402

from alltoken.sse import ServerSentEvent, SSEDecoder  # noqa: E402


def incremental(chunks: list[bytes], sep: bytes, events: bool = True) -> list[Any]:
    between = (sep + b"data: ").decode()
    held = b""
    out: list[Any] = []
    for chunk in chunks:
        data = held + chunk if held else chunk
        end = data.rfind(sep)
        if end < 0:
            held = data
            continue
        held = data[end + len(sep):]
        values = data[:end].decode("utf-8", "replace").split(between)
        values[0] = values[0][6:]
        out += map(ServerSentEvent, values) if events else values
    return out


def alltoken(chunks: list[bytes]) -> list[Any]:
    decoder = SSEDecoder()
    out: list[Any] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def main(repeats: int = 30) -> None:
    for c in corpus.corpora()[:2]:  # chat LF, chat CRLF
        chunks = corpus.chunked(c.data, bench_sse.CHUNK)
        truth = [e[1] for e in c.events]
        assert [e.data for e in incremental(chunks, c.sep)] == truth, c.name
        assert incremental(chunks, c.sep, events=False) == truth, c.name
        timed: dict[str, Callable[[], object]] = {
            "contract floor": lambda chunks=chunks: peers.contract_floor(chunks),
            "incremental floor": lambda chunks=chunks, sep=c.sep: incremental(chunks, sep),
            "... without events": lambda chunks=chunks, sep=c.sep: incremental(
                chunks, sep, events=False),
            "alltoken": lambda chunks=chunks: alltoken(chunks),
        }
        best = dict.fromkeys(timed, math.inf)
        order = list(timed.items())
        for rnd in range(repeats):
            k = rnd % len(order)
            for name, fn in order[k:] + order[:k]:
                best[name] = min(best[name], bench_sse.time_once(fn))
        print(f"{c.name}: {len(chunks)} chunks of {bench_sse.CHUNK} bytes, {len(truth)} events")
        for name, t in best.items():
            print(f"  {name:<20} {t * 1e3:7.3f} ms  {best['contract floor'] / t:5.2f} x floor")


if __name__ == "__main__":
    main()
