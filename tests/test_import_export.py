"""`replayer import export`: the lines `replayer export` writes, back into a database as the
attempts they were (a bug report's run.jsonl, a CI artifact, a colleague's run), so they can be
listed, shown, browsed, rerun and counted; and `replayer import FILE` naming the command that
imports FILE. Through the CLI, on databases recorded through the real SDK against the fake API."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from test_fork import fork_env, fork_of, loop_api, recorded, recorded_loop, replayer  # noqa: F401 (fixtures)
from test_otlp_import import collector_line, convention_loop, record_session, sdk_spans, stderr_on_a_terminal
from tui_data import build_db, record_cut_streams

from replayer import Recorder
from replayer.cli import cli

PROJECTS = Path(__file__).parent / "fixtures" / "claude_code" / "projects"
BEYOND_EXPORT = ("parent_tool_use_id", "context_resets")
"""What `show --json` says of an imported Claude Code conversation that no export line holds."""


def run(db, *args, stdin=None):
    return CliRunner().invoke(cli, ["--db", str(db), *map(str, args)], input=stdin)


def export_text(db) -> list[str]:
    r = run(db, "export")
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines()


def imported(db, path, *args, stdin=None):
    r = run(db, "import", "export", path, "--json", *args, stdin=stdin)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def team_db(api, path: Path) -> Path:
    """Several conversations, two named users and none: a tool loop with a tool error and a
    compaction (alice), a chat (bob), a tool loop in a named conversation with tags and a trace
    id (user_1), a stream with an event type this version doesn't know, a call retried after a
    529, a 400, streams cut by an error event (one retried, one given up), and Claude Code
    transcripts imported (reconstructed turns, a subagent linked to its session)."""
    import anthropic

    from replayer.fakeapi import message_events

    build_db(path)
    record_session(api, path)
    with Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        record_cut_streams(api, rec, client, message_events({"id": "msg_c", "model": "claude-sonnet-4-5"})[:2])
    assert run(path, "import", "claude-code", PROJECTS).exit_code == 0
    return path


def shown(db, conversation: str) -> dict:
    r = run(db, "show", conversation, "--json")
    assert r.exit_code == 0, r.output
    return {k: v for k, v in json.loads(r.stdout).items() if k not in BEYOND_EXPORT}


def listed(db, *args) -> list[dict]:
    r = run(db, "list", "--json", "-n", "1000", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_an_export_imported_into_an_empty_database_exports_the_same_lines(api, tmp_path):
    source = team_db(api, tmp_path / "team.db")
    lines = export_text(source)
    docs = [json.loads(x) for x in lines]
    # what the round trip must carry: every kind of attempt the export writes
    assert {d["user_id"] for d in docs} >= {"alice", "bob", "user_1", None}
    assert len({d["conversation_id"] for d in docs}) >= 6
    assert any(d["stream"] and d["unknown_events"] for d in docs) and any(d["attempt"] == 1 for d in docs)
    assert any(d["status"] == 400 for d in docs) and any(d["error"] and d["stream"] for d in docs)
    assert any(d["trace_id"] for d in docs) and any(d.get("parent_conversation_id") for d in docs)
    assert any(d.get("reconstructed") for d in docs)
    assert any(b.get("type") == "tool_use" for d in docs if d["response"] for b in d["response"]["content"])
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")

    laptop = tmp_path / "laptop.db"
    r = run(laptop, "import", "export", path)
    assert r.exit_code == 0, r.output
    conversations = len({d["conversation_id"] for d in docs})
    assert r.stderr == (f"imported {len(lines)} attempts ({conversations} new conversations) "
                        f"from {len(lines)} export lines\n")  # fmt: skip
    assert export_text(laptop) == lines  # every key of every line, in the same order: the text itself
    assert listed(laptop) == listed(source)
    for conversation in {d["conversation_id"] for d in docs}:
        assert shown(laptop, conversation) == shown(source, conversation), conversation
    stats = [json.loads(run(db, "stats", "--days", "36500", "--json").stdout) for db in (source, laptop)]
    assert stats[1] == stats[0]

    r = run(laptop, "import", "export", path)  # the same file again: nothing new
    assert r.exit_code == 0, r.output
    assert r.stderr == (f"imported 0 attempts (0 new conversations) from {len(lines)} export lines "
                        f"({len(lines)} attempts already in the database)\n")  # fmt: skip
    home = imported(source, path)  # into the database that wrote it: what it recorded is kept as recorded
    made_here = sum(1 for d in docs if not d.get("imported_from"))
    assert 0 < made_here < len(lines)
    assert (home["attempts"], home["already_imported"], home["matched_recorded"]) == (0, len(lines) - made_here,
                                                                                      made_here)
    assert export_text(laptop) == export_text(source) == lines
    # the transcripts the imported turns came from, imported again: the same calls, kept once
    r = run(laptop, "import", "claude-code", PROJECTS, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["turns"] == 0, r.output


def tagged_db(path: Path) -> Path:
    """Conversations recorded with tags: two `record` runs' ids (the second run continuing one of
    the first run's conversations, so that turn has tags of its own), a user's own tags of every
    JSON type, and none."""
    from tui_data import reply

    def ask(rec, cid, text, tags, history=()):
        with rec.conversation(cid, tags=tags):
            request = {"model": "claude-haiku-4-5", "max_tokens": 20,
                       "messages": [*history, {"role": "user", "content": text}]}
            rec.record(request, reply(f"re: {text}", model="claude-haiku-4-5"), started_at=1_764_000_000.0)
            return request["messages"]

    with Recorder(path) as rec:
        first = ask(rec, "conv_search", "find it", {"run": "run_1", "team": "search"})
        ask(rec, "conv_billing", "bill it", {"run": "run_1", "attempt": 2, "beta": True, "note": None})
        ask(rec, "conv_plain", "just ask", None)
        ask(rec, "conv_search", "and again", {"run": "run_2"},
            [*first, {"role": "assistant", "content": [{"type": "text", "text": "re: find it"}]}])
    return path


def test_an_exports_tags_come_back(tmp_path):
    """Each line holds the tags its call was recorded with (`tags`, last of the keys every line
    has): imported, `list --run` and `--tag` find the same conversations, a turn whose tags differ
    from its conversation's keeps its own, and the export is the same text again."""
    source = tagged_db(tmp_path / "tags.db")
    lines = export_text(source)
    docs = [json.loads(x) for x in lines]
    assert [list(d)[-1] for d in docs] == ["tags"] * len(docs)
    assert [(d["conversation_id"], d["index"], d["tags"]) for d in docs] == [
        ("conv_search", 0, {"run": "run_1", "team": "search"}),
        ("conv_search", 1, {"run": "run_2"}),
        ("conv_billing", 0, {"run": "run_1", "attempt": 2, "beta": True, "note": None}),
        ("conv_plain", 0, {}),
    ]
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == len(lines)
    assert export_text(laptop) == lines
    assert listed(laptop) == listed(source)
    for args in (("--run", "run_1"), ("--run", "run_2"), ("--tag", "team=search"), ("--tag", "beta=true")):
        assert listed(laptop, *args) == listed(source, *args) != [], args
    assert {c["conversation_id"] for c in listed(laptop, "--run", "run_2")} == {"conv_search"}


