"""Cost from raw usage and a price table kept as data.

Costs are never stored: they are computed when read, from the usage exactly as the API sent it
and the table in force, so correcting a price re-prices history.

Usage semantics (API docs, prompt caching): `input_tokens` EXCLUDES cached tokens. The prompt is
input + cache writes + cache reads; each part has its own rate. Where `cache_creation` (the
5-minute / 1-hour split) is missing, every write is a 5-minute write; where it doesn't add up to
`cache_creation_input_tokens` (a split of zeros beside writes), the total wins, the writes it
doesn't place counted as 5-minute writes. A model we have no row for
has an unknown cost (None and one warning), never some other model's price.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger("replayer")

KINDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
_DATED = re.compile(r"-(\d{8}|latest)$")
"""A dated id's date (claude-haiku-4-5-20251001), or a `-latest` alias's suffix."""
_BEDROCK = re.compile(r"^(?:[a-z][a-z-]*\.)?anthropic\.(.+?)(?:-v\d+(?::\w+)*)?$")
"""Bedrock's id (anthropic.claude-sonnet-4-5-20250929-v1:0), maybe with a cross-region
inference profile's prefix (us., eu., apac., global.): the model id is in the middle."""
_VERTEX = re.compile(r"@[\w.-]+$")
"""Vertex AI's version (claude-sonnet-4-5@20250929)."""


def base_ids(model: str) -> list[str]:
    """The ids `model` prices as, most specific first: itself; Bedrock's and Vertex AI's model
    id inside it; that id without its date or `-latest`. A price file's row for any of them wins
    over the later ones, so an exact row for a provider's id is still used."""
    out = [model]
    bedrock = _BEDROCK.match(model)
    if bedrock:
        if not model.startswith("anthropic."):  # a region's profile: the id without it first
            out.append(model[model.index(".") + 1 :])
        out.append(bedrock.group(1))
    vertex = _VERTEX.search(out[-1])
    if vertex:
        out.append(out[-1][: vertex.start()])
    dated = _DATED.search(out[-1])
    if dated:
        out.append(out[-1][: dated.start()])
    return out


class PricingError(Exception):
    """A price file that can't be used; the message says which and why."""


@dataclass(frozen=True)
class Rates:
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    def get(self, kind: str) -> float:
        return float(getattr(self, kind))


@dataclass(frozen=True)
class PriceRow:
    ids: tuple[str, ...]
    rates: Rates
    source: str
    date: str
    above_tokens: int | None = None
    above: Rates | None = None
    origin: str = "built-in"
    """Which file the row came from."""


@dataclass(frozen=True)
class Breakdown:
    """What one API response cost, kind by kind."""

    model: str | None
    row: PriceRow | None
    tokens: dict[str, int]
    rates: dict[str, float]
    costs: dict[str, float]
    web_search_requests: int
    web_search_cost: float
    banded: bool
    batch: bool
    total: float | None


def _rates(d: Any, where: str) -> Rates:
    if not isinstance(d, dict):
        raise PricingError(f"{where}: must be a table of rates ({', '.join(KINDS)})")
    try:
        rates = {k: d[k] for k in KINDS}
    except KeyError as e:
        raise PricingError(f"{where}: missing rate {e.args[0]!r} (need {', '.join(KINDS)})") from None
    return Rates(**{k: _amount(v, where, "rates must be numbers (USD per million tokens)") for k, v in rates.items()})


def _amount(value: Any, where: str, what: str) -> float:
    """A number of the price file: a finite one, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PricingError(f"{where}: {what}")
    return float(value)


SECTIONS: dict[str, tuple[str, ...]] = {
    "batch": ("factor", "source", "date"),
    "server_tools": ("web_search_per_1k", "source", "date"),
}
"""The price file's tables besides [[model]], and the keys each takes."""
MODEL_KEYS = ("ids", *KINDS, "source", "date", "above", "id")
ABOVE_KEYS = ("prompt_tokens", *KINDS)


