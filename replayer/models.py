"""Typed read models: what the store, metrics and rerun hand to the CLI and the terminal app; each
`--json` document is one of them, so its shape is declared here once (`Document.document`).

About 550 lines on purpose: every read model in one place (33 classes, none over 55 lines), so a
`--json` document's shape is found where the others are, and a model shared by two commands is
declared once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, PrivateAttr, computed_field, field_serializer


class AttemptInfo(BaseModel):
    attempt: int
    started_at: str
    status: int | None
    latency_ms: float | None
    ttft_ms: float | None
    error: dict[str, Any] | None
    """Its error, read with the attempt's status where it was stored with none of its own
    (store.queries._error_of: a stream cut after its 200 reads `mid-stream`); its JSON keeps the
    error as recorded, as `export` has it: a broken connection has no status of its own."""
    request_id: str | None
    abandoned: bool = False
    _error_status_added: bool = PrivateAttr(default=False)

    @property
    def error_as_recorded(self) -> dict[str, Any] | None:
        """`error` as recorded, what its JSON says: without the attempt's status read into it."""
        error = self.error
        return {**error, "status": None} if error is not None and self._error_status_added else error

    @field_serializer("error")
    def _error_as_recorded(self, error: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.error_as_recorded


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
    """What its attempts cost when they were made (a fork's copy: what the original's turn cost)."""
    context_messages: int | None
    tool_calls: list[str]
    attempts: list[AttemptInfo]
    copied: bool = False
    """A fork's copy of its original's turn: it costs nothing now, so no total adds it."""

    @property
    def error(self) -> dict[str, Any] | None:
        return self.attempts[-1].error if self.attempts else None

    @property
    def latency_ms(self) -> float | None:
        """Every attempt's latency added up (retries took time too), as compare and rerun show
        a turn's latency; None when none was measured."""
        measured = [a.latency_ms for a in self.attempts if a.latency_ms is not None]
        return sum(measured) if measured else None

    @property
    def attempt_errors(self) -> list[dict[str, Any]]:
        """Each attempt's error that ended in one, in order (the last is `error` when the call failed)."""
        return [a.error for a in self.attempts if a.error]


class ConversationSummary(BaseModel):
    conversation_id: str
    user_id: str | None
    started_at: str
    last_at: str
    """When its latest turn started (its last activity: what `--since` reads)."""
    ended_at: str
    """When its last reply came back: the latest of its attempts' starts plus their latencies."""
    turns: int
    models: list[str]
    input_tokens: int
    """Its turns' prompt tokens (uncached input + cache writes + cache reads), each turn's once: the
    attempt that counts it (its last with usage, as `show` has it)."""
    output_tokens: int
    """Its turns' output tokens, counted the same way."""
    cache_read_tokens: int
    cost_usd: float | None
    """What its priced attempts cost (every attempt billed, a turn's earlier ones too): a lower
    bound when `unpriced_attempts` is not 0, and None when nothing priced is in it (shown `≥$…`
    and `?`, as `stats` shows a sum)."""
    errors: int
    first_message: str | None
    tags: dict[str, Any] | None = None
    unpriced_attempts: int = 0
    """Attempts whose model has no price: what they cost is not in cost_usd."""
    other_users: list[str] = []
    """The users other than `user_id` (its first) whose calls it holds, in the order they first
    called: a conversation continued by another user. `stats` bills each call to its own user."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cache_hit_rate(self) -> float | None:
        """Cache reads / all prompt tokens."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def variant_of(self) -> str | None:
        """For a fork (`replayer replay --live-from`, `replayer fork`), what it is a variant of:
        "fork at turn N of CONV (edits)"; None for any other conversation."""
        tags = self.tags or {}
        parent = tags.get("fork_of")
        if not isinstance(parent, str):
            return None
        edits = tags.get("edits")
        what = ", ".join(edits) if isinstance(edits, dict) and edits else "no edits"
        return f"fork at turn {tags.get('fork_turn')} of {parent} ({what})"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float:
        """From its first call's start to its last reply (`compare`'s wall time of it)."""
        start = datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat(self.ended_at.replace("Z", "+00:00"))
        return max(0.0, (end - start).total_seconds())


class ContextChange(BaseModel):
    """One difference between a turn's context and the previous turn's."""

    kind: str
    """added | removed | changed (a message at the same place, different) | system | tools (the
    system prompt or the tool list: on the first turn, where all of it entered, and where it
    differs from the previous turn's)"""
    position: int | None = None
    """Where in the context (0-based) the message is (for removed: where it was)."""
    role: str | None = None
    message: Any = None
    """The message; for system | tools, the system prompt or tool list now (None: none now)."""
    before: Any = None
    """For system | tools, the previous turn's system prompt or tool list (None on the first turn,
    or where the previous turn had none)."""


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
    band_above_tokens: int | None = None
    """The prompt size (input tokens) above which the model's long-context rates apply, when this
    turn's prompt was above it and was priced at them; None for the usual rates."""
    reconstructed: str | None = None
    """The source the turn was imported from (store/imported.py: its request is rebuilt from a
    transcript, without the system prompt and tools), else None."""
    response_headers: list[dict[str, str]] = []
    """Each attempt's kept response headers (wire.RESPONSE_HEADERS: rate limits, retry-after), in
    `turn.attempts`' order; {} for one that had none."""
    earlier_attempts: int = 0
    """Attempts before the one whose usage `usage` itemises (the one that counts the turn) that
    were billed too: they got usage back (a stream cut after its message_start, then sent again)."""
    earlier_cost_usd: float | None = 0.0
    """What those attempts cost, their compaction iterations included (None: one has no price)."""
    compaction_cost_usd: float | None = 0.0
    """What the itemised attempt's compaction iterations cost on top of its lines (None: no
    price). `usage`'s costs, this and earlier_cost_usd add up to cost_usd."""


class Document:
    """A result printed as one `--json` document: its shape is its dataclass's fields, in order."""

    def document(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass


# -- spend and health (metrics.stats) ------------------------------------------------------------


@dataclass
class DayCost:
    date: str
    """YYYY-MM-DD in the stats' time zone."""
    cost_usd: float
    unpriced_attempts: int = 0
    """Attempts whose model has no price: what they cost is not in cost_usd."""
    attempts: int = 0
    """Attempts made that day, errors included: 0 is a day with no calls, not one that cost $0."""


@dataclass
class UserSpend:
    user_id: str | None
    cost_usd: float
    conversations: int
    turns: int
    days: list[DayCost]
    """Every day of the window, oldest first."""
    unpriced_attempts: int = 0
    """Attempts whose model has no price: what they cost is not in cost_usd."""


@dataclass
class UserToday:
    user_id: str | None
    cost_usd: float
    unpriced_attempts: int = 0
    """Attempts whose model has no price: what they cost is not in cost_usd."""


@dataclass
class ModelSpend:
    model: str | None
    cost_usd: float | None
    """None when the model has no price."""
    turns: int


@dataclass
class ConversationCosts:
    count: int
    mean_cost_usd: float | None
    p50_cost_usd: float | None
    p95_cost_usd: float | None
    unpriced_attempts: int = 0
    """Attempts whose model has no price, counted as $0: each figure is then a lower bound."""


@dataclass
class ConversationSpend:
    conversation_id: str
    user_id: str | None
    cost_usd: float
    turns: int
    unpriced_attempts: int = 0
    """Attempts whose model has no price: what they cost is not in cost_usd."""


@dataclass
class Metric:
    value: float | None
    """None when there was nothing to measure."""
    threshold: float
    alert: bool
    unpriced_attempts: int = 0
    """Attempts whose model has no price, counted as $0 in `value` (a cost metric's only): the
    value is then a lower bound, and an alert on it is certain while no alert is not."""


@dataclass
class BudgetAlert(Document):
    """A user spent more than the daily budget today."""

    kind: Literal["budget"] = field(default="budget", init=False)
    user_id: str | None
    date: str
    cost_usd: float
    budget_usd: float
    unpriced_attempts: int = 0
    """Attempts that day whose model has no price: `cost_usd` leaves them out (a lower bound)."""


@dataclass
class MetricAlert(Document):
    """A health metric past its threshold."""

    kind: Literal["metric"] = field(default="metric", init=False)
    metric: str
    value: float | None
    threshold: float
    unpriced_attempts: int = 0
    """As the metric's: `value` is a lower bound when some attempts had no price."""


@dataclass
class CacheAlert(Document):
    """A broken cache: turns that keep writing to the cache and read nothing more back."""

    kind: Literal["cache"] = field(default="cache", init=False)
    conversation_id: str
    turn_index: int
    extra_cost_usd: float | None
    """None when a turn of the run has a model with no price: what it cost is unknown."""


Alert = BudgetAlert | MetricAlert | CacheAlert


@dataclass
class Unpriced:
    model: str
    attempts: int


@dataclass
class RerunSpend:
    """What `replayer rerun` variants cost (kept out of everything else)."""

    cost_usd: float
    turns: int
    variants: int


@dataclass
class Stats(Document):
    """The document `replayer stats --json` prints (its shape is an interface: see the README)."""

    since: str
    until: str
    tz: str
    users: list[UserSpend]
    top_users_today: list[UserToday]
    models: list[ModelSpend]
    days: list[DayCost]
    conversations: ConversationCosts
    top_conversations: list[ConversationSpend]
    metrics: dict[str, Metric]
    alerts: list[Alert]
    unpriced: list[Unpriced]
    reruns: RerunSpend


# -- reruns ---------------------------------------------------------------------------------------


@dataclass
class Variant(Document):
    """A rerun of a turn: the conversation of origin "rerun" its samples were recorded in."""

    variant: str
    """Its conversation id."""
    created_at: str
    samples: int
    edits: dict[str, Any]
    """What it changed (replay.Edits.to_json)."""


# -- comparing a rerun with its original (comparison.compare, diffing) ------------------------------


@dataclass
class ToolUse:
    """A tool call of a response: its name and input."""

    name: str
    input: Any


@dataclass
class JsonChange:
    """One difference between two JSON values (diffing.json_diff)."""

    path: str
    """Dotted, list items by index; `(value)` for the values themselves."""
    op: str
    """added | removed | changed"""
    old: Any
    new: Any


@dataclass
class ToolDiff:
    """A tool call of the original against the sample's, matched in order by name."""

    name: str
    status: str
    """same | changed (its input) | removed (only in the original) | added (only in the sample)"""
    input: Any
    diff: list[JsonChange]
    """How the input changed (empty unless `changed`)."""


@dataclass
class Spread:
    """Over a variant's samples: how many distinct outputs, how often each tool was called."""

    samples: int
    answered: int
    distinct_outputs: int
    tool_calls: dict[str, int]
    """Tool name -> samples that called it, most first."""
    stop_reasons: dict[str, int]


@dataclass
class SectionDiff:
    """One section of the request a variant sent against the original's (diffing.request_diff)."""

    section: str
    """system | tools | messages | parameters"""
    changed: bool
    removed: int
    added: int
    lines: list[list[str]]
    """[op, text]: op " " (context), "-", "+" or "@" (where a hunk starts)."""


@dataclass
class SampleView:
    """One recorded call as the compare views show it (the original, or a sample)."""

    turn_id: str
    model: str | None
    status: int | None
    attempts: int
    stop_reason: str | None
    usage: dict[str, Any] | None
    prompt_tokens: int | None
    """The whole prompt: uncached input + cache writes + cache reads."""
    cache_hit_rate: float | None
    cost_usd: float | None
    latency_ms: float | None
    """Every attempt's latency added up, retries included (as `replayer compare` counts it)."""
    error: dict[str, Any] | None
    """The API's error, or a connection_error when no response came."""
    attempt_errors: list[dict[str, Any]]
    """Each attempt's error that ended in one, in order: a call answered after a 529 has one
    here and no `error`. Their count is `errors` in `replayer compare`."""
    text: str
    tool_calls: list[ToolUse]
    response: Any
    request: Any
    as_recorded: dict[str, Any]
    """`error` and `attempt_errors` as recorded (AttemptInfo.error_as_recorded), what its JSON
    says in their place (Comparison.document), as `show --json` and `export` say them: a stream
    cut after its 200 has no status of its own there, the 200 beside it. The fields above read
    it with its attempt's status (`connection_error mid-stream`), as the screens say it."""


@dataclass
class Sample(SampleView):
    """A sample of a variant, beside the original."""

    diff: str
    """Unified diff of the texts."""
    words: list[tuple[str, str]]
    """Word-level edit script (diffing.words)."""
    tool_diff: list[ToolDiff]
    cost_delta_usd: float | None
    prompt_delta_tokens: int | None
    latency_delta_ms: float | None


BULKY = ("response", "request", "words")
"""What `replayer rerun --json` leaves out of each sample (request_diff says how the request differs)."""


@dataclass
class Comparison(Document):
    """The original turn against each sample of a variant (comparison.compare)."""

    variant: str
    turn_id: str
    created_at: str
    edits: dict[str, Any]
    original: SampleView
    samples: list[Sample]
    spread: Spread
    request_diff: list[SectionDiff]

    def document(self, *, bulky: bool = True, words: bool = True) -> dict[str, Any]:
        """As JSON: `replayer rerun --json` prints it without BULKY (bulky=False); the compare
        screen copies it without the word-level edit scripts (words=False)."""
        doc = asdict(self)
        left_out = {*(() if bulky else BULKY), *(() if words else ("words",))}
        for view in [doc["original"], *doc["samples"]]:
            view.update(view.pop("as_recorded"))
            for key in left_out:
                view.pop(key, None)
        return doc


@dataclass
class Estimate:
    """What a rerun will cost, worked out before anything is sent (replay.estimate)."""

    input_tokens: int
    output_tokens: int
    max_output_tokens: int
    samples: int
    cost_usd: float | None
    """Expected, for all samples: input at the uncached rate, output as the original's."""
    max_cost_usd: float | None
    """If every sample wrote max_tokens."""
    source: str
    """count_tokens | recorded usage"""


@dataclass
class RerunReport(Comparison):
    """The document `replayer rerun --json` prints: the comparison, then the estimate made before
    sending."""

    estimate: Estimate


@dataclass
class Original:
    """A recorded turn as a rerun starts from it."""

    turn_id: str
    conversation_id: str
    index: int
    request: dict[str, Any]
    """The request to rerun: exactly as sent, with the full history for thread-mode turns."""
    headers: dict[str, str]
    """anthropic-version / anthropic-beta as recorded."""
    response: Any
    usage: dict[str, Any] | None
    model: str | None
    cost_usd: float | None
    latency_ms: float | None
    rebuilt: bool = False
    """The history was reconstructed (tool-runner thread mode)."""
