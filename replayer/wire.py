"""The Messages API's wire format, named once: block types, protocol headers, and (as they move
here) the helpers that read text and token counts out of requests, responses and usage.

Everything here is pure: it takes the wire JSON as dicts and lists (as recorded, unknown block
types and fields included) and never touches the store or the network.
"""

from __future__ import annotations

PROTOCOL_HEADERS = ("anthropic-version", "anthropic-beta")
"""The request headers that change what the API does with a request; the only ones replayer keeps
(credentials and everything else are dropped at capture)."""

TOOL_USE_TYPES = ("tool_use", "server_tool_use", "mcp_tool_use")
"""Content block types that are a call of a tool (client, server or MCP)."""
