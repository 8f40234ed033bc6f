"""OTLP export (issue 17): each recorded attempt reaches a real OTLP/HTTP receiver on 127.0.0.1
(tests/otlp_receiver.py) as a GenAI-convention span, sent by the official SDK, from the three
places that record: `Recorder(otlp=True)` in process, `replayer record --otlp` and `replayer
proxy --otlp`. Content only when asked, after `redact`; the caller's trace joined; a dead or
slow collector costs the agent nothing and its drops are told once; nothing imports
OpenTelemetry unless export is on."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import anthropic
import pytest
from conftest import FAKE_KEY, exported, wait_until
from otlp_receiver import Receiver

from replayer import Recorder
from replayer.fakeapi import Reply
from replayer.otlp import names
from replayer.otlp.exporter import split
from replayer.otlp.spans import attributes, part, tool
from replayer.store.queries import Store
from replayer.store.schema import open_db

CLI = [sys.executable, "-m", "replayer.cli"]
MODEL = "claude-sonnet-4-5"
SYSTEM = "You are a careful agent."
TOOLS = [{"name": "read_file", "description": "Read a file",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]
CONTENT_KEYS = (names.SYSTEM_INSTRUCTIONS, names.INPUT_MESSAGES, names.OUTPUT_MESSAGES, names.TOOL_DEFINITIONS,
                names.REQUEST, names.RESPONSE, names.REQUEST_HEADERS, names.USAGE, names.ERROR)
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2


def message(n: int, content: list[dict], stop: str, usage: dict | None = None) -> dict:
    return {"id": f"msg_otlp{n:04d}", "type": "message", "role": "assistant", "model": MODEL, "content": content,
            "stop_reason": stop, "stop_sequence": None,
            "usage": usage or {"input_tokens": 30 + n, "output_tokens": 7}}


TOOL_CALL = {"type": "tool_use", "id": "toolu_otlp1", "name": "read_file", "input": {"path": "README.md"}}
FIRST = message(1, [{"type": "text", "text": "Reading it."}, TOOL_CALL], "tool_use",
                {"input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 50,
                 "cache_creation_input_tokens": 10})
LAST = message(2, [{"type": "text", "text": "It says hello."}], "end_turn")
RATE_LIMITED = Reply(status=429, headers={"retry-after": "0"},
                     body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})


def script_loop(api) -> None:
    """The fake's answers to `tool_loop`: a tool call, then a 429 (retried), then the end."""
    api.enqueue(Reply(body=FIRST), RATE_LIMITED, Reply(body=LAST))


def tool_loop(client, question: str = "What does README.md say?") -> None:
    """A two-turn tool loop with the real SDK: the model calls read_file, the loop answers."""
    messages: list[dict] = [{"role": "user", "content": question}]
    first = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages,
                                   stop_sequences=["STOP"])
    call = next(b for b in first.content if b.type == "tool_use")
    messages += [{"role": "assistant", "content": [b.to_dict() for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "hello"}]}]
    client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=TOOLS, messages=messages,
                           stop_sequences=["STOP"])


@pytest.fixture
def receiver(monkeypatch):
    with Receiver() as r:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the SDK's batch goes out soon, not in 5 s
        for var in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
                    "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                    names.ENV_CAPTURE_CONTENT, names.ENV_OTLP, names.ENV_OTLP_CONTENT):
            monkeypatch.delenv(var, raising=False)
        yield r


def spans_for(receiver: Receiver, count: int) -> list[dict]:
    assert wait_until(lambda: len(receiver.chat_spans()) >= count, timeout=30), receiver.chat_spans()
    got = receiver.chat_spans()
    assert len(got) == count, got
    return got


def by_attempt(spans: list[dict]) -> dict[tuple[str, int], dict]:
    out = {(s["attributes"][names.TURN_ID], s["attributes"][names.ATTEMPT]): s for s in spans}
    assert len(out) == len(spans)  # each attempt exported once
    return out


def line_texts(db: Path) -> list[str]:
    return list(Store(open_db(db, create=False)).export_lines())


def ns(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) * 1_000_000


def record_in_process(api, db: Path, **options) -> list[dict]:
    rec = Recorder(db, otlp=True, **options)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
    script_loop(api)
    with rec.conversation("conv_otlp1", user_id="user_7", tags={"env": "ci"}):
        tool_loop(client)
    assert rec.close()
    return exported(db)


