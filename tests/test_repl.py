"""The interactive chat, driven through a pseudo-terminal: ``alltoken chat`` with no
prompt, its stdin, stdout and stderr on the terminal, which is its controlling terminal,
so that a typed Ctrl-C (``\\x03``) is a SIGINT from the line discipline as for a user.

Every step waits for specific output (bounded), never for a fixed time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

import pytest

from alltoken import testing as t

pty = pytest.importorskip("pty", reason="no pty module on this platform")
termios = pytest.importorskip("termios", reason="no termios module on this platform")
fcntl = pytest.importorskip("fcntl", reason="no fcntl module on this platform")

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-repl"

#: Run in the child: make the terminal on stdin the controlling one (the child is the
#: leader of a new session), then run the command line, without readline when asked.
_CHILD = """\
import fcntl, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
if sys.argv[1] == "no-readline":
    sys.modules["readline"] = None  # import readline now raises ImportError
from alltoken.cli import main
sys.exit(main(sys.argv[2:]))
"""


class Terminal:
    """The command line on a pseudo-terminal: :meth:`type` keys, :meth:`expect` output."""

    def __init__(self, args: list[str], env: dict[str, str], *, readline: bool = True,
                 stdout: Optional[int] = None) -> None:
        try:
            self.master, slave = pty.openpty()
        except OSError as exc:
            pytest.skip(f"no pseudo-terminal available: {exc}")
        # 200 columns: readline wraps long lines with escape codes on a narrow terminal.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, bytes([24, 0, 200, 0, 0, 0, 0, 0]))
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("ALLTOKEN_")
                    and k not in ("NO_COLOR", "PYTHONIOENCODING", "PYTHONUTF8")}
        full_env.update({"TERM": "dumb", "PYTHONUTF8": "1", **env})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, "readline" if readline else "no-readline", *args],
            cwd=ROOT, env=full_env, stdin=slave, stdout=slave if stdout is None else stdout,
            stderr=slave,
            start_new_session=True)
        os.close(slave)
        self.seen = bytearray()
        self.pos = 0  # expect() searches from here
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                piece = os.read(self.master, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                piece = b""
            with self._changed:
                if not piece:
                    self._eof = True
                    self._changed.notify_all()
                    return
                self.seen.extend(piece)
                self._changed.notify_all()

    def expect(self, pattern: Union[bytes, str], timeout: float = 10) -> re.Match[bytes]:
        """Wait until *pattern* (a regex) appears after the last match; return it."""
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = regex.search(bytes(self.seen), self.pos)
                if found:
                    self.pos = found.end()
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    pytest.fail(f"{pattern!r} never appeared; after position {self.pos} "
                                f"the terminal shows {bytes(self.seen[self.pos:])!r}")
                self._changed.wait(left)

    def type(self, keys: Union[str, bytes]) -> None:
        os.write(self.master, keys.encode() if isinstance(keys, str) else keys)

    def wait(self, timeout: float = 10) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        os.close(self.master)


@pytest.fixture
def server() -> Iterator[t.LocalServer]:
    with t.LocalServer(pace=0, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for term in started:
        term.close()


def chat(terminals: list[Terminal], *args: str, server: Optional[t.LocalServer] = None,
         readline: bool = True, env: Optional[dict[str, str]] = None,
         stdout: Optional[int] = None) -> Terminal:
    full_env = dict(env or {})
    if server is not None:
        full_env.update({"ALLTOKEN_API_KEY": KEY, "ALLTOKEN_BASE_URL": server.base_url})
    term = Terminal(["chat", *args], full_env, readline=readline, stdout=stdout)
    terminals.append(term)
    return term


PROMPT = rb"(?m)^> "


def messages(server: t.LocalServer) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in server.requests[-1].json["messages"]]


@pytest.mark.parametrize("readline", [True, False], ids=["readline", "no-readline"])
class TestConversation:
    def test_history_is_sent_ctrl_c_keeps_the_partial_answer_and_commands_work(
            self, server: t.LocalServer, terminals: list[Terminal], readline: bool) -> None:
        gate = threading.Event()
        server.enqueue(
            t.StreamReply([t.content("first answer"), t.done()]),
            t.StreamReply([t.content("partial"), t.wait(gate, 30), t.content(" never"),
                           t.done()]),
            t.StreamReply([t.content("third answer"), t.done()]),
            t.StreamReply([t.content("after reset"), t.done()]),
            t.StreamReply([t.content("last"), t.done()]),
        )
        term = chat(terminals, "-m", "m1", "--system", "be brief", "--quiet",
                    server=server, readline=readline)
        term.expect(r"alltoken chat with m1 .* /help for commands")
        term.expect(PROMPT)

        term.type("hello\r")
        term.expect("first answer")
        term.expect(PROMPT)
        assert messages(server) == [("system", "be brief"), ("user", "hello")]

        term.type("tell me more\r")
        term.expect("partial")
        term.type("\x03")  # Ctrl-C while the answer streams
        term.expect(r"\(interrupted; the partial answer is kept\)")
        term.expect(PROMPT)
        gate.set()
        server.wait_for_connections(0)  # the aborted request's connection was closed

        term.type("and then?\r")
        term.expect("third answer")
        term.expect(PROMPT)
        assert messages(server) == [
            ("system", "be brief"), ("user", "hello"), ("assistant", "first answer"),
            ("user", "tell me more"), ("assistant", "partial"), ("user", "and then?")]
        assert b"never" not in term.seen

        term.type("/reset\r")
        term.expect(r"\(conversation cleared, system message kept\)")
        term.type("/model m2\r")
        term.expect(r"\(model: m2\)")
        term.type("/bogus\r")
        term.expect(r"unknown command /bogus; /help lists the commands")
        term.type("half typed")
        term.expect("half typed")
        term.type("\x03")  # Ctrl-C at the prompt: the line is dropped
        term.expect(PROMPT)
        term.type("fresh start\r")
        term.expect("after reset")
        term.expect(PROMPT)
        assert messages(server) == [("system", "be brief"), ("user", "fresh start")]
        assert server.requests[-1].json["model"] == "m2"
        assert len(server.requests) == 4  # the commands and the dropped line sent nothing

        term.type("/system\r")
        term.expect(r"\(system message removed\)")
        term.type("//etc is a directory\r")
        term.expect("last")
        assert messages(server) == [("user", "fresh start"), ("assistant", "after reset"),
                                    ("user", "/etc is a directory")]
        term.expect(PROMPT)

        term.type("\x04")  # Ctrl-D on an empty line
        assert term.wait() == 0
        assert b"Traceback" not in term.seen


class TestTurns:
    def test_summary_line_after_each_answer_and_help_lists_the_commands(
            self, server: t.LocalServer, terminals: list[Terminal]) -> None:
        server.enqueue(t.StreamReply([t.reasoning("hmm "), t.content("answer"), t.done(),
                                      t.cost("0.5")]))
        term = chat(terminals, "-m", "m", server=server)
        term.expect(PROMPT)
        term.type("/help\r")
        for command in ("/reset", "/model", "/system", "/help", "/exit"):
            term.expect(re.escape(command))
        term.expect(PROMPT)
        term.type("q\r")
        term.expect("hmm")  # the reasoning
        term.expect("answer")
        term.expect(r"\d+ tokens · \$0\.5 · ")
        term.expect(PROMPT)
        term.type("/exit\r")
        assert term.wait() == 0

    def test_an_api_error_is_one_line_and_the_conversation_goes_on_without_that_turn(
            self, server: t.LocalServer, terminals: list[Terminal]) -> None:
        server.enqueue(t.ErrorReply(400, message="the model is tired"),
                       t.StreamReply([t.content("fine now"), t.done()]))
        term = chat(terminals, "-m", "m", "-q", server=server)
        term.expect(PROMPT)
        term.type("first\r")
        term.expect(r"alltoken: BadRequestError: .*the model is tired")
        term.expect(PROMPT)
        term.type("second\r")
        term.expect("fine now")
        assert messages(server) == [("user", "second")]
        term.expect(PROMPT)
        term.type("\x04")
        assert term.wait() == 0

    def test_ctrl_c_before_the_first_token_keeps_nothing(
            self, server: t.LocalServer, terminals: list[Terminal]) -> None:
        gate = threading.Event()
        server.enqueue(t.DelayedReply(gate, t.StreamReply([t.content("late"), t.done()]),
                                      timeout=30),
                       t.StreamReply([t.content("ok"), t.done()]))
        term = chat(terminals, "-m", "m", "-q", server=server)
        term.expect(PROMPT)
        term.type("slow one\r")
        server.wait_for_requests(1)
        term.type("\x03")
        term.expect(r"\(interrupted\)")
        term.expect(PROMPT)
        gate.set()
        term.type("next\r")
        term.expect("ok")
        assert messages(server) == [("user", "next")]
        term.expect(PROMPT)
        term.type("\x04")
        assert term.wait() == 0

    def test_offline_conversation_with_the_default_model(
            self, terminals: list[Terminal]) -> None:
        term = chat(terminals, "--offline", "-q")
        term.expect(r"alltoken chat with alltoken-local \(offline\)")
        term.expect(PROMPT)
        term.type("hello\r")
        term.expect("I am the offline model")
        term.expect(PROMPT)
        term.type("\x04")
        assert term.wait() == 0


    def test_a_line_that_is_not_text_is_not_sent(
            self, server: t.LocalServer, terminals: list[Terminal]) -> None:
        server.enqueue(t.StreamReply([t.content("ok"), t.done()]))
        term = chat(terminals, "-m", "m", "-q", server=server, readline=False)
        term.expect(PROMPT)
        term.type(b"caf\xe9\r")  # Latin-1 on a UTF-8 terminal
        term.expect(r"not sent: .*0xe9")
        term.expect(PROMPT)
        term.type("caf\u00e9\r")
        term.expect("ok")
        assert messages(server) == [("user", "caf\u00e9")]
        term.expect(PROMPT)
        term.type("\x04")
        assert term.wait() == 0


    def test_with_stdout_in_a_file_the_file_gets_only_the_answers(
            self, terminals: list[Terminal], tmp_path: Path) -> None:
        with open(tmp_path / "answers.txt", "wb") as f:
            term = chat(terminals, "--offline", "-m", "echo", "-q", stdout=f.fileno())
        term.expect(PROMPT)  # the prompt goes to the terminal on stderr
        term.type("one two\r")
        term.expect(PROMPT)
        term.type("\x04")
        assert term.wait() == 0
        assert (tmp_path / "answers.txt").read_text() == "one two\n"


class TestNotATerminal:
    def test_no_prompt_with_piped_stdin_is_a_usage_error(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLTOKEN_")}
        r = subprocess.run([sys.executable, "-m", "alltoken", "chat", "--offline"],
                           cwd=ROOT, env=env, input="hi\n", capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2
        assert r.stderr == ("alltoken: error: give a prompt, or - to read it from stdin "
                            "(a conversation needs stdin to be a terminal)\n")

    def test_record_needs_a_prompt(self, terminals: list[Terminal]) -> None:
        term = chat(terminals, "--offline", "--record", os.devnull)
        term.expect("--record saves one answer: give a prompt")
        assert term.wait() == 2
