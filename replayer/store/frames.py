"""The frames on the pipes between the recording process and the writer process (store/process.py,
store/child.py): a 4-byte big-endian length and a pickle; a message's big `bytes` (request and
response bodies) go over as they are, after a frame that gives their sizes.

Why not pickle the bodies: pickling copies each into the frame while the feeder thread holds the
agent's GIL (about 24 us for a 32 KB request on a loaded 2-core machine, 150 us for a 200-turn
history), and unpickling copies it out again in the child. Written as they are, the kernel copies
them into the pipe with the GIL released, and the child reads each straight into its own object.

  ("blobs", [size, ...])  raw bytes of those sizes  (the message whose pickle names them)
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import IO, Any

HEADER = struct.Struct(">I")
BLOB_BYTES = 4096
"""`bytes` at least this long go over as they are; shorter ones cost less in the pickle."""


class _Pickler(pickle.Pickler):
    def __init__(self, file: IO[bytes], blobs: list[bytes]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.blobs = blobs

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) is bytes and len(obj) >= BLOB_BYTES:
            self.blobs.append(obj)
            return len(self.blobs) - 1
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], blobs: list[bytes]) -> None:
        super().__init__(file)
        self.blobs = blobs

    def persistent_load(self, pid: Any) -> bytes:
        return self.blobs[pid]


def encode(msg: Any) -> list[bytes]:
    """`msg` as the parts to write, in order (raises what pickling raises)."""
    blobs: list[bytes] = []
    buf = io.BytesIO()
    _Pickler(buf, blobs).dump(msg)
    frame = HEADER.pack(buf.tell()) + buf.getvalue()
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
        msg = _Unpickler(io.BytesIO(body), blobs).load()
        if not (type(msg) is tuple and msg and msg[0] == "blobs"):
            return msg
        for n in msg[1]:
            blob = pipe.read(n)
            if len(blob) < n:
                return None
            blobs.append(blob)
