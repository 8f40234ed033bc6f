"""A conversation two users made calls in: every figure per user counts each call under the user
it was made for (its turn's), as `export` says, not under the conversation's first user."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from textual.widgets import DataTable
from tui_data import open_dashboard, settle

from replayer import Recorder
from replayer.cli import cli
from replayer.config import Settings
from replayer.fakeapi import Reply
from replayer.fmt import money
from replayer.metrics import stats
from replayer.pricing import PriceTable
from replayer.store import facts
from replayer.store.queries import Store
from replayer.store.schema import open_db

MODEL = "claude-sonnet-4-5"
U1_USAGE = {"input_tokens": 1000, "output_tokens": 100}
U2_USAGE = {"input_tokens": 20_000, "output_tokens": 1000}
BUDGET = 0.05
"""Over it: u2's one call ($0.075); under it: u1's two ($0.0045 each), and both users' together
would be over it, billed to u1 as before."""


def answer(text: str, usage: dict) -> Reply:
    return Reply(body={"id": f"msg_{text}", "type": "message", "role": "assistant", "model": MODEL,
                       "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                       "stop_sequence": None, "usage": usage})  # fmt: skip


def shared(api, path) -> None:
    """conv_shared: u1's call, then u2's in the same conversation (a 429 first, retried: its turn
    count moves to the retry in the rollup row of u2's); conv_u1: u1 alone; and a conversation
    threaded on its own whose request's metadata.user_id goes from m1 to m2."""
    api.enqueue(
        answer("one", U1_USAGE),
        Reply(status=429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
              headers={"retry-after": "0"}),
        answer("two", U2_USAGE),
        answer("alone", U1_USAGE),
        answer("m-one", U1_USAGE),
        answer("m-two", U1_USAGE),
    )  # fmt: skip
    with Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=1))

        def ask(messages, **kw):
            return client.messages.create(model=MODEL, max_tokens=2000, messages=messages, **kw)

        first = [{"role": "user", "content": "start"}]
        with rec.conversation("conv_shared", user_id="u1"):
            ask(first)
        with rec.conversation("conv_shared", user_id="u2"):
            ask([*first, {"role": "assistant", "content": "one"}, {"role": "user", "content": "go on"}])
        with rec.conversation("conv_u1", user_id="u1"):
            ask([{"role": "user", "content": "alone"}])
        auto = [{"role": "user", "content": "threaded"}]
        ask(auto, metadata={"user_id": "m1"})
        ask([*auto, {"role": "assistant", "content": "m-one"}, {"role": "user", "content": "more"}],
            metadata={"user_id": "m2"})


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    from replayer.fakeapi import FakeAPI

    server = FakeAPI().start()
    try:
        path = tmp_path_factory.mktemp("shared") / "shared.db"
        shared(server, path)
    finally:
        server.stop()
    return path


def cost(usage: dict) -> float:
    return PriceTable.load().cost(usage, MODEL)


def run(path, *args):
    return CliRunner().invoke(cli, ["--db", str(path), *args])


def test_the_recording_holds_each_turns_user(db):
    """What `export` said already: each turn's user (the figures below are what was wrong)."""
    con = sqlite3.connect(db)
    turns = con.execute("SELECT conversation_id, idx, user_id FROM turns ORDER BY conversation_id, idx").fetchall()
    con.close()
    named = ("conv_shared", "conv_u1")
    assert [t for t in turns if t[0] in named] == [("conv_shared", 0, "u1"), ("conv_shared", 1, "u2"),
                                                   ("conv_u1", 0, "u1")]  # fmt: skip
    threaded = [t for t in turns if t[0] not in named]
    assert [(idx, user) for _, idx, user in threaded] == [(0, "m1"), (1, "m2")]
    assert len({conv for conv, _, _ in threaded}) == 1


