"""What recording costs the agent: latency added on the calling thread, and a whole loop.

Against a local fake Messages API in another process, with the official SDK:
1. per call, at 1 / 50 / 200 turns of history, for `create` and for `stream=True`: bare and
   recorded calls interleaved (so drift hits both; GC off meanwhile so the SDK's own garbage
   doesn't swamp the spread), the median of the paired differences (target <= 100 us),
   replayer's own calling-thread work timed directly (target <= 100 us), and the p99 ratio
   (target <= 1.2x). Full content is recorded, by the writer process (the default). For
   information, a third client interleaved with them has a middleware that does nothing: what
   the SDK's middleware path itself adds, which any middleware pays and replayer's `added`
   includes; and the recorded call against it (`rec-no-op`), replayer's part beyond. That
   path's cost depends on the SDK's version, so the summary names it: from 2.17 the SDK merges
   the client's headers into each attempt's request for middleware to see, and takes them out
   again after (two header builds an attempt). bench/calling_thread.py measured a no-op
   middleware at +7 to +35 us of calling-thread CPU per call under 2.14 and 2.16, and +60 to
   +96 us under 2.17, with replayer's own part the same under all three.
2. a whole 200-turn agent loop whose history grows each turn: the fake model calls a tool, the
   agent sends back the reply it got and a ~2 KB tool result. Bare vs recorded, including the
   final flush (target <= 1.10x). Then, for information, the same loop by an agent that never
   sends back the reply it got (it writes its own assistant turn instead): no turn threads onto
   the one before, so each starts a conversation of its own, replayer's slowest path. And the
   target's loop again, timed from when the recorder's writer process is up: the recorded loop
   above includes that process's start-up (Python and the store's imports, a tenth of a second
   or more of CPU beside the agent), which an agent against the real API, seconds a turn, pays
   once in minutes. On our 2-vCPU machines the two figures have come out 1.180/1.183x,
   1.079/1.093x and 1.154/1.185x (cold/warm, three runs): the start-up's share is within the
   run-to-run noise there. Last, for information, the target's loop with a middleware that
   does nothing in place of the recorder: what the SDK's middleware path alone costs the loop.

Run: python bench/record_overhead.py [--calls N] [--loops N]
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import anthropic  # noqa: E402
from common import SYSTEM, TOOLS, assistant_turn, fake_api_process, history, median, pct, tool_result  # noqa: E402

from replayer import Recorder  # noqa: E402


class NoopMiddleware(anthropic.Middleware):
    """A middleware that does nothing: the SDK's own cost of running one."""

    def handle(self, request, call_next):
        return call_next(request)

warnings.simplefilter("ignore", DeprecationWarning)
MODEL = "claude-sonnet-4-5"


def call(client, messages, stream: bool) -> None:
    if stream:
        for _ in client.messages.create(
            model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages, stream=True
        ):
            pass
    else:
        client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)


class OwnTime:
    """Replayer's own work on the calling thread, measured directly: the middleware's time minus
    the SDK call it wraps, plus the stream tee's closing work. (The tee's per-chunk work, a list
    append and, until the first content_block_delta, a search for it, is not timed: timing it
    would cost more than it does. It is in `added`, the end-to-end figure.)"""

    def __init__(self) -> None:
        from replayer import capture

        self.total = 0.0
        mw, sc = capture.RecorderMiddleware, capture._StreamCapture
        orig_handle, orig_finish = mw.handle, sc.finish
        own = self

        def handle(self, request, call_next):
            inner = 0.0

            def timed_next(req):
                nonlocal inner
                t = time.perf_counter()
                try:
                    return call_next(req)
                finally:
                    inner += time.perf_counter() - t

            t = time.perf_counter()
            try:
                return orig_handle(self, request, timed_next)
            finally:
                own.total += time.perf_counter() - t - inner

        def finish(self, *a, **k):
            t = time.perf_counter()
            orig_finish(self, *a, **k)
            own.total += time.perf_counter() - t

        mw.handle, sc.finish = handle, finish


