"""Several processes and threads recording into one DB at once lose nothing.

4 processes x 2 threads, each thread recording N turns of its own conversation with
`Recorder.record(...)` (and a few real SDK calls through the FakeAPI, in a second conversation),
all starting together. Afterwards every record is present exactly once, in order.

Importing the SDK takes seconds of CPU, so under "spawn" only process 0 makes SDK calls; under
"fork" the children inherit the parent's import and all of them do.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import sys
import threading
from collections import Counter, defaultdict

import pytest

pytestmark = pytest.mark.writer_process  # Recorders here write through a writer process, the default

PROCS = 4
THREADS = 2
N = 40
SDK_EVERY = 20  # a real SDK call at i = 0 and i = 20: 2 turns per thread in "<conv>-sdk"
MODEL = "claude-haiku-4-5"


def _request(p: int, t: int, i: int) -> dict:
    return {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"p{p} t{t} n{i}"}]}


def _response(p: int, t: int, i: int) -> dict:
    return {
        "id": f"msg_p{p}t{t}n{i}",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": f"ok p{p} t{t} n{i}"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }


def _worker(db: str, p: int, api_url: str | None, barrier, how: str) -> None:
    """One process: one Recorder, THREADS threads recording at once."""
    from replayer import Recorder

    rec = Recorder(db)
    client = None
    if api_url:
        import anthropic

        client = rec.wrap(anthropic.Anthropic(base_url=api_url, api_key="sk-test-worker", max_retries=0))
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            barrier.wait(60)  # every thread of every process starts together
            for i in range(N):
                rec.record(_request(p, t, i), _response(p, t, i), conversation_id=f"p{p}-t{t}")
                if client is not None and i % SDK_EVERY == 0:
                    with rec.conversation(f"p{p}-t{t}-sdk"):
                        msg = client.messages.create(
                            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": f"sdk p{p} t{t} n{i}"}]
                        )
                        assert msg.type == "message"
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        print(f"worker p{p}: {errors!r}", file=sys.stderr)
        sys.exit(2)
    if how == "close" and not rec.close(timeout=60):
        sys.exit(3)
    if rec.dropped:
        sys.exit(4)
    # how == "atexit": the recorder is flushed at interpreter exit


CONFIGS = [("spawn", "close"), ("spawn", "atexit"), ("fork", "close")]


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"{m}-{h}" for m, h in CONFIGS])
def recorded(request, tmp_path_factory):
    """Run the processes once per configuration; return the DB path and which processes used the SDK."""
    from replayer.fakeapi import FakeAPI

    method, how = request.param
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    ctx = multiprocessing.get_context(method)
    db = tmp_path_factory.mktemp(f"many-{method}-{how}") / "shared.db"
    with FakeAPI() as api:
        barrier = ctx.Barrier(PROCS * THREADS)
        sdk = [p for p in range(PROCS) if method == "fork" or p == 0]
        procs = [
            ctx.Process(target=_worker, args=(str(db), p, api.url if p in sdk else None, barrier, how))
            for p in range(PROCS)
        ]
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join(120)
        for pr in procs:
            if pr.is_alive():
                pr.kill()
        assert [pr.exitcode for pr in procs] == [0] * PROCS
        assert len([r for r in api.received if r["path"].startswith("/v1/messages")]) == len(sdk) * THREADS * 2
    return db, sdk


def test_every_record_present_once_in_order(recorded):
    from conftest import exported

    db, sdk_procs = recorded
    rows = exported(db)
    assert len(rows) == PROCS * THREADS * N + len(sdk_procs) * THREADS * (N // SDK_EVERY)
    assert len({r["turn_id"] for r in rows}) == len(rows)  # one attempt per turn: no duplicates
    assert all(r["attempt"] == 0 and r["error"] is None for r in rows)

    by_conv: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_conv[r["conversation_id"]].append(r)
    expected = {f"p{p}-t{t}" for p in range(PROCS) for t in range(THREADS)}
    assert set(by_conv) == expected | {f"p{p}-t{t}-sdk" for p in sdk_procs for t in range(THREADS)}

    for p in range(PROCS):
        for t in range(THREADS):
            turns = sorted(by_conv[f"p{p}-t{t}"], key=lambda r: r["index"])
            assert [r["index"] for r in turns] == list(range(N))
            assert [r["request"]["messages"][0]["content"] for r in turns] == [f"p{p} t{t} n{i}" for i in range(N)]
            assert [r["response"]["content"][0]["text"] for r in turns] == [f"ok p{p} t{t} n{i}" for i in range(N)]
            assert all(r["request"] == _request(p, t, r["index"]) for r in turns)

            if p not in sdk_procs:
                continue
            sdk = sorted(by_conv[f"p{p}-t{t}-sdk"], key=lambda r: r["index"])
            assert [r["index"] for r in sdk] == list(range(N // SDK_EVERY))
            assert [r["request"]["messages"][0]["content"] for r in sdk] == [
                f"sdk p{p} t{t} n{i}" for i in range(0, N, SDK_EVERY)
            ]
            assert all(r["status"] == 200 and r["response"]["type"] == "message" for r in sdk)

    # the counters kept beside the rows agree
    conn = sqlite3.connect(str(db))
    try:
        counts = dict(conn.execute("SELECT id, turn_count FROM conversations"))
        assert counts == {c: len(v) for c, v in by_conv.items()}
        assert conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == len(rows)
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == len(rows)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_export_lists_each_conversation_in_turn_order(recorded):
    """The export is "oldest turn first": within a conversation its lines follow the turn index,
    even when a thread records several turns within the same millisecond."""
    from conftest import exported

    db, sdk_procs = recorded
    seen: dict[str, list[int]] = defaultdict(list)
    for r in exported(db):
        seen[r["conversation_id"]].append(r["index"])
    out_of_order = {c: idx for c, idx in seen.items() if idx != sorted(idx)}
    assert not out_of_order, {c: idx[:12] for c, idx in list(out_of_order.items())[:2]}
    assert Counter(len(v) for v in seen.values()) == Counter(
        {N: PROCS * THREADS, N // SDK_EVERY: len(sdk_procs) * THREADS}
    )
