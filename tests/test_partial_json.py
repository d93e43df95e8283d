"""``alltoken._partial_json``: the value of a prefix of a JSON document.

Examples first, then hypothesis properties against two independent judges:

- :func:`reference`, a slow partial parser written to be obviously right: it cuts the
  prefix back, character by character, until json.loads accepts it with its open
  strings and brackets closed, after leaving out a number that may still grow and a
  high surrogate that may still pair. ``parse_partial_json`` must equal it on every
  prefix of every generated document.
- :func:`extends`, the meaning of "consistent with the full document": a prefix's value
  is the document's value with containers cut short, the last string cut short, and the
  last unsettled value left out. Every prefix's value must extend to the next prefix's,
  and to the document's.

Invalid text is made by inserting, at a generated position, a character that cannot
continue the text there; the parser must raise ``ValueError`` at exactly that position:
an error's ``pos`` is the first character that no JSON text can continue with.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from alltoken._partial_json import PartialJSON, parse_partial_json

# -- judges ---------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down, NaN equal to NaN, order of keys
    included (``repr`` tells 1 from 1.0 from True, and -0.0 from 0.0)."""
    return type(a) is type(b) and repr(a) == repr(b)


def extends(part: Any, full: Any, top: bool = True) -> bool:
    """Whether *part* is what a prefix of *full*'s text may give: *full* with arrays and
    objects cut short, the last string cut short, and the last value that had not
    settled left out. At the top level *part* may be None (nothing yet) and a number
    may be any number (``12`` is the value of the prefix ``"12"`` of ``"125"``)."""
    if top and part is None:
        return True
    if isinstance(full, list):
        if type(part) is not list or len(part) > len(full):
            return False
        if not all(same(a, b) for a, b in zip(part[:-1], full)):
            return False
        return not part or extends(part[-1], full[len(part) - 1], top=False)
    if isinstance(full, dict):
        if type(part) is not dict or len(part) > len(full):
            return False
        keys, full_keys = list(part), list(full)
        if keys != full_keys[: len(keys)]:
            return False
        if not all(same(part[k], full[k]) for k in keys[:-1]):
            return False
        return not keys or extends(part[keys[-1]], full[keys[-1]], top=False)
    if isinstance(full, str):
        return type(part) is str and full.startswith(part)
    if top and type(full) in (int, float):
        return type(part) in (int, float)
    return same(part, full)


_NUMBER_TAIL = re.compile(r"[-+.eE0-9]+\Z")
_HIGH_SURROGATE_END = re.compile(r"(\\+)u[dD][89abAB][0-9a-fA-F]{2}\Z")
_LOW_SURROGATE_START = re.compile(r"(?:\\(?:u(?:[dD](?:[c-fC-F][0-9a-fA-F]?)?)?)?)?")


def _open_at(text: str) -> list[tuple[bool, str]]:
    """For each cut 0..len(text): whether it is inside a string, and the brackets open."""
    states = [(False, "")]
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
        states.append((in_string, "".join(stack)))
    return states


def reference(text: str, states: Optional[list[tuple[bool, str]]] = None) -> Any:
    """The value of the JSON prefix *text*, slowly and obviously (valid prefixes only).
    *states* may pass ``_open_at`` of any text that *text* begins."""
    if states is None:
        states = _open_at(text)
    cut = len(text)
    in_string, stack = states[cut]
    tail = None if in_string else _NUMBER_TAIL.search(text)
    if tail is not None and not (tail.start() and text[tail.start() - 1].isalpha()):
        # A number runs to the end: it may grow, so it is left out, unless it is the
        # whole (complete) document.
        if not stack:
            try:
                return json.loads(text)
            except ValueError:
                pass
        cut = tail.start()
    for k in range(cut, -1, -1):
        in_string, stack = states[k]
        head = text[:k]
        if in_string:
            high = _HIGH_SURROGATE_END.search(head)
            if (
                high is not None
                and len(high.group(1)) % 2 == 1
                and _LOW_SURROGATE_START.fullmatch(text[k:])
            ):
                continue  # the next characters may still pair it with a low surrogate
        closers = ('"' if in_string else "") + "".join(
            "]" if c == "[" else "}" for c in reversed(stack)
        )
        try:
            return json.loads(head + closers)
        except ValueError:
            continue
    return None


