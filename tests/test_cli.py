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
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alltoken import cli
from alltoken import testing as t
from alltoken._cli_render import SurrogateJoiner

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "alltoken"]
#: Variables that change what the command line prints; each test sets what it needs.
_OUTPUT_VARIABLES = ("NO_COLOR", "TERM", "PYTHONIOENCODING", "PYTHONUTF8")


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("ALLTOKEN_") and k not in _OUTPUT_VARIABLES}
    full_env.update(env or {})
    return full_env


def run(*args: str, env: dict[str, str] | None = None, stdin: str = "",
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=clean_env(env),
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def run_bytes(*args: str, env: dict[str, str] | None = None, stdin: bytes = b"",
              timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=clean_env(env),
                          input=stdin, capture_output=True, timeout=timeout)


def run_in_shell(redirect: str, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    """The command line run by ``sh`` with *redirect* applied (``>&-``, ``2>&-``)."""
    script = f'exec "$@" {redirect}'
    return subprocess.run(["sh", "-c", script, "sh", *CLI, *args], cwd=ROOT,
                          env=clean_env(env), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


def one_line(text: str) -> str:
    """*text* if it is exactly one line (with its line feed); fails otherwise."""
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    return text[:-1]


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


    def test_help_describes_the_conversation_and_recording(self) -> None:
        r = run("chat", "--help")
        assert r.returncode == 0
        text = " ".join(r.stdout.split())
        assert "[prompt]" in text and "leave it out on a terminal for a conversation" in text
        assert "Ctrl-C stops an answer, Ctrl-D exits" in text
        assert "--record FILE" in text and "serve --replay FILE" in text
        r = run("serve", "--help")
        text = " ".join(r.stdout.split())
        assert "--replay FILE" in text and "'original'" in text


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


def on_terminal(server: t.LocalServer, gate: threading.Event, *args: str,
                env: dict[str, str] | None = None,
                hold: float | None = None) -> tuple[int, bytes, bytes]:
    """Run ``chat`` with stderr on a pseudo-terminal; return (exit code, stdout, terminal).

    The reply queued behind *gate* is released once the spinner shows (*hold* None), or
    after *hold* seconds, which is long enough for a spinner to have drawn frames."""
    pty = pytest.importorskip("pty", reason="no pty module on this platform")
    try:
        master, slave = pty.openpty()
    except OSError as exc:
        pytest.skip(f"no pseudo-terminal available: {exc}")
    full_env = {"TERM": "xterm-256color", **online(server), **(env or {})}
    proc = subprocess.Popen([*CLI, "chat", *args], cwd=ROOT, env=clean_env(full_env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                piece = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not piece:
                return
            seen.extend(piece)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        if hold is None:
            deadline = time.monotonic() + 10
            while b"waiting" not in seen and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            time.sleep(hold)
        gate.set()
        out, _ = proc.communicate(timeout=20)
        reader.join(10)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(master)
    return proc.returncode, out, bytes(seen)


class TestTerminal:
    def test_spinner_while_waiting_and_dim_reasoning_on_a_terminal(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.StreamReply([
            t.reasoning("thinking"), t.content("answer"), t.done()])))
        code, out, seen = on_terminal(server, gate, "hi", "-m", "m")
        assert code == 0
        assert out == b"answer\n"
        assert b"\r" in seen and b"waiting" in seen  # the spinner with elapsed time
        assert b"\r\x1b[K" in seen  # cleared when text starts
        assert b"\x1b[2mthinking\x1b[0m" in seen  # reasoning dimmed
        assert b"tokens" in seen  # the summary line

    @pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"NO_COLOR": "false"},
                                     {"TERM": "dumb"}],
                             ids=["NO_COLOR=1", "NO_COLOR=false", "TERM=dumb"])
    def test_no_color_or_a_dumb_terminal_gets_no_escape_codes_and_no_spinner(
            self, server: t.LocalServer, env: dict[str, str]) -> None:
        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.StreamReply([
            t.reasoning("thinking"), t.content("answer"), t.done()])))
        code, out, seen = on_terminal(server, gate, "hi", "-m", "m", env=env, hold=0.5)
        assert code == 0
        assert out == b"answer\n"
        assert b"thinking" in seen and b"tokens" in seen  # reasoning and summary still shown
        assert b"\x1b" not in seen  # no dim codes, no line clearing
        assert b"waiting" not in seen  # no spinner

    def test_an_empty_no_color_keeps_the_colours(self, server: t.LocalServer) -> None:
        # no-color.org: NO_COLOR counts only "when present and not an empty string".
        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.StreamReply([
            t.reasoning("thinking"), t.content("answer"), t.done()])))
        code, _, seen = on_terminal(server, gate, "hi", "-m", "m", env={"NO_COLOR": ""})
        assert code == 0
        assert b"\x1b[2mthinking\x1b[0m" in seen


