"""`replayer replay`'s parts on their own: the matcher (cassette lines in, answers or refusals
out), the wire (SSE from recorded or synthesized events, paced), and the replay server's
decisions (Answer, Refusal, GoLive with a trivial live policy) with the real SDK as its client.
The whole command, recorded then replayed, is tests/test_replay.py."""

from __future__ import annotations

import json

import pytest
from conftest import FAKE_KEY, exported

from replayer import sse
from replayer.playback.answer import chunks, synthesize
from replayer.playback.matching import Answer, Matcher, Refusal, first_difference, parse_path, without


def request(*texts: str, model: str = "claude-haiku-4-5", **extra) -> dict:
    messages = []
    for i, text in enumerate(texts):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"model": model, "max_tokens": 100, "messages": messages, **extra}


def reply(text: str) -> dict:
    return {"id": f"msg_{abs(hash(text))}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 3}}


_clock = iter(range(10_000))


def line(conv: str, index: int, req: dict, *, response: dict | None = None, status: int | None = 200,
         attempt: int = 0, error: dict | None = None, stream: bool = False, events=None) -> dict:
    """A cassette line (the export line plus events), with a start time in recorded order."""
    return {
        "turn_id": f"turn_{conv}_{index}", "conversation_id": conv, "index": index, "attempt": attempt,
        "started_at": f"2026-12-01T10:00:{next(_clock):05d}Z", "stream": stream, "endpoint": "/v1/messages",
        "request": req, "request_headers": {}, "status": status, "response": response, "error": error,
        "request_id": f"req_{conv}_{index}_{attempt}", "events": events,
    }


def ask(matcher: Matcher, req: dict) -> Answer | Refusal:
    return matcher.answer("/v1/messages", json.dumps(req).encode())


def text_of(answer: Answer | Refusal) -> str:
    assert isinstance(answer, Answer), answer
    assert answer.body is not None
    return json.loads(answer.body)["content"][0]["text"]


# -- matching ---------------------------------------------------------------------------------------


def test_identical_requests_replay_in_recorded_order_and_conversations_keep_their_answers():
    """Two conversations sent the same first request and got different answers; each then went
    on from its own answer. Replayed in another order, each conversation still gets its own
    answers: the identical first requests take the answers in recorded order, and the later
    requests, which hold those answers, match only their own conversation."""
    a0, b0 = request("hello"), request("hello")
    a1 = request("hello", "A says hi", "and?")
    b1 = request("hello", "B says hi", "and?")
    m = Matcher([line("A", 0, a0, response=reply("A says hi")), line("B", 0, b0, response=reply("B says hi")),
                 line("A", 1, a1, response=reply("A again")), line("B", 1, b1, response=reply("B again"))])
    assert text_of(ask(m, request("hello"))) == "A says hi"
    assert text_of(ask(m, request("hello"))) == "B says hi"
    assert text_of(ask(m, b1)) == "B again"  # B's second request first: still B's answer
    assert text_of(ask(m, a1)) == "A again"
    assert m.answered == 4 and m.not_asked() == (0, 0, 0) and not m.refusals
    third = ask(m, request("hello"))
    assert isinstance(third, Refusal) and "sent it more times than in the recording" in third.message


def test_json_equal_is_enough_key_order_and_spacing_do_not_matter():
    req = request("hi", stream=False)
    m = Matcher([line("A", 0, req, response=reply("yes"))])
    body = json.dumps(dict(reversed(list(req.items()))), indent=2).encode()
    got = m.answer("/v1/messages", body)
    assert isinstance(got, Answer) and got.status == 200 and got.headers["request-id"] == "req_A_0_0"


def test_a_lone_surrogate_in_a_recorded_string_matches_and_is_served():
    """JSON allows the escape \\ud800 alone (a recorded string can hold it); orjson refuses it."""
    req = request("half a pair: \ud800")
    said = reply("and back: \udfff")
    m = Matcher([line("A", 0, req, response=said), line("A", 1, dict(req, stream=True), response=said, stream=True)])
    plain = ask(m, req)
    assert isinstance(plain, Answer) and json.loads(plain.body or b"") == said
    streamed = ask(m, dict(req, stream=True))
    assert isinstance(streamed, Answer) and streamed.events is not None
    assert sse.assemble(b"".join(c for _, c in chunks(streamed.events))).message == said


def test_an_integer_beyond_64_bits_matches_only_its_own_value():
    """orjson reads such an integer as a float: two that differ in the last digit would compare
    equal, and the recorded one (read exactly) would not match the same integer sent again."""
    big = 2**70 + 1
    req = request("hi", metadata={"user_id": "u"}, seed=big)
    m = Matcher([line("A", 0, req, response=reply("yes"))])
    assert isinstance(ask(m, dict(req, seed=big + 1)), Refusal)
    assert text_of(ask(m, req)) == "yes"


def test_recorded_retries_are_skipped_unless_with_errors():
    req = request("busy?")
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    lines = [line("A", 0, req, status=529, response=overloaded, error={"type": "overloaded_error",
                                                                       "message": "Overloaded", "status": 529}),
             line("A", 0, req, status=None, attempt=1, error={"type": "connection_error", "message": "reset",
                                                               "status": None}),
             line("A", 0, req, attempt=2, response=reply("finally"))]
    plain = Matcher(lines)
    assert text_of(ask(plain, req)) == "finally"
    assert plain.not_asked() == (0, 0, 0)

    errors = Matcher(lines, with_errors=True)
    first, second, third = (ask(errors, req) for _ in range(3))
    assert isinstance(first, Answer) and first.status == 529 and json.loads(first.body or b"") == overloaded
    assert isinstance(second, Answer) and second.status is None  # the connection is dropped again
    assert text_of(third) == "finally"


def test_a_call_that_never_succeeded_replays_its_errors_even_without_with_errors():
    req = request("busy?")
    err = {"type": "rate_limit_error", "message": "slow down", "status": 429}
    m = Matcher([line("A", 0, req, status=429, error=err, attempt=a) for a in range(3)])
    got = [ask(m, req) for _ in range(3)]
    assert [g.status for g in got] == [429, 429, 429]
    assert json.loads(got[0].body or b"")["error"] == {"type": "rate_limit_error", "message": "slow down"}


def test_strict_mismatch_names_the_closest_request_and_the_first_difference():
    tool_turn = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [
        {"role": "user", "content": "read a.py"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "print('hello')"}]}]}
    m = Matcher([line("A", 0, request("other"), response=reply("x")), line("A", 1, tool_turn, response=reply("y"))])
    changed = json.loads(json.dumps(tool_turn))
    changed["messages"][2]["content"][0]["content"] = "print('goodbye')"
    got = ask(m, changed)
    assert isinstance(got, Refusal) and got.status == 400
    first, second = got.message.splitlines()
    assert first == "replayer replay: no recorded request matches this one; closest: conversation A turn 1"
    assert second == ("  first difference: message 2, block 0 (tool_result), content: "
                      "\"print('hello')\" -> \"print('goodbye')\"")
    error = json.loads(got.body)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "message 2, block 0 (tool_result)" in error["error"]["message"]
    assert m.refusals == [got] and m.not_asked() == (2, 2, 0)


