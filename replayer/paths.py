"""Where replayer keeps its files by default: the user's data and config folders, the default
database, and the environment variable `replayer record` reports through.

The folders come from platformdirs (installed with Textual), with one exception kept on purpose:
on macOS replayer has always used ~/Library/Application Support, while platformdirs 4 lets a set
$XDG_DATA_HOME / $XDG_CONFIG_HOME win there; a Mac user's database must not move. Two small
differences from the hand-written version this replaces: a relative $XDG_* folder is ignored
(the XDG spec says so), and on Windows the folder comes from the shell rather than from the
%LOCALAPPDATA% / %APPDATA% variables (the same folder unless those were changed by hand).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "replayer"

DB_ENV = "REPLAYER_DB"
REPORT_ENV = "REPLAYER_REPORT_DIR"
"""Set by `replayer record` for its child processes: the folder where each process reports what
it stored (autorecord.py writes the reports, the writer keeps the conversation ids they list)."""


def _macos() -> Path:
    return Path.home() / "Library" / "Application Support" / APP


def data_dir() -> Path:
    """The user's data folder for replayer (XDG on Linux)."""
    if sys.platform == "darwin":
        return _macos()
    import platformdirs  # here, not at the top: the writer process never asks (5 ms of CPU to import)

    return Path(platformdirs.user_data_dir(APP, appauthor=False, roaming=False))


def config_dir() -> Path:
    """The user's config folder for replayer (XDG on Linux)."""
    if sys.platform == "darwin":
        return _macos()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP, appauthor=False, roaming=True))


def default_db_path() -> Path:
    """`$REPLAYER_DB`, else replayer.db in the user's data folder; absolute (a relative one is
    taken from the working folder now, not wherever the program has moved to when it is opened)."""
    env = os.environ.get(DB_ENV)
    return Path(os.path.abspath(Path(env).expanduser() if env else data_dir() / "replayer.db"))