def test_stats_per_user_and_top_users_bill_each_call_to_its_own_user(db):
    doc = json.loads(run(db, "stats", "--json").output)
    users = {u["user_id"]: u for u in doc["users"]}
    assert set(users) == {"u1", "u2", "m1", "m2"}
    assert users["u2"]["cost_usd"] == pytest.approx(cost(U2_USAGE))
    assert users["u1"]["cost_usd"] == pytest.approx(2 * cost(U1_USAGE))
    assert users["m1"]["cost_usd"] == users["m2"]["cost_usd"] == pytest.approx(cost(U1_USAGE))
    # a conversation counts once for each user who called in it; turns are the user's own
    assert (users["u1"]["conversations"], users["u1"]["turns"]) == (2, 2)
    assert (users["u2"]["conversations"], users["u2"]["turns"]) == (1, 1)
    assert (users["m1"]["conversations"], users["m1"]["turns"]) == (1, 1)
    today = doc["until"]
    (u2_today,) = [d for d in users["u2"]["days"] if d["date"] == today]
    assert (u2_today["cost_usd"], u2_today["attempts"]) == (pytest.approx(cost(U2_USAGE)), 2)  # the 429 and its retry
    top = [u["user_id"] for u in doc["top_users_today"]]
    assert top[0] == "u2" and set(top) == {"u1", "u2", "m1", "m2"}
    # the whole conversation still costs all it was billed, under its own (first) user
    conversations = {c["conversation_id"]: c for c in doc["top_conversations"]}
    assert conversations["conv_shared"]["cost_usd"] == pytest.approx(cost(U1_USAGE) + cost(U2_USAGE))
    assert conversations["conv_shared"]["user_id"] == "u1"
    assert doc["conversations"]["count"] == 3

    by_user = run(db, "stats", "--by", "user").output
    line = next(row for row in by_user.splitlines() if row.split()[:1] == ["u2"])
    assert money(cost(U2_USAGE)) in line


def test_stats_of_one_user_counts_only_that_users_calls(db):
    doc = json.loads(run(db, "stats", "--user", "u2", "--json").output)
    assert [u["user_id"] for u in doc["users"]] == ["u2"]
    assert doc["users"][0]["cost_usd"] == pytest.approx(cost(U2_USAGE))
    ((conv),) = doc["top_conversations"]
    assert (conv["conversation_id"], conv["user_id"], conv["turns"]) == ("conv_shared", "u2", 1)
    assert conv["cost_usd"] == pytest.approx(cost(U2_USAGE))
    metrics = doc["metrics"]
    assert metrics["avg_turns_per_conversation"]["value"] == 1
    assert metrics["mean_cost_per_conversation_usd"]["value"] == pytest.approx(cost(U2_USAGE))
    assert metrics["rate_limit_error_rate"]["value"] == 1 / 2  # u2's 429, of u2's two attempts
    assert metrics["p95_latency_ms"]["value"] is not None
    u1 = json.loads(run(db, "stats", "--user", "u1", "--json").output)
    assert u1["users"][0]["cost_usd"] == pytest.approx(2 * cost(U1_USAGE))
    assert u1["metrics"]["rate_limit_error_rate"]["value"] == 0


def test_the_budget_alert_names_only_the_user_over_it(db):
    r = run(db, "alerts", "--daily-budget", str(BUDGET), "--json")
    assert r.exit_code == 1
    budget = [a for a in json.loads(r.output) if a["kind"] == "budget"]
    assert [(a["user_id"], a["cost_usd"]) for a in budget] == [("u2", pytest.approx(cost(U2_USAGE)))]
    assert 2 * cost(U1_USAGE) < BUDGET < cost(U2_USAGE) < 2 * cost(U1_USAGE) + cost(U2_USAGE)


def test_list_by_user_finds_every_conversation_with_a_call_of_theirs(db):
    listed = json.loads(run(db, "list", "--user", "u2", "--json").output)
    assert [c["conversation_id"] for c in listed] == ["conv_shared"]
    assert (listed[0]["user_id"], listed[0]["other_users"]) == ("u1", ["u2"])
    assert sorted(c["conversation_id"] for c in json.loads(run(db, "list", "--user", "u1", "--json").output)) == [
        "conv_shared", "conv_u1"]  # fmt: skip
    (threaded,) = json.loads(run(db, "list", "--user", "m2", "--json").output)
    assert (threaded["user_id"], threaded["other_users"]) == ("m1", ["m2"])
    text = run(db, "list", "--user", "u2").stdout.splitlines()
    header, (row,) = text[0], text[1:]
    assert row[header.index("USER") :].startswith("u1 +1 ")
    alone = json.loads(run(db, "list", "--user", "u1", "--json").output)
    assert next(c for c in alone if c["conversation_id"] == "conv_u1")["other_users"] == []


def test_the_user_column_keeps_the_count_of_other_users_when_the_name_is_cut():
    from replayer.fmt import users_label

    assert users_label("u1", 1, 14) == "u1 +1"
    assert users_label("alice@example.com", 2, 14) == "alice@exam… +2"
    assert users_label("alice@example.com", 0, 14) == "alice@example…"
    assert len(users_label("x" * 40, 12, 14)) == 14


