"""What the screens and commands say: counts in proper words, units on every figure, no Python
`None`, whole model ids, local times, and warnings only where they are due (issue 13, point 19)."""

from __future__ import annotations

import re
import time

import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from textual.widgets import DataTable, Input, Static
from tui_data import T0, answer_reruns, build_db, open_second_conversation, reply, send_rerun, settle

from replayer import Recorder, replay
from replayer.cli import cli
from replayer.demo import load_fixtures
from replayer.fmt import local_time, money
from replayer.tui.app import make_app
from replayer.tui.compare import CompareScreen
from replayer.tui.rerun import RerunScreen
from replayer.tui.text_view import TextView
from replayer.tui.variants import VariantsScreen


def static_text(screen, selector: str) -> str:
    """What a Static shows, or a TextView (the tabs whose text can be megabytes)."""
    from replayer.tui.text_view import TextView

    widget = screen.query_one(selector)
    return widget.text.plain if isinstance(widget, TextView) else str(screen.query_one(selector, Static).render())


def row(table: DataTable, i: int) -> list[str]:
    return [str(c) for c in table.get_row_at(i)]


# -- counts and None --------------------------------------------------------------------------


async def test_one_message_one_turn_and_no_none_stop_reason(tmp_path):
    path = tmp_path / "one.db"
    no_stop = {**reply("Half an answer"), "stop_reason": None}
    with Recorder(path) as rec:
        rec.record({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]},
                   no_stop, conversation_id="conv_one", started_at=T0)  # fmt: skip
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        title = static_text(screen, "#conv-title")
        assert "1 turn " in title + " " and "1 turns" not in title
        context = screen.query_one("#context-body", TextView).text.plain
        assert "1 message in context" in context and "1 messages" not in context
        await pilot.press("a")  # the whole context
        await settle(pilot)
        assert "Whole context: 1 message\n" in screen.query_one("#context-body", TextView).text.plain
        await pilot.press("2")
        await settle(pilot)
        shown = "\n".join(str(s.render()) for s in screen.query("#response-body Static"))
        assert "stop_reason: —" in shown and "None" not in shown


# -- units --------------------------------------------------------------------------------------


def _fast_calls(path):
    """Calls of a few tens of milliseconds, made a minute ago (inside the dashboard's window)."""
    with Recorder(path) as rec:
        for i, latency in enumerate((12.0, 38.0, 25.0)):
            request = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": f"q{i}"}]}
            rec.record(request, reply(f"a{i}"), conversation_id=f"conv_{i}", started_at=time.time() - 60,
                       latency_ms=latency)  # fmt: skip
    return path


async def test_dashboard_latency_has_the_unit_of_its_value(tmp_path):
    db = _fast_calls(tmp_path / "fast.db")
    app = make_app(db)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        table = app.screen.query_one("#dash-metrics", DataTable)
        rows = {r[0]: r for r in (row(table, i) for i in range(table.row_count))}
        value = app.stats_doc(app.screen.days).metrics["p95_latency_ms"].value
        assert value < 1000  # these calls are all under a second
        assert "p95 latency" in rows and "p95 latency ms" not in rows
        assert rows["p95 latency"][1] == f"{value:,.0f} ms"  # not "0.04 s"


async def test_dashboard_title_shows_its_figures_at_100_columns(tmp_path):
    """The title's conversation figures end with p95: it wraps rather than ending at "p50"."""
    app = make_app(_fast_calls(tmp_path / "fast.db"))
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        title = app.screen.query_one("#dash-title", Static)
        shown = " ".join(
            "".join(segment.text for segment in title.render_line(y)).strip() for y in range(title.size.height)
        )
        p95 = money(app.stats_doc(app.screen.days).conversations.p95_cost_usd)
        assert f"p95 {p95}" in shown


def test_stats_latency_in_milliseconds(tmp_path):
    db = _fast_calls(tmp_path / "fast.db")
    out = CliRunner().invoke(cli, ["--db", str(db), "stats"]).output
    line = next(x for x in out.splitlines() if x.startswith("p95_latency_ms"))
    assert re.search(r"\b\d+ ms\b", line) and " 0.0" not in line


# -- rerun screens --------------------------------------------------------------------------------

LONG_MODEL = "claude-haiku-4-5-20251001-with-a-long-suffix"


