"""Rerun: a recorded turn re-sent with edits through the real SDK to the local fake API, N samples,
errors, streams, thread-mode history, validation and the estimate; the CLI."""

from __future__ import annotations

import dataclasses
import json

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY, sent_bodies

from replayer import Recorder, comparison, replay
from replayer.cli import cli
from replayer.fakeapi import Reply, message_events
from replayer.fmt import ms
from replayer.pricing import PriceTable
from replayer.store.queries import Store
from replayer.store.schema import open_db

SYSTEM = [{"type": "text", "text": "You fix builds.", "cache_control": {"type": "ephemeral"}}]
TOOLS = [{"name": "run", "description": "Run a command", "input_schema": {"type": "object"}}]


def message(text, *, tool=None, model="claude-sonnet-4-5", out=20):
    content = [{"type": "text", "text": text}]
    if tool:
        content.append({"type": "tool_use", "id": tool[0], "name": "run", "input": tool[1]})
    return {"id": f"msg_{abs(hash(text)) % 10**8}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 400, "output_tokens": out, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}  # fmt: skip


@pytest.fixture
def recorded(api, db_path):
    """A two-turn tool loop recorded through the SDK with a beta header; returns the 2nd turn's id."""
    with Recorder(db_path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        msgs = [{"role": "user", "content": "The build fails."}]
        first = message("Let me run it.", tool=("toolu_1", {"cmd": "make"}))
        api.enqueue(Reply(body=first))
        client.beta.messages.create(model="claude-sonnet-4-5", max_tokens=300, system=SYSTEM, tools=TOOLS,
                                    messages=msgs, betas=["fancy-feature-2026-01-01"])  # fmt: skip
        msgs += [{"role": "assistant", "content": first["content"]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                               "content": "error: missing semicolon"}]}]  # fmt: skip
        api.enqueue(Reply(body=message("Add the semicolon on line 3.")))
        client.beta.messages.create(model="claude-sonnet-4-5", max_tokens=300, system=SYSTEM, tools=TOOLS,
                                    messages=msgs, betas=["fancy-feature-2026-01-01"])  # fmt: skip
    api.received.clear()
    store = Store(open_db(db_path))
    conv = store.conversations()[0].conversation_id
    return store.turns(conv)[1].turn_id


def run(db_path, *args, api=None, key=FAKE_KEY):
    env = {"ANTHROPIC_API_KEY": key} if key else {}
    if api is not None:
        env["ANTHROPIC_BASE_URL"] = api.url
    return CliRunner().invoke(cli, ["--db", str(db_path), "rerun", *args], env=env)


