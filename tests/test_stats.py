"""Spend, health metrics and alerts, checked against numbers worked out by hand (stats_data.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from stats_data import DEE_USAGE, TURN_COST, build, unpriced_history

from replayer.cli import cli
from replayer.config import Settings
from replayer.metrics import stats
from replayer.pricing import PriceTable
from replayer.store.queries import Store
from replayer.store.schema import open_db

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
YESTERDAY_LATE = datetime(2026, 11, 25, 23, 30, tzinfo=UTC).timestamp()  # 00:30 on the 26th in Paris


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    path = tmp_path_factory.mktemp("stats") / "stats.db"
    build(path, today=NOW.timestamp() - 3600, yesterday=YESTERDAY_LATE)
    return path


def run_stats(path, **kw):
    settings = Settings(daily_budget_usd=kw.pop("budget", None), tz=kw.pop("tz", "UTC"))
    return stats(Store(open_db(path), PriceTable.load()), settings, now=NOW, **kw).document()


def dee_cost(writes, reads):
    return (10 * 3.0 + writes * 3.75 + reads * 0.30 + 10 * 15.0) / 1e6


def test_the_numbers_are_right(history):
    doc = run_stats(history, budget=0.05)
    assert (doc["since"], doc["until"], doc["tz"]) == ("2026-11-20", "2026-11-26", "UTC")
    users = {u["user_id"]: u for u in doc["users"]}
    assert users["ana"]["cost_usd"] == pytest.approx(2 * 11 * TURN_COST)
    assert (users["ana"]["conversations"], users["ana"]["turns"]) == (2, 22)
    assert users["cy"]["days"][-2] == {"date": "2026-11-25", "cost_usd": pytest.approx(11 * TURN_COST),
                                       "unpriced_attempts": 0, "attempts": 11}  # fmt: skip
    assert users["cy"]["days"][-1] == {"date": "2026-11-26", "cost_usd": 0, "unpriced_attempts": 0,
                                       "attempts": 0}  # no calls that day  # fmt: skip
    dee = sum(dee_cost(w, r) for w, r in DEE_USAGE)
    assert users["dee"]["cost_usd"] == pytest.approx(dee)
    assert [u["user_id"] for u in doc["users"]][:2] == ["ana", "ben"]
    assert doc["models"] == [{"model": "claude-sonnet-4-5", "cost_usd": pytest.approx(sum(
        u["cost_usd"] for u in doc["users"])), "turns": 51}]  # fmt: skip

    m = doc["metrics"]
    assert m["tool_failure_rate"] == {"value": 2 / 40, "threshold": 0.05, "alert": False,
                                       "unpriced_attempts": 0}  # exactly at, not over
    assert m["rate_limit_error_rate"]["value"] == 3 / 54 and m["rate_limit_error_rate"]["alert"]
    assert m["avg_turns_per_conversation"]["value"] == 51 / 6
    # eve's system prompt changes, so only the others count: 44 turns of 1,000 + dee's prompts
    dee_prompt = sum(10 + w + r for w, r in DEE_USAGE)
    assert m["cache_hit_rate"]["value"] == pytest.approx(2000 / (44 * 1000 + dee_prompt))
    assert m["cache_hit_rate"]["alert"]
    costs = sorted([11 * TURN_COST] * 4 + [dee, 2 * dee_cost(0, 5000)])
    assert doc["conversations"]["count"] == 6
    assert doc["conversations"]["mean_cost_usd"] == pytest.approx(sum(costs) / 6)
    assert doc["conversations"]["p50_cost_usd"] == pytest.approx(costs[2])  # nearest rank: 3rd of 6
    assert doc["conversations"]["p95_cost_usd"] == pytest.approx(costs[5])
    assert m["p95_latency_ms"]["value"] > 0 and not m["p95_latency_ms"]["alert"]

    budget = [a for a in doc["alerts"] if a["kind"] == "budget"]
    assert budget == [{"kind": "budget", "user_id": "ana", "date": "2026-11-26",
                       "cost_usd": pytest.approx(22 * TURN_COST), "budget_usd": 0.05,
                       "unpriced_attempts": 0}]  # fmt: skip
    cache = [a for a in doc["alerts"] if a["kind"] == "cache"]
    extra = (2100 + 2200 + 2300) * (3.75 - 0.30) / 1e6
    assert cache == [{"kind": "cache", "conversation_id": "conv_dee", "turn_index": 2,
                      "extra_cost_usd": pytest.approx(extra)}]  # fmt: skip
    metrics = {a["metric"] for a in doc["alerts"] if a["kind"] == "metric"}
    assert metrics == {"rate_limit_error_rate", "cache_hit_rate"}


def test_one_user_and_a_time_zone(history):
    doc = run_stats(history, user="cy", tz="Europe/Paris", budget=0.04)
    assert [u["user_id"] for u in doc["users"]] == ["cy"]
    # 23:30 UTC on the 25th is 00:30 on the 26th in Paris: today there, so over today's budget
    assert doc["users"][0]["days"][-1] == {"date": "2026-11-26", "cost_usd": pytest.approx(11 * TURN_COST),
                                           "unpriced_attempts": 0, "attempts": 11}  # fmt: skip
    assert doc["metrics"]["tool_failure_rate"]["value"] == 1 / 10
    cy = open_db(history).execute(
        """SELECT a.latency_ms FROM attempts a JOIN turns t ON t.id = a.turn_id
           WHERE t.conversation_id = 'conv_cy' ORDER BY a.latency_ms"""
    ).fetchall()
    assert doc["metrics"]["p95_latency_ms"]["value"] == cy[10][0]  # nearest rank: the 11th of 11
    assert [a["user_id"] for a in doc["alerts"] if a["kind"] == "budget"] == ["cy"]
    assert run_stats(history, days=1)["users"][-1]["user_id"] != "cy"  # UTC: yesterday is out


def test_spend_exactly_at_the_budget_or_threshold_is_not_over_it(tmp_path):
    """Ten turns of $0.03 add up to 0.30000000000000004 in floats: $0.30 spent is at a $0.30
    budget (or mean-cost threshold), not over it; a hundredth of a cent less is over."""
    from stats_data import one_turn

    from replayer import Recorder

    path = tmp_path / "budget.db"
    with Recorder(path) as rec, rec.conversation("conv_fay", user_id="fay"):
        for i in range(10):  # claude-haiku-4-5: $1 per million input tokens
            one_turn(rec, "claude-haiku-4-5", {"input_tokens": 30_000, "output_tokens": 0},
                     NOW.timestamp() - 3 * 3600 + 900 * i, f"q{i}")  # one a quarter hour  # fmt: skip
    store = Store(open_db(path), PriceTable.load())

    def alerts(budget: float, threshold: float) -> list[str]:
        settings = Settings(daily_budget_usd=budget)
        settings.thresholds["mean_cost_per_conversation_usd"] = threshold
        found = stats(store, settings, now=NOW).alerts
        return [a.kind if a.kind == "budget" else a.metric for a in found if a.kind == "budget" or "usd" in a.metric]

    doc = stats(store, Settings(), now=NOW)
    assert doc.users[0].cost_usd == pytest.approx(0.30)
    assert alerts(0.30, 0.30) == []
    assert alerts(0.2999, 0.2999) == ["budget", "mean_cost_per_conversation_usd"]


def test_p95_latency_is_the_nearest_rank(tmp_path):
    from replayer import Recorder

    with Recorder(tmp_path / "lat.db") as rec:
        for i in range(1, 21):
            rec.record({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}, None,
                       latency_ms=i * 100.0, started_at=NOW.timestamp() - 60, status=200)  # fmt: skip
        with rec.conversation("rerun_x", tags={"rerun_of": "turn_x"}):  # a rerun: not the agent's latency
            for _ in range(5):
                rec.record({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}, None,
                           latency_ms=99_000.0, started_at=NOW.timestamp() - 30, status=200)  # fmt: skip
    doc = run_stats(tmp_path / "lat.db")
    assert doc["metrics"]["p95_latency_ms"]["value"] == 1900.0  # the 19th of 20
    assert doc["reruns"]["turns"] == 5
    assert run_stats(tmp_path / "lat.db", user="nobody")["metrics"]["p95_latency_ms"]["value"] is None


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The same history, recorded now (the CLI's days are today's)."""
    import time

    path = tmp_path_factory.mktemp("live") / "live.db"
    build(path, today=time.time() - 120, yesterday=time.time() - 86400)
    return path