def test_a_recorded_tool_loop_arrives_as_genai_spans_one_per_attempt(api, db_path, receiver):
    """Recorder(otlp=True): the two turns and the retry arrive as three CLIENT spans named
    `chat MODEL`, timed as recorded, with the convention's request, response, usage (input
    counting the cache reads and writes), conversation, user, server and error attributes and
    replayer's ids, cost and tags; no content was asked, so none is there."""
    lines = record_in_process(api, db_path)
    assert [(line["index"], line["attempt"], line["status"]) for line in lines] == [(0, 0, 200), (1, 0, 429),
                                                                                 (1, 1, 200)]
    spans = by_attempt(spans_for(receiver, 3))
    port = int(api.url.rsplit(":", 1)[1])
    for line in lines:
        span = spans[(line["turn_id"], line["attempt"])]
        a = span["attributes"]
        assert span["name"] == f"chat {MODEL}" and span["kind"] == SPAN_KIND_CLIENT and span["scope"] == "replayer"
        assert span["start"] == ns(line["started_at"])
        assert span["end"] - span["start"] == round(line["latency_ms"] * 1_000_000)
        assert span["parent_span_id"] == ""  # no trace of the caller's in force
        assert span["resource"]["service.name"] == "replayer"
        assert a[names.OPERATION_NAME] == "chat" and a[names.PROVIDER_NAME] == "anthropic"
        assert a[names.REQUEST_MODEL] == MODEL and a[names.REQUEST_MAX_TOKENS] == 256
        assert a[names.REQUEST_STOP_SEQUENCES] == ["STOP"]
        assert a[names.CONVERSATION_ID] == "conv_otlp1" == line["conversation_id"]
        assert a[names.USER_ID] == "user_7"
        assert (a[names.SERVER_ADDRESS], a[names.SERVER_PORT]) == ("127.0.0.1", port)
        assert a[names.TURN_INDEX] == line["index"] and a[names.STATUS] == line["status"]
        assert a[names.STARTED_AT] == line["started_at"] and a[names.LATENCY_MS] == line["latency_ms"]
        assert a[names.REQUEST_ID] == line["request_id"] and a[names.STREAM] is False
        assert a[names.ENDPOINT] == line["endpoint"] and a[names.ABANDONED] is False
        assert json.loads(a[names.TAGS]) == {"env": "ci"}
        assert not any(key in a for key in CONTENT_KEYS)
    first, limited, last = (spans[(line["turn_id"], line["attempt"])]["attributes"] for line in lines)
    assert first[names.RESPONSE_ID] == "msg_otlp0001" and first[names.RESPONSE_MODEL] == MODEL
    assert first[names.RESPONSE_FINISH_REASONS] == ["tool_use"]
    assert first[names.USAGE_INPUT_TOKENS] == 20 + 50 + 10  # the convention's input: cache reads and writes in
    assert first[names.USAGE_CACHE_READ_INPUT_TOKENS] == 50 and first[names.USAGE_CACHE_CREATION_INPUT_TOKENS] == 10
    assert first[names.USAGE_OUTPUT_TOKENS] == 9
    assert first[names.COST_USD] == lines[0]["cost_usd"] and first[names.COST_USD] > 0
    assert limited[names.ERROR_TYPE] == "rate_limit_error" and names.RESPONSE_ID not in limited
    assert spans[(lines[1]["turn_id"], 0)]["status"] == STATUS_ERROR
    assert names.ERROR_TYPE not in last and last[names.RESPONSE_FINISH_REASONS] == ["end_turn"]
    assert last[names.USAGE_INPUT_TOKENS] == 32 and names.USAGE_CACHE_READ_INPUT_TOKENS not in last


@pytest.mark.writer_process  # the writer processes are what it counts
def test_a_recorder_closed_again_and_again_holds_no_ended_writer_processes(db_path, receiver):
    """Each close() of an exporting recorder ends its writer process, which sends its last spans
    as it ends and is kept to be waited for at exit (end_export); one that has ended is let go when
    the next is kept. It was held until exit: a recorder closed after every job held one process
    object (and an unreaped process) a close."""
    rec = Recorder(db_path, otlp=True)
    for i in range(4):
        ask = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": f"job {i}"}]}
        rec.record(ask,
                   {"id": f"msg_{i}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": 3, "output_tokens": 1}})  # fmt: skip
        assert rec.close()
        last = rec._writer._exporting[-1]  # no public view of the writer processes: the test looks inside
        assert wait_until(lambda: last.poll() is not None, timeout=30)  # noqa: B023 (called here, in this turn)
    assert len(rec._writer._exporting) == 1
    spans_for(receiver, 4)


