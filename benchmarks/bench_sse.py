"""SSE parse throughput: alltoken.sse against a naive per-line loop, the peers' parsers,
and the limit row, in one run.

    python3 benchmarks/bench_sse.py            # stdlib only: alltoken, naive, limit
    python3 benchmarks/bench_sse.py --peers    # also the peers (installs them once into
                                               # benchmarks/.venv; never into alltoken)
    python3 benchmarks/bench_sse.py --quick    # fewer repeats (smoke)

Every parser gets the same chunks (1460 bytes, a TCP segment's payload) and must produce
the same events as alltoken; one that does not is reported WRONG, not timed. The limit
row is ``[e.removeprefix(b"data: ") for e in b"".join(chunks).split(sep)]``: splitting
the whole joined corpus in C, with no line handling, no decoding and no objects. Ratios
are against it, measured in the same run. Times are the best of N repeats with the
garbage collector off (the machine may be shared: best-of is the stable statistic).

The second table feeds large events one byte per call, at growing sizes, so a parser
that re-scans its buffer (quadratic) shows its fall; a run over the time budget stops
that parser's larger sizes.
"""

from __future__ import annotations

import argparse
import codecs
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

from alltoken.sse import ServerSentEvent, SSEDecoder  # noqa: E402

Events = list[tuple[str, str]]
Parser = Callable[[list[bytes]], Events]


def parse_alltoken(chunks: list[bytes]) -> Events:
    d = SSEDecoder()
    out = []
    for c in chunks:
        out += d.feed(c)
    out += d.end()
    return [(e.event, e.data) for e in out if type(e) is ServerSentEvent]


def parse_naive(chunks: list[bytes]) -> Events:
    """A tidy per-line loop: what a careful hand-written parser looks like."""
    buf = b""
    out: Events = []
    data: list[str] = []
    etype = ""
    for c in chunks:
        buf += c
        lines = buf.split(b"\n")
        buf = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line:
                if data:
                    out.append((etype or "message", "\n".join(data)))
                data, etype = [], ""
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                etype = value
    return out


def parse_limit(chunks: list[bytes], sep: bytes) -> list[bytes]:
    return [e.removeprefix(b"data: ") for e in b"".join(chunks).split(sep)]


def peer_parsers() -> dict[str, Parser]:
    parsers: dict[str, Parser] = {}
    try:
        from httpx_sse._decoders import SSEDecoder as HxDecoder
        from httpx_sse._decoders import SSELineDecoder

        def parse_httpx_sse(chunks: list[bytes]) -> Events:
            text = codecs.getincrementaldecoder("utf-8")("replace")
            lines, dec, out = SSELineDecoder(), HxDecoder(), []
            for c in chunks:
                for line in lines.decode(text.decode(c)):
                    sse = dec.decode(line)
                    if sse is not None:
                        out.append((sse.event or "message", sse.data))
            return out

        parsers["httpx-sse"] = parse_httpx_sse
    except ImportError:
        pass
    try:
        from openai._streaming import SSEDecoder as OpenAIDecoder

        def parse_openai(chunks: list[bytes]) -> Events:
            return [(e.event or "message", e.data)
                    for e in OpenAIDecoder().iter_bytes(iter(chunks))]

        parsers["openai"] = parse_openai
    except ImportError:
        pass
    try:
        import sseclient

        def parse_sseclient(chunks: list[bytes]) -> Events:
            return [(e.event or "message", e.data)
                    for e in sseclient.SSEClient(iter(chunks)).events()]

        parsers["sseclient-py"] = parse_sseclient
    except ImportError:
        pass
    try:
        from ld_eventsource.actions import Event as LdEvent
        from ld_eventsource.reader import _BufferedLineReader, _SSEReader

        def parse_launchdarkly(chunks: list[bytes]) -> Events:
            reader = _SSEReader(_BufferedLineReader.lines_from(iter(chunks)))
            return [(e.event, e.data) for e in reader.events_and_comments()
                    if isinstance(e, LdEvent)]

        parsers["launchdarkly"] = parse_launchdarkly
    except ImportError:
        pass
    return parsers


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    finally:
        gc.enable()
    return best


