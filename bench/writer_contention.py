"""What the writer's place costs an agent loop: the writer in a process of its own (the default)
against a writer thread in the agent's process (`REPLAYER_WRITER=thread`), which shares the
agent's GIL.

Against a local fake Messages API in another process, the 200-turn loop of record_overhead.py
(the agent sends back the replies it gets) runs three ways, rotating, `--rounds` times: bare,
recorded by a writer thread, recorded by the writer process (each recorded run a new Recorder,
so the process's start is in its figure). It prints each run and the median of each recorded
run's ratio to the bare run of its round. Not a target: record_overhead.py holds the loop's.

Run: python bench/writer_contention.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(__file__))

from common import fake_api_process, median  # noqa: E402
from record_overhead import whole_loop  # noqa: E402

warnings.simplefilter("ignore", DeprecationWarning)

WAYS = ("bare", "thread", "process")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="replayer-bench-")
    runs: dict[str, list[float]] = {way: [] for way in WAYS}
    with fake_api_process() as url:
        for k in range(args.rounds):
            for way in WAYS[k % 3 :] + WAYS[: k % 3]:
                if way == "thread":
                    os.environ["REPLAYER_WRITER"] = "thread"
                else:
                    os.environ.pop("REPLAYER_WRITER", None)
                db = os.path.join(tmp, f"{way}{k}.db") if way != "bare" else ""
                runs[way].append(whole_loop(url, db, 200, way != "bare"))
    os.environ.pop("REPLAYER_WRITER", None)
    print(f"200-turn loop, ms (rotating, {args.rounds} rounds):")
    for way, values in runs.items():
        print(f"  {way:8}" + " ".join(f"{x * 1000:5.0f}" for x in values))
    ratio = {way: median([b / a for a, b in zip(runs["bare"], runs[way], strict=True)]) for way in WAYS[1:]}
    print(
        f"\nSUMMARY writer_contention: recorded with a writer thread {ratio['thread']:.3f}x, with the writer "
        f"process {ratio['process']:.3f}x (medians of paired ratios to the bare loop)"
    )


if __name__ == "__main__":
    main()
