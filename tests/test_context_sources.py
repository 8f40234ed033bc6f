"""Where the context comes from: each added block's size in tokens (an estimate from the usage)
in the Context tab, and `/` inside a conversation to find text across its turns (issue 13,
point 23)."""

from __future__ import annotations

import json
import re

import pytest
from textual.widgets import DataTable, Input, TabbedContent
from tui_data import build_db, open_second_conversation, settle

from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app
from replayer.tui.blocks import added_tokens
from replayer.tui.text_view import TextView
from replayer.wire import prompt_tokens


@pytest.fixture
def db(tmp_path):
    return build_db(tmp_path / "tui.db")


def details(db):
    store = Store(open_db(db, create=False))
    timeline = store.turns("conv_tools")
    return timeline, [store.turn_detail(t.turn_id, timeline) for t in timeline]


def test_the_prompts_growth_is_split_across_the_added_blocks_by_size(db):
    timeline, ds = details(db)
    d = ds[1]  # turn 1 adds the assistant's reply (text + tool_use) and the tool_result
    assert [c.kind for c in d.changes] == ["added", "added"]
    growth = prompt_tokens(d.turn.usage) - prompt_tokens(timeline[0].usage)
    est = added_tokens(d, prompt_tokens(timeline[0].usage))
    assert sum(sum(v) for v in est.values()) == pytest.approx(growth)
    reply_blocks = d.changes[0].message["content"]
    sizes = [len(json.dumps(b, ensure_ascii=False)) for b in reply_blocks]
    assert len(est[0]) == len(reply_blocks) == 2
    assert est[0][0] / est[0][1] == pytest.approx(sizes[0] / sizes[1])  # by size


def test_after_a_removal_the_whole_prompt_is_shared(db):
    timeline, ds = details(db)
    d = ds[2]  # after the compaction: two messages left, others came
    assert "removed" in [c.kind for c in d.changes]
    est = added_tokens(d, prompt_tokens(timeline[1].usage))
    total = sum(sum(v) for v in est.values())
    assert 0 < total < prompt_tokens(d.turn.usage)
    assert added_tokens(d.model_copy(update={"turn": d.turn.model_copy(update={"usage": None})}), None) == {}


def approx(label: str) -> float:
    number, unit = re.fullmatch(r"~([\d.]+)([kM]?) tok", label).groups()
    return float(number) * {"": 1, "k": 1e3, "M": 1e6}[unit]


async def test_context_tab_says_each_added_blocks_tokens(db):
    app = make_app(db)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_second_conversation(pilot)
        await pilot.press("j")
        await settle(pilot)
        screen = app.screen
        text = screen.query_one("#context-body", TextView).text.plain
        heads = re.findall(r"^\+ \[\d+\] \w+ — added  (~[\d.]+[kM]? tok)$", text, re.M)
        assert len(heads) == 2
        growth = prompt_tokens(screen.timeline[1].usage) - prompt_tokens(screen.timeline[0].usage)
        assert sum(approx(h) for h in heads) == pytest.approx(growth, rel=0.1)
        assert re.search(r"^tool_use run_tests  toolu_1  ~\d+ tok$", text, re.M)  # a block of a message
        assert "estimate" in text


async def test_find_across_turns_jumps_and_highlights(db):
    app = make_app(db)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_second_conversation(pilot)
        screen = app.screen
        await pilot.press("4", "slash")  # from another tab: a match opens the Context tab
        assert screen.query_one("#conv-find", Input).has_focus
        await pilot.press(*"test_dates", "enter")
        await settle(pilot)
        # the failing test's name came back in turn 0's tool result, so it entered turn 1's context
        assert screen.current_turn() == 1 and screen.detail.turn.index == 1
        assert screen.query_one("#tabs", TabbedContent).active == "context"
        body = screen.query_one("#context-body", TextView).text
        marked = [body.plain[s.start : s.end] for s in body.spans if "on yellow" in str(s.style)]
        assert "test_dates" in marked
        assert "match 1 of 1" in screen.sub_title
        await pilot.press("escape")  # clears the find, stays in the conversation
        await settle(pilot)
        assert app.screen is screen and not screen.query_one("#conv-find", Input).display
        assert not [s for s in screen.query_one("#context-body", TextView).text.spans if "on yellow" in str(s.style)]


async def test_n_and_shift_n_step_through_every_turn_that_holds_it(db):
    app = make_app(db)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_second_conversation(pilot)
        screen = app.screen
        with app.store() as store:
            hits = store.find_in_conversation("conv_tools", "parser")
        last = len(screen.timeline) - 1
        want = sorted({(t + 1 if w == "response" and t < last else t) for t, w in hits})
        assert len(want) > 2
        await pilot.press("slash", *"parser", "enter")
        await settle(pilot)
        seen = [screen.current_turn()]
        for _ in range(len(want) - 1):
            await pilot.press("n")
            await settle(pilot)
            seen.append(screen.current_turn())
        assert seen == want
        await pilot.press("n")  # wraps round
        await settle(pilot)
        assert screen.current_turn() == want[0]
        await pilot.press("N")
        await settle(pilot)
        assert screen.current_turn() == want[-1]
        assert screen.query_one("#turns", DataTable).has_focus


async def test_find_nothing_says_so(db):
    app = make_app(db)
    async with app.run_test(size=(160, 45)) as pilot:
        await open_second_conversation(pilot)
        await pilot.press("slash", *"zebra", "enter")
        await settle(pilot)
        assert app.screen.current_turn() == 0
        assert any("no turn holds 'zebra'" in str(n.message) for n in app._notifications)
