"""The local server, checked with the standard library only (raw sockets, http.client),
so that its behaviour is established independently of the client it serves."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from alltoken import testing as t
from alltoken.sse import Comment, ServerSentEvent, SSEDecoder

# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[t.LocalServer]:
    with t.LocalServer(pace=0) as srv:
        yield srv


def connect(server: t.LocalServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)


def post(server: t.LocalServer, body: object, path: str = "/v1/chat/completions",
         headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[http.client.HTTPResponse, bytes]:
    conn = connect(server)
    try:
        conn.request(method, path, json.dumps(body).encode(),
                     {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def request_bytes(body: bytes = b'{"stream": true}', *, version: str = "HTTP/1.1",
                  close: bool = True) -> bytes:
    return (b"POST /v1/chat/completions %s\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"
            % (version.encode(), b"Connection: close\r\n" if close else b"", len(body), body))


def read_all(s: socket.socket) -> bytes:
    """Every byte until the peer closes (a reset ends the read like a close)."""
    out = b""
    while True:
        try:
            piece = s.recv(65536)
        except ConnectionResetError:
            return out
        if not piece:
            return out
        out += piece


def recv_until(s: socket.socket, marker: bytes) -> bytes:
    out = b""
    while marker not in out:
        piece = s.recv(65536)
        assert piece, f"closed before {marker!r}; got {out!r}"
        out += piece
    return out


def raw_exchange(server: t.LocalServer, body: bytes = b'{"stream": true}', *,
                 version: str = "HTTP/1.1") -> bytes:
    """Send one request on a raw socket; return every byte until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(request_bytes(body, version=version))
        return read_all(s)


