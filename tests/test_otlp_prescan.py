"""`replayer import otlp` with the request scan shared between the reader and the writer
(otlp/prescan.py): whichever side scans a request, and however the reader's local ids start over,
the export lines come back the same; the share moves toward the slower side; readahead tells
the reader how long each batch waited."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from test_fork import loop_api, recorded  # noqa: F401 (fixtures)
from test_import_export import refusing
from test_otlp_import import collector_line, export_text, imported, own_spans, record_session, run

from replayer.otlp import batches, prescan


@pytest.fixture
def fixed_share(monkeypatch):
    """Sets how many parts (of Share.PARTS) of the conversations the reader scans, unmoved by the batches' pace."""

    def fix(k: int) -> None:
        monkeypatch.setattr(prescan.Share, "__init__", lambda self, k=k: setattr(self, "k", k))
        monkeypatch.setattr(prescan.Share, "adjust", lambda self, waited, busy: None)

    return fix


@pytest.mark.parametrize("k", [0, 5, 16])
def test_requests_scanned_by_either_side_come_back_the_same(api, tmp_path, monkeypatch, fixed_share, k):
    fixed_share(k)
    monkeypatch.setattr(batches, "BATCH", 2)  # several batches, each naming ids the batches before defined
    monkeypatch.setattr(prescan, "START_OVER", 3)  # and the reader's local ids starting over between them
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    path = tmp_path / "collector.jsonl"
    path.write_text("".join(collector_line(own_spans([x], source)) + "\n" for x in lines))
    laptop = tmp_path / "laptop.db"
    got = imported(laptop, path)
    assert (got["attempts"], got["already_imported"]) == (len(lines), 0)
    assert export_text(laptop) == lines
    shown = [json.loads(run(db, "show", "conv_loop", "--json").stdout) for db in (source, laptop)]
    assert shown[0] == shown[1]
    again = imported(laptop, path)
    assert (again["attempts"], again["already_imported"]) == (0, len(lines))
    assert export_text(laptop) == lines


def test_a_span_that_cannot_be_stored_leaves_the_scanned_rest_whole(api, tmp_path, fixed_share):
    """The batch's transaction is rolled back and written again without the span: the blobs and
    nodes the reader defined for the batch are defined again with it."""
    fixed_share(prescan.Share.PARTS)
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    line_of = [collector_line(own_spans([x], source)) for x in lines]
    forged = json.loads(line_of[1])  # another turn, which the database refuses
    for kv in forged["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]:
        if kv["key"] == "replayer.turn_id":
            kv["value"] = {"stringValue": "turn_clash"}
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join([*line_of, json.dumps(forged)]) + "\n")
    laptop = refusing(tmp_path / "laptop.db", "NEW.id = 'turn_clash'")
    r = run(laptop, "import", "otlp", path, "--json")
    assert r.exit_code == 1, r.output  # not imported, and not the file's fault (test_import_export)
    got = json.loads(r.stdout)
    assert got["attempts"] == len(lines) and got["malformed"] == []
    assert [m["line"] for m in got["not_imported"]] == [len(lines) + 1]
    assert export_text(laptop) == lines


