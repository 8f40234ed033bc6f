"""A lone surrogate in a string: valid JSON as an escape (\\ud800), refused by every UTF-8 encoder
as a character. Such a record is kept, exported JSON-equal, searchable, and shown, not lost."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from conftest import exported
from textual.widgets import DataTable
from tui_data import settle

from replayer.store.queries import Store
from replayer.store.schema import open_db
from replayer.tui.app import make_app

REQUEST = {
    "model": "claude-haiku-4-5",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "lone \udc80 surrogate, then some words " + "x" * 500}],
}
RESPONSE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "an emoji cut in half \ud83d here"}],
    "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 2},
}  # fmt: skip


def test_a_call_the_sdk_refuses_to_encode_is_recorded_with_its_error(client, db_path, rec, caplog):
    with caplog.at_level(logging.WARNING, logger="replayer"), pytest.raises(UnicodeEncodeError):
        messages = [{"role": "user", "content": "a \ud800 b"}]
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=messages)
    rec.flush()
    (line,) = exported(db_path)
    assert line["request"]["messages"] == [{"role": "user", "content": "a \ud800 b"}]
    assert line["error"]["type"] == "UnicodeEncodeError" and line["response"] is None
    assert not [r for r in caplog.records if "could not store" in r.getMessage()]


@pytest.mark.parametrize("form", ["documents", "json-text", "raw-text"])
def test_recorded_lone_surrogates_round_trip(rec, db_path, form):
    if form == "json-text":  # the wire form: escapes, as json.dumps writes them by default
        rec.record(json.dumps(REQUEST), json.dumps(RESPONSE))
    elif form == "raw-text":  # the characters themselves, which no UTF-8 encoder takes
        rec.record(json.dumps(REQUEST, ensure_ascii=False), json.dumps(RESPONSE, ensure_ascii=False))
    else:
        rec.record(REQUEST, RESPONSE)
    rec.close()
    (line,) = exported(db_path)
    assert line["request"] == REQUEST and line["response"] == RESPONSE
    store = Store(open_db(db_path, create=False))
    assert len(store.conversations(query="emoji half")) == 1  # the reply, searched
    assert len(store.conversations(query="surrogate words")) == 1  # the request


def test_the_cli_and_the_browser_show_them(rec, db_path, tmp_path):
    rec.record(REQUEST, RESPONSE)
    rec.close()
    cli = [sys.executable, "-c", "from replayer.cli import main; main()", "--db", str(db_path)]
    listed = subprocess.run([*cli, "list", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    (conv,) = json.loads(listed.stdout)
    assert conv["first_message"].startswith("lone \udc80 surrogate")
    shown = subprocess.run([*cli, "show", conv["conversation_id"]], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    out = tmp_path / "out.jsonl"
    assert subprocess.run([*cli, "export", "-o", str(out)], capture_output=True).returncode == 0
    assert json.loads(out.read_text(encoding="utf-8"))["response"] == RESPONSE


async def test_the_browser_opens_such_a_conversation(rec, db_path):
    rec.record(REQUEST, RESPONSE)
    rec.close()
    app = make_app(db_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert app.screen.query_one(DataTable).row_count == 1
        await pilot.press("enter")
        await settle(pilot)
        for tab in "12345":
            await pilot.press(tab)
            await settle(pilot)
        assert type(app.screen).__name__ == "ConversationScreen"
