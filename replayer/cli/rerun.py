"""`replayer rerun`: re-send a recorded turn with edits (replay.py) and print the comparison."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ..diffing import change_parts
from ..fmt import delta_money, error_head, local_time, money, ms, ms_delta, plural, retry_note
from ..wire import PROTOCOL_HEADERS, token_count
from .base import UserError, db_path, interactive, json_document, open_store, settings
from .edits import edit_options, edits_from, resolve_turn

if TYPE_CHECKING:
    from ..models import Sample, SampleView, ToolDiff


def retried(v: SampleView) -> str:
    """` · 2 attempts (1 failed: 529 overloaded_error)` for a call that was retried, else ""."""
    note = retry_note(v)
    return f" · {note}" if note else ""


def _describe_sample(i: int, v: Sample, base: SampleView) -> str:
    if v.error:
        e = v.error
        return f"sample {i}: ERROR {error_head(e)}: {e.get('message')}{retried(v)}"
    lat = "" if v.latency_ms is None else f" · {ms(v.latency_ms)}"
    if v.latency_delta_ms is not None:  # the difference of the figures shown, the original's and this
        lat += f" ({ms_delta(v.latency_ms, base.latency_ms)})"
    cost = money(v.cost_usd)
    if v.cost_delta_usd is not None:
        cost += f" ({delta_money(v.cost_delta_usd)})"
    tokens = _prompt_words(v, v.prompt_delta_tokens) + f" / {token_count(v.usage, 'output_tokens'):,} output"
    return f"sample {i}: {v.stop_reason or '—'} · {v.model}{lat} · {cost} · {tokens}{retried(v)}"


def _prompt_words(v: SampleView, delta: int | None = None) -> str:
    """`3,502 prompt (+12, 97% cache hit)`: the whole prompt, never the uncached part alone;
    `delta` is a sample's change against the original's prompt."""
    if v.prompt_tokens is None:
        return "no usage"
    notes = [f"{delta:+,}"] if delta is not None else []
    if v.cache_hit_rate is not None:
        notes.append(f"{v.cache_hit_rate:.0%} cache hit")
    return f"{v.prompt_tokens:,} prompt" + (f" ({', '.join(notes)})" if notes else "")


def _describe_tools(diff: list[ToolDiff]) -> str:
    parts = []
    for t in diff:
        if t.status == "changed":
            changes = "; ".join("".join(text for text, _ in change_parts(d)) for d in t.diff[:5])
            parts.append(f"{t.name} input changed ({changes})")
        else:
            parts.append(f"{t.name} {t.status}")
    return ", ".join(parts) if parts else "none on either side"


@click.command()
@click.argument("turn_id", metavar="TURN_ID|CONVERSATION:N")
@edit_options()
@click.option(
    "--header", "headers", metavar="NAME=VALUE", multiple=True, help="Change anthropic-version or anthropic-beta."
)
@click.option("--samples", type=click.IntRange(1, 10), default=1, show_default=True, help="How many to send at once.")
@click.option("--base-url", metavar="URL", help="API base URL (default $ANTHROPIC_BASE_URL, else Anthropic's).")
@click.option("--yes", "-y", is_flag=True, help="Send without asking (the estimate is still printed).")
@click.option("--force", is_flag=True, help="Send even when validation finds problems.")
@click.option("--list", "list_only", is_flag=True, help="List earlier variants of the turn and send nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def rerun(
    ctx: click.Context,
    turn_id: str,
    system: str | None,
    model: str | None,
    messages: tuple[str, ...],
    sets: tuple[str, ...],
    headers: tuple[str, ...],
    samples: int,
    base_url: str | None,
    yes: bool,
    force: bool,
    list_only: bool,
    as_json: bool,
) -> None:
    """Re-send a recorded turn with edits, N times, and compare the outputs with the original.

    The recorded anthropic-version and anthropic-beta headers are sent unless --header changes
    them; the key comes from $ANTHROPIC_API_KEY. Each sample is stored beside the turn.
    """
    from .. import comparison, replay
    from ..models import RerunReport
    from .proxy import check_upstream

    given = base_url or os.environ.get("ANTHROPIC_BASE_URL")
    if given:  # checked before anything is sent, or stored
        check_upstream(given, "--base-url" if base_url else "$ANTHROPIC_BASE_URL")
    store = open_store(ctx)
    turn_id = resolve_turn(store, turn_id)
    try:
        orig = replay.original(store, turn_id)
    except replay.ReplayError as e:
        raise UserError(str(e)) from None
    if list_only:
        found = store.variants_of(turn_id)
        if as_json:
            click.echo(json_document([v.document() for v in found]))
        tz = settings(ctx).shown_tz()
        for v in [] if as_json else found:
            names = replay.Edits.from_json(v.edits).names()
            created = local_time(v.created_at, tz=tz)
            click.echo(f"{v.variant}  {created}  {plural(v.samples, 'sample')}  {', '.join(names)}")
        if not found and not as_json:
            click.echo("no variants of this turn yet", err=True)
        return
    edits = edits_from(system, model, messages, sets)
    for spec in headers:
        name, sep, value = spec.partition("=")
        if not sep or name.lower() not in PROTOCOL_HEADERS:
            raise UserError("--header wants anthropic-version=VALUE or anthropic-beta=VALUE")
        edits.headers[name.lower()] = value
    try:
        req = replay.apply(orig, edits)
        sent_headers = {**orig.headers, **edits.headers}
        problems = replay.validate(req, sent_headers, orig)
        for p in problems:
            click.echo(f"{'problem' if p.blocking else 'warning'}: {p.message}", err=True)
        blocking = [p for p in problems if p.blocking]
        if blocking and not force:
            raise UserError(f"{plural(len(blocking), 'problem')} above: fix the edits, or pass --force to send anyway")
        sdk = replay.client(sent_headers, base_url, max_retries=0)
        est = replay.estimate(orig, req, store.prices, samples, replay.counter(sdk))
    except replay.ReplayError as e:
        raise UserError(str(e)) from None
    where = f"turn {orig.index} of {orig.conversation_id}" + (
        " (history rebuilt from its thread)" if orig.rebuilt else ""
    )
    click.echo(f"rerun {turn_id} ({where}); edits: {', '.join(edits.names())}", err=True)
    click.echo(
        f"estimate: {est.input_tokens:,} prompt tokens ({est.source}) + ~{est.output_tokens:,} output per sample "
        f"x {samples} = {money(est.cost_usd)} (at most {money(est.max_cost_usd)} if every sample writes "
        f"max_tokens {est.max_output_tokens:,}); original cost {money(orig.cost_usd)}",
        err=True,
    )
    if not yes:
        if not interactive():
            raise UserError("not sending without confirmation: add --yes")
        if not click.confirm(f"send {plural(samples, 'sample')}?", err=True):
            click.echo("nothing sent", err=True)
            ctx.exit(0)

    def progress(i: int, error: BaseException | None) -> None:
        click.echo(f"  sample {i + 1}/{samples} {'failed: ' + type(error).__name__ if error else 'done'}", err=True)

    try:
        variant = replay.send(db_path(ctx), orig, req, edits, samples=samples, base_url=base_url, on_done=progress)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: samples without an answer were abandoned (stored as such; replayer rerun {turn_id} --list)",
            err=True,
        )
        ctx.exit(130)
    result = comparison.compare(store, orig, variant)
    failed = [v for v in result.samples if v.error]
    if as_json:
        report = RerunReport(**vars(result), estimate=est)
        # without BULKY: the request_diff says how the request differs from the original's
        click.echo(json_document(report.document(bulky=False)))
    else:
        base = result.original
        stop = base.stop_reason or "—"
        lat = f" · {ms(base.latency_ms)}" if base.latency_ms is not None else ""
        words = _prompt_words(base)
        click.echo(f"original: {stop} · {base.model}{lat} · {money(base.cost_usd)} · {words}{retried(base)}")
        changed = [f"{d.section} (-{d.removed} +{d.added} lines)" for d in result.request_diff if d.changed]
        click.echo("sent: " + ("changed " + ", ".join(changed) if changed else "the original request, unchanged"))
        for i, v in enumerate(result.samples, 1):
            click.echo("\n" + _describe_sample(i, v, base))
            if v.error:
                continue
            click.echo(v.diff.rstrip("\n") or "  (text identical)")
            click.echo(f"  tools: {_describe_tools(v.tool_diff)}")
        s = result.spread
        calls = ", ".join(f"{k} {n}/{s.answered}" for k, n in s.tool_calls.items()) or "none"
        click.echo(
            f"\n{plural(s.distinct_outputs, 'distinct output')} in {plural(s.answered, 'answered sample')}; "
            f"tool calls: {calls}"
        )
        click.echo(f"variant {variant} (replayer rerun {turn_id} --list)", err=True)
    if failed:
        ctx.exit(1)
