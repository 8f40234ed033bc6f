"""What the Messages API would reject in an edited request, said before anything is sent: missing
or out-of-range parameters, tool_use / tool_result pairs broken by an edit, too many cache
breakpoints, blocks that can't be sent again as they are, and fields the recorded API version or
beta headers don't take. Pure: it reads the request and headers only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .wire import dict_blocks

if TYPE_CHECKING:
    from .models import Original

MAX_CACHE_BREAKPOINTS = 4
API_VERSIONS = {"2023-06-01", "2026-10-21"}
"""anthropic-version values the Messages API accepts."""
SDK_DEFAULT_VERSION = "2026-10-21"
"""What the SDK sends when a recorded call carried no anthropic-version (see API-FACTS.md)."""
DROPPED_IN = {"2026-10-21": ("temperature", "top_p", "top_k")}
"""Parameters an API version rejects (400)."""
KNOWN_FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
    "context_management", "output_format", "inference_geo", "cache_control", "output_config", "speed",
}  # fmt: skip
"""Top-level fields the Messages API takes (some only with a beta header: BETA_FIELDS), besides
those the installed SDK knows (`known_fields`). A top-level `cache_control` asks for automatic
prompt caching: the API puts the breakpoint on the last cacheable block itself."""
BETA_FIELDS = {
    "mcp_servers": "mcp-client-",
    "context_management": "context-management-",
    "container": "code-execution-",
    "output_format": "structured-outputs-",
}
"""Fields the API rejects unless the request's anthropic-beta header enables them (prefix)."""


_known: set[str] | None = None


def known_fields() -> set[str]:
    """KNOWN_FIELDS and every body parameter of the installed SDK's `messages.create` and
    `beta.messages.create` (the API grows parameters faster than this list)."""
    global _known
    if _known is None:
        found = set(KNOWN_FIELDS)
        try:
            from anthropic.types import message_create_params as plain
            from anthropic.types.beta import message_create_params as beta

            for module in (plain, beta):
                for cls in vars(module).values():
                    if isinstance(cls, type) and cls.__name__.startswith("MessageCreateParams"):
                        found |= set(getattr(cls, "__annotations__", {}))
        except ImportError:  # an SDK without these modules: the list above only
            pass
        found.discard("betas")  # an SDK argument that becomes the anthropic-beta header
        _known = found
    return _known


_thinking: tuple[str, ...] | None = None


def thinking_types() -> tuple[str, ...]:
    """The `thinking.type` values the installed SDK knows (plain and beta), sorted; the API adds
    types faster than a list here would follow."""
    global _thinking
    if _thinking is None:
        import typing

        found = {"adaptive", "disabled", "enabled"}
        try:
            from anthropic.types import thinking_config_param as plain
            from anthropic.types.beta import beta_thinking_config_param as beta

            for union in (plain.ThinkingConfigParam, beta.BetaThinkingConfigParam):
                for cls in typing.get_args(union):
                    kind = typing.get_type_hints(cls, include_extras=True).get("type")
                    while typing.get_args(kind) and typing.get_origin(kind) is not typing.Literal:
                        kind = typing.get_args(kind)[0]  # Required[Literal[...]]
                    found |= {v for v in typing.get_args(kind) if isinstance(v, str)}
        except (ImportError, AttributeError, NameError, TypeError):  # an SDK laid out otherwise
            pass
        _thinking = tuple(sorted(found))
    return _thinking


def _thinking_problems(thinking: Any, max_tokens: Any) -> list[Problem]:
    """A thinking object needs a type the API knows; `enabled` a budget of at least 1024 tokens
    and below max_tokens (thinking counts toward it). A budget is checked with whatever type, so
    `--set thinking.budget_tokens=N` alone says both what it lacks and what it breaks."""
    if thinking is None:
        return []
    if not isinstance(thinking, dict):
        return [Problem(f"thinking must be an object such as {{\"type\": \"enabled\", \"budget_tokens\": 1024}}, "
                        f"not {thinking!r}")]
    out = []
    kinds = thinking_types()
    kind = thinking.get("type")
    if kind is None:
        out.append(Problem(f"thinking has no type: set thinking.type to one of {', '.join(kinds)} "
                           "(enabled takes thinking.budget_tokens)"))
    elif kind not in kinds:
        out.append(Problem(f"thinking.type {kind!r} is not one of {', '.join(kinds)}"))
    budget = thinking.get("budget_tokens")
    if kind == "enabled" or budget is not None:
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
            out.append(Problem("thinking.budget_tokens must be a whole number of at least 1024"))
        elif isinstance(max_tokens, int) and budget >= max_tokens:
            out.append(Problem(f"thinking.budget_tokens ({budget}) must be less than max_tokens ({max_tokens}): "
                               f"raise max_tokens (--set max_tokens=N)"))
    return out


