"""The benchmark suite: alltoken side by side with its peers and a limit row, in one run.

    python3 benchmarks/run.py            # full run (about 8 to 10 minutes on 2 cores)
    python3 benchmarks/run.py --quick    # smoke run (about 3 to 4 minutes)
    python3 benchmarks/run.py --no-peers # standard library only: alltoken and the limit rows

Builds (once) and re-runs itself under ``benchmarks/.venv``, which holds the peers
(``openai``, ``httpx`` + ``httpx-sse``, ``requests`` + ``sseclient-py``,
``launchdarkly-eventsource``); alltoken is always imported from this checkout. One
server process (``server.py``) serves every client the same generated chat stream over
loopback, HTTP/1.1 with chunked encoding, over plain HTTP and, on a second port, over TLS.
Measured, each against a baseline of the same run:

1. SSE parse throughput (``bench_sse.py``, with its correctness check);
2. end-to-end stream throughput, chunks/s and CPU s per 1,000 chunks, each client's text
   checked against the corpus (limit row: ``http.client`` + ``read1`` + split +
   ``json.loads``), over HTTP and over HTTPS: a throwaway CA and a certificate for
   127.0.0.1 made at run time (``certs.py``) into a temporary directory, the CA passed to
   every client explicitly, verification on (skipped, with the reason, when no
   certificate can be made);
3. time to first token, server write to client yield, p50/p99;
4. abort latency, ``signal.set()`` (or the peer's nearest equivalent) to the iteration
   ending, p50/p99, and whether the socket was closed;
5. cold start of a fresh ``python -c``: ``import alltoken`` against the floor
   ``import http.client, json, ssl, threading, dataclasses``, each program ending with
   ``os._exit(0)`` as its import returns (the target), and again with a normal exit (the
   interpreter's teardown included); and, per client, importing it and streaming one
   short answer, exit included, against the limit row doing the same with
   ``http.client`` + ``json``;
6. peak RSS streaming a long answer at two lengths, and the growth per chunk beyond the
   text the client holds;
7. concurrency (``concurrency.py``): 1, 100 and 1,000 streams in one process sharing one
   client, a thread each: idle CPU while they wait (with and without abort signals), peak
   RSS per stream, aggregate chunks/s, abort latency of all at once and of one of 1,000,
   threads and fds after (alltoken, openai, httpx-sse).

Prints one table, writes ``benchmarks/results/latest.json`` and the bar chart
``benchmarks/performance.svg``. Where alltoken misses a target, the run profiles it and
prints the top findings. See ``benchmarks/README.rst``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import cProfile
import datetime
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)  # ROOT first: the alltoken of this checkout, never an installed one

import bench_sse  # noqa: E402
import certs  # noqa: E402
import clients  # noqa: E402
import concurrency  # noqa: E402
import peers  # noqa: E402
from server import TTFT_GAP, TTFT_PAUSE, Server  # noqa: E402

import alltoken  # noqa: E402

RESULTS = HERE / "results"
SVG = HERE / "performance.svg"
#: Column order of the table and the chart.
ORDER = ["limit", "alltoken", "alltoken events()", "openai", "httpx-sse", "sseclient-py",
         "launchdarkly", "plain loop"]
#: bench_sse's parser names are the same as the client names (the parse-only ``plain
#: loop`` has no client; the parse limit row is ``limit row``).
PARSER_COLUMN = {"limit row": "limit"}
#: Bytes a chunk of memory growth over the limit row's that still count as none.
MEMORY_SLACK = 8.0
#: Part 2's results keys, with their transport.
E2E_PARTS = (("e2e", "http"), ("e2e_tls", "https"))


class Settings:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.e2e_repeats = 3 if quick else 15
        self.ttft_runs = 20 if quick else 150
        self.abort_trials = 8 if quick else 50
        self.cold_runs = 3 if quick else 21
        self.memory_lengths = (5000, 50000) if quick else (20000, 200000)


def log(msg: str) -> None:
    print(f"[run] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The nearest-rank *q* quantile."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:100]


# -- 2. end-to-end throughput ---------------------------------------------------------------


def throughput(cs: list[clients.Client], repeats: int) -> dict[str, dict[str, Any]]:
    want, n_json = clients.expected_text(3000)
    out: dict[str, dict[str, Any]] = {}
    timed = []
    for c in cs:
        try:
            r = c.stream("stream")
        except Exception as exc:  # a client that fails is reported, not fatal
            out[c.name] = {"wrong": f"raised {_err(exc)}"}
            continue
        if r.text != want:
            out[c.name] = {"wrong": f"text {len(r.text)} chars, want {len(want)}"
                                    f"{', differs' if len(r.text) == len(want) else ''}"}
            continue
        out[c.name] = {"chunks": r.chunks, "walls": [], "cpus": []}
        timed.append(c)
    for rep in range(repeats):
        order = timed[rep % len(timed):] + timed[:rep % len(timed)] if timed else []
        for c in order:
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            r = c.stream("stream")
            w, cpu = time.perf_counter() - w0, time.process_time() - c0
            row = out[c.name]
            if r.text != want and "wrong" not in row:
                row["wrong"] = f"run {rep + 1}: text {len(r.text)} chars, want {len(want)}"
            row["walls"].append(w)
            row["cpus"].append(cpu)
    limit = out.get("limit", {})
    for row in out.values():
        if "walls" not in row or "wrong" in row:
            continue
        best, cpu = min(row["walls"]), min(row["cpus"])
        row.update(best_s=best, median_s=statistics.median(row["walls"]),
                   chunks_s=n_json / best, cpu_s_per_1000=cpu / n_json * 1000,
                   json_chunks=n_json)
        if "best_s" in limit:
            row["x_limit"] = limit["best_s"] / best
    return out


def unverified(tls_base: str, names: list[str]) -> list[str]:
    """The clients that stream from the TLS port without being given its CA (none should:
    the server's certificate is signed by a throwaway CA that only they are told of)."""
    cs, _ = clients.make_clients(tls_base, names)
    out = []
    for c in cs:
        try:
            c.stream("short")
        except Exception:  # refused the certificate, as it must
            pass
        else:
            out.append(c.name)
        c.close()
    return out


# -- 3. time to first token -----------------------------------------------------------------


def ttft(cs: list[clients.Client], runs: int) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[float]] = {c.name: [] for c in cs}
    failed: dict[str, str] = {}
    for i in range(runs):
        for c in cs[i % len(cs):] + cs[:i % len(cs)]:
            if c.name in failed:
                continue
            try:
                t_write, t_yield = c.first("ttft")
            except Exception as exc:  # reported per client
                failed[c.name] = _err(exc)
                continue
            samples[c.name].append((t_yield - t_write) / 1e6)
    out: dict[str, dict[str, Any]] = {}
    for name, ms in samples.items():
        if name in failed or not ms:
            out[name] = {"failed": failed.get(name, "no sample")}
            continue
        out[name] = {"p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "max_ms": max(ms),
                     "runs": len(ms)}
    if "p50_ms" in out.get("limit", {}):
        for row in out.values():
            if "p50_ms" in row:
                row["p50_minus_limit_ms"] = row["p50_ms"] - out["limit"]["p50_ms"]
    return out


# -- 4. abort -------------------------------------------------------------------------------


