"""The client against the local server over real loopback sockets.

Every test talks HTTP/1.1 with chunked encoding to ``alltoken.testing.LocalServer``; no
part of ``http.client`` is mocked. Server-side pauses are gated with ``threading.Event``
where ordering matters; retry waits are recorded instead of slept.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from conftest import KEY, wait_closed

import alltoken
from alltoken import testing as t

MSG = [{"role": "user", "content": "hi"}]


def chat(client: alltoken.AllToken, **kw: Any) -> alltoken.Stream:
    kw.setdefault("model", "deepseek-reasoner")
    kw.setdefault("messages", MSG)
    return client.chat.completions.create(stream=True, **kw)


def drain(stream: alltoken.Stream) -> list[alltoken.ChatCompletionChunk]:
    with stream:
        return list(stream)


STANDARD = [t.role(), t.reasoning("Let me "), t.reasoning("think."), t.content("Hello"),
            t.content(", world"), t.finish("stop"), t.usage(12, 4), t.done(), t.cost()]


class TestStreaming:
    def test_reasoning_then_content_accumulate(self, server: t.LocalServer,
                                               client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply(STANDARD))
        stream = chat(client)
        chunks = drain(stream)
        assert all(isinstance(c, alltoken.ChatCompletionChunk) for c in chunks)
        assert stream.reasoning == "Let me think."
        assert stream.text == "Hello, world"
        assert stream.finish_reason == "stop"
        assert stream.usage is not None and stream.usage.completion_tokens == 4
        assert stream.done
        assert stream.request_id == "req-local-1"

    def test_chunks_a_loop_body_keeps_and_changes_stay_apart(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        # Chunks that share their text are built from the first one's fields; a loop
        # body that keeps every chunk and edits what it was given must not see its edits
        # in the chunks that follow.
        pieces = ["Hel", "lo", ' "q" \\ ', "\u00e9\U0001f680", "", "!"]
        reply = [t.role(), *(t.reasoning(p) for p in pieces), *(t.content(p) for p in pieces),
                 t.finish("stop"), t.done()]
        server.enqueue(t.StreamReply(reply))
        kept = []
        with chat(client) as stream:
            for chunk in stream:
                assert chunk.id == "chatcmpl-local" and chunk.raw["id"] == "chatcmpl-local"
                assert chunk.choices[0].index == 0 and chunk.choices[0].raw["index"] == 0
                chunk.id = "edited"
                chunk.raw["id"] = "edited"
                chunk.choices[0].raw["index"] = 99
                chunk.choices[0].delta.raw["content"] = "edited"
                kept.append(chunk)
        assert stream.reasoning == stream.text == "".join(pieces)
        deltas = [c.choices[0].delta for c in kept[1:-1]]
        assert [d.reasoning_content for d in deltas[:6]] + [d.content for d in deltas[6:]] \
            == pieces + pieces
        assert len({id(c.raw) for c in kept}) == len(kept)

    def test_cost_trailer_after_done_is_parsed_as_decimal(self, server: t.LocalServer,
                                                           client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("x"), t.done(), t.comment("keep-alive"),
                                      t.cost("0.0012", prompt_tokens=15, completion_tokens=42),
                                      t.comment("ping - 2026-11-23 10:00:00")]))
        stream = chat(client)
        drain(stream)
        assert stream.cost is not None
        assert stream.cost.cost == Decimal("0.0012")
        assert stream.cost.input_price == Decimal("0.0003")
        assert stream.cost.prompt_tokens == 15 and stream.cost.completion_tokens == 42

    def test_cost_line_without_final_newline_is_still_read(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("x"), t.done(),
                                      t.cost("0.5", final_newline=False)]))
        stream = chat(client)
        drain(stream)
        assert stream.cost is not None and stream.cost.cost == Decimal("0.5")

    def test_tool_calls_are_assembled_by_index(self, server: t.LocalServer,
                                               client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([
            t.tool_call(0, id="call_a", name="get_weather", arguments='{"ci'),
            t.tool_call(1, id="call_b", name="get_time", arguments="{}"),
            t.tool_call(0, arguments='ty": "Paris"}'),
            t.finish("tool_calls"), t.done()]))
        stream = chat(client)
        drain(stream)
        calls = stream.tool_calls
        assert [c.id for c in calls] == ["call_a", "call_b"]
        assert calls[0].function.name == "get_weather"
        assert calls[0].function.arguments == '{"city": "Paris"}'
        assert calls[1].function.arguments == "{}"
        assert stream.finish_reason == "tool_calls"

    def test_usage_only_chunk_with_empty_choices(self, server: t.LocalServer,
                                                 client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.usage(3, 1), t.done()]))
        stream = chat(client)
        chunks = drain(stream)
        assert chunks[-1].choices == []
        assert stream.usage is not None and stream.usage.total_tokens == 4

    @pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
    @pytest.mark.parametrize("write_size", [None, 1, 7])
    def test_line_endings_and_wire_splits_give_the_same_answer(
            self, server: t.LocalServer, client: alltoken.AllToken, eol: str,
            write_size: int | None) -> None:
        server.enqueue(t.StreamReply(STANDARD, eol=eol, write_size=write_size))
        stream = chat(client)
        drain(stream)
        assert (stream.reasoning, stream.text) == ("Let me think.", "Hello, world")
        assert stream.cost is not None

    def test_each_chunk_is_delivered_on_arrival(self, server: t.LocalServer,
                                                client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("first"), t.wait(gate), t.content("second"),
                                      t.done()]))
        with chat(client) as stream:
            it = iter(stream)
            first = next(it)  # arrives while the server is blocked on the gate
            assert first.choices[0].delta.content == "first"
            assert stream.text == "first"
            gate.set()
            assert [c.choices[0].delta.content for c in it] == ["second"]

    def test_keep_alive_comments_are_ignored(self, server: t.LocalServer,
                                             client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.comment(), t.content("a"), t.comment(),
                                      t.content("b"), t.done()]))
        stream = chat(client)
        assert len(drain(stream)) == 2
        assert stream.text == "ab"

    def test_text_stays_readable_after_an_in_stream_error(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("partial "), t.content("answer"),
                                      t.error_event(500, "upstream failed", "server_error")]))
        stream = chat(client)
        with pytest.raises(alltoken.InternalServerError) as info:
            drain(stream)
        assert stream.text == "partial answer"
        assert info.value.request_id == "req-local-1"
        assert len(server.requests) == 1  # chunks were handed out: never retried

    def test_request_carries_headers_and_passes_params_through(
            self, server: t.LocalServer) -> None:
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url,
                               default_headers={"X-App": "a", "X-Both": "client"}) as c:
            drain(chat(c, temperature=0.2, max_tokens=9, tools=[{"type": "function"}],
                       extra_headers={"X-Both": "request"}))
        req = server.requests[-1]
        assert req.method == "POST" and req.path == "/v1/chat/completions"
        assert req.headers["authorization"] == f"Bearer {KEY}"
        assert req.headers["accept"] == "text/event-stream"
        assert req.headers["content-type"] == "application/json"
        assert "alltoken/" in req.headers["user-agent"]
        assert "Python/" in req.headers["user-agent"]
        assert req.headers["x-app"] == "a" and req.headers["x-both"] == "request"
        assert req.json["stream"] is True
        assert req.json["temperature"] == 0.2 and req.json["max_tokens"] == 9
        assert req.json["tools"] == [{"type": "function"}]
        assert req.json["messages"] == MSG

    def test_non_streaming_create_returns_a_chat_completion(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.JSONReply(content="Hi there", reasoning="hmm"))
        answer = client.chat.completions.create(model="m", messages=MSG)
        assert isinstance(answer, alltoken.ChatCompletion)
        assert answer.choices[0].message.content == "Hi there"
        assert answer.choices[0].message.reasoning_content == "hmm"
        assert server.requests[-1].headers["accept"] == "application/json"


class TestConvenience:
    def test_stream_yields_content_pieces_and_carries_state(
            self, server: t.LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ALLTOKEN_API_KEY", KEY)
        monkeypatch.setenv("ALLTOKEN_BASE_URL", server.base_url)
        server.enqueue(t.StreamReply(STANDARD))
        s = alltoken.stream("Explain quantum computing", model="claude-sonnet-4")
        assert list(s) == ["Hello", ", world"]
        assert s.reasoning == "Let me think." and s.text == "Hello, world"
        assert s.cost is not None and s.usage is not None
        req = server.requests[-1]
        assert req.json["messages"] == [{"role": "user", "content": "Explain quantum computing"}]
        assert req.json["model"] == "claude-sonnet-4"

    def test_environment_supplies_key_and_base_url(self, server: t.LocalServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ALLTOKEN_API_KEY", KEY)
        monkeypatch.setenv("ALLTOKEN_BASE_URL", server.base_url)
        with alltoken.AllToken() as c:
            drain(chat(c))
        assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


class TestValidation:
    def test_missing_key_is_a_clear_error_before_any_request(
            self, server: t.LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("ALLTOKEN_API_KEY", raising=False)
        with alltoken.AllToken(base_url=server.base_url) as c:
            with pytest.raises(ValueError, match="ALLTOKEN_API_KEY"):
                chat(c)
        assert server.requests == []

    @pytest.mark.parametrize("bad", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b"])
    def test_header_injection_is_rejected_before_sending(
            self, server: t.LocalServer, client: alltoken.AllToken, bad: str) -> None:
        with pytest.raises(ValueError):
            chat(client, extra_headers={"X-Custom": bad})
        with pytest.raises(ValueError):
            alltoken.AllToken(api_key=bad, base_url=server.base_url)
        with pytest.raises(ValueError):
            chat(client, model=bad)
        with pytest.raises(ValueError):
            alltoken.AllToken(api_key=KEY, base_url=server.base_url + bad)
        assert server.requests == []

    def test_key_never_appears_in_repr(self, server: t.LocalServer,
                                       client: alltoken.AllToken) -> None:
        assert KEY not in repr(client)
        server.enqueue(t.StreamReply([t.content("x"), t.done()]))
        stream = chat(client)
        assert KEY not in repr(stream)
        drain(stream)

    @pytest.mark.parametrize("timeout", [0, -1, "5", True])
    def test_bad_timeouts_are_rejected(self, timeout: Any) -> None:
        with pytest.raises((TypeError, ValueError)):
            alltoken.AllToken(api_key=KEY, timeout=timeout)

    def test_timeout_object_validates_each_field(self) -> None:
        with pytest.raises(ValueError, match="idle"):
            alltoken.Timeout(idle=0)
        assert alltoken.Timeout(total=3).connect == 60.0

    def test_timeout_behaves_as_a_frozen_dataclass(self) -> None:
        # Its methods are written by hand; they must be the ones dataclass(frozen=True)
        # generates for the same fields.
        import dataclasses

        ref_cls = dataclasses.make_dataclass(
            "Timeout", [(f.name, f.type, f.default) for f in dataclasses.fields(alltoken.Timeout)],
            frozen=True)
        args = [(), (1,), (1, 2.5), (None, None, 3, 4), (1.0, 2, None, 0.5)]
        ours = [alltoken.Timeout(*a) for a in args]
        refs = [ref_cls(*a) for a in args]
        assert [repr(t) for t in ours] == [repr(r) for r in refs]
        assert [[a == b for b in ours] for a in ours] == [[a == b for b in refs] for a in refs]
        assert [hash(t) for t in ours] == [hash(r) for r in refs]
        assert alltoken.Timeout() != refs[0] and alltoken.Timeout().__eq__(1) is NotImplemented
        assert alltoken.Timeout(1, 2) == alltoken.Timeout(connect=1.0, read=2.0)
        frozen = dataclasses.FrozenInstanceError
        for one in (ours[1], refs[1]):
            with pytest.raises(frozen, match="cannot assign to field 'read'"):
                one.read = 3  # type: ignore[misc]
            with pytest.raises(frozen, match="cannot delete field 'read'"):
                del one.read  # type: ignore[misc]
        assert dataclasses.replace(ours[2], idle=7) == alltoken.Timeout(1, 2.5, 7)
        assert dataclasses.astuple(ours[3]) == (None, None, 3, 4)

    @pytest.mark.parametrize("url", ["ftp://x/v1", "http://", "api.alltoken.ai/v1",
                                     "http://u:p@host/v1", "http://h/v1?x=1"])
    def test_bad_base_urls_are_rejected(self, url: str) -> None:
        with pytest.raises(ValueError):
            alltoken.AllToken(api_key=KEY, base_url=url)


class TestStatusErrors:
    def test_429_with_retry_after_is_retried_after_that_wait(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        server.enqueue(t.ErrorReply(429, message="slow down", headers={"Retry-After": "2"}),
                       t.StreamReply([t.content("ok"), t.done()]))
        stream = chat(client)
        drain(stream)
        assert stream.text == "ok"
        assert waits == [2.0]
        assert len(server.requests) == 2

    def test_retry_after_ms_wins_over_retry_after(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        server.enqueue(t.ErrorReply(503, headers={"Retry-After": "9", "retry-after-ms": "250"}),
                       t.StreamReply([t.done()]))
        drain(chat(client))
        assert waits == [0.25]

    def test_retries_are_exhausted_then_the_error_surfaces_from_create(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        for _ in range(3):
            server.enqueue(t.ErrorReply(429, message="Rate limit exceeded",
                                        type="rate_limit_error", headers={"Retry-After": "1"}))
        with pytest.raises(alltoken.RateLimitError) as info:
            chat(client)
        err = info.value
        assert err.status_code == 429 and err.retry_after == 1.0 and err.retryable
        assert "Rate limit exceeded" in str(err)
        assert err.request_id == "req-local-err"
        assert len(server.requests) == 3 and waits == [1.0, 1.0]

    def test_a_wait_longer_than_60s_is_not_slept(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        server.enqueue(t.ErrorReply(429, headers={"Retry-After": "120"}))
        with pytest.raises(alltoken.RateLimitError) as info:
            chat(client)
        assert info.value.retry_after == 120.0
        assert waits == [] and len(server.requests) == 1

    def test_backoff_without_retry_after_grows(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        for _ in range(3):
            server.enqueue(t.ErrorReply(502))
        with pytest.raises(alltoken.InternalServerError):
            chat(client)
        assert len(waits) == 2 and 0 < waits[0] and waits[0] < waits[1] * 2

    @pytest.mark.parametrize(("status", "cls"), [
        (400, alltoken.BadRequestError), (403, alltoken.PermissionDeniedError),
        (404, alltoken.NotFoundError)])
    def test_client_errors_are_not_retried(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float],
            status: int, cls: type) -> None:
        server.enqueue(t.ErrorReply(status, message="nope"))
        with pytest.raises(cls) as info:
            chat(client)
        assert not info.value.retryable
        assert len(server.requests) == 1

    def test_html_error_page_becomes_a_bounded_excerpt(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        page = "<html><body><h1>502 Bad Gateway</h1>" + "x" * 10000 + "</body></html>"
        for _ in range(3):
            server.enqueue(t.ErrorReply(502, body=page))
        with pytest.raises(alltoken.InternalServerError) as info:
            chat(client)
        text = str(info.value)
        assert "502 Bad Gateway" in text and len(text) < 600

    def test_empty_error_body_is_described(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.ErrorReply(404, body=b""))
        with pytest.raises(alltoken.NotFoundError, match="empty body"):
            chat(client)

    def test_401_with_a_callable_key_refreshes_once(self, waits: list[float]) -> None:
        keys = iter(["expired-key", "fresh-key", "never-used"])
        with t.LocalServer(pace=0, api_key="fresh-key") as srv:
            with alltoken.AllToken(api_key=lambda: next(keys), base_url=srv.base_url) as c:
                stream = chat(c)
                drain(stream)
            assert [r.headers["authorization"] for r in srv.requests] == [
                "Bearer expired-key", "Bearer fresh-key"]
        assert waits == []

    def test_401_with_a_fixed_key_is_raised(self, waits: list[float]) -> None:
        with t.LocalServer(pace=0, api_key="right") as srv:
            with alltoken.AllToken(api_key="wrong", base_url=srv.base_url) as c:
                with pytest.raises(alltoken.AuthenticationError):
                    chat(c)
            assert len(srv.requests) == 1


class TestInStreamFailures:
    def test_error_event_before_any_chunk_is_retried(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        server.enqueue(t.StreamReply([t.error_event(429, "Rate limit exceeded")]),
                       t.StreamReply([t.content("ok"), t.done()]))
        stream = chat(client)
        drain(stream)
        assert stream.text == "ok" and len(server.requests) == 2 and len(waits) == 1

    def test_error_event_without_code_maps_by_type(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("a"),
                                      t.error_event(None, "bad", "invalid_request_error")]))
        with pytest.raises(alltoken.BadRequestError):
            drain(chat(client))

    def test_dropped_connection_mid_stream_keeps_the_partial_text(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("par"), t.content("tial"), t.drop()]))
        stream = chat(client)
        with pytest.raises(alltoken.APIConnectionError):
            drain(stream)
        assert stream.text == "partial"

    def test_clean_end_before_done_is_an_error_not_a_short_answer(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("trunc"), t.end()]))
        stream = chat(client)
        with pytest.raises(alltoken.APIConnectionError, match=r"\[DONE\]"):
            drain(stream)
        assert stream.text == "trunc" and not stream.done

    def test_drop_before_the_first_chunk_is_retried(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        server.enqueue(t.StreamReply([t.drop()]), t.StreamReply([t.content("ok"), t.done()]))
        stream = chat(client)
        drain(stream)
        assert stream.text == "ok" and len(waits) == 1

    def test_malformed_chunk_json_is_a_protocol_error_with_excerpt(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("ok"), t.data('{"choices": [tru')]))
        stream = chat(client)
        with pytest.raises(alltoken.ProtocolError, match="choices"):
            drain(stream)
        assert stream.text == "ok"

    def test_wrong_content_type_is_a_protocol_error(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.raw(b"<html>hello</html>")], content_type="text/html"))
        with pytest.raises(alltoken.ProtocolError, match="text/html"):
            chat(client)

    def test_json_error_body_on_a_2xx_stream_is_that_error(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.JSONReply({"error": {"message": "no such model", "code": 404}}))
        with pytest.raises(alltoken.NotFoundError, match="no such model"):
            chat(client)


class TestTimeouts:
    def test_read_timeout_ends_a_stalled_stream(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.sleep(5), t.done()]))
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, timeout=0.3,
                               max_retries=0) as c:
            stream = chat(c)
            started = time.monotonic()
            with pytest.raises(alltoken.APITimeoutError, match="read timeout"):
                drain(stream)
            assert time.monotonic() - started < 3
        assert stream.text == "a"

    def test_keep_alives_do_not_trip_the_read_timeout_but_idle_ends_the_stall(
            self, server: t.LocalServer) -> None:
        beats = []
        for _ in range(30):
            beats += [t.comment(), t.sleep(0.05)]
        server.enqueue(t.StreamReply([t.content("a"), *beats, t.content("b"), t.done()]))
        timeout = alltoken.Timeout(connect=2, read=0.3, idle=0.6)
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, timeout=timeout,
                               max_retries=0) as c:
            stream = chat(c)
            with pytest.raises(alltoken.APITimeoutError, match="idle"):
                drain(stream)
        assert stream.text == "a"

    def test_keep_alives_longer_than_the_read_timeout_are_fine_without_idle(
            self, server: t.LocalServer) -> None:
        beats = []
        for _ in range(8):
            beats += [t.comment(), t.sleep(0.05)]
        server.enqueue(t.StreamReply([t.content("a"), *beats, t.content("b"), t.done()]))
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, timeout=0.2) as c:
            stream = chat(c)
            drain(stream)
        assert stream.text == "ab"

    def test_total_deadline_covers_the_whole_stream(self, server: t.LocalServer) -> None:
        drip = []
        for i in range(100):
            drip += [t.content(str(i % 10)), t.sleep(0.05)]
        server.enqueue(t.StreamReply([*drip, t.done()]))
        timeout = alltoken.Timeout(read=1, total=0.5)
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, timeout=timeout) as c:
            stream = chat(c)
            started = time.monotonic()
            with pytest.raises(alltoken.APITimeoutError, match="total"):
                drain(stream)
            assert time.monotonic() - started < 2
        assert 0 < len(stream.text) < 100


class TestAbort:
    def test_signal_set_before_the_call_sends_nothing(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        signal = threading.Event()
        signal.set()
        with pytest.raises(alltoken.AbortedError):
            chat(client, signal=signal)
        assert server.requests == []

    def test_abort_mid_stream_from_another_thread(self, server: t.LocalServer,
                                                  client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("kept"), t.wait(gate, timeout=30), t.done()]))
        signal = threading.Event()
        stream = chat(client, signal=signal)
        it = iter(stream)
        next(it)
        threading.Timer(0.05, signal.set).start()
        started = time.monotonic()
        with pytest.raises(alltoken.AbortedError):
            next(it)
        assert time.monotonic() - started < 1.0
        assert stream.text == "kept"
        wait_closed(server)
        stream.close()
        gate.set()

    def test_abort_during_retry_backoff(self, server: t.LocalServer,
                                        client: alltoken.AllToken) -> None:
        server.enqueue(t.ErrorReply(429, headers={"Retry-After": "30"}))
        signal = threading.Event()
        threading.Timer(0.1, signal.set).start()
        started = time.monotonic()
        with pytest.raises(alltoken.AbortedError):
            chat(client, signal=signal)
        assert time.monotonic() - started < 2

    def test_abort_while_waiting_for_the_response(self, server: t.LocalServer,
                                                  client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.StreamReply([t.done()])))
        signal = threading.Event()
        threading.Timer(0.05, signal.set).start()
        with pytest.raises(alltoken.AbortedError):
            chat(client, signal=signal)
        gate.set()

    def test_abort_while_connecting(self) -> None:
        # A listener that never accepts, its queue filled: further connects hang in SYN.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                fillers.append(s)
            signal = threading.Event()
            threading.Timer(0.2, signal.set).start()
            with alltoken.AllToken(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1",
                                   timeout=10) as c:
                started = time.monotonic()
                with pytest.raises(alltoken.AbortedError):
                    chat(c, signal=signal)
                assert time.monotonic() - started < 2  # not the 10 s connect timeout
        finally:
            for s in fillers:
                s.close()
            listener.close()


class TestHygiene:
    def test_connection_is_reused_after_a_clean_stream(self, server: t.LocalServer,
                                                       client: alltoken.AllToken) -> None:
        for _ in range(3):
            server.enqueue(t.StreamReply([t.content("x"), t.done(), t.cost()]))
            drain(chat(client))
            assert len(client._pool) == 1
        assert server.open_connections == 1

    def test_breaking_out_of_the_loop_closes_the_socket(self, server: t.LocalServer,
                                                        client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.content("b"), t.done()]))
        with chat(client) as stream:
            for _ in stream:
                break
        assert len(client._pool) == 0
        wait_closed(server)
        gate.set()

    def test_garbage_collected_stream_releases_its_socket(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.done()]))
        stream = chat(client)
        next(iter(stream))
        del stream
        import gc

        gc.collect()
        wait_closed(server)
        gate.set()

    def test_no_thread_outlives_its_streams(self, server: t.LocalServer) -> None:
        baseline = threading.active_count()
        signal = threading.Event()
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
            for _ in range(3):
                server.enqueue(t.StreamReply(STANDARD))
                drain(chat(c, signal=signal))
        # the server's own handler threads may still be finishing; ours never existed
        assert threading.active_count() <= baseline + 1

    def test_one_client_shared_by_32_threads(self, server: t.LocalServer,
                                             client: alltoken.AllToken) -> None:
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                stream = chat(client, model="echo",
                              messages=[{"role": "user", "content": f"thread {i} says hello"}])
                drain(stream)
                results[i] = stream.text
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert errors == []
        assert results == {i: f"thread {i} says hello" for i in range(32)}


class TestLogging:
    def test_debug_logs_never_contain_the_key(self, server: t.LocalServer,
                                              client: alltoken.AllToken,
                                              caplog: pytest.LogCaptureFixture,
                                              waits: list[float]) -> None:
        caplog.set_level(logging.DEBUG, logger="alltoken")
        server.enqueue(t.ErrorReply(500), t.StreamReply(STANDARD))
        drain(chat(client))
        text = caplog.text
        assert "POST" in text and "retrying" in text and "HTTP 200" in text
        assert KEY not in text and "Bearer" not in text

    def test_nothing_at_warning_for_a_clean_request(self, server: t.LocalServer,
                                                    client: alltoken.AllToken,
                                                    caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="alltoken")
        server.enqueue(t.StreamReply(STANDARD))
        drain(chat(client))
        assert caplog.records == []

    def test_error_messages_never_contain_the_key(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        server.enqueue(t.ErrorReply(400, message=f"bad key {KEY[:4]}..."))
        with pytest.raises(alltoken.BadRequestError) as info:
            chat(client)
        assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_a_client_dropped_without_close_does_not_leak_its_pooled_socket(
        server: t.LocalServer) -> None:
    import gc

    server.enqueue(t.StreamReply([t.content("x"), t.done()]))
    drain(chat(alltoken.AllToken(api_key=KEY, base_url=server.base_url)))
    gc.collect()  # a ResourceWarning here fails the test (warnings are errors)
    wait_closed(server)


@pytest.mark.parametrize("kind", ["stream", "text_stream"])
def test_dropped_streams_free_their_socket_without_the_cycle_collector(
        server: t.LocalServer, client: alltoken.AllToken, kind: str) -> None:
    import gc

    gate = threading.Event()
    server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.done()]))
    gc.disable()
    try:
        if kind == "stream":
            s: Any = chat(client)
        else:
            s = alltoken.stream("hi", model="m", client=client)
        next(iter(s))
        del s  # reference counting alone must close the socket
        wait_closed(server)
    finally:
        gc.enable()
        gate.set()


class TestRedirects:
    @pytest.mark.parametrize("status", [307, 308])
    def test_same_origin_307_308_are_followed_with_method_body_and_key(
            self, server: t.LocalServer, client: alltoken.AllToken, status: int) -> None:
        server.enqueue(t.ErrorReply(status, body=b"",
                                    headers={"Location": "/v2/chat/completions"}),
                       t.StreamReply([t.content("moved"), t.done()]))
        stream = chat(client)
        drain(stream)
        assert stream.text == "moved"
        first, second = server.requests
        assert second.method == "POST" and second.path == "/v2/chat/completions"
        assert second.json == first.json
        assert second.headers["authorization"] == f"Bearer {KEY}"

    def test_redirect_to_another_host_is_not_followed_and_the_key_stays_home(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        with t.LocalServer(pace=0) as elsewhere:
            server.enqueue(t.ErrorReply(307, body=b"", headers={
                "Location": elsewhere.base_url + "/chat/completions"}))
            with pytest.raises(alltoken.APIStatusError, match="same-origin") as info:
                chat(client)
            assert info.value.status_code == 307 and not info.value.retryable
            assert elsewhere.requests == []

    def test_302_for_a_post_is_an_error_not_a_silent_get(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.ErrorReply(302, body=b"", headers={"Location": "/elsewhere"}))
        with pytest.raises(alltoken.APIStatusError) as info:
            chat(client)
        assert info.value.status_code == 302 and len(server.requests) == 1

    def test_redirect_loops_end(self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        for _ in range(10):
            server.enqueue(t.ErrorReply(307, body=b"",
                                        headers={"Location": "/v1/chat/completions"}))
        with pytest.raises(alltoken.APIStatusError, match="too many redirects"):
            chat(client)
        assert len(server.requests) == 6


def test_plain_http_goes_through_an_http_proxy_in_absolute_form(
        server: t.LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The local server stands in for the proxy: it records the request target. The API
    # host does not resolve, so only the proxy can have been contacted.
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    with alltoken.AllToken(api_key=KEY, base_url="http://api.alltoken.invalid:8080/v1") as c:
        stream = chat(c, model="echo")
        drain(stream)
    assert stream.text == "hi"
    assert server.requests[0].path == "http://api.alltoken.invalid:8080/v1/chat/completions"


class TestWireFaults:
    def test_gzip_stream_is_decoded_incrementally(self, server: t.LocalServer,
                                                  client: alltoken.AllToken) -> None:
        import gzip

        body = (b'data: {"choices":[{"index":0,"delta":{"content":"squeezed"}}]}\n\n'
                b"data: [DONE]\n\n")
        server.enqueue(t.StreamReply([t.raw(gzip.compress(body))], write_size=7,
                                     headers={"Content-Encoding": "gzip"}))
        stream = chat(client)
        drain(stream)
        assert stream.text == "squeezed" and stream.done

    def test_unsupported_content_encoding_is_a_protocol_error(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.raw(b"\x00\x01")], headers={"Content-Encoding": "br"}))
        with pytest.raises(alltoken.ProtocolError, match="br"):
            drain(chat(client))

    def test_corrupt_gzip_is_a_protocol_error(self, server: t.LocalServer,
                                              client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.raw(b"not gzip at all")],
                                     headers={"Content-Encoding": "gzip"}))
        with pytest.raises(alltoken.ProtocolError, match="gzip"):
            drain(chat(client))

    def test_malformed_chunk_size_line_after_text_keeps_the_text(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("before"), t.bad_chunk_size()]))
        stream = chat(client)
        # http.client reports a bad chunk-size line as IncompleteRead: the body ended early
        with pytest.raises(alltoken.APIConnectionError, match="ended early"):
            drain(stream)
        assert stream.text == "before"

    def test_truncated_chunk_is_a_connection_error_with_the_text_kept(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("before"), t.truncated_chunk()]))
        stream = chat(client)
        with pytest.raises(alltoken.APIConnectionError):
            drain(stream)
        assert stream.text == "before"


class TestFoundByTheFaultTable:
    """Defects found by tests/test_faults.py and fuzz/fuzz_client.py."""

    def test_a_stream_that_closes_the_connection_is_read_to_its_end(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        # "Connection: close" (close-delimited here): http.client hands the socket to the
        # response and closes its own reference; the pause makes the body arrive after
        # the headers, so it is read from the socket and not from the header buffer.
        server.enqueue(t.StreamReply([t.sleep(0.1), t.content("plain"), t.done()],
                                     chunked=False))
        stream = chat(client)
        drain(stream)
        assert stream.text == "plain" and stream.done

    def test_a_connection_close_response_is_closed_when_the_stream_is_dropped(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.done()], chunked=False))
        stream = chat(client)
        assert next(iter(stream)).choices[0].delta.content == "a"
        stream.close()
        server.wait_for_connections(0, timeout=5.0)
        gate.set()

    def test_a_server_closing_without_a_status_line_is_a_retryable_connection_error(
            self, server: t.LocalServer, client: alltoken.AllToken, waits: list[float]) -> None:
        server.enqueue(t.DropReply(), t.StreamReply([t.content("ok"), t.done()]))
        stream = chat(client)
        drain(stream)
        assert stream.text == "ok" and len(waits) == 1 and len(server.requests) == 2
        server.enqueue(t.DropReply())
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, max_retries=0) as once:
            with pytest.raises(alltoken.APIConnectionError, match="without a response") as info:
                chat(once)
        assert info.value.retryable

    @pytest.mark.parametrize("location", ["/v1/chat/\x00", "http://[x/v1", "http://h:99999/v1",
                                          "/v1/caf\u00e9"])
    def test_a_malformed_redirect_location_is_a_typed_error(
            self, server: t.LocalServer, client: alltoken.AllToken, location: str) -> None:
        server.enqueue(t.ErrorReply(307, body=b"", headers={"Location": location}))
        with pytest.raises(alltoken.APIStatusError, match="Location is malformed") as info:
            chat(client)
        assert info.value.status_code == 307 and len(server.requests) == 1

    def test_a_gzip_bomb_is_inflated_a_step_at_a_time(self) -> None:
        import zlib

        from alltoken._transport import INFLATE_STEP
        from alltoken._transport import inflater as _inflater

        plain = b"data: x\n\n" * 1_000_000  # 9 MB, about 9 KB compressed
        packed = zlib.compress(plain, 9)
        inflate = _inflater("deflate", None)
        assert inflate is not None
        pieces = [len(p) for half in (packed[:100], packed[100:]) for p in inflate(half)]
        assert sum(pieces) == len(plain) and max(pieces) <= INFLATE_STEP


def test_a_cold_request_loads_nothing_it_does_not_need(server: t.LocalServer) -> None:
    # Cold start (benchmarks/run.py): importing alltoken and streaming one answer over
    # http:// must not load threading (the pool's lock comes from _thread), logging (no
    # handler can be configured without it), or the idna codec that getaddrinfo pulls
    # in for a str host; nor the partial-JSON reader, loaded when first used.
    import json
    import subprocess
    import sys

    program = (
        "import json, sys\n"
        "import alltoken\n"
        "c = alltoken.AllToken(api_key='k', base_url=sys.argv[1])\n"
        "s = c.chat.completions.create(model='echo', messages=[{'role': 'user', "
        "'content': 'hi'}], stream=True)\n"
        "for _ in s:\n"
        "    pass\n"
        "text = s.text\n"
        "c.close()\n"
        "print(json.dumps([text, sorted(sys.modules)]))\n"
    )
    base = server.base_url.replace("127.0.0.1", "localhost")
    done = subprocess.run([sys.executable, "-c", program, base], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text, modules = json.loads(done.stdout)
    assert text == "hi"
    assert not {"threading", "logging", "encodings.idna", "alltoken._partial_json"} & set(modules)
