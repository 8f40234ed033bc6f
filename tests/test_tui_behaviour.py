"""The browser's behaviour (issue 13): fresh reads, actions on what the cursor shows, keys that
work where a table has focus, filters that say what is wrong, workers that can't show stale rows,
palette jumps that don't stack, and a conversation list that keeps itself current."""

from __future__ import annotations

import json
import threading
import time

import pytest
from test_tui import _utc  # noqa: F401 - the same fixed time zone, autouse
from test_tui_rerun import env  # noqa: F401 - the fake API for reruns
from textual.widgets import DataTable, Static
from tui_data import (
    build_db,
    open_first_conversation,
    palette_jump,
    press_rerun_in_first_conversation,
    reply,
    settle,
    wait_for,
)

from replayer import Recorder
from replayer.tui.app import make_app
from replayer.tui.conversation import ConversationScreen
from replayer.tui.conversations import ConversationsScreen


@pytest.fixture
def db(tmp_path):
    return build_db(tmp_path / "tui.db")


def ids(screen) -> list[str]:
    return [r.conversation_id for r in screen.rows]


def chat(text: str) -> dict:
    return {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}


def chats(db, n: int):
    """A database of `n` one-turn conversations conv_000.., a second apart, an hour ago."""
    now = time.time() - 3600
    with Recorder(db) as rec:
        for i in range(n):
            rec.record(chat(f"question {i}"), reply("ok", model="claude-haiku-4-5"), conversation_id=f"conv_{i:03d}",
                       started_at=now + i)  # fmt: skip
    return db


def slowed(monkeypatch, cls, name: str, seconds: float, when=lambda *args, **kwargs: True) -> threading.Event:
    """Make `cls.name` take `seconds` longer (when `when(*args, **kwargs)`), as on a big database.
    The event is set once a slowed call has returned: a cancelled worker's thread runs on, and
    the test waits for that instead of guessing how long it takes."""
    real = getattr(cls, name)
    answered = threading.Event()

    def slow(self, *args, **kwargs):
        if not when(*args, **kwargs):
            return real(self, *args, **kwargs)
        time.sleep(seconds)  # the point: a slow query, so that a newer request overtakes it
        try:
            return real(self, *args, **kwargs)
        finally:
            answered.set()

    monkeypatch.setattr(cls, name, slow)
    return answered


