"""What answering an agent from a recording costs (issue 16, "Speed").

1. Per call: this process's child (the client: aiohttp, keep-alive, one call at a time) sends the
   same agent-sized streaming requests (a 10-turn history, ~25 KB each) to a fast fake upstream
   (bench/proxy.py's, aiohttp, its own process) and to `replayer replay`'s server, which answers
   them from a cassette holding the very bytes that upstream sends. Rounds alternate which goes
   first. Target: the added time per call (replay minus direct, median over the calls of a
   round) <= 1 ms.
2. Load: a 1,000-turn source (a `record` run of --convs conversations of --turns turns, every
   other turn streamed with its events kept, recorded through the SDK against the local fake)
   loaded as `replay` loads it (source.load, then the Matcher), beside reading the same
   recording's export lines as text (the floor: what any reader of the store pays). Target: <= 1 s.

Figures are differences and ratios against the baseline of the same run; on a shared, noisy
machine they move: look at the rounds, not one number.

Run: python bench/replay.py [--calls N] [--rounds N] [--convs N] [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from common import SYSTEM, TOOLS, history, median  # noqa: E402

HERE = Path(__file__).resolve().parent
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01",
           "x-api-key": "sk-ant-bench-NOT-A-REAL-KEY"}


def body(i: int) -> bytes:
    messages = history(10)
    messages[0] = {"role": "user", "content": f"Task {i}: fix the failing test in tests/test_parser.py"}
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": SYSTEM, "tools": TOOLS,
                       "messages": messages, "stream": True}).encode()


# -- 1. per call ----------------------------------------------------------------------------------
async def _calls(url: str, bodies: list[bytes], session: Any) -> tuple[list[float], bytes]:
    times, last = [], b""
    for data in bodies:
        t0 = time.perf_counter()
        async with session.post(url + "/v1/messages", data=data, headers=HEADERS) as r:
            got = await r.read()
            assert r.status == 200, (r.status, got[:300])
        times.append(time.perf_counter() - t0)
        last = got
    return times, last


def client(direct: str, calls: int, rounds: int) -> None:
    """Run under `replayer replay` (its server is $ANTHROPIC_BASE_URL): rounds of the same calls
    to the upstream and to the replay server; one JSON document on stdout."""
    import aiohttp

    replay = os.environ["ANTHROPIC_BASE_URL"]
    bodies = [body(i) for i in range(calls)]

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"rounds": []}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for url in (direct, replay):  # warm both connections (the cassette has a round more)
                await _calls(url, bodies, session)
            for r in range(rounds):
                order = [("direct", direct), ("replay", replay)]
                if r % 2:
                    order.reverse()
                got: dict[str, Any] = {}
                for name, url in order:
                    got[name], got[name + "_bytes"] = await _calls(url, bodies, session)
                assert got["direct_bytes"] == got["replay_bytes"], "the replay sent other bytes than the upstream"
                added = [b - a for a, b in zip(got["direct"], got["replay"], strict=True)]
                out["rounds"].append({"direct_ms": median(got["direct"]) * 1000,
                                      "replay_ms": median(got["replay"]) * 1000,
                                      "added_ms": median(added) * 1000})
        return out

    print(json.dumps(asyncio.run(main())))


def per_call(calls: int, rounds: int) -> float:
    import urllib.request

    from replayer import sse

    upstream_proc = subprocess.Popen([sys.executable, str(HERE / "proxy.py"), "--serve-upstream"],
                                     stdout=subprocess.PIPE, text=True)
    try:
        assert upstream_proc.stdout is not None
        upstream = upstream_proc.stdout.readline().strip()
        request = urllib.request.Request(upstream + "/v1/messages", data=body(0), headers=HEADERS)
        with urllib.request.urlopen(request) as r:
            raw = r.read()
        events = []
        for ev in sse.parse_events(raw):
            try:
                data: Any = json.loads(ev.data)
            except ValueError:
                data = ev.data
            events.append({"event": ev.event, "data": data, "ms": None})
        message = sse.assemble(raw).message
        with tempfile.TemporaryDirectory() as tmp:
            cassette = Path(tmp) / "calls.jsonl"
            with open(cassette, "w") as f:
                n = 0
                for _ in range(rounds + 1):  # one more for the warm-up calls
                    for i in range(calls):
                        n += 1
                        f.write(json.dumps({
                            "turn_id": f"turn_{n}", "conversation_id": f"conv_{i}", "index": 0, "attempt": 0,
                            "started_at": f"2026-12-01T00:00:00.{n:06d}Z", "stream": True,
                            "endpoint": "/v1/messages", "request": json.loads(body(i)), "request_headers": {},
                            "status": 200, "response": message, "error": None, "request_id": f"req_{n}",
                            "events": events}) + "\n")
            proc = subprocess.run(
                [sys.executable, "-m", "replayer.cli", "replay", str(cassette), "--",
                 sys.executable, __file__, "--client", upstream, "--calls", str(calls), "--rounds", str(rounds)],
                capture_output=True, text=True, env={**os.environ, "REPLAYER_DB": str(Path(tmp) / "none.db")},
            )
        if proc.returncode != 0:
            raise SystemExit(f"replay failed ({proc.returncode}): {proc.stderr.strip()}")
    finally:
        upstream_proc.terminate()
        upstream_proc.wait()
    result = json.loads(proc.stdout)
    print(f"1. per call ({calls} streamed calls of {len(body(0)) / 1000:.0f} KB, {len(events)} events each, "
          "one at a time, keep-alive):")
    for i, r in enumerate(result["rounds"]):
        print(f"   round {i + 1}: direct {r['direct_ms']:.2f} ms, replay {r['replay_ms']:.2f} ms, "
              f"added {r['added_ms']:+.2f} ms ({r['replay_ms'] / r['direct_ms']:.2f}x)")
    added = median([r["added_ms"] for r in result["rounds"]])
    print(f"   added per call (median of rounds): {added:+.2f} ms   target <= 1 ms: "
          f"{'met' if added <= 1 else 'NOT met'}")
    print("   " + proc.stderr.strip().splitlines()[-1])
    return added


# -- 2. loading a 1,000-turn source ---------------------------------------------------------------
def build(db: Path, convs: int, turns: int, result_bytes: int) -> None:
    import anthropic

    from replayer import Recorder
    from replayer.fakeapi import FakeAPI

    with FakeAPI(fast=True) as api, Recorder(db) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key="sk-ant-bench-NOT-A-REAL-KEY"))
        for c in range(convs):
            with rec.conversation(f"conv_bench_{c:03d}", tags={"run": "run_bench"}):
                for k in range(turns):
                    messages = history(k + 1, result_bytes)
                    messages[0] = {"role": "user", "content": f"Task {c}: fix the failing test"}
                    kwargs: Any = dict(model="claude-sonnet-4-5", max_tokens=1024, system=SYSTEM, tools=TOOLS,
                                       messages=messages)
                    if k % 2:
                        with client.messages.stream(**kwargs) as stream:
                            stream.get_final_message()
                    else:
                        client.messages.create(**kwargs)


def loading(convs: int, turns: int, result_bytes: int, repeat: int) -> tuple[float, float]:
    from replayer.playback.matching import Matcher
    from replayer.playback.source import load
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        build(db, convs, turns, result_bytes)
        print(f"2. load ({convs} conversations x {turns} turns = {convs * turns} turns in one run, every other "
              f"streamed; recorded in {time.perf_counter() - t0:.1f} s):")
        floors, sources, matchers, sizes = [], [], [], 0
        for _ in range(repeat):
            store = Store(open_db(db, create=False))
            t0 = time.perf_counter()
            sizes = sum(len(line) for c in store.run_conversations("run_bench") for line in store.export_lines(c))
            floors.append(time.perf_counter() - t0)
            store = Store(open_db(db, create=False))
            t0 = time.perf_counter()
            recording = load("run_bench", lambda s=store: s, db)  # type: ignore[misc]
            t1 = time.perf_counter()
            matcher = Matcher(recording.lines)
            matchers.append(time.perf_counter() - t1)
            sources.append(t1 - t0)
            assert len(matcher.slots) == convs * turns
        floor, source, matching = median(floors), median(sources), median(matchers)
        took = source + matching
        print(f"   export lines as text (floor): {floor * 1000:.0f} ms ({sizes / 1e6:.1f} MB)")
        print(f"   replay's load: {took * 1000:.0f} ms ({took / floor:.2f}x the floor): the cassette lines "
              f"(cassette_lines: parsed lines, stream events) {source * 1000:.0f} ms, the matcher "
              f"{matching * 1000:.0f} ms   target <= 1 s: {'met' if took <= 1 else 'NOT met'}")
        return took, took / floor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200, help="calls per round (per call figure)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--convs", type=int, default=20, help="conversations in the loaded run")
    p.add_argument("--turns", type=int, default=50, help="turns per conversation in the loaded run")
    p.add_argument("--result-bytes", type=int, default=512, help="size of each tool result in the loaded run")
    p.add_argument("--repeat", type=int, default=3, help="loads measured (the median is shown)")
    p.add_argument("--client", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        client(args.client, args.calls, args.rounds)
        return
    added = per_call(args.calls, args.rounds)
    took, ratio = loading(args.convs, args.turns, args.result_bytes, args.repeat)
    print(f"\nSUMMARY replay: answering from the recording adds {added:+.2f} ms per call (target <= 1), "
          f"a {args.convs * args.turns:,}-turn source loads in {took:.2f} s (target <= 1; {ratio:.2f}x reading its "
          "export lines)")


if __name__ == "__main__":
    main()
