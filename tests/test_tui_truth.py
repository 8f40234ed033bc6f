"""What the screens show at a glance: failures and cache breaks in the turn list, one token
vocabulary, the context chart's scale, distinct dashboard colours (issue 13: 10, 17, 20, 21)."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static
from tui_data import T0, build_db, reply, settle

from replayer import Recorder
from replayer.tui.app import make_app
from replayer.tui.screens import ConversationScreen, ConversationsScreen, HelpScreen

# turn 1 starts a broken cache (writes while reads stay flat, turns 1 and 2); turn 4 fails
TROUBLE = [
    {"cache_creation_input_tokens": 1000, "cache_read_input_tokens": 0},
    {"cache_creation_input_tokens": 1000, "cache_read_input_tokens": 0},
    {"cache_creation_input_tokens": 1000, "cache_read_input_tokens": 0},
    {"cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000},
    None,
    {"cache_creation_input_tokens": 100, "cache_read_input_tokens": 2100},
]


def build_trouble_db(path):
    with Recorder(path) as rec:
        msgs = [{"role": "user", "content": "Summarise the incident log"}]
        for i, cache in enumerate(TROUBLE):
            request = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": msgs}
            if cache is None:
                err = {"type": "overloaded_error", "message": "Overloaded", "status": 529}
                rec.record(request, error=err, conversation_id="conv_trouble", started_at=T0 + i, latency_ms=90)
                continue
            usage = {"input_tokens": 10 + i, "output_tokens": 20, **cache}
            answer = reply(f"Part {i} of the summary.", usage=usage)
            rec.record(request, answer, conversation_id="conv_trouble", started_at=T0 + i, latency_ms=500)
            msgs = [*msgs, {"role": "assistant", "content": answer["content"]}, {"role": "user", "content": f"go on {i}"}]
    return path


def right_edge(table: DataTable, key: str) -> int:
    """Where a column ends, in cells from the table's left edge."""
    x = 0
    for k, col in table.columns.items():
        x += col.get_render_width(table)
        if k == key:
            return x
    raise KeyError(key)


def styles(cell) -> str:
    """Every style a cell's text carries."""
    if not hasattr(cell, "spans"):
        return ""
    return " ".join([str(cell.style), *(str(s.style) for s in cell.spans)])


async def open_trouble(pilot) -> ConversationScreen:
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ConversationScreen)
    return screen


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_failures_show_in_a_status_column_coloured_by_outcome(tmp_path, theme):
    app = make_app(build_trouble_db(tmp_path / "t.db"))
    app.theme = theme
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_trouble(pilot)
        table = screen.query_one("#turns", DataTable)
        statuses = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert statuses == ["", "⚠", "", "", "✖", ""]
        # the status column sits beside # and is on screen; the list fills its width
        assert right_edge(table, "status") < right_edge(table, "idx") + 5
        assert right_edge(table, "err") == table.scrollable_content_region.width
        assert "Overloaded" in str(table.get_row_at(4)[-1])
        error_colour = app.theme_variables["text-error"]
        failed = table.get_row_at(4)
        assert all(error_colour in styles(cell) for cell in failed if str(cell))
        assert not any(error_colour in styles(cell) for cell in table.get_row_at(3))
        # the legend: in the title line with the counts, and in the help
        title = str(screen.query_one("#conv-title", Static).render())
        assert "✖ 1 failed" in title and "⚠ 1 cache break" in title
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        help_text = str(app.screen.query_one(Static).render())
        for words in ("✖ failed", "↻ retried", "⚠ cache break", "⊘ abandoned", "Next error", "Next cache break"):
            assert words in help_text


async def test_keys_jump_to_errors_and_cache_breaks(tmp_path):
    app = make_app(build_trouble_db(tmp_path / "t.db"))
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_trouble(pilot)
        visits = []
        for key in ("e", "e", "b", "E", "B", "b"):
            await pilot.press(key)
            await settle(pilot)
            visits.append(screen.current_turn())
        assert visits == [4, 4, 1, 4, 1, 1]
        assert screen.detail is not None and screen.detail.turn.index == 1
        shown = {b.binding.key for b in screen.active_bindings.values() if b.binding.show}
        assert {"e", "b"} <= shown  # in the footer


async def test_conversation_list_shows_cost_at_100_columns(tmp_path):
    app = make_app(build_db(tmp_path / "tui.db"))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
        table = app.screen.query_one(DataTable)
        assert right_edge(table, "Cost") <= table.scrollable_content_region.width
        assert right_edge(table, "Err") <= table.scrollable_content_region.width
