"""The error tree: status mapping, retryable flags, messages, pickling."""

from __future__ import annotations

import pickle

import pytest

import alltoken
from alltoken._errors import excerpt, status_error


class TestStatusMapping:
    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, alltoken.BadRequestError),
            (401, alltoken.AuthenticationError),
            (403, alltoken.PermissionDeniedError),
            (404, alltoken.NotFoundError),
            (429, alltoken.RateLimitError),
            (500, alltoken.InternalServerError),
            (502, alltoken.InternalServerError),
            (503, alltoken.InternalServerError),
            (409, alltoken.APIStatusError),
            (418, alltoken.APIStatusError),
        ],
    )
    def test_status_maps_to_its_class(self, status: int, cls: type) -> None:
        err = status_error(status, "boom")
        assert type(err) is cls
        assert err.status_code == status

    @pytest.mark.parametrize(("status", "retryable"), [
        (400, False), (401, False), (403, False), (404, False), (408, True), (409, True),
        (418, False), (429, True), (500, True), (503, True),
    ])
    def test_retryable_follows_the_retry_policy(self, status: int, retryable: bool) -> None:
        assert status_error(status, "x").retryable is retryable

    def test_rate_limit_error_carries_retry_after(self) -> None:
        err = status_error(429, "slow down", retry_after=2.5)
        assert isinstance(err, alltoken.RateLimitError)
        assert err.retry_after == 2.5

    def test_every_error_is_an_alltoken_error(self) -> None:
        for cls in (alltoken.APIConnectionError, alltoken.APITimeoutError,
                    alltoken.ProtocolError, alltoken.AbortedError, alltoken.APIStatusError):
            assert issubclass(cls, alltoken.AllTokenError)
        assert issubclass(alltoken.APITimeoutError, alltoken.APIConnectionError)


class TestMessages:
    def test_status_error_message_names_status_type_and_request_id(self) -> None:
        err = status_error(429, "Rate limit exceeded", type="rate_limit_error",
                           request_id="req-9")
        text = str(err)
        assert "429" in text and "Rate limit exceeded" in text
        assert "rate_limit_error" in text and "req-9" in text

    def test_excerpt_caps_long_server_text(self) -> None:
        text = excerpt("x" * 5000)
        assert len(text) < 300
        assert "5000 characters" in text

    def test_excerpt_decodes_bytes_with_replacement(self) -> None:
        assert excerpt(b"ok \xff") == repr("ok \ufffd")


class TestPickling:
    @pytest.mark.parametrize("err", [
        status_error(429, "slow", type="rate_limit_error", code=429, body={"a": 1},
                     request_id="r1", retry_after=3.0),
        status_error(500, "upstream", request_id="r2"),
        alltoken.APIConnectionError("reset", request_id="r3"),
        alltoken.APITimeoutError("slow"),
        alltoken.ProtocolError("bad"),
        alltoken.AbortedError("stop"),
    ])
    def test_errors_survive_pickling_with_their_attributes(
            self, err: alltoken.AllTokenError) -> None:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err)
        assert str(back) == str(err)
        assert vars(back) == vars(err)
