"""How much of the recorder's cost to an agent loop is the GIL: its writer in the agent's process
against the same writer work in a process of its own.

Against a local fake Messages API in another process, the 200-turn loop of record_overhead.py
(the agent sends back the replies it gets) runs three ways, rotating, `--rounds` times:
1. bare, alone (the baseline);
2. bare, beside a second process that runs replayer's writer on a recorded 200-turn loop at the
   loop's own pace (40 records, then 0.2 s idle: what the writer's linger makes of it): the
   writer's work without sharing the agent's GIL (paused with SIGSTOP between runs);
3. recorded, the writer in the agent's process, as users run it today.
It prints the median ratio of 2 and of 3 to the bare run beside them. The gap between them is
what the GIL costs; a writer process would have about 2's cost plus handing the bytes over.
Not a target: a measurement for deciding where the writer runs. POSIX only (SIGSTOP).

Run: python bench/writer_contention.py [--rounds N]
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import anthropic  # noqa: E402
from common import SYSTEM, TOOLS, fake_api_process, median, tool_result  # noqa: E402
from record_overhead import MODEL, whole_loop  # noqa: E402

from replayer import Recorder  # noqa: E402
from replayer.store.ingest import Ingestor  # noqa: E402
from replayer.store.schema import open_db  # noqa: E402

warnings.simplefilter("ignore", DeprecationWarning)


def writer_duty(url: str) -> None:
    """The second process: record a 200-turn loop without writing it, then write it over and
    over at the loop's pace."""
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    rec = Recorder(os.path.join(tmp, "capture.db"))
    writer = rec._writer
    writer._start = lambda: None  # keep the records queued: they are the workload
    client = rec.wrap(anthropic.Anthropic(base_url=url, api_key="bench-key-not-real", max_retries=0))
    messages = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
    for i in range(200):
        reply = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages)
        content = [block.to_dict() for block in reply.content]
        messages = [*messages, {"role": "assistant", "content": content}, tool_result(i, tool_use_id=content[-1]["id"])]
    records = []
    while not writer.q.empty():
        records.append(writer.q.get_nowait())
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        writer._ingestor = Ingestor(open_db(os.path.join(tmp, f"w{n}.db")))
        batch = [copy.copy(r) for r in records]
        for i in range(0, len(batch), 40):
            writer._pending = batch[i : i + 40]
            writer._write_pending()
            time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--duty", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.duty:
        writer_duty(args.duty)
        return
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    runs: dict[str, list[float]] = {"bare": [], "beside": [], "recorded": []}
    with fake_api_process() as url:
        duty = subprocess.Popen([sys.executable, __file__, "--duty", url], stdout=subprocess.PIPE, text=True)
        try:
            assert duty.stdout is not None
            while "ready" not in duty.stdout.readline():
                pass
            os.kill(duty.pid, signal.SIGSTOP)
            order = list(runs)
            for k in range(args.rounds):
                for way in order[k % 3 :] + order[: k % 3]:
                    if way == "beside":
                        os.kill(duty.pid, signal.SIGCONT)
                    db = os.path.join(tmp, f"loop{k}.db") if way == "recorded" else ""
                    runs[way].append(whole_loop(url, db, 200, way == "recorded"))
                    if way == "beside":
                        os.kill(duty.pid, signal.SIGSTOP)
        finally:
            duty.kill()
            duty.wait(5)
    print(f"200-turn loop, ms (rotating, {args.rounds} rounds):")
    for way, values in runs.items():
        print(f"  {way:9}" + " ".join(f"{x * 1000:5.0f}" for x in values))
    beside = median([b / a for a, b in zip(runs["bare"], runs["beside"], strict=True)])
    recorded = median([b / a for a, b in zip(runs["bare"], runs["recorded"], strict=True)])
    print(
        f"\nSUMMARY writer_contention: the bare loop beside the writer's work in another process {beside:.3f}x; "
        f"recorded with the writer in the agent's process {recorded:.3f}x (medians of paired ratios to bare)"
    )


if __name__ == "__main__":
    main()
