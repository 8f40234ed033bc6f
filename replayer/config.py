"""The user's settings file: health thresholds, the daily budget, the time zone for days.

`--config FILE`, else `$REPLAYER_CONFIG`, else config.toml in the user's config folder (read
when it exists; none is needed). Flags override it. Example:

    [thresholds]
    cache_hit_rate = 0.6                  # alert when below
    avg_turns_per_conversation = 15       # the others alert when above
    p95_latency_ms = 10000
    mean_cost_per_conversation_usd = 0.50
    tool_failure_rate = 0.05
    rate_limit_error_rate = 0.01

    [budget]
    daily_usd = 5.00                      # per user per day

    [stats]
    tz = "UTC"                            # days for stats and alerts; any IANA zone
    days = 7                              # the window stats, alerts and the dashboard show
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .paths import config_dir

DEFAULT_THRESHOLDS: dict[str, float] = {
    "cache_hit_rate": 0.60,
    "avg_turns_per_conversation": 15,
    "p95_latency_ms": 10_000,
    "mean_cost_per_conversation_usd": 0.50,
    "tool_failure_rate": 0.05,
    "rate_limit_error_rate": 0.01,
}
LOWER_IS_BAD = {"cache_hit_rate"}
"""Metrics that alert when they fall below their threshold (the rest alert above it)."""


MAX_DAYS = 36_500
"""The longest window `--days` and `[stats] days` take (a hundred years)."""


class ConfigError(Exception):
    """A settings file or flag that can't be used; the message says which and what to do."""


@dataclass
class Settings:
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    daily_budget_usd: float | None = None
    tz: str = "UTC"
    days: int = 7
    source: str | None = None
    """The file the settings came from, if any."""

    def check(self) -> None:
        """Bad input (ConfigError) that would only surface once the numbers are computed, said
        before any work: today an unknown time zone."""
        zone(self.tz)


def zone(name: str, where: str = "") -> ZoneInfo:
    """The zone `name`, or bad input prefixed with `where` (the file and key it came from)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a folder of zones: OSError
        raise ConfigError(
            f"{where}unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None


def check_threshold(name: str, value: Any, where: str) -> float:
    """A threshold's value: a number 0 or more, and a rate (`*_rate`) a fraction, 0 to 1."""
    number = check_number(value, where)
    if name.endswith("_rate") and number > 1:
        raise ConfigError(f"{where}: {number:g} is more than 1: a rate is a fraction (0.05 for 5%)")
    return number


def check_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a number, 0 or more")
    return float(value)


KEYS: dict[str, tuple[str, ...]] = {
    "thresholds": tuple(DEFAULT_THRESHOLDS),
    "budget": ("daily_usd",),
    "stats": ("tz", "days"),
}
"""Every table of the settings file and the keys it takes: any other name is a mistake (a
misspelt one would otherwise be ignored, and its setting silently not applied)."""


def _table(doc: dict[str, Any], name: str, file: Path) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: {name} must be a table ([{name}] and its keys below it): fix it")
    for key in value:
        if key not in KEYS[name]:
            what = "threshold " + repr(key) if name == "thresholds" else f"key {name}.{key}"
            raise ConfigError(f"{file}: unknown {what} (known: {', '.join(KEYS[name])})")
    return value


def _no_unknown_tables(doc: dict[str, Any], file: Path) -> None:
    tables = ", ".join(f"[{t}]" for t in KEYS)
    for name, value in doc.items():
        if name in KEYS:
            continue
        if isinstance(value, dict):
            raise ConfigError(f"{file}: unknown table [{name}] (known: {tables})")
        raise ConfigError(f"{file}: unknown key {name!r} (settings go in {tables})")


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from `path`, else $REPLAYER_CONFIG, else the default file when it exists."""
    explicit = path or os.environ.get("REPLAYER_CONFIG")
    file = Path(explicit).expanduser() if explicit else config_dir() / "config.toml"
    settings = Settings()
    if not file.exists():
        if explicit:
            raise ConfigError(f"config file {file} not found: fix --config or $REPLAYER_CONFIG")
        return settings
    try:
        doc = tomllib.loads(file.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {file} is not valid TOML ({e}): fix it") from None
    except OSError as e:
        why = e.strerror or e
        raise ConfigError(f"cannot read config file {file}: {why}: fix --config or $REPLAYER_CONFIG") from None
    settings.source = str(file)
    _no_unknown_tables(doc, file)
    for name, value in _table(doc, "thresholds", file).items():
        settings.thresholds[name] = check_threshold(name, value, f"{file}: thresholds.{name}")
    budget = _table(doc, "budget", file).get("daily_usd")
    if budget is not None:
        settings.daily_budget_usd = check_number(budget, f"{file}: budget.daily_usd")
    stats = _table(doc, "stats", file)
    tz = stats.get("tz")
    if tz is not None:
        settings.tz = str(tz)
        zone(settings.tz, f"{file}: stats.tz: ")
    days = stats.get("days")
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise ConfigError(f"{file}: stats.days must be a whole number of days, 1 to {MAX_DAYS}")
        settings.days = days
    return settings


def set_threshold(settings: Settings, spec: str) -> None:
    """Apply a `NAME=VALUE` flag."""
    name, sep, value = spec.partition("=")
    name = name.strip()
    if not sep or name not in DEFAULT_THRESHOLDS:
        raise ConfigError(f"--threshold wants NAME=VALUE with NAME one of {', '.join(DEFAULT_THRESHOLDS)}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"--threshold {name}: {value!r} is not a number") from None
    settings.thresholds[name] = check_threshold(name, number, f"--threshold {name}")
