"""`replayer proxy`: the recording reverse proxy in the foreground, for agents in any language."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

import click

from ..upstream import DEFAULT_UPSTREAM, UPSTREAM_ENV, shown, upstream_problem
from .base import UserError, db_path, folder_notice
from .otlp import otlp_options, otlp_setting


def check_upstream(url: str, where: str = "--upstream") -> str:
    """The upstream URL, or bad input when it is not an http(s) URL with a host (`where`: the
    option or variable it came from, which the message names)."""
    problem = upstream_problem(url)
    if problem:
        raise UserError(f"{where} {shown(url)!r} {problem}: give one like {DEFAULT_UPSTREAM}")
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one (the start line names it).")
@click.option("--upstream", metavar="URL",
              help=f"Where requests go (default: ${UPSTREAM_ENV}, else {DEFAULT_UPSTREAM}).")
@otlp_options
@click.pass_context
def proxy(ctx: click.Context, host: str, port: int, upstream: str | None, otlp: bool, otlp_content: bool) -> None:
    """A recording reverse proxy for the Anthropic API: point an agent at it and its Messages
    calls are recorded, whatever language it is written in.

    Example: replayer proxy --port 8787, then ANTHROPIC_BASE_URL=http://127.0.0.1:8787 node agent.mjs

    Every request is forwarded as it came (credentials included, never stored); POST /v1/messages
    is recorded. Ctrl+C (or SIGTERM) stops it: open streams finish, then the records are written.
    --otlp also sends each call as an OpenTelemetry span to $OTEL_EXPORTER_OTLP_ENDPOINT.
    """
    from ..store.process import make_writer
    from ..store.schema import open_db

    if not host.strip():  # (aiohttp would listen on every address, and the start line name none)
        raise UserError("--host is empty: give an address to listen on, e.g. --host 127.0.0.1")
    from_env = not upstream and os.environ.get(UPSTREAM_ENV)
    target = check_upstream(upstream or from_env or DEFAULT_UPSTREAM, f"${UPSTREAM_ENV}" if from_env else "--upstream")
    export = otlp_setting(otlp, otlp_content)
    path = db_path(ctx)
    made_folder = folder_notice(path)
    open_db(path).close()  # a path that can't hold a replayer database fails now, as bad input
    made_folder()
    if not is_loopback(host):
        click.echo(
            f"replayer proxy: warning: {host} is not a loopback address: anyone who can reach it can send "
            "requests through it (with their own key) and fill the database",
            err=True,
        )

    from ..proxy import serve
    from ..proxy.server import GRACE_SECONDS

    writer = make_writer(str(path), otlp=export)
    writer.start()

    served: list[str] = []

    def listening(url: str) -> None:
        served.append(url)
        click.echo(f"replayer proxy: listening on {url} -> {shown(target)} (db {path})", err=True)

    def stopping(n: int) -> None:
        click.echo(f"replayer proxy: stopping: {n} open request(s) may finish (up to {GRACE_SECONDS:g} s; "
                   "Ctrl+C again cuts them)", err=True)

    try:
        serve(target, writer.put, host, port, listening, stopping)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use: pick another with --port, or --port 0 for a free one") \
                from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    finally:
        written = writer.close(timeout=60)
        calls, attempts = writer.calls, writer.attempts
        retries = f" ({attempts} attempts with retries)" if attempts != calls else ""
        if served:  # not when it never listened (a port in use: that one line is the message)
            click.echo(f"replayer proxy: stopped; recorded {calls} call{'' if calls == 1 else 's'}{retries} to {path}",
                       err=True)
        if not written:
            click.echo("replayer proxy: some records could not be written (see above)", err=True)
