"""Another instrumentation's chat span rebuilt as a Messages API request and response, as far as
its attributes go: the GenAI convention's content attributes (`gen_ai.system_instructions`,
`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.tool.definitions`: JSON text in its
message/part schema), as the anthropic SDK's own spans (its `open_telemetry` option, content mode
"content") and OpenLLMetry's newer versions write them; or OpenLLMetry's older flattened
`gen_ai.prompt.N.*` / `gen_ai.completion.N.*` (and `llm.request.functions.N.*`).

What the attributes don't hold stays out (a thinking block's signature, cache_control marks, the
request's other settings), so the request is a reconstruction: its turn is marked so and never
offered for an exact rerun. The convention's parts map back to blocks: text, tool_call (tool_use),
tool_call_response (tool_result), reasoning (thinking), blob/uri/file (image or document
sources); a generic part is taken as the block it came from. A "tool" message is the user message
that carried the results; consecutive messages of one role are joined, as the API keeps them.

Token counts: the convention's `gen_ai.usage.input_tokens` includes cache reads and writes
(otlp/names.py), the API's doesn't, so the cache counts are taken off it; OpenLLMetry writes the
API's figure, kept as it is.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..captured import Captured, Context
from . import names as n

if TYPE_CHECKING:
    from .reading import Record, Span

_FLAT = re.compile(r"^(?:gen_ai|llm)\.(prompt|completion|prompts|completions)\.(\d+)\.(.+)$")
_FUNCTIONS = re.compile(r"^llm\.request\.functions\.(\d+)\.(.+)$")
_TOOL_CALL = re.compile(r"^tool_calls\.(\d+)\.(.+)$")

OPENLLMETRY_CACHE_READ = "gen_ai.usage.cache_read_input_tokens"
OPENLLMETRY_CACHE_CREATION = "gen_ai.usage.cache_creation_input_tokens"
CACHE_WRITE = "gen_ai.usage.cache_write.input_tokens"
"""The anthropic SDK's own name for the cache writes (the convention's newer one)."""
SDK_STOP_REASON = "anthropic.message.stop_reason"
"""The anthropic SDK's own spans: the response's stop_reason as the API gave it."""
SDK_REQUEST_ID = "anthropic.request.id"
HTTP_STATUS = "http.response.status_code"
FINISH_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_call": "tool_use", "tool_calls": "tool_use",
                  "content_filter": "refusal"}  # fmt: skip
"""The convention's finish reasons, which some instrumentations write for Anthropic's, back to the
API's (none of the API's own values is among them)."""


def rebuilt(span: Span) -> Record | None:
    """The span as a reconstructed record; None when it carries no content."""
    from .reading import SOURCE, Record, iso_of

    a = span.attributes
    if n.INPUT_MESSAGES in a:
        request, response, convention = _from_convention(a), _response_convention(a), True
    else:
        flat = _flattened(a)
        if not flat["prompt"]:
            return None
        request, response, convention = _from_flat(a, flat), _response_flat(a, flat), False
    _settings(a, request)
    error = _error(span)
    if response is not None:
        usage = _usage(a, convention)
        if usage:
            response["usage"] = usage
    t_start = span.start_ns / 1e9
    latency = round((span.end_ns - span.start_ns) / 1e6, 3) if span.end_ns >= span.start_ns else None
    ttft = a.get(n.RESPONSE_TIME_TO_FIRST_CHUNK)
    conversation = a.get(n.CONVERSATION_ID)
    user = a.get(n.USER_ID) or a.get("enduser.id")
    captured = Captured(
        call_key=f"{SOURCE}:{span.trace_id}:{span.span_id}",
        attempt=0,
        t_start=t_start,
        stream=bool(a.get(n.REQUEST_STREAM) or a.get("llm.is_streaming")),
        request_bytes=json.dumps(request, ensure_ascii=False).encode("utf-8", "surrogatepass"),
        status=a.get(HTTP_STATUS) or (error or {}).get("status") or (None if error and response is None else 200),
        response_bytes=json.dumps(response, ensure_ascii=False).encode("utf-8", "surrogatepass")
        if response is not None
        else None,
        latency_ms=latency,
        ttft_ms=round(ttft * 1000, 3) if isinstance(ttft, int | float) else None,
        error=error,
        request_id=str(a[SDK_REQUEST_ID]) if a.get(SDK_REQUEST_ID) else None,
        ctx=Context(
            conversation_id=str(conversation) if conversation else None,
            user_id=str(user) if user else None,
        ),
    )
    response_id = response.get("id") if response else None
    return Record(
        line=span.line,
        captured=captured,
        started_at=iso_of(t_start),
        exact=False,
        key=f"{span.trace_id}:{span.span_id}",
        session=span.trace_id,
        imported_from=SOURCE,
        response_id=response_id if isinstance(response_id, str) else None,
    )


def request_of(a: dict[str, Any]) -> dict[str, Any]:
    """The request of replayer's own span whose `replayer.request` was cut short (reading.exact):
    the convention's content attributes, as far as they are whole, and the request's settings."""
    request = _from_convention(a)
    _settings(a, request)
    return request


def response_of(a: dict[str, Any], status: Any, error: Any) -> dict[str, Any] | None:
    """The response of replayer's own span whose `replayer.response` was cut short: None for a
    failed attempt (its error is kept apart), else the message the attributes tell of, its
    content as far as `gen_ai.output.messages` is whole, its usage exactly as received when
    `replayer.usage` is whole, else from the convention's token counts."""
    if error is not None or (isinstance(status, int) and status >= 300):
        return None
    outputs = [m for m in _json_list(a.get(n.OUTPUT_MESSAGES)) if isinstance(m, dict)]
    content = [b for m in outputs for part in _list(m.get("parts")) if (b := block(part)) is not None]
    response = _response(a, content, outputs[-1].get("finish_reason") if outputs else None)
    usage: Any = a.get(n.USAGE)
    try:
        usage = json.loads(usage) if isinstance(usage, str) else None
    except ValueError:
        usage = None
    usage = usage if isinstance(usage, dict) else _usage(a, convention=True)
    if usage:
        response["usage"] = usage
    return response


