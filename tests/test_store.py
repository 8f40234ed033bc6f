"""The deduplicating store: the fast text scan agrees with a plain parse, and content is kept once."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from replayer.store.codec import MIN_CHARS, pack, unpack
from replayer.store.ingest import Ingestor
from replayer.store.queries import Store
from replayer.store.schema import DBError, open_db


@pytest.fixture
def scanner(tmp_path):
    ingestor = Ingestor(open_db(tmp_path / "s.db"))
    ingestor.db.conn.execute("BEGIN")
    yield ingestor.scanner
    ingestor.db.conn.execute("ROLLBACK")


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")], ids=["compact", "spaced"])
def test_fast_scan_agrees_with_a_full_parse(scanner, separators):
    """Requests that extend, branch, edit and shrink earlier histories, in any order."""
    rnd = random.Random(7)
    base = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i} " + "é✓" * rnd.randint(0, 30)}
            for i in range(40)]
    for trial in range(400):
        k = rnd.randint(0, 40)
        msgs = [dict(m) for m in base[:k]] + [{"role": "user", "content": f"new {trial} {j}"}
                                               for j in range(rnd.randint(0, 3))]
        if msgs and rnd.random() < 0.3:
            msgs[rnd.randrange(len(msgs))] = {"role": "user", "content": f"edited {trial}"}
        body = {"max_tokens": 5, "messages": msgs, "model": "m"}
        if rnd.random() < 0.5:
            body["system"] = rnd.choice(
                ["You are terse.", [{"type": "text", "text": "Sys", "cache_control": {"type": "ephemeral"}}]]
            )
        text = json.dumps(body, separators=separators, ensure_ascii=rnd.random() < 0.5)
        fast = scanner.parse_request(text)
        slow = scanner.parse_request_obj(json.loads(text))
        assert (fast.blobs, fast.nodes, fast.thread_keys, fast.node, fast.system) == (
            slow.blobs, slow.nodes, slow.thread_keys, slow.node, slow.system), trial
        assert fast.skeleton == slow.skeleton
        _stored_as_sent(scanner, text, fast)


def _stored_as_sent(scanner, text, parsed):
    """Each message's blob (and the system prompt's, the tools') holds it as this request sent it
    (each was first sent in the same key order here): compact, keys in their order, whether the
    scan read it or took it from an earlier request, and however the request spelled it."""
    from replayer.store.codec import compact, stored_json

    body = json.loads(text)
    conn = scanner.blobs.db.conn
    sent = body.get("messages") if isinstance(body, dict) else None
    if isinstance(sent, list):
        assert [stored_json(conn, b) for b in parsed.blobs] == [compact(m) for m in sent]
    for key in ("system", "tools"):
        if getattr(parsed, key) is not None:
            assert stored_json(conn, getattr(parsed, key)) == compact(body[key])


def _same_as_a_full_parse(scanner, text):
    fast = scanner.parse_request(text)
    slow = scanner.parse_request_obj(json.loads(text))
    assert (fast.blobs, fast.nodes, fast.thread_keys, fast.node, fast.system, fast.tools) == (
        slow.blobs, slow.nodes, slow.thread_keys, slow.node, slow.system, slow.tools)
    assert fast.skeleton == slow.skeleton
    _stored_as_sent(scanner, text, fast)
    return fast


@pytest.mark.parametrize(
    "dump",
    [
        lambda b: json.dumps(b, separators=(",", ":"), ensure_ascii=False),
        lambda b: json.dumps(b, ensure_ascii=True),
        lambda b: json.dumps(b, indent=2, ensure_ascii=False),
    ],
    ids=["compact-utf8", "spaced-ascii", "indented"],
)
def test_a_growing_history_is_matched_as_bytes_and_only_its_tail_parsed(scanner, dump):
    """Each request re-sends the last one's messages: they are reused, not parsed again, whatever
    the key order, separators, and characters (accents, emoji)."""
    msgs = [{"role": "user", "content": "Start: é✓ 🙂 " + "x" * 300}]
    for turn in range(12):
        body = {"max_tokens": 5, "messages": msgs, "model": "m"}
        if turn % 2:  # keys in another order, the system prompt before the messages
            body = {"system": "Be brief, and é✓ " * 30, "messages": msgs, "max_tokens": 5, "model": "m"}
        parsed = _same_as_a_full_parse(scanner, dump(body))
        assert parsed.reused == (len(msgs) - 2 if turn else 0)  # all but the two new ones
        assert parsed.messages[parsed.reused:] == msgs[parsed.reused:]
        msgs = [*msgs, {"role": "assistant", "content": [{"type": "text", "text": f"reply {turn} ✓"}]},
                {"role": "user", "content": f"next {turn} 🙂"}]


def _whole_reads(scanner, monkeypatch):
    """A list that gets an item for each request the scanner reads whole (not only its new messages)."""
    whole = []
    scan = scanner._scan
    monkeypatch.setattr(scanner, "_scan", lambda *a: whole.append(1) or scan(*a))
    return whole


def test_a_request_the_same_around_its_new_messages_is_read_only_there(scanner, monkeypatch):
    """An agent's next request has the same bytes before and after its messages (system prompt,
    tools, model): only the new messages are read, and the result is still a full parse's.
    Whatever differs there, or only looks like the end of the array, is read whole."""
    whole = _whole_reads(scanner, monkeypatch)
    sysp = "Be brief, é✓ 🙂 " * 40
    msgs = [{"role": "user", "content": "Start ] é✓ " + "x" * 300}]
    for turn in range(6):
        text = json.dumps({"max_tokens": 5, "messages": msgs, "model": "m", "system": sysp}, ensure_ascii=False)
        _same_as_a_full_parse(scanner, text)
        msgs = [*msgs, {"role": "assistant", "content": [{"type": "text", "text": f"] ], {turn} 🙂"}]},
                {"role": "user", "content": f"next {turn} ]"}]
    assert len(whole) == 1  # the first request only
    changed = [
        {"max_tokens": 5, "messages": msgs, "model": "n", "system": sysp},  # after the array
        {"max_tokens": 6, "messages": msgs, "model": "n", "system": sysp},  # before it
        {"max_tokens": 6, "messages": msgs, "model": "other", "system": sysp},
        {"max_tokens": 5, "messages": msgs, "extra": [1, 2], "model": "m", "system": sysp},  # a key ending in ]
    ]
    for body in changed:
        _same_as_a_full_parse(scanner, json.dumps(body, ensure_ascii=False))
        msgs = [*msgs, {"role": "user", "content": "more"}]
    # a new key whose value is an array ending where the old array ended: not read as messages
    first = {"role": "user", "content": "y" * 300}
    _same_as_a_full_parse(scanner, json.dumps({"messages": [first], "z": [1]}))
    _same_as_a_full_parse(scanner, json.dumps({"messages": [first, first], "y": [2], "z": [1]}))
    _same_as_a_full_parse(scanner, json.dumps({"messages": [first, first, {"a": 1}], "z": [1]}))
    _same_as_a_full_parse(scanner, json.dumps({"messages": [first, first, {"a": 1}], "z": [1]}))  # the same again


def test_calls_that_alternate_between_two_shapes_are_read_only_at_their_new_messages(scanner, monkeypatch):
    """Streamed and plain calls in turn ("stream": true among the keys before the messages, so
    the bytes around them differ from the last request's), and a second model now and then:
    after each shape's first request only the new messages are read, and each result is still a
    full parse's."""
    whole = _whole_reads(scanner, monkeypatch)
    sysp = "Be brief, é✓ 🙂 " * 40
    msgs = [{"role": "user", "content": "Start é✓ " + "x" * 300}]
    for turn in range(12):
        body = {"max_tokens": 5, "model": "m" if turn % 5 else "other"}
        if turn % 2:
            body["stream"] = True
        body |= {"system": sysp, "messages": msgs, "tools": [{"name": "t", "input_schema": {}}]}
        parsed = _same_as_a_full_parse(scanner, json.dumps(body, ensure_ascii=False))
        assert parsed.reused == (len(msgs) - 2 if turn else 0)
        msgs = [*msgs, {"role": "assistant", "content": [{"type": "text", "text": f"reply {turn} 🙂"}]},
                {"role": "user", "content": f"next {turn}"}]
    # the shapes plain, streamed, and the other model's (plain, then streamed at turn 5): read whole once each
    assert len(whole) == 4


@pytest.mark.parametrize("real", [True, False], ids=["then-the-real-one", "no-real-one"])
def test_bytes_that_only_look_like_the_messages_array_are_not_cut(scanner, real):
    """A key before "messages" can end in the same bytes (an escaped quote), and hold the same
    elements as the last request: the byte search finds it first, the text scan sees it isn't
    the top-level messages, and the body is scanned whole."""
    msgs = [{"role": "user", "content": "m" * 400}, {"role": "assistant", "content": "ok"}]
    _same_as_a_full_parse(scanner, json.dumps({"max_tokens": 5, "messages": msgs}))
    text = '{"x\\"messages":' + json.dumps(msgs)
    if real:
        text += ', "messages": ' + json.dumps(msgs + [{"role": "user", "content": "real"}])
    text += "}"
    parsed = _same_as_a_full_parse(scanner, text)
    assert parsed.skeleton['x"messages'] == msgs and len(parsed.blobs) == (3 if real else 0)


def test_a_key_given_twice_is_read_as_json_reads_it(scanner):
    """json.loads keeps the last value of a repeated key; so does the stored request, and a
    repeated messages array leaves nothing wrong behind for the next request."""
    a, b = {"role": "user", "content": "a"}, {"role": "user", "content": "b"}
    for text in ['{"system":"a","system":null}', '{"tools":[1],"tools":null}',
                 json.dumps({"messages": [a]})[:-1] + ', "messages": 5}',
                 json.dumps({"messages": [a]})[:-1] + ', "messages": ' + json.dumps([b]) + "}"]:  # fmt: skip
        _same_as_a_full_parse(scanner, text)
    _same_as_a_full_parse(scanner, json.dumps({"messages": [b]}))


def test_text_of_escaped_bytes_is_not_read_as_other_characters(scanner):
    """Lone surrogates that a bytes decoder would have made of invalid UTF-8 stay themselves."""
    _same_as_a_full_parse(scanner, '{"messages":[{"role":"user","content":"\udce2\udc82\udcac"}]}')


def test_history_is_reused_past_whitespace_and_a_tool_schema_naming_messages(scanner):
    """Whitespace after the last known message, and a "messages" property in a tool schema
    sent before the messages, don't stop the history from being matched as bytes."""
    tools = [{"name": "send", "input_schema": {"type": "object", "properties": {"messages": {"type": "string"}}}}]
    msgs = [{"role": "user", "content": "x" * 300}]
    for turn in range(4):
        body = json.dumps({"tools": tools, "messages": msgs}, separators=(",", ":"))
        text = body.replace("},{", "} ,{").replace("}]}", "} ]}")  # a space before each , and the ]
        parsed = _same_as_a_full_parse(scanner, text)
        assert parsed.reused == (len(msgs) - 2 if turn else 0)
        msgs = [*msgs, {"role": "assistant", "content": f"r{turn}"}, {"role": "user", "content": f"u{turn}"}]


def test_odd_bodies_fall_back_to_a_full_parse(scanner):
    for text in ['{"messages": "not a list", "model": "m"}', '[1, 2]', '{"model": "m"}  ', '{"messages":[]}']:
        parsed = scanner.parse_request(text)
        assert parsed is not None
    assert scanner.parse_request('{"messages":[]}').node == 0


def test_a_body_that_is_not_json_is_kept_as_text(tmp_path, caplog):
    """record() can be handed anything: a cut-off or non-JSON body is stored as the text it is
    (exported as a JSON string), with its response, instead of being skipped."""
    from conftest import exported

    from replayer import Recorder

    path = tmp_path / "t.db"
    resp = {"id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1}}  # fmt: skip
    bodies = ['{"model": "claude-haiku-4-5", "messages": [', "not json at all", b"\xff\xfe raw bytes"]
    with caplog.at_level("WARNING", logger="replayer"), Recorder(path) as rec:
        for body in bodies:
            rec.record(body, resp)
    lines = exported(path)
    assert sorted(line["request"] for line in lines) == sorted(
        [bodies[0], bodies[1], bodies[2].decode("utf-8", "surrogateescape")]
    )
    assert all(line["response"] == resp for line in lines)
    assert not [r for r in caplog.records if "could not store" in r.getMessage()]


def test_json_the_fast_scan_could_misread_is_kept_as_text(scanner):
    """A non-string key and trailing commas: json.loads refuses them, and so does the scan, so
    the body is kept as the text it is rather than as a reading of it."""
    for text in ['{1:2}', '{"a":1,}', '{"messages":[1,2],}', '{"messages":[{"role":"user","content":"x"},]}']:
        assert scanner.parse_request(text).skeleton == {"__body__": text}
    assert scanner.parse_request("{ }").skeleton == {}


def test_history_is_stored_once(tmp_path):
    from replayer import Recorder

    path = tmp_path / "d.db"
    with Recorder(path) as rec:
        msgs = [{"role": "user", "content": "start " + "x" * 5000}]
        for i in range(30):
            rec.record({"model": "claude-haiku-4-5", "max_tokens": 10, "system": "S" * 3000, "messages": msgs},
                       {"id": f"m{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": f"reply {i}"}], "stop_reason": "end_turn",
                        "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}})
            msgs = [*msgs, {"role": "assistant", "content": [{"type": "text", "text": f"reply {i}"}]},
                    {"role": "user", "content": f"next {i}"}]
    con = sqlite3.connect(path)
    texts = [unpack(v) for (v,) in con.execute("SELECT json FROM blobs")]
    assert sum(len(t) > 2000 for t in texts) == 2  # the first message and the system prompt, once each, for 30 turns
    # replies are stored once although each came as a response and again in the next request
    assert sum('reply 7"' in t for t in texts) == 1
    # and the two long ones are stored deflated, hundreds of bytes where the text is thousands
    count, longest = con.execute("SELECT COUNT(*), MAX(length(json)) FROM blobs WHERE typeof(json) = 'blob'").fetchone()
    assert count == 2 and longest < 200
    store = Store(open_db(path))
    lines = [json.loads(x) for x in store.export_lines()]
    assert len(lines) == 30 and {line["conversation_id"] for line in lines} == {lines[0]["conversation_id"]}
    assert len(lines[-1]["request"]["messages"]) == 59


def test_a_turn_tagged_apart_from_its_conversation_is_found_by_its_tags(tmp_path):
    """Tags are per call: turns added to a conversation under other tags (a later run that
    continues it by id or by threading) keep them, and a run finds the conversation by them."""
    from replayer import Recorder

    def reply(i):
        return {"id": f"msg_tag{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": f"reply {i}"}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}

    path = tmp_path / "t.db"
    msgs = [{"role": "user", "content": "hello"}]
    with Recorder(path) as rec:
        for i, run in enumerate(("run_a", "run_a", "run_b")):  # one connection: its caches hold the tags
            with rec.conversation("conv_kept", tags={"run": run}):
                rec.record({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": msgs}, reply(i))
            msgs = [*msgs, {"role": "assistant", "content": reply(i)["content"]}, {"role": "user", "content": f"q{i}"}]
    from replayer import context
    from replayer.captured import Context

    token = context.current.set(Context(tags={"run": "run_c"}))  # as `record` tags a run's calls
    try:
        with Recorder(path) as rec:  # a new connection, no id given: threading continues conv_kept
            rec.record({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": msgs}, reply(3))
    finally:
        context.current.reset(token)
    store = Store(open_db(path))
    assert {line["conversation_id"] for line in map(json.loads, store.export_lines())} == {"conv_kept"}
    for run in ("run_a", "run_b", "run_c"):
        assert [c.conversation_id for c in store.conversations(run=run)] == ["conv_kept"], run
        assert store.run_conversations(run) == ["conv_kept"]
    assert store.conversation_runs("conv_kept") == ["run_a", "run_b", "run_c"]
    assert store.db.execute("SELECT COUNT(*) FROM turn_tags").fetchone()[0] == 2  # only the turns that differ
    assert store.conversations(run="run_d") == []


def test_migrations_are_named_and_recorded(tmp_path):
    db = open_db(tmp_path / "m.db")
    rows = db.execute("SELECT migration_set, name FROM _sqlite_migrations").fetchall()
    assert rows == [("replayer", "m001_initial"), ("replayer", "m002_turn_text"), ("replayer", "m003_usage"),
                    ("replayer", "m004_thread_tips"), ("replayer", "m005_meta"), ("replayer", "m006_imported"),
                    ("replayer", "m007_stream_events"), ("replayer", "m008_runs"),
                    ("replayer", "m009_turn_tags"), ("replayer", "m010_copied"),
                    ("replayer", "m011_compaction_sums"), ("replayer", "m012_sent_back_keys"),
                    ("replayer", "m013_limited_by_type"), ("replayer", "m014_turn_under_answering_model"),
                    ("replayer", "m015_tool_results_once"),
                    ("replayer", "m016_response_headers"), ("replayer", "m017_turn_tokens_of_one_attempt"),
                    ("replayer", "m018_conversation_ended_at"), ("replayer", "m019_context_text"),
                    ("replayer", "m020_cache_writes_by_their_total"), ("replayer", "m021_rollup_per_user"),
                    ("replayer", "m022_turns_by_context"), ("replayer", "m023_rollup_by_user")]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    open_db(tmp_path / "m.db")  # opening again applies nothing twice
    assert len(db.execute("SELECT * FROM _sqlite_migrations").fetchall()) == len(rows)


def test_migrations_backfill_what_older_versions_recorded(tmp_path, caplog):
    """A DB from before m002/m003: migrating it indexes its text and fills the usage table
    exactly as the writer would have."""
    from tui_data import build_db

    path = build_db(tmp_path / "old.db")
    db = open_db(path)
    usage = db.execute("SELECT * FROM usage ORDER BY attempt_id, part").fetchall()
    rollup = db.execute("SELECT * FROM rollup").fetchall()
    assert [(r[10], r[18], r[19]) for r in usage if r[10]] == [(1, 0, 0), (1, 1, 1), (1, 1, 0), (1, 1, 0), (1, 0, 0)]
    queries = ("failing", "date format", "invoice emailed", "zebra")
    found = {q: [c.conversation_id for c in Store(db).conversations(query=q)] for q in queries}
    assert found["failing"] == ["conv_tools"] and found["zebra"] == []
    db.execute("DROP TABLE usage")
    db.execute("DROP TABLE rollup")
    db.execute("DROP TABLE turn_text")
    db.execute("DELETE FROM _sqlite_migrations WHERE name IN ('m002_turn_text', 'm003_usage')")
    db.conn.commit()
    db.conn.close()
    db = open_db(path)  # applies m002 and m003 to what is there
    assert "updating" in caplog.text and "m002_turn_text, m003_usage" in caplog.text
    assert db.execute("SELECT * FROM usage ORDER BY attempt_id, part").fetchall() == usage
    assert db.execute("SELECT * FROM rollup").fetchall() == rollup
    assert {q: [c.conversation_id for c in Store(db).conversations(query=q)] for q in queries} == found


def tips_come_back(path, migration: str, undo: str) -> list:
    """The database as a replayer before `migration` left it (`undo`, and the migration not yet
    applied): opening it applies the migration, which gives every conversation its tip as the
    writer did. The tips, (conversation, key)."""
    con = sqlite3.connect(path)
    tip = con.execute("SELECT conversation_id, key FROM thread_tips").fetchall()
    con.execute(undo)
    con.execute("DELETE FROM _sqlite_migrations WHERE name = ?", (migration,))
    con.commit()
    con.close()
    assert open_db(path).execute("SELECT conversation_id, key FROM thread_tips").fetchall() == tip
    return tip


def test_conversations_recorded_before_thread_tips_are_continued_after_migrating(tmp_path):
    """m004 gives each conversation already recorded its tip (its last answered turn's context and
    reply), so an agent's next call after the upgrade still joins its conversation, while a call
    that extends an earlier reply of it (its context would go back) starts another."""
    from replayer import Recorder

    path = tmp_path / "old.db"
    reply = [{"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]} for i in range(3)]

    def resp(i):
        return {"id": f"msg_{i}", "type": "message", **reply[i], "model": "m", "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1}}

    history = [{"role": "user", "content": "start"}]
    with Recorder(path) as rec:
        for i in range(2):
            rec.record({"model": "m", "max_tokens": 5, "messages": history}, resp(i))
            history = [*history, reply[i], {"role": "user", "content": f"next {i}"}]
    tips_come_back(path, "m004_thread_tips", "DROP TABLE thread_tips")
    with Recorder(path) as rec:
        rec.record({"model": "m", "max_tokens": 5, "messages": history}, resp(2))
        rec.record({"model": "m", "max_tokens": 5, "messages": history[:3]}, resp(2))
    rows = sqlite3.connect(path).execute("SELECT conversation_id, idx FROM turns ORDER BY rowid").fetchall()
    first = rows[0][0]
    assert rows[:3] == [(first, 0), (first, 1), (first, 2)] and rows[3][0] != first and rows[3][1] == 0


def test_tips_keyed_before_threading_compared_blocks_as_sent_back_are_keyed_anew(tmp_path):
    """m012: a conversation recorded before (its tip keyed with the reply's tool_use `caller` in
    it) is continued after the upgrade by a call that sends the reply back without `caller`."""
    from replayer import Recorder

    path = tmp_path / "old.db"
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}
    first = [{"role": "user", "content": "start"}]
    reply = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use",
             "content": [{**tool_use, "caller": {"type": "direct"}}], "usage": {"input_tokens": 1, "output_tokens": 1}}
    with Recorder(path) as rec:
        rec.record({"model": "m", "max_tokens": 5, "messages": first}, reply)
    tip = tips_come_back(path, "m012_sent_back_keys", "UPDATE thread_tips SET key = 'keyed the old way'")
    later = [*first, {"role": "assistant", "content": [tool_use]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]
    with Recorder(path) as rec:
        rec.record({"model": "m", "max_tokens": 5, "messages": later}, {**reply, "id": "msg_2"})
    rows = sqlite3.connect(path).execute("SELECT conversation_id, idx FROM turns ORDER BY rowid").fetchall()
    assert rows == [(tip[0][0], 0), (tip[0][0], 1)]


def test_identical_conversations_written_by_two_connections_stay_apart(tmp_path):
    """Two processes' writers recording identical chats turn about: each continuation takes an
    open conversation the other connection may have written, never one that already moved on."""
    from replayer import Recorder

    path = tmp_path / "two.db"
    recs = [Recorder(path), Recorder(path)]
    chats = [[{"role": "user", "content": "same"}] for _ in range(4)]
    for turn in range(3):
        for c, msgs in enumerate(chats):
            reply = {"role": "assistant", "content": [{"type": "text", "text": f"answer {turn}"}]}
            recs[(c + turn) % 2].record({"model": "m", "max_tokens": 5, "messages": msgs},
                                        {"id": f"msg_{turn}_{c}", "type": "message", **reply, "model": "m",
                                         "stop_reason": "end_turn"})
            assert recs[(c + turn) % 2].flush(10)
            chats[c] = [*msgs, reply, {"role": "user", "content": f"next {turn}"}]
    for rec in recs:
        rec.close()
    con = sqlite3.connect(path)
    got = {}
    for conv, idx, node in con.execute("SELECT conversation_id, idx, context_len FROM turns ORDER BY rowid"):
        got.setdefault(conv, []).append((idx, node))
    assert list(got.values()) == [[(0, 1), (1, 3), (2, 5)]] * 4


def test_two_connections_taking_turns_in_one_conversation(tmp_path, caplog):
    """A writer's cached turn index and thread keys give way to what another connection wrote."""
    from replayer import Recorder

    caplog.set_level("WARNING", logger="replayer")
    path = tmp_path / "two.db"
    recs = [Recorder(path), Recorder(path)]
    msgs: list = [{"role": "user", "content": "start"}]
    for i in range(6):
        reply = {"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]}
        rec = recs[i % 2]
        rec.record({"model": "m", "max_tokens": 5, "messages": msgs},
                   {"id": f"msg_{i}", "type": "message", **reply, "model": "m", "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}},
                   conversation_id="conv_shared" if i < 3 else None)
        assert rec.flush(10)
        msgs = [*msgs, reply, {"role": "user", "content": f"next {i}"}]
    for rec in recs:
        rec.close()
        assert rec._writer.failed == 0
    con = sqlite3.connect(path)
    rows = con.execute("SELECT conversation_id, idx FROM turns ORDER BY started_at, rowid").fetchall()
    assert rows == [("conv_shared", i) for i in range(6)]  # the last three threaded onto it
    assert not caplog.records  # each write went in at once (no clash, no retry)


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(DBError, match="not a replayer database"):
        open_db(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(DBError, match="not a SQLite database or is corrupt"):
        open_db(junk)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    open_db(empty)  # an empty file becomes a new database


def test_a_database_from_a_newer_replayer_is_refused_and_left_as_it_was(tmp_path):
    """A migration this version doesn't know: its tables may not be what this version reads and
    writes. Every command says so in one line, and nothing (records included) is written."""
    from click.testing import CliRunner

    from replayer import Recorder
    from replayer.cli import cli

    path = tmp_path / "future.db"
    open_db(path).conn.close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('replayer', "
                "'m099_future', '2027-01-01')")  # fmt: skip
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(DBError, match=r"written by a newer replayer \(its schema has m099_future\)"):
        open_db(path)
    for args in (["list"], ["export"], ["stats"], ["db", "migrate"]):
        r = CliRunner().invoke(cli, ["--db", str(path), *args])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and "upgrade replayer" in r.output, (args, r.output)
    rec = Recorder(path)
    rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
               {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m"})  # fmt: skip
    assert rec.flush(5) is False
    rec.close(1)
    assert path.read_bytes() == before


def test_a_database_in_a_folder_that_cannot_be_written_says_so(tmp_path):
    """An up-to-date database in a read-only folder: SQLite can't make its -wal and -shm there.
    The message says that (it said the file needed migrating). Root may write anywhere, so as
    root the command runs as nobody."""
    import shutil
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="replayer-ro-"))
    try:
        folder = root / "d"
        folder.mkdir()
        db = folder / "w.db"
        con = open_db(db).conn
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        for p in (root, folder, db):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(folder, 0o555)
        command = [sys.executable, "-m", "replayer.cli", "--db", str(db), "list"]
        if os.geteuid() == 0:
            assert shutil.which("setpriv"), "as root the test needs setpriv (util-linux) to run as nobody"
            for p in (root, folder, db):
                os.chown(p, 65534, 65534)
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = {**os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(root / "config")}
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"replayer: {folder} is read-only: SQLite makes w.db-wal and -shm"), proc.stderr
        assert "needs migrating" not in proc.stderr and proc.stderr.count("\n") == 1
    finally:
        os.chmod(root / "d", 0o755)
        shutil.rmtree(root)


def test_installed_sqlite_utils_plugins_do_not_run_on_replayer_databases(tmp_path):
    """A sqlite-utils plugin (an installed package with a `sqlite_utils` entry point) is for that
    library's own CLI: opening a replayer database neither imports it nor searches every
    installed package for it (in the writer process as much as anywhere)."""
    import subprocess
    import sys

    site = tmp_path / "site"
    info = site / "fakeplugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sqlite_utils]\nfake = fakeplugin\n")
    marker = tmp_path / "imported"
    (site / "fakeplugin.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    check = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import importlib.metadata as m\n"
        "assert [e.name for e in m.entry_points(group='sqlite_utils')] == ['fake']  # it is installed\n"
        "from replayer.store.schema import open_db\n"
        "open_db(sys.argv[2]).execute('SELECT 1')\n"
        "open_db(sys.argv[2]).execute('SELECT 1')  # and an existing one (its migrations are checked)\n"
    )
    done = subprocess.run([sys.executable, "-c", check, str(site), str(tmp_path / "p.db")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not marker.exists()


def test_malformed_messages_are_stored_as_sent(tmp_path):
    """A request the API would reject is still what the agent sent: keep it exactly."""
    from replayer import Recorder

    path = tmp_path / "odd.db"
    odd = {"model": "m", "max_tokens": 1, "messages": ["just a string", 42, {"role": "user", "content": "x"}]}
    with Recorder(path) as rec:
        rec.record(odd)
    lines = [json.loads(x) for x in Store(open_db(path)).export_lines()]
    assert [line["request"] for line in lines] == [odd]


def test_sorting_by_first_message_spans_every_conversation(tmp_path):
    from tui_data import build_db

    store = Store(open_db(build_db(tmp_path / "f.db")))
    assert [c.conversation_id for c in store.conversations(sort="first", descending=False)] == [
        "conv_tools", "conv_chat"
    ]
    assert [c.conversation_id for c in store.conversations(sort="first", limit=1)] == ["conv_chat"]  # "Where…" first
    assert store.first_texts() == {1: "Fix the failing test in tests/test_parser.py", 2: "Where is my invoice?"}


def test_search_finds_every_turn_written_in_a_batch(tmp_path):
    """Search text is indexed at the end of each write batch, in rowid order: words from requests,
    replies and tool results of every turn are found, including a reply stored a batch later."""
    from replayer import Recorder

    path = tmp_path / "s.db"
    words = {}
    with Recorder(path) as rec:
        for c in range(3):
            msgs = [{"role": "user", "content": f"task{c}alpha, ticket INV-{c}041 for user_78{c}"}]
            for i in range(4):
                reply = {"role": "assistant", "content": [
                    {"type": "tool_use", "id": f"tu{c}{i}", "name": "grep", "input": {"pattern": f"needle{c}x{i}"}}]}
                rec.record({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": msgs},
                           {"id": f"m{c}{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                            "content": reply["content"], "stop_reason": "tool_use",
                            "usage": {"input_tokens": 1, "output_tokens": 1}},
                           conversation_id=f"conv{c}")
                msgs = [*msgs, reply, {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": f"tu{c}{i}", "content": f"found{c}y{i} 5821{c}{i}"}]}]
                words[f"needle{c}x{i}"] = f"conv{c}"
                if i < 3 or c == 2:  # a tool result is sent (and indexed) with the next request
                    words[f"found{c}y{i}"] = words[f"5821{c}{i}"] = f"conv{c}"
            words[f"task{c}alpha"] = f"conv{c}"
        rec.flush()
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": msgs},
                   {"id": "late", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                    "content": [{"type": "text", "text": "latecomer"}], "stop_reason": "end_turn"},
                   conversation_id="conv2")
        words["latecomer"] = "conv2"
    store = Store(open_db(path, create=False))
    for word, conv in words.items():
        assert [c.conversation_id for c in store.conversations(query=word)] == [conv], word
    assert store.conversations(query="needle") and not store.conversations(query="absentword")
    # words the index splits in several tokens (ids, model names, paths) are searched token by
    # token: quoted whole they would be phrase queries, which an index without positions refuses
    assert [c.conversation_id for c in store.conversations(query="INV-1041")] == ["conv1"]
    assert [c.conversation_id for c in store.conversations(query="user_780 INV-0041")] == ["conv0"]
    assert store.conversations(query="--- ...") == [] and store.conversations(query='"') == []


@pytest.mark.parametrize("text", ["", "short", "é✓ \ud800 lone surrogate " * 40, json.dumps({"a": "x" * 5000}),
                                  "".join(chr(33 + (i * 7919) % 90) for i in range(3000))])
def test_blob_text_survives_packing(text):
    stored = pack(text)
    assert unpack(stored) == text
    if len(text) < MIN_CHARS:
        assert stored == text
    if isinstance(stored, bytes):
        assert len(stored) <= len(text.encode("utf-8", "surrogatepass")) * 7 / 8


def test_blobs_and_streams_are_deflated_by_isal_in_zlibs_format(tmp_path):
    """ISA-L does the deflating where its wheels exist (a declared dependency there), and what it
    writes is raw deflate that zlib itself inflates: a database stays readable by older replayers
    and plain SQLite tools whichever wrote it."""
    import platform
    import zlib

    from replayer.store import codec

    if platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        assert codec._compress.__module__ == "isal.isal_zlib"
    text = json.dumps({"type": "tool_result", "content": "def f(x):\n    return x * 2\n" * 200})
    stored = pack(text)
    assert isinstance(stored, bytes) and zlib.decompress(stored, -15).decode() == text
    sse = b"".join(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n' for _ in range(50))
    assert zlib.decompress(codec.deflate(sse), -15) == sse


def test_long_first_messages_stored_deflated_still_name_their_conversation(tmp_path):
    from replayer import Recorder

    path = tmp_path / "f.db"
    with Recorder(path) as rec:
        for conv, content in [("long_str", "Summarise: " + "lorem ipsum " * 400),
                              ("long_blocks", [{"type": "text", "text": "Blocks: " + "dolor sit " * 400}]),
                              ("short", "Hi")]:
            rec.record({"model": "claude-haiku-4-5", "max_tokens": 5,
                        "messages": [{"role": "user", "content": content}]},
                       {"id": conv, "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"},
                       conversation_id=conv)
    store = Store(open_db(path))
    firsts = sorted(t[:12] for t in store.first_texts().values())
    assert firsts == ["Blocks: dolo", "Hi", "Summarise: l"]
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM blobs WHERE typeof(json) = 'blob'").fetchone()[0] == 2
    assert [c.conversation_id for c in store.conversations(sort="first", descending=False)] == [
        "long_blocks", "short", "long_str"]


def _random_doc(rnd, depth=0):
    k = rnd.random()
    if depth > 3 or k < 0.3:
        return "".join(chr(rnd.choice([rnd.randint(0, 0x7F), rnd.randint(0x80, 0xD7FF), rnd.randint(0xE000, 0x10FFFF),
                                       0x2028, 0xFEFF, 0x7F])) for _ in range(rnd.randint(0, 10)))
    if k < 0.4:
        return rnd.choice([rnd.randint(-(2**63), 2**64 - 1), rnd.randint(-5, 5), 2**70, -(2**70)])
    if k < 0.45:
        return rnd.choice([True, False, None, "\ud800"])
    if k < 0.7:
        return [_random_doc(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    return {_random_doc(rnd, 4) if rnd.random() < 0.9 else "k": _random_doc(rnd, depth + 1)
            for _ in range(rnd.randint(0, 5))}


def test_the_fast_canonical_form_is_the_canonical_form():
    """orjson stands in for json only where it writes the same text: documents without floats
    (it falls back by itself on huge integers and lone surrogates); the decoder says which."""
    from replayer.store.codec import Decoder, canon, canon_plain

    rnd = random.Random(11)
    for _ in range(20_000):
        doc = _random_doc(rnd)
        assert canon_plain(doc) == canon(doc)
    dec = Decoder()
    for text, floats in [('{"a": 1, "b": [true, null, "1.5e-05"]}', False), ('{"a": 1e-05}', True),
                         ('[0.5]', True), ('{"x": NaN}', True), ('  [-Infinity] ', True),
                         ('{"n": 18446744073709551616}', False)]:
        doc = dec.loads(text)
        assert dec.floats is floats, text
        assert doc == json.loads(text) or text.find("NaN") >= 0
    with pytest.raises(ValueError):
        dec.loads('{"a": 1} x')


def test_a_blob_stores_the_compact_json_of_its_document_in_the_order_it_came(tmp_path):
    """What a blob stores is its document's compact JSON, keys in their order (codec.compact),
    however the text it was read from spelled it: taken from that text only when it is that
    already (compact, no key given twice, json's escapes, no float), else written out."""
    from replayer.store.codec import Decoder, canon, canon_plain, compact, in_order

    rnd = random.Random(13)
    dec = Decoder()
    spellings = [
        lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":")),
        lambda d: json.dumps(d, ensure_ascii=False),
        lambda d: json.dumps(d, separators=(",", ":")),
        lambda d: json.dumps(d, indent=1),
    ]
    texts = [spell(_random_doc(rnd)) for _ in range(4000) for spell in spellings]
    texts += ['{"b":1,"a":2,"b":3}', '{"b": 1,"a":2}', '{"a": 1e5}', '{"b":100000.0,"a": 1}', '{"a":-0 }',
              '{"b":"\\u00e9","a":1}', '{"b":"\\/","a":1 }', '{"b":"\udce2\udc82","a":1}', '{"b":[1 ,2],"a":{}}']
    for text in texts:
        doc = dec.loads(text)
        plain = not dec.floats
        kept = in_order(doc, canon_plain(doc) if plain else canon(doc), plain, (f"[{text},", 1, len(text) + 1))
        assert kept == compact(doc), text
        assert in_order(doc, canon(doc), plain) == kept


def test_json_equal_messages_in_another_key_order_share_a_blob_and_export_as_first_sent(tmp_path):
    """The store hashes a document's canonical form (so a message sent again with its keys in
    another order is the same blob, and threads the same), and keeps the order it first came in:
    the export gives back a request's system prompt, tools, messages and top-level keys, and a
    reply's content, as they were sent."""
    from replayer import Recorder

    path = tmp_path / "o.db"
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "search", "input_schema": {"type": "object", "required": ["q"],
                                                 "properties": {"q": {"type": "string"}}}, "description": "Find."}]
    ask = {"role": "user", "content": [{"type": "text", "text": "find x é"}]}
    use = {"type": "tool_use", "id": "tu1", "name": "search", "input": {"q": "x", "limit": 3, "a": {"z": 1, "b": 0.5}}}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "ok"}]}
    first = {"model": "claude-haiku-4-5", "max_tokens": 50, "system": system, "tools": tools, "messages": [ask]}
    # the same history again, its keys in other orders, spaced (not as compact as the SDK's)
    again = {"tools": tools, "messages": [{"content": ask["content"], "role": "user"},
                                          {"content": [dict(reversed(use.items()))], "role": "assistant"}, result],
             "system": system, "model": "claude-haiku-4-5", "max_tokens": 50}

    def response(i, content):
        return json.dumps({"id": f"m{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                           "content": content, "stop_reason": "end_turn", "stop_sequence": None,
                           "usage": {"input_tokens": 1, "output_tokens": 1}}, ensure_ascii=False)

    with Recorder(path) as rec:
        rec.record(json.dumps(first, ensure_ascii=False, separators=(",", ":")), response(0, [use]))
        rec.record(json.dumps(again), response(1, [{"type": "text", "text": "done"}]))
    lines = [json.loads(x) for x in Store(open_db(path)).export_lines()]
    assert len(lines) == 2 and lines[0]["conversation_id"] == lines[1]["conversation_id"]  # threaded as one
    texts = [unpack(v) for (v,) in sqlite3.connect(path).execute("SELECT json FROM blobs")]
    assert sum("find x" in t for t in texts) == 1 and sum('"tool_use"' in t for t in texts) == 1
    # (json.dumps of what the export line parses to: its keys in the order the line has them)
    request = lines[0]["request"]
    assert list(request) == list(first)
    assert json.dumps(request) == json.dumps(first)
    assert json.dumps(lines[0]["response"]["content"]) == json.dumps([use])
    # the second request as its parts were first sent: its top-level keys as the first request's
    # (the same skeleton), the question as the first request sent it, the reply as it came in the
    # response; the system prompt and tools as sent
    request = lines[1]["request"]
    assert list(request) == list(first)
    assert json.dumps(request["messages"]) == json.dumps([ask, {"role": "assistant", "content": [use]}, result])
    assert json.dumps(request["system"]) == json.dumps(system) and json.dumps(request["tools"]) == json.dumps(tools)
    # the browser's Raw tab shows the request so, and its label no longer says the keys are sorted
    from replayer.tui.tabs import raw_text

    label, rest = raw_text(Store(open_db(path)).turn_detail(lines[1]["turn_id"])).split("\n", 1)
    assert label == "// request (as sent, each part's keys as first recorded)"
    assert json.dumps(json.loads(rest.split("\n\n// response")[0])) == json.dumps(request)


def test_floats_are_stored_as_json_writes_them(tmp_path):
    from replayer import Recorder

    path = tmp_path / "f.db"
    tool_input = {"threshold": 1e-05, "big": 1e16, "ratio": 0.1, "n": 3}
    reply = [{"type": "tool_use", "id": "tu1", "name": "tune", "input": tool_input}]
    msgs = [{"role": "user", "content": "tune it"}]
    with Recorder(path) as rec:
        for i in range(2):
            rec.record(json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": msgs}),
                       json.dumps({"id": f"m{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                                   "content": reply, "stop_reason": "tool_use",
                                   "usage": {"input_tokens": 1, "output_tokens": 1}}),
                       conversation_id="c")
            msgs = [*msgs, {"role": "assistant", "content": reply},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "ok"}]}]
    texts = [unpack(v) for (v,) in sqlite3.connect(path).execute("SELECT json FROM blobs")]
    assert sum('"threshold":1e-05' in t and '"big":1e+16' in t for t in texts) == 1  # reply and resent reply: one blob
    lines = [json.loads(x) for x in Store(open_db(path)).export_lines()]
    assert lines[1]["request"]["messages"][1]["content"][0]["input"] == tool_input
    assert lines[0]["response"]["content"][0]["input"] == tool_input


def test_conversation_rows_count_every_turn_across_batches(tmp_path):
    """A conversation's turn count, last time, user and tags stay right when its later turns
    are counted at the end of a batch rather than one upsert each."""
    from replayer import Recorder

    path = tmp_path / "c.db"
    t = 1_790_000_000.0
    with Recorder(path) as rec:
        for batch in range(3):
            for i in range(5):
                for conv in ("a", "b"):
                    n = batch * 5 + i
                    with rec.conversation(conv, user_id=f"user_{conv}" if n >= 3 else None,
                                          tags={"n": n} if conv == "b" and n >= 7 else None):
                        rec.record({"model": "claude-haiku-4-5", "max_tokens": 5,
                                    "messages": [{"role": "user", "content": f"{conv} {n}"}]},
                                   {"id": f"{conv}{n}", "type": "message", "role": "assistant",
                                    "model": "claude-haiku-4-5",
                                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"},
                                   started_at=t + n * 60 + (conv == "b"))
            rec.flush()
    rows = {r[0]: r[1:] for r in sqlite3.connect(path).execute(
        "SELECT id, turn_count, started_at, last_at, user_id, tags_json FROM conversations")}
    assert rows["a"] == (15, "2026-09-21T14:13:20.000Z", "2026-09-21T14:27:20.000Z", "user_a", None)
    assert rows["b"] == (15, "2026-09-21T14:13:21.000Z", "2026-09-21T14:27:21.000Z", "user_b", '{"n": 7}')
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 30


def test_a_reply_key_looked_for_in_vain_is_found_once_another_connection_writes_it(tmp_path):
    """A writer remembers which thread keys the table lacked; that memory gives way when another
    connection commits (here: the reply the first writer's next request extends)."""
    from replayer import Recorder

    path = tmp_path / "miss.db"
    a, b = Recorder(path), Recorder(path)
    start = [{"role": "user", "content": "start"}]
    reply = {"role": "assistant", "content": [{"type": "text", "text": "answer"}]}
    extended = [*start, reply, {"role": "user", "content": "more"}]

    def resp(i):
        return {"id": f"msg_{i}", "type": "message", **reply, "model": "m", "stop_reason": "end_turn"}

    a.record({"model": "m", "max_tokens": 5, "messages": extended}, resp(0))  # nothing to extend yet
    assert a.flush(10)
    b.record({"model": "m", "max_tokens": 5, "messages": start}, resp(1), conversation_id="conv_b")
    assert b.flush(10)
    a.record({"model": "m", "max_tokens": 5, "messages": [*extended, reply, {"role": "user", "content": "x"}]}, resp(2))
    a.record({"model": "m", "max_tokens": 5, "messages": extended}, resp(3))
    for rec in (a, b):
        rec.close()
    rows = sqlite3.connect(path).execute("SELECT conversation_id, idx FROM turns ORDER BY rowid").fetchall()
    first = rows[0][0]
    # the third extends a's own first turn and its reply (the longest prefix); the fourth extends
    # b's turn, whose reply key a had looked for in vain before b wrote it
    assert rows == [(first, 0), ("conv_b", 0), (first, 1), ("conv_b", 1)] and first != "conv_b"


def test_tool_results_added_by_requests_that_never_send_the_reply_back(tmp_path):
    """An agent that sends back something other than the reply starts a new conversation each
    turn; each turn's usage row counts the tool results its request added to what the request
    before sent (each tool result once, though every request carries them all again)."""
    from replayer import Recorder

    path = tmp_path / "tr.db"
    msgs = [{"role": "user", "content": "go"}]
    expected = []
    with Recorder(path) as rec:
        for i in range(12):
            rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": msgs},
                       {"id": f"m{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": f"echo {i}"}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": 1, "output_tokens": 1}})
            expected.append((i, 1 if i and (i - 1) % 3 != 2 else 0, 1 if i and (i - 1) % 3 == 1 else 0))
            call = {"type": "tool_use", "id": f"t{i}", "name": "run", "input": {}}
            result = {"type": "tool_result", "tool_use_id": f"t{i}", "content": "out"}
            if i % 3 == 1:
                result["is_error"] = True
            msgs = [*msgs, {"role": "assistant", "content": [call]},
                    {"role": "user", "content": [result] if i % 3 != 2 else "no tool this time"}]
            if i % 4 == 3:
                rec.flush()
    got = sqlite3.connect(path).execute(
        "SELECT t.idx, u.tool_results, u.tool_errors FROM usage u JOIN turns t ON t.rowid = u.turn "
        "ORDER BY u.at, u.turn"
    ).fetchall()
    assert len({c for (c,) in sqlite3.connect(path).execute("SELECT conversation_id FROM turns")}) == 12
    assert [(i, n, e) for i, (_, n, e) in enumerate(got)] == expected


def test_a_bounded_cache_starts_over_when_full():
    from replayer.bounded import BoundedDict

    cache: BoundedDict[int, int] = BoundedDict(3)
    for k in range(4):
        cache[k] = k
    assert len(cache) == 4  # it holds more than `limit` before the next insert empties it
    cache[9] = 9
    assert cache == {9: 9}


def test_rows_with_their_rare_columns_empty_or_not_are_stored_as_given():
    """The writer's INSERTs write the usual NULLs in the SQL: a row is stored the same either way."""
    from replayer.store.inserts import Insert

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c, d DEFAULT 7)")
    insert = Insert("t", ("a", "b", "c", "d"), ("b", "d"))
    rows = [(1, None, "x", None), (2, 0, None, None), (3, None, "y", b"z"), (None, None, None, None)]
    for row in rows:
        insert(conn, row)
    assert conn.execute("SELECT a, b, c, d FROM t ORDER BY rowid").fetchall() == rows


def test_timestamps_are_written_as_datetime_writes_them():
    """`iso` formats the whole second once and rounds the fraction as datetime does (half to even,
    at microseconds, then cut to milliseconds), also where that carries into the next second."""
    from datetime import UTC, datetime

    from replayer.store.codec import iso

    rnd = random.Random(5)
    edges = [0.0000005, 0.9999995, 0.9999994999, 0.0005, 0.9995, 0.5, 0.0000015, 0.0000025]
    values = [0, 1, 1.5, -1.5, 253402300799, 253402300799.9994, -62135596800, 1750000000]
    values += [rnd.randint(0, 2**35) + rnd.choice(edges) for _ in range(5000)]
    values += [rnd.uniform(-1e9, 253402300799) for _ in range(5000)]
    # a burst's stamps: each attempt's start and its end a latency later, the seconds it knows interleaved
    values += [1750000000 + i * 0.3 + later for i in range(300) for later in (0, 0.9, 61.25)]
    for t in values:
        assert iso(t) == datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z", t
    with pytest.raises(ValueError):
        iso(253402300800)


def _index_segments(path) -> int:
    """How many segments the search index is in (the count in FTS5's structure record)."""
    conn = sqlite3.connect(path)
    try:
        block = conn.execute("SELECT block FROM turn_text_data WHERE id = 10").fetchone()[0]
    finally:
        conn.close()
    at = 8 if block[4:8] == b"\xff\x00\x00\x01" else 4  # after the cookie (and a v2 structure's mark)

    def varint() -> int:
        nonlocal at
        value = 0
        while True:
            byte = block[at]
            at += 1
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                return value

    varint()  # the number of levels
    return varint()


def _turn(rec, i: int) -> None:
    first = {"role": "user", "content": f"batch{i}word"}
    rec.record({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [first]},
               {"id": f"m{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": f"reply{i}word"}], "stop_reason": "end_turn"},
               conversation_id=f"conv{i}")


def test_the_search_index_is_merged_while_the_writer_is_idle_not_as_records_arrive(tmp_path, monkeypatch):
    """Each batch writes a segment of the search index. Merging them is left to the writer's idle
    moments (store/search_index.py): a burst of batches leaves one segment each, and once the
    writer has had nothing to do for a moment it merges them back to a few. Every word is found
    before and after."""
    from replayer import Recorder
    from replayer.store import writer

    monkeypatch.setenv("REPLAYER_WRITER", "thread")  # the writer thread of this process, its idle time set here
    monkeypatch.setattr(writer, "IDLE_SECONDS", 3600.0)
    path = tmp_path / "idle.db"
    rec = Recorder(path)
    rec._writer.linger = 0.0

    def found_everywhere(turns: int) -> None:
        store = Store(open_db(path, create=False))
        for i in range(turns):
            assert [c.conversation_id for c in store.conversations(query=f"batch{i}word")] == [f"conv{i}"], i
            assert [c.conversation_id for c in store.conversations(query=f"reply{i}word")] == [f"conv{i}"], i

    for i in range(8):  # a burst: one batch each, no idle moment between them
        _turn(rec, i)
        assert rec.flush()
    assert _index_segments(path) == 8  # nothing merged while they were written
    found_everywhere(8)

    monkeypatch.setattr(writer, "IDLE_SECONDS", 0.05)
    _turn(rec, 8)  # the writer's next wait is a short one
    assert rec.flush()
    deadline = time.monotonic() + 10
    while _index_segments(path) > 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _index_segments(path) <= 3
    found_everywhere(9)
    rec.close()


def test_a_writer_leaves_merging_the_search_index_to_the_one_that_wrote_after_it(tmp_path, monkeypatch):
    """Two writers on one database (the thread writer that wrote while the writer process
    started, then the child; or two processes' recorders): the one that another wrote after
    doesn't merge when it is idle, beside the other's writes; the one that wrote last does."""
    from replayer import Recorder
    from replayer.store import search_index, writer

    monkeypatch.setenv("REPLAYER_WRITER", "thread")
    monkeypatch.setattr(writer, "IDLE_SECONDS", 3600.0)
    path = tmp_path / "two.db"
    first, second = Recorder(path), Recorder(path)
    first._writer.linger = second._writer.linger = 0.0
    for i in range(8):  # segments to merge, and a merge owed by `first`
        _turn(first, i)
        assert first.flush()
    merged_on: list[int] = []
    real_step = search_index.merge_step

    def step(conn, *args):
        merged_on.append(id(conn))
        return real_step(conn, *args)

    monkeypatch.setattr(search_index, "merge_step", step)
    monkeypatch.setattr(writer, "IDLE_SECONDS", 0.5)
    _turn(first, 8)  # its next wait is a short one
    assert first.flush()
    _turn(second, 9)  # and another connection writes meanwhile
    assert second.flush()
    conn_of = {id(rec._writer._ingestor.db.conn): name for name, rec in (("first", first), ("second", second))}
    deadline = time.monotonic() + 10
    while _index_segments(path) > 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.6)  # past `first`'s idle moment too
    assert _index_segments(path) <= 3
    assert {conn_of[c] for c in merged_on} == {"second"}
    first.close()
    second.close()


def test_conversations_started_at_the_same_moment_export_in_the_order_they_were_recorded(tmp_path):
    """A burst of record() calls can give several conversations one start time: the export lists
    them as they were recorded, not by their ids (random in real use; here sorting backwards)."""
    import datetime as dt

    from replayer import Recorder
    from replayer.store.export import export_lines

    path = tmp_path / "same.db"
    at = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    names = ["conv_e", "conv_d", "conv_c", "conv_b", "conv_a"]
    with Recorder(path) as rec:
        for i, name in enumerate(names):
            rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": f"task {i}"}]},
                       conversation_id=name, started_at=at)
    store = Store(open_db(path, create=False))
    assert [json.loads(line)["conversation_id"] for line in export_lines(store)] == names


