"""A small database with fixed times and ids, for the terminal app's tests and snapshots, and the
Pilot helpers those tests share (settle, wait for a condition, jump through the palette)."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from datetime import datetime

from replayer import Recorder

T0 = 1_764_000_000.0  # a fixed clock, so what the screens show doesn't depend on the day


def reply(
    text: str, *, tool: tuple[str, str, dict] | None = None, usage: dict | None = None, model="claude-sonnet-4-5"
):
    content = [{"type": "text", "text": text}]
    if tool:
        content.append({"type": "tool_use", "id": tool[0], "name": tool[1], "input": tool[2]})
    return {
        "id": f"msg_{zlib.crc32(text.encode()):010d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": usage
        or {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


def build_db(path):
    """Two conversations: a tool loop with a failing tool and a compaction, and a short chat."""
    with Recorder(path) as rec:
        system = "You are a coding agent."
        msgs = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
        script = [
            ("Let me run the tests.", ("toolu_1", "run_tests", {"path": "tests"}),
             ("FAILED test_parser.py::test_dates", True)),
            ("Reading the parser.", ("toolu_2", "read_file", {"path": "parser.py"}),
             ("def parse(s):\n    return s", False)),
            ("Fixing it.", ("toolu_3", "write_file", {"path": "parser.py"}), ("ok " + "x" * 1_000_000, False)),
            ("Done: the date format was wrong.", None, None),
        ]
        for i, (text, tool, result) in enumerate(script):
            usage = {"input_tokens": 50 + i, "output_tokens": 30, "cache_creation_input_tokens": 200,
                     "cache_read_input_tokens": 1000 * i}
            rec.record({"model": "claude-sonnet-4-5", "max_tokens": 500, "system": system, "messages": msgs},
                       reply(text, tool=tool, usage=usage), conversation_id="conv_tools", user_id="alice",
                       started_at=T0 + i * 10, latency_ms=800 + i)
            msgs = [*msgs, {"role": "assistant", "content": reply(text, tool=tool)["content"]}]
            if tool:
                msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool[0],
                                                          "content": result[0],
                                                          **({"is_error": True} if result[1] else {})}]})
            if i == 1:  # compaction: the agent drops the first exchange from its history
                msgs = [msgs[0], *msgs[3:]]
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 50,
                    "messages": [{"role": "user", "content": "Where is my invoice?"}]},
                   reply("It was emailed to you.", model="claude-haiku-4-5"), conversation_id="conv_chat",
                   user_id="bob", started_at=T0 + 100, latency_ms=300)
    return path


def new_yorks_day_edge(rec: Recorder) -> None:
    """Two conversations late on 4 December 2026 in New York (03:30 and 04:59 UTC on the 5th),
    one in its afternoon of the 5th (15:00 UTC): where the zone a date is read in decides."""
    for cid, at in (("late", "2026-12-05T03:30:00+00:00"), ("later", "2026-12-05T04:59:00+00:00"),
                    ("next", "2026-12-05T15:00:00+00:00")):  # fmt: skip
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": cid}]},
                   reply(f"ok {cid}", model="claude-haiku-4-5"), conversation_id=cid,
                   started_at=datetime.fromisoformat(at))  # fmt: skip
    assert rec.flush(10)


def record_cut_streams(api, rec: Recorder, client, begun: list) -> None:
    """Conversation conv_cut through the real SDK against the fake `api`: turn 0 a stream cut by an
    `event: error` (overloaded) after the events `begun`, then retried and answered ("Read it.");
    turn 1 cut the same way and not sent again."""
    import anthropic

    from replayer.fakeapi import Reply, message_events

    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    cut = Reply(sse=[*begun, {"event": "error", "data": overloaded}])
    api.enqueue(cut, Reply(sse=message_events(reply("Read it."))), cut)
    messages = [{"role": "user", "content": "go"}]
    with rec.conversation("conv_cut"):
        for then in ("sent again", "answered", "given up"):  # turn 0: cut, then a retry; turn 1: cut
            try:
                for _event in client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages,
                                                     stream=True):  # fmt: skip
                    pass
            except anthropic.APIStatusError:
                assert then != "answered"
            if then == "answered":
                messages = [*messages, {"role": "assistant", "content": "Read it."},
                            {"role": "user", "content": "and?"}]  # fmt: skip
    assert rec.flush(10)


def record_lost_connections(api, rec: Recorder) -> None:
    """Conversation conv_lost through the real SDK against the fake `api` (no retries), a turn
    each: 0 a stream whose connection drops after its first words (`Reading the pars`); 1 one
    that drops after its message_start; 2 one that drops after its 200, before any event; 3 one
    cut by an `event: error` (overloaded) right after its message_start; 4 a call whose connection
    is refused (no answer at all)."""
    import anthropic

    from replayer.fakeapi import Reply, message_events

    events = message_events(reply("Reading the parser"))
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    api.enqueue(Reply(sse=events, drop_after_events=4), Reply(sse=events, drop_after_events=1),
                Reply(sse=events, drop_after_events=0), Reply(sse=[events[0], {"event": "error", "data": overloaded}]))
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key="sk-ant-test-NOT-A-REAL-KEY", max_retries=0))
    refused = rec.wrap(anthropic.Anthropic(base_url="http://127.0.0.1:9", api_key="sk-ant-test-NOT-A-REAL-KEY",
                                           max_retries=0))  # fmt: skip (port 9, discard: nothing listens)
    messages: list = []
    with rec.conversation("conv_lost"):
        for i, sdk in enumerate([client] * 4 + [refused]):
            messages = [*messages, {"role": "user", "content": f"go {i}"}]
            try:
                for _event in sdk.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages,
                                                  stream=True):  # fmt: skip
                    pass
            except (anthropic.APIConnectionError, anthropic.APIStatusError):
                pass
            messages = [*messages, {"role": "assistant", "content": "?"}]
    assert rec.flush(10)


async def settle(pilot) -> None:
    """Let every worker finish and the screen catch up. A worker cancelled by a newer one of its
    exclusive group (a poll every 0.2 s on a busy machine, say) has finished too: its wait()
    raises WorkerCancelled, which must not fail the test nor stop the wait for the others."""
    from textual.worker import WorkerCancelled

    for _ in range(3):
        for worker in list(pilot.app.workers):
            try:
                await worker.wait()
            except WorkerCancelled:
                pass
        await pilot.pause()


async def wait_for(pilot, check, seconds: float = 5.0) -> bool:
    """Let the app run until `check()` holds (False if it never does within `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
        await pilot.pause()
    return check()


def palette_shows(app, text: str) -> bool:
    """The command palette is open and its highlighted hit (the one enter picks) mentions `text`:
    the search for everything typed has answered."""
    from textual.command import Command, CommandList, CommandPalette

    if not isinstance(app.screen, CommandPalette):
        return False
    hits = app.screen.query_one(CommandList)
    if hits.highlighted is None:
        return False
    option = hits.get_option_at_index(hits.highlighted)
    return isinstance(option, Command) and text in str(option.hit.text)


async def palette_jump(pilot, text: str) -> None:
    """Open the command palette, type `text`, and once its hit shows, take it."""
    await pilot.press("ctrl+p")
    await settle(pilot)
    for ch in text:
        await pilot.press(ch)
    await wait_for(pilot, lambda: palette_shows(pilot.app, text))
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)


async def open_second_conversation(pilot) -> None:
    """From the list, once loaded, open the second row (conv_tools in build_db)."""
    await settle(pilot)
    await pilot.press("j", "enter")
    await settle(pilot)


async def open_from_list(pilot, key: str, screen: type):
    """From the list, once loaded, press `key`; the screen it opens (a `screen`)."""
    await settle(pilot)
    await pilot.press(key)
    await settle(pilot)
    assert isinstance(pilot.app.screen, screen)
    return pilot.app.screen


async def open_first_conversation(pilot):
    """From the list, once loaded, open the first row; the conversation screen it opens."""
    from replayer.tui.conversation import ConversationScreen

    return await open_from_list(pilot, "enter", ConversationScreen)


async def first_response_tab(path) -> list[str]:
    """The lines the Response tab of the first conversation's first turn shows (the app on `path`,
    160 columns)."""
    from replayer.tui.app import make_app

    async with make_app(path).run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("2")
        await settle(pilot)
        await wait_for(pilot, lambda: bool(screen.query("#response-body Static")))  # (it may fill after the settle)
        return [str(s.render()) for s in screen.query("#response-body Static")]


async def open_dashboard(pilot):
    """From the list, once loaded, `d`: the dashboard."""
    from replayer.tui.dashboard import DashboardScreen

    return await open_from_list(pilot, "d", DashboardScreen)


async def press_rerun_in_first_conversation(pilot) -> None:
    """From the list, once loaded: open the first conversation and press r on its first turn."""
    await open_first_conversation(pilot)
    await pilot.press("r")
    await settle(pilot)


async def open_rerun_editor(pilot, turn: int = 1):
    """From the list, once loaded: open the rerun editor on turn `turn` of conv_tools (build_db)."""
    from replayer.tui.rerun import RerunScreen

    await open_second_conversation(pilot)
    for _ in range(turn):
        await pilot.press("j")
    await settle(pilot)
    await pilot.press("r")
    await settle(pilot)
    assert isinstance(pilot.app.screen, RerunScreen)
    return pilot.app.screen


def answer_reruns(api, text: str = "Again.") -> None:
    """The fake API answers count_tokens, and each rerun sample with `text` from the model asked."""
    from replayer.fakeapi import Reply

    api.responder = lambda body: (
        Reply(body={"input_tokens": 10}) if "max_tokens" not in body else Reply(body=reply(text, model=body["model"]))
    )


async def send_rerun(pilot) -> None:
    """From the rerun editor: send (ctrl+j), confirm (y), and wait for the compare screen."""
    await pilot.press("ctrl+j")
    await settle(pilot)
    await pilot.press("y")
    for _ in range(3):
        await settle(pilot)


def numbers_cut(table, numbers) -> list[str]:
    """The number columns of `table` (by key) that its visible right edge cuts: a number cut by
    the edge reads as another number ($0.003 for $0.0033)."""
    edge, x, cut = table.scrollable_content_region.width, 0, []
    for key, col in table.columns.items():
        width = col.get_render_width(table)
        if key.value in numbers and x < edge < x + width:
            cut.append(key.value)
        x += width
    return cut


def width_cutting_a_number(table, numbers) -> int:
    """A width for `table` whose right edge would cut its last number column (by key) through the
    middle, as its columns are now: a table given it (not the terminal) must fit them again."""
    x, edge = 0, None
    for key, col in table.columns.items():
        width = col.get_render_width(table)
        if key.value in numbers and width > 2:
            edge = x + width // 2
        x += width
    assert edge is not None, "no number column"
    return edge + (table.styles.scrollbar_size_vertical if table.show_vertical_scrollbar else 0)


async def narrowed_through_a_number(pilot, table, numbers) -> None:
    """Narrow `table` alone (its terminal keeps its size) so that its edge falls in its last
    number column, and check that its columns are fitted again: no number cut."""
    assert await wait_for(pilot, lambda: not numbers_cut(table, numbers)), numbers_cut(table, numbers)
    # no horizontal scrollbar comes with it (its coming can bring the vertical one's watch into
    # play): the table's own resize is then the one thing that says its edge moved
    table.styles.overflow_x = "hidden"
    table.styles.min_width = 0  # (the turn list's keeps its columns' least)
    table.styles.width = width_cutting_a_number(table, numbers)
    await settle(pilot)
    assert await wait_for(pilot, lambda: table.size.width == table.styles.width.value)
    assert await wait_for(pilot, lambda: not numbers_cut(table, numbers)), numbers_cut(table, numbers)


AGENT_SYSTEM = [
    {"type": "text", "text": "You are a coding agent working in a Python repository. Make the smallest change "
                             "that fixes the task, and say what you changed."},
    {"type": "text", "text": "Run the tests before and after each change; never edit a test to make it pass.",
     "cache_control": {"type": "ephemeral"}},
]
AGENT_TOOLS = [
    {"name": "read_file", "description": "Read a file of the repository and return its text.",
     "input_schema": {"type": "object", "properties": {"path": {"type": "string", "description": "from the root"}},
                      "required": ["path"]}},
    {"name": "run_tests", "description": "Run the test suite (or one file of it) and return pytest's output.",
     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
    {"name": "write_file", "description": "Replace a file's text with new text.",
     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}},
                      "required": ["path", "text"]}},
]
AGENT_TOOLS_LATER = [
    AGENT_TOOLS[0],
    {**AGENT_TOOLS[1], "description": "Run the test suite (or one file of it, or one test by its id) and return "
                                      "pytest's output, last 200 lines."},
    {"name": "search_code", "description": "Find a regular expression in the repository's files.",
     "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]}},
]
"""The tool list from the agent's turn 2 on: read_file as it was, run_tests redefined, write_file
gone and search_code new."""


def record_tool_agent(api, rec: Recorder, client) -> None:
    """Conversation conv_agent through the real SDK against the fake `api`, an agent's tool loop
    with a system prompt of two blocks and three tools (AGENT_SYSTEM, AGENT_TOOLS): turn 0 asks and
    is answered with a call to run_tests; turn 1 carries its result back and is answered with a
    call to read_file; turn 2 carries that back with the tool list changed (AGENT_TOOLS_LATER) and
    is answered with a call to search_code; turn 3 carries that back with a third block added to
    the system prompt, and is answered with text. Each reply's usage says a token for every 4
    characters of the request's system, tools and messages (as the API roughly counts)."""

    calls = [("toolu_a1", "run_tests", {"path": "tests"}, "FAILED tests/test_dates.py::test_iso - ValueError"),
             ("toolu_a2", "read_file", {"path": "dates.py"}, "def parse(s):\n    return datetime.strptime(s, '%d/%m')"),
             ("toolu_a3", "search_code", {"pattern": "strptime"}, "dates.py:2: return datetime.strptime(s, '%d/%m')"),
             None]  # fmt: skip
    system, tools = AGENT_SYSTEM, AGENT_TOOLS
    messages: list = [{"role": "user", "content": "Fix the failing date test."}]
    with rec.conversation("conv_agent"):
        for i, call in enumerate(calls):
            if i == 2:
                tools = AGENT_TOOLS_LATER
            if i == 3:
                system = [*AGENT_SYSTEM, {"type": "text", "text": "You have 2 turns left."}]
            text = "Done: parse now reads ISO dates." if call is None else f"Calling {call[1]}."
            answer = _answered_call(api, client, system, tools, messages, text, call)
            if call is not None:
                messages = [*messages, {"role": "assistant", "content": answer["content"]},
                            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call[0],
                                                          "content": call[3]}]}]  # fmt: skip
    assert rec.flush(10)


def _answered_call(api, client, system, tools, messages: list, text: str, call: tuple | None) -> dict:
    """One call of a tool loop: the fake `api` answers `text` (and `call`'s tool_use when given,
    (id, name, input, ...)) with a prompt-sized usage, and `client` sends it. Returns the answer."""
    from replayer.fakeapi import Reply

    prompt = len(json.dumps({"system": system, "tools": tools, "messages": messages})) // 4
    answer = reply(text, tool=call[:3] if call else None,
                   usage={"input_tokens": prompt, "output_tokens": 20, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0})  # fmt: skip
    api.enqueue(Reply(body=answer))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=500, system=system, tools=tools,
                           messages=messages)  # fmt: skip
    return answer


BIG_SYSTEM = ("You are an operations agent for a payments company. Use the tools to look things up before "
              "you answer; never guess an account's state. Escalate refunds above 500 USD to a human.")
BIG_TOOLS = [
    {"name": f"{verb}_{noun}",
     "description": f"{verb.capitalize()} a {noun.replace('_', ' ')} by its id and return it as JSON, with every "
                    f"field the dashboard shows (status, owner, created and updated times, notes). Fails with "
                    f"not_found for an id that does not exist.",
     "input_schema": {"type": "object", "properties": {"id": {"type": "string", "description": f"the {noun} id"},
                                                       "verbose": {"type": "boolean"}},
                      "required": ["id"]}}
    for verb in ("get", "list", "update", "close", "audit")
    for noun in ("invoice", "refund", "dispute", "payout", "customer", "account", "webhook", "ledger_entry")
]
"""An agent's 40 tools (5 verbs x 8 nouns), each with a description longer than a line."""


def record_big_agent(api, rec: Recorder, refused_port: int) -> None:
    """Conversation conv_ops through the real SDK against the fake `api`: a system prompt, 40
    tools (BIG_TOOLS) sent every turn, a tool loop of three turns (get_refund toolu_ops1, then
    audit_ledger_entry toolu_ops2, then text), and a fourth call to `refused_port` on 127.0.0.1,
    where nothing listens: its connection is refused (no retries)."""
    import anthropic


    calls = [("toolu_ops1", "get_refund", {"id": "re_77"}, '{"id": "re_77", "amount": 640, "status": "pending"}'),
             ("toolu_ops2", "audit_ledger_entry", {"id": "le_9"}, '{"id": "le_9", "balanced": true}'),
             None]  # fmt: skip
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key="sk-ant-test-NOT-A-REAL-KEY", max_retries=0))
    messages: list = [{"role": "user", "content": "Why is refund re_77 still pending?"}]
    with rec.conversation("conv_ops"):
        for call in calls:
            text = "It waits for a human: 640 USD is above the limit." if call is None else f"Calling {call[1]}."
            answer = _answered_call(api, client, BIG_SYSTEM, BIG_TOOLS, messages, text, call)
            messages = [*messages, {"role": "assistant", "content": answer["content"]}]
            if call is not None:
                messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call[0],
                                                              "content": call[3]}]})  # fmt: skip
        messages.append({"role": "user", "content": "Thanks. Escalate it."})
        refused = rec.wrap(anthropic.Anthropic(base_url=f"http://127.0.0.1:{refused_port}",
                                               api_key="sk-ant-test-NOT-A-REAL-KEY", max_retries=0))  # fmt: skip
        try:
            refused.messages.create(model="claude-sonnet-4-5", max_tokens=500, system=BIG_SYSTEM, tools=BIG_TOOLS,
                                    messages=messages)  # fmt: skip
        except anthropic.APIConnectionError:
            pass
    assert rec.flush(10)


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
