"""Rerun a recorded turn with edits (headless: the CLI and the terminal app both use this).

The flow: `original()` rebuilds the request the turn sent (for a tool-runner thread turn, with its
whole reconstructed history), `apply()` makes the edits, `validate()` (validation.py) says what the
API would reject, `estimate()` prices it before anything is sent, and `send()` sends N samples at once
through the real SDK with the recorder attached, so each sample is stored like any call: in a
conversation of origin "rerun" whose tags name the turn it reruns and the edits that made it.
comparison.py reads a variant back beside its original.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import Estimate, Original
from .pricing import PriceTable
from .validation import Problem as Problem  # the flow's steps, all reachable from here
from .validation import validate as validate
from .wire import PROTOCOL_HEADERS, prompt_tokens, token_count

if TYPE_CHECKING:
    from .store.queries import Store

MAX_SAMPLES = 10


class ReplayError(Exception):
    """Bad input for a rerun (unknown turn, a bad edit, no API key); one line, what to do."""


@dataclass
class Edits:
    """What a variant changes. Stored with it, so an earlier variant can be reopened."""

    system: str | None = None
    model: str | None = None
    messages: dict[int, str] = field(default_factory=dict)
    """Message index (negative from the end) -> new text."""
    set: dict[str, Any] = field(default_factory=dict)
    """Dotted path -> JSON value; None removes the field."""
    headers: dict[str, str] = field(default_factory=dict)
    tool_results: dict[str, str] = field(default_factory=dict)
    """tool_use_id -> new content of the tool_result answering that call (forks: in every request)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.system is not None:
            out["system"] = self.system
        if self.model is not None:
            out["model"] = self.model
        if self.messages:
            out["messages"] = {str(k): v for k, v in self.messages.items()}
        if self.set:
            out["set"] = self.set
        if self.headers:
            out["headers"] = self.headers
        if self.tool_results:
            out["tool_results"] = self.tool_results
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Edits:
        return cls(
            system=d.get("system"),
            model=d.get("model"),
            messages={int(k): v for k, v in (d.get("messages") or {}).items()},
            set=dict(d.get("set") or {}),
            headers=dict(d.get("headers") or {}),
            tool_results=dict(d.get("tool_results") or {}),
        )

    def names(self) -> list[str]:
        """What was edited, in words."""
        out = []
        if self.system is not None:
            out.append("system")
        if self.model is not None:
            out.append(f"model={self.model}")
        out += [f"message {k}" for k in sorted(self.messages)]
        out += [f"{k}" for k in self.set]
        out += [f"header {k}" for k in self.headers]
        out += [f"tool result {k}" for k in self.tool_results]
        return out or ["nothing (a plain resend)"]


def original(store: Store, turn_id: str) -> Original:
    from .imports import rebuilt_from
    from .store.imported import reconstructed

    source = reconstructed(store.db, turn_id)
    if source is not None:  # every rerun (CLI, browser) starts here: refuse before anything is built
        whence, lost = rebuilt_from(source)
        raise ReplayError(
            f"turn {turn_id} was imported from {whence}: its request is reconstructed ({lost}),"
            " so it can't be rerun as it was sent"
        )
    try:
        d = store.turn_detail(turn_id)
    except (KeyError, StopIteration):
        raise ReplayError(f"no turn {turn_id!r} in this database: copy a turn id from 'replayer show'") from None
    except ValueError:
        raise ReplayError(f"turn {turn_id} was recorded with a body that isn't JSON: it can't be rerun") from None
    request = copy.deepcopy(d.request) if isinstance(d.request, dict) else None
    if request is None:
        raise ReplayError(f"turn {turn_id} was recorded with a body that isn't a JSON object: it can't be rerun")
    rebuilt = False
    thread = request.get("thread")
    if isinstance(thread, dict) and thread.get("type") == "continue":
        # tool-runner thread mode: the request held only new messages; send the whole history
        request.pop("thread")
        request["messages"] = copy.deepcopy(d.context)
        if d.system is not None and "system" not in request:
            request["system"] = copy.deepcopy(d.system)
        if d.tools is not None and "tools" not in request:
            request["tools"] = copy.deepcopy(d.tools)
        rebuilt = True
    headers = store.request_headers(turn_id)
    last = d.turn.attempts[-1] if d.turn.attempts else None
    return Original(
        turn_id=turn_id,
        conversation_id=d.turn.conversation_id,
        index=d.turn.index,
        request=request,
        headers=headers,
        response=d.response,
        usage=d.turn.usage,
        model=d.turn.model,
        cost_usd=d.turn.cost_usd,
        latency_ms=last.latency_ms if last else None,
        rebuilt=rebuilt,
    )


