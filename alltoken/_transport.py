"""HTTP transport: connections, TLS, proxies, the pool, waits, wake-ups and the clocks.

Layer 2. Imports ``_errors`` only (``sse`` and JSON are the client's business).
:func:`translate` turns ``OSError``, ``http.client.HTTPException`` and framing
``ValueError`` raised inside a block into alltoken errors.

Theory of operation
-------------------
``http.client`` frames the request and the response (status line, headers, chunked
encoding). Underneath it every socket is non-blocking, and every wait — for the connect,
the TLS handshake, the socket to accept more of the request, a byte of the response — is
one call of :meth:`Deadlines.wait_for`: one ``poll`` bounded by the nearest of the
clocks, started when the wait starts. Each response reads through a
:class:`_SocketReader` that first takes what has already arrived and waits only when
nothing has, so time the caller spends between two chunks never counts against a clock.
A C ``BufferedReader`` sits on top, so ``HTTPResponse.read1()`` returns whatever has
arrived as soon as it arrives: bytes are never held back to fill a buffer.

Nothing polls. An abort (the caller's ``threading.Event`` set, or ``Stream.close()``
from another thread) calls :meth:`Deadlines.interrupt` in the thread that caused it,
which shuts the request's socket down: the ``poll`` the reader is blocked in returns at
once, wherever the request is — connecting, in the TLS handshake, sending, waiting for
the status line, or mid-body — and a backoff sleep is released. No thread is started, so
none can outlive its stream. **Not interruptible:** the DNS lookup (``getaddrinfo``
blocks in C); the abort is looked at right before and after it.

Connections whose response was read to its end go back to a small :class:`Pool` for the
next request to the same origin, in the process that opened them; every other ending
closes the socket.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import http.client
import io
import os
import select
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Callable, Final, NamedTuple, Optional, Protocol, Union, runtime_checkable
from urllib.parse import urlsplit
from weakref import ref as _weakref

from . import _log
from ._errors import (
    AbortedError,
    AllTokenError,
    APIConnectionError,
    APITimeoutError,
    ProtocolError,
    ProxyError,
)

__all__ = [
    "ABORT_POLL",
    "Deadlines",
    "Endpoint",
    "MAX_INTERIM_RESPONSES",
    "Pool",
    "PrivateHeaders",
    "Proxy",
    "Signal",
    "Timeout",
    "check_header",
    "exchange",
    "inflater",
    "map_exception",
    "authority",
    "private_headers",
    "proxy_for",
    "proxy_refusal",
    "read_body",
    "redact_url",
    "release",
    "translate",
]

#: The longest single wait when the abort signal is an object this module cannot be
#: woken by (anything with ``is_set()`` that is not a ``threading.Event``): such a wait
#: is sliced, and the signal looked at between slices. A ``threading.Event`` is never
#: polled: see :class:`Deadlines`.
ABORT_POLL: Final = 0.002

#: A reusable idle connection older than this is closed instead of reused: servers and
#: proxies commonly drop idle keep-alive connections after 5-60 s.
POOL_IDLE_SECONDS: Final = 30.0
POOL_MAX_PER_ORIGIN: Final = 8

#: ``read1`` size: large enough that a burst is taken in one call, small enough for L2.
READ_SIZE: Final = 65536

#: Interim (1xx) responses skipped before the final one. A server sends one or two
#: (``100 Continue``, ``103 Early Hints``); an endless run of them must not hold the
#: request forever (each one's headers are bounded by http.client).
MAX_INTERIM_RESPONSES: Final = 32


def redact_url(url: str) -> str:
    """*url* fit for a message, a log line or a repr: its userinfo, query and fragment
    (where passwords, keys and tokens travel) replaced with ``***``.

    String operations only, so a URL too malformed to parse -- the one an error is
    about -- is redacted too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or any(c in scheme for c in "/?#@"):
        scheme, sep, rest = "", "", url  # no scheme: "user:pw@proxy:3128"
    end = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    cut = min((i for i in (tail.find("?"), tail.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        tail = tail[:cut] + tail[cut] + "***"
    return f"{scheme}{sep}{netloc}{tail}"


def authority(host: str, port: int) -> str:
    """``host:port`` as a URL, a ``Host`` header or a ``CONNECT`` target writes it: an
    IPv6 address in brackets (RFC 3986 3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

_POLLIN: Final = getattr(select, "POLLIN", 1)
_POLLOUT: Final = getattr(select, "POLLOUT", 4)
_POLLPRI: Final = getattr(select, "POLLPRI", 2)
_POLL_READ: Final = _POLLIN | _POLLPRI | getattr(select, "POLLHUP", 16) | getattr(
    select, "POLLERR", 8)
_POLL_WRITE: Final = _POLLOUT | getattr(select, "POLLHUP", 16) | getattr(select, "POLLERR", 8)


def _wait_fd(sock: socket.socket, write: bool, seconds: Optional[float]) -> bool:
    """Wait until *sock* is readable (or writable) or *seconds* pass; True if ready.

    ``poll``, which has no file-descriptor ceiling (``select.select`` fails for fds
    >= 1024, which any busy server process has); ``select`` only where a platform has no
    ``poll``. One call is one wait: the callers count on that (and the tests count them).
    """
    fd = sock.fileno()
    if fd < 0:
        return True  # closed under us (an abort): the caller's next step reports it
    poll = getattr(select, "poll", None)
    if poll is not None:
        p = poll()
        p.register(fd, _POLL_WRITE if write else _POLL_READ)
        return bool(p.poll(None if seconds is None else max(seconds, 0.0) * 1000.0))
    if write:  # pragma: no cover - platforms without poll
        _, ready, _ = select.select([], [fd], [fd], seconds)
    else:  # pragma: no cover
        ready, _, _ = select.select([fd], [], [fd], seconds)
    return bool(ready)


@runtime_checkable
class Signal(Protocol):
    """What ``signal=`` may be: a ``threading.Event``, or anything with ``is_set()``."""

    def is_set(self) -> bool: ...


SignalLike = Any  # threading.Event or an object with is_set()


@dataclass(init=False, repr=False, eq=False)
class Timeout:
    """Timeouts for one request, in seconds; None means no limit.

    Args:
        connect: Connecting, TLS handshake and proxy tunnel included.
        read: The longest silence between two received bytes (and, while the request is
            sent, the longest time no byte of it is accepted by the socket).
        idle: The longest wait between two *data* events of a stream; comments such as
            keep-alives do not reset it, so a stalled generation behind a chatty proxy
            still ends.
        total: A wall-clock deadline from the call until the stream has been read to
            its end, retries and backoff included.

    ``read`` and ``idle`` count only time spent waiting for the server: time the caller
    spends between two chunks never counts. Every attempt (a retry, a redirect) starts
    with fresh ``connect``, ``read`` and ``idle`` clocks; a retry's backoff counts against
    ``total`` only.

    A plain number given where a ``Timeout`` is accepted sets ``connect`` and ``read``.
    """

    connect: Optional[float] = 60.0
    read: Optional[float] = 60.0
    idle: Optional[float] = None
    total: Optional[float] = None

    # The methods dataclass(frozen=True) would generate, written out: generating them
    # costs a compile() each when alltoken is imported (benchmarks/: cold start).
    def __init__(self, connect: Optional[float] = 60.0, read: Optional[float] = 60.0,
                 idle: Optional[float] = None, total: Optional[float] = None) -> None:
        for name, value in (("connect", connect), ("read", read), ("idle", idle),
                            ("total", total)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Timeout {name} must be a number or None, got {value!r}")
            if not value > 0:
                raise ValueError(f"Timeout {name} must be positive, got {value!r}")
        object.__setattr__(self, "connect", connect)
        object.__setattr__(self, "read", read)
        object.__setattr__(self, "idle", idle)
        object.__setattr__(self, "total", total)

    def _values(self) -> tuple[Optional[float], ...]:
        return (self.connect, self.read, self.idle, self.total)

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}(connect={self.connect!r}, read={self.read!r}, "
                f"idle={self.idle!r}, total={self.total!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    @classmethod
    def coerce(cls, value: Union[Timeout, float, int, None]) -> Timeout:
        """Turn a user's ``timeout=`` argument into a ``Timeout``."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(connect=None, read=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"timeout must be a number or alltoken.Timeout, got {value!r}")
        return cls(connect=float(value), read=float(value))


class _Wakeup:
    """Stands in a ``threading.Condition``'s list of waiters for one request.

    ``Event.set()`` calls ``release()`` on every waiter of the event's condition; this
    one wakes the request instead of a sleeping thread. Calling it never blocks: it runs
    in the thread that called ``set()``, inside the event's lock.
    """

    __slots__ = ("deadlines",)

    def __init__(self, deadlines: Deadlines) -> None:
        # Weak: an event the caller keeps must not keep a forgotten request alive.
        self.deadlines = _weakref(deadlines)

    def release(self) -> None:
        dl = self.deadlines()
        if dl is not None:
            dl.interrupt("the request was aborted by its signal")


def _condition_of(signal: object) -> Any:
    """The ``threading.Condition`` of a ``threading.Event`` (a subclass too), or None."""
    threading = sys.modules.get("threading")
    if threading is None or not isinstance(signal, threading.Event):
        return None
    cond = getattr(signal, "_cond", None)
    if not isinstance(cond, threading.Condition) or not hasattr(cond, "_waiters"):
        return None  # pragma: no cover - a Python whose Event is built otherwise
    return cond


class Deadlines:
    """The clocks and the wake-up of one request, across its attempts.

    Clocks. ``read`` and ``idle`` run only while a wait is needed: every wait for the
    socket (connect, handshake, send, receive) is bounded when it starts, by whichever
    of ``read``, the idle budget left and the ``total`` deadline is nearest, and the data
    already received is read first. The idle budget is spent only by waits; the stream
    layer refills it at every data event (:meth:`data_event`), and
    :meth:`start_attempt` resets it for each attempt.

    Wake-ups. Nothing polls. A request given a ``threading.Event`` puts a
    :class:`_Wakeup` among the event's condition waiters, so ``set()`` calls
    :meth:`interrupt` from the setting thread; so does :meth:`Stream.close` from another
    thread. :meth:`interrupt` marks the request aborted, shuts the current socket down
    (which ends a ``poll``, ``recv``, ``send`` or connect in progress at once, on every
    platform this library targets) and releases a backoff sleep. A signal that is not
    a ``threading.Event`` is looked at every :data:`ABORT_POLL` seconds while waiting.
    """

    __slots__ = ("__weakref__", "_hooked", "_lock", "_sleeper", "_sock", "aborted",
                 "after_done", "connect_until", "generation", "idle_left", "polled", "signal",
                 "timeout", "total_deadline")

    def __init__(self, timeout: Timeout, signal: SignalLike = None) -> None:
        self.timeout = timeout
        self.signal = signal
        self.total_deadline = (None if timeout.total is None
                               else time.monotonic() + timeout.total)
        #: The idle budget left (None: no idle timeout running).
        self.idle_left: Optional[float] = None
        #: ``[DONE]`` arrived: waits are bounded by ``read`` (else ``idle``) for the trailer.
        self.after_done = False
        #: While connecting (TCP, a proxy's tunnel, TLS): the connect clock's deadline,
        #: which bounds every wait then, whatever its kind.
        self.connect_until: Optional[float] = None
        #: Why the request was interrupted (None while it was not).
        self.aborted: Optional[str] = None
        #: The process this request belongs to (see :meth:`interrupt`).
        self.generation = _fork_generation
        # Re-entrant: Event.set() may be called from a signal handler (the CLI's Ctrl-C)
        # that interrupts this very thread while it holds the lock in attach().
        self._lock = _thread.RLock()
        self._sock: Optional[socket.socket] = None
        self._sleeper: Optional[Any] = None
        self._hooked: Optional[_Wakeup] = None
        #: True when the signal can only be polled (not a threading.Event).
        self.polled = False
        if signal is not None:
            cond = _condition_of(signal)
            if cond is None:
                self.polled = True
            else:
                # Without taking the event's lock: a signal handler that calls set() while
                # this thread held it would deadlock (the lock is not re-entrant). A
                # deque's append and remove are atomic, and set() after the append finds
                # the hook; set() before it is seen by the is_set() that follows.
                hook = _Wakeup(self)
                cond._waiters.append(hook)
                self._hooked = hook
                if signal.is_set():
                    self.aborted = "the request was aborted by its signal"

    def release_signal(self) -> None:
        """Take this request's wake-up out of the signal (at the end of the request), so
        one event shared by many requests does not collect them. Idempotent."""
        hook, self._hooked = self._hooked, None
        cond = _condition_of(self.signal) if hook is not None else None
        if cond is not None:  # (None at interpreter shutdown, threading gone)
            with contextlib.suppress(ValueError):  # set() may have taken it out already
                cond._waiters.remove(hook)

    def __del__(self) -> None:
        self.release_signal()

    # -- interruption ------------------------------------------------------------------

    def interrupt(self, why: str) -> None:
        """Abort the request from any thread: wake whatever it is waiting in."""
        if self.generation != _fork_generation:
            # A forked child's copy of the request (its copy of the event was set): the
            # socket is shared with the parent, whose request this is. Touch nothing.
            if self.aborted is None:
                self.aborted = why
            return
        with self._lock:
            if self.aborted is None:
                self.aborted = why
            sock, sleeper = self._sock, self._sleeper
            if sock is not None:
                _shutdown(sock)
            if sleeper is not None:
                with contextlib.suppress(RuntimeError):
                    sleeper.release()

    def attach(self, sock: Optional[socket.socket]) -> None:
        """*sock* is the socket an interrupt must shut down (None: no socket now)."""
        with self._lock:
            self._sock = sock
            if sock is not None and self.aborted is not None:
                _shutdown(sock)

    def detach(self, sock: Optional[socket.socket]) -> None:
        """*sock* is about to be closed: an interrupt must not touch its descriptor."""
        if self._sock is not None and self._sock is sock:
            with self._lock:
                if self._sock is sock:
                    self._sock = None

    def check_abort(self) -> None:
        if self.aborted is None and self.polled and self.signal.is_set():
            self.aborted = "the request was aborted by its signal"
        if self.aborted is not None:
            raise AbortedError(self.aborted)

    # -- clocks ------------------------------------------------------------------------

    def start_attempt(self) -> None:
        """Fresh per-attempt clocks (connect and read are per wait already)."""
        self.idle_left = None
        self.after_done = False

    def remaining_total(self) -> Optional[float]:
        if self.total_deadline is None:
            return None
        return self.total_deadline - time.monotonic()

    def timeout_error(self, what: str) -> APITimeoutError:
        t = self.timeout
        if what == "idle":
            msg = f"no data event for {t.idle:g} s (idle timeout)"
        elif what == "total":
            # Past the deadline there is no time left to retry in.
            return APITimeoutError(
                f"the request did not finish within {t.total:g} s (total timeout)",
                retryable=False)
        elif what == "connect":
            msg = f"connecting took longer than {t.connect:g} s (connect timeout)"
        elif what == "send":
            msg = f"no byte of the request was accepted for {t.read:g} s (read timeout)"
        else:
            msg = f"no byte received for {t.read:g} s (read timeout)"
        return APITimeoutError(msg)

    def wait_for(self, sock: socket.socket, write: bool, phase: str,
                 phase_deadline: Optional[float] = None) -> None:
        """One wait for *sock* to be ready, bounded by the nearest clock.

        *phase* is ``"connect"`` (bounded by *phase_deadline*, the connect clock),
        ``"send"`` or ``"read"`` (bounded by ``read`` from now). Raises
        ``APITimeoutError`` when a clock runs out first, ``AbortedError`` when
        interrupted.
        """
        self.check_abort()
        now = time.monotonic()
        limit: Optional[float] = None
        if self.connect_until is not None:  # a proxy's tunnel is read while connecting
            phase, phase_deadline = "connect", self.connect_until
        what = phase
        if phase == "connect":
            if phase_deadline is not None:
                limit = phase_deadline - now
        else:
            read = self.timeout.read
            if read is None and self.after_done and self.timeout.idle is not None:
                read, what = self.timeout.idle, "idle"  # the trailer wait is bounded too
            if read is not None:
                limit = read
        idle = None if self.after_done or phase == "connect" else self.idle_left
        if idle is not None and (limit is None or idle < limit):
            limit, what = idle, "idle"
        total = self.total_deadline
        if total is not None and (limit is None or total - now < limit):
            limit, what = total - now, "total"
        if limit is not None and limit <= 0:
            raise self.timeout_error(what)
        if self.polled and (limit is None or limit > ABORT_POLL):
            # A signal only this loop can look at: slices of one wait, on one deadline.
            end = None if limit is None else now + limit
            while True:
                left = ABORT_POLL if end is None else min(ABORT_POLL, end - time.monotonic())
                ready = _wait_fd(sock, write, max(left, 0.0))
                if ready or self.aborted is not None or self.signal.is_set():
                    timed_out = False
                    break
                if end is not None and time.monotonic() >= end:
                    timed_out = True
                    break
        else:
            ready = _wait_fd(sock, write, limit)
            timed_out = not ready
        if idle is not None:
            self.idle_left = idle - (time.monotonic() - now)
        self.check_abort()
        if timed_out:
            raise self.timeout_error(what)

    def wait(self, seconds: float) -> None:
        """Sleep *seconds* (a retry backoff), waking at once when interrupted."""
        self.check_abort()
        if self.polled:
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, ABORT_POLL))
                self.check_abort()
            return
        sleeper = _thread.allocate_lock()
        sleeper.acquire()
        with self._lock:
            if self.aborted is None:
                self._sleeper = sleeper
        try:
            if self._sleeper is sleeper:
                sleeper.acquire(True, seconds)
        finally:
            with self._lock:
                self._sleeper = None
        self.check_abort()


def _shutdown(sock: socket.socket) -> None:
    """Shut *sock* down in both directions, from any thread. For TLS, the plain socket's
    method: ``SSLSocket.shutdown`` also drops its TLS object under the reading thread,
    which would then call a method of None."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _SocketReader(io.RawIOBase):
    """A raw, deadline- and abort-aware reader over a connected, non-blocking socket.

    ``http.client`` reads the response through a ``BufferedReader`` over this object;
    each ``readinto`` is at most one successful ``recv_into``. What has arrived is
    returned at once; only when nothing has does a wait start (and its clocks with it).
    """

    def __init__(self, sock: socket.socket, dl: Deadlines) -> None:
        super().__init__()
        self._sock = sock
        self.deadlines = dl

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._sock
        dl = self.deadlines
        if dl.generation != _fork_generation:
            # A forked child iterating a stream its parent opened: the socket is shared,
            # and reading would take the parent's answer.
            raise APIConnectionError(
                "this request was opened by another process (before a fork); a process "
                "cannot read another's answer: make the request again", retryable=False)
        while True:
            if dl.aborted is not None:
                raise AbortedError(dl.aborted)
            try:
                n: int = sock.recv_into(buffer)
                return n
            except (BlockingIOError, InterruptedError):
                write = False
            except OSError as exc:
                want = _ssl_want(exc)
                if want is None:
                    if dl.aborted is not None:
                        raise AbortedError(dl.aborted) from None
                    raise
                write = want
            dl.wait_for(sock, write, "read")


def _ssl_want(exc: BaseException) -> Optional[bool]:
    """For a TLS "want read/write" error: whether it wants to write; else None."""
    ssl = sys.modules.get("ssl")
    if ssl is None:
        return None
    if isinstance(exc, ssl.SSLWantReadError):
        return False
    if isinstance(exc, ssl.SSLWantWriteError):
        return True
    return None


class _Response(http.client.HTTPResponse):
    """An ``HTTPResponse`` reading through :class:`_SocketReader`."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: Optional[str] = None,
                 url: Optional[str] = None, *, deadlines: Deadlines) -> None:
        super().__init__(sock, debuglevel, method, url)
        # We read through our own reader, but keep the file http.client made (unread):
        # when a response will close the connection, http.client closes its socket at
        # once and relies on this file to keep it open until the response is closed.
        self._sockfile: Optional[io.IOBase] = self.fp
        self.fp = io.BufferedReader(_SocketReader(sock, deadlines), READ_SIZE)

    def _read_status(self) -> tuple[str, int, str]:
        """The final response's status line: interim (1xx) responses are skipped.

        http.client skips only ``100 Continue``; RFC 9110 15.2 says a client must be
        able to parse any 1xx before the final response (``102 Processing``, ``103
        Early Hints``, ...). ``101 Switching Protocols`` answers an upgrade this client
        never asks for. ``begin()`` calls this, so it never sees a 1xx.
        """
        for _ in range(MAX_INTERIM_RESPONSES + 1):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status >= 200:
                return version, status, reason
            if status == 101:
                raise ProtocolError("the server answered 101 Switching Protocols, but no "
                                    "protocol upgrade was asked for")
            http.client.parse_headers(self.fp)  # the interim response's headers: skipped
        raise ProtocolError(f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses "
                            "before the final one")

    def _close_conn(self) -> None:
        try:
            super()._close_conn()  # type: ignore[misc]
        finally:
            f, self._sockfile = self._sockfile, None
            if f is not None:
                # Closing this file may close the socket (when the connection let go of
                # it): an interrupt must not shut down a descriptor that is being reused.
                reader = self.fp.raw if self.fp is not None else None
                if isinstance(reader, _SocketReader):
                    reader.deadlines.detach(reader._sock)
                f.close()


