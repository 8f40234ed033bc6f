"""Imported (reconstructed) turns are marked in the browser as `replayer show` and the export mark
them: a badge in the conversation's title, a note on the turn rows of a conversation that mixes
them with recorded ones, and a line atop the turn's Context tab naming the transcript."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from textual.widgets import Static
from tui_data import build_db, open_first_conversation, settle

from replayer.cli import cli
from replayer.models import AttemptInfo, TurnSummary
from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app
from replayer.tui.render import conversation_title, turn_rows
from replayer.tui.text_view import TextView

LOOP = Path(__file__).parent / "fixtures" / "claude_code" / "projects" / "-home-user-project"
LOOP_FILE = LOOP / "2b85f5cb-9ab7-4089-88c2-73c04e67955b.jsonl"  # two turns of a parallel tool loop
LOOP_ID = "cc_2b85f5cb-9ab7-4089-88c2-73c04e67955b"


@pytest.fixture
def imported_db(tmp_path):
    db = tmp_path / "imported.db"
    result = CliRunner().invoke(cli, ["--db", str(db), "import", "claude-code", str(LOOP_FILE)])
    assert result.exit_code == 0, result.output
    return db


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def context_of(screen) -> str:
    return screen.query_one("#context-body", TextView).text.plain


def test_the_store_says_which_turns_were_reconstructed(imported_db, tmp_path):
    store = Store(open_db(imported_db))
    assert store.reconstructed_turns(LOOP_ID) == {0: "claude-code", 1: "claude-code"}
    turn = store.turns(LOOP_ID)[1]
    assert store.turn_detail(turn.turn_id).reconstructed == "claude-code"
    wire = Store(open_db(build_db(tmp_path / "wire.db")))
    assert wire.reconstructed_turns("conv_tools") == {}
    assert wire.turn_detail(wire.turns("conv_tools")[0].turn_id).reconstructed is None


async def test_the_conversation_and_its_turns_show_the_badge(imported_db):
    app = make_app(imported_db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_first_conversation(pilot)
        assert screen.conversation_id == LOOP_ID
        assert text_of(screen, "#conv-title").endswith("   reconstructed")  # every turn: said once, in the title
        context = context_of(screen)
        assert context.startswith("reconstructed from a Claude Code transcript: the request is rebuilt")
        await pilot.press("j")  # the next turn's detail says it too
        await settle(pilot)
        assert context_of(screen).startswith("reconstructed from a Claude Code transcript")


async def test_a_recorded_conversation_has_no_badge(tmp_path):
    app = make_app(build_db(tmp_path / "wire.db"))
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        assert "reconstructed" not in text_of(screen, "#conv-title")
        assert "reconstructed" not in context_of(screen)


def summary(index: int) -> TurnSummary:
    return TurnSummary(
        turn_id=f"turn_{index}", conversation_id="conv_mixed", index=index, started_at="2026-11-24T10:00:00.000Z",
        model="claude-haiku-4-5", stream=False, stop_reason="end_turn", usage=None, cost_usd=None,
        context_messages=1, tool_calls=[],
        attempts=[AttemptInfo(attempt=1, started_at="2026-11-24T10:00:00.000Z", status=200, latency_ms=5.0,
                              ttft_ms=None, error=None, request_id=None)],
    )  # fmt: skip


def test_rows_note_reconstructed_turns_only_in_a_mixed_conversation():
    timeline = [summary(0), summary(1), summary(2)]
    colour = {k: "" for k in ("error", "abandoned", "retried", "break")}
    symbols = {k: "x" for k in colour}

    def notes(reconstructed) -> list[str]:
        return [str(row[-1]) for row in turn_rows(timeline, set(), colour, symbols, reconstructed).rows]

    assert notes({1: "claude-code"}) == ["", "reconstructed", ""]
    assert notes({0: "claude-code", 1: "claude-code", 2: "claude-code"}) == ["", "", ""]
    assert notes({}) == ["", "", ""]
    title = conversation_title("conv_mixed", timeline, (), {}, colour, {1: "claude-code"})
    assert str(title).endswith("   reconstructed 1 of 3 turns")
    assert "reconstructed" not in str(conversation_title("conv_mixed", timeline, (), {}, colour, {}))