def test_long_strings_are_cut_around_where_they_part():
    old = "x" * 200 + "the old ending of a long system prompt" + "y" * 200
    new = "x" * 200 + "the new ending of a long system prompt" + "y" * 200
    said = first_difference({"system": old}, {"system": new})
    # from 20 characters before the first that differs ("the " is common), 60 of each side
    assert said == f'system: …"{"x" * 16}the old ending of a long system prompt{"y" * 6}"… -> ' \
                   f'…"{"x" * 16}the new ending of a long system prompt{"y" * 6}"…'


def tool(name: str, description: str) -> dict:
    return {"name": name, "description": description, "input_schema": {"type": "object"}}


def test_tools_are_told_apart_by_name_not_place():
    """A framework that keeps its tools in a set sends them in another order: said so, and a
    tool whose content changed is named by its own name, wherever it is in each request."""
    clock, news = tool("get_time", "Get the local time in a city."), tool("get_news", "Get the news for a city.")
    recorded = request("hi", tools=[clock, news])
    said = first_difference(recorded, request("hi", tools=[news, clock]))
    assert said == "tools: the same tools in another order: get_time, get_news -> get_news, get_time"
    changed = tool("get_time", "Get the time.")
    said = first_difference(recorded, request("hi", tools=[news, changed]))
    assert said == ('tool get_time (tool 0 when recorded, 1 now), description: "Get the local time in a city." -> '
                    '"Get the time."')
    said = first_difference(recorded, request("hi", tools=[changed, news]))
    assert said == 'tool 0 (get_time), description: "Get the local time in a city." -> "Get the time."'
    said = first_difference(recorded, request("hi", tools=[news]))
    assert said == 'tool 0 (get_time): {"name": "get_time", "description": "Get the local time in … -> (absent)'
    said = first_difference(recorded, request("hi", tools=[tool("lookup", "Look up."), clock, news]))
    assert said == 'tool 0 (lookup): (absent) -> {"name": "lookup", "description": "Look up.", "input_schema…'


