"""How a blob's JSON is kept on disk: as text, or deflated when that saves enough.

`blobs.json` holds the canonical JSON of a message, system prompt, tool list or skeleton. Short
ones stay TEXT (readable with any SQLite tool, and not worth compressing); longer ones, tool
results mostly, are stored as a BLOB of raw deflate (zlib level 1) when that makes them at
least an eighth smaller. The hash is always taken over the text, so compressed and plain copies
of the same content are one blob, and databases written before compression read as before.

Also here: JSON text SQLite and UTF-8 files take, with a lone surrogate written as its escape.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

MIN_CHARS = 400
"""Texts shorter than this are stored as they are."""
LEVEL = 1
"""zlib's fastest level: nearly the ratio of level 6 on JSON (0.30 against 0.29 on tool
results) for two-thirds of the time, on the writer thread, which releases the GIL meanwhile."""
_WBITS = -15  # raw deflate: no zlib header or checksum (SQLite pages have their own integrity)


def pack(text: str) -> str | bytes:
    """What to store for `text`: itself, or its deflated UTF-8."""
    if len(text) < MIN_CHARS:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    packed = zlib.compress(raw, LEVEL, _WBITS)
    return packed if len(packed) <= len(raw) - (len(raw) >> 3) else text


def unpack(value: str | bytes) -> str:
    """The JSON text of a stored blob."""
    if isinstance(value, str):
        return value
    return zlib.decompress(value, _WBITS).decode("utf-8", "surrogatepass")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def storable(json_text: str) -> str:
    """JSON text that SQLite and UTF-8 files take. A string can hold a lone surrogate (json.loads
    makes one of an escape like \\ud800; a caller's str can have one), which json.dumps with
    ensure_ascii=False writes as it is and no UTF-8 encoder accepts: it is written back as its
    \\u escape, the same JSON."""
    if not _has_lone_surrogate(json_text):
        return json_text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def dumps(obj: Any) -> str:
    """json.dumps(obj, ensure_ascii=False), storable."""
    return storable(json.dumps(obj, ensure_ascii=False))


def readable(text: str) -> str:
    """Plain text (not JSON) that SQLite takes: a lone surrogate becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _has_lone_surrogate(text) else text