# -- 7: no frozen snapshot after the dashboard --------------------------------------------------
async def test_after_the_dashboard_new_rows_still_appear(db):
    now = time.time()
    with Recorder(db) as rec:  # recent traffic and a rerun variant: the dashboard's p95 then
        rec.record(chat("recent"), reply("ok", model="claude-haiku-4-5"), conversation_id="conv_recent",
                   user_id="carol", started_at=now - 60, latency_ms=500)  # excludes the variant
        with rec.conversation("rerun_x", tags={"rerun_of": "turn_x"}):
            rec.record(chat("variant"), reply("ok", model="claude-haiku-4-5"), started_at=now - 30, latency_ms=400)
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert "Spend and health" in str(app.screen.query_one("#dash-title", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        with Recorder(db) as rec:
            rec.record(chat("brand new"), reply("hi", model="claude-haiku-4-5"), conversation_id="conv_new",
                       started_at=time.time())
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert "conv_new" in ids(app.screen)
        # an open conversation keeps growing too
        app.screen.query_one(DataTable).move_cursor(row=ids(app.screen).index("conv_chat"))
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationScreen) and len(screen.timeline) == 1
        with Recorder(db) as rec:
            rec.record({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [
                {"role": "user", "content": "Where is my invoice?"},
                {"role": "assistant", "content": [{"type": "text", "text": "It was emailed to you."}]},
                {"role": "user", "content": "Thanks"}]},
                reply("You're welcome.", model="claude-haiku-4-5"), conversation_id="conv_chat", started_at=time.time())
        assert await wait_for(pilot, lambda: len(screen.timeline) == 2)


def test_a_pooled_connection_never_goes_back_inside_a_transaction(db):
    app = make_app(db)
    with app.store() as store:
        store.db.execute("CREATE TEMP TABLE scratch (x)")
        store.db.conn.execute("INSERT INTO temp.scratch VALUES (1)")  # opens a transaction
        assert store.db.conn.in_transaction
    with app.store() as again:
        assert again is store and not again.db.conn.in_transaction


def test_latency_percentile_leaves_no_transaction_open(db):
    from replayer.store import aggregate
    from replayer.store.schema import open_db

    conn = open_db(db, create=False)
    assert aggregate.latency_percentile(conn, 0.95, 5, None, None, [1, 2], [3]) is not None
    assert not conn.conn.in_transaction


# -- 9: every action acts on what the cursor shows ----------------------------------------------
async def test_the_next_page_after_a_new_recording_reads_the_list_again_never_a_row_twice(tmp_path):
    """150 conversations (two pages), one more recorded while the first page is on screen, then
    the cursor down to the last row loaded: the second page's offset no longer follows on from the
    first, whose last row it would repeat (a DuplicateKey that ended the app). The list is read
    again, the new one on top."""
    db = chats(tmp_path / "many.db", 150)
    app = make_app(db, refresh_seconds=3600)  # no poll: the page itself must notice
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        assert len(ids(app.screen)) == 100
        with Recorder(db) as rec:
            rec.record(chat("late"), reply("ok", model="claude-haiku-4-5"), conversation_id="conv_late",
                       started_at=time.time())  # fmt: skip
        table = app.screen.query_one(DataTable)
        table.move_cursor(row=table.row_count - 1)  # as j pressed down to it
        assert await wait_for(pilot, lambda: len(ids(app.screen)) == 151)
        shown = ids(app.screen)
        keys = [str(r.key.value) for r in app.screen.query_one(DataTable).ordered_rows]  # as on screen
        assert keys == shown and len(set(shown)) == 151 and shown[0] == "conv_late"


async def scroll_to_the_end(pilot, screen) -> None:
    """Every row of the list loaded from its top, as the cursor moving down to each last row
    held loads the next page (G reads only the list's last page)."""
    table = screen.query_one("#conversations", DataTable)
    while not screen.exhausted:
        held = len(screen.rows)
        table.move_cursor(row=table.row_count - 1)
        assert await wait_for(pilot, lambda held=held: len(screen.rows) > held or screen.exhausted)
    await settle(pilot)


def on_screen(screen) -> tuple[str | None, int]:
    """The conversation under the list's cursor and the line of the screen its row is on."""
    table = screen.query_one("#conversations", DataTable)
    return screen.cursor_id(), table.cursor_row - round(table.scroll_y)


def in_store_order(app, screen) -> bool:
    """The rows held are the store's first rows for the list's filter and sort, the table's too."""
    column, descending = screen.sort
    with app.store() as store:
        order = store.conversation_order(sort=screen.SQL_SORTS[column], descending=descending, limit=len(screen.rows))
    keys = [str(k.value) for k in screen.query_one(DataTable).rows]
    return ids(screen) == order and sorted(keys) == sorted(order) and all(
        screen.query_one(DataTable).get_row_index(cid) == i for i, cid in enumerate(order)
    )


async def test_a_new_recording_reads_only_what_changed_however_far_down_the_cursor_is(tmp_path, monkeypatch):
    """230 conversations all loaded (scrolled down), the cursor near the top: a new recording reads that one
    conversation, not the rows down to the cursor (tens of thousands took seconds at each
    recording) nor every row loaded, and puts it where the store's order does; the rows held
    stay the store's, the cursor on its conversation."""
    from replayer.store.queries import Store

    db = chats(tmp_path / "many.db", 230)
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        await scroll_to_the_end(pilot, app.screen)  # every row read, down to the last
        assert await wait_for(pilot, lambda: len(ids(app.screen)) == 230)
        await pilot.press("g", "j")
        assert app.screen.cursor_id() == "conv_228"
        calls = []
        real = Store.conversations
        monkeypatch.setattr(Store, "conversations", lambda self, **kw: calls.append(kw) or real(self, **kw))
        with Recorder(db) as rec:
            rec.record(chat("late"), reply("ok", model="claude-haiku-4-5"), conversation_id="conv_late",
                       started_at=time.time())  # fmt: skip
        assert await wait_for(pilot, lambda: "conv_late" in ids(app.screen))
        assert ids(app.screen)[0] == "conv_late" and len(ids(app.screen)) == 231
        assert app.screen.cursor_id() == "conv_228" and in_store_order(app, app.screen)
        assert [c.get("ids") for c in calls] == [["conv_late"]]


async def test_the_cursor_stays_on_its_conversation_and_its_line_when_a_new_one_comes(tmp_path):
    """130 conversations (more than a page), the cursor on the last one: a new conversation put
    the cursor on row 0 of the new list (its row was past what was read again), and enter then
    opened a conversation never chosen. Its row now stays on the same line of the screen."""
    db = chats(tmp_path / "many.db", 130)
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        await scroll_to_the_end(pilot, app.screen)
        await pilot.press("G")
        await settle(pilot)
        assert len(ids(app.screen)) == 130
        before = on_screen(app.screen)
        assert before[0] == "conv_000" and before[1] > 0
        with Recorder(db) as rec:
            rec.record(chat("late"), reply("ok", model="claude-haiku-4-5"), conversation_id="conv_late",
                       started_at=time.time())  # fmt: skip
        assert await wait_for(pilot, lambda: "conv_late" in ids(app.screen))
        await settle(pilot)
        assert on_screen(app.screen) == before and len(ids(app.screen)) == 131
        await pilot.press("k")  # a few rows up, then a conversation that moves (sorted by turns)
        before = on_screen(app.screen)
        assert before[0] == "conv_001"
        with Recorder(db) as rec:  # a second turn for a conversation above the cursor and one below
            for cid, i in (("conv_120", 120), ("conv_000", 0)):
                rec.record({**chat(f"question {i}"), "messages": [
                    {"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                    {"role": "user", "content": "and?"}]}, reply("more", model="claude-haiku-4-5"),
                    conversation_id=cid, started_at=time.time())  # fmt: skip
        assert await wait_for(pilot, lambda: app.screen.rows[-1].turns == 2)
        await settle(pilot)
        assert on_screen(app.screen) == before and in_store_order(app, app.screen)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == "conv_001"


async def test_the_palette_reaches_a_conversation_older_than_the_newest_it_offers(tmp_path):
    """ctrl+p offers the newest 200; an older one's id, typed, is found by its id (it opened the
    best fuzzy match among the 200, another conversation)."""
    db = chats(tmp_path / "old.db", 230)
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await palette_jump(pilot, "conv_007")
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == "conv_007"


@pytest.fixture
def slow_details(monkeypatch):
    """Turn details that take a while to load, as on a big database: the cursor runs ahead."""
    from replayer.store.queries import Store

    slowed(monkeypatch, Store, "turn_detail", 0.5)


async def test_rerun_and_copy_act_on_the_turn_under_the_cursor(db, slow_details):
    from replayer.tui.rerun import RerunScreen

    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j", "enter")  # conv_tools, 4 turns
        await settle(pilot)
        screen = app.screen
        assert screen.detail.turn.index == 0
        await pilot.press("j", "j", "y")  # turn 2's detail is still loading
        assert await wait_for(pilot, lambda: any("copied" in n.message for n in app._notifications))
        copied = [n.message for n in app._notifications if "copied" in n.message]
        assert copied[0].startswith("copied the context of turn 2")
        assert "Reading the parser." in app.clipboard  # turn 1's reply is in turn 2's context, not in turn 0's
        await pilot.press("j", "r")  # quickly, while turn 3's detail is loading
        await pilot.pause()
        assert isinstance(app.screen, RerunScreen) and app.screen.turn_id == screen.timeline[3].turn_id
        await settle(pilot)


async def test_list_actions_use_the_row_under_the_cursor_while_a_reload_runs(db, monkeypatch):
    from replayer.store.queries import Store

    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        slowed(monkeypatch, Store, "conversations", 0.3)
        await pilot.press("j", "ctrl+r", "y")  # the rows on screen stay until the reload lands
        await pilot.pause()
        assert any("copied conv_tools" in n.message for n in app._notifications)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == "conv_tools"
        await settle(pilot)


# -- 12: sending from the editor in tmux/xterm; no edit the user didn't make ---------------------
def test_escape_cr_is_read_as_alt_enter_not_as_a_newline():
    """tmux and xterm send alt+enter as ESC CR (what `tmux send-keys M-Enter` types)."""
    from textual._xterm_parser import XTermParser

    import replayer.tui.app  # noqa: F401 - the app teaches the parser ESC CR

    keys = [getattr(e, "key", None) for e in XTermParser().feed("\x1b\r")]
    assert keys == ["alt+enter"]
    assert [getattr(e, "key", None) for e in XTermParser().feed("\r")] == ["enter"]  # a plain enter stays one


@pytest.mark.parametrize("key", ["alt+enter", "ctrl+j", "ctrl+s"])
async def test_an_untouched_editor_sends_no_edit(tmp_path, env, key):  # noqa: F811 - env: the fixture imported above
    from textual.widgets import TextArea

    from replayer.fakeapi import Reply
    from replayer.tui.confirm import ConfirmScreen
    from replayer.tui.rerun import RerunScreen

    path = tmp_path / "crlf.db"
    system = "Line one.\r\nLine two.\nLine three.\u2028after a line separator"
    with Recorder(path) as rec:
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 50, "system": system, "messages": [
            {"role": "user", "content": "first\r\nsecond\fthird"}]},
            reply("ok", model="claude-haiku-4-5"), conversation_id="conv_crlf", started_at=1_764_000_000.0)
    env.responder = lambda body: Reply(body={"input_tokens": 12})
    app = make_app(path)
    async with app.run_test(size=(160, 48)) as pilot:
        await press_rerun_in_first_conversation(pilot)
        editor = app.screen
        assert isinstance(editor, RerunScreen) and editor.focused is editor.query_one("#rr-system", TextArea)
        before = {t.id: t.text for t in editor.query(TextArea)}
        await pilot.press(key)
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.edits.names() == ["nothing (a plain resend)"]
        assert {t.id: t.text for t in editor.query(TextArea)} == before  # no newline typed
        await pilot.press("escape")
        await settle(pilot)


# -- 13: j/k (and g/G) wherever a table has focus ------------------------------------------------
async def test_j_k_g_move_in_the_dashboard_users(tmp_path):
    from stats_data import build

    path = tmp_path / "dash.db"
    build(path, today=time.time() - 120, yesterday=time.time() - 86400)
    app = make_app(path)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        users = app.screen.query_one("#dash-users", DataTable)
        assert app.screen.focused is users and users.row_count > 2 and users.cursor_row == 0
        await pilot.press("j", "j")
        assert users.cursor_row == 2
        await pilot.press("k")
        assert users.cursor_row == 1
        await pilot.press("G")
        assert users.cursor_row == users.row_count - 1
        await pilot.press("g")
        assert users.cursor_row == 0


async def test_j_k_move_in_the_variants_list_and_the_compare_samples(db, env):  # noqa: F811 - env: the fixture imported above
    from replayer import replay
    from replayer.fakeapi import Reply
    from replayer.store.queries import Store
    from replayer.store.schema import open_db
    from replayer.tui.compare import CompareScreen
    from replayer.tui.variants import VariantsScreen

    env.responder = lambda body: Reply(body=reply("again", model=body["model"]))
    store = Store(open_db(db, create=False))
    turn = store.turns("conv_tools")[1].turn_id
    orig = replay.original(store, turn)
    for model in ("claude-haiku-4-5", "claude-sonnet-4-5"):
        edits = replay.Edits(model=model)
        replay.send(db, orig, replay.apply(orig, edits), edits, samples=2)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        app.push_screen(VariantsScreen(orig))
        await settle(pilot)
        table = app.screen.query_one("#variants", DataTable)
        assert table.row_count == 2 and table.cursor_row == 0
        await pilot.press("j")
        assert table.cursor_row == 1
        await pilot.press("k")
        assert table.cursor_row == 0
        await pilot.press("G")
        assert table.cursor_row == 1
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        samples = app.screen.query_one("#cmp-samples", DataTable)
        assert samples.row_count == 3 and samples.cursor_row == 1  # original, sample 1, sample 2
        await pilot.press("j")
        assert samples.cursor_row == 2 and app.screen.query_one("#cmp-right-box").border_title == "sample 2"
        await pilot.press("k", "k")
        assert samples.cursor_row == 0


# -- 14: filters: model by part of its id, until inclusive, bad values said ----------------------
def conversation_ids(db, **filters) -> list[str]:
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    return sorted(c.conversation_id for c in Store(open_db(db, create=False)).conversations(**filters))


def test_model_matches_part_of_the_id_and_until_takes_the_whole_day(db):
    # build_db: conv_tools (sonnet) starts 2025-11-24 16:00 UTC, conv_chat (haiku) at 16:01:40
    assert conversation_ids(db, model="haiku") == ["conv_chat"]  # the README's own example
    assert conversation_ids(db, model="HAIKU-4") == ["conv_chat"]
    assert conversation_ids(db, model="claude") == ["conv_chat", "conv_tools"]
    assert conversation_ids(db, model="%") == []  # a LIKE wildcard is just a character
    assert conversation_ids(db, until="2025-11-24") == ["conv_chat", "conv_tools"]
    assert conversation_ids(db, until="2025-11-23") == []
    assert conversation_ids(db, since="2025-11-24", until="2025-11-24") == ["conv_chat", "conv_tools"]
    assert conversation_ids(db, until="2025-11-24T16:01:00Z") == ["conv_tools"]
    assert conversation_ids(db, since="2025-11-25") == []


@pytest.mark.parametrize(
    ("text", "said"),
    [("since:garbage", "since 'garbage' is not a date"), ("until:2026-13-45", "until '2026-13-45' is not a date"),
     ("cost>abc", "cost>abc: 'abc' is not a number")],
)
async def test_a_bad_filter_says_what_is_wrong(db, text, said):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        for ch in text:
            await pilot.press(ch)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        messages = [str(n.message) for n in app._notifications]
        assert any(said in m and "\n" not in m for m in messages), messages
        assert ids(screen) == ["conv_chat", "conv_tools"]  # the list as it was, not "no match"
        assert not screen.query_one("#empty", Static).display
        box = screen.query_one("#filter")
        assert box.display and box.has_class("-invalid") and screen.focused is box  # there to fix


async def test_model_and_until_filters_in_the_browser(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        app.screen.filter_to("model:haiku")
        await settle(pilot)
        assert ids(app.screen) == ["conv_chat"]
        app.screen.filter_to("until:2025-11-24 user:alice")
        await settle(pilot)
        assert ids(app.screen) == ["conv_tools"]


def test_cli_list_filters_and_says_what_is_wrong(db):
    from click.testing import CliRunner

    from replayer.cli import cli

    run = CliRunner().invoke
    r = run(cli, ["--db", str(db), "list", "--since", "garbage"])
    assert r.exit_code == 2 and "--since 'garbage' is not a date" in r.output and "Traceback" not in r.output
    r = run(cli, ["--db", str(db), "list", "--until", "nope"])
    assert r.exit_code == 2 and "--until 'nope' is not a date" in r.output
    r = run(cli, ["--db", str(db), "list", "--user", "nobody"])
    assert r.exit_code == 0 and "No conversation matches" in r.output and "recorded yet" not in r.output
    r = run(cli, ["--db", str(db), "list", "--model", "haiku", "--json"])
    assert [c["conversation_id"] for c in json.loads(r.output)] == ["conv_chat"]
    r = run(cli, ["--db", str(db), "list", "--until", "2025-11-24", "--json"])
    assert len(json.loads(r.output)) == 2


# -- 16: a superseded load is never shown; sorting doesn't stack toasts ---------------------------
async def test_a_superseded_sort_never_shows_its_rows(db, monkeypatch):
    from replayer.store.queries import Store

    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        # the superseded request (by id) answers last
        slow_answered = slowed(monkeypatch, Store, "conversations", 0.6, lambda **kwargs: kwargs.get("sort") == "id")
        screen = app.screen
        await pilot.press("s", "s")  # Conversation (slow), then User
        await settle(pilot)
        await wait_for(pilot, slow_answered.is_set)  # the superseded answer is in: it must be dropped
        await settle(pilot)
        labels = [str(c.label) for c in screen.query_one(DataTable).columns.values()]
        assert "User ▼" in labels
        assert ids(screen) == ["conv_chat", "conv_tools"]  # bob before alice, not by id
        assert [str(r[1]) for r in (screen.query_one(DataTable).get_row_at(i) for i in range(2))] == ids(screen)


async def test_sorting_many_times_stacks_no_toasts(db):
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press(*"ssssssssssss")
        await settle(pilot)
        assert len([n for n in app._notifications if "sort" in str(n.message)]) <= 1
        assert "Started ▼" in [str(c.label) for c in app.screen.query_one(DataTable).columns.values()]


async def test_the_dashboard_shows_the_days_last_asked_for(db, monkeypatch):
    from replayer.tui.app import ReplayerApp

    # the superseded request (one more day) answers last
    slow_answered = slowed(monkeypatch, ReplayerApp, "stats_doc", 0.6,
                           lambda days, **kwargs: days == app.settings.days + 1)
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        screen = app.screen
        start = screen.days
        await pilot.press("plus", "plus")
        await settle(pilot)
        await wait_for(pilot, slow_answered.is_set)  # the superseded answer is in: it must be dropped
        await settle(pilot)
        doc = screen.doc
        from datetime import date

        assert (date.fromisoformat(doc.until) - date.fromisoformat(doc.since)).days + 1 == start + 2


# -- 18: palette jumps replace the conversation instead of stacking ------------------------------
async def test_palette_jumps_do_not_stack(db):
    from replayer.tui.rerun import RerunScreen

    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await palette_jump(pilot, "conv_tools")
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == "conv_tools"
        await palette_jump(pilot, "conv_chat")
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == "conv_chat"
        assert len([s for s in app.screen_stack if isinstance(s, ConversationScreen)]) == 1
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
        # from deeper (the rerun editor), a jump also lands one step from the list
        await press_rerun_in_first_conversation(pilot)
        assert isinstance(app.screen, RerunScreen)
        await palette_jump(pilot, "conv_tools")
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == "conv_tools"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)


# -- 25: the conversation list keeps itself current ---------------------------------------------
async def test_the_list_picks_up_new_conversations_keeping_cursor_and_filter(db):
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("j")
        assert screen.cursor_id() == "conv_tools"
        with Recorder(db) as rec:
            rec.record(chat("new one"), reply("hi", model="claude-haiku-4-5"), conversation_id="conv_new",
                       user_id="carol", started_at=time.time())
        assert await wait_for(pilot, lambda: "conv_new" in ids(screen))
        assert ids(screen)[0] == "conv_new" and screen.cursor_id() == "conv_tools"  # same conversation
        # with a filter and a sort, both kept
        screen.filter_to("user:alice")
        await settle(pilot)
        await pilot.press("s", "s", "s")  # Turns
        await settle(pilot)
        assert ids(screen) == ["conv_tools"]
        with Recorder(db) as rec:
            rec.record(chat("from bob"), reply("hi", model="claude-haiku-4-5"), conversation_id="conv_bob2",
                       user_id="bob", started_at=time.time())
            rec.record(chat("from alice"), reply("hi", model="claude-haiku-4-5"), conversation_id="conv_alice2",
                       user_id="alice", started_at=time.time())
        assert await wait_for(pilot, lambda: "conv_alice2" in ids(screen))
        assert ids(screen) == ["conv_tools", "conv_alice2"]  # alice's only, most turns first
        assert screen.sort == ("Turns", True) and screen.cursor_id() == "conv_tools"


async def test_the_list_reloads_only_when_something_changed(db, monkeypatch):
    from replayer.store.queries import Store

    app = make_app(db, refresh_seconds=0.1)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        calls, polls = [], []
        real = Store.conversations
        monkeypatch.setattr(Store, "conversations", lambda self, **kw: calls.append(kw) or real(self, **kw))
        real_mark = Store.change_mark  # what each poll reads: count polls instead of timing them
        monkeypatch.setattr(Store, "change_mark", lambda self: polls.append(1) or real_mark(self))
        await wait_for(pilot, lambda: len(polls) >= 10, seconds=10.0)
        await settle(pilot)
        assert calls == []  # polled ten times: nothing new, nothing reloaded
        with Recorder(db) as rec:
            rec.record(chat("new one"), reply("hi", model="claude-haiku-4-5"), conversation_id="conv_new",
                       started_at=time.time())
        assert await wait_for(pilot, lambda: "conv_new" in ids(app.screen))
        assert [c.get("ids") for c in calls] == [["conv_new"]]  # the new one only, read once


async def test_ctrl_r_reloads_the_list_a_page_past_the_cursor(tmp_path):
    """ctrl+r reads the list again down to a page past the cursor's conversation, as on first
    open below it; it was capped at the rows held (200 held, the cursor on row 150: 49 below)."""
    db = chats(tmp_path / "many.db", 450)
    app = make_app(db, refresh_seconds=3600)
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        for _ in range(150):
            await pilot.press("j")
        await settle(pilot)
        assert len(ids(app.screen)) == 200 and app.screen.cursor_id() == "conv_299"
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert app.screen.cursor_id() == "conv_299"
        assert len(ids(app.screen)) == 150 + 1 + 100
        assert ids(app.screen) == [f"conv_{i:03d}" for i in range(449, 449 - 251, -1)]


def held(monkeypatch, cls, name: str) -> threading.Event:
    """Make `cls.name` wait until the returned event is set: a query seen while it runs."""
    real = getattr(cls, name)
    go = threading.Event()

    def wait_then_call(self, *args, **kwargs):
        go.wait(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wait_then_call)
    return go


async def test_the_list_stays_in_view_while_it_is_read_again(db, monkeypatch):
    """The list's own busy flag was Textual's `loading`, which covers the widget with its spinner:
    every self-refresh while agents record, a reload or G over a big list hid every row behind
    dots until the query answered. The rows stay on screen, the cursor usable, meanwhile."""
    from textual.widgets import LoadingIndicator

    from replayer.store.queries import Store

    app = make_app(db, refresh_seconds=0.1)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationsScreen) and ids(screen) == ["conv_chat", "conv_tools"]

        def in_view() -> bool:
            return (not screen.loading and not screen.query(LoadingIndicator)
                    and screen.query_one(DataTable).row_count == 2)

        for cause, method in (("ctrl+r", "conversations"), ("a recording", "changed_since")):
            go = held(monkeypatch, Store, method)
            if cause == "ctrl+r":
                await pilot.press("ctrl+r")
            else:
                with Recorder(db) as rec:
                    rec.record(chat("new one"), reply("hi", model="claude-haiku-4-5"), conversation_id="conv_new",
                               started_at=time.time())  # fmt: skip
            assert await wait_for(pilot, lambda: screen._querying), cause  # the query is running
            await pilot.pause()
            assert in_view(), cause
            await pilot.press("j")  # the cursor still moves over the rows shown
            assert screen.cursor_id() == "conv_tools", cause
            await pilot.press("k")
            go.set()
            monkeypatch.undo()
            await settle(pilot)
        assert await wait_for(pilot, lambda: "conv_new" in ids(screen))


async def test_the_raw_tab_stays_where_it_was_read_when_the_agent_records_a_turn(tmp_path):
    """The Raw tab of turn 1, scrolled down with its cursor moved: a new turn recorded by a live
    agent brought it back to the top (the turn shown was drawn again from scratch)."""
    from textual.widgets import TextArea

    db = tmp_path / "live.db"
    msgs = [{"role": "user", "content": "hello " * 50}]

    def turn(rec, i):
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": list(msgs)},
                   reply(f"answer {i}"), conversation_id="conv_live", started_at=time.time() - 100 + i)  # fmt: skip
        msgs.append({"role": "assistant", "content": reply(f"answer {i}")["content"]})
        msgs.append({"role": "user", "content": f"next {i}"})

    with Recorder(db) as rec:
        for i in range(4):
            turn(rec, i)
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("j", "5")
        await settle(pilot)
        screen = app.screen
        area = screen.query_one("#raw-body", TextArea)
        area.focus()
        area.scroll_to(y=15, animate=False)
        area.move_cursor((20, 0))
        await settle(pilot)
        before = (screen.current_turn(), area.scroll_y, area.cursor_location)
        assert before[0] == 1 and before[1] > 0 and before[2] == (20, 0)
        with Recorder(db) as rec:
            turn(rec, 4)
        assert await wait_for(pilot, lambda: len(screen.timeline) == 5)
        await settle(pilot)
        area = screen.query_one("#raw-body", TextArea)
        assert (screen.current_turn(), area.scroll_y, area.cursor_location) == before
        # the turn shown gets a new attempt (a retry that answered): its new text where it was read
        failed = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": list(msgs)}
        agent = Recorder(db)  # one recorder: it knows the next call is that turn's retry
        agent.record(failed, error={"type": "overloaded_error", "message": "busy", "status": 529},
                     conversation_id="conv_live", started_at=time.time())  # fmt: skip
        agent.flush()
        assert await wait_for(pilot, lambda: len(screen.timeline) == 6)
        screen.query_one("#turns", DataTable).focus()
        await pilot.press("G")
        await settle(pilot)
        area = screen.query_one("#raw-body", TextArea)
        area.focus()
        area.scroll_to(y=12, animate=False)
        area.move_cursor((18, 2))
        await settle(pilot)
        before = (screen.current_turn(), area.scroll_y, area.cursor_location, "answer 9" in area.text)
        assert before == (5, 12, (18, 2), False)
        agent.record(failed, reply("answer 9"), conversation_id="conv_live", started_at=time.time() + 1)
        agent.close()
        assert await wait_for(pilot, lambda: "answer 9" in screen.query_one("#raw-body", TextArea).text)
        assert len(screen.timeline) == 6 and len(screen.timeline[5].attempts) == 2
        await settle(pilot)
        area = screen.query_one("#raw-body", TextArea)
        assert (screen.current_turn(), area.scroll_y, area.cursor_location, "answer 9" in area.text) == (
            5, 12, (18, 2), True)  # fmt: skip


