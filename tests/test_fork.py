"""Forks: `replayer replay SOURCE --live-from N [edits] -- COMMAND` and `replayer fork TURN`.

A 10-turn tool loop (the real SDK, a child process) is recorded with `replayer record`, against
the local fake Messages API; the fork replays its first turns from the recording and sends the
rest to the fake with the edits, recorded as a new conversation linked to the original."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FAKE_KEY, exported, sent_bodies, stop_behind

from replayer.fakeapi import FakeAPI, Reply, message_events
from replayer.store.queries import Store
from replayer.store.schema import open_db

CLI = [sys.executable, "-m", "replayer.cli"]
TURNS = 10
SYSTEM = "You are a careful refund agent."
AGENT = """
    import sys
    import anthropic

    client = anthropic.Anthropic()
    messages = [{"role": "user", "content": "refund order " + sys.argv[1]}]
    for turn in range(40):
        ask = dict(model="claude-sonnet-4-5", max_tokens=200, system=SYSTEM, messages=messages,
                   tools=[{"name": "lookup", "description": "look a step up", "input_schema": {"type": "object"}}])
        try:
            if sys.argv[2:] == ["stream"]:
                with client.messages.stream(**ask) as stream:
                    reply = stream.get_final_message()
            else:
                reply = client.messages.create(**ask)
        except anthropic.APIStatusError as e:
            print("API ERROR", e.status_code, e.body["error"]["message"])
            raise SystemExit(3)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        calls = [b for b in reply.content if b.type == "tool_use"]
        if not calls:
            print("FINAL", reply.content[0].text)
            break
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": "looked up step " + str(c.input["step"])}
            for c in calls]})
"""


def loop_reply(body: dict) -> Reply:
    """The fake's model: a tool call per turn until turn 9, then a final answer. Its answer
    depends on the request only, so a live part continues the loop the same way."""
    turn = (len(body.get("messages") or []) - 1) // 2
    usage = {"input_tokens": 1000, "output_tokens": 100, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    if turn < TURNS - 1:
        content = [{"type": "text", "text": f"step {turn}"},
                   {"type": "tool_use", "id": f"toolu_{turn:02d}", "name": "lookup", "input": {"step": turn}}]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": f"refunded after {turn} steps"}]
        stop = "end_turn"
    message = {"id": f"msg_{turn:02d}", "type": "message", "role": "assistant", "model": body.get("model"),
               "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}
    return Reply(sse=message_events(message)) if body.get("stream") else Reply(body=message)


@pytest.fixture
def loop_api():
    server = FakeAPI(responder=loop_reply).start()
    try:
        yield server
    finally:
        stop_behind(server)


def replayer(db: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--db", str(db), *args], capture_output=True, text=True, timeout=300, cwd=cwd, input=stdin,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, str, Path]:
    """The loop recorded once by `replayer record -- python agent.py 1234`: (db, conversation,
    workdir). Each test works on a copy of the database."""
    tmp = tmp_path_factory.mktemp("recorded")
    work = tmp / "work"
    work.mkdir()
    (work / "agent.py").write_text(f"SYSTEM = {SYSTEM!r}\n" + textwrap.dedent(AGENT))
    db = tmp.resolve() / "fork.db"
    with FakeAPI(responder=loop_reply) as api:
        proc = replayer(db, "record", "--", sys.executable, "agent.py", "1234",
                        env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY, "HOME": str(tmp),
                             "XDG_DATA_HOME": str(tmp / "data")}, cwd=work)  # conftest's isolation is per test
    assert proc.returncode == 0, proc.stderr
    assert f"FINAL refunded after {TURNS - 1} steps" in proc.stdout
    lines = exported(db)
    assert len(lines) == TURNS and len({line["conversation_id"] for line in lines}) == 1
    return db, lines[0]["conversation_id"], work


def recorded_loop(recorded: tuple[Path, str, Path], tmp_path: Path) -> tuple[Path, str, Path]:
    """A copy of the recorded loop's database, for one test to fork."""
    db, conv, work = recorded
    copy = tmp_path.resolve() / "fork.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
    return copy, conv, work


def test_record_keeps_the_runs_argv_and_working_directory_never_its_environment(recorded):
    db, conv, work = recorded
    store = Store(open_db(db, create=False))
    run = store.conversation_tags(conv)["run"]
    kept = store.run(run)
    assert kept is not None
    assert kept.argv == [sys.executable, "agent.py", "1234"] and kept.cwd == str(work) and kept.exit_code == 0
    row = store.db.execute("SELECT * FROM runs").fetchall()
    assert len(row) == 1 and FAKE_KEY not in json.dumps(row)  # no environment, so no key


def test_a_run_that_recorded_nothing_makes_no_database(tmp_path):
    db = tmp_path / "none.db"
    proc = replayer(db, "record", "--", sys.executable, "-c", "print('no calls')")
    assert proc.returncode == 0, proc.stderr
    assert not db.exists()


def test_tool_result_edits_rewrite_every_tool_result_answering_that_call():
    from replayer.replay import Edits, edit_request

    request = {"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "t", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "old",
                                      "is_error": True}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_02", "name": "t", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_02", "content": "kept"}]},
    ]}
    edits = Edits(tool_results={"toolu_01": "new"})
    edited = edit_request(request, edits)
    assert edited["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_01",
                                                   "content": "new", "is_error": True}
    assert edited["messages"][4] == request["messages"][4]
    assert request["messages"][2]["content"][0]["content"] == "old"  # the original is left as it was
    assert Edits.from_json(json.loads(json.dumps(edits.to_json()))) == edits
    assert "tool result toolu_01" in edits.names()



def fork_env(api: FakeAPI) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY}


def agent_cmd() -> list[str]:
    return ["--", sys.executable, "agent.py", "1234"]


def fork_of(db: Path) -> tuple[str, dict]:
    """The one fork conversation in the database, and its link."""
    store = Store(open_db(db, create=False))
    rows = store.db.execute(
        "SELECT conversation_id, parent_id, kind, turn_index, edits_json FROM conversation_links").fetchall()
    assert len(rows) == 1, rows
    conv, parent, kind, index, edits = rows[0]
    return conv, {"parent": parent, "kind": kind, "turn_index": index, "edits": json.loads(edits)}


