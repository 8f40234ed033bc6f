"""`--user` takes a user id as `list` shows it cut (a Claude Code user is a 64-hex device id, shown
`7f857da98d790…`), or any prefix of one user's id, as conversation and turn ids are taken: in
`list`, `stats`, `import otlp` (whose users are the spans' and the database's) and the browser's
`user:` filter. One that begins several users' ids is one line
naming them, exit 2 (the browser: the filter bar marked, the list as it was). An exact id still
names only itself."""

from __future__ import annotations

import json

import anthropic
from click.testing import CliRunner
from conftest import FAKE_KEY
from textual.widgets import Input
from tui_data import settle

from replayer import Recorder
from replayer.cli import cli
from replayer.fakeapi import FakeAPI
from replayer.fmt import users_label
from replayer.otlp import names as n
from replayer.tui.app import make_app

DEVICE = "7f857da98d790" + "3c1e5b7a9d2f4e6a8c0b1d3f5a7c9e1b3d5f7a9c2e4b6d8f0a1c"
OTHER = "7f857da98d791" + "b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2"
USERS = {"conv_device": DEVICE, "conv_other": OTHER, "conv_al": "al", "conv_alice": "alice"}


def record(path) -> None:
    with FakeAPI() as api, Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        for conv, user in USERS.items():
            with rec.conversation(conv, user_id=user):
                client.messages.create(model="claude-sonnet-4-5", max_tokens=8,
                                       messages=[{"role": "user", "content": f"hi from {conv}"}])  # fmt: skip
        assert rec.flush(10)


def run(path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(path), *args])


def listed(path, *args: str) -> set[str]:
    r = run(path, "list", "--json", *args)
    assert r.exit_code == 0, r.output
    return {c["conversation_id"] for c in json.loads(r.output)}


def test_list_and_stats_take_a_users_id_as_list_shows_it_cut_or_any_unique_prefix(tmp_path):
    path = tmp_path / "u.db"
    record(path)
    shown = run(path, "list").output
    cut = next(word for word in shown.split() if word.startswith("7f857da98d790"))
    assert cut.endswith("…") and len(cut) < len(DEVICE), shown  # as list shows it
    for given in (cut, cut.removesuffix("…"), DEVICE[:20], DEVICE):
        assert listed(tmp_path / "u.db", "--user", given) == {"conv_device"}, given
        r = run(path, "stats", "--user", given, "--json")
        assert r.exit_code == 0, r.output
        users = json.loads(r.output)["users"]
        assert [u["user_id"] for u in users] == [DEVICE] and users[0]["cost_usd"] > 0, users
        r = run(path, "stats", "--user", given)
        assert r.exit_code == 0 and f"user {DEVICE}" in r.output.splitlines()[0], r.output
    # an exact id names itself alone, though it begins another's
    assert listed(path, "--user", "al") == {"conv_al"}
    assert listed(path, "--user", "alice") == {"conv_alice"}
    assert listed(path, "--user", "ali") == {"conv_alice"}


def test_a_user_prefix_that_begins_several_is_one_line_naming_them_exit_2(tmp_path):
    path = tmp_path / "u.db"
    record(path)
    for command in (["list"], ["stats"], ["list", "--json"], ["stats", "--json"]):
        r = run(path, *command, "--user", "7f857da98d79")
        assert r.exit_code == 2, (command, r.output)
        (line,) = r.output.strip().splitlines()
        assert "2 user ids" in line and DEVICE in line and OTHER in line and "Traceback" not in line, line


