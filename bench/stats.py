"""`replayer stats` and the dashboard over 500,000 turns.

Uses the browse benchmark's database (10,000 conversations x 50 turns plus one of 200, built once
through the recorder's own writer code; reuse it with --db). Measures, each beside a baseline
taken in the same run on the same database:
- `replayer stats --json` over every turn, as a user runs it: a fresh process, wall time
  (median of 3), against computing the same per-user daily spend the naive way in-process:
  every attempt's raw usage parsed and priced one by one (what stats would cost without the
  rollup; it doesn't even include process start);
- the stats computation alone, in-process;
- the dashboard: from pressing d on the conversation list until its metrics are on screen.

Targets: replayer stats <= 1 s; the dashboard shows within 1 s.

Run: python bench/stats.py [--db PATH] [--days N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(__file__))

from browse import build  # noqa: E402


def naive(path: str) -> tuple[float, int]:
    """Per-user daily spend from every attempt's raw usage, priced one by one."""
    from replayer.pricing import PriceTable
    from replayer.store.schema import open_db

    db = open_db(path)
    prices = PriceTable.load()
    t = time.perf_counter()
    spend: dict[tuple[str, str], float] = defaultdict(float)
    n = 0
    for usage_json, model, started, user in db.execute(
        """SELECT a.usage_json, a.model, a.started_at, c.user_id FROM attempts a
           JOIN turns t ON t.id = a.turn_id JOIN conversations c ON c.id = t.conversation_id"""
    ):
        n += 1
        if usage_json:
            spend[(user, started[:10])] += prices.cost(json.loads(usage_json), model) or 0.0
    return time.perf_counter() - t, n


def in_process(path: str, days: int) -> float:
    from replayer.config import Settings
    from replayer.metrics import stats
    from replayer.pricing import PriceTable
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    store = Store(open_db(path), PriceTable.load())
    t = time.perf_counter()
    stats(store, Settings(days=days))
    return time.perf_counter() - t


def cli_wall(path: str, days: int) -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "replayer.cli", "--db", path, "stats", "--days", str(days), "--json"],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(r.stderr)
    return wall, json.loads(r.stdout)


async def dashboard(path: str, days: int) -> float:
    from textual import events
    from textual.widgets import DataTable

    from replayer.config import Settings
    from replayer.tui.app import make_app
    from replayer.tui.dashboard import DashboardScreen

    app = make_app(path, settings=Settings(days=days))

    async def until(cond, timeout=60.0):
        t = time.perf_counter()
        while not cond():
            await asyncio.sleep(0.001)
            if time.perf_counter() - t > timeout:
                raise TimeoutError(type(app.screen).__name__)
        app.screen._on_timer_update()

    async with app.run_test(size=(200, 60)):
        await until(lambda: app.screen.query(DataTable) and app.screen.query(DataTable).first().row_count > 0)
        event = events.Key("d", "d")
        event.set_sender(app)
        t = time.perf_counter()
        app._driver.send_message(event)
        def shown() -> bool:  # the screen may still be composing: query, don't query_one
            tables = app.screen.query("#dash-metrics") if isinstance(app.screen, DashboardScreen) else []
            return bool(tables) and tables.first(DataTable).row_count == 6

        await until(shown)
        return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", help="reuse (or build once into) this database")
    p.add_argument("--days", type=int, default=45, help="the window (default covers the whole bench DB)")
    p.add_argument("--dashboard", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    path = args.db or os.path.join(tempfile.mkdtemp(prefix="replayer-bench-"), "browse.db")
    if args.dashboard:
        print(json.dumps({"dashboard_s": asyncio.run(dashboard(path, args.days))}))
        return
    if not os.path.exists(path):
        print(f"building 10,000 x 50 turns into {path} …", file=sys.stderr)
        build(path, 10_000, 50)
    from replayer.store.schema import open_db

    t = time.perf_counter()
    open_db(path)  # migrates an older bench DB once (not timed below)
    if time.perf_counter() - t > 1:
        print(f"migrated {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    walls = []
    for _ in range(3):
        wall, doc = cli_wall(path, args.days)
        walls.append(wall)
    turns = sum(u["turns"] for u in doc["users"])
    wall = statistics.median(walls)
    compute = statistics.median(in_process(path, args.days) for _ in range(3))
    base, attempts = naive(path)
    r = subprocess.run(
        [sys.executable, __file__, "--dashboard", "--db", path, "--days", str(args.days)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        sys.exit(r.stderr)
    dash = json.loads(r.stdout.strip().splitlines()[-1])["dashboard_s"]
    print(f"database: {path}, {turns:,} turns in the window ({doc['since']} .. {doc['until']}), "
          f"{attempts:,} attempts; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    print(f"{'measure':40} {'replayer':>10} {'baseline':>10}  baseline is")
    print(f"{'replayer stats --json (process, wall)':40} {wall:>9.3f}s {base:>9.3f}s  "
          "pricing every attempt's raw usage in-process")  # fmt: skip
    print(f"{'stats computation alone':40} {compute:>9.3f}s {base:>9.3f}s")
    print(f"{'dashboard on screen after d':40} {dash:>9.3f}s {base:>9.3f}s")
    ok = wall <= 1.0 and dash <= 1.0
    print(f"\nSUMMARY stats: replayer stats {wall:.2f} s over {turns:,} turns ({wall / base:.2f}x the naive "
          f"computation), computation {compute:.2f} s ({compute / base:.3f}x), dashboard {dash:.2f} s "
          f"({dash / base:.2f}x) -> {'PASS' if ok else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    main()
