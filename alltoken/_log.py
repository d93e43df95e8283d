"""Logging for the ``alltoken`` logger, without importing ``logging`` at start-up.

Layer 3 helper; imports nothing from the package. ``import logging`` costs about 5 ms of
cold start (benchmarks/run.py), which a Lambda pays on every cold invocation.
If the application has not imported ``logging``, no handler or level can have been
configured, so DEBUG records would go nowhere: :func:`debug_enabled` is False without
importing it. Warnings (retries, key refresh) are rare, and import it when they happen,
so they reach ``logging``'s last-resort handler as they would from any library.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["debug", "debug_enabled", "warning"]

NAME = "alltoken"


def debug_enabled() -> bool:
    """Whether DEBUG records of the ``alltoken`` logger would be handled."""
    logging = sys.modules.get("logging")
    return logging is not None and logging.getLogger(NAME).isEnabledFor(logging.DEBUG)


def debug(msg: str, *args: Any) -> None:
    """Log at DEBUG (a no-op while the application has not imported ``logging``)."""
    if debug_enabled():
        sys.modules["logging"].getLogger(NAME).debug(msg, *args)


def warning(msg: str, *args: Any) -> None:
    """Log at WARNING, importing ``logging`` if needed."""
    import logging

    logging.getLogger(NAME).warning(msg, *args)