# -- edits -------------------------------------------------------------------------------------


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = doc
    for i, k in enumerate(keys[:-1]):
        if isinstance(node, list):
            try:
                nxt = node[int(k)]
            except (ValueError, IndexError):
                raise ReplayError(f"--set {path}: no element {k}") from None
        elif isinstance(node, dict):
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = [] if keys[i + 1].lstrip("-").isdigit() else {}
        else:
            raise ReplayError(f"--set {path}: {'.'.join(keys[:i])} is not an object or a list")
        node = nxt
    last = keys[-1]
    if isinstance(node, list):
        try:
            i = int(last)
            if value is None:
                node.pop(i)
            else:
                node[i] = value
        except (ValueError, IndexError):
            raise ReplayError(f"--set {path}: no element {last}") from None
    elif isinstance(node, dict):
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    else:
        raise ReplayError(f"--set {path}: {'.'.join(keys[:-1])} is not an object or a list")


def set_text(message: dict[str, Any], text: str) -> None:
    """Replace a message's text: its string content, else its first text block, else its first
    tool_result's content; else add a text block."""
    content = message.get("content")
    if isinstance(content, str) or content is None:
        message["content"] = text
        return
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            block["text"] = text
            return
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            block["content"] = text
            return
    content.append({"type": "text", "text": text})


def apply(orig: Original, edits: Edits) -> dict[str, Any]:
    """The edited request (the original is left as it was). Every edit must find what it edits
    in the turn picked: a tool result edit for a call this request doesn't answer (a typo) would
    go live and change nothing."""
    answered = _answered_calls(orig.request.get("messages"))
    for tool_use_id in edits.tool_results:
        if tool_use_id in answered:
            continue
        where = f"--tool-result {tool_use_id}: turn {orig.index}'s request holds no tool_result"
        if not answered:
            raise ReplayError(f"{where} (no tool call to give a result for): fork at a later turn")
        shown = ", ".join(answered[-10:]) + (f" and {len(answered) - 10} before them" if len(answered) > 10 else "")
        raise ReplayError(f"{where} for that id; its tool calls: {shown} (give one of them)")
    return edit_request(orig.request, edits)


def _answered_calls(messages: Any) -> list[str]:
    """The ids of the tool calls a request's tool_result blocks answer, in order, once each."""
    ids: dict[str, None] = {}
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                ids.setdefault(str(block.get("tool_use_id")), None)
    return list(ids)


