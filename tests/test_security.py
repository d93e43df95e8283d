"""Proxies, TLS, IPv6, secrets and malformed answers: what a hostile or broken network
cannot make the client do.

Every server here is written with the standard library on loopback: a raw-socket
server that plays a script (:class:`ScriptServer`), a forwarding HTTP proxy that
understands ``CONNECT`` and absolute-form requests and can demand credentials
(:class:`HTTPProxy`), and, for TLS, a server whose context the test sets up, with a
certificate made by the system's ``openssl`` for the test.
"""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import select
import shutil
import socket
import ssl
import subprocess
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import pytest

import alltoken
import alltoken._request as request_module
from alltoken import testing as t
from alltoken._transport import (
    MAX_INTERIM_RESPONSES,
    Proxy,
    ProxyError,
    private_headers,
    redact_url,
)

KEY = "sk-test-security-0123456789"
MSG = [{"role": "user", "content": "hi"}]
FAST = alltoken.Timeout(connect=5.0, read=5.0)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def completion_bytes(content: str = "Hello") -> bytes:
    return json.dumps({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
    }).encode()


def response(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


# -- servers --------------------------------------------------------------------------


def read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """Read a request's head (and its Content-Length body); (b"", b"") at end of file."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = conn.recv(65536)
        if not more:
            return b"", b""
        buf += more
    head, _, body = buf.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            while len(body) < int(value):
                more = conn.recv(65536)
                if not more:
                    break
                body += more
    return head, body


class ScriptServer:
    """Accepts connections one after another; for each, reads one request and sends
    ``script(request_head)``'s bytes, then closes. Counts connections and requests."""

    def __init__(self, script: Callable[[bytes], bytes], *, host: str = "127.0.0.1",
                 read_request: bool = True) -> None:
        self._script = script
        self._read = read_request
        self.connections = 0
        self.heads: list[bytes] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{self.port}/v1"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5.0)
                try:
                    head = b""
                    if self._read:
                        head, _ = read_head(conn)
                        self.heads.append(head)
                    conn.sendall(self._script(head))
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def __enter__(self) -> ScriptServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HTTPProxy:
    """A forwarding HTTP proxy: ``CONNECT`` tunnels and absolute-form requests.

    With *credentials* (``"user:password"``) it answers 407 to a request without the
    matching ``Proxy-Authorization``. *refuse* answers every ``CONNECT`` with that
    status. It records each request's method, target and headers (lower-cased names).
    """

    def __init__(self, credentials: Optional[str] = None, refuse: Optional[int] = None) -> None:
        self.expected = (None if credentials is None else
                         "Basic " + base64.b64encode(credentials.encode()).decode())
        self.refuse = refuse
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            th = threading.Thread(target=self._handle, args=(conn,))
            th.start()
            self._threads.append(th)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            try:
                self._one(conn)
            except OSError:
                pass

    def _one(self, conn: socket.socket) -> None:
        head, body = read_head(conn)
        if not head:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.seen.append((method, target, headers))
        if self.expected is not None and headers.get("proxy-authorization") != self.expected:
            conn.sendall(response("407 Proxy Authentication Required", b"<h1>407</h1>",
                                  'Proxy-Authenticate: Basic realm="test"',
                                  "Content-Type: text/html"))
            return
        if method == "CONNECT":
            if self.refuse is not None:
                conn.sendall(response(f"{self.refuse} Refused", b""))
                return
            host, _, port = target.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port))) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(conn, upstream)
            return
        # Absolute form: forward in origin form (without the proxy's own headers).
        url = urlsplit(target)
        out = [f"{method} {url.path or '/'} HTTP/1.1"]
        for line in lines[1:]:
            name = line.partition(":")[0].strip().lower()
            if name not in ("proxy-authorization", "connection", "proxy-connection"):
                out.append(line)
        out.append("Connection: close")
        with socket.create_connection((url.hostname, url.port or 80)) as upstream:
            upstream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                conn.sendall(data)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(pair), [], [], 0.05)
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                pair[s].sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._accept.join()
        for th in self._threads:
            th.join()
        self._listener.close()

    def __enter__(self) -> HTTPProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create(client: alltoken.AllToken, **kw: Any) -> Any:
    return client.chat.completions.create(model="echo", messages=MSG, **kw)


