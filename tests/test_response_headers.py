"""What the API said with each answer about its limits and retrying (retry-after, x-should-retry,
anthropic-ratelimit-*): kept per attempt, an allowlist of response headers, exported, shown, and
said again by a replay."""

from __future__ import annotations

import logging
import sqlite3

import anthropic
import pytest
from conftest import FAKE_KEY, exported
from test_capture import ERR_429, USER, msg
from textual.widgets import Static
from tui_data import open_first_conversation, settle

from replayer import Recorder
from replayer.fakeapi import Reply, message_events
from replayer.playback.inprocess import Replaying, serving
from replayer.playback.matching import Matcher
from replayer.store.export import cassette_lines
from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app


def limits(requests_left: int, tokens_left: int) -> dict[str, str]:
    """Rate-limit headers as the API sends them (the names as capitalised as a proxy may send them)."""
    return {
        "Anthropic-RateLimit-Requests-Limit": "50",
        "anthropic-ratelimit-requests-remaining": str(requests_left),
        "anthropic-ratelimit-requests-reset": "2026-12-05T21:00:30Z",
        "anthropic-ratelimit-tokens-limit": "80000",
        "anthropic-ratelimit-tokens-remaining": str(tokens_left),
        "anthropic-ratelimit-tokens-reset": "2026-12-05T21:00:12Z",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-05T21:00:12Z",
        "anthropic-ratelimit-output-tokens-limit": "16000",
        "anthropic-ratelimit-output-tokens-remaining": "15000",
        "anthropic-ratelimit-output-tokens-reset": "2026-12-05T21:00:02Z",
    }


NEVER = {
    "set-cookie": "session=secret; Path=/", "cf-ray": "8f00-LAX", "cf-cache-status": "DYNAMIC",
    "anthropic-organization-id": "org-123", "via": "1.1 google", "x-envoy-upstream-service-time": "1234567",
}  # fmt: skip
"""Headers the API sends that are never kept."""

THROTTLED = {"retry-after": "1", "retry-after-ms": "5", "x-should-retry": "true"}
"""A 429's retry headers: the SDK waits retry-after-ms (5 ms) when it is there."""


def kept(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def throttled_then_answered(api, client) -> None:
    """A 429 that says when to retry, then the answer: one turn of two attempts."""
    api.enqueue(Reply(status=429, body=ERR_429, headers={**THROTTLED, **limits(0, 80000), **NEVER}),
                Reply(body=msg("Hi!"), headers={**limits(49, 79000), **NEVER}))  # fmt: skip
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)


def test_each_attempt_keeps_what_the_api_said_of_its_limits_and_nothing_else(api, rec, client, db_path):
    """The 429 and the retry that answered each keep their own headers, names lowercased and
    values as received; cookies, Cloudflare's and the organization id are never kept. A stream
    keeps them too, and a second answer with the same headers shares their stored copy."""
    throttled_then_answered(api, client)
    api.enqueue(Reply(sse=message_events(msg("streamed")), headers={**limits(48, 78000), **NEVER}),
                Reply(body=msg("again"), headers={**limits(48, 78000), **NEVER}))  # fmt: skip
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=USER) as stream:
        assert stream.get_final_message().content[0].text == "streamed"
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}])
    assert rec.flush(10)
    first, retry, streamed, again = exported(db_path)
    assert (first["status"], first["attempt"], retry["attempt"]) == (429, 0, 1)
    assert first["response_headers"] == kept({**THROTTLED, **limits(0, 80000)})
    assert retry["response_headers"] == kept(limits(49, 79000))
    assert streamed["stream"] and streamed["response_headers"] == kept(limits(48, 78000))
    assert again["response_headers"] == streamed["response_headers"]
    db = sqlite3.connect(db_path)
    blobs = db.execute("SELECT response_headers FROM attempts ORDER BY id").fetchall()
    assert blobs[2] == blobs[3] and len(set(blobs)) == 3  # the same headers stored once
    store = Store(open_db(db_path))
    stored = " ".join(store.blob_texts([i for (i,) in db.execute("SELECT id FROM blobs")]))
    for name, value in NEVER.items():
        assert name not in stored and value not in stored


def test_an_attempt_with_no_such_headers_exports_an_empty_object(api, rec, client, db_path):
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": USER}, msg("recorded"))
    assert rec.flush(10)
    assert [line["response_headers"] for line in exported(db_path)] == [{}, {}]


def test_an_older_database_migrates_and_its_attempts_export_no_headers(api, rec, client, db_path):
    """A database from before response headers were kept (no column, m016 not applied) opens,
    gets the column, and exports `{}` for what it holds; what is recorded after keeps them."""
    api.enqueue(Reply(body=msg("old"), headers=limits(49, 79000)))
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    rec.close()
    db = sqlite3.connect(db_path)
    db.execute("ALTER TABLE attempts DROP COLUMN response_headers")
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm016_response_headers'")
    db.commit()
    db.close()
    [line] = exported(db_path)  # opening it migrates it
    assert line["response_headers"] == {} and line["response"]["content"][0]["text"] == "old"
    with Recorder(db_path) as again:
        api.enqueue(Reply(body=msg("new"), headers=limits(48, 78000)))
        again.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY)).messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "later"}])
    assert [line["response_headers"] for line in exported(db_path)] == [{}, kept(limits(48, 78000))]


def _retry_waits(caplog) -> list[float]:
    return [r.args[1] for r in caplog.records if r.msg == "Retrying request to %s in %f seconds"]


