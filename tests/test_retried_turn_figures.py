"""A turn billed more than once: a stream cut after its message_start (its usage came, so it was
billed) and then sent again. Its tokens are the turn's (those of the attempt that counts it: its
last with usage), its cost is everything billed, in `list`, `list --json`, `show`, `stats` and the
browser's Usage tab alike; and that tab adds up, and fits the side-by-side pane at 160 columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY, stored_facts
from rich.cells import cell_len
from textual.widgets import Static
from tui_data import open_first_conversation, settle

from replayer import Recorder
from replayer.cli import cli
from replayer.config import Settings
from replayer.fakeapi import FakeAPI, Reply, message_events
from replayer.fmt import money
from replayer.metrics import stats
from replayer.pricing import PriceTable
from replayer.store import facts
from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.wire import prompt_tokens

CONV = "conv_retried_after_a_cut_stream_with_a_rather_long_identifier"
MODEL = "claude-sonnet-4-5-20250929"
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def message(inp: int, out: int, read: int = 0) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": read}}  # fmt: skip


def record(path) -> None:
    """Turn 0: a stream cut by an overloaded_error event after its message_start (1,000 uncached
    tokens billed), sent again by the agent and answered from the cache (200 uncached, 800 read,
    50 out). Turn 1: a 529 (nothing billed), sent again, cut the same way (1,500 uncached billed),
    and given up."""
    with FakeAPI() as api, Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        messages = [{"role": "user", "content": "hello"}]

        def stream(*replies: Reply) -> bool:
            api.enqueue(*replies)
            try:
                for _ in client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages,
                                                stream=True):  # fmt: skip
                    pass
            except anthropic.APIStatusError:
                return False
            return True

        def cut(inp: int) -> Reply:
            return Reply(sse=[*message_events(message(inp, 1))[:4], {"event": "error", "data": OVERLOADED}])

        with rec.conversation(CONV):
            assert not stream(cut(1000))
            assert stream(Reply(sse=message_events(message(200, 50, read=800))))
            messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
            assert not stream(Reply(status=529, body=OVERLOADED))
            assert not stream(cut(1500))
        assert rec.flush(10)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("retried") / "r.db"
    record(path)
    return path


def run(db, *args: str) -> str:
    r = CliRunner().invoke(cli, ["--db", str(db), *args])
    assert r.exit_code == 0, r.output
    return r.output


def cells(header: str, row: str) -> list[str]:
    """A table row's PROMPT, OUTPUT and COST: each right-aligned under its header (an empty cell
    before them, a user or a stop reason, leaves no word to count)."""
    return [row[: header.index(name) + len(name)].split()[-1] for name in ("PROMPT", "OUTPUT", "COST")]


def billed(db) -> tuple[list[list[dict]], float]:
    """Each turn's attempts' usage as recorded (None where none came), and what all of it cost."""
    prices = PriceTable.load()
    store = Store(open_db(db), prices)
    by_turn: dict[int, list] = {}
    for line in store.export_lines():
        a = json.loads(line)
        by_turn.setdefault(a["index"], []).append((a["response"] or {}).get("usage"))
    usages = [u for attempts in by_turn.values() for u in attempts if u]
    return [by_turn[i] for i in sorted(by_turn)], sum(prices.cost(u, MODEL) for u in usages)


def test_list_its_json_show_and_stats_count_a_retried_turns_tokens_once_and_its_cost_whole(db):
    attempts, cost = billed(db)
    assert [[u is not None for u in turn] for turn in attempts] == [[True, True], [False, True]]
    counted = [[u for u in turn if u][-1] for turn in attempts]  # each turn's last attempt with usage
    prompt = sum(prompt_tokens(u) for u in counted)
    output = sum(u["output_tokens"] for u in counted)
    reads = sum(u["cache_read_input_tokens"] for u in counted)
    every = [u for turn in attempts for u in turn if u]
    assert sum(prompt_tokens(u) for u in every) > prompt  # (what the list summed before)

    shown = json.loads(run(db, "show", CONV, "--json"))["turns"]
    assert [t["usage"] for t in shown] == counted
    assert sum(t["cost_usd"] for t in shown) == pytest.approx(cost)

    (listed,) = json.loads(run(db, "list", "--json"))
    assert (listed["input_tokens"], listed["output_tokens"], listed["cache_read_tokens"]) == (prompt, output, reads)
    assert listed["cost_usd"] == pytest.approx(cost)

    header, row = run(db, "list").splitlines()[:2]
    assert cells(header, row) == [f"{prompt:,}", f"{output:,}", money(cost)]
    table = run(db, "show", CONV).splitlines()
    assert [cells(table[0], line) for line in table[1:3]] == [
        [f"{prompt_tokens(u):,}", f"{u['output_tokens']:,}", money(t["cost_usd"])]
        for u, t in zip(counted, shown, strict=True)
    ]
    assert f"total {money(cost)}" in table

    doc = stats(Store(open_db(db), PriceTable.load()), Settings(tz="UTC"), days=1, now=datetime.now(UTC)).document()
    assert doc["metrics"]["cache_hit_rate"]["value"] == pytest.approx(reads / prompt)  # the turns' prompts
    assert doc["metrics"]["mean_cost_per_conversation_usd"]["value"] == pytest.approx(cost)  # all that was billed
    assert doc["users"][0]["turns"] == doc["models"][0]["turns"] == 2
    sorted_by_input = Store(open_db(db), PriceTable.load()).conversations(sort="input")
    assert [c.input_tokens for c in sorted_by_input] == [prompt]


def test_migrating_an_older_database_counts_its_retried_turns_tokens_once(tmp_path):
    """m017 on a database as the writer left it before: the turn counted at its first attempt
    unless a retry answered, and the rollup's aside sums holding compaction iterations only. The
    same rows as the writer makes now."""
    path = tmp_path / "old.db"
    record(path)
    db = open_db(path)

    before = stored_facts(db)
    assert any(r[-3:] != (0, 0, 0) for r in before[1])
    db.execute("UPDATE rollup SET cp_prompt = 0, cp_output = 0, cp_read = 0")
    # turn 1 (given up after a 529 and a cut stream) counted at its 529
    first, cut = (facts.UsageRow(*r) for r in db.execute(
        f"SELECT {facts.USAGE_COLUMNS} FROM usage WHERE idx = 1 AND part = 0 ORDER BY attempt_id"))  # fmt: skip
    for u, by in ((first, 1), (cut, -1)):
        r = facts.rollup_row(u, "")  # (the key fields this UPDATE names)
        db.execute("UPDATE usage SET new_turn = new_turn + ? WHERE attempt_id = ?", (by, u.attempt_id))
        db.execute("UPDATE rollup SET turns = turns + ? WHERE conv = ? AND bucket = ? AND model = ? AND band = ?",
                   (by, r.conv, r.bucket, r.model, r.band))
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm017_turn_tokens_of_one_attempt'")
    db.conn.commit()
    db.conn.close()
    db = open_db(path)
    assert stored_facts(db) == before


async def test_the_usage_tab_adds_up_to_the_turns_cost_and_fits_beside_the_list_at_160(db):
    from replayer.tui.app import make_app

    attempts, _ = billed(db)
    prices = PriceTable.load()
    for size in ((160, 45), (100, 45), (80, 45)):
        app = make_app(db)
        async with app.run_test(size=size) as pilot:
            screen = await open_first_conversation(pilot)
            await pilot.press("4")
            await settle(pilot)
            body = screen.query_one("#usage-body", Static)
            text = str(body.render())
            lines = text.splitlines()
            table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("kind"))):]
            table = table[: table.index("")]
            # every line of the table whole on its row: none wraps its cost onto the next
            assert max(cell_len(line) for line in table) <= body.content_region.width, (size, table)
            costs = {line.rsplit("$", 1)[0].strip(): Decimal(line.rsplit("$", 1)[1]) for line in table[1:]
                     if "$" in line and not line.startswith("= prompt")}  # (the prompt's lines are above it)
            earlier = next(k for k in costs if "earlier attempt" in k)
            assert earlier == "+ 1 earlier attempt, billed too"
            assert costs[earlier] == Decimal(money(prices.cost(attempts[0][0], MODEL))[1:])
            turn_cost = next(line for line in lines if line.startswith("turn cost")).split()[2]
            d = screen.detail
            assert money(sum(u.cost_usd or 0.0 for u in d.usage) + (d.earlier_cost_usd or 0.0)) == turn_cost
            assert turn_cost == money(sum(prices.cost(u, MODEL) for u in attempts[0] if u))


async def test_a_retried_turns_latency_is_every_attempts_in_show_compare_and_the_browser(tmp_path):
    """A turn whose first attempt got a 529 (after 300 ms) and whose retry a 200 (after 50 ms):
    `show` and the browser's turn row said the last attempt's latency (about 50 ms) where
    `compare` said the call's (every attempt's, as README defines it). All three now say the
    call's; the attempt rows under the turn and the Usage tab's attempts keep each attempt's own."""
    from textual.widgets import DataTable

    from replayer.fmt import ms
    from replayer.tui.app import make_app

    path = tmp_path / "lat.db"
    with FakeAPI() as api, Recorder(path) as rec:
        api.enqueue(Reply(status=529, body=OVERLOADED, headers={"retry-after-ms": "1"}, delay=0.3),
                    Reply(body=message(100, 5), delay=0.05))  # fmt: skip
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=1))
        with rec.conversation("conv_slow_retry"):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        assert rec.flush(10)
    (turn,) = json.loads(run(path, "show", "conv_slow_retry", "--json"))["turns"]
    each = [a["latency_ms"] for a in turn["attempts"]]
    assert [a["status"] for a in turn["attempts"]] == [529, 200] and each[0] > 250 > each[1], each
    call = ms(sum(each))
    assert ms(sum(each)) != ms(each[-1])
    (pair,) = json.loads(run(path, "compare", "conv_slow_retry", "conv_slow_retry", "--json"))["pairs"]
    assert ms(pair["a"]["latency_ms"]) == call
    header, row = run(path, "show", "conv_slow_retry").splitlines()[:2]
    assert row[: header.index("LATENCY") + len("LATENCY")].endswith(call), (header, row)
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        table = screen.query_one("#turns", DataTable)
        await settle(pilot)
        rows = [[str(c).strip() for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert len(rows) == 2 and call in rows[0] and ms(each[0]) in rows[1], rows  # the turn, its retry under it