def split_response(wire: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def dechunk(body: bytes) -> tuple[list[bytes], bool]:
    """Strictly parse a chunked body: (chunk payloads, whether the 0-chunk ended it)."""
    chunks: list[bytes] = []
    pos = 0
    while pos < len(body):
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        pos = eol + 2
        if size == 0:
            assert body[pos:] == b"\r\n"
            return chunks, True
        chunks.append(body[pos : pos + size])
        assert body[pos + size : pos + size + 2] == b"\r\n"
        pos += size + 2
    return chunks, False


def stream_body(server: t.LocalServer, *steps: t.Step, **options: Any) -> bytes:
    """The de-chunked body of a StreamReply of *steps*, which must end cleanly."""
    server.enqueue(t.StreamReply(list(steps), **options))
    headers, body = split_response(raw_exchange(server))
    assert headers["transfer-encoding"] == "chunked"
    chunks, ended = dechunk(body)
    assert ended
    return b"".join(chunks)


def events(data: bytes) -> list[ServerSentEvent | Comment]:
    d = SSEDecoder()
    return d.feed(data) + d.end()


def chunk_objects(items: list[ServerSentEvent | Comment]) -> list[Any]:
    return [json.loads(e.data) for e in items
            if isinstance(e, ServerSentEvent) and e.data != "[DONE]"]


def one_chunk(server: t.LocalServer, step: t.Step, model: str = "m") -> Any:
    server.enqueue(t.StreamReply([step]))
    _, body = post(server, {"model": model, "stream": True})
    (obj,) = chunk_objects(events(body))
    return obj


# -- steps ---------------------------------------------------------------------------


class TestChunkSteps:
    def test_content_is_an_openai_shaped_chunk(self, server: t.LocalServer) -> None:
        obj = one_chunk(server, t.content("Hi"), model="mdl")
        assert obj["id"] == "chatcmpl-local" and obj["object"] == "chat.completion.chunk"
        assert isinstance(obj["created"], int) and obj["model"] == "mdl"
        assert obj["choices"] == [{"index": 0, "delta": {"content": "Hi"},
                                   "finish_reason": None}]

    def test_reasoning_sets_reasoning_content(self, server: t.LocalServer) -> None:
        obj = one_chunk(server, t.reasoning("hmm"))
        assert obj["choices"][0]["delta"] == {"reasoning_content": "hmm"}

    def test_role_opens_with_an_empty_content(self, server: t.LocalServer) -> None:
        assert one_chunk(server, t.role())["choices"][0]["delta"] == {
            "role": "assistant", "content": ""}
        assert one_chunk(server, t.role(role="tool"))["choices"][0]["delta"]["role"] == "tool"

    def test_tool_call_with_every_field(self, server: t.LocalServer) -> None:
        obj = one_chunk(server, t.tool_call(0, id="call_1", name="f", arguments='{"a"'))
        assert obj["choices"][0]["delta"] == {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": '{"a"'}}]}

    def test_tool_call_omits_fields_left_none(self, server: t.LocalServer) -> None:
        args_only = one_chunk(server, t.tool_call(1, arguments=": 1}"))
        id_only = one_chunk(server, t.tool_call(2, id="c"))
        assert args_only["choices"][0]["delta"]["tool_calls"] == [
            {"index": 1, "function": {"arguments": ": 1}"}}]
        assert id_only["choices"][0]["delta"]["tool_calls"] == [
            {"index": 2, "id": "c", "type": "function"}]

    def test_finish_has_an_empty_delta_and_the_reason(self, server: t.LocalServer) -> None:
        obj = one_chunk(server, t.finish("length"))
        assert obj["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]

    def test_usage_is_a_chunk_without_choices(self, server: t.LocalServer) -> None:
        obj = one_chunk(server, t.usage(7, 8))
        assert obj["choices"] == [] and obj["model"] == "m"
        assert obj["usage"] == {"prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15}

    def test_chunk_sends_its_object_verbatim(self, server: t.LocalServer) -> None:
        obj = {"choices": [{"delta": {"content": "x"}}], "extra": [1, None]}
        assert one_chunk(server, t.chunk(obj)) == obj  # no model, id or created added

    def test_model_comes_from_the_reply_then_the_request_then_the_server(self) -> None:
        with t.LocalServer(pace=0, model="srv") as srv:
            srv.enqueue(t.StreamReply([t.content("a")], model="reply"),
                        t.StreamReply([t.content("a")]), t.StreamReply([t.content("a")]))
            models = [chunk_objects(events(post(srv, body)[1]))[0]["model"]
                      for body in ({"model": "req"}, {"model": "req"}, {})]
        assert models == ["reply", "req", "srv"]


class TestEventSteps:
    def test_each_step_is_exactly_its_encoded_bytes(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.data("{not json"), t.comment(), t.comment(""), t.done(),
                           t.raw(b"data: x\r\n\r\n"))
        assert body == (b"data: {not json\n\n: keep-alive\n:\ndata: [DONE]\n\n"
                        b"data: x\r\n\r\n")

    def test_data_with_a_line_feed_is_two_data_lines(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.data("a\nb"))
        assert body == b"data: a\ndata: b\n\n"
        assert events(body) == [ServerSentEvent("a\nb")]

    @pytest.mark.parametrize("make", [lambda: t.data("a\rb"), lambda: t.comment("a\nb")])
    def test_unencodable_values_fail_when_the_step_is_built(self, make: Any) -> None:
        with pytest.raises(ValueError):
            make()

    def test_cost_is_the_compact_json_comment(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.done(), t.cost())
        assert body.endswith(b'\n: {"cost":"0.0012","input_price":"0.0003",'
                             b'"output_price":"0.0009","prompt_tokens":15,'
                             b'"completion_tokens":42}\n')
        item = events(body)[-1]
        assert isinstance(item, Comment) and json.loads(item.text)["cost"] == "0.0012"

    def test_cost_without_final_newline_ends_the_body_there(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.done(), t.cost("1", final_newline=False), t.content("x"))
        assert body.endswith(b'"completion_tokens":42}')
        assert b'"content"' not in body

    def test_error_event_shapes(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.error_event(),
                           t.error_event(None, "boom", None), t.error_event("overloaded"))
        errors = [json.loads(e.data) for e in events(body) if isinstance(e, ServerSentEvent)]
        assert errors == [
            {"error": {"message": "Rate limit exceeded", "type": "rate_limit_error",
                       "code": 429}},
            {"error": {"message": "boom"}},
            {"error": {"message": "Rate limit exceeded", "type": "rate_limit_error",
                       "code": "overloaded"}}]

    def test_end_finishes_cleanly_and_skips_the_rest(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.content("a"), t.end(), t.content("b"), t.done())
        assert b'"a"' in body and b'"b"' not in body and b"[DONE]" not in body

    def test_steps_running_out_finish_the_body_cleanly(self, server: t.LocalServer) -> None:
        assert stream_body(server, t.content("a")).startswith(b"data: {")
        assert stream_body(server) == b""

    def test_sleep_holds_the_next_bytes_for_its_duration(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.sleep(0.2), t.content("b")]))
        conn = connect(server)
        started = time.monotonic()
        conn.request("POST", "/v1/chat/completions", b"{}")
        resp = conn.getresponse()
        first = resp.read1(65536)
        assert b'"a"' in first and b'"b"' not in first
        assert b'"b"' in resp.read()
        assert time.monotonic() - started >= 0.2
        conn.close()

    def test_wait_holds_the_stream_until_the_gate_opens(self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.content("b"), t.done()]))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes())
            first = recv_until(s, b'"a"')
            assert not select.select([s], [], [], 0.05)[0]  # nothing more while gated
            gate.set()
            rest = read_all(s)
        assert b'"b"' not in first and b'"b"' in rest and rest.endswith(b"0\r\n\r\n")

    def test_wait_gives_up_after_its_timeout(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.wait(threading.Event(), timeout=0.01), t.content("b"))
        assert b'"b"' in body


# -- framing -------------------------------------------------------------------------


