"""Why the SSE target "at least 0.9x the contract floor on chat" is out of reach: the contract
floor's own steps, done per 1460-byte chunk as an incremental decoder must, against the
contract floor, in one run.

    python3 benchmarks/incremental_floor.py              # the heap warmed first
    python3 benchmarks/incremental_floor.py --cold-heap  # as the process starts

Rows, each checked against the corpus's truth before it is timed:

``incremental floor``: per chunk, the bytes held back and the chunk joined, cut at the
chunk's last blank line, decoded, split at the separators, one ``ServerSentEvent`` per
event -- no checks, limits or state beyond the held bytes (right for the chat corpora
only: one ``data:`` line per event). ``... without events``: the same, the events not
built.

``nothing checked``: the cheapest incremental reading found for these corpora -- per
chunk, the held bytes and the chunk joined and split once at each separator plus
``data: ``, the last piece held back, the others decoded and built with ``map``. It
looks at no line ending beyond the separators', holds no limit and keeps no state but the
held bytes, so it is a lower bound for any incremental decoder of these corpora: one that
honours the contract does at least this, and then looks at every line ending (a value
must hold none), at the limits and at the decoder's state.

``... by feed(), checked``: the same steps in a ``feed`` method called per chunk, plus the
one check no decoder may skip: that no value holds a CR or LF (the pieces joined, two
``in``). What is left between it and ``alltoken`` is the rest of the contract: the limits,
the decoder's state, 1-byte feeding, a feed that ends with an event, what is not the
common shape.

``... and some state``: the same, with the least of a decoder's state: whether it is
between events, the limit on a line's length, the last event ID.

``alltoken``: ``SSEDecoder.feed`` per chunk.

Timed as ``bench_sse.py`` times parsers: best of N, garbage collector off, interleaved with
the contract floor in a rotating order. ``faults`` is the number of minor page faults
(``getrusage``) during the fastest of a row's runs. The contract floor holds the whole
corpus, every piece of it and every event at once (about 3 MB); whether that memory is
mapped already depends on the heap the process has, and a run that maps it takes some
0.4-0.7 ms longer. So by default the heap is warmed first (``bench_sse.warm_heap``, as
``bench_sse.py`` does), and every row is timed with no fault; ``--cold-heap`` times them
in the heap the process starts with.
"""

from __future__ import annotations

import argparse
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


def nothing_checked(chunks: list[bytes], sep: bytes) -> list[ServerSentEvent]:
    between = sep + b"data: "
    # The first chunk's "data: " dropped once, outside the loop; every later piece held
    # back starts after a separator's "data: ".
    held = chunks[0][6:]
    out: list[ServerSentEvent] = []
    for chunk in chunks[1:]:
        pieces = (held + chunk).split(between)
        held = pieces.pop()
        out += map(ServerSentEvent, map(bytes.decode, pieces))
    out.append(ServerSentEvent(held[: held.index(sep)].decode()))  # [DONE]
    return out


class _Checked:
    """``nothing checked`` as a decoder's ``feed`` would do it, with the one check that
    a value may not go without: none holds a CR or LF (it would be more than one line)."""

    __slots__ = ("_between", "_held")

    def __init__(self, first: bytes, sep: bytes) -> None:
        self._between = sep + b"data: "
        self._held = first[6:]

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        pieces = (self._held + chunk).split(self._between)
        self._held = pieces.pop()
        joined = b"".join(pieces)
        if 10 in joined or 13 in joined:
            raise ValueError("not one line a value")
        return list(map(ServerSentEvent, map(bytes.decode, pieces)))


class _WithState(_Checked):
    """``_Checked`` with the least of a decoder's state besides the held bytes: the limit
    on a line's length, the last event ID, whether the decoder is between events."""

    __slots__ = ("_id", "_limit", "_open", "last_event_id")

    def __init__(self, first: bytes, sep: bytes) -> None:
        super().__init__(first, sep)
        self._open = True
        self._id = self.last_event_id = ""
        self._limit = 1 << 24

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not self._open:
            raise ValueError("not between events")
        held = self._held + chunk
        if len(held) > self._limit:
            raise ValueError("a line is too long")
        pieces = held.split(self._between)
        self._held = pieces.pop()
        joined = b"".join(pieces)
        if 10 in joined or 13 in joined:
            raise ValueError("not one line a value")
        self.last_event_id = self._id
        return list(map(ServerSentEvent, map(bytes.decode, pieces)))


def checked_by_feed(chunks: list[bytes], sep: bytes,
                    cls: type[_Checked] = _Checked) -> list[ServerSentEvent]:
    decoder = cls(chunks[0], sep)
    out: list[ServerSentEvent] = []
    for chunk in chunks[1:]:
        out += decoder.feed(chunk)
    held = decoder._held
    out.append(ServerSentEvent(held[: held.index(sep)].decode()))  # [DONE]
    return out


def alltoken(chunks: list[bytes]) -> list[Any]:
    decoder = SSEDecoder()
    out: list[Any] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold-heap", action="store_true",
                    help="do not warm the heap first (see the module's docstring)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    if not args.cold_heap:
        bench_sse.warm_heap()
    print(f"heap: {'as the process starts' if args.cold_heap else 'warmed'}")
    for c in corpus.corpora()[:2]:  # chat LF, chat CRLF
        chunks = corpus.chunked(c.data, bench_sse.CHUNK)
        truth = [e[1] for e in c.events]
        assert [e.data for e in incremental(chunks, c.sep)] == truth, c.name
        assert incremental(chunks, c.sep, events=False) == truth, c.name
        assert [e.data for e in nothing_checked(chunks, c.sep)] == truth, c.name
        assert [e.data for e in checked_by_feed(chunks, c.sep)] == truth, c.name
        assert [e.data for e in checked_by_feed(chunks, c.sep, _WithState)] == truth, c.name
        timed: dict[str, Callable[[], object]] = {
            "contract floor": lambda chunks=chunks: peers.contract_floor(chunks),
            "incremental floor": lambda chunks=chunks, sep=c.sep: incremental(chunks, sep),
            "... without events": lambda chunks=chunks, sep=c.sep: incremental(
                chunks, sep, events=False),
            "nothing checked": lambda chunks=chunks, sep=c.sep: nothing_checked(chunks, sep),
            "... by feed(), checked": lambda chunks=chunks, sep=c.sep: checked_by_feed(
                chunks, sep),
            "... and some state": lambda chunks=chunks, sep=c.sep: checked_by_feed(
                chunks, sep, _WithState),
            "alltoken": lambda chunks=chunks: alltoken(chunks),
        }
        best = dict.fromkeys(timed, math.inf)
        faults = dict.fromkeys(timed, 0)
        order = list(timed.items())
        for rnd in range(args.repeats):
            k = rnd % len(order)
            for name, fn in order[k:] + order[:k]:
                before = bench_sse.minor_faults()
                t = bench_sse.time_once(fn)
                if t < best[name]:
                    best[name], faults[name] = t, bench_sse.minor_faults() - before
        print(f"{c.name}: {len(chunks)} chunks of {bench_sse.CHUNK} bytes, {len(truth)} events")
        for name, t in best.items():
            print(f"  {name:<22} {t * 1e3:7.3f} ms  {best['contract floor'] / t:5.2f} x floor"
                  f"  {faults[name]:4d} faults")


if __name__ == "__main__":
    main()
