"""A conversation some of whose attempts have no price, in the conversation list: `replayer list`,
its JSON, the browser's list, its `cost>` filter and its sort by cost read the same lower bound
(`≥$…`) as `show`, `stats` and the conversation screen; `?` only when nothing priced is in it."""

from __future__ import annotations

import json

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from tui_data import settle

from replayer import Recorder
from replayer.cli import cli
from replayer.fakeapi import FakeAPI, Reply, message_events
from replayer.filters import parse_filter
from replayer.fmt import money
from replayer.pricing import PriceTable
from replayer.store.queries import Store
from replayer.store.schema import open_db

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def message(model: str, inp: int, out: int, text: str = "ok") -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """bob's 4 turns through the real SDK against the fake: turn 0 of a model with no price, turn 1
    Haiku ($0.015), turn 2 a stream cut by an overloaded error event then sent again, turn 3 three
    529s. Beside it: one conversation dearer than bob's, one cheaper, one with no price at all."""
    path = tmp_path_factory.mktemp("unpriced") / "bob.db"
    haiku = "claude-haiku-4-5-20251001"
    with FakeAPI() as api, Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
        msgs = [{"role": "user", "content": "hello"}]

        def ask(model: str, reply: dict | None, *replies: Reply, stream: bool = False) -> None:
            api.enqueue(*replies, *([Reply(sse=message_events(reply)) if stream else Reply(body=reply)]
                                    if reply else []))  # fmt: skip
            try:
                got = client.messages.create(model=model, max_tokens=50, messages=msgs, stream=stream)
                for _ in got if stream else ():
                    pass
            except anthropic.APIStatusError:
                assert reply is None  # only the turn given no answer fails
            msgs.extend([{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}])

        with rec.conversation("conv_bob", user_id="bob"):
            ask("my-unpriced-model", message("my-unpriced-model", 1000, 100))
            ask(haiku, message(haiku, 10_000, 1000))  # $0.010 + $0.005
            cut = message_events(message(haiku, 205, 100, "partial answer"))[:4]
            api.enqueue(Reply(sse=[*cut, {"event": "error", "data": OVERLOADED}]))
            try:
                for _ in client.messages.create(model=haiku, max_tokens=50, messages=msgs, stream=True):
                    pass
            except anthropic.APIStatusError:
                pass
            ask(haiku, message(haiku, 205, 100), stream=True)  # sent again: $0.000205 + $0.0005
            ask(haiku, None, *[Reply(status=529, body=OVERLOADED, headers={"retry-after-ms": "1"})] * 3)
        for conv, model, inp in (("conv_dear", haiku, 40_000), ("conv_cheap", haiku, 1000),
                                 ("conv_nothing_priced", "my-unpriced-model", 1000)):  # fmt: skip
            with rec.conversation(conv, user_id="cy"):
                msgs = [{"role": "user", "content": conv}]
                ask(model, message(model, inp, 10))
        assert rec.flush(10)
    return path


def run(db, *args: str) -> str:
    r = CliRunner().invoke(cli, ["--db", str(db), *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_the_list_says_a_cost_that_leaves_unpriced_attempts_out_as_show_and_stats_do(db):
    turns = Store(open_db(db), PriceTable.load()).turns("conv_bob")
    assert [t.cost_usd is None for t in turns] == [True, False, False, False]  # turn 0's model has no price
    known = sum(t.cost_usd or 0.0 for t in turns)
    assert known > 0.015  # Haiku's turn 1 alone: $0.010 + $0.005
    shown_total = next(line for line in run(db, "show", "conv_bob").splitlines() if line.startswith("total "))
    assert shown_total == f"total ≥{money(known)} (1 turn whose model has no price)"
    top = {c["conversation_id"]: c for c in json.loads(run(db, "stats", "--json"))["top_conversations"]}
    assert (top["conv_bob"]["cost_usd"], top["conv_bob"]["unpriced_attempts"]) == (pytest.approx(known), 1)

    listed = {c["conversation_id"]: c for c in json.loads(run(db, "list", "--json"))}
    bob = listed["conv_bob"]
    assert (bob["cost_usd"], bob["unpriced_attempts"]) == (pytest.approx(known, rel=1e-12), 1)
    assert (listed["conv_dear"]["cost_usd"], listed["conv_dear"]["unpriced_attempts"]) == (pytest.approx(0.04005), 0)
    # nothing priced in it: the cost is not known at all (null, `?`), its attempt counted
    assert (listed["conv_nothing_priced"]["cost_usd"], listed["conv_nothing_priced"]["unpriced_attempts"]) == (None, 1)

    table = {line.split()[2]: line for line in run(db, "list").splitlines()[1:]}  # (STARTED is two words)
    assert f"≥{money(known)}" in table["conv_bob"].split()
    assert "?" in table["conv_nothing_priced"].split()
    assert money(listed["conv_dear"]["cost_usd"]) in table["conv_dear"].split()


def test_the_cost_filter_and_sort_read_the_known_spend(db):
    store = Store(open_db(db), PriceTable.load())
    over = store.conversations(**parse_filter("cost>0.01"))
    assert sorted(c.conversation_id for c in over) == ["conv_bob", "conv_dear"]  # bob spent at least $0.0157
    assert [c.conversation_id for c in store.conversations(**parse_filter("cost>0.02"))] == ["conv_dear"]
    descending = [c.conversation_id for c in store.conversations(sort="cost")]
    assert descending == ["conv_dear", "conv_bob", "conv_cheap", "conv_nothing_priced"]  # `?` last either way
    ascending = [c.conversation_id for c in store.conversations(sort="cost", descending=False)]
    assert ascending == ["conv_cheap", "conv_bob", "conv_dear", "conv_nothing_priced"]
    assert store.conversation_order(sort="cost") == descending  # where the list's self-refresh places rows


async def test_the_browsers_list_shows_filters_and_sorts_the_lower_bound(db):
    from textual.widgets import DataTable

    from replayer.tui.app import make_app

    known = sum(t.cost_usd or 0.0 for t in Store(open_db(db), PriceTable.load()).turns("conv_bob"))
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#conversations", DataTable)
        costs = {str(table.get_row_at(i)[1]): str(table.get_row_at(i)[4]) for i in range(table.row_count)}
        assert costs["conv_bob"] == f"≥{money(known)}" and costs["conv_nothing_priced"] == "?"
        await pilot.press(*"ssss")  # Started -> Conversation -> User -> Turns -> Cost, the dearest first
        await settle(pilot)
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == [
            "conv_dear", "conv_bob", "conv_cheap", "conv_nothing_priced"]  # fmt: skip
        await pilot.press("slash", *"cost>0.01", "enter")
        await settle(pilot)
        assert [str(table.get_row_at(i)[1]) for i in range(table.row_count)] == ["conv_dear", "conv_bob"]
