"""Other sources of turns than the wire: records other tools kept (Claude Code transcripts)."""
