"""The stream's capabilities beyond the SDKs (DESIGN.md section 4), against the local server.

- ``Stream.completion()``: the streamed answer equals what a non-streamed ``create()``
  returns for the same answer (n == 1, n > 1, tool calls), and holds what arrived after an
  abort or an in-stream error.
- ``Stream.tool_call_arguments()``: tool-call arguments parsed as they stream, at a cost
  in proportion to the new text (work counted, not timed).
- ``Stream.sse()``: the stream relayed as Server-Sent Events by a real WSGI server
  (``wsgiref``); a browser that goes away closes the upstream request.
- ``Stream.timings``: headers, first token, end and attempts.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any, Callable, Final, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import alltoken
from alltoken import testing as t
from alltoken._stream import Timings, _merge_tools, _ToolCallBuilder
from alltoken._types import FunctionCallDelta, ToolCallDelta
from alltoken.sse import Comment, ServerSentEvent, SSEDecoder

MSG = [{"role": "user", "content": "Solve 15! / 13!"}]


def chat(client: alltoken.AllToken, **kw: Any) -> alltoken.Stream:
    kw.setdefault("model", "deepseek-reasoner")
    kw.setdefault("messages", MSG)
    stream: alltoken.Stream = client.chat.completions.create(stream=True, **kw)
    return stream


def answer(client: alltoken.AllToken, **kw: Any) -> alltoken.ChatCompletion:
    kw.setdefault("model", "deepseek-reasoner")
    kw.setdefault("messages", MSG)
    completion: alltoken.ChatCompletion = client.chat.completions.create(stream=False, **kw)
    return completion


def streamed(client: alltoken.AllToken, **kw: Any) -> alltoken.ChatCompletion:
    with chat(client, **kw) as stream:
        for _ in stream:
            pass
    return stream.completion()


def same_answer(streamed: alltoken.ChatCompletion, plain: alltoken.ChatCompletion) -> None:
    """The two are equal, dataclasses and JSON (``raw``), but for ``created``: each side
    stamps its own second, so they may differ by one."""
    assert abs(streamed.created - plain.created) <= 2
    streamed.created = streamed.raw["created"] = plain.created
    assert streamed == plain
    assert streamed.raw == plain.raw
    assert type(streamed.raw["choices"][0]["message"]) is dict


def cid(index: int, delta: dict[str, Any], finish: Optional[str] = None) -> dict[str, Any]:
    """A chunk of the n > 1 script: one choice's delta."""
    return {"id": "chatcmpl-n2", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "m", "choices": [{"index": index, "delta": delta,
                                       "finish_reason": finish}]}


# -- completion() ----------------------------------------------------------------------------


