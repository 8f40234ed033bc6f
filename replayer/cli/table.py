"""The CLI's tables, printed in one place: fixed-width columns two spaces apart.

Rich (which Textual brings) prints tables too, but not these: its columns size themselves to the
cells and the terminal, and it cuts with its own ellipsis, so the output people and scripts
already read (padded to fixed widths, cells cut by `one_line`, plain ASCII) would change. This
keeps it byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    title: str
    """"" for a column with no heading (the header line stops before it)."""
    width: int = 0
    """Cells are padded to this; 0: not padded (a last column of free text)."""
    right: bool = False
    """Right-aligned (numbers)."""

    def pad(self, cell: object) -> str:
        text = printable(str(cell))
        return text.rjust(self.width) if self.right else text.ljust(self.width)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with its control characters written out (`\\x1b`): a recorded message or id is
    shown, never run by the terminal (an escape sequence could retitle the window, clear the
    screen or hide what follows)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if _CONTROL.search(text) else text


class Table:
    """Columns of fixed width: `header()` and `row(...)` give each line as a string."""

    def __init__(self, *columns: Column):
        self.columns: Sequence[Column] = columns

    def header(self) -> str:
        titled = list(self.columns)
        while titled and not titled[-1].title:
            titled.pop()
        return self.row(*(c.title for c in titled))

    def row(self, *cells: object) -> str:
        """One line: each cell (already formatted as text) padded to its column; a row may have
        fewer cells than the table has columns."""
        return "  ".join(column.pad(cell) for column, cell in zip(self.columns, cells))  # noqa: B905 - a short row
