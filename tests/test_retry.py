"""The retry policy: pure functions, tested with a fixed clock and a seeded random source."""

from __future__ import annotations

import email.message
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


def http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, tz=timezone.utc), usegmt=True)


@pytest.mark.parametrize(("status", "expected"), [
    (408, True), (409, True), (429, True), (500, True), (502, True), (503, True),
    (504, True), (529, True), (599, True),
    (200, False), (301, False), (400, False), (401, False), (403, False), (404, False),
    (410, False), (413, False), (422, False), (428, False), (499, False)])
def test_retryable_statuses(status: int, expected: bool) -> None:
    assert is_retryable_status(status) is expected


class TestRetryAfter:
    @pytest.mark.parametrize(("value", "seconds"), [
        ("3", 3.0), ("0", 0.0), ("120", 120.0), (" 7 ", 7.0), ("0.5", 0.5), ("2.", 2.0)])
    def test_delta_seconds(self, value: str, seconds: float) -> None:
        assert parse_retry_after({"Retry-After": value}, NOW) == seconds

    def test_http_date_relative_to_now(self) -> None:
        assert parse_retry_after({"Retry-After": http_date(NOW + 7)}, NOW) == 7.0

    def test_http_date_in_the_past_is_zero(self) -> None:
        assert parse_retry_after({"Retry-After": http_date(NOW - 100)}, NOW) == 0.0

    def test_http_date_with_an_unknown_zone_is_gmt(self) -> None:
        # RFC 5322's "-0000" parses to a naive datetime; it must not be read as local time.
        when = "Fri, 15 Jan 2027 08:00:10 -0000"
        now = datetime(2027, 1, 15, 8, 0, 0, tzinfo=timezone.utc).timestamp()
        assert parse_retry_after({"Retry-After": when}, now) == 10.0

    def test_obsolete_http_date_formats(self) -> None:
        now = datetime(1994, 11, 6, 8, 49, 30, tzinfo=timezone.utc).timestamp()
        assert parse_retry_after({"Retry-After": "Sunday, 06-Nov-94 08:49:37 GMT"}, now) == 7.0
        assert parse_retry_after({"Retry-After": "Sun Nov  6 08:49:37 1994"}, now) == 7.0

    @pytest.mark.parametrize("value", [
        "soon", "", " ", "-3", "-0.5", "+3", "inf", "nan", "1e3", "1e999", "1_0", "1.2.3",
        "0x10", "\u0663", "Mon, 99 Foo 2026 25:61:61 GMT", "Fri, 15 Jan 99999 08:00:00 GMT"])
    def test_garbage_is_none(self, value: str) -> None:
        assert parse_retry_after({"Retry-After": value}, NOW) is None

    def test_absent_is_none(self) -> None:
        assert parse_retry_after({}, NOW) is None
        assert parse_retry_after({"x-request-id": "r"}, NOW) is None

    @pytest.mark.parametrize(("value", "seconds"), [
        ("250", 0.25), ("0", 0.0), ("1500.5", 1.5005), ("60000", 60.0)])
    def test_retry_after_ms(self, value: str, seconds: float) -> None:
        assert parse_retry_after({"retry-after-ms": value}, NOW) == seconds

    def test_retry_after_ms_wins_over_retry_after(self) -> None:
        headers = {"Retry-After": "9", "retry-after-ms": "250"}
        assert parse_retry_after(headers, NOW) == 0.25
        assert parse_retry_after(dict(reversed(headers.items())), NOW) == 0.25

    @pytest.mark.parametrize("value", ["soon", "-5", "", "inf"])
    def test_unreadable_retry_after_ms_falls_back_to_retry_after(self, value: str) -> None:
        assert parse_retry_after({"retry-after-ms": value, "Retry-After": "4"}, NOW) == 4.0
        assert parse_retry_after({"retry-after-ms": value}, NOW) is None

    @pytest.mark.parametrize("name", ["retry-after", "Retry-After", "RETRY-AFTER",
                                      "rEtRy-AfTeR"])
    def test_names_are_case_insensitive(self, name: str) -> None:
        assert parse_retry_after({name: "2"}, NOW) == 2.0
        assert parse_retry_after({name + "-ms": "100"}, NOW) == 0.1
        assert parse_retry_after({name.upper() + "-MS": "100", name: "5"}, NOW) == 0.1

    def test_an_http_message_works_as_the_headers(self) -> None:
        msg = email.message.Message()
        msg["Content-Type"] = "application/json"
        msg["Retry-After"] = "9"
        msg["Retry-After-Ms"] = "1200"
        assert parse_retry_after(msg, NOW) == 1.2  # type: ignore[arg-type]

    @given(st.integers(0, 10**6))
    def test_any_delta_seconds_is_read_exactly(self, seconds: int) -> None:
        assert parse_retry_after({"Retry-After": str(seconds)}, NOW) == seconds

    @given(st.text(max_size=40))
    def test_any_text_gives_none_or_a_non_negative_wait(self, value: str) -> None:
        for name in ("Retry-After", "retry-after-ms"):
            result = parse_retry_after({name: value}, NOW)
            assert result is None or result >= 0