def cli_run(*args, **env):
    return CliRunner().invoke(cli, list(args), env=env or None)


def test_stats_json_shape(live):
    r = cli_run("--db", str(live), "stats", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {"since", "until", "tz", "users", "models", "conversations", "metrics", "alerts"} <= doc.keys()
    assert set(doc["users"][0]) >= {"user_id", "cost_usd", "conversations", "turns", "days"}
    assert set(doc["conversations"]) == {"count", "mean_cost_usd", "p50_cost_usd", "p95_cost_usd", "unpriced_attempts"}
    assert set(doc["metrics"]) == {"cache_hit_rate", "avg_turns_per_conversation", "p95_latency_ms",
                                   "mean_cost_per_conversation_usd", "tool_failure_rate", "rate_limit_error_rate"}
    for by in ("user", "model", "day", "conversation"):
        out = cli_run("--db", str(live), "stats", "--by", by).stdout
        assert "rate_limit_error_rate" in out and "ALERT" in out
    assert "conv_ana1" in cli_run("--db", str(live), "stats", "--by", "conversation").stdout
    assert "claude-sonnet-4-5" in cli_run("--db", str(live), "stats", "--by", "model").stdout


def test_stats_text_shows_the_budget_alerts(live):
    """`--daily-budget` (or the settings file's) shows in the text as in `alerts`: each user over
    it today, under every breakdown; the metrics past their threshold are the health table's ALERTs."""
    expected = [line for line in cli_run("--db", str(live), "alerts", "--daily-budget", "0.05").stdout.splitlines()
                if not line.startswith("metric ")]  # fmt: skip
    assert [line.split()[0] for line in expected] == ["budget", "cache"]
    for by in ("user", "model", "day", "conversation"):
        out = cli_run("--db", str(live), "stats", "--daily-budget", "0.05", "--by", by).stdout.splitlines()
        assert [line for line in out if line.startswith(("budget ", "cache ", "metric "))] == expected, by
    out = cli_run("--db", str(live), "stats").stdout
    assert "budget " not in out  # no budget set, none to be over


def test_a_day_with_no_calls_shows_a_dash_not_zero_dollars(live):
    """Per user and per day, `–` marks a day with no calls; `$0.0000` would read as calls that
    cost nothing. The JSON counts each day's attempts."""
    doc = json.loads(cli_run("--db", str(live), "stats", "--json").stdout)
    out = cli_run("--db", str(live), "stats").stdout.splitlines()
    seen = set()
    for u in doc["users"]:
        line = next(x for x in out if x.startswith(f"{u['user_id']} "))
        cells = line.split()[-len(u["days"]):]
        for day, cell in zip(u["days"], cells, strict=True):
            assert (cell == "–") == (day["attempts"] == 0), (u["user_id"], day, cell)
            seen.add(cell == "–")
    assert seen == {True, False}  # both kinds of day are in the window
    by_day = cli_run("--db", str(live), "stats", "--by", "day").stdout.splitlines()
    for day in doc["days"]:
        cell = next(x.split()[1] for x in by_day if x.split()[:1] == [day["date"]] and len(x.split()) == 2)
        assert (cell == "–") == (day["attempts"] == 0)
    assert sum(d["attempts"] for d in doc["days"]) == sum(d["attempts"] for u in doc["users"] for d in u["days"]) > 0


def test_alerts_exit_codes_flags_and_config(live, tmp_path):
    r = cli_run("--db", str(live), "alerts", "--daily-budget", "0.05", "--json")
    assert r.exit_code == 1
    kinds = sorted(a["kind"] for a in json.loads(r.stdout))
    assert kinds == ["budget", "cache", "metric", "metric"]
    quiet = ["--threshold", "rate_limit_error_rate=0.5", "--threshold", "cache_hit_rate=0"]
    r = cli_run("--db", str(live), "alerts", *quiet, "--json")
    assert r.exit_code == 1 and [a["kind"] for a in json.loads(r.stdout)] == ["cache"]
    cfg = tmp_path / "config.toml"
    cfg.write_text("[thresholds]\nrate_limit_error_rate = 0.5\ncache_hit_rate = 0.0\n[budget]\ndaily_usd = 100\n")
    r = cli_run("--db", str(live), "--config", str(cfg), "alerts")
    assert r.exit_code == 1 and r.stdout.startswith("cache ")
    r = cli_run("--db", str(live), "alerts", "--json", REPLAYER_CONFIG=str(cfg))
    assert [a["kind"] for a in json.loads(r.stdout)] == ["cache"]


def test_bad_input_is_one_line(live, tmp_path):
    for args, says in [
        (["stats", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["stats", "--tz", "America"], "unknown time zone"),  # a folder of zones
        (["alerts", "--threshold", "vibes=3"], "--threshold wants NAME=VALUE"),
        (["alerts", "--threshold", "p95_latency_ms=fast"], "is not a number"),
        (["--config", str(tmp_path / "nope.toml"), "stats"], "not found"),
    ]:
        r = cli_run("--db", str(live), *args)
        assert r.exit_code == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds]\ncache_hit_rate = 'high'\n")
    r = cli_run("--db", str(live), "--config", str(bad), "stats")
    assert r.exit_code == 2 and "must be a number" in r.stderr
    # a settings file or flag of the wrong shape: one line, never a traceback
    for text, says in [
        ("thresholds = 5\n", "thresholds must be a table"),
        ('budget = "x"\n', "budget must be a table"),
        ("stats = [1, 2]\n", "stats must be a table"),
        ("[stats]\ndays = 100000000\n", "stats.days must be a whole number of days, 1 to 36500"),
        ("[budget]\ndaily_usd = -1\n", "budget.daily_usd must be a number, 0 or more"),
        ("[budget]\ndaily_usd = nan\n", "budget.daily_usd must be a number, 0 or more"),
    ]:
        bad.write_text(text)
        r = cli_run("--db", str(live), "--config", str(bad), "alerts")
        assert r.exit_code == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (text, r.output)
    for args, says in [
        (["--config", str(tmp_path), "stats"], "cannot read config file"),
        (["stats", "--days", "100000000"], "100000000 is not in the range"),
        (["alerts", "--daily-budget", "nan"], "--daily-budget must be a number, 0 or more"),
        (["alerts", "--threshold", "cache_hit_rate=nan"], "--threshold cache_hit_rate must be a number"),
        (["list", "--until", "9999-12-31"], None),
        (["list", "--since", "0001-01-01T00:00+05:00"], "is out of range"),
        (["list", "-n", "99999999999999999999"], None),  # more than any database holds: every row
    ]:
        r = cli_run("--db", str(live), *args)
        if says is None:
            assert r.exit_code == 0, (args, r.output)
            continue
        assert r.exit_code == 2 and says in r.stderr and "Traceback" not in r.output, (args, r.output)


def test_a_settings_file_with_unknown_names_is_refused_naming_them_and_the_file(live, tmp_path):
    """A misspelt table or key would be silently ignored (and its setting not applied): it is one
    line naming it and the file, exit 2, as an unknown threshold is; so is a bad time zone."""
    cfg = tmp_path / "typo.toml"
    for text, says in [
        ("[budget]\ndaily = 0.01\n", "unknown key budget.daily (known: daily_usd)"),
        ('[stats]\ntimezone = "Asia/Tokyo"\n', "unknown key stats.timezone (known: tz, days)"),
        ("[budgets]\ndaily_usd = 0.01\n", "unknown table [budgets] (known: [thresholds], [budget], [stats])"),
        ("daily_usd = 0.01\n", "unknown key 'daily_usd' (settings go in [thresholds], [budget], [stats])"),
        ("[thresholds]\np99_latency_ms = 5\n", "unknown threshold 'p99_latency_ms'"),
        ('[stats]\ntz = "Mars/Olympus"\n', "stats.tz: unknown time zone 'Mars/Olympus'"),
        ("[thresholds]\ntool_failure_rate = 5\n", "thresholds.tool_failure_rate: 5 is more than 1: a rate is a "
                                                   "fraction (0.05 for 5%)"),
    ]:
        cfg.write_text(text)
        for args in (["--config", str(cfg), "stats"], ["alerts"]):
            r = cli_run("--db", str(live), *args, REPLAYER_CONFIG=str(cfg))
            assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (text, r.output)
            assert r.stderr.startswith(f"replayer: {cfg}: ") and says in r.stderr, (text, r.stderr)


def test_a_price_file_of_the_wrong_shape_is_one_line(live, tmp_path):
    rates = "input = 1\noutput = 2\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 0.1\n"
    bad = tmp_path / "p.toml"
    for text, says in [
        ('model = "x"\n', "model must be a list of tables"),
        ('[[model]]\nids = "my-model-x"\n' + rates, 'needs ids = ["model-name", ...] (a list, even of one)'),
        ('[[model]]\nids = ["m"]\n' + rates + "[model.above]\ninput = 1\n", "[above]: needs prompt_tokens"),
        ('[[model]]\nids = ["m"]\n' + rates + "[model.above]\nprompt_tokens = -5\n" + rates,
         "[above]: needs prompt_tokens"),
        ('[[model]]\nids = [""]\n' + rates, 'needs ids = ["model-name", ...]'),
        ('[batch]\nfactor = "half"\n', "batch.factor: must be a number"),
        ("batch = 1\n", "batch must be a table"),
        ('[[model]]\nids = ["m"]\n' + rates.replace("input = 1", "input = -1"), "rates must be numbers"),
    ]:
        bad.write_text(text)
        r = cli_run("--db", str(live), "--pricing", str(bad), "list")
        assert r.exit_code == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (text, r.output)
    bad.write_bytes(b"\xff\xfe not utf-8")
    r = cli_run("--db", str(live), "--pricing", str(bad), "list")
    assert r.exit_code == 2 and "is not valid TOML" in r.stderr
    r = cli_run("--db", str(live), "--pricing", str(tmp_path), "list")
    assert r.exit_code == 2 and "cannot read price file" in r.stderr


def test_a_price_file_with_unknown_names_is_refused_naming_them(live, tmp_path):
    """A misspelt table or key of a price file would be ignored (a row or rate silently not
    applied): one line naming it and the file, exit 2."""
    rates = "input = 1\noutput = 2\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 0.1\n"
    bad = tmp_path / "p.toml"
    for text, says in [
        ('[[models]]\nids = ["m"]\n' + rates, "unknown table [[models]] (known: [[model]], [batch], [server_tools])"),
        ('[[model]]\nids = ["m"]\n' + rates + "cache_write = 99\n", "[[model]] #1: unknown key 'cache_write'"),
        ('[[model]]\nids = ["m"]\n' + rates + "[model.above]\nprompt_tokens = 5\n" + rates + "inputs = 2\n",
         "[[model]] #1 [above]: unknown key 'inputs'"),
        ("[batch]\nfactr = 0.25\n", "unknown key batch.factr (known: factor, source, date)"),
        ("[server_tool]\nweb_search_per_1k = 5\n", "unknown table [server_tool] (known: [[model]], [batch]"),
        ("[server_tools]\nweb_search = 5\n", "unknown key server_tools.web_search (known: web_search_per_1k"),
        ("factor = 0.25\n", "unknown key 'factor' (prices go in [[model]], [batch], [server_tools])"),
    ]:
        bad.write_text(text)
        r = cli_run("--db", str(live), "--pricing", str(bad), "list")
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (text, r.output)
        assert r.stderr.startswith(f"replayer: {bad}: ") and says in r.stderr, (text, r.stderr)


def test_pricing_shows_the_table_and_where_rows_came_from(tmp_path):
    r = cli_run("pricing")
    assert r.exit_code == 0 and "claude-sonnet-4-5" in r.stdout and "above 200,000" in r.stdout
    mine = tmp_path / "mine.toml"
    mine.write_text('[[model]]\nids = ["claude-sonnet-4-5"]\ninput = 9\noutput = 9\ncache_write_5m = 9\n'
                    'cache_write_1h = 9\ncache_read = 9\nsource = "our contract"\ndate = "2026-11-01"\n')  # fmt: skip
    doc = json.loads(cli_run("--pricing", str(mine), "pricing", "--json").stdout)
    rows = {i: row for row in doc["models"] for i in row["ids"]}
    assert rows["claude-sonnet-4-5"]["origin"] == str(mine) and rows["claude-sonnet-4-5"]["input"] == 9
    assert rows["claude-sonnet-4"]["origin"] == "built-in"  # the rest of the built-in row stays
    assert rows["claude-sonnet-4"]["source"].startswith("https://")
    assert doc["batch_factor"] == 0.5


def test_settings_file_sets_the_window_and_zone(live, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[stats]\ndays = 1\ntz = "Asia/Kathmandu"\n')  # +05:45: a quarter-hour zone
    doc = json.loads(cli_run("--db", str(live), "--config", str(cfg), "stats", "--json").stdout)
    assert doc["since"] == doc["until"] and doc["tz"] == "Asia/Kathmandu"
    doc = json.loads(cli_run("--db", str(live), "--config", str(cfg), "stats", "--days", "3", "--json").stdout)
    assert len(doc["days"]) == 3
    cfg.write_text("[stats]\ndays = 0\n")
    r = cli_run("--db", str(live), "--config", str(cfg), "stats")
    assert r.exit_code == 2 and "stats.days" in r.stderr


def test_a_corrected_price_reprices_the_stats(history, tmp_path):
    fix = tmp_path / "fix.toml"
    fix.write_text('[[model]]\nids = ["claude-sonnet-4-5"]\ninput = 6\noutput = 30\ncache_write_5m = 7.5\n'
                   'cache_write_1h = 12\ncache_read = 0.6\nsource = "test"\ndate = "2026-11-26"\n')  # fmt: skip
    settings = Settings()
    before = stats(Store(open_db(history), PriceTable.load()), settings, now=NOW).document()
    after = stats(Store(open_db(history), PriceTable.load(fix)), settings, now=NOW).document()
    assert after["models"][0]["cost_usd"] == pytest.approx(2 * before["models"][0]["cost_usd"])
    assert after["users"][0]["cost_usd"] == pytest.approx(2 * 22 * TURN_COST)


def test_spend_that_leaves_out_unpriced_attempts_says_so(tmp_path):
    """A user's, a day's and today's spend that has attempts of a model with no price: `?` when
    that is all there is (never $0.0000, which reads as free), `≥$…` when the sum leaves some out;
    the JSON counts them beside each sum."""
    import time

    path = tmp_path / "unpriced.db"
    unpriced_history(path, time.time() - 60)
    doc = json.loads(cli_run("--db", str(path), "stats", "--json").stdout)
    users = {u["user_id"]: u for u in doc["users"]}
    sonnet = users["gil"]["cost_usd"]
    assert sonnet == pytest.approx((1000 * 3.0 + 100 * 15.0) / 1e6)
    assert (users["gil"]["unpriced_attempts"], users["hal"]["unpriced_attempts"]) == (2, 1)
    assert (users["hal"]["cost_usd"], users["hal"]["days"][-1]["unpriced_attempts"]) == (0, 1)
    assert doc["days"][-1]["unpriced_attempts"] == 3
    assert {t["user_id"]: t["unpriced_attempts"] for t in doc["top_users_today"]} == {"gil": 2, "hal": 1}
    convs = {c["conversation_id"]: c["unpriced_attempts"] for c in doc["top_conversations"]}
    assert convs == {"conv_gil1": 0, "conv_gil2": 2, "conv_hal": 1}

    out = cli_run("--db", str(path), "stats").stdout
    gil = next(line for line in out.splitlines() if line.startswith("gil "))
    hal = next(line for line in out.splitlines() if line.startswith("hal "))
    assert gil.split()[1] == f"≥${sonnet:.4f}" and gil.split()[-1] == f"≥${sonnet:.4f}"  # the total, and today
    assert hal.split()[1] == "?" and hal.split()[-1] == "?"
    assert f"top users today: gil ≥${sonnet:.4f}, hal ?" in out
    by_day = cli_run("--db", str(path), "stats", "--by", "day").stdout
    today = next(line for line in by_day.splitlines() if line.startswith(doc["until"]))
    assert today.split() == [doc["until"], f"≥${sonnet:.4f}"]
    by_conv = {line.split()[0]: line.split()[-1] for line in
               cli_run("--db", str(path), "stats", "--by", "conversation").stdout.splitlines()
               if line.startswith("conv_")}  # fmt: skip
    assert by_conv == {"conv_gil1": f"${sonnet:.4f}", "conv_gil2": "?", "conv_hal": "?"}
    assert doc["conversations"]["unpriced_attempts"] == 3  # the mean and quantiles are lower bounds
    assert f"conversations: 3, cost mean ≥${sonnet / 3:.4f}, p50 ?, p95 ≥${sonnet:.4f}" in out
    # the health metric is the same lower bound: marked so, and under its threshold it is not known to be ok
    assert doc["metrics"]["mean_cost_per_conversation_usd"]["unpriced_attempts"] == 3
    health = next(line for line in out.splitlines() if line.startswith("mean_cost_per_conversation_usd"))
    assert health.split()[1:] == [f"≥${sonnet / 3:.4f}", "$0.5000", "ok?"]
    low = tmp_path / "low.toml"
    low.write_text("thresholds.mean_cost_per_conversation_usd = 0.0001\nbudget.daily_usd = 0.0001\n")
    alerts = cli_run("--db", str(path), "--config", str(low), "alerts").stdout
    assert f"mean_cost_per_conversation_usd is ≥${sonnet / 3:.4f} (threshold $0.0001)" in alerts
    assert f"budget  gil spent ≥${sonnet:.4f} on {doc['until']} (budget $0.0001)" in alerts


def test_a_broken_cache_of_a_model_with_no_price_costs_an_unknown_amount(tmp_path):
    """What a moving cache breakpoint cost is unknown (`?`, null) when its model has no price,
    never $0.0000."""
    import anthropic
    from conftest import FAKE_KEY
    from stats_data import _reply, _usage

    from replayer import Recorder
    from replayer.fakeapi import FakeAPI, Reply

    path = tmp_path / "nova.db"
    with FakeAPI() as api, Recorder(path) as rec, rec.conversation("conv_nova", user_id="nia"):
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY))
        msgs = [{"role": "user", "content": "summarise the log"}]
        for k in range(3):  # every turn writes the cache and reads nothing back
            reply = {**_reply(k, _usage(10, 10, 5000, 0)), "model": "claude-nova-9"}
            api.enqueue(Reply(body=reply))
            client.messages.create(model="claude-nova-9", max_tokens=50, system="S", messages=msgs)
            msgs = [*msgs, {"role": "assistant", "content": reply["content"]}, {"role": "user", "content": f"{k}"}]
    r = cli_run("--db", str(path), "alerts", "--json")
    cache = [a for a in json.loads(r.stdout) if a["kind"] == "cache"]
    assert cache == [{"kind": "cache", "conversation_id": "conv_nova", "turn_index": 1, "extra_cost_usd": None}]
    line = next(x for x in cli_run("--db", str(path), "alerts").stdout.splitlines() if x.startswith("cache "))
    assert "cost ? more" in line and "$0.0000" not in line


