"""Deterministic wire corpora for the benchmarks (seeded; the same bytes every run)."""

from __future__ import annotations

import json
import random

WORDS = ("the of and to in is that it for on with as was at by an be this which from or "
         "qubit state energy model token stream answer reason step factor prime value "
         "quantum computing superposition entanglement interference café naïve 中文 数据 🙂 ✨"
         ).split()

COST_LINE = (b': {"cost":"0.0012","input_price":"0.0003","output_price":"0.0009",'
             b'"prompt_tokens":15,"completion_tokens":42}\n')


def chat_events(n: int = 3000, seed: int = 7) -> list[bytes]:
    """The data payloads of a realistic reasoning-model stream: a third reasoning, then
    content, a finish chunk and a usage-only chunk."""
    rnd = random.Random(seed)
    out = []
    created = 1732000000
    for i in range(n):
        key = "reasoning_content" if i < n // 3 else "content"
        word = rnd.choice(WORDS)
        piece = word if i == 0 else " " + word
        out.append(json.dumps({
            "id": "chatcmpl-9f8e7d6c5b4a", "object": "chat.completion.chunk",
            "created": created, "model": "deepseek-reasoner", "system_fingerprint": "fp_a1b2",
            "choices": [{"index": 0, "delta": {key: piece}, "finish_reason": None}],
        }, ensure_ascii=False).encode())
    out.append(json.dumps({"id": "chatcmpl-9f8e7d6c5b4a", "object": "chat.completion.chunk",
                           "created": created, "model": "deepseek-reasoner",
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                          ).encode())
    out.append(json.dumps({"id": "chatcmpl-9f8e7d6c5b4a", "object": "chat.completion.chunk",
                           "created": created, "model": "deepseek-reasoner", "choices": [],
                           "usage": {"prompt_tokens": 15, "completion_tokens": n,
                                     "total_tokens": 15 + n}}).encode())
    return out


def chat_stream(n: int = 3000, eol: bytes = b"\n") -> bytes:
    """``data: {json}`` events, ``data: [DONE]`` and the cost comment, with *eol*."""
    body = b"".join(b"data: " + e + b"\n\n" for e in chat_events(n)) + b"data: [DONE]\n\n"
    body += COST_LINE
    return body.replace(b"\n", eol) if eol != b"\n" else body


def large_event(size: int, line: int = 1024, seed: int = 3) -> bytes:
    """One event of about *size* bytes of data in ``data:`` lines of *line* bytes."""
    rnd = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 "
    lines = []
    left = size
    while left > 0:
        n = min(line, left)
        lines.append(b"data: " + bytes(rnd.choice(alphabet) for _ in range(n)) + b"\n")
        left -= n
    return b"".join(lines) + b"\n"


def large_events(sizes: tuple[int, ...] = (65536, 262144, 1048576)) -> bytes:
    return b"".join(large_event(s) for s in sizes)


def chunked(data: bytes, size: int = 1460) -> list[bytes]:
    """*data* cut into pieces of *size* bytes (1460: a TCP segment's payload)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