class TestCompletion:
    def test_equals_the_non_streamed_answer_of_the_echo_model(
            self, client: alltoken.AllToken) -> None:
        # The echo model answers the same text either way, usage included: the strict
        # comparison, every field and the JSON.
        kw: dict[str, Any] = {"model": "echo", "messages": [
            {"role": "user", "content": "say \u00e9 and \U0001f600 twice"}]}
        got, expected = streamed(client, **kw), answer(client, **kw)
        assert got.choices[0].message.content == "say \u00e9 and \U0001f600 twice"
        same_answer(got, expected)

    def test_equals_the_non_streamed_answer_with_reasoning(
            self, client: alltoken.AllToken) -> None:
        got, expected = streamed(client), answer(client)
        assert got.choices[0].message.reasoning_content == \
            expected.choices[0].message.reasoning_content
        assert got.usage is not None and expected.usage is not None
        # The local server's one difference between its two answers: its streamed usage
        # counts the reasoning words as completion tokens (as the API does), its JSON
        # answer only the answer's words. Everything else is compared strictly.
        reasoning = got.choices[0].message.reasoning_content
        assert reasoning
        reasoning_words = len(reasoning.split(" "))
        assert got.usage.completion_tokens == expected.usage.completion_tokens + reasoning_words
        got.usage = expected.usage
        got.raw["usage"] = expected.raw["usage"]
        same_answer(got, expected)

    def test_n_2_interleaved_choices_equal_the_non_streamed_two_choices(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.chunk(cid(0, {"role": "assistant", "content": ""})),
            t.chunk(cid(1, {"role": "assistant", "content": ""})),
            t.chunk(cid(1, {"reasoning_content": "Two "})),
            t.chunk(cid(0, {"content": "Hello"})),
            t.chunk(cid(1, {"reasoning_content": "words."})),
            t.chunk(cid(1, {"content": "Hi"})),
            t.chunk(cid(0, {"content": " there"})),
            t.chunk(cid(1, {"content": " you"})),
            t.chunk(cid(1, {}, "length")),
            t.chunk(cid(0, {}, "stop")),
            t.chunk({"id": "chatcmpl-n2", "object": "chat.completion.chunk",
                     "created": 1700000000, "model": "m", "choices": [],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                               "total_tokens": 12}}),
            t.done()]))
        server.enqueue(t.JSONReply({
            "id": "chatcmpl-n2", "object": "chat.completion", "created": 1700000000,
            "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                 "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": "Hi you",
                                         "reasoning_content": "Two words."},
                 "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}))
        stream = chat(client, n=2)
        with stream:
            for _ in stream:
                pass
        got, expected = stream.completion(), answer(client, n=2)
        assert [c.message.content for c in got.choices] == ["Hello there", "Hi you"]
        assert got == expected and got.raw == expected.raw
        # The stream's own attributes stay those of the first choice.
        assert (stream.text, stream.reasoning, stream.finish_reason) == ("Hello there", "",
                                                                          "stop")

    def test_n_2_choices_come_out_in_index_order_whatever_came_first(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.chunk(cid(2, {"content": "c"})), t.chunk(cid(1, {"content": "b"})),
            t.chunk(cid(0, {"content": "a"})), t.done()]))
        got = streamed(client)
        assert [(c.index, c.message.content) for c in got.choices] == [
            (0, "a"), (1, "b"), (2, "c")]

    def test_tool_calls_equal_the_non_streamed_tool_calls(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.role(),
            t.tool_call(0, id="call_1", name="get_weather", arguments=""),
            t.tool_call(0, arguments='{"city": '),
            t.tool_call(0, arguments='"Paris"}'),
            t.tool_call(1, id="call_2", name="get_time", arguments='{"tz": "CET"}'),
            t.finish("tool_calls"), t.usage(8, 9), t.done()], model="m"))
        calls = [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}]
        server.enqueue(t.JSONReply({
            "id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()),
            "model": "m", "choices": [{"index": 0, "message": {
                "role": "assistant", "content": None, "tool_calls": calls},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 9, "total_tokens": 17}}))
        got, expected = streamed(client), answer(client)
        message = got.choices[0].message
        assert message.content is None and message.tool_calls is not None
        assert [c.function.arguments for c in message.tool_calls] == [
            '{"city": "Paris"}', '{"tz": "CET"}']
        same_answer(got, expected)

    def test_mid_stream_it_holds_what_arrived_so_far(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.role(), t.content("Hel"), t.content("lo"),
                                      t.wait(gate), t.content("!"), t.finish(), t.done()]))
        with chat(client) as stream:
            before = stream.completion()
            assert before.choices[0].message.content == "" and before.id == ""
            for _ in range(3):
                next(stream)
            now = stream.completion()
            assert (now.id, now.choices[0].message.content) == ("chatcmpl-local", "Hello")
            assert now.choices[0].finish_reason is None and now.usage is None
            gate.set()
            for _ in stream:
                pass
        assert stream.completion().choices[0].message.content == "Hello!"
        assert stream.completion().choices[0].finish_reason == "stop"

    def test_after_an_abort_it_holds_the_partial_text(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.reasoning("Think. "), t.content("Hel"),
                                      t.content("lo"), t.wait(gate), t.content(" world"),
                                      t.finish(), t.done()]))
        signal = threading.Event()
        stream = chat(client, signal=signal)
        with pytest.raises(alltoken.AbortedError):
            for chunk in stream:
                if chunk.choices[0].delta.content == "lo":
                    signal.set()
        gate.set()
        got = stream.completion()
        assert got.choices[0].message.content == "Hello"
        assert got.choices[0].message.reasoning_content == "Think. "
        assert got.choices[0].finish_reason is None and got.usage is None
        assert got.id == "chatcmpl-local"

    def test_after_an_in_stream_error_it_holds_what_arrived(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.content("Par"), t.tool_call(0, id="c1", name="f", arguments='{"a": 1'),
            t.error_event(500, "upstream failed", "server_error")]))
        stream = chat(client)
        with pytest.raises(alltoken.InternalServerError):
            for _ in stream:
                pass
        message = stream.completion().choices[0].message
        assert message.content == "Par"
        assert message.tool_calls is not None
        assert message.tool_calls[0].function.arguments == '{"a": 1'

    def test_text_stream_has_it_too(self, server: t.LocalServer) -> None:
        pieces = alltoken.stream("hi there", model="echo", base_url=server.base_url,
                                 api_key="k")
        assert "".join(pieces) == "hi there"
        assert pieces.completion().choices[0].message.content == "hi there"
        assert pieces.timings.end is not None


