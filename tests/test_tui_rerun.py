"""Rerun in the terminal app, driven by Pilot against the local fake API: edit, send, compare."""

from __future__ import annotations

import json

import pytest
from conftest import FAKE_KEY, sent_bodies
from textual.widgets import DataTable, Input, Static, TextArea
from textual.widgets.data_table import ColumnKey
from tui_data import (
    answer_reruns,
    build_db,
    open_rerun_editor,
    press_rerun_in_first_conversation,
    reply,
    send_rerun,
    settle,
)

from replayer.fakeapi import Reply
from replayer.fmt import ms
from replayer.tui.app import make_app
from replayer.tui.compare import CompareScreen
from replayer.tui.confirm import ConfirmScreen
from replayer.tui.rerun import RerunScreen
from replayer.tui.variants import VariantsScreen


@pytest.fixture
def db(tmp_path):
    return build_db(tmp_path / "tui.db")


@pytest.fixture
def env(api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    return api


def text(screen, selector):
    return str(screen.query_one(selector, Static).render())


async def test_edit_send_and_compare(db, env):
    answers = iter(["Reading parser.py now.", "Reading the tests first."])
    env.responder = lambda body: (
        Reply(body={"input_tokens": 321}) if "max_tokens" not in body
        else Reply(body=reply(next(answers), tool=("toolu_x", "read_file", {"path": "tests/test_parser.py"}),
                              model=body["model"]))
    )  # fmt: skip
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        system = editor.query_one("#rr-system", TextArea)
        assert system.text == "You are a coding agent."
        # the recorded tool result (an error) is there to edit, as recorded
        results = [t for t in editor.query(TextArea) if "FAILED test_parser.py" in t.text]
        assert len(results) == 1
        system.text = "You are a careful coding agent."
        editor.query_one("#rr-model", Input).value = "claude-haiku-4-5"
        editor.query_one("#rr-samples", Input).value = "2"
        await pilot.press("ctrl+j")
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        shown = str(confirm.query_one(Static).render())
        assert "321 prompt tokens (count_tokens)" in shown and "model=claude-haiku-4-5" in shown
        assert [b for b in sent_bodies(env) if "max_tokens" in b] == []  # nothing sent before the answer
        await pilot.press("y")
        for _ in range(3):
            await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        sent = [b for b in sent_bodies(env) if "max_tokens" in b]
        assert len(sent) == 2
        assert all(b["system"] == "You are a careful coding agent." and b["model"] == "claude-haiku-4-5" for b in sent)
        assert sent[0]["messages"][2]["content"][0]["content"] == "FAILED test_parser.py::test_dates"  # unchanged
        rows = [[str(c) for c in r] for r in (compare.query_one("#cmp-samples", DataTable).get_row_at(i)
                                              for i in range(3))]  # fmt: skip
        assert [r[0] for r in rows] == ["original", "sample 1", "sample 2"]
        model = compare.query_one("#cmp-samples", DataTable).get_column_index("Model")
        assert {r[model] for r in rows[1:]} == {"claude-haiku-4-5"}
        assert "2 distinct outputs in 2 of 2" in text(compare, "#cmp-title")
        assert "read_file 2/2" in text(compare, "#cmp-title")
        assert text(compare, "#cmp-left") == "Reading the parser."  # the original turn 1's text
        tools = text(compare, "#cmp-tools")
        assert "read_file changed" in tools and 'path: "parser.py" → "tests/test_parser.py"' in tools
        await pilot.press("u")
        await settle(pilot)
        unified = text(compare, "#cmp-left")
        assert "-Reading the parser." in unified and "+Reading " in unified and "@@" in unified
        assert compare.query_one("#cmp-left-box").border_title == "original · unified diff"
        # back in the editor, the variant is listed and reopens
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RerunScreen)
        await pilot.press("ctrl+o")
        await settle(pilot)
        variants = app.screen
        assert isinstance(variants, VariantsScreen)
        row = [str(c) for c in variants.query_one(DataTable).get_row_at(0)]
        assert row[2] == "2" and "system" in row[3] and "model=claude-haiku-4-5" in row[3]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        assert "2 distinct outputs" in text(app.screen, "#cmp-title")


