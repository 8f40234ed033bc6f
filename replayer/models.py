"""Typed read models: what the CLI (and later the terminal app) consume from the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, computed_field


class AttemptInfo(BaseModel):
    attempt: int
    started_at: str
    status: int | None
    latency_ms: float | None
    ttft_ms: float | None
    error: dict[str, Any] | None
    request_id: str | None
    abandoned: bool = False


class TurnSummary(BaseModel):
    turn_id: str
    conversation_id: str
    index: int
    started_at: str
    model: str | None
    stream: bool
    stop_reason: str | None
    usage: dict[str, Any] | None
    """Raw usage of the last attempt that got a response."""
    cost_usd: float | None
    context_messages: int | None
    tool_calls: list[str]
    attempts: list[AttemptInfo]

    @property
    def error(self) -> dict[str, Any] | None:
        return self.attempts[-1].error if self.attempts else None


class ConversationSummary(BaseModel):
    conversation_id: str
    user_id: str | None
    started_at: str
    last_at: str
    turns: int
    models: list[str]
    input_tokens: int
    """All prompt tokens: uncached input + cache writes + cache reads."""
    output_tokens: int
    cache_read_tokens: int
    cost_usd: float | None
    """None when any priced turn's model is unknown."""
    errors: int
    first_message: str | None
    tags: dict[str, Any] | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cache_hit_rate(self) -> float | None:
        """Cache reads / all prompt tokens."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float:
        start = datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat(self.last_at.replace("Z", "+00:00"))
        return max(0.0, (end - start).total_seconds())


class ContextChange(BaseModel):
    """One difference between a turn's context and the previous turn's."""

    kind: str
    """added | removed | changed (a message at the same place, different) | system | tools"""
    position: int | None = None
    """Where in the context (0-based) the message is (for removed: where it was)."""
    role: str | None = None
    message: Any = None


class ToolCall(BaseModel):
    id: str | None
    name: str | None
    input: Any
    server: bool = False
    """A server tool (web search, code execution): its result is in the same response."""
    result: Any = None
    is_error: bool = False
    pending: bool = True
    """No result came back (the conversation ended, or the next request didn't carry it)."""


class UsageLine(BaseModel):
    kind: str
    tokens: int
    rate_per_mtok: float | None
    cost_usd: float | None
    delta_tokens: int | None = None
    """Against the previous turn."""


class TurnDetail(BaseModel):
    turn: TurnSummary
    request: Any
    """The last attempt's request exactly as sent."""
    response: Any
    """The last attempt's response as received (None when none came)."""
    context: list[Any]
    """The whole context the model saw (for thread-mode turns, rebuilt from earlier turns)."""
    system: Any = None
    tools: Any = None
    changes: list[ContextChange]
    tool_calls: list[ToolCall]
    usage: list[UsageLine]
    cost_usd: float | None
    running_cost_usd: float | None
    """The conversation's cost up to and including this turn (None if any part is unknown)."""
    cache_break: bool = False
    """Cache writes keep rising while reads stay flat from this turn on."""


@dataclass
class Variant:
    """A rerun of a turn: the conversation of origin "rerun" its samples were recorded in."""

    variant: str
    """Its conversation id."""
    created_at: str
    samples: int
    edits: dict[str, Any]
    """What it changed (replay.Edits.to_json)."""

    def document(self) -> dict[str, Any]:
        """As `replayer rerun --list --json` prints it."""
        return asdict(self)
