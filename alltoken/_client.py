"""The client: ``AllToken``, ``chat.completions.create``, ``Stream`` and ``stream()``.

Layer 3. Uses everything below it (``sse``, ``_types``, ``_retry``, ``_transport``,
``_errors``); nothing below imports it.

Stream lifecycle
----------------
``create(stream=True)`` builds the request, then runs the retry loop of
:meth:`_Request.open`: connect (or reuse an idle pooled connection), send, and wait for
the status line and headers. A non-2xx status is read into an ``APIStatusError`` and
retried when the policy says so; the ``Stream`` is returned only for a 2xx
``text/event-stream`` response, so HTTP errors surface from ``create()``.

Iterating the ``Stream`` runs one generator: ``read1`` on the response (bytes as they
arrive) -> ``SSEDecoder.feed`` -> ``parse_chunk`` -> accumulate -> ``yield``. Before the
first chunk is yielded, a retryable failure (an in-stream error event, a dropped
connection) re-opens the request under the same retry budget; after it, nothing is
retried, because a token must never be handed to the caller twice. ``data: [DONE]`` ends
the chunks, but the body is read to its end for the cost comment that may follow.

Every ending goes through the generator's ``finally``: a body read to its end returns the
connection to the client's pool, anything else (break, ``close()``, error, abort, garbage
collection) closes the socket. Accumulated state is updated before each chunk is
yielded and before any error is raised, so it always holds what was received.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from http.client import HTTPException
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Final,
    Literal,
    Optional,
    TypeVar,
    Union,
    cast,
    overload,
)
from urllib.parse import urljoin, urlsplit

from . import _log, _retry
from ._errors import (
    AbortedError,
    AllTokenError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ProtocolError,
    excerpt,
    status_error,
)
from ._transport import (
    READ_SIZE,
    Deadlines,
    Endpoint,
    Pool,
    Proxy,
    Timeout,
    check_header,
    map_exception,
    proxy_for,
    translate,
)
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    Cost,
    ErrorInfo,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
    parse_chunk,
    parse_cost,
    parse_error_body,
)
from ._version import __version__
from .sse import Comment, Item, ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    import http.client
    from ssl import SSLContext

    from ._transport import _Connection
else:
    # ssl is imported only when an https request is made (a tenth of a cold start); at
    # run time the annotation resolves to Any, so typing.get_type_hints works.
    SSLContext = Any

__all__ = ["DEFAULT_BASE_URL", "AllToken", "Stream", "TextStream", "stream"]

DEFAULT_BASE_URL: Final = "https://api.alltoken.ai/v1"
#: How much of an error response's body is read (a proxy's HTML page can be large).
MAX_ERROR_BODY: Final = 64 * 1024
#: Same-origin 307/308 redirects followed for one request.
MAX_REDIRECTS: Final = 5
#: The largest non-streamed JSON answer accepted.
MAX_JSON_BODY: Final = 64 * 1024 * 1024

_USER_AGENT: Final = "alltoken/{} Python/{}.{}.{}".format(__version__, *sys.version_info[:3])

#: In-stream errors without a numeric ``code`` map by ``type`` (OpenAI's names).
_STATUS_BY_TYPE: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
}

ApiKey = Union[str, Callable[[], str], None]
Messages = Sequence[Mapping[str, Any]]


def _validate_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"the API key must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError("the API key is empty")
    if "\r" in key or "\n" in key or "\x00" in key:
        raise ValueError("the API key must not contain CR, LF or NUL characters")
    return key


def _parse_base_url(url: str) -> tuple[str, str, int, str]:
    if not isinstance(url, str):
        raise TypeError(f"base_url must be a str, got {type(url).__name__}")
    if any(c in url for c in "\r\n\x00\t "):
        raise ValueError(f"base_url must not contain whitespace or NUL characters: {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"base_url has no host: {url!r}")
    if parts.username or parts.password:
        raise ValueError("base_url must not contain credentials; use api_key")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not have a query or fragment: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


class AllToken:
    """A client for the AllToken chat-completions API. Safe to share between threads.

    Args:
        api_key: The key, or a zero-argument callable returning it (called for each
            request, and once more after a 401 to refresh it). Defaults to the
            ``ALLTOKEN_API_KEY`` environment variable. A missing key raises
            ``ValueError`` when a request is made.
        base_url: Defaults to ``ALLTOKEN_BASE_URL``, else ``https://api.alltoken.ai/v1``.
        default_headers: Extra headers sent with every request.
        timeout: Seconds for connect and read, or an :class:`alltoken.Timeout`.
        max_retries: How many times a retryable failure is retried.
        proxy: An ``http://host:port`` proxy URL; ``False`` to ignore the environment's
            ``HTTPS_PROXY``/``HTTP_PROXY`` (used by default, with ``NO_PROXY``).
        verify: ``False`` turns TLS certificate verification off (explicitly insecure).
        ca_file: A PEM file of CA certificates to trust instead of the system's.
        ssl_context: A ready ``ssl.SSLContext`` (overrides ``verify`` and ``ca_file``).
    """

    def __init__(
        self,
        *,
        api_key: ApiKey = None,
        base_url: Optional[str] = None,
        default_headers: Optional[Mapping[str, str]] = None,
        timeout: Union[float, Timeout] = 60.0,
        max_retries: int = 2,
        proxy: Union[str, Proxy, bool, None] = None,
        verify: bool = True,
        ca_file: Optional[str] = None,
        ssl_context: Optional[SSLContext] = None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("ALLTOKEN_API_KEY") or None
        if api_key is not None and not callable(api_key):
            _validate_key(api_key)
        self._api_key = api_key
        self.base_url = (base_url or os.environ.get("ALLTOKEN_BASE_URL") or DEFAULT_BASE_URL)
        scheme, host, port, prefix = _parse_base_url(self.base_url)
        self.timeout = Timeout.coerce(timeout)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative int, got {max_retries!r}")
        self.max_retries = max_retries
        self.default_headers = _check_headers(default_headers, "default_headers")
        if not isinstance(verify, bool):
            raise TypeError("verify must be True or False (use ca_file= for a CA bundle)")
        self._verify = verify
        self._ca_file = ca_file
        self._ssl_context = ssl_context
        if scheme == "https" and ssl_context is None:
            try:
                import ssl  # noqa: F401 - needed for the first request anyway
            except ImportError:
                raise APIConnectionError(
                    f"{self.base_url} needs TLS, but this Python was built without the "
                    "ssl module (OpenSSL); use a Python with ssl, or an http:// base_url "
                    "such as a local TLS-terminating proxy", retryable=False) from None
        self._endpoint = Endpoint(scheme, host, port, prefix, proxy_for(scheme, host, port, proxy))
        self._pool = Pool()
        self._rng: Optional[Callable[[], float]] = None

    @property
    def chat(self) -> _Chat:
        """``client.chat.completions.create(...)``. (A property, not an attribute, so the
        client holds no reference cycle and is freed, with its pool, when dropped.)"""
        return _Chat(self)

    def __repr__(self) -> str:
        key = "callable" if callable(self._api_key) else ("set" if self._api_key else "missing")
        return f"AllToken(base_url={self.base_url!r}, api_key=<{key}>)"

    def close(self) -> None:
        """Close idle pooled connections. Streams still open keep their own."""
        self._pool.close()
        self._pool.reopen()

    def __enter__(self) -> AllToken:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _random(self) -> Callable[[], float]:
        """The jitter source, made on first use (``random`` is not needed to start)."""
        if self._rng is None:
            import random

            self._rng = random.Random().random
        return self._rng

    def _key(self) -> str:
        key = self._api_key
        if key is None:
            raise ValueError(
                "no API key: pass api_key= to AllToken() or set ALLTOKEN_API_KEY"
            )
        if callable(key):
            return _validate_key(key())
        return key

    def _endpoint_for_request(self) -> Endpoint:
        ep = self._endpoint
        if ep.scheme == "https" and ep.ssl_context is None:
            ep = Endpoint(ep.scheme, ep.host, ep.port, ep.prefix, ep.proxy, self._tls_context())
            self._endpoint = ep
        return ep

    def _tls_context(self) -> SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        import ssl

        # create_default_context loads the system's CAs and honours SSL_CERT_FILE.
        ctx = ssl.create_default_context(cafile=self._ca_file)
        if not self._verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _check_headers(headers: Optional[Mapping[str, str]], what: str) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{what} must be a mapping of str to str")
    out = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{what} names and values must be str, got {name!r}")
        if not name or any(c in name for c in ' \t:\r\n\x00"(),/;<=>?@[\\]{}'):
            raise ValueError(f"{what}: invalid header name {name!r}")
        check_header(f"{what}[{name!r}]", value)
        out[name] = value
    return out


class _Chat:
    def __init__(self, client: AllToken) -> None:
        self.completions = _Completions(client)


class _Completions:
    def __init__(self, client: AllToken) -> None:
        self._client = client

    @overload
    def create(self, *, model: str, messages: Messages, stream: Literal[True],
               signal: Any = ..., timeout: Union[float, Timeout, None] = ...,
               extra_headers: Optional[Mapping[str, str]] = ..., **params: Any) -> Stream: ...

    @overload
    def create(self, *, model: str, messages: Messages, stream: Literal[False] = ...,
               signal: Any = ..., timeout: Union[float, Timeout, None] = ...,
               extra_headers: Optional[Mapping[str, str]] = ...,
               **params: Any) -> ChatCompletion: ...

    @overload
    def create(self, *, model: str, messages: Messages, stream: bool,
               signal: Any = ..., timeout: Union[float, Timeout, None] = ...,
               extra_headers: Optional[Mapping[str, str]] = ...,
               **params: Any) -> Union[Stream, ChatCompletion]: ...

    def create(
        self,
        *,
        model: str,
        messages: Messages,
        stream: bool = False,
        signal: Any = None,
        timeout: Union[float, Timeout, None] = None,
        extra_headers: Optional[Mapping[str, str]] = None,
        **params: Any,
    ) -> Union[Stream, ChatCompletion]:
        """Create a chat completion.

        Args:
            model: The model id, e.g. ``"deepseek-reasoner"``.
            messages: The conversation, OpenAI-shaped (``{"role": ..., "content": ...}``).
            stream: ``True`` returns a :class:`Stream` of chunks; else the whole answer.
            signal: A ``threading.Event``; setting it aborts the request promptly.
            timeout: Overrides the client's timeout for this request.
            extra_headers: Merged over the client's ``default_headers``.
            **params: Every other body field (``temperature``, ``tools``, ...), sent as is.

        Returns:
            A :class:`Stream` (``stream=True``) or a ``ChatCompletion``.

        Raises:
            APIStatusError: the server answered with an error status (after retries).
            APIConnectionError: the network failed (``APITimeoutError`` for timeouts).
            ProtocolError: the response was not what the protocol promises.
            AbortedError: *signal* was set.
            ValueError, TypeError: an argument is wrong (no key, CR/LF in a header, ...).
        """
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty str")
        check_header("model", model)
        given: object = messages
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
            raise TypeError("messages must be a list of message dicts")
        if signal is not None and not callable(getattr(signal, "is_set", None)):
            raise TypeError("signal must be a threading.Event (or have is_set())")
        body = {"model": model, "messages": list(messages), "stream": bool(stream), **params}
        client = self._client
        req = _Request(
            client,
            body,
            stream=bool(stream),
            timeout=client.timeout if timeout is None else Timeout.coerce(timeout),
            signal=signal,
            extra_headers=_check_headers(extra_headers, "extra_headers"),
        )
        if not stream:
            try:
                return req.complete()
            finally:
                req.deadlines.release_signal()
        try:
            return Stream(req)
        except BaseException:
            req.deadlines.release_signal()
            raise


class _Request:
    """One logical request: its body, clocks and retry budget, across attempts."""

    def __init__(self, client: AllToken, body: dict[str, Any], *, stream: bool,
                 timeout: Timeout, signal: Any, extra_headers: dict[str, str]) -> None:
        self.client = client
        self.deadlines = Deadlines(timeout, signal)
        self.started = time.monotonic()
        self.stream = stream
        self.retries = 0
        self.redirects = 0
        self.refreshed = False
        self.request_id: Optional[str] = None
        try:
            self.payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the request body is not JSON-serialisable: {exc}") from None
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        }
        headers.update(client.default_headers)
        headers.update(extra_headers)
        self.headers = headers
        self.endpoint = client._endpoint_for_request()
        self.path = self.endpoint.prefix + "/chat/completions"
        self.url = f"{self.endpoint.scheme}://{self.endpoint.host}:{self.endpoint.port}{self.path}"
        self.key = client._key()

    def _target(self) -> str:
        ep = self.endpoint
        if ep.proxy is not None and ep.scheme == "http":
            return self.url  # absolute-form through a plain HTTP proxy
        return self.path

    def _exchange(self) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send the request once; a stale pooled connection is replaced once, silently."""
        dl = self.deadlines
        headers = dict(self.headers)
        headers["Authorization"] = "Bearer " + self.key
        for _ in range(2):
            dl.start_attempt()
            conn, reused = self.client._pool.get(self.endpoint, dl)
            try:
                if conn.sock is None:
                    with translate("connect", dl):
                        conn.connect()
                with translate("send", dl):
                    conn.request("POST", self._target(), self.payload, headers)
                with translate("response", dl):
                    resp = conn.getresponse()
            except AbortedError:
                conn.close()
                raise
            except APIConnectionError as exc:
                conn.close()
                if reused and not isinstance(exc, APITimeoutError):
                    _log.debug("idle connection was closed by the server; reconnecting")
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            return conn, resp
        raise AssertionError("unreachable")  # pragma: no cover

    def open(self) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send the request until a 2xx response arrives, retrying per the policy."""
        dl = self.deadlines
        while True:
            dl.check_abort()
            debug = _log.debug_enabled()
            if debug:
                _log.debug("POST %s (attempt %d)", self.url, self.retries + 1)
            try:
                conn, resp = self._exchange()
            except APIConnectionError as exc:
                self.backoff(exc, None)
                continue
            self.request_id = resp.getheader("x-request-id")
            if debug:
                _log.debug("HTTP %d, request_id=%s, first byte after %.1f ms", resp.status,
                             self.request_id, (time.monotonic() - self.started) * 1000)
            if 200 <= resp.status < 300:
                return conn, resp
            if resp.status in (307, 308):
                location = resp.getheader("location")
                conn.close()
                self._redirect(resp.status, location)
                continue
            err, retry_after = self._status_error(conn, resp)
            if self.refresh(err):
                continue
            self.backoff(err, retry_after)

    def _redirect(self, status: int, location: Optional[str]) -> None:
        """Follow a 307/308 to *location* on the same origin, or raise.

        Only these two keep the method and body (RFC 9110 15.4.8-9); and only the same
        scheme, host and port, so the API key is never sent anywhere else.
        """
        ep = self.endpoint
        why = ""
        same = False
        try:
            if not location:
                why = "the response has no Location"
            else:
                check_header("redirect location", location)
                if not location.isascii():
                    raise ValueError("not ASCII")
                target = urlsplit(urljoin(self.url, location))
                port = target.port or (443 if target.scheme == "https" else 80)
                same = (target.scheme, (target.hostname or "").lower(), port) == (
                    ep.scheme, ep.host.lower(), ep.port)
        except ValueError:
            why = "the Location is malformed"
        if not why and not same:
            why = ("only same-origin redirects are followed, so the API key is never sent "
                   "to another host")
        if not why and self.redirects >= MAX_REDIRECTS:
            why = "too many redirects"
        if why:
            raise APIStatusError(f"HTTP {status} redirect to {excerpt(location or '')} not "
                                 f"followed: {why}", status_code=status,
                                 request_id=self.request_id, retryable=False)
        self.redirects += 1
        self.path = target.path + (f"?{target.query}" if target.query else "")
        self.url = f"{ep.scheme}://{ep.host}:{ep.port}{self.path}"
        _log.debug("following HTTP %d redirect to %s", status, self.url)

    def refresh(self, err: AllTokenError) -> bool:
        """After a 401, call a callable key once more; True if the request should retry."""
        if (isinstance(err, APIStatusError) and err.status_code == 401
                and callable(self.client._api_key) and not self.refreshed):
            self.refreshed = True
            _log.warning("401 from the server: refreshing the API key and retrying once")
            self.key = self.client._key()
            return True
        return False

    def backoff(self, err: AllTokenError, retry_after: Optional[float]) -> None:
        """Wait before the next attempt, or raise *err* if it may not be retried."""
        if not err.retryable or self.retries >= self.client.max_retries:
            raise err
        delay = _retry.retry_delay(self.retries + 1, retry_after, rng=self.client._random())
        if delay is None:
            raise err  # the server asked for a longer wait than we sleep
        remaining = self.deadlines.remaining_total()
        if remaining is not None and delay >= remaining:
            raise err
        self.retries += 1
        _log.warning("retrying in %.2f s (retry %d of %d) after: %s", delay, self.retries,
                       self.client.max_retries, err)
        self.deadlines.wait(delay)

    def _status_error(self, conn: _Connection,
                      resp: http.client.HTTPResponse) -> tuple[APIStatusError, Optional[float]]:
        status = resp.status
        ctype = resp.getheader("content-type")
        retry_after = _retry.parse_retry_after(_Headers(resp), time.time())
        try:
            with translate("response", self.deadlines, self.request_id):
                body = resp.read(MAX_ERROR_BODY)
        except AbortedError:
            raise
        except AllTokenError:
            body = b""
        finally:
            conn.close()
        return self._error_from_body(status, body, ctype, retry_after), retry_after

    def _error_from_body(self, status: int, body: bytes, ctype: Optional[str],
                         retry_after: Optional[float]) -> APIStatusError:
        info = parse_error_body(body, ctype)
        if info is not None:
            return status_error(status, info.message, type=info.type, code=info.code,
                                body=info.raw, request_id=self.request_id,
                                retry_after=retry_after)
        text = body.decode("utf-8", "replace").strip()
        message = f"HTTP {status}: " + (excerpt(text) if text else "(empty body)")
        return status_error(status, message, body=text, request_id=self.request_id,
                            retry_after=retry_after)

    def event_error(self, info: ErrorInfo) -> APIStatusError:
        """The error for an in-stream ``{"error": ...}`` event."""
        code = info.code
        status: Optional[int] = None
        if isinstance(code, int) and not isinstance(code, bool):
            status = code
        elif isinstance(code, str) and code.isdigit() and code.isascii() and len(code) == 3:
            status = int(code)
        if status is None or not 100 <= status <= 599:
            status = _STATUS_BY_TYPE.get(info.type or "", 500)
        return status_error(status, info.message, type=info.type, code=code, body=info.raw,
                            request_id=self.request_id)

    def complete(self) -> ChatCompletion:
        """Run a non-streamed request and return the parsed answer."""
        while True:
            conn, resp = self.open()
            try:
                with translate("response", self.deadlines, self.request_id):
                    body = resp.read(MAX_JSON_BODY + 1)
            except AllTokenError as err:
                conn.close()
                self.backoff(err, None)
                continue
            if len(body) > MAX_JSON_BODY:
                conn.close()
                raise ProtocolError(f"the response is larger than {MAX_JSON_BODY} bytes",
                                    request_id=self.request_id)
            _release(self.client, conn, resp)
            try:
                obj = json.loads(body)
            except ValueError:
                raise ProtocolError(
                    f"expected a JSON chat completion, got {excerpt(body)}",
                    request_id=self.request_id) from None
            if isinstance(obj, dict) and "error" in obj:
                info = parse_error_body(body, "application/json")
                if info is not None:
                    error = self.event_error(info)
                    if self.refresh(error):
                        continue
                    self.backoff(error, None)
                    continue
            try:
                return ChatCompletion.from_json(obj)
            except ProtocolError as exc:
                exc.request_id = self.request_id
                raise


class _Headers(Mapping[str, str]):
    """Lower-cased view of a response's headers for the retry policy."""

    def __init__(self, resp: http.client.HTTPResponse) -> None:
        self._h = {k.lower(): v for k, v in resp.getheaders()}

    def __getitem__(self, key: str) -> str:
        return self._h[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._h)

    def __len__(self) -> int:
        return len(self._h)


