"""Invariant: for any text, ``parse_partial_json`` returns a value or raises
``JSONDecodeError`` at the first character no JSON text can continue with; fed to
``PartialJSON`` in any split it gives the same value (or error) after every feed; and
where ``json.loads`` accepts the text, both give ``json.loads``'s value.

Run: ``bash fuzz/run.sh fuzz/fuzz_partial_json.py``, or
``python fuzz/fuzz_partial_json.py CORPUS fuzz/seeds/partial_json``. An input is one
control byte (the size of the pieces for ``PartialJSON``: 1 to 16 characters, cycled
with 2 and 5) followed by the text as UTF-8 (invalid bytes replaced).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

try:
    import atheris
except ImportError:  # pragma: no cover - linting without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from alltoken._partial_json import PartialJSON, parse_partial_json
else:  # pragma: no cover
    from alltoken._partial_json import PartialJSON, parse_partial_json


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)


def check(text: str, size: int) -> None:
    error: Optional[json.JSONDecodeError] = None
    try:
        value = parse_partial_json(text)
    except json.JSONDecodeError as exc:
        error = exc
        assert 0 <= exc.pos < len(text)
        parse_partial_json(text[: exc.pos])  # the text before the error is a prefix
    except RecursionError:  # pragma: no cover - never expected: the stack is explicit
        raise
    else:
        try:
            expected = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            assert _same(value, expected), (text, value, expected)
    parser = PartialJSON()
    sizes = [size, 2, 5]
    start = 0
    k = 0
    while start < len(text):
        end = start + sizes[k % 3]
        k += 1
        try:
            parser.feed(text[start:end])
        except json.JSONDecodeError as exc:
            assert error is not None and exc.pos == error.pos, (text, exc, error)
            return
        start = end
        if error is None or start <= error.pos:
            assert _same(parser.value, parse_partial_json(text[:start])), text[:start]
    assert error is None, (text, error)
    assert _same(parser.value, value)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    check(data[1:].decode("utf-8", "replace"), data[0] % 16 + 1)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