@pytest.mark.parametrize("size", [(60, 15), (160, 16), (80, 24), (100, 30)])
async def test_a_short_terminal_leaves_the_open_tab_rows_to_show(tmp_path, size):
    """At 60x15 the context chart took every row under the turn list: the tab's body had none.
    A short terminal hides the chart; a taller one keeps it, and the tab still gets rows."""
    app = make_app(build_db(tmp_path / "tui.db"))
    async with app.run_test(size=size) as pilot:
        await open_first_conversation(pilot)
        screen = app.screen
        body = screen.query_one("#context-body")
        assert await wait_for(pilot, lambda: body.region.height >= 3), (size, body.region)
        assert screen.query_one("#chart").display == (size[1] >= screen.SHORT_ROWS)


# -- a damaged database ------------------------------------------------------------------------
async def test_a_damaged_database_is_said_as_the_command_line_says_it(tmp_path):
    """A page of the list read from a file that lost a row: the notice said "TypeError: 'NoneType'
    object is not subscriptable"; it says the file is corrupt, as `replayer list` does."""
    from test_cli import chats_db, lose_first_message

    db = chats_db(tmp_path / "damaged.db")
    lose_first_message(db, "conv_1")
    app = make_app(db)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app._notifications)
        said = [n.message for n in app._notifications]
        assert len(said) == 1 and said[0].startswith(f"{db} is not a SQLite database or is corrupt (blob "), said
        assert said[0].endswith(" is missing): move it aside or pick another --db")


