"""The REPLAYER_* environment variables that tune how recording runs, read in one place.

Each is read where it is used, often inside an agent's own process (the writer, the OTLP
export): there a bad value never raises into the agent; it is warned about once and the default
used. The command line checks them all before it starts (`problems`): one line naming the
variable, its value and what it takes, exit 2. Paths and URLs (REPLAYER_DB, REPLAYER_CONFIG,
REPLAYER_PRICING, REPLAYER_UPSTREAM) are checked where they are opened."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger("replayer")


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError
    return value


def _nice(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 19:
        raise ValueError
    return value


def _page_size(text: str) -> int:
    value = int(text)
    if value not in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
        raise ValueError
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError
        return text

    return parse


VARIABLES: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "REPLAYER_WRITER": (_choice("process", "thread"), "process", "process or thread"),
    "REPLAYER_WRITER_BATCH": (_choice("0", "1"), "1", "0 or 1"),
    "REPLAYER_EXIT_TIMEOUT": (_seconds, 10.0, "seconds, a number >= 0"),
    "REPLAYER_OTLP_EXIT_TIMEOUT": (_seconds, 5.0, "seconds, a number >= 0"),
    "REPLAYER_OTLP_NICE": (_nice, 0, "a nice increment, 0 to 19"),
    "REPLAYER_PAGE_SIZE": (_page_size, 8192, "an SQLite page size, a power of two from 512 to 65536"),
}
"""name -> (parse, default, what it takes). An empty value is the default."""

_warned: set[str] = set()


def _problem(name: str, text: str) -> str:
    return f"{name}={text!r} is not {VARIABLES[name][2]}: unset it or give one"


def value(name: str) -> Any:
    """The variable's value, parsed; its default when unset, empty, or bad (said once)."""
    parse, default, _ = VARIABLES[name]
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return parse(text)
    except ValueError:
        if name not in _warned:
            _warned.add(name)
            log.warning("replayer: %s; using %r", _problem(name, text), default)
        return default


def problems() -> list[str]:
    """What is wrong with the variables set, one line each (the command line refuses to start)."""
    out = []
    for name, (parse, _default, _what) in VARIABLES.items():
        text = os.environ.get(name, "").strip()
        if text:
            try:
                parse(text)
            except ValueError:
                out.append(_problem(name, text))
    return out