class TestText:
    """What UTF-8 cannot encode (a lone surrogate such as half of an emoji's UTF-16
    pair) is escaped where JSON allows it and refused when the step is built where it
    does not, so no reply is ever cut off in the server's thread."""

    @pytest.mark.parametrize("make", [lambda: t.content("\ud83d"),
                                      lambda: t.reasoning("\ud83d"),
                                      lambda: t.tool_call(0, arguments="\ud83d"),
                                      lambda: t.chunk({"x": "\ud83d"})])
    def test_a_lone_surrogate_in_a_chunk_is_sent_as_its_json_escape(
            self, server: t.LocalServer, make: Any) -> None:
        body = stream_body(server, make(), t.done())
        assert b"\\ud83d" in body and body.endswith(b"data: [DONE]\n\n")
        assert "\ud83d" in json.dumps(chunk_objects(events(body)), ensure_ascii=False)

    def test_a_split_emoji_arrives_as_two_escaped_halves(self, server: t.LocalServer) -> None:
        body = stream_body(server, t.content("\ud83d"), t.content("\ude00"), t.content("é"))
        assert text_of(chunk_objects(events(body)), "content") == "\ud83d\ude00é"
        assert "é".encode() in body  # only what UTF-8 cannot encode is escaped

    def test_a_lone_surrogate_in_a_json_or_error_reply_is_escaped(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply(content="a\udc00", reasoning="\ud800", model="m\ud800"),
                       t.ErrorReply(500, message="\udfff"))
        resp, body = post(server, {})
        message = json.loads(body)["choices"][0]["message"]
        assert (message["content"], message["reasoning_content"]) == ("a\udc00", "\ud800")
        resp, body = post(server, {})
        assert resp.status == 500 and json.loads(body)["error"]["message"] == "\udfff"

    @pytest.mark.parametrize("make,what", [
        (lambda: t.data("ok \ud83d"), "data"),
        (lambda: t.comment("\ude00"), "comment"),
        (lambda: t.ErrorReply(502, body="<p>\ud83d</p>"), "body")])
    def test_verbatim_text_with_a_lone_surrogate_fails_when_built(
            self, make: Any, what: str) -> None:
        with pytest.raises(ValueError, match=f"{what} contains a lone surrogate .* at index"):
            make()

    @pytest.mark.parametrize("headers", [{"X-Euro": "\u20ac"}, {"X-\u20ac": "a"},
                                         {"X-Half": "\ud83d"}])
    @pytest.mark.parametrize("reply", [t.StreamReply, t.ErrorReply, t.JSONReply])
    def test_headers_that_cannot_be_sent_fail_when_the_reply_is_built(
            self, headers: dict[str, str], reply: Any) -> None:
        args = ([],) if reply is t.StreamReply else (500,) if reply is t.ErrorReply else ()
        with pytest.raises(ValueError, match="header"):
            reply(*args, headers=headers)
        with pytest.raises(ValueError, match="request_id"):
            reply(*args, request_id="\u20ac")
        with pytest.raises(TypeError, match="status"):
            reply(*[] if reply is t.ErrorReply else args, status="500")

    def test_a_json_reply_that_cannot_be_serialised_fails_when_built(self) -> None:
        with pytest.raises(TypeError):
            t.JSONReply({"when": object()})

    def test_a_latin_1_header_value_is_sent(self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply(headers={"X-Caf": "caf\xe9"}))
        resp, _ = post(server, {})
        assert resp.getheader("x-caf") == "caf\xe9"

    @pytest.mark.parametrize("model", ["echo", "m"])
    @pytest.mark.parametrize("stream", [True, False])
    def test_the_models_answer_a_prompt_with_a_lone_surrogate(
            self, server: t.LocalServer, model: str, stream: bool) -> None:
        prompt = "half an emoji \ud83d here"
        resp, body = post(server, {"model": model, "stream": stream,
                                   "messages": [{"role": "user", "content": prompt}]})
        assert resp.status == 200
        if stream:
            items = events(body)
            text = text_of(chunk_objects(items), "content")
            assert isinstance(items[-1], Comment) and "cost" in items[-1].text
        else:
            text = json.loads(body)["choices"][0]["message"]["content"]
        assert text == prompt if model == "echo" else "\ud83d" in text


class TestFraming:
    def test_headers_of_a_stream(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.done()], status=201, headers={"X-Extra": "1"},
                                     content_type="text/plain", request_id="rid"))
        resp, _ = post(server, {})
        assert resp.status == 201 and resp.getheader("content-type") == "text/plain"
        assert resp.getheader("x-request-id") == "rid" and resp.getheader("x-extra") == "1"
        assert resp.getheader("transfer-encoding") == "chunked"
        assert resp.getheader("cache-control") == "no-cache"

    def test_request_id_none_sends_no_header(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.done()], request_id=None))
        resp, _ = post(server, {})
        assert resp.getheader("x-request-id") is None

    def test_each_step_is_one_chunk_by_default(self, server: t.LocalServer) -> None:
        steps = [t.content("a"), t.comment("k"), t.raw(b"xyz"), t.done()]
        server.enqueue(t.StreamReply(steps))
        chunks, ended = dechunk(split_response(raw_exchange(server))[1])
        assert ended and len(chunks) == 4
        assert chunks[1:] == [b": k\n", b"xyz", b"data: [DONE]\n\n"]

    def test_write_size_one_sends_one_byte_chunks(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.data("ab"), t.raw(b"\xe2\x82\xac")], write_size=1))
        body = split_response(raw_exchange(server))[1]
        expected = b"data: ab\n\n\xe2\x82\xac"
        assert body == b"".join(b"1\r\n%s\r\n" % bytes([c]) for c in expected) + b"0\r\n\r\n"

    def test_write_size_splits_each_step_into_pieces(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.data("abcdefg"), t.done()], write_size=4))
        chunks, ended = dechunk(split_response(raw_exchange(server))[1])
        assert ended and all(len(c) <= 4 for c in chunks)
        assert b"".join(chunks) == b"data: abcdefg\n\ndata: [DONE]\n\n"

    @pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
    def test_eol_is_applied_to_every_line_but_raw_bytes(self, server: t.LocalServer,
                                                        eol: str) -> None:
        steps = [t.content("a"), t.comment("k"), t.data("x\ny"), t.done(),
                 t.cost(), t.raw(b"\n")]
        body = stream_body(server, *steps, eol=eol)
        lf_body = stream_body(server, *steps)
        assert body == lf_body[:-1].replace(b"\n", eol.encode()) + b"\n"
        assert events(body) == events(lf_body)

    @pytest.mark.parametrize("options", [{"eol": "\n\r"}, {"write_size": 0}])
    def test_invalid_stream_options_are_refused(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            t.StreamReply([], **options)

    def test_unchunked_reply_ends_at_close(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.done()], chunked=False, write_size=3))
        headers, body = split_response(raw_exchange(server))
        assert "transfer-encoding" not in headers and "content-length" not in headers
        assert headers["connection"] == "close"
        assert events(body)[-1] == ServerSentEvent("[DONE]")

    def test_an_http_1_0_request_gets_an_unchunked_stream(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.done()]))
        wire = raw_exchange(server, version="HTTP/1.0")
        headers, body = split_response(wire)
        assert "transfer-encoding" not in headers and body == b"data: [DONE]\n\n"


