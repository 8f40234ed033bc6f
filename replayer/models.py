"""Typed read models: what the CLI (and later the terminal app) consume from the store."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


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
