"""The browser on a big database: headless `run_test` timings and peak memory.

Builds (once, then reuses with --db) a database of 10,000 conversations x 50 turns (500,000
turns) plus one 200-turn conversation, written through the recorder's own writer code. Then, in
a fresh process so its memory is the app's alone, it measures with Textual's headless driver:
first rows on screen from launch, G to the last conversation of the list and g back to the
first, opening the 200-turn conversation, the next turn (median of 30 presses of j), a search
over all message text, and peak memory (max RSS). Each figure is printed beside a baseline
measured in the same run on the same database: loading every conversation into the table (what
not paging costs), a LIKE scan over every stored message (what the full-text index saves), and
parsing the 200-turn conversation's full export.

Targets: first rows <= 1.0 s; G <= 1.0 s; 200-turn open <= 0.5 s; next turn <= 50 ms median;
search <= 1 s; peak memory <= 300 MB.

Run: python bench/browse.py [--conversations N] [--turns N] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

NEEDLE = "zebracorn"
"""A word that appears in a handful of conversations only, to search for."""


def build(path: str, conversations: int, turns: int) -> None:
    from replayer.captured import Captured, Context
    from replayer.store.ingest import Ingestor
    from replayer.store.schema import open_db

    ingestor = Ingestor(open_db(path))
    conn = ingestor.db.conn
    start = time.time() - 30 * 86400
    system = json.dumps("You are a support agent for an invoicing product. " * 20)
    tools = json.dumps([{"name": "lookup", "description": "Find an invoice", "input_schema": {"type": "object"}}])
    t0 = time.perf_counter()

    def conversation(c: int, n: int) -> None:
        msgs: list[str] = [json.dumps({"role": "user", "content": f"Question {c}: where is invoice {c * 7}?"
                                       + (f" {NEEDLE}" if c % 2000 == 1 else "")})]
        for i in range(n):
            body = ('{"max_tokens":1024,"messages":[' + ",".join(msgs) + '],"metadata":{"user_id":"user_' + str(c % 50)
                    + '"},"model":"claude-haiku-4-5","system":' + system + ',"tools":' + tools + "}")
            tool = i < n - 1
            content = [{"type": "text", "text": f"Looking up step {i} of conversation {c}."}]
            if tool:
                content.append(
                    {"type": "tool_use", "id": f"toolu_{c:06d}{i:04d}", "name": "lookup", "input": {"n": i}}
                )
            response = {"id": f"msg_{c:06d}{i:04d}", "type": "message", "role": "assistant",
                        "model": "claude-haiku-4-5",
                        "content": content, "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
                        "usage": {"input_tokens": 40 + i, "output_tokens": 30, "cache_creation_input_tokens": 120,
                                  "cache_read_input_tokens": 600 + 150 * i}}
            captured = Captured(call_key=f"{c}-{i}", attempt=0, t_start=start + c * 240 + i * 4,
                                request_bytes=body.encode(), status=200, response_bytes=json.dumps(response).encode(),
                                latency_ms=900.0 + i, ctx=Context(f"conv_{c:06d}", f"user_{c % 50}"))
            ingestor.store(captured)
            msgs.append(json.dumps({"role": "assistant", "content": content}))
            if tool:
                tool_result = {"type": "tool_result", "tool_use_id": f"toolu_{c:06d}{i:04d}",
                               "content": f"invoice {c * 7} line {i}: paid"}
                msgs.append(json.dumps({"role": "user", "content": [tool_result]}))

    conn.execute("BEGIN IMMEDIATE")
    for c in range(conversations):
        conversation(c, turns)
        if c % 200 == 199:
            ingestor.write_pending()  # what Ingestor.store keeps for the batch's end (as the recorder's writer does)
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            done = (c + 1) * turns
            print(f"  built {done:,} turns ({done / (time.perf_counter() - t0):,.0f}/s)", file=sys.stderr, flush=True)
    conversation(conversations, 200)  # the long one, newest
    ingestor.write_pending()
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def measure(path: str) -> dict[str, float]:
    """Keys go in through the headless driver as a terminal's would; a timing stops when what the
    key asked for is on screen: its data loaded, drawn, and the screen composited once more.
    (Pilot.press is not used: it waits for the whole process to go idle, ~50 ms on its own.)"""
    from textual import events
    from textual.widgets import DataTable, Input

    from replayer.tui.app import make_app
    from replayer.tui.conversation import ConversationScreen

    async def until(cond, timeout=60.0):
        t = time.perf_counter()
        while not cond():
            await asyncio.sleep(0.001)
            if time.perf_counter() - t > timeout:
                d = getattr(app.screen, "detail", None)
                raise TimeoutError(f"{type(app.screen).__name__} turn {d.turn.index if d else None} "
                                   f"drawn {getattr(app.screen, '_drawn', None)} focus {app.focused}")
        app.screen._on_timer_update()  # composite the screen now, as the next frame would

    def key(name: str, char: str | None = None) -> None:
        event = events.Key(name, char if char is not None else (name if len(name) == 1 else None))
        event.set_sender(app)
        app._driver.send_message(event)

    def rows() -> int:
        tables = app.screen.query(DataTable)
        return tables.first().row_count if tables else 0

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    app = make_app(path)
    async with app.run_test(size=(200, 60)):
        await until(lambda: rows() > 0)
        out["first_rows_s"] = time.perf_counter() - t0
        # G: the cursor on the list's last conversation (the store's own last, by its order), then
        # g back on the first (the newest: the 200-turn one, opened next)
        with app.store() as store:
            total = store.db.execute("SELECT COUNT(*) FROM conversations WHERE origin != 'rerun'").fetchone()[0]
            last = store.conversations(limit=1, offset=total - 1)[0].conversation_id
            first = store.conversations(limit=1)[0].conversation_id
        t = time.perf_counter()
        key("G")
        await until(lambda: app.screen.cursor_id() == last)
        out["bottom_s"] = time.perf_counter() - t
        t = time.perf_counter()
        key("g")
        await until(lambda: app.screen.cursor_id() == first and app.screen.query_one(DataTable).cursor_row == 0)
        out["top_s"] = time.perf_counter() - t
        # open the 200-turn conversation (the newest, so on the first row)
        t = time.perf_counter()
        key("enter")
        await until(lambda: isinstance(app.screen, ConversationScreen) and app.screen.detail is not None
                    and len(app.screen.timeline) == 200 and "context" in app.screen._drawn)
        out["open_200_s"] = time.perf_counter() - t
        screen = app.screen
        steps = []
        for _ in range(30):
            before = screen.detail.turn.index
            t = time.perf_counter()
            key("j")
            await until(lambda before=before: screen.detail.turn.index == before + 1 and "context" in screen._drawn)
            steps.append(time.perf_counter() - t)
            await asyncio.sleep(0.02)
        out["next_turn_median_s"] = statistics.median(steps)
        key("escape")
        await until(lambda: not isinstance(app.screen, ConversationScreen))
        key("slash")
        await until(lambda: app.screen.query_one("#filter", Input).has_focus)
        app.screen.query_one("#filter", Input).value = NEEDLE
        t = time.perf_counter()
        key("enter")
        await until(lambda: not app.screen.loading and app.screen.filters and 0 < rows() < 100)
        out["search_s"] = time.perf_counter() - t
        out["search_hits"] = rows()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux from VmHWM, which starts afresh at exec:
    ru_maxrss keeps the high-water mark of the process that forked us (the build, when this
    run built the database), so it would report the builder's memory as ours."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baselines(path: str) -> dict[str, float]:
    """The same questions answered the naive way, on the same database."""
    from replayer.store.codec import unpack
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    store = Store(open_db(path))
    out = {}
    t = time.perf_counter()
    rows = store.conversations(limit=10**9)
    out["all_rows_s"] = time.perf_counter() - t
    out["all_rows"] = len(rows)
    t = time.perf_counter()
    # the naive search: LIKE over the messages stored as text, and a look into each deflated one
    out["like_hits"] = store.db.execute(
        "SELECT COUNT(*) FROM blobs WHERE typeof(json) = 'text' AND json LIKE ?", [f"%{NEEDLE}%"]
    ).fetchone()[0] + sum(
        NEEDLE in unpack(v) for (v,) in store.db.execute("SELECT json FROM blobs WHERE typeof(json) = 'blob'")
    )
    out["like_scan_s"] = time.perf_counter() - t
    newest = store.conversations(limit=1)[0].conversation_id
    t = time.perf_counter()
    n = sum(1 for line in store.export_lines(newest) if json.loads(line))
    out["export_parse_s"] = time.perf_counter() - t
    out["export_lines"] = n
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--turns", type=int, default=50)
    p.add_argument("--db", help="reuse (or build once into) this database")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.db))))
        return
    path = args.db or os.path.join(tempfile.mkdtemp(prefix="replayer-bench-"), "browse.db")
    if not os.path.exists(path):
        t = time.perf_counter()
        print(f"building {args.conversations:,} x {args.turns} turns into {path} …", file=sys.stderr)
        build(path, args.conversations, args.turns)
        print(f"built in {time.perf_counter() - t:.0f} s, {os.path.getsize(path) / 1e6:.0f} MB", file=sys.stderr)
    r = subprocess.run([sys.executable, __file__, "--measure", "--db", path], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    m = json.loads(r.stdout.strip().splitlines()[-1])
    b = baselines(path)
    print(f"{'measure':34} {'replayer':>10} {'baseline':>10}  baseline is")
    print(f"{'first rows on screen':34} {m['first_rows_s']:>9.3f}s {b['all_rows_s']:>9.3f}s  "
          f"loading all {b['all_rows']:,} conversations")
    print(f"{'G: the last conversation':34} {m['bottom_s']:>9.3f}s {b['all_rows_s']:>9.3f}s  "
          f"loading all {b['all_rows']:,} conversations")
    print(f"{'g: back to the first':34} {m['top_s']:>9.3f}s")
    print(f"{'open a 200-turn conversation':34} {m['open_200_s']:>9.3f}s {b['export_parse_s']:>9.3f}s  "
          f"parsing its {b['export_lines']} full export lines")
    print(f"{'next turn (median of 30)':34} {m['next_turn_median_s'] * 1000:>8.1f}ms")
    print(f"{'search all message text':34} {m['search_s']:>9.3f}s {b['like_scan_s']:>9.3f}s  "
          "LIKE (inflating the deflated ones) over every stored message")
    print(f"{'peak memory (max RSS)':34} {m['peak_rss_mb']:>8.0f}MB")
    ok = (m["first_rows_s"] <= 1.0 and m["bottom_s"] <= 1.0 and m["open_200_s"] <= 0.5
          and m["next_turn_median_s"] <= 0.05 and m["search_s"] <= 1.0 and m["peak_rss_mb"] <= 300)
    print(f"\nSUMMARY browse: first rows {m['first_rows_s']:.2f} s "
          f"({m['first_rows_s'] / b['all_rows_s']:.2f}x loading all), G {m['bottom_s']:.2f} s "
          f"({m['bottom_s'] / b['all_rows_s']:.2f}x loading all), "
          f"200-turn open {m['open_200_s']:.2f} s, next turn {m['next_turn_median_s'] * 1000:.0f} ms, search "
          f"{m['search_s']:.2f} s ({m['search_s'] / b['like_scan_s']:.2f}x a naive scan), "
          f"peak {m['peak_rss_mb']:.0f} MB -> {'PASS' if ok else 'MISS'}")


if __name__ == "__main__":
    main()
