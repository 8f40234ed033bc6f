"""`replayer import claude-code`: transcripts from a real Claude Code run (and hand-made ones for
what a short run can't produce) imported through the CLI, then read back through `export`,
`list` and `show`; a call also recorded on the wire; rerun refused in the CLI and the browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from test_otlp_import import stderr_on_a_terminal
from tui_data import press_rerun_in_first_conversation

from replayer import Recorder, replay
from replayer.cli import cli
from replayer.fakeapi import Reply
from replayer.store.queries import Store
from replayer.store.schema import open_db

FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
REAL = FIXTURES / "projects"
PROJECT = REAL / "-home-user-project"
MAIN = "72e9ed59-f494-4b10-888d-85dff1ac9d11"  # a subagent, then /compact, then a parallel tool loop
LOOP = "2b85f5cb-9ab7-4089-88c2-73c04e67955b"  # a parallel tool loop
HANDMADE = FIXTURES / "handmade"


def run(db, *args):
    return CliRunner().invoke(cli, ["--db", str(db), *map(str, args)])


def imported(db, *paths):
    r = run(db, "import", "claude-code", *paths)
    assert r.exit_code == 0, r.output
    return r


def lines_of(db, conversation=None):
    r = run(db, "export", *(["--conversation", conversation] if conversation else []))
    assert r.exit_code == 0, r.output
    return [json.loads(x) for x in r.stdout.splitlines()]


def show_json(db, conversation):
    r = run(db, "show", conversation, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def transcript(path):
    """The fixture's lines (what the assertions are measured against)."""
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def responses(path):
    """message id -> the transcript's assistant lines of that response, in file order."""
    out: dict[str, list[dict]] = {}
    for d in transcript(path):
        if d.get("type") == "assistant" and d["message"].get("model") != "<synthetic>":
            out.setdefault(d["message"]["id"], []).append(d)
    return out


def first_text(request):
    content = request["messages"][0]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def by_conversation(lines):
    out: dict[str, list[dict]] = {}
    for x in lines:
        out.setdefault(x["conversation_id"], []).append(x)
    return out


def db_content(db):
    """Every row of every table that matters, for comparing two states of the database."""
    conn = sqlite3.connect(db)
    tables = ["conversations", "turns", "attempts", "imported_turns", "conversation_links", "blobs", "nodes"]
    return {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}


def test_a_session_becomes_a_conversation_in_chain_order(tmp_path):
    db = tmp_path / "i.db"
    imported(db, REAL)
    convs = by_conversation(lines_of(db))
    for session in (MAIN, LOOP):
        file = PROJECT / f"{session}.jsonl"
        got = convs[f"cc_{session}"]
        expected = responses(file)
        # one turn per API response, in the order the transcript wrote them
        assert [x["response"]["id"] for x in got] == list(expected)
        assert [x["index"] for x in got] == list(range(len(expected)))
        for x in got:
            assert x["reconstructed"] is True and x["imported_from"] == "claude-code"
            assert set(x["request"]) == {"model", "messages"}  # no system prompt, no tools: not in a transcript
            assert x["user_id"] is None  # 2.1.x transcripts name no account
            last = expected[x["response"]["id"]][-1]
            assert x["usage"] == last["message"]["usage"]
            assert x["request_id"] == last["requestId"]
            assert x["cost_usd"] is not None and x["cost_usd"] > 0
    # the listing shows them, with their first prompt
    listed = json.loads(run(db, "list", "--json").stdout)
    assert {c["conversation_id"] for c in listed} == set(convs)
    loop = next(c for c in listed if c["conversation_id"] == f"cc_{LOOP}")
    assert loop["first_message"] == transcript(PROJECT / f"{LOOP}.jsonl")[2]["message"]["content"]
    assert loop["tags"] == {"claude_code_session": LOOP}


def test_tool_calls_sit_beside_their_results(tmp_path):
    db = tmp_path / "i.db"
    imported(db, PROJECT / f"{LOOP}.jsonl")
    first, second = lines_of(db)
    calls = [b for b in first["response"]["content"] if b["type"] == "tool_use"]
    assert len(calls) == 2  # parallel calls, written on two lines, merged into one response
    # Claude Code hangs the second result on another branch of the chain: both come back, in call order
    results = second["request"]["messages"][-1]["content"]
    assert [r["tool_use_id"] for r in results] == [c["id"] for c in calls]
    written = {
        b["tool_use_id"]: b["content"]
        for d in transcript(PROJECT / f"{LOOP}.jsonl")
        if d.get("type") == "user" and isinstance(d["message"]["content"], list)
        for b in d["message"]["content"]
    }
    store = Store(open_db(db))
    detail = store.turn_detail(first["turn_id"])
    assert [(c.name, c.result) for c in detail.tool_calls] == [("Bash", written[c["id"]]) for c in calls]
    shown = run(db, "show", f"cc_{LOOP}").stdout
    assert "Bash, Bash" in shown
    # a transcript has no latency: the LATENCY column says it isn't known, not 0
    assert re.findall(r"\$\d+\.\d+ +(\S+)", shown) == ["–", "–"], shown


