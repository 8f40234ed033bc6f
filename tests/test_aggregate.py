"""The rollup (store/facts.py) priced at read time (store/aggregate.py) gives exactly what pricing
each attempt's raw usage gives, and the conversation list sorts and filters by it across pages."""

from __future__ import annotations

import pytest

from replayer import Recorder
from replayer.pricing import PriceTable
from replayer.store.aggregate import conversation_totals, groups
from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.wire import prompt_tokens

T0 = 1_764_000_000.0


def msg(model, usage, text="ok"):
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": usage}  # fmt: skip


def u(inp, out=10, w=0, r=0, **extra):
    return {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": w,
            "cache_read_input_tokens": r, **extra}  # fmt: skip


CASES = {
    # conversation: [(model, usage)], each recorded as one turn
    "conv_plain": [("claude-sonnet-4-5", u(1000, 200, w=3000)), ("claude-sonnet-4-5", u(50, 300, r=3000))],
    "conv_long": [("claude-sonnet-4-5", u(10, 100, r=150_000)), ("claude-sonnet-4-5", u(10, 100, r=250_000))],
    "conv_haiku55": [("claude-haiku-5-5", u(99_990)), ("claude-haiku-5-5", u(100_010))],
    "conv_batch": [("claude-opus-4-1-20250805", u(5000, 900, service_tier="batch"))],
    "conv_web": [("claude-sonnet-4-5", u(2000, 400, server_tool_use={"web_search_requests": 3}))],
    "conv_1h": [("claude-sonnet-4-5", u(100, 10, w=5000, cache_creation={"ephemeral_5m_input_tokens": 1000,
                                                                        "ephemeral_1h_input_tokens": 4000}))],
    "conv_compact": [("claude-sonnet-4-5", u(100, 50, iterations=[
        {"type": "compaction", "input_tokens": 180_000, "output_tokens": 3000},
        {"type": "message", "input_tokens": 100, "output_tokens": 50}]))],
    "conv_unknown": [("claude-sonnet-4-5", u(100)), ("mystery-model-9", u(100))],
    "conv_tiny": [("claude-haiku-4-5", u(3, 1))],
}  # fmt: skip


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "agg.db"
    with Recorder(path) as rec:
        for n, (conv, turns) in enumerate(CASES.items()):
            for i, (model, usage) in enumerate(turns):
                rec.record({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": f"q{i}"}]},
                           msg(model, usage), conversation_id=conv, user_id="u", started_at=T0 + n * 1800 + i)
            # an attempt that failed has no usage and costs nothing
            rec.record({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []},
                       error={"type": "rate_limit_error", "message": "slow down", "status": 429}, status=429,
                       conversation_id=conv, started_at=T0 + n * 1800 + 30)  # fmt: skip
    return path


def python_costs(store):
    """Each conversation's cost as the list prices it: every attempt's raw usage, one by one."""
    return {c.conversation_id: c.cost_usd for c in store.conversations(limit=1000)}


def rowids(db):
    return dict(db.execute("SELECT rowid, id FROM conversations").fetchall())


def test_rollup_prices_like_each_attempt(db_path):
    db = open_db(db_path)
    store = Store(db, PriceTable.load())
    expected = python_costs(store)
    # a model with no price leaves its turn out: what the priced turn cost, a lower bound
    priced, unpriced = store.turns("conv_unknown")[:2]
    assert unpriced.cost_usd is None and priced.cost_usd
    assert expected["conv_unknown"] == pytest.approx(priced.cost_usd) and expected["conv_long"] > 0
    totals = conversation_totals(db, store.prices)
    names = rowids(db)
    got = {names[k]: v.cost_usd for k, v in totals.items()}
    assert got.keys() == expected.keys()
    assert {names[k]: v.unpriced for k, v in totals.items() if v.unpriced} == {"conv_unknown": 1}
    for conv, cost in expected.items():
        assert got[conv] == pytest.approx(cost, rel=1e-12, abs=1e-15), conv
    # the band is decided per request, so conv_long has one turn at each rate
    long_turns = [t.cost_usd for t in store.turns("conv_long")]
    assert got["conv_long"] == pytest.approx(sum(c for c in long_turns if c), rel=1e-12)


def test_a_band_threshold_between_the_rollup_edges_is_priced_attempt_by_attempt(db_path, tmp_path):
    odd = tmp_path / "odd.toml"
    odd.write_text(
        """[[model]]
ids = ["claude-haiku-4-5"]
input = 1.0
output = 5.0
cache_write_5m = 1.25
cache_write_1h = 2.0
cache_read = 0.1
source = "test"
date = "2026-11-26"
[model.above]
prompt_tokens = 2
input = 100.0
output = 500.0
cache_write_5m = 125.0
cache_write_1h = 200.0
cache_read = 10.0
"""
    )
    prices = PriceTable.load(odd)
    db = open_db(db_path)
    store = Store(db, prices)
    tiny = python_costs(store)["conv_tiny"]
    assert tiny == pytest.approx((3 * 100 + 1 * 500) / 1e6)  # 3 prompt tokens > 2: the high band
    names = rowids(db)
    got = {names[k]: v.cost_usd for k, v in conversation_totals(db, prices).items()}
    assert got["conv_tiny"] == pytest.approx(tiny, rel=1e-12)


def test_sorting_and_filtering_by_cost_spans_every_page(db_path):
    store = Store(open_db(db_path), PriceTable.load())
    costs = python_costs(store)
    assert None not in costs.values()  # conv_unknown's is what its priced turn cost (a lower bound)
    known = sorted(costs.items(), key=lambda kv: -kv[1])
    pages = [store.conversations(sort="cost", limit=2, offset=o) for o in range(0, 12, 2)]
    order = [c.conversation_id for page in pages for c in page]
    assert order == [k for k, _ in known]  # (one with nothing priced sorts last: test_unpriced_list.py)
    ascending = [c.conversation_id for c in store.conversations(sort="cost", descending=False, limit=100)]
    assert ascending == [k for k, _ in reversed(known)]
    floor = known[3][1]
    over = store.conversations(min_cost=floor, limit=100)
    assert {c.conversation_id for c in over} == {k for k, _ in known[:4]}
    assert [c.conversation_id for c in store.conversations(min_cost=floor, sort="cost", limit=2, offset=2)] == [
        k for k, _ in known[2:4]
    ]


def test_sorting_by_tokens_cache_and_errors(db_path):
    store = Store(open_db(db_path), PriceTable.load())
    every = store.conversations(limit=100)
    by_input = [c.conversation_id for c in store.conversations(sort="input", limit=100)]
    assert by_input == [c.conversation_id for c in sorted(every, key=lambda c: (-c.input_tokens, c.conversation_id))]
    by_cache = [c.conversation_id for c in store.conversations(sort="cache", limit=3)]
    assert by_cache[0] == "conv_long"
    assert all(c.errors == 1 for c in every)
    assert [c.conversation_id for c in store.conversations(sort="errors", limit=100)] == sorted(
        c.conversation_id for c in every
    )


def test_groups_are_per_quarter_hour(db_path):
    db = open_db(db_path)
    gs = groups(db, PriceTable.load(), since=T0 + 1800, until=T0 + 3600)
    names = rowids(db)
    assert {names[g.conv] for g in gs} == {"conv_long"}
    assert sum(g.attempts for g in groups(db, PriceTable.load())) == sum(len(t) + 1 for t in CASES.values())
    assert sum(g.limited for g in groups(db, PriceTable.load())) == len(CASES)


def test_sorting_by_models(db_path):
    store = Store(open_db(db_path), PriceTable.load())
    keys = [", ".join(sorted(set(c.models))) for c in store.conversations(sort="models", descending=False, limit=100)]
    assert keys == sorted(keys) and keys[0] == "claude-haiku-4-5, claude-sonnet-4-5" and len(set(keys)) > 3


def compacting_db(path):
    """One conversation of two turns; the second's usage carries a compaction iteration that read
    the old context (90% of it from the cache) and wrote a summary."""
    with Recorder(path) as rec:
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "q0"}]},
                   msg("claude-sonnet-4-5", u(100, 50, r=900)), conversation_id="c", started_at=T0)
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "q1"}]},
                   msg("claude-sonnet-4-5", u(200, 60, r=800, iterations=[
                       {"type": "compaction", "input_tokens": 10_000, "cache_read_input_tokens": 90_000,
                        "output_tokens": 3000},
                       {"type": "message", "input_tokens": 200, "output_tokens": 60,
                        "cache_read_input_tokens": 800}])),
                   conversation_id="c", started_at=T0 + 5)  # fmt: skip
    return path


