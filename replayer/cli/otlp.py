"""The --otlp and --otlp-content switches `record` and `proxy` share (OTLP export, issue 17)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .base import UserError


def otlp_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--otlp-content", is_flag=True,
        help="With --otlp: put the messages, system prompt and tools in the spans too "
        "(also OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true).",
    )(command)
    return click.option(
        "--otlp", is_flag=True,
        help="Also send each call as an OpenTelemetry span (GenAI conventions) to the endpoint "
        "OTEL_EXPORTER_OTLP_ENDPOINT names (default http://localhost:4318).",
    )(command)


def otlp_setting(otlp: bool, content: bool) -> str | None:
    """The writers' OTLP setting for the switches; bad input when the packages are missing
    (or --otlp-content is given without --otlp)."""
    from ..otlp import problem, setting

    if content and not otlp:
        raise UserError("--otlp-content needs --otlp (it says what the spans hold)")
    export = setting(otlp, content)
    if export is not None and (missing := problem()):
        raise UserError(missing)
    return export