async def test_new_conversations_show_at_the_top_of_a_list_looked_at_from_its_top(tmp_path):
    """200 conversations, the cursor on the second row: the first two recorded showed on top, the
    next two never did (the list scrolled to keep the cursor's row on its line, and stayed
    scrolled). A list scrolled to its top stays there, new conversations in view every time, the
    cursor on its conversation; one scrolled down keeps its place."""
    db = chats(tmp_path / "many.db", 200)
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        assert on_screen(app.screen) == ("conv_198", 1)
        table = app.screen.query_one("#conversations", DataTable)
        for batch in range(3):
            new = [f"conv_new{batch}{i}" for i in range(2)]
            now = time.time()
            with Recorder(db) as rec:
                for i, cid in enumerate(new):
                    rec.record(chat(cid), reply("ok", model="claude-haiku-4-5"), conversation_id=cid,
                               started_at=now + i / 10)  # fmt: skip
            assert await wait_for(pilot, lambda new=new: set(new) <= set(ids(app.screen)))
            await settle(pilot)
            assert ids(app.screen)[:2] == new[::-1] and table.scroll_y == 0
            assert on_screen(app.screen) == ("conv_198", 1 + 2 * (batch + 1))
        # scrolled down: the cursor's row keeps its line, the new rows come above, out of view
        await pilot.press("pagedown")
        await settle(pilot)
        before = on_screen(app.screen)
        assert table.scroll_y > 0
        with Recorder(db) as rec:
            rec.record(chat("later"), reply("ok", model="claude-haiku-4-5"), conversation_id="conv_later",
                       started_at=time.time())  # fmt: skip
        assert await wait_for(pilot, lambda: "conv_later" in ids(app.screen))
        await settle(pilot)
        assert on_screen(app.screen) == before


