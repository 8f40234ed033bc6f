"""`replayer import otlp`: spans made by the OpenTelemetry SDK and encoded by its own OTLP encoder
(`opentelemetry.exporter.otlp.proto.common`), written as JSON lines the way a Collector's file
exporter writes them (hex ids) and the way protobuf's json_format writes them (base64 ids), read
back through the CLI: replayer's own spans round-trip to the same export lines, other
instrumentations' spans (the GenAI convention's content attributes, OpenLLMetry's) are rebuilt and
marked reconstructed; gzip, stdin, idempotence, filters, malformed lines and bad input."""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import subprocess
import sys

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from test_fork import loop_api, recorded  # noqa: F401 (fixtures)

from replayer import Recorder
from replayer.cli import cli
from replayer.fakeapi import Reply, message_events
from replayer.otlp import names as n

MODEL = "claude-sonnet-4-5"
T0 = 1_796_300_000_000_000_000  # ns: a fixed start, so --since has something to cut


# -- making spans the way the SDK does ---------------------------------------------------------


def sdk_spans(specs):
    """Finished SDK spans of (attributes, start ns, end ns[, error]) specs, one trace."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("some.instrumentation")
    with tracer.start_as_current_span("agent run"):
        for attrs, start, end, *error in specs:
            span = tracer.start_span(f"chat {attrs.get(n.REQUEST_MODEL, '')}", kind=SpanKind.CLIENT, start_time=start)
            span.set_attributes(attrs)
            if error:
                span.set_status(Status(StatusCode.ERROR, error[0]))
            span.end(end_time=end)
    provider.shutdown()
    return exporter.get_finished_spans()


def json_format_line(spans) -> str:
    """One ExportTraceServiceRequest as protobuf's json_format writes it (ids base64)."""
    return json_format.MessageToJson(encode_spans(spans), indent=None)


def collector_line(spans) -> str:
    """The same request as a Collector's file exporter writes it: ids hex, enums as numbers."""
    doc = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64decode(s[key]).hex()
    return json.dumps(doc, separators=(",", ":"))


def run(db, *args, stdin=None):
    return CliRunner().invoke(cli, ["--db", str(db), *map(str, args)], input=stdin)


def imported(db, path, *args):
    r = run(db, "import", "otlp", path, "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def export_text(db) -> list[str]:
    r = run(db, "export")
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines()


# -- replayer's own spans ----------------------------------------------------------------------


def record_session(api, db):
    """What a team's agent records: a tool loop in a named conversation (user, tags, trace id), a
    stream with an event type this version doesn't know, a call retried after a 529, a 400."""
    tool = {"type": "tool_use", "id": "toolu_a", "name": "read_file", "input": {"path": "a.py"}}
    loop = [
        Reply(body={"id": "msg_l1", "type": "message", "role": "assistant", "model": MODEL, "content": [tool],
                    "stop_reason": "tool_use", "stop_sequence": None,
                    "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 1024}}),
        Reply(body={"id": "msg_l2", "type": "message", "role": "assistant", "model": MODEL,
                    "content": [{"type": "text", "text": "Done: 0.1 + 0.2 = 0.30000000000000004"}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": 40, "output_tokens": 9}}),
    ]  # fmt: skip
    streamed = message_events(
        {"id": "msg_s1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
         "content": [{"type": "text", "text": "streamed ünïcode ✓"}], "usage": {"input_tokens": 5, "output_tokens": 4}}
    )  # fmt: skip
    streamed.insert(2, {"event": "mystery", "data": {"type": "mystery", "clue": 7}})
    api.enqueue(
        *loop,
        Reply(sse=streamed),
        Reply(status=529, body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
              headers={"retry-after-ms": "1"}),
        Reply(body={"id": "msg_r1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": "after a retry"}],
                    "usage": {"input_tokens": 3, "output_tokens": 2}}),
        Reply(status=400, body={"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}),
    )  # fmt: skip
    with Recorder(db) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
        ask = {"role": "user", "content": "Read a.py"}
        with rec.conversation("conv_loop", user_id="user_1", tags={"env": "ci"}, trace_id="trace-own-1"):
            first = client.messages.create(model=MODEL, max_tokens=256, messages=[ask], tools=TOOLS, system=SYSTEM)
            result = {"type": "tool_result", "tool_use_id": "toolu_a", "content": "print(1)"}
            client.messages.create(
                model=MODEL, max_tokens=256, tools=TOOLS, system=SYSTEM,
                messages=[ask, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
                          {"role": "user", "content": [result]}],
            )  # fmt: skip
        with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "stream"}]) as s:
            s.get_final_message()
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "retry me"}])
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "refuse me"}])


def own_spans(lines, db, limit=None):
    """replayer's spans of export lines, as its exporter makes them (otlp/spans.py, content on,
    each value's exact text, the turn's tags), by the SDK's tracer (`limit`: the attribute length
    limit OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT sets)."""
    from opentelemetry.sdk.trace import SpanLimits

    from replayer.otlp.exporter import split
    from replayer.otlp.spans import attributes, span

    conn = sqlite3.connect(db)
    tags = dict(conn.execute("SELECT t.id, c.tags_json FROM turns t JOIN conversations c ON c.id = t.conversation_id"))
    conn.close()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}),
                              span_limits=SpanLimits(max_span_attribute_length=limit))  # fmt: skip
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("replayer")
    for text in lines:
        line, texts = split(text)
        turn_tags = json.loads(tags[line["turn_id"]]) if tags.get(line["turn_id"]) else None
        span(tracer, line, attributes(line, content=True, texts=texts, tags=turn_tags), None)
    provider.shutdown()
    return exporter.get_finished_spans()