def test_loose_serves_the_next_answer_of_the_closest_conversation_and_reports_drift():
    lines = [line("A", 0, request("plan the trip"), response=reply("A0")),
             line("A", 1, request("plan the trip", "A0", "go on"), response=reply("A1")),
             line("B", 0, request("something else entirely"), response=reply("B0"))]
    m = Matcher(lines, loose=True)
    assert text_of(ask(m, request("plan the trip"))) == "A0"
    drifted = ask(m, request("plan the trip", "A0", "go on, faster"))
    assert text_of(drifted) == "A1"
    [drift] = m.drift()
    assert (drift.conversation_id, drift.index) == ("A", 1)
    assert drift.difference == 'message 2, content: "go on" -> "go on, faster"'
    assert not m.refusals


def test_ignore_paths_remove_fields_before_comparing():
    recorded = request("it is 10:00", metadata={"user_id": "session-1"},
                       system=[{"type": "text", "text": "today is Monday"}, {"type": "text", "text": "be brief"}])
    m = Matcher([line("A", 0, recorded, response=reply("ok"))], ignore=["metadata.user_id", "system.0.text"])
    sent = request("it is 10:00", metadata={"user_id": "session-2"},
                   system=[{"type": "text", "text": "today is Tuesday"}, {"type": "text", "text": "be brief"}])
    assert text_of(ask(m, sent)) == "ok"
    strict = Matcher([line("A", 0, recorded, response=reply("ok"))], ignore=["metadata.user_id"])
    refused = ask(strict, sent)
    assert isinstance(refused, Refusal)
    assert 'system block 0, text: "today is Monday" -> "today is Tuesday"' in refused.message


def test_ignore_path_syntax():
    doc = {"messages": [{"content": [{"text": "a", "cache_control": {}}, {"text": "b"}]}, {"content": "c"}]}
    assert without(doc, parse_path("messages.*.content.*.cache_control")) == {
        "messages": [{"content": [{"text": "a"}, {"text": "b"}]}, {"content": "c"}]}
    assert without(doc, parse_path("messages.0")) == {"messages": [None, {"content": "c"}]}
    assert doc["messages"][0]["content"][0] == {"text": "a", "cache_control": {}}  # the original is untouched
    for bad in ("", "a..b", ".a"):
        with pytest.raises(ValueError, match="is not a field path"):
            parse_path(bad)


# -- the wire ---------------------------------------------------------------------------------------