def test_list_show_and_stats_print_the_same_cost_for_a_conversation(tmp_path):
    """Three haiku turns of 100 in and 10 out cost $0.00045: summed in floats it lands just
    over or just under the half, by the order of the sums; every command shows it as $0.0005
    (the hundredth of a cent, half up), not some $0.0004."""
    import time

    from stats_data import one_turn

    from replayer import Recorder

    path = tmp_path / "round.db"
    with Recorder(path) as rec, rec.conversation("conv_r", user_id="grace"):
        for i in range(3):  # $1 in, $5 out per million: $0.00015 a turn
            one_turn(rec, "claude-haiku-4-5", {"input_tokens": 100, "output_tokens": 10}, time.time() - 60 + i, f"q{i}")
    listed = next(line for line in cli_run("--db", str(path), "list").stdout.splitlines() if "conv_r" in line)
    by_conv = cli_run("--db", str(path), "stats", "--by", "conversation").stdout
    row = next(line for line in by_conv.splitlines() if line.startswith("conv_r "))
    assert "$0.0005" in listed and row.split()[-1] == "$0.0005", (listed, row)
    assert "cost mean $0.0005" in by_conv
    assert "$0.0005" in cli_run("--db", str(path), "show", "conv_r").stdout


def test_stats_by_conversation_shows_ids_whole_in_aligned_columns(tmp_path):
    """A generated id is 33 characters and a given one may be longer: each is shown whole, and the
    columns after it stay aligned."""
    import time

    from stats_data import one_turn

    from replayer import Recorder

    path = tmp_path / "ids.db"
    ids = ["conv_a", "conv_01a2439c15085b3bd79464250e3b", "conv_" + "x" * 40]
    with Recorder(path) as rec:
        for conv in ids:
            with rec.conversation(conv, user_id="u"):
                one_turn(rec, "claude-sonnet-4-5", {"input_tokens": 1000, "output_tokens": 10}, time.time() - 60)
    out = cli_run("--db", str(path), "stats", "--by", "conversation").stdout.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("CONVERSATION"))
    header, rows = out[start], out[start + 1 : start + 1 + len(ids)]
    assert sorted(row.split()[0] for row in rows) == sorted(ids)
    assert {len(row) for row in rows} == {len(header)}  # the cost column ends where its heading does
    assert {row.index("  u ") for row in rows} == {header.index("  USER")}