def _abort_trial(c: clients.Client, server: Server, key: str) -> dict[str, Any]:
    a = c.silent(f"silent-{key}")
    ended: list[tuple[str, int]] = []

    def reader() -> None:
        try:
            a.iterate()
            ended.append(("ended", time.monotonic_ns()))
        except BaseException as exc:
            ended.append((type(exc).__name__, time.monotonic_ns()))

    started: list[int] = []

    def aborter() -> None:
        started.append(time.monotonic_ns())  # the clock starts in the aborting thread
        a.abort()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    time.sleep(0.01)  # the reader is now blocked on a silent socket
    other = threading.Thread(target=aborter, daemon=True)
    other.start()
    th.join(clients.ABORT_TIMEOUT + 3)
    other.join(1)
    t_set = started[0]
    closed = None
    deadline = time.monotonic() + 0.3
    while closed is None and time.monotonic() < deadline:
        closed = server.closed_ns(key)
        if closed is None:
            time.sleep(0.005)
    try:
        a.cleanup()
    except Exception:  # cleanup after an abort may complain; the trial is what counts
        pass
    if not ended:
        return {"outcome": "hung", "ms": None, "closed_ms": None}
    how, t_end = ended[0]
    return {"outcome": how, "ms": (t_end - t_set) / 1e6,
            "closed_ms": None if closed is None else (closed - t_set) / 1e6}


def abort(cs: list[clients.Client], server: Server, trials: int, give_up: int = 3
          ) -> dict[str, dict[str, Any]]:
    """Interleaved trials; a client whose reader is not woken (it ends only at the read
    timeout, or not at all) *give_up* times running is not tried further."""
    out: dict[str, dict[str, Any]] = {c.name: {"how": c.abort_how, "trials": []} for c in cs}
    given_up: set[str] = set()
    timeout_ms = clients.ABORT_TIMEOUT * 1000
    for i in range(trials):
        for c in cs:
            if c.name in given_up:
                continue
            try:
                t = _abort_trial(c, server, f"{c.name}-{i}")
            except Exception as exc:  # the client could not even open the stream
                out[c.name]["failed"] = _err(exc)
                given_up.add(c.name)
                continue
            out[c.name]["trials"].append(t)
            recent = out[c.name]["trials"][-give_up:]
            if len(recent) == give_up and all(r["ms"] is None or r["ms"] > 0.9 * timeout_ms
                                        for r in recent):
                given_up.add(c.name)
    for row in out.values():
        ts = row.pop("trials")
        row["runs"] = len(ts)
        if not ts:
            continue
        woken = [t for t in ts if t["ms"] is not None and t["ms"] < 0.9 * timeout_ms]
        outcomes: dict[str, int] = {}
        for t in ts:
            outcomes[t["outcome"]] = outcomes.get(t["outcome"], 0) + 1
        row["outcomes"] = outcomes
        row["woken"] = len(woken)
        ms = [t["ms"] for t in ts if t["ms"] is not None]
        if len(woken) == len(ts):
            row.update(p50_ms=pct(ms, 0.5), p99_ms=pct(ms, 0.99), max_ms=max(ms))
        else:
            row["verdict"] = (f"not woken in {len(ts) - len(woken)} of {len(ts)} runs: the "
                              f"iteration ended only at the {clients.ABORT_TIMEOUT:g} s read "
                              "timeout" + ("" if ms else " or never"))
            if ms:
                row["max_ms"] = max(ms)
        closed = [t["closed_ms"] for t in ts if t["closed_ms"] is not None]
        row["closed"] = len(closed)
        row["closed_early"] = sum(1 for x in closed if x < 0.9 * timeout_ms)
        if closed:
            row["closed_p50_ms"] = pct(closed, 0.5)
    return out


# -- 5. cold start --------------------------------------------------------------------------


def compile_all() -> None:
    """Bytecode for alltoken and for every installed package, as pip leaves it."""
    dirs = [ROOT / "alltoken", Path(sysconfig.get_paths()["purelib"])]
    for d in dirs:
        if d.is_dir():
            compileall.compile_dir(str(d), quiet=1, workers=0)