FULL = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Let me see.", "signature": "c2ln"},
        {"type": "text", "text": "Reading it.", "citations": [{"type": "char_location", "cited_text": "x"}]},
        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.py", "lines": [1, 2]}},
        {"type": "a_block_from_the_future", "payload": {"k": 1}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None, "new_top_level_field": True,
    "usage": {"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 4},
}


def test_events_synthesized_from_a_message_build_the_same_message():
    events = synthesize(FULL)
    assert [e["event"] for e in events][:2] == ["message_start", "content_block_start"]
    assert events[-1]["event"] == "message_stop" and all(e["ms"] is None for e in events)
    built = sse.assemble(b"".join(c for _, c in chunks(events)))
    assert built.complete and built.message == FULL and not built.unknown_events


def test_a_stream_that_failed_mid_way_ends_with_its_error_event():
    events = synthesize(FULL, {"type": "overloaded_error", "message": "Overloaded", "status": 200})
    assert events[-1] == {"event": "error", "ms": None,
                          "data": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}
    assert "message_stop" not in [e["event"] for e in events]


def test_chunks_keep_recorded_grouping_and_gaps_scaled_by_speed():
    events = [{"event": "message_start", "data": {"type": "message_start"}, "ms": 100},
              {"event": "ping", "data": {"type": "ping"}, "ms": 100},
              {"event": "content_block_delta", "data": "not json", "ms": 300},
              {"event": None, "data": {"type": "odd"}, "ms": 700}]
    fast = list(chunks(events))
    assert [w for w, _ in fast] == [0.0, 0.0, 0.0]
    assert fast[0][1] == (b'event: message_start\ndata: {"type":"message_start"}\n\n'
                          b'event: ping\ndata: {"type":"ping"}\n\n')
    assert fast[1][1] == b"event: content_block_delta\ndata: not json\n\n"
    assert fast[2][1] == b'data: {"type":"odd"}\n\n'
    assert [w for w, _ in chunks(events, speed=1)] == [0.1, 0.2, 0.4]  # the first: after the attempt started
    assert [w for w, _ in chunks(events, speed=2)] == [0.05, 0.1, 0.2]


DEAD = "http://127.0.0.1:9"
"""Where no upstream listens."""


# -- the decision seam: Answer, Refusal, GoLive ------------------------------------------------------


class LiveWhenUnmatched:
    """A trivial live policy: the recording answers what it can; anything else goes live with
    one edit (a system prompt), recorded in a conversation of its own."""

    live = True

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher

    def decide(self, endpoint, body, headers):
        from replayer.playback.server import GoLive

        got = self.matcher.answer(endpoint, body)
        if isinstance(got, Answer):
            return got
        edited = dict(json.loads(body), system="You are the forked agent.")
        return GoLive(json.dumps(edited).encode(), "conv_forked", {"fork_of": "A"})


def test_the_server_answers_refuses_or_goes_live_as_the_player_decides(api):
    import anthropic

    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    known = request("from the recording")
    lines = [line("A", 0, known, response=reply("recorded answer"))]
    records: list = []

    offline = run_in_background(ReplayServer(RecordingPlayer(Matcher(lines)), api.url))
    live_server = ReplayServer(LiveWhenUnmatched(Matcher(lines)), api.url, records.append)
    live = run_in_background(live_server)
    try:
        sdk = anthropic.Anthropic(base_url=offline.url, api_key=FAKE_KEY, max_retries=0)
        assert sdk.messages.create(**known).content[0].text == "recorded answer"
        with pytest.raises(anthropic.BadRequestError, match="no recorded request matches"):
            sdk.messages.create(**request("never recorded"))
        with pytest.raises(anthropic.BadRequestError, match="is not in the recording"):
            sdk.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
        assert api.received == []  # offline: nothing reached the upstream

        sdk = anthropic.Anthropic(base_url=live.url, api_key=FAKE_KEY, max_retries=0)
        assert sdk.messages.create(**known).content[0].text == "recorded answer"
        assert api.received == []
        forked = sdk.messages.create(**request("never recorded"))
        assert forked.content[0].text == "reply 1 to 1 messages"  # the fake's own answer
        assert sdk.messages.count_tokens(model="claude-haiku-4-5",
                                         messages=[{"role": "user", "content": "hi"}]).input_tokens > 0
    finally:
        offline.stop()
        live.stop()
    sent = [json.loads(r["body"]) for r in api.received]
    assert sent[0] == dict(request("never recorded"), system="You are the forked agent.")
    assert api.received[1]["path"].startswith("/v1/messages/count_tokens")
    assert live_server.live_calls == 1
    [record] = [r.captured() for r in records]  # only the Messages call that went live is recorded
    assert record.ctx.conversation_id == "conv_forked" and record.ctx.tags == {"fork_of": "A"}
    assert json.loads(record.request_bytes) == sent[0] and record.status == 200


def test_a_recorded_dropped_connection_is_dropped_again_with_errors():
    """An attempt that got no answer (the connection failed) is replayed as one: the SDK sees a
    connection error, retries, and gets the answer that followed."""
    import anthropic

    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    req = request("hello?")
    lines = [line("A", 0, req, status=None, error={"type": "connection_error", "message": "reset", "status": None}),
             line("A", 0, req, attempt=1, response=reply("after the drop"))]
    matcher = Matcher(lines, with_errors=True)
    server = run_in_background(ReplayServer(RecordingPlayer(matcher), DEAD))
    try:
        once = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=0)
        with pytest.raises(anthropic.APIConnectionError):
            once.messages.create(**req)
        matcher = Matcher(lines, with_errors=True)
        server.proxy.player = RecordingPlayer(matcher)  # type: ignore[attr-defined]
        retrying = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=1)
        assert retrying.messages.create(**req).content[0].text == "after the drop"
        assert matcher.answered == 2
    finally:
        server.stop()


