"""What a rerun sent against what the original sent: system, tools, messages and parameters
(issue 13, point 24). The diff itself is headless; the compare screen shows it in a tab."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from conftest import FAKE_KEY
from test_rerun import recorded  # noqa: F401 - a fixture
from textual.widgets import Static, TabbedContent
from tui_data import answer_reruns, build_db, open_rerun_editor, send_rerun, settle

from replayer.diffing import REQUEST_SECTIONS, request_diff, request_lines
from replayer.tui.app import make_app
from replayer.tui.compare import CompareScreen

ORIGINAL = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 500,
    "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "read_file", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "Fix the failing test"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file",
                                           "input": {"path": "parser.py"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "def parse(s):\n    return s\n# end"}]},
    ],
}  # fmt: skip


def by_section(diff):
    return {d["section"]: d for d in map(dataclasses.asdict, diff)}


def test_an_identical_request_has_no_changes():
    diff = [dataclasses.asdict(d) for d in request_diff(ORIGINAL, copy.deepcopy(ORIGINAL))]
    assert [d["section"] for d in diff] == list(REQUEST_SECTIONS)
    assert not any(d["changed"] or d["lines"] for d in diff)


def test_each_section_says_what_changed():
    variant = copy.deepcopy(ORIGINAL)
    variant["system"][0]["text"] = "You are a careful coding agent."
    variant["model"] = "claude-haiku-4-5"
    variant["messages"][2]["content"][0]["content"] = "def parse(s):\n    return s.strip()\n# end"
    diff = by_section(request_diff(ORIGINAL, variant))
    assert not diff["tools"]["changed"]
    system = diff["system"]["lines"]
    assert ["-", "You are a coding agent."] in system and ["+", "You are a careful coding agent."] in system
    # the block's cache_control is kept, so it is no change
    assert not any("cache_control" in text for op, text in system if op in "-+")
    messages = diff["messages"]
    assert messages["removed"] == messages["added"] == 1
    assert ["-", "      return s"] in messages["lines"] and ["+", "      return s.strip()"] in messages["lines"]
    assert ["@", "in [2] user"] in messages["lines"]  # where the change is, not line numbers
    params = diff["parameters"]["lines"]
    assert ["-", 'model: "claude-sonnet-4-5"'] in params and ["+", 'model: "claude-haiku-4-5"'] in params
    assert [" ", "max_tokens: 500"] in params


def test_a_trailing_newline_or_a_carriage_return_is_a_change():
    """Enter at the end of the system text, or CRLF for LF in a message, is sent: the diff shows it
    rather than "unchanged"."""
    variant = copy.deepcopy(ORIGINAL)
    variant["system"][0]["text"] += "\n"
    variant["messages"][2]["content"][0]["content"] = "def parse(s):\r\n    return s\n# end"
    diff = by_section(request_diff(ORIGINAL, variant))
    assert diff["system"]["changed"] and ["+", ""] in diff["system"]["lines"]
    assert diff["messages"]["changed"] and ["+", "  def parse(s):␍"] in diff["messages"]["lines"]


def test_tool_inputs_and_results_are_lines_of_text_not_escaped_json():
    lines = request_lines(ORIGINAL)["messages"]
    assert "      return s" in lines  # a line of its own, no literal \n
    assert any('"path": "parser.py"' in line for line in lines)  # pretty JSON: one key a line


def test_added_tools_and_removed_fields_show():
    variant = copy.deepcopy(ORIGINAL)
    variant["tools"].append({"name": "write_file", "input_schema": {"type": "object"}})
    del variant["max_tokens"]
    variant["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    diff = by_section(request_diff(ORIGINAL, variant))
    assert any(op == "+" and '"write_file"' in text for op, text in diff["tools"]["lines"])
    params = diff["parameters"]["lines"]
    assert ["-", "max_tokens: 500"] in params
    assert ["+", 'thinking: {"budget_tokens": 2048, "type": "enabled"}'] in params


@pytest.fixture
def env(api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    answer_reruns(api)
    return api


async def test_compare_screen_shows_the_request_sent(tmp_path, env):
    app = make_app(build_db(tmp_path / "tui.db"))
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        editor.query_one("#rr-system").text = "You are a careful coding agent."
        await send_rerun(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        tabs = compare.query_one("#cmp-tabs", TabbedContent)
        assert "system changed" in str(tabs.get_tab("cmp-request").label)
        await pilot.press("2")
        await settle(pilot)
        assert tabs.active == "cmp-request"
        shown = str(compare.query_one("#cmp-request-body", Static).render())
        assert "- You are a coding agent." in shown and "+ You are a careful coding agent." in shown
        assert "messages  same as the original" in shown and "tools  same as the original" in shown
        await pilot.press("1")
        await settle(pilot)
        assert tabs.active == "cmp-output"


def test_cli_rerun_says_and_returns_what_was_sent(api, db_path, recorded):  # noqa: F811 - the fixture
    from test_rerun import run

    r = run(db_path, recorded, "--set", "max_tokens=64", "--yes", api=api)
    assert r.exit_code == 0, r.output
    assert "sent: changed parameters (-1 +1 lines)" in r.stdout
    r = run(db_path, recorded, "--yes", "--json", api=api)
    doc = json.loads(r.stdout)
    assert [d["section"] for d in doc["request_diff"]] == list(REQUEST_SECTIONS)
    assert not any(d["changed"] for d in doc["request_diff"])  # a plain resend sends what was recorded
    assert "request" not in doc["samples"][0]  # the document stays small: the diff says it
