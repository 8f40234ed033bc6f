"""What `replayer import otlp` costs (issue 17, "Speed"): importing 100,000 spans, target <= 30 s.

The input is what a fleet's Collector writes with its file exporter: OTLP JSON, one
ExportTraceServiceRequest per line (--per-line spans each, as a batch processor hands them over),
ids in hex. The spans are replayer's own, made from export lines by otlp/spans.py with content on
(what `--otlp --otlp-content` sends): agent conversations of --turns turns (a system prompt,
five tools, tool calls and --result-bytes tool results, growing history), every other one
streamed, each conversation its own text so the store can't share it with another.

Measured, one after the other on the same file:
- baseline: reading the file and parsing every line's JSON (orjson), the floor of any importer;
- reading: the same, into the batches of records the import writes (otlp/batches.py), in this
  process (so without the request scan, which read in one process the writer does: see below);
- import: `replayer import otlp FILE` into a new database, as a user runs it (its own process). A
  file this big is read by a reader process (readahead.py) while the import writes the batch
  before; the reader also scans the requests of a share of the conversations, which it moves
  after each batch toward balancing the two processes (otlp/prescan.py). So on two free cores
  the import's time is about the larger of the two processes' CPU times: both are printed, per
  span (the reader's is the rest of the total). On a machine without two free cores they are
  not balanced and the time is about their sum.
Printed: the times, the import's spans per second and its ratio to the baseline, and PASS/MISS
against the 30 s target for 100,000 spans (a smaller run is scaled to it, and says so). On a
shared, noisy machine the figures move (a loaded machine gives the reader no core of its own):
run it on a quiet one.

Making the file takes minutes: with --keep DIR it is kept there and used again by a later run
with the same sizes.

Run: python bench/otlp_import.py [--spans N] [--turns N] [--result-bytes N] [--per-line N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(__file__))

from common import SYSTEM, TOOLS  # noqa: E402

TARGET_S = 30.0
TARGET_SPANS = 100_000
MODEL = "claude-sonnet-4-5"
T0 = 1_796_300_000.0


def conversation(c: int, turns: int, size: int) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """One conversation's export lines (as `replayer export` writes them) and their exact texts."""
    rnd = random.Random(c)
    out = []
    task = f"Task {c}: fix the failing test in tests/test_{c}.py"
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    at = T0 + c * 60
    for i in range(turns):
        last = i == turns - 1
        content: list[dict[str, Any]] = [{"type": "text", "text": f"Step {i} of task {c}: looking further."}]
        if not last:
            content.append(
                {"type": "tool_use", "id": f"toolu_{c:08d}{i:08d}", "name": "read_file",
                 "input": {"path": f"src/mod_{c}_{i}.py"}}
            )  # fmt: skip
        usage = {"input_tokens": 40 + i, "output_tokens": 30, "cache_read_input_tokens": 1500 * i,
                 "cache_creation_input_tokens": 200}  # fmt: skip
        stream = i % 2 == 1
        request = {"model": MODEL, "max_tokens": 4096, "system": SYSTEM[:2048], "tools": TOOLS, "messages": messages}
        if stream:
            request["stream"] = True
        response = {"id": f"msg_{c:010d}{i:06d}", "type": "message", "role": "assistant", "model": MODEL,
                    "content": content, "stop_reason": "end_turn" if last else "tool_use", "stop_sequence": None,
                    "usage": usage}  # fmt: skip
        latency = round(rnd.uniform(800, 4000), 3)
        line = {
            "turn_id": f"turn_{c:012x}{i:020x}", "conversation_id": f"conv_{c:012x}", "index": i,
            "user_id": f"user_{c % 50}", "trace_id": None,
            "started_at": _iso(at), "latency_ms": latency, "ttft_ms": round(latency / 3, 3) if stream else None,
            "attempt": 0, "stream": stream, "endpoint": "/v1/messages", "model": MODEL, "request": request,
            "request_headers": {"anthropic-version": "2023-06-01"}, "status": 200, "response": response,
            "error": None, "request_id": f"req_{c:010d}{i:06d}", "usage": usage, "cost_usd": None,
            "abandoned": False, "unknown_events": [],
        }  # fmt: skip
        texts = {"request": _request_text(request), "response": _response_text(response, stream)}
        out.append((line, texts))
        at += latency / 1000 + 1
        messages = [*messages, {"role": "assistant", "content": content}]
        if not last:
            text = "".join(rnd.choice("abcdefghij klmnop\n") for _ in range(size))
            messages.append(
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": content[1]["id"], "content": text}]}
            )
    return out


def _request_text(request: dict[str, Any]) -> str:
    """The request's text as `replayer export` writes it: its keys spaced, the parts it keeps apart
    (system, tools, messages) canonical."""
    from replayer.store.codec import canon_plain, splice

    parts = {k: canon_plain(request[k]) for k in ("system", "tools", "messages")}
    return splice({k: v for k, v in request.items() if k not in parts}, parts)


def _response_text(response: dict[str, Any], stream: bool) -> str:
    """The response's text as `replayer export` writes it: spaced, its content as json writes it, its
    usage as stored (compact for a message parsed from bytes, spaced for a stream's)."""
    import json

    from replayer.store.codec import dumps_plain, splice

    usage = json.dumps(response["usage"]) if stream else dumps_plain(response["usage"])
    content = json.dumps(response["content"], ensure_ascii=False)
    return splice(dict(response, content=None, usage=None), {"content": content, "usage": usage})


def _iso(t: float) -> str:
    from replayer.store.codec import iso

    return iso(t)