@pytest.fixture
def env(api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    answer_reruns(api)
    return api


async def test_rerun_words_units_whole_model_ids_and_variant_count(tmp_path, env):
    db = build_db(tmp_path / "tui.db")
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_second_conversation(pilot)
        await pilot.press("r")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, RerunScreen)
        assert "no earlier variants" in static_text(editor, "#rr-title")
        model = editor.query_one("#rr-model", Input)
        model.value = LONG_MODEL
        await pilot.pause()
        assert model.content_size.width > len(LONG_MODEL)  # the whole id shows in the editor
        await send_rerun(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        table = compare.query_one("#cmp-samples", DataTable)
        assert row(table, 1)[table.get_column_index("Model")] == LONG_MODEL
        assert table.columns["Model"].width >= len(LONG_MODEL)  # shown whole, not cut
        delta = row(table, 1)[table.get_column_index("Δ lat")]
        assert re.fullmatch(r"[+-][\d,.]+ (ms|s)|0 ms", delta), delta
        assert "1 distinct output in 1 of 1" in static_text(compare, "#cmp-title")
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is editor
        title = static_text(editor, "#rr-title")
        assert "1 earlier variant (ctrl+o)" in title and "(s)" not in title
        await pilot.press("ctrl+o")
        await settle(pilot)
        variants = app.screen
        assert isinstance(variants, VariantsScreen)
        created = row(variants.query_one(DataTable), 0)[1]
        assert created == local_time(variants.variants[0].created_at) and "T" not in created
        shown = "".join(segment.text for segment in variants.query_one(DataTable).render_line(1))
        assert f" {variants.variants[0].variant} " in shown  # the whole id, not cut to 32 silently


def test_a_difference_is_never_a_signed_zero():
    """`$0.0047 (-$0.0000)` beside $0.0048 and `105 ms (-0 ms)` read as no difference where there
    was one: a difference under the precision shown gets the digits that make it non-zero; none
    at all has no sign."""
    from replayer.fmt import delta_money, ms

    assert delta_money(0.00474 - 0.0047775) == "-$0.00004"
    assert delta_money(0.00296 - 0.00294) == "+$0.00002"
    assert delta_money(0.0) == "$0" and delta_money(0.1 + 0.2 - 0.3) == "$0"  # float noise is no cost
    assert delta_money(0.0078) == "+$0.0078" and delta_money(-1.5) == "-$1.5000"
    assert ms(-0.3, signed=True) == "-0.3 ms" and ms(0.04, signed=True) == "+0.04 ms"
    assert ms(0.0, signed=True) == "0 ms" and ms(-0.0, signed=True) == "0 ms"
    assert ms(38.2, signed=True) == "+38 ms" and ms(-5900, signed=True) == "-5.9 s"


# -- validation of what the demo sends ----------------------------------------------------------


def test_top_level_cache_control_is_a_messages_parameter():
    sent = [t["request"] for fx in load_fixtures() for t in fx["turns"] if "cache_control" in t["request"]]
    assert sent, "the demo fixtures send a top-level cache_control (automatic prompt caching)"
    for req in sent:
        words = [p.message for p in replay.validate(req, {"anthropic-version": "2023-06-01"})]
        assert not [w for w in words if "cache_control" in w], words


def test_automatic_caching_takes_one_of_the_four_breakpoints():
    block = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    req = {"model": "claude-sonnet-4-5", "max_tokens": 10, "system": [block] * 2,
           "messages": [{"role": "user", "content": [block] * 2}]}  # fmt: skip
    assert not any("breakpoints" in p.message for p in replay.validate(req, {}))
    req["cache_control"] = {"type": "ephemeral"}
    assert any("5 cache_control breakpoints" in p.message for p in replay.validate(req, {}))


# -- the unpriced-model warning -----------------------------------------------------------------


def _record(path, model, conversation):
    with Recorder(path) as rec:
        rec.record({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                   reply("ok", model=model), conversation_id=conversation, started_at=T0)  # fmt: skip


def test_the_no_price_warning_comes_once_per_database_and_again_for_a_new_model(tmp_path, caplog):
    db = tmp_path / "w.db"
    _record(db, "claude-nova-9", "conv_a")

    def stderr(*args, path=db):
        """What the command warned (the `replayer` logger's lines go to stderr)."""
        caplog.clear()
        result = CliRunner().invoke(cli, ["--db", str(path), *args])
        assert result.exit_code == 0, result.output
        return result.stderr + "\n".join(r.getMessage() for r in caplog.records)

    assert "no price for model 'claude-nova-9'" in stderr("list")
    assert "no price" not in stderr("list")
    assert "no price for model" not in stderr("show", "conv_a")
    _record(db, "claude-orbit-2", "conv_b")
    told = stderr("list")
    assert "no price for model 'claude-orbit-2'" in told and "claude-nova-9" not in told
    assert "no price" not in stderr("list")
    other = tmp_path / "other.db"  # another database: told again
    _record(other, "claude-nova-9", "conv_c")
    assert "no price for model 'claude-nova-9'" in stderr("list", path=other)



def test_the_no_price_warning_stays_told_when_switching_databases(tmp_path, caplog):
    """Each database's told models are kept side by side: going back to one told before does not warn."""
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    _record(a, "claude-nova-9", "conv_a")
    _record(b, "claude-nova-9", "conv_b")

    def warned(path):
        caplog.clear()
        result = CliRunner().invoke(cli, ["--db", str(path), "list"])
        assert result.exit_code == 0, result.output
        return "no price" in result.stderr + "\n".join(r.getMessage() for r in caplog.records)

    assert [warned(p) for p in (a, a, b, a, b)] == [True, False, True, False, False]

def test_counts_in_messages_of_the_core_are_pluralised():
    from replayer.tui.blocks import cut

    assert "… 1 more character (press a" in cut("abcd", 3)
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    orig = replay.Original(turn_id="t", conversation_id="c", index=0, request=request, headers={}, response=None,
                           usage=None, model=None, cost_usd=None, latency_ms=None)  # fmt: skip
    with pytest.raises(replay.ReplayError, match=r"the request has 1 message \(0\.\.0\)"):
        replay.apply(orig, replay.Edits(messages={3: "x"}))


async def test_a_turn_without_model_or_answer_shows_no_python_none(tmp_path):
    path = tmp_path / "none.db"
    with Recorder(path) as rec:
        rec.record({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, None,
                   conversation_id="conv_none", started_at=T0)  # fmt: skip
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "2")
        await settle(pilot)
        screen = app.screen
        response = "\n".join(str(s.render()) for s in screen.query("#response-body Static"))
        assert "No response" in response and "None" not in response
        await pilot.press("4")
        await settle(pilot)
        usage = static_text(screen, "#usage-body")
        assert usage.startswith("model —") and "None" not in usage


def test_money_below_a_hundredth_of_a_cent_is_not_shown_as_nothing():
    assert money(0.000015) == money(0.000045) == "<$0.0001"
    assert money(0.0) == "$0.0000" and money(0.00005) == "$0.0001" and money(None) == "?"


async def test_calls_that_cost_a_little_never_show_as_costing_nothing(tmp_path):
    """Three haiku turns of 10 tokens in and 1 out cost $0.000045: `<$0.0001` wherever a cost
    shows (`$0.0000` only ever means calls that cost nothing), and never cut."""
    path = tmp_path / "tiny.db"
    msgs = [{"role": "user", "content": "hi"}]
    with Recorder(path) as rec:
        for i in range(3):
            answer = reply(f"ok {i}", model="claude-haiku-4-5", usage={"input_tokens": 10, "output_tokens": 1})
            rec.record({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": msgs}, answer,
                       conversation_id="conv_tiny", started_at=T0 + i)  # fmt: skip
            msgs = [*msgs, {"role": "assistant", "content": answer["content"]}, {"role": "user", "content": "more"}]

    def run(*args):
        result = CliRunner().invoke(cli, ["--db", str(path), *args])
        assert result.exit_code == 0, result.output
        assert "$0.0000" not in result.output
        return result.output

    assert re.search(r"\s<\$0\.0001\s", run("list"))
    shown = run("show", "conv_tiny")
    assert shown.count("<$0.0001") == 4 and "total <$0.0001" in shown  # each turn, and their total
    assert "<$0.0001" in run("stats", "--days", "10000", "--by", "model")
    assert "<$0.0001" in run("stats", "--days", "10000", "--by", "conversation")
    app = make_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "<$0.0001" in row(app.screen.query_one(DataTable), 0)


def test_the_unpriced_note_agrees_with_its_count(tmp_path):
    path = tmp_path / "u.db"
    _record(path, "claude-foo-9", "conv_one")
    for model, conversation in (("claude-bar-9", "conv_two"), ("claude-bar-9", "conv_three")):
        _record(path, model, conversation)
    told = CliRunner().invoke(cli, ["--db", str(path), "stats", "--days", "10000"]).stderr
    assert "note: 1 attempt of claude-foo-9 has no price and counts as $0" in told
    assert "note: 2 attempts of claude-bar-9 have no price and count as $0" in told


async def test_the_usage_tab_says_when_the_long_context_band_priced_a_turn(tmp_path):
    """Sonnet's rates above 200,000 prompt tokens are the band's: the tab says the band applied,
    and says nothing of it for a turn under it."""
    path = tmp_path / "long.db"
    msgs = [{"role": "user", "content": "read all of it"}]
    with Recorder(path) as rec:
        for i, tokens in enumerate((250_000, 1_000)):
            answer = reply(f"part {i}", usage={"input_tokens": tokens, "output_tokens": 10})
            rec.record({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": msgs}, answer,
                       conversation_id="conv_long", started_at=T0 + i)  # fmt: skip
            msgs = [*msgs, {"role": "assistant", "content": answer["content"]}, {"role": "user", "content": "less"}]
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "4")
        await settle(pilot)
        screen = app.screen
        usage = static_text(screen, "#usage-body")
        assert "long-context band: the prompt is above 200,000 input tokens" in usage
        assert "6.000" in usage  # the band's input rate, beside it
        await pilot.press("down")
        await settle(pilot)
        usage = static_text(screen, "#usage-body")
        assert "3.000" in usage and "long-context" not in usage