def proxy_refusal(proxy: Proxy, status: int, reason: str, what: str) -> ProxyError:
    """The :class:`ProxyError` for *proxy* answering *status* to *what*."""
    where = authority(proxy.host, proxy.port)
    if status == 407:
        why = ("it rejected the credentials in the proxy URL" if proxy.authorization else
               "it asks for credentials: put them in the proxy URL, "
               "http://user:password@host:port")
    else:
        why = "see the proxy's configuration or logs"
    reason = reason.strip()[:100]
    return ProxyError(f"the proxy {where} refused {what}: HTTP {status}"
                      + (f" {reason!r}" if reason else "") + f" ({why})",
                      proxy=where, status_code=status, retryable=status in (502, 503, 504))


class Proxy(NamedTuple):
    """An HTTP proxy: ``http://[user:pass@]host[:port]`` (port 80 when left out, as
    urllib, requests and curl's ``http://`` proxies have it).

    (Named tuples, this and :class:`Endpoint`: immutable and hashable, as the pool's
    keys need, at a fraction of a frozen dataclass's import-time cost.)
    """

    host: str
    port: int
    authorization: Optional[str] = None

    def __repr__(self) -> str:
        auth = ", with credentials" if self.authorization else ""
        return f"Proxy({self.host}:{self.port}{auth})"

    @classmethod
    def parse(cls, url: str) -> Proxy:
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", ""):
            raise ValueError(f"only http:// proxies are supported, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("proxy URL has no host")
        check_header("proxy", url)
        auth = None
        if parts.username is not None:
            import base64
            from urllib.parse import unquote

            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(parts.hostname, parts.port or 80, auth)


def _env(name: str) -> str:
    return os.environ.get(name.lower()) or os.environ.get(name.upper()) or ""


def _bypass(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` matches *host*:*port*.

    Entries are comma-separated (spaces ignored), each optionally with ``:port``
    (``[::1]:8080`` for an IPv6 address): ``*`` matches everything; a name matches itself
    and its subdomains, written ``example.com``, ``.example.com`` or ``*.example.com``;
    an IP address matches itself; a CIDR range (``10.0.0.0/8``, ``fd00::/8``) matches
    the IP addresses in it. Names are not resolved.
    """
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", "").lower().split(","):
        if not entry:
            continue
        if entry == "*":
            return True
        want_port = ""
        if entry.startswith("["):  # [v6]:port or [v6]
            end = entry.find("]")
            if end < 0:
                continue
            name = entry[1:end]
            if entry[end + 1:end + 2] == ":":
                want_port = entry[end + 2:]
        elif entry.count(":") == 1:
            name, _, want_port = entry.partition(":")
        else:
            name = entry  # a name, an IPv4 address, or a bare IPv6 address or range
        if want_port and want_port != str(port):
            continue
        if "/" in name:
            if _in_network(host, name):
                return True
            continue
        name = name[2:] if name.startswith("*.") else name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _in_network(host: str, cidr: str) -> bool:
    import ipaddress  # only for a NO_PROXY that has a range

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:  # a name, or not a range: no match
        return False


def proxy_for(scheme: str, host: str, port: int, explicit: Union[str, Proxy, bool, None]
              ) -> Optional[Proxy]:
    """The proxy to use: *explicit* (a URL, a :class:`Proxy`, or False for none), else
    the environment's.

    From the environment: ``HTTPS_PROXY`` for an https API, ``HTTP_PROXY`` for http, then
    ``ALL_PROXY`` when it is an ``http://`` proxy (another scheme there, such as
    ``socks5://``, is meant for other programs and ignored). None is used when
    ``NO_PROXY`` matches, or -- for ``HTTP_PROXY`` -- in a CGI
    program (``REQUEST_METHOD`` set), where a request's ``Proxy:`` header arrives as
    ``HTTP_PROXY`` ("httpoxy").
    """
    if explicit is False:
        return None
    if isinstance(explicit, Proxy):
        return explicit
    if isinstance(explicit, str) and explicit:
        return Proxy.parse(explicit)
    url = ""
    if scheme == "https" or "REQUEST_METHOD" not in os.environ:
        url = _env(f"{scheme}_proxy")
    elif _env("http_proxy"):
        _log.debug("ignoring HTTP_PROXY in a CGI program (httpoxy)")
    if not url:
        url = _env("all_proxy")
        if url and "://" in url and not url.lower().startswith("http://"):
            _log.debug("ignoring ALL_PROXY with a scheme other than http://")
            url = ""
    if not url or _bypass(host, port, _env("no_proxy")):
        return None
    return Proxy.parse(url)


def check_header(name: str, value: str) -> None:
    """Reject a header name or value that could inject into the request.

    ``http.client`` lets ``"\\r\\n "`` (obsolete line folding) through; we allow no CR,
    LF or NUL at all.
    """
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"{name} must not contain CR, LF or NUL characters")


class Endpoint(NamedTuple):
    """Where requests go: scheme, host, port, path prefix, and TLS and proxy settings."""

    scheme: str
    host: str
    port: int
    prefix: str
    proxy: Optional[Proxy]
    ssl_context: Any = None

    @property
    def origin(self) -> tuple[str, str, int, Optional[Proxy]]:
        return (self.scheme, self.host, self.port, self.proxy)


class _Connection(http.client.HTTPConnection):
    """An ``HTTPConnection`` whose connect, handshake, send and reads honour
    :class:`Deadlines`. Its socket is non-blocking: every wait is one of ``Deadlines``'s.
    """

    deadlines: Deadlines
    idle_since: float = 0.0
    _last_response: Optional[_Response] = None
    _handing_over = False
    _connect_deadline: Optional[float] = None

    def __init__(self, ep: Endpoint, dl: Deadlines) -> None:
        self.endpoint = ep
        self.deadlines = dl
        #: The process that opened the connection (see :class:`Pool`).
        self.generation = _fork_generation
        if ep.proxy is not None:
            super().__init__(ep.proxy.host, ep.proxy.port, timeout=dl.timeout.connect)
            if ep.scheme == "https":
                self.set_tunnel(ep.host, ep.port)  # our _tunnel sends the CONNECT
        else:
            super().__init__(ep.host, ep.port, timeout=dl.timeout.connect)
        self.response_class = self._make_response  # type: ignore[assignment]
        self._create_connection = self._connect_socket

    def _make_response(self, sock: socket.socket, debuglevel: int = 0,
                       method: Optional[str] = None, url: Optional[str] = None) -> _Response:
        resp = self._last_response = _Response(sock, debuglevel, method, url,
                                               deadlines=self.deadlines)
        return resp

    def getresponse(self) -> http.client.HTTPResponse:
        self._handing_over = True
        try:
            return super().getresponse()
        finally:
            self._handing_over = False

    def close(self) -> None:
        """Close the socket, and the last response: http.client forgets a response that
        will close the connection (it calls this method to hand the socket over to it),
        and such a response holds the socket open."""
        if self.sock is not None and not self._handing_over:
            # (When handing the socket over to a response that will close the
            # connection, the response keeps it open, and its _close_conn detaches it
            # before the real close.)
            self.deadlines.detach(self.sock)
        try:
            super().close()
        finally:
            if not self._handing_over:
                resp, self._last_response = self._last_response, None
                if resp is not None:
                    resp.close()

    def _connect_socket(self, address: tuple[str, int], timeout: Any = None,
                        source_address: Any = None) -> socket.socket:
        dl = self.deadlines
        dl.check_abort()
        host, port = address
        # An ASCII host goes as bytes: for a str, getaddrinfo runs the "idna" codec, and
        # importing it (with unicodedata and stringprep) is a tenth of a cold start.
        # Not interruptible: getaddrinfo blocks in C. The abort is looked at after it.
        infos = socket.getaddrinfo(host.encode() if host.isascii() else host, port, 0,
                                   socket.SOCK_STREAM)
        dl.check_abort()
        error: Optional[BaseException] = None
        for family, type_, proto, _, sockaddr in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                dl.attach(sock)  # an interrupt now ends the connect's wait
                rc = sock.connect_ex(sockaddr)
                if rc not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                    raise OSError(rc, os.strerror(rc))
                if rc != 0:
                    dl.wait_for(sock, True, "connect", self._connect_deadline)
                    dl.check_abort()
                    rc = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if rc:
                        raise OSError(rc, os.strerror(rc))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:
                dl.detach(sock)
                sock.close()
                error = exc
            except BaseException:
                dl.detach(sock)
                sock.close()
                raise
        raise error if error else OSError("getaddrinfo returned no address")

    def _tunnel(self) -> None:
        """Open the ``CONNECT`` tunnel to the API (``HTTPConnection.connect`` calls this).

        Replaces http.client's own: an IPv6 target in brackets (3.9-3.11 send
        ``CONNECT ::1:443``), ``Host`` as HTTP/1.1 requires, 1xx answers skipped, any
        2xx accepted, and a refusal a :class:`ProxyError` naming the proxy and the
        status instead of a retryable ``OSError``.
        """
        ep = self.endpoint
        proxy = ep.proxy
        assert proxy is not None and self.sock is not None
        target = authority(ep.host, ep.port)
        auth = (f"Proxy-Authorization: {proxy.authorization}\r\n"
                if proxy.authorization else "")
        self.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"
                  .encode("latin-1"))
        del auth  # not left among the frame's locals if the answer is a failure
        resp = _Response(self.sock, method="CONNECT", deadlines=self.deadlines)
        try:
            resp.begin()
            status, reason = resp.status, resp.reason
        finally:
            resp.fp = None  # type: ignore[assignment]  # the tunnel's bytes are TLS's now
            f, resp._sockfile = resp._sockfile, None
            if f is not None:
                f.close()
        if not 200 <= status < 300:
            raise proxy_refusal(proxy, status, reason, f"a tunnel to {target}")

    def connect(self) -> None:
        t = self.deadlines.timeout.connect
        # One connect clock for TCP, the proxy's tunnel and TLS, started here.
        self._connect_deadline = None if t is None else time.monotonic() + t
        dl = self.deadlines
        dl.connect_until = self._connect_deadline
        try:
            super().connect()
            if self.endpoint.scheme == "https":
                self._start_tls()
        finally:
            dl.connect_until = None

    def _start_tls(self) -> None:
        import ssl

        dl = self.deadlines
        ctx = self.endpoint.ssl_context
        raw = self.sock
        sock = ctx.wrap_socket(raw, server_hostname=self.endpoint.host,
                               do_handshake_on_connect=False)
        self.sock = sock
        dl.attach(sock)
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                dl.wait_for(sock, False, "connect", self._connect_deadline)
            except ssl.SSLWantWriteError:
                dl.wait_for(sock, True, "connect", self._connect_deadline)

    def send(self, data: Any) -> None:
        """Send *data*, bounded by progress: a wait for the socket to accept more is
        bounded by ``read`` (a slow link is fine while bytes keep moving), and an
        interrupt ends it at once."""
        dl = self.deadlines
        dl.check_abort()
        if self.sock is None:
            if not self.auto_open:  # pragma: no cover - http.client's own contract
                raise http.client.NotConnected()
            self.connect()
        sock = self.sock
        if not isinstance(data, (bytes, bytearray, memoryview)):  # pragma: no cover
            raise TypeError("alltoken sends bytes only")
        view = memoryview(data).cast("B")
        while view:
            try:
                n = sock.send(view)
            except (BlockingIOError, InterruptedError):
                write = True
            except OSError as exc:
                want = _ssl_want(exc)
                if want is None:
                    raise
                write = want
            else:
                view = view[n:]
                continue
            dl.wait_for(sock, write, "send")


_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Pool:
    """Idle keep-alive connections by origin. Thread-safe.

    A connection belongs to the process that opened it. After ``os.fork()`` a child sees
    its parent's idle connections in this pool; it never sends on, reads from or shuts
    down one of them (that would read another process's answer, or cut the parent's
    connection): it forgets them, closing only its own copy of each descriptor, and
    opens its own.
    """

    def __init__(self) -> None:
        self._idle: dict[tuple[Any, ...], list[_Connection]] = {}
        self._lock = _thread.allocate_lock()  # threading is not imported for one lock
        self._generation = _fork_generation

    def _forget_inherited(self) -> None:
        """In a forked child: drop the parent's connections (the lock too: a parent's
        thread may have held it at the fork, and nothing would ever release it)."""
        self._lock = _thread.allocate_lock()
        self._generation = _fork_generation
        inherited, self._idle = self._idle, {}
        for conns in inherited.values():
            for conn in conns:
                _forget(conn)

    def get(self, ep: Endpoint, dl: Deadlines) -> tuple[_Connection, bool]:
        """A connection to *ep*: an idle one (``True``) or a new, unconnected one."""
        if self._generation != _fork_generation:
            self._forget_inherited()
        now = time.monotonic()
        with self._lock:
            conns = self._idle.get(ep.origin)
            while conns:
                conn = conns.pop()
                if now - conn.idle_since < POOL_IDLE_SECONDS and not _peer_closed(conn):
                    conn.deadlines = dl
                    dl.attach(conn.sock)  # an interrupt must reach a reused socket too
                    return conn, True
                conn.close()
        return _Connection(ep, dl), False

    def put(self, conn: _Connection) -> None:
        """Keep *conn* for reuse (its response was read to the end)."""
        if self._generation != _fork_generation:
            self._forget_inherited()
        if conn.generation != _fork_generation:
            _forget(conn)
            return
        conn.idle_since = time.monotonic()
        conn.deadlines.detach(conn.sock)
        with self._lock:
            conns = self._idle.setdefault(conn.endpoint.origin, [])
            conns.append(conn)
            while len(conns) > POOL_MAX_PER_ORIGIN:
                conns.pop(0).close()

    def close(self) -> None:
        """Close every idle connection (the pool stays usable)."""
        if self._generation != _fork_generation:
            self._forget_inherited()
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def __del__(self) -> None:
        # A client dropped without close() must not leak its idle sockets.
        inherited = getattr(self, "_generation", _fork_generation) != _fork_generation
        for conns in getattr(self, "_idle", {}).values():
            for conn in conns:
                if inherited:
                    _forget(conn)
                else:
                    conn.close()

    def __len__(self) -> int:
        if self._generation != _fork_generation:
            self._forget_inherited()
        with self._lock:
            return sum(map(len, self._idle.values()))


def _forget(conn: _Connection) -> None:
    """Let go of a connection another process owns: close this process's descriptor
    only. (Closing a descriptor shared with another process sends nothing; a TLS
    socket's close sends no close_notify either.)"""
    sock, conn.sock = conn.sock, None
    if sock is not None:
        sock.close()


def _peer_closed(conn: _Connection) -> bool:
    """Whether an idle connection is unusable: closed by the peer, or holding bytes no
    request asked for."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if not _wait_fd(sock, False, 0):
            return False
        if conn.endpoint.scheme != "https":
            return True  # EOF or stray bytes: either way not reusable
        # TLS 1.3 servers send session tickets after the handshake, which make an idle
        # socket readable; reading them yields no application data.
        import ssl

        sock.setblocking(False)
        try:
            sock.recv(1)
        except ssl.SSLWantReadError:
            return False
        return True
    except (OSError, ValueError):
        return True


class PrivateHeaders(dict[str, str]):
    """Request headers whose ``repr`` hides credential values.

    What crosses frames holding a key is one of these, so a traceback printed with its
    locals (``traceback``'s ``capture_locals``, ``pytest --showlocals``, error trackers
    that fall back to ``repr``) does not show the key. Credentials go first: http.client
    leaves the *last* header's value in a local of its sending frame.

    **Limit:** while the request head is being sent, http.client holds it as bytes in
    a local (``msg``); a failure during the send can show it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "{" + ", ".join(
            f"{k!r}: " + ("'<hidden>'" if k.lower() in _CREDENTIALS else repr(v))
            for k, v in self.items()) + "}"


_CREDENTIALS: Final = frozenset({"authorization", "proxy-authorization", "api-key",
                                 "x-api-key", "cookie"})


def private_headers(headers: Mapping[str, str]) -> PrivateHeaders:
    """*headers* as :class:`PrivateHeaders`, credentials first."""
    out = PrivateHeaders()
    for name, value in headers.items():
        if name.lower() in _CREDENTIALS:
            out[name] = value
    for name, value in headers.items():
        if name.lower() not in _CREDENTIALS:
            out[name] = value
    return out


def _where(ep: Endpoint) -> str:
    """Where a connect goes, for its error message."""
    where = " to " + authority(ep.host, ep.port)
    if ep.proxy is not None:
        where += " through the proxy " + authority(ep.proxy.host, ep.proxy.port)
    return where


def exchange(pool: Pool, ep: Endpoint, dl: Deadlines, target: str, payload: bytes,
             headers: Mapping[str, str]) -> tuple[_Connection, http.client.HTTPResponse]:
    """Send one POST and wait for its status and headers, on a pooled connection or a
    new one. A pooled connection the server had closed is replaced once, silently.

    A plain-HTTP request through a proxy carries the proxy's credentials
    (``Proxy-Authorization``; the proxy consumes it, RFC 9110 11.7.2); an https one sends
    them only on ``CONNECT``, never inside the tunnel to the API.
    """
    if (ep.proxy is not None and ep.scheme == "http" and ep.proxy.authorization
            and not any(name.lower() == "proxy-authorization" for name in headers)):
        headers = {"Proxy-Authorization": ep.proxy.authorization, **headers}
    headers = private_headers(headers)
    for _ in range(2):
        dl.start_attempt()
        conn, reused = pool.get(ep, dl)
        try:
            if conn.sock is None:
                with translate("connect", dl, where=_where(ep)):
                    conn.connect()
            with translate("send", dl):
                conn.request("POST", target, payload, headers)
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


def release(pool: Pool, conn: _Connection, resp: http.client.HTTPResponse) -> None:
    """Pool *conn* if its response was read to the end and it may be kept; else close it."""
    if not resp.isclosed() and resp.length == 0:
        # A Content-Length body read to its end: read1 never marks the response closed.
        resp.close()
    if resp.isclosed() and not resp.will_close and conn.sock is not None:
        pool.put(conn)
    else:
        conn.close()


#: The most bytes one inflate step produces: a small compressed body can expand a
#: thousandfold, and the decoder's limits only bound what it is fed at a time.
INFLATE_STEP: Final = 64 * 1024


def read_body(resp: http.client.HTTPResponse, limit: int, request_id: Optional[str]
              ) -> tuple[bytes, bool]:
    """Read a whole (non-streamed) body, decoded per its ``Content-Encoding``, keeping
    at most *limit* decoded bytes; also whether there was more.

    The bound applies to the decoded size, one :data:`INFLATE_STEP` at a time, so a
    small compressed body cannot expand past it; the compressed bytes read are bounded
    by *limit* too. Raises what ``read1`` raises (wrap it in :func:`translate`) and
    ``ProtocolError`` for an unsupported encoding or corrupt compressed data.
    """
    inflate = inflater(resp.getheader("content-encoding"), request_id)
    parts: list[bytes] = []
    size = raw = 0
    while True:
        data = resp.read1(READ_SIZE)
        if not data:
            return b"".join(parts), False
        raw += len(data)
        for piece in ((data,) if inflate is None else inflate(data)):
            parts.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(parts)[:limit], True
        if raw > limit:
            return b"".join(parts), True


def inflater(encoding: Optional[str], request_id: Optional[str]
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



_PHASE_HINT: Final = {
    "connect": "could not connect",
    "send": "could not send the request",
    "response": "no response",
    "stream": "the connection failed while streaming",
}


@contextlib.contextmanager
def translate(phase: str, dl: Optional[Deadlines] = None,
              request_id: Optional[str] = None, *, where: str = "") -> Iterator[None]:
    """Map network and ``http.client`` failures in the block to alltoken errors.

    ``AllTokenError`` passes through unchanged. A failure while the abort signal is set
    becomes ``AbortedError`` (closing the socket is how some failures arise). *where*
    is added to the message's phase (" to host:port through the proxy host:port").
    """
    try:
        yield
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise map_exception(exc, phase, dl, request_id, where=where) from exc


def map_exception(exc: BaseException, phase: str, dl: Optional[Deadlines] = None,
                  request_id: Optional[str] = None, *, where: str = "") -> AllTokenError:
    """The alltoken error for a network or framing failure *exc* during *phase*."""
    if dl is not None and (dl.aborted is not None
                           or (dl.signal is not None and dl.signal.is_set())):
        return AbortedError(dl.aborted or "the request was aborted by its signal",
                            request_id=request_id)
    return _network_error(phase, exc, request_id, where)


#: Why a handshake failed, for the reasons a user can act on (OpenSSL's reason codes).
_TLS_ADVICE: Final = {
    "WRONG_VERSION_NUMBER": "the server did not answer in TLS: is it a plain-HTTP port? "
                            "(use an http:// base_url for that)",
    "UNSUPPORTED_PROTOCOL": "the server offers only a TLS version this client refuses "
                            "(TLS 1.2 is the least accepted by default)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server does not speak a TLS version this client "
                                    "accepts",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version is both allowed here and offered there",
}


def _network_error(phase: str, exc: BaseException, request_id: Optional[str],
                   where: str = "") -> AllTokenError:
    hint = _PHASE_HINT.get(phase, phase) + where
    if isinstance(exc, socket.timeout):
        return APITimeoutError(f"{hint}: timed out", request_id=request_id)
    ssl_mod = sys.modules.get("ssl")
    if ssl_mod is not None and isinstance(exc, ssl_mod.SSLCertVerificationError):
        return APIConnectionError(
            f"{hint}: TLS certificate verification failed: {exc.verify_message}",
            request_id=request_id, retryable=False)
    if ssl_mod is not None and isinstance(exc, ssl_mod.SSLError):
        if phase == "connect" and not isinstance(exc, (
                ssl_mod.SSLEOFError, ssl_mod.SSLZeroReturnError, ssl_mod.SSLSyscallError)):
            # The peer's TLS and ours cannot agree (a version, a cipher, not TLS at
            # all): every attempt would fail the same way. The connection ending or
            # breaking under the handshake (EOF, reset: a server restarting) says
            # nothing about the peer's TLS and stays retryable.
            reason = str(getattr(exc, "reason", None) or exc)
            advice = _TLS_ADVICE.get(reason)
            return APIConnectionError(
                f"{hint}: TLS handshake failed: {reason}" + (f" ({advice})" if advice else ""),
                request_id=request_id, retryable=False)
        return APIConnectionError(f"{hint}: TLS error: {exc}", request_id=request_id)
    if isinstance(exc, http.client.IncompleteRead):
        return APIConnectionError(
            f"{hint}: the response ended early ({len(exc.partial)} bytes of a chunk read"
            + (f", {exc.expected} more expected)" if exc.expected else ")"),
            request_id=request_id)
    if isinstance(exc, (http.client.LineTooLong,)):
        return ProtocolError(f"{hint}: {exc}", request_id=request_id)
    if isinstance(exc, http.client.RemoteDisconnected):
        # Also a BadStatusLine, but it is a network failure: often a pooled connection
        # the server had closed, or a server restarting. Retryable.
        return APIConnectionError(f"{hint}: the server closed the connection without a "
                                  "response", request_id=request_id)
    if isinstance(exc, http.client.BadStatusLine):
        return ProtocolError(f"{hint}: malformed HTTP status line {exc.args!r}"[:300],
                             request_id=request_id)
    if isinstance(exc, ValueError):
        return ProtocolError(f"{hint}: malformed HTTP framing: {exc}", request_id=request_id)
    if isinstance(exc, http.client.ImproperConnectionState):
        # The connection's state, not the server's bytes: a fresh attempt clears it.
        return APIConnectionError(f"{hint}: {type(exc).__name__}: {exc}", request_id=request_id)
    if isinstance(exc, http.client.HTTPException):
        # The response broke HTTP's framing ("got more than 100 headers", an unknown
        # HTTP version or transfer coding, an invalid URL it made us build): sending
        # the request again would bring the same answer.
        return ProtocolError(f"{hint}: malformed HTTP response: {type(exc).__name__}: "
                             f"{exc}"[:300], request_id=request_id)
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return APIConnectionError(f"{hint}: {type(exc).__name__}: {detail}", request_id=request_id)

