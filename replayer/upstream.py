"""Where a recording proxy sends calls on to: the default, checking a URL the user gave, and
showing one without the user info (user:password@) it may hold."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

DEFAULT_UPSTREAM = "https://api.anthropic.com"
UPSTREAM_ENV = "REPLAYER_UPSTREAM"


def upstream_problem(url: str) -> str | None:
    """What makes `url` unfit as an upstream (not http(s), no host, a query or fragment), or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - a port that isn't a number raises here
    except ValueError:
        return "is not an http(s) URL"
    if parts.scheme not in ("http", "https") or not host:
        return "is not an http(s) URL"
    if parts.query or parts.fragment:
        return "has a query or fragment (give only scheme, host and path)"
    return None


def shown(url: str) -> str:
    """`url` as it may be printed, logged or stored: without its user info (credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2]
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
