"""The client end to end: time to first token, abort latency, stream throughput and cold
start, each against a limit row measured in the same run.

    python3 benchmarks/bench_client.py           # about a minute
    python3 benchmarks/bench_client.py --quick

The server runs in its own process (``--serve``): a raw HTTP/1.1 server with chunked
encoding and one behaviour per path. Times that cross processes use CLOCK_MONOTONIC
(``time.monotonic_ns``), which is shared by all processes on Linux: the server puts the
moment it wrote an event *into* the event.

- **TTFT**: the server writes one event then waits for the client to hang up; the delay
  from its write to the client yielding it. Limit row: ``http.client`` + ``read1`` until
  the first ``\\n\\n``, no SSE parsing, no JSON.
- **abort**: the server sends headers and then nothing; another thread sets the signal;
  the delay from ``set()`` to the iteration raising ``AbortedError``; and whether the
  server then saw the connection close.
- **throughput**: the chat corpus of ``corpus.py`` (3,000 chunks) at full speed; chunks/s
  reading ``delta.content``, and CPU seconds per 1,000 chunks. Limit row: ``http.client``
  + ``read1`` + split + ``json.loads`` of each chunk.
- **cold start**: a fresh interpreter that imports and streams one short answer, against
  ``python -c "import http.client, json"`` (the floor) and a bare interpreter.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

# -- the server process ---------------------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _serve(port_file: str) -> None:
    body = corpus.chat_stream()
    pieces = corpus.chunked(body)
    listener = socket.create_server(("127.0.0.1", 0))
    Path(port_file).write_text(str(listener.getsockname()[1]))
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nx-request-id: bench\r\n\r\n")

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = conn.makefile("rb")
        with conn, f:
            while True:
                line = f.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                f.read(length)
                if path.endswith("/stream/chat/completions"):
                    conn.sendall(head)
                    for p in pieces:
                        conn.sendall(_chunk(p))
                    conn.sendall(b"0\r\n\r\n")
                    continue
                if path.endswith("/short/chat/completions"):
                    conn.sendall(head + _chunk(corpus.chat_stream(5)) + b"0\r\n\r\n")
                    continue
                conn.sendall(head)
                if path.endswith("/ttft/chat/completions"):
                    t = time.monotonic_ns()
                    event = b'data: {"t":%d,"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
                    conn.sendall(_chunk(event % t))
                # /ttft and /silent: say nothing more until the client hangs up
                conn.recv(1)
                return

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


class Server:
    def __init__(self) -> None:
        port_file = HERE / "results" / ".port"
        port_file.parent.mkdir(exist_ok=True)
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
        for _ in range(500):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.01)
        self.port = int(port_file.read_text())

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- measurements -----------------------------------------------------------------------


def ttft(server: Server, runs: int) -> dict[str, float]:
    import alltoken

    ours, limit = [], []
    msgs = [{"role": "user", "content": "hi"}]
    with alltoken.AllToken(api_key="k", base_url=server.url("ttft")) as client:
        for _ in range(runs):
            with client.chat.completions.create(model="m", messages=msgs, stream=True) as s:
                chunk = next(iter(s))
                now = time.monotonic_ns()
            ours.append((now - chunk.raw["t"]) / 1e6)
    for _ in range(runs):
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("POST", "/ttft/chat/completions", b"{}",
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        buf = b""
        while b"\n\n" not in buf:
            buf += resp.read1(65536)
        now = time.monotonic_ns()
        t = int(buf.split(b'"t":')[1].split(b",")[0])
        limit.append((now - t) / 1e6)
        conn.close()
    return {"ttft_p50_ms": pct(ours, 0.5), "ttft_p99_ms": pct(ours, 0.99),
            "limit_p50_ms": pct(limit, 0.5), "limit_p99_ms": pct(limit, 0.99)}


def abort(server: Server, runs: int) -> dict[str, float]:
    import alltoken

    latencies = []
    closed = 0
    msgs = [{"role": "user", "content": "hi"}]
    with alltoken.AllToken(api_key="k", base_url=server.url("silent")) as client:
        for _ in range(runs):
            signal = threading.Event()
            stream = client.chat.completions.create(model="m", messages=msgs, stream=True,
                                                    signal=signal)
            raised: list[int] = []

            def reader(s: alltoken.Stream = stream, raised: list[int] = raised) -> None:
                try:
                    for _ in s:
                        pass
                except alltoken.AbortedError:
                    raised.append(time.monotonic_ns())

            th = threading.Thread(target=reader)
            th.start()
            time.sleep(0.01)  # the reader is now blocked on a silent socket
            t_set = time.monotonic_ns()
            signal.set()
            th.join(5)
            latencies.append((raised[0] - t_set) / 1e6)
            closed += stream._state._conn is None
    return {"abort_p50_ms": pct(latencies, 0.5), "abort_p99_ms": pct(latencies, 0.99),
            "abort_max_ms": max(latencies), "sockets_closed": closed / runs}


def throughput(server: Server, repeats: int) -> dict[str, float]:
    import alltoken

    msgs = [{"role": "user", "content": "hi"}]

    def ours() -> int:
        n = 0
        with alltoken.AllToken(api_key="k", base_url=server.url("stream")) as client:
            s = client.chat.completions.create(model="m", messages=msgs, stream=True)
            for chunk in s:
                if chunk.choices and chunk.choices[0].delta.content:
                    n += 1
        return s.chunks

    def limit() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        conn.request("POST", "/stream/chat/completions", b"{}",
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        buf, n = b"", 0
        while data := resp.read1(65536):
            buf += data
            events = buf.split(b"\n\n")
            buf = events.pop()
            for e in events:
                if e.startswith(b"data: {"):
                    obj = json.loads(e[6:])
                    if obj["choices"] and obj["choices"][0]["delta"].get("content"):
                        pass
                    n += 1
        conn.close()
        return n

    out = {}
    for name, fn in (("limit", limit), ("alltoken", ours)):
        best_wall, best_cpu, n = float("inf"), float("inf"), 0
        for _ in range(repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            n = fn()
            w, c = time.perf_counter() - w0, time.process_time() - c0
            best_wall, best_cpu = min(best_wall, w), min(best_cpu, c)
        out[f"{name}_chunks_s"] = n / best_wall
        out[f"{name}_cpu_s_per_1000"] = best_cpu / n * 1000
    out["ratio"] = out["alltoken_chunks_s"] / out["limit_chunks_s"]
    return out


def cold_start(server: Server, runs: int) -> dict[str, float]:
    url = server.url("short")
    ours = ("import alltoken\n"
            f"s = alltoken.stream('hi', model='m', api_key='k', base_url={url!r})\n"
            "assert ''.join(s)\n")
    cases = {"bare": "pass", "floor": "import http.client, json", "alltoken": ours}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # An installed package has its .pyc files (pip compiles them); so must this one.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "alltoken")],
                   check=True)
    out = {}
    for name, code in cases.items():
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times.append((time.perf_counter() - t0) * 1000)
        out[f"{name}_ms"] = statistics.median(times)
    out["ratio_to_floor"] = out["alltoken_ms"] / out["floor_ms"]
    return out


def imported_modules() -> list[str]:
    code = ("import sys; before = set(sys.modules); import alltoken; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    return out.stdout.split()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench_client", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer runs")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--json", default=str(HERE / "results" / "client.json"), help="output file")
    args = p.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0
    runs = 30 if args.quick else 200
    server = Server()
    try:
        results = {
            "python": sys.version.split()[0],
            "ttft": ttft(server, runs),
            "abort": abort(server, runs),
            "throughput": throughput(server, 3 if args.quick else 10),
            "cold_start": cold_start(server, 5 if args.quick else 20),
        }
    finally:
        server.close()
    heavy = [m for m in imported_modules() if m.split(".")[0] in ("ssl", "_ssl", "asyncio")]
    results["heavy_imports"] = heavy  # type: ignore[assignment]
    r = results
    print(f"Python {r['python']}, {runs} runs")
    t = r["ttft"]
    print(f"time to first token  alltoken p50 {t['ttft_p50_ms']:.3f} ms  p99 "
          f"{t['ttft_p99_ms']:.3f} ms | limit p50 {t['limit_p50_ms']:.3f} ms  p99 "
          f"{t['limit_p99_ms']:.3f} ms | p50 difference "
          f"{t['ttft_p50_ms'] - t['limit_p50_ms']:+.3f} ms")
    a = r["abort"]
    print(f"abort latency        p50 {a['abort_p50_ms']:.2f} ms  p99 {a['abort_p99_ms']:.2f} ms"
          f"  max {a['abort_max_ms']:.2f} ms, socket closed in {a['sockets_closed']:.0%}")
    th = r["throughput"]
    print(f"stream throughput    alltoken {th['alltoken_chunks_s']:,.0f} chunks/s "
          f"({th['alltoken_cpu_s_per_1000']:.4f} CPU s/1000) | limit "
          f"{th['limit_chunks_s']:,.0f} chunks/s ({th['limit_cpu_s_per_1000']:.4f}) | "
          f"ratio {th['ratio']:.2f}")
    c = r["cold_start"]
    print(f"cold start (median)  bare {c['bare_ms']:.1f} ms | floor (http.client+json) "
          f"{c['floor_ms']:.1f} ms | alltoken import+stream {c['alltoken_ms']:.1f} ms | "
          f"x floor {c['ratio_to_floor']:.2f}")
    print(f"ssl/asyncio imported by 'import alltoken': {heavy or 'none'}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
