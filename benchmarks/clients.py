"""The streaming clients that ``run.py`` measures end to end, behind one interface.

Each :class:`Client` does the same job against the benchmark server (``server.py``):
POST a chat request, iterate the streamed chunks, and read each chunk's
``choices[0].delta.content`` into a list of pieces, the way an application prints tokens.

- ``limit``: the limit row. ``http.client`` (one kept-alive connection) + ``read1`` +
  ``split(b"\\n\\n")`` + ``json.loads`` of each ``data: {...}`` event: no SSE parsing
  (no line handling, no field names, no comments), no objects but the decoded dicts.
- ``alltoken``: ``AllToken(base_url=...).chat.completions.create(stream=True)``, imported
  from the checkout.
- ``openai``: the SDK's ``OpenAI(base_url=...).chat.completions.create(stream=True)``.
- ``httpx-sse``: ``httpx.Client`` + ``httpx_sse.connect_sse(...).iter_sse()`` +
  ``json.loads(sse.data)``.
- ``sseclient-py``: ``requests.Session().post(..., stream=True)`` +
  ``sseclient.SSEClient(response).events()`` (its README's usage) + ``json.loads``.
- ``launchdarkly``: ``ld_eventsource.SSEClient(ConnectStrategy.http(url, pool=...))``
  with ``ErrorStrategy.always_fail()`` (no reconnecting) + ``json.loads``. It can only
  send GET; the server ignores the method.

The peers stop at ``data: [DONE]`` and close the response, as their users do; alltoken
and the limit row read to the end of the body (the cost comment follows ``[DONE]``).

Over TLS (an ``https://`` base URL and ``ca``, the PEM file of the CA that signed the
server's certificate), each client is told to trust that CA its own way, verification on:
the limit row ``HTTPSConnection(context=ssl.create_default_context(cafile=ca))``;
alltoken ``AllToken(ca_file=ca)``; openai ``OpenAI(http_client=DefaultHttpxClient(
verify=context))``; httpx-sse ``httpx.Client(verify=context)`` (httpx deprecates a path
for ``verify=``); sseclient-py ``session.post(..., verify=ca)`` (per request: requests
lets ``REQUESTS_CA_BUNDLE`` override ``Session.verify``); launchdarkly
``urllib3.PoolManager(ca_certs=ca)``.

Also here: the cold-start programs (:data:`COLD`), and the memory probe, run in a fresh
interpreter: ``python clients.py --memory NAME BASE MODE`` prints a JSON line with the
peak RSS after streaming MODE and the bytes of text the client holds at that moment.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if sys.path[:1] != [str(ROOT)]:  # this checkout's alltoken, never an installed one
    sys.path.insert(0, str(ROOT))

MESSAGES = [{"role": "user", "content": "hi"}]
BODY = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}

#: Read timeout given to every client in the abort test: a reader that the abort did not
#: wake returns (or raises) after this many seconds.
ABORT_TIMEOUT = 2.0


class Result:
    """What one streamed answer gave: the text, the JSON chunks read, and the containers
    holding the text at the end (for the memory probe). The text is joined on first use,
    so the memory probe reads the peak RSS before the join."""

    __slots__ = ("_text", "chunks", "held", "parts")

    def __init__(self, parts: list[str], chunks: int, held: tuple[Any, ...] = ()) -> None:
        self.parts = parts
        self.held = (parts, *held)
        self.chunks = chunks
        self._text: Optional[str] = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = "".join(self.parts)
        return self._text


class Aborter:
    """One stream on ``/silent``: ``iterate()`` (run in a reader thread) loops over it;
    ``abort()`` (another thread) is the client's way to stop it."""

    def __init__(self, iterate: Callable[[], None], abort: Callable[[], None],
                 cleanup: Callable[[], None] = lambda: None) -> None:
        self.iterate = iterate
        self.abort = abort
        self.cleanup = cleanup