# -- tool_call_arguments() -------------------------------------------------------------------


def _tool_chunk(arguments: str) -> bytes:
    obj = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": arguments}}]}}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class TestToolCallArguments:
    def test_the_file_name_is_there_before_the_content_has_finished(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([
            t.tool_call(0, id="call_1", name="write_file", arguments='{"pa'),
            t.tool_call(0, arguments='th": "notes.t'),
            t.tool_call(0, arguments='xt", "content": "Dear'),
            t.tool_call(0, arguments=" diary,"),
            t.wait(gate),  # the server sends the rest only after the test saw the name
            t.tool_call(0, arguments=' today"}'),
            t.finish("tool_calls"), t.done()]))
        seen: list[Any] = []
        with chat(client) as stream:
            assert stream.tool_call_arguments(0) is None
            for _ in stream:
                args = stream.tool_call_arguments(0)
                seen.append(args)
                if args == {"path": "notes.txt", "content": "Dear diary,"}:
                    assert not gate.is_set()
                    gate.set()
        assert seen == [
            {},  # '{"pa': the key in progress is left out
            {"path": "notes.t"},
            {"path": "notes.txt", "content": "Dear"},
            {"path": "notes.txt", "content": "Dear diary,"},
            {"path": "notes.txt", "content": "Dear diary, today"},
            {"path": "notes.txt", "content": "Dear diary, today"},  # the finish chunk
        ]
        assert gate.is_set()
        assert stream.tool_call_arguments(0) == json.loads(
            stream.tool_calls[0].function.arguments)

    def test_each_tool_call_has_its_own_and_a_missing_one_is_none(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.tool_call(0, id="a", name="f", arguments="[1, 2"),
            t.tool_call(1, id="b", name="g", arguments='{"x": tr'),
            t.tool_call(1, arguments="ue}"),
            t.tool_call(0, arguments=", 3]"), t.done()]))
        with chat(client) as stream:
            assert [stream.tool_call_arguments(i) for i in range(3)] == [None] * 3
            for _ in stream:
                pass
        assert stream.tool_call_arguments(0) == [1, 2, 3]
        assert stream.tool_call_arguments(1) == {"x": True}
        assert stream.tool_call_arguments(2) is None

    def test_arguments_that_are_not_json_keep_the_last_valid_value(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.tool_call(0, id="a", name="f", arguments='{"a": 1, '),
            t.tool_call(0, arguments="oops, not JSON"),
            t.tool_call(0, arguments='"b": 2}'), t.finish("tool_calls"), t.done()]))
        values = []
        with chat(client) as stream:
            for _ in stream:
                values.append(stream.tool_call_arguments(0))
        assert values == [{"a": 1}] * 4
        assert stream.done and stream.finish_reason == "tool_calls"  # the stream is fine
        assert stream.tool_calls[0].function.arguments == '{"a": 1, oops, not JSON"b": 2}'

    def test_a_plain_text_stream_makes_no_parser(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        with chat(client) as stream:
            for _ in stream:
                assert stream.tool_call_arguments(0) is None
        assert stream._state._tools == {}
        server.enqueue(t.StreamReply([t.tool_call(0, id="a", name="f", arguments="{}"),
                                      t.done()]))
        with chat(client) as stream:
            for _ in stream:
                pass
        assert stream._state._tools[0].parser is None  # nobody asked: none was made

    def test_1_byte_deltas_through_the_stream_cost_work_in_proportion_to_the_text(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        # A file being written by a tool call, one character per chunk through the real
        # stream (131,072+ chunks: HTTP, SSE, JSON; 1 MiB this way takes 15 s on a busy
        # CI machine, so the 1 MiB case is the next test, on the stream's state), read
        # now and then as a display would. Work is counted, not timed.
        text = json.dumps({"path": "big.py", "content": _CONTENT[: 2**17]})
        body = b"".join(_tool_chunk(ch) for ch in text) + b"data: [DONE]\n\n"
        server.enqueue(t.StreamReply([t.raw(body)]))
        with chat(client) as stream:
            _follow(stream._state._tools, stream, stream.tool_call_arguments, 8192)
        assert stream.tool_call_arguments(0) == json.loads(text)

    def test_1_mib_in_1_byte_deltas_costs_work_in_proportion_to_the_text(self) -> None:
        # The same for 1 MiB, fed to the stream's accumulation (what the chunk loop calls
        # for each tool-call delta) without the wire.
        text = json.dumps({"path": "big.py", "content": _CONTENT})
        tools: dict[int, _ToolCallBuilder] = {}
        deltas = ([ToolCallDelta(0, None, None, FunctionCallDelta(None, ch))] for ch in text)
        _follow(tools, deltas, lambda i: tools[i].parsed_arguments(), 65_536)
        assert tools[0].parsed_arguments() == json.loads(text)


#: 1 MiB of source code, with every kind of JSON escape now and then.
_CONTENT: Final = ("def f(x):\n    return x * 2  # \u00e9\U0001f600 \"q\" \\\n" * 30_000)[
    : 2**20]


def _follow(tools: dict[int, _ToolCallBuilder], deltas: Iterable[Any],
            arguments: Callable[[int], Any], every: int) -> None:
    """Feed *deltas* (each is a chunk of the stream, or a list of tool-call deltas
    merged here), reading the parsed arguments every *every* deltas, and check the work
    PartialJSON counts (its counters, as in test_partial_json.py)."""
    reads = fed = scanned = 0
    per_read: list[tuple[int, int]] = []  # (new characters, characters scanned)
    i = 0
    for i, delta in enumerate(deltas, 1):
        if isinstance(delta, list):
            _merge_tools(tools, delta)
        if i % every == 0:
            value = arguments(0)
            reads += 1
            parser = tools[0].parser
            assert parser is not None
            per_read.append((i - fed, parser._scanned - scanned))
            fed, scanned = i, parser._scanned
            assert value["path"] == "big.py" and _CONTENT.startswith(value["content"])
    arguments(0)
    parser = tools[0].parser
    assert parser is not None and parser.complete
    n = i
    assert reads == n // every
    assert parser._scanned < 4 * n  # each character scanned a bounded number of times
    # Copies: the rope's (about twice per character), plus each read's copy of the
    # string in progress (at most n each): the reads, not the deltas, set the cost.
    assert parser._copied[0] < 6 * n + reads * n
    # Each read scanned in proportion to what arrived since the previous one.
    assert all(s <= 4 * new + 64 for new, s in per_read)


# -- sse() -----------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Closing:
    """A WSGI response iterable around the relay that records when the server closed it."""

    def __init__(self, relay: Iterator[bytes]) -> None:
        self.relay = relay
        self.closed_at: Optional[float] = None

    def __iter__(self) -> Iterator[bytes]:
        return self.relay

    def close(self) -> None:
        self.closed_at = time.monotonic()
        self.relay.close()  # type: ignore[attr-defined]


def _relay_app(client: alltoken.AllToken, bodies: list[_Closing]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any],
            start_response: Callable[[str, list[tuple[str, str]]], Any]) -> Iterable[bytes]:
        stream = chat(client)
        start_response("200 OK", [("Content-Type", "text/event-stream"),
                                  ("Cache-Control", "no-cache")])
        body = _Closing(stream.sse())
        bodies.append(body)
        return body

    return app


@pytest.fixture
def wsgi(client: alltoken.AllToken) -> Iterator[tuple[str, int, list[_Closing]]]:
    bodies: list[_Closing] = []
    httpd = make_server("127.0.0.1", 0, _relay_app(client, bodies), server_class=_Server,
                        handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", httpd.server_address[1], bodies
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _get(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


def _events(body: bytes) -> list[Any]:
    decoder = SSEDecoder()
    return decoder.feed(body) + decoder.end()


class TestSSE:
    SCRIPT_DATA = (
        # Chunks written by hand, with odd spacing and escapes: relayed as received,
        # never re-serialised.
        '{"id":"c1", "object": "chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
        '{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":'
        '{"reasoning_content":"\\u00e9t\\u00e9 \\ud83d\\ude00"}}]}',
        '{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":'
        '{"content":"Hi \u00e9\U0001f600"}}]}',
        '{ "id": "c1", "choices": [ {"index": 0, "delta": {}, "finish_reason": "stop"} ] }',
        '{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}',
    )

    def script(self) -> list[t.Step]:
        return [t.comment("keep-alive"), *(t.data(d) for d in self.SCRIPT_DATA),
                t.done(), t.cost("0.0042", prompt_tokens=3, completion_tokens=4)]

    def test_the_relayed_bytes_decode_to_the_same_chunks(
            self, server: t.LocalServer, client: alltoken.AllToken,
            wsgi: tuple[str, int, list[_Closing]]) -> None:
        server.enqueue(t.StreamReply(self.script()), t.StreamReply(self.script()))
        host, port, bodies = wsgi
        sock = _get((host, port))
        try:
            response = _read_all(sock)
        finally:
            sock.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK") and b"text/event-stream" in head
        events = _events(body)
        data = [e.data for e in events if isinstance(e, ServerSentEvent)]
        assert data == [*self.SCRIPT_DATA, "[DONE]"]  # the exact text as received
        comments = [e.text for e in events if isinstance(e, Comment)]
        assert len(comments) == 1 and json.loads(comments[0])["cost"] == "0.0042"
        # Parsed, they are the chunks the stream itself yields.
        with chat(client) as direct:
            chunks = list(direct)
        assert [alltoken.ChatCompletionChunk.from_json(json.loads(d)) for d in data[:-1]] \
            == chunks
        assert bodies[0].closed_at is not None  # the server closed it at the end
        assert server.open_connections <= 1  # no upstream connection was left open

    def test_the_relay_is_the_exact_bytes(self, server: t.LocalServer,
                                          client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply(self.script()))
        relayed = list(chat(client).sse())
        assert relayed == [
            *(f"data: {d}\n\n".encode() for d in self.SCRIPT_DATA), b"data: [DONE]\n\n",
            b': {"cost":"0.0042","input_price":"0.0003","output_price":"0.0009",'
            b'"prompt_tokens":3,"completion_tokens":4}\n\n']

    def test_an_event_of_several_data_lines_stays_one_event(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.data('{"choices":\n[]}'), t.done()]))
        relayed = b"".join(chat(client).sse())
        assert relayed == b'data: {"choices":\ndata: []}\n\ndata: [DONE]\n\n'
        assert [e.data for e in _events(relayed)] == ['{"choices":\n[]}', "[DONE]"]

    def test_an_in_stream_error_is_the_last_event(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.content("Hi"), t.error_event(500, "the model crashed", "server_error"),
            t.content("never")]))
        stream = chat(client)
        relayed = list(stream.sse())
        assert len(relayed) == 2
        assert json.loads(relayed[-1][len(b"data: "):]) == {"error": {
            "message": "the model crashed", "type": "server_error", "code": 500}}
        assert relayed[-1].endswith(b"\n\n")
        assert stream.text == "Hi"
        assert server.open_connections == 0 or _closes(server)

    @pytest.mark.parametrize(
        ("step", "kind", "code"),
        [(t.drop(), "api_connection_error", 502),
         (t.end(), "api_connection_error", 502),
         (t.data("{not json"), "protocol_error", 502)])
    def test_a_failure_is_an_error_event(self, server: t.LocalServer,
                                         client: alltoken.AllToken, step: t.Step,
                                         kind: str, code: int) -> None:
        server.enqueue(t.StreamReply([t.content("Hi"), step]))
        relayed = list(chat(client).sse())
        error = json.loads(relayed[-1][len(b"data: "):])["error"]
        assert (error["type"], error["code"]) == (kind, code)
        assert error["message"]

    def test_an_abort_is_an_error_event(self, server: t.LocalServer,
                                        client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("Hi"), t.wait(gate), t.done()]))
        signal = threading.Event()
        relay = chat(client, signal=signal).sse()
        assert next(relay).startswith(b"data: ")
        threading.Timer(0.05, signal.set).start()
        last = next(relay)
        gate.set()
        assert json.loads(last[len(b"data: "):])["error"]["type"] == "aborted"
        assert json.loads(last[len(b"data: "):])["error"]["code"] == 499
        with pytest.raises(StopIteration):
            next(relay)

    def test_closing_before_the_first_event_closes_the_upstream_request(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.sleep(5), t.content("late"), t.done()]))
        stream = chat(client)
        relay = stream.sse()
        server.wait_for_connections(1)
        relay.close()  # type: ignore[attr-defined]
        server.wait_for_connections(0, timeout=1)
        assert stream.timings.end is not None
        relay.close()  # type: ignore[attr-defined]  # idempotent

    def test_a_browser_that_goes_away_closes_the_upstream_request(
            self, server: t.LocalServer, wsgi: tuple[str, int, list[_Closing]]) -> None:
        # The upstream answers slowly; the browser reads two events and hangs up. wsgiref
        # notices only when a write fails (the first write after the hang-up still
        # succeeds and draws an RST), then closes the response iterable, which must close
        # the upstream request at once.
        server.enqueue(t.StreamReply([
            step for i in range(200) for step in (t.content(f"w{i} "), t.sleep(0.02))]))
        host, port, bodies = wsgi
        sock = _get((host, port))
        received = b""
        while received.count(b"\n\n") < 3:  # the head's blank line and two events
            received += sock.recv(65536)
        server.wait_for_connections(1)
        hung_up = time.monotonic()
        sock.close()
        deadline = hung_up + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.001)
        upstream_closed = time.monotonic()
        assert server.open_connections == 0
        closed_at = bodies[0].closed_at
        assert closed_at is not None
        write_failed_to_upstream_closed = upstream_closed - closed_at
        print(f"\nhang-up -> relay closed by wsgiref: {(closed_at - hung_up) * 1000:.1f} ms; "
              f"relay closed -> upstream connection closed: "
              f"{write_failed_to_upstream_closed * 1000:.1f} ms; hang-up -> upstream "
              f"closed: {(upstream_closed - hung_up) * 1000:.1f} ms")
        # The target is 100 ms from the failed write; the bound allows for a loaded
        # machine (the local server itself notices a hang-up by polling every 10 ms).
        assert write_failed_to_upstream_closed < 0.5
        assert upstream_closed - hung_up < 1.0