@pytest.mark.parametrize("size", [(100, 40), (160, 40)])
async def test_the_dashboard_bills_each_user_and_picking_one_lists_the_shared_conversation(db, size):
    from replayer.tui.app import make_app
    from replayer.tui.conversations import ConversationsScreen

    app = make_app(db)
    async with app.run_test(size=size) as pilot:
        screen = await open_dashboard(pilot)
        table = screen.query_one("#dash-users", DataTable)
        rows = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)] for i in range(table.row_count)}
        assert rows["u2"][1:] == [money(cost(U2_USAGE)), money(cost(U2_USAGE)), "1", "1"]
        assert rows["u1"][1:] == [money(2 * cost(U1_USAGE)), money(2 * cost(U1_USAGE)), "2", "2"]
        table.move_cursor(row=list(rows).index("u2"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConversationsScreen)
        listed = app.screen.query_one("#conversations", DataTable)
        assert [[str(c) for c in listed.get_row_at(i)][1:3] for i in range(listed.row_count)] == [
            ["conv_shared", "u1 +1"]]  # fmt: skip


def test_an_imported_export_bills_each_line_to_its_own_user(db, tmp_path):
    """Export lines carry each call's user: imported, they bill as recorded."""
    lines = tmp_path / "run.jsonl"
    assert run(db, "export", "-o", str(lines)).exit_code == 0
    copy = tmp_path / "copy.db"
    assert run(copy, "import", "export", str(lines)).exit_code == 0
    users = {u["user_id"]: u for u in json.loads(run(copy, "stats", "--json").output)["users"]}
    assert users["u2"]["cost_usd"] == pytest.approx(cost(U2_USAGE))
    assert users["u1"]["cost_usd"] == pytest.approx(2 * cost(U1_USAGE))
    assert [c["conversation_id"] for c in json.loads(run(copy, "list", "--user", "u2", "--json").output)] == [
        "conv_shared"]  # fmt: skip


def rollup(path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT * FROM rollup ORDER BY conv, bucket, model, batch, band, user").fetchall()
    finally:
        con.close()


def test_migrating_an_older_database_bills_its_shared_conversation_per_user(db, tmp_path):
    """m021 on a database whose rollup was keyed without the user (its rows summed the two
    users' calls, billed to the conversation's first): the same rows as the writer makes now,
    and the figures per user."""
    import shutil

    path = tmp_path / "old.db"
    shutil.copy(db, path)
    before = rollup(path)
    assert {r[5] for r in before} == {"u1", "u2", "m1", "m2"}
    con = sqlite3.connect(path)
    old = facts.ROLLUP_TABLE.replace("rollup (", "old_rollup (", 1)
    old = old.replace("        user TEXT NOT NULL,", "-- ").replace("band, user)", "band)")
    con.execute(old)
    sums = ", ".join(f"SUM({c})" for c in facts.ROLLUP_SUMS)
    con.execute(f"""INSERT INTO old_rollup(conv, bucket, model, batch, band, {', '.join(facts.ROLLUP_SUMS)},
                                           sys_min, sys_max, sys_nulls)
                    SELECT conv, bucket, model, batch, band, {sums}, MIN(sys_min), MAX(sys_max), SUM(sys_nulls)
                    FROM rollup GROUP BY conv, bucket, model, batch, band""")
    con.execute("DROP TABLE rollup")
    con.execute("ALTER TABLE old_rollup RENAME TO rollup")
    con.execute("DELETE FROM _sqlite_migrations WHERE name = 'm021_rollup_per_user'")
    con.commit()
    con.close()
    open_db(path).conn.close()
    assert rollup(path) == before
    doc = stats(Store(open_db(path), PriceTable.load()), Settings(tz="UTC"), days=1, now=datetime.now(UTC))
    assert {u.user_id: round(u.cost_usd, 6) for u in doc.users} == {
        "u1": round(2 * cost(U1_USAGE), 6), "u2": round(cost(U2_USAGE), 6),
        "m1": round(cost(U1_USAGE), 6), "m2": round(cost(U1_USAGE), 6)}  # fmt: skip


@pytest.mark.parametrize("recording", ["retried", "compacting"])
def test_summing_the_rollup_again_gives_what_the_writer_summed(tmp_path, recording):
    """m021 sums the rollup from `usage`: on recordings of retries and a stream cut and sent
    again (the turn's count moved, tokens billed aside) and of a compaction iteration, the rows
    the writer kept up one attempt at a time."""
    from test_aggregate import compacting_db
    from test_retried_turn_figures import record

    path = tmp_path / "r.db"
    (record if recording == "retried" else compacting_db)(path)
    before = rollup(path)
    assert before and any(r[-3:] != (0, 0, 0) for r in before)  # something billed aside
    con = sqlite3.connect(path)
    con.execute("DELETE FROM _sqlite_migrations WHERE name = 'm021_rollup_per_user'")
    con.commit()
    con.close()
    open_db(path).conn.close()
    assert rollup(path) == before
