"""A forked child and a stream its parent opened.

DESIGN.md, Processes: after ``os.fork()`` the child never uses a connection its parent
owns. A stream object the child inherited (a module-level stream, one in flight in a
pre-fork worker) reads from the parent's socket: iterating it in the child must be a
clear error, never take the bytes the parent is waiting for.
"""

from __future__ import annotations

import os
import select
import threading

import pytest

import alltoken
from alltoken import testing as t


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_iterating_an_inherited_stream_never_reads_the_parents_answer() -> None:
    gate = threading.Event()
    with t.LocalServer(pace=0) as srv:
        client = alltoken.AllToken(api_key="k", base_url=srv.base_url, proxy=False,
                                   max_retries=0, timeout=3)
        srv.enqueue(t.StreamReply([t.content("a"), t.wait(gate)]
                                  + [t.content(str(i)) for i in range(5)]
                                  + [t.finish(), t.done(), t.cost()]))
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True)
        it = iter(stream)
        next(it)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                got = [c.choices[0].delta.content for c in stream if c.choices]
                msg = f"iterated {got!r}"
            except alltoken.AllTokenError as exc:
                msg = f"error {type(exc).__name__}"
            except BaseException as exc:
                msg = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                os.write(w, msg.encode()[:4000])
                os._exit(0)
        os.close(w)
        try:
            # A clear error comes at once; a child that reads waits for the gate.
            select.select([r], [], [], 1.0)
            gate.set()
            os.waitpid(pid, 0)
            child = os.read(r, 4096).decode()
        finally:
            os.close(r)
        try:
            for _ in it:
                pass
        except alltoken.AllTokenError as exc:
            parent_error = exc
        else:
            parent_error = None
        finally:
            stream.close()
            client.close()
        assert child.startswith("error"), child
        assert parent_error is None
        assert stream.text == "a01234"
        assert stream.cost is not None
