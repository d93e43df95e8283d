"""A stream's accumulated state read from a thread other than its reader.

A UI or monitoring thread showing ``stream.text`` while a worker iterates is the
ordinary way to display progress; reading the state must never change it.
"""

from __future__ import annotations

import dis
import sys
import threading
import time

import alltoken
from alltoken import _stream
from alltoken import testing as t

_STORES = {dis.opmap[name] for name in ("STORE_SUBSCR", "STORE_SLICE") if name in dis.opmap}


def _preempt_before_stores(code: object, pause: float):
    """A trace function that, in *code* only, pauses right before each subscript store:
    where the interpreter may switch threads anyway, made certain."""

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        if frame.f_code is not code:
            return None
        frame.f_trace_opcodes = True

        def local(frame, event, arg):  # type: ignore[no-untyped-def]
            if event == "opcode" and frame.f_code.co_code[frame.f_lasti] in _STORES:
                time.sleep(pause)
            return local

        return local

    return tracer


def test_reading_text_from_another_thread_never_loses_tokens(server: t.LocalServer) -> None:
    n = 200
    server.enqueue(t.StreamReply([t.content("x") for _ in range(n)]
                                 + [t.reasoning("r") for _ in range(n)]
                                 + [t.finish(), t.done()]))
    with alltoken.AllToken(api_key="k", base_url=server.base_url, timeout=5.0) as client:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        stop = threading.Event()
        tracer = _preempt_before_stores(_stream._joined.__code__, 0.002)

        def watch() -> None:
            sys.settrace(tracer)
            try:
                while not stop.is_set():
                    stream.text  # noqa: B018 - what a progress display reads
                    stream.reasoning  # noqa: B018
            finally:
                sys.settrace(None)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with stream:
                for _ in stream:
                    time.sleep(0.0002)  # the reader's loop body
        finally:
            stop.set()
            watcher.join(10)
        assert stream.text == "x" * n
        assert stream.reasoning == "r" * n
        assert stream.completion().choices[0].message.content == "x" * n


def _choice_chunk(index: int, text: str) -> t.Step:
    return t.chunk({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{"index": index, "delta": {"content": text},
                                 "finish_reason": None}]})


def _preempt_in_loops(code: object, pause: float):
    """A trace function that, in *code* (a function or its comprehension), pauses at each
    step of its loops: where the interpreter may switch threads anyway, made certain."""
    codes = {code} | {c for c in getattr(code, "co_consts", ()) if hasattr(c, "co_code")}

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        if frame.f_code not in codes:
            return None
        frame.f_trace_opcodes = True

        def local(frame, event, arg):  # type: ignore[no-untyped-def]
            if event == "opcode" and frame.f_code.co_code[frame.f_lasti] == dis.opmap["FOR_ITER"]:
                time.sleep(pause)
            return local

        return local

    return tracer


def test_completion_from_another_thread_while_new_choices_arrive(server: t.LocalServer) -> None:
    # n > 1: choices 1..40 each start in their own chunk while a dashboard thread
    # builds the completion.
    n = 40
    server.enqueue(t.StreamReply([_choice_chunk(i, f"c{i}") for i in range(n)] + [t.done()]))
    with alltoken.AllToken(api_key="k", base_url=server.base_url, timeout=5.0) as client:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True, n=n)
        stop = threading.Event()
        errors: list[BaseException] = []
        tracer = _preempt_in_loops(_stream._StreamState.completion.__code__, 0.002)

        def watch() -> None:
            sys.settrace(tracer)
            try:
                while not stop.is_set():
                    stream.completion()
            except BaseException as exc:
                errors.append(exc)
            finally:
                sys.settrace(None)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with stream:
                for _ in stream:
                    time.sleep(0.001)
        finally:
            stop.set()
            watcher.join(10)
        assert errors == []
        got = stream.completion()
        assert [c.message.content for c in got.choices] == [f"c{i}" for i in range(n)]


def _preempt_at_line(code: object, needle: str, pause: float):
    """A trace function that pauses before the line of *code* whose text holds *needle*."""
    import linecache

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        if frame.f_code is not code:
            return None

        def local(frame, event, arg):  # type: ignore[no-untyped-def]
            if event == "line" and needle in linecache.getline(frame.f_code.co_filename,
                                                                 frame.f_lineno):
                time.sleep(pause)
            return local

        return local

    return tracer


def test_tool_call_arguments_followed_from_another_thread_stay_right(
        server: t.LocalServer) -> None:
    # A UI thread shows the arguments as they stream while a worker reads the stream.
    pieces = ['{"path": "a.txt", "content": "'] + ["ab" for _ in range(100)] + ['"}']
    server.enqueue(t.StreamReply(
        [t.tool_call(0, id="call_1", name="write", arguments=pieces[0])]
        + [t.tool_call(0, arguments=p) for p in pieces[1:]] + [t.finish("tool_calls"),
                                                                t.done()]))
    with alltoken.AllToken(api_key="k", base_url=server.base_url, timeout=5.0) as client:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        stop = threading.Event()
        tracer = _preempt_at_line(_stream._ToolCallBuilder.parsed_arguments.__code__,
                                  "feed = parser.feed", 0.002)

        def watch() -> None:
            sys.settrace(tracer)
            try:
                while not stop.is_set():
                    stream.tool_call_arguments(0)
            finally:
                sys.settrace(None)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with stream:
                for _ in stream:
                    time.sleep(0.0005)
        finally:
            stop.set()
            watcher.join(10)
        assert stream.tool_calls[0].function.arguments == "".join(pieces)
        assert stream.tool_call_arguments(0) == {"path": "a.txt", "content": "ab" * 100}