class TestBackoff:
    def test_grows_exponentially_within_equal_jitter(self) -> None:
        rng = random.Random(1).random
        for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)]:
            delay = backoff_delay(attempt, rng=rng)
            assert ceiling / 2 <= delay < ceiling

    def test_jitter_spreads_the_waits(self) -> None:
        rng = random.Random(2).random
        delays = {backoff_delay(3, rng=rng) for _ in range(20)}
        assert len(delays) == 20 and min(delays) >= 1.0 and max(delays) < 2.0

    def test_the_same_seed_gives_the_same_waits(self) -> None:
        a, b = random.Random(3).random, random.Random(3).random
        assert [backoff_delay(n, rng=a) for n in range(1, 6)] == [
            backoff_delay(n, rng=b) for n in range(1, 6)]

    @pytest.mark.parametrize(("r", "expected"), [(0.0, 1.0), (0.5, 1.5)])
    def test_half_fixed_half_random(self, r: float, expected: float) -> None:
        assert backoff_delay(3, rng=lambda: r) == expected

    @pytest.mark.parametrize("attempt", [5, 6, 30, 1024, 10**6])
    def test_is_capped(self, attempt: int) -> None:
        assert 4.0 <= backoff_delay(attempt, rng=lambda: 0.999) < 8.0

    def test_base_and_cap_are_parameters(self) -> None:
        assert backoff_delay(1, rng=lambda: 0.0, base=2.0) == 1.0
        assert backoff_delay(9, rng=lambda: 0.0, base=2.0, cap=3.0) == 1.5

    @pytest.mark.parametrize("attempt", [0, -1])
    def test_attempts_count_from_one(self, attempt: int) -> None:
        with pytest.raises(ValueError, match="attempt"):
            backoff_delay(attempt, rng=lambda: 0.0)

    @given(st.integers(1, 2000), st.floats(0, 1, exclude_max=True))
    def test_always_within_bounds(self, attempt: int, r: float) -> None:
        ceiling = min(8.0, 0.5 * 2.0 ** min(attempt - 1, 100))
        assert ceiling / 2 <= backoff_delay(attempt, rng=lambda: r) <= ceiling


class TestRetryDelay:
    @pytest.mark.parametrize("wait", [0.0, 0.25, 2.5, 30.0, MAX_RETRY_AFTER])
    def test_a_server_wait_up_to_the_limit_is_honoured_exactly(self, wait: float) -> None:
        assert retry_delay(1, wait, rng=lambda: 0.5) == wait
        assert retry_delay(4, wait, rng=lambda: 0.5) == wait

    @pytest.mark.parametrize("wait", [MAX_RETRY_AFTER + 0.001, 3600.0, float("inf")])
    def test_a_longer_server_wait_means_do_not_retry(self, wait: float) -> None:
        assert retry_delay(1, wait, rng=lambda: 0.5) is None

    def test_no_server_wait_means_backoff(self) -> None:
        assert retry_delay(1, None, rng=lambda: 0.0) == 0.25
        assert retry_delay(2, None, rng=lambda: 0.0) == 0.5
        assert retry_delay(3, None, rng=lambda: 0.5) == 1.5

    def test_the_limit_is_a_minute(self) -> None:
        assert MAX_RETRY_AFTER == 60.0

    @given(st.integers(1, 100), st.none() | st.floats(0, 120),
           st.floats(0, 1, exclude_max=True))
    def test_never_negative_and_none_only_past_the_limit(
            self, attempt: int, wait: float | None, r: float) -> None:
        delay = retry_delay(attempt, wait, rng=lambda: r)
        if wait is not None and wait > MAX_RETRY_AFTER:
            assert delay is None
        else:
            assert delay is not None and 0 <= delay <= max(8.0, wait or 0.0)
