"""TLS verification and HTTP proxies, end to end over loopback.

Certificates are made per test session with the system's ``openssl`` (a CA and a leaf for
127.0.0.1); the tests are skipped where it is missing. The proxy is a small CONNECT proxy
written here, which records what it was asked to connect to.
"""

from __future__ import annotations

import select
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

import alltoken
from alltoken import testing as t

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def drain(client: alltoken.AllToken) -> str:
    stream = client.chat.completions.create(model="echo", stream=True,
                                            messages=[{"role": "user", "content": "over tls"}])
    with stream:
        for _ in stream:
            pass
    return stream.text


class TestTLS:
    def test_an_unknown_ca_is_refused_with_a_clear_error(
            self, https_server: t.LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url,
                               max_retries=0) as c:
            with pytest.raises(alltoken.APIConnectionError, match="certificate") as info:
                drain(c)
        assert not info.value.retryable  # retrying will not fix a certificate

    def test_the_ca_file_is_trusted_when_given(self, https_server: t.LocalServer,
                                               certs: Path) -> None:
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url,
                               ca_file=str(certs / "ca.pem")) as c:
            assert drain(c) == "over tls"
            assert drain(c) == "over tls"  # and the TLS connection is reused
            assert len(c._pool) == 1

    def test_ssl_cert_file_is_honoured(self, https_server: t.LocalServer, certs: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.pem"))
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url) as c:
            assert drain(c) == "over tls"

    def test_verification_can_be_turned_off_explicitly(
            self, https_server: t.LocalServer) -> None:
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url,
                               verify=False) as c:
            assert drain(c) == "over tls"


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records its CONNECT targets."""

    def __init__(self, require: Optional[str] = None) -> None:
        #: When set, the ``Proxy-Authorization`` a CONNECT must carry (else 407).
        self.require = require
        self.targets: list[str] = []
        self.auth: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve)
        self._accept.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            th = threading.Thread(target=self._tunnel, args=(conn,))
            th.start()
            self._threads.append(th)

    def _tunnel(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                piece = conn.recv(4096)
                if not piece:
                    return
                head += piece
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].decode().split(" ")
            for line in lines[1:]:
                if line.lower().startswith(b"proxy-authorization:"):
                    self.auth.append(line.split(b":", 1)[1].strip().decode())
            assert method == "CONNECT"
            self.targets.append(target)
            if self.require is not None and self.auth[-1:] != [self.require]:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"t\"\r\n"
                             b"Content-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pair = {conn: upstream, upstream: conn}
                while not self._stop.is_set():
                    ready, _, _ = select.select(list(pair), [], [], 0.05)
                    for s in ready:
                        try:
                            data = s.recv(65536)
                            if data:
                                pair[s].sendall(data)
                        except ConnectionError:  # a side hung up hard (a failed handshake)
                            data = b""
                        if not data:
                            return

    def close(self) -> None:
        self._stop.set()
        self._accept.join()
        for th in self._threads:
            th.join()
        self._listener.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy()
    yield p
    p.close()


class TestProxy:
    @pytest.fixture(autouse=True)
    def _clean_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)

    def test_https_goes_through_a_connect_tunnel(self, https_server: t.LocalServer,
                                                 certs: Path, proxy: ConnectProxy) -> None:
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url, proxy=proxy.url,
                               ca_file=str(certs / "ca.pem")) as c:
            assert drain(c) == "over tls"
        assert proxy.targets == [f"127.0.0.1:{https_server.port}"]
        # the key travelled inside the tunnel, to the server, not to the proxy
        assert https_server.requests[0].headers["authorization"] == "Bearer k"

    def test_proxy_credentials_are_sent_to_the_proxy(self, https_server: t.LocalServer,
                                                     certs: Path, proxy: ConnectProxy) -> None:
        url = proxy.url.replace("http://", "http://user:pw@")
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url, proxy=url,
                               ca_file=str(certs / "ca.pem")) as c:
            drain(c)
        assert proxy.auth == ["Basic dXNlcjpwdw=="]

    def test_https_proxy_from_the_environment(self, https_server: t.LocalServer, certs: Path,
                                              proxy: ConnectProxy,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url,
                               ca_file=str(certs / "ca.pem")) as c:
            assert drain(c) == "over tls"
        assert len(proxy.targets) == 1

    def test_no_proxy_bypasses_the_proxy(self, https_server: t.LocalServer, certs: Path,
                                         proxy: ConnectProxy,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url,
                               ca_file=str(certs / "ca.pem")) as c:
            assert drain(c) == "over tls"
        assert proxy.targets == []

    def test_rejected_proxy_credentials_are_not_sent_again(
            self, https_server: t.LocalServer, certs: Path) -> None:
        p = ConnectProxy(require="Basic dXNlcjpwdw==")  # user:pw
        try:
            url = p.url.replace("http://", "http://user:nope@")
            with alltoken.AllToken(api_key="k", base_url=https_server.base_url, proxy=url,
                                   ca_file=str(certs / "ca.pem"), max_retries=2) as c:
                with pytest.raises(alltoken.APIConnectionError, match="407") as info:
                    drain(c)
            assert len(p.targets) == 1 and not info.value.retryable
            assert f"proxy 127.0.0.1:{p.port}" in str(info.value) and "nope" not in str(info.value)
            good = p.url.replace("http://", "http://user:pw@")
            with alltoken.AllToken(api_key="k", base_url=https_server.base_url, proxy=good,
                                   ca_file=str(certs / "ca.pem")) as c:
                assert drain(c) == "over tls"
        finally:
            p.close()
        assert https_server.requests and all(
            "proxy-authorization" not in r.headers for r in https_server.requests)

    def test_an_unknown_certificate_behind_a_proxy_names_both_and_is_not_retried(
            self, https_server: t.LocalServer, proxy: ConnectProxy,
            monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with alltoken.AllToken(api_key="k", base_url=https_server.base_url, proxy=proxy.url,
                               max_retries=2) as c:
            with pytest.raises(alltoken.APIConnectionError, match="certificate") as info:
                drain(c)
        assert not info.value.retryable and len(proxy.targets) == 1
        message = str(info.value)
        assert (f"to 127.0.0.1:{https_server.port} through the proxy 127.0.0.1:{proxy.port}"
                in message)