def cold_start(server: Server, names: list[str], runs: int) -> dict[str, dict[str, Any]]:
    host, port = "127.0.0.1", server.port
    text, _ = clients.expected_text(5)
    cases = {"bare": "pass"}
    for name, code in clients.COLD.items():
        # "alltoken import" belongs to the alltoken column
        if name.startswith("floor") or name.split(" ")[0] in names:
            cases[name] = code.format(url=server.url("short"), text=text, host=host, port=port)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    where = subprocess.run([sys.executable, "-c", "import alltoken; print(alltoken.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    times: dict[str, list[float]] = {k: [] for k in cases}
    failed: dict[str, str] = {}
    for name, code in cases.items():  # one untimed run each: checks the program, warms caches
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            failed[name] = (r.stderr.strip().splitlines() or ["failed"])[-1][:100]
    for i in range(runs):
        order = [k for k in cases if k not in failed]
        random.Random(i).shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", cases[name]], env=env, check=True)
            times[name].append((time.perf_counter() - t0) * 1000)
    out: dict[str, dict[str, Any]] = {"_meta": {"alltoken_file": where, "runs": runs}}
    for name in cases:
        if name in failed:
            out[name] = {"failed": failed[name]}
            continue
        out[name] = {"median_ms": statistics.median(times[name]), "best_ms": min(times[name])}
    # The import-only program against the floor; the programs that also stream one answer
    # against the limit row's.
    for base, rows in (("floor", ["alltoken import"]),
                       ("floor (exit included)", ["alltoken import (exit included)"]),
                       ("limit", [*names])):
        ref = out.get(base, {})
        for name in rows:
            row = out.get(name, {})
            if "median_ms" in row and "median_ms" in ref:
                key = "x_limit" if base == "limit" else "x_floor"
                row[key] = row["median_ms"] / ref["median_ms"]
                row[f"{key}_best"] = row["best_ms"] / ref["best_ms"]
    return out


def heavy_imports() -> list[str]:
    code = ("import sys; before = set(sys.modules); import alltoken; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    return [m for m in r.stdout.split() if m.split(".")[0] in ("ssl", "_ssl", "asyncio")]


# -- 6. memory ------------------------------------------------------------------------------


def memory(server: Server, names: list[str], lengths: tuple[int, int]
           ) -> dict[str, dict[str, Any]]:
    shas = {}
    for n in lengths:
        text, _ = clients.expected_text(n)
        shas[n] = hashlib.sha256(text.encode()).hexdigest()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        row: dict[str, Any] = {}
        for n in lengths:
            r = subprocess.run([sys.executable, str(HERE / "clients.py"), "--memory", name,
                                server.base, f"n{n}"], env=env, capture_output=True,
                               text=True, timeout=600)
            if r.returncode != 0:
                row["failed"] = (r.stderr.strip().splitlines() or ["failed"])[-1][:100]
                break
            probe = json.loads(r.stdout.strip().splitlines()[-1])
            if probe["sha256"] != shas[n]:
                row["wrong"] = f"{n} chunks: text differs ({probe['text_chars']} chars)"
            row[str(n)] = probe
        if "failed" not in row:
            small, large = (row[str(n)] for n in lengths)
            d_rss = (large["hwm_kb"] - small["hwm_kb"]) * 1024
            d_held = large["held_bytes"] - small["held_bytes"]
            d_chunks = large["chunks"] - small["chunks"]
            row.update(growth_b_per_chunk=(d_rss - d_held) / d_chunks,
                       rss_b_per_chunk=d_rss / d_chunks, held_b_per_chunk=d_held / d_chunks)
        out[name] = row
    return out


# -- profiles of missed targets ---------------------------------------------------------------


def _top(prof: cProfile.Profile, n: int = 12) -> list[dict[str, Any]]:
    st = pstats.Stats(prof)
    stats = st.stats  # type: ignore[attr-defined]
    # Shares of the outermost call's cumulative time (the benchmark's own function).
    total = max(ct for _cc, _nc, _tt, ct, _callers in stats.values())
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.items():
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": nc,
                     "tottime_share": tt / total, "cumtime_share": ct / total})
    rows.sort(key=lambda r: r["cumtime_share"], reverse=True)
    cum = rows[:n]
    rows.sort(key=lambda r: r["tottime_share"], reverse=True)
    own = rows[:n]
    return [{"by": "cumulative", "rows": cum}, {"by": "own time", "rows": own}]


def profile_stream(base: str, mode: str, runs: int, ca: Optional[str] = None
                   ) -> list[dict[str, Any]]:
    c = clients.AllTokenClient(base, ca)
    c.stream(mode)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(runs):
        c.stream(mode)
    prof.disable()
    c.close()
    return _top(prof)


def py_spy() -> Optional[str]:
    """py-spy, if it is or can be installed beside this Python (the peers' venv); None if
    not. A profiler only: never a dependency of alltoken."""
    exe = Path(sys.executable).parent / "py-spy"
    if exe.exists():
        return str(exe)
    if not peers.in_venv():
        return shutil.which("py-spy")
    log("installing py-spy into the peers' venv (sampling profiler)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "py-spy"], capture_output=True)
    return str(exe) if exe.exists() else None


def spy_stream(server: Server, seconds: float) -> list[dict[str, Any]]:
    """py-spy (sampling: no per-call overhead, unlike cProfile) of alltoken streaming the chat
    corpus over and over for *seconds*: functions by inclusive and by own share of the
    samples taken inside the client's loop (time blocked in a read is not sampled)."""
    exe = py_spy()
    if exe is None:
        return [{"by": "py-spy", "error": "py-spy is not installed and did not install"}]
    raw = RESULTS / "py-spy-e2e.txt"
    raw.unlink(missing_ok=True)
    code = ("import sys, time; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "import clients\n"
            "c = clients.AllTokenClient(sys.argv[3]); c.stream('stream')\n"
            "end = time.perf_counter() + float(sys.argv[4])\n"
            "while time.perf_counter() < end:\n"
            "    c.stream('stream')\n")
    r = subprocess.run([exe, "record", "-r", "500", "-f", "raw", "-o", str(raw), "--",
                        sys.executable, "-c", code, str(ROOT), str(HERE), server.base,
                        str(seconds)], capture_output=True, text=True)
    if r.returncode != 0 or not raw.exists():
        why = (r.stderr.strip().splitlines() or ["failed"])[-1][:120]
        return [{"by": "py-spy", "error": why}]
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        names = []
        for frame in stack.split(";"):
            func, _, where = frame.partition(" (")
            names.append(f"{func} ({where.rsplit(':', 1)[0]})")
        if not any(n.startswith("AllTokenClient.stream ") for n in names):
            continue
        names = [n for n in names if not n.startswith("<module> ")]
        n = int(count)
        total += n
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + n
        own[names[-1]] = own.get(names[-1], 0) + n
    if not total:
        return [{"by": "py-spy", "error": "no samples in the client's loop"}]

    def top(d: dict[str, int]) -> list[dict[str, Any]]:
        rows = sorted(d.items(), key=lambda kv: kv[1], reverse=True)[:14]
        return [{"function": k, "share": v / total} for k, v in rows]

    return [{"by": f"py-spy inclusive ({total} samples)", "rows": top(inclusive)},
            {"by": "py-spy own", "rows": top(own)}]


def profile_first(server: Server, runs: int) -> list[dict[str, Any]]:
    c = clients.AllTokenClient(server.base)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(runs):
        c.first("ttft")
    prof.disable()
    c.close()
    return _top(prof)


def _importtime(code: str) -> list[tuple[int, str, int, int]]:
    """``(depth, module, own us, cumulative us)`` of ``-X importtime -c CODE``."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                       text=True, check=True)
    lines = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            us_own, us_cum, mod = line[len("import time:"):].split("|")
            lines.append((len(mod) - len(mod.lstrip()), mod.strip(), int(us_own), int(us_cum)))
    return lines


def cold_split(server: Server, runs: int = 7) -> dict[str, float]:
    """Medians, in fresh interpreters, of the time ``import alltoken`` and then the
    streaming of the short answer take, against the floor's import
    (:data:`clients.FLOOR`)."""
    url = server.url("short")
    code = ("import time; t0 = time.perf_counter()\n{imp}\nt1 = time.perf_counter()\n{job}\n"
            "print(t1 - t0, time.perf_counter() - t1)")
    ours = code.format(imp="import alltoken", job=(
        f"''.join(alltoken.stream('hi', model='m', api_key='k', base_url={url!r}))"))
    floor = code.format(imp=clients.FLOOR, job="pass")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    got: dict[str, list[float]] = {"import": [], "stream": [], "floor_import": []}
    for _ in range(runs):
        a = subprocess.run([sys.executable, "-c", ours], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
        b = subprocess.run([sys.executable, "-c", floor], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
        got["import"].append(float(a[0]) * 1000)
        got["stream"].append(float(a[1]) * 1000)
        got["floor_import"].append(float(b[0]) * 1000)
    return {f"{k}_ms": statistics.median(v) for k, v in got.items()}


def profile_import() -> dict[str, Any]:
    """``-X importtime`` of ``import alltoken`` (best of 5 per module), limited to what
    the floor (:data:`clients.FLOOR`) does not import: those modules by own time, with
    their cumulative time and the module that imported them."""
    floor = {name for _d, name, _o, _c in _importtime(clients.FLOOR)}
    own: dict[str, int] = {}
    cum: dict[str, int] = {}
    by: dict[str, str] = {}
    for _ in range(5):
        lines = _importtime("import alltoken")
        # A module is listed after the modules it imports, which are indented deeper: the
        # subtree of alltoken is the run of deeper lines just before its own line (the
        # interpreter's start-up imports are left out).
        end = next(i for i, x in enumerate(lines) if x[1] == "alltoken")
        start = end
        while start > 0 and lines[start - 1][0] > lines[end][0]:
            start -= 1
        for i in range(start, end + 1):
            depth, name, us_own, us_cum = lines[i]
            own[name] = min(own.get(name, 1 << 60), us_own)
            cum[name] = min(cum.get(name, 1 << 60), us_cum)
            by[name] = next((x[1] for x in lines[i + 1 : end + 1] if x[0] < depth), "")
    extra = [m for m in own if m not in floor]
    total = cum.get("alltoken", 0)
    beyond = sum(own[m] for m in extra)
    rows = sorted(extra, key=lambda m: own[m], reverse=True)[:14]
    return {"alltoken_cumulative_us": total, "beyond_floor_us": beyond,
            "beyond_floor_modules": len(extra),
            "rows": [{"module": m, "imported_by": by[m], "self_us": own[m],
                      "cumulative_us": cum[m], "share": own[m] / max(1, beyond)}
                     for m in rows]}


def profile_memory(server: Server, n: int) -> list[dict[str, Any]]:
    """tracemalloc: where the memory still held after a long stream was allocated."""
    code = ("import sys, json, tracemalloc; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "import clients\n"
            "c = clients.AllTokenClient(sys.argv[3]); c.stream('short')\n"
            "tracemalloc.start(8); r = c.stream(sys.argv[4])\n"
            "snap = tracemalloc.take_snapshot(); tracemalloc.stop()\n"
            "held = clients.held_bytes(r.held)\n"
            "stats = snap.statistics('lineno')[:10]\n"
            "print(json.dumps({'held_bytes': held, 'top': [{'where': str(s.traceback[0]), "
            "'bytes': s.size, 'blocks': s.count} for s in stats]}))\n")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT), str(HERE), server.base,
                        f"n{n}"], capture_output=True, text=True, check=True)
    out: list[dict[str, Any]] = json.loads(r.stdout.strip().splitlines()[-1])["top"]
    return out


# -- targets ----------------------------------------------------------------------------------


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    chat: dict[str, dict[str, dict[str, Any]]] = {}
    for r in res.get("sse", {}).get("throughput", []):
        if r["corpus"].startswith("chat") and "x_limit" in r and "wrong" not in r:
            chat.setdefault(r["corpus"], {})[r["parser"]] = r
    for corpus_name, by_parser in chat.items():
        if "alltoken" not in by_parser:
            continue
        best = max((by_parser[k] for k in ("alltoken", "alltoken events()") if k in by_parser),
                   key=lambda row: row["x_limit"])
        mine = best["x_limit"]
        rivals = {k: v["x_limit"] for k, v in by_parser.items()
                  if k not in ("alltoken", "alltoken events()", "limit row", "plain loop",
                               "contract floor")}
        faster = [k for k, v in rivals.items() if v >= mine]
        x_floor = best.get("x_floor")
        out.append({"target": f"SSE parse {corpus_name} >= 0.9x the contract floor, ahead of "
                              "every peer's parser",
                    "met": x_floor is not None and x_floor >= 0.9 and not faster,
                    "figure": (f"{x_floor:.2f}x floor, " if x_floor is not None else "")
                              + f"{mine:.2f}x limit"
                              + (f"; peers as fast or faster: {', '.join(faster)}"
                                 if faster else "; ahead of every peer")})
    # Without a peer (--no-peers) there is nothing to compare with.
    with_peers = any(k not in ("limit", "alltoken") for k in res.get("e2e", {}))
    for part, transport in E2E_PARTS:
        if part not in res or not with_peers:
            continue
        e2e = res[part]
        target = f"end-to-end chunks/s >= 1.1x the fastest peer ({transport})"
        if "skipped" in e2e:
            out.append({"target": target, "met": False,
                        "figure": f"not measured: {e2e['skipped']}"})
            continue
        a = e2e.get("alltoken", {})
        peers_cs = {k: v["chunks_s"] for k, v in e2e.items()
                    if k not in ("limit", "alltoken") and "chunks_s" in v}
        if "x_limit" not in a:
            out.append({"target": target, "met": False,
                        "figure": a.get("wrong", "alltoken not measured")})
        elif peers_cs:
            best_peer = max(peers_cs.values())
            ratio = a["chunks_s"] / best_peer
            faster = [k for k, v in peers_cs.items() if v * 1.1 > a["chunks_s"]]
            out.append({"target": target, "met": ratio >= 1.1,
                        "figure": f"{a['x_limit']:.2f}x limit, {ratio:.2f}x the fastest peer"
                                  + (f"; within 1.1x: {', '.join(faster)}" if faster else "")})
    t = res.get("ttft", {}).get("alltoken", {})
    if "p50_minus_limit_ms" in t:
        out.append({"target": "TTFT p50 within 0.5 ms of the limit row",
                    "met": t["p50_minus_limit_ms"] <= 0.5,
                    "figure": f"{t['p50_minus_limit_ms']:+.3f} ms"})
    ab = res.get("abort", {}).get("alltoken", {})
    if "p99_ms" in ab:
        closed = ab["closed_early"] == ab["runs"]
        out.append({"target": "abort p99 < 10 ms, socket closed",
                    "met": ab["p99_ms"] < 10 and closed,
                    "figure": f"p99 {ab['p99_ms']:.2f} ms, socket closed in "
                              f"{ab['closed_early']}/{ab['runs']}"})
    elif "abort" in res:
        out.append({"target": "abort p99 < 10 ms, socket closed", "met": False,
                    "figure": ab.get("verdict", ab.get("failed", "not measured"))})
    cold = res.get("cold_start", {})
    ci = cold.get("alltoken import", {})
    if "x_floor" in ci:
        cs = cold.get("alltoken", {})
        ce = cold.get("alltoken import (exit included)", {})
        out.append({"target": "cold import <= 1.2x the floor (median)",
                    "met": ci["x_floor"] <= 1.2,
                    "figure": f"{ci['x_floor']:.2f}x floor (best-of: {ci['x_floor_best']:.2f}x)"
                              + (f"; exit included {ce['x_floor']:.2f}x" if "x_floor" in ce
                                 else "")
                              + (f"; import + one answer {cs['x_limit']:.2f}x the limit row"
                                 if "x_limit" in cs else "")})
    elif "cold_start" in res:
        out.append({"target": "cold import <= 1.2x the floor (median)", "met": False,
                    "figure": ci.get("failed", "not measured")})
    m = res.get("memory", {}).get("alltoken", {})
    lim = res.get("memory", {}).get("limit", {}).get("growth_b_per_chunk")
    if "growth_b_per_chunk" in m and lim is not None:
        # The limit row holds its text the same way (a list of the decoded str pieces), so
        # what it grows beyond the text's own bytes (pymalloc pools shared with freed
        # temporaries) is the baseline; up to MEMORY_SLACK bytes a chunk above it is noise
        # (RSS is counted in 4 KiB pages).
        excess = m["growth_b_per_chunk"] - lim
        out.append({"target": "no memory growth beyond the accumulated text",
                    "met": excess < MEMORY_SLACK,
                    "figure": f"{m['growth_b_per_chunk']:+.1f} B/chunk beyond the text held, "
                              f"limit row {lim:+.1f}: {excess:+.1f} B/chunk over the limit "
                              "row"})
    out.extend(concurrency.targets(res.get("concurrency", {})))
    return out


# -- output -----------------------------------------------------------------------------------


def _f(v: Optional[float], fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(res: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows of (label, cell per column of ORDER)."""
    cols = [c for c in ORDER if c in res["columns"]]
    sse: dict[str, dict[str, Any]] = {}
    for r in res.get("sse", {}).get("throughput", []):
        sse.setdefault(r["corpus"], {})[PARSER_COLUMN.get(r["parser"], r["parser"])] = r
    rows: list[list[str]] = []

    def add(label: str, cell: Callable[[str], str]) -> None:
        cells = [cell(c) for c in cols]
        if any(cells):  # a part not measured leaves no row
            rows.append([label, *cells])

    for corpus_name in sse:
        def parse_cell(c: str, corpus_name: str = corpus_name) -> str:
            r = sse[corpus_name].get(c)
            if r is None:
                return ""
            return "WRONG" if "wrong" in r else f"{r['x_limit']:.2f}"
        add(f"1 SSE parse {corpus_name}, x limit", parse_cell)
    growth = {PARSER_COLUMN.get(r["parser"], r["parser"]): r
              for r in res.get("sse", {}).get("bytewise", []) if r["case"] == "growth"}

    def growth_cell(c: str) -> str:
        r = growth.get(c)
        if r is None or c == "limit":
            return ""
        k, k_min = r["k"], r["k_at_least"]
        if k_min is not None and (k is None or k_min > k):
            cell = f">{k_min:.2f}"
        else:
            cell = "-" if k is None else f"{k:.2f}"
        return cell + (" T/O" if r["timed_out"] else "")

    add("1 SSE 1-byte feeding, growth k", growth_cell)
    bytewise = {(PARSER_COLUMN.get(r["parser"], r["parser"]), r["case"]): r
                for r in res.get("sse", {}).get("bytewise", []) if r["case"] != "growth"}
    for case in sorted({case for _, case in bytewise}, key=lambda k: (len(k), k)):
        def mb_cell(c: str, case: str = case) -> str:
            r = bytewise.get((c, case))
            if r is None or c == "limit":
                return ""
            if r.get("status") == "wrong":
                return "WRONG"
            return f"{r['mb_s']:.2f}" if "mb_s" in r else "T/O"
        add(f"1 SSE 1-byte feeding {case}, MB/s", mb_cell)
    tt, ab, cs, mem = (res.get(k, {}) for k in ("ttft", "abort", "cold_start", "memory"))

    def e2e_cell(part: str, key: str, fmt: str) -> Callable[[str], str]:
        """A cell of part 2 over one transport; key "" for the text check."""
        rows: dict[str, Any] = res.get(part, {})

        def e(c: str) -> str:
            r = rows.get(c)
            if r is None:
                return ""
            if "wrong" in r or "failed" in r:
                return "WRONG" if "wrong" in r else "failed"
            return "ok" if not key else _f(r.get(key), fmt)

        return e

    for part, transport in E2E_PARTS:
        add(f"2 e2e text complete ({transport})", e2e_cell(part, "", ""))
        add(f"2 e2e chunks/s ({transport})", e2e_cell(part, "chunks_s", ",.0f"))
        add(f"2 e2e x limit ({transport})", e2e_cell(part, "x_limit", ".2f"))
        add(f"2 e2e CPU s / 1000 chunks ({transport})",
            e2e_cell(part, "cpu_s_per_1000", ".4f"))

    def cell(rows: dict[str, Any], c: str, key: str, fmt: str) -> str:
        r = rows.get(c)
        if r is None:
            return ""
        return "failed" if "failed" in r else _f(r.get(key), fmt)

    def t(c: str, key: str, fmt: str) -> str:
        return cell(tt, c, key, fmt)

    add("3 TTFT p50 ms", lambda c: t(c, "p50_ms", ".3f"))
    add("3 TTFT p99 ms", lambda c: t(c, "p99_ms", ".3f"))
    add("3 TTFT p50 - limit p50 ms", lambda c: t(c, "p50_minus_limit_ms", "+.3f"))

    def a(c: str, key: str, fmt: str) -> str:
        r = ab.get(c)
        if r is None:
            return ""
        if "failed" in r:
            return "failed"
        if "verdict" in r:
            return "not woken"
        return _f(r.get(key), fmt)

    add("4 abort p50 ms", lambda c: a(c, "p50_ms", ".2f"))
    add("4 abort p99 ms", lambda c: a(c, "p99_ms", ".2f"))
    add("4 abort socket closed", lambda c: "" if c not in ab or "runs" not in ab[c] else
        f"{ab[c]['closed_early']}/{ab[c]['runs']}")

    def k(c: str, key: str, fmt: str) -> str:
        return cell(cs, c, key, fmt)

    # Import only: alltoken's in its column, the floor's in the limit column.
    imports = {"limit": "floor", "alltoken": "alltoken import"}

    def i(c: str, key: str, fmt: str) -> str:
        return cell(cs, imports[c], key, fmt) if c in imports else ""

    add("5 import ms (median)", lambda c: i(c, "median_ms", ".1f"))
    add("5 import x floor (median)", lambda c: "" if c == "limit" else i(c, "x_floor", ".2f"))
    add("5 import x floor (best-of)",
        lambda c: "" if c == "limit" else i(c, "x_floor_best", ".2f"))
    exits = {"limit": "floor (exit included)", "alltoken": "alltoken import (exit included)"}

    def e(c: str, key: str, fmt: str) -> str:
        return cell(cs, exits[c], key, fmt) if c in exits else ""

    add("5 import, exit included, ms (median)", lambda c: e(c, "median_ms", ".1f"))
    add("5 import, exit included, x floor (median)",
        lambda c: "" if c == "limit" else e(c, "x_floor", ".2f"))
    add("5 import + one answer ms (median)", lambda c: k(c, "median_ms", ".1f"))
    add("5 import + one answer x limit (median)", lambda c: k(c, "x_limit", ".2f"))
    add("5 import + one answer x limit (best-of)", lambda c: k(c, "x_limit_best", ".2f"))
    lengths = res["meta"]["memory_lengths"]

    def m(c: str, n: Optional[int]) -> str:
        r = mem.get(c)
        if r is None:
            return ""
        if "failed" in r:
            return "failed"
        if "wrong" in r:
            return "WRONG"
        if n is None:
            return _f(r.get("growth_b_per_chunk"), "+.1f")
        return f"{r[str(n)]['hwm_kb'] / 1024:.1f}"

    for n in lengths:
        def rss(c: str, n: int = n) -> str:
            return m(c, n)

        add(f"6 peak RSS MB, {n // 1000}k chunks", rss)
    add("6 growth B/chunk beyond text", lambda c: m(c, None))
    for label, cells in concurrency.rows(res.get("concurrency", {})):
        def conc_cell(c: str, cells: dict[str, str] = cells) -> str:
            return cells.get(c, "")
        add(label, conc_cell)
    return cols, rows


def print_table(res: dict[str, Any]) -> None:
    meta = res["meta"]
    cols, rows = table(res)
    width = max(len(r[0]) for r in rows) + 1
    cw = max(12, *(len(c) + 1 for c in cols))
    print(f"\nalltoken benchmark suite - {meta['date']}, Python {meta['python']} "
          f"({meta['implementation']}), {meta['platform']}, {meta['cpus']} CPUs"
          f"{' - QUICK run' if meta['quick'] else ''}")
    print("Every ratio is against a baseline measured in this run (limit = the limit row, "
          f"floor = python -c '{clients.FLOOR}', ended by os._exit(0) unless exit included).")
    print(f"{'':<{width}}" + "".join(f"{c:>{cw}}" for c in cols))
    for r in rows:
        print(f"{r[0]:<{width}}" + "".join(f"{x:>{cw}}" for x in r[1:]))
    if res.get("sse"):
        print("  1: the SSE limit row's time over the parser's (bench_sse.py table 1); growth k: "
              "time ~ size**k fed one byte a call\n     (1 linear, 2 quadratic; T/O: a size ran "
              "over its budget); bench_sse.py's full report: benchmarks/results/sse.txt")
    skipped = res.get("e2e_tls", {}).get("skipped")
    if skipped:
        print(f"  2: TLS mode skipped: {skipped}")
    elif res.get("e2e_tls"):
        print(f"  2: over HTTP and over HTTPS ({meta.get('tls')}); x limit: the limit row's "
              "best time over the same transport over the client's")
    cs = res.get("cold_start", {})
    if "floor" in cs and "median_ms" in cs["floor"]:
        print("  5 import: a fresh python -c 'import alltoken'; its limit column is the floor "
              f"(python -c '{clients.FLOOR}'). 5 import + one answer: each client imports\n"
              "    and streams a 5-chunk answer; the limit row does it with http.client + "
              "json")
        print(f"  cold start floor {cs['floor']['median_ms']:.1f} ms, bare interpreter "
              f"{cs.get('bare', {}).get('median_ms', float('nan')):.1f} ms (medians of "
              f"{meta['cold_runs']}); alltoken from {cs['_meta']['alltoken_file']}; ssl/asyncio "
              f"loaded by 'import alltoken': {', '.join(meta['heavy_imports']) or 'none'} "
              "(http.client loads ssl too)")
    if res.get("abort"):
        print("  abort - what was done, and what happened:")
    for name, r in res.get("abort", {}).items():
        what = r.get("failed") or r.get("verdict") or "woken every time"
        outs = ", ".join(f"{k} x{v}" for k, v in r.get("outcomes", {}).items())
        closed = (f"; server saw the close at p50 {r['closed_p50_ms']:.2f} ms after the "
                  "abort" if "closed_p50_ms" in r else "; the server never saw a close")
        print(f"    {name}: {r['how']} -> {what} [{outs}]{closed}")
    if res.get("concurrency"):
        print("  7 concurrency - what was done, and what happened:")
        for line in concurrency.notes(res["concurrency"]):
            print(f"    {line}")
    wrong = [(k, name, r["wrong"]) for k in ("e2e", "e2e_tls", "memory")
             for name, r in res.get(k, {}).items() if isinstance(r, dict) and "wrong" in r]
    for part, name, why in wrong:
        print(f"  WRONG ({part}) {name}: {why}")
    for part in ("e2e", "e2e_tls", "ttft", "cold_start", "memory"):
        for name, r in res.get(part, {}).items():
            if isinstance(r, dict) and "failed" in r:
                print(f"  failed ({part}) {name}: {r['failed']}")
    if res.get("missing"):
        print("  not measured: " + "; ".join(f"{k} ({v})" for k, v in res["missing"].items()))
    print("  versions: " + "; ".join(meta["versions"]))
    print("\nTargets for alltoken:")
    for t in res["targets"]:
        print(f"  {'PASS' if t['met'] else 'MISS'}  {t['target']}: {t['figure']}")


def print_profiles(profiles: dict[str, Any]) -> None:
    for what, prof in profiles.items():
        print(f"\nProfile for the missed target '{what}':")
        if what == "cold import":
            if "import_ms" in prof:
                print(f"  in a fresh interpreter (medians of 7): 'import alltoken' "
                      f"{prof['import_ms']:.1f} ms, then streaming the short answer "
                      f"{prof['stream_ms']:.1f} ms; the floor '{clients.FLOOR}' "
                      f"{prof['floor_import_ms']:.1f} ms")
            print(f"  -X importtime, best of 5: 'import alltoken' takes "
                  f"{prof['alltoken_cumulative_us'] / 1000:.1f} ms, of which "
                  f"{prof['beyond_floor_us'] / 1000:.1f} ms in {prof['beyond_floor_modules']} "
                  "modules that the floor does not load. Those, by own time (share of that):")
            for r in prof["rows"]:
                print(f"    own {r['share']:6.1%} {r['self_us']:>6} us  cumulative "
                      f"{r['cumulative_us']:>6} us  {r['module']}  (imported by "
                      f"{r['imported_by'] or '-'})")
            continue
        if what == "memory":
            print("  tracemalloc, memory held after the long stream, by allocation site:")
            for r in prof:
                print(f"    {r['bytes'] / 1024:>9.0f} KiB {r['blocks']:>8} blocks  {r['where']}")
            continue
        for part in prof:
            if "error" in part:
                print(f"  {part['by']}: {part['error']}")
            elif part["by"].startswith("py-spy"):
                print(f"  {part['by']}, share of the samples in the client's loop:")
                for r in part["rows"]:
                    print(f"    {r['share']:6.1%}  {r['function']}")
            else:
                print(f"  cProfile, top by {part['by']} (share of the outermost call's "
                      "time):")
                for r in part["rows"]:
                    print(f"    cum {r['cumtime_share']:6.1%}  own {r['tottime_share']:6.1%}"
                          f"  {r['calls']:>8}  {r['function']}")


Bar = tuple[str, Optional[float], str]  # (column, ratio or None, note: figure or why none)


def svg(res: dict[str, Any]) -> str:
    """A bar chart of the ratios (longer is better; 1 = the baseline), each bar labelled
    with its ratio and the figure it comes from."""
    meta = res["meta"]
    groups: list[tuple[str, list[Bar]]] = []
    sse = [r for r in res.get("sse", {}).get("throughput", []) if r["corpus"] == "chat LF"]
    if sse:
        groups.append(("SSE parse, chat stream (limit row's time / parser's)", [
            (r["parser"], r.get("x_limit"),
             "WRONG" if "wrong" in r else f"{r['mb_s']:.0f} MB/s")
            for r in sse if r["parser"] != "limit row"]))

    def group(title: str, part: str, ratio: Callable[[dict[str, Any]], Optional[float]],
              figure: Callable[[dict[str, Any]], str]) -> None:
        bars: list[Bar] = []
        for c in ORDER:
            r = res.get(part, {}).get(c)
            if c in ("limit", "plain loop") or r is None:
                continue
            if "wrong" in r or "failed" in r:
                bars.append((c, None, "WRONG" if "wrong" in r else "failed"))
                continue
            bars.append((c, ratio(r), figure(r)))
        if bars:
            groups.append((title, bars))

    for part, transport in E2E_PARTS:
        group(f"End-to-end chunks/s over {transport.upper()} (client / limit row)", part,
              lambda r: r.get("x_limit"), lambda r: f"{r['chunks_s'] / 1000:.0f}k chunks/s")
    lim = res.get("ttft", {}).get("limit", {}).get("p50_ms")
    if lim:
        group("Time to first token, p50 (limit row / client)", "ttft",
              lambda r: lim / r["p50_ms"], lambda r: f"{r['p50_ms']:.3f} ms")
    ci = res.get("cold_start", {}).get("alltoken import", {})
    if "x_floor" in ci:
        groups.append(("Cold import, median (floor / import alltoken)",
                       [("alltoken", 1 / ci["x_floor"], f"{ci['median_ms']:.0f} ms")]))
    group("Cold start, import + one answer, median (limit row / client)", "cold_start",
          lambda r: 1 / r["x_limit"] if "x_limit" in r else None,
          lambda r: f"{r['median_ms']:.0f} ms" if "median_ms" in r else "not measured")
    groups.extend(_concurrency_groups(res.get("concurrency", {})))

    values = [v for _, bars in groups for _, v, _ in bars if v is not None]
    xmax = max([1.0, *values]) * 1.05
    left, plot_w, bar_h, gap = 110, 520, 15, 3
    width = left + plot_w + 140
    y = 72
    body: list[str] = []
    one = left + plot_w / xmax
    for title, bars in groups:
        body.append(f'<text x="10" y="{y + 12}" class="h">{_x(title)}</text>')
        y += 20
        top = y
        n = len(bars)
        if any(v is not None for _, v, _ in bars):  # not for a group of text lines
            body.append(f'<line x1="{one:.1f}" y1="{top - 2}" x2="{one:.1f}" '
                        f'y2="{top + n * (bar_h + gap)}" stroke="#555" '
                        'stroke-dasharray="3,2"/>')
        for name, v, note in bars:
            color = "#1f6feb" if name == "alltoken" else "#8c959f"
            body.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end">{_x(name)}</text>')
            if v is None:
                bad = note.startswith(("WRONG", "failed"))
                body.append(f'<text x="{left + 4}" y="{y + 11}" '
                            f'fill="{"#b00" if bad else "#333"}">{_x(note)}</text>')
            else:
                w = max(1.0, v / xmax * plot_w)
                body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                            f'fill="{color}"/>')
                label = f"{v:.2f}x" if v >= 0.01 else f"{v:.3f}x"
                body.append(f'<text x="{left + w + 4:.1f}" y="{y + 11}" class="v">{label} '
                            f'<tspan fill="#666">({_x(note)})</tspan></text>')
            y += bar_h + gap
        y += 12
    height = y + 24
    title = "alltoken and its peers, python3 benchmarks/run.py"
    sub = ("Each bar: a ratio to a baseline measured in the same run; the dashed line is "
           "1.00 (the baseline); longer is better.")
    when = (f"{meta['date']} - {meta['implementation']} {meta['python']} - "
            f"{meta['platform']} - {meta['cpus']} CPUs{' - quick run' if meta['quick'] else ''}")
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        "<style>.h{font-weight:bold;font-size:12px}.t{font-size:13px;font-weight:bold}"
        ".v{paint-order:stroke;stroke:#fff;stroke-width:3px}</style>",
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="10" y="20" class="t">{_x(title)}</text>',
        f'<text x="10" y="38" fill="#333">{_x(sub)}</text>',
        f'<text x="10" y="54" fill="#555">{_x(when)}</text>',
        *body,
        f'<text x="10" y="{height - 8}" fill="#555">{_x(_svg_footer(res))}</text>',
        "</svg>", ""])


