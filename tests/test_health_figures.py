"""A health value and its threshold, printed side by side (`stats`, `alerts`, the dashboard), read
differently whenever they differ: as many more decimals as that takes, half up as money is; a
figure alone keeps its short form."""

from __future__ import annotations

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY

from replayer import Recorder
from replayer.cli import cli
from replayer.fakeapi import FakeAPI, Reply
from replayer.fmt import fmt_metric, metric_pair

LIMITED = Reply(status=429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
                headers={"retry-after-ms": "1"})  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Through the real SDK against the fake: 9 turns in 4 conversations (2.25 a conversation) and
    13 attempts, 5 of them 429s (38.46…%): 4 retried and answered, 1 given up."""
    path = tmp_path_factory.mktemp("health") / "health.db"
    with FakeAPI() as api, Recorder(path) as rec:
        retrying = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=1))
        once = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        for conv, turns in (("conv_a", 3), ("conv_b", 2), ("conv_c", 2), ("conv_d", 2)):
            msgs = [{"role": "user", "content": conv}]
            with rec.conversation(conv, user_id="ann"):
                for k in range(turns):
                    given_up = (conv, k) == ("conv_d", 1)
                    if k == 0 or given_up:
                        api.enqueue(LIMITED)
                    try:
                        (once if given_up else retrying).messages.create(
                            model="claude-haiku-4-5", max_tokens=10, messages=msgs)  # fmt: skip
                    except anthropic.RateLimitError:
                        assert given_up
                    msgs = [*msgs, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
        assert rec.flush(10)
    return path


def run(db, *args: str, code: int = 0) -> str:
    r = CliRunner().invoke(cli, ["--db", str(db), *args])
    assert r.exit_code == code, r.output
    return r.output


def health_row(out: str, name: str) -> list[str]:
    return next(line for line in out.splitlines() if line.startswith(name + " ")).split()[1:]


def test_the_database_holds_the_figures_the_tests_read(db):
    import json

    metrics = json.loads(run(db, "stats", "--json"))["metrics"]
    assert metrics["avg_turns_per_conversation"]["value"] == 9 / 4
    assert metrics["rate_limit_error_rate"]["value"] == 5 / 13


@pytest.mark.parametrize(("threshold", "row"), [
    ("2.2", ["2.3", "2.2", "ALERT"]),  # half up: 2.25 is 2.3 (round() made it 2.2, as the threshold)
    ("2.3", ["2.25", "2.30", "ok"]),  # 2.3 at one decimal, both: a decimal more tells them apart
    ("2.251", ["2.250", "2.251", "ok"]),  # 2.25 and 2.25 at two: a third
    ("2.25", ["2.3", "2.3", "ok"]),  # the same figure: short
])  # fmt: skip
def test_stats_prints_a_value_and_its_threshold_apart_when_they_differ(db, threshold, row):
    out = run(db, "stats", "--threshold", f"avg_turns_per_conversation={threshold}")
    assert health_row(out, "avg_turns_per_conversation") == row


def test_an_alert_on_a_rate_says_the_digits_that_put_it_over(db):
    out = run(db, "alerts", "--threshold", "rate_limit_error_rate=0.3846", code=1)  # 1: alerts raised
    assert "rate_limit_error_rate is 38.462% (threshold 38.460%)" in out
    assert health_row(run(db, "stats", "--threshold", "rate_limit_error_rate=0.3846"),
                      "rate_limit_error_rate") == ["38.462%", "38.460%", "ALERT"]  # fmt: skip
    assert health_row(run(db, "stats"), "rate_limit_error_rate")[:2] == ["38.5%", "1.0%"]  # the default: short


async def test_the_dashboards_health_table_tells_a_value_from_its_threshold(db, tmp_path):
    from test_tui import cell_texts
    from textual.widgets import DataTable
    from tui_data import open_dashboard

    from replayer.config import load as load_settings
    from replayer.tui.app import make_app

    config = tmp_path / "config.toml"
    config.write_text("[thresholds]\navg_turns_per_conversation = 2.3\nrate_limit_error_rate = 0.3846\n")
    app = make_app(db, settings=load_settings(config))
    async with app.run_test(size=(160, 45)) as pilot:
        await open_dashboard(pilot)
        health = {r[0]: r[1:] for r in cell_texts(app.screen.query_one("#dash-metrics", DataTable))}
    assert health["avg turns per conversation"] == ["2.25", "> 2.30", "ok"]
    assert health["rate limit error rate"] == ["38.462%", "> 38.460%", "ALERT"]


@pytest.mark.parametrize(("name", "value", "threshold", "pair"), [
    ("p95_latency_ms", 2049.0, 2000.0, ("2.05 s", "2.00 s")),
    ("p95_latency_ms", 850.4, 850.0, ("850.4 ms", "850.0 ms")),
    ("p95_latency_ms", 850.0, 2000.0, ("850 ms", "2.0 s")),
    ("mean_cost_per_conversation_usd", 0.50004, 0.5, ("$0.50004", "$0.50000")),
    ("cache_hit_rate", 0.1 + 0.2, 0.3, ("30.0%", "30.0%")),  # a float's noise: the same to a reader
    ("tool_failure_rate", None, 0.05, ("n/a", "5.0%")),
])  # fmt: skip
def test_each_kind_of_figure_takes_the_decimals_that_tell_it_apart(name, value, threshold, pair):
    assert metric_pair(name, value, threshold) == pair
    if value is not None:
        assert fmt_metric(name, value) == fmt_metric(name, value, more=0)  # alone: the short form


@pytest.mark.parametrize(("cost", "budget", "line"), [
    (0.009225, 0.00922, "spent $0.00923 on 2026-12-06 (budget $0.00922)"),  # was $0.0092 against $0.0092
    (0.0092201, 0.00922, "spent $0.0092201 on 2026-12-06 (budget $0.0092200)"),
    (0.0093, 0.0092, "spent $0.0093 on 2026-12-06 (budget $0.0092)"),  # apart at 4: short
    (0.00922, 0.00922, "spent $0.0092 on 2026-12-06 (budget $0.0092)"),  # the same figure
])  # fmt: skip
def test_a_budget_alert_tells_the_spend_from_the_budget(cost, budget, line):
    """A budget alert printed the spend and the budget to 4 decimals, so a user typing
    `--daily-budget 0.00922` read `spent $0.0092 (budget $0.0092)`; they now take the decimals a
    metric and its threshold take to read differently (places_apart)."""
    from replayer.fmt import describe_alert
    from replayer.models import BudgetAlert

    alert = BudgetAlert(user_id="bob", date="2026-12-06", cost_usd=cost, budget_usd=budget, unpriced_attempts=0)
    assert describe_alert(alert) == f"budget  bob {line}"


def test_alerts_prints_a_budget_just_under_the_spend_apart_from_it(db):
    import json

    from replayer.fmt import money

    spent = json.loads(run(db, "alerts", "--json", "--daily-budget", "0", code=1))
    (cost,) = [a["cost_usd"] for a in spent if a["kind"] == "budget"]
    budget = cost - 0.000004
    assert money(cost) == money(budget)  # the two read the same at the usual 4 decimals
    out = run(db, "alerts", "--daily-budget", repr(budget), code=1)
    line = next(x for x in out.splitlines() if x.startswith("budget"))
    shown, limit = line.split("spent ")[1].split(" on ")[0], line.split("(budget ")[1].rstrip(")")
    assert shown != limit and len(shown) == len(limit) > len(money(cost)), line
