"""The ways a script iterates a stream, each written the way a script writes it.

The point of every test here is what happens when the caller holds *no* reference to the
object a call returned: ``for tok in alltoken.stream(...)`` keeps nothing but what
``iter()`` gave back. So no test binds the stream to a name before iterating it; a test
that did would pass whether or not the idiom works. Nor does an ``assert`` contain the
idiom: pytest's assertion rewriting keeps every sub-expression's value alive.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import KEY, wait_closed

import alltoken
from alltoken import testing as t

PROMPT = "one two three four"
WORDS = ["one", " two", " three", " four"]
ROOT = Path(__file__).resolve().parent.parent


def create(client: alltoken.AllToken) -> alltoken.Stream:
    return client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": PROMPT}], stream=True)


def text_stream(server: t.LocalServer) -> alltoken.TextStream:
    return alltoken.stream(PROMPT, model="echo", api_key=KEY, base_url=server.base_url)


def content(chunk: alltoken.ChatCompletionChunk) -> str:
    return "".join(c.delta.content or "" for c in chunk.choices)


class TestForOverATemporary:
    def test_for_over_create_stream_true_yields_every_chunk(
            self, client: alltoken.AllToken) -> None:
        pieces = []
        for chunk in create(client):
            pieces.append(content(chunk))
        assert "".join(pieces) == PROMPT

    def test_for_over_alltoken_stream_yields_every_piece(self, server: t.LocalServer) -> None:
        pieces = []
        for tok in text_stream(server):
            pieces.append(tok)
        assert pieces == WORDS

    def test_generator_expression_over_create(self, client: alltoken.AllToken) -> None:
        gen = (content(c) for c in create(client))
        assert "".join(gen) == PROMPT

    def test_generator_expression_over_alltoken_stream(self, server: t.LocalServer) -> None:
        gen = (tok.upper() for tok in text_stream(server))
        assert "".join(gen) == PROMPT.upper()

    def test_map_over_a_temporary(self, client: alltoken.AllToken) -> None:
        joined = "".join(map(content, create(client)))
        assert joined == PROMPT

    def test_zip_of_two_temporaries(self, server: t.LocalServer) -> None:
        pairs = list(zip(text_stream(server), text_stream(server)))
        assert pairs == list(zip(WORDS, WORDS))

    def test_islice_takes_the_first_pieces_then_the_socket_closes(
            self, server: t.LocalServer) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.content("b"), t.wait(gate),
                                      t.content("c"), t.done()]))
        try:
            first = list(itertools.islice(
                alltoken.stream("x", model="m", api_key=KEY, base_url=server.base_url), 2))
            assert first == ["a", "b"]
            wait_closed(server)  # the temporary was dropped mid-answer: its socket closes
        finally:
            gate.set()

    def test_next_of_iter_of_a_temporary_gives_the_first_piece(
            self, server: t.LocalServer) -> None:
        first = next(iter(text_stream(server)))
        assert first == "one"
        wait_closed(server)

    def test_next_of_iter_twice_on_a_held_stream_continues(
            self, client: alltoken.AllToken) -> None:
        s = create(client)
        # a dropped iter() must not end the stream it came from
        first = [content(next(iter(s))) for _ in range(len(WORDS) + 1)]
        assert "".join(first) == PROMPT
        s.close()


class TestDroppedWithoutIterating:
    @pytest.mark.parametrize("kind", ["create", "stream"])
    def test_a_stream_never_iterated_closes_its_connection_when_dropped(
            self, server: t.LocalServer, client: alltoken.AllToken, kind: str) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.done()]))
        try:
            if kind == "create":
                create(client)
            else:
                alltoken.stream("x", model="m", client=client)
            wait_closed(server)
        finally:
            gate.set()

    def test_a_loop_left_with_break_closes_the_connection(
            self, server: t.LocalServer, client: alltoken.AllToken) -> None:
        gate = threading.Event()
        server.enqueue(t.StreamReply([t.content("a"), t.wait(gate), t.done()]))
        try:
            for _ in create(client):
                break
            wait_closed(server)
        finally:
            gate.set()


def test_the_quick_start_idiom_prints_the_answer_when_run_as_a_script(
        server: t.LocalServer, tmp_path: Path) -> None:
    """A script file run by the interpreter: nothing else holds the stream."""
    script = tmp_path / "quick.py"
    script.write_text(textwrap.dedent("""\
        import alltoken

        for tok in alltoken.stream("one two three four", model="echo"):
            print(tok, end="", flush=True)
        print()
        for chunk in alltoken.AllToken().chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "five six"}],
                stream=True):
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="")
        print()
    """), encoding="utf-8")
    env = dict(os.environ, ALLTOKEN_API_KEY=KEY, ALLTOKEN_BASE_URL=server.base_url,
               PYTHONPATH=str(ROOT))
    env.pop("HTTP_PROXY", None)
    env.pop("http_proxy", None)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "one two three four\nfive six\n"