def test_content_when_asked_in_the_conventions_schema_and_replayers_exact_text(api, db_path, receiver):
    """otlp_content=True: system instructions, input and output messages and tool definitions in
    the convention's message/part schema (the tool call and its result as tool_call and
    tool_call_response parts), and the request, response, headers, usage and error exactly as
    `replayer export` writes them (the very text, not a re-dump)."""
    lines = record_in_process(api, db_path, otlp_content=True)
    spans = by_attempt(spans_for(receiver, 3))
    texts = line_texts(db_path)
    for line, text in zip(lines, texts, strict=True):
        a = spans[(line["turn_id"], line["attempt"])]["attributes"]
        _, exact = split(text)
        assert json.loads(text) == line
        assert a[names.REQUEST] == exact["request"] and json.loads(a[names.REQUEST]) == line["request"]
        assert a[names.REQUEST_HEADERS] == exact["request_headers"]
        for name, key in ((names.RESPONSE, "response"), (names.USAGE, "usage"), (names.ERROR, "error")):
            assert a.get(name) == (exact[key] if line[key] is not None else None)
        assert json.loads(a[names.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": SYSTEM}]
        assert json.loads(a[names.TOOL_DEFINITIONS]) == [
            {"type": "function", "name": "read_file", "description": "Read a file",
             "parameters": TOOLS[0]["input_schema"]}]
    first, limited, last = (spans[(line["turn_id"], line["attempt"])]["attributes"] for line in lines)
    assert json.loads(first[names.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What does README.md say?"}]}]
    call = {"type": "tool_call", "id": "toolu_otlp1", "name": "read_file", "arguments": {"path": "README.md"}}
    assert json.loads(first[names.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Reading it."}, call], "finish_reason": "tool_use"}]
    assert json.loads(last[names.INPUT_MESSAGES])[1:] == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Reading it."}, call]},
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "toolu_otlp1", "response": "hello"}]}]
    assert json.loads(limited[names.ERROR])["type"] == "rate_limit_error" and names.OUTPUT_MESSAGES not in limited


def test_the_conventions_capture_variable_turns_content_on(api, db_path, receiver, monkeypatch):
    monkeypatch.setenv(names.ENV_CAPTURE_CONTENT, "true")
    with Recorder(db_path, otlp=True) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    [span] = spans_for(receiver, 1)
    assert json.loads(span["attributes"][names.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}]


def test_redact_is_applied_before_anything_leaves(api, db_path, receiver):
    """The recorder's redact hook runs first: the secret is in no attribute of any span, its
    replacement is; a record the hook drops is neither stored nor exported."""
    def redact(record: dict) -> dict | None:
        text = json.dumps(record["request"])
        if "DROP ME" in text:
            return None
        record["request"] = json.loads(text.replace("SECRET-123", "[redacted]"))
        return record

    rec = Recorder(db_path, otlp=True, otlp_content=True, redact=redact)
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
    script_loop(api)
    tool_loop(client, "My key is SECRET-123: what does README.md say?")
    client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "DROP ME"}])
    assert rec.close()
    assert len(exported(db_path)) == 3
    spans = spans_for(receiver, 3)
    for span in spans:
        assert "SECRET-123" not in json.dumps(span["attributes"])
    assert all("[redacted]" in s["attributes"][names.INPUT_MESSAGES] for s in spans)


