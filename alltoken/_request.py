"""One call's attempts: build, send, redirect, refresh, retry, and error bodies.

Layer 3. Uses ``_transport`` (connections, clocks, the pool), ``_retry`` (the policy),
``_types`` (error bodies, the non-streamed answer) and ``_errors``; the stream layer and
the client facade use it.

:meth:`Request.open` runs the attempts: send through the pool
(:func:`alltoken._transport.exchange`), wait for the status and headers, follow a
same-origin 307/308, and turn a non-2xx answer into an ``APIStatusError``; every failure
goes through :meth:`Request.recover`, the one place that decides between refreshing the
key, backing off for another attempt, and raising.
"""

from __future__ import annotations

# At run time too (both are loaded already), so typing.get_type_hints resolves.
import http.client
import json
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Final, Optional
from urllib.parse import urljoin, urlsplit

from . import _log, _retry
from ._errors import (
    AbortedError,
    AllTokenError,
    APIConnectionError,
    APIStatusError,
    ProtocolError,
    excerpt,
    status_error,
)
from ._retry import RetryPolicy
from ._transport import (
    Deadlines,
    Endpoint,
    Pool,
    Timeout,
    _Connection,
    authority,
    exchange,
    proxy_refusal,
    read_body,
    redact_url,
    release,
    translate,
)
from ._types import ChatCompletion, ErrorInfo, parse_error_body
from ._version import __version__

__all__ = ["MAX_ERROR_BODY", "MAX_JSON_BODY", "MAX_REDIRECTS", "RESERVED_HEADERS",
           "USER_AGENT", "Request", "merge_headers"]

#: Headers that frame the request or manage the connection: http.client and this
#: library set them, and a caller's value would mis-frame the body (request smuggling
#: where a proxy forwards it), so ``default_headers``/``extra_headers`` may not hold them.
RESERVED_HEADERS: Final = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
    "trailer", "upgrade", "expect", "proxy-connection",
    # Proxy credentials belong in the proxy URL: a header would travel through a CONNECT
    # tunnel to the API itself.
    "proxy-authorization",
})


