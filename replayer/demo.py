"""Build the demo database: the shipped fixtures, recorded through the real SDK.

Each fixture is a conversation in wire format. A local fake Messages API answers every request
with the fixture's recorded attempts (errors and retries included), and the official SDK, wrapped
by a Recorder, makes the calls. So the demo database comes from exactly the code path a user's
agent runs, not from rows written by hand.

The fake answers in about a millisecond, which would make every conversation last `0s`. So
the demo runs on simulated time (`DemoClock`): the recorder reads its clocks (`Recorder._clock`
for when a call started, `Recorder._perf` for latencies and a stream's chunk times) from it, and
it moves only where a real agent's time would pass, all on the thread that makes the calls, so
every figure is the same on every build:
- the wire (`_Network`, the SDK's transport): the fake's answer, bytes untouched, reaches the SDK
  as late as the API would send it (`answer_times`: a first token after the prompt is read, then
  the output at the model's speed; a stream event by event);
- the SDK's wait before a retry: the `retry-after` the fake sent (`_DemoAnthropic`);
- between calls: the agent running its tools, a person reading and typing (`pause_before`).
Building it takes as long as before (about 2 s for 79 turns): nothing sleeps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
import warnings
import zlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx2

from .fakeapi import FakeAPI, Reply

SDK_KWARGS = ("model", "max_tokens", "messages", "stream")


def fixture_files() -> list[tuple[str, str]]:
    """(name, JSON text) of every shipped fixture, sorted by name."""
    folder = resources.files("replayer").joinpath("fixtures")
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            out.append((entry.name[:-5], entry.read_text("utf-8")))
    return sorted(out)


def load_fixtures() -> list[dict[str, Any]]:
    return [json.loads(text) for _, text in fixture_files()]


def _reply(attempt: dict[str, Any]) -> Reply:
    if "sse" in attempt:
        return Reply(status=attempt.get("status", 200), sse=attempt["sse"], headers=attempt.get("headers", {}))
    return Reply(status=attempt.get("status", 200), body=attempt.get("body"), headers=attempt.get("headers", {}))


def play(client: Any, api: FakeAPI, turn: dict[str, Any], network: _Network | None = None) -> None:
    """Send one fixture turn through the SDK the way an agent would, swallowing API errors."""
    import anthropic

    if network is not None:
        network.queued = float(turn.get("queued_s", 0))
    api.script.clear()
    api.enqueue(*(_reply(a) for a in turn["attempts"]))
    body = dict(turn["request"])
    kwargs = {k: body.pop(k) for k in SDK_KWARGS if k in body}
    c = client.with_options(max_retries=turn["max_retries"]) if "max_retries" in turn else client
    try:
        result = c.messages.create(**kwargs, extra_body=body or None, extra_headers=turn.get("headers") or None)
        if kwargs.get("stream"):
            for _ in result:
                pass
    except anthropic.APIError:
        pass  # the agent would see it; the recorder has it


MARK = ("made_by", "replayer demo")
"""The meta row that says the demo made a database (so it may replace it)."""


def refusal(path: Path) -> str | None:
    """Why the demo must not write to `path`, None when it may: nothing is there (or an empty
    file), or a database the demo made. Anything else is someone's data, never replaced."""
    if not path.exists():
        folder = next(p for p in path.absolute().parents if p.exists())  # the one it would be made in
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            what = "not a folder" if not folder.is_dir() else "not writable"
            return f"cannot create {path}: {folder} is {what}; pass --db with a new file in a writable folder"
        return None
    if path.is_file() and path.stat().st_size == 0:
        return None
    if path.is_dir():
        return f"{path} is a folder: pass --db with a new file for the demo"
    try:
        # immutable: reading someone's file leaves no -wal/-shm beside it (the mark is written and
        # checkpointed into the file before the demo records anything)
        con = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = ?", [MARK[0]]).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        row = None
    if row is not None and row[0] == MARK[1]:
        return None
    return f"{path} exists and is not a demo database: the demo won't replace it; pass --db with a new file"


class DemoClock:
    """Simulated time: stands still until `advance`d. `wall` is epoch seconds (`start_at` puts
    it on a fixture's day); `perf`, the interval clock, only ever goes forward."""

    def __init__(self, start: float) -> None:
        self._wall = start
        self._perf = 0.0

    def wall(self) -> float:
        return self._wall

    def perf(self) -> float:
        return self._perf

    def start_at(self, epoch: float) -> None:
        self._wall = epoch

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._perf += seconds


