"""SSE parse throughput: alltoken.sse against a plain per-line loop, the peers' parsers,
the contract floor and the limit row, in one run.

    python3 benchmarks/bench_sse.py            # standard library only: alltoken, plain
                                               # loop, contract floor, limit row
    python3 benchmarks/bench_sse.py --peers    # also httpx-sse, openai, sseclient-py,
                                               # launchdarkly (installed once into
                                               # benchmarks/.venv; re-runs itself there)
    python3 benchmarks/bench_sse.py --quick    # fewer repeats, smaller budget (smoke)

Table 1 feeds each corpus of ``corpus.py`` (chat LF, chat CRLF, large events) in
1460-byte chunks to every parser. Each parser's events are first checked against the
corpus's truth, which alltoken must match too; a parser that differs is reported WRONG
with the first difference, and not timed. Then every parser, and the limit row
``[e.removeprefix(b"data: ") for e in b"".join(chunks).split(sep)]``, is timed: best of
N runs with ``time.perf_counter``, the garbage collector off during a run, a fresh parser
for each run, the runs interleaved across parsers so that all of them sample the same
moments of a shared machine, in an order rotated every round so that no parser always
follows the same one. ``x limit`` is the limit row's time over the parser's (1.00
would be as fast as one C-level split); ``x floor`` is the contract floor's time over the
parser's: the ``contract floor`` row (``peers.contract_floor``) does the least a decoder
bound by alltoken's contract must do for the corpus -- join, find the separators, decode,
build one ``ServerSentEvent`` per event, nothing else -- so ``x floor`` says how close a
real, incremental parser comes to that; ``x alltoken`` is alltoken's time over the
parser's (above 1: faster than alltoken).

Table 2 feeds one byte per call: the chat LF corpus, the large-events corpus, then one
event made of a single ``data:`` line of 16 KiB to 1 MiB. A parser that re-joins or
re-scans its buffer on every feed is quadratic: its rate falls as the event grows. Each
cell has a time budget (3 s; 0.5 s with ``--quick``): a run that would exceed it
(projected from the smaller sizes) is not started, one that does exceed it is stopped,
and either is shown as ``timed out``. ``growth`` gives the exponent k of time ~ size**k
over the one-line sizes measured (least squares on log-log; 1 = linear, 2 = quadratic),
or a lower bound for it from a run that was stopped. The ``call floor`` row is the least
one Python-level operation per byte can cost (``bytearray +=`` per byte, then one
split).

Results also go to ``benchmarks/results/sse.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import corpus  # noqa: E402
import peers  # noqa: E402

import alltoken  # noqa: E402

CHUNK = 1460
REPEATS, QUICK_REPEATS = 15, 3
BUDGET, QUICK_BUDGET = 3.0, 0.5
ONE_LINE_SIZES = (16384, 65536, 262144, 1048576)
BYTE_REPEATS = 5

Row = dict[str, Any]


# -- timing -------------------------------------------------------------------------------


def time_once(fn: Callable[[], object]) -> float:
    """Seconds for one call of *fn*, garbage collector off; its result is dropped after
    the clock stops."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        result = fn()
        t = time.perf_counter() - t0
    finally:
        gc.enable()
    del result
    return t


