"""Load: 64 threads stream 1,000 chunks each through ONE shared client.

Every thread asks the local server's ``echo`` model to stream back a prompt of 1,000
words unique to that thread (one chunk per word, no pacing), so each stream can be
checked to hold exactly its own content: no chunk lost, duplicated, reordered or
crossed over from another thread's connection. Afterwards the process's threads and
file descriptors are back to what they were. Retries are off, so no failure is hidden.
``tests/soak.py`` runs the same load in a loop for minutes.
"""

from __future__ import annotations

import threading
import time

from conftest import assert_back_to, snapshot

import alltoken
from alltoken import testing as t

KEY = "sk-test-load"
THREADS = 64
CHUNKS = 1000


def words(i: int) -> list[str]:
    """The pieces the echo model streams for thread *i*'s prompt."""
    return [f"t{i}w{j}" if j == 0 else f" t{i}w{j}" for j in range(CHUNKS)]


def test_64_threads_x_1000_chunks_through_one_client() -> None:
    baseline = snapshot()
    results: dict[int, tuple[list[str], str, bool, bool]] = {}
    errors: list[tuple[int, BaseException]] = []
    start = threading.Barrier(THREADS)

    with t.LocalServer(pace=0) as server:
        client = alltoken.AllToken(api_key=KEY, base_url=server.base_url, timeout=30.0,
                                   max_retries=0)

        def worker(i: int) -> None:
            try:
                prompt = "".join(words(i))
                start.wait(30)
                stream = client.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": prompt}], stream=True)
                pieces: list[str] = []
                with stream:
                    for chunk in stream:
                        for choice in chunk.choices:
                            if choice.delta.content:
                                pieces.append(choice.delta.content)
                results[i] = (pieces, stream.text, stream.done, stream.cost is not None)
            except BaseException as exc:  # reported by the assertions below
                errors.append((i, exc))

        threads = [threading.Thread(target=worker, args=(i,), name=f"load-{i}")
                   for i in range(THREADS)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 120
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        hung = [th.name for th in threads if th.is_alive()]
        client.close()
        server.wait_for_connections(0)
        requests = len(server.requests)

    assert hung == [] and errors == []
    assert requests == THREADS
    for i in range(THREADS):
        pieces, text, done, has_cost = results[i]
        assert pieces == words(i), f"thread {i} got another stream's or a partial answer"
        assert text == "".join(words(i))
        assert done and has_cost

    assert_back_to(baseline)