def _release(client: AllToken, conn: _Connection, resp: http.client.HTTPResponse) -> None:
    """Pool *conn* if its response was read to the end and it may be kept; else close it."""
    if resp.isclosed() and not resp.will_close and conn.sock is not None:
        client._pool.put(conn)
    else:
        conn.close()


class _ToolCallBuilder:
    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = "function"
        self.name = ""
        self.arguments: list[str] = []


class _StreamState:
    """The accumulated state and the read loop of a :class:`Stream`.

    Kept apart from ``Stream`` so the read-loop generator references this object and not
    the ``Stream``: without a reference cycle a dropped ``Stream`` is freed (and its
    socket closed) at once by reference counting, not later by the cycle collector.
    """

    def __init__(self, request: _Request) -> None:
        self._req = request
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tools: dict[int, _ToolCallBuilder] = {}
        self.finish_reason: Optional[str] = None
        self.usage: Optional[Usage] = None
        self.cost: Optional[Cost] = None
        self.chunks = 0
        self.done = False
        self._conn: Optional[_Connection] = None
        self._resp: Optional[http.client.HTTPResponse] = None
        self._conn, self._resp = self._open()

    @property
    def request_id(self) -> Optional[str]:
        return self._req.request_id

    def _open(self) -> tuple[_Connection, http.client.HTTPResponse]:
        req = self._req
        while True:
            conn, resp = req.open()
            ctype = (resp.getheader("content-type") or "").split(";")[0].strip().lower()
            if ctype == "text/event-stream":
                return conn, resp
            # A 2xx that is not a stream: a JSON error body is that error; else a protocol
            # violation (a caching proxy, a gateway that ignored stream=true, ...).
            try:
                with translate("response", req.deadlines, req.request_id):
                    body = resp.read(MAX_ERROR_BODY)
            finally:
                conn.close()
            info = parse_error_body(body, ctype) if "json" in ctype else None
            if info is not None:
                error = req.event_error(info)
                if req.refresh(error):
                    continue
                req.backoff(error, None)
                continue
            raise ProtocolError(
                f"expected a text/event-stream response, got {ctype or 'no content type'}: "
                f"{excerpt(body)}", request_id=req.request_id)

    def _drop(self) -> None:
        conn, self._conn, self._resp = self._conn, None, None
        if conn is not None:
            conn.close()  # closes its response too, which may hold the socket

    # -- accumulated state -------------------------------------------------------------

    @property
    def text(self) -> str:
        parts = self._text
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    @property
    def reasoning(self) -> str:
        parts = self._reasoning
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(b.id, b.type, FunctionCall(b.name, "".join(b.arguments)))
            for _, b in sorted(self._tools.items())
        ]

    def _merge_tools(self, deltas: list[ToolCallDelta]) -> None:
        for d in deltas:
            b = self._tools.get(d.index)
            if b is None:
                b = self._tools[d.index] = _ToolCallBuilder()
            if d.id:
                b.id = d.id
            if d.type:
                b.type = d.type
            f = d.function
            if f is not None:
                if f.name:
                    b.name += f.name
                if f.arguments:
                    b.arguments.append(f.arguments)

    # -- the read loop -----------------------------------------------------------------

    def _run(self) -> Generator[ChatCompletionChunk, None, None]:
        req = self._req
        clean = False
        try:
            while True:
                try:
                    yield from self._read()
                    clean = True
                    req.deadlines.check_abort()
                    _log.debug("stream complete: %d chunks in %.1f ms", self.chunks,
                                 (time.monotonic() - req.started) * 1000)
                    return
                except AllTokenError as err:
                    if err.request_id is None:
                        err.request_id = req.request_id
                    self._drop()
                    if self.chunks or isinstance(err, (AbortedError, ProtocolError)):
                        raise
                    if not req.refresh(err):
                        req.backoff(err, None)  # raises when not retrying
                    self.cost = None
                    self._conn, self._resp = self._open()
        finally:
            req.deadlines.release_signal()
            conn, resp = self._conn, self._resp
            if clean and conn is not None and resp is not None:
                self._conn = self._resp = None
                if not resp.isclosed() and resp.length == 0:
                    # A Content-Length body read to its end: read1 never marks the
                    # response closed, and an open response is never pooled.
                    resp.close()
                _release(req.client, conn, resp)
            else:
                self._drop()

    def _read(self) -> Iterator[ChatCompletionChunk]:
        req = self._req
        dl = req.deadlines
        resp = self._resp
        assert resp is not None
        read1 = resp.read1
        decoder = SSEDecoder()
        feed = decoder.feed
        idle = dl.timeout.idle
        dl.idle_left = idle
        text = self._text
        reasoning = self._reasoning
        # A polled signal (not a threading.Event) is looked at here too; an Event's set()
        # and close() from another thread set dl.aborted directly.
        polled = dl.signal if dl.polled else None
        inflate = _inflater(resp.getheader("content-encoding"), req.request_id)
        done = False
        while True:
            if dl.aborted is not None or (polled is not None and polled.is_set()):
                dl.check_abort()
            try:
                data = read1(READ_SIZE)
            except (OSError, HTTPException, ValueError, APITimeoutError) as exc:
                if done and dl.aborted is None:
                    # The answer is complete at [DONE]: a failure while waiting for the
                    # cost trailer only means there is no cost.
                    _log.debug("no cost trailer after [DONE]: %s", exc)
                    self._drop()  # never pooled: the connection's state is unknown
                    break
                if isinstance(exc, APITimeoutError):
                    raise
                raise map_exception(exc, "stream", dl, req.request_id) from exc
            if not data:
                break
            for item in (feed(data) if inflate is None else _feed_all(feed, inflate(data))):
                if type(item) is ServerSentEvent:
                    if done:
                        continue
                    d = item.data
                    if d == "[DONE]":
                        done = self.done = True
                        dl.after_done = True
                        continue
                    if item.event != "message" and item.event != "error":
                        _log.debug("ignoring an event of type %r", item.event)
                        continue
                    dl.idle_left = idle
                    chunk = parse_chunk(d)
                    if type(chunk) is ErrorInfo:
                        raise req.event_error(chunk)
                    assert type(chunk) is ChatCompletionChunk
                    for choice in chunk.choices:
                        if choice.index:
                            continue
                        delta = choice.delta
                        if delta.content:
                            text.append(delta.content)
                        if delta.reasoning_content:
                            reasoning.append(delta.reasoning_content)
                        if delta.tool_calls:
                            self._merge_tools(delta.tool_calls)
                        if choice.finish_reason:
                            self.finish_reason = choice.finish_reason
                    if chunk.usage is not None:
                        self.usage = chunk.usage
                    self.chunks += 1
                    if dl.aborted is not None or (polled is not None and polled.is_set()):
                        dl.check_abort()
                    yield chunk
                elif cast(Comment, item).text[:1] == "{":
                    self._comment(cast(Comment, item).text)
        for item in decoder.end():
            if not isinstance(item, ServerSentEvent) and item.text[:1] == "{":
                self._comment(item.text)
        if not done:
            raise APIConnectionError(
                f"the stream ended before data: [DONE] after {self.chunks} chunks; "
                "the answer is incomplete", request_id=req.request_id)

    def _comment(self, text: str) -> None:
        cost = parse_cost(text)
        if cost is not None:
            self.cost = cost


