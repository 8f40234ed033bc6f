"""SVG snapshots of the three screens at a fixed size and theme.

Compared with the files in tests/snapshots/. After a deliberate change to what a screen shows,
run `REPLAYER_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_snapshots.py`, look at the SVGs
(any browser shows them) and commit them.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from tui_data import build_db, settle

from replayer.tui.app import make_app

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (120, 36)


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def normalise(svg: str) -> str:
    """The export names its CSS classes after a per-run id; nothing else varies."""
    return re.sub(r"terminal-\d+", "terminal-X", svg)


def check(name: str, svg: str) -> None:
    svg = normalise(svg)
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("REPLAYER_UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(svg, encoding="utf-8")
        if not os.environ.get("REPLAYER_UPDATE_SNAPSHOTS"):
            pytest.fail(f"{path} did not exist and was written: look at it, commit it, run again")
        return
    assert svg == path.read_text(encoding="utf-8"), (
        f"{name} differs from {path}; if the change is intended, update with REPLAYER_UPDATE_SNAPSHOTS=1"
    )


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_screens(tmp_path, theme, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the app shows the database path: keep it the same every run
    db = build_db(Path("snap.db"))
    app = make_app(db)
    app.theme = theme
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        check(f"conversations-{theme}", app.export_screenshot(title="conversations"))
        await pilot.press("j", "enter")
        await settle(pilot)
        await pilot.press("j", "j", "3")
        await settle(pilot)
        check(f"conversation-{theme}", app.export_screenshot(title="conversation"))
        await pilot.press("f1")
        await settle(pilot)
        check(f"help-{theme}", app.export_screenshot(title="help"))
