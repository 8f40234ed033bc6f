"""`replayer replay`: an agent answered from a recording (replayer/playback/).

The matcher and the wire format on their own first (cassette lines in, answers out), then the
real thing: agents recorded with `replayer record` against the local fake, the fake stopped,
the same agents replayed through `replayer replay` (the Python SDK in process, the TypeScript
SDK through ANTHROPIC_BASE_URL)."""

from __future__ import annotations

import json

import pytest

from replayer import sse
from replayer.playback.answer import chunks, synthesize
from replayer.playback.matching import Answer, Matcher, Refusal, first_difference, parse_path, without


def request(*texts: str, model: str = "claude-haiku-4-5", **extra) -> dict:
    messages = []
    for i, text in enumerate(texts):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"model": model, "max_tokens": 100, "messages": messages, **extra}


def reply(text: str) -> dict:
    return {"id": f"msg_{abs(hash(text))}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 3}}


_clock = iter(range(10_000))


def line(conv: str, index: int, req: dict, *, response: dict | None = None, status: int | None = 200,
         attempt: int = 0, error: dict | None = None, stream: bool = False, events=None) -> dict:
    """A cassette line (the export line plus events), with a start time in recorded order."""
    return {
        "turn_id": f"turn_{conv}_{index}", "conversation_id": conv, "index": index, "attempt": attempt,
        "started_at": f"2026-12-01T10:00:{next(_clock):05d}Z", "stream": stream, "endpoint": "/v1/messages",
        "request": req, "request_headers": {}, "status": status, "response": response, "error": error,
        "request_id": f"req_{conv}_{index}_{attempt}", "events": events,
    }


def ask(matcher: Matcher, req: dict) -> Answer | Refusal:
    return matcher.answer("/v1/messages", json.dumps(req).encode())


def text_of(answer: Answer | Refusal) -> str:
    assert isinstance(answer, Answer), answer
    assert answer.body is not None
    return json.loads(answer.body)["content"][0]["text"]


# -- matching ---------------------------------------------------------------------------------------


def test_identical_requests_replay_in_recorded_order_and_conversations_keep_their_answers():
    """Two conversations sent the same first request and got different answers; each then went
    on from its own answer. Replayed in another order, each conversation still gets its own
    answers: the identical first requests take the answers in recorded order, and the later
    requests, which hold those answers, match only their own conversation."""
    a0, b0 = request("hello"), request("hello")
    a1 = request("hello", "A says hi", "and?")
    b1 = request("hello", "B says hi", "and?")
    m = Matcher([line("A", 0, a0, response=reply("A says hi")), line("B", 0, b0, response=reply("B says hi")),
                 line("A", 1, a1, response=reply("A again")), line("B", 1, b1, response=reply("B again"))])
    assert text_of(ask(m, request("hello"))) == "A says hi"
    assert text_of(ask(m, request("hello"))) == "B says hi"
    assert text_of(ask(m, b1)) == "B again"  # B's second request first: still B's answer
    assert text_of(ask(m, a1)) == "A again"
    assert m.answered == 4 and m.unserved() == 0 and not m.refusals
    third = ask(m, request("hello"))
    assert isinstance(third, Refusal) and "sent it more times than in the recording" in third.message


def test_json_equal_is_enough_key_order_and_spacing_do_not_matter():
    req = request("hi", stream=False)
    m = Matcher([line("A", 0, req, response=reply("yes"))])
    body = json.dumps(dict(reversed(list(req.items()))), indent=2).encode()
    got = m.answer("/v1/messages", body)
    assert isinstance(got, Answer) and got.status == 200 and got.headers["request-id"] == "req_A_0_0"


def test_recorded_retries_are_skipped_unless_with_errors():
    req = request("busy?")
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    lines = [line("A", 0, req, status=529, response=overloaded, error={"type": "overloaded_error",
                                                                       "message": "Overloaded", "status": 529}),
             line("A", 0, req, status=None, attempt=1, error={"type": "connection_error", "message": "reset",
                                                               "status": None}),
             line("A", 0, req, attempt=2, response=reply("finally"))]
    plain = Matcher(lines)
    assert text_of(ask(plain, req)) == "finally"
    assert plain.unserved() == 0

    errors = Matcher(lines, with_errors=True)
    first, second, third = (ask(errors, req) for _ in range(3))
    assert isinstance(first, Answer) and first.status == 529 and json.loads(first.body or b"") == overloaded
    assert isinstance(second, Answer) and second.status is None  # the connection is dropped again
    assert text_of(third) == "finally"


def test_a_call_that_never_succeeded_replays_its_errors_even_without_with_errors():
    req = request("busy?")
    err = {"type": "rate_limit_error", "message": "slow down", "status": 429}
    m = Matcher([line("A", 0, req, status=429, error=err, attempt=a) for a in range(3)])
    got = [ask(m, req) for _ in range(3)]
    assert [g.status for g in got] == [429, 429, 429]
    assert json.loads(got[0].body or b"")["error"] == {"type": "rate_limit_error", "message": "slow down"}


def test_strict_mismatch_names_the_closest_request_and_the_first_difference():
    tool_turn = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [
        {"role": "user", "content": "read a.py"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "print('hello')"}]}]}
    m = Matcher([line("A", 0, request("other"), response=reply("x")), line("A", 1, tool_turn, response=reply("y"))])
    changed = json.loads(json.dumps(tool_turn))
    changed["messages"][2]["content"][0]["content"] = "print('goodbye')"
    got = ask(m, changed)
    assert isinstance(got, Refusal) and got.status == 400
    first, second = got.message.splitlines()
    assert first == "replayer replay: no recorded request matches this one; closest: conversation A turn 1"
    assert second == ("  first difference: message 2, block 0 (tool_result), content: "
                      "\"print('hello')\" -> \"print('goodbye')\"")
    error = json.loads(got.body)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "message 2, block 0 (tool_result)" in error["error"]["message"]
    assert m.refusals == [got] and m.unserved() == 2