# -- the convention's content attributes -------------------------------------------------------


def _from_convention(a: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"model": a.get(n.REQUEST_MODEL) or a.get(n.RESPONSE_MODEL)}
    system = [b for part in _json_list(a.get(n.SYSTEM_INSTRUCTIONS)) if (b := block(part)) is not None]
    messages: list[dict[str, Any]] = []
    for m in _json_list(a.get(n.INPUT_MESSAGES)):
        if not isinstance(m, dict):
            continue
        blocks = [b for part in _list(m.get("parts")) if (b := block(part)) is not None]
        if m.get("role") == "system":
            system += blocks
            continue
        _add(messages, "assistant" if m.get("role") == "assistant" else "user", blocks)
    if system:
        request["system"] = _system(system)
    request["messages"] = messages
    tools = [_tool(t) for t in _json_list(a.get(n.TOOL_DEFINITIONS)) if isinstance(t, dict)]
    if tools:
        request["tools"] = tools
    return request


def _response_convention(a: dict[str, Any]) -> dict[str, Any] | None:
    outputs = [m for m in _json_list(a.get(n.OUTPUT_MESSAGES)) if isinstance(m, dict)]
    if not outputs:
        return None
    content = [b for m in outputs for part in _list(m.get("parts")) if (b := block(part)) is not None]
    finish = outputs[-1].get("finish_reason")
    return _response(a, content, finish)