async def test_the_browsers_user_filter_takes_a_unique_prefix_and_says_an_ambiguous_one(tmp_path):
    path = tmp_path / "u.db"
    record(path)
    app = make_app(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert {r.conversation_id for r in screen.rows} == set(USERS)
        screen.filter_to("user:7f857da98d790")
        await settle(pilot)
        assert {r.conversation_id for r in screen.rows} == {"conv_device"}
        screen.filter_to("user:al")
        await settle(pilot)
        assert {r.conversation_id for r in screen.rows} == {"conv_al"}
        screen.filter_to("user:7f857da98d79")
        await settle(pilot)
        assert {r.conversation_id for r in screen.rows} == {"conv_al"}  # the list as it was
        assert screen.query_one("#filter", Input).has_class("-invalid")
        said = [n.message for n in app._notifications]
        assert any("2 user ids" in m and DEVICE in m for m in said), said


# -- import otlp --user: the spans' users and the database's ----------------------------------


def spans_of(path, users: dict[str, str]) -> None:
    """A file of OTLP spans (as a Collector writes them): a two-turn loop per conversation, each
    of its user."""
    from test_otlp_import import collector_line, convention_loop, sdk_spans

    specs = []
    for conv, user in users.items():
        loop, _ = convention_loop(conv, user)
        specs += [({**attrs, n.RESPONSE_ID: f"msg_{conv}_{i}"}, *times) for i, (attrs, *times) in enumerate(loop)]
    path.write_text(collector_line(sdk_spans(specs)) + "\n")


def imported_conversations(db, spans, *args: str, stdin=None) -> set[str]:
    r = CliRunner().invoke(cli, ["--db", str(db), "import", "otlp", str(spans), "--json", *args], input=stdin)
    assert r.exit_code == 0, r.output
    return set(json.loads(r.stdout)["conversations"])


def test_import_otlp_user_takes_a_users_id_cut_or_any_prefix_naming_one_of_the_spans_users(tmp_path):
    """`import otlp --user` needed a user's whole id: a Claude Code user cut as `list` shows it
    (`7f857da98d790…`) matched none of the spans (all "left out by the filters"). It now takes
    what list and stats take; the users it names are the spans' (and the database's), so it
    works into a new database too, from a file or stdin."""
    spans = tmp_path / "spans.jsonl"
    spans_of(spans, USERS)
    cut = users_label(DEVICE, 0, 14)  # as list shows it
    assert cut == DEVICE[:13] + "…"
    for i, given in enumerate((cut, DEVICE[:20], DEVICE)):
        assert imported_conversations(tmp_path / f"n{i}.db", spans, "--user", given) == {"conv_device"}, given
    assert imported_conversations(tmp_path / "s.db", "-", "--user", cut, stdin=spans.read_bytes()) == {"conv_device"}
    # an exact id names itself alone, though it begins another's
    assert imported_conversations(tmp_path / "al.db", spans, "--user", "al") == {"conv_al"}
    assert imported_conversations(tmp_path / "ali.db", spans, "--user", "ali") == {"conv_alice"}
    assert imported_conversations(tmp_path / "none.db", spans, "--user", "bob") == set()
    later = tmp_path / "later.jsonl"  # the exact one after two it begins, each on a line of its own
    for conv in ("alice", "alina", "ali"):
        spans_of(tmp_path / "one.jsonl", {f"conv_{conv}": conv})
        with later.open("a") as f:
            f.write((tmp_path / "one.jsonl").read_text())
    assert imported_conversations(tmp_path / "later.db", later, "--user", "ali") == {"conv_ali"}


def test_import_otlp_user_cut_as_list_shows_a_database_user(tmp_path):
    """The users a prefix names are the spans' and the database's: `list` of the database shows
    the user cut, and that names the user's spans; a prefix that begins a user of the database
    and another of the spans begins two."""
    db = tmp_path / "u.db"
    record(db)  # DEVICE, OTHER, al, alice recorded here
    cut = next(word for word in run(db, "list").output.split() if word.startswith("7f857da98d790"))
    spans = tmp_path / "spans.jsonl"
    spans_of(spans, {"conv_device_later": DEVICE, "conv_bob": "bob"})
    assert imported_conversations(db, spans, "--user", cut) == {"conv_device_later"}
    only_other = tmp_path / "other.jsonl"
    spans_of(only_other, {"conv_other_later": OTHER})
    r = run(db, "import", "otlp", str(only_other), "--user", "7f857da98d79")
    assert r.exit_code == 2, r.output
    (line,) = r.output.strip().splitlines()
    assert "2 user ids" in line and DEVICE in line and OTHER in line, line


def test_import_otlp_user_prefix_that_begins_several_is_one_line_exit_2_and_imports_nothing(tmp_path):
    spans = tmp_path / "spans.jsonl"
    spans_of(spans, USERS)
    db = tmp_path / "new" / "x.db"
    for source, stdin in ((spans, None), ("-", spans.read_bytes())):
        r = CliRunner().invoke(cli, ["--db", str(db), "import", "otlp", str(source), "--user", "7f857da98d79"],
                               input=stdin)  # fmt: skip
        assert r.exit_code == 2, r.output
        (line,) = r.output.strip().splitlines()
        assert "2 user ids" in line and DEVICE in line and OTHER in line and "Traceback" not in line, line
        assert not db.parent.exists()  # nothing imported, no database made


def test_a_user_seen_only_in_a_later_turn_of_anothers_conversation_is_named_by_a_prefix_too(tmp_path):
    """alvin's one call continues al's conversation, and
    `--user alv` names him as `--user alvin` does (it named nobody: only conversations' first
    users were looked in), in list and stats alike; the browser's filter resolves it the same way
    (Store.whole_id)."""
    path = tmp_path / "u.db"
    record(path)
    with FakeAPI() as api, Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
        with rec.conversation("conv_al", user_id="alvin"):
            client.messages.create(model="claude-sonnet-4-5", max_tokens=8,
                                   messages=[{"role": "user", "content": "hi from alvin"}])  # fmt: skip
        assert rec.flush(10)
    assert listed(path, "--user", "alvin") == {"conv_al"}
    assert listed(path, "--user", "alv") == {"conv_al"}
    r = run(path, "stats", "--user", "alv", "--json")
    assert r.exit_code == 0, r.output
    assert [u["user_id"] for u in json.loads(r.output)["users"]] == ["alvin"]
    # a prefix of first users and of a later one begins all of them: one line naming them, exit 2
    r = run(path, "list", "--user", "a")
    assert r.exit_code == 2 and "3 user ids (al, alice, alvin)" in r.output, r.output


def test_a_users_conversations_are_found_through_an_index_not_by_reading_the_whole_rollup(tmp_path):
    """`list --user U` finds the conversations with a call made for U by a range of rollup_user
    (it read every rollup row: 100,000 conversations' worth for each listing)."""
    from replayer.store.queries import USER_CALLS
    from replayer.store.schema import open_db

    path = tmp_path / "u.db"
    record(path)
    db = open_db(path, create=False)
    plan = [r[3] for r in db.execute(f"EXPLAIN QUERY PLAN SELECT 1 FROM conversations c WHERE {USER_CALLS}", ["al"])]
    assert any("rollup_user" in p for p in plan) and not any(p.startswith("SCAN rollup") for p in plan), plan