# -- faults --------------------------------------------------------------------------


class TestFaults:
    def test_drop_closes_with_the_chunked_body_unfinished(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.drop(), t.done()]))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes())
            wire = read_all(s)
            assert s.recv(1) == b""  # a clean end of file, not a reset
        chunks, ended = dechunk(split_response(wire)[1])
        assert not ended and b'"a"' in chunks[0] and b"[DONE]" not in wire

    def test_drop_with_reset_sends_an_rst(self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.drop(reset=True)]))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes())
            recv_until(s, b'"a"}')
            gate.set()
            with pytest.raises(ConnectionResetError):
                while s.recv(65536):
                    pass

    def test_bad_chunk_size_writes_a_malformed_size_line(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.bad_chunk_size(), t.done()]))
        body = split_response(raw_exchange(server))[1]
        assert body.endswith(b"\r\nzz\r\n")
        chunks, ended = dechunk(body[: -len(b"zz\r\n")])
        assert len(chunks) == 1 and b'"a"' in chunks[0] and not ended

    def test_truncated_chunk_announces_more_than_it_sends(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.truncated_chunk()]), t.StreamReply([t.truncated_chunk()]))
        assert split_response(raw_exchange(server))[1] == b"100\r\nshort"
        conn = connect(server)
        try:
            conn.request("POST", "/v1/chat/completions", b"{}")
            resp = conn.getresponse()
            with pytest.raises(http.client.IncompleteRead):
                resp.read()
        finally:
            conn.close()

    def test_drop_reply_closes_without_a_response(self, server: t.LocalServer) -> None:
        server.enqueue(t.DropReply())
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes(b'{"big": "' + b"x" * 100_000 + b'"}'))
            assert s.recv(65536) == b""
        server.wait_for_requests(1)
        assert len(server.requests[0].body) > 100_000  # the body was read first

    def test_drop_reply_with_reset_sends_an_rst(self, server: t.LocalServer) -> None:
        server.enqueue(t.DropReply(reset=True))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes())
            with pytest.raises(ConnectionResetError):
                s.recv(65536)


# -- other replies -------------------------------------------------------------------


class TestErrorReply:
    def test_default_body_is_the_json_error(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(500))
        resp, body = post(server, {})
        assert resp.status == 500 and resp.getheader("content-type") == "application/json"
        assert resp.getheader("x-request-id") == "req-local-err"
        assert json.loads(body) == {"error": {"message": "error from the local server",
                                              "type": None, "code": 500}}

    def test_message_type_and_headers(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(429, message="slow", type="rate_limit_error",
                                    headers={"Retry-After": "3", "retry-after-ms": "2500"}))
        resp, body = post(server, {})
        assert resp.status == 429 and resp.getheader("retry-after") == "3"
        assert resp.getheader("retry-after-ms") == "2500"
        assert json.loads(body) == {"error": {"message": "slow", "type": "rate_limit_error",
                                              "code": 429}}

    def test_json_overrides_the_body(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(400, json={"detail": "nope"}, request_id=None))
        resp, body = post(server, {})
        assert json.loads(body) == {"detail": "nope"} and resp.getheader("x-request-id") is None

    def test_raw_body_defaults_to_html(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(502, body="<html>bad gateway</html>"),
                       t.ErrorReply(503, body=b"down", content_type="text/plain"))
        resp, body = post(server, {})
        assert resp.status == 502 and body == b"<html>bad gateway</html>"
        assert resp.getheader("content-type") == "text/html; charset=utf-8"
        resp, body = post(server, {})
        assert (resp.status, body, resp.getheader("content-type")) == (503, b"down",
                                                                       "text/plain")

    def test_the_connection_stays_usable_after_an_error(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(429), t.JSONReply(content="after"))
        conn = connect(server)
        for status in (429, 200):
            conn.request("POST", "/v1/chat/completions", b"{}")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status
        conn.close()
        assert server.open_connections <= 1


class TestJSONReply:
    def test_builds_a_chat_completion(self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply(content="hi", reasoning="r", usage=(3, 4)))
        resp, body = post(server, {"model": "x"})
        obj = json.loads(body)
        assert resp.status == 200 and resp.getheader("x-request-id") == "req-local-1"
        assert obj["object"] == "chat.completion" and obj["model"] == "x"
        assert obj["choices"] == [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "hi", "reasoning_content": "r"}}]
        assert obj["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}

    def test_without_reasoning_the_key_is_absent(self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply(model="chosen", finish_reason="length"))
        obj = json.loads(post(server, {"model": "x"})[1])
        assert obj["model"] == "chosen" and obj["choices"][0]["finish_reason"] == "length"
        assert obj["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}

    def test_an_object_is_sent_verbatim(self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply([1, {"a": None}], status=202, headers={"X-A": "b"}))
        resp, body = post(server, {})
        assert resp.status == 202 and resp.getheader("x-a") == "b"
        assert json.loads(body) == [1, {"a": None}]


class TestDelayedReply:
    def test_nothing_is_sent_until_the_gate_opens(self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.JSONReply(content="late")))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes(b"{}"))
            server.wait_for_requests(1)
            assert not select.select([s], [], [], 0.05)[0]  # not even the status line
            gate.set()
            assert b"late" in read_all(s)


