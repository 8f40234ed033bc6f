"""The Context tab's whole context (key `a`) on a 1,000-turn conversation: headless timings.

Builds (once, then reuses with --db) one conversation of 1,000 turns through Recorder.record: a
long system prompt, then a tool call and its ~3 KB result per turn, so the last turn's context
is about 3 million characters. Then, with Textual's headless driver, it opens the conversation,
goes to the last turn and times: `a` (the whole context on screen), end, pgup, home, pgdn, and
`a` again (back to what entered the turn). A timing stops once the screen has been composited
after the key's effect. The baseline: the same text drawn whole as a Static draws it (what each
key press cost before the Context tab drew only what is on screen).

Run: python bench/whole_context.py [--turns N] [--db PATH] [--width N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import SYSTEM, TOOLS, tool_result_text  # noqa: E402


def build(path: str, turns: int) -> None:
    from replayer import Recorder

    system = SYSTEM * 3
    msgs: list[dict] = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
    t0 = 1_764_000_000.0
    with Recorder(path) as rec:
        for i in range(turns):
            last = i == turns - 1
            content: list[dict] = [{"type": "text", "text": f"Step {i}: reading src/mod_{i}.py next."}]
            if not last:
                content.append({"type": "tool_use", "id": f"toolu_{i:08d}", "name": "read_file",
                                "input": {"path": f"src/mod_{i}.py"}})
            response = {"id": f"msg_{i:08d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                        "content": content, "stop_reason": "end_turn" if last else "tool_use",
                        "stop_sequence": None,
                        "usage": {"input_tokens": 50, "output_tokens": 40, "cache_creation_input_tokens": 900,
                                  "cache_read_input_tokens": 1000 * i}}
            rec.record({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": system, "tools": TOOLS,
                        "messages": msgs}, response, conversation_id="conv_long", started_at=t0 + i,
                       latency_ms=900.0)
            if i % 50 == 49:
                rec.flush()
            msgs = [*msgs, {"role": "assistant", "content": content}]
            if not last:
                msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i:08d}",
                                                          "content": tool_result_text(i, 3000)}]})


async def measure(path: str, width: int) -> dict[str, float]:
    from textual import events

    from replayer.tui.app import make_app
    from replayer.tui.conversation import ConversationScreen

    app = make_app(path)

    async def until(cond, timeout=120.0):
        t = time.perf_counter()
        while not cond():
            await asyncio.sleep(0.001)
            if time.perf_counter() - t > timeout:
                raise TimeoutError
        app.screen._on_timer_update()  # composite the screen now, as the next frame would

    def key(name: str, char: str | None = None) -> None:
        event = events.Key(name, char if char is not None else (name if len(name) == 1 else None))
        event.set_sender(app)
        app._driver.send_message(event)

    async def timed(label: str, name: str, cond=lambda: True) -> None:
        await asyncio.sleep(0.1)
        t = time.perf_counter()
        key(name)
        await asyncio.sleep(0)
        await until(cond)
        await asyncio.sleep(0)  # the key's own handler, when it runs after a first frame
        app.screen._on_timer_update()
        out[label] = time.perf_counter() - t

    out: dict[str, float] = {}
    async with app.run_test(size=(width, 40)):
        await until(lambda: app.screen.query("DataTable") and app.screen.query_one("DataTable").row_count > 0)
        key("enter")
        await until(lambda: isinstance(app.screen, ConversationScreen) and app.screen.detail is not None)
        screen = app.screen
        key("G")
        await until(lambda: screen.detail.turn.index == len(screen.timeline) - 1 and "context" in screen._drawn)
        # what scrolls the Context tab: the view itself (before: a VerticalScroll around a Static)
        (screen.query("#context-scroll") or screen.query("#context-body")).first().focus()
        await timed("a (whole context)", "a", lambda: screen.show_all and "context" in screen._drawn)
        await timed("end", "end")
        await timed("pageup", "pageup")
        await timed("home", "home")
        await timed("pagedown", "pagedown")
        await timed("a (back)", "a", lambda: not screen.show_all and "context" in screen._drawn)
        # the baseline: the same whole context drawn as a Static draws its text, whole, at that width
        from rich.text import Text
        from textual.content import Content
        from textual.visual import Visual

        from replayer.tui.render import context_text

        view = screen.query_one("#context-body")
        text = context_text(screen.detail, True, None)
        width = view.scrollable_content_region.width or 80
        t = time.perf_counter()
        Visual.to_strips(view, Content.from_rich_text(text, app.console), width, None, view.visual_style)
        out["baseline: Static's draw"] = time.perf_counter() - t
        assert isinstance(text, Text)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--turns", type=int, default=1000)
    p.add_argument("--db", help="reuse (or build once into) this database")
    p.add_argument("--width", type=int, default=160)
    args = p.parse_args()
    path = args.db or os.path.join(tempfile.mkdtemp(), "whole.db")
    if not os.path.exists(path):
        t = time.perf_counter()
        build(path, args.turns)
        print(f"built {args.turns} turns in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    out = asyncio.run(measure(path, args.width))
    for label, seconds in out.items():
        print(f"{label:24} {seconds:7.3f} s")
    base = out["baseline: Static's draw"]
    print(f"SUMMARY whole context on screen in {out['a (whole context)']:.3f} s, "
          f"{base / out['a (whole context)']:.0f}x faster than drawing it whole ({base:.2f} s)")


if __name__ == "__main__":
    main()