def test_a_runs_conversations_started_at_the_same_moment_come_in_the_order_they_were_recorded(tmp_path):
    """As the export's order: a run's conversations, oldest first, ties in recording order."""
    import datetime as dt

    from replayer import Recorder

    path = tmp_path / "run.db"
    at = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    names = ["conv_e", "conv_d", "conv_c"]
    with Recorder(path) as rec:
        for i, name in enumerate(names):
            with rec.conversation(name, tags={"run": "run_1"}):
                rec.record({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": f"task {i}"}]},
                           started_at=at)
    assert Store(open_db(path, create=False)).run_conversations("run_1") == names


def tied_conversations(db):
    """30 conversations whose started times, users, costs, models and first messages tie often
    (and some users are missing): a listing's order is total only through its tie-breaker."""
    from replayer import Recorder

    rnd = random.Random(3)
    with Recorder(db) as rec:
        for i in range(30):
            usage = {"input_tokens": rnd.choice([5, 50, 500]), "output_tokens": rnd.choice([1, 10])}
            rec.record({"model": rnd.choice(["claude-haiku-4-5", "claude-sonnet-4-5"]), "max_tokens": 5,
                        "messages": [{"role": "user", "content": rnd.choice(["b", "a", "C", ""])}]},
                       {"id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage},
                       conversation_id=f"c{i:02d}", user_id=rnd.choice(["u1", "u2", None]),
                       started_at=1_800_000_000 + rnd.choice([0, 1, 2]))  # fmt: skip
    return db


def test_the_order_and_the_changes_a_list_keeps_itself_current_by(tmp_path):
    """conversation_order is conversations' order, ids only, for every sort and filter; and
    changed_since names the conversations created or given a call since a change mark."""
    from replayer import Recorder
    from replayer.store.queries import AGG_SORTS, SORTS

    db = tied_conversations(tmp_path / "order.db")
    store = Store(open_db(db, create=False))
    for sort in [*SORTS, *AGG_SORTS]:
        for descending in (True, False):
            for filters in ({}, {"user": "u1"}, {"min_cost": 0.0}):
                listed = [c.conversation_id for c in store.conversations(**filters, sort=sort, descending=descending,
                                                                         limit=100)]  # fmt: skip
                assert store.conversation_order(**filters, sort=sort, descending=descending, limit=100) == listed
                assert store.conversation_order(**filters, sort=sort, descending=descending, limit=7) == listed[:7]
    mark = store.change_mark()
    assert store.changed_since(mark) == []
    with Recorder(db) as rec:
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "new"}]},
                   {"id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 1, "output_tokens": 1}}, conversation_id="c05")  # fmt: skip
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                   {"id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 1, "output_tokens": 1}}, conversation_id="c_new")  # fmt: skip
    assert sorted(store.changed_since(mark)) == ["c05", "c_new"]
    named = store.conversations(ids=["c_new", "c05", "nope"], sort="id", descending=False)
    assert [c.conversation_id for c in named] == ["c05", "c_new"]


def test_a_list_read_from_its_end_is_its_exact_reverse_for_every_sort(tmp_path):
    """The list's last page without the pages before it (G on 100,000 conversations read every one
    first): read from the end, the same rows come last first, ties and missing values included,
    a page at a time, rows and ids alike."""
    from replayer.store.queries import AGG_SORTS, SORTS

    store = Store(open_db(tied_conversations(tmp_path / "order.db"), create=False))
    for sort in [*SORTS, *AGG_SORTS]:
        for descending in (True, False):
            for filters in ({}, {"user": "u1"}, {"min_cost": 0.0}):
                listed = [c.conversation_id for c in store.conversations(**filters, sort=sort, descending=descending,
                                                                         limit=100)]  # fmt: skip
                assert len(set(listed)) == len(listed) > (1 if filters else 5)
                back = listed[::-1]
                pages = [store.conversations(**filters, sort=sort, descending=descending, limit=4, offset=offset,
                                             from_end=True) for offset in range(0, len(listed), 4)]  # fmt: skip
                assert [c.conversation_id for page in pages for c in page] == back, (sort, descending, filters)
                assert store.conversation_order(**filters, sort=sort, descending=descending, limit=100,
                                                from_end=True) == back  # fmt: skip


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    from replayer.demo import build_demo

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    build_demo(path)
    return path


@pytest.mark.parametrize(
    "filters",
    [{}, {"user": "user_dana"}, {"model": "haiku"}, {"query": "invoice"}, {"errors_only": True},
     {"min_cost": 0.05}, {"over_cost": 0.05, "user": "user_priya"}, {"reruns": True}, {"user": "nobody"}],
)  # fmt: skip
def test_the_lists_count_is_how_many_it_lists(demo_db, filters):
    """The browser's scrollbar stands for the whole list: the count must be the listing's own
    length, whatever the filter (cost filters priced as the listing prices them)."""
    store = Store(open_db(demo_db, create=False))
    listed = store.conversation_order(**filters, limit=10**6)
    assert store.conversation_count(**filters) == len(listed)
    assert 0 < store.conversation_count() and len(store.conversation_order(limit=10**6)) == store.conversation_count()


def test_a_misspelt_list_filter_is_an_error_not_every_conversation(tmp_path):
    """The list's filters are declared once (filters.ListFilter); a name that isn't one of them
    fails at the call, in each of the three listings that take them, as a wrong keyword did
    when each spelt the filters out."""
    store = Store(open_db(tmp_path / "f.db"))
    for call in (store.conversations, store.conversation_count, store.conversation_order):
        with pytest.raises(TypeError, match="unknown list filter.*usr"):
            call(usr="alice")  # type: ignore[call-arg]
    assert store.conversations(user="alice") == [] and store.conversation_count(user="alice") == 0