def minor_faults() -> int:
    """Minor page faults of this process so far (``getrusage``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


#: Kept for the life of the process by :func:`warm_heap`.
_KEPT: list[bytes] = []


def warm_heap(mib: int = 16) -> None:
    """Leave *mib* MiB of the small-object allocator's arenas mapped and free for later,
    and objects up to *mib* MiB taken from the heap rather than mapped one by one.

    A parser that holds much at once (the contract floor holds the whole corpus, every
    piece of it and every event: about 3 MB for chat) takes 0.4-0.7 ms longer on a run
    that has to map that memory first, and whether it has to depends on the heap that
    the runs before it left. Small objects are allocated here and freed, but one in each
    256 KiB, which keeps every arena of the allocator from being empty, and so mapped.
    """
    blocks = [bytes(200) + i.to_bytes(8, "little") for i in range((mib << 20) // 256)]
    _KEPT.extend(blocks[::1024])
    del blocks
    # Large objects (a large event's text) come from malloc, which maps each one over
    # its threshold afresh; freeing a mapped block of *mib* MiB raises the threshold
    # (glibc's is dynamic) to that size, so later ones come from, and go back to, the
    # heap.
    big = bytearray(mib << 20)
    del big


class _OverBudget(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _OverBudget


def _can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def time_capped(fn: Callable[[], Any], budget: float) -> tuple[Optional[float], Any]:
    """``(seconds, result)`` of one call of *fn* with the garbage collector off, or
    ``(None, None)`` when it ran longer than *budget* seconds (stopped by SIGALRM; where
    there is none, the call runs to its end and is then judged by its time)."""
    gc.collect()
    alarm = _can_alarm()
    old = signal.signal(signal.SIGALRM, _alarm) if alarm else None
    gc.disable()
    try:
        try:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, budget)
            t0 = time.perf_counter()
            try:
                result = fn()
                t = time.perf_counter() - t0
            finally:
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except _OverBudget:
            return None, None
    finally:
        gc.enable()
        if alarm:
            signal.signal(signal.SIGALRM, old)
    if t > budget:
        return None, None
    return t, result


# -- checking -----------------------------------------------------------------------------


def mismatch(got: list[Any], want: list[Any]) -> str:
    """A short reason why *got* is not *want*."""
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            for field, a, b in zip(("event", "data", "id"), g, w):
                if a != b:
                    return f"event {i}: {field} {a!r:.40} (want {b!r:.40})"
    return f"{len(got)} events (want {len(want)})"


def check(adapter: peers.Adapter, chunks: list[bytes], truth: list[Any]) -> Optional[str]:
    """None if *adapter* parses *chunks* into *truth*, else why not."""
    try:
        got = adapter.normalize(adapter.run(chunks))
    except Exception as exc:  # a parser that raises is WRONG, not fatal
        return f"raised {type(exc).__name__}: {exc}"[:100]
    return None if got == truth else mismatch(got, truth)


# -- table 1: throughput ------------------------------------------------------------------


def throughput(adapters: list[peers.Adapter], repeats: int) -> list[Row]:
    warm_heap()  # so that no parser's best run pays for mapping memory (warm_heap)
    rows: list[Row] = []
    for c in corpus.corpora():
        chunks = corpus.chunked(c.data, CHUNK)
        truth = list(c.events)
        info = {"corpus": c.name, "bytes": len(c.data), "events": len(truth),
                "chunks": len(chunks)}
        timed: dict[str, Callable[[], object]] = {
            "limit row": lambda chunks=chunks, sep=c.sep: peers.limit_row(chunks, sep)}
        wrong: dict[str, str] = {}
        for a in adapters:
            why = check(a, chunks, truth)
            if why is None:
                timed[a.name] = lambda run=a.run, chunks=chunks: run(chunks)
            else:
                wrong[a.name] = why
        best = dict.fromkeys(timed, math.inf)
        faults = dict.fromkeys(timed, 0)
        order = list(timed.items())
        for rnd in range(repeats):
            # Each round starts one parser further on: a parser timed right after the
            # same one every round inherits that one's memory state (after
            # launchdarkly's run on the large events, the first parser timed was 15-20%
            # slower than the same code timed second).
            k = rnd % len(order)
            for name, fn in order[k:] + order[:k]:
                before = minor_faults()
                t = time_once(fn)
                if t < best[name]:
                    best[name], faults[name] = t, minor_faults() - before
        for name in ["limit row", *(a.name for a in adapters)]:
            row: Row = {**info, "parser": name}
            if name in wrong:
                row["wrong"] = wrong[name]
            else:
                t = best[name]
                row.update(seconds=t, mb_s=len(c.data) / t / 1e6, events_s=len(truth) / t,
                           x_limit=best["limit row"] / t, page_faults=faults[name])
                if "contract floor" in best:
                    row["x_floor"] = best["contract floor"] / t
                if "alltoken" in best:
                    row["x_alltoken"] = best["alltoken"] / t
            rows.append(row)
    return rows


# -- table 2: 1-byte feeding --------------------------------------------------------------


def call_floor(chunks: list[bytes], sep: bytes) -> list[bytes]:
    """The least one Python-level operation per chunk can cost: ``bytearray +=`` each
    chunk, then one split. The floor row of table 2."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
    return bytes(buf).split(sep)