def test_own_spans_round_trip_to_the_same_export_lines(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    kinds = [(json.loads(x)["attempt"], json.loads(x)["status"], json.loads(x)["stream"]) for x in lines]
    assert kinds == [(0, 200, False), (0, 200, False), (0, 200, True), (0, 529, False), (1, 200, False),
                     (0, 400, False)]  # fmt: skip
    assert json.loads(lines[2])["unknown_events"], "the stream's unknown event is part of what must come back"
    assert json.loads(lines[3])["response_headers"] == {"retry-after-ms": "1"}  # the 529's: it must come back too
    spans = own_spans(lines, source)
    path = tmp_path / "collector.jsonl"
    # the Collector's hex form for some, protobuf's base64 form for the rest, one request per line
    path.write_text(collector_line(spans[:3]) + "\n" + json_format_line(spans[3:]) + "\n")

    laptop = tmp_path / "laptop.db"
    got = imported(laptop, path)
    assert (got["attempts"], got["reconstructed"], got["already_imported"]) == (6, 0, 0)
    assert export_text(laptop) == lines  # every key of every line, the text itself
    shown = [json.loads(run(db, "show", "conv_loop", "--json").stdout) for db in (source, laptop)]
    assert shown[0] == shown[1]
    r = run(laptop, "list", "--tag", "env=ci", "--json")  # the conversation's tags came too
    assert [c["conversation_id"] for c in json.loads(r.stdout)] == ["conv_loop"], r.output

    again = imported(laptop, path)
    assert (again["attempts"], again["already_imported"]) == (0, 6)
    # into the database that recorded them: all there already, as recorded (not "imported before")
    r = run(source, "import", "otlp", path, "--json")
    home = json.loads(r.stdout)
    assert (home["attempts"], home["already_imported"], home["matched_recorded"]) == (0, 0, 6), r.output
    assert "6 spans of calls already recorded, kept as recorded" in r.stderr and "imported before" not in r.stderr
    assert export_text(source) == lines


def test_an_own_span_whose_response_holds_a_count_that_is_no_number_is_a_malformed_span(api, tmp_path):
    """A token count in replayer's own span's response that is no number: the span's fault, said
    as a malformed span when it is read (the rest imported, exit 0), never one the database could
    not store; as `import export` says it of such a line. (The response's text is parsed once, and
    that document both checked and stored.)"""
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    many = json.loads(lines[1])
    many["response"]["usage"]["output_tokens"] = "many"
    path = tmp_path / "collector.jsonl"
    path.write_text(collector_line(own_spans([lines[0], json.dumps(many), *lines[2:]], source)) + "\n")
    r = run(tmp_path / "laptop.db", "import", "otlp", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert (got["attempts"], got["not_imported"]) == (len(lines) - 1, []), got
    assert [(m["line"], m["what"].split(" (")[0]) for m in got["malformed"]] == [(1, "a chat span that can't be read")]
    assert "invalid literal for int()" in got["malformed"][0]["what"], got
    assert "1 malformed span skipped" in r.stderr, r.stderr


def test_own_spans_cut_by_an_attribute_length_limit_come_back_rebuilt_never_as_exact_garbage(api, tmp_path):
    """Spans exported with OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=300: their replayer.request and
    .response are cut texts. They were imported as exact attempts holding the cut text as the
    request, no model, usage or response, a made-up "not JSON" error on a 200, $0 in stats, or
    counted as "malformed lines". They come back with their ids, rebuilt from their other
    attributes (model, usage, stop reason), marked reconstructed, and the closing line says why
    and what to do; streams and plain calls alike."""
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    path = tmp_path / "cut.jsonl"
    spans = own_spans(lines, source, limit=150)
    whole = own_spans(lines, source)
    cut = [x for x, a, b in zip(lines, spans, whole, strict=True)
           if any(v != b.attributes[k] for k, v in a.attributes.items() if k.startswith("replayer."))]  # fmt: skip
    assert 2 < len(cut) < len(lines)  # (most spans hold a longer text of replayer's, some do not)
    path.write_text(collector_line(spans) + "\n")
    laptop = tmp_path / "laptop.db"
    r = run(laptop, "import", "otlp", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert (got["attempts"], got["malformed"], got["cut_spans"]) == (6, [], len(cut)), r.output
    assert "malformed" not in r.stderr
    assert f"{len(cut)} spans with content cut short by an attribute length limit" in r.stderr
    assert "raise or unset OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT" in r.stderr
    before = {(d["turn_id"], d["attempt"]): d for d in map(json.loads, lines)}
    after = [json.loads(x) for x in export_text(laptop)]
    assert {(d["turn_id"], d["attempt"]) for d in after} == set(before)  # its ids kept
    for d, text in zip(after, export_text(laptop), strict=True):
        was = before[d["turn_id"], d["attempt"]]
        if not d.get("reconstructed"):
            assert text in lines and text not in cut  # a span whole: exact, as ever
            continue
        assert isinstance(d["request"], dict) and d["request"]["model"] == MODEL
        assert (d["reconstructed"], d["imported_from"]) == (True, "otlp")
        assert (d["status"], d["stream"], d["conversation_id"], d["user_id"]) == (
            was["status"], was["stream"], was["conversation_id"], was["user_id"])
        if was["status"] == 200:
            assert d["error"] is None and d["response"]["usage"] == was["response"]["usage"]
            assert d["response"]["model"] == MODEL and d["response"]["stop_reason"] == was["response"]["stop_reason"]
            assert d["cost_usd"] == was["cost_usd"] and d["cost_usd"] > 0
        else:
            assert d["error"]["type"] == was["error"]["type"]
    assert any(d["stream"] and d.get("reconstructed") for d in after)
    assert sum(d["cost_usd"] or 0 for d in after) == pytest.approx(sum(d["cost_usd"] or 0 for d in before.values()))
    again = imported(laptop, path)  # importing again: known by their ids
    assert (again["attempts"], again["already_imported"]) == (0, 6)


def test_a_slice_of_own_spans_keeps_its_indexes(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    second = [x for x in lines if json.loads(x)["conversation_id"] == "conv_loop"][1:]  # turn 1 without turn 0
    path = tmp_path / "slice.jsonl"
    path.write_text(collector_line(own_spans(second, source)) + "\n")
    laptop = tmp_path / "laptop.db"
    imported(laptop, path)
    assert export_text(laptop) == second
    path.write_text(collector_line(own_spans(lines, source)) + "\n")  # then the rest arrives
    imported(laptop, path)
    assert export_text(laptop) == lines


def test_a_slice_that_starts_between_two_attempts_of_a_turn_takes_the_earlier_later(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    retried = [i for i, x in enumerate(lines) if json.loads(x)["attempt"] == 1]
    assert len(retried) == 1
    later = lines[retried[0]:]  # the slice starts after the 529, before the retry that answered
    path = tmp_path / "slice.jsonl"
    path.write_text(collector_line(own_spans(later, source)) + "\n")
    laptop = tmp_path / "laptop.db"
    imported(laptop, path)
    assert export_text(laptop) == later
    path.write_text(collector_line(own_spans(lines, source)) + "\n")  # the file whole: the 529 joins its turn
    got = imported(laptop, path)
    assert got["attempts"] == len(lines) - len(later) and not got["malformed"], got
    assert export_text(laptop) == lines


def test_imported_claude_code_turns_round_trip_with_their_marks_and_links(tmp_path):
    """Lines that are themselves imports (reconstructed, imported_from, a subagent's
    parent_conversation_id) come back with those keys; the transcripts imported again add nothing."""
    from pathlib import Path

    projects = Path(__file__).parent / "fixtures" / "claude_code" / "projects"
    source = tmp_path / "team.db"
    assert run(source, "import", "claude-code", projects).exit_code == 0
    lines = export_text(source)
    assert any('"parent_conversation_id"' in x for x in lines) and all('"reconstructed": true' in x for x in lines)
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(own_spans(lines, source)) + "\n")
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == len(lines)
    assert export_text(laptop) == lines
    # what no export line holds (the subagent's parent tool call, compaction resets) no span has
    beyond = ("parent_tool_use_id", "context_resets")
    for conv in {json.loads(x)["conversation_id"] for x in lines}:
        docs = [json.loads(run(db, "show", conv, "--json").stdout) for db in (source, laptop)]
        assert [{k: v for k, v in d.items() if k not in beyond} for d in docs[1:]] == [
            {k: v for k, v in docs[0].items() if k not in beyond}
        ]
    r = run(laptop, "import", "claude-code", projects, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["turns"] == 0, r.output


def test_a_forks_spans_come_back_a_fork_with_its_copies(loop_api, recorded, tmp_path):  # noqa: F811 (fixtures)
    """A fork's turns before its fork point copy recorded turns: their spans carry copied_from,
    which the import dropped, so the copies came back as turns of their own (spend, and lines
    without copied_from); and the fork's link lost the turn it forked at (`show` said turn 0)."""
    from test_fork import fork_env, fork_of, recorded_loop, replayer

    db, conv, _work = recorded_loop(recorded, tmp_path)
    proc = replayer(db, "fork", f"{conv}:2", "--system", "You are terse.", "--yes", env=fork_env(loop_api))
    assert proc.returncode == 0, proc.stderr
    fork, _ = fork_of(db)
    lines = export_text(db)
    assert [json.loads(x).get("copied_from") is not None for x in lines].count(True) == 2
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(own_spans(lines, db)) + "\n")
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == len(lines)
    assert export_text(laptop) == lines
    stats = [json.loads(run(d, "stats", "--days", "36500", "--json").stdout) for d in (db, laptop)]
    assert stats[1] == stats[0]  # the copies are no spend
    shown = [json.loads(run(d, "show", fork, "--json").stdout) for d in (db, laptop)]
    assert shown[1]["fork_of"]["turn_index"] == shown[0]["fork_of"]["turn_index"] == 2


# -- another instrumentation's spans -----------------------------------------------------------

SYSTEM = "You read files."
TOOLS = [{"name": "read_file", "description": "Read a file", "input_schema": {"type": "object"}}]
CALL = {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "README.md"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "# readme"}


def convention_loop(conversation="conv_team_1", user="user_7"):
    """A two-turn tool loop as an instrumentation following the GenAI convention writes it."""

    def parts(role, blocks, **extra):
        out = []
        for b in blocks:
            if b["type"] == "text":
                out.append({"type": "text", "content": b["text"]})
            elif b["type"] == "tool_use":
                out.append({"type": "tool_call", "id": b["id"], "name": b["name"], "arguments": b["input"]})
            elif b["type"] == "tool_result":
                out.append({"type": "tool_call_response", "id": b["tool_use_id"], "response": b["content"]})
        return {"role": role, "parts": out, **extra}

    ask = {"type": "text", "text": "What is in README.md?"}
    answer = {"type": "text", "text": "A heading."}
    common = {
        n.OPERATION_NAME: "chat",
        n.PROVIDER_NAME: "anthropic",
        n.REQUEST_MODEL: MODEL,
        n.REQUEST_MAX_TOKENS: 512,
        n.CONVERSATION_ID: conversation,
        n.USER_ID: user,
        n.SYSTEM_INSTRUCTIONS: json.dumps([{"type": "text", "content": SYSTEM}]),
        n.TOOL_DEFINITIONS: json.dumps(
            [{"type": "function", "name": "read_file", "description": "Read a file", "parameters": {"type": "object"}}]
        ),
    }
    first = {
        **common,
        n.INPUT_MESSAGES: json.dumps([parts("user", [ask])]),
        n.OUTPUT_MESSAGES: json.dumps([parts("assistant", [CALL], finish_reason="tool_use")]),
        n.RESPONSE_ID: "msg_c1",
        n.RESPONSE_MODEL: MODEL,
        n.USAGE_INPUT_TOKENS: 130,  # the convention's: cache reads and writes included
        n.USAGE_CACHE_READ_INPUT_TOKENS: 100,
        n.USAGE_CACHE_CREATION_INPUT_TOKENS: 0,
        n.USAGE_OUTPUT_TOKENS: 12,
    }
    second = {
        **common,
        n.INPUT_MESSAGES: json.dumps([parts("user", [ask]), parts("assistant", [CALL]), parts("tool", [RESULT])]),
        n.OUTPUT_MESSAGES: json.dumps([parts("assistant", [answer], finish_reason="end_turn")]),
        n.RESPONSE_ID: "msg_c2",
        n.USAGE_INPUT_TOKENS: 150,
        n.USAGE_OUTPUT_TOKENS: 5,
    }
    return [(first, T0, T0 + 900_000_000), (second, T0 + 2_000_000_000, T0 + 2_500_000_000)], (ask, answer)


def openllmetry_span():
    """One call as OpenLLMetry's Anthropic instrumentation flattens it."""
    return {
        "llm.request.type": "chat",
        n.SYSTEM: "Anthropic",
        n.REQUEST_MODEL: MODEL,
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": SYSTEM,
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "List the files",
        "llm.request.functions.0.name": "list_files",
        "llm.request.functions.0.description": "List files",
        "llm.request.functions.0.input_schema": json.dumps({"type": "object"}),
        "gen_ai.completion.0.role": "thinking",
        "gen_ai.completion.0.content": "They want a listing.",
        "gen_ai.completion.1.role": "assistant",
        "gen_ai.completion.1.content": "Listing.",
        "gen_ai.completion.1.finish_reason": "tool_use",
        "gen_ai.completion.1.tool_calls.0.id": "toolu_9",
        "gen_ai.completion.1.tool_calls.0.name": "list_files",
        "gen_ai.completion.1.tool_calls.0.arguments": json.dumps({"dir": "."}),
        n.RESPONSE_ID: "msg_o1",
        n.RESPONSE_MODEL: MODEL,
        n.USAGE_INPUT_TOKENS: 40,
        n.USAGE_OUTPUT_TOKENS: 9,
    }


def test_convention_spans_rebuilt_as_one_conversation_marked_reconstructed(tmp_path):
    specs, (ask, answer) = convention_loop()
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans(specs)) + "\n")
    db = tmp_path / "b.db"
    got = imported(db, path)
    assert (got["reconstructed"], got["attempts"], got["conversations"]) == (2, 0, ["conv_team_1"])
    lines = [json.loads(x) for x in export_text(db)]
    assert [x["index"] for x in lines] == [0, 1]
    assert all(x["reconstructed"] is True and x["imported_from"] == "otlp" for x in lines)
    assert all(x["conversation_id"] == "conv_team_1" and x["user_id"] == "user_7" for x in lines)
    first, second = lines
    assert first["request"] == {
        "model": MODEL, "max_tokens": 512, "system": SYSTEM, "tools": TOOLS,
        "messages": [{"role": "user", "content": [ask]}],
    }  # fmt: skip
    assert first["response"]["content"] == [CALL] and first["response"]["stop_reason"] == "tool_use"
    # the convention's input count includes the cache: the API's doesn't
    assert first["usage"] == {"input_tokens": 30, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 100, "output_tokens": 12}  # fmt: skip
    assert second["request"]["messages"] == [
        {"role": "user", "content": [ask]},
        {"role": "assistant", "content": [CALL]},
        {"role": "user", "content": [RESULT]},
    ]
    assert second["response"]["content"] == [answer] and second["response"]["id"] == "msg_c2"
    assert first["started_at"] < second["started_at"] and first["latency_ms"] == 900.0

    r = run(db, "show", "conv_team_1")
    assert "imported from OpenTelemetry spans" in r.output and "reconstructed" in r.output
    doc = json.loads(run(db, "show", "conv_team_1", "--json").stdout)
    assert doc["imported_from"] == "otlp" and doc["reconstructed_turns"] == [0, 1] and doc["otlp_trace_id"]

    # never offered for an exact rerun
    r = run(db, "rerun", first["turn_id"], "--yes")
    assert r.exit_code == 2 and "reconstructed" in r.output


def test_spans_without_a_conversation_id_thread_as_recorded_calls_do(tmp_path):
    specs, _ = convention_loop()
    for attrs, *_ in specs:
        del attrs[n.CONVERSATION_ID]
    path = tmp_path / "spans.jsonl"
    path.write_text(json_format_line(sdk_spans(specs)) + "\n")  # base64 ids this time
    db = tmp_path / "b.db"
    got = imported(db, path)
    assert got["reconstructed"] == 2 and len(got["conversations"]) == 1
    lines = [json.loads(x) for x in export_text(db)]
    assert len({x["conversation_id"] for x in lines}) == 1 and [x["index"] for x in lines] == [0, 1]


def test_the_anthropic_sdks_own_spans_rebuilt(api, tmp_path):
    """The SDK's own OpenTelemetry spans (its `open_telemetry` option): with content mode on they
    carry the convention's content attributes and are rebuilt; without, they are skipped."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    thinking = {"type": "thinking", "thinking": "They want a.py.", "signature": "sig"}
    api.enqueue(
        Reply(body={"id": "msg_k1", "type": "message", "role": "assistant", "model": MODEL, "content": [thinking, CALL],
                    "stop_reason": "tool_use", "stop_sequence": None,
                    "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 100,
                              "cache_creation_input_tokens": 0}}),
        Reply(sse=message_events({"id": "msg_k2", "type": "message", "role": "assistant", "model": MODEL,
                                  "content": [{"type": "text", "text": "A heading."}], "stop_reason": "end_turn",
                                  "usage": {"input_tokens": 30, "output_tokens": 2}})),
    )  # fmt: skip
    traced = {"tracer_provider": provider, "traces": {"content_mode": "content"}}
    client = anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, open_telemetry=traced)
    ask = {"role": "user", "content": "Read README.md"}
    first = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, messages=[ask])
    history = [ask, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
               {"role": "user", "content": [RESULT]}]  # fmt: skip
    with client.messages.stream(model=MODEL, max_tokens=256, system=SYSTEM, messages=history) as s:
        s.get_final_message()
    quiet = anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, open_telemetry={"tracer_provider": provider})
    quiet.messages.create(model=MODEL, max_tokens=16, messages=[ask])  # metadata only: no content
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(exporter.get_finished_spans()) + "\n")

    db = tmp_path / "b.db"
    got = imported(db, path)
    assert got["reconstructed"] == 2 and got["skipped"] == {"no_content": 1}
    one, two = [json.loads(x) for x in export_text(db)]
    assert one["conversation_id"] == two["conversation_id"] and [one["index"], two["index"]] == [0, 1]
    assert one["request"]["system"] == SYSTEM and one["request"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Read README.md"}]}
    ]
    # the thinking block's signature is not in a span: the rest of the reply is
    assert one["response"]["content"] == [{"type": "thinking", "thinking": "They want a.py."}, CALL]
    assert one["response"]["stop_reason"] == "tool_use" and one["request_id"] == "req_fake0000000000000001"
    assert one["usage"]["input_tokens"] == 20 and one["usage"]["cache_read_input_tokens"] == 100
    roles = [(m["role"], [b["type"] for b in m["content"]]) for m in two["request"]["messages"]]
    assert roles == [("user", ["text"]), ("assistant", ["thinking", "tool_use"]), ("user", ["tool_result"])]
    assert two["request"]["messages"][2]["content"][0]["tool_use_id"] == "toolu_1"
    assert two["response"]["content"] == [{"type": "text", "text": "A heading."}] and two["stream"] is True
    assert two["ttft_ms"] is not None and two["response"]["stop_reason"] == "end_turn"


def test_a_call_in_two_instrumentations_spans_is_kept_once_whichever_comes_first(api, tmp_path):
    """The SDK's own spans (content on) and replayer's of the same calls, from one agent: in one
    import, in two with the SDK's first, in two with replayer's first, one turn per call."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api.enqueue(
        Reply(body={"id": "msg_w1", "type": "message", "role": "assistant", "model": MODEL, "content": [CALL],
                    "stop_reason": "tool_use", "stop_sequence": None,
                    "usage": {"input_tokens": 20, "output_tokens": 7}}),
        Reply(body={"id": "msg_w2", "type": "message", "role": "assistant", "model": MODEL,
                    "content": [{"type": "text", "text": "A heading."}], "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": {"input_tokens": 30, "output_tokens": 2}}),
    )  # fmt: skip
    source = tmp_path / "agent.db"
    traced = {"tracer_provider": provider, "traces": {"content_mode": "content"}}
    with Recorder(source) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, open_telemetry=traced))
        ask = {"role": "user", "content": "Read README.md"}
        first = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, messages=[ask])
        history = [ask, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
                   {"role": "user", "content": [RESULT]}]  # fmt: skip
        client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, messages=history)
    lines = export_text(source)
    sdk_line = collector_line(exporter.get_finished_spans())
    own_line = collector_line(own_spans(lines, source))

    def ids(db):
        return sorted(json.loads(x)["response"]["id"] for x in export_text(db))

    both = tmp_path / "both.jsonl"
    both.write_text(sdk_line + "\n" + own_line + "\n")
    got = imported(tmp_path / "one.db", both)
    assert (got["attempts"], got["reconstructed"], got["matched_recorded"]) == (2, 0, 2), got
    assert export_text(tmp_path / "one.db") == lines  # the exact ones kept

    sdk, own = tmp_path / "sdk.jsonl", tmp_path / "own.jsonl"
    sdk.write_text(sdk_line + "\n")
    own.write_text(own_line + "\n")
    later = tmp_path / "own_later.db"
    assert imported(later, sdk)["reconstructed"] == 2
    got = imported(later, own)
    assert (got["attempts"], got["matched_imported"]) == (0, 2), got
    assert ids(later) == ["msg_w1", "msg_w2"]  # once each: the cost is not counted twice
    r = run(later, "import", "otlp", own)
    assert "2 spans of calls already imported from elsewhere (matched by response id), kept as first imported" in (
        r.stderr
    )

    first_own = tmp_path / "own_first.db"
    imported(first_own, own)
    got = imported(first_own, sdk)
    assert (got["reconstructed"], got["matched_recorded"]) == (0, 2), got
    assert export_text(first_own) == lines


