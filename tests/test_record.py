"""`replayer record -- COMMAND`: every SDK client class is recorded, and the run ends with one
line saying what was recorded where, or why nothing was."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import FAKE_KEY, exported

RECORD = [sys.executable, "-m", "replayer.cli"]


def record(db: Path, *command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RECORD, "--db", str(db), "record", "--", *command],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})},
    )


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def test_vertex_bedrock_and_any_client_class_are_recorded_once(api, tmp_path):
    """Every client class deriving from the SDK's base clients records, with no code change; a
    client the program also wraps itself (rec.wrap, middleware=[rec.middleware]) records once."""
    script = write(tmp_path / "agent.py", f"""
        import asyncio
        import anthropic
        from anthropic import AnthropicVertex, AsyncAnthropicVertex, AnthropicBedrock, AsyncAnthropicBedrock
        from anthropic._base_client import SyncAPIClient
        from replayer import Recorder

        URL, KEY = {api.url!r}, {FAKE_KEY!r}
        def ask(client, text, model="claude-sonnet-4-5"):
            return client.messages.create(model=model, max_tokens=10, messages=[{{"role": "user", "content": text}}])

        vertex = AnthropicVertex(region="us-east5", project_id="proj", access_token="fake-token", base_url=URL + "/v1")
        ask(vertex, "vertex")
        with vertex.messages.stream(model="claude-sonnet-4-5", max_tokens=10,
                                    messages=[{{"role": "user", "content": "vertex stream"}}]) as s:
            s.get_final_message()
        bedrock = AnthropicBedrock(aws_region="us-east-1", api_key="fake-bedrock-token", base_url=URL)
        ask(bedrock, "bedrock", "anthropic.claude-sonnet-4-5")

        class InHouse(SyncAPIClient):  # a client class of the program's own, on the SDK's base client
            def __init__(self):
                super().__init__(version="1", base_url=URL, _strict_response_validation=False)
            @property
            def auth_headers(self):
                return {{"x-api-key": KEY}}
        InHouse().post("/v1/messages", body={{"model": "claude-haiku-4-5", "max_tokens": 5,
                       "messages": [{{"role": "user", "content": "in-house"}}]}}, cast_to=object)

        async def main():
            await ask_async(AsyncAnthropicVertex(region="us-east5", project_id="proj", access_token="t",
                                                 base_url=URL + "/v1"), "async vertex")
            await ask_async(AsyncAnthropicBedrock(aws_region="us-east-1", api_key="t", base_url=URL), "async bedrock",
                            "anthropic.claude-haiku-4-5")
        async def ask_async(client, text, model="claude-sonnet-4-5"):
            await client.messages.create(model=model, max_tokens=10, messages=[{{"role": "user", "content": text}}])
        asyncio.run(main())

        # the program's own recorder as well: each call still recorded once
        rec = Recorder()
        ask(rec.wrap(AnthropicVertex(region="us-east5", project_id="proj", access_token="t", base_url=URL + "/v1")),
            "wrapped vertex")
        ask(AnthropicBedrock(aws_region="us-east-1", api_key="t", base_url=URL, middleware=[rec.middleware]),
            "bedrock with rec.middleware", "anthropic.claude-sonnet-4-5")
        own = Recorder("own.db")  # and one of its own, elsewhere
        ask(own.wrap(anthropic.Anthropic(base_url=URL, api_key=KEY)).with_options(timeout=20), "wrapped copy")
        print("agent done")
    """)
    db = tmp_path.resolve() / "cloud.db"
    proc = record(db, sys.executable, str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "agent done" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr

    paths = [r["path"] for r in api.received]
    assert any(p.endswith(":rawPredict") for p in paths) and any(p.endswith(":streamRawPredict") for p in paths)
    assert any(p.startswith("/model/anthropic.claude-sonnet-4-5/invoke") for p in paths)
    lines, own = exported(db), exported(tmp_path / "own.db")
    assert [line["request"]["messages"][0]["content"] for line in own] == ["wrapped copy"]
    sent = sorted(json.loads(r["body"])["messages"][0]["content"] for r in api.received)
    assert sorted(line["request"]["messages"][0]["content"] for line in lines + own) == sent  # each call, once
    assert sorted(json.dumps(line["request"], sort_keys=True) for line in lines + own) == sorted(
        json.dumps(json.loads(r["body"]), sort_keys=True) for r in api.received
    )
    conversations = len({line["conversation_id"] for line in lines})
    assert last_line(proc) == (
        f"replayer: recorded {len(lines)} calls in {conversations} conversations to {db}, "
        f"1 call in 1 conversation to {(tmp_path / 'own.db').resolve()}"
    )


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The record command's own line: the last on stderr, and the only one it writes; the run id
    it names when something was recorded (test_record_any.py checks it) taken out."""
    ours = [line for line in proc.stderr.splitlines() if line.startswith("replayer:")]
    assert len(ours) == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == ours[0]
    if ours[0].startswith("replayer: recorded "):
        assert re.search(r" \(run run_[0-9a-f]{28}\)", ours[0]), ours[0]
    return re.sub(r" \(run run_[0-9a-f]{28}\)", "", ours[0], count=1)