def split_emoji_chunk(content: str) -> t.Step:
    """A chunk whose content is written with JSON escapes, so that it can carry half of
    a UTF-16 surrogate pair, as a gateway that splits an emoji between chunks sends."""
    escaped = json.dumps(content, ensure_ascii=True)
    return t.data('{"id":"c1","object":"chat.completion.chunk","created":0,"model":"m",'
                  f'"choices":[{{"index":0,"delta":{{"content":{escaped}}},'
                  '"finish_reason":null}]}')


class TestEncoding:
    def test_an_answer_ascii_cannot_show_is_replaced_not_a_traceback(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.reasoning("hmm \U0001f914 "), t.content("smile "),
                                      t.content("\U0001f600 and the rest"), t.done()]))
        r = run_bytes("chat", "hi", "-m", "m", env={**online(server),
                                                   "PYTHONIOENCODING": "ascii"})
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"smile ? and the rest\n"
        assert r.stderr.startswith(b"hmm \\U0001f914 ")  # stderr's own backslashreplace
        assert b"Traceback" not in r.stderr

    def test_a_cp1252_redirect_gets_what_cp1252_has_and_a_replacement_for_the_rest(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("caf\u00e9 \U0001f600 \u20ac5"), t.done()]))
        r = run_bytes("chat", "hi", "-m", "m", "-q",
                      env={**online(server), "PYTHONIOENCODING": "cp1252"})
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"caf\xe9 ? \x805\n"

    @pytest.mark.parametrize(("pieces", "shown"), [
        (["a\ud83d", "\ude00b"], "a\U0001f600b"),
        (["\ud83d", "\ude00", "\ud83d", "\ude01"], "\U0001f600\U0001f601"),
        (["ok\ud83d"], "ok\ufffd"),  # the second half never came
        (["\ude00 lone"], "\ufffd lone"),
    ], ids=["halves", "two-emoji", "high-at-end", "lone-low"])
    def test_surrogate_halves_in_separate_chunks_are_joined(
            self, server: t.LocalServer, pieces: list[str], shown: str) -> None:
        server.enqueue(t.StreamReply([*(split_emoji_chunk(p) for p in pieces), t.done()]))
        r = run_bytes("chat", "hi", "-m", "m", "-q",
                      env={**online(server), "PYTHONIOENCODING": "utf-8"})
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode("utf-8") == shown + "\n"

    def test_json_lines_stay_valid_json_when_the_encoding_cannot_show_the_text(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("caf\u00e9 \U0001f600"), t.done()]))
        r = run_bytes("chat", "hi", "-m", "m", "--json",
                      env={**online(server), "PYTHONIOENCODING": "ascii"})
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        assert lines[0]["choices"][0]["delta"]["content"] == "caf\u00e9 \U0001f600"

    def test_json_lines_carry_split_surrogate_halves_as_escapes(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([split_emoji_chunk("\ud83d"), split_emoji_chunk("\ude00"),
                                      t.done()]))
        r = run_bytes("chat", "hi", "-m", "m", "--json",
                      env={**online(server), "PYTHONIOENCODING": "utf-8"})
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        assert [c["choices"][0]["delta"]["content"] for c in lines] == ["\ud83d", "\ude00"]


class TestSurrogateJoiner:
    @staticmethod
    def utf16_halves(text: str) -> str:
        """*text* with each astral character as its two surrogates (what a JSON encoder
        that works in UTF-16 code units may send)."""
        units = text.encode("utf-16-le")
        return "".join(chr(int.from_bytes(units[i:i + 2], "little"))
                       for i in range(0, len(units), 2))

    @given(st.text(), st.lists(st.integers(min_value=0, max_value=200), max_size=8))
    def test_any_split_of_a_text_in_utf16_halves_reads_as_the_text(
            self, text: str, cuts: list[int]) -> None:
        text = "".join(c for c in text if not "\ud800" <= c <= "\udfff")
        halves = self.utf16_halves(text)
        bounds = sorted({0, len(halves), *(min(c, len(halves)) for c in cuts)})
        joiner = SurrogateJoiner()
        shown = "".join(joiner.feed(halves[a:b]) for a, b in zip(bounds, bounds[1:]))
        assert shown + joiner.end() == text

    def test_text_without_surrogates_passes_unchanged(self) -> None:
        joiner = SurrogateJoiner()
        piece = "plain \u00e9 \U0001f600"
        assert joiner.feed(piece) is piece
        assert joiner.end() == ""


