"""A response body as it came off the wire, in chunks: its content-encodings undone, and when its
first token came.

The SDK middleware (capture.py) and the proxy (proxy/tee.py) keep a body's chunks as they came
(compressed, if the server compressed them) with a clock reading for each, and leave the rest
to the writer's side: decoding (`received`, `decode_chunks`), and finding which chunk brought
the first content_block_delta (`first_token_time`). Nothing here runs on the agent's thread or the proxy's
event loop.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DELTA = b"content_block_delta"
"""What marks a stream's first token (its event name comes first, on the event line)."""


def first_token_time(body: bytes, sizes: Sequence[int], times: Sequence[float]) -> float | None:
    """When the chunk that completed the first content_block_delta marker of `body` came: its
    chunks were `sizes` bytes long and came at `times`, cut anywhere. None for a body without one."""
    end = body.find(DELTA)
    if end < 0:
        return None
    end += len(DELTA)
    total = 0
    for size, when in zip(sizes, times, strict=False):  # (times may be cut short: a body that stopped decoding)
        total += size
        if total >= end:
            return when
    return None


@dataclass(slots=True)
class Received:
    """A body as the writer reads it, from the chunks that came and when each did."""

    body: bytes
    """Decoded (as far as it decodes)."""
    sizes: list[int]
    """What each chunk decoded to, in bytes."""
    times: list[float]
    """When each chunk came (perf_counter)."""
    problem: str | None = None
    """What stopped the decoding; None when nothing did."""

    def clock(self, p0: float) -> tuple[list[int], list[float], float]:
        """`Captured.chunk_clock`: the writer times each event by where its chunk ends."""
        return self.sizes, self.times, p0

    def ttft_ms(self, p0: float) -> float | None:
        """Milliseconds from `p0` to the chunk that brought the first token; None without one."""
        first = first_token_time(self.body, self.sizes, self.times)
        return None if first is None else round((first - p0) * 1000, 3)


def received(encoding: str | None, chunks: list[bytes], times: list[float]) -> Received:
    """The body of `chunks` (each came at `times`), its `encoding` (a content-encoding) undone."""
    problem = None
    if encoding and chunks:
        chunks, problem = decode_chunks(encoding, chunks)
    return Received(b"".join(chunks), list(map(len, chunks)), times[: len(chunks)], problem)


def decoder_for(encoding: str) -> Any:
    """A decompressor object (`.decompress(bytes)`) for a content-encoding, or None when this
    Python can't decode it (the proxy then asks the upstream only for encodings it can)."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    if encoding == "br":
        brotli = _module("brotli", "brotlicffi")
        if brotli is None:
            return None
        d = brotli.Decompressor()
        # google's Brotli names it process(); brotlicffi decompress()
        return d if hasattr(d, "decompress") else _Process(d)
    if encoding == "zstd":
        zstd = _module("compression.zstd", "backports.zstd")
        return None if zstd is None else zstd.ZstdDecompressor()
    if encoding in ("identity", ""):
        return _Identity()
    return None


def _module(*names: str) -> Any:
    """The first of these modules that imports, or None. They are the ones httpx2 decodes a body
    with (httpx2/_decoders.py), in its order: an encoding the SDK asks the API for (it asks for
    what httpx2 can decode) is one the middleware, which keeps the body as it came off the
    connection, can decode too."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


class _Process:
    """A decompressor whose method is `process` (google's Brotli) as one with `decompress`."""

    def __init__(self, d: Any) -> None:
        self.decompress = d.process


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data


class _Deflate:
    """HTTP's "deflate" is a zlib stream, but some servers send raw deflate: try both."""

    def __init__(self) -> None:
        self.d: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self.d is None:
            self.d = zlib.decompressobj(zlib.MAX_WBITS)
            try:
                return bytes(self.d.decompress(data))
            except zlib.error:
                self.d = zlib.decompressobj(-zlib.MAX_WBITS)
        return bytes(self.d.decompress(data))


_decodable: dict[str, bool] = {}


def decodable(accept_encoding: str) -> str:
    """The client's Accept-Encoding cut to the encodings the record can be decoded from."""
    kept = []
    for part in accept_encoding.split(","):
        name = part.split(";", 1)[0].strip().lower()
        ok = _decodable.get(name)
        if ok is None and len(_decodable) < 64:
            ok = _decodable[name] = decoder_for(name) is not None
        if name and ok:
            kept.append(part.strip())
    return ", ".join(kept) or "identity"


def decode(encoding: str, body: bytes) -> bytes:
    """The body as it was before the upstream compressed it (a chain like "gzip, br" undone in
    reverse order). ValueError when it can't be."""
    decoded, problem = decode_chunks(encoding, [body])
    if problem:
        raise ValueError(problem)
    return b"".join(decoded)


def decode_chunks(encoding: str, chunks: list[bytes]) -> tuple[list[bytes], str | None]:
    """What each compressed chunk decoded to (in order, the body; a stream's events are timed by
    where each chunk ends in it), as far as they decode, and what stopped the decoding (None when
    nothing did). Chunks no decoder here can read are kept as they came."""
    names = [e.strip() for e in reversed(encoding.split(",")) if e.strip()]
    decoders = [decoder_for(name) for name in names]
    if None in decoders:
        name = names[decoders.index(None)]
        return list(chunks), f"content-encoding {name!r} can't be decoded here: the body is kept as it came"
    out: list[bytes] = []
    try:
        for chunk in chunks:
            for d in decoders:
                chunk = bytes(d.decompress(chunk))
            out.append(chunk)
    except Exception as e:  # a corrupt body: each library raises its own error
        problem = f"the {encoding} body could not be decoded ({type(e).__name__}: {e})"
        return out, problem + ": kept as far as it decoded"
    return out, None
