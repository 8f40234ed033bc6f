"""Counting the tool_result blocks (and errors) a turn's request added to its conversation,
each message blob counted once and each message list's totals summed once. Runs on the
background writer only."""

from __future__ import annotations

from sqlite_utils import Database

from ..bounded import BoundedDict
from . import facts
from .blobs import MAX_CACHE
from .chain import alike, chain_nodes, shared_prefix
from .scan import ParsedRequest
from .schema import blob_obj


class ToolResults:
    """tool_result counts, cached per message blob and per node (neither ever changes)."""

    def __init__(self, db: Database):
        self.db = db
        self.per_blob: BoundedDict[int, tuple[int, int]] = BoundedDict(MAX_CACHE)
        """Message blob -> its tool_result blocks and errors."""
        self.per_node: BoundedDict[int, tuple[int, int]] = BoundedDict(MAX_CACHE)
        """Node -> the tool_result blocks and errors of its whole list (the latest lists are the
        ones asked for again)."""

    def forget(self) -> None:
        self.per_blob.clear()
        self.per_node.clear()

    def added(self, parsed: ParsedRequest, prev_node: int | None, prev_len: int, threaded: bool) -> tuple[int, int]:
        """tool_result blocks (and how many are errors) in the messages this request added to its
        conversation: those after what it shares with the previous turn's context and after those
        an earlier request sent already (all of them for a tool-runner thread request, which
        carries only new ones). A message counts once, however many branches resend it."""
        messages = parsed.messages or []
        if threaded:
            return facts.tool_counts([m for m in messages if m is not None])
        nodes = parsed.nodes
        if prev_node is None:
            shared = 0
        elif 0 < prev_len <= len(nodes) and nodes[prev_len - 1] == prev_node:
            shared = prev_len  # the usual case: the whole previous context, then new messages
        else:  # compacted, edited, or a cache breakpoint moved: compare message by message
            shared = self._shared(parsed, prev_node, prev_len)
        # messages an earlier request sent (a regenerated reply, or a branch, resends the history
        # it leaves from as a conversation of its own): their tool results were counted then
        shared = max(shared, parsed.known)
        if shared >= len(nodes):
            return 0, 0
        end = self._total(parsed, len(nodes) - 1)
        if not shared:
            return end
        start = self._total(parsed, shared - 1)
        return end[0] - start[0], end[1] - start[1]

    def _shared(self, parsed: ParsedRequest, prev_node: int, prev_len: int) -> int:
        """How many leading messages the request shares with the previous turn's context: node by
        node (equal node ids = equal prefixes), then on over messages that differ only in
        `cache_control` (an agent moving its cache breakpoint re-sends the last ones so)."""
        before = chain_nodes(self.db, prev_node)[::-1]
        nodes = parsed.nodes
        shared = shared_prefix([nid for nid, _, _ in before], nodes)
        end = min(prev_len, len(before), len(nodes))
        while shared < end:
            old_blob, new_blob = before[shared][2], parsed.blobs[shared]
            if old_blob != new_blob:
                message = parsed.messages[shared] if parsed.messages else None
                new = message if message is not None else blob_obj(self.db, new_blob)
                if not alike(blob_obj(self.db, old_blob), new):
                    break
            shared += 1
        return shared

    def _total(self, parsed: ParsedRequest, k: int) -> tuple[int, int]:
        """tool_result blocks (and errors) in the request's messages 0..k, kept per node: a list's
        totals are its parent list's plus its last message's, so a long history is summed once,
        and each request adds the counts of its new messages only."""
        totals = self.per_node
        nodes = parsed.nodes
        got = totals.get(nodes[k])
        if got is not None:
            return got
        j = k
        while j >= 0 and nodes[j] not in totals:  # back to the longest list already summed
            j -= 1
        n, errors = totals[nodes[j]] if j >= 0 else (0, 0)
        for i in range(j + 1, k + 1):
            added, added_errors = self._counts(parsed, i)
            n, errors = n + added, errors + added_errors
            totals[nodes[i]] = (n, errors)
        return n, errors

    def _counts(self, parsed: ParsedRequest, i: int) -> tuple[int, int]:
        """tool_result blocks (and errors) in the request's message i, counted once per blob."""
        blob = parsed.blobs[i]
        counts = self.per_blob.get(blob)
        if counts is None:
            message = parsed.messages[i] if parsed.messages else None
            if message is None:  # reused from a recent request without being parsed, and not counted yet
                message = blob_obj(self.db, blob)
            counts = facts.tool_counts([message])
            self.per_blob[blob] = counts
        return counts
