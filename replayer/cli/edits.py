"""The turn an edit starts from (CONVERSATION:N or a turn id) and the edit options `rerun`,
`replay --live-from` and `fork` share (--system, --model, --message, --set, --tool-result), read
into a `replay.Edits`; a bad value is one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .base import UserError, resolve_id

F = TypeVar("F", bound=Callable[..., Any])


def text_or_file(value: str, what: str) -> str:
    """TEXT, or the contents of FILE for @FILE."""
    if value.startswith("@"):
        try:
            return Path(value[1:]).expanduser().read_text("utf-8")
        except OSError as e:
            raise UserError(f"{what} {value}: cannot read {value[1:]} ({e.strerror})") from None
    return value


def edit_options(*, tool_results: bool = False) -> Callable[[F], F]:
    """--system, --model, --message, --set (and --tool-result for forks), as click options."""

    def decorate(f: F) -> F:
        if tool_results:
            f = click.option(
                "--tool-result", "tool_results", metavar="TOOL_USE_ID=TEXT|@FILE", multiple=True,
                help="New content for the tool_result answering that tool call (in every later request).",
            )(f)
        f = click.option(
            "--set", "sets", metavar="PATH=JSON", multiple=True,
            help="Set any field, e.g. max_tokens=512, thinking.budget_tokens=2048; null removes it.",
        )(f)
        f = click.option(
            "--message", "messages", metavar="N=TEXT|@FILE", multiple=True,
            help="New text for message N (0-based; -1 = last).",
        )(f)
        f = click.option("--model", help="Another model.")(f)
        return click.option("--system", "system", metavar="TEXT|@FILE", help="A new system prompt.")(f)

    return decorate


def edits_from(
    system: str | None,
    model: str | None,
    messages: tuple[str, ...],
    sets: tuple[str, ...],
    tool_results: tuple[str, ...] = (),
) -> Any:
    """The `replay.Edits` the options ask for."""
    from ..replay import Edits

    edits = Edits(model=model, system=text_or_file(system, "--system") if system is not None else None)
    for n, text in _pairs(messages, "--message wants N=TEXT"):
        try:
            edits.messages[int(n)] = text_or_file(text, f"--message {n}")
        except ValueError:
            raise UserError(f"--message wants N=TEXT with N a message number, not {n}={text!r}") from None
    for path, value in _pairs(sets, "--set wants PATH=JSON"):
        try:
            edits.set[path] = json.loads(value)
        except ValueError:
            raise UserError(f"--set {path}: {value!r} is not JSON (quote strings: {path}='\"text\"')") from None
    wants = "--tool-result wants TOOL_USE_ID=TEXT (the id of the tool call it answers)"
    for tool_use_id, text in _pairs(tool_results, wants):
        edits.tool_results[tool_use_id] = text_or_file(text, f"--tool-result {tool_use_id}")
    return edits


def _pairs(specs: tuple[str, ...], wants: str) -> list[tuple[str, str]]:
    """Each KEY=VALUE option split at its first `=`; a UserError (`wants`, not SPEC) for one
    without `=` or without a key."""
    out = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UserError(f"{wants}, not {spec!r}")
        out.append((key, value))
    return out


def resolve_turn(store: Any, spec: str) -> str:
    """The turn id `spec` names: CONVERSATION:N (N from 0, negative from the end) or a turn id
    (or the start of one)."""
    conv, sep, n = spec.rpartition(":")
    conv = resolve_id(store, conv) if sep else conv
    if sep and store.conversation_exists(conv):
        turns = store.turns(conv)
        try:
            return str(turns[int(n)].turn_id)
        except (ValueError, IndexError):
            raise UserError(f"{conv} has turns 0..{len(turns) - 1}, not {n!r}") from None
    turn_id = str(resolve_id(store, spec, "turn"))
    if store.ids_starting(turn_id, kind="turn")[0] != 1:
        count, ids = store.ids_starting(spec.removesuffix("…")) if not sep else (0, [])
        if count == 1:  # a conversation's id, given where a turn goes
            whole = ids[0]
            last = len(store.turns(whole)) - 1
            raise UserError(f"{spec!r} is a conversation's id, not a turn's: give one of its turns as "
                            f"{whole}:N (N from 0 to {last}; -1 the last)")  # fmt: skip
        raise UserError(
            f"no turn {spec!r} in this database: give CONVERSATION:N or a turn id (replayer show CONVERSATION --json)"
        )
    return turn_id
