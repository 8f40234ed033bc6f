"""The demo: every shipped fixture recorded through the real SDK, and exported exactly."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from urllib.parse import urlsplit

import pytest
from conftest import exported, wait_until

from replayer import sse
from replayer.demo import build_demo, load_fixtures
from replayer.fakeapi import FakeAPI, sse_text


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    BUILD.clear()
    t0 = time.time()
    turns = build_demo(path)
    BUILD.extend([t0, time.time()])
    return path, turns, load_fixtures()


BUILD: list[float] = []
"""When the module's demo build began and ended (wall clock)."""


def _epoch(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def failed(call):
    """Whether a fixture call's last attempt failed: an error status, or an error event mid-stream."""
    last = call["attempts"][-1]
    return last.get("status", 200) != 200 or any(e.get("event") == "error" for e in last.get("sse", []))


def turns_of(fx):
    """A fixture's calls as the turns they make: the application sending a failed call's request
    again is the next attempt of that turn."""
    turns: list[list[dict]] = []
    for call in fx["turns"]:
        if turns and call["request"] == turns[-1][-1]["request"] and failed(turns[-1][-1]):
            turns[-1].append(call)
        else:
            turns.append([call])
    return turns


def expected_response(attempt):
    if "sse" in attempt:
        return sse.assemble(sse_text(attempt["sse"]).encode()).message
    return attempt["body"]


def test_fixtures_cover_what_the_issue_lists():
    fixtures = load_fixtures()
    assert len(fixtures) >= 6
    turns = [t for fx in fixtures for t in fx["turns"]]
    requests = [t["request"] for t in turns]
    bodies = [a.get("body") or {} for t in turns for a in t["attempts"]]
    blocks = [b for body in bodies for b in body.get("content", []) if isinstance(body, dict)]
    block_types = {b.get("type") for b in blocks}
    assert max(len(fx["turns"]) for fx in fixtures) >= 30
    assert any(
        c.get("is_error")
        for r in requests
        for m in r["messages"]
        if isinstance(m["content"], list)
        for c in m["content"]
    )
    usage = [b["usage"] for b in bodies if "usage" in b]
    assert any((u.get("cache_creation") or {}).get("ephemeral_1h_input_tokens") for u in usage)
    assert any((u.get("cache_creation") or {}).get("ephemeral_5m_input_tokens") for u in usage)
    assert any(u.get("cache_read_input_tokens") for u in usage)
    sse_events = [e for t in turns for a in t["attempts"] for e in a.get("sse", [])]
    assert any(
        e["data"].get("delta", {}).get("type") == "signature_delta" for e in sse_events if isinstance(e["data"], dict)
    )
    assert {"server_tool_use", "web_search_tool_result"} <= block_types
    statuses = Counter(a.get("status", 200) for t in turns for a in t["attempts"])
    assert statuses[429] and statuses[529]
    assert len({fx.get("user_id") for fx in fixtures}) >= 3
    assert len({r["model"] for r in requests}) >= 4
    known = {"text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "web_search_tool_result"}
    assert block_types - known  # an unknown future block type


def test_demo_records_every_attempt_exactly(demo):
    path, turns, fixtures = demo
    lines = exported(path)
    want_turns = sum(len(turns_of(fx)) for fx in fixtures)
    assert want_turns < sum(len(fx["turns"]) for fx in fixtures)  # retry-storm's application retry
    assert turns == want_turns
    assert len({line["turn_id"] for line in lines}) == want_turns
    # every fixture attempt appears once, with its request and response JSON-equal to the wire
    remaining = list(lines)
    for fx in fixtures:
        for turn in fx["turns"]:
            for attempt in turn["attempts"]:
                match = next(
                    (
                        line
                        for line in remaining
                        if line["request"] == turn["request"]
                        and line["status"] == attempt.get("status", 200)
                        and line["response"] == expected_response(attempt)
                    ),
                    None,
                )
                assert match is not None, (fx["name"], turn["request"]["messages"][-1])
                remaining.remove(match)
                for key, value in (turn.get("headers") or {}).items():
                    assert match["request_headers"][key] == value
    assert remaining == []


def test_demo_conversations_thread_and_carry_users(demo):
    path, _, fixtures = demo
    lines = exported(path)
    by_conv: dict[str, list] = {}
    for line in lines:
        by_conv.setdefault(line["conversation_id"], []).append(line)
    assert len(by_conv) == len(fixtures)
    turn_counts = sorted(len({line["turn_id"] for line in v}) for v in by_conv.values())
    assert turn_counts == sorted(len(turns_of(fx)) for fx in fixtures)
    for fx in fixtures:
        if fx.get("conversation_id"):
            assert {line["user_id"] for line in by_conv[fx["conversation_id"]]} == {fx["user_id"]}
    users = {line["user_id"] for line in lines}
    assert {fx["user_id"] for fx in fixtures} <= users
    days = {line["started_at"][:10] for line in lines}
    assert len(days) >= 4  # fixtures are spread over a week


def test_demo_costs_unknown_model_is_null(demo):
    path, _, _ = demo
    lines = exported(path)
    nova = [line for line in lines if line["model"] == "claude-nova-9" and line["usage"]]
    assert nova and all(line["cost_usd"] is None for line in nova)
    priced = [line for line in lines if line["usage"] and line["model"] != "claude-nova-9"]
    assert priced and all(line["cost_usd"] > 0 for line in priced)


def test_demo_command_from_another_directory(tmp_path):
    """Works after a plain install from any folder: fixtures are package data."""
    r = subprocess.run(
        [sys.executable, "-m", "replayer.cli", "--db", str(tmp_path / "d.db"), "demo"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "recorded" in r.stderr and "conv_" in r.stdout
    listing = subprocess.run([sys.executable, "-m", "replayer.cli", "--db", str(tmp_path / "d.db"), "list", "--json"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert len(json.loads(listing.stdout)) >= 6


def test_a_client_hanging_up_prints_no_traceback(capfd, monkeypatch):
    """The demo provokes timeouts and abandoned streams: the fake API takes a client that hangs
    up mid-request quietly, instead of printing a traceback on the user's terminal."""
    with FakeAPI() as api:
        handled = []  # the server ends each connection it took with shutdown_request, after any traceback
        real = api._server.shutdown_request
        monkeypatch.setattr(api._server, "shutdown_request", lambda request: handled.append(1) or real(request))
        url = urlsplit(api.url)
        for _ in range(5):
            s = socket.create_connection((url.hostname, url.port))
            s.sendall(b"POST /v1/messages HTTP/1.1\r\nContent-Length: 100\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # a reset, not a clean close
        wait_until(lambda: len(handled) == 5)
        assert api.count == 0
    assert "Traceback" not in capfd.readouterr().err


def _demo_cli(*args, env=None):
    from click.testing import CliRunner

    from replayer.cli import cli

    return CliRunner().invoke(cli, [*args, "demo", "--no-open"], env=env)


@pytest.mark.parametrize("kind", ["replayer db", "foreign sqlite", "text file", "folder", "under a file"])
def test_demo_never_replaces_a_database_it_did_not_make(tmp_path, kind, demo):
    """--db (or $REPLAYER_DB) naming someone's file: one line, exit 2, the file untouched."""
    import sqlite3

    path = tmp_path / "mine.db"
    if kind == "replayer db":
        path.write_bytes(demo[0].read_bytes())  # a replayer database the demo didn't make
        con = sqlite3.connect(path)
        con.execute("DELETE FROM meta")
        con.commit()
        con.close()
    elif kind == "foreign sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE invoices (id INTEGER)")
        con.commit()
        con.close()
    elif kind == "text file":
        path.write_text("notes\n")
    elif kind == "under a file":
        (tmp_path / "plain").write_text("notes\n")
        path = tmp_path / "plain" / "demo.db"
    else:
        path.mkdir()
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    for r in (_demo_cli("--db", str(path)), _demo_cli(env={"REPLAYER_DB": str(path)})):
        assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
        assert r.output.startswith("replayer: ") and str(path) in r.output and "--db" in r.output
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_demo_writes_where_it_is_told_and_rebuilds_only_its_own(tmp_path):
    """$REPLAYER_DB is where the demo goes (said on stderr), not the data folder; running it
    again rebuilds that demo database; without either it uses demo.db in the data folder."""
    from replayer.demo import demo_db_path

    path = tmp_path / "env-demo.db"
    counts = []
    for _ in range(2):
        r = _demo_cli(env={"REPLAYER_DB": str(path)})
        assert r.exit_code == 0, r.output
        assert f"into {path} " in r.output
        assert not demo_db_path().exists()
        counts.append(len(exported(path)))
    assert counts[0] > 0 and counts[1] == counts[0]  # rebuilt, not added to
    r = _demo_cli()
    assert r.exit_code == 0 and f"into {demo_db_path()} " in r.output and demo_db_path().exists()


def test_demo_conversations_take_the_time_a_real_agent_takes(demo):
    """The fake API answers in milliseconds; the demo's calls must still look like the API's:
    answers taking seconds, more for longer output, a stream's first token before its end, the
    agent's next call seconds after the last, a retry waiting the retry-after it was given, the
    fixture's break and its slow outlier, nothing after now. And the build must not take that
    time: it is simulated, not slept."""
    path, _, fixtures = demo
    lines = sorted(exported(path), key=lambda line: (line["conversation_id"], line["index"], line["attempt"]))
    ok = [line for line in lines if line["status"] == 200 and line["error"] is None]
    assert all(line["latency_ms"] >= 1000 for line in ok), sorted(line["latency_ms"] for line in ok)[:3]
    assert all(0 < line["ttft_ms"] < line["latency_ms"] for line in ok if line["stream"])
    # within one model, the longest answer took longer than the shortest
    by_model: dict[str, list] = {}
    for line in ok:
        by_model.setdefault(line["model"], []).append(line)
    for model, calls in by_model.items():
        if len(calls) > 3:
            calls.sort(key=lambda line: line["usage"]["output_tokens"])
            assert calls[-1]["latency_ms"] > calls[0]["latency_ms"], model
    ends = {}  # (conversation, index) -> when its last attempt ended
    for line in lines:
        ends[line["conversation_id"], line["index"]] = _epoch(line["started_at"]) + line["latency_ms"] / 1000
    for line in lines:
        if line["attempt"] == 0 and line["index"] > 0:
            gap = _epoch(line["started_at"]) - ends[line["conversation_id"], line["index"] - 1]
            assert gap >= 0.3, (line["conversation_id"], line["index"], gap)
    assert max(ends.values()) < BUILD[0]  # today's conversations ended before the demo was built
    # each retry started the retry-after its failed attempt was told after that attempt ended
    retried = [(a, b) for a, b in zip(lines, lines[1:], strict=False)
               if b["attempt"] == a["attempt"] + 1 and b["turn_id"] == a["turn_id"] and a["status"] != 200]
    assert len(retried) >= 5
    for a, b in retried:
        waited = _epoch(b["started_at"]) - (_epoch(a["started_at"]) + a["latency_ms"] / 1000)
        assert waited == pytest.approx(float(a["response_headers"]["retry-after"]), abs=0.002)
    # the fixtures' break and slow outlier
    marked = [(fx, k) for fx in fixtures for k, turn in enumerate(fx["turns"]) if {"pause_s", "queued_s"} & set(turn)]
    assert {key for fx, k in marked for key in fx["turns"][k]} >= {"pause_s", "queued_s"}
    for fx, k in marked:
        turn = fx["turns"][k]
        line = next(line for line in ok if line["request"] == turn["request"])
        if "pause_s" in turn:
            previous = ends[line["conversation_id"], line["index"] - 1]
            assert _epoch(line["started_at"]) - previous == pytest.approx(turn["pause_s"], abs=0.002)
        if "queued_s" in turn:
            assert line["latency_ms"] > turn["queued_s"] * 1000
            assert line["latency_ms"] == max(other["latency_ms"] for other in lines)
    # a conversation spans at least its calls' time (and its pauses); building all of them took
    # a fraction of the calls' time
    for conv in {line["conversation_id"] for line in lines}:
        mine = [line for line in lines if line["conversation_id"] == conv]
        span = max(e for (c, _), e in ends.items() if c == conv) - min(_epoch(line["started_at"]) for line in mine)
        assert span > sum(line["latency_ms"] for line in mine) / 1000 + 0.3 * (mine[-1]["index"]), conv
    assert BUILD[1] - BUILD[0] < sum(line["latency_ms"] for line in lines) / 1000 / 10