# -- routing -------------------------------------------------------------------------


class TestRouting:
    def test_models_list(self) -> None:
        with t.LocalServer(pace=0, model="mine") as srv:
            conn = connect(srv)
            conn.request("GET", "/v1/models")
            resp = conn.getresponse()
            obj = json.loads(resp.read())
            conn.close()
        ids = [m["id"] for m in obj["data"]]
        assert resp.status == 200 and obj["object"] == "list"
        assert ids[0] == "mine" and {"deepseek-reasoner", "claude-sonnet-4"} <= set(ids)
        assert all(m["object"] == "model" for m in obj["data"])

    @pytest.mark.parametrize("method", ["GET", "POST"])
    def test_unknown_path_is_a_json_404(self, server: t.LocalServer, method: str) -> None:
        resp, body = post(server, {}, path="/v1/nope", method=method)
        assert resp.status == 404
        assert json.loads(body)["error"]["code"] == 404

    def test_wrong_method_is_405(self, server: t.LocalServer) -> None:
        resp, body = post(server, {}, method="GET")
        assert resp.status == 405 and resp.getheader("allow") == "POST"
        assert json.loads(body)["error"]["code"] == 405

    @pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "PROPFIND"])
    @pytest.mark.parametrize("path,status,allow", [
        ("/v1/chat/completions", 405, "POST"), ("/v1/models", 405, "GET"),
        ("/v1/nope", 404, None)])
    def test_every_method_gets_the_json_answer_and_is_recorded(
            self, server: t.LocalServer, method: str, path: str, status: int,
            allow: str | None) -> None:
        conn = connect(server)
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == status and resp.getheader("allow") == allow
        assert resp.getheader("content-type") == "application/json"
        if method != "HEAD":
            assert json.loads(body)["error"]["code"] == status
        server.wait_for_requests(1)
        assert [(r.method, r.path) for r in server.requests] == [(method, path)]

    def test_a_head_answer_has_no_body_and_keeps_the_connection_usable(
            self, server: t.LocalServer) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            wire = read_all(s)
        head, _, rest = wire.partition(b"\r\n\r\n")
        length = int(split_response(head + b"\r\n\r\n")[0]["content-length"])
        assert head.startswith(b"HTTP/1.1 405 ") and length > 0
        assert rest.startswith(b"HTTP/1.1 200 ")  # the next answer, not a HEAD body
        assert json.loads(split_response(rest)[1])["object"] == "list"

    def test_a_malformed_request_line_gets_a_json_400(self, server: t.LocalServer) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /v1/models HTTP/x.y\r\nHost: x\r\n\r\n")
            headers, body = split_response(read_all(s))
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == 400

    @pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
    def test_a_body_that_is_not_a_json_object_is_400_and_uses_no_reply(
            self, server: t.LocalServer, body: bytes) -> None:
        server.enqueue(t.JSONReply(content="queued"))
        conn = connect(server)
        conn.request("POST", "/v1/chat/completions", body)
        resp = conn.getresponse()
        assert resp.status == 400 and json.loads(resp.read())["error"]["code"] == 400
        conn.close()
        assert server.queued == 1 and b"queued" in post(server, {})[1]

    def test_an_invalid_content_length_is_400_and_closes(self, server: t.LocalServer) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: ten\r\n\r\n{}")
            headers, body = split_response(read_all(s))
        assert headers["connection"] == "close" and json.loads(body)["error"]["code"] == 400

    # A body well beyond what the socket buffers hold: a server that closes without
    # reading it resets the connection while the client is still sending.
    BIG = 24 * 1024 * 1024

    def test_an_oversized_body_gets_a_413_the_client_can_read(self) -> None:
        with t.LocalServer(pace=0, max_body_bytes=1024 * 1024) as srv:
            conn = connect(srv)
            conn.request("POST", "/v1/chat/completions", b"x" * self.BIG)
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            assert resp.status == 413 and body["error"]["code"] == 413
            assert resp.getheader("connection") == "close"
            assert [(r.method, r.body) for r in srv.requests] == [("POST", b"")]

    def test_an_oversized_chunked_body_gets_a_413_the_client_can_read(self) -> None:
        piece = b"x" * (1024 * 1024)
        with t.LocalServer(pace=0, max_body_bytes=1024 * 1024) as srv:
            conn = connect(srv)
            conn.request("POST", "/v1/chat/completions", iter([piece] * 24),
                         encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            assert resp.status == 413

    def test_the_alltoken_client_sees_the_413_once(self) -> None:
        import alltoken

        with t.LocalServer(pace=0, max_body_bytes=1024 * 1024) as srv, \
                alltoken.AllToken(api_key="k", base_url=srv.base_url) as client:
            with pytest.raises(alltoken.APIStatusError) as info:
                client.chat.completions.create(model="echo", stream=True, messages=[
                    {"role": "user", "content": "x" * self.BIG}])
            assert info.value.status_code == 413 and not info.value.retryable
            assert len(srv.requests) == 1  # not retried: the refusal was read

    def test_the_413_comes_at_once_and_close_ends_the_draining(self) -> None:
        srv = t.LocalServer(pace=0, max_body_bytes=10).start()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 1000000\r\n\r\n{")  # the rest never comes
            headers, body = split_response(read_all(s))  # ends at the server's FIN
            assert headers["connection"] == "close"
            assert json.loads(body)["error"]["code"] == 413
            started = time.monotonic()
            srv.close()  # the handler is still draining the body that never comes
            assert time.monotonic() - started < 2 and srv.open_connections == 0

    def test_a_body_at_the_limit_is_accepted(self) -> None:
        body = json.dumps({"model": "echo", "pad": "x" * 100}).encode()
        with t.LocalServer(pace=0, max_body_bytes=len(body)) as srv:
            resp, _ = post(srv, json.loads(body))
            assert resp.status == 200
        with pytest.raises(ValueError, match="max_body_bytes"):
            t.LocalServer(max_body_bytes=0)

    def test_a_queued_stream_answers_even_a_non_stream_request(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("x"), t.done()]))
        resp, body = post(server, {"stream": False})
        assert resp.getheader("content-type") == "text/event-stream" and b"[DONE]" in body

    def test_replies_are_used_in_order_then_the_default_model(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply(content="one"), t.JSONReply(content="two"))
        contents = [json.loads(post(server, {"model": "echo", "messages": [
            {"role": "user", "content": "three"}]})[1])["choices"][0]["message"]["content"]
            for _ in range(3)]
        assert contents == ["one", "two", "three"] and server.queued == 0

    def test_enqueue_refuses_what_is_not_a_reply(self, server: t.LocalServer) -> None:
        with pytest.raises(TypeError):
            server.enqueue(t.content("x"))  # type: ignore[arg-type]

    def test_the_absolute_form_a_proxy_receives_is_routed(self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply(content="proxied"))
        target = "http://api.example.invalid/v1/chat/completions"
        _, body = post(server, {}, path=target)
        assert b"proxied" in body and server.requests[0].path == target


