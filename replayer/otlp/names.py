"""The OTLP span's names, as constants: the GenAI semantic conventions' attribute names (the
values of `opentelemetry.semconv._incubating.attributes.gen_ai_attributes` and its siblings,
copied as string literals so this module imports nothing), and replayer's own `replayer.*`.

The span: name `chat {gen_ai.request.model}`, kind CLIENT, start = the attempt's started_at,
end = started_at + latency_ms.

Token counts. Anthropic's usage `input_tokens` EXCLUDES the tokens read from and written to the
prompt cache; the convention's `gen_ai.usage.input_tokens` is the whole input "including cached
tokens" (summed from the provider's token types when the provider gives no total). We follow the
convention: INPUT_TOKENS = input_tokens + cache_read_input_tokens + cache_creation_input_tokens,
beside CACHE_READ_INPUT_TOKENS and CACHE_CREATION_INPUT_TOKENS as the API gave them. The usage
exactly as received travels in USAGE (content only) for a reader that wants the raw figures.

The user: the convention's `user.id` (the general `user` namespace; `enduser.id` is its older,
deprecated form).

Content (system instructions, input and output messages, tool definitions) is written only when
asked (`otlp_content`); the convention's four attributes are JSON text in its message/part schema
(text, tool_call, tool_call_response, reasoning parts; anything else a generic part keeping its
type), and replayer's REQUEST/RESPONSE/... are the export line's values as JSON text, exactly.

Absent means null: an attribute whose export-line value is null is left out (OpenTelemetry takes
no null). REQUEST and REQUEST_HEADERS are always written with content; RESPONSE, ERROR and USAGE
only when not null; UNKNOWN_EVENTS and RESPONSE_HEADERS only when not empty (absent: [], {}). spans.OWN pairs each
replayer.* scalar attribute with the export line's key it holds."""

from __future__ import annotations

# the span
SPAN_NAME_PREFIX = "chat"
"""The span's name is f"{SPAN_NAME_PREFIX} {request model}" (the convention's "{operation} {model}")."""
OPERATION = "chat"
"""The value of OPERATION_NAME on replayer's spans."""
PROVIDER = "anthropic"
"""The value of PROVIDER_NAME on replayer's spans."""
INSTRUMENTATION = "replayer"
"""The tracer's (instrumentation scope's) name."""

# GenAI semantic conventions
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"
"""The older name of PROVIDER_NAME (OpenLLMetry and older instrumentations write it); read, never written."""
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_TOP_K = "gen_ai.request.top_k"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
"""An array: [the response's stop_reason]."""
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
"""Seconds (a double) to the first chunk of a stream."""
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
"""All input tokens, cache reads and writes included (see the module docstring)."""
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
CONVERSATION_ID = "gen_ai.conversation.id"
"""replayer's conversation id."""
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
"""On a failed attempt: the API error's type, else the HTTP status (as text), else the exception's class name."""
USER_ID = "user.id"

# GenAI content (only with otlp_content), JSON text in the convention's message/part schema
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"

# replayer's own (always)
TURN_ID = "replayer.turn_id"
TURN_INDEX = "replayer.turn_index"
ATTEMPT = "replayer.attempt"
STARTED_AT = "replayer.started_at"
"""The export line's started_at text, exactly (the span's start time is the same instant in ns)."""
LATENCY_MS = "replayer.latency_ms"
"""The export line's latency_ms, exactly (the span's end is start + latency)."""
COST_USD = "replayer.cost_usd"
STREAM = "replayer.stream"
TTFT_MS = "replayer.ttft_ms"
STATUS = "replayer.status"
"""The HTTP status (int); absent when no response arrived."""
REQUEST_ID = "replayer.request_id"
ABANDONED = "replayer.abandoned"
ENDPOINT = "replayer.endpoint"
TRACE_ID = "replayer.trace_id"
"""The user's own trace id from Recorder.conversation(trace_id=...), when set."""
TAGS = "replayer.tags"
"""JSON text of the turn's conversation tags (run id, session...)."""
MODEL = "replayer.model"
"""The export line's model (the request's model as replayer stored it)."""
IMPORTED_FROM = "replayer.imported_from"
"""The export line's imported_from, on a turn imported from elsewhere (its line's reconstructed is then true)."""
PARENT_CONVERSATION_ID = "replayer.parent_conversation_id"
"""The export line's parent_conversation_id, on a linked conversation (a fork's)."""
COPIED_FROM = "replayer.copied_from"
"""The export line's copied_from: on a fork's turn before its fork point, the recorded turn it copies."""

# replayer's own content (only with otlp_content): the export line's values as JSON text, exactly
REQUEST = "replayer.request"
"""The request body's JSON text exactly as `replayer export` writes it. Its presence marks a replayer span."""
RESPONSE = "replayer.response"
REQUEST_HEADERS = "replayer.request_headers"
RESPONSE_HEADERS = "replayer.response_headers"
"""The export line's response_headers (the API's limits and retry headers); absent: {}."""
ERROR = "replayer.error"
UNKNOWN_EVENTS = "replayer.unknown_events"
USAGE = "replayer.usage"
"""The usage JSON exactly as stored (as received)."""

# where the switches are read
ENV_OTLP = "REPLAYER_OTLP"
"""'1': `replayer record --otlp` tells its child (the boot hook's Recorder, the embedded proxy) to export."""
ENV_OTLP_CONTENT = "REPLAYER_OTLP_CONTENT"
"""'1': the same for --otlp-content."""
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The convention's content-capture variable: 'true' turns content on wherever OTLP export is on."""
