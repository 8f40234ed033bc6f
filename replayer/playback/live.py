"""The live policy of a fork (`replayer replay --live-from N`, `replayer fork`): which calls the
recording answers and which go upstream, with what edits, under which conversation, and when the
live part stops.

Decisions (`ForkPlayer.decide`, the replay server's `Player`):
- Until the agent reaches turn N of the forked conversation, the recording answers (the matcher).
- The request that matches turn N starts the fork: the recorded turns 0..N-1 are written to the
  new conversation first (so it holds the whole trajectory and `compare` aligns on turn index),
  then the request goes upstream with the edits.
- After that, the request that goes on from the fork's latest live call (its messages are that
  call's, the live reply, and the user's next turn) goes upstream with the same edits: the agent
  keeps re-sending the original system prompt and tool results in its history, and each is
  rewritten the same way every time. Each live call is followed once: another request from the
  same context (an identical conversation the agent runs beside it) is the recording's to answer,
  so the fork stays one trajectory. A retry of the live call goes live again. A request the
  recording can't answer that starts with turn N's messages (an agent that rewrites its history)
  is the fork's too; any other (a subagent the new trajectory started) goes upstream unedited, as
  a conversation of its own tagged as part of the fork.
- `max_turns` and `budget_usd` end the live part with an API-shaped error to the agent; the cost
  is counted from each live response's usage (pricing.py) as its record is made.

Where the fork leaves its source, and the copies of the turns before it: fork_point.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..captured import Captured, Context, Handoff, Put
from ..pricing import PriceTable, usd
from ..replay import Edits, anchored, edit_request
from ..store.threads import normalise
from .fork_point import ForkPoint, copied, copy_times, turn_attempts, turns_before
from .matching import Answer, Matcher, Refusal, error_body
from .server import Decision, GoLive

FORK_TAG = "fork_of"
"""The tag that makes a conversation a fork (store/ingest.py gives it origin 'fork')."""


def _plain(value: Any) -> Any:
    """`value` without cache_control anywhere: agents move their cache breakpoints as the
    history grows, so a continued conversation is recognised without them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _one_turn_on(added: list[Any]) -> bool:
    """Whether the messages `added` after the fork's latest live context and reply are one turn on:
    the user's messages (and perhaps a prefill to end the request). An identical conversation
    further along has added replies of its own."""
    roles = [m.get("role") if isinstance(m, dict) else None for m in added]
    if roles and roles[-1] == "assistant":
        roles = roles[:-1]
    return bool(roles) and "assistant" not in roles


@dataclass
class Limits:
    """What stops the live part: live turns sent (a retry is its turn's), and USD spent on them
    (None: no limit)."""

    max_turns: int | None = None
    budget_usd: float | None = None


@dataclass(slots=True)
class Branch:
    """Another conversation of the source (a subagent started before the fork point) that went
    on differently once the fork was live: from turn `index` on it is a conversation of its own,
    `conversation_id`, holding copies of the source's turns before `index`."""

    source: str
    index: int
    conversation_id: str
    prefix: list[Any]
    """The messages of its first live request (cache_control aside): later ones begin with them."""


@dataclass
class LiveState:
    """What the live part has done so far (read by the CLI for its end report)."""

    started: bool = False
    live_turns: int = 0
    """Live requests sent, each retry of one counted with it (its turn's attempts)."""
    live_calls: int = 0
    """Live attempts sent: the turns and their retries."""
    spent_usd: float = 0.0
    unpriced: int = 0
    """Live responses whose model has no price (not counted against the budget)."""
    stopped: str | None = None
    """Why the live part was stopped (`--max-turns 20 reached (20 live turns sent)`), when it was."""
    conversations: list[str] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)

    def sent(self) -> str:
        """`12 live turns`, or `12 live turns (14 attempts)` when some were retried."""
        turns = f"{self.live_turns} live turn{'s' * (self.live_turns != 1)}"
        return turns if self.live_calls == self.live_turns else f"{turns} ({self.live_calls} attempts)"