def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps recorded, not slept."""
    slept: list[float] = []
    monkeypatch.setattr(alltoken._transport.Deadlines, "wait",
                        lambda self, seconds: slept.append(seconds))
    return slept


# -- 1, 2: proxy credentials and refusals -----------------------------------------------


class TestProxyCredentials:
    def test_a_plain_http_request_through_a_proxy_carries_its_credentials(self) -> None:
        with t.LocalServer(pace=0) as origin, HTTPProxy("user:pw") as proxy:
            url = proxy.url.replace("http://", "http://user:pw@")
            with alltoken.AllToken(api_key=KEY, base_url=origin.base_url, proxy=url) as c:
                answer = create(c)
            assert answer.choices[0].message.content == "hi"
            _, target, headers = proxy.seen[0]
            assert target == f"{origin.base_url}/chat/completions"
            assert headers["proxy-authorization"] == "Basic dXNlcjpwdw=="
            # The proxy consumes it: the origin never sees the proxy's credentials.
            assert "proxy-authorization" not in origin.requests[0].headers
            assert origin.requests[0].headers["authorization"] == f"Bearer {KEY}"

    def test_a_tunnelled_request_carries_the_proxy_credentials_only_on_connect(self) -> None:
        # The https case: CONNECT carries them; the request inside the tunnel does not.
        # (The proxy refuses the tunnel after recording it, so no TLS server is needed.)
        with HTTPProxy(refuse=403) as proxy:
            url = proxy.url.replace("http://", "http://user:pw@")
            with alltoken.AllToken(api_key=KEY, base_url="https://api.alltoken.invalid/v1",
                                   proxy=url, max_retries=0) as c:
                with pytest.raises(ProxyError):
                    create(c)
        method, target, headers = proxy.seen[0]
        assert (method, target) == ("CONNECT", "api.alltoken.invalid:443")
        assert headers["proxy-authorization"] == "Basic dXNlcjpwdw=="
        assert headers["host"] == "api.alltoken.invalid:443"
        assert "authorization" not in headers  # the API key never goes to the proxy


class TestProxyRefusals:
    @pytest.mark.parametrize("scheme", ["https", "http"])
    def test_rejected_proxy_credentials_are_sent_once_and_named(
            self, scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
        slept = no_sleep(monkeypatch)
        with HTTPProxy("user:right") as proxy:
            url = proxy.url.replace("http://", "http://user:WRONGPW@")
            with alltoken.AllToken(api_key=KEY, base_url=f"{scheme}://api.alltoken.invalid/v1",
                                   proxy=url, max_retries=3) as c:
                with pytest.raises(ProxyError) as info:
                    create(c)
        err = info.value
        assert isinstance(err, alltoken.APIConnectionError)
        assert not err.retryable and err.status_code == 407
        assert err.proxy == f"127.0.0.1:{proxy.port}"
        assert len(proxy.seen) == 1 and slept == []  # never re-sent: no lockout
        assert f"127.0.0.1:{proxy.port}" in str(err) and "407" in str(err)
        assert "rejected the credentials" in str(err)
        assert "WRONGPW" not in str(err) and "user" not in str(err)
        restored = pickle.loads(pickle.dumps(err))
        assert type(restored) is ProxyError
        assert (restored.proxy, restored.status_code) == (err.proxy, 407)

    def test_a_proxy_asking_for_credentials_says_where_they_go(self) -> None:
        with HTTPProxy("user:pw") as proxy:
            with alltoken.AllToken(api_key=KEY, base_url="https://api.alltoken.invalid/v1",
                                   proxy=proxy.url, max_retries=0) as c:
                with pytest.raises(ProxyError, match="http://user:password@host:port"):
                    create(c)

    @pytest.mark.parametrize(("status", "retryable"), [(403, False), (502, True)])
    def test_any_refused_tunnel_names_the_proxy_and_the_status(
            self, status: int, retryable: bool) -> None:
        with HTTPProxy(refuse=status) as proxy:
            with alltoken.AllToken(api_key=KEY, base_url="https://api.alltoken.invalid/v1",
                                   proxy=proxy.url, max_retries=0) as c:
                with pytest.raises(ProxyError) as info:
                    create(c)
        assert info.value.status_code == status and info.value.retryable is retryable
        assert f"proxy 127.0.0.1:{proxy.port} refused a tunnel" in str(info.value)

    def test_an_unreachable_proxy_is_named_in_the_error(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: connections are refused
            with alltoken.AllToken(api_key=KEY, base_url="https://api.alltoken.invalid/v1",
                                   proxy=f"http://u:SECRETPW@127.0.0.1:{port}",
                                   max_retries=0) as c:
                with pytest.raises(alltoken.APIConnectionError) as info:
                    create(c)
        message = str(info.value)
        assert f"through the proxy 127.0.0.1:{port}" in message
        assert "api.alltoken.invalid:443" in message and "SECRETPW" not in message

    def test_a_proxy_url_without_a_port_means_port_80(self) -> None:
        assert Proxy.parse("http://proxy.local") == Proxy("proxy.local", 80)
        assert Proxy.parse("proxy.local") == Proxy("proxy.local", 80)


# -- 8: IPv6 ------------------------------------------------------------------------------


@needs_ipv6
class TestIPv6:
    @pytest.mark.parametrize("absolute", [False, True])
    def test_a_same_origin_redirect_on_an_ipv6_api_is_followed(self, absolute: bool) -> None:
        with t.LocalServer(host="::1", pace=0) as server:
            origin = f"http://[::1]:{server.port}" if absolute else ""
            server.enqueue(t.ErrorReply(307, body=b"", headers={
                "Location": f"{origin}/v2/chat/completions"}),
                t.JSONReply(content="moved"))
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                assert create(c).choices[0].message.content == "moved"
            assert [r.path for r in server.requests] == ["/v1/chat/completions",
                                                         "/v2/chat/completions"]
            assert server.requests[1].headers["host"] == f"[::1]:{server.port}"

    def test_an_ipv6_api_through_a_proxy_keeps_its_brackets(self) -> None:
        with t.LocalServer(host="::1", pace=0) as origin, HTTPProxy() as proxy:
            with alltoken.AllToken(api_key=KEY, base_url=origin.base_url,
                                   proxy=proxy.url) as c:
                assert create(c).choices[0].message.content == "hi"
        _, target, headers = proxy.seen[0]
        assert target == f"http://[::1]:{origin.port}/v1/chat/completions"
        assert headers["host"] == f"[::1]:{origin.port}"

    def test_connect_to_an_ipv6_api_keeps_its_brackets(self) -> None:
        with HTTPProxy(refuse=403) as proxy:
            with alltoken.AllToken(api_key=KEY, base_url="https://[::1]:8443/v1",
                                   proxy=proxy.url, max_retries=0) as c:
                with pytest.raises(ProxyError, match=r"a tunnel to \[::1\]:8443"):
                    create(c)
        assert proxy.seen[0][:2] == ("CONNECT", "[::1]:8443")


# -- 9: secrets in messages, reprs and frames ------------------------------------------


class TestSecrets:
    @pytest.mark.parametrize("url", [
        "https://user:SECRET@api.alltoken.ai/v1",
        "https://api.alltoken.ai/v1?api-key=SECRET",
        "https://api.alltoken.ai/v1#SECRET",
        "ftp://user:SECRET@api.alltoken.ai/v1",
        "https://user:SECRET@[::1/v1",
        "https://user:SECRET@api.alltoken.ai:99999/v1",
        "https://user:SECRET@/v1",
        "https://api.alltoken.ai/v 1?key=SECRET",
        "https://user:SECRET@api.alltoken.ai:0/v1",
        "https://user:SECR\uff03ET@api.alltoken.ai/v1",  # NFKC-invalid netloc
    ])
    def test_base_url_errors_never_show_a_password_or_a_query(self, url: str) -> None:
        with pytest.raises(ValueError) as info:
            alltoken.AllToken(api_key=KEY, base_url=url)
        shown = "".join(traceback.format_exception(info.type, info.value, info.tb))
        assert "SECRET" not in shown and "SECR" not in shown

    @pytest.mark.parametrize(("url", "redacted"), [
        ("https://u:p@h:1/v1?k=v#f", "https://***@h:1/v1?***"),
        ("https://h/v1", "https://h/v1"),
        ("u:p@proxy:3128", "***@proxy:3128"),
        ("https://h?k=v", "https://h?***"),
        ("https://a@b@h/p", "https://***@h/p"),
        ("/v1/chat?token=x", "/v1/chat?***"),
        ("http://[::1/v1?x=1", "http://[::1/v1?***"),
    ])
    def test_redact_url(self, url: str, redacted: str) -> None:
        assert redact_url(url) == redacted

    def test_port_0_is_refused(self) -> None:
        with pytest.raises(ValueError, match="port 0"):
            alltoken.AllToken(api_key=KEY, base_url="https://api.alltoken.ai:0/v1")

    def test_credentials_in_headers_are_hidden_from_repr_and_go_first(self) -> None:
        headers = private_headers({"User-Agent": "x", "Authorization": f"Bearer {KEY}"})
        assert list(headers) == ["Authorization", "User-Agent"]
        assert KEY not in repr(headers) and "'User-Agent': 'x'" in repr(headers)

    def test_a_timeout_traceback_with_its_locals_does_not_show_the_key(self) -> None:
        gate = threading.Event()

        def silent(head: bytes) -> bytes:
            gate.wait(5)
            return b""

        with ScriptServer(silent) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url, max_retries=0,
                                   timeout=alltoken.Timeout(connect=5, read=0.2)) as c:
                with pytest.raises(alltoken.APITimeoutError) as info:
                    create(c)
            gate.set()
        shown = "".join(traceback.TracebackException(
            info.type, info.value, info.tb, capture_locals=True).format())
        assert "headers =" in shown  # the frames that carry the headers were captured
        assert KEY not in shown


# -- 10-12, 14: malformed answers ---------------------------------------------------------


class TestMalformedAnswers:
    def test_a_non_streamed_answer_nested_too_deep_is_a_protocol_error(self) -> None:
        body = b"[" * 100_000
        with ScriptServer(lambda _: response("200 OK", body, "Content-Type: application/json")
                          ) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                with pytest.raises(alltoken.ProtocolError):
                    create(c)

    @pytest.mark.parametrize("interim", [
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nLink: </b>\r\n\r\n",
    ])
    def test_interim_responses_before_the_answer_are_skipped(self, interim: bytes) -> None:
        answer = response("200 OK", completion_bytes("after hints"),
                          "Content-Type: application/json")
        stream_head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       b"Connection: close\r\n\r\n")
        events = (b'data: {"choices":[{"index":0,"delta":{"content":"streamed"}}]}\n\n'
                  b"data: [DONE]\n\n")
        with ScriptServer(lambda _: interim + answer) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                assert create(c).choices[0].message.content == "after hints"
        with ScriptServer(lambda _: interim + stream_head + events) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                with create(c, stream=True) as stream:
                    assert "".join(ch.choices[0].delta.content for ch in stream) == "streamed"

    def test_endless_interim_responses_are_a_protocol_error(self) -> None:
        many = b"HTTP/1.1 102 Processing\r\n\r\n" * (MAX_INTERIM_RESPONSES + 1)
        with ScriptServer(lambda _: many + response("200 OK", completion_bytes())) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url, max_retries=2) as c:
                with pytest.raises(alltoken.ProtocolError, match="interim"):
                    create(c)
            assert server.connections == 1

    def test_101_switching_protocols_is_a_protocol_error(self) -> None:
        with ScriptServer(lambda _: b"HTTP/1.1 101 Switching Protocols\r\n"
                                    b"Upgrade: h2c\r\n\r\n") as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                with pytest.raises(alltoken.ProtocolError, match="101"):
                    create(c)

    def test_a_gzipped_non_streamed_answer_is_decoded(self) -> None:
        body = gzip.compress(completion_bytes("squeezed"))
        with ScriptServer(lambda _: response("200 OK", body, "Content-Encoding: gzip",
                                             "Content-Type: application/json")) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                answer = create(c, extra_headers={"Accept-Encoding": "gzip"})
        assert answer.choices[0].message.content == "squeezed"
        assert b"accept-encoding: gzip" in server.heads[0].lower()

    def test_a_gzipped_error_body_is_decoded(self) -> None:
        body = gzip.compress(json.dumps({"error": {"message": "bad model name",
                                                   "type": "invalid_request_error"}}).encode())
        with ScriptServer(lambda _: response("400 Bad Request", body, "Content-Encoding: gzip",
                                             "Content-Type: application/json")) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                with pytest.raises(alltoken.BadRequestError, match="bad model name"):
                    create(c)

    def test_a_gzip_bomb_answer_is_bounded_by_its_decoded_size(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(request_module, "MAX_JSON_BODY", 1 << 20)
        body = gzip.compress(b" " * (64 << 20), 9)  # 64 MiB of spaces in ~64 KiB
        with ScriptServer(lambda _: response("200 OK", body, "Content-Encoding: gzip")
                          ) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url) as c:
                with pytest.raises(alltoken.ProtocolError, match="larger than 1048576"):
                    create(c)

    def test_more_than_100_headers_is_a_protocol_error_sent_once(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        slept = no_sleep(monkeypatch)
        headers = [f"X-Filler-{i}: {i}" for i in range(150)]
        with ScriptServer(lambda _: response("200 OK", completion_bytes(), *headers)) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url, max_retries=2) as c:
                with pytest.raises(alltoken.ProtocolError, match="100 headers") as info:
                    create(c)
            assert server.connections == 1 and slept == []
        assert not info.value.retryable

    def test_a_redirect_location_with_a_space_is_not_retried(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        slept = no_sleep(monkeypatch)
        with ScriptServer(lambda _: response("307 Temporary Redirect", b"",
                                             "Location: /v1/chat completions")) as server:
            with alltoken.AllToken(api_key=KEY, base_url=server.base_url, max_retries=2) as c:
                with pytest.raises(alltoken.APIStatusError, match="Location is malformed") as info:
                    create(c)
            assert server.connections == 1 and slept == []
        assert not info.value.retryable and info.value.status_code == 307


# -- 13: TLS handshakes that can never complete ------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1"],
                   cwd=d, check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


class TLSServer:
    """Accepts connections and runs the server side of a handshake with *ctx*."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.settimeout(5.0)
            try:
                self._ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()


