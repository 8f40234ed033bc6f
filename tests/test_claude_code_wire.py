"""Claude Code's calls, as it sends them (tests/fixtures/claude_code_wire, captured from Claude Code
2.1.197), recorded and read back: threading across its moving cache breakpoint and its
`role: "system"` entries, the account as the user, the session header as a tag that groups a
session's conversations, exact export, and the browser showing system entries and thinking."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import anthropic
import pytest
from conftest import FAKE_KEY, exported
from textual.widgets import Collapsible, DataTable
from tui_data import settle, wait_for

from replayer import Recorder
from replayer.captured import Captured
from replayer.fakeapi import Reply
from replayer.store.agent_ids import SESSION_TAG, metadata_user
from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app
from replayer.tui.conversation import ConversationScreen
from replayer.tui.text_view import TextView

WIRE = Path(__file__).parent / "fixtures" / "claude_code_wire"
SESSION_A = "643e29bb-a6a2-4f4e-a13f-b2d360f7ee20"
SESSION_B = "8844ca06-3ec7-4d66-bb0c-bf7627eb844d"
ACCOUNT = "0c7e5a3f-1b2d-4e6f-8a9b-0c1d2e3f4a5b"


def fixture(name: str) -> dict:
    return json.loads((WIRE / f"{name}.json").read_text())


ALL = sorted(p.stem for p in WIRE.glob("*.json"))


def record_wire(rec: Recorder, names: list[str], t0: float | None = None) -> None:
    """Hand each call to the writer as the proxy does: the body and the headers as they came (the
    key among them), the SSE as answered."""
    t0 = time.time() if t0 is None else t0
    for i, name in enumerate(names):
        call = fixture(name)
        rec._writer.put(
            Captured(
                call_key=name,
                attempt=0,
                t_start=t0 + i,
                endpoint="/v1/messages",
                stream=True,
                request_bytes=call["body"].encode(),
                raw_request_headers=[(k.encode(), v.encode()) for k, v in call["headers"]],
                raw_response_headers=[(b"request-id", f"req_{name}".encode())],
                status=200,
                sse=call["response_sse"].encode(),
                latency_ms=12.5,
            )
        )
    assert rec.flush(30)


@pytest.fixture
def wire_db(db_path):
    with Recorder(db_path) as rec:
        record_wire(rec, ALL)
    return db_path


def conversations(path) -> dict[str, list]:
    """Conversation id -> its turns (as the store lists them)."""
    store = Store(open_db(path, create=False))
    return {c.conversation_id: store.turns(c.conversation_id) for c in store.conversations()}


def first_turn_of(path, name: str) -> str:
    """The conversation that the fixture `name` was recorded into."""
    line = next(e for e in exported(path) if e["request_id"] == f"req_{name}")
    return line["conversation_id"]


def test_fixtures_are_claude_code_shaped():
    """What the rest relies on: the traits issue 15 lists are in the captures."""
    main = json.loads(fixture("a3_main")["body"])
    headers = {k.lower(): v for k, v in fixture("a3_main")["headers"]}
    assert fixture("a3_main")["path"] == "/v1/messages?beta=true" and main["stream"] is True
    assert headers["anthropic-version"] == "2023-06-01" and len(headers["anthropic-beta"].split(",")) >= 8
    assert headers["x-claude-code-session-id"] == SESSION_A
    assert len(main["system"]) == 3 and len(main["tools"]) >= 20
    assert {"thinking", "context_management", "output_config"} <= set(main)
    assert isinstance(main["metadata"]["user_id"], str) and json.loads(main["metadata"]["user_id"])["session_id"]
    assert [m["role"] for m in main["messages"]].count("system") == 1
    # the breakpoint sits on the newest block, and was on the one before in the previous turn
    marked = [i for i, m in enumerate(main["messages"]) if "cache_control" in json.dumps(m)]
    previous = json.loads(fixture("a2_main")["body"])["messages"]
    assert marked == [len(main["messages"]) - 1]
    assert "cache_control" in json.dumps(previous[-1]) and "cache_control" not in json.dumps(main["messages"][3])


def test_main_thread_is_one_conversation_growing_across_the_moving_breakpoint(wire_db):
    main = first_turn_of(wire_db, "a1_main")
    turns = conversations(wire_db)[main]
    assert [first_turn_of(wire_db, n) for n in ("a2_main", "a3_main")] == [main, main]
    sent = [len(json.loads(fixture(n)["body"])["messages"]) for n in ("a1_main", "a2_main", "a3_main")]
    assert [t.context_messages for t in turns] == sent and sent == sorted(set(sent))
    store = Store(open_db(wire_db, create=False))
    for prev, turn in zip(turns, turns[1:], strict=False):
        d = store.turn_detail(turn.turn_id)
        # nothing removed: the message that lost its cache_control is the same message
        assert [c.kind for c in d.changes] == ["added"] * (turn.context_messages - prev.context_messages)
        assert [c.position for c in d.changes] == list(range(prev.context_messages, turn.context_messages))
    # each turn counted the tool_result it brought once (not again when its breakpoint moved on)
    db = sqlite3.connect(wire_db)
    counts = db.execute(
        """SELECT u.tool_results FROM usage u JOIN turns t ON t.rowid = u.turn
           WHERE t.conversation_id = ? ORDER BY u.idx""",
        [main],
    ).fetchall()
    assert [c[0] for c in counts] == [0, 1, 1]


def test_subagent_and_system_entry_at_its_end(wire_db):
    """The subagent's second call ends with a system entry after its tool_result; its first call's
    system entry sits mid-conversation. Both calls are one conversation, the main thread another."""
    sub = first_turn_of(wire_db, "b2_subagent")
    assert first_turn_of(wire_db, "b3_subagent") == sub
    main = first_turn_of(wire_db, "b1_main")
    assert first_turn_of(wire_db, "b4_main") == main != sub
    turns = conversations(wire_db)[sub]
    assert [t.context_messages for t in turns] == [2, 5]
    d = Store(open_db(wire_db, create=False)).turn_detail(turns[1].turn_id)
    assert [(c.kind, c.role) for c in d.changes] == [("added", "assistant"), ("added", "user"), ("added", "system")]


def test_session_tag_groups_title_subagent_and_summary_calls(wire_db):
    store = Store(open_db(wire_db, create=False))
    by_session: dict[str, set[str]] = {}
    for c in store.conversations():
        by_session.setdefault((c.tags or {}).get(SESSION_TAG), set()).add(c.conversation_id)
    assert set(by_session) == {SESSION_A, SESSION_B}
    assert by_session[SESSION_A] == {first_turn_of(wire_db, "a0_title"), first_turn_of(wire_db, "a1_main")}
    assert by_session[SESSION_B] >= {
        first_turn_of(wire_db, "b1_main"),
        first_turn_of(wire_db, "b2_subagent"),
        first_turn_of(wire_db, "b5_compact_summary"),
    }
    assert len(by_session[SESSION_A]) == 2 and len(by_session[SESSION_B]) == 2  # the summary continues main
    # the session id is a tag, never a stored header; the key is nowhere in the database
    for line in exported(wire_db):
        assert set(line["request_headers"]) == {"anthropic-version", "anthropic-beta"}
    raw = Path(wire_db).read_bytes()
    assert FAKE_KEY.encode() not in raw


def test_user_is_the_account_else_the_device(wire_db):
    users = {line["request_id"][4:]: line["user_id"] for line in exported(wire_db)}
    assert {users[n] for n in ALL if n.startswith("a")} == {ACCOUNT}
    device = json.loads(json.loads(fixture("b1_main")["body"])["metadata"]["user_id"])["device_id"]
    assert {users[n] for n in ALL if n.startswith("b")} == {device}  # an API key: account ""
    store = Store(open_db(wire_db, create=False))
    assert {c.user_id for c in store.conversations()} == {ACCOUNT, device}


@pytest.mark.parametrize(
    ("metadata", "user", "session"),
    [
        ({"user_id": "user_789"}, "user_789", None),
        ({"user_id": '{"not": "claude code"}'}, '{"not": "claude code"}', None),
        ({"user_id": "{broken"}, "{broken", None),
        ({"user_id": '{"device_id":"dev","account_uuid":"acc","session_id":"s1"}'}, "acc", "s1"),
        ({"user_id": '{"device_id":"dev","account_uuid":"","session_id":"s1"}'}, "dev", "s1"),
        ({"user_id": 42}, None, None),
        (None, None, None),
    ],
)
def test_metadata_user(metadata, user, session):
    assert metadata_user(metadata) == (user, session)


def test_export_request_is_what_was_sent(wire_db):
    lines = Store(open_db(wire_db, create=False)).export_lines()
    by_id = {}
    for text in lines:
        line = json.loads(text)
        by_id[line["request_id"][4:]] = line
    assert set(by_id) == set(ALL)
    for name in ALL:
        line = by_id[name]
        req = line["request"]
        # as sent (the store keeps JSON canonically, as for every call: equal documents, each
        # cache_control where it was, every unknown field kept)
        assert req == json.loads(fixture(name)["body"])
        assert {"thinking", "output_config", "metadata"} <= set(req)
        assert ("context_management" in req) == (name.endswith("_main") or name == "b5_compact_summary")
        assert line["response"]["content"] and line["stream"] is True
        headers = {k.lower(): v for k, v in fixture(name)["headers"]}
        assert line["request_headers"]["anthropic-beta"] == headers["anthropic-beta"]


def test_session_tag_from_metadata_when_no_header(db_path):
    """A client that sends Claude Code's metadata but not its header (a gateway that drops it)."""
    call = fixture("a0_title")
    with Recorder(db_path) as rec:
        rec.record(call["body"].encode(), response={"role": "assistant", "content": [{"type": "text", "text": "x"}]})
    (conv,) = Store(open_db(db_path, create=False)).conversations()
    assert conv.tags == {SESSION_TAG: SESSION_A} and conv.user_id == ACCOUNT


