"""Shared by the benchmarks: a fake API in its own process, and realistic agent histories."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from contextlib import contextmanager
from typing import Any


def _bytecode() -> None:
    """Compile replayer's modules once, here: the processes a benchmark starts (the writer
    process, the CLI, a proxy) then import it from bytecode, as an installed copy does (pip
    compiles on install). With PYTHONDONTWRITEBYTECODE set, as on our machines, a checkout's
    modules edited since their .pyc was written were compiled from source in every one of them:
    about 40-80 ms of CPU more per writer process start when none was compiled."""
    import compileall

    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "replayer")
    compileall.compile_dir(package, quiet=1)


_bytecode()

SYSTEM = ("You are a careful coding agent working in a Python repository. " * 70)[:4096]
TOOLS = [
    {
        "name": name,
        "description": f"{name} tool: " + "does the obvious thing with care. " * 8,
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "file path"}, "pattern": {"type": "string"}},
            "required": ["path"],
        },
    }
    for name in ("read_file", "write_file", "run_tests", "grep", "list_dir")
]


def tool_result_text(i: int, size: int = 2048) -> str:
    rnd = random.Random(i)
    lines = []
    while sum(len(x) + 1 for x in lines) < size:
        lines.append(f"    line {rnd.randint(1, 9999)}: value = compute(x{rnd.randint(0, 99)}, y) + {rnd.random():.6f}")
    return "\n".join(lines)[:size]


def assistant_turn(i: int) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [
            {"type": "text", "text": f"Step {i}: let me look at the next file."},
            {"type": "tool_use", "id": f"toolu_{i:024d}", "name": "read_file", "input": {"path": f"src/mod_{i}.py"}},
        ],
    }


def tool_result(i: int, size: int = 2048, tool_use_id: str | None = None) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": tool_use_id or f"toolu_{i:024d}",
                "content": tool_result_text(i, size),
            }
        ],
    }


def history(turns: int, size: int = 2048) -> list[dict[str, Any]]:
    """A conversation `turns` turns deep: the task, then assistant tool calls and their results."""
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Fix the failing test in tests/test_parser.py"}]
    for i in range(turns - 1):
        msgs.append(assistant_turn(i))
        msgs.append(tool_result(i, size))
    return msgs


@contextmanager
def fake_api_process():
    """The fake API in another process, so it doesn't share the GIL with what we measure."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "replayer.fakeapi", "--port", "0", "--fast"], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def size_of(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())