def test_edits_go_out_with_the_recorded_headers_and_samples_are_compared(api, db_path, recorded, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You fix builds. Explain briefly.")
    outputs = iter(["Add a semicolon.", "Add the semicolon on line 3.", "Add a semicolon."])
    api.responder = lambda body: (
        Reply(body={"input_tokens": 420}) if body and "max_tokens" not in body
        else Reply(body=message(next(outputs), model=body["model"], out=30))
    )  # fmt: skip
    r = run(db_path, recorded, "--system", f"@{prompt}", "--model", "claude-haiku-4-5", "--message", "-1=exit 2",
            "--set", "max_tokens=128", "--set", "metadata={\"user_id\": \"me\"}", "--samples", "3", "--yes",
            "--json", api=api)  # fmt: skip
    assert r.exit_code == 0, r.output
    sent = [(p["path"], p["headers"], json.loads(p["body"])) for p in api.received]
    counted = [s for s in sent if s[0].endswith("/count_tokens")]
    bodies = [s for s in sent if s[0] == "/v1/messages"]
    assert len(counted) == 1 and len(bodies) == 3
    for _, headers, body in bodies:
        assert headers["anthropic-beta"] == "fancy-feature-2026-01-01"
        assert headers["anthropic-version"] == "2026-10-21"
        assert body["system"] == [{"type": "text", "text": "You fix builds. Explain briefly.",
                                   "cache_control": {"type": "ephemeral"}}]  # fmt: skip
        assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 128
        assert body["metadata"] == {"user_id": "me"} and body["tools"] == TOOLS
        assert body["messages"][-1]["content"][0]["content"] == "exit 2"  # the tool result's text
        assert body["messages"][:2] == [{"role": "user", "content": "The build fails."},
                                        {"role": "assistant", "content": message("Let me run it.", tool=(
                                            "toolu_1", {"cmd": "make"}))["content"]}]  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["original"]["text"] == "Add the semicolon on line 3."
    assert doc["spread"]["distinct_outputs"] == 2 and doc["spread"]["answered"] == 3
    texts = sorted(s["text"] for s in doc["samples"])
    assert texts == ["Add a semicolon.", "Add a semicolon.", "Add the semicolon on line 3."]
    same = next(s for s in doc["samples"] if s["text"] == "Add the semicolon on line 3.")
    assert same["diff"] == ""
    other = next(s for s in doc["samples"] if s["text"] == "Add a semicolon.")
    assert "-Add the semicolon on line 3." in other["diff"] and "+Add a semicolon." in other["diff"]
    assert other["cost_usd"] == pytest.approx((420 * 0 + 400 * 1.0 + 30 * 5.0) / 1e6)
    assert other["cost_delta_usd"] == pytest.approx(other["cost_usd"] - doc["original"]["cost_usd"])
    assert doc["estimate"]["source"] == "count_tokens" and doc["estimate"]["input_tokens"] == 420
    assert doc["edits"]["model"] == "claude-haiku-4-5"

    # stored beside the turn, with the edits; not in the conversation list
    listed = run(db_path, recorded, "--list", "--json")
    variants = json.loads(listed.stdout)
    assert len(variants) == 1 and variants[0]["samples"] == 3 and variants[0]["edits"]["set"]["max_tokens"] == 128
    store = Store(open_db(db_path))
    assert len(store.conversations()) == 1
    assert len(store.conversations(reruns=True)) == 2
    # their spend is counted on its own, outside the agent's users and health metrics
    from replayer.config import Settings
    from replayer.metrics import stats

    spend = stats(store, Settings()).document()
    assert spend["reruns"]["variants"] == 1 and spend["reruns"]["turns"] == 3
    assert spend["reruns"]["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in doc["samples"]))
    assert spend["conversations"]["count"] == 1 and spend["metrics"]["avg_turns_per_conversation"]["value"] == 2


def test_tool_calls_are_compared_by_name_and_input(api, db_path, recorded):
    store = Store(open_db(db_path))
    first = store.turns(store.conversations()[0].conversation_id)[0].turn_id
    def answer(body):
        if "max_tokens" not in body:  # a token count
            return Reply(body={"input_tokens": 5})
        return Reply(body=message("Let me run it.", tool=("toolu_9", {"cmd": "make -k"})))

    api.responder = answer
    r = run(db_path, first, "--yes", "--json", api=api)
    sample = json.loads(r.stdout)["samples"][0]
    assert sample["tool_diff"] == [{
        "name": "run", "status": "changed", "input": {"cmd": "make -k"},
        "diff": [{"path": "cmd", "op": "changed", "old": "make", "new": "make -k"}],
    }]
    text = run(db_path, first, "--yes", api=api)
    assert 'tools: run input changed (cmd: "make" -> "make -k")' in text.stdout


def test_no_key_sends_nothing(api, db_path, recorded):
    r = run(db_path, recorded, "--yes", api=api, key=None)
    assert r.exit_code == 2 and "ANTHROPIC_API_KEY" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert api.received == []


def test_api_errors_are_shown_on_the_sample_and_stored(api, db_path, recorded):
    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}
    api.responder = lambda body: None if body and "max_tokens" not in body else Reply(status=400, body=bad)
    r = run(db_path, recorded, "--samples", "2", "--yes", "--json", api=api)
    assert r.exit_code == 1
    samples = json.loads(r.stdout)["samples"]
    assert [s["error"]["message"] for s in samples] == ["max_tokens: too large"] * 2
    assert all(s["status"] == 400 for s in samples)
    text = run(db_path, recorded, "--yes", api=api)
    assert text.exit_code == 1 and "ERROR 400 invalid_request_error: max_tokens: too large" in text.stdout
    # 529 after the SDK's retries: each attempt is stored on the sample
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    api.responder = lambda body: (None if body and "max_tokens" not in body
                                  else Reply(status=529, body=overloaded, headers={"retry-after-ms": "1"}))  # fmt: skip
    r = run(db_path, recorded, "--yes", "--json", api=api)
    sample = json.loads(r.stdout)["samples"][0]
    assert r.exit_code == 1 and sample["status"] == 529 and sample["attempts"] == 3


def test_a_timeout_is_a_stored_error(api, db_path, recorded, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    store = Store(open_db(db_path))
    orig = replay.original(store, recorded)
    api.enqueue(Reply(hang=2.0))
    errors = []
    variant = replay.send(db_path, orig, orig.request, replay.Edits(), base_url=api.url, max_retries=0, timeout=0.5,
                          on_done=lambda i, e: errors.append(e))  # fmt: skip
    assert isinstance(errors[0], anthropic.APITimeoutError)
    sample = comparison.compare(store, orig, variant).samples[0]
    assert sample.error is not None and sample.error["type"] == "timeout_error" and sample.status is None


def test_a_streamed_turn_is_rerun_as_a_stream(api, db_path, tmp_path):
    with Recorder(db_path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        api.enqueue(Reply(sse=message_events(message("streamed once"))))
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50,
                                    messages=[{"role": "user", "content": "hi"}]) as s:  # fmt: skip
            s.get_final_message()
    store = Store(open_db(db_path))
    turn = store.turns(store.conversations()[0].conversation_id)[0].turn_id
    api.received.clear()
    api.responder = lambda body: (Reply(body={"input_tokens": 5}) if "max_tokens" not in body
                                  else Reply(sse=message_events(message("streamed again"))))  # fmt: skip
    r = run(db_path, turn, "--yes", "--json", api=api)
    assert r.exit_code == 0, r.output
    assert sent_bodies(api)[0]["stream"] is True
    assert json.loads(r.stdout)["samples"][0]["text"] == "streamed again"


def test_a_stream_cut_by_an_error_event_is_a_failed_sample_not_an_answer(api, db_path, recorded):
    """An `event: error` after message_start and a first content block: the sample failed (exit
    1), its error says it came mid-stream (its 200 status said nothing had failed yet), and the
    message begun before the error is no answered output in the spread."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    cut = [*message_events(message("Add the"))[:3], {"event": "error", "data": overloaded}]
    api.responder = lambda body: None if "max_tokens" not in body else Reply(sse=cut)
    r = run(db_path, recorded, "--set", "stream=true", "--yes", api=api)
    assert r.exit_code == 1, r.output
    assert "sample 1: ERROR overloaded_error mid-stream: Overloaded" in r.stdout and "ERROR 200" not in r.stdout
    assert "0 distinct outputs in 0 answered samples" in r.stdout
    r = run(db_path, recorded, "--set", "stream=true", "--samples", "2", "--yes", "--json", api=api)
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert [s["error"]["type"] for s in doc["samples"]] == ["overloaded_error"] * 2
    assert doc["spread"] == {"samples": 2, "answered": 0, "distinct_outputs": 0, "tool_calls": {},
                             "stop_reasons": {}}  # fmt: skip


def test_a_cost_difference_under_a_hundredth_of_a_cent_is_not_a_signed_zero(api, db_path, recorded):
    """The original cost $0.0015 (400 prompt, 20 output at $3/$15 per MTok): one more prompt token
    is +$0.000003, not `(+$0.0000)`; the same usage is `($0)`."""
    for extra, shown in ((1, "$0.0015 (+$0.000003)"), (0, "$0.0015 ($0)")):
        answer = message("Add the semicolon on line 3.")
        answer["usage"]["input_tokens"] += extra
        api.responder = lambda body, answer=answer: None if "max_tokens" not in body else Reply(body=answer)
        r = run(db_path, recorded, "--yes", api=api)
        assert r.exit_code == 0, r.output
        (line,) = [line for line in r.stdout.splitlines() if line.startswith("sample 1:")]
        assert f" · {shown} · " in line, line
        assert "(-0 ms)" not in line and "(+0 ms)" not in line


def test_a_samples_latency_reads_as_on_every_other_screen(api, db_path, recorded, monkeypatch):
    """A sample's latency read `123,456 ms` in rerun's output where every other screen says
    `123.5 s` (fmt.ms); a short one stays in milliseconds."""
    from replayer.cli.rerun import _describe_sample

    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    store = Store(open_db(db_path))
    orig = replay.original(store, recorded)
    api.enqueue(Reply(body=message("Add the semicolon on line 3.")))
    variant = replay.send(db_path, orig, orig.request, replay.Edits(), base_url=api.url, max_retries=0)
    result = comparison.compare(store, orig, variant)
    sample, base = result.samples[0], result.original
    slow = _describe_sample(1, dataclasses.replace(sample, latency_ms=123_456.0), base)
    assert " · 123.5 s (" in slow and "ms ·" not in slow.split(" (")[0], slow
    assert " · 850 ms (" in _describe_sample(1, dataclasses.replace(sample, latency_ms=850.0), base)


def test_a_rerun_sends_the_timeout_it_waits_never_a_sentinels_name(api, db_path, recorded):
    """The SDK's raw post() with no per-request timeout sent `x-stainless-timeout: NOT_GIVEN`;
    a rerun's calls (plain and streamed) say the timeout the client waits, as the read timeout does."""
    r = run(db_path, recorded, "--yes", api=api)
    assert r.exit_code == 0, r.output
    store = Store(open_db(db_path))
    turn = store.turns(store.conversations()[0].conversation_id)[0]
    api.responder = lambda body: None if "max_tokens" not in body else Reply(sse=message_events(message("again")))
    assert run(db_path, turn.turn_id, "--yes", "--set", "stream=true", api=api).exit_code == 0
    sent = [p["headers"] for p in api.received if p["path"] == "/v1/messages"]
    assert len(sent) == 2
    for headers in sent:
        assert headers["x-stainless-timeout"] == headers["x-stainless-read-timeout"]
        assert float(headers["x-stainless-timeout"]) == 600


def test_a_thread_mode_turn_is_rerun_with_its_whole_history(api, db_path, monkeypatch):
    with Recorder(db_path) as rec:
        first = message("Running.", tool=("toolu_1", {"cmd": "ls"}))
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 100, "tools": TOOLS, "thread": {"type": "create"},
                    "messages": [{"role": "user", "content": "list files"}]}, first)  # fmt: skip
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.py"}]}
        rec.record({"model": "claude-sonnet-4-5", "max_tokens": 100,
                    "thread": {"type": "continue", "previous_message_id": first["id"]}, "messages": [result]},
                   message("One file: a.py"))  # fmt: skip
    store = Store(open_db(db_path))
    turn = store.turns(store.conversations()[0].conversation_id)[1].turn_id
    orig = replay.original(store, turn)
    assert orig.rebuilt and "thread" not in orig.request and orig.request["tools"] == TOOLS
    assert orig.request["messages"] == [{"role": "user", "content": "list files"},
                                        {"role": "assistant", "content": first["content"]}, result]  # fmt: skip
    r = run(db_path, turn, "--yes", api=api)
    assert r.exit_code == 0, r.output
    assert len(sent_bodies(api)[0]["messages"]) == 3


