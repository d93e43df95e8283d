"""alltoken: a zero-dependency streaming client for the AllToken chat-completions API.

This module only re-exports; see the submodules for the code.
"""

from __future__ import annotations

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
    RateLimitError,
)
from .sse import Comment, ServerSentEvent, SSEDecoder

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AbortedError",
    "AllTokenError",
    "AuthenticationError",
    "BadRequestError",
    "Comment",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "SSEDecoder",
    "ServerSentEvent",
    "__version__",
]