def _closes(server: t.LocalServer) -> bool:
    server.wait_for_connections(0, timeout=2)
    return True


# -- timings ---------------------------------------------------------------------------------


class TestTimings:
    def test_each_is_none_until_it_happened_and_they_come_in_order(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.role(), t.wait(gate), t.content("Hi"), t.finish(),
                                      t.done()]))
        started = time.monotonic()
        stream = chat(client)
        after_create = time.monotonic() - started
        first = stream.timings
        assert first.headers is not None and 0 <= first.headers <= after_create
        assert (first.first_token, first.end, first.attempts) == (None, None, 1)
        next(stream)  # the role chunk: no token yet
        assert stream.timings.first_token is None
        gate.set()
        next(stream)
        timings = stream.timings
        assert timings.first_token is not None and timings.end is None
        for _ in stream:
            pass
        done = stream.timings
        assert done.headers is not None and done.first_token is not None
        assert done.end is not None
        assert 0 <= done.headers <= done.first_token <= done.end <= time.monotonic() - started
        assert done.first_token == timings.first_token  # set once

    def test_a_retry_counts_as_an_attempt(self, server: t.LocalServer,
                                          client: alltoken.AllToken,
                                          waits: list[float]) -> None:
        server.enqueue(t.ErrorReply(500), t.StreamReply([t.content("Hi"), t.done()]))
        with chat(client) as stream:
            assert stream.timings.attempts == 2
            for _ in stream:
                pass
        assert len(waits) == 1
        assert stream.timings.attempts == 2

    def test_a_retried_in_stream_error_counts_and_headers_are_the_read_attempts(
            self, server: t.LocalServer, client: alltoken.AllToken,
            waits: list[float]) -> None:
        server.enqueue(t.StreamReply([t.error_event(503, "busy", "server_error")]),
                       t.StreamReply([t.content("Hi"), t.done()]))
        stream = chat(client)
        headers_first = stream.timings.headers
        list(stream)
        timings = stream.timings
        assert timings.attempts == 2 and stream.text == "Hi"
        assert headers_first is not None and timings.headers is not None
        assert timings.headers > headers_first

    def test_a_tool_call_is_a_first_token(self, server: t.LocalServer,
                                          client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.tool_call(0, id="a", name="f"), t.done()]))
        with chat(client) as stream:
            next(stream)
            assert stream.timings.first_token is not None

    def test_a_failure_and_a_close_set_the_end(self, server: t.LocalServer,
                                               client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("Hi"), t.drop()]))
        stream = chat(client)
        with pytest.raises(alltoken.APIConnectionError):
            list(stream)
        assert stream.timings.end is not None and stream.timings.first_token is not None
        stream = chat(client)
        before = stream.timings
        stream.close()  # never iterated
        after = stream.timings
        assert before.end is None
        assert after.end is not None and after.first_token is None

    def test_a_snapshot_that_cannot_be_changed(self, client: alltoken.AllToken) -> None:
        stream = chat(client)
        timings = stream.timings
        with pytest.raises(AttributeError):
            timings.end = 1.0  # type: ignore[misc]
        list(stream)
        assert stream.timings.end is not None
        assert timings == Timings(timings.headers, None, None, 1)  # unchanged
        assert typing.get_type_hints(Timings)["end"] == Optional[float]
        assert "first_token=" in repr(timings)
