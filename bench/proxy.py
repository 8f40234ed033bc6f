"""What the recording proxy costs a streaming agent (issue 15, "Speed").

Three processes besides this one: a fast fake upstream (aiohttp, written here: the threaded
http.server of replayer/fakeapi.py would be the bottleneck at 200 streams), `replayer proxy` in
front of it (recording into a temp DB through its writer process), and, for information, a
do-nothing pass-through proxy on aiohttp (the floor: what any proxy on this library costs).
This process is the client (aiohttp, keep-alive), so the targets share nothing but the machine.

1. Streams at 1, 50 and 200 at once, rounds rotating direct / replayer / floor (so drift hits all
   three): each stream is an agent-sized request (a 10-turn history, ~25 KB) answered by ~40
   SSE events paced over --stream-ms. Time to first token (the chunk holding the first
   content_block_delta) per stream, and each round's total time. Targets at 50 streams: added
   TTFT (replayer minus direct) <= 1 ms at the median and <= 5 ms at p99, timed in steady state
   (50 open, 50 ending and being recorded: see `_round`); at 200 streams the round's total time
   <= 1.05x direct (median of the rounds' ratios). Rounds are LINGER apart, so what a proxy does
   after a round (recording its last streams) stays out of the next target's round. For
   information: each proxy's CPU per stream (a figure noise moves less than a time does).
2. Memory: the proxy process's RSS after a warm-up, then after --requests more requests
   (streams of distinct requests, 50 at once, not paced): growth <= 50 MB. The writer process's
   RSS is shown beside it, for information.

Figures are ratios or differences against the direct figures of the same run; on a shared,
noisy machine they move from run to run: look at the rounds, not one number.

Run: python bench/proxy.py [--rounds N] [--requests N] [--stream-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from common import SYSTEM, TOOLS, history, median, pct  # noqa: E402

from replayer.fakeapi import message_events, split_sse, sse_text  # noqa: E402

HEADERS = {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "x-api-key": "sk-ant-bench-NOT-A-REAL-KEY",
}
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "trailer", "upgrade",
       "proxy-connection", "content-encoding"}
DELTAS = 40
LINGER = 0.5
"""Seconds between rounds: the writer's linger (0.2 s) and its work on the round's last records."""


# -- the fake upstream (its own process) ------------------------------------------------------
def _events() -> list[bytes]:
    text = "".join(f"word{i:03d} " for i in range(DELTAS * 2))  # 16-character deltas: DELTAS of them
    msg = {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text[: DELTAS * 16]}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 6000, "output_tokens": DELTAS * 4, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0},
    }
    return [part.encode() for part in split_sse(sse_text(message_events(msg)))]


def serve_upstream() -> None:
    """POST /v1/messages: a stream whose events after the first delta are `x-bench-gap-ms` apart."""
    from aiohttp import web

    events = _events()
    first = next(i for i, e in enumerate(events) if b"content_block_delta" in e)
    count = 0

    async def messages(request: web.Request) -> web.StreamResponse:
        nonlocal count
        await request.read()
        count += 1
        gap = float(request.headers.get("x-bench-gap-ms", "0")) / 1000
        resp = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                           "request-id": f"req_bench{count:012d}"})
        await resp.prepare(request)
        await resp.write(b"".join(events[: first + 1]))  # the head and the first token at once
        for ev in events[first + 1 :]:
            if gap:
                await asyncio.sleep(gap)
            await resp.write(ev)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    _serve(app)


def serve_floor(upstream: str) -> None:
    """A do-nothing pass-through proxy on aiohttp: each chunk to the client as it comes."""
    import aiohttp
    from aiohttp import web

    state: dict[str, Any] = {}

    async def start(app: web.Application) -> None:
        state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await state["s"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with state["s"].request(request.method, upstream + str(request.rel_url), headers=headers,
                                      data=body) as up:
            resp = web.StreamResponse(status=up.status,
                                      headers={k: v for k, v in up.headers.items() if k.lower() not in HOP})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", forward)
    _serve(app)


def _serve(app: Any) -> None:
    from aiohttp import web

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"http://127.0.0.1:{port}", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def _spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _spawn_replayer(upstream: str, db: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "replayer.cli", "proxy", "--port", "0", "--upstream", upstream, "--db", db],
        stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit(f"replayer proxy did not start: exit code {proc.wait()}")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    """The processes `pid` started, from any of its threads (the writer process is started by
    the writer's feeder thread, not the main one)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _cpu(pids: list[int]) -> tuple[float, float]:
    """CPU seconds used so far by the processes `pids` (all their threads), and by the processes
    they started (the writer), from the scheduler's own count (nanoseconds, unlike the 10 ms ticks
    of /proc/PID/stat); 0 where there is no /proc. Figures the machine's noise moves far less
    than a time to first token."""
    return _ns(pids) / 1e9, _ns([c for p in pids for c in _children(p)]) / 1e9


def _ns(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


# -- the client -------------------------------------------------------------------------------
async def _stream(session: Any, url: str, body: bytes, gap_ms: float) -> tuple[float, float]:
    """One stream: (seconds to the first token, seconds to its end)."""
    t0 = time.perf_counter()
    ttft = None
    async with session.post(url + "/v1/messages", data=body,
                            headers={**HEADERS, "x-bench-gap-ms": str(gap_ms)}) as r:
        async for chunk in r.content.iter_any():
            if ttft is None and b"content_block_delta" in chunk:
                ttft = time.perf_counter() - t0
        assert r.status == 200, r.status
    end = time.perf_counter() - t0
    return (ttft if ttft is not None else end), end


async def _round(
    session: Any, url: str, body: bytes, n: int, gap_ms: float, spread: float, *, steady: bool = False
) -> tuple[list[float], float]:
    """`n` streams whose starts are spread evenly over `spread` seconds (agents don't all call at
    the same instant; with `spread` the length of a stream, `n` are open at the peak): their times
    to first token, and the round's total time.

    `steady`: `n` more streams start first, over the `spread` before, and only the later `n`
    count. Without it the counted first tokens come while the round ramps up (0 to n-1 streams
    open, n/2 on average) and before any stream has ended, so a proxy's recording (the hand-off
    and the writer's work, after a stream ends) fell on the first streams of the next round:
    another target's. With it each counted stream starts with n open and n ending, as agents
    that keep calling see it."""
    lead = n if steady else 0

    async def later(delay: float) -> tuple[float, float]:
        await asyncio.sleep(delay)
        return await _stream(session, url, body, gap_ms)

    t0 = time.perf_counter()
    got = await asyncio.gather(*(later(i * spread / n) for i in range(lead + n)))
    return [g[0] for g in got[lead:]], time.perf_counter() - t0


async def _streams(
    targets: dict[str, str], pids: dict[str, list[int]], rounds: int, gap_ms: float
) -> dict[int, dict[str, Any]]:
    import aiohttp

    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": SYSTEM, "tools": TOOLS,
                       "messages": history(10), "stream": True}, separators=(",", ":")).encode()
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) for name in targets}
    out: dict[int, dict[str, Any]] = {}
    try:
        for name, url in targets.items():  # warm: connections open, the proxy's writer started
            await _round(sessions[name], url, body, 200, 0, 0)
        for n, k in ((1, rounds * 10), (50, rounds), (200, rounds)):
            res: dict[str, Any] = {name: {"ttft": [], "total": [], "cpu": 0.0, "cpu_writer": 0.0, "streams": 0}
                                   for name in targets}
            for i in range(k):
                names = list(targets)
                names = names[i % len(names):] + names[: i % len(names)]  # who goes first rotates
                for name in names:
                    before = _cpu(pids[name])
                    ttfts, total = await _round(sessions[name], targets[name], body, n, gap_ms, gap_ms * DELTAS / 1000,
                                                steady=n == 50)
                    await asyncio.sleep(LINGER)  # the recording of the round's last streams is the round's
                    after = _cpu(pids[name])
                    res[name]["cpu"] += after[0] - before[0]
                    res[name]["cpu_writer"] += after[1] - before[1]
                    res[name]["streams"] += len(ttfts) * (2 if n == 50 else 1)
                    res[name]["ttft"].extend(ttfts)
                    res[name]["total"].append(total)
            out[n] = res
    finally:
        for s in sessions.values():
            await s.close()
    return out


