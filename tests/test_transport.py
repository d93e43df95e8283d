"""The transport's pure parts: timeouts, proxy selection, header checks, error mapping."""

from __future__ import annotations

import http.client
import socket

import pytest

import alltoken
from alltoken._transport import (
    Deadlines,
    Proxy,
    Timeout,
    check_header,
    map_exception,
    proxy_for,
)


class TestTimeout:
    def test_a_number_sets_connect_and_read(self) -> None:
        t = Timeout.coerce(7)
        assert (t.connect, t.read, t.idle, t.total) == (7.0, 7.0, None, None)

    def test_none_means_no_limits(self) -> None:
        t = Timeout.coerce(None)
        assert (t.connect, t.read) == (None, None)

    def test_a_timeout_object_passes_through(self) -> None:
        t = Timeout(connect=1, read=2, idle=3, total=4)
        assert Timeout.coerce(t) is t

    @pytest.mark.parametrize("bad", ["1", True, [1]])
    def test_non_numbers_are_type_errors(self, bad: object) -> None:
        with pytest.raises(TypeError, match="timeout"):
            Timeout.coerce(bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["connect", "read", "idle", "total"])
    def test_non_positive_fields_name_themselves(self, field: str) -> None:
        with pytest.raises(ValueError, match=field):
            Timeout(**{field: 0})


class TestDeadlines:
    @pytest.mark.parametrize(("timeout", "idle_left", "what"), [
        (Timeout(read=10, total=0.05), None, "total timeout"),
        (Timeout(read=10, idle=5), 0.05, "idle timeout"),
        (Timeout(read=0.05, idle=5), 5.0, "read timeout"),
    ])
    def test_the_nearest_clock_bounds_a_wait_and_names_itself(
            self, timeout: Timeout, idle_left: float | None, what: str) -> None:
        a, b = socket.socketpair()
        with a, b:
            dl = Deadlines(timeout)
            dl.idle_left = idle_left
            with pytest.raises(alltoken.APITimeoutError, match=what):
                dl.wait_for(a, False, "read")

    def test_a_wait_spends_the_idle_budget_and_only_the_wait(self) -> None:
        a, b = socket.socketpair()
        with a, b:
            dl = Deadlines(Timeout(read=10, idle=5))
            dl.idle_left = 5.0
            b.send(b"x")
            dl.wait_for(a, False, "read")  # ready at once
            assert dl.idle_left is not None and 4.9 < dl.idle_left <= 5.0

    def test_total_timeouts_are_not_retryable(self) -> None:
        dl = Deadlines(Timeout(total=1))
        assert not dl.timeout_error("total").retryable
        assert dl.timeout_error("read").retryable

    def test_a_set_signal_aborts(self) -> None:
        import threading

        signal = threading.Event()
        dl = Deadlines(Timeout(), signal)
        dl.check_abort()
        signal.set()
        with pytest.raises(alltoken.AbortedError):
            dl.check_abort()


class TestProxySelection:
    def test_no_environment_means_no_proxy(self) -> None:
        assert proxy_for("https", "api.alltoken.ai", 443, None) is None

    def test_https_proxy_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
        assert proxy_for("https", "api.alltoken.ai", 443, None) == Proxy("proxy.local", 3128)
        assert proxy_for("http", "api.alltoken.ai", 80, None) is None

    def test_lower_case_variables_work_too(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("http_proxy", "proxy.local:8000")
        assert proxy_for("http", "example.test", 80, None) == Proxy("proxy.local", 8000)

    @pytest.mark.parametrize(("no_proxy", "host", "bypassed"), [
        ("alltoken.ai", "api.alltoken.ai", True),
        (".alltoken.ai", "api.alltoken.ai", True),
        ("alltoken.ai", "notalltoken.ai", False),
        ("*", "anything.test", True),
        ("localhost,127.0.0.1", "127.0.0.1", True),
        ("api.alltoken.ai:8443", "api.alltoken.ai", False),
        ("api.alltoken.ai:443", "api.alltoken.ai", True),
        ("", "api.alltoken.ai", False),
    ])
    def test_no_proxy_matching(self, monkeypatch: pytest.MonkeyPatch, no_proxy: str,
                               host: str, bypassed: bool) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
        monkeypatch.setenv("NO_PROXY", no_proxy)
        assert (proxy_for("https", host, 443, None) is None) is bypassed

    def test_explicit_proxy_wins_and_false_ignores_the_environment(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://env.local:1")
        assert proxy_for("https", "h", 443, "http://mine.local:2") == Proxy("mine.local", 2)
        assert proxy_for("https", "h", 443, False) is None

    def test_proxy_credentials_become_basic_auth_and_stay_out_of_repr(self) -> None:
        p = Proxy.parse("http://user:s3cret@proxy.local:3128")
        assert p.authorization == "Basic dXNlcjpzM2NyZXQ="
        assert "s3cret" not in repr(p) and "dXNlcjpzM2NyZXQ=" not in repr(p)

    @pytest.mark.parametrize("url", ["socks5://p:1", "http://", "http://p:1\r\nX: y"])
    def test_unsupported_or_malformed_proxies_are_rejected(self, url: str) -> None:
        with pytest.raises(ValueError):
            Proxy.parse(url)


class TestHeaderChecks:
    @pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\n b", "a\x00b"])
    def test_control_characters_are_rejected(self, value: str) -> None:
        with pytest.raises(ValueError, match="X-Test"):
            check_header("X-Test", value)

    def test_the_value_is_not_echoed(self) -> None:
        with pytest.raises(ValueError) as info:
            check_header("api key", "sk-secret\n")
        assert "sk-secret" not in str(info.value)


class TestErrorMapping:
    def test_socket_timeout_is_a_timeout_error(self) -> None:
        err = map_exception(socket.timeout("timed out"), "stream")
        assert isinstance(err, alltoken.APITimeoutError)

    def test_incomplete_read_says_the_response_ended_early(self) -> None:
        err = map_exception(http.client.IncompleteRead(b"abc", 10), "stream")
        assert type(err) is alltoken.APIConnectionError and "ended early" in str(err)

    def test_connection_reset_is_a_retryable_connection_error(self) -> None:
        err = map_exception(ConnectionResetError(104, "Connection reset by peer"), "stream")
        assert type(err) is alltoken.APIConnectionError and err.retryable
        assert "reset" in str(err).lower()

    def test_malformed_framing_is_a_protocol_error(self) -> None:
        err = map_exception(ValueError("invalid literal for int() with base 16"), "stream")
        assert isinstance(err, alltoken.ProtocolError)

    def test_a_set_signal_turns_any_failure_into_an_abort(self) -> None:
        import threading

        signal = threading.Event()
        signal.set()
        err = map_exception(OSError(9, "Bad file descriptor"), "stream",
                            Deadlines(Timeout(), signal))
        assert isinstance(err, alltoken.AbortedError)