def test_record_headers_session_tag_and_protocol_only(db_path):
    call = fixture("a0_title")
    headers = dict(call["headers"])
    with Recorder(db_path) as rec, rec.conversation(tags={"env": "dev"}):
        body = json.loads(call["body"])
        body["metadata"] = {"user_id": "user_1"}
        rec.record(body, response={"role": "assistant", "content": []}, headers=headers)
    (conv,) = Store(open_db(db_path, create=False)).conversations()
    assert conv.tags == {"env": "dev", SESSION_TAG: SESSION_A} and conv.user_id == "user_1"
    (line,) = exported(db_path)
    assert set(line["request_headers"]) == {"anthropic-version", "anthropic-beta"}
    assert FAKE_KEY.encode() not in Path(db_path).read_bytes()


def sse_reply(blocks: list[dict], stop: str) -> Reply:
    events = [
        {
            "event": "message_start",
            "data": {
                "type": "message_start",
                "message": {
                    "id": f"msg_{stop}_{len(blocks)}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-opus-4-8",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1},
                },
            },
        }
    ]
    for i, b in enumerate(blocks):
        start = {**b, "input": {}} if b["type"] == "tool_use" else b
        events.append({"event": "content_block_start", "data": {"type": "content_block_start", "index": i,
                                                                 "content_block": start}})  # fmt: skip
        if b["type"] == "tool_use":
            delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
            events.append({"event": "content_block_delta", "data": {"type": "content_block_delta", "index": i,
                                                                     "delta": delta}})  # fmt: skip
        events.append({"event": "content_block_stop", "data": {"type": "content_block_stop", "index": i}})
    events.append({"event": "message_delta", "data": {"type": "message_delta", "delta": {"stop_reason": stop},
                                                      "usage": {"output_tokens": 5}}})  # fmt: skip
    events.append({"event": "message_stop", "data": {"type": "message_stop"}})
    return Reply(sse=events)


