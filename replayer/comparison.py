"""A rerun's variant read back beside the turn it reruns, as the compare views and `replayer
rerun --json` show it: per sample the text diff, tool calls, stop reason, usage, cost and latency
against the original's, the spread of the samples' outputs, and the request the variant sent
against the original's. Headless; replay.py sends the samples, this reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import Comparison, Original, Sample, SampleView, ToolUse, TurnSummary
from .replay import ReplayError
from .wire import prompt_tokens, text_of, token_count, tool_calls

if TYPE_CHECKING:
    from .store.queries import Store


def sample_view(store: Store, turn_id: str, timeline: list[TurnSummary] | None = None) -> SampleView:
    """One recorded call, as the compare views show it."""
    d = store.turn_detail(turn_id, timeline)
    last = d.turn.attempts[-1] if d.turn.attempts else None
    prompt = prompt_tokens(d.turn.usage) if d.turn.usage else None
    error = last.error if last else None
    as_recorded: dict[str, Any] = {"attempt_errors": [a.error_as_recorded for a in d.turn.attempts if a.error]}
    if last is not None and last.error is not None:
        as_recorded["error"] = last.error_as_recorded
    cost = d.turn.cost_usd
    if error is None and last is not None and last.abandoned and d.response is None:
        error = {"type": "abandoned", "message": "no answer: the rerun was cancelled while it was out", "status": None}
        if not d.turn.usage:
            cost = None  # the API may have billed its input: not known, so not $0
    elif error is None and last is not None and last.status is None:
        error = {"type": "connection_error", "message": "no response", "status": None}
    return SampleView(
        turn_id=turn_id,
        model=d.turn.model,
        status=last.status if last else None,
        attempts=len(d.turn.attempts),
        stop_reason=d.turn.stop_reason,
        usage=d.turn.usage,
        prompt_tokens=prompt,
        cache_hit_rate=(
            token_count(d.turn.usage, "cache_read_input_tokens") / prompt if d.turn.usage and prompt else None
        ),
        cost_usd=cost,
        latency_ms=d.turn.latency_ms,
        error=error,
        attempt_errors=d.turn.attempt_errors,
        text=text_of(d.response),
        tool_calls=[ToolUse(name=n, input=i) for n, i in tool_calls(d.response)],
        response=d.response,
        request=d.request,
        as_recorded=as_recorded,
    )


def _delta(new: float | None, old: float | None) -> float | None:
    return new - old if new is not None and old is not None else None


def compare(store: Store, orig: Original, variant: str) -> Comparison:
    """The original against each sample of a variant: text diff, tool calls, stop reason, usage
    (the whole prompt, its cache hit), cost and latency, and over the samples the spread of outputs;
    and the request the variant sent against the original's (`request_diff`, diffing.request_diff)."""
    from .diffing import compare_tools, request_diff, spread, unified, words

    base = sample_view(store, orig.turn_id)
    found = store.variant(variant)
    if found is None:
        raise ReplayError(f"no variant {variant!r}")
    samples: list[Sample] = []
    timeline = store.turns(variant)
    base_calls = tool_calls(base.response)
    for t in timeline:
        v = sample_view(store, t.turn_id, timeline)
        samples.append(
            Sample(
                **vars(v),
                diff=unified(base.text, v.text, "original", f"sample {len(samples) + 1}"),
                words=words(base.text, v.text),
                tool_diff=compare_tools(base_calls, tool_calls(v.response)),
                cost_delta_usd=_delta(v.cost_usd, base.cost_usd),
                prompt_delta_tokens=(
                    v.prompt_tokens - base.prompt_tokens
                    if v.prompt_tokens is not None and base.prompt_tokens is not None
                    else None
                ),
                latency_delta_ms=_delta(v.latency_ms, base.latency_ms),
            )
        )
    # what was sent: every sample of a variant sent the same request; the original's is the one
    # the rerun started from (for a tool-runner thread turn, with its rebuilt history)
    sent = next((v.request for v in samples if isinstance(v.request, dict)), None)
    return Comparison(
        variant=variant,
        turn_id=orig.turn_id,
        created_at=found.created_at,
        edits=found.edits,
        original=base,
        samples=samples,
        # a sample whose call failed is not answered, though a stream cut by an `event: error`
        # left a message begun (what came before the error): its text is no output to count
        spread=spread([None if v.error else v.response for v in samples]),
        request_diff=request_diff(orig.request, sent) if sent is not None else [],
    )
