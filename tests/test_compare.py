"""Comparing two trajectories: two refund agents recorded through the real SDK against the local
fake API, the same for turns 0-2, then a different refund at turn 3, and B longer (it notifies
the customer and closes the ticket, after an overloaded retry). The alignment, the divergence,
the tool input diff, added/missing turns, totals and final answers: in the pure comparison, the
CLI text, the JSON and the screen's render; and the screen itself (Pilot and an SVG snapshot)."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from test_snapshots import _utc, check  # noqa: F401 (_utc: a fixture, the snapshots' time zone)
from tui_data import T0, narrowed_through_a_number, numbers_cut, settle, wait_for

from replayer import Recorder
from replayer.cli import cli
from replayer.fakeapi import Reply
from replayer.pricing import PriceTable
from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.store.trajectories import trajectory
from replayer.trajectory import compare

TOOLS = [
    {"name": name, "description": name.replace("_", " "), "input_schema": {"type": "object"}}
    for name in ("lookup_order", "read_policy", "get_payment", "refund", "notify_customer", "close_ticket")
]
COMMON = [
    ("Looking up the order.", "lookup_order", {"order": "1234"}),
    ("Checking the refund policy.", "read_policy", {"topic": "refunds"}),
    ("Checking the payment.", "get_payment", {"order": "1234"}),
]
SCRIPT_A = [
    *COMMON,
    ("Refunding the order.", "refund", {"order": "1234", "amount": 20}),
    ("Refunded $20 to the card ending 4242.", None, None),
]
SCRIPT_B = [
    *COMMON,
    ("Refunding the order with the late fee.", "refund", {"order": "1234", "amount": 25, "reason": "late"}),
    ("Telling the customer.", "notify_customer", {"order": "1234"}),
    ("Closing the ticket.", "close_ticket", {"order": "1234"}),
    ("Refunded $25 to the card ending 4242 and told the customer.", None, None),
]
OVERLOADED_AT = 4
"""B's turn whose first attempt the fake answers 529 (the SDK retries it): B's one error."""
MODEL = "claude-sonnet-4-5"


def reply(i: int, text: str, tool: str | None, tool_input: dict | None) -> dict:
    content: list[dict] = [{"type": "text", "text": text}]
    if tool:
        content.append({"type": "tool_use", "id": f"toolu_{i}", "name": tool, "input": tool_input})
    usage = {"input_tokens": 120 + 40 * i, "output_tokens": 10 + len(text) // 4,
             "cache_creation_input_tokens": 300, "cache_read_input_tokens": 900 * i}  # fmt: skip
    return {"id": f"msg_{i:04d}{len(text):04d}", "type": "message", "role": "assistant", "model": MODEL,
            "content": content, "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
            "usage": usage}  # fmt: skip


def turns_of(script: list) -> list[dict]:
    return [reply(i, *step) for i, step in enumerate(script)]


def next_messages(messages: list[dict], answer: dict) -> list[dict]:
    """The agent's history after a reply: the reply, and a result for its tool call."""
    out = [*messages, {"role": "assistant", "content": answer["content"]}]
    for block in answer["content"]:
        if block["type"] == "tool_use":
            out.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"],
                                                     "content": f"{block['name']}: ok"}]})  # fmt: skip
    return out


FIRST = [{"role": "user", "content": "Refund order 1234: it arrived late."}]

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def run_agent(client: anthropic.Anthropic, api, rec: Recorder, conversation_id: str, script: list, *, retry_at=None):
    """A tool loop: the fake answers each turn from the script, the agent sends the history back."""
    answers = turns_of(script)
    for i, answer in enumerate(answers):
        if i == retry_at:
            api.enqueue(Reply(status=529, body=OVERLOADED, headers={"retry-after-ms": "5"}))
        api.enqueue(Reply(body=answer))
    messages = FIRST
    with rec.conversation(conversation_id, user_id="support"):
        while True:
            got = client.messages.create(model=MODEL, max_tokens=400, tools=TOOLS, messages=messages)
            answer = answers[len([m for m in messages if m["role"] == "assistant"])]
            assert got.stop_reason == answer["stop_reason"]
            if got.stop_reason != "tool_use":
                return
            messages = next_messages(messages, answer)


