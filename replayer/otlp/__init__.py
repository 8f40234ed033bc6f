"""OpenTelemetry out and back in (issue 17): what the switches mean, the caller's span read at
call time, and (in the modules) the span attribute names, the span building and the exporter,
and the import's reading. This module never imports opentelemetry: `import replayer` and the
commands that don't export stay free of it (exporter.py imports the SDK, on the writer's side)."""

from __future__ import annotations

import os
import sys
from contextvars import ContextVar
from typing import Any

from .names import ENV_CAPTURE_CONTENT

SPANS = "spans"
"""An OTLP setting (`otlp=` of the writers): export a span per attempt, without content."""
CONTENT = "content"
"""An OTLP setting: export a span per attempt with its content (messages, system, tools)."""

PACKAGES = ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
INSTALL = "pip install 'replayer[otlp]'"
GRPC_PACKAGE = "opentelemetry-exporter-otlp-proto-grpc"
GRPC_INSTALL = "pip install 'replayer[otlp-grpc]'"
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
"""The standard variables naming the protocol, the first one set winning: "grpc" sends over
gRPC (the official gRPC exporter, an optional extra); anything else over HTTP, protobuf."""


def protocol() -> str:
    """The OTLP protocol the standard variables ask for (default http/protobuf)."""
    for name in PROTOCOLS:
        value = os.environ.get(name, "").strip().lower()
        if value:
            return value
    return "http/protobuf"


def setting(otlp: bool, content: bool = False) -> str | None:
    """The writers' `otlp` setting for the switches: None (off), SPANS or CONTENT. The
    convention's capture variable (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)
    turns content on wherever export is on."""
    if not otlp:
        return None
    asked = os.environ.get(ENV_CAPTURE_CONTENT, "").strip().lower() in ("true", "1")
    return CONTENT if content or asked else SPANS


def problem() -> str | None:
    """Why OTLP export can't run here (its packages missing), in one line; None when it can.
    Asks the installed distributions, so nothing is imported. (importlib.metadata is imported
    here, when export is asked for: with the email and zipfile modules it brings, it was 23 ms
    of the 56 ms of CPU `from replayer import Recorder` took alone. The SDK imports it too.)"""
    from importlib import metadata

    missing = []
    for name in PACKAGES:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return f"OTLP export needs {' and '.join(missing)}: {INSTALL}"
    if protocol() == "grpc":
        try:
            metadata.version(GRPC_PACKAGE)
        except metadata.PackageNotFoundError:
            return f"OTLP export over grpc (OTEL_EXPORTER_OTLP_PROTOCOL) needs {GRPC_PACKAGE}: {GRPC_INSTALL}"
    return None


_context_of: dict[int, Any] = {}
"""Per loaded `opentelemetry.context` module (its id): the function that gives its current
context, read once."""


def _current_context_getter(otel: Any) -> Any:
    """The function giving OpenTelemetry's current context: the ContextVar's own `get` when the
    runtime context is the standard contextvars one (two Python calls fewer on the agent's
    thread, microseconds each there, since its code is cold by then), else `get_current`."""
    runtime = getattr(otel, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    standard = type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(var, ContextVar)
    return var.get if standard else otel.get_current  # type: ignore[union-attr]


def current_parent() -> tuple[int, int, int] | None:
    """The application's current OpenTelemetry span as (trace_id, span_id, trace_flags), for the
    attempt's span to join its trace; None when there is none. Runs on the agent's thread at call
    time: only looks when OpenTelemetry is loaded (never imports it; the SDK 2.x loads it), and an
    empty context (the usual case) costs two dictionary look-ups and one call into C."""
    otel = sys.modules.get("opentelemetry.context")
    if otel is None:
        return None
    try:
        get = _context_of.get(id(otel))
        if get is None:
            get = _context_of[id(otel)] = _current_context_getter(otel)
        current = get()
        if not current:  # an empty context holds no span
            return None
        sc = sys.modules["opentelemetry.trace"].get_current_span(current).get_span_context()
        return (sc.trace_id, sc.span_id, int(sc.trace_flags)) if sc.is_valid else None
    except Exception:  # noqa: BLE001 - the agent's call must go on whatever OpenTelemetry does
        return None