MESSAGE = {"id": "msg_over", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "content": [{"type": "text", "text": "Looking at the failing test now."}], "stop_reason": "end_turn",
           "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}  # fmt: skip


def overloaded_mid_stream(api, path):
    """Four turns: a stream the API cuts with an `overloaded_error` event (status 200), a 429, a
    400 and an answer; returns the stats document's 429/529 rate."""
    import anthropic
    from conftest import FAKE_KEY

    from replayer import Recorder
    from replayer.fakeapi import Reply, message_events

    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    api.enqueue(Reply(sse=message_events(MESSAGE)[:3] + [{"event": "error", "data": overloaded}]))
    api.enqueue(Reply(status=429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}))
    api.enqueue(Reply(status=400, body={"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}))
    with Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))

        def ask(text, **kw):
            return client.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                                          messages=[{"role": "user", "content": text}], **kw)

        with pytest.raises(anthropic.APIStatusError) as cut:
            for _ in ask("one", stream=True):
                pass
        assert cut.value.status_code == 200 and cut.value.type == "overloaded_error"
        with pytest.raises(anthropic.RateLimitError):
            ask("two")
        with pytest.raises(anthropic.BadRequestError):
            ask("three")
        ask("four")
    return stats(Store(open_db(path), PriceTable.load()), Settings(tz="UTC"), days=1,
                 now=datetime.now(UTC)).document()["metrics"]["rate_limit_error_rate"]["value"]