def test_validation_says_what_the_api_would_reject(db_path, recorded):
    store = Store(open_db(db_path))
    orig = replay.original(store, recorded)
    ok = replay.apply(orig, replay.Edits())
    assert replay.validate(ok, orig.headers, orig) == []

    def problems(edits, headers=None):
        req = replay.apply(orig, edits)
        return [p.message for p in replay.validate(req, headers or orig.headers, orig)]

    assert any("tool_use toolu_1 has no tool_result" in p for p in problems(replay.Edits(set={"messages.2": None})))
    orphan = {"messages.1.content": [{"type": "text", "text": "hm"}]}
    assert any("tool_result for toolu_1 has no tool_use" in p for p in problems(replay.Edits(set=orphan)))
    marked = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    many = {"messages.0.content": [marked] * 4}
    assert any("5 cache_control breakpoints" in p for p in problems(replay.Edits(set=many)))
    search = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}}
    server = {"messages.1.content": [search, *orig.request["messages"][1]["content"]]}
    assert any("server tool web_search is used but not in tools" in p for p in problems(replay.Edits(set=server)))
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    signed = {"messages.1.content": [thinking, *orig.request["messages"][1]["content"]]}
    assert problems(replay.Edits(set=signed)) == []
    on_haiku = problems(replay.Edits(set=signed, model="claude-haiku-4-5"))
    assert any("signed for claude-sonnet-4-5" in p for p in on_haiku)
    assert any("rejects temperature" in p for p in problems(replay.Edits(set={"temperature": 0.2})))
    assert problems(replay.Edits(set={"temperature": 0.2}), {"anthropic-version": "2023-06-01"}) == []
    assert any("needs the anthropic-beta header mcp-client-" in p
               for p in problems(replay.Edits(set={"mcp_servers": []})))  # fmt: skip
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 500}}
    assert any("budget_tokens" in p for p in problems(replay.Edits(set=thinking)))
    # a turn recorded without thinking, given only a budget: no type, and the budget not below max_tokens
    untyped = problems(replay.Edits(set={"thinking.budget_tokens": 4096}))
    assert any("thinking.type" in p and "enabled" in p for p in untyped), untyped
    assert any("(4096) must be less than max_tokens (300)" in p for p in untyped), untyped
    assert any("thinking.type 'on'" in p for p in problems(replay.Edits(set={"thinking": {"type": "on"}})))
    assert any("thinking must be an object" in p for p in problems(replay.Edits(set={"thinking": 4096})))
    for ok in ({"thinking": {"type": "adaptive"}}, {"thinking": {"type": "disabled"}},
               {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4096}):  # fmt: skip
        assert problems(replay.Edits(set=ok)) == [], ok


