"""Disk cost of a long conversation against its unique content.

A 1,000-turn agent conversation (4 KB system prompt, 5 tools, ~2 KB tool result per turn) is
recorded with `Recorder.record` (the same writer path as SDK capture); every other turn (see
--stream-every) is a stream, handed to the writer as the SDK middleware hands one: its SSE bytes
(the events the fake API would send for that reply) and each chunk's arrival time (an event a
chunk, 5-60 ms apart), so its events are stored too. Printed: what storing every request and
response whole would take (per-turn full copies), the unique content (each distinct message,
system prompt, tool list and response once, as compact JSON; for a stream, its events as sent
in place of the response: they are its content), and the DB file after a WAL checkpoint.
Target: DB <= 1.5x unique content.

Run: python bench/storage.py [--turns N] [--stream-every K]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))

from common import SYSTEM, TOOLS, assistant_turn, tool_result  # noqa: E402

from replayer import Recorder, context  # noqa: E402
from replayer.captured import Captured, chunk_times  # noqa: E402
from replayer.fakeapi import message_events, split_sse, sse_text  # noqa: E402


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def streamed(rec: Recorder, body: bytes, raw: bytes, rnd: random.Random) -> None:
    """Hand the writer a stream as the SDK middleware does: the request as sent, the SSE bytes
    as they came, and when each chunk (here, each event) arrived."""
    chunks = [part.encode() for part in split_sse(raw.decode())]
    clock, times = 0.0, []
    for _ in chunks:
        clock += rnd.uniform(0.005, 0.06)
        times.append(clock)
    rec.middleware.put(Captured(
        call_key=uuid.uuid4().hex, attempt=0, t_start=time.time(), stream=True, request_bytes=body,
        raw_request_headers=[(b"anthropic-version", b"2023-06-01")], status=200, sse=raw,
        sse_chunks=chunk_times(chunks, times, 0.0), latency_ms=round(clock * 1000 + 5, 3),
        ttft_ms=round(times[0] * 1000, 3), ctx=context.current.get(),
    ))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--turns", type=int, default=1000)
    p.add_argument("--stream-every", type=int, default=2, help="every K-th turn is a stream (0: none)")
    args = p.parse_args()
    rnd = random.Random(16)
    streams = events_bytes = 0
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
            if args.stream_every and i % args.stream_every == args.stream_every - 1:
                raw = sse_text(message_events(response)).encode()
                unique.setdefault(raw, None)  # the stream's content: its events, as sent
                streamed(rec, body, raw, rnd)
                streams += 1
                events_bytes += len(raw)
            else:
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
    print(f"(recorded and flushed in {elapsed:.1f} s; {streams} of the turns streamed, their events "
          f"{events_bytes / 1e6:.2f} MB as sent)")
    print(f"\nSUMMARY storage: {args.turns} turns ({streams} streamed), DB {size / 1e6:.2f} MB = {ratio:.2f}x "
          f"unique content "
          f"{unique_bytes / 1e6:.2f} MB (target <= 1.5x); per-turn full copies {full_copies / 1e6:.0f} MB "
          f"-> {'PASS' if ratio <= 1.5 else 'MISS'}")


if __name__ == "__main__":
    main()