def migrated_again(path, migration, undo):
    """The usage and rollup rows as recorded; the same after `undo(db)` made the database as an
    older version left it and opening it ran `migration` again; and the database, open."""

    def rows(db):
        return (db.execute("SELECT * FROM usage ORDER BY attempt_id, part").fetchall(),
                db.execute("SELECT * FROM rollup ORDER BY conv, bucket, model, batch, band").fetchall())

    db = open_db(path)
    before = rows(db)
    undo(db)
    db.execute("DELETE FROM _sqlite_migrations WHERE name = ?", [migration])
    db.conn.commit()
    db.conn.close()
    db = open_db(path)
    return before, rows(db), db


def test_an_overload_in_the_middle_of_a_stream_counts_in_the_429_529_rate(api, tmp_path):
    """Once a stream has begun the API says it is overloaded with an `overloaded_error` event in
    a 200 (API-FACTS: classify errors by their type): the same pressure as a 529, in the same rate.
    A 400 is an error, not pressure."""
    assert overloaded_mid_stream(api, tmp_path / "r.db") == 2 / 4


def test_migrating_counts_an_older_databases_overloads_mid_stream(api, tmp_path):
    """m013 on a database recorded when the rate went by HTTP status only: the rows the writer
    makes now."""
    path = tmp_path / "old.db"
    assert overloaded_mid_stream(api, path) == 2 / 4

    def undo(db):
        (conv,) = db.execute("SELECT conv FROM usage WHERE error = 2 AND status = 200").fetchone()
        db.execute("UPDATE usage SET error = 1 WHERE error = 2")
        db.execute("UPDATE rollup SET limited = limited - 1 WHERE conv = ?", (conv,))

    before, after, db = migrated_again(path, "m013_limited_by_type", undo)
    assert after == before
    rate = stats(Store(db, PriceTable.load()), Settings(tz="UTC"), days=1, now=datetime.now(UTC)).document()
    assert rate["metrics"]["rate_limit_error_rate"]["value"] == 2 / 4