def test_a_fork_at_turn_5_sends_turns_5_on_with_the_new_system_prompt_and_records_a_linked_variant(
        loop_api, recorded, tmp_path):
    db, conv, work = recorded_loop(recorded, tmp_path)
    original = exported(db)
    proc = replayer(db, "replay", conv, "--live-from", "5", "--system", "You are terse.", "--yes", *agent_cmd(),
                    env=fork_env(loop_api), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert f"FINAL refunded after {TURNS - 1} steps" in proc.stdout
    assert "estimate for turn 5:" in proc.stderr
    assert "; replayer compare " in proc.stderr  # the original is in this database: compare them

    # turns 0-4 never reached the fake; 5-9 did, each with the edit (and the agent's own history)
    sent = sent_bodies(loop_api)
    assert [len(b["messages"]) for b in sent] == [2 * t + 1 for t in range(5, TURNS)]
    assert all(b["system"] == "You are terse." for b in sent)
    assert [b["messages"] for b in sent] == [line["request"]["messages"] for line in original[5:]]

    fork, link = fork_of(db)
    assert link == {"parent": conv, "kind": "fork", "turn_index": 5, "edits": {"system": "You are terse."}}
    lines = [line for line in exported(db) if line["conversation_id"] == fork]
    assert [line["index"] for line in lines] == list(range(TURNS))
    assert [line["request"]["system"] for line in lines] == [SYSTEM] * 5 + ["You are terse."] * 5
    assert [line["response"] for line in lines[:5]] == [line["response"] for line in original[:5]]
    assert [line.get("copied_from") for line in lines] == [line["turn_id"] for line in original[:5]] + [None] * 5
    assert f"replayer replay: fork {fork} of {conv} at turn 5: 5 live turns" in proc.stderr
    # the recorded turns 5-9 were replaced by the live ones, not left unasked
    assert "not asked for" not in proc.stderr.splitlines()[-1], proc.stderr

    # listed as a variant of the original; out of the health metrics and spend like reruns
    listed = replayer(db, "list")
    row = next(line for line in listed.stdout.splitlines() if fork in line)
    assert f"↳ fork at turn 5 of {conv} (system)" in row
    as_json = json.loads(replayer(db, "list", "--json").stdout)
    listed_fork = next(r for r in as_json if r["conversation_id"] == fork)
    assert listed_fork["variant_of"] == f"fork at turn 5 of {conv} (system)"
    # its row shows what the fork spent: the live part's cost and tokens, not the copies'
    assert listed_fork["cost_usd"] == pytest.approx(sum(line["cost_usd"] for line in lines[5:]))
    assert listed_fork["output_tokens"] == sum(line["usage"]["output_tokens"] for line in lines[5:])
    assert listed_fork["turns"] == TURNS and listed_fork["models"]
    shown_lines = replayer(db, "show", fork).stdout.splitlines()
    assert sum("[copy: costs nothing now]" in line for line in shown_lines) == 5
    live = sum(line["cost_usd"] for line in lines[5:])
    assert f"total ${live:.4f} (the live turns; 5 copied turns cost nothing now)" in shown_lines
    shown = shown_lines[0]
    assert shown == f"fork of conversation {conv} at turn 5 (edits: system); turns before 5 replayed from it"
    assert replayer(db, "show", conv).stdout.splitlines()[0] == f"forks: {fork} (at turn 5)"  # not a subagent
    assert json.loads(replayer(db, "show", fork, "--json").stdout)["fork_of"] == {
        "conversation_id": conv, "turn_index": 5, "edits": {"system": "You are terse."}}
    # the spend is what the live part cost: the copied turns 0-4 cost nothing now
    stats = json.loads(replayer(db, "stats", "--json").stdout)
    assert stats["reruns"]["turns"] == TURNS - 5 and stats["reruns"]["variants"] == 1
    assert stats["reruns"]["cost_usd"] == pytest.approx(sum(line["cost_usd"] for line in lines[5:]))
    assert all(line["cost_usd"] for line in lines)  # each copy still shows what its turn cost when recorded
    assert sum(u["turns"] for u in stats["users"]) == TURNS and stats["conversations"]["count"] == 1  # the original


def test_a_tool_result_edit_is_made_in_every_later_request(loop_api, recorded, tmp_path):
    db, conv, work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "replay", conv, "--live-from", "5", "--tool-result", "toolu_02=order 1234 was never paid",
                    "--yes", *agent_cmd(), env=fork_env(loop_api), cwd=work)
    assert proc.returncode == 0, proc.stderr
    sent = sent_bodies(loop_api)
    assert len(sent) == TURNS - 5
    for body in sent:
        results = {b["tool_use_id"]: b["content"] for m in body["messages"] if isinstance(m["content"], list)
                   for b in m["content"] if b["type"] == "tool_result"}
        assert results["toolu_02"] == "order 1234 was never paid"
        assert all(text == f"looked up step {int(tid[-2:])}" for tid, text in results.items() if tid != "toolu_02")
        assert body["system"] == SYSTEM
    _, link = fork_of(db)
    assert link["edits"] == {"tool_results": {"toolu_02": "order 1234 was never paid"}}


def test_a_message_counted_from_the_end_is_the_fork_turns_in_every_later_request(loop_api, recorded, tmp_path):
    """`--message -1=…` at turn 5 edits turn 5's last message; the later requests hold more
    messages, and the same message (not their own last one, a new tool result) is edited there."""
    db, conv, work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "replay", conv, "--live-from", "5", "--message", "-1=EDITED RESULT",
                    "--yes", *agent_cmd(), env=fork_env(loop_api), cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sent = sent_bodies(loop_api)
    assert len(sent) == TURNS - 5
    at = len(sent[0]["messages"]) - 1
    for body in sent:
        edited = [i for i, m in enumerate(body["messages"]) if "EDITED RESULT" in json.dumps(m)]
        assert edited == [at], (edited, at)
    assert len(sent[-1]["messages"]) > at + 1
    _, link = fork_of(db)
    assert link["edits"] == {"messages": {"-1": "EDITED RESULT"}}  # as given: at the fork's turn


def test_live_from_takes_ids_cut_to_a_prefix_as_everywhere_else():
    from replayer.playback.fork_point import LiveError, fork_point

    def line(conv, index, turn_id):
        return {"conversation_id": conv, "index": index, "turn_id": turn_id, "attempt": 0,
                "started_at": f"2026-12-05T08:00:0{index}Z", "request": {"messages": []}}  # fmt: skip

    lines = [line("conv_01aaa111", 0, "turn_01xx0"), line("conv_01aaa111", 1, "turn_01xy1"),
             line("conv_01bbb222", 0, "turn_01zz0")]  # fmt: skip
    assert (fork_point(lines, "conv_01aaa:1").conversation_id, fork_point(lines, "conv_01aaa:1").index) == (
        "conv_01aaa111", 1)
    assert fork_point(lines, "turn_01xy").turn["turn_id"] == "turn_01xy1"
    assert fork_point(lines, "turn_01xy…").turn["turn_id"] == "turn_01xy1"  # cut as the browser shows it
    with pytest.raises(LiveError, match="begins 2 turn ids"):
        fork_point(lines, "turn_01x")
    with pytest.raises(LiveError, match="no conversation conv_9 in the source"):
        fork_point(lines, "conv_9:0")


