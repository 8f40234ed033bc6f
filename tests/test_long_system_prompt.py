"""Turn 0 of an agent with Claude Code's size of system prompt (~15 KB, a short block then a long
one of 300 lines), recorded through the real SDK against the fake API: the Context tab opens on the
first message, the system prompt and the tools after it, at 100 and 160 columns and 32 and 24 rows
(the tab is 4 rows high at 100 x 24)."""

from __future__ import annotations

import pytest
from tui_data import _answered_call, open_first_conversation, settle

from replayer.tui.app import make_app
from replayer.tui.text_view import TextView

RULES = [f"- Rule {i}: read a file before you edit it, and keep each change small." for i in range(1, 301)]
LONG_SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
     "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "# Instructions\n" + "\n".join(RULES), "cache_control": {"type": "ephemeral"}},
]  # fmt: skip
TOOLS = [{"name": name, "description": f"{name}: does what it says.", "input_schema": {"type": "object"}}
         for name in ("Bash", "Read", "Edit", "Grep")]  # fmt: skip
ASKED = "Why does test_parser fail on an empty file?"


@pytest.fixture
def long_prompt_db(api, rec, client, db_path):
    assert len(LONG_SYSTEM[1]["text"]) > 15_000
    messages: list = [{"role": "user", "content": ASKED}]
    with rec.conversation("conv_cc"):
        answer = _answered_call(api, client, LONG_SYSTEM, TOOLS, messages, "Reading it.", ("toolu_cc1", "Read", {}))
        messages += [{"role": "assistant", "content": answer["content"]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_cc1",
                                                   "content": "def parse(text): return text.split()[0]"}]}]  # fmt: skip
        _answered_call(api, client, LONG_SYSTEM, TOOLS, messages, "Fixed.", None)
    assert rec.flush(10)
    return db_path


def on_screen(view: TextView) -> str:
    return "\n".join(view.render_line(y).text for y in range(view.size.height))


@pytest.mark.parametrize("size", [(100, 32), (100, 24), (160, 32), (160, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_turn_0_opens_on_the_first_message(long_prompt_db, size):
    app = make_app(long_prompt_db)
    async with app.run_test(size=size) as pilot:
        screen = await open_first_conversation(pilot)
        await settle(pilot)
        assert screen.detail.turn.index == 0
        view = screen.query_one("#context-body", TextView)
        shown = on_screen(view)
        assert "+ [0] user" in shown and ASKED in shown, shown
        text = view.text.plain  # the system prompt and the tools come after it, as the first line says
        assert text.index(ASKED) < text.index("+ system prompt — 2 blocks") < text.index("+ tools — 4 tools")
        assert "(its system prompt and tools after the messages)" in text



async def test_find_scrolls_to_the_words_as_typed_in_the_system_prompt(long_prompt_db):
    """`Rule 250` is one of 300 rules: the tab shows that one, not the first `Rule` (each word is
    marked wherever it is, but the phrase is where the view goes)."""
    async with make_app(long_prompt_db).run_test(size=(100, 32)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("slash", *"Rule 250", "enter")
        await settle(pilot)
        assert screen.current_turn() == 0
        assert "- Rule 250: read a file" in on_screen(screen.query_one("#context-body", TextView))
