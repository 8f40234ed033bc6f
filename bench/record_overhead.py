"""What recording costs the agent: latency added on the calling thread, and a whole loop.

Against a local fake Messages API in another process, with the official SDK:
1. per call, at 1 / 50 / 200 turns of history, for `create` and for `stream=True`: bare and
   recorded calls interleaved (so drift hits both), median and p99 of each; the figure is the
   added median (target <= 100 us) and the p99 ratio (target <= 1.2x). Recording is on with full
   content, and the background writer runs in the same process (it shares the GIL).
2. a whole 200-turn agent loop whose history grows each turn (~2 KB tool result per turn),
   bare vs recorded including the final flush (target <= 1.10x).

Run: python bench/record_overhead.py [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import anthropic  # noqa: E402
from common import SYSTEM, TOOLS, assistant_turn, fake_api_process, history, median, pct, tool_result  # noqa: E402

from replayer import Recorder  # noqa: E402

warnings.simplefilter("ignore", DeprecationWarning)
MODEL = "claude-sonnet-4-5"


def call(client, messages, stream: bool) -> None:
    if stream:
        for _ in client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages, stream=True):
            pass
    else:
        client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)


def per_call(url: str, rec: Recorder, depth: int, stream: bool, calls: int) -> dict[str, float]:
    bare = anthropic.Anthropic(base_url=url, api_key="bench-key-not-real", max_retries=0)
    recorded = rec.wrap(bare)
    messages = history(depth)
    for _ in range(10):  # warm both paths (connections, caches)
        call(bare, messages, stream)
        call(recorded, messages, stream)
    rec.flush()
    times: dict[str, list[float]] = {"bare": [], "rec": []}
    gc.collect()
    for i in range(calls):
        # a new user message each call, as an agent's next turn would bring
        msgs = [*messages, {"role": "user", "content": f"continue {i}"}] if depth > 1 else [{"role": "user", "content": f"task {i}"}]
        order = (("bare", bare), ("rec", recorded)) if i % 2 == 0 else (("rec", recorded), ("bare", bare))
        for name, client in order:
            t0 = time.perf_counter()
            call(client, msgs, stream)
            times[name].append(time.perf_counter() - t0)
    rec.flush()
    return {
        "bare_med_us": median(times["bare"]) * 1e6,
        "rec_med_us": median(times["rec"]) * 1e6,
        "added_med_us": (median(times["rec"]) - median(times["bare"])) * 1e6,
        "bare_p99_us": pct(times["bare"], 99) * 1e6,
        "rec_p99_us": pct(times["rec"], 99) * 1e6,
    }


def whole_loop(url: str, db: str, turns: int, recorded: bool) -> float:
    client = anthropic.Anthropic(base_url=url, api_key="bench-key-not-real", max_retries=0)
    rec = Recorder(db) if recorded else None
    if rec:
        client = rec.wrap(client)
    messages = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
    gc.collect()
    t0 = time.perf_counter()
    for i in range(turns):
        client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)
        messages = [*messages, assistant_turn(i), tool_result(i)]
    if rec:
        rec.flush()
    elapsed = time.perf_counter() - t0
    if rec:
        rec.close()
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--loops", type=int, default=3)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    results = []
    with fake_api_process() as url:
        rec = Recorder(os.path.join(tmp, "percall.db"))
        print(f"{'mode':7} {'history':>7} {'bare med':>10} {'rec med':>10} {'added med':>10} {'bare p99':>10} {'rec p99':>10} {'p99 x':>6}")
        for stream in (False, True):
            for depth in (1, 50, 200):
                r = per_call(url, rec, depth, stream, args.calls)
                ratio = r["rec_p99_us"] / r["bare_p99_us"]
                results.append((stream, depth, r, ratio))
                print(
                    f"{'stream' if stream else 'create':7} {depth:>7} {r['bare_med_us']:>8.0f}us {r['rec_med_us']:>8.0f}us "
                    f"{r['added_med_us']:>+8.0f}us {r['bare_p99_us']:>8.0f}us {r['rec_p99_us']:>8.0f}us {ratio:>5.2f}x"
                )
        rec.close()
        bare_runs, rec_runs = [], []
        for k in range(args.loops):
            bare_runs.append(whole_loop(url, "", 200, False))
            rec_runs.append(whole_loop(url, os.path.join(tmp, f"loop{k}.db"), 200, True))
        loop_ratio = median(rec_runs) / median(bare_runs)
        size = os.path.getsize(os.path.join(tmp, "loop0.db"))
        print(f"\n200-turn loop (median of {args.loops}): bare {median(bare_runs) * 1000:.0f} ms, recorded incl. flush "
              f"{median(rec_runs) * 1000:.0f} ms, ratio {loop_ratio:.3f}x; its DB {size / 1e6:.2f} MB")
    worst_added = max(r["added_med_us"] for _, _, r, _ in results)
    worst_p99 = max(ratio for *_, ratio in results)
    ok = worst_added <= 100 and worst_p99 <= 1.2 and loop_ratio <= 1.10
    print(
        f"\nSUMMARY record_overhead: worst added median {worst_added:+.0f} us (target <= 100), worst p99 ratio "
        f"{worst_p99:.2f}x (target <= 1.2), 200-turn loop {loop_ratio:.3f}x (target <= 1.10) -> {'PASS' if ok else 'MISS'}"
    )


if __name__ == "__main__":
    main()
