"""How fast `Recorder.record` stores turns into one DB, against the plainest possible logger.

Records 100 agent conversations of 20 turns each (4 KB system prompt, 5 tools, ~2 KB tool result
per turn, the history growing every turn) from one thread, then flushes; the figure includes the
flush. Baseline, measured in the same run on the same data: inserting each request and response
whole as JSON text into a SQLite table (one transaction per 500 rows), which stores every
history again on every turn. Target: >= 2,000 turns/s.

The two alternate for several runs (this machine's speed drifts by tens of percent within a
minute, so one run can land in a slow spell): each run is printed, and the summary gives the
medians and the median of each run's ratio to the baseline beside it.

Run: python bench/record_throughput.py [--conversations N] [--turns N] [--runs N]
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

from common import SYSTEM, TOOLS, assistant_turn, median, tool_result  # noqa: E402

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
            response = {"id": f"msg_{c:06d}{i:06d}", "type": "message", "role": "assistant",
                        "model": "claude-sonnet-4-5",
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


CPU: dict[str, float] = {}
"""The process CPU seconds each run took (its own threads; a writer process, if one starts, not counted)."""


def run_replayer(db: str, work) -> float:
    rec = Recorder(db)
    t0, c0 = time.perf_counter(), time.process_time()
    for c, (request, response) in work:
        rec.record(request, response, conversation_id=f"conv_{c}", latency_ms=900.0)
    rec.flush()
    elapsed = time.perf_counter() - t0
    CPU[db] = time.process_time() - c0
    rec.close()
    return elapsed


def run_baseline_cpu(db: str, work) -> float:
    c0 = time.process_time()
    elapsed = run_baseline(db, work)
    CPU[db] = time.process_time() - c0
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
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    work = workload(args.conversations, args.turns)
    n = len(work)
    print(f"{'run':>3} {'recorder':34} {'turns':>6} {'seconds':>8} {'turns/s':>9} {'disk':>9} {'CPU us/turn':>12}")
    base_rates, mine_rates, mine_cpu = [], [], []
    for k in range(args.runs):
        runs = [("baseline: whole JSON rows", run_baseline_cpu), ("replayer Recorder.record + flush", run_replayer)]
        for name, fn in runs if k % 2 == 0 else runs[::-1]:
            db = os.path.join(tmp, f"{fn.__name__}{k}.db")
            seconds = fn(db, work)
            (base_rates if fn is run_baseline_cpu else mine_rates).append(n / seconds)
            if fn is run_replayer:
                mine_cpu.append(CPU[db] / n * 1e6)
            print(f"{k + 1:>3} {name:34} {n:>6} {seconds:>8.2f} {n / seconds:>9.0f} {disk(db) / 1e6:>7.1f}MB"
                  f" {CPU[db] / n * 1e6:>12.0f}")
    size_base = disk(os.path.join(tmp, "run_baseline_cpu0.db"))
    size_mine = disk(os.path.join(tmp, "run_replayer0.db"))
    rate = median(mine_rates)
    ratio = median([m / b for m, b in zip(mine_rates, base_rates, strict=True)])
    print(f"\nSUMMARY record_throughput: {rate:.0f} turns/s into one DB, median of {args.runs} runs "
          f"({min(mine_rates):.0f} to {max(mine_rates):.0f}; target >= 2000), {ratio:.2f}x the whole-JSON baseline "
          f"run beside it (baseline median {median(base_rates):.0f} turns/s), on {size_mine / size_base:.2f}x its disk "
          f"-> {'PASS' if rate >= 2000 else 'MISS'}")
    print(f"CPU per turn (this process's threads; less moved by other load than turns/s): median "
          f"{median(mine_cpu):.0f} us ({min(mine_cpu):.0f} to {max(mine_cpu):.0f})")


if __name__ == "__main__":
    main()
