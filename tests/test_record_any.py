"""`replayer record -- ANY COMMAND`: a program in any language is recorded through the recording
proxy the command puts on ANTHROPIC_BASE_URL, a Python program's calls exactly once (middleware
and proxy both on the way), every call tagged with the run's id (`replayer list --run`).

The TypeScript case runs the official SDK from npm (tests/ts, installed by `.ci/run`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FAKE_KEY, exported, sent_bodies

from replayer.fakeapi import Reply, message_events

TS = Path(__file__).resolve().parent / "ts"
CLI = [sys.executable, "-m", "replayer.cli"]
RUN_LINE = re.compile(r" \(run (run_[0-9a-f]{28})\)")


def replayer(db: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--db", str(db), *args], capture_output=True, text=True, timeout=180, cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def summary(proc: subprocess.CompletedProcess[str]) -> str:
    """The record command's one line: the last on stderr."""
    ours = [line for line in proc.stderr.splitlines() if line.startswith("replayer:")]
    assert len(ours) == 1 and proc.stderr.splitlines()[-1] == ours[0], proc.stderr
    return ours[0]


def run_of(line: str) -> str:
    found = RUN_LINE.search(line)
    assert found, line
    return found.group(1)


def listed(db: Path, run: str) -> list[dict]:
    proc = replayer(db, "list", "--run", run, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def message(n: int, content: list[dict], stop: str) -> dict:
    return {
        "id": f"msg_ts{n:020d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 40 + n, "output_tokens": 9, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0},
    }


def node_agent() -> list[str]:
    """`node tests/ts/agent.mjs`, or a failure saying how to install it (never a skip)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: install Node.js 18+, then run: npm ci --prefix tests/ts")
    if not (TS / "node_modules" / "@anthropic-ai" / "sdk" / "package.json").exists():
        pytest.fail("the TypeScript SDK is not installed for the tests: run: npm ci --prefix tests/ts")
    return [node, str(TS / "agent.mjs")]


def test_a_typescript_agents_streaming_tool_loop_is_recorded_as_sent_and_received(api, tmp_path):
    """The official TypeScript SDK, streaming, reaching the fake through the proxy that `record`
    puts on ANTHROPIC_BASE_URL (the fake's URL, which the variable held, is the upstream): the
    export holds each request as the fake received it and each response as the
    message the fake streamed and the SDK built; the exit code is the program's."""
    replies = [
        message(1, [{"type": "text", "text": "Let me read the file first."},
                    {"type": "tool_use", "id": "toolu_ts1", "name": "read_file", "input": {"path": "README.md"}}],
                "tool_use"),
        message(2, [{"type": "text", "text": "README.md says hello."}], "end_turn"),
    ]
    api.enqueue(*(Reply(sse=message_events(m), headers={"request-id": f"req_ts{i}"}) for i, m in enumerate(replies)))
    db = tmp_path.resolve() / "ts.db"
    proc = replayer(db, "record", "--", *node_agent(), "5",
                    env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY})
    assert proc.returncode == 5, proc.stderr
    built = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [b["stop_reason"] for b in built] == ["tool_use", "end_turn"], proc.stdout

    lines = exported(db)
    assert [line["request"] for line in lines] == sent_bodies(api)  # as sent, in order
    assert [line["response"] for line in lines] == replies
    # the SDK's own accumulation of each stream (less the field it adds itself) is the same message
    assert [{k: v for k, v in b.items() if k != "parsed_output"} for b in built] == replies
    assert [line["index"] for line in lines] == [0, 1] and len({line["conversation_id"] for line in lines}) == 1
    assert all(line["stream"] and line["status"] == 200 and line["ttft_ms"] is not None for line in lines)
    assert [line["request_id"] for line in lines] == ["req_ts0", "req_ts1"]
    sent_version = api.received[0]["headers"]["anthropic-version"]
    assert all(line["request_headers"] == {"anthropic-version": sent_version} for line in lines)
    assert FAKE_KEY.encode() not in db.read_bytes()

    line = summary(proc)
    run = run_of(line)
    assert line == f"replayer: recorded 2 calls in 1 conversation to {db} (run {run})"
    assert [c["conversation_id"] for c in listed(db, run)] == [lines[0]["conversation_id"]]


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def test_a_python_child_is_recorded_once_with_middleware_and_proxy_both_on_the_way(api, tmp_path):
    """Clients that take the base URL from the environment go through the proxy, and their
    middleware records them (the proxy forwards them, marked, without recording); a client given
    the fake's URL itself skips the proxy and is recorded by the middleware: each call once, all
    under the run's id, a conversation the program enters itself included."""
    script = write(tmp_path / "agent.py", f"""
        import anthropic
        from replayer import Recorder

        def ask(client, text):
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=10,
                                        messages=[{{"role": "user", "content": text}}]) as s:
                s.get_final_message()

        ask(anthropic.Anthropic(), "through the proxy")
        anthropic.Anthropic().messages.create(model="claude-haiku-4-5", max_tokens=10,
                                              messages=[{{"role": "user", "content": "plain, through the proxy"}}])
        ask(anthropic.Anthropic(base_url={api.url!r}), "straight to the API")
        with Recorder().conversation("conv_mine", tags={{"run": "not this one", "env": "ci"}}):
            ask(anthropic.Anthropic(), "in a conversation of its own")
        raise SystemExit(4)
    """)
    db = tmp_path.resolve() / "py.db"
    proc = replayer(db, "record", "--", sys.executable, str(script),
                    env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY}, cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr

    sent = [json.loads(r["body"])["messages"][0]["content"] for r in api.received]
    lines = exported(db)
    assert sorted(line["request"]["messages"][0]["content"] for line in lines) == sorted(sent)  # each once
    assert len(sent) == 4
    # through the proxy the mark is taken off before the API; straight to it, the mark is there
    proxied = {json.loads(r["body"])["messages"][0]["content"]: "x-replayer-recorded" not in r["headers"]
               for r in api.received}
    assert proxied == {"through the proxy": True, "plain, through the proxy": True, "straight to the API": False,
                       "in a conversation of its own": True}
    run = run_of(summary(proc))
    conversations = listed(db, run)
    assert {c["conversation_id"] for c in conversations} == {line["conversation_id"] for line in lines}
    mine = next(c for c in conversations if c["conversation_id"] == "conv_mine")
    assert mine["tags"] == {"run": run, "env": "ci"}
    assert summary(proc) == f"replayer: recorded 4 calls in {len(conversations)} conversations to {db} (run {run})"


def test_a_program_without_the_hook_is_recorded_by_the_proxy_under_the_given_ids(api, tmp_path):
    """python -I ignores PYTHONPATH, so no middleware loads: the proxy records its SDK's calls,
    in the conversation and under the user given, with the exit code kept. Each run's
    conversations list apart (`list --run`), and `show` names the run."""
    script = write(tmp_path / "bare.py", """
        import sys
        import anthropic
        client = anthropic.Anthropic()
        messages = [{"role": "user", "content": sys.argv[1]}]
        r = client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=messages)
        for _event in client.messages.create(
                model="claude-haiku-4-5", max_tokens=10, stream=True,
                messages=messages + [{"role": "assistant", "content": r.content[0].text},
                                     {"role": "user", "content": "and then?"}]):
            pass
        raise SystemExit(3)
    """)
    db = tmp_path.resolve() / "bare.db"
    env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY}
    first = replayer(db, "record", "--", sys.executable, "-I", str(script), "first", env=env, cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    proc = replayer(db, "record", "--conversation", "conv_given", "--user", "user_given", "--",
                    sys.executable, "-I", str(script), "second", env=env, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr

    lines = exported(db)
    assert len(lines) == len(api.received) == 4
    assert [line["request"] for line in lines] == sent_bodies(api)
    given = [line for line in lines if line["conversation_id"] == "conv_given"]
    assert [line["request"]["messages"][0]["content"] for line in given] == ["second", "second"]
    assert {line["user_id"] for line in given} == {"user_given"}
    assert [line["stream"] for line in given] == [False, True] and given[1]["response"]["content"]

    run1, run2 = run_of(summary(first)), run_of(summary(proc))
    assert run1 != run2
    assert [c["conversation_id"] for c in listed(db, run2)] == ["conv_given"]
    assert "conv_given" not in {c["conversation_id"] for c in listed(db, run1)} and listed(db, run1)
    assert summary(proc) == f"replayer: recorded 2 calls in 1 conversation to {db} (run {run2})"
    shown = replayer(db, "show", "conv_given")
    assert f"replayer list --run {run2}" in shown.stdout, shown.stdout


def test_a_record_inside_another_records_each_call_once(api, tmp_path):
    """An eval script under `record` that runs `record` for each case: the inner run records the
    calls (through its proxy, and its Python child's middleware), and the outer run's proxy,
    which the inner one forwards to, doesn't record them again."""
    script = write(tmp_path / "case.py", """
        import sys
        import anthropic
        anthropic.Anthropic().messages.create(model="claude-haiku-4-5", max_tokens=10,
                                              messages=[{"role": "user", "content": sys.argv[1]}])
    """)
    outer, inner = tmp_path.resolve() / "outer.db", tmp_path.resolve() / "inner.db"
    env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY}
    for flag in ("-I", "-c"):  # the proxy's record (no middleware: -I), then the middleware's
        args = [str(script), "bare"] if flag == "-I" else ["import runpy, sys; sys.argv[1:] = ['hooked'];"
                                                           f" runpy.run_path({str(script)!r})"]  # fmt: skip
        proc = replayer(outer, "record", "--", *CLI, "--db", str(inner), "record", "--", sys.executable, flag, *args,
                        env=env, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        # the outer line tells the truth: the call went to inner.db (as the inner run's process
        # reported it), or came already recorded; never "no call was made", never one to outer.db
        last = proc.stderr.splitlines()[-1]
        assert last.startswith(f"replayer: recorded 1 call in 1 conversation to {inner} ") or last == (
            f"replayer: nothing was recorded to {outer}: the program's 1 call came already recorded (by a replayer "
            "record or a Recorder inside it, to its own database), so not again here"
        ), proc.stderr
    assert len(api.received) == 2
    assert [line["request"]["messages"][0]["content"] for line in exported(inner)] == ["bare", "hooked"]
    assert not outer.exists() or exported(outer) == []


def test_an_upstream_that_is_not_http_is_refused_in_one_line(tmp_path):
    db = tmp_path / "never.db"
    proc = replayer(db, "record", "--", sys.executable, "-c", "pass", env={"ANTHROPIC_BASE_URL": "ftp://example.com"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "ANTHROPIC_BASE_URL" in proc.stderr and "http" in proc.stderr
    assert "Traceback" not in proc.stderr and not db.exists()
    # as `replayer proxy --upstream` refuses them: a query, and never the user info in the line
    proc = replayer(db, "record", "--", sys.executable, "-c", "pass",
                    env={"ANTHROPIC_BASE_URL": "http://someone:hunter2@example.com/v1?x=1"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "query" in proc.stderr
    assert "http://example.com/v1?x=1" in proc.stderr and "hunter2" not in proc.stderr


def test_a_database_path_that_cannot_hold_records_is_refused_before_the_program_runs(tmp_path):
    """A file that isn't a replayer database, or a folder: one line, exit 2, and the program (whose
    calls would cost, and go unrecorded) never started; the file as it was."""
    ran = tmp_path / "ran"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database\n" * 100)
    for db, says in ((junk, "is not a SQLite database"), (tmp_path, "is a directory")):
        proc = replayer(db, "record", "--", sys.executable, "-c", f"open({str(ran)!r}, 'w').close()")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
        assert not ran.exists()
    assert junk.read_bytes() == b"not a database\n" * 100


def test_nothing_recorded_says_what_the_base_url_is_for(tmp_path):
    """A program that makes no call through ANTHROPIC_BASE_URL and loads no hook: the line says
    so, and what to do; no database is made."""
    db = tmp_path / "never.db"
    proc = replayer(db, "record", "--", "sh", "-c", "exit 6")
    assert proc.returncode == 6
    line = summary(proc)
    assert line.startswith(f"replayer: nothing was recorded to {db.resolve()}: no Messages API call came through "
                           "ANTHROPIC_BASE_URL")
    assert "point it at $ANTHROPIC_BASE_URL" in line and "Recorder().wrap" in line
    assert not db.exists()


def interrupted(db: Path, script: Path, api, signal_it) -> tuple[subprocess.Popen[str], str, str]:
    """`record -- python -I SCRIPT` signalled by `signal_it(proc)` once the script prints
    "streaming": the process, its stdout and stderr."""
    import signal

    proc = subprocess.Popen(
        [*CLI, "--db", str(db), "record", "--", sys.executable, "-I", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "streaming"
        signal_it(proc)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc, out, err


def test_ctrl_c_reaches_the_program_and_what_it_streamed_so_far_is_recorded(api, tmp_path):
    """Ctrl-C in a terminal signals the whole foreground group: the program gets it and ends
    mid-stream; the command waits for it, the proxy records the stream as far as it got
    (abandoned) and the writer writes it before the summary; the exit code is the signal's."""
    import signal

    slow = message(1, [{"type": "text", "text": "a long answer " * 40}], "end_turn")
    api.enqueue(Reply(sse=message_events(slow), chunk_delay=0.2))
    script = write(tmp_path / "slow.py", """
        import anthropic
        stream = anthropic.Anthropic().messages.create(model="claude-haiku-4-5", max_tokens=500, stream=True,
                                                      messages=[{"role": "user", "content": "take your time"}])
        for event in stream:
            if event.type == "content_block_delta":
                print("streaming", flush=True)
    """)
    db = tmp_path.resolve() / "interrupted.db"
    # the program is in the middle of the stream: Ctrl-C to the group, as the terminal sends it
    proc, out, err = interrupted(db, script, api, lambda proc: os.killpg(proc.pid, signal.SIGINT))
    assert proc.returncode == 128 + signal.SIGINT, err
    lines = exported(db)
    assert len(lines) == 1 and lines[0]["abandoned"], lines
    assert lines[0]["request"] == sent_bodies(api)[0]
    done = summary(subprocess.CompletedProcess([], proc.returncode, out, err))
    assert done == f"replayer: recorded 1 call in 1 conversation to {db} (run {run_of(done)})"


def test_a_run_that_continues_a_conversation_is_found_by_its_own_id(api, tmp_path):
    """Every call carries its run's id: a second run adding turns to a conversation the first
    made lists it under its own id, counts it in its summary, and `show` names both runs."""
    script = write(tmp_path / "bare.py", """
        import sys
        import anthropic
        anthropic.Anthropic().messages.create(model="claude-haiku-4-5", max_tokens=10,
                                              messages=[{"role": "user", "content": sys.argv[1]}])
    """)
    db = tmp_path.resolve() / "same.db"
    env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY}
    procs = [replayer(db, "record", "--conversation", "conv_same", "--", sys.executable, "-I", str(script), arg,
                      env=env, cwd=tmp_path) for arg in ("one", "two")]
    assert [p.returncode for p in procs] == [0, 0], procs[1].stderr
    run1, run2 = (run_of(summary(p)) for p in procs)
    assert summary(procs[1]) == f"replayer: recorded 1 call in 1 conversation to {db} (run {run2})"
    assert [c["conversation_id"] for c in listed(db, run1)] == ["conv_same"]
    assert [c["conversation_id"] for c in listed(db, run2)] == ["conv_same"]
    assert [line["conversation_id"] for line in exported(db)] == ["conv_same", "conv_same"]
    shown = replayer(db, "show", "conv_same").stdout
    assert f"recorded by run {run1} " in shown and f"recorded by run {run2} " in shown, shown
    assert shown.index(run1) < shown.index(run2)


def test_ctrl_c_after_the_program_ended_lets_open_streams_finish_and_the_summary_come(api, tmp_path):
    """The program ends while a process it left in the background still streams through the
    proxy: the command waits for that stream. A Ctrl-C then (to this command alone) changes
    nothing: the stream is recorded whole and the summary line comes, with no traceback."""
    import signal

    slow = message(2, [{"type": "text", "text": "a long answer " * 40}], "end_turn")
    api.enqueue(Reply(sse=message_events(slow), chunk_delay=0.05))
    script = write(tmp_path / "slow.py", """
        import os, time
        import anthropic
        stream = anthropic.Anthropic().messages.create(model="claude-haiku-4-5", max_tokens=500, stream=True,
                                                      messages=[{"role": "user", "content": "take your time"}])
        parent = os.getpid()
        if os.fork():
            os._exit(5)  # the program ends; its child reads on
        while os.getppid() == parent:
            time.sleep(0.01)
        print("streaming", flush=True)
        for event in stream:
            pass
    """)
    db = tmp_path.resolve() / "late.db"
    # the program has ended, the stream goes on: Ctrl-C to the command alone
    proc, out, err = interrupted(db, script, api, lambda proc: proc.send_signal(signal.SIGINT))
    assert proc.returncode == 5, err
    assert "Traceback" not in err, err
    done = summary(subprocess.CompletedProcess([], proc.returncode, out, err))
    assert done == f"replayer: recorded 1 call in 1 conversation to {db} (run {run_of(done)})"
    [line] = exported(db)
    assert not line["abandoned"] and line["response"] == slow


def test_a_ctrl_c_the_command_was_started_ignoring_stays_ignored_for_the_program(tmp_path):
    """A background job of a script starts with SIGINT ignored: the program it records inherits
    that, as it would without `record`."""
    import signal

    script = write(tmp_path / "which.py", """
        import signal
        print("ignored" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "handled")
    """)
    for ignoring, expected in ((True, "ignored"), (False, "handled")):
        proc = subprocess.run(
            [*CLI, "--db", str(tmp_path / "never.db"), "record", "--", sys.executable, "-I", str(script)],
            capture_output=True, text=True, timeout=120,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignoring else None,
        )
        assert proc.returncode == 0 and proc.stdout.strip() == expected, proc.stderr
