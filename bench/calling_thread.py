"""Replayer's CPU on the agent's thread, without the network's noise. Not a target: a finer
instrument than record_overhead.py for comparing two versions of the capture code.

The official SDK sends through an in-process httpx transport (no socket, no server process) that
answers like the Messages API: a JSON message, or its SSE events in 8 chunks. For create and for
stream=True, at 1 / 50 / 200 turns of history, a bare client, one with a middleware that does
nothing, and a recorded one take turns call by call, and each call's CPU time on the calling
thread (`time.thread_time`) is taken. The recorder's hand-off to its writer drops what it is given,
on the calling thread: with the real writer, the request and response are freed on the writer's
thread instead, which makes a recorded call at 200 turns over 100 us cheaper on the agent's thread
than a bare one, and would hide what the capture code costs. It prints the bare
call's median and the median of the paired differences: what the SDK's middleware path adds, what
recording adds, and the difference, replayer's own part. Identical code repeats within a few us
here; record_overhead.py's wall-clock figures move by tens of us between runs.

Run: python bench/calling_thread.py [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import anthropic  # noqa: E402
import httpx2  # noqa: E402
from common import history, median  # noqa: E402
from record_overhead import NoopMiddleware, call  # noqa: E402

from replayer import Recorder, fakeapi  # noqa: E402

warnings.simplefilter("ignore", DeprecationWarning)


def transport() -> httpx2.MockTransport:
    message = fakeapi.echo_message({"messages": [], "model": "claude-sonnet-4-5"}, 1)
    chunks = [p.encode() for p in fakeapi.split_sse(fakeapi.sse_text(fakeapi.message_events(message)))]
    plain = json.dumps(message).encode()

    class Events(httpx2.SyncByteStream):
        def __iter__(self):
            yield from chunks

    def answer(request: httpx2.Request) -> httpx2.Response:
        request.read()
        headers = {"request-id": "req_bench"}
        if b'"stream":true' in request.content:
            return httpx2.Response(200, headers={**headers, "content-type": "text/event-stream"}, stream=Events())
        return httpx2.Response(200, headers={**headers, "content-type": "application/json"}, content=plain)

    return httpx2.MockTransport(answer)


def row(clients: dict[str, anthropic.Anthropic], depth: int, stream: bool, calls: int) -> dict[str, float]:
    names = list(clients)
    base = history(depth)
    for _ in range(20):
        for client in clients.values():
            call(client, base, stream)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        for i in range(calls):
            msgs = [*base, {"role": "user", "content": f"continue {i}"}]
            order = names[i % 3 :] + names[: i % 3]
            if (i // 3) % 2:
                order.reverse()
            for name in order:
                c0 = time.thread_time()
                call(clients[name], msgs, stream)
                cpu[name].append(time.thread_time() - c0)
    finally:
        gc.enable()

    def added(a: str, b: str) -> float:
        return median([x - y for x, y in zip(cpu[a], cpu[b], strict=True)]) * 1e6

    return {"bare": median(cpu["bare"]) * 1e6, "noop": added("noop", "bare"), "rec": added("rec", "bare"),
            "own": added("rec", "noop")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=2000, help="calls per client and row")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    rec = Recorder(os.path.join(tmp, "cpu.db"))
    rec._writer.put = lambda item: None  # see the docstring: the capture code alone
    bare = anthropic.Anthropic(base_url="http://bench.invalid", api_key="bench-key-not-real", max_retries=0,
                               http_client=httpx2.Client(transport=transport()))
    clients = {"bare": bare, "noop": bare.with_options(middleware=[NoopMiddleware()]), "rec": rec.wrap(bare)}
    print(f"{'mode':7} {'history':>7} {'bare cpu':>9} {'no-op mw':>9} {'recorded':>9} {'rec-no-op':>10} {'of bare':>8}")
    worst = None
    for stream in (False, True):
        for depth in (1, 50, 200):
            r = row(clients, depth, stream, args.calls)
            share = r["rec"] / r["bare"]
            print(f"{'stream' if stream else 'create':7} {depth:>7} {r['bare']:>7.0f}us {r['noop']:>+7.1f}us "
                  f"{r['rec']:>+7.1f}us {r['own']:>+8.1f}us {share:>7.1%}")
            if worst is None or r["rec"] > worst[2]["rec"]:
                worst = ("stream" if stream else "create", depth, r)
    rec.close()
    print("CPU time on the calling thread; added = median of paired differences against the bare call beside it")
    mode, depth, r = worst
    print(f"\nSUMMARY calling_thread (anthropic {anthropic.__version__}): recording adds at most {r['rec']:+.1f} us "
          f"of calling-thread CPU "
          f"({mode}, {depth} turns: {r['rec'] / r['bare']:.1%} of the bare call's {r['bare']:.0f} us), "
          f"{r['own']:+.1f} us over a no-op middleware (for information; no target)")


if __name__ == "__main__":
    main()