class ForkPlayer:
    """The replay server's player for a fork (see the module docstring). `put` is the writer's
    (the same one the server records live calls with, so the copied turns come first)."""

    live = True

    def __init__(self, matcher: Matcher, point: ForkPoint, edits: Edits, *, put: Put, prices: PriceTable,
                 limits: Limits | None = None, fork_id: str | None = None,
                 recorded: list[dict[str, Any]] | None = None) -> None:
        from ..store.codec import new_id

        request = point.turn.get("request")
        self.matcher, self.point = matcher, point
        self.recorded = recorded if recorded is not None else matcher.lines()
        """Every recorded attempt of the source (the matcher's lines leave out failed attempts
        that a success followed): a branch copies its turns from them."""
        # "-1" is the fork turn's last message, in the later requests too (they have more); the
        # fork is tagged with the edits as given
        self.edits = anchored(edits, request) if isinstance(request, dict) else edits
        self.inner_put, self.prices = put, prices
        self.limits = limits or Limits()
        self.fork_id = fork_id or new_id("conv_")
        self.tags: dict[str, Any] = {FORK_TAG: point.conversation_id, "fork_turn": point.index,
                                     "edits": edits.to_json()}
        self.state = LiveState()
        self.lock = threading.Lock()
        messages = request.get("messages") if isinstance(request, dict) else None
        self._prefix = _plain(messages) if isinstance(messages, list) else None
        self._asked: list[Any] | None = None
        """The messages of the fork's latest live request as the agent sent them (normalised as
        threading compares them): the fork's next turn extends them."""
        self._sent: bytes | None = None
        """That request's body as it went upstream (edited): its record says how it ended."""
        self._tip: list[Any] | None = None
        """`_asked` and the live reply to it, once that call has ended: the fork's next turn extends it."""
        self._failed = False
        """The latest live request ended without a reply: the same request again is a retry."""
        self._outcomes: dict[bytes, bool | None] = {}
        """The digest of each body sent live -> whether its latest attempt was answered (None while
        it runs): the same body again after a failure, or with a retry count, is a retry of it."""
        # the forked conversation's turns after N are never answered from the recording (the live
        # calls take their place): offered before turn N went live, a later call of an identical
        # conversation beside it (its turn N+1 asked before this one's turn N) took one, and started
        # the fork there, at the wrong turn
        matcher.retire(self._after_point)

    def _after_point(self, line: dict[str, Any]) -> bool:
        index = line.get("index")
        return line.get("conversation_id") == self.point.conversation_id and isinstance(index, int) \
            and index > self.point.index

    # -- deciding -------------------------------------------------------------------------------
    def decide(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> Decision:
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if self.state.started and self._follows(request, headers):
            return self._fork_turn(request, headers)
        answer = self.matcher.answer(endpoint, body)
        if isinstance(answer, Answer):
            line = answer.line
            if (not self.state.started and line.get("conversation_id") == self.point.conversation_id
                    and isinstance(line.get("index"), int) and line["index"] >= self.point.index):
                self.matcher.taken_back(answer)  # turn N goes live: the recording did not answer it
                self._start()
                return self._fork_turn(request, headers)
            return answer
        if self.state.started and isinstance(request, dict):
            self.matcher.withdraw(answer)  # not a mismatch: the live trajectory's own call
            if self._continues(request):
                return self._fork_turn(request, headers)
            return self._diverged(request, headers)
        return answer

    def _follows(self, request: Any, headers: Mapping[str, str]) -> bool:
        """Whether `request` is the fork's next turn: one turn on from the latest live call and its
        reply, or that call again after it failed (a retry)."""
        messages = request.get("messages") if isinstance(request, dict) else None
        if not isinstance(messages, list):
            return False
        sent = normalise(messages)
        with self.lock:
            asked, tip = self._asked, self._tip
            if asked is None:
                return False
            if sent == asked:
                return self._failed or _retry_count(headers) > 0
            if tip is None:  # the live call hasn't ended: what goes on from it is the recording's
                return False
            return len(sent) > len(tip) and sent[: len(tip)] == tip and _one_turn_on(sent[len(tip) :])

    def _fork_turn(self, request: Any, headers: Mapping[str, str]) -> Decision:
        """`request` goes live as the fork's next turn, edited; later ones must go on from it."""
        decision = self._live(request, self.fork_id, headers, edited=True)
        if isinstance(decision, GoLive):
            messages = request.get("messages") if isinstance(request, dict) else None
            with self.lock:
                self._asked = normalise(messages) if isinstance(messages, list) else None
                self._sent, self._tip, self._failed = decision.body, None, False
        return decision

    def _diverged(self, request: dict[str, Any], headers: Mapping[str, str]) -> Decision:
        """A request of the live trajectory that the recording can't answer, outside the forked
        conversation: one continuing a branch goes on in it; one going on from a recorded
        conversation's answered turn (a subagent started before the fork point, now asked
        something else) starts a branch; anything else is a conversation the new trajectory
        started. All go upstream unedited: the edits are the forked conversation's."""
        messages = _plain(request.get("messages"))
        for branch in self.state.branches:
            n = len(branch.prefix)
            if isinstance(messages, list) and len(messages) >= n and messages[:n] == branch.prefix:
                return self._live(request, branch.conversation_id, headers, edited=False)
        line = self.matcher.continued(request, _plain)
        if (line is None or not isinstance(messages, list) or not isinstance(line.get("conversation_id"), str)
                or not isinstance(line.get("index"), int)):
            return self._live(request, None, headers, edited=False)
        from ..store.codec import new_id

        source, index = str(line["conversation_id"]), int(line["index"]) + 1
        branch = Branch(source, index, new_id("conv_"), messages)
        decision = self._live(request, branch.conversation_id, headers, edited=False)
        if isinstance(decision, GoLive):
            with self.lock:
                self.state.branches.append(branch)
            # a fork of `source` with no edits of its own: the fork `fork_id` made it go on differently
            ctx = Context(branch.conversation_id, None,
                          {FORK_TAG: source, "fork_turn": index, "edits": {}, "in_fork": self.fork_id})
            self._copy(turns_before(turn_attempts(self.recorded), source, index), ctx)
            decision.tags = ctx.tags
        return decision

    def replaced(self, line: dict[str, Any]) -> bool:
        """Turns N on of the forked conversation once the fork went live, and a branch's source
        turns from where it parted: the new trajectory's own calls took their place."""
        index, conv = line.get("index"), line.get("conversation_id")
        if not self.state.started or not isinstance(index, int):
            return False
        if conv == self.point.conversation_id:
            return index >= self.point.index
        return any(b.source == conv and index >= b.index for b in self.state.branches)

    def _continues(self, request: Any) -> bool:
        if not isinstance(request, dict) or self._prefix is None:
            return False
        messages = request.get("messages")
        n = len(self._prefix)
        return isinstance(messages, list) and len(messages) >= n and _plain(messages[:n]) == self._prefix

    def _live(self, request: Any, conversation_id: str | None, headers: Mapping[str, str], *,
              edited: bool) -> Decision:
        """`request` goes upstream (edited when `edited`), unless a limit is reached. A retry (the
        body of a live call that failed, or one sent with a retry count) is its turn's next
        attempt, so --max-turns lets it through and counts no turn for it."""
        body = edit_request(request, self.edits) if edited and isinstance(request, dict) else request
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        key = hashlib.blake2b(data, digest_size=16).digest()
        with self.lock:
            retry = key in self._outcomes and (self._outcomes[key] is False or _retry_count(headers) > 0)
            stop = self._stop_reason(retry)
            if stop is not None:
                self.state.stopped = stop
                message = f"replayer: the fork's live part is stopped: {stop}"
                return Refusal(400, error_body(message), message)
            self.state.live_calls += 1
            self.state.live_turns += 0 if retry else 1
            self._outcomes[key] = None
        return GoLive(data, conversation_id, dict(self.tags))

    def _stop_reason(self, retry: bool) -> str | None:
        limits, state = self.limits, self.state
        if limits.max_turns is not None and state.live_turns >= limits.max_turns and not retry:
            return f"--max-turns {limits.max_turns} reached ({state.sent()} sent)"
        if limits.budget_usd is not None and usd(state.spent_usd) >= usd(limits.budget_usd):
            return f"--budget ${limits.budget_usd:g} reached (${state.spent_usd:.4f} spent on {state.sent()})"
        return None

    # -- the forked conversation ----------------------------------------------------------------
    def _start(self) -> None:
        """Write turns 0..N-1 of the source into the fork, before its first live call."""
        self.state.started = True
        self.state.conversations.append(self.fork_id)
        self.matcher.retire(self.replaced)  # turns N on: the fork's live calls take their place
        self._copy(self.point.replayed, ctx=Context(self.fork_id, None, dict(self.tags)))

    def _copy(self, turns: list[list[dict[str, Any]]], ctx: Context) -> None:
        """Record the recorded turns `turns` into `ctx`'s conversation, every attempt of each (its
        failed ones too, as they went), each turn's attempts joined as one call's, at the times
        `copy_times` gives them."""
        attempts = [(call_key, line) for call_key, turn in ((uuid.uuid4().hex, t) for t in turns) for line in turn]
        times = copy_times([line for _, line in attempts], time.time())
        for (call_key, line), t_start in zip(attempts, times, strict=True):
            self.inner_put(copied(line, ctx, t_start, call_key))

    # -- recording, and counting what the live part costs ---------------------------------------
    def put(self, item: Handoff) -> None:
        """The put the replay server records live calls with: each live call's record is made
        here, as it ends, so its cost counts before the agent's next request is decided."""
        captured = item if isinstance(item, Captured) else item.captured()
        if captured.ctx is not None and captured.ctx.tags and FORK_TAG in captured.ctx.tags:
            self._count(captured)
        self.inner_put(captured)

    def _replied(self, captured: Captured, message: Any) -> None:
        """The fork's latest live call ended: its reply is what the next turn goes on from."""
        with self.lock:
            if self._sent is None or captured.request_bytes != self._sent or self._asked is None:
                return  # an earlier call's record, or not the fork's
            content = message.get("content") if isinstance(message, dict) else None
            ok = captured.status is not None and 200 <= captured.status < 300 and isinstance(content, list)
            if ok:
                self._tip = [*self._asked, normalise({"role": "assistant", "content": content})]
            self._failed = not ok

    def _count(self, captured: Captured) -> None:
        message = _message(captured)
        if captured.request_bytes is not None:
            key = hashlib.blake2b(captured.request_bytes, digest_size=16).digest()
            content = message.get("content") if isinstance(message, dict) else None
            ok = captured.status is not None and 200 <= captured.status < 300 and isinstance(content, list)
            with self.lock:
                if key in self._outcomes:
                    self._outcomes[key] = ok
        if captured.ctx is not None and captured.ctx.conversation_id == self.fork_id:
            self._replied(captured, message)
        usage = message.get("usage") if isinstance(message, dict) else None
        if not isinstance(usage, dict):
            return
        model = message.get("model") if isinstance(message, dict) else None
        cost = self.prices.cost(usage, model if isinstance(model, str) else None)
        with self.lock:
            if cost is None:
                self.state.unpriced += 1
            else:
                self.state.spent_usd += cost
            cid = captured.ctx.conversation_id if captured.ctx else None
            if cid is not None and cid not in self.state.conversations:
                self.state.conversations.append(cid)


def _retry_count(headers: Mapping[str, str]) -> int:
    """The SDKs' `x-stainless-retry-count`: how many times this request was sent before (0: none said)."""
    try:
        return int(headers.get("x-stainless-retry-count", "0").strip() or 0)
    except ValueError:
        return 0


def _message(captured: Captured) -> Any:
    if captured.sse is not None:
        from ..sse import assemble

        return assemble(captured.sse).message
    if captured.response_bytes is not None:
        try:
            return json.loads(captured.response_bytes)
        except ValueError:
            return None
    return None