OPENLLMETRY_AGENT = """
import json, sys
import anthropic
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

url, key, out, tools, system, result = sys.argv[1:7]
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
AnthropicInstrumentor().instrument()
client = anthropic.Anthropic(base_url=url, api_key=key)
ask = {"role": "user", "content": "Read README.md"}
kw = dict(model="claude-sonnet-4-5", max_tokens=100, system=system, tools=json.loads(tools))
first = client.messages.create(messages=[ask], **kw)
history = [ask, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
           {"role": "user", "content": [json.loads(result)]}]
client.messages.create(messages=history, **kw)
with open(out, "w") as f:
    f.write(json_format.MessageToJson(encode_spans(exporter.get_finished_spans()), indent=None) + "\\n")
"""


def test_openllmetrys_real_spans_rebuilt(api, tmp_path):
    """OpenLLMetry's Anthropic instrumentation, as a team would run it (in its own process: it
    patches the SDK), recording a tool loop; the SDK's own spans beside it carry no content."""
    api.enqueue(
        Reply(body={"id": "msg_t1", "type": "message", "role": "assistant", "model": MODEL, "content": [CALL],
                    "stop_reason": "tool_use", "stop_sequence": None,
                    "usage": {"input_tokens": 20, "output_tokens": 7}})
    )  # fmt: skip
    out = tmp_path / "spans.jsonl"
    args = [api.url, FAKE_KEY, out, json.dumps(TOOLS), SYSTEM, json.dumps(RESULT)]
    proc = subprocess.run([sys.executable, "-c", OPENLLMETRY_AGENT, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "b.db"
    got = imported(db, out)
    assert got["reconstructed"] == 2 and got["skipped"] == {"no_content": 2}, got  # the SDK's own spans
    one, two = [json.loads(x) for x in export_text(db)]
    assert one["conversation_id"] == two["conversation_id"] and one["reconstructed"] and two["reconstructed"]
    assert one["request"]["system"] == SYSTEM and one["request"]["tools"] == TOOLS
    assert one["response"]["content"] == [CALL] and one["response"]["stop_reason"] == "tool_use"
    assert two["request"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Read README.md"}]},
        {"role": "assistant", "content": [CALL]},
        {"role": "user", "content": [RESULT]},
    ]


def test_openllmetry_span_rebuilt(tmp_path):
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans([(openllmetry_span(), T0, T0 + 10**9)])) + "\n")
    db = tmp_path / "b.db"
    assert imported(db, path)["reconstructed"] == 1
    (line,) = [json.loads(x) for x in export_text(db)]
    assert line["reconstructed"] is True
    assert line["request"] == {
        "model": MODEL, "system": SYSTEM,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "List the files"}]}],
        "tools": [{"name": "list_files", "description": "List files", "input_schema": {"type": "object"}}],
    }  # fmt: skip
    assert line["response"]["content"] == [
        {"type": "thinking", "thinking": "They want a listing."},
        {"type": "text", "text": "Listing."},
        {"type": "tool_use", "id": "toolu_9", "name": "list_files", "input": {"dir": "."}},
    ]
    assert line["response"]["stop_reason"] == "tool_use" and line["usage"] == {"input_tokens": 40, "output_tokens": 9}