def test_a_fork_of_a_cassette_into_another_database_suggests_no_compare_and_says_unpriced(loop_api, recorded,
                                                                                          tmp_path):
    """The source a cassette file, the fork recorded into another database: `compare` there
    could not find the original, so the closing line doesn't offer it; live calls whose model
    has no price are `?`, not $0.0000."""
    db, conv, work = recorded_loop(recorded, tmp_path)
    cassette = tmp_path / "run.jsonl"
    assert replayer(db, "export", "--conversation", conv, "--cassette", "-o", str(cassette)).returncode == 0
    other = tmp_path / "other.db"
    proc = replayer(other, "replay", str(cassette), "--live-from", "5", "--model", "claude-nova-9", "--yes",
                    *agent_cmd(), env=fork_env(loop_api), cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    last = [x for x in proc.stderr.splitlines() if x.startswith("replayer replay: fork ")][-1]
    assert f"live turns, ? ({TURNS - 5} calls with no price)" in last, last
    assert "replayer compare" not in last and "(replayer show conv_" in last


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_fork_into_a_locked_database_says_its_records_are_not_yet_written_and_links_them_once_written(
        loop_api, recorded, tmp_path, writer):
    """A fork whose database is locked through the end of its run: the end line says its records
    are not yet written and the writer keeps trying, then saves them beside it (as `record`'s
    summary says it), not that they "could not be written", and the command ends well (it failed
    on the locked database, writing the fork's link). Once the lock goes, the writer process
    writes them in, the fork's link with them."""
    from conftest import wait_until
    from test_failures import _held_under_lock

    db, conv, work = recorded_loop(recorded, tmp_path)
    cassette = tmp_path / "run.jsonl"
    assert replayer(db, "export", "--conversation", conv, "--cassette", "-o", str(cassette)).returncode == 0
    path, lock, env = _held_under_lock(tmp_path, writer, "30" if writer == "process" else "1")
    err = tmp_path / "stderr.txt"
    try:
        with open(err, "w") as f:  # (a file: the writer process outlives the command)
            proc = subprocess.run([*CLI, "--db", str(path), "replay", str(cassette), "--live-from", "5", "--system",
                                   "Be brief.", "--yes", *agent_cmd()], stdout=subprocess.DEVNULL, stderr=f,
                                  env={**env, **fork_env(loop_api)}, cwd=work, timeout=120)  # fmt: skip
        assert proc.returncode == 0, err.read_text()
        [last] = [x for x in err.read_text().splitlines() if x.startswith("replayer replay: fork ")]
        assert (f"5 live turns, $0.0225; 10 records not yet written to {path}: the writer keeps trying, then saves "
                "them in a file beside it (see the warnings above) (replayer show conv_") in last, last
        assert "could not be written" not in last
    finally:
        lock.rollback()
        lock.close()
    if writer == "process":
        assert wait_until(lambda: len(exported(path)) == 10, timeout=30), err.read_text()
        fork, link = fork_of(path)
        assert link == {"parent": conv, "kind": "fork", "turn_index": 5, "edits": {"system": "Be brief."}}


def test_max_turns_stops_the_live_part_with_an_api_error_to_the_agent(loop_api, recorded, tmp_path):
    db, conv, work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "replay", conv, "--live-from", "5", "--system", "Be brief.", "--max-turns", "2", "--yes",
                    *agent_cmd(), env=fork_env(loop_api), cwd=work)
    assert proc.returncode == 3, proc.stderr  # the agent's own exit on an API error
    assert "API ERROR 400 replayer: the fork's live part is stopped: --max-turns 2 reached" in proc.stdout
    assert len(sent_bodies(loop_api)) == 2
    fork, _ = fork_of(db)
    assert len([line for line in exported(db) if line["conversation_id"] == fork]) == 5 + 2
    assert f"answered 5 calls from conversation {conv}" in proc.stderr and "2 calls sent live" in proc.stderr
    assert "2 live turns, $" in proc.stderr and "the live part was stopped: --max-turns 2 reached" in proc.stderr


def test_budget_stops_the_live_part_once_the_live_calls_cost_that_much(loop_api, recorded, tmp_path):
    import math

    from replayer.pricing import default_table

    db, conv, work = recorded_loop(recorded, tmp_path)
    per_call = default_table().cost(exported(db)[5]["usage"], "claude-sonnet-4-5")
    assert per_call
    budget = per_call * 2.5
    proc = replayer(db, "replay", conv, "--live-from", "5", "--system", "Be brief.", "--budget", str(budget),
                    "--yes", *agent_cmd(), env=fork_env(loop_api), cwd=work)
    assert proc.returncode == 3, proc.stderr
    assert f"API ERROR 400 replayer: the fork's live part is stopped: --budget ${budget:g} reached" in proc.stdout
    assert len(sent_bodies(loop_api)) == math.ceil(budget / per_call)


def test_a_budget_the_live_calls_cost_exactly_stops_the_fork_though_their_float_sum_falls_short(
        loop_api, recorded, tmp_path):
    """Three live calls of $0.70 add up, in floats, to 2.0999999999999996: --budget 2.1 is
    reached all the same (money is compared to the billionth of a dollar, as the alerts do)."""
    from replayer.pricing import PriceTable

    db, conv, work = recorded_loop(recorded, tmp_path)
    prices = tmp_path / "prices.toml"
    prices.write_text('[[model]]\nids = ["claude-sonnet-4-5"]\ninput = 700.0\noutput = 0.0\ncache_write_5m = 0.0\n'
                      'cache_write_1h = 0.0\ncache_read = 0.0\nsource = "test"\ndate = "2026-01-01"\n')
    per_call = PriceTable.load(prices).cost(exported(db)[5]["usage"], "claude-sonnet-4-5")
    assert per_call == 0.7 and per_call + per_call + per_call < 2.1  # the float sum falls short
    proc = replayer(db, "--pricing", str(prices), "replay", conv, "--live-from", "5", "--system", "Be brief.",
                    "--budget", "2.1", "--yes", *agent_cmd(), env=fork_env(loop_api), cwd=work)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "API ERROR 400 replayer: the fork's live part is stopped: --budget $2.1 reached" in proc.stdout
    assert len(sent_bodies(loop_api)) == 3


