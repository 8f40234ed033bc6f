"""An agent with a system prompt and 40 tools, recorded through the real SDK against the fake API
(tui_data.record_big_agent), its last call refused: find reaches the system prompt, the tools and
tool_use ids; `y` copies what each tab shows; the tools take a row each, after the messages; a
refused connection's note says `refused`."""

from __future__ import annotations

import json
import re

import pytest
from textual.widgets import DataTable, TabbedContent
from tui_data import (
    AGENT_TOOLS,
    BIG_SYSTEM,
    BIG_TOOLS,
    open_first_conversation,
    record_big_agent,
    record_tool_agent,
    settle,
    unused_port,
    wait_for,
)

from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app
from replayer.tui.tabs import context_text, copy_text, raw_text, tools_text, usage_text
from replayer.tui.text_view import TextView
from replayer.wire import prompt_tokens


@pytest.fixture
def ops_db(api, rec, db_path):
    record_big_agent(api, rec, unused_port())
    return db_path


def store_of(path) -> Store:
    return Store(open_db(path, create=False))


def test_find_reaches_the_system_prompt_the_tools_and_tool_use_ids(ops_db):
    store = store_of(ops_db)
    find = lambda text: store.find_in_conversation("conv_ops", text)  # noqa: E731
    assert find("payments company") == [(0, "context")]  # the system prompt, where it entered
    assert find("audit_ledger_entry") == [(0, "context"), (1, "response")]  # a tool's name; its call
    assert find("ledger entry by its id") == [(0, "context")]  # a tool's description
    assert find("verbose boolean") == [(0, "context")]  # a tool's schema, as JSON
    assert find("toolu_ops2") == [(1, "response"), (2, "context")]  # the tool_use id; its tool_result's
    assert find("toolu_ops1") == [(0, "response"), (1, "context")]
    # sent on every one of the 4 turns, the system prompt and the tool list are indexed once each
    assert store.db.execute("SELECT count(*) FROM context_text").fetchone()[0] == 2


def test_find_names_the_turn_where_a_changed_part_entered(api, rec, client, db_path):
    """The tool list changes at turn 2 (search_code new, run_tests redefined), the system prompt
    at turn 3: a match in what changed is there, one in what stayed where it entered first."""
    record_tool_agent(api, rec, client)
    store = store_of(db_path)
    find = lambda text: [h for h in store.find_in_conversation("conv_agent", text) if h[1] == "context"]  # noqa: E731
    assert find("search_code") == [(2, "context")]  # new at 2 (its call, the reply of 2, is no context hit)
    assert find("last 200 lines") == [(2, "context")]  # run_tests' new description
    assert find(AGENT_TOOLS[0]["description"]) == [(0, "context")]  # read_file: unchanged at 2
    assert find("2 turns left") == [(3, "context")]
    assert find("smallest change") == [(0, "context")]  # a block that stayed when one was added


async def test_find_steps_to_the_system_prompt_and_marks_it(ops_db):
    app = make_app(ops_db)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("G")
        await settle(pilot)
        await pilot.press("slash", *"payments company", "enter")
        await settle(pilot)
        assert screen.current_turn() == 0
        assert screen.query_one("#tabs", TabbedContent).active == "context"
        text = screen.query_one("#context-body", TextView).text
        marked = [text.plain[s.start : s.end] for s in text.spans if "on yellow" in str(s.style)]
        assert "payments company" in marked


def tool_rows(text: str) -> list[str]:
    names = {t["name"] for t in BIG_TOOLS}
    return [line for line in text.split("\n") if line.split("  ")[0] in names]


def test_the_tools_take_a_row_each_after_the_messages(ops_db):
    store = store_of(ops_db)
    timeline = store.turns("conv_ops")
    d = store.turn_detail(timeline[0].turn_id, timeline)
    for width in (96, 59):
        text = context_text(d, False, None, width=width).plain
        rows = tool_rows(text)
        assert len(rows) == 40 and all(len(row) <= width for row in rows), [r for r in rows if len(r) > width]
        assert all(re.match(r"^\w+  ~\d+ tok  \w", row) for row in rows)  # name, share, description
        assert '"input_schema"' not in text and '"properties"' not in text
        assert "+ tools — 40 tools" in text and "a shows their schemas" in text
        assert text.index("Why is refund re_77") < text.index(BIG_SYSTEM[:40]) < text.index("+ tools — 40 tools")
    whole = context_text(d, True, None).plain  # `a`: every tool whole, its schema pretty-printed
    assert whole.count('"verbose": {') == 40