def _share(key: str | bytes) -> float:
    """A number in [0, 1) fixed by `key`: the demo's variation, the same on every build."""
    return zlib.crc32(key.encode() if isinstance(key, str) else key) / 2**32


# How fast the API answers, roughly as Claude models do (seconds; tokens a second). A person
# would see the prompt read at about 20,000 uncached tokens a second (a cached prefix ten times
# faster), then the output come at the model's speed, and a web search take a few seconds.
FIRST_TOKEN_S = 0.6
PROMPT_TOKENS_PER_S = 20_000
CACHED_TOKENS_PER_S = 200_000
SEARCH_S = 2.5
OUTPUT_TOKENS_PER_S = {"haiku": 140, "sonnet": 55, "opus": 35}
OTHER_TOKENS_PER_S = 60
ERROR_S = {429: 0.25, 500: 3.0, 529: 1.2}
"""An error comes back at once (rate limited), after a wait in a queue (overloaded), or late (a
server error)."""


def answer_times(status: int, body: bytes, queued: float = 0.0) -> list[tuple[float, bytes]]:
    """The answer `body` cut as it would come off the wire: (seconds after the previous piece,
    piece), the whole body in order. A JSON answer comes whole when its last token is made; a
    stream comes event by event, its first after the prompt is read, each text, thinking or
    tool-input delta after the time its share of the output takes. `queued`: seconds the API
    held the request first (the demo's slow outlier). Varies by up to a fifth with the body."""
    spread = 0.85 + 0.35 * _share(body)
    if status >= 400:
        return [(ERROR_S.get(status, 0.5) * spread, body)]
    if not body.lstrip().startswith(b"event:"):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        message = doc if isinstance(doc, dict) else {}
        first, making = _model_times(message.get("model"), message.get("usage") or {})
        return [(queued + (first + making) * spread, body)]
    events = _events(body)
    datas = [_event_data(e) for e in events]
    start: dict[str, Any] = next((d.get("message") or {} for d in datas if d.get("type") == "message_start"), {})
    usage = dict(start.get("usage") or {})
    for d in datas:
        if d.get("type") == "message_delta":
            usage.update(d.get("usage") or {})  # cumulative: the last counts win
    first, making = _model_times(start.get("model"), usage)
    sizes = [_delta_size(d) for d in datas]
    total = sum(sizes) or 1
    out = [((making * size / total) * spread, event) for size, event in zip(sizes, events, strict=True)]
    if not any(sizes):
        out[-1] = (making * spread, events[-1])
    out[0] = (out[0][0] + queued + first * spread, out[0][1])
    return out


def _model_times(model: Any, usage: dict[str, Any]) -> tuple[float, float]:
    """(seconds to the first token, seconds making the output) for this usage on this model."""
    fresh = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0)
    cached = usage.get("cache_read_input_tokens") or 0
    first = FIRST_TOKEN_S + fresh / PROMPT_TOKENS_PER_S + cached / CACHED_TOKENS_PER_S
    first += SEARCH_S * ((usage.get("server_tool_use") or {}).get("web_search_requests") or 0)
    speed = next((v for k, v in OUTPUT_TOKENS_PER_S.items() if k in str(model)), OTHER_TOKENS_PER_S)
    return first, (usage.get("output_tokens") or 0) / speed


def _events(body: bytes) -> list[bytes]:
    """`body` cut after each blank line (an SSE event's end): the pieces join to it exactly."""
    out, i = [], 0
    while i < len(body):
        end = body.find(b"\n\n", i)
        end = len(body) if end < 0 else end + 2
        out.append(body[i:end])
        i = end
    return out


def _event_data(event: bytes) -> dict[str, Any]:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                doc = json.loads(line[5:])
            except ValueError:
                return {}
            return doc if isinstance(doc, dict) else {}
    return {}


def _delta_size(data: dict[str, Any]) -> int:
    """Characters of output a content_block_delta brings (0 for other events)."""
    if data.get("type") != "content_block_delta":
        return 0
    delta = data.get("delta") or {}
    for key in ("text", "thinking", "partial_json"):
        if isinstance(delta.get(key), str):
            return len(delta[key])
    return len(json.dumps(delta))


class _Paced(httpx2.SyncByteStream):
    """A body that reaches the reader piece by piece, the clock moved on before each."""

    def __init__(self, clock: DemoClock, pieces: list[tuple[float, bytes]]) -> None:
        self.clock, self.pieces = clock, pieces

    def __iter__(self) -> Iterator[bytes]:
        for wait, piece in self.pieces:
            self.clock.advance(wait)
            yield piece

    def close(self) -> None:
        pass