def test_bucket_keys_hold_as_much_memory_as_their_length():
    """A Matcher keeps a key per recorded request for the whole replay; orjson hands back its whole
    write buffer (64 KiB for a 5-7 KB output), so the key's JSON is copied to its length. 100 keys
    of ~6 KB messages: under 1.5 MB traced (6 MB and more uncopied)."""
    import tracemalloc

    from replayer.playback.matching import _bucket

    bodies = [{"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": f"{i} " + "x" * 6000}]}
              for i in range(100)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keys = [_bucket(body) for body in bodies]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(set(keys)) == 100
    assert grown < 1_500_000, f"{grown:,} bytes traced for 100 keys"


# -- the kind of answer: a stream or a message, as the request asks -----------------------------------

PLANNED = {
    "id": "msg_plan", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Two steps: look, then answer.", "signature": "c2lnbmF0dXJl"},
        {"type": "text", "text": "Looking it up."},
        {"type": "tool_use", "id": "toolu_plan", "name": "lookup", "input": {"item": 3, "note": "héllo ✓"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 40, "output_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}


def built(message) -> dict:
    """What the SDK built, as sent (its stream accumulator adds a `stop_details` of None)."""
    return {k: v for k, v in message.to_dict().items() if not (k == "stop_details" and v is None)}


def test_loose_answers_a_stream_with_events_and_a_plain_call_with_a_message_whatever_was_recorded():
    """A streamed request answered (loosely) by a recorded non-streamed message gets the events
    that stream it; a plain request answered by a recorded stream gets the message that stream
    built. The SDK builds the same message either way, and the drift says the kind changed."""
    import anthropic

    from replayer.fakeapi import message_events
    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    done = dict(reply("All done."), id="msg_done")
    lines = [line("A", 0, request("plan it"), response=PLANNED),
             line("A", 1, request("plan it", "Looking it up.", "go on", stream=True), response=done, stream=True,
                  events=[dict(e, ms=None) for e in message_events(done)])]
    matcher = Matcher(lines, loose=True)
    server = run_in_background(ReplayServer(RecordingPlayer(matcher), DEAD))
    try:
        sdk = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=0)
        with sdk.messages.stream(**request("plan it, please")) as s:
            kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in s]
            streamed = s.get_final_message()
        assert built(streamed) == PLANNED
        assert ("content_block_delta", "input_json_delta") in kinds and ("content_block_delta", "thinking_delta") \
            in kinds and kinds[-1] == ("message_stop", None)
        plain = sdk.messages.create(**request("plan it, please", "Looking it up.", "go on"))
        assert plain.to_dict() == done
    finally:
        server.stop()
    assert [(d.index, d.kind) for d in matcher.drift()] == [
        (0, "answered a stream from a non-streamed recording"),
        (1, "answered a non-streamed call from a recorded stream")]
    assert matcher.streams == 1 and matcher.synthesized == 0


CUT = {"type": "connection_error", "status": None,
       "message": "RemoteProtocolError: peer closed connection without sending complete message body"}


def dropped_then_answered(req: dict, message: dict) -> list[dict]:
    """A streamed call whose first attempt's connection broke after three events, then its retry."""
    events = [dict(e, ms=None) for e in synthesize(message)]
    partial = dict(message, content=[], stop_reason=None)
    return [line("A", 0, req, stream=True, response=partial, error=CUT, events=events[:3]),
            line("A", 0, req, stream=True, attempt=1, response=message, events=events)]


def test_a_stream_whose_connection_broke_breaks_again_with_errors():
    """With --with-errors a recorded stream cut mid-way is served as far as it came, then the
    connection breaks: the SDK fails as it did (not a message with no end), and the agent's retry
    gets the whole stream. A plain request answered from it loosely gets no answer at all."""
    import anthropic

    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    req = request("look it up", stream=True)
    lines = dropped_then_answered(req, PLANNED)
    matcher = Matcher(lines, with_errors=True)
    server = run_in_background(ReplayServer(RecordingPlayer(matcher), DEAD))
    try:
        sdk = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=0)
        kwargs = {k: v for k, v in req.items() if k != "stream"}
        seen = []
        with pytest.raises(anthropic.APIConnectionError), sdk.messages.stream(**kwargs) as s:
            for event in s:
                seen.append(event.type)
        # what came before the break (the SDK adds its own "thinking" event after the delta)
        assert seen == ["message_start", "content_block_start", "content_block_delta", "thinking"]
        with sdk.messages.stream(**kwargs) as s:
            assert built(s.get_final_message()) == PLANNED
        server.proxy.player = RecordingPlayer(Matcher(lines, with_errors=True, loose=True))  # type: ignore[attr-defined]
        with pytest.raises(anthropic.APIConnectionError):
            sdk.messages.create(**kwargs)
    finally:
        server.stop()