def test_spans_join_the_callers_current_trace(api, db_path, receiver):
    """A call made inside the application's own OpenTelemetry span becomes its child (same trace,
    that span as parent), and its trace id is the record's; a call outside has no parent."""
    from opentelemetry.sdk.trace import TracerProvider

    app_tracer = TracerProvider().get_tracer("the-agent")  # the application's own, not the global one
    with Recorder(db_path, otlp=True) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        with app_tracer.start_as_current_span("agent step") as step:
            client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "inside"}])
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "outside"}])
    inside, outside = spans_for(receiver, 2)
    ctx = step.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["parent_span_id"] == format(ctx.span_id, "016x")
    assert inside["attributes"][names.TRACE_ID] == format(ctx.trace_id, "032x")
    assert exported(db_path)[0]["trace_id"] == format(ctx.trace_id, "032x")
    assert outside["parent_span_id"] == "" and outside["trace_id"] != inside["trace_id"]


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def test_record_otlp_exports_a_python_agents_calls_once_with_content(api, tmp_path, receiver):
    """`replayer record --otlp --otlp-content -- python agent.py`: the child's own recorder (boot
    hook) exports; each call is recorded once and so exported once, with content, tagged with
    the run, its server the API the call went on to (not record's proxy on the loopback); the
    summary line stays the last on stderr."""
    agent = write(tmp_path / "agent.py", f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import anthropic
        from test_otlp_export import tool_loop
        tool_loop(anthropic.Anthropic(max_retries=2))
    """)
    script_loop(api)
    db = tmp_path / "rec.db"
    proc = subprocess.run([*CLI, "--db", str(db), "record", "--otlp", "--otlp-content", "--", sys.executable,
                           str(agent)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("replayer: recorded 2 calls"), proc.stderr
    lines = exported(db)
    spans = by_attempt(spans_for(receiver, 3))
    run = json.loads(spans[(lines[0]["turn_id"], 0)]["attributes"][names.TAGS])["run"]
    assert run in proc.stderr
    for line in lines:
        a = spans[(line["turn_id"], line["attempt"])]["attributes"]
        assert json.loads(a[names.REQUEST]) == line["request"] and names.INPUT_MESSAGES in a
        assert a[names.CONVERSATION_ID] == line["conversation_id"]
        assert (a[names.SERVER_ADDRESS], a[names.SERVER_PORT]) == ("127.0.0.1", int(api.url.rsplit(":", 1)[1]))


def test_record_otlp_exports_what_its_proxy_records(api, tmp_path, receiver):
    """A program that isn't a Python SDK client (plain HTTP here, as any language's would be) is
    recorded by the proxy `record` puts on ANTHROPIC_BASE_URL: that record is exported too."""
    agent = write(tmp_path / "agent.py", f"""
        import json, os, urllib.request
        body = json.dumps({{"model": "{MODEL}", "max_tokens": 8,
                            "messages": [{{"role": "user", "content": "plain http"}}]}}).encode()
        req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=body, headers={{
            "content-type": "application/json", "x-api-key": "{FAKE_KEY}", "anthropic-version": "2023-06-01"}})
        print(json.load(urllib.request.urlopen(req))["id"])
    """)
    db = tmp_path / "rec.db"
    proc = subprocess.run([*CLI, "--db", str(db), "record", "--otlp", "--otlp-content", "--", sys.executable,
                           str(agent)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "ANTHROPIC_BASE_URL": api.url})
    assert proc.returncode == 0, proc.stderr
    [line] = exported(db)
    [span] = spans_for(receiver, 1)
    a = span["attributes"]
    assert a[names.TURN_ID] == line["turn_id"] and a[names.RESPONSE_ID] == proc.stdout.strip()
    assert json.loads(a[names.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "plain http"}]}]
    assert (a[names.SERVER_ADDRESS], a[names.SERVER_PORT]) == ("127.0.0.1", int(api.url.rsplit(":", 1)[1]))


def test_proxy_otlp_exports_with_the_clients_traceparent_as_parent(api, tmp_path, receiver):
    """`replayer proxy --otlp`: a call through it arrives as a span whose parent is the span the
    client's `traceparent` header names, with the upstream as the server; no content unasked."""
    db = tmp_path / "proxy.db"
    proc = subprocess.Popen([*CLI, "proxy", "--otlp", "--port", "0", "--db", str(db), "--upstream", api.url],
                            stderr=subprocess.PIPE, text=True)
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        url = proc.stderr.readline().split(" ")[4]
        client = anthropic.Anthropic(base_url=url, api_key=FAKE_KEY,
                                     default_headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "via proxy"}])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert "OTLP" not in proc.stderr.read()
    [span] = spans_for(receiver, 1)
    [line] = exported(db)
    assert (span["trace_id"], span["parent_span_id"]) == (trace_id, span_id)
    a = span["attributes"]
    assert a[names.TURN_ID] == line["turn_id"] and a[names.TRACE_ID] == trace_id
    assert (a[names.SERVER_ADDRESS], a[names.SERVER_PORT]) == ("127.0.0.1", int(api.url.rsplit(":", 1)[1]))
    assert not any(key in a for key in CONTENT_KEYS)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_collector_breaks_nothing_and_is_told_once(api, tmp_path):
    """Nothing listens where the spans go: the agent's 30 calls all return and are all stored;
    the loss is told in one line on stderr (with the count), not once per batch or span."""
    agent = write(tmp_path / "agent.py", f"""
        import anthropic
        from replayer import Recorder
        rec = Recorder({str(tmp_path / "dead.db")!r}, otlp=True, otlp_content=True)
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}))
        for i in range(30):
            client.messages.create(model="{MODEL}", max_tokens=8, messages=[{{"role": "user", "content": str(i)}}])
        print("done", flush=True)
    """)
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
           "OTEL_BSP_SCHEDULE_DELAY": "20", "REPLAYER_OTLP_EXIT_TIMEOUT": "2"}
    proc = subprocess.run([sys.executable, str(agent)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout == "done\n", proc.stderr
    assert len(exported(tmp_path / "dead.db")) == 30
    told = [line for line in proc.stderr.splitlines() if "OTLP" in line]
    assert told == ["replayer: 30 OTLP span(s) were not exported to " + env["OTEL_EXPORTER_OTLP_ENDPOINT"]
                    + "/v1/traces (connection refused)"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_record_tells_the_spans_a_dead_collector_did_not_get_and_why_before_its_summary(api, tmp_path):
    """`record --otlp` with nothing listening where the spans go: what did not go out is told
    with the reason, on record's stderr as it is when record has returned (the writer processes
    that send the spans end first), before record's summary line, for the calls the program's
    recorder stored (an SDK call) and for those record's proxy stored (a plain HTTP call)."""
    agent = write(tmp_path / "agent.py", f"""
        import json, os, urllib.request
        import anthropic
        anthropic.Anthropic(max_retries=0).messages.create(
            model="{MODEL}", max_tokens=8, messages=[{{"role": "user", "content": "sdk"}}])
        body = json.dumps({{"model": "{MODEL}", "max_tokens": 8,
                            "messages": [{{"role": "user", "content": "plain http"}}]}}).encode()
        req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=body, headers={{
            "content-type": "application/json", "x-api-key": "{FAKE_KEY}", "anthropic-version": "2023-06-01"}})
        urllib.request.urlopen(req).read()
    """)
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {**os.environ, "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY,
           "OTEL_EXPORTER_OTLP_ENDPOINT": dead, "OTEL_BSP_SCHEDULE_DELAY": "20", "REPLAYER_OTLP_EXIT_TIMEOUT": "2"}
    with open(tmp_path / "stderr", "w+") as err:
        proc = subprocess.Popen([*CLI, "--db", str(tmp_path / "rec.db"), "record", "--otlp", "--", sys.executable,
                                 str(agent)], stderr=err, env=env)
        assert proc.wait(120) == 0
        err.seek(0)
        lines = err.read().splitlines()  # as the user sees it when the shell prompt comes back
    assert lines and lines[-1].startswith("replayer: recorded 2 calls"), lines
    told = [line for line in lines if "OTLP" in line]
    assert told == [f"replayer: 1 OTLP span(s) were not exported to {dead}/v1/traces (connection refused)"] * 2, lines


@pytest.mark.parametrize("sdk_timeout", ["1", None])
def test_a_collector_that_answers_too_late_is_told_as_may_not_have_been_exported(api, tmp_path, sdk_timeout):
    """A collector that takes every span and answers only after 20 s: the spans are not told as
    lost ("were not exported") but as what is known, that no answer came in time: whether the
    SDK's exporter gave up first (its timeout, here 1 s) or the exit's time ran out first."""
    agent = write(tmp_path / "agent.py", f"""
        import anthropic
        from replayer import Recorder
        rec = Recorder({str(tmp_path / "slow.db")!r}, otlp=True)
        client = rec.wrap(anthropic.Anthropic(base_url={api.url!r}, api_key={FAKE_KEY!r}))
        for i in range(3):
            client.messages.create(model="{MODEL}", max_tokens=8, messages=[{{"role": "user", "content": str(i)}}])
    """)
    with Receiver(delay=20.0) as late:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": late.url, "OTEL_BSP_SCHEDULE_DELAY": "20",
               "REPLAYER_OTLP_EXIT_TIMEOUT": "2"}
        env.pop("OTEL_EXPORTER_OTLP_TIMEOUT", None)
        env.pop("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", None)
        if sdk_timeout:
            env["OTEL_EXPORTER_OTLP_TIMEOUT"] = sdk_timeout
        proc = subprocess.run([sys.executable, str(agent)], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        late._release.set()  # the collector answers now: it had every span
        assert wait_until(lambda: len(late.chat_spans()) == 3, timeout=30)
    told = [line for line in proc.stderr.splitlines() if "OTLP" in line]
    # which time runs out first depends on when the export started: both are told as what they are
    within = ("within 1 s", "within 2 s at exit") if sdk_timeout else ("within 2 s at exit",)
    assert told and told[-1] in [f"replayer: 3 OTLP span(s) may not have been exported to {late.url}/v1/traces "
                                 f"(no answer {w})" for w in within], proc.stderr
    assert not any("were not exported" in line or "could not be" in line for line in told), proc.stderr


@pytest.mark.parametrize("collector", ["answers late", "refuses connections", "refuses gRPC connections"])
def test_a_failed_export_is_counted_by_what_is_known_of_it(tmp_path, monkeypatch, collector):
    """One export request through the SDK's own exporter: a collector that takes the spans and
    doesn't answer within the SDK's timeout may have them (counted as such, with that reason);
    a refused connection (retried by the SDK while its timeout allows) surely lost them, over
    HTTP or gRPC (whose exporter says so only in its log's details text: a refused gRPC
    connection was told as "may not have been exported ... (no answer within 5 s at exit)")."""
    from opentelemetry.sdk.trace import TracerProvider

    from replayer.otlp.exporter import Exporter, _Counting, quiet_sdk_logs, span_exporter

    quiet_sdk_logs()  # as the export does: the SDK's log records say what went wrong

    with Receiver(delay=20.0) as late:
        url = late.url if collector == "answers late" else f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1" if collector == "answers late" else "3")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc" if "gRPC" in collector else "http/protobuf")
        with TracerProvider().get_tracer("test").start_as_current_span("chat") as span:
            pass
        owner = Exporter(str(tmp_path / "none.db"), content=False)
        _Counting(span_exporter(), owner)._send([span])
        trying = owner.trying
    expected = ("no answer within 1 s", False) if collector == "answers late" else ("connection refused", True)
    assert owner.why == {expected: 1}
    assert trying == expected  # what close() tells of spans still being retried at exit
    owner.close(0)


@pytest.mark.parametrize("full", ["by count", "by size"])
def test_a_slow_collector_drops_what_does_not_fit_counts_it_and_says_so_once(api, db_path, monkeypatch, caplog,
                                                                             full):
    """A collector that takes seconds to answer: the agent's calls all return and are stored, the
    spans waiting for the SDK fill their room (the SDK's small queue; or, with content, the bytes
    they may hold), the spans that didn't fit are counted as dropped, and the writer's channel
    says so once; what fitted arrives."""
    from replayer.otlp import exporter as otlp_exporter

    with Receiver(delay=1.0) as slow:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", slow.url)
        monkeypatch.setenv("REPLAYER_WRITER", "thread")  # the exporter is in this process: its counters are seen
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
        if full == "by count":
            monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
        else:
            monkeypatch.setattr(otlp_exporter, "WAITING_BYTES", 3000)  # two spans of ~1 KB of text with content
        caplog.set_level(logging.WARNING, logger="replayer")
        rec = Recorder(db_path, otlp=True, otlp_content=full == "by size")
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        for i in range(20):
            client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": str(i)}])
            rec.flush()  # each record committed (and handed over) on its own
        assert rec.close()
        assert len(exported(db_path)) == 20
        exporter = rec._writer.exporter
        assert wait_until(lambda: exporter.dropped > 0 and slow.chat_spans(), timeout=30)
        told = [r.getMessage() for r in caplog.records if "could not be exported" in r.getMessage()]
        assert len(told) == 1 and "span queue is full" in told[0], told
        assert wait_until(lambda: len(slow.chat_spans()) + exporter.dropped == 20, timeout=30)
        exporter.close(5)


PROBE = """import atexit, sys
def _probe():
    got = [m for m in sys.modules if m.startswith(("opentelemetry", "replayer.otlp.exporter"))]
    sdk = [m for m in got if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "replayer.otlp.exporter"))]
    print("OTEL", "sdk" if sdk else "api" if got else "none", file=sys.stderr)
atexit.register(_probe)
"""


def probed(argv: list[str], env: dict[str, str]) -> list[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("OTEL")]


def test_import_replayer_and_commands_without_otlp_never_import_opentelemetry(api, tmp_path):
    """`import replayer` and a Recorder load no OpenTelemetry at all; the commands that don't
    export (list, export, stats, record without --otlp, in the command and in its Python child)
    never load its SDK or exporter. (The anthropic SDK imports the OpenTelemetry API itself, for
    its own tracing: a process that makes calls has that much of it, with or without replayer.)"""
    db = tmp_path / "plain.db"
    env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": FAKE_KEY}
    bare = f"{PROBE}\nimport replayer\nfrom replayer import Recorder\nRecorder({str(db)!r}).close()\n"
    assert probed([sys.executable, "-c", bare], env) == ["OTEL none"]
    call = f"""{PROBE}
import anthropic
from replayer import Recorder
with Recorder({str(db)!r}) as rec:
    rec.wrap(anthropic.Anthropic()).messages.create(
        model="{MODEL}", max_tokens=8, messages=[{{"role": "user", "content": "hi"}}])
"""
    assert probed([sys.executable, "-c", call], env) == ["OTEL api"]
    for args in (["list"], ["export"], ["stats"]):
        command = f"{PROBE}\nsys.argv = ['replayer', '--db', {str(db)!r}, *{args!r}]\n" \
                  "from replayer.cli import main\nmain()"
        assert probed([sys.executable, "-c", command], env) == ["OTEL none"], args
    child = f"{PROBE}\nimport anthropic\nanthropic.Anthropic().messages.create(model='{MODEL}', max_tokens=8, " \
            "messages=[{'role': 'user', 'content': 'hi'}])"
    record = f"{PROBE}\nsys.argv = ['replayer', '--db', {str(db)!r}, 'record', '--', sys.executable, '-c', {child!r}]" \
             "\nfrom replayer.cli import main\nmain()"
    assert sorted(probed([sys.executable, "-c", record], env)) == ["OTEL api", "OTEL none"]  # the child, the command


def test_missing_opentelemetry_is_one_line_naming_the_extra(db_path, monkeypatch):
    """Without the OpenTelemetry packages: `record --otlp` and `proxy --otlp` exit 2 with one
    line naming `pip install 'replayer[otlp]'`; Recorder(otlp=True) raises with the same words.
    --otlp-content alone is refused."""
    from importlib import metadata

    from click.testing import CliRunner

    from replayer.cli import cli as main

    real = metadata.version

    def version(name: str) -> str:
        if name.startswith("opentelemetry"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    for args in (["record", "--otlp", "--", "true"], ["proxy", "--otlp", "--port", "0"]):
        result = CliRunner().invoke(main, ["--db", str(db_path), *args])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            "replayer: OTLP export needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http: "
            "pip install 'replayer[otlp]'"]
    with pytest.raises(RuntimeError, match=r"pip install 'replayer\[otlp\]'"):
        Recorder(db_path, otlp=True)
    result = CliRunner().invoke(main, ["--db", str(db_path), "record", "--otlp-content", "--", "true"])
    assert result.exit_code == 2 and "--otlp-content needs --otlp" in result.output


def test_parts_and_tools_beyond_text_in_the_conventions_schema():
    """Thinking is a reasoning part, a server tool's call and result are tool_call and
    tool_call_response, an image a blob or uri part, anything else a generic part keeping its
    type; a server tool's definition is kept as given. error.type falls back to the status."""
    assert part({"type": "thinking", "thinking": "hmm", "signature": "x"}) == {"type": "reasoning", "content": "hmm"}
    assert part({"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}}) == {
        "type": "tool_call", "id": "s1", "name": "web_search", "arguments": {"query": "q"}}
    assert part({"type": "web_search_tool_result", "tool_use_id": "s1", "content": [{"url": "u"}]}) == {
        "type": "tool_call_response", "id": "s1", "response": [{"url": "u"}]}
    assert part({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}) == {
        "type": "blob", "modality": "image", "mime_type": "image/png", "content": "AAA"}
    assert part({"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}) == {
        "type": "uri", "modality": "image", "uri": "https://x/y.png"}
    future = {"type": "hologram", "frames": 3}
    assert part(future) == future
    assert tool({"type": "web_search_20250305", "name": "web_search", "max_uses": 2}) == {
        "type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    a = attributes({"request": {"model": "m"}, "status": 500, "error": {"type": None, "message": "boom"}},
                   content=False)
    assert a[names.ERROR_TYPE] == "500" and a[names.REQUEST_MODEL] == "m"
    a = attributes({"request": None, "model": "m2", "error": {"type": "connection_error", "message": "x"}},
                   content=True)
    assert a[names.ERROR_TYPE] == "connection_error" and a[names.REQUEST] == "null"


def test_a_lone_surrogate_does_not_cost_the_batch(api, db_path, receiver):
    """A request whose JSON holds a lone surrogate escape (valid JSON, not valid UTF-8) still
    gives its span, the surrogate written as its escape, and the spans beside it go out too."""
    with Recorder(db_path, otlp=True, otlp_content=True) as rec:
        rec.record('{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"half \\ud800 pair"}]}',
                   {"id": "msg_s1", "type": "message", "role": "assistant", "model": "m",
                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 3, "output_tokens": 1}}, latency_ms=5.0)
        rec.record({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "plain"}]}, latency_ms=1.0)
    spans = spans_for(receiver, 2)
    first = next(s for s in spans if "half" in s["attributes"][names.INPUT_MESSAGES])
    assert "half \\ud800 pair" in first["attributes"][names.INPUT_MESSAGES]
    assert "\\ud800" in first["attributes"][names.REQUEST]


def varied_recording(api, db: Path) -> None:
    """Attempts of every shape a span is made of: a tool loop (system, tools, stop sequences, a
    429 retried), a stream with an event this version doesn't know, a 400, a conversation growing
    by a turn, a long context at once, a lone surrogate, a body that isn't an object, a failed
    connection, a float parameter and an integer beyond 64 bits."""
    from replayer.fakeapi import message_events

    streamed = message_events(message(3, [{"type": "text", "text": "streamed ünïcode ✓"}], "end_turn"))
    streamed.insert(2, {"event": "mystery", "data": {"type": "mystery", "clue": 7}})
    script_loop(api)
    api.enqueue(Reply(sse=streamed),
                Reply(status=400, body={"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}))
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(71)]
    with Recorder(db, otlp=False) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
        with rec.conversation("conv_varied", user_id="user_3", tags={"run": "r1"}, trace_id="trace-9"):
            tool_loop(client)
        with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream"}]) as s:
            s.get_final_message()
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "refuse me"}])
        reply = {"id": "msg_v1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
                 "content": [{"type": "text", "text": "ok"}], "usage": {"input_tokens": 3, "output_tokens": 1}}
        for turns in (1, 3, 5):  # one conversation, a turn longer each time
            rec.record({"model": "m", "max_tokens": 5, "temperature": 0.3, "top_k": 12345678901234567890123,
                        "messages": history[:turns]}, reply, latency_ms=2.0, conversation_id="conv_grow")
        rec.record({"model": "m", "max_tokens": 5, "messages": history}, reply, latency_ms=3.0)
        rec.record('{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"half \\ud800 pair"}]}',
                   reply, latency_ms=1.0)
        rec.record('["not", "an", "object"]', reply, latency_ms=1.0)
        rec.record({"model": "m", "max_tokens": 5, "messages": history[:1]},
                   error={"type": "connection_error", "message": "refused"}, latency_ms=4.0)