def test_long_strings_are_cut_around_where_they_part():
    old = "x" * 200 + "the old ending of a long system prompt" + "y" * 200
    new = "x" * 200 + "the new ending of a long system prompt" + "y" * 200
    said = first_difference({"system": old}, {"system": new})
    # from 20 characters before the first that differs ("the " is common), 60 of each side
    assert said == f'system: …"{"x" * 16}the old ending of a long system prompt{"y" * 6}"… -> ' \
                   f'…"{"x" * 16}the new ending of a long system prompt{"y" * 6}"…'


def test_loose_serves_the_next_answer_of_the_closest_conversation_and_reports_drift():
    lines = [line("A", 0, request("plan the trip"), response=reply("A0")),
             line("A", 1, request("plan the trip", "A0", "go on"), response=reply("A1")),
             line("B", 0, request("something else entirely"), response=reply("B0"))]
    m = Matcher(lines, loose=True)
    assert text_of(ask(m, request("plan the trip"))) == "A0"
    drifted = ask(m, request("plan the trip", "A0", "go on, faster"))
    assert text_of(drifted) == "A1"
    [drift] = m.drift()
    assert (drift.conversation_id, drift.index) == ("A", 1)
    assert drift.difference == 'message 2, content: "go on" -> "go on, faster"'
    assert not m.refusals


def test_ignore_paths_remove_fields_before_comparing():
    recorded = request("it is 10:00", metadata={"user_id": "session-1"},
                       system=[{"type": "text", "text": "today is Monday"}, {"type": "text", "text": "be brief"}])
    m = Matcher([line("A", 0, recorded, response=reply("ok"))], ignore=["metadata.user_id", "system.0.text"])
    sent = request("it is 10:00", metadata={"user_id": "session-2"},
                   system=[{"type": "text", "text": "today is Tuesday"}, {"type": "text", "text": "be brief"}])
    assert text_of(ask(m, sent)) == "ok"
    strict = Matcher([line("A", 0, recorded, response=reply("ok"))], ignore=["metadata.user_id"])
    refused = ask(strict, sent)
    assert isinstance(refused, Refusal)
    assert 'system block 0, text: "today is Monday" -> "today is Tuesday"' in refused.message


def test_ignore_path_syntax():
    doc = {"messages": [{"content": [{"text": "a", "cache_control": {}}, {"text": "b"}]}, {"content": "c"}]}
    assert without(doc, parse_path("messages.*.content.*.cache_control")) == {
        "messages": [{"content": [{"text": "a"}, {"text": "b"}]}, {"content": "c"}]}
    assert without(doc, parse_path("messages.0")) == {"messages": [None, {"content": "c"}]}
    assert doc["messages"][0]["content"][0] == {"text": "a", "cache_control": {}}  # the original is untouched
    for bad in ("", "a..b", ".a"):
        with pytest.raises(ValueError, match="is not a field path"):
            parse_path(bad)


