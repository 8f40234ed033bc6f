"""Who sent a request and in which agent session, as agents write it: `metadata.user_id` (a plain
id, or Claude Code's JSON string) and Claude Code's session header. Runs on the background writer.

Claude Code (2.1.x) sends `metadata.user_id` as a JSON *string*
`{"device_id": ..., "account_uuid": ..., "session_id": ...}` and every Messages call of a session
(main thread, subagents, title and summary calls) with an `x-claude-code-session-id` header. The
user is the account; with an API key the account is "" and the device is the best "who" there is.
The session becomes a conversation tag, so a session's conversations can be found together.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .codec import readable

SESSION_HEADER = "x-claude-code-session-id"
SESSION_TAG = "claude_code_session"
"""The conversation tag holding a Claude Code session id: {"claude_code_session": ID}."""


class MetadataUser(NamedTuple):
    user: str | None
    session: str | None


def _text(value: Any) -> str | None:
    return readable(value) if isinstance(value, str) and value else None


def metadata_user(metadata: Any) -> MetadataUser:
    """The user (and Claude Code session) a request's `metadata` names. A plain string is the user
    as written; a JSON object in a string holding `account_uuid` or `device_id` is Claude Code's:
    the account, else the device, and its `session_id`. Anything else: no user."""
    value = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(value, str):
        return MetadataUser(None, None)
    if value.startswith("{"):
        try:
            fields = json.loads(value)
        except ValueError:
            fields = None
        if isinstance(fields, dict) and ("account_uuid" in fields or "device_id" in fields):
            return MetadataUser(
                _text(fields.get("account_uuid")) or _text(fields.get("device_id")), _text(fields.get("session_id"))
            )
    return MetadataUser(readable(value), None)


def with_session(tags: dict[str, Any] | None, session: str | None) -> dict[str, Any] | None:
    """`tags` with the session tag added (a tag the caller set wins); `tags` itself when there is
    nothing to add."""
    if not session or (tags and SESSION_TAG in tags):
        return tags
    return {**(tags or {}), SESSION_TAG: session}
