"""The terminal app, driven by Pilot: keys pressed, what the screen holds checked."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
from click.testing import CliRunner
from conftest import exported
from textual.widgets import DataTable, Static, TabbedContent
from textual.widgets.data_table import ColumnKey
from tui_data import (
    T0,
    build_db,
    first_response_tab,
    new_yorks_day_edge,
    open_dashboard,
    open_first_conversation,
    open_second_conversation,
    palette_jump,
    record_cut_streams,
    record_lost_connections,
    reply,
    settle,
    wait_for,
)

from replayer import Recorder
from replayer.cli import cli
from replayer.filters import parse_filter
from replayer.tui.app import make_app
from replayer.tui.conversation import ConversationScreen
from replayer.tui.conversations import ConversationsScreen
from replayer.tui.help import HelpScreen
from replayer.tui.render import middle_cut
from replayer.tui.text_view import TextView


@pytest.fixture
def db(tmp_path):
    return build_db(tmp_path / "tui.db")


def cell_texts(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def static_text(screen, selector: str) -> str:
    """What a Static shows, or a TextView (the tabs whose text can be megabytes)."""
    from replayer.tui.text_view import TextView

    widget = screen.query_one(selector)
    return widget.text.plain if isinstance(widget, TextView) else str(screen.query_one(selector, Static).render())


async def test_conversation_list_shows_rows(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationsScreen)
        rows = cell_texts(screen.query_one(DataTable))
        assert [r[1] for r in rows] == ["conv_chat", "conv_tools"]  # newest first
        tools_row = rows[1]
        assert tools_row[2] == "alice" and tools_row[3] == "4"
        assert tools_row[4].startswith("$")
        assert "Fix the failing test" in tools_row[-2] and tools_row[-1] == "claude-sonnet-4-5"


async def test_sort_by_cost_and_reverse(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        assert [str(c.label) for c in table.columns.values()][:2] == ["Started ▼", "Conversation"]
        await pilot.press(*"ssss")  # Started -> Conversation -> User -> Turns -> Cost
        await settle(pilot)
        labels = [str(c.label) for c in table.columns.values()]
        assert "Cost ▼" in labels and "Started" in labels
        rows = cell_texts(table)
        assert [r[1] for r in rows] == ["conv_tools", "conv_chat"]  # the costlier first
        assert float(rows[0][4].lstrip("$")) > float(rows[1][4].lstrip("$"))
        await pilot.press("S")
        await settle(pilot)
        assert [r[1] for r in cell_texts(table)] == ["conv_chat", "conv_tools"]
        assert "Cost ▲" in [str(c.label) for c in table.columns.values()]


async def test_open_conversation_turn_list_and_deltas(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_second_conversation(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationScreen)
        rows = cell_texts(screen.query_one("#turns", DataTable))
        assert [r[0] for r in rows] == ["0", "1", "2", "3"]
        assert [r[3] for r in rows] == ["tool_use", "tool_use", "tool_use", "end_turn"]
        assert [r[4] for r in rows] == ["run_tests", "read_file", "write_file", ""]
        # prompt = input + cache writes + cache reads; the delta is against the previous turn
        assert [r[5] for r in rows] == ["+250", "+1,001", "+1,001", "+1,001"]
        assert "4 turns" in static_text(screen, "#conv-title")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)


async def test_detail_follows_the_cursor_and_pairs_tools(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_second_conversation(pilot)
        screen = app.screen
        assert screen.detail.turn.index == 0
        await pilot.press("3")  # Tools tab
        tools = static_text(screen, "#tools-body")
        assert "run_tests" in tools and "ERROR" in tools and "FAILED test_parser.py" in tools
        await pilot.press("j")
        await settle(pilot)
        assert screen.detail.turn.index == 1
        tools = static_text(screen, "#tools-body")
        assert "read_file" in tools and "def parse" in tools and "ERROR" not in tools
        await pilot.press("G")
        await settle(pilot)
        assert screen.detail.turn.index == 3
        assert "No tool calls" in static_text(screen, "#tools-body")


async def test_removed_message_is_marked_in_the_context_diff(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_second_conversation(pilot)
        screen = app.screen
        await pilot.press("j", "j")  # turn 2 comes after the compaction
        await settle(pilot)
        assert screen.detail.turn.index == 2
        text = screen.query_one("#context-body", TextView).text.plain
        assert "- [1] assistant — removed" in text and "- [2] user — removed" in text
        assert "+ [" in text and "added" in text
        kinds = [c.kind for c in screen.detail.changes]
        assert kinds.count("removed") == 2


async def test_a_megabyte_tool_result_is_cut_with_show_all(db):
    app = make_app(db)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_second_conversation(pilot)
        await pilot.press("G", "3")
        await settle(pilot)
        screen = app.screen
        await pilot.press("k")
        await settle(pilot)
        assert screen.detail.turn.index == 2
        tools = static_text(screen, "#tools-body")
        assert "more characters (press a to show all)" in tools and len(tools) < 20_000
        await pilot.press("a")
        await settle(pilot)
        assert len(static_text(screen, "#tools-body")) > 1_000_000


async def test_usage_tab_prices_each_kind(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_second_conversation(pilot)
        await pilot.press("j", "4")
        await settle(pilot)
        usage = static_text(app.screen, "#usage-body")
        assert "cache read" in usage and "1,000" in usage and "3.000" in usage  # sonnet input $3/MTok
        assert "conversation so far" in usage


async def test_search_filters_by_message_text_and_user(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        for ch in "invoice":
            await pilot.press(ch)
        await pilot.press("enter")
        await settle(pilot)
        rows = cell_texts(app.screen.query_one(DataTable))
        assert [r[1] for r in rows] == ["conv_chat"]
        # the filter bar sits under the header (title and database), between it and the list
        from textual.widgets import Header, Input

        header, bar = app.screen.query_one(Header).region, app.screen.query_one("#filter", Input).region
        table = app.screen.query_one(DataTable).region
        assert header.bottom <= bar.y and bar.bottom <= table.y, (header, bar, table)
        await pilot.press("escape")
        await settle(pilot)
        assert len(cell_texts(app.screen.query_one(DataTable))) == 2
        # a word the index splits (a phrase to FTS5) is searched token by token, not refused
        await pilot.press("slash")
        for ch in "invoice-zz9":
            await pilot.press(ch)
        await pilot.press("enter")
        await settle(pilot)
        assert not app.screen._querying and cell_texts(app.screen.query_one(DataTable)) == []
        assert "No conversation matches" in static_text(app.screen, "#empty")
    assert parse_filter("user:alice model:haiku errors cost>0.5 broken date") == {
        "user": "alice", "model": "haiku", "errors_only": True, "over_cost": 0.5, "query": "broken date"}


async def test_a_failing_read_is_reported_not_left_loading(db, monkeypatch):
    from replayer.store.queries import Store

    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)

        def broken(self, **kwargs):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(Store, "conversations", broken)
        await pilot.press("slash")
        for ch in "invoice":
            await pilot.press(ch)
        await pilot.press("enter")
        await settle(pilot)
        assert not app.screen._querying
        assert any("disk I/O error" in str(n.message) for n in app._notifications)


async def test_empty_db_says_how_to_start(tmp_path):
    from replayer.store.schema import open_db

    path = tmp_path / "empty.db"
    open_db(path)
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "Recorder().wrap(anthropic.Anthropic())" in static_text(app.screen, "#empty")


async def test_help_lists_the_keys(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).render())
        assert "Search/filter" in text and "ctrl+p" in text and "enter, l" in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConversationsScreen)
        await pilot.press("question_mark")  # ? too: some terminals keep F1 for themselves
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert f"\n{'f1, ?':>14}  Help — Keys for what is on screen\n" in str(app.screen.query_one(Static).render())
        await pilot.press("question_mark")  # and closes it
        await pilot.pause()
        await pilot.press("slash", "w", "h", "y", "question_mark")  # in the filter, ? is text
        await pilot.pause()
        assert isinstance(app.screen, ConversationsScreen) and app.screen.query_one("#filter").value == "why?"


async def test_open_conversation_picks_up_new_turns(db):
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # conv_chat
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#turns", DataTable).row_count == 1
        rec = Recorder(db)
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 50,
                    "messages": [{"role": "user", "content": "Where is my invoice?"},
                                 {"role": "assistant", "content": [{"type": "text", "text": "It was emailed to you."}]},
                                 {"role": "user", "content": "Thanks"}]},
                   reply("You're welcome.", model="claude-haiku-4-5"), conversation_id="conv_chat",
                   started_at=time.time())
        rec.close()
        await wait_for(pilot, lambda: screen.query_one("#turns", DataTable).row_count == 2)
        assert screen.query_one("#turns", DataTable).row_count == 2


async def test_copy_notifies(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()
        assert any("copied conv_chat" in n.message for n in app._notifications)
        await pilot.press("j", "enter")
        await settle(pilot)
        await pilot.press("5", "y")
        await pilot.pause()
        assert any("copied the raw of turn 0" in n.message for n in app._notifications)
        assert app.screen.query_one("#tabs", TabbedContent).active == "raw"


async def test_the_response_tab_shows_tags_in_a_reply_as_written(tmp_path):
    """Replies often hold tags (`<answer>`, `<div>`): the Markdown widget dropped HTML whole,
    and the text in it with no sign. They show as written."""
    from textual.widgets import Markdown
    from textual.widgets._markdown import MarkdownBlock

    text = ("Here is the plan.\n<answer>The refund is 42 dollars</answer>\n<div>inside div</div>\n"
            "After tags. <b>bold tag</b> end.\n\nLast line.")  # fmt: skip
    db = tmp_path / "tags.db"
    with Recorder(db) as rec:
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "Plan?"}]},
                   reply(text), conversation_id="conv_tags")  # fmt: skip
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_first_conversation(pilot)
        await pilot.press("2")
        await settle(pilot)
        [md] = app.screen.query("#response-body Markdown").results(Markdown)
        shown = " ".join(str(b._content) for b in md.query(MarkdownBlock) if hasattr(b, "_content"))
        for part in ("<answer>The refund is 42 dollars</answer>", "<div>inside div</div>",
                     "After tags. <b>bold tag</b> end.", "Last line."):  # fmt: skip
            assert part in shown, (part, shown)


def test_missing_or_foreign_db_is_refused_before_the_app_starts(tmp_path):
    from click.testing import CliRunner

    from replayer.cli import cli

    r = CliRunner().invoke(cli, ["--db", str(tmp_path / "none.db"), "browse"])
    assert r.exit_code == 2 and "no database" in r.output
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all " * 100)
    r = CliRunner().invoke(cli, ["--db", str(junk)])
    assert r.exit_code == 2 and "not a SQLite database" in r.output


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    if hasattr(time, "tzset"):
        time.tzset()
    yield
    os.environ.pop("TZ", None)
    if hasattr(time, "tzset"):
        time.tzset()


async def test_retries_appear_as_attempts_under_their_turn(api, tmp_path):
    import anthropic
    from conftest import FAKE_KEY

    from replayer.fakeapi import Reply

    path = tmp_path / "retries.db"
    rec = Recorder(path)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=3))
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with rec.conversation("conv_retry"):
        messages = [{"role": "user", "content": "hello"}]
        r = client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=messages)
        api.enqueue(Reply(status=529, body=err, headers={"retry-after-ms": "5"}),
                    Reply(status=429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                          headers={"retry-after-ms": "5"}))
        messages = [*messages, {"role": "assistant", "content": r.content}, {"role": "user", "content": "again"}]
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=messages)
        client.messages.create(model="claude-haiku-4-5", max_tokens=10,
                               messages=[*messages, {"role": "user", "content": "x"}])
    rec.close()
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        rows = cell_texts(screen.query_one("#turns", DataTable))
        assert [r[0] for r in rows] == ["0", "1", "↳0", "↳1", "2"]
        assert rows[2][3] == "overloaded_error" and rows[2][-1] == "529 Overloaded"
        assert rows[3][3] == "rate_limit_error" and rows[3][-1] == "429 slow"
        assert "↻2" in rows[1][9] and rows[1][1] == "↻"
        await pilot.press("j")
        await settle(pilot)
        assert screen.detail.turn.index == 1
        await pilot.press("j")  # steps over the attempt rows to the next turn
        await settle(pilot)
        assert screen.detail.turn.index == 2
        await pilot.press("up")  # the arrow goes row by row: an attempt row shows its turn
        await settle(pilot)
        assert screen.detail.turn.index == 1


async def test_usable_at_80x24(db):
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_second_conversation(pilot)
        screen = app.screen
        assert screen.has_class("narrow")  # the turn list stacks above the detail
        table = screen.query_one("#turns", DataTable)
        assert table.row_count == 4 and table.size.width == 80 and table.size.height >= 4
        assert screen.query_one("#tabs", TabbedContent).size.height >= 5
        await pilot.press("j", "3")
        await settle(pilot)
        assert "read_file" in static_text(screen, "#tools-body")


async def test_palette_goes_to_a_conversation_and_a_turn(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await palette_jump(pilot, "conv_tools")
        screen = app.screen
        assert isinstance(screen, ConversationScreen) and screen.conversation_id == "conv_tools"
        await palette_jump(pilot, "turn 3")
        assert screen.detail.turn.index == 3


async def test_palette_goes_to_a_turn_by_its_id_from_the_list(db):
    """A turn id (as `show --json` and `rerun` give it), pasted into ctrl+p on the conversation
    list, opens its conversation on that turn: it found nothing ("No matches found")."""
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    store = Store(open_db(db, create=False))
    turn_id = store.turns("conv_tools")[2].turn_id
    store.db.close()
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await palette_jump(pilot, turn_id)
        screen = app.screen
        assert isinstance(screen, ConversationScreen) and screen.conversation_id == "conv_tools"
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.turn.index == 2)
        assert screen.detail.turn.turn_id == turn_id
        await palette_jump(pilot, turn_id[:-4])  # the start of one, as `rerun` takes it
        assert app.screen.detail.turn.turn_id == turn_id


async def test_a_turn_of_a_conversation_imported_in_part_opens_on_its_own_row(db, tmp_path):
    """A conversation imported from its later turns only (indexes 1.. kept) numbers its rows from
    1: a turn id in ctrl+p, and `turn N` there, opened the row at position N (another turn, or
    the last), and j/k moved by index as if it were a position (a turn skipped, then a crash)."""
    lines = [line for line in exported(db) if line["conversation_id"] == "conv_tools" and line["index"] >= 1]
    assert len({line["index"] for line in lines}) >= 3
    part = tmp_path / "part.jsonl"
    part.write_text("".join(json.dumps(line) + "\n" for line in lines))
    sliced = tmp_path / "sliced.db"
    r = CliRunner().invoke(cli, ["--db", str(sliced), "import", "export", str(part)])
    assert r.exit_code == 0, r.output
    second = next(line["turn_id"] for line in lines if line["index"] == 2)
    app = make_app(sliced)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await palette_jump(pilot, second)
        screen = app.screen
        assert isinstance(screen, ConversationScreen)
        await wait_for(pilot, lambda: screen.detail is not None)
        assert (screen.detail.turn.index, screen.detail.turn.turn_id) == (2, second)
        await palette_jump(pilot, "turn 1")
        await wait_for(pilot, lambda: screen.detail.turn.index == 1)
        # j and k step turn by turn (j skipped turn 2, and on the last row the screen raised
        # IndexError: the row held the turn's index, read as its place in the list)
        for key, index in (("j", 2), ("j", 3), ("j", 3), ("k", 2), ("G", 3), ("g", 1)):
            await pilot.press(key)
            await wait_for(pilot, lambda index=index: screen.detail.turn.index == index)
            assert screen.detail.turn.index == index, key
        assert app.screen is screen


async def test_mouse_click_opens_and_selects(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        await pilot.click(table, offset=(5, 2))  # the second row (under the header)
        await settle(pilot)
        await pilot.click(table, offset=(5, 2))  # clicking the highlighted row selects it
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationScreen) and screen.conversation_id == "conv_tools"
        await pilot.click(screen.query_one("#turns", DataTable), offset=(2, 3))
        await settle(pilot)
        assert screen.detail.turn.index == 2


async def test_dashboard_shows_spend_health_and_alerts_and_filters_by_user(tmp_path):
    from stats_data import build

    from replayer.config import Settings

    path = tmp_path / "dash.db"
    build(path, today=time.time() - 120, yesterday=time.time() - 86400)
    app = make_app(path, settings=Settings(daily_budget_usd=0.05))
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_dashboard(pilot)
        metrics = {r[0]: r for r in cell_texts(screen.query_one("#dash-metrics", DataTable))}
        assert metrics["rate limit error rate"][1:] == ["5.6%", "> 1.0%", "ALERT"]  # 3 of 54 attempts
        assert metrics["tool failure rate"][1:] == ["5.0%", "> 5.0%", "ok"]  # 2 of 40
        alerts = static_text(screen, "#dash-alerts")
        assert (
            "ana spent $0.0990" in alerts and "conv_dee: a moving cache breakpoint from turn 2 cost $0.0228" in alerts
        )
        users = cell_texts(screen.query_one("#dash-users", DataTable))
        assert [u[0] for u in users] == ["ana", "ben", "cy", "dee", "eve"]
        assert "$0.0990" in users[0][1]
        # today's column and the bars mark a day with no calls `–`, not $0.0000 (calls that cost nothing)
        called_today = {u.user_id: u.days[-1].attempts > 0 for u in screen.doc.users}
        assert set(called_today.values()) == {True, False}
        assert {u[0]: u[2] != "–" for u in users} == called_today
        bars = {line.split()[0]: line.split()[-1] for line in static_text(screen, "#dash-bars").splitlines()
                if line[:2].isdigit()}  # fmt: skip
        days = screen.doc.days
        assert {d.date: bars[d.date[5:]] == "–" for d in days} == {d.date: not d.attempts for d in days}
        models = cell_texts(screen.query_one("#dash-models", DataTable))
        assert models[0][0] == "claude-sonnet-4-5" and models[0][2] == "51"
        await pilot.press("enter")  # the highlighted user: ana
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
        rows = cell_texts(app.screen.query_one("#conversations", DataTable))
        assert sorted(r[1] for r in rows) == ["conv_ana1", "conv_ana2"]


async def test_a_long_conversation_id_is_cut_visibly_in_the_list(tmp_path):
    """A generated id is 33 characters: whole where the list has room for it; where it hasn't
    (100 columns), it is cut in its middle with … (not a silent cut that reads as a whole id), and
    the row still opens the whole id."""
    path = tmp_path / "ids.db"
    with Recorder(path) as rec:
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                   reply("hello"))
    whole = sqlite3.connect(path).execute("SELECT id FROM conversations").fetchone()[0]
    assert len(whole) == 33

    def first_row(app) -> str:
        table = app.screen.query_one(DataTable)
        return "".join(segment.text for segment in table.render_line(1))

    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert f" {whole} " in first_row(app)
    app = make_app(path)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        width = app.screen.query_one(DataTable).columns[ColumnKey("Conversation")].width
        assert width < len(whole)
        assert f" {middle_cut(whole, width)} " in first_row(app)
        head, tail = middle_cut(whole, width).split("…")
        assert whole.startswith(head) and whole.endswith(tail) and len(head) + len(tail) == width - 1
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == whole


async def test_the_dashboards_no_user_row_filters_the_list_to_conversations_with_no_user(tmp_path):
    path = tmp_path / "nouser.db"
    now = time.time() - 60
    with Recorder(path) as rec:
        for conv, user in (("conv_anon", None), ("conv_named", "ann")):
            ask = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": conv}]}
            rec.record(ask, reply("ok", model="claude-haiku-4-5"), conversation_id=conv, user_id=user, started_at=now)
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_dashboard(pilot)
        users = screen.query_one("#dash-users", DataTable)
        at = [r[0] for r in cell_texts(users)].index("(no user)")
        users.move_cursor(row=at)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
        assert [r[1] for r in cell_texts(app.screen.query_one("#conversations", DataTable))] == ["conv_anon"]
        assert app.screen.query_one("#filter").value == "nouser"
    r = CliRunner().invoke(cli, ["--db", str(path), "list", "--no-user", "--json"])
    assert [c["conversation_id"] for c in json.loads(r.output)] == ["conv_anon"]


async def test_the_dashboard_never_shows_unpriced_spend_as_free(tmp_path):
    """A user whose attempts are all of a model with no price shows `?` (not $0.0000), one whose
    sum leaves some out `≥$…`, in the user table and on the day's bar; the health table's mean
    cost per conversation is marked as the lower bound it is."""
    from stats_data import unpriced_history


    path = tmp_path / "unpriced.db"
    unpriced_history(path, time.time() - 60)
    app = make_app(path)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_dashboard(pilot)
        users = {r[0]: r for r in cell_texts(app.screen.query_one("#dash-users", DataTable))}
        assert users["hal"][1:3] == ["?", "?"]
        assert users["gil"][1:3] == ["≥$0.0045", "≥$0.0045"]
        bars = static_text(app.screen, "#dash-bars")
        today = next(line for line in bars.splitlines() if line.startswith(time.strftime("%m-%d", time.gmtime())))
        assert today.rstrip().endswith("≥$0.0045")
        health = {r[0]: r[1:] for r in cell_texts(app.screen.query_one("#dash-metrics", DataTable))}
        assert health["mean cost per conversation"] == ["≥$0.0015", "> $0.5000", "ok?"]


@pytest.mark.parametrize("size", [(100, 34), (160, 30)])
async def test_the_dashboards_user_under_the_cursor_is_always_on_screen(tmp_path, size):
    """However many users and however small the screen: the row the cursor is on is shown (enter
    opens that user), and the alerts below the tables can be scrolled to."""
    from stats_data import many_users


    path = tmp_path / "users.db"
    many_users(path, time.time() - 60, 16)
    app = make_app(path)
    async with app.run_test(size=size) as pilot:
        await open_dashboard(pilot)
        users = app.screen.query_one("#dash-users", DataTable)
        for i in range(1, 16):
            await pilot.press("j")
            await pilot.pause()
            assert users.cursor_row == i
            geometry = app.screen.find_widget(users)
            shown = geometry.region.intersection(geometry.clip)  # the part of the table on screen
            y = geometry.region.y + users._get_row_region(i).y - int(users.scroll_y)
            assert shown.y <= y < shown.bottom, f"the cursor is on user_{i:02d}, row {y}, not in {shown}"
        await pilot.press("tab", "end")  # the keys reach what is below the tables too
        await pilot.pause()
        alerts = app.screen.find_widget(app.screen.query_one("#dash-alerts"))
        assert alerts.region.intersection(alerts.clip).height > 0, "the alerts can't be scrolled to"
        await pilot.press("shift+tab")
        await pilot.press("enter")
        await settle(pilot)
        rows = cell_texts(app.screen.query_one("#conversations", DataTable))
        assert [r[1] for r in rows] == ["conv_15"]


def build_long_conversation(path, turns: int = 12):
    """One conversation: a long system prompt, then a tool call and its many-line result per turn."""
    system = "You are a careful coding agent. " * 40
    msgs: list[dict] = [{"role": "user", "content": "Fix the failing test"}]
    with Recorder(path) as rec:
        for i in range(turns):
            last = i == turns - 1
            text = "The last turn: all done." if last else f"Step {i}: reading mod_{i}.py."
            answer = reply(text, tool=None if last else (f"toolu_{i}", "read_file", {"path": f"mod_{i}.py"}))
            rec.record({"model": "claude-sonnet-4-5", "max_tokens": 500, "system": system, "messages": msgs},
                       answer, conversation_id="conv_long", started_at=T0 + i)  # fmt: skip
            msgs = [*msgs, {"role": "assistant", "content": answer["content"]}]
            if not last:
                result = "\n".join(f"line {n} of mod_{i}.py: value = {n * i}" for n in range(30))
                msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i}",
                                                          "content": result}]})  # fmt: skip
    return path


def view_rows(view) -> list[str]:
    return ["".join(s.text for s in view.render_line(y)).rstrip() for y in range(view.size.height)]


async def test_whole_context_shows_its_first_and_last_lines_as_static_drew_them(tmp_path):
    from textual.content import Content
    from textual.visual import Visual

    app = make_app(build_long_conversation(tmp_path / "long.db"))
    async with app.run_test(size=(160, 40)) as pilot:
        await open_first_conversation(pilot)
        screen = app.screen
        await pilot.press("G")
        await settle(pilot)
        assert screen.detail.turn.index == 11
        await pilot.press("a")
        await settle(pilot)
        view = screen.query_one("#context-body", TextView)
        lines = view.text.plain.split("\n")
        assert lines[0] == "Whole context: 23 messages" and "[22] user" in lines
        rows = view_rows(view)
        assert rows[:3] == ["Whole context: 23 messages", "", "system"]
        assert rows[3].startswith("You are a careful coding agent.")
        # every row as a Static holding the same text draws it: the same words, wrapped alike, styled alike
        width = view.scrollable_content_region.width  # beside the scrollbar
        drawn = Visual.to_strips(view, Content.from_rich_text(view.text, app.console), width, None, view.visual_style)
        assert view.virtual_size.height == len(drawn) > view.size.height
        view.focus()
        for key in ("pagedown", "pagedown", "end"):
            await pilot.press(key)
            await settle(pilot)
            top = round(view.scroll_y)
            for y in range(view.size.height):
                static = drawn[top + y].adjust_cell_length(width, view.rich_style)
                assert [(s.text, s.style) for s in view.render_line(y)] == [(s.text, s.style) for s in static]
        rows = view_rows(view)  # at the end: the last message the last turn sent, its last line
        assert rows[-3:] == ["line 29 of mod_10.py: value = 290", "", ""] and top + view.size.height == len(drawn)
        await pilot.press("home")
        await settle(pilot)
        assert view_rows(view)[0] == "Whole context: 23 messages"
        await pilot.press("a")  # back to what entered the last turn
        await settle(pilot)
        assert "press a for the whole context" in view.text.plain and view.virtual_size.height < len(drawn)


@pytest.mark.parametrize("columns", [100, 160])
async def test_a_subagents_id_never_reads_as_its_main_threads_in_the_list(tmp_path, columns):
    """Claude Code's ids: cc_<session> for the main thread, cc_<session>_<agent id> for a subagent
    (57 characters, wider than the column). A cut id keeps its start (a prefix commands take)
    and its end (the agent id), so two ids never read alike."""
    from pathlib import Path

    path = tmp_path / "cc.db"
    projects = Path(__file__).parent / "fixtures" / "claude_code" / "projects"
    result = CliRunner().invoke(cli, ["--db", str(path), "import", "claude-code", str(projects)])
    assert result.exit_code == 0, result.output
    app = make_app(path)
    async with app.run_test(size=(columns, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        width = table.columns[ColumnKey("Conversation")].width
        ids = [str(k.value) for k in table.rows]
        assert any(len(i) > width for i in ids) and len(ids) == 3
        shown = {}
        for y, cid in enumerate(ids, start=1):
            line = "".join(segment.text for segment in table.render_line(y))
            cell = line[line.index(" cc_") + 1 :][:width].rstrip()
            shown[cid] = cell
            if cell != cid:
                head, tail = cell.split("…")
                assert cid.startswith(head) and cid.endswith(tail) and len(head) >= 8
        assert len(set(shown.values())) == 3, shown
        sub = next(i for i in ids if i.count("_") == 2)
        assert shown[sub].endswith(sub.rsplit("_", 1)[1])  # the agent id shows whole


async def test_the_browser_shows_and_reads_times_in_one_zone(tmp_path, monkeypatch):
    """One zone on every screen, the settings' ([stats] tz) else the machine's: the list's and
    the turns' times, the dates its filter reads (a zone in the value still wins), the
    dashboard's days; the list and the conversation name it."""
    from replayer.config import Settings

    path = tmp_path / "zone.db"
    with Recorder(path) as rec:
        new_yorks_day_edge(rec)
    app = make_app(path, settings=Settings(tz="America/New_York"))  # on a machine in UTC (_utc)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        started = {row[1]: row[0] for row in cell_texts(screen.query_one(DataTable))}
        assert started == {"late": "2026-12-04 22:30", "later": "2026-12-04 23:59", "next": "2026-12-05 10:00"}
        assert screen.sub_title.endswith("times in America/New_York")
        for typed, kept in (("until:2026-12-04", {"late", "later"}), ("since:2026-12-05", {"next"}),
                            ("until:2026-12-05T04:00Z", {"late"})):  # fmt: skip
            screen.filter_to(typed)
            await settle(pilot)
            assert {r.conversation_id for r in screen.rows} == kept, typed
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert "dates  in America/New_York, as listed" in str(app.screen.query_one(Static).render())
        await pilot.press("escape")
        await settle(pilot)
        app.open_conversation("late")
        await settle(pilot)
        turns = app.screen
        assert isinstance(turns, ConversationScreen) and turns.sub_title == "late · times in America/New_York"
        assert cell_texts(turns.query_one("#turns", DataTable))[0][2] == "22:30:00"
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # no zone set: the machine's, on the dashboard too
    time.tzset()
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        started = {row[1]: row[0] for row in cell_texts(app.screen.query_one(DataTable))}
        assert started["late"] == "2026-12-05 12:30" and app.screen.sub_title.endswith("times in Asia/Tokyo")
        dashboard = await open_dashboard(pilot)
        assert "(Asia/Tokyo)" in static_text(dashboard, "#dash-title")