TIMED_OUT = {"type": "timeout_error", "status": None, "message": "ReadTimeout: The read operation timed out"}


def timed_out_then_answered(req: dict, message: dict) -> list[dict]:
    """A streamed call whose read timed out after three events, then one that timed out before any
    answer (both as the middleware records them), then the answer."""
    events = [dict(e, ms=None) for e in synthesize(message)]
    partial = dict(message, content=[], stop_reason=None)
    return [line("A", 0, req, stream=True, response=partial, error=TIMED_OUT, events=events[:3]),
            line("A", 0, req, stream=True, attempt=1, status=None, error=TIMED_OUT),
            line("A", 0, req, stream=True, attempt=2, response=message, events=events)]


def test_a_recorded_timeout_replays_as_a_timeout_in_process_and_through_the_server():
    """Agents branch on APITimeoutError: a recorded read timeout, mid-stream or before any answer,
    replays as one (not as APIConnectionError), at once. In process (the pytest plugin) the replayed
    read times out; through the replay server, a client with the redirecting middleware
    `replayer replay` gives Python children raises it from the server's word; a client without it
    sees the connection break (a server can't make a client's read time out but by holding it)."""
    import anthropic

    from replayer.playback.inprocess import Replaying, serving
    from replayer.playback.redirect import ReplayMiddleware
    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    req = request("look it up", stream=True)
    kwargs = {k: v for k, v in req.items() if k != "stream"}
    lines = timed_out_then_answered(req, PLANNED)

    def replays(sdk) -> None:
        seen = []
        with pytest.raises(anthropic.APITimeoutError), sdk.messages.stream(**kwargs) as s:
            for event in s:
                seen.append(event.type)
        assert seen == ["message_start", "content_block_start", "content_block_delta", "thinking"]
        with pytest.raises(anthropic.APITimeoutError), sdk.messages.stream(**kwargs) as s:
            s.get_final_message()
        with sdk.messages.stream(**kwargs) as s:
            assert built(s.get_final_message()) == PLANNED

    async def replays_async(sdk) -> None:
        with pytest.raises(anthropic.APITimeoutError):
            async with sdk.messages.stream(**kwargs) as s:
                await s.get_final_message()
        with pytest.raises(anthropic.APITimeoutError):
            async with sdk.messages.stream(**kwargs) as s:
                await s.get_final_message()
        async with sdk.messages.stream(**kwargs) as s:
            assert built(await s.get_final_message()) == PLANNED

    import asyncio

    with serving(Replaying(Matcher(lines, with_errors=True))):
        replays(anthropic.Anthropic(base_url=DEAD, api_key=FAKE_KEY, max_retries=0))
    with serving(Replaying(Matcher(lines, with_errors=True))):
        asyncio.run(replays_async(anthropic.AsyncAnthropic(base_url=DEAD, api_key=FAKE_KEY, max_retries=0)))

    server = run_in_background(ReplayServer(RecordingPlayer(Matcher(lines, with_errors=True)), DEAD))
    try:
        replays(anthropic.Anthropic(base_url=DEAD, api_key=FAKE_KEY, max_retries=0,
                                    middleware=[ReplayMiddleware(server.url)]))
        server.proxy.player = RecordingPlayer(Matcher(lines, with_errors=True))  # type: ignore[attr-defined]
        asyncio.run(replays_async(anthropic.AsyncAnthropic(base_url=DEAD, api_key=FAKE_KEY, max_retries=0,
                                                           middleware=[ReplayMiddleware(server.url)])))
        server.proxy.player = RecordingPlayer(Matcher(lines, with_errors=True))  # type: ignore[attr-defined]
        plain = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=0)
        for _ in range(2):  # no middleware: the connection breaks, mid-stream and before any answer
            with pytest.raises(anthropic.APIConnectionError) as raised, plain.messages.stream(**kwargs) as s:
                s.get_final_message()
            assert not isinstance(raised.value, anthropic.APITimeoutError)
        # a retry after the timeout before any answer gets the answer that followed, as recorded
        server.proxy.player = RecordingPlayer(Matcher(lines[1:], with_errors=True))  # type: ignore[attr-defined]
        retrying = anthropic.Anthropic(base_url=DEAD, api_key=FAKE_KEY, max_retries=1,
                                       middleware=[ReplayMiddleware(server.url)])
        with retrying.messages.stream(**kwargs) as s:
            assert built(s.get_final_message()) == PLANNED
    finally:
        server.stop()


