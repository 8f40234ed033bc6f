"""Forking from the browser: `f` on a turn opens the rerun editor in fork mode (rerun.py); once
confirmed, `replayer fork` runs in a process of its own (the agent's output goes to a log file,
not over the screen) and the new conversation opens at once, its turns appearing as the run
records them (the conversation screen polls); a notice says how the fork ended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import replay
from ..store.codec import new_id


def fork_command(db: Path, turn_id: str, edits: replay.Edits, fork_id: str, ignore: tuple[str, ...] = ()) -> list[str]:
    """`replayer fork` for `turn_id` with the editor's edits and --ignore paths, naming the new
    conversation. -P: not the working directory first (`-m` would put it there), so a `replayer`
    folder where the browser was opened (a checkout of another version) is not the one that runs."""
    return [sys.executable, "-P", "-m", "replayer.cli", "--db", str(db), "fork", turn_id, "--yes",
            "--fork-id", fork_id, "--edits-json", json.dumps(edits.to_json(), ensure_ascii=False),
            *[arg for path in ignore for arg in ("--ignore", path)]]


def start_fork(app: Any, turn_id: str, edits: replay.Edits, ignore: tuple[str, ...] = ()) -> str:
    """Start the fork and open its conversation; the new conversation's id."""
    from .conversation import ConversationScreen  # it opens the rerun editor, which starts forks

    fork_id = new_id("conv_")
    log = Path(tempfile.gettempdir()) / f"replayer-{fork_id}.log"
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(fork_command(app.db_path, turn_id, edits, fork_id, ignore), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)

    def wait() -> None:
        code = proc.wait()
        lines = [line for line in log.read_text("utf-8", "replace").splitlines() if line.strip()]
        ours = [line for line in lines if line.startswith("replayer")]
        last = ours[-1] if ours else (lines[-1] if lines else "")
        app.call_from_thread(
            app.notify, f"{last}\n(output: {log})", title=f"Fork ended (exit {code})",
            severity="information" if code == 0 else "warning", timeout=15,
        )

    app.run_worker(wait, thread=True, group="fork", exit_on_error=False)
    app.switch_screen(ConversationScreen(fork_id))
    app.notify(f"fork {fork_id} started: its turns appear as the run records them (output: {log})",
               title="Fork", timeout=8)
    return fork_id
