"""The command line, end to end: ``python -m alltoken`` in a subprocess against the local
server over loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alltoken import testing as t

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None, stdin: str = "",
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALLTOKEN_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "alltoken", *args], cwd=ROOT, env=full_env,
                          input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def server() -> Iterator[t.LocalServer]:
    with t.LocalServer(pace=0, api_key="sk-cli") as srv:
        yield srv


def online(server: t.LocalServer) -> dict[str, str]:
    return {"ALLTOKEN_API_KEY": "sk-cli", "ALLTOKEN_BASE_URL": server.base_url}


class TestChat:
    def test_offline_demo_streams_reasoning_answer_and_summary(self) -> None:
        r = run("chat", "--offline", "Explain quantum computing")
        assert r.returncode == 0, r.stderr
        assert "qubit" in r.stdout
        assert "superposition" in r.stderr  # the reasoning
        assert re.search(r"\d+ tokens · \$0\.\d+ · first token \d+ ms", r.stderr)
        assert "\r" not in r.stderr  # no spinner when stderr is not a terminal
        assert "\x1b[" not in r.stderr  # and no colours

    def test_answer_goes_to_stdout_and_reasoning_to_stderr(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.reasoning("think "), t.content("Hello"),
                                      t.content(" there"), t.done(), t.cost("0.25")]))
        r = run("chat", "hi", "-m", "m1", env=online(server))
        assert r.returncode == 0, r.stderr
        assert r.stdout == "Hello there\n"
        assert r.stderr.startswith("think ")
        assert "$0.25" in r.stderr
        assert server.requests[0].json["model"] == "m1"

    def test_no_reasoning_hides_it(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.reasoning("secret thoughts"), t.content("ok"),
                                      t.done()]))
        r = run("chat", "hi", "-m", "m", "--no-reasoning", env=online(server))
        assert r.stdout == "ok\n" and "secret thoughts" not in r.stderr

    def test_options_reach_the_request_body(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("ok"), t.done()]))
        r = run("chat", "question", "-m", "m", "--system", "be brief", "--temperature", "0.3",
                "--max-tokens", "7", env=online(server))
        assert r.returncode == 0, r.stderr
        body = server.requests[0].json
        assert body["messages"] == [{"role": "system", "content": "be brief"},
                                    {"role": "user", "content": "question"}]
        assert body["temperature"] == 0.3 and body["max_tokens"] == 7

    def test_prompt_from_stdin(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("ok"), t.done()]))
        r = run("chat", "-", "-m", "m", stdin="from a pipe\n", env=online(server))
        assert r.returncode == 0, r.stderr
        assert server.requests[0].json["messages"][-1]["content"] == "from a pipe\n"

    def test_json_prints_raw_chunks(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("a"), t.content("b"), t.done()]))
        r = run("chat", "hi", "-m", "m", "--json", env=online(server))
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        assert [c["choices"][0]["delta"]["content"] for c in lines] == ["a", "b"]

    def test_base_url_option_overrides_the_environment(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("ok"), t.done()]))
        env = {"ALLTOKEN_API_KEY": "sk-cli", "ALLTOKEN_BASE_URL": "http://127.0.0.1:9/v1"}
        r = run("chat", "hi", "-m", "m", "--base-url", server.base_url, env=env)
        assert r.returncode == 0, r.stderr and r.stdout == "ok\n"


class TestFailures:
    def test_api_error_is_one_line_and_exit_1(self, server: t.LocalServer) -> None:
        server.enqueue(t.ErrorReply(400, message="unknown model 'nope'"))
        r = run("chat", "hi", "-m", "nope", env=online(server))
        assert r.returncode == 1
        assert r.stderr.strip().count("\n") == 0
        assert "BadRequestError" in r.stderr and "unknown model" in r.stderr
        assert "Traceback" not in r.stderr

    def test_wrong_key_is_reported_without_echoing_it(self, server: t.LocalServer) -> None:
        r = run("chat", "hi", "-m", "m", env={"ALLTOKEN_API_KEY": "sk-wrong-key-xyz",
                                              "ALLTOKEN_BASE_URL": server.base_url})
        assert r.returncode == 1 and "AuthenticationError" in r.stderr
        assert "sk-wrong-key-xyz" not in r.stderr + r.stdout

    def test_partial_answer_stays_when_the_stream_breaks(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("half an ans"), t.drop()]))
        r = run("chat", "hi", "-m", "m", env=online(server))
        assert r.returncode == 1
        assert r.stdout.startswith("half an ans")
        assert "APIConnectionError" in r.stderr

    @pytest.mark.parametrize(("args", "message"), [
        (["chat", "hi"], "model"),
        (["chat", "   ", "--offline"], "empty"),
        (["chat", "hi", "--temperature", "hot", "--offline"], "invalid float"),
        (["frobnicate"], "invalid choice"),
    ])
    def test_usage_errors_exit_2(self, args: list[str], message: str) -> None:
        r = run(*args)
        assert r.returncode == 2 and message in r.stderr
        assert "Traceback" not in r.stderr

    def test_missing_key_is_a_usage_error(self) -> None:
        r = run("chat", "hi", "-m", "m")
        assert r.returncode == 2 and "ALLTOKEN_API_KEY" in r.stderr

    def test_ctrl_c_mid_stream_aborts_keeps_the_text_and_exits_130(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("partial answer"), t.wait(gate, 30),
                                      t.content(" never"), t.done()]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLTOKEN_")}
        env.update(online(server))
        proc = subprocess.Popen([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            first = proc.stdout.read(len("partial answer"))
            assert first == b"partial answer"
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
            elapsed = time.monotonic() - sent
        finally:
            gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        assert b"interrupted" in err and b"Traceback" not in err
        assert elapsed < 5
        assert b"never" not in out


class TestServe:
    def test_serve_answers_requests_until_interrupted(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLTOKEN_")}
        proc = subprocess.Popen([sys.executable, "-m", "alltoken", "serve", "--port", "0",
                                 "--pace", "0", "--key", "sk-serve"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
            assert match, line
            r = run("chat", "hi", "-m", "echo",
                    env={"ALLTOKEN_API_KEY": "sk-serve", "ALLTOKEN_BASE_URL": match.group(1)})
            assert r.returncode == 0, r.stderr
            assert r.stdout == "hi\n"
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0


class TestTerminal:
    def test_spinner_while_waiting_and_dim_reasoning_on_a_terminal(
            self, server: t.LocalServer) -> None:
        import pty

        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.StreamReply([
            t.reasoning("thinking"), t.content("answer"), t.done()])))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLTOKEN_")}
        env.update(online(server))
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        seen = b""
        try:
            deadline = time.monotonic() + 10
            while b"waiting" not in seen and time.monotonic() < deadline:
                seen += os.read(master, 4096)  # the spinner, before any token
            gate.set()
            out, _ = proc.communicate(timeout=10)
            while True:
                try:
                    piece = os.read(master, 4096)
                except OSError:
                    break
                if not piece:
                    break
                seen += piece
        finally:
            gate.set()
            os.close(master)
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0
        assert out == b"answer\n"
        assert b"\r" in seen and b"waiting" in seen  # the spinner with elapsed time
        assert b"\r\x1b[K" in seen  # cleared when text starts
        assert b"\x1b[2mthinking\x1b[0m" in seen  # reasoning dimmed
        assert b"tokens" in seen  # the summary line