def _value(v: Any) -> dict[str, Any]:
    """An attribute value as OTLP JSON writes it (int64 as a string, as the Collector does)."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    return {"stringValue": v}


def make_file(path: Path, spans: int, turns: int, size: int, per_line: int) -> None:
    """Write the Collector-style file."""
    from replayer.otlp.spans import attributes, times_ns

    rnd = random.Random(7)
    batch: list[dict[str, Any]] = []
    written = c = 0
    with open(path, "wb") as f:

        def flush() -> None:
            resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]}
            scope = {"scope": {"name": "replayer"}, "spans": batch}
            doc = {"resourceSpans": [{"resource": resource, "scopeSpans": [scope]}]}
            f.write(orjson.dumps(doc) + b"\n")
            batch.clear()

        while written < spans:
            trace = rnd.getrandbits(128).to_bytes(16, "big").hex()
            for line, texts in conversation(c, turns, size):
                if written == spans:
                    break
                attrs = attributes(line, content=True, texts=texts, tags={"env": "bench"})
                start, end = times_ns(line) or (0, 0)
                batch.append({
                    "traceId": trace, "spanId": rnd.getrandbits(64).to_bytes(8, "big").hex(),
                    "name": f"chat {MODEL}", "kind": 3,
                    "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
                    "attributes": [{"key": k, "value": _value(v)} for k, v in attrs.items()], "status": {},
                })  # fmt: skip
                written += 1
                if len(batch) == per_line:
                    flush()
            c += 1
        if batch:
            flush()


def baseline(path: Path) -> tuple[float, int]:
    """Read and parse every line: (seconds, spans seen)."""
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            doc = orjson.loads(raw)
            for rs in doc["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    n += len(ss["spans"])
    return time.perf_counter() - t, n


def reading(path: Path) -> tuple[float, int]:
    """Read the file into the batches the import writes, without storing them: (seconds, records)."""
    from replayer.otlp import batches

    t = time.perf_counter()
    n = sum(len(b.records) for b in batches.read(str(path), None, None, None))
    return time.perf_counter() - t, n


def cpu_of_children() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=100_000)
    ap.add_argument("--turns", type=int, default=10, help="turns per conversation")
    ap.add_argument("--result-bytes", type=int, default=512, help="each tool result's size")
    ap.add_argument("--per-line", type=int, default=512, help="spans per line (per export request)")
    ap.add_argument("--keep", metavar="DIR", help="keep the file and the database here")
    args = ap.parse_args()

    folder = Path(args.keep or tempfile.mkdtemp(prefix="otlp-import-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    sizes = f"{args.spans}-{args.turns}-{args.result_bytes}-{args.per_line}"
    spans_file, db = folder / f"spans-{sizes}.jsonl", folder / "imported.db"
    if db.exists():
        db.unlink()
    t = time.perf_counter()
    if not (args.keep and spans_file.exists()):
        make_file(spans_file, args.spans, args.turns, args.result_bytes, args.per_line)
    size = spans_file.stat().st_size
    print(f"input: {args.spans:,} spans ({args.turns}-turn conversations, {args.result_bytes} B tool results), "
          f"{size / 1e6:.0f} MB in {spans_file} (ready in {time.perf_counter() - t:.1f} s)")  # fmt: skip

    base_s, seen = baseline(spans_file)
    assert seen == args.spans, (seen, args.spans)
    read_s, records = reading(spans_file)
    assert records == args.spans, (records, args.spans)
    code = (
        "import resource, sys; from replayer.cli import cli\n"
        "try:\n    cli(sys.argv[1:])\nfinally:\n"
        "    ru = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    print(f'cpu of the import process: {ru.ru_utime + ru.ru_stime:.3f}', file=sys.stderr)"
    )
    cpu = cpu_of_children()
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "--db", str(db), "import", "otlp", str(spans_file)],
        capture_output=True, text=True,
    )  # fmt: skip
    import_s = time.perf_counter() - t
    cpu = cpu_of_children() - cpu
    if proc.returncode != 0:
        sys.exit(f"import failed ({proc.returncode}): {proc.stderr.strip()}")
    said = proc.stderr.strip().splitlines()
    own = float(said[-1].rsplit(" ", 1)[1])
    per = 1e3 / args.spans
    print(f"baseline (read + parse the JSON lines): {base_s:.2f} s  ({base_s * per:.3f} ms a span)")
    print(f"reading into batches of records:        {read_s:.2f} s  ({read_s / base_s:.1f}x the baseline)")
    print(f"import otlp:                            {import_s:.2f} s  ({args.spans / import_s:,.0f} spans/s, "
          f"{import_s / base_s:.1f}x the baseline)")  # fmt: skip
    print(f"  CPU: {cpu:.2f} s in all; the import process (the store) {own:.2f} s ({own * per:.3f} ms a span), "
          f"its reader process {cpu - own:.2f} s ({(cpu - own) * per:.3f} ms a span)")  # fmt: skip
    print(f"  its closing line: {said[-2]}")
    print(f"  database: {db.stat().st_size / 1e6:.0f} MB")
    at_100k = import_s * TARGET_SPANS / args.spans  # the target is for 100,000 spans: a smaller run is scaled
    verdict = "PASS" if at_100k <= TARGET_S else "MISS"
    scaled = "" if args.spans == TARGET_SPANS else f" (scaled from {args.spans:,} spans in {import_s:.1f} s)"
    print(f"{verdict}: 100,000 spans imported in {at_100k:.1f} s{scaled} (target <= {TARGET_S:.0f} s)")
    if not args.keep:
        spans_file.unlink()
        db.unlink()


if __name__ == "__main__":
    main()