async def test_problems_are_shown_before_sending(db, env):
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        other = editor.query_one("#rr-other", TextArea)
        doc = json.loads(other.text)
        doc["temperature"] = 0.3
        other.text = json.dumps(doc)
        await pilot.press("ctrl+j")
        await settle(pilot)
        assert "rejects temperature" in text(editor, "#rr-problems")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Send anyway" in str(app.screen.query_one("#rr-go").label)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RerunScreen)
        assert [b for b in sent_bodies(env) if "max_tokens" in b] == []


async def test_the_confirm_dialog_footer_lists_only_its_own_keys(db, env):
    """Over "Send 1 sample?" the editor's footer showed through (`^j Send  esc Back  ^o Variants`,
    and ctrl+o does nothing there): the dialog has its own footer, with its keys only; before a
    fork its confirming key says Fork."""
    from textual.widgets._footer import FooterKey

    def footer(screen):
        return [(k.key, k.description) for k in screen.query(FooterKey)]

    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_rerun_editor(pilot)
        await pilot.press("ctrl+j")
        await settle(pilot)
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert footer(confirm) == [("escape", "Cancel"), ("y", "Send")]
        await pilot.press("ctrl+o")  # not the editor's key here: nothing opens
        await settle(pilot)
        assert app.screen is confirm
        await pilot.press("escape")
        await settle(pilot)
        fork = ConfirmScreen(confirm.edits, 1, [], confirm.est, confirm.orig, fork=True)
        await app.push_screen(fork)
        await settle(pilot)
        assert footer(fork) == [("escape", "Cancel"), ("y", "Fork")]


async def test_no_key_says_how_and_sends_nothing(db, api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_rerun_editor(pilot)
        await pilot.press("ctrl+j")
        await settle(pilot)
        assert isinstance(app.screen, RerunScreen)
        assert any("ANTHROPIC_API_KEY" in str(n.message) for n in app._notifications)
    assert api.received == []


async def test_an_api_error_shows_on_the_sample(db, env):
    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}
    env.responder = lambda body: None if "max_tokens" not in body else Reply(status=400, body=bad)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_rerun_editor(pilot)
        await pilot.press("ctrl+j")
        await settle(pilot)
        await pilot.press("y")
        for _ in range(3):
            await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        table = compare.query_one("#cmp-samples", DataTable)
        row = [str(c) for c in table.get_row_at(1)]
        assert row[table.get_column_index("Stop")] == "400 invalid_request_error: prompt is too long"
        assert "prompt is too long" in text(compare, "#cmp-right")


