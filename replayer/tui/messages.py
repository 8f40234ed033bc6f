"""What the screens' thread workers post back to the UI thread: one typed message per result.

A worker posts to the screen that started it (post_message is thread-safe); the screen handles
it with `@on(...)`. None of them bubbles: an answer is for the screen that asked, and one whose
screen has closed is dropped with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from .. import replay
from ..models import Comparison, ConversationSummary, Stats, TurnDetail, TurnSummary, Variant


@dataclass
class ConversationsLoaded(Message, bubble=False):
    """A page of the conversation list."""

    offset: int
    rows: list[ConversationSummary]
    generation: int
    """The list query it answers (ConversationsScreen.generation): an older one's page is dropped."""
    limit: int
    mark: tuple[int, int]
    """The store's change mark, read before the query."""
    cells: list[tuple[Any, ...]] | None = None
    """Each row's table cells, made by the worker (a big page is thousands of rows)."""
    total: int | None = None
    """How many conversations the list has in all (its filter's), read with the page."""


@dataclass
class ConversationsChanged(Message, bubble=False):
    """What changed in the conversation list since its rows were read: the conversations created
    or given a call since then, those of them the list's filter keeps (their rows as they are
    now), and the list's order down to the rows it holds and the new ones."""

    changed: list[str]
    rows: list[ConversationSummary]
    order: list[str]
    generation: int
    mark: tuple[int, int]
    """The store's change mark, read before the query."""
    total: int | None = None
    """How many conversations the list has in all now (None: not read, nothing changed)."""


@dataclass
class StoreChanged(Message, bubble=False):
    """The store's change mark moved since the conversation list was read."""

    mark: tuple[int, int]


@dataclass
class TimelineLoaded(Message, bubble=False):
    """A conversation's turns, and the detail of the first turn to show (None on a poll)."""

    timeline: list[TurnSummary]
    first: TurnDetail | None = None
    reconstructed: dict[int, str] = field(default_factory=dict)
    """Turn index -> the source of each imported turn (Store.reconstructed_turns)."""


@dataclass
class DetailLoaded(Message, bubble=False):
    """A turn's detail, for its tabs."""

    detail: TurnDetail


@dataclass
class DetailToCopy(Message, bubble=False):
    """A turn's detail loaded for `y`, with the tab whose content is copied."""

    detail: TurnDetail
    tab: str


@dataclass
class FoundInConversation(Message, bubble=False):
    """The turns holding a find's text: (turn index, where) pairs from the store's index."""

    text: str
    hits: list[tuple[int, str]]


@dataclass
class StatsLoaded(Message, bubble=False):
    """What the dashboard shows (metrics.stats) for a number of days."""

    doc: Stats
    days: int


@dataclass
class OriginalLoaded(Message, bubble=False):
    """A turn's request as recorded, for the rerun editor, with its earlier variants."""

    original: replay.Original
    variants: list[Variant]


@dataclass
class RerunRefused(Message, bubble=False):
    """The turn can't be rerun, and why."""

    message: str


@dataclass
class VariantsCounted(Message, bubble=False):
    count: int


class VariantStored(Message, bubble=False):
    """A cancelled rerun's samples are stored now (as abandoned, after the editor came back):
    the editor counts its turn's variants again."""


@dataclass
class EstimateReady(Message, bubble=False):
    """A rerun validated and estimated, to confirm before it is sent."""

    edits: replay.Edits
    request: dict[str, Any]
    samples: int
    problems: list[replay.Problem]
    estimate: replay.Estimate


@dataclass
class SampleDone(Message, bubble=False):
    """One rerun sample came back (or failed)."""


@dataclass
class ComparisonReady(Message, bubble=False):
    """A variant's samples against the original (comparison.compare)."""

    result: Comparison


@dataclass
class VariantsLoaded(Message, bubble=False):
    variants: list[Variant]
