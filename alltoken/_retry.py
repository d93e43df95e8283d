"""The retry policy: what is retried, how long to wait, and ``Retry-After``.

Layer 3 helper, pure: **no I/O, no sleeping, no clock and no randomness of its own**.
The current time (``now``) and the random source (``rng``) are passed in, so the
policy is tested exactly, without waiting. Imports ``_errors`` only; ``email.utils``
is imported on the first HTTP-date ``Retry-After`` (it is not needed to start).

One object, :class:`RetryPolicy` (after urllib3's ``Retry``), holds the whole decision:
the request layer asks it, after each failure, how long to wait before the next attempt
(:meth:`RetryPolicy.delay`), where None means "raise now". Underneath: which statuses
are retried (:func:`is_retryable_status`), what wait the server named
(:func:`parse_retry_after`), and the backoff (:func:`backoff_delay`,
:func:`retry_delay`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone
from typing import Callable, Final, Optional

from ._errors import RETRYABLE_STATUSES, AllTokenError

__all__ = [
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "backoff_delay",
    "is_retryable_status",
    "parse_retry_after",
    "retry_delay",
]

#: The longest server-requested wait, in seconds, that the client sleeps. A longer
#: ``Retry-After`` is not slept: the error is raised at once with ``retry_after`` set,
#: so the caller decides (a minute-long stall inside a library call surprises everyone).
MAX_RETRY_AFTER: Final = 60.0

#: ``2.0 ** n`` overflows a float past n = 1023; the cap is reached long before.
_MAX_DOUBLINGS: Final = 1000


def is_retryable_status(status: int) -> bool:
    """Whether a response with this HTTP status is retried.

    Args:
        status: The HTTP status code.

    Returns:
        True for 408 (request timeout), 409 (conflict), 429 (rate limit) and every
        status from 500 up; False otherwise.
    """
    return status in RETRYABLE_STATUSES or status >= 500


def _seconds(text: str) -> Optional[float]:
    """A non-negative decimal number of seconds, or None.

    Only digits with at most one ``.``: RFC 9110 allows ``1*DIGIT``; a fraction is
    accepted because gateways send one. Signs, exponents, ``inf``/``nan`` and ``_``
    (all of which ``float()`` takes) are garbage here.
    """
    text = text.strip()
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return float(text)
    return None


def parse_retry_after(headers: Mapping[str, str], now: float) -> Optional[float]:
    """The wait, in seconds, that a response's headers ask for, or None.

    ``retry-after-ms`` (milliseconds, sent by OpenAI-compatible gateways) wins over
    ``Retry-After``, which is delta-seconds or an HTTP date (RFC 9110, section 10.2.3).
    An unreadable ``retry-after-ms`` is ignored in favour of ``Retry-After``. An HTTP
    date in the past is a wait of 0.

    Args:
        headers: The response headers. Names are matched case-insensitively, whether
            the mapping does so itself (``http.client.HTTPMessage``) or not (a plain
            ``dict``).
        now: The current time as ``time.time()`` returns it, for HTTP dates.

    Returns:
        Seconds to wait (never negative), or None when neither header is present and
        readable (negative, non-numeric or non-date values are unreadable).
    """
    ms_text: Optional[str] = None
    text: Optional[str] = None
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "retry-after-ms":
            ms_text = value
        elif lowered == "retry-after":
            text = value
    if ms_text is not None:
        ms = _seconds(ms_text)
        if ms is not None:
            return ms / 1000.0
    if text is None:
        return None
    seconds = _seconds(text)
    if seconds is not None:
        return seconds
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        # TypeError on Python 3.9 and ValueError from 3.10 for text that is no date.
        return None
    if when.tzinfo is None:
        # "-0000" parses naive; HTTP dates are always GMT (RFC 9110, section 5.6.7).
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def backoff_delay(
    attempt: int, *, rng: Callable[[], float], base: float = 0.5, cap: float = 8.0
) -> float:
    """The wait before retry number *attempt* when the server named none.

    Exponential, ``base * 2 ** (attempt - 1)`` capped at *cap*, with "equal jitter":
    half of that is fixed and half is ``rng()`` times it. The fixed half guarantees
    that successive waits grow and never collapse to zero; the random half spreads out
    clients that failed together (AWS Architecture Blog, "Exponential Backoff And
    Jitter", 2015). With the defaults: 0.25-0.5 s, 0.5-1 s, 1-2 s, ... up to 4-8 s.

    Args:
        attempt: 1 for the first retry, 2 for the second, ...
        rng: Returns a float in [0, 1), e.g. ``random.Random().random``.
        base: The ceiling of the first wait, in seconds.
        cap: The ceiling of every wait, in seconds.

    Returns:
        Seconds to wait, in ``[ceiling / 2, ceiling)`` where ``ceiling`` is
        ``min(cap, base * 2 ** (attempt - 1))``.

    Raises:
        ValueError: *attempt* is less than 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, got {attempt!r}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
    half = ceiling / 2
    return half + half * rng()


def retry_delay(
    attempt: int, retry_after: Optional[float], *, rng: Callable[[], float]
) -> Optional[float]:
    """The wait before retry *attempt*, or None when that retry must not happen.

    A server-requested wait up to :data:`MAX_RETRY_AFTER` is honoured exactly (no
    jitter: the server chose the moment); a longer one means "do not retry" and gives
    None; without one, :func:`backoff_delay`.

    Args:
        attempt: 1 for the first retry.
        retry_after: What :func:`parse_retry_after` returned.
        rng: Returns a float in [0, 1); used only for the backoff.

    Returns:
        Seconds to wait, or None.
    """
    if retry_after is None:
        return backoff_delay(attempt, rng=rng)
    if retry_after > MAX_RETRY_AFTER:
        return None
    return retry_after


class RetryPolicy:
    """What is retried, and how long to wait before each retry.

    Args:
        max_retries: How many retries one request may make.
        rng: The jitter source (a float in [0, 1)); by default a ``random.Random``,
            made on first use (``random`` is not needed to start).
    """

    __slots__ = ("_rng", "max_retries")

    def __init__(self, max_retries: int, rng: Optional[Callable[[], float]] = None) -> None:
        self.max_retries = max_retries
        self._rng = rng

    def __repr__(self) -> str:
        return f"RetryPolicy(max_retries={self.max_retries})"

    def rng(self) -> float:
        if self._rng is None:
            import random

            self._rng = random.Random().random
        return self._rng()

    def delay(self, err: AllTokenError, retries_done: int, retry_after: Optional[float],
              remaining_total: Optional[float]) -> Optional[float]:
        """The wait before the next attempt after *err*, or None to raise *err*.

        Args:
            err: The failure. An HTTP status error is retried when
                :func:`is_retryable_status` says so; any other error when it is
                ``retryable`` (connection failures and timeouts, but not a total timeout).
            retries_done: Retries this request has made so far.
            retry_after: The wait the server asked for (:func:`parse_retry_after`).
            remaining_total: Seconds left before the request's total deadline, or None.

        Returns:
            Seconds to wait, or None when the error is not retryable, the retries are
            spent, the server asked for more than :data:`MAX_RETRY_AFTER`, or the wait
            would outlast the total deadline.
        """
        status = getattr(err, "status_code", None)  # an APIStatusError's
        retryable = is_retryable_status(status) if isinstance(status, int) else err.retryable
        if not retryable or retries_done >= self.max_retries:
            return None
        delay = retry_delay(retries_done + 1, retry_after, rng=self.rng)
        if delay is None or (remaining_total is not None and delay >= remaining_total):
            return None
        return delay