def edit_blocks(blocks: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """A system prompt of text blocks edited as one text (wire.system_text: the blocks' texts one
    per line): the blocks at the start and the end whose text is still there are kept as they
    were (their cache_control with them); the text between them goes in one block in their place,
    which keeps the last replaced block's fields (where a cache breakpoint ends that part). None
    left when the text is emptied."""
    texts = [str(b.get("text", "")) for b in blocks]
    head = 0  # leading blocks kept, and where the rest of `text` starts
    at = 0
    while head < len(blocks) and text.startswith(texts[head] + "\n", at):
        at += len(texts[head]) + 1
        head += 1
    tail, end = 0, len(text)
    while head + tail < len(blocks) and text.endswith("\n" + texts[-1 - tail], at, end):
        end -= len(texts[-1 - tail]) + 1
        tail += 1
    if head + tail < len(blocks) and head + tail == len(blocks) - 1 and text[at:end] == texts[head]:
        return [dict(b) for b in blocks]  # nothing changed
    middle = text[at:end]
    replaced = blocks[head : len(blocks) - tail]
    if not replaced:
        if at > end:  # every block is still there and nothing between them: as it was
            return [dict(b) for b in blocks]
        made = [{"type": "text", "text": middle}]
    else:  # (text emptied: no block, the API refuses an empty one)
        made = [{**replaced[-1], "text": middle}] if middle else []
    return [*(dict(b) for b in blocks[:head]), *made, *(dict(b) for b in blocks[len(blocks) - tail :])]


def edit_request(request: dict[str, Any], edits: Edits) -> dict[str, Any]:
    """`request` with `edits` made (it is left as it was): the same edits give the same rewrite
    every time, so a fork rewrites each request of its conversation alike."""
    req = copy.deepcopy(request)
    if edits.system is not None:
        system = req.get("system")
        if isinstance(system, list) and system and all(isinstance(b, dict) and b.get("type") == "text" for b in system):
            req["system"] = edit_blocks(system, edits.system)
            if not req["system"]:
                del req["system"]
        else:
            req["system"] = edits.system
    if edits.model is not None:
        req["model"] = edits.model
    msgs = req.get("messages")
    for i, text in edits.messages.items():
        if not isinstance(msgs, list) or not -len(msgs) <= i < len(msgs):
            from .fmt import plural

            n = len(msgs or [])
            raise ReplayError(f"--message {i}: the request has {plural(n, 'message')} (0..{n - 1})")
        if not isinstance(msgs[i], dict):
            raise ReplayError(f"--message {i}: that message is not an object")
        set_text(msgs[i], text)
    if edits.tool_results:
        _edit_tool_results(msgs if isinstance(msgs, list) else [], edits.tool_results)
    for path, value in edits.set.items():
        _set_path(req, path, value)
    return req


def anchored(edits: Edits, request: dict[str, Any]) -> Edits:
    """`edits` with the message indexes counted from the end (`--message -1=…`, `--set
    messages.-1.…`) made absolute against `request`: a fork makes its edits in every later
    request as well, where -1 is a newer message each time. An index out of range is left as it
    is (`edit_request` says so)."""
    msgs = request.get("messages")
    n = len(msgs) if isinstance(msgs, list) else 0

    def absolute(i: int) -> int:
        return i + n if -n <= i < 0 else i

    sets: dict[str, Any] = {}
    for path, value in edits.set.items():
        keys = path.split(".")
        if len(keys) > 1 and keys[0] == "messages" and keys[1].startswith("-") and keys[1][1:].isdigit():
            keys[1] = str(absolute(int(keys[1])))
        sets[".".join(keys)] = value
    return replace(edits, messages={absolute(i): text for i, text in edits.messages.items()}, set=sets)


def _edit_tool_results(messages: list[Any], results: dict[str, str]) -> None:
    """Each tool_result block answering a call named in `results` gets that content (its
    is_error flag, if any, stays: the edit says what the tool returned, not whether it failed)."""
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result" and block.get("tool_use_id") in results:
                block["content"] = results[block["tool_use_id"]]


# -- estimate ----------------------------------------------------------------------------------


def estimate(
    orig: Original,
    req: dict[str, Any],
    prices: PriceTable,
    samples: int,
    count_tokens: Callable[[dict[str, Any]], int | None] | None = None,
) -> Estimate:
    """What the rerun will cost: prompt tokens from the count_tokens endpoint where it answers,
    else the recorded prompt scaled by how much the request grew or shrank."""
    counted = count_tokens(req) if count_tokens is not None else None
    usage = orig.usage or {}
    if counted is not None:
        inp, source = counted, "count_tokens"
    else:
        recorded = prompt_tokens(usage)
        before = len(json.dumps(orig.request, ensure_ascii=False)) or 1
        after = len(json.dumps(req, ensure_ascii=False))
        inp = round(recorded * after / before) if recorded else after // 4
        source = "recorded usage" if recorded else "request size"
    max_out = int(req.get("max_tokens") or 0)
    recorded_out = token_count(usage, "output_tokens")
    out = min(recorded_out or max_out, max_out) if max_out else recorded_out
    model = req.get("model")

    def price(o: int) -> float | None:
        c = prices.cost({"input_tokens": inp, "output_tokens": o}, model)
        return None if c is None else c * samples

    return Estimate(inp, out, max_out, samples, price(out), price(max_out), source)


# -- sending -----------------------------------------------------------------------------------


def api_key(explicit: str | None = None, gateway: str = "--base-url") -> str:
    """The key calls are sent with; `gateway`: the command's own option for another base URL."""
    key = explicit or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise ReplayError(
            f"no API key: set ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL or {gateway} for a gateway); nothing was sent"
        )
    return key


def client(headers: dict[str, str], base_url: str | None = None, key: str | None = None, **kw: Any) -> Any:
    """An SDK client that sends the recorded protocol headers."""
    import anthropic

    default = {k: v for k, v in headers.items() if k in PROTOCOL_HEADERS and v}
    return anthropic.Anthropic(
        api_key=api_key(key),
        base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
        default_headers=default,
        **kw,
    )


def counter(sdk: Any) -> Callable[[dict[str, Any]], int | None]:
    """count_tokens through `sdk`; None when the endpoint can't be reached or refuses."""

    def count(req: dict[str, Any]) -> int | None:
        body = {k: req[k] for k in ("model", "messages", "system", "tools", "tool_choice", "thinking") if k in req}
        try:
            got = sdk.post(
                "/v1/messages/count_tokens", body=body, cast_to=object, options={"max_retries": 0, "timeout": 10.0}
            )
        except Exception:  # noqa: BLE001 - any failure: estimate from the recorded usage instead
            return None
        return int(got["input_tokens"]) if isinstance(got, dict) and "input_tokens" in got else None

    return count


def send(
    db_path: str | os.PathLike[str],
    orig: Original,
    req: dict[str, Any],
    edits: Edits,
    *,
    samples: int = 1,
    base_url: str | None = None,
    key: str | None = None,
    on_done: Callable[[int, BaseException | None], None] | None = None,
    max_retries: int = 2,
    timeout: float = 600.0,
    cancel: threading.Event | None = None,
) -> str:
    """Send `samples` copies of `req` at once, each recorded as a turn of one new "rerun"
    conversation. API errors are recorded on their sample, never raised.

    Setting `cancel` (or Ctrl-C: KeyboardInterrupt, raised again afterwards) stops the wait: each
    sample still out with no attempt recorded is stored as an abandoned attempt (the request as
    sent, no answer), and nothing that comes for them later is recorded. Their calls go on in
    daemon threads, which keep no process alive, and return nothing to anyone."""
    from .capture import RecorderMiddleware
    from .captured import Captured, Context, Handoff
    from .recorder import Recorder
    from .store.codec import new_id

    if not 1 <= samples <= MAX_SAMPLES:
        raise ReplayError(f"--samples must be 1 to {MAX_SAMPLES}")
    cancel = cancel or threading.Event()
    headers = {**orig.headers, **edits.headers}
    sdk = client(headers, base_url, key, max_retries=max_retries, timeout=timeout)
    variant = new_id("rerun_")
    tags = {"rerun_of": orig.turn_id, "edits": edits.to_json(), "samples": samples}
    lock = threading.Lock()
    gone = False
    """Set (under `lock`) once the wait is over for good: what the samples still out record after it is dropped."""
    sample_of: dict[int, int] = {}  # thread -> its sample
    started: dict[int, tuple[float, float]] = {}  # sample -> (wall clock, perf counter) when sent
    recorded: set[int] = set()  # samples with an attempt recorded
    done: set[int] = set()
    all_done = threading.Event()
    with Recorder(Path(db_path)) as rec:
        recorder = rec.middleware

        def put(record: Handoff) -> None:
            with lock:
                if gone:  # the answer of a sample given up on: not recorded, not shown
                    return
                i = sample_of.get(threading.get_ident())
                if i is not None:
                    recorded.add(i)
                recorder.put(record)

        wrapped = sdk.with_options(middleware=[RecorderMiddleware(put, recorder.clock)])

        def one(i: int) -> None:
            error: BaseException | None = None
            with lock:
                sample_of[threading.get_ident()] = i
                started[i] = (recorder.clock(), time.perf_counter())
            with rec.conversation(variant, tags=tags):
                # the timeout given per request: without one this SDK's raw post() sends the
                # header `x-stainless-timeout: NOT_GIVEN` (its sentinel's name), where a
                # messages.create() call sends the timeout it waits
                options = {"timeout": timeout}
                try:
                    if req.get("stream"):  # streamed as the original was; read to the end
                        import anthropic

                        stream = wrapped.post(
                            "/v1/messages",
                            body=req,
                            cast_to=object,
                            options=options,
                            stream=True,
                            stream_cls=anthropic.Stream[object],
                        )
                        for _ in stream:
                            pass
                    else:
                        wrapped.post("/v1/messages", body=req, cast_to=object, options=options)
                except Exception as e:  # noqa: BLE001 - recorded by the middleware; shown on the sample
                    error = e
            with lock:
                if gone:
                    return
                done.add(i)
                if on_done is not None:
                    on_done(i, error)
                if len(done) == samples:
                    all_done.set()

        # daemon threads, not a pool: a pool's threads are waited for at exit, 600 s for a call
        # that never gets an answer
        for i in range(samples):
            threading.Thread(target=one, args=(i,), name=f"replayer-rerun-{i}", daemon=True).start()
        try:
            while not all_done.wait(0.1):
                if cancel.is_set():
                    break
        finally:
            with lock:
                gone = True
                for i in sorted(set(range(samples)) - done - recorded):
                    t_start, p0 = started.get(i, (recorder.clock(), time.perf_counter()))
                    recorder.put(
                        Captured(
                            call_key=uuid.uuid4().hex,
                            attempt=0,
                            t_start=t_start,
                            stream=bool(req.get("stream")),
                            request_obj=req,
                            raw_request_headers=[(k, v) for k, v in headers.items() if k in PROTOCOL_HEADERS and v],
                            latency_ms=round((time.perf_counter() - p0) * 1000, 3),
                            ctx=Context(variant, None, tags),
                            abandoned=True,
                        )
                    )
            rec.flush()
    return variant
