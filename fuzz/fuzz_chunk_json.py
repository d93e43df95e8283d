"""Invariant: whatever text a server puts in a ``data:`` line, turning it into a chunk
raises nothing but ProtocolError, and a parsed chunk's fields have their declared types.

Run: ``bash fuzz/run.sh``, or ``python fuzz/fuzz_chunk_json.py CORPUS fuzz/seeds/chunk_json``.
"""

from __future__ import annotations

import sys

try:
    import atheris
except ImportError:  # pragma: no cover - linting without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from alltoken import ProtocolError
        from alltoken._types import ChatCompletionChunk, ErrorInfo, parse_chunk, parse_cost
else:  # pragma: no cover
    from alltoken import ProtocolError
    from alltoken._types import ChatCompletionChunk, ErrorInfo, parse_chunk, parse_cost


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


def test_one_input(data: bytes) -> None:
    check(data.decode("utf-8", "replace"))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
