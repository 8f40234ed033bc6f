"""Arize Phoenix as a real OTLP receiver (issue 17): start Phoenix locally, record a tool loop
with `replayer record --otlp --otlp-content`, and read the spans back through Phoenix's own
client (arize-phoenix-client): the conversation's turns, models, token counts and content must
arrive. Prints figures and PASS/MISS; exit 1 on a miss.

A script, not a test: arize-phoenix can't be installed beside replayer (it requires
anthropic<2, replayer anthropic>=2.14), and its install is ~850 MB and minutes long (about 150
packages), more than CI's budget. So Phoenix runs from a venv of its own:

    python3 -m venv /tmp/phoenix && /tmp/phoenix/bin/pip install arize-phoenix arize-phoenix-client
    python bench/phoenix_check.py --phoenix /tmp/phoenix/bin/python      (or $PHOENIX_PYTHON)

Phoenix listens on loopback ports of its own choosing here, keeps its data in a temporary
folder, and runs with its telemetry off. The calls go to replayer's fake Messages API.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from replayer.fakeapi import FakeAPI, Reply  # noqa: E402
from replayer.store.queries import Store  # noqa: E402
from replayer.store.schema import open_db  # noqa: E402

MODEL = "claude-sonnet-4-5"
TURNS = 4

AGENT = """
import anthropic