def _known(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """A name the price file doesn't take is a mistake (misspelt, its row or rate would be
    silently left out), not something to skip."""
    for key in table:
        if key not in known:
            raise PricingError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")


def _no_unknown_tables(doc: dict[str, Any], origin: str) -> None:
    tables = ", ".join(["[[model]]", *(f"[{t}]" for t in SECTIONS)])
    for name, value in doc.items():
        if name == "model" or name in SECTIONS:
            continue
        if isinstance(value, dict):
            raise PricingError(f"{origin}: unknown table [{name}] (known: {tables})")
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            raise PricingError(f"{origin}: unknown table [[{name}]] (known: {tables})")
        raise PricingError(f"{origin}: unknown key {name!r} (prices go in {tables})")


def _section(doc: dict[str, Any], name: str, origin: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise PricingError(f"{origin}: {name} must be a table ([{name}] and its keys below it)")
    for key in value:
        if key not in SECTIONS[name]:
            raise PricingError(f"{origin}: unknown key {name}.{key} (known: {', '.join(SECTIONS[name])})")
    return value


def _rows(doc: dict[str, Any], origin: str) -> list[PriceRow]:
    _no_unknown_tables(doc, origin)
    rows = []
    models = doc.get("model", [])
    if not isinstance(models, list):
        raise PricingError(f"{origin}: model must be a list of tables ([[model]] for each)")
    for i, m in enumerate(models):
        where = f"{origin}: [[model]] #{i + 1}"
        if not isinstance(m, dict):
            raise PricingError(f"{where}: must be a table ([[model]] with ids and rates below it)")
        _known(m, MODEL_KEYS, where)
        ids = m.get("ids") or ([m["id"]] if "id" in m else [])
        if isinstance(ids, str) or not ids or not all(isinstance(x, str) and x.strip() for x in ids):
            raise PricingError(f'{where}: needs ids = ["model-name", ...] (a list, even of one)')
        above = m.get("above")
        above_tokens = None
        if above is not None:
            tokens = above.get("prompt_tokens") if isinstance(above, dict) else None
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
                raise PricingError(f"{where} [above]: needs prompt_tokens = N (the prompt size past which it applies)")
            _known(above, ABOVE_KEYS, where + " [above]")
            above_tokens = above["prompt_tokens"]
        rows.append(
            PriceRow(
                ids=tuple(ids),
                rates=_rates(m, where),
                source=str(m.get("source", origin)),
                date=str(m.get("date", "")),
                above_tokens=above_tokens,
                above=_rates(above, where + " [above]") if above is not None else None,
                origin=origin,
            )
        )
    return rows


def _load_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise PricingError(f"price file {path} not found: fix the path in $REPLAYER_PRICING or --pricing") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PricingError(f"price file {path} is not valid TOML ({e}): fix it or unset $REPLAYER_PRICING") from None
    except OSError as e:
        why = e.strerror or e
        raise PricingError(f"cannot read price file {path}: {why}: fix --pricing or $REPLAYER_PRICING") from None


def token_parts(usage: dict[str, Any]) -> tuple[int, int, int, int, int, int, bool]:
    """What a usage object bills: input, output, 5-minute writes, 1-hour writes, cache reads,
    web searches, and whether it is a batch request."""
    reads = int(usage.get("cache_read_input_tokens") or 0)
    total = usage.get("cache_creation_input_tokens")
    writes = int(total or 0)
    split = usage.get("cache_creation")
    w5m, w1h = writes, 0  # no split: every write is a 5-minute write (the API's default)
    if isinstance(split, dict) and (
        split.get("ephemeral_5m_input_tokens") is not None or split.get("ephemeral_1h_input_tokens") is not None
    ):
        w1h = int(split.get("ephemeral_1h_input_tokens") or 0)
        w5m = int(split.get("ephemeral_5m_input_tokens") or 0)
        if total is not None and w5m + w1h != writes:
            # a split that doesn't add up to the total (a gateway or a transcript that fills it
            # with zeros beside 5,300 writes): the total is what the prompt held, as
            # wire.prompt_tokens counts it, so it wins; the 1-hour writes the split names (as far
            # as the total goes), the rest 5-minute writes, as where there is no split
            w1h = min(w1h, writes)
            w5m = writes - w1h
    server = usage.get("server_tool_use")
    searches = int(server.get("web_search_requests") or 0) if isinstance(server, dict) else 0
    return (
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        w5m,
        w1h,
        reads,
        searches,
        usage.get("service_tier") == "batch",
    )


def check_usage(usage: Any) -> None:
    """Raise ValueError or TypeError when a response's usage holds a count that is no number,
    read as token_parts and store/facts read it (its compaction iterations too): an import's
    reader calls the line malformed, rather than the database failing to store it."""
    if not isinstance(usage, dict):
        return
    token_parts(usage)
    for it in usage.get("iterations") or ():
        if isinstance(it, dict):
            token_parts(it)


class PriceTable:
    def __init__(self, rows: list[PriceRow], batch_factor: float = 0.5, web_search_per_1k: float = 10.0):
        self.rows = rows
        self.batch_factor = batch_factor
        self.web_search_per_1k = web_search_per_1k
        self._by_id: dict[str, PriceRow] = {}
        for row in rows:  # later rows (user files) override earlier ones id by id
            for model_id in row.ids:
                self._by_id[model_id] = row
        self._warned: set[str] = set()

    @classmethod
    def load(cls, extra: str | os.PathLike[str] | None = None) -> PriceTable:
        """The built-in table, then `$REPLAYER_PRICING`, then `extra`, each overriding by id."""
        text = resources.files("replayer").joinpath("data/prices.toml").read_text("utf-8")
        doc = tomllib.loads(text)
        rows = _rows(doc, "built-in")
        batch = float(doc.get("batch", {}).get("factor", 0.5))
        web = float(doc.get("server_tools", {}).get("web_search_per_1k", 10.0))
        for path in (os.environ.get("REPLAYER_PRICING"), extra):
            if not path:
                continue
            user = _load_file(Path(path))
            rows += _rows(user, str(path))
            batch = _amount(_section(user, "batch", str(path)).get("factor", batch), f"{path}: batch.factor",
                            "must be a number, 0 or more")  # fmt: skip
            web = _amount(_section(user, "server_tools", str(path)).get("web_search_per_1k", web),
                          f"{path}: server_tools.web_search_per_1k", "must be a number, 0 or more")  # fmt: skip
        return cls(rows, batch, web)

    @property
    def warned(self) -> set[str]:
        """Models the no-price warning was given for (or was marked as already given)."""
        return set(self._warned)

    def mark_warned(self, models: set[str]) -> None:
        """Don't warn about these models (the user was told before: see cli.py)."""
        self._warned |= models

    def effective_rows(self) -> list[PriceRow]:
        """The rows in force, in file order: each with the ids no later row overrides."""
        out = []
        for row in self.rows:
            ids = tuple(i for i in row.ids if self._by_id.get(i) is row)
            if ids:
                out.append(row if ids == row.ids else replace(row, ids=ids))
        return out

    def row_for(self, model: str | None) -> PriceRow | None:
        if not model:
            return None
        row = self._by_id.get(model)
        if row is None:
            for base in base_ids(model)[1:]:
                row = self._by_id.get(base)
                if row is not None:
                    break
        return row

    def breakdown(self, usage: dict[str, Any] | None, model: str | None) -> Breakdown:
        inp, out, w5m, w1h, reads, searches, batch = token_parts(usage or {})
        tokens = dict(zip(KINDS, (inp, out, w5m, w1h, reads), strict=True))
        row = self.row_for(model)
        if row is None:
            if model not in self._warned:
                self._warned.add(str(model))
                log.warning(
                    "replayer: no price for model %r: its cost is unknown. Add a row to a price file "
                    "($REPLAYER_PRICING or --pricing) to price it.",
                    model,
                )
            return Breakdown(model, None, tokens, {}, {}, searches, 0.0, False, batch, None)
        prompt = tokens["input"] + w5m + w1h + reads
        banded = row.above is not None and row.above_tokens is not None and prompt > row.above_tokens
        rates_row = row.above if banded and row.above else row.rates
        factor = self.batch_factor if batch else 1.0
        rates = {k: rates_row.get(k) * factor for k in KINDS}
        costs = {k: tokens[k] * rates[k] / 1_000_000 for k in KINDS}
        web_cost = searches * self.web_search_per_1k / 1000
        total = sum(costs.values()) + web_cost
        return Breakdown(model, row, tokens, rates, costs, searches, web_cost, banded, batch, total)

    def cost(self, usage: dict[str, Any] | None, model: str | None) -> float | None:
        """USD for one response, or None when the model's price is unknown.

        Beta `usage.iterations[]` entries of type compaction are billed on top of the totals
        (the totals leave them out), each at its own model's rate when it names one.
        """
        total = self.breakdown(usage, model).total
        if total is None or not usage:
            return total
        for it in usage.get("iterations") or ():
            if isinstance(it, dict) and it.get("type") == "compaction":
                extra = self.breakdown(it, it.get("model") or model).total
                if extra is None:
                    return None
                total += extra
        return total


USD_PLACES = 9
"""Sums of money are compared with a budget or threshold to the billionth of a dollar: float
noise (ten $0.03 add up to 0.30000000000000004, three $0.70 to 2.0999999999999996) must neither
put spend that equals a limit over it nor keep it under."""


def usd(v: float) -> float:
    """A sum of money as it is compared with a limit (see USD_PLACES)."""
    return round(v, USD_PLACES)


_default: PriceTable | None = None


def default_table() -> PriceTable:
    """The table in force for this process (built-in plus `$REPLAYER_PRICING`), loaded once."""
    global _default
    if _default is None:
        _default = PriceTable.load()
    return _default
