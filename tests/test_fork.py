"""a forked child that sets its copy of an abort Event.

A pre-fork server (multiprocessing ``fork``, gunicorn, Celery) often keeps one
module-level ``threading.Event`` as its stop signal and passes it as ``signal=``. The
child inherits the parent's ``Deadlines`` (their ``_Wakeup`` hooks sit in the copied
Event's condition waiters) and the parent's socket descriptors. When the child sets its
copy -- its own graceful stop -- ``_Wakeup.release -> Deadlines.interrupt`` calls
``shutdown(SHUT_RDWR)`` on the inherited descriptor. ``shutdown`` acts on the socket
shared with the parent, not on the child's copy: the parent's stream dies
(``ConnectionResetError``) though nobody in the parent aborted it. DESIGN.md,
Processes: a child never uses or closes the socket of a connection its parent owns.
FAILS on main at ff87555.
"""

from __future__ import annotations

import os
import threading

import pytest

import alltoken
from alltoken import testing as t


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_setting_its_copy_of_the_signal_leaves_the_parents_stream_alone() -> None:
    gate = threading.Event()
    with t.LocalServer(pace=0) as srv:
        client = alltoken.AllToken(api_key="k", base_url=srv.base_url, proxy=False,
                                   max_retries=0, timeout=5)
        srv.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.content("b"), t.done()]))
        stop = threading.Event()
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True, signal=stop)
        it = iter(stream)
        next(it)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                stop.set()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        gate.set()
        try:
            for _ in it:
                pass
        finally:
            stream.close()
            client.close()
        assert stream.text == "ab"
        assert stream.done
