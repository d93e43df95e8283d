"""The retry policy: pure functions, fixed clock, seeded random source."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alltoken._retry import (
    MAX_RETRY_AFTER,
    backoff_delay,
    is_retryable_status,
    parse_retry_after,
    retry_delay,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("status", "expected"), [
    (408, True), (409, True), (429, True), (500, True), (503, True), (599, True),
    (400, False), (401, False), (403, False), (404, False), (422, False)])
def test_retryable_statuses(status: int, expected: bool) -> None:
    assert is_retryable_status(status) is expected


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert parse_retry_after({"Retry-After": "3"}, NOW) == 3.0

    def test_fractional_seconds(self) -> None:
        assert parse_retry_after({"retry-after": "0.5"}, NOW) == 0.5

    def test_http_date_relative_to_now(self) -> None:
        when = datetime.fromtimestamp(NOW + 7, tz=timezone.utc)
        assert parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)},
                                 NOW) == pytest.approx(7.0)

    def test_http_date_in_the_past_is_zero(self) -> None:
        when = datetime.fromtimestamp(NOW - 100, tz=timezone.utc)
        assert parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)}, NOW) == 0

    def test_retry_after_ms_wins(self) -> None:
        headers = {"Retry-After": "9", "retry-after-ms": "250"}
        assert parse_retry_after(headers, NOW) == 0.25

    def test_names_are_case_insensitive(self) -> None:
        assert parse_retry_after({"RETRY-AFTER-MS": "100"}, NOW) == 0.1

    @pytest.mark.parametrize("value", ["soon", "-3", "", "inf", "1e999"])
    def test_garbage_is_none(self, value: str) -> None:
        assert parse_retry_after({"Retry-After": value}, NOW) is None

    def test_absent_is_none(self) -> None:
        assert parse_retry_after({}, NOW) is None


class TestBackoff:
    def test_grows_exponentially_within_equal_jitter(self) -> None:
        rng = random.Random(1).random
        for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]:
            d = backoff_delay(attempt, rng=rng)
            assert base / 2 <= d <= base

    def test_is_capped(self) -> None:
        assert backoff_delay(30, rng=lambda: 0.999) <= 8.0

    @given(st.integers(1, 50), st.floats(0, 1, exclude_max=True))
    def test_always_within_bounds(self, attempt: int, r: float) -> None:
        exp = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert exp / 2 <= backoff_delay(attempt, rng=lambda: r) <= exp

    def test_server_wait_is_honoured_exactly(self) -> None:
        assert retry_delay(1, 2.5, rng=lambda: 0.5) == 2.5

    def test_a_wait_over_the_cap_means_do_not_retry(self) -> None:
        assert retry_delay(1, MAX_RETRY_AFTER + 1, rng=lambda: 0.5) is None

    def test_no_server_wait_means_backoff(self) -> None:
        assert retry_delay(2, None, rng=lambda: 0.0) == 0.5
