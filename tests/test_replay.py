"""`replayer replay` end to end: agents recorded with `replayer record` against the local fake,
the fake stopped, the same agents replayed (the Python SDK through the boot's redirect and
through ANTHROPIC_BASE_URL, a Vertex client, threads, the TypeScript SDK). The matcher, the wire
and the server's decisions on their own are tests/test_replay_matching.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FAKE_KEY, exported

from replayer.fakeapi import FakeAPI, Reply, message_events

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
    db, run, agent, output, seen = recorded
    cassette = tmp_path / "loop.jsonl"
    exporting = replayer(db, "export", "--cassette", "--run", run, "-o", str(cassette))
    assert exporting.returncode == 0, exporting.stderr
    lines = [json.loads(x) for x in cassette.read_text().splitlines()]
    assert len(lines) == TURNS and all(line["events"] for line in lines if line["stream"])
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
    assert fails.stdout.startswith("API error 529: ") and "overloaded_error" in fails.stdout
    # calls counted as calls, as `record` counts them: turn 3 was asked for (its 529 answered),
    # its retry was not; the turns after it were never asked for
    assert last_line(fails) == (f"replayer replay: answered 4 calls (1 stream) from run {run} (1 conversation); "
                                f"no mismatch; no drift; {TURNS - 4} recorded calls not asked for; 1 recorded retry "
                                "not asked for; the command exited 9")
    retries = replayer(db, "replay", run, "--with-errors", "--", sys.executable, str(agent), os.devnull, env=env)
    assert retries.returncode == 0 and retries.stdout == output, retries.stderr
    assert last_line(retries) == (f"replayer replay: answered {TURNS} calls ({TURNS + 1} attempts, {TURNS // 2} "
                                  f"streams) from run {run} (1 conversation); no mismatch; no drift; the command "
                                  "exited 0")


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


def test_a_vertex_client_in_a_python_child_is_answered_too(api, tmp_path):
    """A Vertex client sends another body (the model is in its path) to another path: recorded by
    the middleware as sent, replayed through the redirect, which makes the call what that client
    sends first."""
    script = tmp_path / "vertex.py"
    script.write_text(textwrap.dedent("""
        import os
        import anthropic

        client = anthropic.AnthropicVertex(region="us-east5", project_id="proj", access_token="not-a-token",
                                           base_url=os.environ["VERTEX_URL"], max_retries=0)
        messages = [{"role": "user", "content": "hello from vertex"}]
        first = client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=messages)
        messages += [{"role": "assistant", "content": first.content[0].text}, {"role": "user", "content": "more"}]
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=20, messages=messages) as stream:
            second = stream.get_final_message()
        print(first.content[0].text, "|", second.content[0].text)
    """))
    db = tmp_path.resolve() / "vertex.db"
    recorded = replayer(db, "record", "--", sys.executable, str(script), env={"VERTEX_URL": api.url})
    assert recorded.returncode == 0, recorded.stderr
    assert all(":rawPredict" in r["path"] or ":streamRawPredict" in r["path"] for r in api.received)
    run = last_line(recorded).rsplit("(run ", 1)[1].rstrip(")")
    api.stop()
    replayed = replayer(db, "replay", run, "--", sys.executable, str(script), env={"VERTEX_URL": DEAD})
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout == "reply 1 to 1 messages | reply 2 to 3 messages\n"
    assert "answered 2 calls (1 stream)" in last_line(replayed) and "no mismatch" in last_line(replayed)


def test_concurrent_conversations_with_identical_starts_keep_their_own_answers(api, tmp_path):
    """Three threads start the same conversation at once; the fake answers each differently
    (its answers are numbered as they come) and each goes on from its answer. Replayed, the
    threads may arrive in another order, but every conversation replays whole: no answer is
    taken by another conversation, so nothing mismatches."""
    script = tmp_path / "threads.py"
    script.write_text(textwrap.dedent("""
        import threading
        import anthropic

        client = anthropic.Anthropic(max_retries=0)
        done = []

        def converse():
            messages = [{"role": "user", "content": "start"}]
            for _ in range(4):
                reply = client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=messages)
                messages += [{"role": "assistant", "content": reply.content[0].text},
                             {"role": "user", "content": "go on"}]
            done.append(" / ".join(m["content"] for m in messages if m["role"] == "assistant"))

        threads = [threading.Thread(target=converse) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("\\n".join(sorted(done)))
    """))
    db = tmp_path.resolve() / "threads.db"
    recorded = replayer(db, "record", "--", sys.executable, str(script),
                        env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY})
    assert recorded.returncode == 0, recorded.stderr
    assert len(set(recorded.stdout.splitlines())) == 3  # three different conversations
    run = last_line(recorded).rsplit("(run ", 1)[1].rstrip(")")
    api.stop()
    replayed = replayer(db, "replay", run, "--", sys.executable, str(script), env={"ANTHROPIC_BASE_URL": DEAD})
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert "answered 12 calls" in last_line(replayed) and "no mismatch" in last_line(replayed)


WAIT_READER = """
    import json, anthropic
    # a client that reads the wait itself (as Claude Code reads retry-after): it prints what the
    # recorded 529 now says
    client = anthropic.Anthropic(max_retries=0)
    try:
        client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    except anthropic.APIStatusError as e:
        print(json.dumps({k: e.response.headers.get(k) for k in ("retry-after", "retry-after-ms")}))
"""


def test_a_recorded_retry_after_is_scaled_in_both_headers_a_client_may_read(tmp_path):
    """A 529 recorded with `retry-after: 1` (no retry-after-ms, as the API may send it) and then
    retried. Replayed as fast as possible, the 529 said `retry-after-ms: 0.001` but still
    `retry-after: 1`, and Claude Code, which reads retry-after, waited the whole recorded second.
    Both now say the wait as paced: 0 s as fast as possible, 2 s at --speed 0.5 (twice as long)."""
    import anthropic

    from replayer import Recorder

    db = tmp_path / "wait.db"
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    message = {"id": "msg_w", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
               "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn", "stop_sequence": None,
               "usage": {"input_tokens": 5, "output_tokens": 1}}
    with FakeAPI() as api, Recorder(db) as rec:
        api.enqueue(Reply(status=529, body=overloaded, headers={"retry-after": "1"}), Reply(body=message))
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=1))
        with rec.conversation("conv_wait"):
            client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        assert rec.flush(10)
    assert [line["response_headers"].get("retry-after") for line in exported(db)] == ["1", None]
    agent = tmp_path / "reader.py"
    agent.write_text(textwrap.dedent(WAIT_READER))
    env = {"ANTHROPIC_BASE_URL": DEAD, "ANTHROPIC_API_KEY": FAKE_KEY}
    for speed, said in (([], {"retry-after": "0", "retry-after-ms": "0.001"}),
                        (["--speed", "0.5"], {"retry-after": "2", "retry-after-ms": "2000"})):
        proc = replayer(db, "replay", "conv_wait", "--with-errors", *speed, "--", sys.executable, str(agent), env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == said, (speed, proc.stdout)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream-imported-without-events"])
def test_a_tool_input_is_replayed_in_the_key_order_the_model_wrote(api, tmp_path, stream):
    """The model writes a tool's input keys in no sorted order; an agent that sends the input's
    JSON back as its tool result sends that order. Replayed (a plain call, or a stream imported
    from an export: no events to rebuild it from, only the stored reply), the agent gets the input
    as written, so its next request is the recorded one and is answered; the export shows the
    same order."""
    tool_input = {"query": "x", "limit": 3, "filters": {"zone": "eu", "age": 7}}

    def reply(body: dict | None) -> Reply:
        last = (body or {})["messages"][-1]["content"]
        done = isinstance(last, list) and last[0].get("type") == "tool_result"
        content = ([{"type": "text", "text": "done"}] if done else
                   [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": tool_input}])
        message = {"id": f"msg_{len(body['messages'])}", "type": "message", "role": "assistant",
                   "model": "claude-haiku-4-5", "content": content, "stop_reason": "end_turn" if done else "tool_use",
                   "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 5}}
        return Reply(sse=message_events(message)) if body.get("stream") else Reply(body=message)

    script = tmp_path / "order.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import anthropic

        client = anthropic.Anthropic(max_retries=0)
        tools = [{{"name": "search", "input_schema": {{"type": "object"}}}}]
        messages = [{{"role": "user", "content": "search"}}]

        def call():
            kwargs = dict(model="claude-haiku-4-5", max_tokens=50, tools=tools, messages=messages)
            if {stream}:
                with client.messages.stream(**kwargs) as s:
                    return s.get_final_message()
            return client.messages.create(**kwargs)

        use = call().content[0]
        print(json.dumps(use.input))
        messages += [{{"role": "assistant", "content": [use.model_dump(exclude_none=True)]}},
                     {{"role": "user", "content": [{{"type": "tool_result", "tool_use_id": use.id,
                                                    "content": json.dumps(use.input)}}]}}]
        print(call().content[0].text)
    """))
    api.responder = reply
    db = tmp_path.resolve() / "order.db"
    recorded = replayer(db, "record", "--", sys.executable, str(script),
                        env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY})
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout == json.dumps(tool_input) + "\ndone\n"
    run = last_line(recorded).rsplit("(run ", 1)[1].rstrip(")")
    api.stop()
    if stream:  # the stream's events stay behind: what replays it is its stored message
        export = tmp_path / "order.jsonl"
        export.write_text(replayer(db, "export").stdout)
        db = tmp_path.resolve() / "imported.db"
        assert replayer(db, "import", "export", str(export)).returncode == 0
    replayed = replayer(db, "replay", run, "--", sys.executable, str(script), env={"ANTHROPIC_BASE_URL": DEAD})
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert last_line(replayed) == (
        f"replayer replay: answered 2 calls {'(2 streams, 2 from the recorded message (no events kept)) ' * stream}"
        f"from run {run} (1 conversation); no mismatch; no drift; the command exited 0")
    first, second = exported(db)
    assert json.dumps(first["response"]["content"][0]["input"]) == json.dumps(tool_input)
    assert json.dumps(second["request"]["messages"][1]["content"][0]["input"]) == json.dumps(tool_input)