async def test_end_and_G_go_to_the_last_conversation_of_the_list_home_and_g_to_the_first(tmp_path):
    """End scrolled the list sideways (DataTable's own end) and G stopped at the last row loaded,
    a page (100) further each press: 50 presses to the oldest of 5,000. Both now go to the last
    conversation of the list as filtered and sorted, its last page read from the end."""
    db = chats(tmp_path / "many.db", 250)
    app = make_app(db, refresh_seconds=3600)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#conversations", DataTable)
        assert len(ids(screen)) == 100
        await pilot.press("end")
        assert await wait_for(pilot, lambda: screen.cursor_id() == "conv_000")
        # the last page only, read from the end: not the 150 rows before it
        assert len(ids(screen)) == 100 and table.scroll_x == 0 and table.cursor_row == table.row_count - 1
        await pilot.press("home")
        assert await wait_for(pilot, lambda: screen.cursor_id() == "conv_249")
        assert table.scroll_x == 0 and table.cursor_row == 0
        await pilot.press("S")  # oldest first: the last is the newest
        assert await wait_for(pilot, lambda: ids(screen)[:1] == ["conv_000"])
        await pilot.press("G")
        assert await wait_for(pilot, lambda: screen.cursor_id() == "conv_249")
        await pilot.press("g")
        assert await wait_for(pilot, lambda: screen.cursor_id() == "conv_000")
        screen.filter_to("question 24")  # conv_024 and conv_240..249 (message text)
        assert await wait_for(pilot, lambda: len(ids(screen)) == 11)
        await pilot.press("G")
        assert await wait_for(pilot, lambda: screen.cursor_id() == "conv_249")


