"""Disk cost of a long conversation against its unique content.

A 1,000-turn agent conversation (4 KB system prompt, 5 tools, ~2 KB tool result per turn) is
recorded with `Recorder.record` (the same writer path as SDK capture). Printed: what storing
every request and response whole would take (per-turn full copies), the unique content (each
distinct message, system prompt, tool list and response once, as compact JSON), and the DB file
after a WAL checkpoint. Target: DB <= 1.5x unique content.

Run: python bench/storage.py [--turns N]
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


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--turns", type=int, default=1000)
    args = p.parse_args()
    db = os.path.join(tempfile.mkdtemp(prefix="replayer-bench-"), "storage.db")
    rec = Recorder(db)
    messages = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
    full_copies = 0
    unique: dict[bytes, None] = {compact(SYSTEM): None, compact(TOOLS): None}
    t0 = time.perf_counter()
    with rec.conversation("conv_storage_bench", user_id="bench"):
        for i in range(args.turns):
            request = {"max_tokens": 1024, "messages": messages, "model": "claude-sonnet-4-5",
                       "system": SYSTEM, "tools": TOOLS}
            reply = assistant_turn(i)
            response = {"id": f"msg_{i:024d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                        "content": reply["content"], "stop_reason": "tool_use", "stop_sequence": None,
                        "usage": {"input_tokens": 100 + i, "output_tokens": 40, "cache_creation_input_tokens": 2000,
                                  "cache_read_input_tokens": 1000 * i}}
            body = compact(request)
            full_copies += len(body) + len(compact(response))
            for m in messages:
                unique.setdefault(compact(m), None)
            unique.setdefault(compact(response), None)
            rec.record(body, response, latency_ms=1000.0)
            messages = [*messages, reply, tool_result(i)]
    rec.flush()
    elapsed = time.perf_counter() - t0
    rec.close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
    unique_bytes = sum(len(k) for k in unique)
    ratio = size / unique_bytes
    print(f"{'turns':>6} {'full copies':>12} {'unique':>10} {'db file':>10} {'db/unique':>10} {'full/db':>8}")
    print(f"{args.turns:>6} {full_copies / 1e6:>10.1f}MB {unique_bytes / 1e6:>8.2f}MB {size / 1e6:>8.2f}MB "
          f"{ratio:>9.2f}x {full_copies / size:>7.0f}x")
    print(f"(recorded and flushed in {elapsed:.1f} s)")
    print(f"\nSUMMARY storage: {args.turns} turns, DB {size / 1e6:.2f} MB = {ratio:.2f}x unique content "
          f"{unique_bytes / 1e6:.2f} MB (target <= 1.5x); per-turn full copies {full_copies / 1e6:.0f} MB "
          f"-> {'PASS' if ratio <= 1.5 else 'MISS'}")


if __name__ == "__main__":
    main()