def test_partial_lines_are_merged_into_the_complete_message(tmp_path):
    db = tmp_path / "i.db"
    file = HANDMADE / "partials-and-sidechain.jsonl"
    imported(db, file)
    lines = lines_of(db)
    written = responses(file)
    # one line per response, however many lines (and repeats of a line) the transcript wrote
    assert sorted(x["response"]["id"] for x in lines) == sorted(written)
    first = next(x for x in lines if x["response"]["id"] == "msg_h001")
    parts = written["msg_h001"]
    assert len(parts) == 3
    # the grown text block replaces its partial; the usage is the final one, not the first line's
    assert first["response"]["content"] == [parts[1]["message"]["content"][0], parts[2]["message"]["content"][0]]
    assert first["usage"] == parts[-1]["message"]["usage"] != parts[0]["message"]["usage"]
    assert first["response"]["stop_reason"] == parts[-1]["message"]["stop_reason"]


def test_a_session_in_progress_leaves_its_half_written_response_for_the_next_import(tmp_path):
    """`import claude-code` run while a session writes its transcript: the response it is in the
    middle of writing waits (cut after its thinking, or after the first of its two tool calls),
    and the next import takes it whole (a turn is never written twice)."""
    whole = (PROJECT / f"{LOOP}.jsonl").read_text().splitlines(keepends=True)
    thinking = next(i for i, x in enumerate(whole) if '"type":"thinking"' in x.replace(" ", "")) + 1
    first_call = next(i for i, x in enumerate(whole) if '"type":"tool_use"' in x.replace(" ", "")) + 1
    for n, cut in enumerate((thinking, first_call)):
        live = tmp_path / f"p{n}" / f"{LOOP}.jsonl"
        live.parent.mkdir()
        live.write_text("".join(whole[:cut]))
        db = tmp_path / f"i{n}.db"
        r = run(db, "import", "claude-code", live.parent, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["turns"] == 0 and json.loads(r.stdout)["unfinished"] == 1, (cut, r.output)
        assert "1 response still being written by a session in progress, left for the next import" in r.stderr
        live.write_text("".join(whole))
        imported(db, live.parent)
        fresh = tmp_path / f"fresh{n}.db"
        imported(fresh, live.parent)
        assert [(x["response"], x["usage"]) for x in lines_of(db)] == [
            (x["response"], x["usage"]) for x in lines_of(fresh)
        ]
        assert "Bash, Bash" in run(db, "show", f"cc_{LOOP}").stdout

    # a session that ended long ago with a response cut short: what there is, is imported
    old = tmp_path / "old" / f"{LOOP}.jsonl"
    old.parent.mkdir()
    old.write_text("".join(whole[:thinking]))
    past = old.stat().st_mtime - 3600
    os.utime(old, (past, past))
    r = run(tmp_path / "o.db", "import", "claude-code", old, "--json")
    assert (json.loads(r.stdout)["turns"], json.loads(r.stdout)["unfinished"]) == (1, 0), r.output


def test_a_last_line_cut_off_as_it_is_written_is_a_response_still_being_written_not_a_malformed_one(tmp_path):
    """Claude Code appends a line at a time: a live session's file can end in half a line (with
    or without a newline after it, as a copy may leave it). That is the response being written,
    left for the next import; a line that is not JSON before the last stays malformed."""
    whole = (PROJECT / f"{LOOP}.jsonl").read_text().splitlines(keepends=True)
    call = next(i for i, x in enumerate(whole) if '"type":"tool_use"' in x.replace(" ", ""))
    half = whole[call][: len(whole[call]) // 2]
    for n, end in enumerate(("", "\n")):
        live = tmp_path / f"p{n}" / f"{LOOP}.jsonl"
        live.parent.mkdir()
        live.write_text("".join(whole[:call]) + half + end)
        db = tmp_path / f"i{n}.db"
        r = run(db, "import", "claude-code", live.parent, "--json")
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert (doc["turns"], doc["unfinished"], doc["malformed"]) == (0, 1, []), r.output
        assert "1 response still being written by a session in progress, left for the next import" in r.stderr
        assert "malformed" not in r.stderr and "line skipped" not in r.stderr, r.stderr
        live.write_text("".join(whole))
        r = imported(db, live.parent)
        assert "malformed" not in r.stderr and "still being written" not in r.stderr, r.stderr
        assert "Bash, Bash" in run(db, "show", f"cc_{LOOP}").stdout
    # half a line in the middle is malformed, live or not
    middle = tmp_path / "middle" / f"{LOOP}.jsonl"
    middle.parent.mkdir()
    middle.write_text("".join(whole[:call]) + half + "\n" + "".join(whole[call:]))
    r = run(tmp_path / "m.db", "import", "claude-code", middle.parent, "--json")
    doc = json.loads(r.stdout)
    assert doc["unfinished"] == 0 and doc["malformed"] == [
        {"file": str(middle), "line": call + 1, "what": "not JSON"}], r.output
    assert "1 malformed line skipped" in r.stderr


def test_a_response_is_one_turn_when_only_some_of_its_lines_name_the_request(tmp_path):
    session = "55555555-5555-4555-8555-555555555555"

    def line(uuid, parent, kind, message, **extra):
        at = "2026-11-25T10:00:00.000Z"
        doc = {"parentUuid": parent, "isSidechain": False, "type": kind, "message": message, "uuid": uuid}
        return json.dumps({**doc, "timestamp": at, "sessionId": session, **extra})

    def reply(mid, content, stop, out):
        usage = {"input_tokens": 1000, "output_tokens": out}
        doc = {"model": "claude-sonnet-4-5", "id": mid, "type": "message", "role": "assistant"}
        return {**doc, "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}

    call = {"type": "tool_use", "id": "toolu_n1", "name": "Bash", "input": {"command": "ls"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_n1", "content": "x"}
    path = tmp_path / f"{session}.jsonl"
    first = reply("msg_n1", [{"type": "text", "text": "Let me"}], None, 1)
    path.write_text("\n".join([
        line("u1", None, "user", {"role": "user", "content": "go"}),
        line("a1", "u1", "assistant", first, requestId="req_n1"),
        line("a1b", "a1", "assistant", reply("msg_n1", [call], "tool_use", 50)),  # this line names no request
        line("u2", "a1b", "user", {"role": "user", "content": [result]}),
        line("a2", "u2", "assistant", reply("msg_n2", [{"type": "text", "text": "done"}], "end_turn", 10),
             requestId="req_n2"),
    ]) + "\n")  # fmt: skip
    db = tmp_path / "i.db"
    imported(db, path)
    lines = lines_of(db)
    assert [x["response"]["id"] for x in lines] == ["msg_n1", "msg_n2"]
    assert lines[0]["response"]["content"] == [{"type": "text", "text": "Let me"}, call]
    assert lines[0]["usage"]["output_tokens"] == 50 and lines[0]["request_id"] == "req_n1"
    assert "imported 0 turns" in run(db, "import", "claude-code", path).stderr  # and again: nothing new


def test_subagents_are_child_conversations_linked_to_their_session(tmp_path):
    db = tmp_path / "i.db"
    r = imported(db, REAL)
    assert "1 subagent linked" in r.stderr
    meta = json.loads(next(PROJECT.glob(f"{MAIN}/subagents/*.meta.json")).read_text())
    agent_file = next(PROJECT.glob(f"{MAIN}/subagents/*.jsonl"))
    agent = agent_file.stem.removeprefix("agent-")
    child, parent = f"cc_{MAIN}_{agent}", f"cc_{MAIN}"
    lines = by_conversation(lines_of(db))
    assert [x["response"]["id"] for x in lines[child]] == list(responses(agent_file))
    assert {x.get("parent_conversation_id") for x in lines[child]} == {parent}
    assert all("parent_conversation_id" not in x for x in lines[parent])
    assert show_json(db, child)["parent_conversation_id"] == parent
    assert show_json(db, child)["parent_tool_use_id"] == meta["toolUseId"]
    assert show_json(db, parent)["subagents"] == [child]
    text = run(db, "show", child).stdout
    assert f"subagent of conversation {parent} (its tool call {meta['toolUseId']})" in text
    assert f"subagents: {child}" in run(db, "show", parent).stdout
    listed = {c["conversation_id"]: c for c in json.loads(run(db, "list", "--json").stdout)}
    assert listed[child]["tags"] == {"claude_code_session": MAIN, "claude_code_agent": agent}


def test_an_older_inline_sidechain_is_linked_too(tmp_path):
    db = tmp_path / "i.db"
    imported(db, HANDMADE / "partials-and-sidechain.jsonl")
    convs = by_conversation(lines_of(db))
    assert len(convs) == 2
    (child,) = [c for c in convs if c != "cc_11111111-1111-4111-8111-111111111111"]
    assert [x["response"]["id"] for x in convs[child]] == ["msg_h002"]
    assert convs[child][0]["parent_conversation_id"] == "cc_11111111-1111-4111-8111-111111111111"
    assert convs[child][0]["request"]["messages"] == [{"role": "user", "content": "Find test_x"}]


def test_a_compaction_summary_is_a_context_reset(tmp_path):
    db = tmp_path / "i.db"
    imported(db, PROJECT / f"{MAIN}.jsonl")
    lines = lines_of(db, f"cc_{MAIN}")
    summary = next(d for d in transcript(PROJECT / f"{MAIN}.jsonl") if d.get("isCompactSummary"))
    # the turns after it start from the summary
    starts = [x["index"] for x in lines if first_text(x["request"]) == summary["message"]["content"]]
    reset = starts[0]
    assert starts == list(range(reset, len(lines))) and reset > 0
    after = [x for x in lines if x["index"] >= reset]
    # the context starts again from the summary: nothing from before it is sent
    first_prompt = lines[0]["request"]["messages"][0]["content"]
    assert all(first_prompt not in json.dumps(x["request"]) for x in after)
    assert show_json(db, f"cc_{MAIN}")["context_resets"] == [reset]
    row = next(r for r in run(db, "show", f"cc_{MAIN}").stdout.splitlines() if r.strip().startswith(f"{reset} "))
    assert "[context reset: compaction summary]" in row
    # an older transcript: a summary line that starts a chain, with no boundary line before it
    imported(db, HANDMADE / "compact-summary.jsonl")
    assert show_json(db, "cc_33333333-3333-4333-8333-333333333333")["context_resets"] == [1]


def test_importing_again_adds_only_what_is_new(tmp_path):
    db = tmp_path / "i.db"
    imported(db, REAL, HANDMADE)
    before, exported = db_content(db), lines_of(db)
    r = imported(db, REAL, HANDMADE)
    assert r.stderr.splitlines()[-1].startswith("imported 0 turns (0 new conversations)")
    assert f"{len(exported)} turns imported before" in r.stderr
    imported(db, PROJECT / f"{MAIN}.jsonl")  # a file of the folder, named alone
    assert db_content(db) == before and lines_of(db) == exported

    # the session goes on: the next import adds its new turn, at the end of the same conversation
    grown = tmp_path / "projects" / f"{LOOP}.jsonl"
    grown.parent.mkdir()
    shutil.copy(PROJECT / f"{LOOP}.jsonl", grown)
    last = [d for d in transcript(grown) if d.get("type") == "assistant"][-1]
    ask = {**last, "type": "user", "uuid": "new-user", "parentUuid": last["uuid"],
           "message": {"role": "user", "content": "and now?"}}  # fmt: skip
    ask.pop("requestId")
    reply = {**last["message"], "id": "msg_new", "content": [{"type": "text", "text": "Now this."}]}
    answer = {**last, "uuid": "new-answer", "parentUuid": "new-user", "requestId": "req_new", "message": reply}
    with open(grown, "a") as f:
        f.write(json.dumps(ask) + "\n" + json.dumps(answer) + "\n")
    r = imported(db, grown)
    assert r.stderr.splitlines()[-1].startswith("imported 1 turn (0 new conversations)")
    conv = lines_of(db, f"cc_{LOOP}")
    assert [x["response"]["id"] for x in conv] == [*responses(PROJECT / f"{LOOP}.jsonl"), "msg_new"]
    assert conv[-1]["request"]["messages"][-1] == {"role": "user", "content": "and now?"}


def test_a_call_recorded_on_the_wire_is_kept_once_as_recorded(api, tmp_path):
    db = tmp_path / "i.db"
    file = HANDMADE / "wire-merge.jsonl"
    first = responses(file)["msg_wire0001"][0]
    # the same call, recorded by the middleware: the fake answers with the transcript's message id
    api.enqueue(Reply(body={**first["message"], "usage": first["message"]["usage"]}))
    with Recorder(db) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        client.messages.create(model=first["message"]["model"], max_tokens=100, system="You help.",
                               messages=[{"role": "user", "content": "first question"}])  # fmt: skip
    (wire,) = lines_of(db)
    wire_text = run(db, "export").stdout
    r = imported(db, file)
    assert "1 turn already recorded on the wire, kept as recorded" in r.stderr
    lines = lines_of(db)
    assert [x["response"]["id"] for x in lines] == ["msg_wire0001", "msg_h301"]
    # the wire record wins, byte for byte; the transcript's next turn joins its conversation after
    # it, and gives the conversation the session's tag, which the line's tags (its
    # conversation's) then say
    before_tags, after_tags = wire_text.splitlines()[0], run(db, "export").stdout.splitlines()[0]
    assert before_tags.endswith(', "tags": {}}')
    assert after_tags == before_tags[: -len('{}}')] + json.dumps({"claude_code_session": first["sessionId"]}) + "}"
    assert "reconstructed" not in lines[0] and lines[0]["request"]["system"] == "You help."
    assert lines[1]["reconstructed"] is True
    assert lines[1]["conversation_id"] == wire["conversation_id"] and lines[1]["index"] == 1
    # and the recorded conversation now carries the session's tag
    listed = json.loads(run(db, "list", "--json").stdout)
    assert [c["tags"] for c in listed] == [{"claude_code_session": first["sessionId"]}]
    before = db_content(db)
    imported(db, file)
    assert db_content(db) == before


def test_turns_before_the_first_recorded_on_the_wire_stay_out_of_its_conversation(api, tmp_path):
    """Recording started mid-session: the wire holds only the second call. The transcript's
    first turn can't go after it in the wire's conversation (that context would shrink): it is
    the session's own conversation, and every conversation's turns grow one context."""
    db = tmp_path / "i.db"
    file = HANDMADE / "wire-merge.jsonl"
    first, second = (responses(file)[m][0]["message"] for m in ("msg_wire0001", "msg_h301"))
    api.enqueue(Reply(body=second))
    with Recorder(db) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        client.messages.create(model=second["model"], max_tokens=100, system="You help.", messages=[
            {"role": "user", "content": "first question"}, {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": "second question"}])  # fmt: skip
    (wire,) = lines_of(db)
    imported(db, file)
    lines = by_conversation(lines_of(db))
    assert [x["response"]["id"] for x in lines[wire["conversation_id"]]] == ["msg_h301"]
    session = transcript(file)[0]["sessionId"]
    assert [(x["response"]["id"], x["index"]) for x in lines[f"cc_{session}"]] == [("msg_wire0001", 0)]
    assert growing(lines_of(db))


def growing(lines):
    """Whether each conversation's turns grow one context: each request begins with the one before."""
    for turns in by_conversation(lines).values():
        for before, after in zip(turns, turns[1:], strict=False):
            if after["request"]["messages"][: len(before["request"]["messages"])] != before["request"]["messages"]:
                return False
    return True


def test_a_turn_the_wire_missed_between_two_it_has_stays_out_of_its_conversation(tmp_path):
    """Runs 1 and 3 of a session recorded on the wire, run 2 not (`claude -c` without record):
    the transcript's turn of run 2 can't go after run 3's in the wire's conversation (its context
    would go back): it is the session's own conversation."""
    scratch, db, file = tmp_path / "scratch.db", tmp_path / "i.db", tmp_path / "session.jsonl"
    tangled(file, turns=3)
    imported(scratch, file)
    main = "cc_55555555-5555-4555-8555-555555555555"
    session = by_conversation(lines_of(scratch))[main]
    assert len(session) == 3 and growing(session)
    with Recorder(db) as rec:  # turns 0 and 2 as the wire recorded them, turn 1 missed
        for line in (session[0], session[2]):
            rec.record(line["request"], line["response"], conversation_id="wire",
                       started_at=datetime.fromisoformat(line["started_at"].replace("Z", "+00:00")))  # fmt: skip
    imported(db, file)
    lines = lines_of(db)
    assert growing(lines)
    got = {c: [x["response"]["id"] for x in turns] for c, turns in by_conversation(lines).items()}
    assert got["wire"] == ["msg_t0", "msg_t2"] and got[main] == ["msg_t1"]
    before = db_content(db)
    imported(db, file)
    assert db_content(db) == before


def test_rerun_refuses_an_imported_turn(tmp_path):
    db = tmp_path / "i.db"
    imported(db, PROJECT / f"{LOOP}.jsonl")
    turn = lines_of(db)[0]["turn_id"]
    r = run(db, "rerun", f"cc_{LOOP}:0", "--yes")
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "reconstructed" in r.stderr and "can't be rerun" in r.stderr
    with pytest.raises(replay.ReplayError, match="Claude Code transcript"):
        replay.original(Store(open_db(db)), turn)
    assert "rerun a turn" not in run(db, "show", f"cc_{LOOP}").stderr


async def test_the_browser_refuses_to_rerun_an_imported_turn(tmp_path):
    from replayer.tui.app import make_app
    from replayer.tui.rerun import RerunScreen

    db = tmp_path / "i.db"
    imported(db, PROJECT / f"{LOOP}.jsonl")
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await press_rerun_in_first_conversation(pilot)
        assert not isinstance(app.screen, RerunScreen)
        assert any("reconstructed" in str(n.message) for n in app._notifications)


def test_a_malformed_line_is_reported_and_the_rest_imported(tmp_path):
    db = tmp_path / "i.db"
    file = HANDMADE / "malformed.jsonl"
    r = imported(db, file)
    reported = [x for x in r.stderr.splitlines() if "line skipped" in x]
    assert [x.split(": ")[1].rsplit(":", 1)[1] for x in reported] == ["2", "4", "5"]
    assert all(x.startswith(f"replayer: {file}:") for x in reported)
    assert "3 malformed lines skipped" in r.stderr
    assert [x["response"]["id"] for x in lines_of(db)] == ["msg_h101", "msg_h102"]
    # many: the first ones each on a line, then their count
    noisy = tmp_path / "noisy.jsonl"
    noisy.write_text("{not json\n" * 25 + file.read_text())  # before the last line (see the test above)
    r = imported(tmp_path / "j.db", noisy)
    assert len([x for x in r.stderr.splitlines() if "line skipped" in x]) == 20
    assert "… and 8 more malformed lines" in r.stderr


def test_a_line_whose_values_cant_be_stored_is_reported_and_the_rest_imported(tmp_path):
    """JSON that reads as a transcript line but holds usage that isn't token counts: that line
    is reported with its file and line number; its file's other turns and the next files import."""
    db = tmp_path / "i.db"
    rows = transcript(HANDMADE / "wire-merge.jsonl")
    n = next(i for i, d in enumerate(rows) if d.get("type") == "assistant")
    rows[n]["message"]["usage"] = {**rows[n]["message"]["usage"], "cache_read_input_tokens": [1]}
    bad = tmp_path / "a-bad.jsonl"
    bad.write_text("".join(json.dumps(d) + "\n" for d in rows))
    loop = shutil.copy(PROJECT / f"{LOOP}.jsonl", tmp_path / "b-loop.jsonl")
    r = imported(db, bad, loop)
    assert "Traceback" not in r.output
    assert [x for x in r.stderr.splitlines() if x.endswith("(line skipped)")] == [
        f"replayer: {bad}:{n + 1}: a usage that isn't token counts (TypeError: int() argument must be a string, a "
        "bytes-like object or a real number, not 'list') (line skipped)"]
    assert "1 malformed line skipped" in r.stderr
    ids = {x["response"]["id"] for x in lines_of(db)}
    assert rows[n]["message"]["id"] not in ids and "msg_h301" in ids
    assert set(responses(PROJECT / f"{LOOP}.jsonl")) <= ids


def test_bad_paths_are_one_line_and_exit_2(tmp_path):
    db = tmp_path / "i.db"
    r = run(db, "import", "claude-code", tmp_path / "nowhere")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "no such file or folder" in r.stderr
    other = tmp_path / "events.jsonl"
    other.write_text('{"event": "click", "at": 1}\n' * 3)
    r = run(db, "import", "claude-code", REAL, other)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "is not a Claude Code transcript" in r.stderr
    assert not db.exists()  # refused before anything was written
    # no PATH and no ~/.claude/projects (HOME is a temp folder in tests)
    r = run(db, "import", "claude-code")
    assert r.exit_code == 2 and "Claude Code has saved no session here" in r.stderr


def test_a_folder_with_nothing_to_import_makes_no_database(tmp_path):
    """A folder with no transcript in it was reported as nothing imported, and left a new empty
    database behind: none is made until there are turns to write."""
    folder = tmp_path / "sessions"
    folder.mkdir()
    db = tmp_path / "new" / "i.db"
    r = run(db, "import", "claude-code", folder)
    assert r.exit_code == 0 and r.stderr == "imported 0 turns (0 new conversations) from 0 transcript files\n"
    (folder / "events.jsonl").write_text('{"event": "click", "at": 1}\n')
    r = run(db, "import", "claude-code", folder)
    assert r.exit_code == 0 and "1 file not a transcript, skipped" in r.stderr, r.output
    assert not db.parent.exists()
    prose = tmp_path / "notes.txt"
    prose.write_text("not a database\n")
    r = run(prose, "import", "claude-code", folder)  # a --db that can't hold them: said before reading
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "is not a SQLite database" in r.output, r.output
    imported(db, folder, HANDMADE / "compact-summary.jsonl")
    assert db.exists()


def test_the_default_path_is_every_transcript_under_claude_projects(tmp_path):
    home = Path.home()  # a temp folder (conftest)
    shutil.copytree(REAL, home / ".claude" / "projects")
    (home / ".claude" / "projects" / "notes.jsonl").write_text('{"note": 1}\n')  # not a transcript: skipped
    db = tmp_path / "i.db"
    r = imported(db)
    assert "1 file not a transcript, skipped" in r.stderr
    assert len(by_conversation(lines_of(db))) == 3


def test_progress_shows_on_a_terminal_only(tmp_path):
    """`import claude-code DIR 2>err.txt` of more than 20 files left the progress bar's lines
    in err.txt: the bar now shows only when stderr is a terminal, however many files, as for
    import otlp and import export."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(25):
        shutil.copy(HANDMADE / "compact-summary.jsonl", folder / f"s{i:02d}.jsonl")
    r = imported(tmp_path / "i.db", folder)
    assert "importing" not in r.stderr and "imported" in r.stderr, r.stderr  # stderr no terminal: no bar
    shown = stderr_on_a_terminal("--db", tmp_path / "j.db", "import", "claude-code", folder)
    assert "importing" in shown and "from 25 transcript files" in shown, shown


def tangled(path, turns=40):
    """A generated session whose chain is anything but a line: parallel tool results on
    branches, a rewind to an earlier turn, a subagent's lines in between, a compaction, partial
    lines written twice."""
    sid, lines, parent = "55555555-5555-4555-8555-555555555555", [], None
    at = iter(f"2026-11-24T10:{m:02d}:{s:02d}.000Z" for m in range(60) for s in range(60))

    def add(kind, uuid, parent, content, **kw):
        line = {"type": kind, "uuid": uuid, "parentUuid": parent, "sessionId": sid, "timestamp": next(at),
                "isSidechain": kw.pop("side", False), **kw}  # fmt: skip
        if kind in ("user", "assistant"):
            line["message"] = {"role": kind, "content": content, **kw.pop("message", {})}
        lines.append(line)
        return uuid

    parent = add("user", "u0", None, "start")
    rewind_to = None
    for i in range(turns):
        msg = {"id": f"msg_t{i}", "model": "claude-sonnet-4-5", "usage": {"input_tokens": i, "output_tokens": 1}}
        calls = [{"type": "tool_use", "id": f"t{i}_{k}", "name": "Read", "input": {"k": k}} for k in range(i % 3)]
        a = add("assistant", f"a{i}", parent, [{"type": "text", "text": f"turn {i}"}], requestId=f"r{i}", message=msg)
        if i == 5:
            rewind_to = a
        if i % 4 == 1:  # a partial line, then the same block grown
            a = add("assistant", f"a{i}p", a, [{"type": "text", "text": f"turn {i} grown"}], requestId=f"r{i}",
                    message=msg)  # fmt: skip
        tips = []
        for k, c in enumerate(calls):
            a = add("assistant", f"a{i}c{k}", a, [c], requestId=f"r{i}", message=msg)
            tips.append(a)
        if i % 7 == 3:  # a subagent at work in between
            s = add("user", f"s{i}", None, f"side task {i}", side=True)
            add("assistant", f"sa{i}", s, [{"type": "text", "text": "done"}], side=True, requestId=f"sr{i}",
                message={**msg, "id": f"msg_s{i}"})  # fmt: skip
        answers = [[{"type": "tool_result", "tool_use_id": c["id"], "content": f"result {c['id']}"}] for c in calls]
        results = [add("user", f"r{i}_{k}", tip, answers[k]) for k, tip in enumerate(tips)]  # each on its own branch
        parent = results[-1] if results else add("user", f"u{i + 1}", a, f"next {i}")
        if i == 12:  # the user rewinds to turn 5 and asks again
            parent = add("user", f"rw{i}", rewind_to, "try that again")
        if i == 25:
            parent = add("system", f"cb{i}", None, None, subtype="compact_boundary", logicalParentUuid=parent)
            parent = add("user", f"cs{i}", parent, "summary of it all", isCompactSummary=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def blocks(content):
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def test_each_body_is_what_building_it_alone_gives(tmp_path):
    from replayer.imports import claude_code as cc
    from replayer.imports.rebuild import Requests

    file = tmp_path / "tangled.jsonl"
    tangled(file)
    t = cc.read(file)
    assert not t.malformed and len(t.chains) > 1
    turns = [x for c in t.chains for x in c.turns]
    shared = turns[0].make_body.func.__self__
    checked = 0
    for turn in sorted(turns, key=lambda x: x.make_body.args[1]):  # as they are written: file order
        body = turn.make_body()
        alone = Requests(shared.by_uuid, shared.merged, shared.group_of, shared.results)
        path = alone.path(shared.by_uuid[turn.uuid])
        assert body == alone.body(path, *turn.make_body.args[1:]), turn.key
        request = json.loads(body)
        roles = [m["role"] for m in request["messages"]]
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))  # alternating, as the API wants
        checked += 1
    assert checked == len(turns) == 40 + len([i for i in range(40) if i % 7 == 3])
    # and through the CLI: every call of an assistant is answered in the next message
    db = tmp_path / "i.db"
    imported(db, file)
    for line in lines_of(db):
        msgs = line["request"]["messages"]
        for m, nxt in zip(msgs, msgs[1:], strict=False):
            calls = [b["id"] for b in blocks(m["content"]) if b.get("type") == "tool_use"]
            answered = [b["tool_use_id"] for b in blocks(nxt["content"]) if b.get("type") == "tool_result"]
            assert answered[: len(calls)] == calls


def test_the_user_is_the_sessions_account_when_the_transcript_names_one(tmp_path):
    named = transcript(HANDMADE / "compact-summary.jsonl")
    named[0]["accountUuid"] = "acct-0042"  # on one line (the first prompt): it names the session's user
    file = tmp_path / "account.jsonl"
    file.write_text("".join(json.dumps(x) + "\n" for x in named))
    db = tmp_path / "i.db"
    imported(db, file)
    turns = len(responses(file))
    assert [x["user_id"] for x in lines_of(db)] == ["acct-0042"] * turns
    assert json.loads(run(db, "list", "--json", "--user", "acct-0042").stdout)[0]["turns"] == turns


REPLAYED = "66666666-6666-4666-8666-666666666666"
FORKED = "77777777-7777-4777-8777-777777777777"


def session_copy(src, dst, session, *, relived):
    """`src` as another session's file: `relived`, a session `replayer replay` answered with the
    recorded responses (the same message and request ids, its own lines and times, an hour on);
    else a fork's copy of the history (the same lines and times, only the session id new)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for d in transcript(src):
        d = {**d, "sessionId": session} if "sessionId" in d else dict(d)
        if relived:
            for k in ("uuid", "parentUuid"):
                if isinstance(d.get(k), str):
                    d[k] = f"r-{d[k]}"
            if isinstance(d.get("timestamp"), str):
                at = datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp() + 3600
                d["timestamp"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        out.append(json.dumps(d))
    dst.write_text("\n".join(out) + "\n")
    return dst


def test_a_replayed_session_is_its_own_conversation_in_either_file_order(tmp_path):
    """A session run under `replayer replay` gets the recorded responses' ids: it is still a
    call of its own, not the original's kept once, whichever file is read first."""
    original = PROJECT / f"{LOOP}.jsonl"
    replayed = session_copy(original, tmp_path / "p" / f"{REPLAYED}.jsonl", REPLAYED, relived=True)
    ids = list(responses(original))
    starts = {s: lines_of_first(s) for s in (original, replayed)}
    for n, files in enumerate(((replayed, original), (original, replayed))):
        db = tmp_path / f"{n}.db"
        r = imported(db, *files)
        assert r.stderr.splitlines()[-1] == (
            f"imported {2 * len(ids)} turns (2 new conversations) from 2 transcript files"
        )  # none "imported before": the database was new
        convs = by_conversation(lines_of(db))
        assert set(convs) == {f"cc_{LOOP}", f"cc_{REPLAYED}"}
        for file, session in ((original, LOOP), (replayed, REPLAYED)):
            turns = convs[f"cc_{session}"]
            assert [x["response"]["id"] for x in turns] == ids
            assert turns[0]["started_at"] == starts[file]  # timed after its own file
        listed = {c["conversation_id"]: c["tags"] for c in json.loads(run(db, "list", "--json").stdout)}
        assert listed == {f"cc_{s}": {"claude_code_session": s} for s in (LOOP, REPLAYED)}


def lines_of_first(file):
    """The time of a transcript's first response's first line."""
    return next(d["timestamp"] for d in transcript(file) if d.get("type") == "assistant")


def test_a_forks_copy_of_its_history_is_kept_once_and_said_apart_from_an_earlier_import(tmp_path):
    original = PROJECT / f"{LOOP}.jsonl"
    forked = session_copy(original, tmp_path / "p" / f"{FORKED}.jsonl", FORKED, relived=False)
    n = len(responses(original))
    db = tmp_path / "i.db"
    r = imported(db, original, forked)
    assert r.stderr.splitlines()[-1] == (
        f"imported {n} turns (1 new conversation) from 2 transcript files"
        f" ({n} turns a fork copied into another session's file, kept once)"
    )
    assert json.loads(run(db, "import", "claude-code", "--json", forked).stdout)["already_imported"] == n
    r = imported(db, original, forked)
    assert r.stderr.splitlines()[-1].endswith(f"({2 * n} turns imported before)")


def test_a_replayed_session_is_not_the_call_recorded_on_the_wire(tmp_path):
    """The original session recorded on the wire (tagged with its session, as Claude Code's
    header makes it), then both transcripts imported, the replay's first: the original's first
    call is kept once, as recorded; the replay's is a turn of its own session's conversation."""
    original = PROJECT / f"{LOOP}.jsonl"
    replayed = session_copy(original, tmp_path / "p" / f"{REPLAYED}.jsonl", REPLAYED, relived=True)
    first, *_ = responses(original).values()
    db = tmp_path / "i.db"
    with Recorder(db) as rec:
        rec.record({"model": first[0]["message"]["model"], "max_tokens": 100, "messages": [
                       {"role": "user", "content": "hi"}]},
                   first[-1]["message"], conversation_id="wire", latency_ms=50.0,
                   started_at=datetime.fromisoformat(first[0]["timestamp"].replace("Z", "+00:00")),
                   headers={"x-claude-code-session-id": LOOP})  # fmt: skip
    r = imported(db, replayed, original)
    assert "1 turn already recorded on the wire, kept as recorded" in r.stderr
    convs = by_conversation(lines_of(db))
    ids = list(responses(original))
    assert set(convs) == {"wire", f"cc_{REPLAYED}"}
    # the original's later turns go on after the recorded one, in its conversation
    assert [x["response"]["id"] for x in convs["wire"]] == ids
    assert [x["response"]["id"] for x in convs[f"cc_{REPLAYED}"]] == ids
    assert "reconstructed" not in convs["wire"][0] and convs["wire"][0]["request"]["max_tokens"] == 100
