from __future__ import annotations

from alltoken.sse import Comment, ServerSentEvent, SSEDecoder


def test_chat_stream_with_cost_trailer_decodes_whole() -> None:
    d = SSEDecoder()
    out = d.feed(b'data: {"a":1}\n\ndata: [DONE]\n\n: {"cost":"0.1"}\n')
    assert out == [
        ServerSentEvent('{"a":1}'),
        ServerSentEvent("[DONE]"),
        Comment('{"cost":"0.1"}'),
    ]
