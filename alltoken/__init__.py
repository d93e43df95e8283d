"""alltoken: a zero-dependency streaming client for the AllToken chat-completions API.

    import alltoken
    for tok in alltoken.stream("Explain quantum computing", model="claude-sonnet-4"):
        print(tok, end="", flush=True)

This module only re-exports; the code lives in the submodules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import DEFAULT_BASE_URL, NOT_GIVEN, AllToken, stream
from ._errors import (
    AbortedError,
    AllTokenError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ProxyError,
    RateLimitError,
)
from ._stream import Stream, TextStream, Timings
from ._transport import Proxy, Signal, Timeout
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Cost,
    Delta,
    ErrorInfo,
    FunctionCall,
    FunctionCallDelta,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from ._version import __version__
from .sse import Comment, DecoderState, ServerSentEvent, SSEDecoder

__all__ = [
    "DEFAULT_BASE_URL",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AbortedError",
    "AllToken",
    "AllTokenError",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChunkChoice",
    "Choice",
    "Comment",
    "Cost",
    "DecoderState",
    "Delta",
    "ErrorInfo",
    "FunctionCall",
    "FunctionCallDelta",
    "InternalServerError",
    "Message",
    "NotFoundError",
    "PartialJSON",
    "PermissionDeniedError",
    "ProtocolError",
    "Proxy",
    "ProxyError",
    "RateLimitError",
    "SSEDecoder",
    "ServerSentEvent",
    "Signal",
    "Stream",
    "TextStream",
    "Timeout",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "__version__",
    "parse_partial_json",
    "stream",
]

if TYPE_CHECKING:
    from ._partial_json import PartialJSON, parse_partial_json


def __getattr__(name: str) -> Any:
    # The partial-JSON reader is loaded on first use: most programs never need it, and
    # every module loaded counts against a cold start.
    if name in ("PartialJSON", "parse_partial_json"):
        from . import _partial_json

        return getattr(_partial_json, name)
    raise AttributeError(f"module 'alltoken' has no attribute {name!r}")