def test_compaction_iterations_are_priced_but_are_no_turns_tokens(tmp_path):
    """A compaction iteration is billed on top of the turn, so the cost has it; but its reading of
    the old context is no prompt of the conversation's: `list`'s tokens, sorting by them and the
    stats' cache hit rate leave it out, as the conversation view does."""
    from datetime import UTC, datetime

    from replayer.config import Settings
    from replayer.metrics import stats

    db = open_db(compacting_db(tmp_path / "c.db"))
    store = Store(db, PriceTable.load())
    (c,) = store.conversations()
    turns = store.turns("c")
    assert (c.input_tokens, c.output_tokens, c.cache_read_tokens) == (2000, 110, 1700)
    assert c.input_tokens == sum(prompt_tokens(t.usage) for t in turns)  # as `show` sums them
    assert c.cost_usd == pytest.approx(sum(t.cost_usd for t in turns))
    rates = (3.0, 15.0, 0.30)  # sonnet 4.5: input, output, cache read, per million
    billed = (100 + 200 + 10_000) * rates[0] + (50 + 60 + 3000) * rates[1] + (900 + 800 + 90_000) * rates[2]
    assert c.cost_usd == pytest.approx(billed / 1e6)
    (t,) = conversation_totals(db, store.prices).values()
    assert (t.prompt, t.output, t.cache_read) == (2000, 110, 1700)
    assert t.cost_usd == pytest.approx(c.cost_usd)
    doc = stats(store, Settings(tz="UTC"), days=30, now=datetime.fromtimestamp(T0 + 60, UTC)).document()
    assert doc["metrics"]["cache_hit_rate"]["value"] == pytest.approx(1700 / 2000)


