"""Other sources of turns than the wire: records other tools kept (Claude Code transcripts), and
replayer's own export read back (export.py)."""


def source_name(source: str) -> str:
    """How a source reads in a sentence: `claude-code` is Claude Code."""
    return source.replace("-", " ").title()


def rebuilt_from(source: str) -> tuple[str, str]:
    """(what a reconstructed turn's request was rebuilt from, what the rebuilding lost), as they
    read in a sentence: a Claude Code transcript keeps no system prompt or tools; another
    instrumentation's OpenTelemetry span (`import otlp`) keeps what its attributes held."""
    if source == "otlp":
        return "another instrumentation's OpenTelemetry span", "only what its attributes held"
    return f"a {source_name(source)} transcript", "no system prompt or tools were kept"
