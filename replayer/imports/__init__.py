"""Other sources of turns than the wire: records other tools kept (Claude Code transcripts)."""


def source_name(source: str) -> str:
    """How a source reads in a sentence: `claude-code` is Claude Code."""
    return source.replace("-", " ").title()