class TestStdin:
    def test_a_prompt_that_is_not_utf8_is_a_one_line_usage_error(
            self, server: t.LocalServer) -> None:
        r = run_bytes("chat", "-", "-m", "m", stdin=b"caf\xe9 au lait\n",
                      env={**online(server), "PYTHONIOENCODING": "utf-8"})
        assert r.returncode == 2
        line = one_line(r.stderr.decode())
        assert line.startswith("alltoken: error: stdin is not UTF-8 text")
        assert "0xe9 at offset 3" in line
        assert server.requests == []  # nothing sent, nothing paid for

    def test_pythonioencoding_names_the_encoding_of_stdin(self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("ok"), t.done()]))
        r = run_bytes("chat", "-", "-m", "m", "-q", stdin=b"caf\xe9 au lait\n",
                      env={**online(server), "PYTHONIOENCODING": "latin-1"})
        assert r.returncode == 0, r.stderr
        assert server.requests[0].json["messages"][-1]["content"] == "caf\u00e9 au lait\n"

    def test_a_utf8_byte_order_mark_is_not_part_of_the_prompt(
            self, server: t.LocalServer) -> None:
        server.enqueue(t.StreamReply([t.content("ok"), t.done()]))
        r = run_bytes("chat", "-", "-m", "m", "-q", stdin=b"\xef\xbb\xbfcaf\xc3\xa9",
                      env={**online(server), "PYTHONIOENCODING": "utf-8"})
        assert r.returncode == 0, r.stderr
        assert server.requests[0].json["messages"][-1]["content"] == "caf\u00e9"

    @pytest.mark.parametrize("argv", [[b"caf\xe9", b"-m", b"m"],
                                      [b"hi", b"-m", b"m", b"--system", b"caf\xe9"]],
                             ids=["prompt", "system"])
    def test_an_argument_that_is_not_utf8_is_a_one_line_usage_error(
            self, server: t.LocalServer, argv: list[bytes]) -> None:
        r = subprocess.run([*CLI, "chat", *argv], cwd=ROOT, capture_output=True, timeout=30,
                           env=clean_env({**online(server), "LC_ALL": "C.UTF-8"}))
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr.decode())
        assert line.startswith("alltoken: error: the ") and "byte 0xe9" in line
        assert server.requests == []

    def test_ctrl_c_while_reading_stdin_exits_130_quietly(self, server: t.LocalServer) -> None:
        proc = subprocess.Popen([*CLI, "chat", "-", "-m", "m"], cwd=ROOT,
                                env=clean_env(online(server)), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until_reading_stdin(proc.pid)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        assert err == b"alltoken: interrupted\n"
        assert out == b"" and server.requests == []


#: read(2)'s number in /proc/<pid>/syscall, by machine.
_READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}


def wait_until_reading_stdin(pid: int) -> None:
    """Return once *pid* is blocked in read(0, ...), from ``/proc/<pid>/syscall``
    (Linux; skips elsewhere): a SIGINT sent earlier could land before Python is ready."""
    number = _READ_SYSCALL.get(os.uname().machine)
    if number is None:
        pytest.skip(f"read(2)'s syscall number is not known for {os.uname().machine}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/syscall") as f:
                fields = f.read().split()
        except OSError as exc:
            pytest.skip(f"cannot see what the process waits for: {exc}")
        if fields[:2] == [number, "0x0"]:
            return
        time.sleep(0.01)
    pytest.fail("the command line never read stdin")


class TestOptionRanges:
    @pytest.mark.parametrize(("args", "option"), [
        (["serve", "--port", "99999"], "serve: error: argument --port"),
        (["serve", "--port", "-1"], "serve: error: argument --port"),
        (["serve", "--pace", "-1"], "serve: error: argument --pace"),
        (["serve", "--pace", "nan"], "serve: error: argument --pace"),
        (["chat", "hi", "--offline", "--timeout", "0"], "chat: error: argument --timeout"),
        (["chat", "hi", "--offline", "--timeout", "inf"], "chat: error: argument --timeout"),
        (["chat", "hi", "--offline", "--timeout", "nan"], "chat: error: argument --timeout"),
        (["chat", "hi", "--offline", "--timeout", "1e12"], "chat: error: argument --timeout"),
        (["chat", "hi", "--offline", "--temperature", "nan"],
         "chat: error: argument --temperature"),
    ])
    def test_an_out_of_range_value_is_a_one_line_usage_error(
            self, args: list[str], option: str) -> None:
        r = run(*args)
        assert r.returncode == 2, r.stderr
        assert one_line(r.stderr).startswith(f"alltoken {option}: ")
        assert r.stdout == ""