def test_middleware_reads_the_session_header(api, db_path):
    """The SDK path: Claude Code's headers and body shape through the real SDK and the middleware
    (the headers arrive as the HTTP library's objects)."""
    first = json.loads(fixture("a1_main")["body"])
    headers = {k: v for k, v in fixture("a1_main")["headers"] if k.lower().startswith(("x-claude", "anthropic-"))}
    thinking = {"type": "thinking", "thinking": "Run ls.", "signature": "sig"}
    tool = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}
    api.enqueue(sse_reply([thinking, tool], "tool_use"), sse_reply([{"type": "text", "text": "a.txt"}], "end_turn"))
    with Recorder(db_path) as rec:
        client = rec.wrap(anthropic.Anthropic(api_key=FAKE_KEY, base_url=api.url, default_headers=headers))
        messages = first["messages"]
        kw = {k: first[k] for k in ("model", "system", "tools", "max_tokens")}
        user = json.loads(first["metadata"]["user_id"])
        del user["session_id"]  # so the tag can only come from the header
        kw["metadata"] = {"user_id": json.dumps(user)}
        with client.messages.create(messages=messages, stream=True, **kw) as stream:
            for _ in stream:
                pass
        # the next turn: the breakpoint moves from the user's text to the tool result
        later = json.loads(json.dumps(messages))
        later[0]["content"][-1].pop("cache_control")
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}
        result["cache_control"] = {"type": "ephemeral"}
        later += [{"role": "assistant", "content": [thinking, tool]}, {"role": "user", "content": [result]}]
        with client.messages.create(messages=later, stream=True, **kw) as stream:
            for _ in stream:
                pass
    (conv,) = Store(open_db(db_path, create=False)).conversations()
    assert conv.turns == 2 and conv.tags == {SESSION_TAG: SESSION_A} and conv.user_id == ACCOUNT
    lines = exported(db_path)
    assert [json.loads(r["body"]) for r in api.received] == [line["request"] for line in lines]
    assert all("x-claude-code-session-id" not in line["request_headers"] for line in lines)