def test_the_end_line_counts_calls_and_names_attempts_where_they_differ():
    """A call and its retries are one call of several attempts, as `record` counts them."""
    from replayer.cli.replay import summary

    busy = {"type": "overloaded_error", "message": "Overloaded", "status": 529}
    first, second = request("first"), request("second")
    lines = [line("A", 0, first, status=529, error=busy), line("A", 0, first, attempt=1, response=reply("one")),
             line("A", 1, second, status=529, error=busy), line("A", 1, second, attempt=1, response=reply("two"))]
    m = Matcher(lines, with_errors=True)
    assert summary(m, "x", (0, 0), 0, False) == ("replayer replay: answered 0 calls from x; no mismatch; no drift; "
                                            "2 recorded calls (4 attempts) not asked for; the command exited 0")
    for _ in range(2):
        ask(m, first)
    assert summary(m, "x", (0, 0), 0, False) == ("replayer replay: answered 1 call (2 attempts) from x; no mismatch; "
                                            "no drift; 1 recorded call (2 attempts) not asked for; the command "
                                            "exited 0")


def test_a_stream_cut_by_a_timeout_error_event_replays_as_that_event_not_a_broken_connection(api, rec, client,
                                                                                            db_path):
    """CUT_ERRORS names how the recorder says a body stopped coming (`connection_error`, and
    `timeout_error` for a read that timed out: both with no status of their own). An `event:
    error` of the API's own type `timeout_error` came after the 200 (status 200 in its error)
    and was taken for one of those by its type alone: `replay --with-errors` served it cut, and a
    recording with no events kept (`replayer export`) was streamed from its message without the
    error event, then a broken connection: the agent got the HTTP library's RemoteProtocolError
    where it had got the API's error (APIStatusError, timeout_error). It now gets that error
    again, from a cassette or an export; a read that timed out mid-stream (the recorder's
    timeout_error) still breaks off (test_a_recorded_timeout_replays_as_a_timeout_...)."""
    import anthropic

    from replayer.fakeapi import Reply, message_events
    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background
    from replayer.store.export import cassette_lines
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    timed_out = {"type": "error", "error": {"type": "timeout_error", "message": "Request timed out"}}
    api.enqueue(Reply(sse=[*message_events(PLANNED)[:3], {"event": "error", "data": timed_out}]))
    req = request("look it up")
    with rec.conversation("conv_timed_out"), pytest.raises(anthropic.APIStatusError) as recorded:
        for _event in client.with_options(max_retries=0).messages.create(**req, stream=True):
            pass
    assert recorded.value.type == "timeout_error" and recorded.value.status_code == 200
    assert rec.flush(10)
    [cassette] = cassette_lines(Store(open_db(db_path, create=False)), conversation_id="conv_timed_out")
    [plain] = exported(db_path)  # `replayer export`: no events kept (the stream is made from its message)
    assert cassette["status"] == 200 and cassette["error"]["type"] == "timeout_error"
    assert cassette["error"]["status"] == 200  # the API's error event, not a read that timed out
    assert "events" not in plain and plain["error"] == cassette["error"]
    for recorded in (cassette, plain):
        answer = ask(Matcher([recorded], with_errors=True), {**req, "stream": True})
        assert isinstance(answer, Answer) and not answer.cut and answer.events is not None
        assert answer.events[-1]["event"] == "error", answer.events
        server = run_in_background(ReplayServer(RecordingPlayer(Matcher([recorded], with_errors=True)), DEAD))
        try:
            sdk = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=0)
            with pytest.raises(anthropic.APIStatusError) as replayed:
                for _event in sdk.messages.create(**req, stream=True):
                    pass
            assert replayed.value.type == "timeout_error" and replayed.value.status_code == 200
        finally:
            server.stop()


@pytest.mark.parametrize(("kind", "status"), [("timeout_error", 504), ("billing_error", 402),
                                              ("overloaded_error", 529), ("a_future_error", 500)])
def test_a_plain_request_answered_from_a_stream_that_ended_in_an_error_event_gets_that_errors_status(kind, status):
    """A stream's error event came after its 200; a plain request answered from it (loosely)
    gets the error as the API answers a plain request with it: its own status, not a 500 for
    every type but the few once listed (timeout_error and billing_error were 500)."""
    error = {"type": kind, "message": "it went wrong", "status": 200}
    recorded = line("A", 0, request("look it up", stream=True), response=dict(PLANNED, content=[]), stream=True,
                    error=error)
    answer = ask(Matcher([recorded], loose=True, with_errors=True), request("look it up"))
    assert isinstance(answer, Answer) and answer.status == status and answer.body is not None
    assert json.loads(answer.body) == {"type": "error", "error": {"type": kind, "message": "it went wrong"}}