def list_order(app, screen) -> list[str]:
    """Every conversation of the list, in the store's own order for the screen's filter and sort."""
    column, descending = screen.sort
    with app.store() as store:
        return store.conversation_order(**screen.filters, sort=screen.SQL_SORTS[column], descending=descending,
                                        limit=10**6)  # fmt: skip


def an_end_of_the_list(app, screen) -> bool:
    """The table shows the list's first rows, or (read from its end) its last ones, in the list's
    order, and they are the rows held."""
    order = list_order(app, screen)
    shown = [str(r.key.value) for r in screen.query_one("#conversations", DataTable).ordered_rows]
    held = ids(screen)[::-1] if screen.from_end else ids(screen)
    return held == shown and shown == (order[-len(shown):] if screen.from_end else order[: len(shown)])


async def to_the_last(pilot, app, screen) -> list[str]:
    """G, and the cursor on the list's last conversation (the store's own last): the list's order."""
    order = list_order(app, screen)
    await pilot.press("G")
    assert await wait_for(pilot, lambda: screen.cursor_id() == order[-1])
    await settle(pilot)
    return order


async def test_G_reads_the_last_page_only_and_the_rows_before_it_load_moving_up(tmp_path, monkeypatch):
    """350 conversations: G read every page down to the last (100,000 took 11 s). It reads the
    list's last page from its end: the cursor on the store's own last conversation; k shows the
    one before it; y and enter act on what the cursor shows; moving up loads the rows before
    them, the cursor on its conversation and its line; pageup reaches the first; g goes there."""
    from replayer.store.queries import Store

    db = chats(tmp_path / "many.db", 350)
    app = make_app(db, refresh_seconds=3600)
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#conversations", DataTable)
        order = await to_the_last(pilot, app, screen)
        assert len(ids(screen)) == 100 and an_end_of_the_list(app, screen)
        assert table.cursor_row == table.row_count - 1 and 0 < on_screen(screen)[1] < 34
        await pilot.press("k")
        assert screen.cursor_id() == order[-2]
        await pilot.press("y")
        assert app.clipboard == order[-2]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == order[-2]
        await pilot.press("escape")
        await settle(pilot)
        # up to the top rows held: the page before them comes above, nothing on screen moves
        slowed(monkeypatch, Store, "conversations", 0.3, when=lambda **kw: kw.get("offset"))
        table.move_cursor(row=12, animate=False)
        await settle(pilot)
        await pilot.press("k", "k", "k")
        before = on_screen(screen)
        assert before[0] == order[-91] and len(ids(screen)) == 100
        assert await wait_for(pilot, lambda: len(ids(screen)) == 200)
        await settle(pilot)
        assert on_screen(screen) == before and an_end_of_the_list(app, screen) and screen.from_end
        for _ in range(40):  # pageup to the first: the rest load, the list then held whole
            if screen.cursor_id() == order[0]:
                break
            await pilot.press("pageup")
            await settle(pilot)
        assert screen.cursor_id() == order[0] and table.cursor_row == 0
        assert not screen.from_end and ids(screen) == order and an_end_of_the_list(app, screen)
        await pilot.press("G")
        assert screen.cursor_id() == order[-1]  # all held: no read
        await pilot.press("g")
        assert screen.cursor_id() == order[0] and table.cursor_row == 0
        # read from the end again: g reads the first page again
        screen.load(reset=True)
        await settle(pilot)
        await pilot.press("G")
        assert await wait_for(pilot, lambda: screen.cursor_id() == order[-1])
        assert screen.from_end
        await pilot.press("g")
        assert await wait_for(pilot, lambda: screen.cursor_id() == order[0])
        await settle(pilot)
        assert table.cursor_row == 0 and round(table.scroll_y) == 0 and len(ids(screen)) == 100
        assert an_end_of_the_list(app, screen) and not screen.from_end