class TestApiKey:
    def test_a_wrong_or_missing_key_is_401_before_a_reply_is_used(self) -> None:
        with t.LocalServer(pace=0, api_key="good") as srv:
            srv.enqueue(t.JSONReply(content="queued"))
            bad, bad_body = post(srv, {}, headers={"Authorization": "Bearer bad"})
            missing, _ = post(srv, {})
            models, _ = post(srv, {}, path="/v1/models", method="GET")
            good, body = post(srv, {}, headers={"Authorization": "Bearer good"})
            assert (bad.status, missing.status, models.status, good.status) == (
                401, 401, 401, 200)
            assert json.loads(bad_body) == {"error": {
                "message": "Invalid API key", "type": "authentication_error", "code": 401}}
            assert b"queued" in body and len(srv.requests) == 4


class TestRecordedRequests:
    def test_method_path_lower_case_headers_and_json(self, server: t.LocalServer) -> None:
        post(server, {"model": "m", "x": 1}, path="/v1/chat/completions?q=1",
             headers={"X-Custom": "v"})
        conn = connect(server)
        conn.request("GET", "/v1/models")
        conn.getresponse().read()
        conn.close()
        server.wait_for_requests(2)
        first, second = server.requests
        assert (first.method, first.path) == ("POST", "/v1/chat/completions?q=1")
        assert first.headers["x-custom"] == "v" and first.headers["content-type"] == \
            "application/json"
        assert json.loads(first.body) == first.json == {"model": "m", "x": 1}
        assert (second.method, second.path, second.body, second.json) == (
            "GET", "/v1/models", b"", None)

    def test_a_body_that_is_not_json_is_kept_raw(self, server: t.LocalServer) -> None:
        conn = connect(server)
        conn.request("POST", "/v1/chat/completions", b"\xff{")
        conn.getresponse().read()
        conn.close()
        assert server.requests[0].body == b"\xff{" and server.requests[0].json is None

    def test_a_chunked_request_body_is_read_and_decoded(self, server: t.LocalServer) -> None:
        conn = connect(server)
        conn.request("POST", "/v1/chat/completions", iter([b'{"model": ', b'"echo"}']),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == 200 and server.requests[0].json == {"model": "echo"}

    def test_wait_for_requests(self, server: t.LocalServer) -> None:
        with pytest.raises(TimeoutError):
            server.wait_for_requests(1, timeout=0.01)
        thread = threading.Thread(target=post, args=(server, {}))
        thread.start()
        server.wait_for_requests(1)
        thread.join()
        assert len(server.requests) == 1


# -- the default model ---------------------------------------------------------------


def default_stream(server: t.LocalServer, prompt: str, model: str = "m") -> tuple[
        list[str], list[Any], list[ServerSentEvent | Comment]]:
    """(kinds of the items in order, the chunk objects, the items)."""
    _, body = post(server, {"model": model, "stream": True,
                            "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": prompt}]})
    items = events(body)
    kinds = []
    for e in items:
        if isinstance(e, Comment):
            kinds.append("cost")
        elif e.data == "[DONE]":
            kinds.append("done")
        else:
            c = json.loads(e.data)
            d = c["choices"][0]["delta"] if c["choices"] else {}
            kinds.append("usage" if c.get("usage") else "role" if "role" in d else
                         "reasoning" if "reasoning_content" in d else
                         "content" if "content" in d else
                         "finish" if c["choices"][0]["finish_reason"] else "other")
    return kinds, chunk_objects(items), items


def text_of(chunks: list[Any], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field, "") for c in chunks if c["choices"])