# -- documents ------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=6)
    | st.text(st.characters(exclude_categories=()), max_size=4)  # lone surrogates too
    | st.sampled_from(["\\", '"', "\U0001f600", "\ud83d", "\ude00", "\x00\x1f", "/"])
)
values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=10,
)
_whitespace = st.text(st.sampled_from(" \t\n\r"), max_size=2)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A JSON document: a generated value through json.dumps with drawn separators,
    indent and ensure_ascii, and whitespace around it."""
    separators = draw(
        st.sampled_from([None, (",", ":"), (", ", ": "), (" ,\n", " :\t"), ("\r\n,", ":  ")])
    )
    text = json.dumps(
        draw(values),
        separators=separators,
        indent=draw(st.sampled_from([None, 0, 2, "\t"])),
        ensure_ascii=draw(st.booleans()),
    )
    return draw(_whitespace) + text + draw(_whitespace)


def cuts(draw: st.DrawFn, text: str) -> list[str]:
    """*text* in drawn pieces (empty pieces included)."""
    points = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


# -- parse_partial_json ---------------------------------------------------------------


class TestValues:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", None),
            (" \n\t\r", None),
            ("[", []),
            ("{", {}),
            ('{"a": [1, {"b": true', {"a": [1, {"b": True}]}),
            ('{"a": 1, "b', {"a": 1}),
            ('{"a": 1, "b"', {"a": 1}),
            ('{"a": 1, "b":', {"a": 1}),
            ('{"a": 1, "b": ', {"a": 1}),
            ('{"a": 1, "b": "', {"a": 1, "b": ""}),
            ('{"a": 1, "b": "xy', {"a": 1, "b": "xy"}),
            ('{"a": 1, "b": [', {"a": 1, "b": []}),
            ("[1, 12", [1]),
            ("[1, 12 ", [1, 12]),
            ("[1, 12,", [1, 12]),
            ("[1.", []),
            ("[1.5e", []),
            ("[1.5e+", []),
            ("[-", []),
            ("[tru", []),
            ("[true", [True]),
            ("[nul", []),
            ("[null", [None]),
            ("[-Inf", []),
            ("[-Infinity", [float("-inf")]),
            ("[Infinity, NaN", [float("inf"), float("nan")]),
            ("12", 12),
            ("12 ", 12),
            ("1.", None),
            ("1e", None),
            ("-", None),
            ("-0", 0),
            ("-0.0", -0.0),
            ("1E400", float("inf")),
            ("tru", None),
            ("null", None),
            ('"ab', "ab"),
            ('"ab\\', "ab"),
            ('"ab\\u', "ab"),
            ('"ab\\u00', "ab"),
            ('"ab\\u00e9', "ab\u00e9"),
            ('"ab\\n', "ab\n"),
            ('"ab\\\\', "ab\\"),
            ('"ab\\"', 'ab"'),
            ('"\\ud83d', ""),
            ('"\\ud83d\\', ""),
            ('"\\ud83d\\ude0', ""),
            ('"\\ud83d\\ude00', "\U0001f600"),
            ('"\\ud83d\\u00', "\ud83d"),
            ('"\\ud83dx', "\ud83dx"),
            ('"\\ude00', "\ude00"),
            ('{"a":1,"a":2}', {"a": 2}),
            ('{"a":1,"b":2,"a":"x', {"a": "x", "b": 2}),
            ('{"a":1,"b":2,"a":3', {"a": 1, "b": 2}),
            ("[[[", [[[]]]),
            ('[{"a": [{"b": "c', [{"a": [{"b": "c"}]}]),
        ],
    )
    def test_value_of_a_prefix(self, text: str, expected: Any) -> None:
        assert same(parse_partial_json(text), expected)
        assert same(reference(text), expected)

    @pytest.mark.parametrize(
        "text",
        [
            '{"a": 1, "b": [1, 2.5, -3e2, "x\\u00e9\\n"], "c": {"d": null}}',
            "[1E5, 2e-3, -0, 0.0, 1E+2, 123456789012345678901234567890]",
            '  "\\ud83d\\ude00 \\ud83d \\ude00"  ',
            "[NaN, Infinity, -Infinity]",
            "[[], {}, [[]], {\"\": {}}]",
            "1.5",
            "true",
        ],
    )
    def test_a_complete_document_gives_json_loads_value(self, text: str) -> None:
        assert same(parse_partial_json(text), json.loads(text))

    def test_nan_and_infinity_are_json_loads_own_objects(self) -> None:
        assert parse_partial_json("[NaN, Infinity") == json.loads("[NaN, Infinity]")
        assert parse_partial_json("NaN") is json.loads("NaN")

    def test_nesting_deeper_than_json_can_recurse_is_parsed(self) -> None:
        depth = 100_000
        for text in ("[" * depth, "[" * depth + "]" * depth):
            value = parse_partial_json(text)
            for _ in range(depth - 1):
                assert type(value) is list and len(value) == 1
                value = value[0]
            assert value == []

    def test_text_must_be_str(self) -> None:
        with pytest.raises(TypeError, match="text must be str, not bytes"):
            parse_partial_json(b"[1]")  # type: ignore[arg-type]

    @given(documents())
    def test_every_prefix_equals_the_reference_and_extends_to_the_document(
        self, text: str
    ) -> None:
        full = json.loads(text)
        states = _open_at(text)
        previous: Any = None
        for k in range(len(text) + 1):
            value = parse_partial_json(text[:k])
            assert same(value, reference(text[:k], states)), text[:k]
            assert extends(value, full), text[:k]
            if type(full) not in (int, float):  # "1" gives 1, "1." None, "1.5" 1.5
                assert extends(previous, value), text[:k]
            previous = value
        assert same(previous, full)


    @given(
        st.lists(
            st.sampled_from(
                ["a", "\\n", "\\\\", '\\"', "\\u00e9", "\\ud83d\\ude00", "\\ud83d", "\\ude00",
                 "\u00e9", "\\/", "\\uDBFF\\uDFFF"]
            ),
            min_size=4,
            max_size=16,
        ),
        st.data(),
    )
    def test_a_long_string_in_progress_is_decoded_up_to_its_end(
        self, parts: list[str], data: st.DataObject
    ) -> None:
        # Long enough for the C head decoding, with escapes around every cut of the end.
        text = '{"k": "' + "y" * 300 + "".join(parts) + '"}'
        states = _open_at(text)
        for k in range(len(text) - 30, len(text) + 1):
            assert same(parse_partial_json(text[:k]), reference(text[:k], states)), text[:k]
        at = data.draw(st.integers(0, len(parts)))
        pos = len('{"k": "') + 300 + len("".join(parts[:at]))
        bad = data.draw(st.sampled_from(["\x01", "\\q"]))
        corrupt = text[:pos] + bad + text[pos:]
        with pytest.raises(json.JSONDecodeError) as info:
            parse_partial_json(corrupt[: data.draw(st.integers(pos + len(bad), len(corrupt)))])
        assert info.value.pos == pos + len(bad) - 1

    @given(st.data())
    def test_big_prefixes_cut_anywhere_equal_the_reference(self, data: st.DataObject) -> None:
        # Hundreds of children: the C scanner parses the complete ones in one go.
        records = [
            {"id": i, "name": f"item {i}", "tags": ["a", "b"], "nested": [[i, {"x": [i]}]]}
            for i in range(data.draw(st.integers(20, 80)))
        ]
        text = json.dumps(data.draw(st.sampled_from([records, {"r": records}, [[records]]])))
        states = _open_at(text)
        for k in data.draw(st.lists(st.integers(0, len(text)), min_size=3, max_size=3)):
            assert same(parse_partial_json(text[:k]), reference(text[:k], states)), text[:k]


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "message", "pos"),
        [
            ('{"a" 1}', "Expecting ':' delimiter", 5),
            ("[1,,2]", "Expecting value", 3),
            ("[1,]", "Expecting value", 3),
            ('{"a":1,}', "Expecting property name enclosed in double quotes", 7),
            ("{1:2}", "Expecting property name enclosed in double quotes", 1),
            ("[1 2]", "Expecting ',' delimiter", 3),
            ("tx", "Expecting 'true'", 1),
            ("nul x", "Expecting 'null'", 3),
            ('"\\x"', "Invalid \\escape", 2),
            ('"\\u12x4"', "Invalid \\uXXXX escape", 5),
            ('"a\x01"', "Invalid control character at", 2),
            ("01", "Invalid number", 1),
            ("[-01", "Invalid number", 3),
            ("1.e5", "Invalid number", 2),
            ("--1", "Invalid number", 1),
            ("+1", "Invalid number", 0),
            ("[1.]", "Incomplete number", 3),
            ("-N", "Incomplete number", 1),
            ("{} {}", "Extra data", 3),
            ("1 2", "Extra data", 2),
            ("]", "Expecting value", 0),
            ("[}", "Expecting value", 1),
            ('{"a":]', "Expecting value", 5),
            ("\ufeff[]", "Expecting value", 0),
            ("'a'", "Expecting value", 0),
        ],
    )
    def test_text_that_is_no_json_prefix_raises_where_it_stops_being_one(
        self, text: str, message: str, pos: int
    ) -> None:
        with pytest.raises(json.JSONDecodeError) as info:
            parse_partial_json(text)
        assert info.value.msg == message
        assert info.value.pos == pos
        assert info.value.doc == text
        parse_partial_json(text[:pos])  # the text before it is a prefix

    @given(st.data())
    def test_an_impossible_character_raises_at_its_position(self, data: st.DataObject) -> None:
        text = data.draw(documents())
        k = data.draw(st.integers(0, len(text)))
        in_string, _ = _open_at(text)[k]
        if in_string:
            # Inside a string a raw control character is never valid; a bad escape is
            # not either, where no escape is under way.
            head = text[:k]
            inside_escape = re.search(r"(\\+)(u[0-9a-fA-F]{0,3})?\Z", head)
            options = ["\x00", "\n", "\x1f"]
            if inside_escape is None or len(inside_escape.group(1)) % 2 == 0:
                options += ["\\x", "\\'", "\\U"]
        else:
            # Outside strings these never continue any JSON text.
            options = ["x", "#", ";", "'", ")", "@", "<", "\ufeff"]
        bad = data.draw(st.sampled_from(options))
        corrupt = text[:k] + bad + text[k:]
        with pytest.raises(ValueError) as info:
            parse_partial_json(corrupt)
        assert isinstance(info.value, json.JSONDecodeError)
        # The error is at the first character that no JSON text can continue with.
        pos = k + len(bad) - 1
        assert info.value.pos == pos, (corrupt, info.value)
        parse_partial_json(corrupt[:pos])
        with pytest.raises(ValueError):
            parse_partial_json(corrupt[: pos + 1])
        assert same(parse_partial_json(corrupt[:k]), reference(text[:k]))


# -- PartialJSON ------------------------------------------------------------------------


def feed_all(pieces: list[str]) -> PartialJSON:
    parser = PartialJSON()
    for piece in pieces:
        parser.feed(piece)
    return parser


class TestPartialJSON:
    def test_docstring_example(self) -> None:
        parser = PartialJSON()
        seen = []
        for delta in ['{"path": "a.t', 'xt", "lines": [1, 2', "]}"]:
            parser.feed(delta)
            seen.append(parser.value)
        assert seen == [
            {"path": "a.t"},
            {"path": "a.txt", "lines": [1]},
            {"path": "a.txt", "lines": [1, 2]},
        ]
        assert parser.complete
        assert parser.end() == {"path": "a.txt", "lines": [1, 2]}
        assert parser.text == '{"path": "a.txt", "lines": [1, 2]}'

    @given(st.data())
    def test_any_split_gives_the_value_of_the_text_so_far_after_each_feed(
        self, data: st.DataObject
    ) -> None:
        text = data.draw(documents())
        parser = PartialJSON()
        so_far = ""
        for piece in cuts(data.draw, text):
            parser.feed(piece)
            so_far += piece
            assert same(parser.value, parse_partial_json(so_far)), so_far
            assert parser.text == so_far
            assert parser.complete == _loads_ok(so_far)
        assert same(parser.end(), json.loads(text))

    def test_one_character_at_a_time_matches_every_prefix(self) -> None:
        text = '{"a": [1, -2.5e+3, "x\\u00e9\\ud83d\\ude00\\n"], "b": {"c": null}, "d": NaN}'
        parser = PartialJSON()
        for k, ch in enumerate(text, 1):
            parser.feed(ch)
            assert same(parser.value, parse_partial_json(text[:k])), text[:k]

    def test_a_value_handed_out_is_not_changed_by_later_feeds(self) -> None:
        parser = feed_all(['{"a": [1, "x'])
        first = parser.value
        parser.feed('y"], "b": 2}')
        assert first == {"a": [1, "x"]}
        assert parser.value == {"a": [1, "xy"], "b": 2}

    def test_value_is_cached_until_the_next_feed(self) -> None:
        parser = feed_all(['{"a": ', '"x'])
        assert parser.value is parser.value
        assert parser.text is parser.text  # joined once
        before = parser.value
        parser.feed("y")
        assert parser.value is not before

    @given(st.data())
    def test_after_an_error_feed_raises_again_and_value_is_that_of_the_valid_prefix(
        self, data: st.DataObject
    ) -> None:
        text = data.draw(documents())
        k = data.draw(st.integers(0, len(text)))
        assume(not _open_at(text)[k][0])
        corrupt = text[:k] + "#" + text[k:]
        parser = PartialJSON()
        with pytest.raises(json.JSONDecodeError) as info:
            for piece in cuts(data.draw, corrupt):
                parser.feed(piece)
        assert info.value.pos == k
        assert same(parser.value, parse_partial_json(corrupt[:k]))
        assert not parser.complete
        for call in (lambda: parser.feed("1"), parser.end):
            with pytest.raises(json.JSONDecodeError) as again:
                call()
            assert (again.value.msg, again.value.pos) == (info.value.msg, k)

    @pytest.mark.parametrize(
        ("text", "message", "pos"),
        [
            ("", "Expecting value", 0),
            ("[1,", "Expecting value", 3),
            ('{"a"', "Expecting ':' delimiter", 4),
            ('{"a": 1', "Expecting ',' delimiter", 7),
            ('["abc', "Unterminated string starting at", 1),
            ("1.", "Incomplete number", 2),
            ("tr", "Incomplete literal", 2),
        ],
    )
    def test_end_of_an_incomplete_document_raises(self, text: str, message: str, pos: int) -> None:
        parser = feed_all([text])
        with pytest.raises(json.JSONDecodeError) as info:
            parser.end()
        assert (info.value.msg, info.value.pos) == (message, pos)
        assert repr(parser) == f"<PartialJSON {len(text)} chars, open>"  # not failed

    def test_a_top_level_number_is_complete_but_may_grow(self) -> None:
        parser = feed_all(["12"])
        assert parser.complete and parser.value == 12
        parser.feed("3")
        assert parser.end() == 123

    def test_delta_must_be_str(self) -> None:
        with pytest.raises(TypeError, match="delta must be str, not bytes"):
            PartialJSON().feed(b"[")  # type: ignore[arg-type]

    def test_repr_says_how_far_it_got(self) -> None:
        assert repr(feed_all(["[1"])) == "<PartialJSON 2 chars, open>"
        assert repr(feed_all(["[1]"])) == "<PartialJSON 3 chars, complete>"


class TestWork:
    """Work is counted, not timed: characters the parser scans and characters its
    string pieces cost in copies."""

    def test_one_character_deltas_of_a_1_mib_argument_cost_linear_work(self) -> None:
        # Mostly plain text, as source code is, with every kind of escape now and then.
        block = "x = 1  # plain text" * 50 + 'caf\u00e9 \U0001f600 "q" \\ \t\n'
        content = (block * (2**20 // len(block) + 1))[: 2**20]
        text = json.dumps({"path": "a.txt", "content": content})
        parser = PartialJSON()
        feed = parser.feed
        for ch in text:
            feed(ch)
        n = len(text)
        assert parser._scanned < 4 * n
        assert parser._copied[0] < 6 * n  # each character copied about twice per rope
        assert parser.end() == {"path": "a.txt", "content": content}

    def test_reading_the_value_now_and_then_costs_its_size_each_time(self) -> None:
        parser = PartialJSON()
        parser.feed('{"content": "')
        for _ in range(64):
            parser.feed("x" * 1024)
            assert len(parser.value["content"]) % 1024 == 0
        assert parser._copied[0] < 2 * 64 * 65 * 1024

    @pytest.mark.parametrize(
        "text",
        [
            "[" * 50_000,
            '{"a": ' * 20_000 + "1",
            "[" + "1, " * 50_000,
            '{"k": "' + "v" * 200_000,
            '["' + "\\u00e9" * 50_000,
        ],
    )
    def test_one_big_feed_scans_each_character_a_bounded_number_of_times(
        self, text: str
    ) -> None:
        parser = feed_all([text])
        assert parser._scanned < 8 * len(text)


def _loads_ok(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