async def test_browser_shows_system_entries_and_thinking(db_path):
    with Recorder(db_path) as rec:
        record_wire(rec, ["a0_title", "a1_main", "a2_main", "a3_main"])
    app = make_app(db_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # the newest: the main thread (the title call came first)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationScreen)
        assert screen.query_one("#turns", DataTable).row_count == 3

        def context() -> str:
            return screen.query_one("#context-body", TextView).text.plain

        assert await wait_for(pilot, lambda: "system entry" in context())
        assert "[1] system entry" in context() and "[1] system —" not in context()
        assert "Available agent types" in context()
        await pilot.press("j")
        await settle(pilot)
        assert await wait_for(pilot, lambda: "[2] assistant" in context())
        text = context()
        assert "thinking" in text and "The user wants a listing; run ls." in text
        assert "removed" not in text  # the breakpoint that moved is no removal
        await pilot.press("j")
        await settle(pilot)
        assert await wait_for(pilot, lambda: "redacted_thinking" in context())
        assert "encrypted" in context() and "cmVkYWN0ZWQ=" not in context()
        await pilot.press("2")  # the last turn's response: thinking folded, then the text
        await settle(pilot)
        assert await wait_for(pilot, lambda: bool(screen.query("#response-body Collapsible")))
        folded = screen.query_one("#response-body Collapsible", Collapsible)
        assert folded.title == "thinking" and folded.collapsed

        def response() -> str:
            return " ".join(str(s.render()) for s in screen.query("#response-body Static"))

        await pilot.press("k")  # the turn before: redacted thinking, then the call
        await settle(pilot)
        assert await wait_for(pilot, lambda: "[redacted thinking]" in response())
        assert "tool_use: Bash" in response()
        await pilot.press("a")  # the whole context: the system entry named as such there too
        await pilot.press("1")
        await settle(pilot)
        assert await wait_for(pilot, lambda: "Whole context" in context())
        assert "[1] system entry" in context()


def test_list_show_stats_read_claude_code_calls(wire_db):
    """Three-block system prompts, 20+ tools, thinking, context_management and output_config: the
    commands read them (the export test shows those fields kept)."""
    from click.testing import CliRunner

    from replayer.cli import cli

    def run(*args: str) -> dict | list:
        result = CliRunner().invoke(cli, ["--db", str(wire_db), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    listed = run("list", "--json")
    assert {c["tags"][SESSION_TAG] for c in listed} == {SESSION_A, SESSION_B}
    assert ACCOUNT in {c["user_id"] for c in listed}
    main = first_turn_of(wire_db, "a1_main")
    # what the user asked, not the <system-reminder> block Claude Code puts before it
    assert {c["conversation_id"]: c["first_message"] for c in listed}[main] == "list the files"
    shown = run("show", main, "--json")
    assert [t["context_messages"] for t in shown["turns"]] == [2, 4, 6]
    assert [t["tool_calls"] for t in shown["turns"]] == [["Bash"], ["Bash"], []]
    stats = run("stats", "--json", "--by", "user")
    assert ACCOUNT in {u["user_id"] for u in stats["users"]}
    assert sum(u["turns"] for u in stats["users"]) == len(ALL)
