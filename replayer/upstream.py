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


PROXIED_ENV = "REPLAYER_PROXIED"
"""Set by `replayer record` for its program: where each recording proxy of the run (and of the
`record` runs it is nested in) goes on to, as `host:port=host:port` pairs (`;` apart), the
upstream's credentials never included. A call the middleware records on its way through one
names the upstream as its server (the OTLP span's server.address / server.port), not the proxy on
the loopback: in a fleet, every host's spans would name 127.0.0.1 and a random port."""

Address = tuple[str, int]


def address(url: str) -> Address | None:
    """(host, port) of an http(s) URL (the scheme's port when it names none); None without a host."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port or (443 if parts.scheme == "https" else 80)


def proxied(value: str | None) -> dict[Address, Address]:
    """The PROXIED_ENV pairs: proxy (host, port) -> upstream (host, port). Pairs that don't read are left out."""
    pairs: dict[Address, Address] = {}
    for pair in (value or "").split(";"):
        ends = [end.rpartition(":") for end in pair.split("=")]
        if len(ends) == 2 and all(host and port.isdigit() for host, _, port in ends):
            (proxy_host, _, proxy_port), (up_host, _, up_port) = ends
            pairs[(proxy_host, int(proxy_port))] = (up_host, int(up_port))
    return pairs


def with_proxy(value: str | None, proxy: str, upstream: str) -> tuple[str, Address | None]:
    """PROXIED_ENV's `value` with the pair for a proxy at `proxy` going on to `upstream` added,
    and the server its calls reach: `upstream` itself, or, when it is another proxy of the run
    (a `record` inside a `record`), where that one goes on to."""
    known = proxied(value)
    at, to = address(proxy), address(upstream)
    if to is not None:
        to = known.get(to, to)
    if at is None or to is None:
        return value or "", to
    pair = f"{at[0]}:{at[1]}={to[0]}:{to[1]}"
    return (f"{value};{pair}" if value else pair), to