def retried_into_another_model(api, path):
    """One turn whose first attempt got a 429 (stored under the request's alias) and whose retry
    was answered by the dated model."""
    import anthropic
    from conftest import FAKE_KEY

    from replayer import Recorder
    from replayer.fakeapi import Reply

    answer = {**MESSAGE, "model": "claude-sonnet-4-5-20250929", "usage": {"input_tokens": 1000, "output_tokens": 100}}
    api.enqueue(Reply(status=429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                      headers={"retry-after": "0"}), Reply(body=answer))  # fmt: skip
    with Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=1))
        with rec.conversation("conv_retried"):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=200,
                                   messages=[{"role": "user", "content": "x"}])


def test_a_retried_turn_counts_under_the_model_that_answered_it(api, tmp_path):
    """`show` names the model of a turn's last attempt: the stats count its turn there too."""
    path = tmp_path / "r.db"
    retried_into_another_model(api, path)
    doc = stats(Store(open_db(path), PriceTable.load()), Settings(tz="UTC"), days=1, now=datetime.now(UTC)).document()
    models = {m["model"]: m for m in doc["models"]}
    assert models["claude-sonnet-4-5-20250929"]["turns"] == 1
    assert models["claude-sonnet-4-5-20250929"]["cost_usd"] == pytest.approx((1000 * 3.0 + 100 * 15.0) / 1e6)
    assert models.get("claude-sonnet-4-5", {"turns": 0})["turns"] == 0
    shown = CliRunner().invoke(cli, ["--db", str(path), "stats", "--by", "model"]).output
    assert [line.split()[-1] for line in shown.splitlines() if "claude-sonnet-4-5-20250929" in line] == ["1"]


