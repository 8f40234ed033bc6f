"""A lone surrogate in a string: valid JSON as an escape (\\ud800), refused by every UTF-8 encoder
as a character, and what a byte that was no UTF-8 in a body sent through the proxy becomes. Such a
record is kept, exported JSON-equal, searchable, and shown (as U+FFFD, as a UTF-8 decoder shows
such a byte), not lost."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import httpx2
import pytest
from conftest import FAKE_KEY, exported
from test_proxy import proxy_db, records, start, writer  # noqa: F401 - fixtures
from textual.widgets import DataTable
from tui_data import settle

from replayer.fakeapi import FakeAPI, Reply
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


BAD_REQUEST = b'{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"bad \xff\xfe utf8"}]}'
BAD_RESPONSE = (b'{"id":"msg_bad","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":['
                b'{"type":"tool_use","id":"toolu_1","name":"read_\xff","input":{}}],"stop_reason":"tool_use",'
                b'"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}')


@pytest.fixture
def bad_bytes_db(start, writer, proxy_db):  # noqa: F811
    """A call whose request and response hold bytes that are no UTF-8, recorded by the proxy."""
    with FakeAPI() as api:
        api.enqueue(Reply(body=BAD_RESPONSE))
        proxy = start(api.url)
        headers = {"x-api-key": FAKE_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
        answer = httpx2.post(proxy.url + "/v1/messages", content=BAD_REQUEST, headers=headers)
        assert answer.status_code == 200 and answer.content == BAD_RESPONSE  # passed on as it came
        assert api.received[0]["body"] == BAD_REQUEST
    records(writer, proxy_db, 1)
    return proxy_db


def cli_output(db, *args):
    """What the `replayer` command writes to a pipe, as bytes."""
    done = subprocess.run([sys.executable, "-c", "from replayer.cli import main; main()", "--db", str(db), *args],
                          capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bytes_that_are_no_utf8_are_shown_as_the_replacement_character_and_exported_as_recorded(bad_bytes_db):
    listed = cli_output(bad_bytes_db, "list")
    assert "bad \ufffd\ufffd utf8".encode() in listed and b"\\udc" not in listed, listed
    (conv,) = json.loads(cli_output(bad_bytes_db, "list", "--json"))
    conversation = conv["conversation_id"]
    shown = cli_output(bad_bytes_db, "show", conversation)
    assert "read_\ufffd".encode() in shown and b"\\udc" not in shown, shown
    # JSON documents keep them as recorded: each byte of the request as the escape of its lone
    # surrogate (compared as ascii(): a report holding a lone surrogate is one pytest-xdist can't send)
    assert ascii(conv["first_message"]) == ascii("bad \udcff\udcfe utf8")
    (line,) = [json.loads(x) for x in cli_output(bad_bytes_db, "export").splitlines()]
    assert ascii(line["request"]["messages"][0]["content"]) == ascii("bad \udcff\udcfe utf8")
    # ...from which the bytes received come back (a response is kept decoded, each such byte U+FFFD)
    assert line["request"]["messages"][0]["content"].encode("utf-8", "surrogateescape") == b"bad \xff\xfe utf8"
    assert line["response"]["content"][0]["name"] == "read_\ufffd"


def test_the_browser_shows_them_as_the_replacement_character(bad_bytes_db):
    """The browser run by the command in a terminal (Textual writes to the command's stderr):
    what reaches the terminal."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "30"}  # (the size, however run)
    proc = subprocess.Popen([sys.executable, "-c", "from replayer.cli import main; main()", "--db", str(bad_bytes_db)],
                            stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"utf8" not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                try:
                    seen += os.read(main, 65536)
                except OSError:  # the app ended (what it wrote says why)
                    break
    finally:
        os.write(main, b"\x11")  # ctrl+q
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        os.close(main)
    assert "bad \ufffd\ufffd utf8".encode() in seen, seen[-2000:]
    assert b"\\udc" not in seen


async def test_the_browser_copies_them_as_the_replacement_character(bad_bytes_db):
    """As shown: the terminal's clipboard sequence carries UTF-8, which has no lone surrogate."""
    app = make_app(bad_bytes_db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("5", "y")  # the raw request and response
        await settle(pilot)
        assert '"content": "bad \ufffd\ufffd utf8"' in app.clipboard and '"name": "read_\ufffd"' in app.clipboard