def _concurrency_groups(conc: dict[str, Any]) -> list[tuple[str, list[Bar]]]:
    """Part 7 at its largest N: chunks/s and RSS per stream as ratios to the best peer's,
    then a line per client with its idle CPU and abort latency (no bar: those have no
    baseline a ratio could be taken against)."""
    ns = conc.get("meta", {}).get("ns")
    if not ns:
        return []
    n = max(ns)
    got = {c: conc["runs"][c].get(str(n)) for c in concurrency.CLIENTS
           if c in conc.get("runs", {})}
    ok = {c: r for c, r in got.items() if r and "failed" not in r}
    peer = {c: r for c, r in ok.items() if c != "alltoken"}
    head = f"{n:,} concurrent streams, one thread each"
    groups: list[tuple[str, list[Bar]]] = []
    rate = {c: r["W"]["chunks_s"] for c, r in ok.items()
            if r["W"]["chunks_s"] and r["W"]["text_ok"] == r["W"]["released"]}
    rss = {c: r["W"]["rss_per_stream_kb"] for c, r in ok.items()}
    best_rate = max((v for c, v in rate.items() if c in peer), default=None)
    best_rss = min((v for c, v in rss.items() if c in peer), default=None)
    if best_rate:
        groups.append((f"{head}: aggregate chunks/s (client / best peer)", [
            (c, rate[c] / best_rate if c in rate else None,
             f"{rate[c] / 1000:.0f}k chunks/s" if c in rate else
             "failed" if c not in ok else "WRONG") for c in got]))
    if best_rss:
        groups.append((f"{head}: peak RSS per stream (best peer / client)", [
            (c, best_rss / rss[c] if c in rss and rss[c] > 0 else None,
             f"{rss[c]:.0f} KiB" if c in rss else "failed") for c in got]))
    lines: list[Bar] = []
    for c, r in got.items():
        if c not in ok:
            lines.append((c, None, "failed"))
            continue
        a = r["A"]
        idle = f"idle {r['W']['idle']['cpu_pct']:.2f}% of a core"
        if a["signals"]:
            idle += f" ({a['idle']['cpu_pct']:.1f}% with signals)"
        ab = []
        for which, what in (("all", "all"), ("one", "one")):
            x = a.get(which)
            if not x:
                continue
            total = x.get("n", x.get("trials", 0))
            ab.append(f"{what} p99 {x['p99_ms']:.1f} ms" if x["woken"] == total and
                      "p99_ms" in x else f"{what}: {total - x['woken']}/{total} not woken")
        lines.append((c, None, f"{idle}; abort {', '.join(ab)}"))
    if lines:
        groups.append((f"{n:,} streams: idle CPU while waiting; abort latency (targets "
                       "<= 1% with signals, p99 <= 5 ms)", lines))
    return groups