def bytewise(adapters: list[peers.Adapter], budget: float, repeats: int,
             sizes: tuple[int, ...]) -> list[Row]:
    """Table 2. For each parser, *repeats* rounds over the cases (each case once a round,
    so that a burst of load elsewhere spreads over the sizes); a cell's runs stay within
    *budget* seconds, and a case is not started when the smaller ones project it over."""
    cases = [corpus.chat_corpus(), corpus.large_corpus(),
             *(corpus.one_line_corpus(s) for s in sizes)]
    fed = [(c, corpus.chunked(c.data, 1)) for c in cases]
    entries: list[tuple[str, Callable[[list[bytes], bytes], Any],
                        Optional[Callable[[Any], Any]]]] = [
        ("call floor", call_floor, None),
        *((a.name, lambda ch, sep, run=a.run: run(ch), a.normalize) for a in adapters),
    ]
    out: list[Row] = []
    for name, run, normalize in entries:
        rows = [{"parser": name, "case": c.name, "bytes": len(c.data)} for c, _ in fed]
        spent = [0.0] * len(fed)
        best = [math.inf] * len(fed)
        for rnd in range(repeats):
            measured: list[tuple[int, float]] = []  # (bytes, best seconds), one-line cases
            stopped = ""
            for i, (c, chunks) in enumerate(fed):
                row = rows[i]
                one_line = c.name.startswith("one line")
                if rnd == 0:
                    if one_line and stopped:
                        row.update(status="timed out", why=stopped)
                        continue
                    if one_line and measured:
                        k = max(1.0, _exponent(measured[-2:]) or 1.0)
                        (s0, t0) = measured[-1]
                        projected = t0 * (len(c.data) / s0) ** k
                        if projected > budget:
                            stopped = f"projected {projected:.1f} s > {budget:g} s budget"
                            row.update(status="timed out", why=stopped)
                            continue
                elif row["status"] != "ok" or spent[i] + best[i] > budget:
                    continue
                t, result = time_capped(lambda run=run, ch=chunks, sep=c.sep: run(ch, sep),
                                        budget - spent[i])
                if t is None:
                    if rnd == 0:
                        row.update(status="timed out", why=f"stopped at the {budget:g} s "
                                   "budget")
                        if one_line:
                            stopped = f"a smaller size ran over the {budget:g} s budget"
                            row["bound"] = True
                    continue
                if rnd == 0:
                    got = normalize(result) if normalize is not None else None
                    if got is not None and got != list(c.events):
                        row.update(status="wrong", wrong=mismatch(got, list(c.events)))
                        continue
                    row["status"] = "ok"
                del result
                spent[i] += t
                best[i] = min(best[i], t)
                row.update(seconds=best[i], mb_s=len(c.data) / best[i] / 1e6, runs=rnd + 1)
                if one_line:
                    measured.append((len(c.data), best[i]))
        points = [(r["bytes"], r["seconds"]) for r in rows
                  if r["case"].startswith("one line") and r["status"] == "ok"]
        bound = next(((r["bytes"], budget) for r in rows if r.get("bound")), None)
        k_min = _exponent([points[-1], bound]) if points and bound else None
        out += rows
        out.append({"parser": name, "case": "growth", "k": _exponent(points),
                    "k_at_least": k_min,
                    "timed_out": any(r["status"] == "timed out" for r in rows
                                     if r["case"].startswith("one line"))})
    return out


def _exponent(points: list[tuple[int, float]]) -> Optional[float]:
    """k in time ~ size**k: the least-squares slope of log time over log size."""
    if len(points) < 2:
        return None
    xs = [math.log(s) for s, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
            / sum((x - mx) ** 2 for x in xs))


def growth(r: Row) -> str:
    """A growth row in words: linear, superlinear or QUADRATIC, and the exponent."""
    k, k_min = r["k"], r["k_at_least"]
    if k_min is not None and (k is None or k_min > k):
        # The run that was stopped tells more than the smaller sizes: a lower bound.
        word = "QUADRATIC" if k_min >= 1.6 else "superlinear" if k_min >= 1.25 else "slow"
        return f"{word} (k>{k_min:.2f}), timed out"
    if k is None:
        return "timed out" if r["timed_out"] else "-"
    word = "linear" if k < 1.25 else "QUADRATIC" if k >= 1.6 else "superlinear"
    return f"{word} (k={k:.2f})" + (", timed out" if r["timed_out"] else "")


# -- output -------------------------------------------------------------------------------


