"""How fast `Recorder.record` stores turns into one DB, against the plainest possible logger.

Records 100 agent conversations of 20 turns each (4 KB system prompt, 5 tools, ~2 KB tool result
per turn, the history growing every turn) from one thread, then flushes; the figure includes the
flush. Baseline, measured in the same run on the same data: inserting each request and response
whole as JSON text into a SQLite table (one transaction per 500 rows), which stores every
history again on every turn. Target: >= 2,000 turns/s.

Run: python bench/record_throughput.py [--conversations N] [--turns N]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import SYSTEM, TOOLS, assistant_turn, tool_result  # noqa: E402

from replayer import Recorder  # noqa: E402


def workload(conversations: int, turns: int):
    """(request, response) pairs in recording order: conversations interleaved, as a busy server's would be."""
    convs = []
    for c in range(conversations):
        messages = [{"role": "user", "content": f"Task {c}: fix the failing test in tests/test_{c}.py"}]
        pairs = []
        for i in range(turns):
            request = {"max_tokens": 1024, "messages": messages, "metadata": {"user_id": f"user_{c % 7}"},
                       "model": "claude-sonnet-4-5", "system": SYSTEM, "tools": TOOLS}
            reply = assistant_turn(c * 1000 + i)
            response = {"id": f"msg_{c:06d}{i:06d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                        "content": reply["content"], "stop_reason": "tool_use", "stop_sequence": None,
                        "usage": {"input_tokens": 50, "output_tokens": 40, "cache_creation_input_tokens": 0,
                                  "cache_read_input_tokens": 3000 + 600 * i}}
            pairs.append((request, response))
            messages = [*messages, reply, tool_result(c * 1000 + i)]
        convs.append(pairs)
    order = []
    for i in range(turns):
        for c in range(conversations):
            order.append((c, convs[c][i]))
    return order


def run_replayer(db: str, work) -> float:
    rec = Recorder(db)
    t0 = time.perf_counter()
    for c, (request, response) in work:
        rec.record(request, response, conversation_id=f"conv_{c}", latency_ms=900.0)
    rec.flush()
    elapsed = time.perf_counter() - t0
    rec.close()
    return elapsed


def run_baseline(db: str, work) -> float:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY, conversation TEXT, request TEXT, response TEXT)")
    t0 = time.perf_counter()
    rows = []
    for c, (request, response) in work:
        rows.append((f"conv_{c}", json.dumps(request), json.dumps(response)))
        if len(rows) == 500:
            with con:
                con.executemany("INSERT INTO calls(conversation, request, response) VALUES (?,?,?)", rows)
            rows = []
    with con:
        con.executemany("INSERT INTO calls(conversation, request, response) VALUES (?,?,?)", rows)
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def disk(db: str) -> int:
    return sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--conversations", type=int, default=100)
    p.add_argument("--turns", type=int, default=20)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    work = workload(args.conversations, args.turns)
    n = len(work)
    base = run_baseline(os.path.join(tmp, "baseline.db"), work)
    mine = run_replayer(os.path.join(tmp, "replayer.db"), work)
    size_base = disk(os.path.join(tmp, "baseline.db"))
    size_mine = disk(os.path.join(tmp, "replayer.db"))
    print(f"{'recorder':34} {'turns':>6} {'seconds':>8} {'turns/s':>9} {'disk':>9}")
    print(f"{'baseline: whole JSON rows':34} {n:>6} {base:>8.2f} {n / base:>9.0f} {size_base / 1e6:>7.1f}MB")
    print(f"{'replayer Recorder.record + flush':34} {n:>6} {mine:>8.2f} {n / mine:>9.0f} {size_mine / 1e6:>7.1f}MB")
    print(f"\nSUMMARY record_throughput: {n / mine:.0f} turns/s into one DB (target >= 2000), "
          f"{(n / mine) / (n / base):.2f}x the whole-JSON baseline's {n / base:.0f} turns/s, on "
          f"{size_mine / size_base:.2f}x its disk -> {'PASS' if n / mine >= 2000 else 'MISS'}")


if __name__ == "__main__":
    main()