def test_bad_edits_are_one_line(api, db_path, recorded):
    for args, says in [
        (["--message", "9=hi"], "the request has 3 messages"),
        (["--set", "max_tokens=lots"], "is not JSON"),
        (["--set", "temperature=0.5"], "problem above"),
        (["--system", "@/nope/missing.txt"], "cannot read"),
        (["--header", "x-api-key=1"], "--header wants"),
        (["--set", 'messages.9.content="x"'], "--set messages.9.content: no element 9"),
        (["--set", 'messages.x.content="x"'], "--set messages.x.content: no element x"),
        (["--set", 'model.name="x"'], "--set model.name: model is not an object or a list"),
        (["--base-url", "notaurl"], "--base-url 'notaurl' is not an http(s) URL"),
    ]:
        r = run(db_path, recorded, *args, "--yes", api=api)
        assert r.exit_code == 2 and says in r.stderr, (args, r.output)
    r = run(db_path, "turn_nope", "--yes", api=api)
    assert r.exit_code == 2 and "no turn 'turn_nope'" in r.stderr
    assert [p for p in api.received if p["path"] == "/v1/messages"] == []
    r = run(db_path, recorded, api=api)  # not a terminal and no --yes: nothing is sent
    assert r.exit_code == 2 and "--yes" in r.stderr


