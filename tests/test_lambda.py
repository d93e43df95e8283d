"""The README's AWS Lambda handler, invoked as Lambda would: a stand-in context whose
remaining time runs down, against the local server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from test_readme import BLOCKS, offline_answer

from alltoken import testing as t


class Context:
    """What the handler reads of Lambda's context object."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@pytest.fixture
def handler_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[
        Callable[[t.LocalServer], Callable[[dict[str, Any], Context], dict[str, Any]]]]:
    (code,) = [code for _, code in BLOCKS if "def handler(event, context)" in code]

    def load(server: t.LocalServer) -> Callable[[dict[str, Any], Context], dict[str, Any]]:
        monkeypatch.setenv("ALLTOKEN_API_KEY", "sk-lambda")
        monkeypatch.setenv("ALLTOKEN_BASE_URL", server.base_url)
        namespace: dict[str, Any] = {"__name__": "lambda_function"}
        exec(compile(code, "README.rst:lambda", "exec"), namespace)  # the module's import
        handler: Callable[[dict[str, Any], Context], dict[str, Any]] = namespace["handler"]
        return handler

    yield load


def test_with_time_to_spare_the_handler_returns_the_whole_answer(handler_for: Any) -> None:
    with t.LocalServer(pace=0.001) as server:
        handler = handler_for(server)
        prompt = "Explain quantum computing"
        for _ in range(2):  # a cold, then a warm invocation of the same module
            result = handler({"prompt": prompt}, Context(30.0))
            assert result["complete"] is True
            assert result["answer"] == offline_answer(server, prompt)
            assert result["cost"] is not None


def test_when_the_invocation_runs_out_of_time_the_partial_answer_is_returned(
        handler_for: Any) -> None:
    with t.LocalServer(pace=0.05) as server:  # 1.3 s of reasoning, then 3.5 s of answer
        handler = handler_for(server)
        started = time.monotonic()
        result = handler({"prompt": "Explain quantum computing"}, Context(3.0))
        took = time.monotonic() - started
    assert result["complete"] is False
    assert 0 < len(result["answer"]) < len(offline_answer_text())
    assert took < 3.0  # returned before the invocation's end, not killed


def offline_answer_text() -> str:
    with t.LocalServer(pace=0) as server:
        return offline_answer(server, "Explain quantum computing")