def test_migrating_moves_an_older_databases_retried_turns_to_the_model_that_answered(api, tmp_path):
    """m014 on a database whose rollup counted a retried turn under its first attempt's model:
    the same rows as the writer makes now."""
    path = tmp_path / "old.db"
    retried_into_another_model(api, path)

    def undo(db):
        db.execute("UPDATE usage SET new_turn = 1 - new_turn WHERE part = 0")
        db.execute("UPDATE rollup SET turns = 1 - turns")

    before, after, _ = migrated_again(path, "m014_turn_under_answering_model", undo)
    assert after == before


def regenerated_after_tool_results(api, path):
    """Turn 0 calls tools a and b; turn 1 sends their results (a failed), gets a 429 and is
    retried; turn 2 sends c's and d's; then turn 1's request is sent again (a regenerated reply,
    a conversation of its own): 4 tool results, 1 of them an error."""
    import anthropic
    from conftest import FAKE_KEY

    from replayer import Recorder
    from replayer.fakeapi import Reply

    def reply(content, stop="tool_use"):
        return Reply(body={**MESSAGE, "id": f"msg_{content[0].get('id') or content[0].get('text')}",
                           "content": content, "stop_reason": stop})

    def calls(*ids):
        return [{"type": "tool_use", "id": i, "name": "f", "input": {}} for i in ids]

    def results(*ids, failed=()):
        return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": i, "content": "out",
                                             **({"is_error": True} if i in failed else {})} for i in ids]}  # fmt: skip

    api.enqueue(reply(calls("a", "b")),
                Reply(status=429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                      headers={"retry-after": "0"}),
                reply(calls("c", "d")), reply([{"type": "text", "text": "done"}], "end_turn"),
                reply([{"type": "text", "text": "other"}], "end_turn"))  # fmt: skip
    with Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=1))

        def ask(messages):
            return client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=messages)

        m0 = [{"role": "user", "content": "go"}]
        m1 = [*m0, {"role": "assistant", "content": calls("a", "b")}, results("a", "b", failed="a")]
        m2 = [*m1, {"role": "assistant", "content": calls("c", "d")}, results("c", "d")]
        for messages in (m0, m1, m2, m1):
            ask(messages)
    db = open_db(path)
    assert db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 2
    return stats(Store(db, PriceTable.load()), Settings(tz="UTC"), days=1,
                 now=datetime.now(UTC)).document()["metrics"]["tool_failure_rate"]["value"]