def throughput(parsers: dict[str, Parser], repeats: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    cases = [("chat LF", corpus.chat_stream(), b"\n\n"),
             ("chat CRLF", corpus.chat_stream(eol=b"\r\n"), b"\r\n\r\n"),
             ("large events", corpus.large_events(), b"\n\n")]
    for name, data, sep in cases:
        chunks = corpus.chunked(data)
        expected = parse_alltoken(chunks)
        limit = best_time(lambda c=chunks, s=sep: parse_limit(c, s), repeats)
        rows.append({"corpus": name, "parser": "limit row", "mb_s": len(data) / limit / 1e6,
                     "events_s": len(expected) / limit, "ratio": 1.0})
        for pname, parse in parsers.items():
            got = parse(chunks)
            if got != expected:
                why = f"{len(got)} events vs {len(expected)}"
                if len(got) == len(expected):
                    bad = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
                    why = f"event {bad} differs: {got[bad]!r:.60} vs {expected[bad]!r:.60}"
                rows.append({"corpus": name, "parser": pname, "wrong": why})
                continue
            t = best_time(lambda p=parse, c=chunks: p(c), repeats)  # type: ignore[misc]
            rows.append({"corpus": name, "parser": pname, "mb_s": len(data) / t / 1e6,
                         "events_s": len(expected) / t, "ratio": limit / t})
    return rows


def bytewise(parsers: dict[str, Parser], budget: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    sizes = (16384, 65536, 262144)
    for pname, parse in parsers.items():
        slow = False
        for size in sizes:
            data = corpus.large_event(size, line=size)  # one long data line
            chunks = [data[i : i + 1] for i in range(len(data))]
            if slow:
                rows.append({"parser": pname, "size": size, "skipped": "over budget"})
                continue
            t0 = time.perf_counter()
            got = parse(chunks)
            t = time.perf_counter() - t0
            ok = len(got) == 1 and len(got[0][1]) == size
            rows.append({"parser": pname, "size": size, "mb_s": len(data) / t / 1e6,
                         "ok": ok})
            slow = t > budget
    return rows


def print_tables(rows: list[dict[str, object]], byte_rows: list[dict[str, object]]) -> None:
    print(f"{'corpus':<14}{'parser':<14}{'MB/s':>9}{'events/s':>12}{'x limit':>9}")
    for r in rows:
        if "wrong" in r:
            print(f"{r['corpus']:<14}{r['parser']:<14}  WRONG: {r['wrong']}")
            continue
        print(f"{r['corpus']:<14}{r['parser']:<14}{r['mb_s']:>9.1f}{r['events_s']:>12,.0f}"
              f"{r['ratio']:>9.2f}")
    print("\none event fed 1 byte per feed (MB/s; falling with size = quadratic)")
    by_parser: dict[str, list[str]] = {}
    for r in byte_rows:
        cell = ("skipped" if "skipped" in r else
                f"{r['mb_s']:.2f}" + ("" if r["ok"] else " WRONG"))
        by_parser.setdefault(str(r["parser"]), []).append(cell)
    sizes = sorted({int(r["size"]) for r in byte_rows})  # type: ignore[call-overload]
    print(f"{'parser':<14}" + "".join(f"{s // 1024:>9} KiB" for s in sizes))
    for pname, cells in by_parser.items():
        print(f"{pname:<14}" + "".join(f"{c:>13}" for c in cells))


def ensure_peer_venv() -> Optional[str]:
    """The python of benchmarks/.venv with the peers installed, made on first use."""
    venv = HERE / ".venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = "import openai, httpx_sse, sseclient, ld_eventsource, requests"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        rc = subprocess.run([str(python), "-m", "pip", "install", "-q", "openai", "httpx",
                             "httpx-sse", "requests", "sseclient-py",
                             "launchdarkly-eventsource"]).returncode
        if rc != 0:
            return None
    return str(python)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench_sse", description=__doc__.split("\n")[0])
    p.add_argument("--peers", action="store_true", help="include the peers' parsers")
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--json", default=str(HERE / "results" / "sse.json"), help="output file")
    args = p.parse_args(argv)
    if args.peers and not os.environ.get("ALLTOKEN_BENCH_IN_VENV"):
        python = ensure_peer_venv()
        if python is None:
            print("peers could not be installed; running without them", file=sys.stderr)
        else:
            env = dict(os.environ, ALLTOKEN_BENCH_IN_VENV="1")
            return subprocess.run([python, __file__, *(argv or sys.argv[1:])],
                                  env=env).returncode
    parsers: dict[str, Parser] = {"alltoken": parse_alltoken, "naive loop": parse_naive}
    if args.peers:
        parsers.update(peer_parsers())
    repeats = 3 if args.quick else 15
    print(f"Python {sys.version.split()[0]}, {repeats} repeats, 1460-byte chunks\n")
    rows = throughput(parsers, repeats)
    byte_rows = bytewise(parsers, budget=0.5 if args.quick else 3.0)
    print_tables(rows, byte_rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": sys.version, "throughput": rows,
                               "bytewise": byte_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
