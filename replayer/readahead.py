"""Reading ahead in a child process: an import's input read and parsed on one core while this
process writes, on another, what was read before it.

An import is a reader (a generator of picklable batches: parsing the input's JSON, the records it
makes) and a writer (the Ingestor, one transaction per batch). Run one after the other, the
writer waits for every line's parsing; here the reader runs in a child Python process
(`python -m replayer.readahead MODULE:FUNCTION ARGS`) and sends its batches back over a pipe, one
pickle each, at most about one batch ahead (a full pipe makes it wait), so both cores work and
memory stays bounded. (Pickling costs each side a few hundredths of a millisecond a span: the
batches' records are plain tuples, which pickle in C, see otlp/reading.Record.wire.)

Any import can use it: the target is a module-level generator function taking JSON arguments.
At each yield it is sent how long, in seconds, its last item waited for the caller to take it
(None when it runs in this process): a reader that can share work with the writer (otlp's request
scan) takes more of it while the writer is the slower of the two, less while it is itself.
What it raises reaches the caller as the same exception (a bad input's one line, say); a child
that dies without a word is an error naming its exit status. A small input, stdin, or a machine
with one core are read in this process instead (`batches(..., inline=True)`): starting a Python
process costs about a tenth of a second.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from typing import IO, Any

GC_THRESHOLD = (20_000, 50, 1000)
"""The cyclic collector's thresholds while an import runs (Python's are 700, 10, 10). Parsing a
line of spans makes tens of thousands of dicts and lists that live until the line is done: with
the usual thresholds the collector ran a thousand times per 10,000 spans and took about a
quarter of the reader's time (measured with gc.callbacks). What an import makes is freed by its
reference counts; the rare cycle is still collected, later."""
END = "end"
RAISE = "raise"
ITEM = "item"


class ReaderDied(Exception):
    """The reader process ended without finishing or saying why."""


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _target(name: str) -> Callable[..., Generator[Any, Any, Any]]:
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def batches(target: str, args: list[Any], *, inline: bool = False) -> Generator[Any, None, None]:
    """What `target(*args)` yields ("package.module:function", a generator; `args` JSON values),
    made in a child process unless `inline` (or this machine has one core). A reader process that
    dies before its first batch (it could not start: an odd interpreter, say) is told of on stderr
    and the input read here instead; one that dies later raises ReaderDied."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)  # (the writer's side too, while the caller writes between batches)
    try:
        if inline or cores() < 2 or not sys.executable:
            yield from _target(target)(*args)
            return
        started = False
        try:
            for item in _in_child(target, args):
                started = True
                yield item
        except ReaderDied as e:
            if started:
                raise
            print(f"replayer: {e}; reading in this process instead", file=sys.stderr)
            yield from _target(target)(*args)
    finally:
        gc.set_threshold(*before)


def _in_child(target: str, args: list[Any]) -> Generator[Any, None, None]:
    env = dict(os.environ)
    # the child imports replayer from where this process did (a checkout, a test's path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    said = tempfile.TemporaryFile()  # its stderr: the last line names what killed it
    proc = subprocess.Popen(
        # -P: `-m` would put the current folder first, and a `replayer` folder there would win
        [sys.executable, "-P", "-m", "replayer.readahead", target, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=said,
        env=env,
        start_new_session=True,  # Ctrl-C is this process's to handle: it ends the reader (no second traceback)
    )
    assert proc.stdout is not None
    finished = False
    try:
        while True:
            size = _SIZE.unpack(proc.stdout.read(_SIZE.size) or b"\0" * _SIZE.size)[0]
            data = proc.stdout.read(size) if size else b""
            if not size or len(data) < size:  # (the child died, or died mid-message)
                break
            kind, value = pickle.loads(data)
            if kind == ITEM:
                yield value
            elif kind == RAISE:
                finished = True
                raise value
            else:
                finished = True
                break
    finally:
        if not finished:
            proc.kill()  # the caller stopped early (an error of its own, Ctrl-C): the rest is not wanted
        proc.stdout.close()
        code = proc.wait()
        said.seek(0)
        last = (said.read().decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        said.close()
    if not finished and code != 0:
        raise ReaderDied(f"the reader process ended unexpectedly (exit status {code}{': ' + last if last else ''})")


def _child(target: str, args_json: str) -> int:
    """The reader process: a pickle of each thing the target yields (after its size) on the pipe
    that was stdout (which then points at stderr, so nothing printed can break one)."""
    out = os.fdopen(os.dup(1), "wb", buffering=1 << 20)
    os.dup2(2, 1)
    gc.set_threshold(*GC_THRESHOLD)
    try:
        made = _target(target)(*json.loads(args_json))
        waited = None
        while True:
            try:
                item = made.send(waited)
            except StopIteration:
                break
            waited = _send(out, (ITEM, item))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # the caller raises it (a bad input's message)
        try:
            _send(out, (RAISE, e))
        except Exception:  # (an exception that can't be pickled: its words)
            _send(out, (RAISE, ReaderDied(f"the reader process failed: {type(e).__name__}: {e}")))
    else:
        _send(out, (END, None))
    try:
        out.flush()
    except BrokenPipeError:
        return 1
    return 0


def _send(out: IO[bytes], msg: Any) -> float:
    """Send `msg`: its size, then its pickle (the caller reads it whole before unpickling, so that
    the time this takes is the time the caller was busy before it, not its unpickling too).
    Returns that time, in seconds."""
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    t = time.perf_counter()
    out.write(_SIZE.pack(len(data)))
    out.write(data)
    out.flush()
    return time.perf_counter() - t


_SIZE = struct.Struct("<Q")


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