def test_span_values_read_from_the_store_are_the_export_lines(api, db_path):
    """The exporter reads each attempt's values from the database (otlp/lines.py) instead of
    making its export line and parsing it back: for every attempt, one by one as the exporter
    gets them and all at once, with content and without, the attributes are those the export
    line itself gives (every value's exact text included)."""
    from replayer.otlp.lines import Reader

    varied_recording(api, db_path)
    store = Store(open_db(db_path, create=False))
    expected = {}
    for text in store.export_lines():
        line, texts = split(text)
        expected[(line["turn_id"], line["attempt"])] = line, texts
    assert len(expected) == 12
    tags = dict(store.db.execute("SELECT t.id, tags_json FROM turns t JOIN conversations c ON c.id = conversation_id"))
    ids = [row[0] for row in store.db.execute("SELECT id FROM attempts ORDER BY id")]
    for content in (False, True):
        for batches in ([[i] for i in ids], [ids]):
            reader = Reader(open_db(db_path, create=False))
            seen = 0
            for batch in batches:
                for row in reader.rows(batch):
                    seen += 1
                    line, texts, messages = reader.line(row, content=content)
                    want_line, want_texts = expected[(row["turn_id"], row["attempt"])]
                    turn_tags = json.loads(row["turn_tags"]) if row["turn_tags"] else None
                    assert turn_tags == (json.loads(tags[row["turn_id"]]) if tags[row["turn_id"]] else None)
                    got = attributes(line, content=content, texts=texts, tags=turn_tags, messages=messages)
                    want = attributes(want_line, content=content, texts=want_texts, tags=turn_tags)
                    assert got == want, (row["turn_id"], row["attempt"])
            assert seen == len(ids)