def test_the_usage_tab_says_what_a_compaction_iteration_cost_so_its_lines_add_up(tmp_path):
    """The Usage tab itemises the turn's own tokens; the compaction iteration billed with it is a
    line of its own, so the lines add up to the turn's cost."""
    from replayer.fmt import money
    from replayer.tui.tabs import usage_text

    store = Store(open_db(compacting_db(tmp_path / "c.db")), PriceTable.load())
    said = []
    for t in store.turns("c"):
        d = store.turn_detail(t.turn_id)
        assert sum(line.cost_usd or 0.0 for line in d.usage) + d.compaction_cost_usd == pytest.approx(d.cost_usd)
        said.append([line for line in usage_text(d).plain.splitlines() if line.startswith("+ ")])
    whole = store.prices.cost(store.turns("c")[1].usage, "claude-sonnet-4-5")
    compaction = whole - store.prices.breakdown(store.turns("c")[1].usage, "claude-sonnet-4-5").total
    assert compaction > 0
    assert said[0] == [] and [line.split() for line in said[1]] == [["+", "compaction", money(compaction)]]


def test_migrating_keeps_compaction_apart_in_an_older_rollup(tmp_path):
    """m011 on a database whose rollup summed compaction in with the turns: the same rows as the
    writer makes now."""
    path = compacting_db(tmp_path / "old.db")
    db = open_db(path)
    rollup = db.execute("SELECT * FROM rollup ORDER BY conv, bucket, model, batch, band").fetchall()
    assert any(r[-3:] == (100_000, 3000, 90_000) for r in rollup)  # cp_prompt, cp_output, cp_read
    for column in ("cp_prompt", "cp_output", "cp_read"):
        db.execute(f"ALTER TABLE rollup DROP COLUMN {column}")
    # and the compaction iteration counted as an attempt with usage, as it did
    from replayer.store.facts import USAGE_COLUMNS, UsageRow, rollup_row

    for row in db.execute(f"SELECT {USAGE_COLUMNS} FROM usage WHERE part > 0").fetchall():
        r = rollup_row(UsageRow(*row), "")  # (the key fields these UPDATEs name)
        db.execute("UPDATE rollup SET priced = priced + 1 WHERE conv = ? AND bucket = ? AND model = ? AND band = ?",
                   (r.conv, r.bucket, r.model, r.band))
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm011_compaction_sums'")
    db.conn.commit()
    db.conn.close()
    db = open_db(path)
    assert db.execute("SELECT * FROM rollup ORDER BY conv, bucket, model, batch, band").fetchall() == rollup
    (t,) = conversation_totals(db, PriceTable.load()).values()
    assert (t.prompt, t.output, t.cache_read) == (2000, 110, 1700)