def per_call(url: str, rec: Recorder, own: OwnTime, depth: int, stream: bool, calls: int) -> dict[str, float]:
    bare = anthropic.Anthropic(base_url=url, api_key="bench-key-not-real", max_retries=0)
    clients = {"bare": bare, "rec": rec.wrap(bare), "noop": bare.with_options(middleware=[NoopMiddleware()])}
    names = list(clients)
    messages = history(depth)
    for _ in range(10):  # warm all paths (connections, caches)
        for client in clients.values():
            call(client, messages, stream)
    rec.flush()
    times: dict[str, list[float]] = {"bare": [], "rec": [], "noop": []}
    diffs: list[float] = []
    noop_diffs: list[float] = []
    beyond: list[float] = []
    owns: list[float] = []
    gc.collect()
    gc.disable()  # the SDK's own garbage would dominate the spread of both
    try:
        for i in range(calls):
            # a new user message each call, as an agent's next turn would bring
            if depth > 1:
                msgs = [*messages, {"role": "user", "content": f"continue {i}"}]
            else:
                msgs = [{"role": "user", "content": f"task {i}"}]
            order = names[i % 3 :] + names[: i % 3]  # each client in each place, in both directions
            if (i // 3) % 2:
                order.reverse()
            took = {}
            for name in order:
                before = own.total
                t0 = time.perf_counter()
                call(clients[name], msgs, stream)
                took[name] = time.perf_counter() - t0
                times[name].append(took[name])
                if name == "rec":
                    owns.append(own.total - before)
            diffs.append(took["rec"] - took["bare"])
            noop_diffs.append(took["noop"] - took["bare"])
            beyond.append(took["rec"] - took["noop"])
    finally:
        gc.enable()
    rec.flush()
    return {
        "bare_med_us": median(times["bare"]) * 1e6,
        "rec_med_us": median(times["rec"]) * 1e6,
        "paired_us": median(diffs) * 1e6,
        "noop_us": median(noop_diffs) * 1e6,
        "beyond_us": median(beyond) * 1e6,
        "own_med_us": median(owns) * 1e6,
        "own_p99_us": pct(owns, 99) * 1e6,
        "bare_p99_us": pct(times["bare"], 99) * 1e6,
        "rec_p99_us": pct(times["rec"], 99) * 1e6,
    }


FLUSHES: list[float] = []
"""How long each recorded loop's closing flush took (seconds): what the writer still had to store."""


def whole_loop(url: str, db: str, turns: int, recorded: bool, cpu: list[float] | None = None,
               echo: bool = True, warm: bool = False, noop: bool = False) -> float:
    """`echo`: the agent sends back the reply it got (a real agent); else an invented one.
    `warm`: the timer starts once the recorder's writer process is up (its start-up, a tenth of
    a second or more of CPU in a process of its own, is then not in the loop). `noop` (with
    `recorded`): a middleware that does nothing instead of the recorder."""
    client = anthropic.Anthropic(base_url=url, api_key="bench-key-not-real", max_retries=0)
    if recorded and noop:
        client = client.with_options(middleware=[NoopMiddleware()])
    rec = Recorder(db) if recorded and not noop else None
    if rec:
        client = rec.wrap(client)
        if warm:  # no public way to wait for the writer process: the bench looks inside
            ready = getattr(rec._writer, "_ready", None)
            if ready is None or not ready.wait(20):
                raise SystemExit("the recorder's writer process did not start (is REPLAYER_WRITER=thread set?)")
    messages = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(turns):
        reply = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)
        if echo:  # as plain dicts, once: the SDK would otherwise serialise every past reply on every call
            content = [block.to_dict() for block in reply.content]
            call_id = content[-1]["id"]
            messages = [*messages, {"role": "assistant", "content": content}, tool_result(i, tool_use_id=call_id)]
        else:
            messages = [*messages, assistant_turn(i), tool_result(i)]
    if rec:
        f0 = time.perf_counter()
        rec.flush()
        FLUSHES.append(time.perf_counter() - f0)
    elapsed = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    if rec:
        rec.close()
    return elapsed