class Stream:
    """A streamed chat completion: an iterator of ``ChatCompletionChunk``.

    Use it as a context manager (or call :meth:`close`) so the connection is released
    even when the loop ends early. Its accumulated attributes are always current,
    including after an error or an abort:

    Attributes:
        text: The content received so far.
        reasoning: The reasoning content received so far.
        tool_calls: ``ToolCall`` objects assembled from deltas, in index order.
        finish_reason: The first choice's finish reason, once sent.
        usage: The last ``Usage`` the server sent, or None.
        cost: The ``Cost`` from the trailer after ``[DONE]``, or None.
        request_id: The server's ``x-request-id``, or None.
        chunks: How many chunks have been yielded.
        done: Whether ``data: [DONE]`` arrived.

    Only the choice with index 0 is accumulated (``n > 1`` streams yield every choice).
    Iterating raises ``APIStatusError`` for an in-stream error event,
    ``APIConnectionError`` when the connection fails or the body ends before
    ``[DONE]``, ``APITimeoutError`` for read/idle/total timeouts, ``ProtocolError`` for
    malformed data and ``AbortedError`` when the signal is set.
    """

    __slots__ = ("_gen", "_state")

    def __init__(self, request: _Request) -> None:
        self._state = _StreamState(request)
        self._gen = self._state._run()

    def __repr__(self) -> str:
        s = self._state
        state = "done" if s.done else ("open" if s._conn is not None else "closed")
        return f"<alltoken.Stream {state} chunks={s.chunks} request_id={s.request_id!r}>"

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        # Not the read-loop generator itself: a `for` over a temporary
        # (`for c in client...create(stream=True)`) holds only what __iter__ returns,
        # and if that did not reference the Stream, the Stream would be freed at once and
        # its __del__ would close the stream before the first chunk.
        return _iterate(self, self._gen)

    def __next__(self) -> ChatCompletionChunk:
        return next(self._gen)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the connection (closing its socket unless the body was
        read to its end). Idempotent, and safe from any thread: called while another
        thread is reading the stream, it wakes that reader at once, which raises
        ``AbortedError`` and releases the connection itself."""
        gen = self._gen
        if not getattr(gen, "gi_running", False):  # typeshed's Generator lacks it
            try:
                gen.close()
            except ValueError:  # another thread entered next() after the check
                pass
            else:
                self._state._drop()
                self._state._req.deadlines.release_signal()
                return
        self._state._req.deadlines.interrupt("the stream was closed by another thread")

    def __del__(self) -> None:
        if getattr(self, "_gen", None) is not None:
            self.close()

    @property
    def text(self) -> str:
        """The content received so far."""
        return self._state.text

    @property
    def reasoning(self) -> str:
        """The reasoning content received so far."""
        return self._state.reasoning

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Tool calls assembled from the deltas so far, in index order."""
        return self._state.tool_calls

    @property
    def finish_reason(self) -> Optional[str]:
        """The first choice's finish reason, once sent."""
        return self._state.finish_reason

    @property
    def usage(self) -> Optional[Usage]:
        """The last ``Usage`` the server sent, or None."""
        return self._state.usage

    @property
    def cost(self) -> Optional[Cost]:
        """The ``Cost`` from the trailer after ``[DONE]``, or None."""
        return self._state.cost

    @property
    def request_id(self) -> Optional[str]:
        """The server's ``x-request-id``, or None."""
        return self._state.request_id

    @property
    def chunks(self) -> int:
        """How many chunks have been yielded."""
        return self._state.chunks

    @property
    def done(self) -> bool:
        """Whether ``data: [DONE]`` arrived."""
        return self._state.done


