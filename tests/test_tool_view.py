"""Tool inputs and results as a person reads them, in the Tools tab and where the Context tab shows
tool_use / tool_result blocks (issue 13, point 22)."""

from __future__ import annotations

import json

from textual.widgets import Static
from tui_data import T0, reply, settle

from replayer import Recorder
from replayer.tui.app import make_app
from replayer.tui.blocks import CUT, value_text
from replayer.tui.text_view import TextView

PATCH = "--- a/parser.py\n+++ b/parser.py\n@@ -1,2 +1,2 @@\n def parse(s):\n-    return s\n+    return s.strip()\n"
SHELL = "collected 3 items\n\ntests/test_parser.py ..F\nFAILED tests/test_parser.py::test_dates\n1 failed, 2 passed"
BIG = "".join(f"line {i}\n" for i in range(2_000))  # longer than CUT
REPORT = {"ok": False, "failed": ["test_dates"], "duration_s": 0.42}


def build(path):
    """A turn that calls two tools (a patch, a long file); the next request brings their results
    back: shell output, and a JSON document in a string."""
    with Recorder(path) as rec:
        msgs = [{"role": "user", "content": "Apply the fix and run the tests"}]
        first = reply("Applying the patch.", tool=("toolu_p", "apply_patch", {"path": "parser.py", "patch": PATCH}))
        first["content"].append({"type": "tool_use", "id": "toolu_w", "name": "write_file",
                                 "input": {"path": "big.txt", "content": BIG}})  # fmt: skip
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 500, "messages": msgs}, first,
                   conversation_id="conv_patch", started_at=T0)  # fmt: skip
        msgs = [*msgs, {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_p", "content": SHELL, "is_error": True},
                    {"type": "tool_result", "tool_use_id": "toolu_w", "content": json.dumps(REPORT)}]}]  # fmt: skip
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 500, "messages": msgs}, reply("Done."),
                   conversation_id="conv_patch", started_at=T0 + 5)  # fmt: skip
    return path


def shown(screen, selector: str) -> str:
    from replayer.tui.text_view import TextView

    widget = screen.query_one(selector)
    return widget.text.plain if isinstance(widget, TextView) else str(screen.query_one(selector, Static).render())


def lines_with_gutter(text: str) -> list[str]:
    return [line.split("│ ", 1)[1] for line in text.splitlines() if "│ " in line]


async def test_tools_tab_shows_strings_as_lines_and_json_pretty(tmp_path):
    app = make_app(build(tmp_path / "t.db"))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "3")
        await settle(pilot)
        tools = shown(app.screen, "#tools-body")
        assert "\\n" not in tools  # no JSON-escaped line breaks anywhere
        assert PATCH.rstrip("\n").splitlines() == lines_with_gutter(tools)[: len(PATCH.splitlines())]
        assert '  "path": "parser.py"' in tools.splitlines()  # the short fields: pretty JSON
        for line in SHELL.splitlines():
            assert line in tools.splitlines()  # the shell output, line by line
        pretty = json.dumps(REPORT, indent=2).splitlines()  # a JSON result in a string: pretty-printed
        at = tools.splitlines().index(pretty[1])
        assert tools.splitlines()[at : at + len(pretty) - 2] == pretty[1:-1]
        assert "ERROR result" in tools
        # the long file is cut, with the way to see it whole
        assert "more characters (press a to show all)" in tools and "line 1999" not in tools
        await pilot.press("a")
        await settle(pilot)
        assert "line 1999" in shown(app.screen, "#tools-body")


async def test_context_tab_shows_tool_blocks_readably(tmp_path):
    app = make_app(build(tmp_path / "t.db"))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "j", "1")
        await settle(pilot)
        assert app.screen.detail.turn.index == 1
        context = app.screen.query_one("#context-body", TextView).text.plain
        assert "\\n" not in context
        assert "tool_use apply_patch  toolu_p" in context and "tool_result for toolu_p (error)" in context
        assert "+    return s.strip()" in lines_with_gutter(context)
        assert "FAILED tests/test_parser.py::test_dates" in context.splitlines()
        assert '  "duration_s": 0.42' in context.splitlines()


def test_values_are_highlighted_json_and_cut():
    text = value_text({"path": "a.py", "limit": 3, "content": BIG})
    assert any(str(span.style).startswith("json.") for span in text.spans)  # highlighted
    assert "more characters (press a to show all)" in text.plain
    assert len(text.plain) < 2 * CUT  # (the gutter adds to each line)
    assert "line 1999" in value_text({"content": BIG}, full=True).plain
    assert value_text("plain words").plain == "plain words"


def test_an_images_base64_is_never_shown_even_whole():
    """A screenshot in a tool result or a user message: its media type and size, not megabytes of
    base64 (the whole context of a long run with images froze the UI for seconds on each key)."""
    from replayer.tui.blocks import block_body

    data = "iVBORw0KGgo" * 20_000
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    for full in (False, True):
        shown = block_body(image, full).plain
        assert data[:100] not in shown and "image/png" in shown and "220,000 characters of base64" in shown
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    assert "https://example.com/a.png" in block_body(url).plain
