"""Filtering conversations by their tags: `replayer list --tag KEY=VALUE` (`--run ID` being the
tag run=ID), `tag:KEY=VALUE` in the browser's filter, and the filter words the browser names."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from textual.widgets import DataTable, Input, Static
from tui_data import reply, settle

from replayer import Recorder
from replayer.cli import cli
from replayer.filters import FILTER_WORDS, FilterError, parse_filter
from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app
from replayer.tui.conversations import ConversationsScreen
from replayer.tui.help import HelpScreen

TAGGED = {
    "conv_search": {"team": "search", "env": "prod", "run": "run_1"},
    "conv_search_dev": {"team": "search", "env": "dev"},
    "conv_billing": {"team": "billing", "attempt": 2, "beta": True, "run": "run_2"},
    "conv_plain": None,
}


@pytest.fixture
def tagged(tmp_path):
    path = tmp_path / "tags.db"
    with Recorder(path) as rec:
        for n, (cid, tags) in enumerate(TAGGED.items()):
            with rec.conversation(cid, tags=tags):
                rec.record({"model": "claude-haiku-4-5", "max_tokens": 20,
                            "messages": [{"role": "user", "content": f"question {cid}"}]},
                           reply("ok", model="claude-haiku-4-5"), started_at=1_764_000_000.0 + n)  # fmt: skip
    return path


def listed(path, *args: str) -> set[str]:
    result = CliRunner().invoke(cli, ["--db", str(path), "list", "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {row["conversation_id"] for row in json.loads(result.output)}


def test_parse_filter_reads_tags_and_runs():
    assert parse_filter("tag:team=search tag:env=prod run:run_1 slow") == {
        "tags": [("team", "search"), ("env", "prod")], "run": "run_1", "query": "slow"}  # fmt: skip
    assert parse_filter('tag:"note=two words"') == {"tags": [("note", "two words")]}
    assert parse_filter("tag:empty=") == {"tags": [("empty", "")]}
    for bad in ("tag:team", "tag:=search"):
        with pytest.raises(FilterError, match="tag:KEY=VALUE"):
            parse_filter(bad)


def test_store_keeps_conversations_with_every_tag(tagged):
    store = Store(open_db(tagged))

    def ids(**kw) -> set[str]:
        return {c.conversation_id for c in store.conversations(**kw)}

    assert ids(tags=[("team", "search")]) == {"conv_search", "conv_search_dev"}
    assert ids(tags=[("team", "search"), ("env", "dev")]) == {"conv_search_dev"}
    assert ids(tags=[("team", "search"), ("team", "billing")]) == set()
    # a value that isn't a string matches as written
    assert ids(tags=[("attempt", "2")]) == ids(tags=[("beta", "true")]) == {"conv_billing"}
    assert ids(tags=[("beta", "1")]) == set()
    assert ids(tags=[("nope", "x")]) == set()
    # the run is the tag run=ID, and combines with other tags
    assert ids(run="run_1") == ids(tags=[("run", "run_1")]) == {"conv_search"}
    assert ids(run="run_1", tags=[("team", "billing")]) == set()
    assert store.run_conversations("run_2") == ["conv_billing"]


def test_list_tag_option(tagged):
    assert listed(tagged, "--tag", "team=search") == {"conv_search", "conv_search_dev"}
    assert listed(tagged, "--tag", "team=search", "--tag", "env=prod") == {"conv_search"}
    assert listed(tagged, "--run", "run_2") == listed(tagged, "--tag", "run=run_2") == {"conv_billing"}
    assert listed(tagged) == set(TAGGED)
    nothing = CliRunner().invoke(cli, ["--db", str(tagged), "list", "--tag", "team=ops"])
    assert nothing.exit_code == 0 and "No conversation matches --tag team=ops." in nothing.output
    bad = CliRunner().invoke(cli, ["--db", str(tagged), "list", "--tag", "team"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == ["replayer: --tag team: write --tag KEY=VALUE, e.g. --tag team=search"]


async def test_browser_filters_by_tag_and_run(tagged):
    app = make_app(tagged)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConversationsScreen)
        table = screen.query_one(DataTable)

        async def shown(text: str) -> set[str]:
            screen.filter_to(text)
            await settle(pilot)
            return {str(table.get_row_at(i)[1]) for i in range(table.row_count)}

        assert await shown("tag:team=search") == {"conv_search", "conv_search_dev"}
        assert await shown("tag:team=search tag:env=dev") == {"conv_search_dev"}
        assert await shown("run:run_2") == {"conv_billing"}
        assert await shown("tag:attempt=2 question") == {"conv_billing"}
        before = await shown("tag:env=prod")
        assert await shown("tag:env") == before  # refused, said, and the list left as it was
        assert any("tag:KEY=VALUE" in str(n.message) for n in app._notifications)


async def test_browser_names_the_filter_words(tagged):
    app = make_app(tagged)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        placeholder = app.screen.query_one("#filter", Input).placeholder
        assert all(word in placeholder for word, _ in FILTER_WORDS)
        assert "run:ID" in placeholder and "tag:KEY=VALUE" in placeholder
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        help_text = str(app.screen.query_one(Static).render())
        for word, meaning in FILTER_WORDS:
            assert f"{word}  {meaning}" in help_text