class Client:
    name = ""
    #: distributions whose versions are reported
    dists: tuple[str, ...] = ()
    #: what the abort test does for this client
    abort_how = ""

    def __init__(self, base: str, ca: Optional[str] = None) -> None:
        self.base = base
        host, _, port = base.split("//")[1].partition(":")
        self.host, self.port = host, int(port)
        self.tls = base.startswith("https:")
        #: the CA file to trust over TLS (None: the system's)
        self.ca = ca

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying context that trusts :attr:`ca`."""
        return ssl.create_default_context(cafile=self.ca)

    def stream(self, mode: str) -> Result:
        raise NotImplementedError

    def first(self, mode: str) -> tuple[int, int]:
        """``(server write ns, client yield ns)`` of the first chunk; then hang up."""
        raise NotImplementedError

    def silent(self, mode: str) -> Aborter:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def version(self) -> str:
        from importlib.metadata import version

        out = []
        for d in self.dists:
            try:
                out.append(f"{d} {version(d)}")
            except Exception:  # informative only
                out.append(d)
        return ", ".join(out)


def _content(obj: dict[str, Any], parts: list[str]) -> None:
    choices = obj.get("choices")
    if choices:
        c = choices[0]["delta"].get("content")
        if c:
            parts.append(c)


# -- the limit row ------------------------------------------------------------------------


class Limit(Client):
    name = "limit"
    abort_how = "sock.shutdown(SHUT_RDWR) from another thread"

    def __init__(self, base: str, ca: Optional[str] = None) -> None:
        super().__init__(base, ca)
        self.context = self.ssl_context() if self.tls else None
        self.conn = self._connection()

    def _connection(self, timeout: Optional[float] = None) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _open(self, mode: str, conn: Optional[http.client.HTTPConnection] = None
              ) -> http.client.HTTPResponse:
        conn = conn or self.conn
        conn.request("POST", f"/{mode}/chat/completions", BODY, JSON_HEADERS)
        return conn.getresponse()

    def stream(self, mode: str) -> Result:
        read1 = self._open(mode).read1
        loads = json.loads
        buf = b""
        parts: list[str] = []
        n = 0
        while True:
            data = read1(65536)
            if not data:
                break
            buf += data
            events = buf.split(b"\n\n")
            buf = events.pop()
            for e in events:
                if e.startswith(b"data: {"):
                    _content(loads(e[6:]), parts)
                    n += 1
        return Result(parts, n)

    def first(self, mode: str) -> tuple[int, int]:
        conn = self._connection()
        try:
            resp = self._open(mode, conn)
            buf = b""
            while b"\n\n" not in buf:
                buf += resp.read1(65536)
            obj = json.loads(buf.split(b"\n\n")[0][6:])
            now = time.monotonic_ns()
            return int(obj["id"]), now
        finally:
            conn.close()

    def silent(self, mode: str) -> Aborter:
        conn = self._connection(ABORT_TIMEOUT)
        resp = self._open(mode, conn)
        sock = conn.sock
        assert sock is not None

        def iterate() -> None:
            while resp.read1(65536):
                pass

        def abort() -> None:
            sock.shutdown(socket.SHUT_RDWR)

        return Aborter(iterate, abort, conn.close)

    def close(self) -> None:
        self.conn.close()


# -- alltoken -----------------------------------------------------------------------------


class AllTokenClient(Client):
    name = "alltoken"
    abort_how = "signal.set() (the signal= argument, a threading.Event)"

    def __init__(self, base: str, ca: Optional[str] = None) -> None:
        super().__init__(base, ca)
        import alltoken

        self.mod = alltoken
        self.clients: dict[str, Any] = {}
        self.tls_options: dict[str, Any] = {"ca_file": ca} if self.tls else {}

    def version(self) -> str:
        return f"alltoken {self.mod.__version__} ({Path(self.mod.__file__).parent})"

    def client(self, mode: str) -> Any:
        c = self.clients.get(mode)
        if c is None:
            c = self.clients[mode] = self.mod.AllToken(api_key="k", base_url=f"{self.base}/{mode}",
                                                       timeout=60.0, **self.tls_options)
        return c

    def stream(self, mode: str) -> Result:
        s = self.client(mode).chat.completions.create(model="m", messages=MESSAGES,
                                                      stream=True)
        parts: list[str] = []
        append = parts.append
        n = 0
        for chunk in s:
            n += 1
            if chunk.choices:
                c = chunk.choices[0].delta.content
                if c:
                    append(c)
        st = s._state
        return Result(parts, n, (st._text, st._reasoning))

    def first(self, mode: str) -> tuple[int, int]:
        with self.client(mode).chat.completions.create(model="m", messages=MESSAGES,
                                                       stream=True) as s:
            chunk = next(iter(s))
            _ = chunk.choices[0].delta.content
            now = time.monotonic_ns()
        return int(chunk.id), now

    def silent(self, mode: str) -> Aborter:
        signal = threading.Event()
        c = self.mod.AllToken(api_key="k", base_url=f"{self.base}/{mode}",
                              timeout=ABORT_TIMEOUT, **self.tls_options)
        s = c.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                      signal=signal)

        def iterate() -> None:
            for _ in s:
                pass

        def cleanup() -> None:
            s.close()
            c.close()

        return Aborter(iterate, signal.set, cleanup)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


# -- openai -------------------------------------------------------------------------------


class OpenAIClient(Client):
    name = "openai"
    dists = ("openai",)
    abort_how = ("no abort API; nearest equivalent: Stream.close() from another thread "
                 "(closes the httpx response)")

    def __init__(self, base: str, ca: Optional[str] = None) -> None:
        super().__init__(base, ca)
        import openai

        self.mod = openai
        self.clients: dict[str, Any] = {}

    def client(self, mode: str, timeout: float = 60.0) -> Any:
        key = f"{mode} {timeout}"
        c = self.clients.get(key)
        if c is None:
            tls: dict[str, Any] = {}
            if self.tls:
                tls["http_client"] = self.mod.DefaultHttpxClient(verify=self.ssl_context(),
                                                                 timeout=timeout)
            c = self.clients[key] = self.mod.OpenAI(api_key="k", base_url=f"{self.base}/{mode}",
                                                    max_retries=0, timeout=timeout, **tls)
        return c

    def stream(self, mode: str) -> Result:
        s = self.client(mode).chat.completions.create(model="m", messages=MESSAGES,
                                                      stream=True)
        parts: list[str] = []
        n = 0
        for chunk in s:
            n += 1
            if chunk.choices:
                c = chunk.choices[0].delta.content
                if c:
                    parts.append(c)
        return Result(parts, n)

    def first(self, mode: str) -> tuple[int, int]:
        s = self.client(mode).chat.completions.create(model="m", messages=MESSAGES,
                                                      stream=True)
        try:
            for chunk in s:
                _ = chunk.choices[0].delta.content
                now = time.monotonic_ns()
                return int(chunk.id), now
            raise RuntimeError("no chunk")
        finally:
            s.close()

    def silent(self, mode: str) -> Aborter:
        s = self.client(mode, ABORT_TIMEOUT).chat.completions.create(
            model="m", messages=MESSAGES, stream=True)

        def iterate() -> None:
            for _ in s:
                pass

        return Aborter(iterate, s.close, s.close)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


# -- httpx + httpx-sse --------------------------------------------------------------------


class HttpxSSEClient(Client):
    name = "httpx-sse"
    dists = ("httpx", "httpx-sse")
    abort_how = ("no abort API; nearest equivalent: EventSource.response.close() from "
                 "another thread")

    def __init__(self, base: str, ca: Optional[str] = None) -> None:
        super().__init__(base, ca)
        import httpx
        from httpx_sse import connect_sse

        self.connect_sse = connect_sse
        tls: dict[str, Any] = {"verify": self.ssl_context()} if self.tls else {}
        self.client = httpx.Client(timeout=60.0, **tls)
        self.abort_client = httpx.Client(timeout=ABORT_TIMEOUT, **tls)

    def stream(self, mode: str) -> Result:
        parts: list[str] = []
        n = 0
        loads = json.loads
        with self.connect_sse(self.client, "POST", f"{self.base}/{mode}/chat/completions",
                              content=BODY, headers=JSON_HEADERS) as es:
            for sse in es.iter_sse():
                if sse.data == "[DONE]":
                    break
                _content(loads(sse.data), parts)
                n += 1
        return Result(parts, n)

    def first(self, mode: str) -> tuple[int, int]:
        with self.connect_sse(self.client, "POST", f"{self.base}/{mode}/chat/completions",
                              content=BODY, headers=JSON_HEADERS) as es:
            for sse in es.iter_sse():
                obj = json.loads(sse.data)
                _ = obj["choices"][0]["delta"]["content"]
                now = time.monotonic_ns()
                return int(obj["id"]), now
        raise RuntimeError("no chunk")

    def silent(self, mode: str) -> Aborter:
        cm = self.connect_sse(self.abort_client, "POST",
                              f"{self.base}/{mode}/chat/completions", content=BODY,
                              headers=JSON_HEADERS)
        es = cm.__enter__()

        def iterate() -> None:
            for _ in es.iter_sse():
                pass

        def cleanup() -> None:
            cm.__exit__(None, None, None)

        return Aborter(iterate, es.response.close, cleanup)

    def close(self) -> None:
        self.client.close()
        self.abort_client.close()


# -- requests + sseclient-py --------------------------------------------------------------


class RequestsSSEClient(Client):
    name = "sseclient-py"
    dists = ("requests", "sseclient-py")
    abort_how = ("no abort API; nearest equivalent: SSEClient.close() (= the requests "
                 "response's close()) from another thread")

    def __init__(self, base: str, ca: Optional[str] = None) -> None:
        super().__init__(base, ca)
        import requests
        import sseclient

        self.sseclient = sseclient
        self.session = requests.Session()
        # Per request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override
        # Session.verify, not a request's verify=.
        self.options: dict[str, Any] = {"verify": ca} if self.tls and ca is not None else {}

    def _post(self, mode: str, timeout: float = 60.0) -> Any:
        r = self.session.post(f"{self.base}/{mode}/chat/completions", data=BODY,
                              headers=JSON_HEADERS, stream=True, timeout=timeout,
                              **self.options)
        r.raise_for_status()
        return r

    def stream(self, mode: str) -> Result:
        parts: list[str] = []
        n = 0
        loads = json.loads
        with self._post(mode) as r:
            for ev in self.sseclient.SSEClient(r).events():
                if ev.data == "[DONE]":
                    break
                _content(loads(ev.data), parts)
                n += 1
        return Result(parts, n)

    def first(self, mode: str) -> tuple[int, int]:
        with self._post(mode) as r:
            for ev in self.sseclient.SSEClient(r).events():
                obj = json.loads(ev.data)
                _ = obj["choices"][0]["delta"]["content"]
                now = time.monotonic_ns()
                return int(obj["id"]), now
        raise RuntimeError("no chunk")

    def silent(self, mode: str) -> Aborter:
        r = self._post(mode, ABORT_TIMEOUT)
        client = self.sseclient.SSEClient(r)

        def iterate() -> None:
            for _ in client.events():
                pass

        return Aborter(iterate, client.close, r.close)

    def close(self) -> None:
        self.session.close()


# -- launchdarkly-eventsource ---------------------------------------------------------------


class LaunchDarklyClient(Client):
    name = "launchdarkly"
    dists = ("launchdarkly-eventsource",)
    abort_how = "SSEClient.close() from another thread (resp.shutdown(), then close)"

    def __init__(self, base: str, ca: Optional[str] = None) -> None:
        super().__init__(base, ca)
        import urllib3
        from ld_eventsource import SSEClient
        from ld_eventsource.config import ConnectStrategy, ErrorStrategy

        self.SSEClient, self.ConnectStrategy, self.ErrorStrategy = (
            SSEClient, ConnectStrategy, ErrorStrategy)
        self.pool = urllib3.PoolManager(ca_certs=ca) if self.tls else urllib3.PoolManager()

    def _client(self, mode: str, timeout: float = 60.0) -> Any:
        connect = self.ConnectStrategy.http(
            f"{self.base}/{mode}/chat/completions", headers=dict(JSON_HEADERS), pool=self.pool,
            urllib3_request_options={"body": BODY, "timeout": timeout})
        return self.SSEClient(connect, error_strategy=self.ErrorStrategy.always_fail())

    def stream(self, mode: str) -> Result:
        parts: list[str] = []
        n = 0
        loads = json.loads
        with self._client(mode) as client:
            for ev in client.events:
                if ev.data == "[DONE]":
                    break
                _content(loads(ev.data), parts)
                n += 1
        return Result(parts, n)

    def first(self, mode: str) -> tuple[int, int]:
        with self._client(mode) as client:
            for ev in client.events:
                obj = json.loads(ev.data)
                _ = obj["choices"][0]["delta"]["content"]
                now = time.monotonic_ns()
                return int(obj["id"]), now
        raise RuntimeError("no chunk")

    def silent(self, mode: str) -> Aborter:
        client = self._client(mode, ABORT_TIMEOUT)
        client.start()  # connect now: the reader thread then only reads

        def iterate() -> None:
            for _ in client.events:
                pass

        return Aborter(iterate, client.close, client.close)

    def close(self) -> None:
        self.pool.clear()


#: Every client, the limit row first; a peer that does not import is left out by
#: :func:`make_clients`.
CLIENTS: dict[str, type[Client]] = {
    c.name: c for c in (Limit, AllTokenClient, OpenAIClient, HttpxSSEClient,
                        RequestsSSEClient, LaunchDarklyClient)
}


def make_clients(base: str, names: Optional[list[str]] = None, ca: Optional[str] = None
                 ) -> tuple[list[Client], dict[str, str]]:
    """The clients that can be built here, and why each other one cannot; *ca*: the CA
    file every client trusts over TLS (an ``https://`` *base*)."""
    made: list[Client] = []
    missing: dict[str, str] = {}
    for name, cls in CLIENTS.items():
        if names is not None and name not in names:
            continue
        try:
            made.append(cls(base, ca))
        except Exception as exc:  # an absent peer is reported, not fatal
            missing[name] = f"{type(exc).__name__}: {exc}"[:120]
    return made, missing


def expected_text(n: int) -> tuple[str, int]:
    """The content a correct client reads from the ``n``-chunk chat corpus, and the number
    of JSON chunks in it (the truth, from the generator)."""
    import corpus

    parts: list[str] = []
    events = corpus.chat_events(n)
    for e in events:
        _content(json.loads(e), parts)
    return "".join(parts), len(events)


# -- cold start ---------------------------------------------------------------------------

#: The cold-start floor: the standard-library modules a client of alltoken's contract
#: needs (HTTP, JSON, TLS on by default, a ``threading.Event`` abort signal, dataclass
#: events), imported by a fresh interpreter.
FLOOR = "import http.client, json, ssl, threading, dataclasses"

#: Ends an import-only program as soon as its import returns: what follows, the
#: interpreter's exit (a garbage collection of every module's objects), is not importing,
#: and nobody waits for it (a Lambda or a server never exits between requests).
AT_IMPORT_END = "\nimport os; os._exit(0)"

#: A fresh interpreter runs each of these with ``-c``; ``{url}`` is the base URL of
#: ``/short`` and ``{text}`` the content it must read. ``floor`` and ``alltoken import``
#: only import, and end there; the ``(exit included)`` pair is the same imports with a
#: normal exit; the others (one per client) import and stream one short answer, exit
#: included.
COLD: dict[str, str] = {
    "floor": FLOOR + AT_IMPORT_END,
    "alltoken import": "import alltoken" + AT_IMPORT_END,
    "floor (exit included)": FLOOR,
    "alltoken import (exit included)": "import alltoken",
    "limit": (
        "import http.client, json\n"
        "c = http.client.HTTPConnection({host!r}, {port})\n"
        "c.request('POST', '/short/chat/completions', b'{{}}', "
        "{{'Content-Type': 'application/json'}})\n"
        "parts = []\n"
        "for e in c.getresponse().read().split(b'\\n\\n'):\n"
        "    if e.startswith(b'data: {{'):\n"
        "        ch = json.loads(e[6:])['choices']\n"
        "        if ch and ch[0]['delta'].get('content'):\n"
        "            parts.append(ch[0]['delta']['content'])\n"
        "assert ''.join(parts) == {text!r}\n"),
    "alltoken": (
        "import alltoken\n"
        "s = alltoken.stream('hi', model='m', api_key='k', base_url={url!r})\n"
        "assert ''.join(s) == {text!r}\n"),
    "openai": (
        "import openai\n"
        "c = openai.OpenAI(api_key='k', base_url={url!r}, max_retries=0)\n"
        "s = c.chat.completions.create(model='m', messages=[{{'role': 'user', "
        "'content': 'hi'}}], stream=True)\n"
        "assert ''.join(ch.choices[0].delta.content or '' for ch in s if ch.choices) "
        "== {text!r}\n"),
    "httpx-sse": (
        "import json, httpx\n"
        "from httpx_sse import connect_sse\n"
        "parts = []\n"
        "with httpx.Client() as c, connect_sse(c, 'POST', {url!r} + '/chat/completions', "
        "json={{'model': 'm', 'stream': True}}) as es:\n"
        "    for sse in es.iter_sse():\n"
        "        if sse.data == '[DONE]':\n"
        "            break\n"
        "        ch = json.loads(sse.data)['choices']\n"
        "        if ch and ch[0]['delta'].get('content'):\n"
        "            parts.append(ch[0]['delta']['content'])\n"
        "assert ''.join(parts) == {text!r}\n"),
    "sseclient-py": (
        "import json, requests, sseclient\n"
        "parts = []\n"
        "r = requests.post({url!r} + '/chat/completions', json={{'model': 'm'}}, "
        "stream=True)\n"
        "for ev in sseclient.SSEClient(r).events():\n"
        "    if ev.data == '[DONE]':\n"
        "        break\n"
        "    ch = json.loads(ev.data)['choices']\n"
        "    if ch and ch[0]['delta'].get('content'):\n"
        "        parts.append(ch[0]['delta']['content'])\n"
        "r.close()\n"
        "assert ''.join(parts) == {text!r}\n"),
    "launchdarkly": (
        "import json\n"
        "from ld_eventsource import SSEClient\n"
        "from ld_eventsource.config import ConnectStrategy, ErrorStrategy\n"
        "parts = []\n"
        "with SSEClient(ConnectStrategy.http({url!r} + '/chat/completions'), "
        "error_strategy=ErrorStrategy.always_fail()) as c:\n"
        "    for ev in c.events:\n"
        "        if ev.data == '[DONE]':\n"
        "            break\n"
        "        ch = json.loads(ev.data)['choices']\n"
        "        if ch and ch[0]['delta'].get('content'):\n"
        "            parts.append(ch[0]['delta']['content'])\n"
        "assert ''.join(parts) == {text!r}\n"),
}


# -- memory probe -------------------------------------------------------------------------


def _rounded(n: int) -> int:
    return (n + 15) & ~15  # pymalloc's 16-byte size classes


def held_bytes(containers: tuple[Any, ...]) -> int:
    """Bytes of the lists in *containers* and of the distinct objects in them."""
    seen: set[int] = set()
    total = 0
    for c in containers:
        total += _rounded(sys.getsizeof(c))
        for x in c:
            if id(x) not in seen:
                seen.add(id(x))
                total += _rounded(sys.getsizeof(x))
    return total


def _hwm_kb() -> int:
    """Peak RSS in KiB: VmHWM of /proc/self/status. (``ru_maxrss`` is the fallback only:
    on Linux a child started by fork and exec inherits its parent's, so a small child of a
    big parent reports the parent's peak.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory_probe(name: str, base: str, mode: str) -> dict[str, Any]:
    """Stream *mode* with client *name* in this (fresh) interpreter: the peak RSS before and
    after, and what the client holds at the end (measured before the text is joined)."""
    client = CLIENTS[name](base)
    client.stream("short")  # every import and the first connection done
    before = _hwm_kb()
    r = client.stream(mode)
    peak = _hwm_kb()
    held = held_bytes(r.held)
    return {"client": name, "mode": mode, "hwm_before_kb": before, "hwm_kb": peak,
            "held_bytes": held, "chunks": r.chunks, "text_chars": len(r.text),
            "text_bytes": _rounded(sys.getsizeof(r.text)),
            "sha256": hashlib.sha256(r.text.encode()).hexdigest()}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--memory":
        print(json.dumps(memory_probe(*sys.argv[2:5])))
    else:
        print("usage: clients.py --memory NAME BASE MODE", file=sys.stderr)
        sys.exit(2)