class TestDefaultModel:
    def test_streams_reasoning_then_content_then_usage_done_and_cost(
            self, server: t.LocalServer) -> None:
        kinds, chunks, items = default_stream(server, "Explain quantum computing")
        order = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
        assert order == ["role", "reasoning", "content", "finish", "usage", "done", "cost"]
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert all(c["model"] == "m" for c in chunks)
        pieces = kinds.count("reasoning") + kinds.count("content")
        usage = chunks[-1]["usage"]
        assert usage["completion_tokens"] == pieces
        assert usage["total_tokens"] == usage["prompt_tokens"] + pieces
        assert isinstance(items[-1], Comment)
        bill = json.loads(items[-1].text)
        assert bill["completion_tokens"] == pieces
        assert bill["prompt_tokens"] == usage["prompt_tokens"]
        assert Decimal(bill["cost"]) == Decimal(bill["input_price"]) + \
            Decimal(bill["output_price"]) > 0
        assert "qubit" in text_of(chunks, "content")
        assert "quantum" in text_of(chunks, "reasoning_content")

    def test_answers_a_known_prompt_sensibly(self, server: t.LocalServer) -> None:
        _, chunks, _ = default_stream(server, "Solve this step by step: 15! / 13!")
        assert "210" in text_of(chunks, "content")

    def test_answers_any_prompt_with_reasoning_and_content(self, server: t.LocalServer) -> None:
        _, chunks, _ = default_stream(server, "Name a good tree for a small garden")
        assert "small garden" in text_of(chunks, "reasoning_content")
        assert len(text_of(chunks, "content").split()) > 10

    def test_echo_model_streams_the_prompt_back(self, server: t.LocalServer) -> None:
        kinds, chunks, _ = default_stream(server, "say this", model="echo")
        assert text_of(chunks, "content") == "say this" and "reasoning" not in kinds

    def test_a_non_stream_request_gets_a_chat_completion(self, server: t.LocalServer) -> None:
        resp, body = post(server, {"model": "deepseek-reasoner", "messages": [
            {"role": "user", "content": "hello"}]})
        obj = json.loads(body)
        message = obj["choices"][0]["message"]
        assert resp.getheader("content-type") == "application/json"
        assert obj["object"] == "chat.completion" and obj["model"] == "deepseek-reasoner"
        assert message["content"].startswith("Hello") and message["reasoning_content"]
        assert obj["usage"]["completion_tokens"] == len(message["content"].split(" "))

    def test_pace_spaces_the_tokens(self) -> None:
        with t.LocalServer(pace=0.005) as srv:
            started = time.monotonic()
            _, body = post(srv, {"stream": True, "messages": [
                {"role": "user", "content": "hi"}]})
            elapsed = time.monotonic() - started
        chunks = chunk_objects(events(body))
        pieces = sum(1 for c in chunks if c["choices"] and (
            c["choices"][0]["delta"].get("content") or
            c["choices"][0]["delta"].get("reasoning_content")))
        assert pieces > 10 and elapsed >= 0.005 * pieces and b"[DONE]" in body

    def test_pace_must_not_be_negative(self) -> None:
        with pytest.raises(ValueError):
            t.LocalServer(pace=-1)


# -- lifecycle -----------------------------------------------------------------------


