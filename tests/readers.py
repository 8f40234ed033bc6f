"""Readers for readahead's tests, imported by name in a reader process. Kept apart from the test
modules so that process imports only this: a test module imports conftest, and with it the SDK,
which costs ~6 s of CPU on a slow machine for every reader a test starts."""

from __future__ import annotations

import os
import sys


def counting(n, fail):
    """Yields n items, then fails as asked: "error" raises, "die" ends the process, and "no start"
    fails to start (only in a reader process) as a reader whose imports fail would."""
    if fail == "no start" and sys.argv[0].endswith("readahead.py"):  # (only in a reader process)
        print("ImportError: no module named something_missing", file=sys.stderr)
        os._exit(1)
    for i in range(n):
        yield {"i": i, "body": bytes([i % 256]) * 5000}
    if fail == "error":
        raise ValueError("line 3: not what was expected")
    if fail == "die":
        os._exit(3)


def echoing(n):
    """Yields what it was sent for the item before."""
    sent = None
    for i in range(n):
        sent = yield {"i": i, "sent": sent, "body": b"x" * 100_000}