def thumb(table) -> tuple[int, int, float]:
    """The list's vertical scrollbar as drawn: the cells its thumb takes (first, last), and the
    share of the list above the rows on screen that the thumb's place stands for."""
    from rich.style import Style

    bar = table.vertical_scrollbar
    drawn = bar._render_bar(Style())  # the renderer the scrollbar draws with, its figures in place
    segments = type(drawn).render_bar(size=bar.size.height, virtual_size=drawn.virtual_size,
                                      window_size=drawn.window_size, position=drawn.position)  # fmt: skip
    cells = [i for i, s in enumerate(segments.segments) if s.text.strip() or (s.style and s.style.reverse)]
    return cells[0], cells[-1], drawn.position / (drawn.virtual_size - drawn.window_size)


async def test_the_scrollbar_shows_where_the_rows_on_screen_are_in_the_whole_list(tmp_path):
    """1,000 conversations, 100 held at a time: after G the thumb was 9 cells tall (the screen's
    share of the 100 rows held), and once the page before them had loaded it stood mid-way, as
    if those 200 were the list. It now stands for the whole list: one cell (the screen's share
    of 1,000), at the bottom after G, near it after a page more, at the top after g."""
    n = 1000
    db = chats(tmp_path / "many.db", n)
    app = make_app(db, refresh_seconds=3600)
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#conversations", DataTable)
        height = table.vertical_scrollbar.size.height
        lines = table.scrollable_content_region.height
        assert 0 < height and lines * height < n  # the screen's share of the list: under one cell
        first, last, share = thumb(table)
        assert (first, last) == (0, 0) and share == 0
        order = await to_the_last(pilot, app, screen)
        assert len(ids(screen)) == 100 and screen.from_end
        first, last, share = thumb(table)
        assert (first, last) == (height - 1, height - 1) and share == 1
        table.move_cursor(row=5, animate=False)  # near the top rows held: the page before them loads
        await settle(pilot)
        await pilot.press("k")
        assert await wait_for(pilot, lambda: len(ids(screen)) == 200)
        await settle(pilot)
        top = order.index(str(table.ordered_rows[round(table.scroll_y)].key.value))  # the first row on screen
        first, last, share = thumb(table)
        assert share == pytest.approx(top / (n - (lines - table.header_height)), abs=0.01)
        assert last - first <= 1 and first >= height * 0.85  # near the bottom: about 800 of 1,000 above (a
        # thumb under a cell tall may straddle two)
        await pilot.press("g")
        assert await wait_for(pilot, lambda: screen.cursor_id() == order[0])
        await settle(pilot)
        assert thumb(table)[:2] == (0, 0)