def test_record_says_how_many_calls_of_this_run_went_to_which_db(api, tmp_path):
    """Counted from what this run's processes stored (a subprocess and a retry included), not
    from the database, which already holds an earlier run's records."""
    from replayer.fakeapi import Reply

    script = write(tmp_path / "agent.py", f"""
        import subprocess, sys
        import anthropic
        client = anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r})
        messages = [{{"role": "user", "content": sys.argv[1]}}]
        r = client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=messages)
        client.messages.create(model="claude-haiku-4-5", max_tokens=10,
                               messages=messages + [{{"role": "assistant", "content": r.content}},
                                                    {{"role": "user", "content": "go on"}}])
        if sys.argv[2:] == ["child"]:  # a second conversation, from a Python subprocess
            assert subprocess.run([sys.executable, __file__, sys.argv[1] + " (child)"]).returncode == 3
        raise SystemExit(3)
    """)
    db = tmp_path.resolve() / "runs.db"
    first = record(db, sys.executable, str(script), "earlier run", cwd=tmp_path)
    assert first.returncode == 3
    assert last_line(first) == f"replayer: recorded 2 calls in 1 conversation to {db}"

    api.enqueue(Reply(status=529, body={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
                      headers={"retry-after-ms": "5"}))
    before = len(exported(db))
    proc = record(db, sys.executable, str(script), "this run", "child", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    new = exported(db)[before:]
    calls = {line["turn_id"] for line in new}
    conversations = {line["conversation_id"] for line in new}
    assert len(new) > len(calls) and len(conversations) == 2  # the retry is an attempt of its call
    assert last_line(proc) == (
        f"replayer: recorded {len(calls)} calls ({len(new)} attempts) in {len(conversations)} conversations to {db}"
    )


def test_record_says_why_nothing_was_recorded_and_creates_no_database(tmp_path):
    """Each way a child can escape the hook, with the program's exit code kept and no empty
    database left behind."""
    bare = tmp_path / "bare"  # a Python without replayer, as pipx or `uv tool` give one
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    other_python = str(bare / "bin" / "python")
    db = tmp_path / "never.db"
    cases = {
        "python -I": ([sys.executable, "-I", "-c", "raise SystemExit(3)"],
                      ["python -I", "without -I", "Recorder().wrap"]),
        "python -E": ([sys.executable, "-E", "-c", "raise SystemExit(3)"], ["python -E", "without -E"]),
        "not Python": (["sh", "-c", "exit 3"], ["never loaded replayer's hook", "not a Python program",
                                                 sys.executable, "Recorder().wrap"]),
        "no replayer": ([other_python, "-c", "raise SystemExit(3)"], [f"{other_python} could not load replayer",
                                                                        sys.executable, "Recorder().wrap"]),
        "no call": ([sys.executable, "-c", "raise SystemExit(3)"], ["made no Messages API call"]),
    }
    for name, (command, words) in cases.items():
        proc = record(db, *command, cwd=tmp_path)
        assert proc.returncode == 3, (name, proc.stderr)
        line = last_line(proc)
        assert line.startswith("replayer: nothing was recorded"), (name, line)
        for word in words:
            assert word in line, (name, word, line)
        assert not db.exists(), name


def test_a_python_without_replayer_whose_calls_the_proxy_recorded_gets_no_remedy_it_cant_use(api, tmp_path):
    """A Python that can't load replayer (a framework pinned to another SDK, in its own venv) whose
    calls went through ANTHROPIC_BASE_URL: the proxy recorded them, and the closing line says so
    instead of asking to run the program with another Python."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    script = write(tmp_path / "raw.py", """
        import json, os, urllib.request
        body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=body,
                                     headers={"content-type": "application/json", "x-api-key": "k"})
        print(json.load(urllib.request.urlopen(req))["type"])
    """)
    db = tmp_path / "raw.db"
    proc = record(db, str(bare / "bin" / "python"), str(script), cwd=tmp_path, env={"ANTHROPIC_BASE_URL": api.url})
    assert proc.returncode == 0 and proc.stdout.strip() == "message", proc.stderr
    line = last_line(proc)
    assert line.startswith("replayer: recorded 1 call in 1 conversation"), line
    assert "could not load replayer" in line and "recorded through the proxy" in line, line
    assert "Recorder().wrap" not in line and "run the program with" not in line, line


def test_default_folders_are_where_they_always_were(monkeypatch, tmp_path):
    """The data and config folders (platformdirs since issue 14) are the XDG ones on Linux, and
    Application Support on macOS even when $XDG_* is set (platformdirs would follow it there)."""
    from replayer import paths

    monkeypatch.delenv("REPLAYER_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    if sys.platform.startswith("linux"):
        assert paths.default_db_path() == tmp_path / "data" / "replayer" / "replayer.db"
        assert paths.config_dir() == tmp_path / "config" / "replayer"
        monkeypatch.delenv("XDG_DATA_HOME")
        monkeypatch.delenv("XDG_CONFIG_HOME")
        assert paths.data_dir() == Path.home() / ".local" / "share" / "replayer"
        assert paths.config_dir() == Path.home() / ".config" / "replayer"
    monkeypatch.setattr(sys, "platform", "darwin")
    support = Path.home() / "Library" / "Application Support" / "replayer"
    assert paths.data_dir() == support and paths.config_dir() == support
    monkeypatch.setenv("REPLAYER_DB", "~/elsewhere.db")
    assert paths.default_db_path() == Path.home() / "elsewhere.db"
