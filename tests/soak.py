"""Soak: the load of ``tests/test_load.py`` in a loop, for minutes. Not run by pytest or CI.

    python3 tests/soak.py                  # 600 s
    python3 tests/soak.py --seconds 60     # a short run

Round after round, THREADS threads each stream CHUNKS chunks through ONE long-lived
shared client from the local server's ``echo`` model (a prompt of words unique to the
thread and round, so every stream is checked to hold exactly its own content). Idle
connections stay pooled between rounds, so the pool is reused.

Every ``--interval`` seconds (and at the end) the client's idle connections are closed,
and once the server has seen them go it prints the streams completed, errors, the
process's RSS, open file descriptors and threads. The descriptors and threads must
then be exactly what they were before the first round; RSS must not grow by more than
``--rss-slack`` MiB (or 25 %, whichever is larger) over its value at the first report,
after the warm-up. Exits 1 on any error, any stream with the wrong content, or any
growth; 0 otherwise. Linux only (it reads ``/proc/self``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import alltoken
from alltoken import testing as t

KEY = "sk-soak"


def words(round_: int, i: int, chunks: int) -> list[str]:
    return [f"r{round_}t{i}w{j}" if j == 0 else f" r{round_}t{i}w{j}" for j in range(chunks)]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def counts() -> tuple[int, int]:
    gc.collect()
    return len(os.listdir("/proc/self/fd")), threading.active_count()


class Soak:
    def __init__(self, client: alltoken.AllToken, threads: int, chunks: int) -> None:
        self.client = client
        self.threads = threads
        self.chunks = chunks
        self.completed = 0
        self.errors = 0
        self.mismatches = 0
        self.first_problem: Optional[str] = None
        self._lock = threading.Lock()

    def _problem(self, what: str) -> None:
        with self._lock:
            if self.first_problem is None:
                self.first_problem = what

    def _worker(self, round_: int, i: int, start: threading.Barrier) -> None:
        expected = words(round_, i, self.chunks)
        try:
            start.wait(60)
            stream = self.client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "".join(expected)}],
                stream=True)
            pieces = []
            with stream:
                for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            pieces.append(choice.delta.content)
            ok = pieces == expected and stream.text == "".join(expected) and stream.done
        except Exception as exc:
            with self._lock:
                self.errors += 1
            self._problem(f"round {round_} thread {i}: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            if ok:
                self.completed += 1
            else:
                self.mismatches += 1
        if not ok:
            self._problem(f"round {round_} thread {i}: wrong content ({len(pieces)} pieces)")

    def round(self, round_: int) -> None:
        start = threading.Barrier(self.threads)
        workers = [threading.Thread(target=self._worker, args=(round_, i, start))
                   for i in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
            if w.is_alive():
                self.errors += 1
                self._problem(f"round {round_}: a worker hung for 300 s")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--rss-slack", type=float, default=32.0,
                        help="MiB of RSS growth tolerated after the first report")
    args = parser.parse_args(argv)

    failed = False
    with t.LocalServer(pace=0) as server:
        client = alltoken.AllToken(api_key=KEY, base_url=server.base_url, timeout=60.0,
                                   max_retries=0)
        soak = Soak(client, args.threads, args.chunks)
        base_fds, base_threads = counts()
        print(f"soak: {args.threads} threads x {args.chunks} chunks a round, for "
              f"{args.seconds:g} s; baseline: {base_fds} fds, {base_threads} threads, "
              f"rss {rss_mib():.1f} MiB", flush=True)
        started = time.monotonic()
        end = started + args.seconds
        next_report = started + args.interval
        rss_reference: Optional[float] = None
        round_ = 0
        while True:
            soak.round(round_)
            round_ += 1
            # The server records every request (10 KB of prompt each): forget them, or
            # the soak measures the server's log growing, not the client.
            del server.requests[:]
            now = time.monotonic()
            last = now >= end
            if now < next_report and not last:
                continue
            next_report += args.interval
            client.close()  # idle pooled connections; the client stays usable
            server.wait_for_connections(0, timeout=10)
            # The server counts a connection closed before its handler thread has closed
            # the socket and exited: give those a moment.
            settle = time.monotonic() + 2.0
            fds, threads = counts()
            while (fds, threads) != (base_fds, base_threads) and time.monotonic() < settle:
                time.sleep(0.01)
                fds, threads = counts()
            rss = rss_mib()
            problems = []
            if fds != base_fds:
                problems.append(f"fds {base_fds} -> {fds}")
            if threads != base_threads:
                problems.append(f"threads {base_threads} -> {threads}")
            if rss_reference is None:
                rss_reference = rss
            elif rss > rss_reference + max(args.rss_slack, rss_reference * 0.25):
                problems.append(f"rss grew {rss_reference:.1f} -> {rss:.1f} MiB")
            if soak.errors or soak.mismatches:
                problems.append(f"{soak.errors} errors, {soak.mismatches} wrong streams")
            failed = failed or bool(problems)
            print(f"[{now - started:6.0f} s] rounds {round_} streams {soak.completed} "
                  f"errors {soak.errors} mismatches {soak.mismatches} rss {rss:.1f} MiB "
                  f"fds {fds} threads {threads}"
                  + (f"  PROBLEM: {'; '.join(problems)}" if problems else ""), flush=True)
            if last:
                break
        client.close()
    if soak.first_problem:
        print(f"soak: first problem: {soak.first_problem}", flush=True)
    print(f"soak: {'FAILED' if failed else 'ok'}: {soak.completed} streams, "
          f"{soak.completed * args.chunks} chunks in {time.monotonic() - started:.0f} s",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
