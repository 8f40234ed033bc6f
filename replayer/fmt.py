"""How numbers and times read on screen, the same in the CLI and the terminal app."""

from __future__ import annotations

from datetime import datetime


def local_time(iso: str | None, with_date: bool = True) -> str:
    """An ISO-8601 UTC timestamp in the user's local time."""
    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return t.astimezone().strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M:%S")


def money(v: float | None) -> str:
    """USD to the hundredth of a cent; `?` when the price is unknown."""
    return "?" if v is None else f"${v:,.4f}"