async def _memory(url: str, pid: int, requests: int) -> tuple[float, float, float, float]:
    """RSS of the proxy (and of its writer) after a warm-up and after `requests` more requests."""
    import aiohttp

    async def batch(session: Any, start: int, count: int) -> None:
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": True, "messages": [
                {"role": "user", "content": f"task {i}: " + "explain this code in detail. " * 60}]}).encode()
            async with sem:
                await _stream(session, url, body, 0)

        await asyncio.gather(*(one(i) for i in range(start, start + count)))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await batch(session, 0, 1000)
        await asyncio.sleep(1)
        before = _rss_mb(pid), sum(_rss_mb(c) for c in _children(pid))
        await batch(session, 1000, requests)
        await asyncio.sleep(1)
        after = _rss_mb(pid), sum(_rss_mb(c) for c in _children(pid))
    return before[0], after[0], before[1], after[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds at 50 and 200 streams (10x that at 1)")
    p.add_argument("--requests", type=int, default=10_000, help="requests for the memory figure")
    p.add_argument("--stream-ms", type=float, default=1000, help="how long each stream lasts")
    p.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-floor", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_upstream:
        return serve_upstream()
    if args.serve_floor:
        return serve_floor(args.serve_floor)

    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            upstream_proc, upstream = _spawn("--serve-upstream")
            procs.append(upstream_proc)
            floor_proc, floor = _spawn("--serve-floor", upstream)
            procs.append(floor_proc)
            rp, replayer = _spawn_replayer(upstream, os.path.join(tmp, "bench.db"))
            procs.append(rp)
            gap = args.stream_ms / DELTAS
            kb = len(json.dumps(history(10))) // 1000
            print(f"streams of {DELTAS} deltas over ~{args.stream_ms:.0f} ms, starts spread over as long, a {kb} KB "
                  f"history each; upstream {upstream}, replayer proxy {replayer}, floor {floor}")
            targets = {"direct": upstream, "replayer": replayer, "floor": floor}
            pids = {"direct": [], "replayer": [rp.pid], "floor": [floor_proc.pid]}
            res = asyncio.run(_streams(targets, pids, args.rounds, gap))
            print(f"\n{'streams':>7} {'target':>8} {'TTFT med':>9} {'TTFT p99':>9} {'added med':>10} "
                  f"{'added p99':>10} {'total med':>10} {'x direct':>9}")
            figures: dict[tuple[int, str], tuple[float, float, float]] = {}
            for n, by in res.items():
                d = by["direct"]
                for name, r in by.items():
                    med, p99 = median(r["ttft"]) * 1000, pct(r["ttft"], 99) * 1000
                    added_med = med - median(d["ttft"]) * 1000
                    added_p99 = p99 - pct(d["ttft"], 99) * 1000
                    ratio = median([t / b for t, b in zip(r["total"], d["total"], strict=True)])
                    figures[(n, name)] = (added_med, added_p99, ratio)
                    print(f"{n:>7} {name:>8} {med:>7.2f}ms {p99:>7.2f}ms {added_med:>+8.2f}ms {added_p99:>+8.2f}ms "
                          f"{median(r['total']) * 1000:>8.0f}ms {ratio:>8.3f}x")
            print("added = the target's TTFT minus direct's (median, p99) over every stream of the level;\n"
                  "x direct = median over the rounds of the round's total time over direct's in the same round;\n"
                  f"at 50, each round starts 50 streams more first, over the {args.stream_ms:.0f} ms before, and "
                  "times the later 50 only (each starts with 50 open)")
            print("\nCPU per stream, for information (the proxy process, all its threads; its writer process apart):")
            for n, by in res.items():
                per = {name: 1000 / max(1, by[name]["streams"]) for name in ("replayer", "floor")}
                rep, flo = by["replayer"]["cpu"] * per["replayer"], by["floor"]["cpu"] * per["floor"]
                writer = by["replayer"]["cpu_writer"] * per["replayer"]
                print(f"  {n:>3} at once: replayer {rep:.3f} ms (+ {writer:.3f} "
                      f"ms in its writer), floor {flo:.3f} ms: {rep - flo:+.3f} ms")
            print(f"\nmemory: {args.requests:,} more requests through the replayer proxy after 1,000 to warm up")
            rss0, rss1, w0, w1 = asyncio.run(_memory(replayer, rp.pid, args.requests))
            print(f"  proxy process RSS {rss0:.0f} MB -> {rss1:.0f} MB ({rss1 - rss0:+.1f} MB); "
                  f"its writer process {w0:.0f} MB -> {w1:.0f} MB (for information)")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT if proc is procs[-1] else signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        db = sqlite3.connect(os.path.join(tmp, "bench.db"))
        recorded = db.execute("SELECT count(*) FROM attempts").fetchone()[0]
        db.close()
        print(f"  the replayer proxy recorded {recorded:,} attempts in all")
    med50, p99_50, _ = figures[(50, "replayer")]
    ratio200 = figures[(200, "replayer")][2]
    f_med, f_p99, f_ratio = figures[(50, "floor")][0], figures[(50, "floor")][1], figures[(200, "floor")][2]
    growth = rss1 - rss0
    ok = med50 <= 1 and p99_50 <= 5 and ratio200 <= 1.05 and growth <= 50
    print(
        f"\nSUMMARY proxy: at 50 streams added TTFT {med50:+.2f} ms median (target <= 1), {p99_50:+.2f} ms p99 "
        f"(target <= 5); 200 streams {ratio200:.3f}x direct (target <= 1.05); RSS {growth:+.1f} MB over "
        f"{args.requests:,} requests (target <= 50); the floor (a do-nothing aiohttp proxy): {f_med:+.2f} ms, "
        f"{f_p99:+.2f} ms, {f_ratio:.3f}x -> {'PASS' if ok else 'MISS'}"
    )


if __name__ == "__main__":
    main()