def test_failed_call_span_kept_as_an_error(tmp_path):
    specs, _ = convention_loop()
    attrs = dict(specs[0][0])
    for key in (n.OUTPUT_MESSAGES, n.RESPONSE_ID, n.USAGE_INPUT_TOKENS, n.USAGE_OUTPUT_TOKENS):
        attrs.pop(key)
    attrs[n.ERROR_TYPE] = "overloaded_error"
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans([(attrs, T0, T0 + 10**8, "Overloaded")])) + "\n")
    db = tmp_path / "b.db"
    assert imported(db, path)["reconstructed"] == 1
    (line,) = [json.loads(x) for x in export_text(db)]
    assert line["error"] == {"type": "overloaded_error", "message": "Overloaded", "status": None}
    assert line["response"] is None


def test_spans_without_content_and_other_spans_counted_and_skipped(tmp_path):
    specs, _ = convention_loop()
    content = ("gen_ai.input", "gen_ai.output", "gen_ai.system_")
    bare = {k: v for k, v in specs[0][0].items() if not k.startswith(content)}
    own_bare = {n.OPERATION_NAME: "chat", n.PROVIDER_NAME: "anthropic", n.TURN_ID: "turn_x", n.CONVERSATION_ID: "c"}
    openai = {**specs[0][0], n.PROVIDER_NAME: "openai"}
    not_chat = {"http.method": "GET"}
    path = tmp_path / "spans.jsonl"
    spans = sdk_spans([(a, T0, T0 + 1000) for a in (bare, own_bare, openai, not_chat)])
    path.write_text(collector_line(spans) + "\n")
    db = tmp_path / "b.db"
    r = run(db, "import", "otlp", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["reconstructed"] == 0 and got["attempts"] == 0
    assert got["skipped"] == {"no_content": 2, "other_provider": 1}
    assert got["other_spans"] == 2  # the SDK's parent "agent run" span and the HTTP one
    assert "2 chat spans skipped: no content" in r.stderr


def test_the_filters_leave_out_spans_without_content_too(tmp_path):
    """--user alice: bob's spans without content were told as "skipped: no content", as if they
    were alice's to import; they are left out by the filter, like his spans with content."""
    content = ("gen_ai.input", "gen_ai.output", "gen_ai.system_")
    specs = []
    for user in ("alice", "bob"):
        loop, _ = convention_loop(f"conv_{user}", user)
        bare = {k: v for k, v in loop[0][0].items() if not k.startswith(content)}
        specs += [(bare, T0, T0 + 1000), ({**loop[1][0], n.RESPONSE_ID: f"msg_{user}"}, *loop[1][1:])]
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans(specs)) + "\n")
    for args, skipped, filtered in ((["--user", "alice"], 1, 2), (["--conversation", "conv_bob"], 1, 2), ([], 2, 0)):
        r = run(tmp_path / f"f{len(args)}{skipped}.db", "import", "otlp", path, "--json", *args)
        got = json.loads(r.stdout)
        assert (got["skipped"], got["filtered_out"], got["reconstructed"]) == ({"no_content": skipped}, filtered,
                                                                                 1 if args else 2), r.output
        assert f"{skipped} chat span{'s' if skipped > 1 else ''} skipped: no content" in r.stderr