async def test_a_stream_cut_by_an_error_event_says_mid_stream_on_the_usage_and_response_tabs(api, rec, client, db_path):
    """An `event: error` after the stream's 200: the Usage tab's attempt lines read `#0  200 …
    overloaded_error: Overloaded`, a 200 that reads as a success, and the Response tab showed the
    part of the message that came before the error with no word of it. Both say `mid-stream`,
    as the turn list and the rerun do (fmt), the error below the partial response."""
    from replayer.fakeapi import message_events

    # its first words: `Reading the pars`
    record_cut_streams(api, rec, client, message_events(reply("Reading the parser"))[:4])
    app = make_app(db_path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("4")
        await settle(pilot)
        usage = static_text(screen, "#usage-body").splitlines()
        attempts = [line.split() for line in usage[usage.index("attempts") + 1 :] if line.strip()]
        assert [words[:2] for words in attempts] == [["#0", "mid-stream"], ["#1", "200"]], attempts
        await pilot.press("j")  # turn 1: cut, and not sent again
        await settle(pilot)
        usage = static_text(screen, "#usage-body").splitlines()
        attempts = [line.split() for line in usage[usage.index("attempts") + 1 :] if line.strip()]
        assert [words[:2] for words in attempts] == [["#0", "mid-stream"]], attempts
        await pilot.press("2")
        await settle(pilot)
        shown = [str(s.render()) for s in screen.query("#response-body Static")]
        said = next((i for i, s in enumerate(shown) if "overloaded_error mid-stream: Overloaded" in s), None)
        assert said is not None and shown[said].endswith("(cut here)"), shown  # a stream really cut: still said
        partial = screen.query("#response-body Markdown")
        assert len(partial) == 1 and partial.first().source == "Reading the pars"
        assert partial.first().region.y < screen.query("#response-body Static")[said].region.y  # below it


async def test_a_connection_lost_mid_stream_reads_as_a_cut_in_the_list_the_response_tab_and_show(api, rec, db_path):
    """A stream whose connection dropped after part of the reply reads as one an error event cut:
    `cut` first in the turn list's notes, `connection_error mid-stream` and `(cut here)` under
    the part that came on the Response tab, `connection_error mid-stream` in `show`. A connection
    refused (no answer at all) stays a plain connection error everywhere."""
    record_lost_connections(api, rec)
    shown = CliRunner().invoke(cli, ["--db", str(db_path), "show", "conv_lost"]).output.splitlines()
    assert [line.split("[0:")[-1] for line in shown[1:6]] == [
        "connection_error mid-stream]", "connection_error mid-stream]", "connection_error mid-stream]",
        "overloaded_error mid-stream]", "connection_error]"], shown  # fmt: skip
    app = make_app(db_path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        table = screen.query_one("#turns", DataTable)
        assert await wait_for(pilot, lambda: table.row_count == 5)
        notes = [str(table.get_row_at(row)[-1]).split()[0] for row in range(5)]
        assert notes == ["cut", "cut", "cut", "cut", "refused"], notes  # refused: what failed, in a word
        await pilot.press("2")
        await settle(pilot)
        assert await wait_for(pilot, lambda: bool(screen.query("#response-body Markdown")))
        assert [m.source for m in screen.query("#response-body Markdown")] == ["Reading the pars"]
        said = [str(s.render()) for s in screen.query("#response-body Static")]
        assert said[0] == "Reading the pars", said  # the part that came, then what cut it
        assert said[1].startswith("connection_error mid-stream: the connection closed before the stream ended") \
            and said[1].endswith("(cut here)"), said  # (as the proxy says it: test_proxy)


async def test_a_stream_cut_before_any_content_says_so_in_words(api, rec, db_path):
    """A stream cut before any of its reply came showed `(cut here)` after its error with nothing
    above it (a connection dropped after the message_start, or after the 200 with no event, read
    `No response: connection_error mid-stream`; an error event right after the message_start the
    same bare `(cut here)`). Each now says `Stream cut before any content arrived: ...`; `(cut
    here)` stays for a stream cut after part of its reply, and a refused connection is no response."""
    record_lost_connections(api, rec)
    app = make_app(db_path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("2")
        said = []
        for turn in range(5):
            await settle(pilot)
            assert await wait_for(pilot, lambda: screen.detail is not None and screen.detail.turn.index == turn  # noqa: B023
                                  and bool(screen.query("#response-body Static")))  # fmt: skip
            said.append(" ".join(str(s.render()) for s in screen.query("#response-body Static")))
            await pilot.press("j")
    lost = "connection_error mid-stream: the connection closed before the stream ended"
    assert said[0].startswith(f"Reading the pars {lost}") and "(cut here)" in said[0], said
    for turn in (1, 2):
        assert said[turn].startswith(f"Stream cut before any content arrived: {lost}"), said
    assert said[3].startswith("Stream cut before any content arrived: overloaded_error mid-stream: Overloaded"), said
    assert said[4].startswith("No response: connection_error: Connection"), said
    assert not any("(cut here)" in s or "stop_reason" in s for s in said[1:]), said


@pytest.mark.parametrize("stored_before", [False, True])
async def test_an_error_recorded_with_its_status_beside_it_shows_that_status(tmp_path, stored_before):
    """`Recorder.record(status=429, error={type, message})`: the error body carries no status, the
    one given is its attempt's. The Response tab said `rate_limit_error: slow down` with no 429 (as
    did `show`, and the export's error), where any recorded error says its status. record() now
    puts it in the error; one stored before that (`stored_before`: its error's status taken out)
    is read with its attempt's status."""
    path = tmp_path / "e.db"
    with Recorder(path) as rec:
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                   error={"type": "rate_limit_error", "message": "slow down"}, status=429,
                   conversation_id="conv_slow", started_at=time.time())  # fmt: skip
    if stored_before:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE attempts SET error_json = json_set(error_json, '$.status', json('null'))")
    else:
        (line,) = [line for line in exported(path) if line["error"]]
        assert line["status"] == 429 and line["error"]["status"] == 429, line
    shown = await first_response_tab(path)
    assert "No response: 429 rate_limit_error: slow down" in shown, shown
    shown = CliRunner().invoke(cli, ["--db", str(path), "show", "conv_slow"]).output
    assert "[0:429 rate_limit_error]" in shown, shown


async def test_an_error_message_is_shown_whole_on_the_response_tab(tmp_path):
    """The Response tab's error line stripped every trailing colon and space off the words it
    made, the message's own with them: an API error whose message ends in ':' lost it."""
    path = tmp_path / "e.db"
    with Recorder(path) as rec:
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                   error={"type": "invalid_request_error", "message": "Bad input:"}, status=400,
                   conversation_id="conv_bad", started_at=time.time())  # fmt: skip
    shown = await first_response_tab(path)
    said = [s for s in shown if s.startswith("No response: ")]
    assert len(said) == 1 and said[0].endswith("invalid_request_error: Bad input:"), shown


@pytest.mark.parametrize("width", [100, 160])
async def test_every_sorted_columns_header_shows_its_arrow_whole(db, width):
    """The sorted column's header carries an arrow: `Err ▼` in Err's 3 cells read `Err`, and
    Turns, Cache and Duration lost theirs too. The sorted column widens to its header, and a
    number column that starts on screen still ends there."""
    app = make_app(db)
    async with app.run_test(size=(width, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(DataTable)
        shown = []
        for name in screen.COLUMNS[1:]:  # s steps to the next column, sorted descending
            await pilot.press("s")
            await settle(pilot)
            assert f"{name} ▼" in [str(c.label) for c in table.columns.values()]
            header = "".join(s.text for s in table.render_line(0))
            keys = list(table.columns)
            x = sum(table.columns[k].get_render_width(table) for k in keys[: keys.index(ColumnKey(name))])
            end = x + table.columns[ColumnKey(name)].get_render_width(table)
            edge = table.scrollable_content_region.width
            if name in screen.NUMBERS and x < edge:  # a number column on screen is there whole, header too
                assert end <= edge and f"{name} ▼" in header, (name, header)
                shown.append(name)
        assert {"Turns", "Cost", "Err"} <= set(shown)
        await pilot.press("S")
        await settle(pilot)
        assert "Models ▲" in [str(c.label) for c in table.columns.values()]
        assert table.columns[ColumnKey("Err")].width == screen.WIDTHS["Err"]  # back to its own once not sorted


@pytest.mark.parametrize("width", [160, 240])
async def test_a_sort_on_a_column_past_the_screens_edge_is_named_in_the_header(db, width):
    """Sorted by Models (the last column, past the edge at 160), the rows looked in no order and
    no arrow showed anywhere: the header line names the sort while its column is off screen."""
    app = make_app(db)
    async with app.run_test(size=(width, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert "sorted by" not in screen.sub_title  # Started, on screen
        await pilot.press(*"s" * (len(screen.COLUMNS) - 1))  # ... to Models
        await settle(pilot)
        assert screen.sort == ("Models", True)
        shown = screen.sorted_column_shown()
        assert shown is (width == 240)
        assert ("sorted by Models ▼" in screen.sub_title) is not shown
        await pilot.press("S")
        await settle(pilot)
        assert ("sorted by Models ▲" in screen.sub_title) is not shown
        await pilot.press("s")  # back to Started
        await settle(pilot)
        assert "sorted by" not in screen.sub_title
