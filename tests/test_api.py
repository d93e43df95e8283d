"""The public API is exactly what the README says: names, defaults, one meaning each.

Also the behaviours users met at its edges: choices without a delta, odd cost trailers,
``retry_after`` on every status error, header values that are not latin-1, merged and
reserved headers, and which proxy variables are honoured.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from conftest import KEY

import alltoken
from alltoken import testing as t
from alltoken._transport import proxy_for

MSG = [{"role": "user", "content": "hi"}]


def chat(client: alltoken.AllToken, **kw: Any) -> alltoken.Stream:
    kw.setdefault("model", "m")
    kw.setdefault("messages", MSG)
    return client.chat.completions.create(stream=True, **kw)


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alltoken._transport.Deadlines, "wait",
                        lambda self, seconds: self.check_abort())


class TestNames:
    def test_proxy_signal_and_decoder_state_are_public(self) -> None:
        assert alltoken.Proxy("p", 3128).port == 3128
        assert alltoken.SSEDecoder().state is alltoken.DecoderState.OPEN
        assert isinstance(threading.Event(), alltoken.Signal)
        assert not isinstance(object(), alltoken.Signal)
        assert alltoken.NOT_GIVEN is not None
        for name in ("Proxy", "Signal", "DecoderState", "TextStream", "Stream", "NOT_GIVEN",
                     "parse_partial_json", "PartialJSON"):
            assert name in alltoken.__all__

    def test_base_url_is_read_only(self, client: alltoken.AllToken,
                                   server: t.LocalServer) -> None:
        assert client.base_url == server.base_url
        with pytest.raises(AttributeError):
            client.base_url = "https://elsewhere.example/v1"  # type: ignore[misc]

    def test_text_stream_has_every_attribute_of_stream(self, server: t.LocalServer,
                                                       client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.content("b"), t.done()]))
        ts = alltoken.stream("x", model="m", client=client)
        assert "".join(ts) == "ab"
        names = [n for n in dir(alltoken.Stream) if not n.startswith("_")
                 and isinstance(getattr(alltoken.Stream, n), property)]
        assert "chunks" in names
        for name in names:
            assert getattr(ts, name) == getattr(ts.stream, name), name
        assert ts.chunks == 2


class TestClose:
    def test_close_closes_idle_connections_and_the_client_stays_usable(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("one"), t.done()]))
        with chat(client) as s:
            list(s)
        assert len(client._pool) == 1
        client.close()
        assert len(client._pool) == 0
        server.enqueue(t.StreamReply([t.content("two"), t.done()]))
        with chat(client) as s:
            list(s)
        assert s.text == "two"
        assert len(client._pool) == 1  # pooled again: close() is not a shutdown


class TestTimeoutNone:
    def test_timeout_none_on_create_means_no_limits_as_on_the_client(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, proxy=False,
                               timeout=0.2, max_retries=0) as c:
            server.enqueue(t.StreamReply([t.content("a"), t.sleep(0.5), t.content("b"),
                                          t.done()]))
            with chat(c, timeout=None) as s:
                list(s)
            assert s.text == "ab"
            server.enqueue(t.StreamReply([t.content("a"), t.wait(gate, 30), t.done()]))
            try:
                with pytest.raises(alltoken.APITimeoutError, match="read"):
                    with chat(c) as s:  # timeout left out: the client's 0.2 s
                        list(s)
            finally:
                gate.set()


class TestAnswersAtTheEdges:
    @pytest.mark.parametrize("choice", [{"index": 0}, {"index": 0, "delta": None}])
    def test_a_choice_without_delta_mid_answer_is_skipped_over(
            self, server: t.LocalServer, client: alltoken.AllToken,
            choice: dict[str, Any]) -> None:
        server.enqueue(t.StreamReply([
            t.content("Hel"),
            t.chunk({"id": "c", "choices": [{**choice, "content_filter_results": {}}]}),
            t.content("lo"), t.done()]))
        with chat(client) as s:
            list(s)
        assert s.text == "Hello"

    @pytest.mark.parametrize("trailer", ['{"cost": null}', '{"cost": ""}',
                                         '{"cost": "0.1", "prompt_tokens": -1}'])
    def test_an_unreadable_cost_trailer_leaves_cost_none_and_the_answer_whole(
            self, server: t.LocalServer, client: alltoken.AllToken, trailer: str,
            caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="alltoken")
        server.enqueue(t.StreamReply([t.content("whole"), t.done(), t.comment(trailer)]))
        with chat(client) as s:
            list(s)
        assert s.text == "whole" and s.cost is None
        assert "unreadable cost comment" in caplog.text

    def test_a_trailer_with_a_whole_float_token_count_is_read(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        server.enqueue(t.StreamReply([t.content("x"), t.done(), t.comment(
            '{"cost": "0.0012", "prompt_tokens": 15.0, "completion_tokens": 42}')]))
        with chat(client) as s:
            list(s)
        assert s.cost is not None and s.cost.prompt_tokens == 15

    def test_a_503_keeps_its_retry_after_and_headers(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(503, headers={"Retry-After": "120", "X-Trace": "abc"}))
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, proxy=False) as c:
            with pytest.raises(alltoken.InternalServerError) as info:
                chat(c)
        err = info.value
        assert err.retry_after == 120.0  # longer than 60 s: raised at once, with the wait
        assert err.headers["x-trace"] == "abc" and err.headers["retry-after"] == "120"
        assert len(server.requests) == 1
        import pickle

        again = pickle.loads(pickle.dumps(err))
        assert again.retry_after == 120.0 and again.headers == err.headers


class TestKeysAndHeaders:
    @pytest.mark.parametrize("bad", ["sk-abc\u201d", "sk-\u2615"])
    def test_a_key_that_is_not_latin1_is_a_value_error_that_never_quotes_it(
            self, bad: str, monkeypatch: pytest.MonkeyPatch, server: t.LocalServer) -> None:
        with pytest.raises(ValueError, match="API key") as info:
            alltoken.AllToken(api_key=bad, base_url=server.base_url)
        assert bad not in str(info.value) and bad[3:] not in str(info.value)
        monkeypatch.setenv("ALLTOKEN_API_KEY", bad)
        with pytest.raises(ValueError, match="API key") as info:
            alltoken.AllToken(base_url=server.base_url)
        assert bad not in str(info.value)
        c = alltoken.AllToken(api_key=lambda: bad, base_url=server.base_url, proxy=False)
        with pytest.raises(ValueError, match="API key") as info:
            chat(c)
        assert bad not in str(info.value)
        assert server.requests == []

    def test_a_header_value_that_is_not_latin1_names_the_header_not_the_value(
            self, client: alltoken.AllToken, server: t.LocalServer) -> None:
        with pytest.raises(ValueError, match="X-Note") as info:
            chat(client, extra_headers={"X-Note": "Caf\u00e9 \u2615"})
        assert "\u2615" not in str(info.value)
        assert server.requests == []

    def test_headers_merge_case_insensitively_and_the_caller_wins(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("x"), t.done()]))
        with alltoken.AllToken(api_key=KEY, base_url=server.base_url, proxy=False,
                               default_headers={"user-agent": "mine/1", "X-A": "1"}) as c:
            with chat(c, extra_headers={"x-a": "2", "authorization": "Bearer other"}) as s:
                list(s)
        sent = server.requests[0]
        assert sent.headers["user-agent"] == "mine/1"
        assert sent.headers["x-a"] == "2"
        assert sent.headers["authorization"] == "Bearer other"
        raw = sent.raw_headers if hasattr(sent, "raw_headers") else None
        if raw is not None:  # pragma: no cover - depends on the server's recording
            assert sum(1 for n, _ in raw if n.lower() == "authorization") == 1

    @pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding", "Host",
                                      "Connection", "Proxy-Authorization"])
    def test_framing_headers_are_the_librarys(self, client: alltoken.AllToken,
                                              name: str) -> None:
        with pytest.raises(ValueError, match="set by the library"):
            chat(client, extra_headers={name: "0"})
        with pytest.raises(ValueError, match="set by the library"):
            alltoken.AllToken(api_key=KEY, default_headers={name: "x"})

    def test_a_callable_key_always_refused_is_called_twice_and_sends_two_requests(
            self, server: t.LocalServer, no_waits: None) -> None:
        calls: list[int] = []

        def key() -> str:
            calls.append(1)
            return f"sk-{len(calls)}"

        for _ in range(5):
            server.enqueue(t.ErrorReply(401, type="authentication_error"))
        with alltoken.AllToken(api_key=key, base_url=server.base_url, proxy=False,
                               max_retries=3) as c:
            with pytest.raises(alltoken.AuthenticationError):
                chat(c)
        assert len(calls) == 2
        assert len(server.requests) == 2
        assert [r.headers["authorization"] for r in server.requests] == [
            "Bearer sk-1", "Bearer sk-2"]


class TestProxyVariables:
    def test_all_proxy_is_honoured_when_it_is_http(self, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
        monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
        assert proxy_for("https", "api.example", 443, None) == alltoken.Proxy(
            "proxy.example", 3128)

    def test_a_socks_all_proxy_is_ignored_not_an_error(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
        assert proxy_for("https", "api.example", 443, None) is None
        alltoken.AllToken(api_key=KEY)  # constructing the client works

    def test_http_proxy_is_ignored_in_a_cgi_program(self, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
        monkeypatch.setenv("HTTP_PROXY", "http://evil.example:80")
        monkeypatch.setenv("REQUEST_METHOD", "GET")
        assert proxy_for("http", "api.example", 80, None) is None
        monkeypatch.delenv("REQUEST_METHOD")
        assert proxy_for("http", "api.example", 80, None) is not None

    @pytest.mark.parametrize(("no_proxy", "host", "port", "bypassed"), [
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "tenant.example", 443, False),
        ("fd00::/8", "[fd12::1]", 443, True),
        ("*.corp.example", "api.corp.example", 443, True),
        ("*.corp.example", "corp.example", 443, True),
        (".corp.example", "api.corp.example", 443, True),
        ("corp.example", "notcorp.example", 443, False),
        ("[::1]:8080", "[::1]", 8080, True),
        ("[::1]:8080", "[::1]", 8081, False),
        ("api.example:443", "api.example", 443, True),
        ("api.example:443", "api.example", 8443, False),
        ("*", "anything.example", 1, True),
    ])
    def test_no_proxy_forms(self, monkeypatch: pytest.MonkeyPatch, no_proxy: str,
                            host: str, port: int, bypassed: bool) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
        monkeypatch.setenv("NO_PROXY", no_proxy)
        assert (proxy_for("https", host.strip("[]"), port, None) is None) is bypassed
