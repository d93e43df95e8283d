"""The local server, checked with the standard library only (raw sockets, http.client),
so that its behaviour is established independently of the client it serves."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from alltoken import testing as t
from alltoken.sse import Comment, ServerSentEvent, SSEDecoder


@pytest.fixture
def server() -> Iterator[t.LocalServer]:
    with t.LocalServer(pace=0) as srv:
        yield srv


def post(server: t.LocalServer, body: object, path: str = "/v1/chat/completions",
         headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("POST", path, json.dumps(body).encode(),
                 {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def raw_exchange(server: t.LocalServer, body: bytes = b'{"stream": true}') -> bytes:
    """Send one request on a raw socket; return every byte until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        out = b""
        while True:
            try:
                piece = s.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            out += piece
        return out


def events(data: bytes) -> list[object]:
    d = SSEDecoder()
    return d.feed(data) + d.end()


class TestStreamReply:
    def test_steps_become_openai_shaped_chunks(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.role(), t.reasoning("r"), t.content("c"),
                                      t.tool_call(0, id="call", name="f", arguments="{}"),
                                      t.finish("stop"), t.usage(2, 3), t.done(),
                                      t.cost("0.5")]))
        resp, body = post(server, {"model": "mdl", "stream": True})
        assert resp.status == 200
        assert resp.getheader("content-type") == "text/event-stream"
        assert resp.getheader("x-request-id") == "req-local-1"
        items = events(body)
        chunks = [json.loads(e.data) for e in items
                  if isinstance(e, ServerSentEvent) and e.data != "[DONE]"]
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        assert deltas[1] == {"reasoning_content": "r"} and deltas[2] == {"content": "c"}
        assert deltas[3]["tool_calls"] == [{"index": 0, "id": "call", "type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}]
        assert all(c["model"] == "mdl" and c["object"] == "chat.completion.chunk"
                   for c in chunks)
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5
        assert items[-2] == ServerSentEvent("[DONE]")
        assert isinstance(items[-1], Comment) and json.loads(items[-1].text)["cost"] == "0.5"

    @pytest.mark.parametrize("eol", ["\r\n", "\r"])
    def test_eol_is_applied_to_every_line(self, server: t.LocalServer, eol: str) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.comment("k"), t.done()], eol=eol))
        _, body = post(server, {"stream": True})
        assert body.count(eol.encode()) >= 5 and (eol == "\r\n" or b"\n" not in body)

    def test_write_size_one_sends_one_byte_chunks(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.data("ab")], write_size=1))
        wire = raw_exchange(server)
        body = wire.split(b"\r\n\r\n", 1)[1]
        assert body == b"".join(b"1\r\n%s\r\n" % bytes([c]) for c in b"data: ab\n\n") + \
            b"0\r\n\r\n"

    def test_unchunked_reply_ends_at_close(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.done()], chunked=False))
        wire = raw_exchange(server)
        head, body = wire.split(b"\r\n\r\n", 1)
        assert b"transfer-encoding" not in head.lower() and b"connection: close" in head.lower()
        assert body == b"data: [DONE]\n\n"

    def test_cost_without_final_newline_ends_the_body_there(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.done(), t.cost("1", final_newline=False)]))
        _, body = post(server, {"stream": True})
        assert body.endswith(b'"completion_tokens":42}')

    def test_wait_holds_the_stream_until_the_gate_opens(self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.content("b"), t.done()]))
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", b'{"stream": true}')
        resp = conn.getresponse()
        first = resp.read1(65536)
        assert b'"a"' in first and b'"b"' not in first
        gate.set()
        rest = resp.read()
        assert b'"b"' in rest
        conn.close()

    def test_drop_leaves_the_chunked_body_unfinished(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.drop()]))
        wire = raw_exchange(server)
        assert b'"a"' in wire and not wire.endswith(b"0\r\n\r\n")

    def test_bad_chunk_size_and_truncated_chunk(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.bad_chunk_size()]),
                       t.StreamReply([t.truncated_chunk()]))
        assert raw_exchange(server).endswith(b"\r\n\r\nzz\r\n")
        assert raw_exchange(server).endswith(b"100\r\nshort")