def test_a_regenerated_reply_does_not_count_the_tool_results_it_resends(api, tmp_path):
    """Each tool result counts once in the tool failure rate, however many branches resend it."""
    assert regenerated_after_tool_results(api, tmp_path / "r.db") == 1 / 4


def test_migrating_counts_an_older_databases_resent_tool_results_once(api, tmp_path):
    """m015 on a database whose branch's first turn counted the tool results of the history it
    resends: the same rows as the writer makes now."""
    path = tmp_path / "old.db"
    assert regenerated_after_tool_results(api, path) == 1 / 4

    def undo(db):
        (conv,) = db.execute("SELECT conv FROM usage WHERE idx = 0 GROUP BY conv HAVING MAX(at) = "
                             "(SELECT MAX(at) FROM usage)").fetchone()
        db.execute("UPDATE usage SET tool_results = 2, tool_errors = 1 WHERE conv = ? AND part = 0", (conv,))
        db.execute("UPDATE rollup SET tool_results = 2, tool_errors = 1 WHERE conv = ?", (conv,))

    before, after, db = migrated_again(path, "m015_tool_results_once", undo)
    assert after == before
    rate = stats(Store(db, PriceTable.load()), Settings(tz="UTC"), days=1, now=datetime.now(UTC)).document()
    assert rate["metrics"]["tool_failure_rate"]["value"] == 1 / 4
