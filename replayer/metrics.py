"""Health signals computed from recorded turns (headless: no Textual, no SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MIN_WRITE_TOKENS = 1
"""A turn that writes at least this much to the cache counts as writing."""


def _int(usage: dict[str, Any] | None, key: str) -> int:
    return int((usage or {}).get(key) or 0)


def cache_breaks(usages: Sequence[dict[str, Any] | None]) -> list[int]:
    """Indexes of turns where a broken cache starts: from there on, for at least two turns in a
    row, the turn writes to the cache while its reads don't grow. That is
    the signature of a moving breakpoint (a timestamp in the system prompt, a reordered tool
    list): every turn pays for a write and gets no read back."""
    starts = []
    run = 0
    for i in range(1, len(usages)):
        prev, cur = usages[i - 1], usages[i]
        writes = _int(cur, "cache_creation_input_tokens")
        rewrites = writes >= MIN_WRITE_TOKENS and _int(cur, "cache_read_input_tokens") <= _int(
            prev, "cache_read_input_tokens"
        )
        if rewrites:
            run += 1
            if run == 2:
                starts.append(i - 1)
        else:
            run = 0
    return starts