@pytest.mark.parametrize("setting", [None, "10"])
def test_the_export_runs_at_the_priority_asked(api, db_path, receiver, monkeypatch, setting):
    """The exporter's thread and the SDK's batch thread (started from it) run at their process's
    priority, or niced on Linux as REPLAYER_OTLP_NICE asks; the agent's thread is left as it was."""
    import threading

    monkeypatch.setenv("REPLAYER_WRITER", "thread")  # the exporter is in this process: its threads are seen
    if setting is None:
        monkeypatch.delenv("REPLAYER_OTLP_NICE", raising=False)
    else:
        monkeypatch.setenv("REPLAYER_OTLP_NICE", setting)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    before = set(threading.enumerate())  # an earlier test's SDK threads may still be ending
    with Recorder(db_path, otlp=True) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        spans_for(receiver, 1)
        worker = rec._writer.exporter._thread
        batch = [t for t in set(threading.enumerate()) - before if t.name.startswith("OtelBatchSpan")]
        want = min(19, mine + 10) if setting and sys.platform.startswith("linux") else mine
        assert batch and os.getpriority(os.PRIO_PROCESS, worker.native_id) == want
        assert all(os.getpriority(os.PRIO_PROCESS, t.native_id) == want for t in batch)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_grpc_protocol_sends_over_grpc_or_says_what_it_needs(api, db_path, monkeypatch):
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the spans go over OTLP/gRPC through the official gRPC
    exporter (an optional extra) to a gRPC receiver; without that package, Recorder(otlp=True)
    and `record --otlp` say in one line what to install (the spans would otherwise go, unasked,
    over HTTP to a gRPC port)."""
    from importlib import metadata

    from click.testing import CliRunner
    from otlp_receiver import GrpcReceiver

    from replayer.cli import cli as main

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    with GrpcReceiver() as grpc_receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_receiver.url)
        with Recorder(db_path, otlp=True, otlp_content=True) as rec:
            client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
            client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "by grpc"}])
        assert wait_until(lambda: grpc_receiver.spans, timeout=30)
        [span] = grpc_receiver.spans
        assert span["name"] == f"chat {MODEL}" and "by grpc" in span["attributes"][names.INPUT_MESSAGES]
        assert span["attributes"][names.REQUEST] == split(line_texts(db_path)[0])[1]["request"]

    real = metadata.version

    def version(name: str) -> str:
        if name == "opentelemetry-exporter-otlp-proto-grpc":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    told = ("OTLP export over grpc (OTEL_EXPORTER_OTLP_PROTOCOL) needs opentelemetry-exporter-otlp-proto-grpc: "
            "pip install 'replayer[otlp-grpc]'")
    with pytest.raises(RuntimeError, match=r"pip install 'replayer\[otlp-grpc\]'"):
        Recorder(db_path, otlp=True)
    result = CliRunner().invoke(main, ["--db", str(db_path), "record", "--otlp", "--", "true"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [f"replayer: {told}"], result.output


def test_http_json_is_said_once_and_sent_as_protobuf(api, db_path, receiver, monkeypatch, caplog):
    """The Python SDK sends no OTLP JSON: asked for http/json, the spans still arrive (as
    http/protobuf) and the writer's channel says so once."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    monkeypatch.setenv("REPLAYER_WRITER", "thread")  # the exporter is in this process: its log is seen
    caplog.set_level(logging.WARNING, logger="replayer")
    with Recorder(db_path, otlp=True) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        for text in ("one", "two"):
            client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": text}])
            rec.flush()
    spans_for(receiver, 2)
    told = [r.getMessage() for r in caplog.records if "http/json" in r.getMessage()]
    assert told == ["replayer: the OTLP protocol 'http/json' is not one the OpenTelemetry SDK for Python sends; "
                    "spans go as http/protobuf"]