class TestLifecycle:
    def test_one_connection_serves_several_requests(self, server: t.LocalServer) -> None:
        conn = connect(server)
        for _ in range(2):
            conn.request("POST", "/v1/chat/completions", b'{"model": "echo", "stream": true}')
            resp = conn.getresponse()
            assert b"[DONE]" in resp.read() and not resp.will_close
        conn.request("GET", "/v1/models")
        conn.getresponse().read()
        assert server.open_connections == 1 and len(server.requests) == 3
        conn.close()
        server.wait_for_connections(0)

    def test_connection_close_is_honoured(self, server: t.LocalServer) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes(b'{"model": "echo", "stream": true}'))
            headers, body = split_response(read_all(s))  # ends: the server closed
        assert headers["connection"] == "close" and dechunk(body)[1]

    def test_a_client_hanging_up_during_a_wait_ends_its_handler(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.wait(threading.Event(), 30)]))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(request_bytes())
            recv_until(s, b'"a"')
            server.wait_for_connections(1)
        server.wait_for_connections(0, timeout=2)

    def test_wait_for_connections_times_out(self, server: t.LocalServer) -> None:
        with pytest.raises(TimeoutError):
            server.wait_for_connections(1, timeout=0.01)

    def test_base_url_and_start(self) -> None:
        srv = t.LocalServer(pace=0)
        with pytest.raises(RuntimeError):
            _ = srv.base_url
        assert srv.start() is srv and srv.start() is srv
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1" and srv.port > 0
        srv.close()

    def test_close_ends_every_thread_and_connection(self) -> None:
        baseline = threading.active_count()
        srv = t.LocalServer(pace=0).start()
        gate = threading.Event()
        srv.enqueue(t.StreamReply([t.content("a"), t.wait(gate, timeout=30)]),
                    t.StreamReply([t.content("a"), t.sleep(30)]),
                    t.DelayedReply(gate, t.JSONReply(), timeout=30))
        sockets = [socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                   for _ in range(5)]
        try:
            # One at a time, so that each takes the reply meant for it: in a wait, in a
            # sleep, in a delayed reply.
            for s in sockets[:2]:
                s.sendall(request_bytes(b"{}", close=False))
                recv_until(s, b'"a"')
            sockets[2].sendall(request_bytes(b"{}", close=False))
            sockets[3].sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")  # then idle
            recv_until(sockets[3], b"deepseek-reasoner")
            sockets[4].sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 10\r\n\r\n{")  # a body still arriving
            srv.wait_for_requests(4)
            srv.wait_for_connections(5)
            started = time.monotonic()
            srv.close()  # must not wait for the gate, the sleep or the clients
            assert time.monotonic() - started < 2
            assert srv.open_connections == 0
            assert threading.active_count() == baseline
            for s in sockets:
                read_all(s)  # every client sees its connection end
        finally:
            for s in sockets:
                s.close()
        srv.close()  # idempotent
        assert not gate.is_set()

    @pytest.mark.parametrize("leave_open", [
        # a module-level client whose pooled keep-alive connection stays open
        "client = alltoken.AllToken(api_key='k', base_url=srv.base_url)\n"
        "stream = client.chat.completions.create(model='echo', stream=True,\n"
        "    messages=[{'role': 'user', 'content': 'hi there'}])\n"
        "print(''.join(c.choices[0].delta.content or '' for c in stream if c.choices))\n",
        # a loop left with break, its stream still referenced
        "stream = alltoken.stream('hi there', model='echo', base_url=srv.base_url,\n"
        "                         api_key='k')\n"
        "for piece in stream:\n    print(piece)\n    break\n",
        # a raw keep-alive connection, idle after its answer
        "import http.client\n"
        "conn = http.client.HTTPConnection('127.0.0.1', srv.port, timeout=5)\n"
        "conn.request('GET', '/v1/models')\n"
        "print(conn.getresponse().read()[:1].decode())\n",
    ], ids=["pooled-client-connection", "loop-left-with-break", "idle-http-client"])
    def test_a_script_that_never_closes_the_server_still_exits(self, leave_open: str) -> None:
        code = ("import alltoken\nfrom alltoken import testing as t\n"
                "srv = t.LocalServer(pace=0.01).start()\n" + leave_open +
                "srv.wait_for_connections(1)\nprint('end of script', flush=True)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=20)  # the bug: a hang until killed here
        assert proc.returncode == 0 and proc.stderr == ""
        assert proc.stdout.endswith("end of script\n")

    def test_the_server_writes_nothing_to_stderr(self, capfd: pytest.CaptureFixture[str]
                                                  ) -> None:
        with t.LocalServer(pace=0) as srv:
            srv.enqueue(t.StreamReply([t.content("a"), t.drop()]))
            post(srv, {}, path="/nope")
            raw_exchange(srv)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"garbage\r\n\r\n")
                read_all(s)
        assert capfd.readouterr().err == ""

    def test_ipv6_loopback(self) -> None:
        try:
            srv = t.LocalServer(host="::1", pace=0).start()
        except OSError:
            pytest.skip("no IPv6 loopback here")
        try:
            assert srv.base_url == f"http://[::1]:{srv.port}/v1"
            conn = http.client.HTTPConnection("::1", srv.port, timeout=5)
            conn.request("GET", "/v1/models")
            assert conn.getresponse().status == 200
            conn.close()
        finally:
            srv.close()


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child is POSIX here")
def test_serve_prints_the_url_and_stops_on_ctrl_c() -> None:
    code = ("import signal\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from alltoken.testing import serve\n"
            "try:\n    serve(port=0, pace=0)\n"
            "except KeyboardInterrupt:\n    print('stopped', flush=True)\n")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("alltoken local server: http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/models")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert out == "stopped\n" and err == "" and proc.returncode == 0


def test_the_module_imports_nothing_from_the_package_but_sse() -> None:
    import ast
    import inspect

    package_imports = set()
    for node in ast.walk(ast.parse(inspect.getsource(t))):
        if isinstance(node, ast.ImportFrom) and (node.level or "alltoken" in (node.module or "")):
            package_imports.add(node.module)
        elif isinstance(node, ast.Import):
            package_imports.update(a.name for a in node.names if a.name.startswith("alltoken"))
    assert package_imports == {"sse"}


# -- annotations ---------------------------------------------------------------------


def public_callables() -> list[tuple[str, Any]]:
    """Every public function and class of the module, each class's ``__init__`` and its
    public methods and properties (their getters)."""
    found: list[tuple[str, Any]] = []
    for name in t.__all__:
        obj = getattr(t, name)
        if not callable(obj) or not hasattr(obj, "__module__") or \
                obj.__module__ != t.__name__:
            continue  # Reply is a Union alias
        found.append((name, obj))
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if attr == "__init__" or not attr.startswith("_"):
                    if isinstance(member, property):
                        member = member.fget
                    if callable(member):
                        found.append((f"{name}.{attr}", member))
    return found


@pytest.mark.parametrize("name,obj", public_callables(), ids=lambda v: v if
                         isinstance(v, str) else "")
def test_type_hints_of_every_public_callable_resolve(name: str, obj: Any) -> None:
    import typing

    typing.get_type_hints(obj)  # on 3.9, "str | None" in an annotation raises TypeError


def test_no_annotation_uses_the_union_operator() -> None:
    """``X | Y`` evaluates on 3.10+ only: Python 3.9 users calling ``get_type_hints``
    (a dataclass tool, a DI framework, ...) would get a TypeError."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(t))
    found = []
    for node in ast.walk(tree):
        annotations: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations += [a.annotation for a in
                            args.posonlyargs + args.args + args.kwonlyargs]
            annotations += [a.annotation for a in (args.vararg, args.kwarg) if a]
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for ann in annotations:
            if ann is not None and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                                       for n in ast.walk(ann)):
                found.append(f"line {ann.lineno}: {ast.unparse(ann)}")
    assert found == []