def merge_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """Merge header mappings case-insensitively: a later layer's value wins, under the
    later layer's spelling of the name."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


#: How much of an error response's body is read (a proxy's HTML page can be large).
MAX_ERROR_BODY: Final = 64 * 1024
#: Same-origin 307/308 redirects followed for one request.
MAX_REDIRECTS: Final = 5
#: The largest non-streamed JSON answer accepted.
MAX_JSON_BODY: Final = 64 * 1024 * 1024

USER_AGENT: Final = "alltoken/{} Python/{}.{}.{}".format(__version__, *sys.version_info[:3])

#: In-stream errors without a numeric ``code`` map by ``type`` (OpenAI's names).
_STATUS_BY_TYPE: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
}

class Request:
    """One logical request: its body, clocks and retry budget, across its attempts.

    Built by the client facade from explicit parts (the pool, the endpoint, a key source,
    the retry policy), so this layer never reaches back into ``AllToken``.
    """

    def __init__(self, body: dict[str, Any], *, pool: Pool, endpoint: Endpoint,
                 key: Callable[[], str], refreshable: bool, headers: Mapping[str, str],
                 policy: RetryPolicy, stream: bool, timeout: Timeout,
                 signal: Any) -> None:
        self.pool = pool
        self.policy = policy
        self.deadlines = Deadlines(timeout, signal)
        self.started = time.monotonic()
        self.stream = stream
        self.retries = 0
        #: Requests sent (each attempt, retries, redirects and the key refresh included).
        self.attempts = 0
        self.redirects = 0
        self.refreshed = False
        self._key_source = key
        self._refreshable = refreshable
        self.request_id: Optional[str] = None
        try:
            self.payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the request body is not JSON-serialisable: {exc}") from None
        self.headers = merge_headers({
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
        }, headers)
        # A caller's own Authorization (extra_headers) wins over the key's.
        self._own_auth = any(name.lower() == "authorization" for name in self.headers)
        self.endpoint = endpoint
        self.path = endpoint.prefix + "/chat/completions"
        self.url = f"{endpoint.scheme}://{authority(endpoint.host, endpoint.port)}{self.path}"
        self.key = key()

    def _headers_to_send(self) -> dict[str, str]:
        if self._own_auth:
            return self.headers
        return {**self.headers, "Authorization": "Bearer " + self.key}

    def _target(self) -> str:
        ep = self.endpoint
        if ep.proxy is not None and ep.scheme == "http":
            return self.url  # absolute-form through a plain HTTP proxy
        return self.path

    def open(self) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send the request until a 2xx response arrives, retrying per the policy."""
        dl = self.deadlines
        while True:
            dl.check_abort()
            debug = _log.debug_enabled()
            self.attempts += 1
            if debug:
                _log.debug("POST %s (attempt %d)", redact_url(self.url), self.attempts)
            try:
                conn, resp = exchange(self.pool, self.endpoint, self.deadlines,
                                      self._target(), self.payload, self._headers_to_send())
            except APIConnectionError as exc:
                self.recover(exc)
                continue
            self.request_id = resp.getheader("x-request-id")
            if debug:
                _log.debug("HTTP %d, request_id=%s, first byte after %.1f ms", resp.status,
                             self.request_id, (time.monotonic() - self.started) * 1000)
            if 200 <= resp.status < 300:
                return conn, resp
            ep = self.endpoint
            if resp.status == 407 and ep.proxy is not None and ep.scheme == "http":
                # The proxy's answer to a plain-HTTP request sent through it (an https
                # request's would have come to CONNECT). Never retried: see ProxyError.
                conn.close()
                raise proxy_refusal(ep.proxy, 407, resp.reason,
                                    f"the request to {redact_url(self.url)}")
            if resp.status in (307, 308):
                location = resp.getheader("location")
                conn.close()
                self._redirect(resp.status, location)
                continue
            err, retry_after = self._status_error(conn, resp)
            self.recover(err, retry_after)

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
                # RFC 3986: a URI is ASCII, without spaces or control characters
                # (http.client would refuse to send such a target, after the fact).
                if not location.isascii() or any(c <= " " or c == "\x7f" for c in location):
                    raise ValueError("not a URI")
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
            raise APIStatusError(f"HTTP {status} redirect to "
                                 f"{excerpt(redact_url(location or ''))} not followed: {why}",
                                 status_code=status, request_id=self.request_id,
                                 retryable=False)
        self.redirects += 1
        self.path = target.path + (f"?{target.query}" if target.query else "")
        self.url = f"{ep.scheme}://{authority(ep.host, ep.port)}{self.path}"
        _log.debug("following HTTP %d redirect to %s", status, redact_url(self.url))

    def recover(self, err: AllTokenError, retry_after: Optional[float] = None) -> None:
        """After a failed attempt: refresh a callable key once after a 401, or wait the
        policy's delay before the next attempt; raise *err* when neither applies."""
        if (isinstance(err, APIStatusError) and err.status_code == 401
                and self._refreshable and not self.refreshed):
            self.refreshed = True
            _log.warning("401 from the server: refreshing the API key and retrying once")
            self.key = self._key_source()
            return
        delay = self.policy.delay(err, self.retries, retry_after,
                                  self.deadlines.remaining_total())
        if delay is None:
            raise err
        self.retries += 1
        _log.warning("retrying in %.2f s (retry %d of %d) after: %s", delay, self.retries,
                     self.policy.max_retries, err)
        self.deadlines.wait(delay)

    def _status_error(self, conn: _Connection,
                      resp: http.client.HTTPResponse) -> tuple[APIStatusError, Optional[float]]:
        status = resp.status
        ctype = resp.getheader("content-type")
        headers = _Headers(resp)
        retry_after = _retry.parse_retry_after(headers, time.time())
        try:
            with translate("response", self.deadlines, self.request_id):
                body, _ = read_body(resp, MAX_ERROR_BODY, self.request_id)
        except AbortedError:
            raise
        except AllTokenError:
            body = b""  # unreadable (or undecodable): the status still says what happened
        finally:
            conn.close()
        err = self._error_from_body(status, body, ctype, retry_after, dict(headers))
        return err, retry_after

    def _error_from_body(self, status: int, body: bytes, ctype: Optional[str],
                         retry_after: Optional[float],
                         headers: dict[str, str]) -> APIStatusError:
        info = parse_error_body(body, ctype)
        if info is not None:
            return status_error(status, info.message, type=info.type, code=info.code,
                                body=info.raw, request_id=self.request_id,
                                retry_after=retry_after, headers=headers)
        text = body.decode("utf-8", "replace").strip()
        message = f"HTTP {status}: " + (excerpt(text) if text else "(empty body)")
        return status_error(status, message, body=text, request_id=self.request_id,
                            retry_after=retry_after, headers=headers)

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
                    # Decoded per Content-Encoding (a caller's Accept-Encoding, or a
                    # proxy that compresses), bounded by the decoded size.
                    body, more = read_body(resp, MAX_JSON_BODY, self.request_id)
            except AllTokenError as err:
                conn.close()
                self.recover(err)
                continue
            if more:
                conn.close()
                raise ProtocolError(f"the response is larger than {MAX_JSON_BODY} bytes",
                                    request_id=self.request_id)
            release(self.pool, conn, resp)
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError):
                # RecursionError: nesting deeper than the decoder's stack.
                raise ProtocolError(
                    f"expected a JSON chat completion, got {excerpt(body)}",
                    request_id=self.request_id) from None
            if isinstance(obj, dict) and "error" in obj:
                info = parse_error_body(body, "application/json")
                if info is not None:
                    self.recover(self.event_error(info))
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