class _Network(httpx2.BaseTransport):
    """The SDK's transport in the demo: the fake API's answer, read whole off the local socket,
    then handed to the SDK as slowly as the API would send it (`answer_times`), on the demo's
    clock. The bytes are the fake's, untouched: what the recorder stores is what went over the
    wire."""

    def __init__(self, clock: DemoClock) -> None:
        self.clock = clock
        self.inner = httpx2.HTTPTransport()
        self.queued = 0.0
        """Seconds the API holds the current call's answer first (`queued_s` of a fixture turn)."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        try:
            body = b"".join(response.stream)  # type: ignore[arg-type]
        finally:
            response.stream.close()  # type: ignore[union-attr]
        queued = self.queued if response.status_code < 400 else 0.0
        response.stream = _Paced(self.clock, answer_times(response.status_code, body, queued))
        return response

    def close(self) -> None:
        self.inner.close()


def _client(clock: DemoClock, base_url: str) -> tuple[Any, _Network]:
    """The SDK's client on the demo's network, waiting out each retry on the demo's clock."""
    import anthropic

    class _DemoAnthropic(anthropic.Anthropic):
        def _sleep_for_retry(self, *, retries_taken: int, max_retries: int, options: Any, response: Any) -> None:
            # the wait the SDK computes (the fake's `retry-after`), not slept but passed
            headers = response.headers if response is not None else None
            clock.advance(self._calculate_retry_timeout(max_retries - retries_taken, options, headers))

    network = _Network(clock)
    client = _DemoAnthropic(base_url=base_url, api_key="demo-key-not-a-real-key",
                            http_client=httpx2.Client(transport=network))
    return client, network


def pause_before(turn: dict[str, Any], previous: dict[str, Any], key: str) -> float:
    """Seconds from the end of `previous` to `turn`'s call: a break the fixture names
    (`pause_s`), the application sending a failed call again (a few seconds: it must be within
    two minutes to count as a retry), the agent running the tools the reply asked for, or a
    person reading the reply and typing the next message."""
    if "pause_s" in turn:
        return float(turn["pause_s"])
    u = _share(key)
    if turn["request"] == previous["request"]:
        return 2.0 + 3.0 * u
    content = turn["request"]["messages"][-1]["content"]
    if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
        return 0.3 + 5.0 * u
    return 20.0 + 70.0 * u


CONVERSATION_GAP_S = 50 * 60
"""Conversations of one day start this far apart, the first three hours before now (so the
demo's today ends before now: its longest conversation takes a few minutes)."""


def build_demo(path: str | os.PathLike[str], *, quiet: bool = True) -> int:
    """Record every fixture into `path`, replacing it: check `refusal` first. Returns the number
    of turns recorded (an application's retry of a failed call is an attempt of its turn, so
    fewer than the calls played). The database is marked as the demo's before anything is recorded."""
    from .recorder import Recorder
    from .store.schema import DBError, open_db

    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        try:
            Path(str(path) + suffix).unlink(missing_ok=True)
        except OSError as e:  # a file where a folder should be, a folder we can't write
            raise DBError(f"cannot create database {path}: {e.strerror}; choose a writable path with --db") from None
    db = open_db(path)
    with db.conn:
        db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", MARK)
    db.conn.close()
    logger = logging.getLogger("replayer")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)  # unknown-model price warnings are part of the demo
    try:
        with FakeAPI() as api, Recorder(path) as rec, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            now = time.time()
            clock = DemoClock(now)
            rec._clock, rec._perf = clock.wall, clock.perf  # before the middleware is made
            sdk, network = _client(clock, api.url)
            client = rec.wrap(sdk)
            started: dict[float, int] = {}  # conversations started on each day
            for fx in load_fixtures():
                day = float(fx.get("day_offset", 0))
                clock.start_at(now + day * 86400 - 3 * 3600 + CONVERSATION_GAP_S * started.get(day, 0))
                started[day] = started.get(day, 0) + 1
                conv = fx.get("conversation_id")
                with rec.conversation(conv, user_id=fx.get("user_id"), tags={"fixture": fx["name"]}) if conv \
                        else contextlib.nullcontext():
                    for i, turn in enumerate(fx["turns"]):
                        if i:
                            clock.advance(pause_before(turn, fx["turns"][i - 1], f"{fx['name']}:{i}"))
                        play(client, api, turn, network)
            rec.flush()
    finally:
        logger.setLevel(level)
    db = open_db(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM turns").fetchone()[0])
    finally:
        db.conn.close()


def demo_db_path() -> Path:
    from .paths import data_dir

    return data_dir() / "demo.db"