def test_estimate_falls_back_to_the_recorded_usage(db_path, recorded):
    store = Store(open_db(db_path))
    orig = replay.original(store, recorded)
    req = replay.apply(orig, replay.Edits(model="claude-haiku-4-5"))
    est = replay.estimate(orig, req, PriceTable.load(), 2, lambda r: None)
    assert est.source == "recorded usage"
    grew = len(json.dumps(req)) / len(json.dumps(orig.request))
    assert est.input_tokens == round(400 * grew)
    assert est.cost_usd == pytest.approx(2 * (est.input_tokens * 1.0 + 20 * 5.0) / 1e6)
    assert est.max_cost_usd == pytest.approx(2 * (est.input_tokens * 1.0 + 300 * 5.0) / 1e6)


def test_word_level_diff_and_side_by_side():
    from replayer.diffing import spread, words
    from replayer.tui.render import side_by_side

    ops = words("Add the semicolon on line 3.", "Add a semicolon on line 4.")
    assert ("-", "the") in ops and ("+", "a") in ops and ("-", "3") in ops and ("+", "4") in ops
    assert "".join(t for op, t in ops if op != "+") == "Add the semicolon on line 3."
    assert "".join(t for op, t in ops if op != "-") == "Add a semicolon on line 4."
    left, right = side_by_side(ops)
    assert left.plain == "Add the semicolon on line 3." and right.plain == "Add a semicolon on line 4."
    assert {left.plain[s.start : s.end] for s in left.spans} == {"the", "3"}
    assert {right.plain[s.start : s.end] for s in right.spans} == {"a", "4"}
    a = message("same", tool=("t1", {"x": 1}))
    b = message("same", tool=("t2", {"x": 1}))  # another id, same call: the same output
    c = message("different")
    s = dataclasses.asdict(spread([a, b, c, {"type": "error"}]))
    assert s == {"samples": 4, "answered": 3, "distinct_outputs": 2, "tool_calls": {"run": 2},
                 "stop_reasons": {"tool_use": 2, "end_turn": 1}}  # fmt: skip



