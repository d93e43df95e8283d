"""Deterministic wire corpora for the benchmarks: seeded, the same bytes on every run and
every Python from 3.9 up (``random.Random`` with an int seed is stable across versions).

Each generator returns bytes as a server would put them on the wire. :func:`corpora`
wraps them as :class:`Corpus` objects that also carry the *truth*: the events a correct
parser must produce, known from the generator and not from any parser. Reused by
``bench_sse.py`` (parse throughput) and ``run.py`` (end to end).

- :func:`chat_stream`: a reasoning model's streamed answer, shaped like OpenAI / AllToken
  ``chat.completion.chunk`` JSON (compact separators, raw UTF-8): a role chunk, about a
  third ``reasoning_content`` deltas, then ``content`` deltas, a ``finish_reason`` chunk,
  a usage-only chunk with ``"choices": []``, ``data: [DONE]`` and AllToken's cost
  comment. Tokens are short words, a tenth non-ASCII (é, 中文, emoji). ``eol=b"\\r\\n"``
  gives the same stream with CRLF line endings.
- :func:`large_events`: events of 64 KiB, 256 KiB and 1 MiB of text, each split over
  ``data:`` lines of about 1 KiB, with ``event:`` and ``id:`` fields.
- :func:`one_line_event`: one event whose data is a single line of a given size (a large
  tool-call argument or a whole answer sent as one ``data:`` line).
- :func:`chunked`: bytes cut into pieces of a fixed size (1460: a TCP segment's payload).
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass

__all__ = [
    "COST_LINE",
    "LARGE_SIZES",
    "Corpus",
    "chat_corpus",
    "chat_events",
    "chat_stream",
    "chunked",
    "corpora",
    "large_corpus",
    "large_event",
    "large_events",
    "one_line_corpus",
    "one_line_event",
]

#: Reasoning-model tokens: mostly short English words with their leading space, some
#: punctuation and line breaks, and (``NON_ASCII_TOKENS``) 2-, 3- and 4-byte UTF-8.
_WORDS = ("the of and to in is that it for on with as was at by an be this which from or we"
          " so if then let me check first compute factor prime value state energy model step"
          " answer reason quantum computing superposition entanglement interference qubit"
          " 15 13 14 210 = * / ( ) Wait Hmm Actually Therefore").split()
ASCII_TOKENS = (*(" " + w for w in _WORDS), ".", ",", ":", "\n\n", "\n", "**")
NON_ASCII_TOKENS = (" café", " naïve", " résumé", "é", " über", "—", " 中文", "数据",
                    "的", " 量子", "计算", " 🙂", "✨", " 🚀", " ∑", " π", " Ω")

MODEL = "deepseek-reasoner"
CHUNK_ID = "chatcmpl-9f8e7d6c5b4a3f2e1d0c"
CREATED = 1732000000

#: AllToken's cost trailer: a comment after ``data: [DONE]``.
COST_LINE = (b': {"cost":"0.0012","input_price":"0.0003","output_price":"0.0009",'
             b'"prompt_tokens":15,"completion_tokens":42}\n')


def _token(rnd: random.Random) -> str:
    if rnd.random() < 0.1:
        return rnd.choice(NON_ASCII_TOKENS)
    return rnd.choice(ASCII_TOKENS)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _chunk(delta: dict[str, object], finish: object = None) -> dict[str, object]:
    return {
        "id": CHUNK_ID, "object": "chat.completion.chunk", "created": CREATED,
        "model": MODEL, "system_fingerprint": "fp_a1b2c3d4e5",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


@functools.cache
def _chat_events(n: int, seed: int) -> tuple[bytes, ...]:
    rnd = random.Random(seed)
    reasoning = n // 3
    out = [_dumps(_chunk({"role": "assistant", "content": None, "reasoning_content": ""}))]
    for i in range(1, n):
        key = "reasoning_content" if i <= reasoning else "content"
        out.append(_dumps(_chunk({key: _token(rnd)})))
    out.append(_dumps(_chunk({}, "stop")))
    usage = {"prompt_tokens": 15, "completion_tokens": n, "total_tokens": 15 + n,
             "completion_tokens_details": {"reasoning_tokens": reasoning}}
    out.append(_dumps({"id": CHUNK_ID, "object": "chat.completion.chunk", "created": CREATED,
                       "model": MODEL, "system_fingerprint": "fp_a1b2c3d4e5",
                       "choices": [], "usage": usage}))
    return tuple(out)


def chat_events(n: int = 3000, seed: int = 7) -> list[bytes]:
    """The JSON payloads of :func:`chat_stream` (without ``[DONE]``): *n* delta chunks
    (the first carries the role), a ``finish_reason`` chunk and a usage-only chunk."""
    return list(_chat_events(n, seed))


def chat_stream(n: int = 3000, eol: bytes = b"\n", seed: int = 7) -> bytes:
    """``data: {json}`` events, ``data: [DONE]`` and the cost comment, lines ending in
    *eol* (``b"\\n"``, ``b"\\r\\n"`` or ``b"\\r"``). About 255 bytes an event."""
    if eol not in (b"\n", b"\r\n", b"\r"):
        raise ValueError(f"eol must be LF, CRLF or CR, got {eol!r}")
    body = b"".join([b"data: " + e + b"\n\n" for e in _chat_events(n, seed)])
    body += b"data: [DONE]\n\n" + COST_LINE
    return body if eol == b"\n" else body.replace(b"\n", eol)


def _text_lines(size: int, line: int, seed: int) -> list[bytes]:
    """Lines of words (some non-ASCII) of about *line* bytes each, about *size* bytes in
    all. Lines break between words, so each line is valid UTF-8 on its own."""
    rnd = random.Random(seed)
    words = [w.strip().encode() for w in ASCII_TOKENS + NON_ASCII_TOKENS]
    words = [w for w in words if w]
    lines = []
    total = 0
    while total < size:
        want = min(line, size - total)
        parts = []
        n = -1
        while n < want - 1:
            w = words[int(rnd.random() * len(words))]
            parts.append(w)
            n += len(w) + 1
        text = b" ".join(parts)
        lines.append(text)
        total += len(text)
    return lines


@functools.cache
def _large_event(size: int, line: int, seed: int, number: int) -> tuple[bytes, str]:
    lines = _text_lines(size, line, seed)
    wire = (b"event: result\nid: big-%d\n" % number
            + b"".join([b"data: " + t + b"\n" for t in lines]) + b"\n")
    return wire, "\n".join(t.decode() for t in lines)


def large_event(size: int, line: int = 1024, seed: int = 3) -> bytes:
    """One event (``event: result``, ``id: big-0``) with about *size* bytes of data in
    ``data:`` lines of about *line* bytes."""
    return _large_event(size, line, seed, 0)[0]


LARGE_SIZES = (65536, 262144, 1048576)


def large_events(sizes: tuple[int, ...] = LARGE_SIZES) -> bytes:
    """Events of the given sizes (64 KiB, 256 KiB, 1 MiB) one after the other, each in
    ``data:`` lines of about 1 KiB."""
    return b"".join(_large_event(s, 1024, 3 + i, i)[0] for i, s in enumerate(sizes))


@functools.cache
def _one_line_event(size: int, seed: int) -> bytes:
    text = b" ".join(_text_lines(size, size, seed))
    return b"data: " + text + b"\n\n"


def one_line_event(size: int, seed: int = 5) -> bytes:
    """One event whose data is a single line of about *size* bytes."""
    return _one_line_event(size, seed)


def chunked(data: bytes, size: int = 1460) -> list[bytes]:
    """*data* cut into pieces of *size* bytes (1460: a TCP segment's payload over
    Ethernet; 1 for the byte-at-a-time test)."""
    if size == 1:
        return [data[i : i + 1] for i in range(len(data))]
    return [data[i : i + size] for i in range(0, len(data), size)]


Event = tuple[str, str, str]  # (event type, data, last event id)


@dataclass(frozen=True)
class Corpus:
    """A wire corpus and what a correct SSE parser makes of it."""

    name: str
    data: bytes
    #: The event separator the limit row splits on (``b"\\n\\n"`` or ``b"\\r\\n\\r\\n"``).
    sep: bytes
    #: The truth, from the generator: ``(event type, data, last event id)`` of every
    #: dispatched event, in order (comments excluded).
    events: tuple[Event, ...]


def _chat_corpus(name: str, eol: bytes, n: int) -> Corpus:
    truth = [("message", e.decode(), "") for e in _chat_events(n, 7)]
    truth.append(("message", "[DONE]", ""))
    return Corpus(name, chat_stream(n, eol), eol + eol, tuple(truth))


def chat_corpus(eol: bytes = b"\n", n: int = 3000) -> Corpus:
    """:func:`chat_stream` with its truth, named "chat LF", "chat CRLF" or "chat CR"."""
    name = {b"\n": "chat LF", b"\r\n": "chat CRLF", b"\r": "chat CR"}[eol]
    return _chat_corpus(name, eol, n)


def large_corpus(sizes: tuple[int, ...] = LARGE_SIZES) -> Corpus:
    """:func:`large_events` with its truth."""
    truth = [("result", _large_event(s, 1024, 3 + i, i)[1], f"big-{i}")
             for i, s in enumerate(sizes)]
    return Corpus("large events", large_events(sizes), b"\n\n", tuple(truth))


def one_line_corpus(size: int) -> Corpus:
    """:func:`one_line_event` with its truth."""
    wire = one_line_event(size)
    label = f"{size >> 20} MiB" if size % (1 << 20) == 0 else f"{size >> 10} KiB"
    return Corpus(f"one line {label}", wire, b"\n\n",
                  (("message", wire[6:-2].decode(), ""),))


def corpora(n: int = 3000) -> list[Corpus]:
    """The three throughput corpora: chat LF, chat CRLF, large events."""
    return [chat_corpus(b"\n", n), chat_corpus(b"\r\n", n), large_corpus()]