# -- the input ---------------------------------------------------------------------------------


def test_gzip_stdin_and_idempotent(tmp_path):
    specs, _ = convention_loop()
    line = collector_line(sdk_spans(specs)) + "\n"
    gz = tmp_path / "spans.json.gz"  # the magic bytes tell gzip, not the name
    gz.write_bytes(gzip.compress(line.encode()))
    db = tmp_path / "b.db"
    assert imported(db, gz)["reconstructed"] == 2
    before = export_text(db)
    again = imported(db, gz)
    assert (again["reconstructed"], again["already_imported"]) == (0, 2)
    r = run(db, "import", "otlp", "-", "--json", stdin=gzip.compress(line.encode()))  # gzip on stdin
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["already_imported"] == 2
    assert export_text(db) == before

    db2 = tmp_path / "c.db"
    r = run(db2, "import", "otlp", "-", "--json", stdin=line)  # plain stdin
    assert r.exit_code == 0 and json.loads(r.stdout)["reconstructed"] == 2


def test_import_needs_no_opentelemetry_package(tmp_path):
    """The laptop side reads JSON: `import otlp` never imports OpenTelemetry (no otlp extra needed)."""
    specs, _ = convention_loop()
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans(specs)) + "\n")
    code = (
        "import sys; from click.testing import CliRunner; from replayer.cli import cli; "
        f"r = CliRunner().invoke(cli, ['--db', {str(tmp_path / 'b.db')!r}, 'import', 'otlp', {str(path)!r}]); "
        "assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def stderr_on_a_terminal(*argv) -> str:
    """What `replayer ARGV` writes on its stderr when that is a terminal (a pseudo-terminal)."""
    import os
    import pty

    main, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "replayer.cli", *map(str, argv)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=terminal)  # fmt: skip
    os.close(terminal)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # (EIO: the process closed its end)
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(120) == 0, out
    return out.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(tmp_path):
    """A file past 8 MB printed the bar's label ("importing") before the summary when stderr
    was a log file or a pipe: the bar now shows only on a terminal, whatever the file's size."""
    specs, _ = convention_loop()
    attrs, start, end = specs[0]
    long = [{"role": "user", "parts": [{"type": "text", "content": "x" * (9 << 20)}]}]
    path = tmp_path / "big.jsonl"
    path.write_text(collector_line(sdk_spans([({**attrs, n.INPUT_MESSAGES: json.dumps(long)}, start, end)])) + "\n")
    assert path.stat().st_size > 8 << 20  # where the label used to show on any stderr
    r = run(tmp_path / "b.db", "import", "otlp", path)
    assert r.exit_code == 0 and r.stderr.startswith("imported 1 reconstructed turn"), r.stderr
    assert "importing" not in r.stderr
    small = tmp_path / "spans.jsonl"
    small.write_text(collector_line(sdk_spans(specs)) + "\n")
    shown = stderr_on_a_terminal("--db", tmp_path / "c.db", "import", "otlp", small)
    assert "importing" in shown and "imported 2 reconstructed turns" in shown, shown


