"""The retry policy: what is retried, how long to wait, and ``Retry-After``.

Layer 3 helper, pure: no I/O and no sleeping. The clock (``now``) and the random source
(``rng``) are passed in, so the policy is tested without waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Final, Optional

from ._errors import RETRYABLE_STATUSES

__all__ = [
    "MAX_RETRY_AFTER",
    "backoff_delay",
    "is_retryable_status",
    "parse_retry_after",
    "retry_delay",
]

#: The longest server-requested wait that is slept. A longer ``Retry-After`` is not
#: honoured by sleeping: the error is raised at once with ``retry_after`` set, so the
#: caller decides (a minute-long stall inside a library call surprises everyone).
MAX_RETRY_AFTER: Final = 60.0


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP *status* is retried: 408, 409, 429 and every 5xx."""
    return status in RETRYABLE_STATUSES or status >= 500


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def parse_retry_after(headers: Mapping[str, str], now: float) -> Optional[float]:
    """The wait, in seconds, that a response's headers ask for, or None.

    ``retry-after-ms`` (milliseconds, as OpenAI-compatible gateways send) wins over
    ``Retry-After``, which is either delta-seconds or an HTTP date (RFC 9110 10.2.3).

    Args:
        headers: The response headers (names in any case).
        now: The current time as ``time.time()`` returns it, for HTTP dates.

    Returns:
        Seconds to wait (never negative), or None when absent or unreadable.
    """
    ms = _header(headers, "retry-after-ms")
    if ms is not None:
        try:
            value = float(ms)
        except ValueError:
            value = -1.0
        if value >= 0 and value == value and value != float("inf"):
            return value / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit() and raw.isascii():
        return float(raw)
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        return value if value >= 0 and value != float("inf") else None
    import email.utils  # only for HTTP dates: 5 ms of cold start otherwise

    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, *, rng: Callable[[], float], base: float = 0.5,
                  cap: float = 8.0) -> float:
    """The wait before retry number *attempt* (1 for the first) when the server gave none.

    Exponential (``base * 2 ** (attempt - 1)``, capped at *cap*) with "equal jitter":
    half of it is fixed and half is random. The fixed half guarantees the wait grows;
    the random half spreads out clients that failed together.

    Args:
        attempt: 1 for the first retry.
        rng: Returns a float in [0, 1), e.g. ``random.Random().random``.
    """
    exp = min(cap, base * (2.0 ** max(0, attempt - 1)))
    return exp / 2 + rng() * exp / 2


def retry_delay(attempt: int, retry_after: Optional[float], *,
                rng: Callable[[], float]) -> Optional[float]:
    """The wait before retry *attempt*, or None when the retry must not happen.

    A server-requested wait up to :data:`MAX_RETRY_AFTER` is honoured exactly; a longer
    one means "do not retry" (None); without one, :func:`backoff_delay`.
    """
    if retry_after is not None:
        if retry_after > MAX_RETRY_AFTER:
            return None
        return retry_after
    return backoff_delay(attempt, rng=rng)