def test_lines_written_before_tags_were_exported_still_import(tmp_path):
    source = tagged_db(tmp_path / "tags.db")
    lines = export_text(source)
    old = [json.dumps({k: v for k, v in json.loads(x).items() if k != "tags"}) for x in lines]
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join(old) + "\n")
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == len(lines)
    again = [json.loads(x) for x in export_text(laptop)]
    assert [d.pop("tags") for d in again] == [{}] * len(lines)
    assert again == [json.loads(x) for x in old]
    assert listed(laptop, "--run", "run_1") == []


def test_an_export_from_stdin_or_gzip_imports_the_same(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    text = "\n".join(lines) + "\n"
    gz = tmp_path / "run.jsonl.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert imported(tmp_path / "a.db", gz)["attempts"] == len(lines)
    assert imported(tmp_path / "b.db", "-", stdin=text)["attempts"] == len(lines)
    for db in ("a.db", "b.db"):
        assert export_text(tmp_path / db) == lines


def test_a_forks_copied_turns_stay_copies(loop_api, recorded, tmp_path):  # noqa: F811 (the fixtures)
    """A fork's turns before its fork point copy recorded turns (copied_from): imported, they
    still do, so they add to no spend, and the fork stays linked to the conversation it forks."""
    db, conv, _work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "fork", f"{conv}:2", "--system", "You are terse.", "--yes", env=fork_env(loop_api))
    assert proc.returncode == 0, proc.stderr
    fork, _ = fork_of(db)
    lines = export_text(db)
    assert any(json.loads(x).get("copied_from") for x in lines)
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == len(lines)
    assert export_text(laptop) == lines
    stats = [json.loads(run(d, "stats", "--days", "36500", "--json").stdout) for d in (db, laptop)]
    assert stats[1] == stats[0]  # the fork's live turns apart from the agents' spend, its copies no spend
    # the fork's link whole: its parent, the turn it forked at and its edits (its tags)
    assert shown(db, fork)["fork_of"]["edits"]
    assert shown(laptop, fork) == shown(db, fork)
    assert listed(laptop) == listed(db)