#: The most bytes one inflate step produces: a small compressed body can expand a
#: thousandfold, and the decoder's limits only bound what it is fed at a time.
INFLATE_STEP: Final = 64 * 1024


def _feed_all(feed: Callable[[bytes], list[Item]], pieces: Iterable[bytes]) -> Iterator[Item]:
    for piece in pieces:
        yield from feed(piece)


def _inflater(encoding: Optional[str], request_id: Optional[str]
              ) -> Optional[Callable[[bytes], Iterator[bytes]]]:
    """An incremental decoder for a compressed stream, or None for identity. It turns
    each piece of the body into pieces of at most :data:`INFLATE_STEP` bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return None
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise ProtocolError(f"unsupported Content-Encoding {enc!r}", request_id=request_id)
    import zlib

    # wbits 47 = 32 + 15: detect a gzip or zlib header automatically.
    obj = zlib.decompressobj(47)

    def inflate(data: bytes) -> Iterator[bytes]:
        try:
            while True:
                out = obj.decompress(data, INFLATE_STEP)
                rest = obj.unconsumed_tail
                if out:
                    yield out
                # Done when the input is used up and the output was not cut short; a step
                # that neither consumed input nor produced output would never end.
                if (not rest and len(out) < INFLATE_STEP) or (not out and len(rest) == len(data)):
                    return
                data = rest
        except zlib.error as exc:
            raise ProtocolError(f"corrupt {enc} stream: {exc}", request_id=request_id) from None

    return inflate


_T = TypeVar("_T")


def _iterate(owner: object, gen: Iterator[_T]) -> Iterator[_T]:
    """Iterate *gen* while holding *owner* (the Stream or TextStream) alive.

    A plain ``for`` loop, not ``yield from``: when this iterator is dropped after a
    partial loop (``next(iter(s))``, ``islice``), closing it must not close *gen* — the
    owner may still be iterated. Dropping it only drops its reference to *owner*; when
    that was the last one, the owner's ``__del__`` closes the connection.
    """
    for item in gen:  # noqa: UP028 - `yield from` would close gen when this is dropped
        yield item
    del owner


def _pieces(stream: Stream, owned: Optional[AllToken]) -> Generator[str, None, None]:
    # A function, not a method: the generator must not reference the TextStream.
    try:
        for chunk in stream:
            for choice in chunk.choices:
                if not choice.index and choice.delta.content:
                    yield choice.delta.content
    finally:
        stream.close()
        if owned is not None:
            owned.close()


class TextStream:
    """What :func:`stream` returns: an iterator of content pieces (``str``) with the
    accumulated attributes of the underlying :class:`Stream`."""

    def __init__(self, stream: Stream, owned_client: Optional[AllToken] = None) -> None:
        self.stream = stream
        self._client = owned_client
        self._gen = _pieces(stream, owned_client)

    def __iter__(self) -> Iterator[str]:
        return _iterate(self, self._gen)  # keeps the TextStream alive: see Stream.__iter__

    def __next__(self) -> str:
        return next(self._gen)

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (and the client :func:`stream` made, if any). Safe from
        any thread, as :meth:`Stream.close` is."""
        gen = self._gen
        if getattr(gen, "gi_running", False):
            self.stream.close()  # wakes the reader; the generator's finally does the rest
            return
        try:
            gen.close()
        except ValueError:
            self.stream.close()
            return
        self.stream.close()
        if self._client is not None:
            self._client.close()

    def __del__(self) -> None:
        if getattr(self, "_gen", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"<alltoken.TextStream of {self.stream!r}>"

    text = property(lambda self: self.stream.text, doc="The content received so far.")
    reasoning = property(lambda self: self.stream.reasoning, doc="The reasoning so far.")
    tool_calls = property(lambda self: self.stream.tool_calls, doc="Assembled tool calls.")
    finish_reason = property(lambda self: self.stream.finish_reason, doc="Finish reason.")
    usage = property(lambda self: self.stream.usage, doc="Token usage, once sent.")
    cost = property(lambda self: self.stream.cost, doc="The cost trailer, once read.")
    request_id = property(lambda self: self.stream.request_id, doc="x-request-id.")
    done = property(lambda self: self.stream.done, doc="Whether [DONE] arrived.")


def stream(
    prompt_or_messages: Union[str, Messages],
    *,
    model: str,
    client: Optional[AllToken] = None,
    api_key: ApiKey = None,
    base_url: Optional[str] = None,
    signal: Any = None,
    timeout: Union[float, Timeout, None] = None,
    **params: Any,
) -> TextStream:
    """Stream an answer's content pieces: ``for tok in alltoken.stream("Hi", model=m)``.

    Args:
        prompt_or_messages: A prompt (sent as one user message) or a list of messages.
        model: The model id.
        client: An :class:`AllToken` to use; by default one is made from *api_key* and
            *base_url* (or the environment) and closed with the stream.
        signal, timeout, **params: As for ``chat.completions.create``.

    Returns:
        A :class:`TextStream`: iterate it for ``str`` pieces; it carries ``text``,
        ``reasoning``, ``usage``, ``cost`` and the rest of :class:`Stream`'s attributes.

    Raises:
        The errors of ``chat.completions.create`` (from this call) and of iterating a
        :class:`Stream` (from the loop).
    """
    if isinstance(prompt_or_messages, str):
        messages: Messages = [{"role": "user", "content": prompt_or_messages}]
    else:
        messages = prompt_or_messages
    owned = None
    if client is None:
        client = owned = AllToken(api_key=api_key, base_url=base_url)
    elif api_key is not None or base_url is not None:
        raise ValueError("pass either client= or api_key=/base_url=, not both")
    try:
        s = client.chat.completions.create(
            model=model, messages=messages, stream=True, signal=signal, timeout=timeout,
            **params)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    return TextStream(s, owned)