def test_fork_runs_the_recorded_command_again_in_its_working_directory(loop_api, recorded, tmp_path):
    db, conv, work = recorded_loop(recorded, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = replayer(db, "fork", f"{conv}:5", "--system", "You are terse.", "--yes", env=fork_env(loop_api),
                    cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert f"running again in {work}: {sys.executable} agent.py 1234" in proc.stderr
    assert f"FINAL refunded after {TURNS - 1} steps" in proc.stdout  # agent.py, found in the recorded cwd
    sent = sent_bodies(loop_api)
    assert [len(b["messages"]) for b in sent] == [2 * t + 1 for t in range(5, TURNS)]
    assert all(b["system"] == "You are terse." for b in sent)
    _, link = fork_of(db)
    assert (link["parent"], link["turn_index"]) == (conv, 5)


def test_fork_of_a_run_not_recorded_by_record_is_refused_in_one_line(api, client, rec, db_path):
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    rec.flush()
    conv = exported(db_path)[0]["conversation_id"]
    proc = replayer(db_path, "fork", f"{conv}:0", "--yes", env=fork_env(api))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "was not recorded by `replayer record`" in line and f"replayer replay {conv} --live-from 0" in line


def test_going_live_without_an_api_key_is_refused_in_one_line(loop_api, recorded, tmp_path):
    db, conv, work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "replay", conv, "--live-from", "5", "--yes", *agent_cmd(),
                    env={"ANTHROPIC_BASE_URL": loop_api.url}, cwd=work)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "no API key: set ANTHROPIC_API_KEY" in line
    assert "or --upstream for a gateway" in line  # replay's own option (rerun's is --base-url)
    assert loop_api.received == []  # nothing reached the API, and the agent never ran
    assert "FINAL" not in proc.stdout


def test_edits_without_live_from_are_refused_in_one_line(loop_api, recorded, tmp_path):
    db, conv, work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "replay", conv, "--system", "x", *agent_cmd(), cwd=work)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("--system is for a fork: add --live-from N (the turn to go live from)")


async def test_f_in_the_browser_forks_the_run_at_the_turn_and_shows_its_turns_as_they_arrive(
        loop_api, recorded, tmp_path, monkeypatch):
    from textual.widgets import Static, TextArea
    from tui_data import settle

    from replayer.tui.app import make_app
    from replayer.tui.confirm import ConfirmScreen
    from replayer.tui.conversation import ConversationScreen
    from replayer.tui.rerun import RerunScreen

    db, conv, _ = recorded_loop(recorded, tmp_path)
    for name, value in fork_env(loop_api).items():
        monkeypatch.setenv(name, value)  # the fork's process inherits them
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        for _ in range(5):
            await pilot.press("j")
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, RerunScreen) and editor.fork
        assert "Fork turn 5 of " + conv in str(editor.query_one("#rr-title", Static).render())
        assert not editor.query("#rr-samples")  # one trajectory, not samples
        editor.query_one("#rr-system", TextArea).text = "You are terse."
        await pilot.press("ctrl+j")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "Fork the run at turn 5?" in str(app.screen.query_one(Static).render())
        assert sent_bodies(loop_api) == []  # nothing live before the answer
        await pilot.press("y")
        await settle(pilot)  # the fork's process has ended: settle waits for the worker that waits on it
        screen = app.screen
        assert isinstance(screen, ConversationScreen) and screen.conversation_id != conv
        for _ in range(100):
            if len(screen.timeline) == TURNS:
                break
            await pilot.pause(0.1)
        assert len(screen.timeline) == TURNS
    fork, link = fork_of(db)
    assert fork == screen.conversation_id
    assert link == {"parent": conv, "kind": "fork", "turn_index": 5, "edits": {"system": "You are terse."}}
    sent = sent_bodies(loop_api)
    assert len(sent) == TURNS - 5 and all(b["system"] == "You are terse." for b in sent)