def test_a_compaction_iteration_is_no_attempt_of_its_own_in_the_unpriced_counts(tmp_path):
    from datetime import UTC, datetime

    from replayer.config import Settings
    from replayer.metrics import stats

    path = tmp_path / "u.db"
    with Recorder(path) as rec:
        rec.record({"model": "my-model-y", "max_tokens": 10, "messages": [{"role": "user", "content": "q"}]},
                   msg("my-model-y", u(100, 10, iterations=[{"type": "compaction", "input_tokens": 5000,
                                                              "output_tokens": 300}])),
                   conversation_id="c", user_id="ann", started_at=T0)  # fmt: skip
    doc = stats(Store(open_db(path), PriceTable.load()), Settings(tz="UTC"), days=1,
                now=datetime.fromtimestamp(T0 + 60, UTC)).document()
    (day,) = [d for d in doc["users"][0]["days"] if d["attempts"]]
    assert (day["attempts"], day["unpriced_attempts"], day["cost_usd"]) == (1, 1, 0.0)


def test_a_compaction_iteration_of_an_unpriced_model_under_a_priced_turn_is_counted_alike_everywhere(tmp_path):
    """A priced turn whose compaction iteration ran on a model with no price: its cost leaves the
    iteration out, and the list said so (1 unpriced attempt, `≥$…`) while `stats` counted 0
    (the iteration's rollup row counts no attempt) and printed its spend as if whole."""
    from datetime import UTC, datetime

    from replayer.config import Settings
    from replayer.metrics import stats

    path = tmp_path / "u.db"
    with Recorder(path) as rec:
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "q"}]},
                   msg("claude-sonnet-4-5", u(100, 10, iterations=[
                       {"type": "compaction", "model": "my-model-z", "input_tokens": 5000, "output_tokens": 300},
                       {"type": "message", "input_tokens": 100, "output_tokens": 10}])),
                   conversation_id="c", user_id="ann", started_at=T0)  # fmt: skip
    store = Store(open_db(path), PriceTable.load())
    (listed,) = store.conversations(limit=10)
    assert listed.unpriced_attempts == 1 and listed.cost_usd and listed.cost_usd > 0
    doc = stats(store, Settings(tz="UTC"), days=1, now=datetime.fromtimestamp(T0 + 60, UTC)).document()
    (day,) = [d for d in doc["users"][0]["days"] if d["attempts"]]
    assert (day["attempts"], day["unpriced_attempts"]) == (1, 1)
    assert day["cost_usd"] == pytest.approx(listed.cost_usd)
    assert doc["unpriced"] == [{"model": "my-model-z", "attempts": 1}]


