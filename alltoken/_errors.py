"""The exception tree of alltoken.

Layer: bottom. This module imports nothing from the package, so every other module
can raise these errors.

Everything the *server or the network* did wrong is an :class:`AllTokenError`;
mistakes in how the library is called raise ``ValueError``/``TypeError`` at the call.

Errors carry their data as attributes and build their message from them. No message
is ever built from the API key: the key is not passed to any error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Optional, Union

__all__ = [
    "RETRYABLE_STATUSES",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AbortedError",
    "AllTokenError",
    "AuthenticationError",
    "BadRequestError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProxyError",
    "RateLimitError",
    "excerpt",
    "status_error",
]

#: HTTP statuses the retry policy retries (besides connection failures): request
#: timeout, conflict (the gateway uses it for "try again"), rate limit, and 5xx.
RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})

#: How much of a server-supplied body or line goes into an error message.
EXCERPT_CHARS: Final = 200


def excerpt(value: Union[str, bytes], limit: int = EXCERPT_CHARS) -> str:
    """Return ``repr`` of the start of *value*, marked when cut, for error messages."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[: limit * 4]).decode("utf-8", "replace")
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    return repr(value)


class AllTokenError(Exception):
    """Base class of every error the library raises for what the server or network did.

    Attributes:
        message: A human-readable description.
        request_id: The server's ``x-request-id`` for the request, when it sent one.
        retryable: Whether the library's retry policy retries this kind of error
            (whether or not any retries remained).
    """

    def __init__(
        self, message: str, *, request_id: Optional[str] = None, retryable: bool = False
    ) -> None:
        self.message = message
        self.request_id = request_id
        self.retryable = retryable
        super().__init__(message)

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request_id={self.request_id})"
        return self.message

    def _state(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "retryable": self.retryable}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are not restored by BaseException's default pickling.
        return (_rebuild, (type(self), self.message, self._state()))


def _rebuild(cls: type[AllTokenError], message: str, state: dict[str, Any]) -> AllTokenError:
    return cls(message, **state)


class APIConnectionError(AllTokenError):
    """The network failed, or the response ended before the stream was complete."""

    def __init__(
        self, message: str, *, request_id: Optional[str] = None, retryable: bool = True
    ) -> None:
        super().__init__(message, request_id=request_id, retryable=retryable)


class APITimeoutError(APIConnectionError):
    """A connect, read, idle or total timeout ran out."""


class ProxyError(APIConnectionError):
    """The proxy refused the request: a non-2xx answer to ``CONNECT``, or ``407 Proxy
    Authentication Required`` to a plain-HTTP request sent through it.

    Not retried (``retryable`` False): sending rejected credentials again can lock the
    account, and a refusal does not go away by itself. The exception is a 502, 503 or
    504 to ``CONNECT``: the proxy could not reach the API, as retryable as a failed
    connect.

    Attributes:
        proxy: The proxy as ``host:port`` (never its credentials).
        status_code: The proxy's HTTP status.
    """

    def __init__(self, message: str, *, proxy: str = "", status_code: int = 0,
                 request_id: Optional[str] = None, retryable: bool = False) -> None:
        self.proxy = proxy
        self.status_code = status_code
        super().__init__(message, request_id=request_id, retryable=retryable)

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        state.update(proxy=self.proxy, status_code=self.status_code)
        return state


class ProtocolError(AllTokenError):
    """The server broke the protocol: malformed SSE or JSON, an over-long line, a wrong
    content type."""


class AbortedError(AllTokenError):
    """The caller's abort signal was set."""


class APIStatusError(AllTokenError):
    """The server answered with a non-2xx status, or sent an in-stream error event.

    Attributes:
        status_code: The HTTP status, or the error event's ``code`` when it is a number.
        type: The error's ``type`` field (for example ``"rate_limit_error"``), if any.
        code: The error's ``code`` field as sent (int, str or None).
        body: The decoded JSON error body, or the raw text for a non-JSON body.
        retry_after: Seconds the server asked to wait (``Retry-After`` or
            ``retry-after-ms``), or None when it did not say. Set on every status
            error (a 503 may carry it as well as a 429).
        headers: The response's headers, names lower-cased (empty for an in-stream
            error event, which has none of its own).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        type: Optional[str] = None,
        code: object = None,
        body: object = None,
        request_id: Optional[str] = None,
        retryable: Optional[bool] = None,
        retry_after: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.status_code = status_code
        self.type = type
        self.code = code
        self.body = body
        self.retry_after = retry_after
        self.headers: dict[str, str] = dict(headers) if headers else {}
        if retryable is None:
            retryable = status_code in RETRYABLE_STATUSES or status_code >= 500
        super().__init__(message, request_id=request_id, retryable=retryable)

    def __str__(self) -> str:
        detail = f"{self.status_code} {self.message}"
        if self.type:
            detail += f" (type={self.type})"
        if self.request_id:
            detail += f" (request_id={self.request_id})"
        return detail

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        state.update(status_code=self.status_code, type=self.type, code=self.code, body=self.body,
                     retry_after=self.retry_after, headers=self.headers)
        return state


class BadRequestError(APIStatusError):
    """400: the request was malformed (unknown model, bad parameter)."""


class AuthenticationError(APIStatusError):
    """401: the API key is invalid or expired."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or endpoint."""


class NotFoundError(APIStatusError):
    """404: no such endpoint or model."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` says how long the server asked to wait."""


class InternalServerError(APIStatusError):
    """5xx: the gateway or the upstream provider failed."""


_BY_STATUS: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def status_error(
    status_code: int,
    message: str,
    *,
    type: Optional[str] = None,
    code: object = None,
    body: object = None,
    request_id: Optional[str] = None,
    retry_after: Optional[float] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass that *status_code* maps to.

    The same table serves HTTP statuses and the ``code`` of in-stream error events.
    """
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = InternalServerError if status_code >= 500 else APIStatusError
    return cls(message, status_code=status_code, type=type, code=code, body=body,
               request_id=request_id, retry_after=retry_after, headers=headers)