def print_report(meta: dict[str, Any], rows: list[Row], byte_rows: list[Row]) -> None:
    print(f"SSE parse benchmark: Python {meta['python']} ({meta['implementation']}), "
          f"{meta['platform']}, {meta['cpus']} CPUs, alltoken {meta['alltoken']}")
    print(f"Best of {meta['repeats']} runs per parser, gc off during a run, a fresh parser "
          "each run, runs interleaved across parsers (order rotated each round).\nThe machine "
          "may be shared: absolute figures are noisy; ratios within one run are the stable "
          "part.\n")
    print(f"Table 1 - parse throughput, {CHUNK}-byte chunks (x limit: the limit row's time "
          "over the parser's;\nx floor: the contract floor's; x alltoken: alltoken's time over "
          "the parser's)")
    head = (f"  {'parser':<18}{'MB/s':>9}{'events/s':>13}{'x limit':>10}{'x floor':>9}"
            f"{'x alltoken':>12}")
    current = None
    for r in rows:
        if r["corpus"] != current:
            current = r["corpus"]
            print(f"\n{current}: {r['bytes']:,} bytes, {r['events']:,} events, "
                  f"{r['chunks']:,} chunks")
            print(head)
        if "wrong" in r:
            print(f"  {r['parser']:<18}  WRONG: {r['wrong']}")
            continue
        xa = f"{r['x_alltoken']:.2f}" if "x_alltoken" in r else "-"
        xf = f"{r['x_floor']:.2f}" if "x_floor" in r else "-"
        print(f"  {r['parser']:<18}{r['mb_s']:>9.1f}{r['events_s']:>13,.0f}"
              f"{r['x_limit']:>10.2f}{xf:>9}{xa:>12}")
    faulted = [f"{r['parser']} ({r['corpus']}): {r['page_faults']}" for r in rows
               if r.get("page_faults")]
    if faulted:
        print("  Minor page faults in a best run (its time includes mapping memory): "
              + ", ".join(faulted))

    n = meta["byte_repeats"]
    print(f"\nTable 2 - 1-byte feeding: one feed per byte, MB/s (best of up to {n} "
          f"run{'s' if n != 1 else ''} within {meta['budget_s']:g} s a cell)")
    cases = list(dict.fromkeys(r["case"] for r in byte_rows if r["case"] != "growth"))
    labels = [c.replace("one line ", "") + (" line" if c.startswith("one") else "")
              for c in cases]
    print(f"  {'parser':<18}" + "".join(f"{lab:>14}" for lab in labels) + "   growth")
    by_parser: dict[str, list[Row]] = {}
    for r in byte_rows:
        by_parser.setdefault(r["parser"], []).append(r)
    for name, prow in by_parser.items():
        cells = []
        verdict = ""
        for r in prow:
            if r["case"] == "growth":
                verdict = growth(r) if name != "call floor" else ""
            elif r["status"] == "ok":
                cells.append(f"{r['mb_s']:.2f}")
            elif r["status"] == "wrong":
                cells.append("WRONG")
            else:
                cells.append("timed out")
        print(f"  {name:<18}" + "".join(f"{c:>14}" for c in cells) + f"   {verdict}")
    for r in byte_rows:
        if r.get("status") == "wrong":
            print(f"  WRONG: {r['parser']} on {r['case']}: {r['wrong']}")
    if meta["peers_missing"]:
        print("\nPeers not measured:")
        for name, why in meta["peers_missing"].items():
            print(f"  {name}: {why}")
    if meta["peer_versions"]:
        print("\nPeers: " + ", ".join(meta["peer_versions"]))


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark; *argv* as on the command line. Returns the exit status."""
    args_in = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="bench_sse", description=__doc__.split("\n")[0])
    p.add_argument("--peers", action="store_true",
                   help="include the peers' parsers (installs them into benchmarks/.venv "
                        "once and re-runs there)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller budget")
    p.add_argument("--repeats", type=int, help=f"runs per parser (default {REPEATS})")
    p.add_argument("--budget", type=float,
                   help=f"seconds per 1-byte-feeding cell (default {BUDGET:g})")
    p.add_argument("--json", default=str(HERE / "results" / "sse.json"),
                   help="where to write the results (default: %(default)s)")
    args = p.parse_args(args_in)

    note = ""
    if args.peers and not peers.in_venv():
        vpy = peers.setup()
        if vpy is not None:
            print(f"(re-running under {vpy})\n", flush=True)
            return subprocess.run([str(vpy), str(Path(__file__).resolve()), *args_in]
                                  ).returncode
        note = "the peers' venv could not be built: running without peers"
        print(f"bench_sse: {note}", file=sys.stderr)
        args.peers = False

    repeats = args.repeats or (QUICK_REPEATS if args.quick else REPEATS)
    budget = args.budget or (QUICK_BUDGET if args.quick else BUDGET)
    sizes = ONE_LINE_SIZES[:3] if args.quick else ONE_LINE_SIZES
    adapters, missing = peers.adapters(peers=args.peers)
    if not args.peers:
        missing = {"all": note or "not requested (--peers)"}
    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "alltoken": alltoken.__version__,
        "repeats": repeats,
        "byte_repeats": 1 if args.quick else BYTE_REPEATS,
        "budget_s": budget,
        "chunk_bytes": CHUNK,
        "peer_versions": [a.version for a in adapters if a.version],
        "peers_missing": missing,
    }
    rows = throughput(adapters, repeats)
    byte_rows = bytewise(adapters, budget, meta["byte_repeats"], sizes)
    print_report(meta, rows, byte_rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "throughput": rows, "bytewise": byte_rows},
                              indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