async def test_a_stream_cut_by_an_error_event_shows_as_failed_mid_stream(db, env):
    """As `replayer rerun` says it: an `event: error` in a stream answered 200 is an error that
    came mid-stream (no `200` shown as if it succeeded), and the sample is not answered."""
    from replayer.fakeapi import message_events

    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    cut = [*message_events(reply("Reading"))[:3], {"event": "error", "data": overloaded}]
    env.responder = lambda body: None if "max_tokens" not in body else Reply(sse=cut)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        other = editor.query_one("#rr-other", TextArea)
        other.text = json.dumps({**json.loads(other.text), "stream": True})
        await send_rerun(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        assert sent_bodies(env)[-1]["stream"] is True
        table = compare.query_one("#cmp-samples", DataTable)
        row = [str(c) for c in table.get_row_at(1)]
        assert row[table.get_column_index("Stop")] == "overloaded_error mid-stream: Overloaded"
        assert text(compare, "#cmp-right") == "overloaded_error mid-stream\nOverloaded"
        assert "0 distinct outputs in 0 of 1" in text(compare, "#cmp-title")


async def test_a_turn_that_cant_be_rerun_says_why(tmp_path, env):
    from replayer import Recorder

    path = tmp_path / "odd.db"
    with Recorder(path) as rec:
        rec.record(b'["a JSON list, not a request"]', reply("ok"), conversation_id="conv_odd")
    app = make_app(path)
    async with app.run_test(size=(160, 48)) as pilot:
        await press_rerun_in_first_conversation(pilot)
        assert not isinstance(app.screen, RerunScreen)
        assert any("isn't a JSON object" in str(n.message) for n in app._notifications)


async def send_until_sent(pilot, env) -> None:
    """From the rerun editor: send (ctrl+j), confirm (y), and wait (up to 5 s) until the send
    screen is up and its request has reached the fake API (which is told not to answer it)."""
    from replayer.tui.send import SendScreen

    await pilot.press("ctrl+j")
    await settle(pilot)
    await pilot.press("y")
    for _ in range(100):
        await pilot.pause(0.05)
        if isinstance(pilot.app.screen, SendScreen) and sent_bodies(env):
            break


async def test_esc_cancels_a_rerun_that_gets_no_answer(db, env):
    """The send screen says esc cancels; esc goes back to the editor at once, the sample is stored
    as abandoned, and the worker that sent it ends (nothing is left waiting for the answer)."""
    import asyncio

    from replayer.tui.send import SendScreen

    env.responder = lambda body: Reply(body={"input_tokens": 9}) if "max_tokens" not in body else Reply(hang=30)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        await send_until_sent(pilot, env)
        sending = app.screen
        assert isinstance(sending, SendScreen)
        shown = sending.active_bindings["escape"].binding
        assert shown.id == "cancel" and shown.description == "Cancel" and shown.show
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is editor
        assert any("abandoned" in str(n.message) for n in app._notifications)
        workers = [w for w in app.workers if w.group == "rerun-send"]
        await asyncio.wait_for(asyncio.gather(*(w.wait() for w in workers)), 5)
        await settle(pilot)
        assert isinstance(app.screen, RerunScreen)  # no late comparison replaced the editor
        with app.store() as store:
            (variant,) = store.variants_of(editor.turn_id)
            turn = store.turns(variant.variant)[0]
        assert turn.attempts[0].abandoned and turn.attempts[0].status is None


async def test_a_cancelled_variant_stored_after_the_editor_is_back_is_counted(db, env, monkeypatch):
    """esc is back in the editor at once, and the editor counts its variants then; the cancelled
    variant is stored a moment later (replay.send notices the cancel, stores the sample as
    abandoned). Here that moment is made to come after the count every time: the title must
    still come to say 1 earlier variant (it said none until the editor was opened again)."""
    import asyncio
    import threading

    from replayer import replay

    real_send, real_title = replay.send, RerunScreen.show_title
    cancels: list[threading.Event] = []
    counted = threading.Event()

    def send(*args, cancel, **kw):
        noticed = threading.Event()  # esc, as replay.send sees it: once the editor has counted

        def relay():
            cancel.wait()
            counted.wait(10)
            noticed.set()

        cancels.append(cancel)
        threading.Thread(target=relay, daemon=True).start()
        return real_send(*args, cancel=noticed, **kw)

    def show_title(self, variants):
        real_title(self, variants)
        if cancels and cancels[0].is_set():
            counted.set()

    monkeypatch.setattr(replay, "send", send)
    monkeypatch.setattr(RerunScreen, "show_title", show_title)
    env.responder = lambda body: Reply(body={"input_tokens": 9}) if "max_tokens" not in body else Reply(hang=30)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        assert "no earlier variants" in text(editor, "#rr-title")
        await send_until_sent(pilot, env)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is editor
        sending = [w for w in app.workers if w.group == "rerun-send"]
        await asyncio.wait_for(asyncio.gather(*(w.wait() for w in sending)), 10)
        assert counted.is_set()  # the editor had counted before the variant was stored
        await settle(pilot)
        counting = [w for w in app.workers if w.group == "rerun-count"]
        await asyncio.wait_for(asyncio.gather(*(w.wait() for w in counting)), 10)
        await settle(pilot)
        assert "1 earlier variant (ctrl+o)" in text(editor, "#rr-title")


@pytest.mark.parametrize("width", [80, 100, 120, 160])
async def test_every_field_of_the_editor_shows_and_reads_whole(db, width):
    """At 80 columns the samples field was off screen; at 120 `10` typed into it showed as `0`."""
    app = make_app(db)
    async with app.run_test(size=(width, 24)) as pilot:
        editor = await open_rerun_editor(pilot)
        await pilot.pause()
        for field in ("#rr-model", "#rr-max-tokens", "#rr-thinking", "#rr-samples"):
            box = editor.query_one(field, Input).region
            assert box.width and 0 <= box.x and box.right <= width, (field, box)
        samples = editor.query_one("#rr-samples", Input)
        samples.focus()
        await pilot.press("ctrl+a", "delete", "1", "0")  # ctrl+a: to the start of the line
        await pilot.pause()
        assert samples.value == "10"
        assert samples.scroll_x == 0 and samples.content_region.width >= len("10") + 1  # and the cursor


async def test_every_screens_footer_fits_100_columns_help_and_all(db, env):
    """At 100 columns the conversation's footer ended `b Next cac`: the keys after it, F1 Help
    among them, were off the edge (the footer scrolls, and nothing says so). Each screen's footer
    fits whole at 100 columns with Help in it, the rest of the keys listed by Help; the
    conversation's `a` (each pane that it widens says "press a") leaves room for Fork."""
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    from replayer.tui.help import HelpScreen

    answer_reruns(env)
    app = make_app(db)
    seen = {}

    async def look(name):
        footer = app.screen.query_one(Footer)
        keys = {k.key.split(",")[0]: k.description for k in footer.query(FooterKey)}
        assert footer.max_scroll_x == 0, f"{name}: {footer.virtual_size.width} columns of keys in {footer.size.width}"
        assert keys.get("f1") == "Help", f"{name}: {keys}"
        seen[name] = keys
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        listed = str(app.screen.query_one(Static).render())
        for b in app.screen.under.BINDINGS:
            assert b.description in listed, f"{name}: {b.description} not in help"
        await pilot.press("escape")
        await settle(pilot)

    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await look("list")
        await pilot.press("d")
        await settle(pilot)
        await look("dashboard")
        await pilot.press("escape", "m", "j", "c")
        await settle(pilot)
        await look("trajectories")
        await pilot.press("escape", "escape", "g")
        await settle(pilot)
        await open_rerun_editor(pilot)
        await look("rerun")
        await send_rerun(pilot)
        assert isinstance(app.screen, CompareScreen)
        await look("compare")
        await pilot.press("escape", "escape")
        await settle(pilot)
        await look("conversation")
    assert seen["conversation"].get("f") == "Fork"


@pytest.mark.parametrize("width", [100, 160])
async def test_a_figure_wider_than_its_column_widens_it_in_a_rerun_comparison(db, env, width):
    """A sample whose prompt grew by over a million tokens: its Δ prompt `+1,234,316` was cut by
    its 9-wide column to `+1,234,31`. Each number column holds its widest figure whole."""
    huge = {"input_tokens": 1_235_567, "output_tokens": 20}
    env.responder = lambda body: (
        Reply(body={"input_tokens": 10}) if "max_tokens" not in body
        else Reply(body=reply("Again.", model=body["model"], usage=huge))
    )  # fmt: skip
    app = make_app(db)
    async with app.run_test(size=(width, 40)) as pilot:
        await open_rerun_editor(pilot)
        await send_rerun(pilot)
        assert isinstance(app.screen, CompareScreen)
        table = app.screen.query_one("#cmp-samples", DataTable)
        # at 100 columns the prompt columns give way to what a user compares first: a scroll away
        table.scroll_to(x=table.max_scroll_x, animate=False, immediate=True)
        await pilot.pause()
        line = "".join(segment.text for segment in table.render_line(2))  # sample 1, under the original
        assert " 1,235,567 " in line and " +1,234,316 " in line, line


async def test_the_comparison_says_latency_as_the_other_screens_do(db, env):
    """The comparison's latency read `123,456 ms` where every other screen says `123.5 s` (fmt.ms)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE attempts SET latency_ms = 123456 WHERE turn_id IN "
                     "(SELECT id FROM turns WHERE conversation_id = 'conv_tools')")  # fmt: skip
    answer_reruns(env)
    app = make_app(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_rerun_editor(pilot)
        await send_rerun(pilot)
        assert isinstance(app.screen, CompareScreen)
        table = app.screen.query_one("#cmp-samples", DataTable)
        original = table.get_row_at(0)
        latency = list(table.columns).index(ColumnKey("Latency"))
        assert str(original[latency]) == "123.5 s"


async def test_a_second_send_while_the_estimate_is_on_its_way_sends_nothing_more(db, env):
    """count_tokens answered after 1.5 s (network latency) and the send key pressed again
    meanwhile: two "Send 1 sample?" dialogs stacked, and the second, once the first was answered,
    sent the sample again (a paid duplicate). Now one dialog, one send."""
    from replayer.tui.send import SendScreen

    env.responder = lambda body: (
        Reply(body={"input_tokens": 9}, delay=1.5) if "max_tokens" not in body else Reply(body=reply("Again."))
    )
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause(0.5)
        await pilot.press("ctrl+s")
        await settle(pilot)
        dialogs = [s for s in app.screen_stack if isinstance(s, ConfirmScreen)]
        assert len(dialogs) == 1
        assert any("on its way" in str(n.message) for n in app._notifications)
        await pilot.press("y")
        for _ in range(3):
            await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert not [s for s in app.screen_stack if isinstance(s, ConfirmScreen | SendScreen)]
        assert app.screen is editor
        assert len([b for b in sent_bodies(env) if "max_tokens" in b]) == 1
        with app.store() as store:
            assert len(store.variants_of(editor.turn_id)) == 1
        await pilot.press("ctrl+s")  # answered: the key sends again
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)


async def test_a_sample_answered_after_a_retry_says_so_and_counts_every_attempts_time(db, env):
    """A sample answered after a 529 had an empty Error column and its last attempt's latency;
    `replayer compare` adds up every attempt. Now its Error column says the attempts it took and
    why the others failed (in yellow: it was answered), and its latency is every attempt's."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    seen = []

    def answer(body):
        if "max_tokens" not in body:
            return Reply(body={"input_tokens": 9})
        seen.append(body)
        if len(seen) == 1:
            return Reply(status=529, body=overloaded, headers={"retry-after-ms": "1"}, delay=0.05)
        return Reply(body=reply("Again."), delay=0.05)

    env.responder = answer
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_rerun_editor(pilot)
        await send_rerun(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        table = compare.query_one("#cmp-samples", DataTable)
        row = table.get_row_at(1)
        columns = list(table.columns)
        sample = compare.result.samples[0]
        # beside its stop reason, in the Stop column (which holds a failed sample's error)
        stop, note = row[columns.index(ColumnKey("Stop"))], "2 attempts (1 failed: 529 overloaded_error)"
        assert str(stop) == f"{sample.stop_reason} · {note}" and sample.stop_reason == "end_turn"
        assert [(stop.plain[s.start : s.end], s.style) for s in stop.spans] == [(f" · {note}", "yellow")]
        with app.store() as store:
            attempts = store.turns(store.variants_of(compare.result.turn_id)[0].variant)[0].attempts
        assert [a.status for a in attempts] == [529, 200]
        assert sample.latency_ms == sum(a.latency_ms for a in attempts)
        assert str(row[columns.index(ColumnKey("Latency"))]) == ms(sample.latency_ms)


async def test_the_latency_delta_is_the_difference_of_the_figures_beside_it(db, env):
    """Original 68.006 ms, sample 67.501 ms: both read `68 ms`, and the delta beside them read
    `-1 ms` (worked out before rounding). Now it is `0 ms` on the compare screen and in the CLI,
    and 1,260 ms against 68 ms reads `1.3 s` and `+1.2 s` (1,300 - 68)."""
    import sqlite3

    from replayer import comparison, replay
    from replayer.cli.rerun import _describe_sample

    answer_reruns(env)
    app = make_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        editor = await open_rerun_editor(pilot)
        await send_rerun(pilot)
        assert isinstance(app.screen, CompareScreen)
        for sample_ms, shown, delta in ((67.501, "68 ms", "0 ms"), (1260.0, "1.3 s", "+1.2 s")):
            with app.store() as store:
                (variant,) = store.variants_of(editor.turn_id)
                sample = store.turns(variant.variant)[0]
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE attempts SET latency_ms = 68.006 WHERE turn_id = ?", [editor.turn_id])
                conn.execute("UPDATE attempts SET latency_ms = ? WHERE turn_id = ?", [sample_ms, sample.turn_id])
            with app.store() as store:
                result = comparison.compare(store, replay.original(store, editor.turn_id), variant.variant)
            await app.push_screen(CompareScreen(result))
            await settle(pilot)
            table = app.screen.query_one("#cmp-samples", DataTable)
            columns = list(table.columns)
            cells = [str(table.get_row_at(i)[columns.index(ColumnKey(k))]) for i, k in
                     ((0, "Latency"), (1, "Latency"), (1, "Δ lat"))]  # fmt: skip
            assert cells == ["68 ms", shown, delta]
            assert f" · {shown} ({delta}) · " in _describe_sample(1, result.samples[0], result.original)


async def compare_two_samples(pilot) -> DataTable:
    """Rerun the first conversation's turn with two samples; the compare screen's table."""
    editor = await open_rerun_editor(pilot)
    editor.query_one("#rr-samples", Input).value = "2"
    await send_rerun(pilot)
    assert isinstance(pilot.app.screen, CompareScreen)
    table = pilot.app.screen.query_one("#cmp-samples", DataTable)
    await settle(pilot)
    return table


@pytest.mark.parametrize("width", [100, 160])
async def test_what_a_user_compares_shows_whole_at_100_columns(db, env, width):
    """At 100 columns the samples table ended at `... Hit   Output   Cost`: Δ cost, latency, Δ lat
    and the error were past the screen's edge (a 19-wide Stop column pushing them off), and a
    failed sample's row read `sample 1   claude-sonnet-4-5   ...   $0.0000` with nothing that
    said it failed. What a user compares shows on screen, each cell whole, on every row: the
    sample, its stop reason (or error, whole), output tokens, cost, Δ cost, latency and Δ lat."""
    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad thing"}}
    answers = iter([Reply(status=400, body=bad), Reply(body=reply("Again."))])
    env.responder = lambda body: Reply(body={"input_tokens": 10}) if "max_tokens" not in body else next(answers)
    app = make_app(db)
    async with app.run_test(size=(width, 40)) as pilot:
        table = await compare_two_samples(pilot)

        def shown(y: int) -> str:  # what the screen draws of a line of the table (0: the header)
            return "".join(segment.text for segment in table.render_line(y))

        header = shown(0)
        for title in ("Output", "Cost", "Δ cost", "Latency", "Δ lat"):
            assert f" {title} " in header + " ", (title, header)
        failed = 0
        for i, result in enumerate([app.screen.result.original, *app.screen.result.samples]):
            line = shown(1 + i)
            cells = {str(k.value): str(c) for k, c in zip(table.columns, table.get_row_at(i), strict=True)}
            keys = ["name", "Cost", "Latency"] + ["Δ cost", "Δ lat"] * (i > 0) + ["Output"] * (not result.error)
            for key in keys:
                assert cells[key] and f" {cells[key]} " in line + " ", (key, cells[key], line)
            said = "400 invalid_request_error: bad thing" if result.error else result.stop_reason
            assert said and f" {said} " in line + " ", (said, line)
            failed += bool(result.error)
        assert failed == 1


@pytest.mark.parametrize("width", [80, 100, 160])
async def test_compare_columns_are_as_wide_as_what_they_hold(db, env, width):
    """At 80 columns two successful samples' Stop column was 23 wide beside `end_turn`: it was
    widened to push the model id past the screen's edge, a wide blank between each stop reason
    and its figures. The Stop column is now as wide as what it holds; the model id the edge
    would cut starts past the edge, whole a scroll away, the blank at the edge (a number the
    edge would cut, after it, is pushed off by the model column, as before); nothing the edge
    cuts shows in part (a figure, or claude-sonnet-4 for claude-sonnet-4-5)."""
    answer_reruns(env)
    app = make_app(db)
    async with app.run_test(size=(width, 40)) as pilot:
        table = await compare_two_samples(pilot)
        rows = [{str(k.value): c for k, c in zip(table.columns, table.get_row_at(i), strict=True)}
                for i in range(table.row_count)]
        assert not any(r.error for r in app.screen.result.samples)
        edge = table.scrollable_content_region.width
        x, pushed = 0, []
        for column in table.ordered_columns:
            key, held = str(column.key.value), max(len(str(r[str(column.key.value)])) for r in rows)
            if column.width > max(held, len(str(column.label))):
                pushed.append(key)
                if x < edge < x + column.get_render_width(table):  # widened across the edge: to
                    # start past it, what it holds a scroll away
                    assert x + column.get_render_width(table) - 1 - held >= edge, (key, x, edge)
            x += column.get_render_width(table)
        assert pushed in ([], ["Model"]), pushed
        assert table.columns[ColumnKey("Stop")].width == max(len(str(r["Stop"])) for r in rows) == len("end_turn")
        for y, row in enumerate(rows, 1):
            line = "".join(segment.text for segment in table.render_line(y)).ljust(edge)
            x = 0
            for column in table.ordered_columns:
                key, end = str(column.key.value), x + column.get_render_width(table)
                shown, cell = line[x:min(end, edge)], str(row[key])
                if end <= edge:
                    assert cell in shown, (key, cell, line)
                elif x < edge:  # the edge cuts the column: it shows none of what it holds
                    assert not shown.strip(), (key, cell, line)
                x = end
            for key in ("Output", "Cost", "Latency"):  # what a user compares first, on screen at 80 too
                assert str(row[key]) in line, (key, line)
