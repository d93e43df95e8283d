"""Invariant: whatever text a server puts in a ``data:`` line, turning it into a chunk
raises nothing but ProtocolError, and a parsed chunk's fields have their declared types.
And the stream's parser (``_ChunkParser``, which decodes only the string that differs
when chunks share their text) gives what ``parse_chunk`` gives for every text of a
sequence: the input split at each 0x01 byte, twice over.

Run: ``bash fuzz/run.sh``, or ``python fuzz/fuzz_chunk_json.py CORPUS fuzz/seeds/chunk_json``.
"""

from __future__ import annotations

import json
import sys
from typing import Callable

try:
    import atheris
except ImportError:  # pragma: no cover - linting without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from alltoken import ProtocolError
        from alltoken._types import (
            ChatCompletionChunk,
            ErrorInfo,
            _ChunkParser,
            parse_chunk,
            parse_cost,
        )
else:  # pragma: no cover
    from alltoken import ProtocolError
    from alltoken._types import (
        ChatCompletionChunk,
        ErrorInfo,
        _ChunkParser,
        parse_chunk,
        parse_cost,
    )


def check(text: str) -> None:
    try:
        result = parse_chunk(text)
    except ProtocolError:
        pass
    else:
        if isinstance(result, ChatCompletionChunk):
            for choice in result.choices:
                assert isinstance(choice.index, int)
                delta = choice.delta
                assert delta.content is None or isinstance(delta.content, str)
                assert delta.reasoning_content is None or isinstance(delta.reasoning_content, str)
                for call in delta.tool_calls or []:
                    assert isinstance(call.index, int)
        else:
            assert isinstance(result, ErrorInfo) and isinstance(result.message, str)
    try:
        parse_cost(text)
    except ProtocolError:
        pass


def outcome(parse: Callable[[str], object], text: str) -> tuple[str, str]:
    """The parse as text that tells every difference apart (``raw`` as JSON)."""
    try:
        got = parse(text)
    except ProtocolError as exc:
        return "raises", str(exc)
    raws: list[object] = [got.raw]  # type: ignore[attr-defined]
    if isinstance(got, ChatCompletionChunk):
        raws += [x for c in got.choices for x in (c.raw, c.delta.raw)]
    else:
        assert isinstance(got, ErrorInfo)
    try:
        return repr(got), json.dumps(raws)
    except RecursionError:  # nesting the decoder allows and the encoder does not
        return "deep", "deep"


def check_stream(texts: list[str]) -> None:
    parse = _ChunkParser().parse
    for text in texts + texts:
        assert outcome(parse, text) == outcome(parse_chunk, text), text


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    check(text)
    check_stream(text.split("\x01")[:4])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