def test_the_readme_thinking_example_sends_a_valid_request_and_a_bare_budget_is_refused(api, db_path, recorded):
    conv = Store(open_db(db_path)).conversations()[0].conversation_id
    bare = run(db_path, f"{conv}:-1", "--set", "thinking.budget_tokens=4096", "--yes", api=api)
    assert bare.exit_code == 2 and "thinking has no type" in bare.output and not sent_bodies(api), bare.output
    readme = run(db_path, f"{conv}:-1", "--message", "-1=Use the staging bucket", "--set",
                 'thinking={"type": "enabled", "budget_tokens": 4096}', "--set", "max_tokens=8192", "--yes", api=api)
    assert readme.exit_code == 0, readme.output
    (sent,) = sent_bodies(api)
    assert (sent["thinking"], sent["max_tokens"]) == ({"type": "enabled", "budget_tokens": 4096}, 8192)

def test_base_url_flag(api, db_path, recorded):
    r = CliRunner().invoke(cli, ["--db", str(db_path), "rerun", recorded, "--base-url", api.url, "--yes"],
                           env={"ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(sent_bodies(api)) == 1 and "1 distinct output in 1 answered sample;" in r.stdout


def test_a_turn_can_be_named_by_conversation_and_index(api, db_path, recorded):
    conv = Store(open_db(db_path)).conversations()[0].conversation_id
    r = run(db_path, f"{conv}:-1", "--yes", "--json", api=api)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["turn_id"] == recorded
    r = run(db_path, f"{conv}:7", "--yes", api=api)
    assert r.exit_code == 2 and "has turns 0..1" in r.stderr


def test_a_tool_inputs_key_added_or_removed_says_so_never_null():
    """A key only one side has is added or removed; `null` is a value a side can hold."""
    from replayer.cli.rerun import _describe_tools
    from replayer.models import JsonChange, ToolDiff

    changes = [JsonChange("deep", "removed", {"k": [1, 2]}, None), JsonChange("why", "added", None, "late"),
               JsonChange("n", "changed", None, 2)]  # fmt: skip
    text = _describe_tools([ToolDiff("refund", "changed", {}, changes)])
    assert text == 'refund input changed (deep: removed (was {"k": [1, 2]}); why: added "late"; n: null -> 2)'


def test_a_system_prompt_of_several_blocks_keeps_the_blocks_the_edit_left_alone():
    """The editor shows the blocks' texts one per line; an edit to one of them changes that block
    only: the others, and the cache breakpoint, go out as recorded (the rerun's cache hit and cost
    then differ only for what the user changed)."""
    from replayer.replay import Edits, edit_request

    rules = {"type": "text", "text": "You are a refund agent.\nRefunds within 30 days."}
    brief = {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    request = {"model": "m", "max_tokens": 5, "system": [rules, brief], "messages": [{"role": "user", "content": "hi"}]}

    def edited(text):
        return edit_request(request, Edits(system=text))["system"]

    shown = f"{rules['text']}\n{brief['text']}"
    assert edited("Always apologise. " + shown) == [{**rules, "text": "Always apologise. " + rules["text"]}, brief]
    assert edited(rules["text"] + "\nBe very brief.") == [rules, {**brief, "text": "Be very brief."}]
    assert edited(shown + "\nSign off.") == [rules, brief, {"type": "text", "text": "Sign off."}]
    assert edited(f"{rules['text']}\nCheck the order.\n{brief['text']}") == [
        rules, {"type": "text", "text": "Check the order."}, brief]  # fmt: skip
    assert edited(shown) == [rules, brief]
    assert edited("All new.") == [{**brief, "text": "All new."}]  # the breakpoint stays at the end
    assert "system" not in edit_request(request, Edits(system=""))  # no empty block, which the API refuses
    assert request["system"] == [rules, brief]  # the original is left as it was


def test_a_cancelled_rerun_stops_waiting_and_stores_only_what_is_true(api, db_path, recorded, monkeypatch):
    """A sample still out when the rerun is cancelled is stored as abandoned (its request, no
    answer); its thread keeps nothing alive, and its answer, when it comes later, is not recorded."""
    import threading
    import time

    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    store = Store(open_db(db_path))
    orig = replay.original(store, recorded)
    answers = iter([Reply(body=message("quick")), Reply(body=message("too late"), hang=1.5)])
    api.responder = lambda body: next(answers)
    cancel = threading.Event()
    done = []

    def answered(i, error):
        done.append(i)
        cancel.set()  # the first answer in: cancel the other

    t0 = time.monotonic()
    variant = replay.send(db_path, orig, orig.request, replay.Edits(), samples=2, base_url=api.url, max_retries=0,
                          on_done=answered, cancel=cancel)  # fmt: skip
    assert time.monotonic() - t0 < 1.2 and len(done) == 1
    rerun_threads = [t for t in threading.enumerate() if t.name.startswith("replayer-rerun")]
    assert rerun_threads and all(t.daemon for t in rerun_threads)
    time.sleep(2.0)  # the late answer has come, and was not recorded
    assert len(api.received) == 2
    samples = comparison.compare(store, orig, variant).samples
    assert [s.text for s in samples if s.error is None] == ["quick"]
    (gave_up,) = [s for s in samples if s.error is not None]
    assert gave_up.error["type"] == "abandoned" and gave_up.response is None and gave_up.status is None
    assert gave_up.request == orig.request
    assert gave_up.cost_usd is None and gave_up.cost_delta_usd is None  # not known: never shown as $0


def test_ctrl_c_ends_a_rerun_waiting_for_an_answer_in_one_line(api, db_path, recorded):
    import os
    import signal
    import subprocess
    import sys
    import time

    api.responder = lambda body: Reply(body={"input_tokens": 5}) if "max_tokens" not in body else Reply(hang=30)
    env = {**os.environ, "ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": api.url}
    proc = subprocess.Popen([sys.executable, "-m", "replayer.cli", "--db", str(db_path), "rerun", recorded, "--yes"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while not any(b.get("max_tokens") for b in sent_bodies(api)) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert last.startswith("interrupted: samples without an answer were abandoned"), err
    store = Store(open_db(db_path))
    (variant,) = store.variants_of(recorded)
    sample = comparison.compare(store, replay.original(store, recorded), variant.variant).samples[0]
    assert sample.error is not None and sample.error["type"] == "abandoned"


def test_a_retried_call_says_it_was_retried_and_counts_every_attempts_time(api, db_path):
    """A sample answered after a 529 printed `sample 1: end_turn · … · 58 ms` with nothing about
    the retry, and its latency (and the original's, retried too) was its last attempt's alone,
    where `replayer compare` adds up every attempt. Now each says how many attempts it took and
    why the others failed, and its latency is every attempt's, as compare's."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

    def busy():
        return Reply(status=529, body=overloaded, headers={"retry-after-ms": "1"}, delay=0.05)

    with Recorder(db_path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=2))
        api.enqueue(busy())
        api.enqueue(Reply(body=message("Done."), delay=0.05))
        client.messages.create(model="claude-sonnet-4-5", max_tokens=300, messages=[{"role": "user", "content": "Go"}])
    store = Store(open_db(db_path))
    turn = store.turns(store.conversations()[0].conversation_id)[0]
    assert [a.status for a in turn.attempts] == [529, 200]
    seen = []

    def answer(body):
        if "max_tokens" not in body:
            return None
        seen.append(body)
        return busy() if len(seen) == 1 else Reply(body=message("Done again."), delay=0.05)

    api.responder = answer
    r = run(db_path, turn.turn_id, "--yes", api=api)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    said = " · 2 attempts (1 failed: 529 overloaded_error)"
    assert lines[0].startswith("original: end_turn") and lines[0].endswith(said)
    (line,) = [x for x in lines if x.startswith("sample 1:")]
    assert line.endswith(said)
    (variant,) = store.variants_of(turn.turn_id)
    sample = store.turns(variant.variant)[0]
    result = comparison.compare(store, replay.original(store, turn.turn_id), variant.variant)
    for view, summary in ((result.original, turn), (result.samples[0], sample)):
        every = [a.latency_ms for a in summary.attempts]
        assert view.latency_ms == sum(every) and view.latency_ms > every[-1]
        assert view.attempts == 2 and view.error is None
        assert [e["type"] for e in view.attempt_errors] == ["overloaded_error"]
        assert view.attempt_errors[0]["status"] == 529
    assert f" · {ms(result.samples[0].latency_ms)} (" in line  # shown as compare counts it
    assert f" · {ms(result.original.latency_ms)} · " in lines[0]


def test_rerun_json_says_a_cut_streams_error_as_show_json_and_export_do(api, db_path):
    """A stream whose connection broke after its 200 (then asked again: the answer is its
    turn's attempt 1): `rerun --json` gave that error the attempt's 200 in `attempt_errors`
    (and a sample's cut stream in `error`), where `show --json` and `export` give it as recorded,
    with no status of its own (the connection broke), the attempt's 200 beside it. rerun --json
    now says what they say; its text still reads `connection_error mid-stream`."""
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    with Recorder(db_path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        api.enqueue(Reply(sse=message_events(message("streamed once")), drop_after_events=4),
                    Reply(sse=message_events(message("streamed once"))))  # fmt: skip
        with pytest.raises(Exception):  # noqa: B017 - the HTTP library's own error, as without replayer
            for _event in client.messages.create(**ask, stream=True):
                pass
        for _event in client.messages.create(**ask, stream=True):
            pass
    conv = Store(open_db(db_path)).conversations()[0].conversation_id
    shown = json.loads(CliRunner().invoke(cli, ["--db", str(db_path), "show", conv, "--json"]).stdout)
    [turn] = shown["turns"]
    cut, answered = turn["attempts"]
    assert (cut["status"], cut["error"]["status"], answered["error"]) == (200, None, None), turn
    exported = [json.loads(x) for x in CliRunner().invoke(cli, ["--db", str(db_path), "export"]).stdout.splitlines()]
    assert [line["error"] for line in exported] == [cut["error"], None]
    api.received.clear()
    api.responder = lambda body: (None if "max_tokens" not in body
                                  else Reply(sse=message_events(message("again")), drop_after_events=4))  # fmt: skip
    r = run(db_path, turn["turn_id"], "--yes", "--json", api=api)
    assert r.exit_code == 1, r.output  # the sample's stream was cut too
    doc = json.loads(r.stdout)
    assert doc["original"]["attempt_errors"] == [cut["error"]] and doc["original"]["error"] is None
    sample = doc["samples"][0]
    assert sample["status"] == 200 and sample["error"]["status"] is None, sample
    assert sample["attempt_errors"] == [sample["error"]]
    assert sample["error"]["message"] == cut["error"]["message"] == "the connection closed before the stream ended"
    text = run(db_path, turn["turn_id"], "--yes", api=api)
    assert "sample 1: ERROR connection_error mid-stream" in text.stdout, text.stdout
    assert "2 attempts (1 failed: connection_error mid-stream)" in text.stdout, text.stdout