class TestSignals:
    def test_main_works_from_a_worker_thread(self, server: t.LocalServer,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        server.enqueue(t.StreamReply([t.content("from a thread"), t.done()]))
        for name, value in online(server).items():
            monkeypatch.setenv(name, value)
        codes: list[int] = []
        worker = threading.Thread(target=lambda: codes.append(cli.main(["chat", "hi", "-m", "m",
                                                                         "-q"])))
        worker.start()
        worker.join(30)
        assert codes == [0]
        assert capsys.readouterr().out == "from a thread\n"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def test_a_job_started_with_sigint_ignored_survives_ctrl_c_and_finishes(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("first half"), t.wait(gate, 30),
                                      t.content(", second half"), t.done()]))
        # `trap "" INT` ignores SIGINT and exec keeps it ignored, as for `cmd &` in a script.
        proc = subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$@"', "sh", *CLI, "chat", "hi",
                                 "-m", "m", "-q"], cwd=ROOT, env=clean_env(online(server)),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            assert proc.stdout.read(len("first half")) == b"first half"
            proc.send_signal(signal.SIGINT)
            gate.set()
            out, err = proc.communicate(timeout=20)
        finally:
            gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert out == b", second half\n"
        assert err == b""

    def test_public_annotations_resolve_on_every_supported_python(self) -> None:
        for name in cli.__all__:
            typing.get_type_hints(getattr(cli, name))


class TestClosedStreams:
    def test_closed_stdout_is_an_error_on_stderr(self, server: t.LocalServer) -> None:
        r = run_in_shell(">&-", "chat", "hi", "-m", "m", env=online(server))
        assert r.returncode == 1
        assert one_line(r.stderr.decode()).startswith("alltoken: error: stdout is closed")
        assert server.requests == []

    def test_closed_stderr_is_an_error_on_stdout(self, server: t.LocalServer) -> None:
        r = run_in_shell("2>&-", "chat", "hi", "-m", "m", env=online(server))
        assert r.returncode == 1
        assert one_line(r.stdout.decode()).startswith("alltoken: error: stderr is closed")
        assert server.requests == []

    def test_a_full_disk_is_one_line_and_exit_1(self, server: t.LocalServer) -> None:
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full")
        server.enqueue(t.StreamReply([t.content("an answer"), t.done()]))
        r = run_in_shell(">/dev/full", "chat", "hi", "-m", "m", "-q", env=online(server))
        assert r.returncode == 1
        assert r.stderr.decode() == ("alltoken: error: cannot write to stdout: "
                                     "No space left on device\n")

    def test_a_reader_that_goes_away_ends_the_run_quietly(self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("first"), t.wait(gate, 30),
                                      t.content(" second"), t.done()]))
        proc = subprocess.Popen([*CLI, "chat", "hi", "-m", "m", "-q"], cwd=ROOT,
                                env=clean_env(online(server)), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            assert proc.stdout.read(len("first")) == b"first"
            proc.stdout.close()  # `| head -c 5`
            gate.set()
            err = proc.stderr.read()
            proc.stderr.close()
            proc.wait(timeout=20)
        finally:
            gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0
        assert err == b""


class TestOffline:
    def test_the_offline_demo_ignores_proxy_variables(self) -> None:
        dead = "http://127.0.0.1:9"
        env = {"HTTP_PROXY": dead, "http_proxy": dead, "ALL_PROXY": dead, "all_proxy": dead}
        full = clean_env(env)
        for name in ("NO_PROXY", "no_proxy"):
            full.pop(name, None)
        r = subprocess.run([*CLI, "chat", "--offline", "-q", "hi"], cwd=ROOT, env=full,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "offline model" in r.stdout


def test_the_summary_line_reads_the_streams_timings() -> None:
    """Time to first token, tokens/s, the total and the retries come from
    ``Stream.timings`` (measured from the request), not from the renderer's own clock."""
    import io
    from types import SimpleNamespace

    from alltoken._cli_render import Output, TextRenderer
    from alltoken._stream import Timings

    err = io.StringIO()
    renderer = TextRenderer(Output(io.StringIO(), "stdout"), Output(err, "stderr"), reasoning=True,
                            escapes=False, spinner=False, summary=True)
    stream = SimpleNamespace(usage=None, chunks=20, cost=None,
                             timings=Timings(headers=0.1, first_token=0.25, end=2.25,
                                             attempts=2))
    renderer.finish(stream)
    line = err.getvalue()
    assert "first token 250 ms" in line
    assert "10.0 tokens/s" in line  # 20 tokens in the 2 s after the first
    assert "2.25 s" in line and "2 requests" in line