@pytest.fixture
def recorded(api, db_path) -> Path:
    with Recorder(db_path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
        run_agent(client, api, rec, "conv_refund_a", SCRIPT_A)
        run_agent(client, api, rec, "conv_refund_b", SCRIPT_B, retry_at=OVERLOADED_AT)
    return db_path


def expected_cost(script: list) -> float:
    prices = PriceTable.load()
    return sum(prices.cost(r["usage"], MODEL) for r in turns_of(script))


def test_alignment_divergence_and_totals(recorded):
    store = Store(open_db(recorded, create=False))
    a, b = trajectory(store, "conv_refund_a"), trajectory(store, "conv_refund_b")
    c = compare(a, b)
    assert c.diverged_at == 3
    assert [p.status for p in c.pairs] == ["same", "same", "same", "differs", "differs", "added", "added"]
    turn3 = c.pairs[3]
    assert "tools" in turn3.differences and "text" in turn3.differences
    [tool] = turn3.tool_diff
    assert (tool.name, tool.status) == ("refund", "changed")
    assert {(d.path, d.op, d.old, d.new) for d in tool.diff} == {
        ("amount", "changed", 20, 25), ("reason", "added", None, "late")}  # fmt: skip
    assert "-Refunding the order." in turn3.text_diff and "+Refunding the order with the late fee." in turn3.text_diff
    # turn 4: A answers, B calls another tool; the stop reasons say so
    assert c.pairs[4].a.stop_reason == "end_turn" and c.pairs[4].b.stop_reason == "tool_use"
    assert "stop_reason" in c.pairs[4].differences
    assert c.pairs[4].b.tool_calls[0].name == "notify_customer"
    assert c.pairs[5].a is None and c.pairs[5].b.tool_calls[0].name == "close_ticket"
    # whole-prompt tokens: input + cache writes + cache reads, as the fake reported them
    u = turns_of(SCRIPT_A)[2]["usage"]
    assert c.pairs[2].a.prompt_tokens == u["input_tokens"] + u["cache_creation_input_tokens"] + u[
        "cache_read_input_tokens"]  # fmt: skip
    assert (c.a.turns, c.b.turns) == (len(SCRIPT_A), len(SCRIPT_B))
    assert c.a.cost_usd == pytest.approx(expected_cost(SCRIPT_A))
    assert c.b.cost_usd == pytest.approx(expected_cost(SCRIPT_B))
    assert (c.a.errors, c.b.errors) == (0, 1)
    assert c.pairs[4].b.attempts == 2 and c.pairs[4].b.error is None  # the retry succeeded
    assert c.a.model_ms > 0 and c.b.model_ms > 0
    assert not c.final.same
    assert c.final.a == SCRIPT_A[-1][0] and c.final.b == SCRIPT_B[-1][0]
    assert f"-{SCRIPT_A[-1][0]}" in c.final.diff and f"+{SCRIPT_B[-1][0]}" in c.final.diff
    # the other way round: B's extra turns are missing from A
    back = compare(b, a)
    assert back.diverged_at == 3 and [p.status for p in back.pairs[5:]] == ["missing", "missing"]
    # a conversation against itself never diverges
    same = compare(a, a)
    assert same.diverged_at is None and same.final.same and {p.status for p in same.pairs} == {"same"}


def cli_run(db, *args):
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


def test_cli_text(recorded):
    r = cli_run(recorded, "compare", "conv_refund_a", "conv_refund_b")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "first divergence: turn 3" in r.output
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0].lstrip(">").isdigit()}
    assert ">3" in rows and "differs" in rows[">3"]
    assert "same" in rows["0"] and "lookup_order" in rows["0"]
    assert "added" in rows["5"] and "added" in rows["6"] and "close_ticket" in rows["5"]
    assert "end_turn|tool_use" in rows["4"]
    text = r.output
    assert 'refund input changed (amount: 20 -> 25; reason: added "late")' in text
    assert "turn 5: only in B:" in text
    totals = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] in (["turns"], ["errors"])}
    assert totals["turns"] == [str(len(SCRIPT_A)), str(len(SCRIPT_B)), f"+{len(SCRIPT_B) - len(SCRIPT_A)}"]
    assert totals["errors"] == ["0", "1", "+1"]
    cost_line = next(line for line in lines if line.startswith("cost"))
    assert f"${expected_cost(SCRIPT_A):,.4f}" in cost_line and f"${expected_cost(SCRIPT_B):,.4f}" in cost_line
    assert "final answers differ:" in text
    assert f"-{SCRIPT_A[-1][0]}" in text and f"+{SCRIPT_B[-1][0]}" in text
    # swapped: the extra turns are missing
    back = cli_run(recorded, "compare", "conv_refund_b", "conv_refund_a")
    assert "turn 5: only in A:" in back.output and "missing" in back.output