def block(part: Any) -> dict[str, Any] | None:
    """A convention message part as the Messages API block it stands for."""
    if not isinstance(part, dict):
        return {"type": "text", "text": part} if isinstance(part, str) else None
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("content", "")}
    if kind == "tool_call":
        return {
            "type": "tool_use",
            "id": part.get("id"),
            "name": part.get("name"),
            "input": _input(part.get("arguments")),
        }
    if kind == "tool_call_response":
        result = part.get("response")
        out = {"type": "tool_result", "tool_use_id": part.get("id")}
        out["content"] = result if isinstance(result, str | list) else json.dumps(result, ensure_ascii=False)
        return out
    if kind == "reasoning":
        return {"type": "thinking", "thinking": part.get("content", "")}
    if kind in ("blob", "uri", "file"):
        return _media(part)
    out = dict(part)  # a generic part: the block it came from, its type kept
    if isinstance(kind, str) and kind.startswith("anthropic_"):  # the SDK's own spans: the block's type, prefixed
        out["type"] = kind[len("anthropic_") :]
    return out


def _media(part: dict[str, Any]) -> dict[str, Any]:
    mime = part.get("mime_type")
    kind = "image" if part.get("modality") == "image" or str(mime or "").startswith("image/") else "document"
    if part["type"] == "blob":
        source: dict[str, Any] = {"type": "base64", "media_type": mime, "data": part.get("content")}
    elif part["type"] == "uri":
        source = {"type": "url", "url": part.get("uri")}
    else:
        source = {"type": "file", "file_id": part.get("file_id")}
    return {"type": kind, "source": source}


def _tool(t: dict[str, Any]) -> dict[str, Any]:
    if "input_schema" in t or t.get("type") not in (None, "function"):
        return t  # already the API's shape (a server tool keeps its type)
    out = {"name": t.get("name")}
    if t.get("description") is not None:
        out["description"] = t["description"]
    out["input_schema"] = t.get("parameters") or {"type": "object"}
    return out


# -- OpenLLMetry's flattened attributes --------------------------------------------------------


def _flattened(a: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """{"prompt": {N: {field: value}}, "completion": {...}, "functions": {...}}."""
    out: dict[str, dict[int, dict[str, Any]]] = {"prompt": {}, "completion": {}, "functions": {}}
    for key, value in a.items():
        m = _FLAT.match(key)
        if m:
            kind = "prompt" if m.group(1).startswith("prompt") else "completion"
            out[kind].setdefault(int(m.group(2)), {})[m.group(3)] = value
            continue
        m = _FUNCTIONS.match(key)
        if m:
            out["functions"].setdefault(int(m.group(1)), {})[m.group(2)] = value
    return out


def _flat_blocks(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """One flattened message's content (text, or a JSON list of API blocks) and its tool calls."""
    content = fields.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str) and content.startswith("["):
        try:
            parsed = json.loads(content)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(b, dict) and "type" in b for b in parsed):
            blocks = parsed
    if not blocks and content not in (None, ""):
        blocks = [{"type": "text", "text": content if isinstance(content, str) else json.dumps(content)}]
    calls: dict[int, dict[str, Any]] = {}
    for key, value in fields.items():
        m = _TOOL_CALL.match(key)
        if m:
            calls.setdefault(int(m.group(1)), {})[m.group(2)] = value
    have = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    for _, call in sorted(calls.items()):
        if call.get("id") not in have:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": call.get("name"),
                    "input": _input(call.get("arguments")),
                }
            )
    return blocks