def test_a_line_cut_off_at_the_end_is_said_so_and_the_rest_imported(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    laptop = tmp_path / "laptop.db"
    r = run(laptop, "import", "export", path, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["attempts"] == len(lines) - 1
    assert f"{path}: line {len(lines)}: cut off at the end of the input" in r.stderr
    assert r.stderr.endswith("(1 malformed line skipped)\n"), r.stderr
    assert export_text(laptop) == lines[:-1]
    path.write_text("\n".join(lines) + "\n")  # whole: the last line comes in, the rest is there
    got = imported(laptop, path)
    assert (got["attempts"], got["already_imported"]) == (1, len(lines) - 1)
    assert export_text(laptop) == lines


def test_a_line_that_is_no_export_line_inside_an_export_is_skipped_and_reported(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    broken = json.loads(lines[1])
    broken["started_at"] = "yesterday"
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(broken), "{", '{"hello": 1}', *lines[2:]]) + "\n")
    r = run(tmp_path / "laptop.db", "import", "export", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["attempts"] == len(lines) - 1 and [m["line"] for m in got["malformed"]] == [2, 3, 4]
    assert "line 2: an export line that can't be read" in r.stderr and "line 3: not JSON" in r.stderr
    assert "line 4: not an export line" in r.stderr


def otlp_file(tmp_path) -> Path:
    specs, _ = convention_loop()
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans(specs)) + "\n")
    return path