@pytest.mark.parametrize("name", ["OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"])
def test_an_attribute_length_limit_with_content_is_said_once_at_the_start(tmp_path, monkeypatch, caplog, name):
    """With content and an attribute length limit, the SDK cuts every long text: the spans then
    can't be imported whole, which nobody said. It is said once, when the export starts; not
    without content (nothing of replayer's to cut), nor without a limit."""
    from replayer.otlp import exporter
    from replayer.otlp.exporter import Exporter

    for other in exporter.LENGTH_LIMITS:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setattr(exporter, "_said_cut", False)
    caplog.set_level(logging.WARNING, logger="replayer")
    for content in (False, True):  # (a limit without content: nothing said)
        Exporter(str(tmp_path / "none.db"), content=content).close(0)
    assert not [r for r in caplog.records if "LENGTH_LIMIT" in r.getMessage()]
    monkeypatch.setenv(name, "300")
    Exporter(str(tmp_path / "none.db"), content=False).close(0)
    for _ in range(2):
        Exporter(str(tmp_path / "none.db"), content=True).close(0)
    said = [r.getMessage() for r in caplog.records if "LENGTH_LIMIT" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"replayer: {name}=300: the SDK cuts span texts past 300 characters")
    assert "can't bring those calls back whole" in said[0]