class TestTLSHandshake:
    def test_https_to_a_plain_http_port_is_not_retried(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        slept = no_sleep(monkeypatch)
        with ScriptServer(lambda _: response("400 Bad Request", b"plain http"),
                          read_request=False) as server:
            url = server.base_url.replace("http://", "https://")
            with alltoken.AllToken(api_key=KEY, base_url=url, max_retries=2) as c:
                with pytest.raises(alltoken.APIConnectionError) as info:
                    create(c)
            assert server.connections == 1 and slept == []
        assert not info.value.retryable
        assert "TLS handshake failed" in str(info.value) and "plain-HTTP" in str(info.value)

    def test_a_server_speaking_only_tls_1_0_is_not_retried(
            self, self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
        if not ssl.HAS_TLSv1:
            pytest.skip("this OpenSSL has no TLS 1.0")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self_signed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as exc:
            pytest.skip(f"this OpenSSL cannot serve TLS 1.0 only: {exc}")
        slept = no_sleep(monkeypatch)
        server = TLSServer(ctx)
        try:
            with alltoken.AllToken(api_key=KEY, base_url=f"https://127.0.0.1:{server.port}/v1",
                                   max_retries=2, verify=False) as c:
                with pytest.raises(alltoken.APIConnectionError) as info:
                    create(c)
            assert server.connections == 1 and slept == []
        finally:
            server.close()
        assert not info.value.retryable and "TLS handshake failed" in str(info.value)


class TestCAFile:
    def test_a_missing_ca_file_is_refused_by_the_constructor(self, tmp_path: Path) -> None:
        missing = str(tmp_path / "no-such-ca.pem")
        with pytest.raises(FileNotFoundError, match="ca_file"):
            alltoken.AllToken(api_key=KEY, ca_file=missing)

    def test_a_ca_file_without_certificates_is_a_value_error(self, tmp_path: Path) -> None:
        bogus = tmp_path / "ca.pem"
        bogus.write_text("not a certificate\n")
        with pytest.raises(ValueError, match="ca_file"):
            alltoken.AllToken(api_key=KEY, ca_file=str(bogus))

    @needs_openssl
    def test_a_good_ca_file_is_loaded_once_at_construction(
            self, self_signed: tuple[Path, Path]) -> None:
        c = alltoken.AllToken(api_key=KEY, ca_file=str(self_signed[0]))
        assert c._endpoint.ssl_context is not None
