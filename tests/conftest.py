"""Shared test configuration: hypothesis profiles, the local server and client fixtures,
a clean proxy environment, and the thread/descriptor snapshot.

``CI=true`` selects the ``ci`` hypothesis profile: derandomized (a CI failure
reproduces), with a bounded number of examples so the suite stays well inside CI's time
on 2 cores.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, settings

import alltoken
from alltoken import testing as t
from alltoken._transport import Deadlines

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

#: The key the shared client sends; tests check it never shows in a message or a log.
KEY = "sk-test-5ecret-k3y-do-not-print"

#: Variables that would route a test's requests through a developer's proxy.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ``HTTP_PROXY`` must not route the client tests (tests that test the
    proxy variables set them themselves)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def server() -> Iterator[t.LocalServer]:
    """The local server, answering at once (``pace=0``)."""
    with t.LocalServer(pace=0) as srv:
        yield srv


@pytest.fixture
def client(server: t.LocalServer) -> Iterator[alltoken.AllToken]:
    """A client of :func:`server` with a 5 s timeout."""
    with alltoken.AllToken(api_key=KEY, base_url=server.base_url, timeout=5.0) as c:
        yield c


class Resources(NamedTuple):
    """The threads and open file descriptors of this process at one moment."""

    threads: frozenset[threading.Thread]
    fds: frozenset[str]


def _fd_dir() -> str:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return path
    return ""


def snapshot() -> Resources:
    """Threads and descriptors now (after a garbage collection). Skips the calling test
    where this platform cannot list its descriptors."""
    fd_dir = _fd_dir()
    if not fd_dir:
        pytest.skip("this platform cannot list open file descriptors (/proc/self/fd)")
    gc.collect()
    return Resources(frozenset(threading.enumerate()), frozenset(os.listdir(fd_dir)))


def assert_back_to(baseline: Resources, grace: float = 2.0) -> None:
    """Threads and descriptors return to *baseline* (allowing *grace* s for stragglers)."""
    deadline = time.monotonic() + grace
    while True:
        now = snapshot()
        if now == baseline or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert now.threads == baseline.threads, f"threads leaked: {now.threads - baseline.threads}"
    assert now.fds == baseline.fds, (
        f"file descriptors leaked: {sorted(now.fds - baseline.fds)}, "
        f"gone: {sorted(baseline.fds - now.fds)}")


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record retry backoff waits instead of sleeping them (an abort still raises)."""
    recorded: list[float] = []

    def wait(self: Deadlines, seconds: float) -> None:
        self.check_abort()
        recorded.append(seconds)

    monkeypatch.setattr(Deadlines, "wait", wait)
    return recorded


def wait_closed(server: t.LocalServer, timeout: float = 5.0) -> None:
    """Wait until *server* has no open connection (the client closed its socket)."""
    deadline = time.monotonic() + timeout
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_connections == 0


def _certs_module() -> Any:
    """``benchmarks/certs.py``, loaded by its path (``benchmarks`` is no package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "certs.py"
    spec = importlib.util.spec_from_file_location("_alltoken_benchmark_certs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA (``ca.pem``) and a certificate for 127.0.0.1 signed by it
    (``leaf.pem``, ``leaf.key``), made with the openssl command (skips without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("certs")
    _certs_module().with_openssl(d)  # the one recipe, shared with the benchmarks
    return d


@pytest.fixture
def https_server(certs: Path) -> Iterator[t.LocalServer]:
    """The local server over TLS with the certificate of :func:`certs`."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "leaf.pem", certs / "leaf.key")
    with t.LocalServer(pace=0, ssl_context=ctx) as srv:
        yield srv
