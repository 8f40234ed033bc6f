"""The Messages API's wire format, named once: block types, protocol headers, and the helpers
that read text and token counts out of requests, responses and usage.

Everything here is pure: it takes the wire JSON as dicts and lists (as recorded, unknown block
types and fields included) and never touches the store or the network.
"""

from __future__ import annotations

from typing import Any

PROTOCOL_HEADERS = ("anthropic-version", "anthropic-beta")
"""The request headers that change what the API does with a request; the only ones replayer keeps
(credentials and everything else are dropped at capture)."""

RESPONSE_HEADERS = (
    "retry-after", "retry-after-ms", "x-should-retry",
    *(f"anthropic-ratelimit-{kind}-{what}" for kind in ("requests", "tokens", "input-tokens", "output-tokens")
      for what in ("limit", "remaining", "reset")),
)
"""The response headers replayer keeps (besides `request-id`, its own column): what the API said
about limits and retrying, which the SDK's retry loop obeys (`retry-after(-ms)`,
`x-should-retry`). An allowlist: cookies, the organization id and the rest are never kept."""

RECORDED_HEADER = "x-replayer-recorded"
"""Set by the in-process middleware, under `replayer record` only, on calls it records itself:
the recording proxy forwards them without recording (each call is recorded once) and strips it."""

TIMEOUTS_HEADER = "x-replayer-timeouts"
"""Set by the redirecting middleware `replayer replay` gives its Python children
(playback/redirect.py): the client takes a replayed timeout as TIMED_OUT_HEADER says it (the
replay server strips it, as the proxy does RECORDED_HEADER)."""

TIMED_OUT_HEADER = "x-replayer-timed-out"
"""On a replay server's answer whose recorded attempt failed by a read timeout: `mid-stream` on a
stream served as far as it came before its connection breaks (to any client), `before-answer` on
the stand-in answer an attempt that got nothing is given, only when the request carried
TIMEOUTS_HEADER. The redirecting middleware raises the SDK's APITimeoutError from it, as the
recorded agent saw: a server can't make a client's own read time out but by holding the
connection until the client gives up (minutes, and no deterministic test), so a client without
that middleware sees the connection break instead (a connection error)."""

TOOL_USE_TYPES = ("tool_use", "server_tool_use", "mcp_tool_use")
"""Content block types that are a call of a tool (client, server or MCP)."""


def content_blocks(message: Any) -> list[Any]:
    """A message's (or response's) content as a list of blocks: string content becomes one text
    block; anything that isn't a list is no blocks."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def dict_blocks(content: Any) -> list[dict[str, Any]]:
    """The blocks of a content list (or a system prompt, or a tool list) that are objects."""
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _reminder(text: str) -> bool:
    """A text block that is only a `<system-reminder>` (Claude Code opens its first message with
    one: the date, CLAUDE.md) rather than what the user wrote."""
    text = text.strip()
    return text.startswith("<system-reminder>") and text.endswith("</system-reminder>")


def message_text(message: Any) -> str | None:
    """A message's text as a list shows it: its text blocks joined by spaces (those that are only
    a system reminder left out when others remain), a tool result as `[tool_result]`; None when
    it holds neither."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for b in content:
            if isinstance(b, dict):
                if b.get("type") == "text":
                    texts.append(str(b.get("text", "")))
                elif b.get("type") == "tool_result":
                    texts.append("[tool_result]")
        said = [t for t in texts if not _reminder(t)]
        return " ".join(said or texts) if texts else None
    return None


def text_of(response: Any) -> str:
    """The text blocks of a response, joined by blank lines."""
    if not isinstance(response, dict):
        return ""
    parts = [
        str(b.get("text", "")) for b in response.get("content") or () if isinstance(b, dict) and b.get("type") == "text"
    ]
    return "\n\n".join(parts)


def system_text(system: Any) -> str:
    """A system prompt's text: the string, or its text blocks one per line."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict) and b.get("type") == "text")
    return ""


def tool_calls(response: Any) -> list[tuple[str, Any]]:
    """(name, input) of each tool call block (TOOL_USE_TYPES) of a response, in order."""
    if not isinstance(response, dict):
        return []
    return [
        (str(b.get("name")), b.get("input"))
        for b in response.get("content") or ()
        if isinstance(b, dict) and b.get("type") in TOOL_USE_TYPES
    ]


# -- usage ---------------------------------------------------------------------------------------


def token_count(usage: dict[str, Any] | None, key: str) -> int:
    """One count of a usage object (0 when absent or null)."""
    return int((usage or {}).get(key) or 0)


def prompt_tokens(usage: dict[str, Any]) -> int:
    """Everything the model read: uncached input + cache writes + cache reads."""
    return (
        token_count(usage, "input_tokens")
        + token_count(usage, "cache_creation_input_tokens")
        + token_count(usage, "cache_read_input_tokens")
    )


def billed_parts(usage: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's usage and its compaction iterations (billed on top of the totals)."""
    its = usage.get("iterations") if isinstance(usage, dict) else None
    if not its:
        return [usage]
    return [usage, *(it for it in its if isinstance(it, dict) and it.get("type") == "compaction")]


def is_error_result(block: dict[str, Any]) -> bool:
    """A tool result block that reports a failure: is_error set, or (server tools) content whose
    type ends in `_error`."""
    if block.get("is_error"):
        return True
    content = block.get("content")
    return isinstance(content, dict) and str(content.get("type", "")).endswith("_error")