class TestOtherReplies:
    def test_error_reply_json_with_headers(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(429, message="slow", type="rate_limit_error",
                                    headers={"Retry-After": "3"}))
        resp, body = post(server, {})
        assert resp.status == 429 and resp.getheader("retry-after") == "3"
        assert json.loads(body) == {"error": {"message": "slow", "type": "rate_limit_error",
                                              "code": 429}}

    def test_error_reply_html(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(502, body="<html>bad gateway</html>"))
        resp, body = post(server, {})
        assert resp.status == 502 and resp.getheader("content-type").startswith("text/html")
        assert body == b"<html>bad gateway</html>"

    def test_json_reply_builds_a_chat_completion(self, server: t.LocalServer) -> None:
        server.enqueue(t.JSONReply(content="hi", reasoning="r"))
        _, body = post(server, {"model": "x"})
        obj = json.loads(body)
        assert obj["object"] == "chat.completion" and obj["model"] == "x"
        assert obj["choices"][0]["message"] == {"role": "assistant", "content": "hi",
                                                "reasoning_content": "r"}

    def test_drop_reply_answers_nothing(self, server: t.LocalServer) -> None:
        server.enqueue(t.DropReply(reset=True))
        assert raw_exchange(server) == b""

    def test_delayed_reply_waits_for_its_gate(self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.JSONReply(content="late")))
        threading.Timer(0.1, gate.set).start()
        started = time.monotonic()
        _, body = post(server, {})
        assert time.monotonic() - started >= 0.09 and b"late" in body


class TestRouting:
    def test_models_list(self, server: t.LocalServer) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/v1/models")
        obj = json.loads(conn.getresponse().read())
        conn.close()
        assert obj["object"] == "list" and "deepseek-reasoner" in [m["id"] for m in obj["data"]]

    def test_unknown_path_is_404(self, server: t.LocalServer) -> None:
        resp, _ = post(server, {}, path="/v1/nope")
        assert resp.status == 404

    def test_non_object_body_is_400_for_the_default_model(self, server: t.LocalServer) -> None:
        resp, _ = post(server, [1, 2])
        assert resp.status == 400

    def test_api_key_is_checked_before_a_reply_is_used(self) -> None:
        with t.LocalServer(pace=0, api_key="good") as srv:
            srv.enqueue(t.JSONReply(content="queued"))
            bad, _ = post(srv, {}, headers={"Authorization": "Bearer bad"})
            good, body = post(srv, {}, headers={"Authorization": "Bearer good"})
            assert bad.status == 401 and good.status == 200 and b"queued" in body
            assert len(srv.requests) == 2

    def test_requests_are_recorded_with_lower_case_headers(self, server: t.LocalServer) -> None:
        post(server, {"model": "m", "x": 1}, headers={"X-Custom": "v"})
        server.wait_for_requests(1)
        req = server.requests[0]
        assert (req.method, req.path) == ("POST", "/v1/chat/completions")
        assert req.headers["x-custom"] == "v" and req.json == {"model": "m", "x": 1}

    def test_wait_for_requests_times_out(self, server: t.LocalServer) -> None:
        with pytest.raises(TimeoutError):
            server.wait_for_requests(1, timeout=0.05)


class TestDefaultModel:
    def test_streams_reasoning_then_content_then_usage_done_and_cost(
            self, server: t.LocalServer) -> None:
        _, body = post(server, {"model": "m", "stream": True,
                                "messages": [{"role": "user", "content": "quantum?"}]})
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
                kinds.append("usage" if c.get("usage") else
                             "reasoning" if "reasoning_content" in d else
                             "content" if d.get("content") else "other")
        order = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
        assert order == ["other", "reasoning", "content", "other", "usage", "done", "cost"]

    def test_echo_model_streams_the_prompt_back(self, server: t.LocalServer) -> None:
        _, body = post(server, {"model": "echo", "stream": True,
                                "messages": [{"role": "user", "content": "say this"}]})
        text = "".join(json.loads(e.data)["choices"][0]["delta"].get("content", "")
                       for e in events(body) if isinstance(e, ServerSentEvent)
                       and e.data != "[DONE]" and json.loads(e.data)["choices"])
        assert text == "say this"


class TestLifecycle:
    def test_one_connection_serves_several_requests(self, server: t.LocalServer) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for _ in range(3):
            conn.request("POST", "/v1/chat/completions", b'{"model": "echo", "stream": true}')
            conn.getresponse().read()
        assert server.open_connections == 1
        conn.close()

    def test_close_ends_every_thread_and_connection(self) -> None:
        baseline = threading.active_count()
        srv = t.LocalServer(pace=0).start()
        gate = threading.Event()
        srv.enqueue(t.StreamReply([t.content("a"), t.wait(gate, timeout=30)]))
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", b"{}")
        conn.getresponse().read1(100)
        srv.close()  # must not wait for the gate
        assert srv.open_connections == 0
        assert threading.active_count() == baseline
        conn.close()
        srv.close()  # idempotent