# -- the wire ---------------------------------------------------------------------------------------

FULL = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Let me see.", "signature": "c2ln"},
        {"type": "text", "text": "Reading it.", "citations": [{"type": "char_location", "cited_text": "x"}]},
        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.py", "lines": [1, 2]}},
        {"type": "a_block_from_the_future", "payload": {"k": 1}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None, "new_top_level_field": True,
    "usage": {"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 4},
}


def test_events_synthesized_from_a_message_build_the_same_message():
    events = synthesize(FULL)
    assert [e["event"] for e in events][:2] == ["message_start", "content_block_start"]
    assert events[-1]["event"] == "message_stop" and all(e["ms"] is None for e in events)
    built = sse.assemble(b"".join(c for _, c in chunks(events)))
    assert built.complete and built.message == FULL and not built.unknown_events


def test_a_stream_that_failed_mid_way_ends_with_its_error_event():
    events = synthesize(FULL, {"type": "overloaded_error", "message": "Overloaded", "status": 200})
    assert events[-1] == {"event": "error", "ms": None,
                          "data": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}
    assert "message_stop" not in [e["event"] for e in events]


def test_chunks_keep_recorded_grouping_and_gaps_scaled_by_speed():
    events = [{"event": "message_start", "data": {"type": "message_start"}, "ms": 100},
              {"event": "ping", "data": {"type": "ping"}, "ms": 100},
              {"event": "content_block_delta", "data": "not json", "ms": 300},
              {"event": None, "data": {"type": "odd"}, "ms": 700}]
    fast = list(chunks(events))
    assert [w for w, _ in fast] == [0.0, 0.0, 0.0]
    assert fast[0][1] == (b'event: message_start\ndata: {"type":"message_start"}\n\n'
                          b'event: ping\ndata: {"type":"ping"}\n\n')
    assert fast[1][1] == b"event: content_block_delta\ndata: not json\n\n"
    assert fast[2][1] == b'data: {"type":"odd"}\n\n'
    assert [w for w, _ in chunks(events, speed=1)] == [0.1, 0.2, 0.4]  # the first: after the attempt started
    assert [w for w, _ in chunks(events, speed=2)] == [0.05, 0.1, 0.2]


# -- the real thing: record with `replayer record`, stop the fake, replay -----------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

from conftest import FAKE_KEY, exported  # noqa: E402

from replayer.fakeapi import FakeAPI, Reply, message_events  # noqa: E402

CLI = [sys.executable, "-m", "replayer.cli"]
TOOLS = [{"name": "read_file", "description": "Read a file.",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
TURNS = 20

AGENT = f"""
    import json, os, sys
    import anthropic

    # a tool loop: odd turns streamed (events printed to the file argv[1]), even turns not;
    # a base URL of its own when $AGENT_BASE_URL is set
    client = anthropic.Anthropic(base_url=os.environ.get("AGENT_BASE_URL") or None,
                                 max_retries=int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    messages = [{{"role": "user", "content": sys.argv[2] if len(sys.argv) > 2 else "read every file"}}]
    seen = open(sys.argv[1], "w")
    RAW = {{"message_start", "content_block_start", "content_block_delta", "content_block_stop",
           "message_delta", "message_stop"}}
    try:
        for turn in range({TURNS + 5}):
            kwargs = dict(model="claude-haiku-4-5", max_tokens=200, tools={TOOLS!r}, messages=messages)
            if turn % 2:
                with client.messages.stream(**kwargs) as stream:
                    for event in stream:
                        if event.type in RAW:
                            seen.write(json.dumps([turn, event.type, event.to_dict().get("delta")]) + "\\n")
                    message = stream.get_final_message()
            else:
                message = client.messages.create(**kwargs)
            messages.append({{"role": "assistant", "content": [b.to_dict() for b in message.content]}})
            if message.stop_reason != "tool_use":
                break
            messages.append({{"role": "user", "content": [
                {{"type": "tool_result", "tool_use_id": b.id, "content": f"contents of {{b.input['path']}}"}}
                for b in message.content if b.type == "tool_use"]}})
    except anthropic.APIStatusError as e:
        print(f"API error {{e.status_code}}: {{e.message}}")
        raise SystemExit(9)
    print(json.dumps([b.to_dict() for b in message.content]))
    print(f"turns: {{turn + 1}}")
"""


def loop_reply(body: dict | None) -> Reply:
    """The fake's side of the tool loop: a tool call per turn (text and tool input long enough
    to stream in several deltas), then a final answer at turn TURNS - 1."""
    body = body or {}
    turn = len(body.get("messages") or []) // 2
    content: list[dict] = [{"type": "text", "text": f"Turn {turn}: let me look at one more file, then decide."}]
    if turn < TURNS - 1:
        content.append({"type": "tool_use", "id": f"toolu_{turn:04d}", "name": "read_file",
                        "input": {"path": f"src/module_{turn}/implementation_file.py"}})
    message = {"id": f"msg_{turn:04d}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
               "content": content, "stop_reason": "tool_use" if turn < TURNS - 1 else "end_turn",
               "stop_sequence": None, "usage": {"input_tokens": 100 + turn, "output_tokens": 20}}
    if body.get("stream"):
        return Reply(sse=message_events(message), headers={"request-id": f"req_{turn:04d}"})
    return Reply(body=message, headers={"request-id": f"req_{turn:04d}"})


def replayer(db: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--db", str(db), *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **(env or {})})


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith("replayer"), proc.stderr
    return lines[-1]


def write_agent(tmp_path: Path) -> Path:
    path = tmp_path / "agent.py"
    path.write_text(textwrap.dedent(AGENT))
    return path


def record_loop(api: FakeAPI, folder: Path, *args: str) -> tuple[Path, str, Path, str, str]:
    """The tool loop recorded with `replayer record` against the fake, then the fake stopped:
    (db, run id, agent, the agent's output when recorded, the events its streams gave it)."""
    agent = write_agent(folder)
    db = folder.resolve() / "rec.db"
    seen = folder / "seen-recorded.jsonl"
    proc = replayer(db, "record", "--", sys.executable, str(agent), str(seen), *args,
                    env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY, "HOME": str(folder),
                         "XDG_DATA_HOME": str(folder / "data")}, cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"turns: {TURNS}\n"), proc.stdout
    run = last_line(proc).rsplit("(run ", 1)[1].rstrip(")")
    api.stop()
    return db, run, agent, proc.stdout, seen.read_text()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 20-turn tool loop, half of it streamed, recorded once for the module's replays (which
    only read it)."""
    with FakeAPI(loop_reply) as api:
        got = record_loop(api, tmp_path_factory.mktemp("recorded"))
        assert len(api.received) == TURNS
        return got


DEAD = "http://127.0.0.1:9"
"""Where the fake was: stopped. Nothing may try to reach an upstream."""


def test_a_recorded_tool_loop_replays_offline_to_the_same_output(recorded, tmp_path):
    """Recorded through the proxy, replayed through the middleware: the agent's client has a base
    URL of its own (the dead upstream), and the boot sends its calls to the replay server."""
    db, run, agent, output, seen = recorded
    proc = replayer(db, "replay", run, "--", sys.executable, str(agent), str(tmp_path / "seen-replayed.jsonl"),
                    env={"ANTHROPIC_BASE_URL": DEAD, "AGENT_BASE_URL": DEAD, "ANTHROPIC_API_KEY": FAKE_KEY},
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == output
    conversation = exported(db)[0]["conversation_id"]
    assert last_line(proc) == (f"replayer replay: answered {TURNS} calls ({TURNS // 2} streams) from run {run} "
                               "(1 conversation); no mismatch; no drift; the command exited 0")
    # streams event for event: the SDK sees the same events, deltas and order as when recorded
    replayed = (tmp_path / "seen-replayed.jsonl").read_text()
    assert replayed == seen and seen.count("content_block_delta") > 3 * TURNS // 2
    # and by conversation id (a prefix will do), the same, with no key in the environment
    again = replayer(db, "replay", conversation[:12], "--", sys.executable, str(agent), os.devnull,
                     env={"ANTHROPIC_BASE_URL": DEAD})
    assert again.returncode == 0 and again.stdout == output, again.stderr


def test_strict_mismatch_gives_the_agent_a_400_and_the_user_the_first_difference(recorded, tmp_path):
    db, run, agent, _output, _seen = recorded
    proc = replayer(db, "replay", run, "--", sys.executable, str(agent), os.devnull, "read every file twice",
                    env={"ANTHROPIC_BASE_URL": DEAD})
    assert proc.returncode == 9, proc.stderr  # the agent's own exit code: it failed
    assert proc.stdout.startswith("API error 400: ") and "no recorded request matches" in proc.stdout
    conversation = exported(db)[0]["conversation_id"]
    assert proc.stderr.splitlines() == [
        f"replayer replay: no recorded request matches this one; closest: conversation {conversation} turn 0",
        '  first difference: message 0, content: "read every file" -> "read every file twice"',
        f"replayer replay: answered 0 calls from run {run} (1 conversation); 1 mismatch refused; no drift; "
        f"{TURNS} recorded calls not asked for; the command exited 9",
    ]


def test_a_strict_mismatch_fails_the_replay_even_when_the_agent_exits_0(recorded, tmp_path):
    db, run, _agent, _output, _seen = recorded
    script = tmp_path / "shrug.py"
    script.write_text(textwrap.dedent("""
        import anthropic
        try:
            anthropic.Anthropic().messages.create(model="claude-haiku-4-5", max_tokens=5,
                                                  messages=[{"role": "user", "content": "never recorded"}])
        except anthropic.BadRequestError as e:
            print("the agent shrugs:", e.status_code)
    """))
    proc = replayer(db, "replay", run, "--", sys.executable, str(script), env={"ANTHROPIC_BASE_URL": DEAD})
    assert proc.stdout == "the agent shrugs: 400\n"
    assert proc.returncode == 1, proc.stderr
    assert last_line(proc).endswith("1 mismatch refused; no drift; 20 recorded calls not asked for; "
                                    "the command exited 0; exit 1: a strict mismatch fails the replay")


def test_loose_answers_from_the_same_place_and_reports_the_drift(recorded, tmp_path):
    db, run, agent, output, _seen = recorded
    proc = replayer(db, "replay", run, "--loose", "--", sys.executable, str(agent), os.devnull,
                    "read every file twice", env={"ANTHROPIC_BASE_URL": DEAD})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == output  # every answer the recorded one, turn by turn
    conversation = exported(db)[0]["conversation_id"]
    drift = proc.stderr.splitlines()[:-1]
    assert len(drift) == TURNS
    assert drift[0] == (f"replayer replay: drift: conversation {conversation} turn 0 was answered though the "
                        'request differs: message 0, content: "read every file" -> "read every file twice"')
    assert drift[7].startswith(f"replayer replay: drift: conversation {conversation} turn 7 was answered")
    assert last_line(proc) == (f"replayer replay: answered {TURNS} calls ({TURNS // 2} streams) from run {run} "
                               f"(1 conversation); no mismatch; {TURNS} calls drifted (loose); the command exited 0")


def test_ignore_leaves_a_field_out_of_the_comparison(recorded, tmp_path):
    db, run, agent, output, _seen = recorded
    proc = replayer(db, "replay", run, "--ignore", "messages.0.content", "--", sys.executable, str(agent),
                    os.devnull, "read every file, it is 10:42 now", env={"ANTHROPIC_BASE_URL": DEAD})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == output
    assert "no mismatch; no drift" in last_line(proc)


def test_a_cassette_file_is_a_source(recorded, tmp_path):
    from replayer.store.export import cassette_lines
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    db, run, agent, output, seen = recorded
    cassette = tmp_path / "loop.jsonl"
    lines = list(cassette_lines(Store(open_db(db, create=False)), run_id=run))
    cassette.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert all(line["events"] for line in lines if line["stream"])
    # no database at all: the file is the whole recording (paced by its recorded times, 100x faster)
    proc = replayer(tmp_path / "none.db", "replay", str(cassette), "--speed", "100", "--", sys.executable, str(agent),
                    str(tmp_path / "seen.jsonl"), env={"ANTHROPIC_BASE_URL": DEAD})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == output and (tmp_path / "seen.jsonl").read_text() == seen
    assert f"from {cassette};" in last_line(proc)
    assert not (tmp_path / "none.db").exists()


def test_a_bad_source_is_one_line_and_exit_2(recorded, tmp_path):
    db, _run, agent, _output, _seen = recorded
    not_a_cassette = tmp_path / "notes.jsonl"
    not_a_cassette.write_text('{"hello": 1}\n')
    cases = {
        "conv_nope": f"SOURCE conv_nope: no conversation, run or cassette file by that name in {db}; give a "
                     "conversation id (replayer list), a run id (printed by replayer record; replayer list --run ID)"
                     " or a cassette file (replayer export --cassette)",
        str(tmp_path / "gone.jsonl"): f"SOURCE {tmp_path / 'gone.jsonl'}: no such file; give a conversation id",
        str(not_a_cassette): f"{not_a_cassette} line 1 is not a cassette line (no request): give a conversation id",
    }
    for source, said in cases.items():
        proc = replayer(db, "replay", source, "--", sys.executable, str(agent), os.devnull)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(f"replayer: {said}"), proc.stderr
        assert "Traceback" not in proc.stderr and not proc.stdout
    slow = replayer(db, "replay", "conv_nope", "--speed", "0", "--", sys.executable, str(agent))
    assert slow.returncode == 2 and slow.stderr == (
        "replayer: --speed 0 is not a speed: give a number above 0 (1 = as recorded, 2 = twice as fast)\n")
    bad = replayer(db, "replay", "conv_nope", "--ignore", "a..b", "--", sys.executable, str(agent))
    assert bad.returncode == 2 and bad.stderr.startswith("replayer: --ignore 'a..b' is not a field path"), bad.stderr
    no_db = replayer(tmp_path / "nothing.db", "replay", "conv_x", "--", sys.executable, str(agent))
    assert no_db.returncode == 2 and "there is no database at" in no_db.stderr, no_db.stderr


def test_with_errors_replays_recorded_retries(api, tmp_path):
    """Turn 3 was first answered 529 (overloaded) and the SDK retried. By default the replay
    answers with the success at once (an agent that never retries gets through); with
    --with-errors the 529 comes first again, and only an agent that retries gets through."""
    failed: list[int] = []

    def overloaded_once(body: dict | None) -> Reply:
        if len((body or {}).get("messages") or []) // 2 == 3 and not failed:
            failed.append(3)
            return Reply(status=529, body={"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})
        return loop_reply(body)

    api.responder = overloaded_once
    db, run, agent, output, _seen = record_loop(api, tmp_path)
    assert [line["status"] for line in exported(db)].count(529) == 1
    env = {"ANTHROPIC_BASE_URL": DEAD}
    never_retries = replayer(db, "replay", run, "--", sys.executable, str(agent), os.devnull, "read every file", "0",
                             env=env)
    assert never_retries.returncode == 0 and never_retries.stdout == output, never_retries.stderr
    assert f"answered {TURNS} calls" in last_line(never_retries)

    fails = replayer(db, "replay", run, "--with-errors", "--", sys.executable, str(agent), os.devnull,
                     "read every file", "0", env=env)
    assert fails.returncode == 9, fails.stderr
    assert fails.stdout.startswith("API error 529: ") and "'overloaded_error'" in fails.stdout
    retries = replayer(db, "replay", run, "--with-errors", "--", sys.executable, str(agent), os.devnull, env=env)
    assert retries.returncode == 0 and retries.stdout == output, retries.stderr
    assert f"answered {TURNS + 1} calls" in last_line(retries) and "no mismatch" in last_line(retries)


def test_a_typescript_agent_replays_through_the_base_url(api, tmp_path):
    """The official TypeScript SDK's streaming tool loop (tests/ts), recorded through the proxy,
    replayed with the fake stopped: the same messages built, event for event, the same exit code."""
    from test_record_any import message, node_agent

    replies = [
        message(1, [{"type": "text", "text": "Let me read the file first, it should not take long."},
                    {"type": "tool_use", "id": "toolu_ts1", "name": "read_file", "input": {"path": "README.md"}}],
                "tool_use"),
        message(2, [{"type": "text", "text": "README.md says hello, and a few other things besides."}],
                "end_turn"),
    ]
    api.enqueue(*(Reply(sse=message_events(m)) for m in replies))
    db = tmp_path.resolve() / "ts.db"
    recorded = replayer(db, "record", "--", *node_agent(), "5",
                        env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY})
    assert recorded.returncode == 5, recorded.stderr
    run = last_line(recorded).rsplit("(run ", 1)[1].rstrip(")")
    api.stop()
    replayed = replayer(db, "replay", run, "--", *node_agent(), "5", env={"ANTHROPIC_BASE_URL": DEAD})
    assert replayed.returncode == 5, replayed.stderr
    assert replayed.stdout == recorded.stdout and len(replayed.stdout.splitlines()) == 2
    assert last_line(replayed) == (f"replayer replay: answered 2 calls (2 streams) from run {run} (1 conversation); "
                                   "no mismatch; no drift; the command exited 5")


# -- the decision seam: Answer, Refusal, GoLive ------------------------------------------------------


class LiveWhenUnmatched:
    """A trivial live policy: the recording answers what it can; anything else goes live with
    one edit (a system prompt), recorded in a conversation of its own."""

    live = True

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher

    def decide(self, endpoint, body, headers):
        from replayer.playback.server import GoLive

        got = self.matcher.answer(endpoint, body)
        if isinstance(got, Answer):
            return got
        edited = dict(json.loads(body), system="You are the forked agent.")
        return GoLive(json.dumps(edited).encode(), "conv_forked", {"fork_of": "A"})


def test_the_server_answers_refuses_or_goes_live_as_the_player_decides(api):
    import anthropic

    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    known = request("from the recording")
    lines = [line("A", 0, known, response=reply("recorded answer"))]
    records: list = []

    offline = run_in_background(ReplayServer(RecordingPlayer(Matcher(lines)), api.url))
    live_server = ReplayServer(LiveWhenUnmatched(Matcher(lines)), api.url, records.append)
    live = run_in_background(live_server)
    try:
        sdk = anthropic.Anthropic(base_url=offline.url, api_key=FAKE_KEY, max_retries=0)
        assert sdk.messages.create(**known).content[0].text == "recorded answer"
        with pytest.raises(anthropic.BadRequestError, match="no recorded request matches"):
            sdk.messages.create(**request("never recorded"))
        with pytest.raises(anthropic.BadRequestError, match="is not in the recording"):
            sdk.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
        assert api.received == []  # offline: nothing reached the upstream

        sdk = anthropic.Anthropic(base_url=live.url, api_key=FAKE_KEY, max_retries=0)
        assert sdk.messages.create(**known).content[0].text == "recorded answer"
        assert api.received == []
        forked = sdk.messages.create(**request("never recorded"))
        assert forked.content[0].text == "reply 1 to 1 messages"  # the fake's own answer
        assert sdk.messages.count_tokens(model="claude-haiku-4-5",
                                         messages=[{"role": "user", "content": "hi"}]).input_tokens > 0
    finally:
        offline.stop()
        live.stop()
    sent = [json.loads(r["body"]) for r in api.received]
    assert sent[0] == dict(request("never recorded"), system="You are the forked agent.")
    assert api.received[1]["path"].startswith("/v1/messages/count_tokens")
    assert live_server.live_calls == 1
    [record] = [r.captured() for r in records]  # only the Messages call that went live is recorded
    assert record.ctx.conversation_id == "conv_forked" and record.ctx.tags == {"fork_of": "A"}
    assert json.loads(record.request_bytes) == sent[0] and record.status == 200


def test_a_recorded_dropped_connection_is_dropped_again_with_errors():
    """An attempt that got no answer (the connection failed) is replayed as one: the SDK sees a
    connection error, retries, and gets the answer that followed."""
    import anthropic

    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    req = request("hello?")
    lines = [line("A", 0, req, status=None, error={"type": "connection_error", "message": "reset", "status": None}),
             line("A", 0, req, attempt=1, response=reply("after the drop"))]
    matcher = Matcher(lines, with_errors=True)
    server = run_in_background(ReplayServer(RecordingPlayer(matcher), DEAD))
    try:
        once = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=0)
        with pytest.raises(anthropic.APIConnectionError):
            once.messages.create(**req)
        matcher = Matcher(lines, with_errors=True)
        server.proxy.player = RecordingPlayer(matcher)  # type: ignore[attr-defined]
        retrying = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=1)
        assert retrying.messages.create(**req).content[0].text == "after the drop"
        assert matcher.answered == 2
    finally:
        server.stop()