def transcript(tmp_path) -> Path:
    return next(p for p in sorted(PROJECTS.rglob("*.jsonl")) if "subagents" not in p.parts)


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda tmp: tmp / "nothere.jsonl", "no such file: {path}; check the path (or give - to read stdin)"),
        (lambda tmp: tmp, "{path} is a folder: give a file `replayer export` wrote"),
        (lambda tmp: _write(tmp, b"hello, world\nthis is prose\n"),
         "{path} is not a replayer export: none of its 2 lines is an export line (line 1: not JSON); "
         "give the JSON lines `replayer export` writes"),
        (lambda tmp: _write(tmp, b'{"resourceLogs": []}\n'),
         "{path} is not a replayer export: line 1: not an export line (no turn_id, conversation_id, attempt, "
         "request); give the JSON lines `replayer export` writes"),
        (lambda tmp: _write(tmp, b"\x0a\x00\x12\x00binary"),
         "{path} is not a replayer export: it is binary data; give the JSON lines `replayer export` writes"),
        (otlp_file, "{path} is OTLP JSON (spans), not a replayer export: import it with `replayer import otlp {path}`"),
        (transcript, "{path} is a Claude Code transcript, not a replayer export: import it with "
                     "`replayer import claude-code {path}`"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_makes_no_database(tmp_path, make, said):
    path = make(tmp_path)
    db = tmp_path / "new" / "laptop.db"
    r = run(db, "import", "export", path)
    assert r.exit_code == 2, r.output
    assert r.output == f"replayer: {said.format(path=path)}\n"
    assert not db.parent.exists()


def _write(tmp: Path, content: bytes) -> Path:
    path = tmp / "in.jsonl"
    path.write_bytes(content)
    return path


def test_an_empty_input_imports_nothing_and_makes_no_database(tmp_path):
    path = _write(tmp_path, b"\n")
    db = tmp_path / "new" / "laptop.db"
    r = run(db, "import", "export", path)
    assert r.exit_code == 0 and r.stderr == "imported 0 attempts (0 new conversations) from 0 export lines\n"
    assert not db.parent.exists()


def test_progress_bar_on_a_terminal_only(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(export_text(source)) + "\n")
    r = run(tmp_path / "a.db", "import", "export", path)
    assert r.exit_code == 0 and "importing" not in r.stderr  # stderr no terminal: no bar
    shown = stderr_on_a_terminal("--db", tmp_path / "b.db", "import", "export", path)
    assert "importing" in shown and "imported 6 attempts" in shown, shown


def test_a_file_read_by_a_reader_process_imports_the_same(api, tmp_path, monkeypatch):
    from replayer.cli import importing

    source = team_db(api, tmp_path / "team.db")
    lines = export_text(source)
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(importing, "READ_AHEAD_BYTES", 10)
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == len(lines)
    assert export_text(laptop) == lines


def test_a_file_given_where_the_import_command_goes_is_told_the_command(api, tmp_path):
    """`replayer import run.jsonl` said "No such command 'run.jsonl'" (and click's usage): it
    names the command that imports that file, by what its first line is."""
    source = tmp_path / "team.db"
    record_session(api, source)
    export = tmp_path / "run.jsonl"
    export.write_text("\n".join(export_text(source)) + "\n")
    for path, command, what in ((export, "export", "a replayer export"), (otlp_file(tmp_path), "otlp", "OTLP JSON"),
                                (transcript(tmp_path), "claude-code", "a Claude Code transcript")):  # fmt: skip
        r = run(tmp_path / "b.db", "import", path)
        assert r.exit_code == 2
        assert r.output.startswith(f"replayer: {path} is {what}") and r.output.count("\n") == 1, r.output
        assert r.output.endswith(f": import it with `replayer import {command} {path}`\n"), r.output
    prose = _write(tmp_path, b"hello\n")
    r = run(tmp_path / "b.db", "import", prose)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "none of what replayer imports" in r.output
    r = run(tmp_path / "b.db", "import", PROJECTS)
    assert r.exit_code == 2 and r.output == (f"replayer: {PROJECTS} is a folder: `replayer import claude-code "
                                             f"{PROJECTS}` imports the Claude Code transcripts under it\n")
    r = run(tmp_path / "b.db", "import", "exprot")
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "claude-code, export, otlp" in r.output, r.output
    assert not (tmp_path / "b.db").exists()


# -- into a database that has the same conversation ids -----------------------------------------


def by_turn(db, conversation: str) -> dict[str, dict]:
    """`show --json`'s turns of a conversation by turn id, without their index (the place a
    merged conversation gives them), and the indexes in turn order."""
    turns = shown(db, conversation)["turns"]
    return {t["turn_id"]: {k: v for k, v in t.items() if k != "index"} for t in turns}


def indexes(db, conversation: str) -> list[tuple[int, str]]:
    return [(t["index"], t["turn_id"]) for t in shown(db, conversation)["turns"]]


def test_a_run_with_the_same_conversation_ids_goes_after_this_databases_own_turns(api, tmp_path):
    """The same agent (a fixed conversation id, conv_loop) run on two machines: the colleague's
    export imported here was refused line by line as "malformed" (its turn indexes were taken)
    and the command said it succeeded. Its turns now follow this database's own in conv_loop,
    as a second run recording into the same conversation adds them; each attempt comes in once,
    with the same cost, usage and tool calls as where it was recorded."""
    a1, own = tmp_path / "a1.db", tmp_path / "own.db"
    record_session(api, a1)
    record_session(api, own)
    lines = export_text(a1)
    path = tmp_path / "a1.jsonl"
    path.write_text("\n".join(lines) + "\n")
    mine = indexes(own, "conv_loop")
    theirs = indexes(a1, "conv_loop")
    assert [i for i, _ in mine] == [i for i, _ in theirs] == [0, 1]  # the same indexes on both machines
    before = by_turn(own, "conv_loop")

    r = run(own, "import", "export", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert (got["attempts"], got["already_imported"], got["malformed"]) == (len(lines), 0, [])
    assert got["continued_conversations"] == ["conv_loop"]
    assert "malformed" not in r.stderr and "skipped" not in r.stderr, r.stderr
    assert r.stderr.endswith(
        f"from {len(lines)} export lines (2 turns added after the turns already here in 1 conversation of the "
        "same id: conv_loop)\n"
    ), r.stderr
    # this database's own turns first, where they were; the run's after them, in its order
    assert indexes(own, "conv_loop") == [*mine, *[(i + 2, t) for i, t in theirs]]
    merged = by_turn(own, "conv_loop")
    assert {t: merged[t] for t in before} == before
    source = by_turn(a1, "conv_loop")
    assert {t: merged[t] for t in source} == source  # cost, usage, tool calls, attempts, times
    assert sum(t["cost_usd"] for t in merged.values()) > sum(t["cost_usd"] for t in before.values())
    # every other line as it was (their conversations are new here), this one's lines but the index
    exported = {json.loads(x)["turn_id"] + str(json.loads(x)["attempt"]): json.loads(x) for x in export_text(own)}
    for line in map(json.loads, lines):
        here = exported[line["turn_id"] + str(line["attempt"])]
        if line["conversation_id"] == "conv_loop":
            assert here.pop("index") == line.pop("index") + 2
        assert here == line

    again = run(own, "import", "export", path, "--json")  # the same file again: nothing new
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["attempts"], json.loads(again.stdout)["already_imported"]) == (0, len(lines))
    assert indexes(own, "conv_loop") == [*mine, *[(i + 2, t) for i, t in theirs]]

    record_session(api, a1)  # the colleague runs the agent again: a superset of the first export
    more = export_text(a1)
    assert set(lines) < set(more)
    path.write_text("\n".join(more) + "\n")
    got = imported(own, path)
    assert (got["attempts"], got["already_imported"]) == (len(more) - len(lines), len(lines))
    theirs = indexes(a1, "conv_loop")
    assert [i for i, _ in theirs] == [0, 1, 2, 3]
    assert indexes(own, "conv_loop") == [*mine, *[(i + 2, t) for i, t in theirs]]
    merged, source = by_turn(own, "conv_loop"), by_turn(a1, "conv_loop")
    assert {t: merged[t] for t in source} == source
    assert imported(own, path)["attempts"] == 0


def refusing(path: Path, when: str) -> Path:
    """A replayer database whose turns table refuses the turns `when` (SQL on NEW) matches: the
    database refusing lines that read fine, as a bug in replayer's writing would make it."""
    import sqlite3

    from replayer.store.schema import open_db

    open_db(path).conn.close()
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON turns WHEN {when} BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.commit()
    conn.close()
    return path


def test_a_line_the_database_refuses_is_not_called_malformed_and_the_import_exits_1(api, tmp_path):
    """A line that reads fine but that the database would not store was reported as one more
    "malformed line" (skipped), and the import exited 0. It is now said apart, in one line that
    blames neither the file nor the user and says what to do, and the import exits 1; the rest is
    imported, and importing again once the database takes it brings it in."""
    import sqlite3

    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    refused = json.loads(lines[1])["turn_id"]
    assert sum(json.loads(x)["turn_id"] == refused for x in lines) == 1
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(lines) + "\n")
    laptop = refusing(tmp_path / "laptop.db", f"NEW.id = '{refused}'")
    r = run(laptop, "import", "export", path, "--json")
    assert r.exit_code == 1, r.output
    got = json.loads(r.stdout)
    assert (got["attempts"], got["malformed"]) == (len(lines) - 1, [])
    assert got["not_imported"] == [{"line": 2, "what": "IntegrityError: refused"}]
    assert "malformed" not in r.stderr, r.stderr
    summary, said = r.stderr.splitlines()
    assert summary.endswith("from 6 export lines (1 export line not imported: see below)"), summary
    assert said == (
        f"replayer: 1 export line read fine but could not be stored in {laptop} ({path} line 2: IntegrityError: "
        f"refused): not a fault of {path}, but of replayer or the database; import again to retry it (what came in "
        "is kept, once), and if it is refused again, report it with that line"
    )
    conn = sqlite3.connect(laptop)
    conn.execute("DROP TRIGGER refuse")
    conn.commit()
    conn.close()
    got = imported(laptop, path)
    assert (got["attempts"], got["already_imported"], got["not_imported"]) == (1, len(lines) - 1, [])
    assert export_text(laptop) == lines

    # Claude Code's transcripts: the same
    cc = refusing(tmp_path / "cc.db", "1")
    r = run(cc, "import", "claude-code", PROJECTS, "--json")
    assert r.exit_code == 1, r.output
    got = json.loads(r.stdout)
    assert got["turns"] == 0 and got["malformed"] == [] and got["not_imported"], got
    assert "malformed" not in r.stderr and r.stderr.splitlines()[-1].startswith(
        f"replayer: {len(got['not_imported'])} turns read fine but could not be stored in {cc} ("
    ), r.stderr