@pytest.mark.parametrize("oldest_first", [False, True], ids=["newest-first", "oldest-first"])
async def test_G_then_a_new_recording_keeps_the_cursor_on_its_conversation(tmp_path, oldest_first):
    """The list read from its end (G), a conversation recorded: newest first it comes at the top,
    not held, and nothing moves; oldest first it comes last, under the cursor's row, which stays
    on its conversation (the list, looked at from its end, scrolls one line to show the new one)."""
    db = chats(tmp_path / "many.db", 250)
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("#conversations", DataTable)
        if oldest_first:
            await pilot.press("S")
            assert await wait_for(pilot, lambda: ids(screen)[:1] == ["conv_000"])
        order = await to_the_last(pilot, app, screen)
        await pilot.press("k")
        await settle(pilot)
        before = on_screen(screen)
        assert before[0] == order[-2]
        with Recorder(db) as rec:
            rec.record(chat("late"), reply("ok", model="claude-haiku-4-5"), conversation_id="conv_late",
                       started_at=time.time())  # fmt: skip
        with app.store() as store:
            mark = store.change_mark()
        assert await wait_for(pilot, lambda: screen.mark == mark)
        await settle(pilot)
        assert screen.from_end and an_end_of_the_list(app, screen)
        if oldest_first:
            assert ids(screen)[0] == "conv_late" and len(ids(screen)) == 101
            assert on_screen(screen) == (before[0], before[1] - 1) and table.scroll_y == table.max_scroll_y
        else:
            assert "conv_late" not in ids(screen) and len(ids(screen)) == 100
            assert on_screen(screen) == before
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == before[0]


async def test_G_with_a_filter_goes_to_the_last_conversation_it_keeps(tmp_path):
    """111 conversations match the filter (more than a page): G reads the last page of those, from
    the filter's own end; esc shows the whole list again from its top."""
    db = chats(tmp_path / "many.db", 250)
    app = make_app(db, refresh_seconds=3600)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.filter_to("question 1")  # conv_001, conv_010..019, conv_100..199 (message text)
        await settle(pilot)
        assert len(list_order(app, screen)) == 111 and len(ids(screen)) == 100
        order = await to_the_last(pilot, app, screen)
        assert order[-1] == "conv_001" and screen.from_end and an_end_of_the_list(app, screen)
        await pilot.press("k")
        assert screen.cursor_id() == "conv_010" == order[-2]
        await pilot.press("escape")  # the filter cleared: the whole list, from its top
        assert await wait_for(pilot, lambda: screen.cursor_id() == "conv_249")
        assert not screen.from_end


def test_the_help_says_what_g_and_G_do_in_the_list():
    from replayer.tui.conversations import ConversationsScreen

    said = {b.key: b.tooltip for b in ConversationsScreen.BINDINGS}
    assert said["g,home"] == "First conversation"
    assert said["G,end"] == "Last conversation (the rows before it load as you move up)"