def test_cli_json(recorded):
    r = cli_run(recorded, "compare", "conv_refund_a", "conv_refund_b", "--json")
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["diverged_at"] == 3
    assert [p["status"] for p in doc["pairs"]] == ["same", "same", "same", "differs", "differs", "added", "added"]
    changes = doc["pairs"][3]["tool_diff"][0]["diff"]
    assert {"path": "amount", "op": "changed", "old": 20, "new": 25} in changes
    assert doc["pairs"][6]["a"] is None and doc["pairs"][6]["b"]["text"] == SCRIPT_B[-1][0]
    assert doc["a"]["turns"] == len(SCRIPT_A) and doc["b"]["errors"] == 1
    assert doc["b"]["cost_usd"] == pytest.approx(expected_cost(SCRIPT_B))
    assert doc["final"]["same"] is False and doc["final"]["b"] == SCRIPT_B[-1][0]


def test_cli_bad_input(recorded):
    r = CliRunner().invoke(cli, ["--db", str(recorded), "compare", "conv_refund_a", "conv_nope"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [r.output.strip()]
    assert "conv_nope" in r.output and "replayer list" in r.output and "Traceback" not in r.output
    # a prefix of two ids is bad input too; of one, it names it
    r = CliRunner().invoke(cli, ["--db", str(recorded), "compare", "conv_refund", "conv_refund_b"])
    assert r.exit_code == 2 and "begins 2 conversation ids" in r.output
    assert cli_run(recorded, "compare", "conv_refund_a", "conv_refund_b").exit_code == 0


# -- the screen -----------------------------------------------------------------------------------


def record_fixed(path: Path) -> Path:
    """The same two trajectories through Recorder.record, with fixed times (for a snapshot)."""
    with Recorder(path) as rec:
        for cid, script, start in (("conv_refund_a", SCRIPT_A, T0), ("conv_refund_b", SCRIPT_B, T0 + 600)):
            messages = FIRST
            for i, answer in enumerate(turns_of(script)):
                request = {"model": MODEL, "max_tokens": 400, "tools": TOOLS, "messages": messages}
                at = start + 20 * i
                if cid == "conv_refund_b" and i == OVERLOADED_AT:
                    rec.record(request, error={**OVERLOADED["error"], "status": 529}, status=529,
                               conversation_id=cid, user_id="support", started_at=at, latency_ms=90.0)  # fmt: skip
                    at += 1
                rec.record(request, answer, conversation_id=cid, user_id="support", started_at=at,
                           latency_ms=1500.0 + 100 * i + (250 if cid == "conv_refund_b" else 0))  # fmt: skip
                messages = next_messages(messages, answer)
    return path


def test_pure_render(recorded):
    from replayer.tui.trajectories import final_text, pair_cells, pair_sides, title_text, tools_text, totals_text

    store = Store(open_db(recorded, create=False))
    c = compare(trajectory(store, "conv_refund_a"), trajectory(store, "conv_refund_b"))
    assert "diverge at turn 3" in title_text(c).plain
    cells = [cell.plain for cell in pair_cells(c.pairs[3], c.diverged_at)]
    assert cells[:4] == ["▶ 3", "differs", "tool_use", "refund"]
    assert [cell.plain for cell in pair_cells(c.pairs[4], c.diverged_at)][2:4] == [
        "end_turn→tool_use", "-→notify_customer"]  # fmt: skip
    assert [cell.plain for cell in pair_cells(c.pairs[0], c.diverged_at)][:2] == ["0", "same"]
    assert [cell.plain for cell in pair_cells(c.pairs[6], c.diverged_at)][1] == "added"
    tools = tools_text(c.pairs[3]).plain
    assert "refund changed" in tools and "amount: 20 → 25" in tools and 'reason: added "late"' in tools
    assert "close_ticket added" in tools_text(c.pairs[5]).plain
    assert "lookup_order same" in tools_text(c.pairs[0]).plain
    left, right = pair_sides(c.pairs[3])
    assert left.plain == SCRIPT_A[3][0] and right.plain == SCRIPT_B[3][0]
    assert any("green" in str(span.style) and "late fee" in right.plain[span.start : span.end] for span in right.spans)
    left, right = pair_sides(c.pairs[5])
    assert "no turn 5" in left.plain and right.plain == SCRIPT_B[5][0]
    rows = {line.split()[0]: line.split()[1:] for line in totals_text(c).plain.splitlines()[1:] if line.strip()}
    assert rows["turns"] == [str(len(SCRIPT_A)), str(len(SCRIPT_B)), f"+{len(SCRIPT_B) - len(SCRIPT_A)}"]
    assert rows["errors"] == ["0", "1", "+1"]
    assert rows["cost"][:2] == [f"${expected_cost(SCRIPT_A):,.4f}", f"${expected_cost(SCRIPT_B):,.4f}"]
    fa, fb = final_text(c)
    assert fa.plain == SCRIPT_A[-1][0] and fb.plain == SCRIPT_B[-1][0]
    assert any("strike" in str(span.style) for span in fa.spans)  # what A said that B didn't


SNAP_SIZE = (100, 34)


@pytest.mark.usefixtures("_utc")
async def test_screen_from_the_list(tmp_path, monkeypatch):
    from replayer.tui.app import make_app
    from replayer.tui.trajectories import TrajectoriesScreen

    monkeypatch.chdir(tmp_path)  # the list shows the database path
    db = record_fixed(Path("cmp.db"))
    app = make_app(db)
    async with app.run_test(size=SNAP_SIZE) as pilot:
        await settle(pilot)
        await pilot.press("c")  # nothing marked, no fork: said, and nothing opens
        await settle(pilot)
        assert not isinstance(app.screen, TrajectoriesScreen)
        assert any("has no fork" in str(n.message) for n in app._notifications)
        await pilot.press("j", "m", "k", "c")  # the list is newest first: A is the older one
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrajectoriesScreen) and screen.result is not None
        assert (screen.result.a.conversation_id, screen.result.b.conversation_id) == ("conv_refund_a", "conv_refund_b")
        table = screen.query_one("#traj-turns")
        assert table.cursor_row == 3  # opens on the divergence
        check("trajectories-textual-dark", app.export_screenshot(title="trajectories"))
        await pilot.press("n")
        assert table.cursor_row == 4
        await pilot.press("2")
        await settle(pilot)
        check("trajectories-totals-textual-dark", app.export_screenshot(title="trajectories totals"))
        await pilot.press("1", "b")  # B's turn 4 in its conversation; esc comes back
        await settle(pilot)
        from replayer.tui.conversation import ConversationScreen

        assert isinstance(app.screen, ConversationScreen) and app.screen.conversation_id == "conv_refund_b"
        assert app.screen.start_turn == 4
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("s")  # swapped: B's extra turns are missing from A
        await settle(pilot)
        assert screen.result.a.conversation_id == "conv_refund_b"
        assert [p.status for p in screen.result.pairs][5:] == ["missing"] * (len(SCRIPT_B) - len(SCRIPT_A))
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, TrajectoriesScreen)