def test_a_replay_answers_with_the_recorded_retry_headers_its_wait_paced_as_every_recorded_time(
        api, rec, client, db_path, caplog):
    """Replayed, the 429 says retry-after(-ms) as it did and the limits the answer had. The wait
    it asks for is a recorded time: as fast as possible (in process, and the server's default) the
    agent's SDK waits next to nothing, not the recorded 5 ms and not its own half-second backoff;
    at --speed 1 it waits what it waited then, at --speed 0.5 twice that."""
    from replayer.playback.server import RecordingPlayer, ReplayServer
    from replayer.proxy.run import run_in_background

    throttled_then_answered(api, client)
    rec.close()
    store = Store(open_db(db_path))
    [conversation] = store.conversations()
    lines = list(cassette_lines(store, conversation_id=conversation.conversation_id))
    caplog.set_level(logging.INFO, logger="anthropic")
    replayed = anthropic.Anthropic(base_url="http://127.0.0.1:9", api_key=FAKE_KEY, max_retries=2)
    with serving(Replaying(Matcher(lines, with_errors=True))) as handler:  # the retry served too
        raw = replayed.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    assert handler.refused == []
    assert raw.parse().content[0].text == "Hi!"
    assert raw.headers["anthropic-ratelimit-tokens-remaining"] == "79000"
    assert _retry_waits(caplog) == [pytest.approx(1e-6)]
    for speed, wait in ((None, 1e-6), (1.0, 0.005), (0.5, 0.01)):
        caplog.clear()
        server = run_in_background(ReplayServer(RecordingPlayer(Matcher(lines, with_errors=True)),
                                                "http://127.0.0.1:9", speed=speed))
        try:
            through = anthropic.Anthropic(base_url=server.url, api_key=FAKE_KEY, max_retries=2)
            got = through.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
        finally:
            server.stop()
        assert got.parse().content[0].text == "Hi!"
        assert _retry_waits(caplog) == [pytest.approx(wait)], speed


@pytest.mark.parametrize("width", [100, 160])
async def test_the_usage_tab_shows_each_attempts_limits_and_the_response_tab_a_failed_ones(api, rec, client,
                                                                                          db_path, width):
    """A turn retried after a 429: the Usage tab's attempt lines each have their own figures
    under them (retry-after under the 429); a turn that failed says its limits on the Response tab."""
    throttled_then_answered(api, client)
    api.enqueue(*[Reply(status=429, body=ERR_429, headers={**THROTTLED, **limits(0, 0)})] * 3)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER + [
            {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "more"}])
    rec.close()
    app = make_app(db_path)
    async with app.run_test(size=(width, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("4")
        await settle(pilot)
        usage = str(screen.query_one("#usage-body", Static).render()).splitlines()
        below = [line.strip() for line in usage[usage.index("attempts") + 1:] if line.strip()]
        assert below[0].startswith("#0  429") and below[1] == "retry-after 1 s, retry-after-ms 5, x-should-retry true"
        assert below[2] == "requests       0/50 left  resets 21:00:30"  # (the tests' zone is UTC)
        assert below[3] == "tokens         80,000/80,000 left  resets 21:00:12"
        second = below.index(next(line for line in below if line.startswith("#1  200")))
        assert below[second + 1] == "requests       49/50 left  resets 21:00:30"
        assert below[second + 2] == "tokens         79,000/80,000 left  resets 21:00:12"
        assert "output-tokens  15,000/16,000 left  resets 21:00:02" in below
        assert all(len(line) <= 60 for line in below[1:second]), below  # the tabs' width at 160 columns
        await pilot.press("j", "2")  # the turn whose every attempt got a 429
        await settle(pilot)
        shown = "\n".join(str(s.render()) for s in screen.query("#response-body Static"))
        assert "429 rate_limit_error: Too many requests" in shown
        assert "retry-after 1 s, retry-after-ms 5, x-should-retry true" in shown
        assert "tokens         0/80,000 left  resets 21:00:12" in shown


async def test_a_429s_response_tab_says_the_error_not_a_reply_cut_mid_stream(api, rec, client, db_path):
    """A 429 whose body was kept showed on the Response tab as a JSON response followed by
    `rate_limit_error: Too many requests  (cut here)` and `stop_reason: —`, as if a reply had been
    cut off mid-stream, for an error that never had one. It now says the error first, as a turn
    with no body kept does (`No response: 429 ...`), and then the body as received."""
    from rich.syntax import Syntax

    api.enqueue(*[Reply(status=429, body=ERR_429, headers={**THROTTLED, **limits(0, 0)})] * 3)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    rec.close()
    app = make_app(db_path)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_first_conversation(pilot)
        await pilot.press("2")
        await settle(pilot)
        statics = list(screen.query("#response-body Static"))
        shown = [str(s.render()) for s in statics]
        assert shown[0] == "No response: 429 rate_limit_error: Too many requests", shown
        assert not any("cut here" in s or "stop_reason" in s for s in shown), shown
        bodies = [s.content for s in statics if isinstance(s.content, Syntax)]
        assert len(bodies) == 1 and '"rate_limit_error"' in bodies[0].code, shown


def test_the_redaction_hook_sees_them_and_can_take_them_out(api, db_path):
    seen = []

    def redact(record):
        seen.append(dict(record["response_headers"]))
        return {**record, "response_headers": {k: v for k, v in record["response_headers"].items()
                                               if not k.startswith("anthropic-ratelimit-")}}

    with Recorder(db_path, redact=redact) as rec:
        throttled_then_answered(api, rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY)))
    assert seen == [kept({**THROTTLED, **limits(0, 80000)}), kept(limits(49, 79000))]
    assert [line["response_headers"] for line in exported(db_path)] == [THROTTLED, {}]