def _svg_footer(res: dict[str, Any]) -> str:
    parts = []
    a = res.get("abort", {}).get("alltoken", {})
    if "p99_ms" in a:
        parts.append(f"abort: alltoken p99 {a['p99_ms']:.2f} ms")
    woke = [k for k, v in res.get("abort", {}).items()
            if k not in ("alltoken", "limit") and "p99_ms" in v]
    if res.get("abort"):
        parts.append("peers woken by their close: " + (", ".join(woke) or "none"))
    m = res.get("memory", {}).get("alltoken", {})
    if "growth_b_per_chunk" in m:
        parts.append(f"memory growth {m['growth_b_per_chunk']:+.0f} B/chunk beyond text")
    return "; ".join(parts)


def _x(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- main -------------------------------------------------------------------------------------


PARTS = {1: "SSE parse", 2: "end-to-end throughput", 3: "time to first token", 4: "abort",
         5: "cold start", 6: "memory", 7: "concurrency"}


def main(argv: Optional[list[str]] = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (3 to 4 minutes)")
    p.add_argument("--no-peers", action="store_true",
                   help="standard library only: alltoken and the limit rows, no .venv")
    p.add_argument("--parts", default=",".join(map(str, PARTS)),
                   help="which measurements, e.g. 2,5 (" + ", ".join(
                       f"{k} {v}" for k, v in PARTS.items()) + "); default: all")
    p.add_argument("--json", default=str(RESULTS / "latest.json"), help="default: %(default)s")
    p.add_argument("--svg", help=f"where to write the chart (default: {SVG.relative_to(ROOT)} "
                   "after a full run of every part with the peers, else "
                   "benchmarks/results/performance.svg)")
    p.add_argument("--no-svg", action="store_true", help="do not write the chart")
    p.add_argument("--profile", action="store_true",
                   help="profile alltoken for every target measured, missed or not")
    p.add_argument("--from-json", metavar="PATH",
                   help="run nothing: print the table and draw the chart of a saved result")
    args = p.parse_args(args_in)
    if args.from_json:
        saved: dict[str, Any] = json.loads(Path(args.from_json).read_text())
        print_table(saved)
        print_profiles(saved.get("profiles", {}))
        if not args.no_svg:
            chart = Path(args.svg) if args.svg else RESULTS / "performance.svg"
            chart.write_text(svg(saved))
            print(f"\nwrote {chart}")
        return 0
    try:
        parts = {int(x) for x in args.parts.split(",") if x.strip()}
    except ValueError:
        p.error(f"--parts takes numbers 1 to {len(PARTS)}, comma-separated")
    if not parts or not parts <= set(PARTS):
        p.error(f"--parts takes numbers 1 to {len(PARTS)}, comma-separated")

    note = ""
    if not args.no_peers and not peers.in_venv():
        vpy = peers.setup()
        if vpy is not None:
            log(f"re-running under {vpy}")
            return subprocess.run([str(vpy), str(Path(__file__).resolve()), *args_in]
                                  ).returncode
        note = "the peers' venv could not be built"
        log(f"{note}: running without peers")
    use_peers = not args.no_peers and not note
    s = Settings(args.quick)
    started = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    res: dict[str, Any] = {}

    def step(n: int, what: str) -> bool:
        if n in parts:
            log(f"{n}/{len(PARTS)} {PARTS[n]}{what}")
        return n in parts

    sse: dict[str, Any] = {}
    if step(1, " (bench_sse.py; its own report goes to results/sse.txt)"):
        sse_json = RESULTS / "sse.json"
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            bench_sse.main([*(["--peers"] if use_peers else []),
                            *(["--quick"] if args.quick else []), "--json", str(sse_json)])
        (RESULTS / "sse.txt").write_text(report.getvalue())
        sse = json.loads(sse_json.read_text())
        res["sse"] = sse
    compile_all()
    lengths = s.memory_lengths
    names = list(clients.CLIENTS) if use_peers else ["limit", "alltoken"]
    profiles: dict[str, Any] = {}
    # Part 2's TLS mode: a throwaway CA and server certificate, gone with the directory.
    tls_dir = contextlib.ExitStack()
    tls: Optional[certs.Certs] = None
    tls_why = tls_note = ""
    if 2 in parts:
        tls, tls_why = certs.make(tls_dir.enter_context(
            tempfile.TemporaryDirectory(prefix="alltoken-bench-tls-")))
        tls_note = (f"TLS mode skipped: {tls_why}" if tls is None else
                    f"a throwaway CA and a certificate for 127.0.0.1 made by {tls.how}, the "
                    "CA passed to every client, verification on")
        if tls is None:
            log(tls_note)
    with tls_dir, Server(prepare=lengths if 6 in parts else (),
                         tls=None if tls is None else (tls.cert, tls.key)) as server:
        cs, missing = clients.make_clients(server.base, names)
        if not use_peers:
            missing = {"peers": note or "--no-peers"}
        names = [c.name for c in cs]
        if step(2, f" ({s.e2e_repeats} interleaved runs, HTTP"
                   f"{'' if tls is None else ' then HTTPS'}): {', '.join(names)}"):
            res["e2e"] = throughput(cs, s.e2e_repeats)
            if tls is None or server.tls_base is None:
                res["e2e_tls"] = {"skipped": tls_why or "the server has no TLS port"}
            else:
                bad = unverified(server.tls_base, names)
                tls_cs, tls_missing = clients.make_clients(server.tls_base, names, tls.ca)
                res["e2e_tls"] = throughput([c for c in tls_cs if c.name not in bad],
                                            s.e2e_repeats)
                for name in bad:
                    res["e2e_tls"][name] = {"wrong": "streamed without being given the CA: "
                                                     "the certificate was not verified"}
                for name, why in tls_missing.items():
                    res["e2e_tls"][name] = {"failed": why}
                for c in tls_cs:
                    c.close()
        if step(3, f" ({s.ttft_runs} interleaved runs each)"):
            res["ttft"] = ttft(cs, s.ttft_runs)
        if step(4, f" (up to {s.abort_trials} interleaved runs each)"):
            res["abort"] = abort(cs, server, s.abort_trials, 2 if args.quick else 3)
        versions = [f"Python {platform.python_version()}"] + [
            v for v in (c.version() for c in cs) if v]
        for c in cs:
            c.close()
        if step(5, f" ({s.cold_runs} interleaved runs each)"):
            res["cold_start"] = cold_start(server, names, s.cold_runs)
        if step(6, f" ({lengths[0]:,} and {lengths[1]:,} chunks, a fresh process each)"):
            res["memory"] = memory(server, names, lengths)
        conc_names, _ = concurrency.available(
            tuple(c for c in concurrency.CLIENTS if c in names))
        conc_ns = concurrency.QUICK_NS if args.quick else concurrency.NS
        if step(7, f" ({', '.join(f'{n:,}' for n in conc_ns)} streams, a fresh process "
                   f"each): {', '.join(conc_names)}"):
            res["concurrency"] = concurrency.measure(conc_names, args.quick, conc_ns)
        res["meta"] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(terse=True), "cpus": os.cpu_count(),
            "alltoken": alltoken.__version__, "quick": args.quick,
            "parts": sorted(parts), "e2e_repeats": s.e2e_repeats, "ttft_runs": s.ttft_runs,
            "ttft_gap_s": TTFT_GAP, "ttft_pause_s": TTFT_PAUSE,
            "abort_trials": s.abort_trials, "abort_read_timeout_s": clients.ABORT_TIMEOUT,
            "cold_runs": s.cold_runs, "cold_floor": clients.FLOOR,
            "memory_lengths": list(lengths), "tls": tls_note,
            "concurrency_ns": list(conc_ns),
            "versions": versions, "heavy_imports": heavy_imports(),
        }
        res["missing"] = missing
        res["columns"] = [*names, *(["alltoken events()", "plain loop"]
                                    if sse.get("throughput") else [])]
        res["targets"] = targets(res)
        missed = {t["target"] for t in res["targets"] if not t["met"]}

        def want(part: int, word: str) -> bool:
            return part in parts and (args.profile or any(word in t for t in missed))

        e2e_http = want(2, "end-to-end chunks/s >= 1.1x the fastest peer (http)")
        e2e_https = (want(2, "end-to-end chunks/s >= 1.1x the fastest peer (https)")
                     and tls is not None and server.tls_base is not None)
        if e2e_http or e2e_https or want(3, "TTFT") or want(5, "cold") or want(6, "memory"):
            log("profiling alltoken" + (" (targets missed)" if missed else ""))
        if e2e_http:
            profiles["end-to-end throughput"] = [*profile_stream(server.base, "stream", 20),
                                                 *spy_stream(server, 4 if args.quick else 10)]
        if e2e_https and tls is not None and server.tls_base is not None:
            profiles["end-to-end throughput over HTTPS"] = profile_stream(
                server.tls_base, "stream", 20, tls.ca)
        if want(3, "TTFT"):
            profiles["TTFT"] = profile_first(server, 30)
        if want(5, "cold"):
            profiles["cold import"] = {**profile_import(), **cold_split(server)}
        if want(6, "memory"):
            profiles["memory"] = profile_memory(server, lengths[1])
    res["profiles"] = profiles
    res["meta"]["seconds"] = round(time.monotonic() - started, 1)

    print_table(res)
    print_profiles(profiles)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nwrote {out}", end="")
    if not args.no_svg:
        complete = parts == set(PARTS) and use_peers and not args.quick
        chart = Path(args.svg) if args.svg else SVG if complete else RESULTS / "performance.svg"
        chart.write_text(svg(res))
        print(f" and {chart}", end="")
    print(f" ({res['meta']['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