@pytest.mark.parametrize("width", [100, 160])
async def test_a_forks_copied_turns_say_copy_whole_in_the_turn_list(loop_api, recorded, tmp_path, width):
    """The turn list's note `copy: costs nothing now` was cut to `copy: costs …` at 100 columns and
    `copy:…` at 160 (the notes column beside the chart is 6 wide): it says `copy`, whole, and the
    Usage tab says what that means for the turn's cost."""
    from textual.widgets import DataTable, Static
    from tui_data import settle

    from replayer.tui.app import make_app
    from replayer.tui.conversation import ConversationScreen

    db, conv, work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "replay", conv, "--live-from", "5", "--system", "You are terse.", "--yes", *agent_cmd(),
                    env=fork_env(loop_api), cwd=work)
    assert proc.returncode == 0, proc.stderr
    fork, _ = fork_of(db)
    app = make_app(db)
    async with app.run_test(size=(width, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # the newest: the fork
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationScreen) and screen.conversation_id == fork
        table = screen.query_one("#turns", DataTable)
        lines = ["".join(segment.text for segment in table.render_line(y)).rstrip() for y in range(1, 1 + TURNS)]
        assert [line.endswith(" copy") for line in lines] == [True] * 5 + [False] * 5, lines
        await pilot.press("4")
        await settle(pilot)
        assert "a fork's copy, it costs nothing now" in str(screen.query_one("#usage-body", Static).render())


def test_a_streaming_agent_forks_too_and_its_replayed_turns_keep_their_recorded_events(loop_api, tmp_path):
    from replayer.store.export import cassette_lines

    work = tmp_path / "work"
    work.mkdir()
    (work / "agent.py").write_text(f"SYSTEM = {SYSTEM!r}\n" + textwrap.dedent(AGENT))
    db = tmp_path.resolve() / "stream.db"
    command = ["--", sys.executable, "agent.py", "1234", "stream"]
    assert replayer(db, "record", *command, env=fork_env(loop_api), cwd=work).returncode == 0
    conv = exported(db)[0]["conversation_id"]
    loop_api.received.clear()
    proc = replayer(db, "replay", conv, "--live-from", "7", "--system", "You are terse.", "--yes", *command,
                    env=fork_env(loop_api), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert f"FINAL refunded after {TURNS - 1} steps" in proc.stdout
    assert "answered 7 calls (7 streams)" in proc.stderr, proc.stderr  # turn 7, sent live, not among them
    sent = sent_bodies(loop_api)
    assert [b["stream"] for b in sent] == [True] * (TURNS - 7)
    assert all(b["system"] == "You are terse." for b in sent)
    fork, _ = fork_of(db)
    store = Store(open_db(db, create=False))
    original = list(cassette_lines(store, conversation_id=conv))
    forked = list(cassette_lines(store, conversation_id=fork))
    assert len(forked) == TURNS and all(line["stream"] for line in forked)
    for before, after in zip(original[:7], forked[:7], strict=True):
        assert after["events"] is not None
        assert [(e["event"], e["data"]) for e in after["events"]] == [(e["event"], e["data"]) for e in before["events"]]
        assert [e["ms"] for e in after["events"]] == [e["ms"] for e in before["events"]]
        assert after["response"] == before["response"]


async def test_f_on_a_turn_of_a_run_record_did_not_make_says_so_and_stays(tmp_path):
    from tui_data import build_db, open_second_conversation, settle

    from replayer.tui.app import make_app
    from replayer.tui.conversation import ConversationScreen

    app = make_app(build_db(tmp_path / "tui.db"))
    async with app.run_test(size=(160, 48)) as pilot:
        await open_second_conversation(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, ConversationScreen)  # the editor closed at once: nothing to fork
        notes = [str(n.message) for n in app._notifications]
        assert any("was not recorded by `replayer record`" in n and "--live-from" in n for n in notes), notes


SUBAGENT_AGENT = """
    import anthropic

    client = anthropic.Anthropic()
    main = [{"role": "user", "content": "refund order 1234"}]
    review = []  # a subagent, started at main turn 2, asked to review each main step from then on
    for turn in range(40):
        reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=200, system=SYSTEM, messages=main)
        main.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        if turn >= 2:
            review.append({"role": "user", "content": "review: " + reply.content[0].text})
            said = client.messages.create(model="claude-haiku-4-5", max_tokens=100, system="You review.",
                                          messages=review)
            review.append({"role": "assistant", "content": said.content[0].text})
        if reply.stop_reason == "end_turn":
            print("FINAL", reply.content[0].text)
            break
        main.append({"role": "user", "content": "go on"})
"""


def subagent_reply(body: dict) -> Reply:
    """Main: a step per turn, worded after the system prompt; the reviewer: echoes what it's shown."""
    messages = body.get("messages") or []
    if body.get("system") == "You review.":
        text, stop = "ok: " + messages[-1]["content"], "end_turn"
    else:
        turn = (len(messages) - 1) // 2
        text = f"step {turn}" + (" (terse)" if "terse" in body.get("system", "") else "")
        stop = "end_turn" if turn == TURNS - 1 else "max_tokens"
    return text_reply(body, text, stop)


def text_reply(body: dict, text: str, stop: str = "end_turn") -> Reply:
    """A one-text-block answer, its id from the history's length."""
    usage = {"input_tokens": 100, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return Reply(body={"id": f"msg_{len(body.get('messages') or []):02d}", "type": "message", "role": "assistant",
                       "model": body.get("model"), "content": [{"type": "text", "text": text}],
                       "stop_reason": stop, "stop_sequence": None, "usage": usage})


def recorded_agent(tmp_path: Path, source: str, api: FakeAPI) -> tuple[Path, Path, list[dict]]:
    """`source` (with SYSTEM set) as work/agent.py, recorded by `replayer record` against `api`:
    its folder, its database and the database's export lines."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "agent.py").write_text(f"SYSTEM = {SYSTEM!r}\n" + textwrap.dedent(source))
    db = tmp_path.resolve() / "agent.db"
    proc = replayer(db, "record", "--", sys.executable, "agent.py", env=fork_env(api), cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work, db, exported(db)


def test_a_subagent_started_before_the_fork_that_goes_on_differently_becomes_a_fork_of_its_own(tmp_path):
    """The reviewer started at main turn 2 and is shown each main step; forked at main turn 5 with
    a new prompt, main's steps read otherwise, so the reviewer's turn 3 on differ. They go live as a
    new conversation holding copies of the reviewer's turns 0-2, linked as a fork of it; the
    recorded reviewer is left as it was."""
    with FakeAPI(responder=subagent_reply) as api:
        work, db, before = recorded_agent(tmp_path, SUBAGENT_AGENT, api)
        main = before[0]["conversation_id"]
        reviewer = next(line["conversation_id"] for line in before if line["conversation_id"] != main)
        assert [line["index"] for line in before if line["conversation_id"] == reviewer] == list(range(TURNS - 2))

        run = Store(open_db(db, create=False)).conversation_tags(main)["run"]  # both conversations
        proc = replayer(db, "replay", run, "--live-from", f"{main}:5", "--system", "You are terse.", "--yes",
                        "--", sys.executable, "agent.py", env=fork_env(api), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert f"FINAL step {TURNS - 1} (terse)" in proc.stdout
    after = exported(db)
    assert [line for line in after if line["conversation_id"] in (main, reviewer)] == before  # untouched
    links = dict(Store(open_db(db, create=False)).db.execute(
        "SELECT parent_id, conversation_id FROM conversation_links WHERE kind = 'fork'").fetchall())
    assert set(links) == {main, reviewer}
    branch = [line for line in after if line["conversation_id"] == links[reviewer]]
    originals = [line for line in before if line["conversation_id"] == reviewer]
    assert [line["index"] for line in branch] == list(range(TURNS - 2))
    assert [line.get("copied_from") for line in branch[:3]] == [line["turn_id"] for line in originals[:3]]
    assert [line["request"] for line in branch[:3]] == [line["request"] for line in originals[:3]]
    assert all("copied_from" not in line and line["response"]["content"][0]["text"].endswith("(terse)")
               for line in branch[3:])
    assert f"{reviewer} went on differently from its turn 3: continued live as {links[reviewer]}" in proc.stderr
    assert "not asked for" not in proc.stderr.splitlines()[-1], proc.stderr


@pytest.mark.parametrize(("args", "said"), [
    ({"messages": ("2",)}, "--message wants N=TEXT, not '2'"),
    ({"messages": ("two=hi",)}, "--message wants N=TEXT with N a message number, not two='hi'"),
    ({"sets": ("temperature",)}, "--set wants PATH=JSON, not 'temperature'"),
    ({"sets": ("=1",)}, "--set wants PATH=JSON, not '=1'"),
    ({"sets": ("temperature=warm",)}, "--set temperature: 'warm' is not JSON"),
    ({"tool_results": ("=text",)}, "--tool-result wants TOOL_USE_ID=TEXT (the id of the tool call it answers), "
                                   "not '=text'"),
])
def test_each_key_value_edit_option_says_what_it_wants(args, said):
    from replayer.cli.base import UserError
    from replayer.cli.edits import edits_from

    with pytest.raises(UserError) as got:
        edits_from(None, None, args.get("messages", ()), args.get("sets", ()), args.get("tool_results", ()))
    assert str(got.value).startswith(said)
    edits = edits_from(None, None, ("2=hi",), ("temperature=0.5",), ("toolu_1=a=b",))
    assert (edits.messages, edits.set, edits.tool_results) == ({2: "hi"}, {"temperature": 0.5}, {"toolu_1": "a=b"})


def test_a_turn_that_is_not_there_is_one_line_for_fork_and_rerun(loop_api, recorded, tmp_path):
    db, conv, _ = recorded_loop(recorded, tmp_path)
    for command in ("fork", "rerun"):
        for spec in ("turn_nothing", "nothing:3"):
            proc = replayer(db, command, spec)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
            assert proc.stderr.strip() == f"replayer: no turn {spec!r} in this database: give CONVERSATION:N or a " \
                                          "turn id (replayer show CONVERSATION --json)"
        proc = replayer(db, command, f"{conv}:{TURNS}")
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"replayer: {conv} has turns 0..{TURNS - 1}, not '{TURNS}'"


def test_the_browsers_fork_command_runs_this_replayer_even_where_a_replayer_folder_shadows_it(tmp_path):
    """The browser starts `replayer fork` with its own interpreter from wherever it was opened: a
    `replayer` folder there (a checkout of another version) must not be the one that runs."""
    from replayer.replay import Edits
    from replayer.tui.fork import fork_command

    decoy = tmp_path / "replayer"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the replayer folder of the working directory ran')\n")
    (decoy / "cli.py").write_text("raise SystemExit('the replayer folder of the working directory ran')\n")
    cmd = fork_command(tmp_path / "x.db", "turn_x", Edits(), "conv_x")
    interpreter = cmd[: cmd.index("--db")]  # the interpreter, its flags and the module
    done = subprocess.run([*interpreter, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "working directory ran" not in done.stderr
    assert done.stdout.startswith("replayer, version")


TWINS = """
    import sys
    import threading
    import anthropic

    client = anthropic.Anthropic(max_retries=0)
    start = threading.Barrier(3)
    done = []

    def converse():
        messages = [{"role": "user", "content": "plan the refund"}]
        start.wait()
        for _ in range(4):
            reply = client.messages.create(model="claude-haiku-4-5", max_tokens=20, system=SYSTEM, messages=messages)
            messages += [{"role": "assistant", "content": reply.content[0].text}, {"role": "user", "content": "go on"}]
        done.append(len(messages))

    threads = [threading.Thread(target=converse) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("DONE", sorted(done))
"""


def twin_reply(body: dict) -> Reply:
    """The same answer to the same history, whatever the system prompt (temperature 0)."""
    return text_reply(body, f"step {len(body.get('messages') or [])}")


def test_a_fork_of_one_of_identical_concurrent_conversations_follows_that_one_alone(tmp_path):
    """Three threads hold the same conversation at once, answered alike. Forked at turn 0 of one
    of them, only one thread's calls go live into the fork (its context grows 1, 3, 5, 7); the
    other two are answered by their own recordings and nothing is left unanswered."""
    with FakeAPI(responder=twin_reply) as api:
        _work, db, before = recorded_agent(tmp_path, TWINS, api)
        convs = sorted({line["conversation_id"] for line in before})
        assert len(convs) == 3 and len(before) == 12
        recorded = len(api.received)
        proc = replayer(db, "fork", f"{convs[1]}:0", "--system", "You are terse.", "--yes", env=fork_env(api))
        live = sent_bodies(api)[recorded:]
    assert proc.returncode == 0, proc.stderr
    assert "DONE [9, 9, 9]" in proc.stdout
    assert [len(b["messages"]) for b in live] == [1, 3, 5, 7], proc.stderr  # one after another
    assert all(b["system"] == "You are terse." for b in live)
    fork, _link = fork_of(db)
    lines = [line for line in exported(db) if line["conversation_id"] == fork]
    assert [len(line["request"]["messages"]) for line in lines] == [1, 3, 5, 7]
    last = proc.stderr.strip().splitlines()[-1]
    assert "no mismatch" in last and "not asked for" not in last, proc.stderr


TWINS_IN_ORDER = """
    import os
    import threading
    import anthropic

    client = anthropic.Anthropic(max_retries=0)
    turns = {name: threading.Event() for name in ("x0", "y0", "y1", "x1")}
    ORDER = os.environ["ORDER"].split()  # the order the two conversations' turns are asked in

    def converse(name):
        messages = [{"role": "user", "content": "plan the refund"}]
        for i in range(2):
            step = f"{name}{i}"
            at = ORDER.index(step)
            if at:
                turns[ORDER[at - 1]].wait()
            reply = client.messages.create(model="claude-haiku-4-5", max_tokens=20, system=SYSTEM, messages=messages)
            messages += [{"role": "assistant", "content": reply.content[0].text}, {"role": "user", "content": "go on"}]
            turns[step].set()

    threads = [threading.Thread(target=converse, args=(name,)) for name in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("DONE")
"""


def test_a_twins_later_turn_asked_before_the_fork_turn_is_answered_from_the_recording(tmp_path):
    """Two identical conversations recorded x0 y0 y1 x1, forked at y's turn 0, replayed x0 x1 y0
    y1: x1 matched y's recorded turn 1 (recorded first, and no call had taken y's turn 0 yet) and
    started the fork there, at turn 1 (live bodies of 3 then 1 messages; seen in CI under load as
    a flaky twin test). The forked conversation's later turns are never the recording's answers:
    x1 is answered by x's own, and the fork starts at y0."""
    with FakeAPI(responder=twin_reply) as api:
        work = tmp_path / "work"
        work.mkdir()
        (work / "agent.py").write_text(f"SYSTEM = {SYSTEM!r}\n" + textwrap.dedent(TWINS_IN_ORDER))
        db = tmp_path.resolve() / "agent.db"
        proc = replayer(db, "record", "--", sys.executable, "agent.py", env={**fork_env(api), "ORDER": "x0 y0 y1 x1"},
                        cwd=work)  # fmt: skip
        assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr
        before = exported(db)
        firsts = sorted((line["started_at"], line["conversation_id"]) for line in before if line["index"] == 0)
        assert len(firsts) == 2 and len(before) == 4
        y = firsts[1][1]  # the conversation whose turn 0 came second
        recorded = len(api.received)
        proc = replayer(db, "fork", f"{y}:0", "--system", "You are terse.", "--yes", cwd=work,
                        env={**fork_env(api), "ORDER": "x0 x1 y0 y1"})  # fmt: skip
        live = sent_bodies(api)[recorded:]
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr
    assert [len(b["messages"]) for b in live] == [1, 3], proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "answered 2 calls" in last and "no mismatch" in last and "not asked for" not in last, proc.stderr


OWN_RECORDER_AGENT = AGENT.replace("    client = anthropic.Anthropic()\n", """\
    from replayer import Recorder

    rec = Recorder(sys.argv[2])  # the agent records itself, as the README's Recording section shows
    client = rec.wrap(anthropic.Anthropic())
""")


def test_a_recorder_in_the_agents_own_code_records_nothing_under_replay_or_fork(loop_api, tmp_path):
    """Replayed answers cost nothing and are the recording's: the agent's own Recorder, writing
    to the very database replayed, adds nothing; a fork's live calls are recorded once, by the
    fork, as sent (edited)."""
    import subprocess as sp

    agent = tmp_path / "agent.py"
    agent.write_text(f"SYSTEM = {SYSTEM!r}\n" + textwrap.dedent(OWN_RECORDER_AGENT))
    db = tmp_path.resolve() / "agent.db"
    run = sp.run([sys.executable, str(agent), "1234", str(db)], capture_output=True, text=True, timeout=120,
                 env={**os.environ, **fork_env(loop_api)})
    assert run.returncode == 0 and "FINAL" in run.stdout, run.stderr
    recorded = exported(db)
    assert len(recorded) == TURNS
    conv = recorded[0]["conversation_id"]
    command = ["--", sys.executable, str(agent), "1234", str(db)]

    proc = replayer(db, "replay", conv, *command, env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 0 and "FINAL" in proc.stdout, proc.stderr
    assert exported(db) == recorded  # nothing written

    proc = replayer(db, "replay", conv, "--live-from", "5", "--system", "Forked.", "--yes", *command,
                    env=fork_env(loop_api))
    assert proc.returncode == 0 and "FINAL" in proc.stdout, proc.stderr
    fork, _ = fork_of(db)
    lines = exported(db)
    assert {line["conversation_id"] for line in lines} == {conv, fork}  # no copy of the agent's own
    forked = [line for line in lines if line["conversation_id"] == fork]
    assert len(forked) == TURNS
    assert [line["request"]["system"] for line in forked[5:]] == ["Forked."] * (TURNS - 5)


def test_a_tool_result_for_a_call_the_request_does_not_answer_is_one_line_before_going_live(
        loop_api, recorded, tmp_path):
    """A typo in --tool-result would go live and change nothing: refused, naming the ids there."""
    db, conv, work = recorded_loop(recorded, tmp_path)
    for args in (["fork", f"{conv}:3"], ["replay", conv, "--live-from", "3"]):
        command = [] if args[0] == "fork" else agent_cmd()
        proc = replayer(db, *args, "--tool-result", "toolu_typo=RAIN", "--yes", *command, env=fork_env(loop_api),
                        cwd=work)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[-1] == (
            "replayer: --tool-result toolu_typo: turn 3's request holds no tool_result for that id; its tool "
            "calls: toolu_00, toolu_01, toolu_02 (give one of them)"), proc.stderr
    proc = replayer(db, "fork", f"{conv}:0", "--tool-result", "toolu_00=RAIN", "--yes", env=fork_env(loop_api))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "replayer: --tool-result toolu_00: turn 0's request holds no tool_result (no tool call to give a result "
        "for): fork at a later turn"), proc.stderr
    assert sent_bodies(loop_api) == []  # nothing went live
    assert len(exported(db)) == TURNS


def test_a_limit_reached_after_one_live_turn_says_turn_not_turns(loop_api, recorded, tmp_path):
    from replayer.pricing import default_table

    db, conv, work = recorded_loop(recorded, tmp_path)
    per_call = default_table().cost(exported(db)[5]["usage"], "claude-sonnet-4-5")
    for limit, said in ((["--max-turns", "1"], "--max-turns 1 reached (1 live turn sent)"),
                        (["--budget", str(per_call / 2)], "spent on 1 live turn)")):
        proc = replayer(db, "replay", conv, "--live-from", "5", "--system", "Be brief.", *limit, "--yes",
                        *agent_cmd(), env=fork_env(loop_api), cwd=work)
        assert proc.returncode == 3, proc.stderr
        assert said in proc.stdout and said in proc.stderr, proc.stdout + proc.stderr


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def overloaded_once(turn: int, delay: float = 0.0):
    """The loop's model, but turn `turn`'s first request gets a 529 (the SDK retries it); each
    answer after `delay` seconds."""
    failed: list[int] = []

    def respond(body: dict) -> Reply:
        asked = "max_tokens" in body  # a call, not the estimate's count_tokens
        if asked and (len(body.get("messages") or []) - 1) // 2 == turn and not failed:
            failed.append(turn)
            return Reply(status=529, body=OVERLOADED, headers={"retry-after-ms": "1"})
        reply = loop_reply(body)
        reply.delay = delay
        return reply

    return respond


@pytest.fixture(scope="module")
def retried(tmp_path_factory) -> tuple[Path, str, Path]:
    """The loop recorded by `replayer record` with turn 1 retried (a 529, then its answer), each
    answer 0.1 s after its request: (db, conversation, workdir). Tests fork a copy of it."""
    tmp = tmp_path_factory.mktemp("retried")
    with FakeAPI(responder=overloaded_once(1, delay=0.1)) as api:
        work, db, lines = recorded_agent(tmp, AGENT.replace("sys.argv[1]", '"1234"'), api)
    assert [(line["index"], line["status"]) for line in lines[:3]] == [(0, 200), (1, 529), (1, 200)]
    return db, lines[0]["conversation_id"], work


def test_a_forks_copied_turns_keep_their_failed_attempts_so_compare_calls_them_the_same(loop_api, retried,
                                                                                        tmp_path):
    """Turn 1 was a 529 then its answer: forked at turn 2, the fork's turn 1 holds both attempts
    as recorded (each its own status, error and usage, none of it spend), and compare shows the
    copied turns `same`."""
    db, conv, work = recorded_loop(retried, tmp_path)
    proc = replayer(db, "fork", f"{conv}:2", "--system", "You are terse.", "--yes", env=fork_env(loop_api))
    assert proc.returncode == 0, proc.stderr
    fork, _ = fork_of(db)
    lines = exported(db)
    original = [line for line in lines if line["conversation_id"] == conv][:3]
    copies = [line for line in lines if line["conversation_id"] == fork and line.get("copied_from")]
    keys = ("index", "attempt", "status", "error", "usage", "latency_ms", "response")
    assert [{k: line[k] for k in keys} for line in copies] == [{k: line[k] for k in keys} for line in original]
    assert [line["copied_from"] for line in copies] == [line["turn_id"] for line in original]
    compared = json.loads(replayer(db, "compare", conv, fork, "--json").stdout)
    assert [(p["status"], p["differences"]) for p in compared["pairs"][:2]] == [("same", []), ("same", [])]
    assert compared["pairs"][1]["b"]["attempts"] == 2 and compared["pairs"][1]["b"]["errors"] == 1
    assert compared["a"]["errors"] == compared["b"]["errors"] == 1
    stats = json.loads(replayer(db, "stats", "--json").stdout)
    assert stats["reruns"]["turns"] == TURNS - 2  # the copies, failed ones too, are no spend


def test_a_forks_wall_time_holds_the_copied_turns_as_long_as_they_took_in_the_original(loop_api, retried,
                                                                                       tmp_path):
    """The copies keep their recorded spacing and latency, shifted so the last one ends where the
    live part begins: the fork's wall time is the copied prefix's, as recorded, plus its live part."""
    from datetime import datetime

    def at(line: dict) -> float:
        return datetime.fromisoformat(line["started_at"].replace("Z", "+00:00")).timestamp()

    db, conv, work = recorded_loop(retried, tmp_path)
    proc = replayer(db, "fork", f"{conv}:2", "--system", "You are terse.", "--yes", env=fork_env(loop_api))
    assert proc.returncode == 0, proc.stderr
    fork, _ = fork_of(db)
    lines = exported(db)
    original = [line for line in lines if line["conversation_id"] == conv]
    forked = [line for line in lines if line["conversation_id"] == fork]
    copies, live = forked[:3], forked[3:]
    assert all(line.get("copied_from") for line in copies) and not any(line.get("copied_from") for line in live)
    shift = at(copies[0]) - at(original[0])
    assert [at(c) - shift for c in copies] == pytest.approx([at(o) for o in original[:3]], abs=0.002)
    copied_end = at(copies[-1]) + copies[-1]["latency_ms"] / 1000
    # the copies end as the live part starts: the gap is how long the fork's process took to send
    # its first live call (tens of ms; under a loaded machine's scheduling, more), never negative
    gap = at(live[0]) - copied_end
    assert -0.002 <= gap < 0.5, gap
    prefix_s = at(original[2]) + original[2]["latency_ms"] / 1000 - at(original[0])
    assert prefix_s > 0.2  # two answers of 0.1 s, one after a retry
    compared = json.loads(replayer(db, "compare", conv, fork, "--json").stdout)
    live_s = at(live[-1]) + live[-1]["latency_ms"] / 1000 - at(live[0])
    assert compared["b"]["wall_s"] == pytest.approx(prefix_s + gap + live_s, abs=0.01)


def test_max_turns_counts_turns_so_a_retried_live_call_is_one_turn(recorded, tmp_path):
    """--max-turns 2, and the first live call gets a 529 that the SDK retries: turns 5 and 6 both
    go live (turn 5 in two attempts) before the live part stops, and the stop says so."""
    db, conv, work = recorded_loop(recorded, tmp_path)
    with FakeAPI(responder=overloaded_once(5)) as api:
        proc = replayer(db, "replay", conv, "--live-from", "5", "--system", "Be brief.", "--max-turns", "2", "--yes",
                        *agent_cmd(), env=fork_env(api), cwd=work)
        sent = sent_bodies(api)
    assert proc.returncode == 3, proc.stderr
    assert [len(b["messages"]) for b in sent] == [11, 11, 13], (proc.stdout, proc.stderr)  # turn 5, its retry, turn 6
    stop = "--max-turns 2 reached (2 live turns (3 attempts) sent)"
    assert f"API ERROR 400 replayer: the fork's live part is stopped: {stop}" in proc.stdout
    fork, _ = fork_of(db)
    lines = [line for line in exported(db) if line["conversation_id"] == fork]
    assert [(line["index"], line["attempt"], line["status"]) for line in lines[5:]] == [(5, 0, 529), (5, 1, 200),
                                                                                          (6, 0, 200)]
    assert "at turn 5: 2 live turns (3 attempts), $" in proc.stderr and f"was stopped: {stop}" in proc.stderr
    # the last line counts calls as `record` does (it said `3 calls sent live`: the attempts)
    assert "; 2 calls (3 attempts) sent live;" in proc.stderr.splitlines()[-1], proc.stderr


def test_fork_takes_ignore_for_an_agent_that_puts_the_time_in_its_prompt(loop_api, tmp_path):
    """The system prompt holds the time, so no request of a new run matches the recording: the
    fork says the agent never reached the turn and names the remedy, `--ignore system`; with it
    the fork goes live from turn 2."""
    timed = AGENT.replace("sys.argv[1]", '"1234"').replace("system=SYSTEM,", "system=SYSTEM + str(time.time()),")
    work, db, before = recorded_agent(tmp_path, "import time\n" + textwrap.dedent(timed), loop_api)
    conv = before[0]["conversation_id"]
    proc = replayer(db, "fork", f"{conv}:2", "--model", "claude-haiku-4-5", "--yes", env=fork_env(loop_api))
    ends = [x for x in proc.stderr.splitlines() if "never reached turn 2" in x]
    assert len(ends) == 1 and ends[0].endswith(
        "no fork was recorded; the request differed from the recording at system: if it changes from run to run "
        "(a timestamp), fork with --ignore system"), proc.stderr
    proc = replayer(db, "fork", f"{conv}:2", "--ignore", "system", "--model", "claude-haiku-4-5", "--yes",
                    env=fork_env(loop_api))
    assert proc.returncode == 0, proc.stderr
    assert f"FINAL refunded after {TURNS - 1} steps" in proc.stdout
    fork, link = fork_of(db)
    assert link["turn_index"] == 2
    lines = [line for line in exported(db) if line["conversation_id"] == fork]
    assert [line["model"] for line in lines] == ["claude-sonnet-4-5"] * 2 + ["claude-haiku-4-5"] * (TURNS - 2)
    bad = replayer(db, "fork", f"{conv}:2", "--ignore", "system..text", "--yes", env=fork_env(loop_api))
    said = bad.stderr.strip()
    assert bad.returncode == 2 and said.startswith("replayer: --ignore 'system..text' is not a field path")
    assert len(said.splitlines()) == 1


async def test_the_browsers_fork_editor_takes_ignore_paths_too(loop_api, tmp_path, monkeypatch):
    """The fork a time-stamping agent needs `--ignore system` for can be made from the browser:
    the fork editor has the field; a path that isn't one is refused in a notice, nothing run."""
    from textual.widgets import Input
    from tui_data import settle

    from replayer.tui.app import make_app
    from replayer.tui.confirm import ConfirmScreen
    from replayer.tui.conversation import ConversationScreen
    from replayer.tui.rerun import RerunScreen

    timed = AGENT.replace("sys.argv[1]", '"1234"').replace("system=SYSTEM,", "system=SYSTEM + str(time.time()),")
    work, db, before = recorded_agent(tmp_path, "import time\n" + textwrap.dedent(timed), loop_api)
    conv = before[0]["conversation_id"]
    for name, value in fork_env(loop_api).items():
        monkeypatch.setenv(name, value)
    app = make_app(db, refresh_seconds=0.2)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("j", "j")
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, RerunScreen) and editor.fork
        editor.query_one("#rr-model", Input).value = "claude-haiku-4-5"
        editor.query_one("#rr-ignore", Input).value = "system..text"
        await pilot.press("ctrl+j")
        await settle(pilot)
        assert app.screen is editor  # refused before anything runs
        assert any("'system..text' is not a field path" in str(n.message) for n in app._notifications)
        editor.query_one("#rr-ignore", Input).value = "system"
        await pilot.press("ctrl+j")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationScreen) and screen.conversation_id != conv
        for _ in range(150):
            if len(screen.timeline) == TURNS:
                break
            await pilot.pause(0.1)
        assert len(screen.timeline) == TURNS
    fork, link = fork_of(db)
    assert link["turn_index"] == 2
    lines = [line for line in exported(db) if line["conversation_id"] == fork]
    assert [line["model"] for line in lines] == ["claude-sonnet-4-5"] * 2 + ["claude-haiku-4-5"] * (TURNS - 2)


def test_fork_shows_the_recorded_command_as_a_shell_would_take_it(loop_api, recorded, tmp_path):
    """argv [python, agent.py, "weather loop please"] was shown `python agent.py weather loop
    please`, three arguments to whoever copies it; now the one with spaces is quoted."""
    import shlex
    import sqlite3

    db, conv, work = recorded_loop(recorded, tmp_path)
    argv = [sys.executable, "-c", "pass", "weather loop please"]  # ends at once: the line comes first
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET argv_json = ?", [json.dumps(argv)])
    proc = replayer(db, "fork", f"{conv}:5", "--system", "You are terse.", "--yes", env=fork_env(loop_api), cwd=work)
    said = f"running again in {work}: {shlex.quote(sys.executable)} -c pass 'weather loop please'\n"
    assert said in proc.stderr, proc.stderr
