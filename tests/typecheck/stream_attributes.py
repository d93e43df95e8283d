"""Checked by ``mypy --strict`` in CI (not run by pytest): the stream classes' attributes
are typed, so a misspelt attribute is an error. Each ``type: ignore`` below must be
needed — with ``warn_unused_ignores`` (part of --strict) an ignore that mypy does not
need is itself an error, so a regression to ``Any`` fails the check.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Optional

import alltoken


def attributes(s: alltoken.Stream, ts: alltoken.TextStream) -> None:
    text: str = s.text
    text = ts.text
    chunks: int = ts.chunks + s.chunks
    cost: Optional[alltoken.Cost] = ts.cost
    if ts.cost is not None:
        amount: Decimal = ts.cost.cost
        print(ts.cost.costt)  # type: ignore[attr-defined]
        print(amount)
    print(s.cost.cost)  # type: ignore[union-attr]
    print(ts.textt)  # type: ignore[attr-defined]
    del text, chunks, cost