@pytest.mark.parametrize("width", [100, 160])
async def test_the_first_message_shows_on_a_32_row_terminal_with_40_tools(ops_db, width):
    app = make_app(ops_db)
    async with app.run_test(size=(width, 32)) as pilot:
        screen = await open_first_conversation(pilot)
        assert screen.detail.turn.index == 0
        view = screen.query_one("#context-body", TextView)
        shown = "\n".join(view.render_line(y).text for y in range(view.size.height))
        assert "+ [0] user" in shown and "Why is refund re_77 still pending?" in shown, shown


async def test_tool_rows_are_cut_to_the_tab_width_at_160_columns(ops_db):
    app = make_app(ops_db)
    async with app.run_test(size=(160, 60)) as pilot:
        screen = await open_first_conversation(pilot)
        view = screen.query_one("#context-body", TextView)
        assert await wait_for(pilot, lambda: view.scrollable_content_region.width > 0)
        width = view.scrollable_content_region.width
        assert width < 96  # beside the turn list
        rows = tool_rows(view.text.plain)
        assert len(rows) == 40 and max(len(r) for r in rows) <= width


async def test_y_copies_what_each_tab_shows(ops_db):
    app = make_app(ops_db)
    copied: list[str] = []
    app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("j")
        await settle(pilot)
        d = screen.detail
        previous = prompt_tokens(screen.timeline[0].usage)
        width = screen.query_one("#context-body", TextView).scrollable_content_region.width
        for key in "12345":
            await pilot.press(key, "y")
            await settle(pilot)
        context, response, tools, usage, raw = copied
        assert context == context_text(d, False, previous, width=width).plain
        assert "tool_use get_refund  toolu_ops1" in context and "tool_result for toolu_ops1" in context
        assert "Calling audit_ledger_entry." in response and "toolu_ops2" in response
        assert response.endswith("stop_reason: tool_use")
        assert tools == tools_text(d, False).plain and "tool audit_ledger_entry  toolu_ops2" in tools
        assert usage == usage_text(d, app.settings.tz).plain and "turn cost" in usage and "attempts" in usage
        assert json.loads(raw) == {"request": d.request, "response": d.response} and raw_text(d) != raw
        await pilot.press("G", "2", "y")  # the refused call: no response, said in words as on the tab
        await settle(pilot)
        assert copied[-1].startswith("No response: connection_error: Connection to 127.0.0.1:")


def test_copying_the_usage_tab_keeps_its_billed_lines(ops_db):
    """What the Usage tab adds below the usage lines (earlier attempts billed, compaction) is
    copied with them: the copy was the usage lines as JSON."""
    store = store_of(ops_db)
    timeline = store.turns("conv_ops")
    d = store.turn_detail(timeline[0].turn_id, timeline)
    d = d.model_copy(update={"earlier_attempts": 1, "earlier_cost_usd": 0.0124, "compaction_cost_usd": 0.002})
    copied = copy_text(d, "usage")
    assert "+ 1 earlier attempt, billed too" in copied and "+ compaction" in copied
    assert copied == usage_text(d).plain


async def test_a_refused_connection_reads_refused_in_the_turn_list(ops_db):
    app = make_app(ops_db)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        table = screen.query_one("#turns", DataTable)
        assert await wait_for(pilot, lambda: table.row_count == 4)
        assert str(table.get_row_at(3)[-1]) == "refused"
        notes = table.columns[table.ordered_columns[-1].key].width
        assert notes >= len("refused")  # whole, at 160 columns too
        await pilot.press("G", "2")
        await settle(pilot)
        assert "[Errno 111] Connection refused" in copy_text(screen.detail, "response")


@pytest.mark.parametrize(
    ("message", "word"),
    [
        ("Connection to api.anthropic.com failed: [Errno 111] Connection refused", "refused"),
        ("[Errno 104] Connection reset by peer", "reset"),
        ("[Errno -2] Name or service not known", "DNS"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "TLS"),
        ("[Errno 101] Network is unreachable", "no net"),
        ("Server disconnected without sending a response.", "closed"),
        ("Connection error.", "network"),
    ],
)
def test_a_connection_error_is_named_in_a_word(message, word):
    from replayer.fmt import connection_fault

    assert connection_fault({"type": "connection_error", "message": message, "status": None}) == word
    assert len(word) <= 7


def test_only_errors_with_no_answer_get_a_word():
    from replayer.fmt import connection_fault

    assert connection_fault({"type": "timeout_error", "message": "Request timed out.", "status": None}) == "timeout"
    assert connection_fault({"type": "overloaded_error", "message": "Overloaded", "status": 529}) is None
    assert connection_fault({"type": "connection_error", "message": "reset", "status": 200}) is None  # mid-stream