@dataclass
class Problem:
    message: str
    blocking: bool = True
    """False: a warning (the API may still take it)."""


def validate(req: dict[str, Any], headers: dict[str, str], orig: Original | None = None) -> list[Problem]:
    """What the API would reject, each as one clear line."""
    out: list[Problem] = []
    if not isinstance(req.get("model"), str) or not req.get("model"):
        out.append(Problem("model is missing"))
    mt = req.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        out.append(Problem("max_tokens must be a whole number of at least 1"))
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        out.append(Problem("messages must be a non-empty list"))
        msgs = []
    out += _thinking_problems(req.get("thinking", None), mt)
    temp = req.get("temperature")
    if temp is not None and not (isinstance(temp, int | float) and 0 <= temp <= 1):
        out.append(Problem("temperature must be between 0 and 1"))

    # tool_use / tool_result pairing
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            out.append(Problem(f"message {i} is not an object"))
            continue
        if m.get("role") == "assistant":
            uses = [b.get("id") for b in dict_blocks(m.get("content")) if b.get("type") == "tool_use"]
            if not uses:
                continue
            nxt = msgs[i + 1] if i + 1 < len(msgs) and isinstance(msgs[i + 1], dict) else None
            answered = {
                b.get("tool_use_id")
                for b in dict_blocks(nxt.get("content") if nxt else None)
                if b.get("type") == "tool_result"
            }
            for u in uses:
                if u not in answered:
                    where = "the next message" if nxt else "any message after it (the request ends there)"
                    out.append(Problem(f"message {i}: tool_use {u} has no tool_result in {where}"))
        elif m.get("role") == "user":
            results = [
                b.get("tool_use_id") for b in dict_blocks(m.get("content")) if b.get("type") == "tool_result"
            ]
            prev = msgs[i - 1] if i > 0 and isinstance(msgs[i - 1], dict) else None
            asked = {
                b.get("id") for b in dict_blocks(prev.get("content") if prev else None) if b.get("type") == "tool_use"
            }
            for r in results:
                if r not in asked:
                    out.append(Problem(f"message {i}: tool_result for {r} has no tool_use in the message before it"))

    # cache breakpoints
    marks = 1 if req.get("cache_control") else 0  # automatic caching takes one of the slots
    for part in (req.get("system"), req.get("tools")):
        marks += sum(1 for b in dict_blocks(part) if b.get("cache_control"))
    for m in msgs:
        if isinstance(m, dict):
            marks += sum(1 for b in dict_blocks(m.get("content")) if b.get("cache_control"))
    if marks > MAX_CACHE_BREAKPOINTS:
        out.append(Problem(f"{marks} cache_control breakpoints: the API allows {MAX_CACHE_BREAKPOINTS}"))

    # blocks that can't be sent again as they are
    declared = {t.get("name") for t in dict_blocks(req.get("tools"))}
    model_changed = orig is not None and req.get("model") != orig.request.get("model")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            continue
        for b in dict_blocks(m.get("content")):
            kind = str(b.get("type"))
            if kind == "server_tool_use" and b.get("name") not in declared:
                out.append(
                    Problem(
                        f"message {i}: server tool {b.get('name')} is used but not in tools: add it or remove the block"
                    )
                )
            elif kind.startswith("mcp_tool") and not req.get("mcp_servers"):
                out.append(Problem(f"message {i}: {kind} needs mcp_servers in the request"))
            elif kind in ("thinking", "redacted_thinking") and model_changed:
                out.append(Problem(
                    f"message {i}: {kind} blocks are signed for {orig.request.get('model')}: "  # type: ignore[union-attr]
                    "remove them or keep the model"
                ))  # fmt: skip

    # what the recorded API version and betas take
    version = headers.get("anthropic-version") or SDK_DEFAULT_VERSION
    if version not in API_VERSIONS:
        out.append(Problem(f"anthropic-version {version} is not one the API takes ({', '.join(sorted(API_VERSIONS))})"))
    for key in DROPPED_IN.get(version, ()):
        if key in req:
            out.append(
                Problem(
                    f"anthropic-version {version} rejects {key}: remove it (--set {key}=null) "
                    "or send --header anthropic-version=2023-06-01"
                )
            )
    betas = headers.get("anthropic-beta", "")
    for key in req:
        if key == "thread":
            continue
        if key not in known_fields():
            out.append(Problem(f"{key} is not a Messages API parameter: the API will likely reject it", blocking=False))
        elif key in BETA_FIELDS and BETA_FIELDS[key] not in betas:
            out.append(
                Problem(f"{key} needs the anthropic-beta header {BETA_FIELDS[key]}…, which the turn didn't send")
            )
    return out
