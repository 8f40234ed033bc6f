"""What OTLP export costs the agent: the 200-turn agent loop of bench/record_overhead.py (history
growing each turn, a tool call and a ~2 KB tool result per turn), recorded with
`Recorder(otlp=True, otlp_content=True)` (what `record --otlp --otlp-content` installs in a Python
child) against a local OTLP receiver in another process, beside the same loop recorded without
export; the two run back to back, each first in every other round, and the ratio is the median
of each exporting run over the plain run beside it (target <= 1.05x). For information: the same
loop exported without content, exported with content by threads at a lower CPU priority
(REPLAYER_OTLP_NICE=10; by default they run at the writer's own), and a bare loop (no
recording). Then it checks that every span arrived.

The SDK's batch processor is told to send every 200 ms (OTEL_BSP_SCHEDULE_DELAY; its default is
5 s, longer than the loop): the spans are then encoded and sent while the loop runs, as they are
in an agent that runs for minutes, instead of after the timed loop. The receiver decodes each
request and counts its spans, as a Collector's receiver decodes them (tests/otlp_receiver.py);
each run starts once it has decoded every span sent before, so that its work on one run's spans
doesn't slow the next run, whatever kind that is (it did: the plain runs, which mostly follow an
exporting one, were slowed, and the ratio came out below 1).

Run: python bench/otlp.py [--loops N] [--turns N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import anthropic  # noqa: E402
from common import SYSTEM, TOOLS, fake_api_process, median, tool_result  # noqa: E402

from replayer import Recorder  # noqa: E402

warnings.simplefilter("ignore", DeprecationWarning)
MODEL = "claude-sonnet-4-5"
TARGET = 1.05


@contextmanager
def receiver_process():
    """The tests' OTLP receiver (tests/otlp_receiver.py) in a process of its own: its URL."""
    script = HERE.parent / "tests" / "otlp_receiver.py"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(5)


def received(url: str) -> int:
    with urllib.request.urlopen(url + "/count", timeout=5) as r:
        return int(r.read())


def settle(url: str, sent: int, timeout: float = 60.0) -> None:
    """Wait until the receiver has decoded every span sent so far: its work on one run's spans
    (with content, a long history's span is a megabyte) must not fall into the next run, which may
    be another kind."""
    t0 = time.perf_counter()
    while received(url) < sent and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)


def loop(url: str, db: str | None, turns: int, otlp: bool, content: bool = True, nice: str | None = None) -> float:
    """One agent loop of `turns` calls; seconds, the recorder's final flush included. `nice`: the
    export threads' REPLAYER_OTLP_NICE, read by the writer process this Recorder starts."""
    if nice is None:
        os.environ.pop("REPLAYER_OTLP_NICE", None)
    else:
        os.environ["REPLAYER_OTLP_NICE"] = nice
    client = anthropic.Anthropic(base_url=url, api_key="bench-key-not-real", max_retries=0)
    rec = Recorder(db, otlp=otlp, otlp_content=otlp and content) if db else None
    if rec:
        client = rec.wrap(client)
    messages = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
    t0 = time.perf_counter()
    for i in range(turns):
        reply = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)
        content = [block.to_dict() for block in reply.content]
        messages = [*messages, {"role": "assistant", "content": content}, tool_result(i, tool_use_id=content[-1]["id"])]
    if rec:
        rec.flush()
    elapsed = time.perf_counter() - t0
    if rec:
        rec.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    with fake_api_process() as api, receiver_process() as otlp_url, tempfile.TemporaryDirectory() as tmp:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_url  # read by the writer process's SDK
        os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")  # sent while the loop runs (see above)
        loop(api, os.path.join(tmp, "warm.db"), 5, True)  # warm: connections, imports, the writer process
        sent = 5
        kinds = ["plain", "content", "spans", "niced"]
        took: dict[str, list[float]] = {name: [] for name in ["bare", *kinds]}
        for k in range(args.loops):
            # the target's two kinds back to back, each first in every other round (a run's place
            # in the round moved its time as much as the export did: see otlp/exporter.py, NICE_ENV)
            pair, info = (["plain", "content"], ["spans", "niced"]) if k % 2 == 0 else (
                ["content", "plain"], ["niced", "spans"])
            for name in pair + info:
                db = os.path.join(tmp, f"{name}{k}.db")
                settle(otlp_url, sent)
                took[name].append(loop(api, db, args.turns, name != "plain", content=name != "spans",
                                       nice="10" if name == "niced" else None))
                sent += args.turns if name != "plain" else 0
            settle(otlp_url, sent)
            took["bare"].append(loop(api, None, args.turns, False))
        ratios = {name: median([e / p for e, p in zip(took[name], took["plain"], strict=True)]) for name in kinds}
        ratio = ratios["content"]
        want = 5 + 3 * args.turns * args.loops
        t0 = time.perf_counter()
        while received(otlp_url) < want and time.perf_counter() - t0 < 120:
            time.sleep(0.2)
        arrived = received(otlp_url)
    print(f"{args.turns}-turn agent loop, {args.loops} runs each (seconds, median):")
    print(f"  bare (no recording)                {median(took['bare']):.3f}")
    print(f"  recorded                           {median(took['plain']):.3f}")
    print(f"  recorded + OTLP without content    {median(took['spans']):.3f}")
    print(f"  recorded + OTLP with content       {median(took['content']):.3f}")
    print(f"  ... export threads niced +10       {median(took['niced']):.3f}")
    print(f"spans at the receiver: {arrived} of {want}")
    print(f"OTLP export without content / recording alone: {ratios['spans']:.3f}x (for information)")
    print(f"OTLP export with content, niced +10 / recording alone: {ratios['niced']:.3f}x (for information)")
    verdict = "PASS" if ratio <= TARGET and arrived == want else "MISS"
    print(f"OTLP export with content / recording alone: {ratio:.3f}x (target <= {TARGET}x)  {verdict}")


if __name__ == "__main__":
    main()