def test_the_lists_figures_are_each_attempts_usage_priced_one_by_one(db_path):
    """`list` reads the usage table's parsed counts (no JSON per attempt): the same cost, tokens,
    errors and models as pricing each exported attempt's raw usage gives."""
    import json as _json

    from click.testing import CliRunner

    from replayer.cli import cli
    from replayer.wire import billed_parts, token_count

    prices = PriceTable.load()
    lines = [_json.loads(x) for x in CliRunner().invoke(cli, ["--db", str(db_path), "export"]).output.splitlines()]
    want: dict[str, dict] = {}
    for line in lines:
        w = want.setdefault(line["conversation_id"], {"cost": 0.0, "unpriced": 0, "prompt": 0, "output": 0,
                                                      "read": 0, "errors": 0, "models": []})  # fmt: skip
        usage, model = line.get("usage"), line.get("model")
        if line.get("error"):
            w["errors"] += 1
        if model and model not in w["models"]:
            w["models"].append(model)
        if not usage:
            continue
        cost = prices.cost(usage, model)
        if cost is None:
            w["unpriced"] += 1  # left out of the sum, and counted
        else:
            w["cost"] += cost
        w["prompt"] += prompt_tokens(usage)
        w["output"] += token_count(usage, "output_tokens")
        w["read"] += token_count(usage, "cache_read_input_tokens")
        assert billed_parts(usage)  # (compaction iterations are priced by prices.cost itself)
    got = {c.conversation_id: c for c in Store(open_db(db_path), prices).conversations(limit=100)}
    assert got.keys() == want.keys()
    for cid, w in want.items():
        c = got[cid]
        assert (c.input_tokens, c.output_tokens, c.cache_read_tokens, c.errors, c.models) == (
            w["prompt"], w["output"], w["read"], w["errors"], w["models"]), cid  # fmt: skip
        assert c.unpriced_attempts == w["unpriced"], cid
        assert c.cost_usd == pytest.approx(w["cost"], rel=1e-12, abs=1e-15), cid


def test_cost_over_is_over_and_cost_at_least_takes_the_figure_itself(tmp_path):
    """`cost>0.5` is "costing over $0.50" (the help's words): a conversation that cost exactly
    $0.50 passed it, and `cost>0` kept conversations that cost $0.0000 (a failed call, a call of
    no tokens). `cost>=0.5` is that or more. Costs compare as money shows them: three $0.00015
    turns (0.00045000000000000004 as a float sum) are not over $0.00045."""
    from replayer.filters import parse_filter
    from replayer.fmt import money

    path = tmp_path / "eq.db"
    haiku = "claude-haiku-4-5"  # $5 a million output tokens
    with Recorder(path) as rec:
        def turn(conv: str, usage: dict | None, n: int = 1) -> None:
            for i in range(n):
                req = {"model": haiku, "max_tokens": 10, "messages": [{"role": "user", "content": f"{conv} {i}"}]}
                rec.record(req, msg(haiku, usage) if usage else None, conversation_id=conv, started_at=T0 + i,
                           status=200 if usage else 500)  # fmt: skip

        turn("conv_exactly_half", u(0, 100_000))
        turn("conv_just_over", u(0, 100_001))
        turn("conv_failed", None)
        turn("conv_no_tokens", u(0, 0))
        turn("conv_three", u(0, 30), n=3)  # 3 x $0.00015
    store = Store(open_db(path), PriceTable.load())
    cost = {c.conversation_id: c.cost_usd for c in store.conversations(limit=10)}
    assert money(cost["conv_exactly_half"]) == "$0.5000" and cost["conv_failed"] == cost["conv_no_tokens"] == 0

    def kept(text: str) -> set[str]:
        return {c.conversation_id for c in store.conversations(**parse_filter(text), limit=10)}

    assert kept("cost>0.5") == {"conv_just_over"}
    assert kept("cost>=0.5") == {"conv_exactly_half", "conv_just_over"}
    assert kept("cost>0") == {"conv_exactly_half", "conv_just_over", "conv_three"}
    assert kept("cost>0.00045") == {"conv_exactly_half", "conv_just_over"}
    assert kept("cost>=0.00045") == {"conv_exactly_half", "conv_just_over", "conv_three"}