@pytest.mark.parametrize("width", [70, 80, 90, 100, 120])
async def test_the_screen_edge_never_cuts_a_number_in_the_trajectories(tmp_path, width):
    """At 80 columns B's cost $0.0079 showed as $0.0002→$0.00: the tool names give way to the
    numbers, or the number goes off screen whole."""
    from replayer.tui.app import make_app
    from replayer.tui.trajectories import TrajectoriesScreen

    app = make_app(record_fixed(tmp_path / "cmp.db"))
    async with app.run_test(size=(width, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j", "m", "k", "c")
        await settle(pilot)
        assert isinstance(app.screen, TrajectoriesScreen)
        table = app.screen.query_one("#traj-turns")
        numbers = {"#", "Prompt A→B", "Cost A→B", "Time A→B"}
        assert await wait_for(pilot, lambda: not numbers_cut(table, numbers)), numbers_cut(table, numbers)


async def test_the_trajectories_table_is_fitted_again_when_it_alone_narrows(tmp_path):
    """Its columns were fitted again only when the terminal's size changed or its scrollbar came:
    the table narrowed alone (its terminal's size the same) kept those fitted for its old edge,
    a number cut. It now fits them on its own resize (widgets.FittedTable)."""
    from replayer.tui.app import make_app
    from replayer.tui.trajectories import TrajectoriesScreen

    app = make_app(record_fixed(tmp_path / "cmp.db"))
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j", "m", "k", "c")
        await settle(pilot)
        assert isinstance(app.screen, TrajectoriesScreen)
        table = app.screen.query_one("#traj-turns")
        await narrowed_through_a_number(pilot, table, {"#", "Prompt A→B", "Cost A→B", "Time A→B"})


@pytest.mark.parametrize("width", [100, 160])
async def test_a_figure_wider_than_its_column_widens_it_in_the_trajectories(tmp_path, width):
    """`180 ms→179 ms` showed as `180 ms→179` (the time column was 11 wide at any width), and a
    prompt of over a million tokens on each side was cut the same way: each number column holds
    its widest figure whole, the tool names giving way."""
    from tui_data import reply

    from replayer.tui.app import make_app
    from replayer.tui.trajectories import TrajectoriesScreen

    path = tmp_path / "wide.db"
    with Recorder(path) as rec:
        for cid, tokens, latency, at in (("conv_a", 1_234_567, 180.0, T0), ("conv_b", 1_234_568, 179.0, T0 + 60)):
            rec.record({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "go"}]},
                       reply("done", usage={"input_tokens": tokens, "output_tokens": 10}),
                       conversation_id=cid, started_at=at, latency_ms=latency)  # fmt: skip
    app = make_app(path)
    async with app.run_test(size=(width, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j", "m", "k", "c")
        await settle(pilot)
        assert isinstance(app.screen, TrajectoriesScreen)
        table = app.screen.query_one("#traj-turns")
        line = "".join(segment.text for segment in table.render_line(1))
        assert " 1,234,567→1,234,568 " in line and " 180 ms→179 ms " in line + " ", line
        numbers = {"#", "Prompt A→B", "Cost A→B", "Time A→B"}
        assert await wait_for(pilot, lambda: not numbers_cut(table, numbers)), numbers_cut(table, numbers)


async def test_screen_offers_the_fork(tmp_path):
    """`c` with nothing marked, on a conversation that has a fork: the two of them."""
    from replayer.tui.app import make_app
    from replayer.tui.trajectories import TrajectoriesScreen

    db = record_fixed(tmp_path / "cmp.db")
    # the link `replayer fork` writes: conv_refund_b was forked from conv_refund_a at turn 3
    conn = open_db(db)
    conn.execute("INSERT INTO conversation_links (conversation_id, parent_id, kind) "
                 "VALUES ('conv_refund_b', 'conv_refund_a', 'fork')")  # fmt: skip
    conn.conn.commit()
    conn.close()
    app = make_app(db)
    async with app.run_test(size=SNAP_SIZE) as pilot:
        await settle(pilot)
        await pilot.press("c")  # on conv_refund_b (newest): the fork; compared with its original
        await settle(pilot)
        assert isinstance(app.screen, TrajectoriesScreen)
        assert app.screen.result.a.conversation_id == "conv_refund_a"
        assert app.screen.result.diverged_at == 3


def test_unpriced_and_unanswered_sides():
    """Built by hand: a turn whose model has no price makes the total cost unknown (`?`), not an
    understated sum; a trajectory with no answered turn has no final text."""
    from replayer.models import ToolUse
    from replayer.trajectory import Step, Trajectory, totals_rows

    def step(i, *, cost, error=None, text="ok"):
        return Step(index=i, turn_id=f"t{i}", started_at="2026-01-01T00:00:00Z", model="m", stop_reason=None
                    if error else "end_turn", prompt_tokens=None if error else 100, output_tokens=None if error
                    else 5, cost_usd=cost, latency_ms=1000.0, attempts=1, errors=1 if error else 0, error=error,
                    text="" if error else text, tool_calls=[] if error else [ToolUse("t", {"x": 1})])  # fmt: skip

    err = {"type": "overloaded_error", "message": "Overloaded", "status": 529}
    a = Trajectory("A", [step(0, cost=0.01), step(1, cost=None)])
    b = Trajectory("B", [step(0, cost=0.01), step(1, cost=0.0, error=err)])
    c = compare(a, b)
    assert c.a.cost_usd is None and c.b.cost_usd == pytest.approx(0.01)
    rows = {r[0]: r[1:] for r in totals_rows(c.a, c.b)}
    assert rows["cost"] == ("?", "$0.0100", "?")
    assert rows["errors"] == ("0", "1", "+1")
    assert c.diverged_at == 1 and "error" in c.pairs[1].differences
    assert c.final.a == "ok" and c.final.b == "ok"  # B's last answered turn is turn 0


def test_totals_differences_are_never_a_signed_zero():
    """`+$0.0000` between $0.0029 and $0.0030: a difference under the precision shown has the
    digits that make it non-zero, and none at all has no sign."""
    from replayer.trajectory import Totals, totals_rows

    def t(cost, model_ms, turns):
        return Totals(conversation_id="c", turns=turns, cost_usd=cost, model_ms=model_ms, wall_s=2.0, errors=0,
                      prompt_tokens=100, output_tokens=5, tool_calls=1)  # fmt: skip

    rows = {r[0]: r[1:] for r in totals_rows(t(0.00294, 105.0, 2), t(0.00296, 104.7, 3))}
    assert rows["cost"] == ("$0.0029", "$0.0030", "+$0.00002")
    assert rows["model time"] == ("105 ms", "105 ms", "-0.3 ms")
    assert rows["turns"] == ("2", "3", "+1")
    assert rows["wall time"][2] == "0 ms" and rows["prompt tok"][2] == "0"
    same = {r[0]: r[3] for r in totals_rows(t(0.003, 105.0, 2), t(0.003, 105.0, 2))}
    assert same["cost"] == "$0" and same["model time"] == "0 ms"


def test_wall_time_counts_the_waits_between_retries(api, tmp_path):
    """A turn answered after two 529s with a wait before each retry: its wall time runs from the
    first attempt's start to the last one's end, not the attempts' latencies added up."""
    from replayer.trajectory import totals

    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    api.enqueue(*[Reply(status=529, body=overloaded, headers={"retry-after-ms": "300"})] * 2)
    db = tmp_path / "w.db"
    with Recorder(db) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
        hi = [{"role": "user", "content": "hi"}]
        with rec.conversation("conv_retried"):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=hi)
    t = totals(trajectory(Store(open_db(db)), "conv_retried"))
    assert t.turns == 1 and t.model_ms < 300  # three quick answers
    assert t.wall_s >= 0.6, t  # and two waits of 0.3 s between them


def test_core_imports_no_textual():
    import subprocess
    import sys

    code = ("import sys, replayer.trajectory, replayer.store.trajectories, replayer.cli.compare\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'textual']\nprint('ok')")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
