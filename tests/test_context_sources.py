"""Where the context comes from: each added block's size in tokens (an estimate from the usage)
in the Context tab, the system prompt and the tools among what entered (on the first turn, and
where they changed), and `/` inside a conversation to find text across its turns (issue 13,
point 23)."""

from __future__ import annotations

import json
import re

import pytest
from textual.widgets import DataTable, Input, TabbedContent
from tui_data import (
    AGENT_SYSTEM,
    AGENT_TOOLS,
    AGENT_TOOLS_LATER,
    build_db,
    open_first_conversation,
    open_second_conversation,
    record_tool_agent,
    settle,
)

from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app
from replayer.tui.blocks import TOOL_LINE, added_tokens
from replayer.tui.tabs import context_text
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
        assert any("1 turn holds 'test_dates'" in str(n.message) for n in app._notifications)
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
        assert any(f"{len(want)} turns hold 'parser'" in str(n.message) for n in app._notifications)
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


# -- the system prompt and the tools: what entered besides the messages ----------------------------


@pytest.fixture
def agent_db(api, rec, client, db_path):
    """An agent's tool loop recorded through the real SDK (tui_data.record_tool_agent): a system
    prompt of two blocks and three tools; the tool list changes at turn 2, the system prompt at 3."""
    record_tool_agent(api, rec, client)
    return db_path


def agent_details(path):
    store = Store(open_db(path, create=False))
    timeline = store.turns("conv_agent")
    return timeline, [store.turn_detail(t.turn_id, timeline) for t in timeline]


def shares(text: str, head: str) -> list[float]:
    """The token estimates on the lines that start with `head` (a regular expression)."""
    return [approx(m) for m in re.findall(rf"^{head}.*?  (~[\d.]+[kM]? tok)", text, re.M)]


def test_first_turn_lists_the_system_prompt_and_each_tool_with_their_shares(agent_db):
    timeline, ds = agent_details(agent_db)
    d = ds[0]
    text = context_text(d, False, None).plain
    prompt = prompt_tokens(timeline[0].usage)  # turn 0's Δ prompt: all of it entered here
    system = shares(text, r"\+ system prompt — 2 blocks")
    blocks = shares(text, "text")
    tools = shares(text, r"\+ tools — 3 tools")
    each_tool = [shares(text, t["name"]) for t in AGENT_TOOLS]
    message = shares(text, r"\+ \[0\] user — added")
    assert len(system) == 1 and len(blocks) == 2 and len(tools) == 1 and len(message) == 1
    assert [len(s) for s in each_tool] == [1, 1, 1]
    for block in AGENT_SYSTEM:
        assert block["text"] in text
    for tool in AGENT_TOOLS:
        assert f"{tool['name']}  ~" in text and tool["description"] in text
    assert '"properties"' not in text and "a shows their schemas" in text  # a row each, the schemas under `a`
    # the parts' shares add up to the prompt (each shown rounded to a token)
    assert sum(blocks) == pytest.approx(system[0], abs=2)
    assert sum(s[0] for s in each_tool) == pytest.approx(tools[0], abs=2)
    assert system[0] + tools[0] + message[0] == pytest.approx(prompt, abs=3)
    est = added_tokens(d, None)
    assert sum(sum(v) for v in est.values()) == pytest.approx(prompt)
    assert [len(v) for v in est.values()] == [2, 3, 1]  # the system's blocks, the tools, the message
    # the system prompt and the tools after the messages (a long prompt or 40 tools put the first
    # message off the screen), as the first line says
    assert text.index("+ [0] user") < text.index("+ system prompt") < text.index("+ tools")
    assert text.startswith("First turn: the whole context entered here (its system prompt and tools after the "
                           "messages).")


def test_a_changed_tool_list_lists_the_tools_added_redefined_and_removed(agent_db):
    timeline, ds = agent_details(agent_db)
    d = ds[2]
    text = context_text(d, False, prompt_tokens(timeline[1].usage)).plain
    assert re.search(r"^~ tool list changed: 1 added, 1 redefined, 1 removed \(1 the same\)  ~\d+ tok", text, re.M)
    new, redefined = AGENT_TOOLS_LATER[2], AGENT_TOOLS_LATER[1]
    assert re.search(rf"^\+ search_code  ~\d+ tok  {re.escape(new['description'])}$", text, re.M)
    assert re.search(r"^~ run_tests  ~\d+ tok  Run the test suite \(or one file of it, or one test", text, re.M)
    assert "- write_file  removed" in text
    assert "read_file" not in text.split("+ [")[0]  # the same as before: it did not enter again
    # the redefined tool's description is longer than its line: cut, the rest under `a`
    line = next(x for x in text.split("\n") if x.startswith("~ run_tests"))
    assert line.endswith("…") and len(line) <= TOOL_LINE + 2 and redefined["description"] not in text
    # what entered: the new and the redefined tool, each with its share
    assert len(added_tokens(d, prompt_tokens(timeline[1].usage))[0]) == 2


def test_a_system_prompt_that_grew_lists_its_new_block_with_the_prompts_growth(agent_db):
    timeline, ds = agent_details(agent_db)
    d = ds[3]
    text = context_text(d, False, prompt_tokens(timeline[2].usage)).plain
    assert re.search(r"^~ system prompt changed: 1 block added  ~\d+ tok\nYou have 2 turns left\.$", text, re.M)
    assert AGENT_SYSTEM[0]["text"] not in text  # the blocks it had before did not enter again
    growth = prompt_tokens(d.turn.usage) - prompt_tokens(timeline[2].usage)
    est = added_tokens(d, prompt_tokens(timeline[2].usage))
    assert sum(sum(v) for v in est.values()) == pytest.approx(growth)  # nothing left: the growth, shared


def test_a_match_past_a_tools_cut_shows_the_tool_whole_and_marked(agent_db):
    timeline, ds = agent_details(agent_db)
    pattern = re.compile("last 200 lines")
    text = context_text(ds[2], False, prompt_tokens(timeline[1].usage), pattern)
    assert AGENT_TOOLS_LATER[1]["description"] in text.plain
    marked = [text.plain[s.start : s.end] for s in text.spans if "on yellow" in str(s.style)]
    assert marked == ["last 200 lines"]


async def test_whole_context_shows_the_tools_and_turn_0_lists_them(agent_db):
    app = make_app(agent_db)
    async with app.run_test(size=(100, 45)) as pilot:
        await open_first_conversation(pilot)
        screen = app.screen
        assert screen.detail.turn.index == 0
        view = screen.query_one("#context-body", TextView)
        text = view.text.plain
        assert "+ tools — 3 tools" in text and all(f"{t['name']}  ~" in text for t in AGENT_TOOLS)
        await pilot.press("a")
        await settle(pilot)
        text = view.text.plain
        assert "tools: 3 tools" in text
        for tool in AGENT_TOOLS:
            assert f"\n{tool['name']}\n{tool['description']}\n{{\n" in text  # whole, the schema pretty-printed
        # pretty-printed in the order it was sent (the store keeps the wire's key order)
        assert '      "type": "string",\n      "description": "from the root"\n' in text
        assert text.index("system\n") < text.index("tools: 3 tools") < text.index("[0] user")
