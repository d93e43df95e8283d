"""Every Python example in README.rst runs, against the local server, as a test.

The examples use the environment (``ALLTOKEN_API_KEY``, ``ALLTOKEN_BASE_URL``) as a
reader's would; here it points at ``alltoken.testing.LocalServer``. Where an example
needs a particular answer (tool calls), a scripted reply is queued first.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from alltoken import testing as t

README = Path(__file__).resolve().parent.parent / "README.rst"


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of each ``.. code-block:: python`` in the README."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == ".. code-block:: python":
            start = i + 1
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                body.append(lines[i][4:])
                i += 1
            blocks.append((start, "\n".join(body).strip() + "\n"))
        else:
            i += 1
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 8


def test_readme_opens_with_the_two_commands_ci_and_newcomers_use() -> None:
    text = README.read_text(encoding="utf-8")
    first_literal = text.index("::\n")
    assert "python3 -m alltoken chat --offline" in text[first_literal : first_literal + 200]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 tests/run.py" in text
    assert re.search(r"tests/run\.py", ci)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[t.LocalServer]:
    with t.LocalServer(pace=0.005) as server:
        monkeypatch.setenv("ALLTOKEN_API_KEY", "sk-readme")
        monkeypatch.setenv("ALLTOKEN_BASE_URL", server.base_url)
        yield server


def offline_answer(server: t.LocalServer, prompt: str) -> str:
    """The local server's answer to *prompt*, asked without the client under test."""
    import json
    import urllib.request

    body = json.dumps({"model": "m", "stream": False,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    req = urllib.request.Request(server.base_url + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as resp:
        answer: str = json.load(resp)["choices"][0]["message"]["content"]
    return answer


def expected_output(code: str, server: t.LocalServer) -> str:
    """A regular expression for everything the example prints (matched in full)."""
    e = re.escape
    if "SSEDecoder()" in code:  # the sans-IO decoder, on its own
        return e("[ServerSentEvent(data='hello', event='message', id=''), "
                 "ServerSentEvent(data='world', event='message', id=''), "
                 "Comment(text='cost')]\n")
    if "stream.completion()" in code:
        return (e(offline_answer(server, "Hello there") + "\n")
                + r"chatcmpl-local stop \d+ True\n")
    if "tool_call_arguments" in code:
        return e("{'path': 'notes.t'}\n{'path': 'notes.txt', 'content': 'Dear'}\n"
                 "{'path': 'notes.txt', 'content': 'Dear diary,'}\n"
                 + "{'path': 'notes.txt', 'content': 'Dear diary, today...'}\n" * 2)
    if "stream.timings" in code:
        return r"None\nheaders \d+ ms, first token \d+ ms, end \d+ ms, 1 attempt\(s\)\n"
    if ".sse()" in code:
        return e('data: {"id": "chatcmpl-local", "object\ndata: [DONE]\n: {"cost":"\n')
    if "parse_partial_json" in code:
        return e("{'city': 'Par'}\n{'days': [1]}\n{'path': 'a.t'} False\n"
                 "{'path': 'a.txt', 'lines': [1]} False\n"
                 "{'path': 'a.txt', 'lines': [1, 2]} True\n")
    if 'alltoken.stream("Explain quantum computing"' in code:  # the quick start
        return e(offline_answer(server, "Explain quantum computing") + "\n")
    if '"Solve 15! / 13!"' in code:
        return (e(offline_answer(server, "Solve 15! / 13!") + "\n")
                + r"stop Usage\(.*\) Cost\(.*\) req-local-\d+\n")
    if "step by step: 15! / 13!" in code:
        return e(offline_answer(server, "Solve this step by step: 15! / 13!") + "\n")
    if "tools=" in code:
        return e("call_1 get_weather {'city': 'Paris'}\n")
    if '"Say hi"' in code:
        return r"0\.\d+ USD for \d+\+\d+ tokens\n"
    if "signal=signal" in code:
        return r"cancelled after \d+ characters\n"
    if "ReplayReply" in code:
        return e("Hello! I am the offline model ") + r"0\.\d+\n"
    if "def handler(event, context)" in code:
        return ""  # defines the handler; tests/test_lambda.py invokes it
    if "max_retries=3" in code or "Timeout(connect=5" in code or "LocalServer(" in code:
        return ""  # prints nothing when all goes well (the asserts inside check)
    raise AssertionError("a README example without an expected output: add one here")


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line{n}" for n, _ in BLOCKS])
def test_readme_example_prints_what_it_should(env: t.LocalServer, line: int,
                                              code: str) -> None:
    if "tools=" in code:
        env.enqueue(t.StreamReply([
            t.tool_call(0, id="call_1", name="get_weather", arguments='{"city": '),
            t.tool_call(0, arguments='"Paris"}'), t.finish("tool_calls"), t.done()]))
    want = expected_output(code, env)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        exec(compile(code, f"README.rst:{line}", "exec"), {"__name__": "__readme__"})
    assert re.fullmatch(want, out.getvalue(), re.DOTALL), out.getvalue()
    if not any(marker in code for marker in ("SSEDecoder()", "LocalServer(",
                                             "parse_partial_json", "def handler(")):
        assert env.requests, "the example made no request"
