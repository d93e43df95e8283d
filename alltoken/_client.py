"""The client facade: ``AllToken`` (configuration), ``chat.completions.create`` and
``stream()``.

Layer 3, the top of it. Validates what the caller passes, builds a
:class:`~alltoken._request.Request` from the client's parts and returns a
:class:`~alltoken._stream.Stream` or the non-streamed answer. ``stream()`` lives here,
not with ``Stream``, because it builds an ``AllToken`` when given none.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Final, Literal, Optional, Union, overload
from urllib.parse import urlsplit

from ._errors import APIConnectionError
from ._request import RESERVED_HEADERS, Request, merge_headers
from ._retry import RetryPolicy
from ._stream import Stream, TextStream
from ._transport import (
    Endpoint,
    Pool,
    Proxy,
    Signal,
    Timeout,
    check_header,
    proxy_for,
    redact_url,
)
from ._types import ChatCompletion

if TYPE_CHECKING:
    from ssl import SSLContext
else:
    # ssl is imported only when an https request is made (a tenth of a cold start); at
    # run time the annotation resolves to Any, so typing.get_type_hints works.
    SSLContext = Any

__all__ = ["DEFAULT_BASE_URL", "NOT_GIVEN", "AllToken", "stream"]

DEFAULT_BASE_URL: Final = "https://api.alltoken.ai/v1"


class _NotGiven(enum.Enum):
    """The type of :data:`NOT_GIVEN` (a one-member Enum type-checks, ``object()`` not)."""

    NOT_GIVEN = "NOT_GIVEN"


#: ``timeout=`` left out of ``create()``/``stream()``: the client's timeout applies.
#: ``timeout=None`` means no limits, as it does for ``AllToken(timeout=None)``.
NOT_GIVEN: Final = _NotGiven.NOT_GIVEN

ApiKey = Union[str, Callable[[], str], None]
Messages = Sequence[Mapping[str, Any]]


def _validate_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"the API key must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError("the API key is empty")
    if "\r" in key or "\n" in key or "\x00" in key:
        raise ValueError("the API key must not contain CR, LF or NUL characters")
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        # Never quote the key: say where, not what.
        raise ValueError("the API key must be latin-1 text (it is sent in an HTTP header); "
                         "it contains a character that is not") from None
    return key


def _parse_base_url(url: str) -> tuple[str, str, int, str]:
    """Split *url* into scheme, host, port and path prefix.

    Raises:
        TypeError, ValueError: *url* is not an http(s) URL with a host. No message
            quotes its userinfo or query (a password or a key may be there):
            :func:`~alltoken._transport.redact_url` stands in.
    """
    if not isinstance(url, str):
        raise TypeError(f"base_url must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    if any(c in url for c in "\r\n\x00\t "):
        raise ValueError(f"base_url must not contain whitespace or NUL characters: {shown!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urlsplit's own messages can quote the netloc, userinfo included.
        detail = str(exc)
        if any(c in detail for c in "@?#"):
            detail = "malformed"
        raise ValueError(f"base_url is not a valid URL ({detail}): {shown!r}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"base_url must start with http:// or https://, got {shown!r}")
    if not parts.hostname:
        raise ValueError(f"base_url has no host: {shown!r}")
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValueError(f"base_url must not contain credentials ({shown!r}); use api_key")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not have a query or fragment: {shown!r} (a key "
                         "goes in api_key, other headers in default_headers)")
    if port == 0:
        raise ValueError(f"base_url has port 0, which no server listens on: {shown!r}")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
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
        timeout: Seconds for connect and read, or an :class:`alltoken.Timeout`; None
            means no limits.
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
        timeout: Union[float, Timeout, None] = 60.0,
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
        self._base_url = base_url or os.environ.get("ALLTOKEN_BASE_URL") or DEFAULT_BASE_URL
        scheme, host, port, prefix = _parse_base_url(self._base_url)
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
                    f"{redact_url(self._base_url)} needs TLS, but this Python was built "
                    "without the ssl module (OpenSSL); use a Python with ssl, or an http:// "
                    "base_url such as a local TLS-terminating proxy", retryable=False) from None
        self._endpoint = Endpoint(scheme, host, port, prefix, proxy_for(scheme, host, port, proxy))
        if ca_file is not None and ssl_context is None:
            # Loaded now, so a wrong path is the caller's ValueError/FileNotFoundError at
            # the constructor, not a surprise at the first request.
            ctx = self._tls_context()
            if scheme == "https":
                self._endpoint = self._endpoint._replace(ssl_context=ctx)
        self._pool = Pool()
        self._policy = RetryPolicy(max_retries)

    @property
    def chat(self) -> _Chat:
        """``client.chat.completions.create(...)``. (A property, not an attribute, so the
        client holds no reference cycle and is freed, with its pool, when dropped.)"""
        return _Chat(self)

    def __repr__(self) -> str:
        key = "callable" if callable(self._api_key) else ("set" if self._api_key else "missing")
        return f"AllToken(base_url={redact_url(self.base_url)!r}, api_key=<{key}>)"

    @property
    def base_url(self) -> str:
        """The API's base URL (read-only: a client talks to one API; make another
        client for another URL)."""
        return self._base_url

    def close(self) -> None:
        """Close the idle pooled connections now.

        The client stays usable: a later request opens a new connection. A stream still
        open keeps its connection; read to its end, it returns it to the pool, which is
        closed with the client when the client is freed.
        """
        self._pool.close()

    def __enter__(self) -> AllToken:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        ca_file = self._ca_file
        try:
            ctx = ssl.create_default_context(cafile=ca_file)
        except FileNotFoundError as exc:
            raise FileNotFoundError(exc.errno, "ca_file: no such file", ca_file) from None
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"ca_file {ca_file!r} holds no usable PEM CA certificate: "
                             f"{exc}") from None
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
        if (not name or not name.isascii()
                or any(c in name for c in ' \t:\r\n\x00"(),/;<=>?@[\\]{}')):
            raise ValueError(f"{what}: invalid header name {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"{what}: {name!r} is set by the library (it frames the request "
                             "or the connection) and cannot be given")
        check_header(f"{what}[{name!r}]", value)
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            # The value may be a secret (an api-key header): never quote it.
            raise ValueError(f"{what}[{name!r}]: a header value must be latin-1 text; this "
                             "one contains a character that is not") from None
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
               signal: Optional[Signal] = ...,
               timeout: Union[float, Timeout, _NotGiven, None] = ...,
               extra_headers: Optional[Mapping[str, str]] = ..., **params: Any) -> Stream: ...

    @overload
    def create(self, *, model: str, messages: Messages, stream: Literal[False] = ...,
               signal: Optional[Signal] = ...,
               timeout: Union[float, Timeout, _NotGiven, None] = ...,
               extra_headers: Optional[Mapping[str, str]] = ...,
               **params: Any) -> ChatCompletion: ...

    @overload
    def create(self, *, model: str, messages: Messages, stream: bool,
               signal: Optional[Signal] = ...,
               timeout: Union[float, Timeout, _NotGiven, None] = ...,
               extra_headers: Optional[Mapping[str, str]] = ...,
               **params: Any) -> Union[Stream, ChatCompletion]: ...

    def create(
        self,
        *,
        model: str,
        messages: Messages,
        stream: bool = False,
        signal: Optional[Signal] = None,
        timeout: Union[float, Timeout, _NotGiven, None] = NOT_GIVEN,
        extra_headers: Optional[Mapping[str, str]] = None,
        **params: Any,
    ) -> Union[Stream, ChatCompletion]:
        """Create a chat completion.

        Args:
            model: The model id, e.g. ``"deepseek-reasoner"``.
            messages: The conversation, OpenAI-shaped (``{"role": ..., "content": ...}``).
            stream: ``True`` returns a :class:`Stream` of chunks; else the whole answer.
            signal: A ``threading.Event``; setting it aborts the request promptly.
            timeout: Overrides the client's timeout for this request (a number, a
                :class:`alltoken.Timeout`, or None for no limits); left out, the
                client's applies.
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
        headers = merge_headers(client.default_headers,
                                _check_headers(extra_headers, "extra_headers"))
        req = Request(
            body,
            pool=client._pool,
            endpoint=client._endpoint_for_request(),
            key=client._key,
            refreshable=callable(client._api_key),
            headers=headers,
            policy=client._policy,
            stream=bool(stream),
            timeout=client.timeout if timeout is NOT_GIVEN else Timeout.coerce(timeout),
            signal=signal,
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


def stream(
    prompt_or_messages: Union[str, Messages],
    *,
    model: str,
    client: Optional[AllToken] = None,
    api_key: ApiKey = None,
    base_url: Optional[str] = None,
    signal: Optional[Signal] = None,
    timeout: Union[float, Timeout, _NotGiven, None] = NOT_GIVEN,
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

