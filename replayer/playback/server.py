"""The replay server: the recording proxy's server (proxy/server.py) with one decision in front
of every Messages call. A `Player` decides: `Answer` (served from the recording, no upstream
connection), `Refusal` (an API-shaped 4xx to the agent, its message told to the user), or
`GoLive` (forwarded upstream through the proxy's recording path, with the body the decision
gives, recorded under its conversation and tags). Other endpoints (count_tokens, models, ...)
are forwarded when the player allows a live part, else refused with an error naming replay.

Python children reach it through the boot's redirecting middleware (redirect.py), others
through ANTHROPIC_BASE_URL: one server, so matching stays in one place across processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from aiohttp import web

from ..captured import Captured, Put
from ..proxy.server import Proxy, is_turn
from ..proxy.tee import ProxiedCall
from ..wire import TIMED_OUT_HEADER, TIMEOUTS_HEADER
from .answer import chunks, retry_wait
from .matching import Answer, Matcher, Refusal, error_body


@dataclass(slots=True)
class GoLive:
    """Send this call upstream: `body` as it goes (edits applied), recorded in
    `conversation_id` with `tags`."""

    body: bytes
    conversation_id: str | None = None
    tags: dict[str, Any] | None = None


Decision: TypeAlias = Answer | Refusal | GoLive


class Player(Protocol):
    """What answers each Messages call. `live`: whether anything may go upstream (then other
    endpoints are forwarded too)."""

    live: bool

    def decide(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> Decision:
        """The decision for one Messages call (`endpoint` is its path). Runs on the server's
        event loop: quick, never blocking."""
        ...

    def replaced(self, line: dict[str, Any]) -> bool:
        """Whether the live part took the place of this recorded call (the end report doesn't
        count it as not asked for)."""
        ...


class RecordingPlayer:
    """Offline: every call answered from the recording, or refused."""

    live = False

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher

    def decide(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> Decision:
        return self.matcher.answer(endpoint, body)

    def replaced(self, line: dict[str, Any]) -> bool:
        return False


def replayed_turn(method: str, path: str) -> bool:
    """A Messages call: the API's, or a Vertex client's (`.../publishers/anthropic/models/MODEL:rawPredict`
    or `:streamRawPredict`; its count-tokens is not one)."""
    if is_turn(method, path):
        return True
    return (method == "POST" and "/publishers/anthropic/models/" in path and path.endswith(("RawPredict", "rawPredict"))
            and "/models/count-tokens:" not in path)


class _LiveCall(ProxiedCall):
    """A call that went live, recorded in the conversation its decision named."""

    __slots__ = ("conversation_id",)

    def __init__(self, base: ProxiedCall, conversation_id: str | None) -> None:
        super().__init__(base.retries, base.retry_count, base.endpoint, base.tags, base.request_bytes,
                         base.request_headers)
        self.conversation_id = conversation_id

    def captured(self) -> Captured:
        record = super().captured()
        if self.conversation_id is not None:
            from ..captured import Context

            ctx = record.ctx or Context()
            record.ctx = Context(self.conversation_id, ctx.user_id, ctx.tags, ctx.trace_id)
        return record


class ReplayServer(Proxy):
    """A proxy whose Messages calls go through `player` first. `put` (a writer's) records what
    goes live; `speed` paces answers by their recorded times (None: as fast as possible);
    `on_refusal` hears each refusal's message (on the server's thread)."""

    def __init__(self, player: Player, upstream: str, put: Put | None = None, *, speed: float | None = None,
                 on_refusal: Callable[[str], None] | None = None, **options: Any) -> None:
        super().__init__(upstream, put, **options)
        self.player = player
        self.speed = speed
        self.on_refusal = on_refusal
        self.live_calls = 0

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if not replayed_turn(request.method, request.path):
            if self.player.live:
                return await super()._handle(request)
            if request.method == "HEAD":  # a client's reachability check (Claude Code's HEAD /)
                return web.Response(status=200)
            message = (f"replayer replay: {request.method} {request.path} is not in the recording (only Messages "
                       "calls are replayed) and this replay has no live part")
            return web.Response(status=400, body=error_body(message), content_type="application/json")
        body = await request.read()
        decision = self.player.decide(request.path, body, request.headers)
        if isinstance(decision, Answer):
            return await self._serve(request, decision)
        if isinstance(decision, Refusal):
            if self.on_refusal is not None:
                self.on_refusal(decision.message)
            return web.Response(status=decision.status, body=decision.body, content_type="application/json")
        return await self._go_live(request, decision)

    async def _serve(self, request: web.BaseRequest, answer: Answer) -> web.StreamResponse:
        if answer.status is None:  # the recorded attempt got no answer: nor does this one
            if answer.timed_out and request.headers.get(TIMEOUTS_HEADER):
                # a timeout, to a client whose middleware raises it (wire.TIMED_OUT_HEADER)
                message = "replayer replay: the recorded attempt timed out before any answer"
                return web.Response(status=504, body=error_body(message, "timeout_error"),
                                    content_type="application/json", headers={TIMED_OUT_HEADER: "before-answer"})
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        speed = self.speed
        headers = retry_wait(answer.headers, speed)
        if answer.events is None:
            latency = answer.line.get("latency_ms")
            if speed and latency:
                await asyncio.sleep(latency / 1000.0 / speed)
            return web.Response(status=answer.status, body=answer.body, headers=headers)
        if answer.cut and answer.timed_out:  # the break below stands for a read timeout
            headers = {**headers, TIMED_OUT_HEADER: "mid-stream"}
        response = web.StreamResponse(status=answer.status, headers=headers)
        await response.prepare(request)
        for wait, chunk in chunks(answer.events, speed):
            if wait:
                await asyncio.sleep(wait)
            await response.write(chunk)
        if answer.cut:
            # the recorded connection broke after these events: this one breaks too, its chunked
            # body left unfinished (close, not abort: what was written goes out first), and the
            # client fails as it did then, not with a whole message that has no end
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        await response.write_eof()
        return response

    async def _go_live(self, request: web.BaseRequest, live: GoLive) -> web.StreamResponse:
        self.live_calls += 1
        headers, recorded_elsewhere = await self.forwarded_headers(request)
        call = None
        if self.put is not None and not recorded_elsewhere:
            call = _LiveCall(self.recorded_call(request, headers, live.body, live.tags), live.conversation_id)
        return await self.forward(request, headers, live.body, call)