def test_the_share_moves_toward_the_slower_side():
    parts = prescan.Share.PARTS
    share = prescan.Share()
    assert share.k == parts // 2
    share.adjust(0.1, 1.0)  # the reader waited for the writer: it scans more
    assert share.k == parts // 2 + 1
    share.adjust(0.5, 1.0)  # ...the more, the longer it waited
    assert share.k == parts // 2 + 1 + parts // 4
    share.adjust(0.001, 1.0)  # it did not wait: the writer was waiting for it, it scans less
    share.adjust(0.001, 1.0)
    assert share.k == parts // 2 + parts // 4 - 1
    share.adjust(0.03, 1.0)  # about even: left as it is
    assert share.k == parts // 2 + parts // 4 - 1
    for _ in range(10):
        share.adjust(0.5, 1.0)
    assert share.k == parts and share.takes("conv_a") and share.takes("conv_b")
    share.adjust(None, 1.0)  # read in the importing process: the writer scans everything
    assert share.k == 0 and not share.takes("conv_a")
    half = prescan.Share(parts // 2)
    taken = [half.takes(f"conv_{i}") for i in range(400)]
    assert 120 < sum(taken) < 280  # about half the conversations...
    assert taken == [half.takes(f"conv_{i}") for i in range(400)]  # ...always the same ones


@pytest.mark.parametrize("inline", [False, True])
def test_readahead_sends_the_reader_how_long_each_item_waited(inline, monkeypatch):
    from replayer import readahead

    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(__file__)))
    got = list(readahead.batches("readers:echoing", [4], inline=inline))
    assert [x["i"] for x in got] == [0, 1, 2, 3]
    assert got[0]["sent"] is None
    sent = [x["sent"] for x in got[1:]]
    assert all(s is None for s in sent) if inline else all(isinstance(s, float) and s >= 0 for s in sent)


def tool_results_per_turn(db) -> list[tuple[str, int, int, int]]:
    """(turn id, attempt, tool_result blocks its request added, of them errors), as `stats` sums them."""
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute(
            """SELECT t.id, a.attempt, u.tool_results, u.tool_errors FROM usage u
               JOIN turns t ON t.rowid = u.turn JOIN attempts a ON a.id = u.attempt_id WHERE u.part = 0"""))
    finally:
        con.close()


def test_a_forks_tool_results_come_back_counted_where_they_were_whichever_side_scans(
        loop_api, recorded, tmp_path, monkeypatch):  # noqa: F811 (fixtures)
    """A fork edited only in its system prompt resends the messages its source sent: their tool
    results were counted once, on the source's turns (each message counts once). An import's batch
    inserted the nodes its reader had scanned before storing its requests, so a request the writer
    scanned found its messages sent already: with the fork's requests scanned by the reader and
    the original's by the writer, the original's turns counted none and the fork's the lot (and
    the agents' tool failure rate went None). Which side scans what moves with the pace of the
    two processes; here it is pinned, each way, for `import otlp` and `import export`."""
    from test_fork import fork_env, fork_of, recorded_loop, replayer

    from replayer.imports import export as export_reader

    db, conv, _work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "fork", f"{conv}:2", "--system", "You are terse.", "--yes", env=fork_env(loop_api))
    assert proc.returncode == 0, proc.stderr
    fork, _ = fork_of(db)
    lines = export_text(db)
    spans, exported = tmp_path / "spans.jsonl", tmp_path / "run.jsonl"
    spans.write_text(collector_line(own_spans(lines, db)) + "\n")
    exported.write_text("\n".join(lines) + "\n")
    counted = tool_results_per_turn(db)
    assert sum(c[2] for c in counted) > 0
    stats = json.loads(run(db, "stats", "--days", "36500", "--json").stdout)
    monkeypatch.setattr(prescan.Share, "adjust", lambda self, waited, busy: None)
    whole = batches.BATCH
    for name, scanned in [("fork", {fork}), ("original", {conv}), ("both", {conv, fork}), ("neither", set())]:
        monkeypatch.setattr(prescan.Share, "takes", lambda self, c, scanned=scanned: c in scanned)
        for batch in (whole, 3):  # one batch, and batches each naming nodes the ones before inserted
            monkeypatch.setattr(batches, "BATCH", batch)
            monkeypatch.setattr(export_reader, "BATCH", batch)
            for kind, path in (("otlp", spans), ("export", exported)):
                laptop = tmp_path / f"laptop_{kind}_{name}_{batch}.db"
                got = json.loads(run(laptop, "import", kind, path, "--json").stdout)
                assert got["attempts"] == len(lines), (kind, name, batch, got)
                assert tool_results_per_turn(laptop) == counted, (kind, name, batch)
                shown = json.loads(run(laptop, "stats", "--days", "36500", "--json").stdout)
                assert shown == stats, (kind, name, batch)