def loops(url: str, tmp: str, n: int, echo: bool, warm: bool = False, noop: bool = False) -> float:
    """`n` bare and `n` recorded 200-turn loops, alternating; prints them and returns the median ratio.
    `noop`: a middleware that does nothing stands in for the recorder (what the SDK's own
    middleware path costs the loop, which any middleware pays)."""
    bare_runs, rec_runs, bare_cpu, rec_cpu = [], [], [], []
    FLUSHES.clear()
    tag = ("echo" if echo else "own") + ("-warm" if warm else "") + ("-noop" if noop else "")
    for k in range(n):
        db = os.path.join(tmp, f"loop-{tag}{k}.db")
        if k % 2 == 0:
            bare_runs.append(whole_loop(url, "", 200, False, bare_cpu, echo))
            rec_runs.append(whole_loop(url, db, 200, True, rec_cpu, echo, warm, noop))
        else:
            rec_runs.append(whole_loop(url, db, 200, True, rec_cpu, echo, warm, noop))
            bare_runs.append(whole_loop(url, "", 200, False, bare_cpu, echo))
    # this machine's speed drifts by tens of percent over a minute: compare each recorded run
    # with the bare run beside it, and take the median of those ratios
    ratio = median([r / b for r, b in zip(rec_runs, bare_runs, strict=True)])
    if noop:
        print("\nFor information: the same loop with a middleware that does nothing in place of the recorder\n"
              "(the SDK's middleware path, which any middleware pays; in the target's ratio above)")
        print("  runs in ms (bare and no-op alternate):")
        print("  bare     " + " ".join(f"{x * 1000:5.0f}" for x in bare_runs))
        print("  no-op    " + " ".join(f"{x * 1000:5.0f}" for x in rec_runs))
        cpu_ratio = median([r / b for r, b in zip(rec_cpu, bare_cpu, strict=True)])
        print(f"median of {n}: bare {median(bare_runs) * 1000:.0f} ms, no-op {median(rec_runs) * 1000:.0f} ms; "
              f"median paired ratio {ratio:.3f}x; process CPU time ratio {cpu_ratio:.3f}x")
        return ratio
    db = os.path.join(tmp, f"loop-{tag}0.db")
    size = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
    with sqlite3.connect(db) as conn:
        convs = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
    if warm:
        print("\nFor information: the same loop recorded by a recorder whose writer process was already up when it "
              "began\n(what each record costs, without the writer's start-up)")
    elif echo:
        print("\n200-turn loop, the agent sending back the replies it gets (the target):")
    else:
        print("\nFor information: the same loop by an agent that sends back an assistant turn of its own making")
    print("  runs in ms (bare and recorded alternate; the spread is this machine's):")
    print("  bare     " + " ".join(f"{x * 1000:5.0f}" for x in bare_runs))
    print("  recorded " + " ".join(f"{x * 1000:5.0f}" for x in rec_runs))
    print("  ratio    " + " ".join(f"{r / b:5.2f}" for r, b in zip(rec_runs, bare_runs, strict=True)))
    print(f"median of {n}: bare {median(bare_runs) * 1000:.0f} ms, recorded incl. flush "
          f"{median(rec_runs) * 1000:.0f} ms; median paired ratio {ratio:.3f}x; its DB {size / 1e6:.2f} MB holding "
          f"{convs} conversation(s)")
    cpu_ratio = median([r / b for r, b in zip(rec_cpu, bare_cpu, strict=True)])
    print(f"process CPU time (all threads, this process; the fake API runs in another): median paired ratio "
          f"{cpu_ratio:.3f}x; the closing flush (in the recorded time) took {median(FLUSHES) * 1000:.1f} ms, median")
    return ratio


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=3000, help="calls per client and row (p99 is the 1/100th slowest)")
    p.add_argument("--loops", type=int, default=40, help="runs of each 200-turn loop, bare and recorded")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    results = []
    with fake_api_process() as url:
        rec = Recorder(os.path.join(tmp, "percall.db"))
        own = OwnTime()
        print(f"{'mode':7} {'history':>7} {'bare med':>9} {'rec med':>9} {'added':>8} {'own med':>8} {'own p99':>8} "
              f"{'bare p99':>9} {'rec p99':>9} {'p99 x':>6} {'no-op mw':>9} {'rec-no-op':>10}")
        for stream in (False, True):
            for depth in (1, 50, 200):
                r = per_call(url, rec, own, depth, stream, args.calls)
                ratio = r["rec_p99_us"] / r["bare_p99_us"]
                results.append((stream, depth, r, ratio))
                print(
                    f"{'stream' if stream else 'create':7} {depth:>7} "
                    f"{r['bare_med_us']:>7.0f}us {r['rec_med_us']:>7.0f}us "
                    f"{r['paired_us']:>+6.0f}us {r['own_med_us']:>6.0f}us {r['own_p99_us']:>6.0f}us "
                    f"{r['bare_p99_us']:>7.0f}us {r['rec_p99_us']:>7.0f}us {ratio:>5.2f}x {r['noop_us']:>+7.0f}us "
                    f"{r['beyond_us']:>+8.0f}us"
                )
        print("added = median of paired differences (recorded call minus the bare call beside it);\n"
              "own = replayer's own work on the calling thread, timed directly;\n"
              "no-op mw = the same for a middleware that does nothing (the SDK's middleware path; in added);\n"
              "rec-no-op = the same, recorded call minus the no-op middleware's call beside it (replayer's part)")
        rec.close()
        loop_ratio = loops(url, tmp, args.loops, echo=True)
        unthreaded = loops(url, tmp, args.loops, echo=False)
        warm = loops(url, tmp, args.loops, echo=True, warm=True)
        noop_loop = loops(url, tmp, args.loops, echo=True, noop=True)
    worst_added = max(r["paired_us"] for _, _, r, _ in results)
    worst_own = max(r["own_med_us"] for _, _, r, _ in results)
    worst_p99 = max(ratio for *_, ratio in results)
    worst = max(results, key=lambda x: x[2]["paired_us"])[2]
    worst_beyond = max(r["beyond_us"] for _, _, r, _ in results)
    ok = worst_added <= 100 and worst_own <= 100 and worst_p99 <= 1.2 and loop_ratio <= 1.10
    print(
        f"\nSUMMARY record_overhead (anthropic {anthropic.__version__}): worst added median {worst_added:+.0f} us "
        f"end to end (a no-op middleware "
        f"{worst['noop_us']:+.0f} us there; recorded minus no-op at most {worst_beyond:+.0f} us), "
        f"{worst_own:.0f} us of own "
        f"calling-thread work (target <= 100), worst p99 ratio {worst_p99:.2f}x (target <= 1.2), 200-turn loop "
        f"{loop_ratio:.3f}x (target <= 1.10; {unthreaded:.3f}x if the agent never sends back its replies, "
        f"{warm:.3f}x with the writer process up before the loop; a do-nothing middleware {noop_loop:.3f}x) -> "
        f"{'PASS' if ok else 'MISS'}"
    )

if __name__ == "__main__":
    main()