def test_a_line_with_a_value_that_is_no_number_is_malformed_not_the_databases_fault(api, tmp_path):
    """Values the database reads as numbers (a latency, token counts) that are none: the line's
    fault, reported as a malformed line when it is read (the rest imported, exit 0), never as one
    the database could not store."""
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    slow, many = json.loads(lines[1]), json.loads(lines[2])
    slow["latency_ms"] = "slow"
    many["response"]["usage"]["output_tokens"] = "many"
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(slow), json.dumps(many), *lines[3:]]) + "\n")
    r = run(tmp_path / "laptop.db", "import", "export", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["attempts"] == len(lines) - 2 and got["not_imported"] == []
    assert [m["line"] for m in got["malformed"]] == [2, 3]
    assert "line 2: an export line that can't be read (latency_ms is 'slow', not a number)" in r.stderr
    assert "line 3: an export line that can't be read (invalid literal for int()" in r.stderr


def test_an_import_into_a_locked_or_read_only_database_says_so_and_what_to_do(api, tmp_path, monkeypatch):
    """Every import into a database another process keeps locked, or one that is read-only, said
    only "replayer: database error: database is locked" / "attempt to write a readonly
    database": it now says what every command says of such a file, with what to do (exit 2)."""
    import sqlite3

    from test_failures import _make_read_only

    from replayer.store import schema

    source = tmp_path / "team.db"
    record_session(api, source)
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(export_text(source)) + "\n")
    spans = otlp_file(tmp_path)
    db = tmp_path / "laptop.db"
    schema.open_db(db).conn.close()
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 100)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for args in (("export", path), ("otlp", spans), ("claude-code", PROJECTS)):
            r = run(db, "import", *args)
            assert (r.exit_code, r.output) == (2, f"replayer: {db} is locked by another process: retry when it is "
                                                  "done\n"), args  # fmt: skip
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    _make_read_only(db, True)
    try:
        for args in (("export", path), ("otlp", spans), ("claude-code", PROJECTS)):
            # in a process of its own: SQLite lends a new connection a file descriptor this process
            # opened on the file before it was made read-only, which can still write
            p = replayer(db, "import", *map(str, args))
            said = f"replayer: {db} is read-only: fix its permissions (or its file system's), or give another --db\n"
            assert (p.returncode, p.stdout, p.stderr) == (2, "", said), args
    finally:
        _make_read_only(db, False)
    assert imported(db, path)["attempts"] == len(export_text(source))
