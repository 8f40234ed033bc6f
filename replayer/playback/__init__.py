"""Answering an agent from a recording (`replayer replay`, the pytest plugin): source.py loads a
recording, matching.py picks the recorded attempt that answers a request, answer.py writes it on
the wire, server.py serves it over HTTP. Headless; importing the package imports nothing heavy
(server.py imports aiohttp)."""

OFFLINE_KEY = "replayer-replay-offline"
"""The ANTHROPIC_API_KEY a replay gives a program when the environment has none: nothing leaves
the machine, but an SDK or a framework may refuse to start without a key."""
