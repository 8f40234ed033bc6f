"""The command line: listings, export, zero-code recording, db commands, and bad input."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY, sent_bodies
from tui_data import new_yorks_day_edge

from replayer.cli import cli
from replayer.fakeapi import Reply


def run(*args, env=None):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


@pytest.fixture
def recorded(api, rec, client, db_path):
    with rec.conversation("conv_one", user_id="alice"):
        messages = [{"role": "user", "content": "Find the bug in parser.py"}]
        for i in range(3):
            r = client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages)
            messages = [*messages, {"role": "assistant", "content": r.content},
                        {"role": "user", "content": f"and then {i}"}]
    overloaded = {"type": "overloaded_error", "message": "Overloaded"}
    api.enqueue(Reply(status=529, body={"type": "error", "error": overloaded}, headers={"retry-after-ms": "5"}))
    client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "other"}],
                           metadata={"user_id": "bob"})
    assert rec.flush(10)
    return db_path


def test_list_and_json(recorded):
    r = run("--db", str(recorded), "list")
    assert r.exit_code == 0
    assert "conv_one" in r.output and "alice" in r.output and "Find the bug" in r.output
    rows = json.loads(run("--db", str(recorded), "list", "--json").output)
    by_id = {row["conversation_id"]: row for row in rows}
    assert by_id["conv_one"]["turns"] == 3 and by_id["conv_one"]["user_id"] == "alice"
    other = [row for row in rows if row["conversation_id"] != "conv_one"][0]
    assert other["user_id"] == "bob" and other["errors"] == 1
    bobs = json.loads(run("--db", str(recorded), "list", "--user", "bob", "--json").output)
    assert [row["conversation_id"] for row in bobs] == [other["conversation_id"]]
    assert len(json.loads(run("--db", str(recorded), "list", "-q", "and then 1", "--json").output)) == 1
    assert len(json.loads(run("--db", str(recorded), "list", "--model", "claude-haiku", "--json").output)) == 1
    assert run("--db", str(recorded), "list", "--since", "yesterday").exit_code == 2


def test_db_option_after_the_command_and_env(recorded):
    assert "conv_one" in run("list", "--db", str(recorded)).output
    assert "conv_one" in run("list", env={"REPLAYER_DB": str(recorded)}).output


def test_every_command_takes_the_root_options_after_its_name(recorded, tmp_path):
    """--db, --pricing and --config go before the command name or after it, on every command
    (the README's promise): the same options, kept in the same place."""
    import click

    def paths(group, prefix):
        for name, command in group.commands.items():
            yield [*prefix, name]
            if isinstance(command, click.Group):
                yield from paths(command, [*prefix, name])

    given = ["--db", str(recorded), "--pricing", str(tmp_path / "p.toml"), "--config", str(tmp_path / "c.toml")]
    every = list(paths(cli, []))
    assert ["db", "backup"] in every and ["import", "claude-code"] in every
    for path in every:
        r = CliRunner().invoke(cli, [*path, *given, "--help"])
        assert r.exit_code == 0, (path, r.output)
    bad = tmp_path / "bad.toml"
    bad.write_text('[stats]\ntz = "Mars/Olympus"\n')
    r = CliRunner().invoke(cli, ["browse", "--db", str(recorded), "--config", str(bad)])
    assert r.exit_code == 2 and "unknown time zone 'Mars/Olympus'" in r.stderr, r.output  # read, as before it
    assert run("pricing", "--db", str(recorded)).exit_code == 0


def test_show(recorded):
    r = run("--db", str(recorded), "show", "conv_one")
    assert r.exit_code == 0
    lines = [line for line in r.output.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 3
    doc = json.loads(run("--db", str(recorded), "show", "conv_one", "--json").output)
    assert [t["index"] for t in doc["turns"]] == [0, 1, 2]
    assert [t["context_messages"] for t in doc["turns"]] == [1, 3, 5]
    assert all(t["cost_usd"] > 0 for t in doc["turns"])


def test_show_says_a_turns_latency_as_the_other_screens_do(recorded):
    """`show`'s latency column read `123456` (milliseconds, uncounted) where every other screen
    says `123.5 s`; a short latency stays in milliseconds."""
    with sqlite3.connect(recorded) as db:
        ids = [i for (i,) in db.execute("SELECT a.id FROM attempts a JOIN turns t ON t.id = a.turn_id "
                                        "WHERE t.conversation_id = 'conv_one' ORDER BY t.idx")]  # fmt: skip
        db.execute("UPDATE attempts SET latency_ms = 850 WHERE id = ?", (ids[0],))
        db.execute("UPDATE attempts SET latency_ms = 123456 WHERE id = ?", (ids[1],))
    r = run("--db", str(recorded), "show", "conv_one")
    assert r.exit_code == 0
    assert "LATENCY" in r.output.splitlines()[0]
    rows = [line for line in r.output.splitlines() if line.strip()[:1].isdigit()]
    assert re.search(r"\$\d+\.\d+ +850 ms ", rows[0]) and re.search(r"\$\d+\.\d+ +123\.5 s ", rows[1]), rows


def test_show_unknown_id_is_bad_input(recorded):
    r = run("--db", str(recorded), "show", "conv_nope")
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "no conversation" in r.output and "Traceback" not in r.output


def test_export_reproduces_every_request_and_response(api, recorded, tmp_path):
    out = tmp_path / "all.jsonl"
    r = run("--db", str(recorded), "export", "-o", str(out))
    assert r.exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["request"] for line in lines] == sent_bodies(api)
    keys = {"turn_id", "conversation_id", "index", "user_id", "trace_id", "started_at", "latency_ms", "ttft_ms",
            "attempt", "stream", "endpoint", "model", "request", "request_headers", "status", "response", "error",
            "request_id", "usage", "cost_usd"}
    assert all(keys <= set(line) for line in lines)
    one = run("--db", str(recorded), "export", "--conversation", "conv_one").output.splitlines()
    assert len(one) == 3


def test_export_says_an_api_error_cost_nothing_and_keeps_null_for_an_unknown_price(api, recorded, client, rec,
                                                                                   tmp_path):
    """The 529 (no usage: nothing billed) costs 0.0, as the stats count it; null is an unknown
    price only (a model without one)."""
    api.enqueue(Reply(body={"id": "msg_nova", "type": "message", "role": "assistant", "model": "claude-nova-9",
                            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                            "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}))  # fmt: skip
    client.messages.create(model="claude-nova-9", max_tokens=5, messages=[{"role": "user", "content": "nova"}])
    assert rec.flush(10)
    lines = [json.loads(line) for line in run("--db", str(recorded), "export").output.splitlines()]
    costs = {(line["model"], line["status"]): line["cost_usd"] for line in lines}
    assert costs[("claude-haiku-4-5", 529)] == 0.0 and costs[("claude-haiku-4-5", 200)] > 0
    assert costs[("claude-nova-9", 200)] is None
    assert all(line["cost_usd"] > 0 for line in lines if line["model"] == "claude-sonnet-4-5")


@pytest.mark.parametrize("kind", ["missing", "directory", "text file", "foreign sqlite", "empty dir path"])
def test_bad_db_paths_are_one_line_exit_2(tmp_path, kind):
    if kind == "missing":
        path = tmp_path / "nope.db"
    elif kind == "directory":
        path = tmp_path
    elif kind == "text file":
        path = tmp_path / "notes.txt"
        path.write_text("hello, not a database\n" * 50)
    elif kind == "foreign sqlite":
        path = tmp_path / "other.db"
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE invoices (id INTEGER)")
        con.commit()
        con.close()
    else:
        path = tmp_path / "missing-dir" / "x.db"
    for cmd in (["list"], ["show", "x"], ["export"]):
        r = run("--db", str(path), *cmd)
        assert r.exit_code == 2, (kind, cmd, r.output)
        assert r.output.startswith("replayer: ") and r.output.count("\n") == 1 and "Traceback" not in r.output
    if kind == "foreign sqlite":
        assert "not a replayer database" in r.output
        con = sqlite3.connect(path)  # nothing was added to someone else's file
        assert [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["invoices"]


def test_db_path_migrate_backup(tmp_path, monkeypatch):
    target = tmp_path / "new.db"
    assert run("--db", str(target), "db", "path").output.strip() == str(target)
    monkeypatch.setenv("REPLAYER_DB", str(tmp_path / "env.db"))
    assert run("db", "path").output.strip() == str(tmp_path / "env.db")
    monkeypatch.delenv("REPLAYER_DB")
    assert run("db", "path").output.strip().endswith("replayer/replayer.db")
    r = run("--db", str(target), "db", "migrate")
    assert r.exit_code == 0 and "m001_initial" in r.output
    assert "up to date" in run("--db", str(target), "db", "migrate").output
    r = run("--db", str(target), "db", "backup", str(tmp_path / "copy.db"))
    assert r.exit_code == 0
    con = sqlite3.connect(tmp_path / "copy.db")
    assert con.execute("SELECT name FROM _sqlite_migrations").fetchall() == [
        ("m001_initial",),
        ("m002_turn_text",),
        ("m003_usage",),
        ("m004_thread_tips",),
        ("m005_meta",),
        ("m006_imported",),
        ("m007_stream_events",),
        ("m008_runs",),
        ("m009_turn_tags",),
        ("m010_copied",),
        ("m011_compaction_sums",),
        ("m012_sent_back_keys",),
        ("m013_limited_by_type",),
        ("m014_turn_under_answering_model",),
        ("m015_tool_results_once",),
        ("m016_response_headers",),
        ("m017_turn_tokens_of_one_attempt",),
        ("m018_conversation_ended_at",),
        ("m019_context_text",),
        ("m020_cache_writes_by_their_total",),
        ("m021_rollup_per_user",),
        ("m022_turns_by_context",),
        ("m023_rollup_by_user",),
    ]
    assert run("--db", str(target), "db", "backup", str(tmp_path / "copy.db")).exit_code == 2


def test_record_a_program_with_no_code_change(api, tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        import anthropic, asyncio
        client = anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r})
        messages = [{{"role": "user", "content": "zero code"}}]
        r = client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=messages)
        client.with_options(timeout=30).messages.create(model="claude-haiku-4-5", max_tokens=10,
            messages=messages + [{{"role": "assistant", "content": r.content}}, {{"role": "user", "content": "more"}}])
        async def main():
            c = anthropic.AsyncAnthropic(base_url={api.url!r}, api_key={FAKE_KEY!r})
            await c.messages.create(model="claude-haiku-4-5", max_tokens=10,
                                    messages=[{{"role": "user", "content": "async"}}])
        asyncio.run(main())
        print("agent done")
    """))
    db = tmp_path / "zero.db"
    proc = subprocess.run(
        [sys.executable, "-m", "replayer.cli", "--db", str(db), "record", "--user", "ci-user", "--",
         sys.executable, str(script)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "agent done" in proc.stdout
    assert "Error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    rows = json.loads(run("--db", str(db), "list", "--json").output)
    assert sorted(r["turns"] for r in rows) == [1, 2]  # the two sync calls thread into one conversation
    assert {r["user_id"] for r in rows} == {"ci-user"}
    lines = [json.loads(x) for x in run("--db", str(db), "export").output.splitlines()]
    assert len(lines) == 3  # with_options() copies did not record twice


def test_record_passes_the_exit_code_and_reports_missing_commands(tmp_path):
    db = str(tmp_path / "x.db")
    r = subprocess.run(
        [sys.executable, "-m", "replayer.cli", "--db", db, "record", "--", sys.executable, "-c", "raise SystemExit(3)"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 3
    r = run("--db", db, "record", "--", "no-such-program-xyz")
    assert r.exit_code == 2 and "command not found" in r.output


def test_core_imports_no_textual_and_recorder_import_is_cheap():
    code = textwrap.dedent("""
        import sys
        import replayer
        replayer.Recorder
        assert "anthropic" not in sys.modules, "import replayer pulled in the SDK"
        # the recording process: sqlite-utils (60 ms of CPU to import) is the writer process's
        assert "sqlite_utils" not in sys.modules, "import replayer pulled in sqlite-utils"
        import replayer.recorder, replayer.capture, replayer.sse, replayer.pricing, replayer.models
        import replayer.store.writer, replayer.store.queries, replayer.store.ingest, replayer.cli, replayer.demo
        import replayer.replay, replayer.diffing, replayer.metrics, replayer.store.process, replayer.store.child
        bad = [m for m in sys.modules if m == "textual" or m.startswith("textual.")]
        assert not bad, bad
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_recording_agent_never_imports_sqlite_utils(tmp_path):
    """With the writer process (the default), the agent's process hands records over and never
    opens the database: it imports none of sqlite-utils, click or dateutil (60 ms of its CPU,
    and memory), even once it has recorded calls. (Records a flush waits for while that process
    is still starting are written from the agent's process instead, so the test lets it start.)"""
    code = textwrap.dedent("""
        import sys, threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import anthropic
        from replayer import Recorder

        class Fake(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                body = (b'{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],'
                        b'"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}')
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        rec = Recorder(sys.argv[1])
        client = rec.wrap(anthropic.Anthropic(api_key="test-key-not-real", base_url=f"http://127.0.0.1:{server.server_port}"))
        assert rec._writer._ready.wait(60)  # the writer process, started by wrap(), is up
        for _ in range(3):
            client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert rec.flush(30)
        rec.close()
        bad = [m for m in ("sqlite_utils", "click", "dateutil") if m in sys.modules]
        assert not bad, bad
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "REPLAYER_WRITER"}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.db")], capture_output=True, text=True,
                       timeout=120, env=env)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    assert len(list(Store(open_db(tmp_path / "a.db")).export_lines())) == 3  # recorded, by the writer process


def test_help_and_bare_command(tmp_path):
    assert "record" in run("--help").output
    r = run("--db", str(tmp_path / "missing.db"))
    assert r.exit_code == 2 and "no database" in r.output


def test_browse_refuses_bad_settings_before_the_app_starts(recorded, tmp_path):
    """A settings file the dashboard can't use (an unknown time zone) is one line and exit 2
    before the terminal app starts, not a dashboard stuck on "Loading…"."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[stats]\ntz = "Mars/Olympus"\n')
    for args in (["--config", str(bad), "browse"], ["--config", str(bad)]):
        r = subprocess.run([sys.executable, "-m", "replayer.cli", "--db", str(recorded), *args],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)  # fmt: skip
        assert r.returncode == 2 and r.stdout == "", r.stderr[-300:]
        assert r.stderr.count("\n") == 1 and "unknown time zone 'Mars/Olympus'" in r.stderr


def test_api_error_is_raised_as_the_sdk_would_and_recorded(api, rec, db_path):
    # a wrapped client raises the SDK's own error type with the API's message
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    too_big = {"type": "invalid_request_error", "message": "max_tokens: too big"}
    api.enqueue(Reply(status=400, body={"type": "error", "error": too_big}))
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: too big"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "x"}])
    assert rec.flush(10)
    line = json.loads(run("--db", str(db_path), "export").output.splitlines()[0])
    assert line["error"] == {"type": "invalid_request_error", "message": "max_tokens: too big", "status": 400}


def test_pricing_file_reprices_listings_and_bad_file_is_exit_2(recorded, tmp_path):
    listed = json.loads(run("--db", str(recorded), "list", "--json").output)
    before = {r["conversation_id"]: r["cost_usd"] for r in listed}
    prices = tmp_path / "prices.toml"
    prices.write_text('[[model]]\nids = ["claude-sonnet-4-5"]\ninput = 300.0\noutput = 1500.0\n'
                      'cache_write_5m = 375.0\ncache_write_1h = 600.0\ncache_read = 30.0\n'
                      'source = "test"\ndate = "2026-11-26"\n')
    after = {r["conversation_id"]: r["cost_usd"] for r in
             json.loads(run("--db", str(recorded), "list", "--json", "--pricing", str(prices)).output)}
    assert after["conv_one"] == pytest.approx(before["conv_one"] * 100)
    via_env = json.loads(run("--db", str(recorded), "list", "--json", env={"REPLAYER_PRICING": str(prices)}).output)
    assert {r["conversation_id"]: r["cost_usd"] for r in via_env}["conv_one"] == pytest.approx(after["conv_one"])
    r = run("--db", str(recorded), "list", "--pricing", str(tmp_path / "nope.toml"))
    assert r.exit_code == 2 and r.output.startswith("replayer: price file") and r.output.count("\n") == 1


@pytest.mark.parametrize("where", ["missing folder", "under a file"])
def test_writing_to_an_unusable_path_is_one_line_exit_2(recorded, tmp_path, where):
    """export -o and db backup name the path and what is wrong with it; no traceback."""
    base = tmp_path / "nowhere" if where == "missing folder" else tmp_path / "plain.txt"
    if where == "under a file":
        base.write_text("a file, not a folder\n")
    for cmd in (["export", "-o", str(base / "x.jsonl")], ["db", "backup", str(base / "b.db")]):
        r = CliRunner().invoke(cli, ["--db", str(recorded), *cmd])
        assert r.exit_code == 2, (cmd, r.output)
        assert r.output.startswith(f"replayer: cannot write {base}") and r.output.count("\n") == 1, r.output
        assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output


def test_export_refuses_to_write_over_the_database_it_reads(recorded, tmp_path):
    """`export -o` naming the database (or its -wal file, by another path) would empty the file
    before a line is read: one line, exit 2, and the database as it was."""
    before = recorded.read_bytes()
    link = tmp_path / "alias.db"
    link.symlink_to(recorded)
    for target in (recorded, link, recorded.with_name(recorded.name + "-wal")):
        if not target.exists():
            continue
        kept = target.read_bytes()
        for extra in ([], ["--cassette", "--conversation", "conv_one"]):
            r = CliRunner().invoke(cli, ["--db", str(recorded), "export", *extra, "-o", str(target)])
            assert r.exit_code == 2, r.output
            assert r.output.startswith(f"replayer: {target} is the database being read") and r.output.count("\n") == 1
            assert target.read_bytes() == kept
    assert recorded.read_bytes() == before
    assert json.loads(run("--db", str(recorded), "list", "--json").output), "the records are all there"


def test_recorded_text_never_reaches_the_terminal_as_control_characters(tmp_path):
    """A first message, a user id or a model with an escape sequence (a window title, a screen
    clear): list and show write them out; the table's heading sits over short ids too."""
    from replayer import Recorder

    db = tmp_path / "esc.db"
    evil = "hi \x1b]0;pwned\x07\x1b[2J done"
    with Recorder(db) as rec:
        rec.record({"model": "m\x1b[31m", "max_tokens": 5, "messages": [{"role": "user", "content": evil}]},
                   {"id": "msg_e", "type": "message", "role": "assistant", "model": "m\x1b[31m", "content": [],
                    "stop_reason": "end\x07", "usage": {"input_tokens": 1, "output_tokens": 1}},
                   conversation_id="conv_A", user_id="u\x1b[2J")  # fmt: skip
    listed = run("--db", str(db), "list").output
    shown = run("--db", str(db), "show", "conv_A").output
    for out in (listed, shown):
        assert not any(c in out for c in "\x1b\x07"), out
    assert "hi \\x1b]0;pwned\\x07\\x1b[2J done" in listed and "u\\x1b[2J" in listed
    assert "m\\x1b[31m" in shown and "end\\x07" in shown
    assert "total ? (1 turn whose model has no price)" in shown  # not $0.0000: the model has no price
    head, row = listed.splitlines()[:2]
    assert head.index("USER") == row.index("u\\x1b")


def test_ids_are_whole_and_any_unique_prefix_names_one(recorded):
    """Generated ids are 33 characters: list shows them whole; show, export --conversation and
    rerun take an id, any prefix that names one, or an id cut as the browser shows it (…)."""
    db = ["--db", str(recorded)]
    auto = next(r["conversation_id"] for r in json.loads(run(*db, "list", "--json").output)
                if r["conversation_id"] != "conv_one")
    assert len(auto) > 32 and auto in run(*db, "list").output.split()
    whole = json.loads(run(*db, "show", auto, "--json").output)
    for given in (auto[:-8], auto[:31] + "…"):
        r = run(*db, "show", given, "--json")
        assert r.exit_code == 0 and json.loads(r.output) == whole
    assert run(*db, "export", "--conversation", auto[:-8]).output == run(*db, "export", "--conversation", auto).output
    turn = whole["turns"][0]["turn_id"]
    assert len(turn) > 32
    for given in (turn[:-8], "conv_on:0"):
        r = run(*db, "rerun", given, "--list", "--json")
        assert r.exit_code == 0 and json.loads(r.output) == [], (given, r.output)
    ambiguous = {("show", "conv_"): "'conv_' begins 2 conversation ids (conv_",
                 ("export", "--conversation", "conv_"): "'conv_' begins 2 conversation ids (conv_",
                 ("rerun", "turn_", "--list"): "'turn_' begins 4 turn ids (turn_"}
    for cmd, said in ambiguous.items():
        r = CliRunner().invoke(cli, [*db, *cmd])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and said in r.output, r.output
    r = run(*db, "show", "conv_zzz")
    assert r.exit_code == 2 and "no conversation 'conv_zzz'" in r.output


def test_export_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`replayer export | head`: the reader closing the pipe is no user mistake: no message, and
    not exit 2 (bad input); click's quiet exit 1, as for any command whose reader went away."""
    from replayer import Recorder

    db = tmp_path / "many.db"
    with Recorder(db) as rec:
        for i in range(60):  # well over a pipe's 64 KiB buffer
            rec.record({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": f"{i} " + "x" * 4000}]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "replayer.cli", "--db", str(db), "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.read(100)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert err.decode() == ""
    assert proc.returncode == 1


def test_help_texts_say_what_the_commands_do(tmp_path):
    def helped(*args):
        return " ".join(run(*args, "--help").output.split())  # as one line: click wraps help text

    demo = helped("demo")
    assert "any other database is refused" in demo and "else into demo.db" not in demo
    listing = helped("list")
    assert "4611686018427387904" not in listing and "x>=1" in listing
    assert "YYYY-MM-DDTHH:MM" in listing.split("--since")[1].split("--until")[0].replace("- ", "-")
    assert "$CLAUDE_CONFIG_DIR" in helped("import", "claude-code")
    from replayer.store.schema import open_db

    open_db(tmp_path / "n.db")
    assert run("--db", str(tmp_path / "n.db"), "list", "-n", str(10**30)).exit_code == 0  # many: all there are


def test_python_m_replayer_is_the_replayer_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "replayer", "--db", str(tmp_path / "m.db"), "list", "--json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    said = f"replayer: no database at {tmp_path / 'm.db'}: record something first, or pass --db / set $REPLAYER_DB"
    assert (proc.returncode, proc.stderr.splitlines()) == (2, [said])


@pytest.mark.parametrize("name, bad", [("REPLAYER_OTLP_EXIT_TIMEOUT", "5s"), ("REPLAYER_WRITER", "bogus"),
                                       ("REPLAYER_OTLP_NICE", "abc"), ("REPLAYER_WRITER_BATCH", "maybe"),
                                       ("REPLAYER_EXIT_TIMEOUT", "-1"), ("REPLAYER_PAGE_SIZE", "1000")])
def test_a_bad_value_of_a_replayer_variable_is_one_line_before_anything_runs(tmp_path, name, bad):
    """It was taken as the default in silence (REPLAYER_OTLP_EXIT_TIMEOUT=5s turned the OTLP
    export off, saying so twice as a Python error)."""
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "list"], env={name: bad})
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith(f"replayer: {name}={bad!r} is not ") and line.endswith(": unset it or give one")
    assert not (tmp_path / "x.db").exists()


def test_a_bad_replayer_variable_in_an_agents_process_is_said_once_and_recording_goes_on(tmp_path):
    script = textwrap.dedent(f"""
        from replayer import Recorder
        rec = Recorder({str(tmp_path / "a.db")!r})
        for i in range(3):
            rec.record({{"model": "m", "max_tokens": 1, "messages": [{{"role": "user", "content": str(i)}}]}})
        print(rec.close())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "REPLAYER_WRITER": "bogus"})
    assert proc.returncode == 0 and proc.stdout.split() == ["True"], proc.stderr
    assert proc.stderr.count("REPLAYER_WRITER='bogus' is not process or thread") == 1, proc.stderr
    from conftest import exported

    assert len(exported(tmp_path / "a.db")) == 3


def test_times_are_shown_and_filter_dates_read_in_one_zone(rec, db_path, tmp_path):
    """What `list` shows at 22:30 on 4 December, `list --until 2026-12-04` finds: the settings'
    zone ([stats] tz), else the machine's, is the zone of the times shown and of a date or time
    typed in a filter, and is named once. A zone written in the value still wins."""
    new_yorks_day_edge(rec)
    config = tmp_path / "ny.toml"
    config.write_text('[stats]\ntz = "America/New_York"\n')

    def ids(*args, env):
        r = run("--db", str(db_path), "list", "--json", *args, env=env)
        assert r.exit_code == 0, r.output
        return {row["conversation_id"] for row in json.loads(r.stdout)}

    # the configured zone over the machine's (Tokyo here); no setting: the machine's
    for given, env in ((["--config", str(config)], {"TZ": "Asia/Tokyo"}), ([], {"TZ": "America/New_York"})):
        listed = run("--db", str(db_path), "list", *given, env=env)
        rows = {line.split()[2]: line for line in listed.stdout.splitlines()[1:]}
        assert rows["late"].startswith("2026-12-04 22:30") and rows["later"].startswith("2026-12-04 23:59")
        assert rows["next"].startswith("2026-12-05 10:00"), listed.stdout
        assert listed.stderr.strip() == "times in America/New_York"
        shown = run("--db", str(db_path), "show", "late", *given, env=env)
        assert "2026-12-04 22:30" in shown.stdout and "times in America/New_York" in shown.stderr
        assert ids("--until", "2026-12-04", *given, env=env) == {"late", "later"}
        assert ids("--since", "2026-12-05", *given, env=env) == {"next"}
        assert ids("--until", "2026-12-04T23:00", *given, env=env) == {"late"}
        # a zone or offset in the value is the one it is read in
        assert ids("--since", "2026-12-05T00:00Z", *given, env=env) == {"late", "later", "next"}
        assert ids("--until", "2026-12-05T04:00+00:00", *given, env=env) == {"late"}
    # the machine's zone when nothing is set, wherever the machine is
    assert ids("--until", "2026-12-04", env={"TZ": "Asia/Tokyo"}) == set()
    assert ids("--until", "2026-12-05", env={"TZ": "Asia/Tokyo"}) == {"late", "later"}
    # the first and last days there are, in a zone that puts their edge past year 1 or 9999 in UTC
    assert ids("--until", "9999-12-31", env={"TZ": "America/New_York"}) == {"late", "later", "next"}
    assert ids("--since", "0001-01-01", env={"TZ": "Asia/Tokyo"}) == {"late", "later", "next"}


QUICK_ARGS = {
    "browse": [], "list": [], "show": ["conv_one"], "export": [], "record": ["--", "true"],
    "replay": ["conv_one", "--", "true"], "fork": ["conv_one:0"], "proxy": ["--upstream", "notaurl"],
    "import claude-code": ["nowhere"], "import otlp": ["nowhere.jsonl"], "import export": ["nowhere.jsonl"],
    "db path": [], "db migrate": [],
    "db backup": ["backup.db"], "demo": ["--no-open"], "stats": [], "alerts": [], "pricing": [],
    "rerun": ["conv_one:0", "--list"], "compare": ["conv_one", "conv_one"],
}
"""Each command with arguments that end it quickly, were its settings file not refused first."""


def test_every_command_refuses_a_broken_or_missing_settings_file(recorded, tmp_path, monkeypatch):
    """--config (or $REPLAYER_CONFIG) naming a broken or missing file is one line and exit 2 on
    every command, before it does anything: not only on those that read a setting (a misspelt
    table would otherwise be silently ignored)."""
    import click

    def commands(group, prefix):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, [*prefix, name])
            else:
                yield [*prefix, name]

    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text("[budgets]\n")
    missing = tmp_path / "missing.toml"
    every = list(commands(cli, []))
    assert {" ".join(path) for path in every} == set(QUICK_ARGS)
    for path in every:
        args = [*path, "--db", str(recorded), *QUICK_ARGS[" ".join(path)]]
        for file, said in ((broken, "unknown table [budgets]"),
                           (missing, "not found: fix --config or $REPLAYER_CONFIG")):  # fmt: skip
            for r in (CliRunner().invoke(cli, ["--config", str(file), *args]),
                      CliRunner().invoke(cli, args, env={"REPLAYER_CONFIG": str(file)})):  # fmt: skip
                assert r.exit_code == 2 and r.stdout == "", (path, r.output)
                assert r.stderr.count("\n") == 1 and said in r.stderr, (path, r.stderr)
    assert not (tmp_path / "backup.db").exists()


def test_a_broken_default_settings_file_keeps_no_agent_from_running(api, recorded, tmp_path, monkeypatch):
    """A broken config.toml in the config folder (named by no --config) stopped `record`, `proxy`,
    `replay` and `fork` before the agent ran, though none uses a setting: they say what is wrong on one
    line and go on with the default settings. Commands that read stay refusing it, and a file
    named by --config or $REPLAYER_CONFIG is still refused by every command."""
    import signal

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    default = tmp_path / "config" / "replayer" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text("[budgets]\n")
    wrong = f"{default}: unknown table [budgets] (known: [thresholds], [budget], [stats])"
    warned = f"replayer: {wrong}; going on with the default settings until it is fixed\n"
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{FAKE_KEY}", base_url="{api.url}")
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{{"role": "user", "content": "hi"}}])
    """))
    db = tmp_path / "agent.db"
    cli_ = [sys.executable, "-m", "replayer.cli", "--db", str(db)]
    r = subprocess.run([*cli_, "record", "--", sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    first, *rest = r.stderr.splitlines(keepends=True)
    assert first == warned and len(rest) == 1 and rest[0].startswith("replayer: recorded 1 call"), r.stderr
    proc = subprocess.Popen([*cli_, "proxy", "--port", "0", "--upstream", api.url], stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stderr.readline() == warned
        assert proc.stderr.readline().startswith("replayer proxy: listening on http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    # replay (and fork) run an agent too: the same line, then the run (a program that calls nothing)
    r = subprocess.run([*cli_, "replay", "conv_0", "--", sys.executable, "-c", "pass"], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0 and r.stderr.startswith(warned) and "the command exited 0" in r.stderr, r.stderr
    for args in (["list"], ["stats"], ["db", "path"]):  # the commands that read refuse it, as before
        r = run("--db", str(recorded), *args)
        assert r.exit_code == 2 and r.stdout == "" and r.stderr == f"replayer: {wrong}\n", (args, r.output)
    default.unlink()
    default.mkdir()  # one that can't be read says what to do with it, not to fix --config
    r = run("--db", str(recorded), "list")
    assert r.exit_code == 2 and r.stderr == f"replayer: cannot read config file {default}: Is a directory: " \
                                            "fix it or remove it\n", r.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[budgets]\n")
    for r in (CliRunner().invoke(cli, ["--config", str(broken), "record", "--", "true"]),
              CliRunner().invoke(cli, ["record", "--", "true"], env={"REPLAYER_CONFIG": str(broken)})):  # fmt: skip
        assert r.exit_code == 2 and "unknown table [budgets]" in r.stderr and "going on" not in r.stderr


def test_a_settings_folder_that_cannot_be_looked_into_is_one_line_not_a_traceback(recorded, tmp_path):
    """The default settings file sits in a folder this user may not enter (a config folder of
    another user's, mode 700): looking whether the file is there raised PermissionError, a
    traceback from every command. Now it is the file that can't be read, in one line; `record`
    goes on past it (a broken default file never keeps an agent from running). As nobody, the
    test's database is in a folder it may not enter either: one line for that too, no traceback
    (`record`'s check of its --db raised PermissionError)."""
    import shutil

    config = tmp_path / "config"
    (config / "replayer").mkdir(parents=True)
    (config / "replayer" / "config.toml").write_text("[stats]\n")
    os.chmod(config / "replayer", 0o700)  # its owner's only
    os.chmod(tmp_path, 0o755)
    command = [sys.executable, "-m", "replayer.cli", "--db", str(recorded)]
    prefix: list[str] = []
    if os.geteuid() == 0:  # root enters every folder: the command runs as nobody
        assert shutil.which("setpriv"), "as root the test needs setpriv (util-linux) to run as nobody"
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        os.chmod(config / "replayer", 0o000)
    os.chmod(recorded, 0o644)
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "HOME": str(tmp_path)}
    try:
        r = subprocess.run([*prefix, *command, "db", "path"], capture_output=True, text=True, env=env, timeout=60)
        file = config / "replayer" / "config.toml"
        assert r.returncode == 2 and r.stderr == f"replayer: cannot read config file {file}: Permission denied: " \
                                                 "fix it or remove it\n", r.stderr
        r = subprocess.run([*prefix, *command, "record", "--", "true"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=120)  # fmt: skip
        assert r.stderr.startswith(f"replayer: cannot read config file {file}"), r.stderr
        assert "going on with the default settings" in r.stderr and "Traceback" not in r.stderr, r.stderr
        if prefix:  # a database in a folder this user may not enter (the test's own, as nobody): one line
            assert r.returncode == 2 and r.stderr.splitlines()[1:] == [
                f"replayer: {recorded}: permission denied for this user; fix its permissions or choose another path"
            ], r.stderr
    finally:
        os.chmod(config / "replayer", 0o700)


# -- a damaged database ------------------------------------------------------------------------
def chats_db(path, n: int = 3):
    """`n` one-turn conversations conv_0.., each with a first message of its own."""
    from tui_data import T0, reply

    from replayer import Recorder

    with Recorder(path) as rec:
        for i in range(n):
            rec.record({"model": "claude-haiku-4-5", "max_tokens": 50,
                        "messages": [{"role": "user", "content": f"question {i}"}]},
                       reply(f"answer {i}", model="claude-haiku-4-5"), conversation_id=f"conv_{i}",
                       started_at=T0 + i)  # fmt: skip
    return path


def lose_first_message(path, conversation: str) -> None:
    """Drop the blob of `conversation`'s first message, as a damaged page does: SQLite leaves a
    page it can't read out of a query's answer, and the row that points at it finds nothing."""
    con = sqlite3.connect(path)
    (blob,) = con.execute(
        "SELECT n.blob FROM turns t JOIN nodes n ON n.id = t.context_node WHERE t.conversation_id = ?", [conversation]
    ).fetchone()
    con.execute("DELETE FROM blobs WHERE id = ?", [blob])
    con.commit()
    con.close()


def damage_table(path, table: str) -> None:
    """Write over the root page of `table`'s b-tree, as a disk that lost a write does: SQLite then
    says "database disk image is malformed" when a query reads it, not when the file is opened."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()
    (size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xff" * 64)


def test_a_missing_row_says_the_file_is_corrupt_in_one_line(tmp_path):
    """`list` on a database whose pages lost a message: a TypeError's traceback (blob_text read
    a row that wasn't there). Every command now says the file is corrupt, as for a truncated file."""
    from replayer.store.faults import Fault
    from replayer.store.queries import Store
    from replayer.store.schema import DBError, open_db

    db = chats_db(tmp_path / "damaged.db")
    lose_first_message(db, "conv_1")
    for cmd in (["list"], ["list", "--json"], ["export"]):
        r = run("--db", str(db), *cmd)
        assert r.exit_code == 2, (cmd, r.output)
        assert r.output.count("\n") == 1
        assert r.output.startswith(f"replayer: {db} is not a SQLite database or is corrupt")
        assert "move it aside" in r.output and "Traceback" not in r.output
    with pytest.raises(DBError, match="is corrupt") as raised:
        Store(open_db(db, create=False)).conversations(limit=10)
    assert raised.value.fault is Fault.CORRUPT
    assert run("--db", str(db), "show", "conv_0").exit_code == 0  # what is whole still reads


def test_a_damaged_page_is_said_as_a_corrupt_file_and_its_backup_as_damaged(tmp_path):
    db = chats_db(tmp_path / "damaged.db")
    damage_table(db, "blobs")
    r = run("--db", str(db), "export")
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert r.output == f"replayer: {db} is not a SQLite database or is corrupt (database disk image is malformed): " \
                       "move it aside or pick another --db\n"
    r = run("--db", str(db), "db", "backup", str(tmp_path / "copy.db"))
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert r.output.startswith(f"replayer: backed up to {tmp_path / 'copy.db'}, but the copy is damaged (")
    assert f"{db} is corrupt" in r.output and (tmp_path / "copy.db").exists()  # kept: what could be read
    whole = chats_db(tmp_path / "whole.db")
    r = run("--db", str(whole), "db", "backup", str(tmp_path / "whole-copy.db"))
    assert r.exit_code == 0 and r.output == f"backed up to {tmp_path / 'whole-copy.db'}\n"


# -- an empty file -------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", [["list"], ["show", "conv_1"], ["export"], ["stats"], ["alerts"], ["browse"],
                                 ["rerun", "conv_1:0", "--yes"], ["compare", "conv_1", "conv_2"], ["fork", "run_x:0"],
                                 ["replay", "conv_1", "--", "true"], ["db", "backup", "copy.db"]])  # fmt: skip
def test_a_command_that_reads_leaves_an_empty_file_as_it_was(tmp_path, cmd, monkeypatch):
    """`list` and `export` on a 0-byte file said "No conversations recorded yet" and made it a
    400 KB replayer database: SQLite makes any file it opens one. A command that reads says what
    the file is; only recording into it makes it a database."""
    from replayer.tui.app import ReplayerApp

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ReplayerApp, "run", lambda self, *args, **kwargs: None)  # browse: no app in a test
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    r = run("--db", str(empty), *cmd)
    assert r.exit_code == 2, r.output
    assert r.output == (
        f"replayer: {empty} is empty (0 bytes), not a replayer database: record into it, or give another --db\n"
    )
    assert empty.stat().st_size == 0 and not (tmp_path / "copy.db").exists()


def test_db_migrate_makes_an_empty_file_the_database_and_says_so(tmp_path):
    """`db migrate` on a 0-byte file made it a replayer database saying only "applied 15
    migrations", as for a new file. It does make it one, as `record` does (its help: "Create the
    database"; the commands that read tell the user to record into it), and says what it did."""
    from replayer.store.schema import _known

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    r = run("--db", str(empty), "db", "migrate")
    assert r.exit_code == 0 and r.stdout == "", r.output
    assert r.stderr.startswith(f"made {empty} (an empty file, 0 bytes) a replayer database: applied "
                               f"{len(_known())} migrations: m001_initial, ") and r.stderr.count("\n") == 1  # fmt: skip
    assert run("--db", str(empty), "list", "--json").stdout == "[]\n"
    assert run("--db", str(empty), "db", "migrate").stderr == "up to date\n"
    fresh = tmp_path / "fresh.db"
    r = run("--db", str(fresh), "db", "migrate")
    assert r.exit_code == 0 and r.stderr.startswith("applied ") and fresh.stat().st_size > 0


def test_recording_into_a_folder_that_does_not_exist_makes_it_and_says_so(api, tmp_path):
    """--db in a folder that isn't there: the commands that record made the whole path without
    a word (a mistyped --db went unseen). They still make it (a recorder must not fail), and say
    so once; the commands that read make nothing."""
    import signal

    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{FAKE_KEY}", base_url="{api.url}")
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{{"role": "user", "content": "hi"}}])
    """))

    def said(folder):
        return f"replayer: created folder {folder} for the database\n"

    db = tmp_path / "runs" / "today" / "agent.db"
    r = subprocess.run([sys.executable, "-m", "replayer.cli", "--db", str(db), "record", "--", sys.executable,
                        str(script)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    *before, last = r.stderr.splitlines(keepends=True)
    assert before == [said(db.parent)] and last.startswith("replayer: recorded 1 call"), r.stderr
    again = subprocess.run([sys.executable, "-m", "replayer.cli", "--db", str(db), "record", "--", sys.executable,
                            str(script)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 0 and "created folder" not in again.stderr, again.stderr  # once: it is there now
    db = tmp_path / "proxied" / "p.db"
    proc = subprocess.Popen([sys.executable, "-m", "replayer.cli", "--db", str(db), "proxy", "--port", "0",
                             "--upstream", api.url], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stderr.readline() == said(db.parent)
        assert proc.stderr.readline().startswith("replayer proxy: listening on")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    db = tmp_path / "migrated" / "m.db"
    r = run("--db", str(db), "db", "migrate")
    assert r.exit_code == 0 and r.stderr.startswith(said(db.parent) + "applied "), r.stderr
    transcript = os.path.join(os.path.dirname(__file__), "fixtures", "claude_code", "handmade", "compact-summary.jsonl")
    db = tmp_path / "imported" / "i.db"
    r = run("--db", str(db), "import", "claude-code", transcript)
    assert r.exit_code == 0 and r.stderr.startswith(said(db.parent) + "imported 3 turns"), r.stderr
    # (import otlp: test_otlp_import.test_an_input_with_nothing_to_import_makes_no_database)


@pytest.mark.parametrize("cmd", [[], ["list"], ["show", "conv_1"], ["export"], ["stats"], ["alerts"], ["browse"],
                                 ["rerun", "conv_1:0", "--yes"], ["compare", "conv_1", "conv_2"], ["fork", "run_x:0"],
                                 ["db", "backup", "copy.db"]])  # fmt: skip
def test_a_command_that_reads_makes_no_folder_for_a_missing_database(tmp_path, cmd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere" / "x.db"
    r = run("--db", str(missing), *cmd)
    assert r.exit_code == 2 and r.output == (
        f"replayer: no database at {missing}: record something first, or pass --db / set $REPLAYER_DB\n"
    ), r.output
    assert not missing.parent.exists() and not (tmp_path / "copy.db").exists()


def test_recording_into_an_empty_file_makes_it_the_database(api, tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{FAKE_KEY}", base_url="{api.url}")
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{{"role": "user", "content": "hi"}}])
    """))
    r = subprocess.run([sys.executable, "-m", "replayer", "--db", str(empty), "record", "--", sys.executable,
                        str(script)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(json.loads(run("--db", str(empty), "list", "--json").output)) == 1


# -- no terminal, no stdin -------------------------------------------------------------------------
def _replayer(*args, timeout=60, **kwargs):
    """The CLI in a process of its own, as a script or cron job runs it."""
    env = {**os.environ, "ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    streams = {} if "stdout" in kwargs else {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.run([sys.executable, "-m", "replayer.cli", *args], text=True, timeout=timeout, env=env,
                          **streams, **kwargs)  # fmt: skip


def _dump(path):
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def test_a_closed_stdin_is_one_line_not_a_traceback(recorded, tmp_path):
    """`replayer import export - <&-` (a service or a script with no stdin) was an AttributeError
    traceback, and so was rerun or replay --live-from without --yes (asking whether stdin is a
    terminal). "-" with no stdin is one line saying so; a confirmation that can't be asked is
    refused as on a pipe; nothing is written, and an import makes no database."""
    closed = {"preexec_fn": lambda: os.close(0)}  # the child starts with no fd 0: sys.stdin is None
    new = tmp_path / "new.db"
    for args in (["import", "export", "-"], ["import", "otlp", "-"], ["import", "otlp", "-", "--user", "x"]):
        r = _replayer("--db", str(new), *args, **closed)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-600:]
        assert r.stderr.count("\n") == 1 and "stdin is closed, so - has nothing to read: pipe the input in" in r.stderr
        assert not new.exists()
    before = _dump(recorded)
    for args, said in ((["rerun", "conv_one:1"], "not sending without confirmation: add --yes"),
                       (["replay", "conv_one", "--live-from", "1", "--", "true"],
                        "not going live without confirmation: add --yes")):  # fmt: skip
        r = _replayer("--db", str(recorded), *args, **closed)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-600:]
        assert r.stderr.splitlines()[-1] == f"replayer: {said}", r.stderr
    assert _dump(recorded) == before


@pytest.mark.parametrize("cmd", [["browse"], []])
def test_the_browser_with_no_terminal_says_so_instead_of_waiting_forever(recorded, cmd):
    """`replayer` or `replayer browse` in a script, cron or CI (stdin a pipe or /dev/null) started
    the terminal app anyway: it drew escape codes into the log and waited for keys forever. It is
    one line naming what to use instead, exit 2."""
    r = _replayer("--db", str(recorded), *cmd, stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 2 and r.stdout == "", r.stderr[-300:]
    assert r.stderr == (
        "replayer: the browser needs a terminal (stdin and stderr here are not both one): run it in one, "
        "or print its lists with replayer list and replayer show ID\n"
    )


def test_the_demo_on_a_terminal_with_no_stdin_lists_instead_of_opening_the_browser(tmp_path):
    """`replayer demo < /dev/null` with its output on a terminal opened the browser, which had no
    keys to read and waited forever; it now prints the list, as with its output on a pipe."""
    import pty

    main, side = pty.openpty()
    try:
        r = _replayer("--db", str(tmp_path / "demo.db"), "demo", stdin=subprocess.DEVNULL, stdout=side,
                      stderr=subprocess.PIPE, timeout=120)  # fmt: skip
    finally:
        os.close(side)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        os.close(main)
    assert r.returncode == 0, r.stderr[-300:]
    assert "next: replayer --db" in r.stderr and b"CONVERSATION" in shown, shown[:300]


@pytest.mark.parametrize(("args", "where"), [
    (["list", "-n", "0"], "replayer list"), (["stats", "--days", "abc"], "replayer stats"), (["lst"], "replayer"),
    (["list", "--bogus"], "replayer list"), (["--bogus", "list"], "replayer"), (["record"], "replayer record"),
    (["import", "otlp"], "replayer import otlp"), (["show"], "replayer show"),
])  # fmt: skip
def test_clicks_own_usage_errors_are_one_line_naming_the_commands_help(args, where, tmp_path):
    """A value out of range, an unknown option or command, a missing argument: click printed four
    lines (usage, a hint, a blank, "Error: ..."); bad input is one line saying what is wrong, and
    where the command's options are listed. Nothing is written."""
    r = subprocess.run([sys.executable, "-m", "replayer", "--db", str(tmp_path / "u.db"), *args],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
    assert r.returncode == 2 and r.stdout == "", r
    (line,) = r.stderr.splitlines()
    assert line.startswith("replayer: ") and line.endswith(f"(see {where} --help)"), line
    assert "Traceback" not in r.stderr and not (tmp_path / "u.db").exists()
    # help asked for is still help
    r = subprocess.run([sys.executable, "-m", "replayer", "import"], capture_output=True, text=True, timeout=60)
    assert "Commands:" in r.stdout + r.stderr


def test_a_turn_id_where_a_conversation_goes_and_a_conversation_id_where_a_turn_goes_say_which_is_which(recorded):
    """`show TURN_ID` said "no conversation 'turn_…'" and `rerun CONV --list` "no turn 'conv_…'":
    each now says what the id is and how to name what the command takes (the turn's conversation,
    and it as CONV:N; a conversation's turns as CONV:N)."""
    db = recorded
    store_turns = json.loads(run("--db", str(db), "show", "conv_one", "--json").output)["turns"]
    turn = store_turns[1]["turn_id"]
    for args in (["show", turn], ["export", "--conversation", turn], ["compare", turn, "conv_one"]):
        r = CliRunner().invoke(cli, ["--db", str(db), *args])
        assert r.exit_code == 2, (args, r.output)
        assert r.output == (f"replayer: {turn!r} is a turn's id, not a conversation's: turn 1 of conv_one "
                            f"(replayer show conv_one; that turn is conv_one:1)\n"), (args, r.output)  # fmt: skip
    r = CliRunner().invoke(cli, ["--db", str(db), "rerun", "conv_one", "--list"])
    assert r.exit_code == 2 and r.output == (
        "replayer: 'conv_one' is a conversation's id, not a turn's: give one of its turns as conv_one:N "
        "(N from 0 to 2; -1 the last)\n"
    ), r.output
    r = CliRunner().invoke(cli, ["--db", str(db), "show", "nosuch"])
    assert r.exit_code == 2 and r.output.startswith("replayer: no conversation 'nosuch' in "), r.output
