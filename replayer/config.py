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
    tz = "UTC"                            # any IANA zone: every time shown, the days of stats
    days = 7                              # the window stats, alerts and the dashboard show
"""

from __future__ import annotations

import functools
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
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

    default_file = False
    """The file is the default one (config.toml in the config folder), not one named by
    --config or $REPLAYER_CONFIG: a command that runs an agent goes on without it."""


@dataclass
class Settings:
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    daily_budget_usd: float | None = None
    tz: str | None = None
    """`[stats] tz` (or `--tz`): the zone of every date and time shown and read (a bare date in a
    filter), and of the days stats and alerts count. None when not set: then times are the
    machine's (shown_tz) and stats' days UTC days, as documented for `--tz`."""
    days: int = 7
    source: str | None = None
    """The file the settings came from, if any."""

    def check(self) -> None:
        """Bad input (ConfigError) that would only surface once the numbers are computed, said
        before any work: today an unknown time zone."""
        if self.tz is not None:
            zone(self.tz)

    def shown_tz(self) -> str:
        """The zone times are shown and filter dates read in: the configured one, else the
        machine's. One zone for every screen: a time listed at 22:30 is found by `until` that day."""
        return self.tz or local_zone()


UTC_NAMES = {"Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu", "Etc/GMT", "GMT", "UTC"}
"""The names UTC goes by (a machine's /etc/localtime often links to Etc/UTC): all shown as UTC."""


def local_zone() -> str:
    """The machine's time zone by its IANA name: $TZ's (as the C library reads it), else the one
    /etc/localtime links to or /etc/timezone names; failing those, the offset it has now
    (`UTC+05:30`, with no summer time then)."""
    return _local_zone(os.environ.get("TZ"))


@functools.cache
def _local_zone(tz_env: str | None) -> str:
    names: list[str] = []
    if tz_env is not None:  # set, it is all the C library reads ("" is UTC)
        names.append(tz_env.removeprefix(":") or "UTC")
    else:
        try:
            names.append(os.path.realpath("/etc/localtime"))
        except OSError:
            pass
        try:
            names.append(Path("/etc/timezone").read_text("utf-8").strip())
        except (OSError, UnicodeDecodeError):
            pass
    for name in names:
        name = name.rpartition("zoneinfo/")[2] if "zoneinfo/" in name else name
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
        return "UTC" if name in UTC_NAMES else name
    offset = datetime.now().astimezone().utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset else 0
    return "UTC" if not minutes else f"UTC{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def zone(name: str, where: str = "") -> tzinfo:
    """The zone `name` (an IANA name, or `UTC+05:30` as local_zone may give), or bad input
    prefixed with `where` (the file and key it came from)."""
    fixed = re.fullmatch(r"UTC([+-])(\d\d):(\d\d)", name)
    if fixed:
        sign = 1 if fixed[1] == "+" else -1
        return timezone(sign * timedelta(hours=int(fixed[2]), minutes=int(fixed[3])), name)
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
    try:
        file.stat()
    except (FileNotFoundError, NotADirectoryError):
        if explicit:
            raise ConfigError(f"config file {file} not found: fix --config or $REPLAYER_CONFIG") from None
        return Settings()
    except OSError:
        pass  # there, but not to be looked at (a folder on its way without access): read it to say why
    try:
        return _read(file, "fix --config or $REPLAYER_CONFIG" if explicit else "fix it or remove it")
    except ConfigError as e:
        e.default_file = not explicit
        raise


def _read(file: Path, remedy: str) -> Settings:
    settings = Settings()
    try:
        doc = tomllib.loads(file.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {file} is not valid TOML ({e}): fix it") from None
    except OSError as e:
        why = e.strerror or e
        raise ConfigError(f"cannot read config file {file}: {why}: {remedy}") from None
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