client = anthropic.Anthropic(max_retries=0)
tools = [{"name": "read_file", "description": "Read a file",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
messages = [{"role": "user", "content": "Summarise the four files."}]
while True:
    reply = client.messages.create(model=%(model)r, max_tokens=512, system="You are a careful agent.",
                                   tools=tools, messages=messages)
    content = [block.to_dict() for block in reply.content]
    messages.append({"role": "assistant", "content": content})
    calls = [b for b in content if b["type"] == "tool_use"]
    if not calls:
        break
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": c["id"], "content": "text of " + c["input"]["path"]} for c in calls]})
"""

READER = """
import json, sys
from phoenix.client import Client
spans = Client(base_url=sys.argv[1]).spans.get_spans(project_identifier="default", limit=1000)
print(json.dumps(spans, default=str))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replies() -> list[Reply]:
    out = []
    for n in range(1, TURNS + 1):
        last = n == TURNS
        content = [{"type": "text", "text": f"Step {n}."}]
        if not last:
            content.append({"type": "tool_use", "id": f"toolu_phx{n}", "name": "read_file",
                            "input": {"path": f"file{n}.txt"}})
        usage = {"input_tokens": 100 * n, "output_tokens": 10 + n, "cache_read_input_tokens": 7 * n,
                 "cache_creation_input_tokens": 3}
        out.append(Reply(body={"id": f"msg_phx{n}", "type": "message", "role": "assistant", "model": MODEL,
                               "content": content, "stop_reason": "end_turn" if last else "tool_use",
                               "stop_sequence": None, "usage": usage}))
    return out


def start_phoenix(python: str, work: str) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": work, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(free_port()), "PHOENIX_TELEMETRY_ENABLED": "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "phoenix.server.main", "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "phoenix.log"), "wb"))
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            sys.exit(f"phoenix_check: Phoenix exited ({proc.returncode}); see {work}/phoenix.log")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("phoenix_check: Phoenix did not answer within 300 s")


def read_back(python: str, url: str, want: int) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    spans: list[dict] = []
    while time.perf_counter() - t0 < 60:
        out = subprocess.run([python, "-c", READER, url], capture_output=True, text=True, timeout=120)
        if out.returncode == 0:
            spans = [s for s in json.loads(out.stdout) if "replayer.turn_id" in s.get("attributes", {})]
            if len(spans) >= want:
                break
        time.sleep(1)
    return spans, time.perf_counter() - t0


def roles(attrs: dict) -> list[str]:
    """The roles of the input messages as Phoenix shows them (its OpenInference attributes,
    translated from the convention's gen_ai.system_instructions and gen_ai.input.messages)."""
    out = []
    while (role := attrs.get(f"llm.input_messages.{len(out)}.message.role")) is not None:
        out.append(role)
    return out


def check(lines: list[dict], texts: list[str], spans: list[dict]) -> list[str]:
    """What doesn't match between the recording and what Phoenix shows (empty: all does)."""
    from replayer.otlp.exporter import split

    problems = []
    got = {(s["attributes"]["replayer.turn_id"], s["attributes"]["replayer.attempt"]): s for s in spans}
    if len(got) != len(lines):
        problems.append(f"{len(lines)} attempts recorded, {len(got)} spans in Phoenix")
    for line, text in zip(lines, texts, strict=True):
        span = got.get((line["turn_id"], line["attempt"]))
        if span is None:
            problems.append(f"turn {line['index']}: no span")
            continue
        a = span["attributes"]
        usage = line["usage"]
        expect = {
            "span name": (span["name"], f"chat {MODEL}"),
            "model": (a.get("llm.model_name", a.get("gen_ai.request.model")), line["model"]),
            "conversation": (a.get("session.id", a.get("gen_ai.conversation.id")), line["conversation_id"]),
            "input tokens": (a.get("llm.token_count.prompt", a.get("gen_ai.usage.input_tokens")),
                             usage["input_tokens"] + usage["cache_read_input_tokens"]
                             + usage["cache_creation_input_tokens"]),
            "output tokens": (a.get("llm.token_count.completion", a.get("gen_ai.usage.output_tokens")),
                              usage["output_tokens"]),
            "turn index": (a.get("replayer.turn_index"), line["index"]),
            "exact request": (a.get("replayer.request"), split(text)[1]["request"]),
            "input message roles": (roles(a), ["system", *(m["role"] for m in line["request"]["messages"])]),
            "task text": (a.get("llm.input_messages.1.message.content"), line["request"]["messages"][0]["content"]),
        }
        for what, (seen, wanted) in expect.items():
            if seen != wanted:
                problems.append(f"turn {line['index']} {what}: Phoenix shows {seen!r}, recorded {wanted!r}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phoenix", default=os.environ.get("PHOENIX_PYTHON"),
                        help="the Python of a venv with arize-phoenix and arize-phoenix-client ($PHOENIX_PYTHON)")
    args = parser.parse_args()
    if not args.phoenix or not Path(args.phoenix).exists():
        sys.exit("phoenix_check: give --phoenix PYTHON (a venv with arize-phoenix and arize-phoenix-client); "
                 "see this script's docstring")
    with tempfile.TemporaryDirectory(prefix="replayer-phoenix-") as work, FakeAPI() as api:
        proc, url, started = start_phoenix(args.phoenix, work)
        try:
            api.enqueue(*replies())
            agent = Path(work) / "agent.py"
            agent.write_text(textwrap.dedent(AGENT % {"model": MODEL}))
            db = Path(work) / "rec.db"
            env = {**os.environ, "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "sk-ant-test-not-real",
                   "OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
            t0 = time.perf_counter()
            rec = subprocess.run([sys.executable, "-m", "replayer.cli", "--db", str(db), "record", "--otlp",
                                  "--otlp-content", "--", sys.executable, str(agent)],
                                 capture_output=True, text=True, env=env, timeout=300)
            recorded = time.perf_counter() - t0
            if rec.returncode != 0:
                sys.exit(f"phoenix_check: record failed: {rec.stderr}")
            store = Store(open_db(db, create=False))
            texts = list(store.export_lines())
            lines = [json.loads(t) for t in texts]
            spans, waited = read_back(args.phoenix, url, len(lines))
        finally:
            proc.terminate()
            proc.wait(30)
    problems = check(lines, texts, spans)
    print(f"Phoenix start (to /healthz): {started:.1f} s")
    print(f"record --otlp --otlp-content of a {TURNS}-turn tool loop: {recorded:.1f} s")
    print(f"spans readable through arize-phoenix-client after: {waited:.1f} s")
    print(f"attempts recorded: {len(lines)}, spans in Phoenix: {len(spans)}")
    for problem in problems:
        print("  " + problem)
    print("PASS" if not problems else "MISS")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