def test_filters(tmp_path):
    a, _ = convention_loop("conv_a", "alice")
    b, _ = convention_loop("conv_b", "bob")
    late = [(attrs, s + 86_400 * 10**9, e + 86_400 * 10**9) for attrs, s, e in b]  # bob's a day later
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans(a)) + "\n" + collector_line(sdk_spans(late)) + "\n")

    def convs(*args):
        db = tmp_path / f"f{len(list(tmp_path.iterdir()))}.db"
        got = imported(db, path, *args)
        return sorted({json.loads(x)["conversation_id"] for x in export_text(db)}), got["filtered_out"]

    assert convs("--user", "alice") == (["conv_a"], 2)
    assert convs("--conversation", "conv_b") == (["conv_b"], 2)
    from datetime import UTC, datetime

    day = datetime.fromtimestamp(T0 / 1e9 + 86_400, UTC).strftime("%Y-%m-%d")
    assert convs("--since", day) == (["conv_b"], 2)
    r = run(tmp_path / "x.db", "import", "otlp", path, "--since", "yesterday")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--since" in r.output


def test_malformed_lines_counted_and_reported_never_fatal(tmp_path):
    specs, _ = convention_loop()
    good = [collector_line(sdk_spans([s])) for s in specs]
    broken_span = json.loads(good[0])
    broken_span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "not-an-id!"
    path = tmp_path / "spans.jsonl"
    path.write_text(
        "\n".join([good[0], '{"resourceSpans": [', '{"hello": 1}', json.dumps(broken_span), "", good[1]]) + "\n"
    )
    db = tmp_path / "b.db"
    r = run(db, "import", "otlp", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["reconstructed"] == 2
    assert [m["line"] for m in got["malformed"]] == [2, 3, 4]
    for k in (2, 3, 4):
        assert f"line {k}:" in r.stderr
    # what is counted is said: two lines that hold no spans to read, one span that can't be read
    # (a line holds many spans: two of one line were told as "2 malformed lines")
    assert "2 malformed lines skipped; 1 malformed span skipped" in r.stderr


def test_a_file_starting_with_a_utf8_bom_keeps_its_first_line(tmp_path):
    """A file some Windows tool saved with a byte order mark: its first line was skipped as "not
    JSON (UTF-8 byte order mark (BOM) is not supported)", exit 0. The mark is passed over, in a
    file, in gzip and on stdin."""
    specs, _ = convention_loop()
    good = [collector_line(sdk_spans([s])) for s in specs]
    data = b"\xef\xbb\xbf" + ("\n".join(good) + "\n").encode()
    path = tmp_path / "bom.jsonl"
    path.write_bytes(data)
    gz = tmp_path / "bom.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    for i, (source, stdin) in enumerate([(path, None), (gz, None), ("-", data)]):
        r = run(tmp_path / f"b{i}.db", "import", "otlp", source, "--json", stdin=stdin)
        assert r.exit_code == 0, r.output
        got = json.loads(r.stdout)
        assert (got["reconstructed"], got["malformed"]) == (2, []), r.stderr
        assert "skipped" not in r.stderr and "BOM" not in r.stderr


def test_a_last_line_cut_off_is_said_to_be_maybe_still_written_then_taken_once_whole(tmp_path):
    """A Collector's file exporter appends a line at a time: an import while it writes one reads
    that line cut off. It was reported as 'not JSON (unexpected end of data)', like garbage; it is
    said to be cut off at the end (maybe still being written), and a later import takes it."""
    specs, _ = convention_loop()
    good = [collector_line(sdk_spans([s])) for s in specs]
    path = tmp_path / "spans.jsonl"
    path.write_text(good[0] + "\n" + good[1][: len(good[1]) // 2])
    db = tmp_path / "b.db"
    r = run(db, "import", "otlp", path, "--json")
    assert r.exit_code == 0, r.output
    assert [m["line"] for m in json.loads(r.stdout)["malformed"]] == [2]
    assert "line 2: cut off at the end of the input (still being written? import again once it is whole)" in r.stderr
    path.write_text(good[0] + "\n" + good[1] + "\n{\"resourceSpans\": [\n\n")  # whole now; then a bad line
    r = run(db, "import", "otlp", path, "--json")
    got = json.loads(r.stdout)
    assert r.exit_code == 0 and got["reconstructed"] == 1 and [m["line"] for m in got["malformed"]] == [3], r.output
    assert "line 3: not JSON (unexpected end of data)" in r.stderr  # inside the input: malformed, as ever


def test_a_conversation_imported_from_a_later_turn_shows_its_first_message(api, tmp_path):
    """Only turn 1 of a conversation imported (its line of a file split by time): the list's first
    message was empty, taken from turn 0 alone; it is the first user message of the earliest turn
    held, which is the conversation's (turn 1's request holds it). Importing turn 0 later is as before."""
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    second = next(x for x in lines if json.loads(x)["conversation_id"] == "conv_loop" and json.loads(x)["index"] == 1)
    path = tmp_path / "turn1.jsonl"
    path.write_text(collector_line(own_spans([second], source)) + "\n")
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == 1
    rows = json.loads(run(laptop, "list", "--json").stdout)
    assert [(r["conversation_id"], r["first_message"]) for r in rows] == [("conv_loop", "Read a.py")], rows
    # and the browser's sort by first message reads the same text ("Read a.py" before "stream")
    streamed = next(x for x in lines if json.loads(x)["request"]["messages"][0]["content"] == "stream")
    path.write_text(collector_line(own_spans([streamed], source)) + "\n")
    assert imported(laptop, path)["attempts"] == 1
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    by_first = Store(open_db(laptop)).conversations(sort="first", descending=False)
    assert [c.first_message for c in by_first] == ["Read a.py", "stream"]


def test_a_span_of_another_turn_at_a_taken_index_goes_after_the_conversations_turns(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    line_of = [collector_line(own_spans([x], source)) for x in lines]
    # a span of another turn claiming the place (conversation, index) of turn 1 of conv_loop
    forged = json.loads(line_of[1])
    forged_span = forged["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for kv in forged_span["attributes"]:
        if kv["key"] == "replayer.turn_id":
            kv["value"] = {"stringValue": "turn_clash"}
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join([*line_of[:3], json.dumps(forged), *line_of[3:]]) + "\n")
    laptop = tmp_path / "laptop.db"
    r = run(laptop, "import", "otlp", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    # no longer refused as a malformed line (IntegrityError): another turn of the conversation,
    # it goes after the conversation's turns, as a second run's turn would
    assert got["attempts"] == len(lines) + 1 and got["malformed"] == [], got
    assert got["continued_conversations"] == ["conv_loop"]
    exported = export_text(laptop)
    assert [x for x in exported if "turn_clash" not in x] == lines
    (clash,) = [json.loads(x) for x in exported if "turn_clash" in x]
    assert (clash["conversation_id"], clash["index"]) == ("conv_loop", 2)


@pytest.mark.parametrize(
    "content, what",
    [
        (None, "no such file"),
        (b"hello, world\nthis is prose\n", "is not OTLP JSON"),
        (b'{"resourceLogs": []}\n', "is not OTLP JSON"),
        (b"\x0a\x00\x12\x00binary protobuf", "is not OTLP JSON"),
        (b"\x1f\x8b\x08\x00cut", "is not OTLP JSON"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, content, what):
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_bytes(content)
    r = run(tmp_path / "b.db", "import", "otlp", path)
    assert r.exit_code == 2, r.output
    assert what in r.output and r.output.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "b.db").exists()  # it made an empty database before reading a line


def test_an_input_with_nothing_to_import_makes_no_database(tmp_path):
    """An empty input, or one whose spans hold nothing to import, is reported as today (nothing
    imported, exit 0) and leaves no new empty database behind; a --db that can't hold the records
    is still refused before anything is read."""
    specs, _ = convention_loop()
    bare = {k: v for k, v in specs[0][0].items() if not k.startswith(("gen_ai.input", "gen_ai.output"))}
    no_content = collector_line(sdk_spans([(bare, T0, T0 + 1000)])) + "\n"
    for name, content in (("empty.jsonl", b""), ("blank.jsonl", b"\n\n"), ("bare.jsonl", no_content.encode())):
        path = tmp_path / name
        path.write_bytes(content)
        db = tmp_path / "new" / "b.db"
        r = run(db, "import", "otlp", path)
        assert r.exit_code == 0 and r.stderr.startswith("imported 0 attempts (0 new conversations)"), r.output
        assert not db.parent.exists(), name
    path = tmp_path / "spans.jsonl"
    path.write_text(collector_line(sdk_spans(specs)) + "\n")
    r = run(db, "import", "otlp", path)  # something to import: the folder is made, and said to be
    assert r.exit_code == 0 and r.stderr.startswith(f"replayer: created folder {db.parent} for the database\n"
                                                    "imported 2 reconstructed turns"), r.stderr  # fmt: skip
    r = run(tmp_path / "b.db", "import", "otlp", "-", stdin="")
    assert r.exit_code == 0 and not (tmp_path / "b.db").exists(), r.output
    prose = tmp_path / "notes.txt"
    prose.write_text("not a database\n")
    r = run(prose, "import", "otlp", tmp_path / "empty.jsonl")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "is not a SQLite database" in r.output, r.output
    assert prose.read_text() == "not a database\n"


def nesting(text: str) -> int:
    """How deep the brackets of `text` go."""
    depth = deepest = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        deepest = max(deepest, depth)
    return deepest


@pytest.mark.parametrize(
    "content, said",
    [
        (b"hello, world\nthis is prose\n", "none of its 2 lines is an OTLP trace export (line 1 is not JSON)"),
        (b'{"resourceLogs": []}\n', "line 1 is JSON with no resourceSpans"),
        (b"\x0a\x00\x12\x00protobuf", "it is binary data, as a Collector's file exporter writes with format: proto"),
    ],
)
def test_what_is_not_otlp_is_said_in_one_plain_sentence(tmp_path, content, said):
    """It read "(no line of it is an OTLP trace export (line 1: not an OTLP trace export (no
    resourceSpans)))": brackets three deep. What the file is, then what to give instead."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    r = run(tmp_path / "b.db", "import", "otlp", path)
    assert r.exit_code == 2 and not (tmp_path / "b.db").exists()
    assert r.output == (f"replayer: {path} is not OTLP JSON: {said}; "
                        "give the JSON lines a Collector's file exporter writes with format: json\n")
    assert nesting(r.output) <= 1


def test_a_replayer_export_given_to_import_otlp_is_named_for_what_it_is(api, tmp_path):
    source = tmp_path / "team.db"
    record_session(api, source)
    path = tmp_path / "c3.jsonl"
    path.write_text("\n".join(export_text(source)) + "\n")
    for given, named, again in ((path, path, path), ("-", "stdin", "FILE")):
        r = run(tmp_path / "b.db", "import", "otlp", given, stdin=path.read_text() if given == "-" else None)
        assert r.exit_code == 2
        assert r.output == (
            f"replayer: {named} is a replayer export (`replayer export`), not OTLP: import it with "
            f"`replayer import export {again}`, or replay it as it is with `replayer replay {again} -- COMMAND`\n"
        )
        assert not (tmp_path / "b.db").exists()


def test_a_folder_is_bad_input(tmp_path):
    r = run(tmp_path / "b.db", "import", "otlp", tmp_path)
    assert r.exit_code == 2 and "folder" in r.output and r.output.count("\n") == 1


def test_a_file_read_by_a_reader_process_imports_the_same(api, tmp_path, monkeypatch):
    """Past READ_AHEAD_BYTES a reader process parses the file while the import writes
    (readahead.py): the same lines come back, malformed lines and bad input are told the same."""
    from replayer.cli import importing

    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    path = tmp_path / "collector.jsonl"
    path.write_text(collector_line(own_spans(lines, source)) + "\n" + '{"resourceSpans": [' + "\n")
    monkeypatch.setattr(importing, "READ_AHEAD_BYTES", 0)
    laptop = tmp_path / "laptop.db"
    r = run(laptop, "import", "otlp", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert (got["attempts"], got["lines"], [m["line"] for m in got["malformed"]]) == (len(lines), 1, [2])
    assert export_text(laptop) == lines
    bad = tmp_path / "prose.txt"
    bad.write_text("hello, world\n")
    r = run(laptop, "import", "otlp", bad)
    assert r.exit_code == 2 and "is not OTLP JSON" in r.output and r.output.count("\n") == 1, r.output
    r = run(tmp_path / "new.db", "import", "otlp", bad)  # told by the reader process: nothing made either
    assert r.exit_code == 2 and "is not OTLP JSON" in r.output and not (tmp_path / "new.db").exists(), r.output


def test_spans_arriving_out_of_turn_order_come_back_the_same(api, tmp_path, monkeypatch):
    """A Collector writes spans as they end, batches interleaved: the latest turn (and a retry
    before its first attempt) may come first, in an earlier transaction than the turns it follows."""
    from replayer.otlp import batches

    source = tmp_path / "team.db"
    record_session(api, source)
    lines = export_text(source)
    path = tmp_path / "collector.jsonl"
    path.write_text("".join(collector_line(own_spans([x], source)) + "\n" for x in reversed(lines)))
    monkeypatch.setattr(batches, "BATCH", 1)  # each span its own transaction
    laptop = tmp_path / "laptop.db"
    got = imported(laptop, path)
    assert (got["attempts"], got["lines"]) == (len(lines), len(lines))
    assert export_text(laptop) == lines
    shown = [json.loads(run(db, "show", "conv_loop", "--json").stdout) for db in (source, laptop)]
    assert shown[0] == shown[1]


def test_an_integer_beyond_64_bits_in_a_request_survives_the_import(api, tmp_path):
    """Request bodies stay exact: a number JSON allows and 64 bits don't hold is written back
    digit for digit (not rounded through a float, not refused)."""
    big = 2**70 + 1
    api.enqueue(
        Reply(body={"id": "msg_big", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": "ok"}], "usage": {"input_tokens": 3, "output_tokens": 1}})
    )  # fmt: skip
    source = tmp_path / "team.db"
    with Recorder(source) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        with rec.conversation("conv_big"):
            client.messages.create(
                model=MODEL, max_tokens=16, extra_body={"metadata": {"seed": big}},
                messages=[{"role": "user", "content": [{"type": "text", "text": "count", "n": -big}]}],
            )  # fmt: skip
    lines = export_text(source)
    assert str(big) in lines[0] and str(-big) in lines[0]
    path = tmp_path / "collector.jsonl"
    path.write_text(collector_line(own_spans(lines, source)) + "\n")
    laptop = tmp_path / "laptop.db"
    assert imported(laptop, path)["attempts"] == 1
    assert export_text(laptop) == lines


@pytest.mark.parametrize("inline", [False, True])
def test_readahead_gives_what_the_reader_yields_and_raises_what_it_raises(inline, monkeypatch, capsys):
    import os

    from replayer import readahead

    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", here)  # (the reader process imports tests/readers.py by name)
    target = "readers:counting"
    got = list(readahead.batches(target, [3, None], inline=inline))
    assert got == [{"i": i, "body": bytes([i]) * 5000} for i in range(3)]
    seen = []
    with pytest.raises(ValueError, match="line 3: not what was expected"):
        seen.extend(readahead.batches(target, [2, "error"], inline=inline))
    assert len(seen) == 2
    if not inline:
        with pytest.raises(readahead.ReaderDied, match="exit status 3"):
            list(readahead.batches(target, [1, "die"]))
        # a reader process that can't start: said on stderr, and the input read in this process
        assert [x["i"] for x in readahead.batches(target, [2, "no start"])] == [0, 1]
        assert "something_missing); reading in this process instead" in capsys.readouterr().err
        stopped = readahead.batches(target, [10_000, None])  # the caller stops early: the reader is ended
        assert next(stopped)["i"] == 0
        stopped.close()