def _from_flat(a: dict[str, Any], flat: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    request: dict[str, Any] = {"model": a.get(n.REQUEST_MODEL) or a.get(n.RESPONSE_MODEL)}
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for _, fields in sorted(flat["prompt"].items()):
        blocks = _flat_blocks(fields)
        role = fields.get("role")
        if role == "system":
            system += blocks
        else:
            _add(messages, "assistant" if role == "assistant" else "user", blocks)
    if system:
        request["system"] = _system(system)
    request["messages"] = messages
    tools = []
    for _, f in sorted(flat["functions"].items()):
        tool: dict[str, Any] = {"name": f.get("name")}
        if f.get("description") is not None:
            tool["description"] = f["description"]
        schema = f.get("input_schema") or f.get("parameters")
        tool["input_schema"] = _input(schema) if schema else {"type": "object"}
        tools.append(tool)
    if tools:
        request["tools"] = tools
    return request


def _response_flat(a: dict[str, Any], flat: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any] | None:
    if not flat["completion"]:
        return None
    content: list[dict[str, Any]] = []
    finish = None
    for _, fields in sorted(flat["completion"].items()):
        if fields.get("role") == "thinking":  # OpenLLMetry's way of writing a thinking block
            content.append({"type": "thinking", "thinking": fields.get("content") or ""})
            continue
        content += _flat_blocks(fields)
        finish = fields.get("finish_reason") or finish
    return _response(a, content, finish)


# -- shared ------------------------------------------------------------------------------------


def _response(a: dict[str, Any], content: list[dict[str, Any]], finish: Any) -> dict[str, Any]:
    reasons = a.get(n.RESPONSE_FINISH_REASONS)
    if a.get(SDK_STOP_REASON):
        finish = a[SDK_STOP_REASON]
    elif finish is None and isinstance(reasons, list) and reasons:
        finish = reasons[0]
    finish = FINISH_REASONS.get(finish, finish) if isinstance(finish, str) else finish
    out: dict[str, Any] = {}
    if a.get(n.RESPONSE_ID):
        out["id"] = a[n.RESPONSE_ID]
    out.update(type="message", role="assistant", model=a.get(n.RESPONSE_MODEL) or a.get(n.REQUEST_MODEL))
    out["content"] = content
    out["stop_reason"] = finish
    return out


def _usage(a: dict[str, Any], convention: bool) -> dict[str, Any]:
    read = a.get(n.USAGE_CACHE_READ_INPUT_TOKENS, a.get(OPENLLMETRY_CACHE_READ))
    written = a.get(n.USAGE_CACHE_CREATION_INPUT_TOKENS, a.get(CACHE_WRITE, a.get(OPENLLMETRY_CACHE_CREATION)))
    given = a.get(n.USAGE_INPUT_TOKENS, a.get("gen_ai.usage.prompt_tokens"))
    output = a.get(n.USAGE_OUTPUT_TOKENS, a.get("gen_ai.usage.completion_tokens"))
    usage: dict[str, Any] = {}
    if isinstance(given, int):
        cached = (read or 0) + (written or 0) if convention else 0
        usage["input_tokens"] = given - cached if given >= cached else given
    if isinstance(written, int):
        usage["cache_creation_input_tokens"] = written
    if isinstance(read, int):
        usage["cache_read_input_tokens"] = read
    if isinstance(output, int):
        usage["output_tokens"] = output
    return usage


def _settings(a: dict[str, Any], request: dict[str, Any]) -> None:
    """The request's sampling settings, where the span names them."""
    for name, key in (
        (n.REQUEST_MAX_TOKENS, "max_tokens"),
        (n.REQUEST_TEMPERATURE, "temperature"),
        (n.REQUEST_TOP_P, "top_p"),
        (n.REQUEST_TOP_K, "top_k"),
        (n.REQUEST_STOP_SEQUENCES, "stop_sequences"),
    ):
        if a.get(name) is not None:
            request[key] = a[name]
    if request.get("model") is None:
        request.pop("model")


def _error(span: Span) -> dict[str, Any] | None:
    kind = span.attributes.get(n.ERROR_TYPE)
    if kind is None and span.status_code != 2:
        return None
    status = int(kind) if isinstance(kind, str) and kind.isdigit() else None
    return {"type": str(kind) if kind is not None else "error", "message": span.status_message, "status": status}


def _add(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"] += blocks
    else:
        messages.append({"role": role, "content": list(blocks)})


def _system(blocks: list[dict[str, Any]]) -> Any:
    if len(blocks) == 1 and blocks[0].get("type") == "text":
        return blocks[0]["text"]
    return blocks


def _input(value: Any) -> Any:
    """Tool-call arguments: a JSON text (as most instrumentations write them) or the object."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value if value is not None else {}


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
