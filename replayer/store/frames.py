"""The frames on the pipes between the recording process and the writer process (store/process.py,
store/child.py): a 4-byte big-endian length and a pickle; a message's records go as lists of
their fields, and their big bodies (requests, responses, streams) go over as they are, after a
frame that gives their sizes.

Why not pickle the bodies: pickling copies each into the frame while the feeder thread holds the
agent's GIL (about 24 us for a 32 KB request on a loaded 2-core machine, 150 us for a 200-turn
history), and unpickling copies it out again in the child. Written as they are, the kernel copies
them into the pipe with the GIL released, and the child reads each straight into its own object.

  ("blobs", [size, ...])  raw bytes of those sizes  (the message whose pickle names them)
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import fields
from operator import attrgetter
from typing import IO, Any

from ..captured import Captured

HEADER = struct.Struct(">I")
BLOB_BYTES = 4096
"""`bytes` at least this long go over as they are; shorter ones cost less in the pickle."""


_FIELDS = tuple(f.name for f in fields(Captured))
_ROW = attrgetter(*_FIELDS)
_BODIES = tuple(_FIELDS.index(name) for name in ("request_bytes", "response_bytes", "sse"))


def _rows(batch: list[Captured], blobs: list[bytes]) -> list[list[Any]]:
    """A batch's records as lists of their fields, each big body replaced by its number in
    `blobs`. Why lists: a slots dataclass pickles through Python-level `__getstate__`, and a
    pickler's `persistent_id` is called back for every object in the message (a stream's chunk
    times are dozens); lists of plain values pickle in C, at a third of the time."""
    rows = []
    for captured in batch:
        row = list(_ROW(captured))
        for i in _BODIES:
            body = row[i]
            if type(body) is bytes and len(body) >= BLOB_BYTES:
                blobs.append(body)
                row[i] = len(blobs) - 1
        rows.append(row)
    return rows


def _records(rows: list[list[Any]], blobs: list[bytes]) -> list[Captured]:
    for row in rows:
        for i in _BODIES:
            if type(row[i]) is int:
                row[i] = blobs[row[i]]
    return [Captured(*row) for row in rows]


def encode(msg: Any) -> list[bytes]:
    """`msg` as the parts to write, in order (raises what pickling raises)."""
    blobs: list[bytes] = []
    if type(msg) is tuple and msg and msg[0] == "put":
        msg = ("put", _rows(msg[1], blobs))
    body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    frame = HEADER.pack(len(body)) + body
    if not blobs:
        return [frame]
    sizes = pickle.dumps(("blobs", [len(b) for b in blobs]), protocol=pickle.HIGHEST_PROTOCOL)
    return [HEADER.pack(len(sizes)) + sizes, *blobs, frame]


def read_frame(pipe: IO[bytes]) -> Any:
    """The next message, its bodies in place; None at the end of the pipe (or a frame cut off)."""
    blobs: list[bytes] = []
    while True:
        head = pipe.read(HEADER.size)
        if len(head) < HEADER.size:
            return None
        (size,) = HEADER.unpack(head)
        body = pipe.read(size)
        if len(body) < size:
            return None
        msg = pickle.loads(body)
        if not (type(msg) is tuple and msg and msg[0] == "blobs"):
            return ("put", _records(msg[1], blobs)) if type(msg) is tuple and msg and msg[0] == "put" else msg
        for n in msg[1]:
            blob = pipe.read(n)
            if len(blob) < n:
                return None
            blobs.append(blob)
