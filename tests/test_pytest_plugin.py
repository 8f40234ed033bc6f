"""The pytest plugin: an inner test suite (pytester, a pytest session of its own, with the plugin
loaded from its entry point as a user's would be) drives the real SDK against the local fake to
record a cassette, then runs again with the fake stopped and no key, answered from the cassette.

The inner sessions run in this process: in a pytest process of its own, each spent ~9 s of CPU
importing the SDK again (seventeen of them were a ninth of the suite's CPU)."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import FAKE_KEY

from replayer.fakeapi import FakeAPI

pytest_plugins = ["pytester"]

NOWHERE = "http://127.0.0.1:9"
"""A base URL nothing answers on (the discard port): a call that reached the network would fail."""

AGENT = '''
import asyncio, json, os

import anthropic
import pytest

client = anthropic.Anthropic()  # made when the module is imported, before any cassette is in force

MODEL = "claude-sonnet-4-5"


def ask(prompt):
    return client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": prompt}])


@pytest.mark.replayer("cassettes/agent.jsonl")
def test_agent():
    prompt = os.environ.get("PROMPT", "refund order 1234")
    first = ask(prompt)
    history = [{"role": "user", "content": prompt}, {"role": "assistant", "content": first.content[0].text},
               {"role": "user", "content": "and then?"}]
    seen = []  # every event the SDK's stream gives, as it was sent
    with anthropic.Anthropic().messages.create(model=MODEL, max_tokens=64, messages=history, stream=True) as s:
        for event in s:
            seen.append(event.to_dict())

    async def later():
        async with anthropic.AsyncAnthropic() as ac:
            thanks = [*history[:2], {"role": "user", "content": "thanks"}]
            return await ac.messages.create(model=MODEL, max_tokens=64, messages=thanks)

    last = asyncio.run(later())
    with open(os.environ["SEEN"], "w") as f:
        json.dump({"first": first.to_dict(), "events": seen, "last": last.to_dict()}, f)
'''


class _Imported:
    """What was imported when an inner session ended."""

    def __init__(self) -> None:
        self.modules: dict[str, object] = {}

    def pytest_unconfigure(self) -> None:
        self.modules = dict(sys.modules)


_kept: dict[str, object] = {}
"""Modules the inner sessions imported that this process keeps (see `run`)."""


def _keep(modules: dict[str, object]) -> None:
    for name, module in modules.items():
        if name not in sys.modules:
            sys.modules[name] = module


@pytest.fixture(autouse=True)
def _imports_kept():
    """Pytester forgets every module imported while a test ran, at the test's end. The ones this
    process keeps (the SDK's, httpx2's and replayer's modules loaded on first use) are put back,
    or the next import of one makes a second copy whose classes are not the first's: a timeout
    raised by the second httpcore2 was not one the SDK's httpx2 knew, and a later test saw a
    connection error. (Autouse: set up before pytester, so torn down after it.)"""
    yield
    _keep(_kept)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner session in this process; what it imported is kept, but the inner suite's own files."""
    imported = _Imported()
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error::pytest.PytestUnknownMarkWarning",
                                          "-o", "asyncio_default_fixture_loop_scope=function", *args,
                                          plugins=[imported])
    inner = str(pytester.path)
    _kept.update((name, module) for name, module in imported.modules.items()
                 if not str(getattr(module, "__file__", None) or "").startswith(inner))
    _keep(_kept)
    return result


@pytest.fixture
def agent(pytester, monkeypatch, tmp_path):
    pytester.makepyfile(test_agent=AGENT)
    monkeypatch.setenv("SEEN", str(tmp_path / "seen.json"))
    return tmp_path / "seen.json"


def live(monkeypatch, api: FakeAPI) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)


def offline(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", NOWHERE)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def cassette_of(pytester) -> list[dict]:
    """The agent's cassette's calls, after the line naming the test that wrote it."""
    text = (pytester.path / "cassettes" / "agent.jsonl").read_text("utf-8")
    owner, *calls = [json.loads(line) for line in text.splitlines()]
    assert owner == {"test": "test_agent.py::test_agent"}
    return calls


def test_a_missing_cassette_is_recorded_then_replayed_offline(pytester, agent, monkeypatch):
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester).assert_outcomes(passed=1)
        sent = len(api.received)
    recorded = json.loads(agent.read_text())
    lines = cassette_of(pytester)
    assert sent == 3
    assert [line["request"]["messages"][-1]["content"] for line in lines] == ["refund order 1234", "and then?",
                                                                              "thanks"]
    assert [line["stream"] for line in lines] == [False, True, False]

    offline(monkeypatch)  # the fake is stopped, the base URL answers nothing, there is no key
    agent.unlink()
    run(pytester).assert_outcomes(passed=1)
    assert json.loads(agent.read_text()) == recorded


LAZY = """
import pytest


@pytest.mark.replayer("cassettes/lazy.jsonl")
def test_lazy():
    import anthropic  # the SDK's first import, with the cassette already in force

    client = anthropic.Anthropic()
    hi = [{"role": "user", "content": "hi"}]
    reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=hi)
    assert reply.content
"""


def test_an_sdk_first_imported_inside_the_test_is_recorded_then_replayed(pytester, monkeypatch):
    """In a process of its own (here the SDK was imported long ago): the cassette's start loads
    the SDK, whose import hook loads the module that was loading it."""
    pytester.makepyfile(test_lazy=LAZY)
    with FakeAPI() as api:
        live(monkeypatch, api)
        pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
        assert len(api.received) == 1
    offline(monkeypatch)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_stream_replays_event_for_event(pytester, agent, monkeypatch):
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester).assert_outcomes(passed=1)
        streamed = [json.loads(r["body"]) for r in api.received if b'"stream":true' in r["body"]]
    recorded = json.loads(agent.read_text())["events"]
    offline(monkeypatch)
    run(pytester).assert_outcomes(passed=1)
    replayed = json.loads(agent.read_text())["events"]

    assert replayed == recorded
    # the cassette keeps every event the fake sent (the SDK skips the ping); the SDK saw the rest
    stream_line = next(line for line in cassette_of(pytester) if line["stream"])
    kept = [e["event"] for e in stream_line["events"]]
    assert "ping" in kept
    assert [e["data"] for e in stream_line["events"] if e["event"] != "ping"] == recorded
    assert [e["type"] for e in recorded] == [e for e in kept if e != "ping"]
    assert len(streamed) == 1
    assert [e["type"] for e in recorded].count("content_block_delta") >= 2  # a real sequence to compare


def test_a_changed_prompt_fails_with_the_first_difference(pytester, agent, monkeypatch):
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester).assert_outcomes(passed=1)
    offline(monkeypatch)
    monkeypatch.setenv("PROMPT", "refund order 9999")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "replayer: a request did not match cassette agent.jsonl" in out
    assert "first difference: message 0" in out
    assert '"refund order 1234" -> "refund order 9999"' in out
    assert "BadRequestError" not in out  # the difference is the failure, not the SDK's error it caused
    assert "Traceback" not in out


def test_recording_without_a_key_fails_in_one_line(pytester, agent, monkeypatch):
    with FakeAPI() as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        result = run(pytester)
        assert api.received == []  # the test never ran
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert ("replayer: cassette cassettes/agent.jsonl not found: the test records it live and needs "
            "ANTHROPIC_API_KEY: set it, or commit the cassette") in out
    assert "Traceback" not in out and "raise " not in out
    assert not (pytester.path / "cassettes" / "agent.jsonl").exists()

    (pytester.path / "cassettes").mkdir()  # a cassette there, and --replayer-record: the same, saying so
    (pytester.path / "cassettes" / "agent.jsonl").write_text("")
    result = run(pytester, "--replayer-record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replayer: --replayer-record records it live and needs ANTHROPIC_API_KEY*"])


def test_the_cassette_holds_no_key(pytester, agent, monkeypatch):
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester).assert_outcomes(passed=1)
        assert all(FAKE_KEY in json.dumps(r["headers"]) for r in api.received)  # it was sent
    text = (pytester.path / "cassettes" / "agent.jsonl").read_text("utf-8")
    assert FAKE_KEY not in text
    assert FAKE_KEY[-12:] not in text
    for line in cassette_of(pytester):
        assert set(line["request_headers"]) <= {"anthropic-version", "anthropic-beta"}


def test_replayer_record_records_again_and_mode_none_never_does(pytester, agent, monkeypatch):
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester).assert_outcomes(passed=1)
        assert len(api.received) == 3
        run(pytester).assert_outcomes(passed=1)  # the cassette is there: replayed, nothing sent
        assert len(api.received) == 3
        monkeypatch.setenv("PROMPT", "refund order 9999")
        run(pytester, "--replayer-record").assert_outcomes(passed=1)
        assert len(api.received) == 6
    assert cassette_of(pytester)[0]["request"]["messages"][0]["content"] == "refund order 9999"

    (pytester.path / "cassettes" / "agent.jsonl").unlink()
    result = run(pytester, "--replayer-record-mode=none")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replayer: cassette cassettes/agent.jsonl not found (--replayer-record-mode=none): "
                                 "record it with --replayer-record*"])


OPTIONS = '''
import os, threading

import anthropic
import pytest

client = anthropic.Anthropic()


def ask(text, **extra):
    return client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                  messages=[{"role": "user", "content": text}], **extra)


@pytest.mark.replayer("cassettes/ignored.jsonl", ignore=["metadata.user_id"])
def test_ignored():  # the agent puts a run id in every request: not what the test is about
    ask("hello", metadata={"user_id": os.environ["RUN_ID"]})


@pytest.mark.replayer("cassettes/loose.jsonl", loose=True)
def test_loose():
    assert ask(os.environ["PROMPT"]).content[0].text.endswith(" to 1 messages")


@pytest.mark.replayer("cassettes/caught.jsonl")
def test_caught():  # an agent that swallows API errors still fails its test on a mismatch
    try:
        ask(os.environ["PROMPT"])
    except anthropic.BadRequestError:
        pass


@pytest.mark.replayer("cassettes/threaded.jsonl")
def test_threaded():  # a call made on a thread the test starts is answered too
    got = []
    worker = threading.Thread(target=lambda: got.append(ask("from a thread").content[0].text))
    worker.start()
    worker.join()
    assert len(got) == 1 and got[0].endswith(" to 1 messages")


@pytest.mark.replayer("cassettes/unknown.jsonl", loosely=True)
def test_misspelt():
    pass


@pytest.mark.replayer("cassettes/unknown.jsonl", ignore=["messages..content"])
def test_bad_path():
    pass
'''


def test_marker_options_ignore_loose_threads_and_a_caught_mismatch(pytester, monkeypatch):
    pytester.makepyfile(test_options=OPTIONS)
    with FakeAPI() as api:
        live(monkeypatch, api)
        monkeypatch.setenv("RUN_ID", "run-1")
        monkeypatch.setenv("PROMPT", "hello")
        result = run(pytester, "--replayer-record")
        result.assert_outcomes(passed=4, errors=2)
        result.stdout.fnmatch_lines([
            "*@pytest.mark.replayer on test_options.py::test_misspelt: unknown option loosely (known: ignore, loose, "
            "with_errors, redact)*",
            "*@pytest.mark.replayer on test_options.py::test_bad_path: ignore='messages..content' is not a field path*",
        ])

    offline(monkeypatch)
    monkeypatch.setenv("RUN_ID", "run-2")
    monkeypatch.setenv("PROMPT", "good bye")
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=3, failed=1, errors=2, warnings=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*PASSED test_options.py::test_ignored*", "*PASSED test_options.py::test_loose*",
        "*PASSED test_options.py::test_threaded*",
        "*FAILED test_options.py::test_caught - Failed: replayer: a request did not mat*",
    ])
    assert "replayer: a request did not match cassette caught.jsonl: no recorded request matches" in out
    assert 'first difference: message 0, content: "hello" -> "good bye"' in out
    # loose mode served the recorded answer and says what drifted
    assert "ReplayerDrift: replayer: loose replay of loose.jsonl served 1 request(s) that differ from the " in out
    assert '"hello" -> "good bye"' in out.split("ReplayerDrift")[1]


SCRUB = '''
def redact(record):
    """Keep no word of the model's answers (the agent's users' data, say)."""
    for block in (record["response"] or {}).get("content", []):
        if block.get("type") == "text":
            block["text"] = "[redacted]"
    return record
'''

STREAMED = '''
import anthropic
import pytest


@pytest.mark.replayer("cassettes/redacted.jsonl")
def test_streamed():
    with anthropic.Anthropic().messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                               messages=[{"role": "user", "content": "hello"}]) as s:
        text = "".join(s.text_stream)
    assert text in ("reply 1 to 1 messages", "[redacted]")
    print("TEXT", text)
'''


def test_the_redact_hook_named_in_the_ini_file_is_applied_to_what_is_recorded(pytester, monkeypatch):
    pytester.makepyfile(scrub=SCRUB, test_streamed=STREAMED)
    pytester.makeini("[pytest]\nreplayer_redact = scrub:redact\npythonpath = .\n")
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester, "-s").stdout.fnmatch_lines(["*TEXT reply 1 to 1 messages*", "*1 passed*"])
    text = (pytester.path / "cassettes" / "redacted.jsonl").read_text("utf-8")
    assert "[redacted]" in text
    assert "reply" not in text  # nor in the stream's events, which would show it: they are not kept
    assert json.loads(text.splitlines()[1])["events"] is None

    offline(monkeypatch)
    result = run(pytester, "-s")
    result.assert_outcomes(passed=1)
    assert "TEXT [redacted]" in result.stdout.str()

    pytester.makeini("[pytest]\nreplayer_redact = scrub:nothing\npythonpath = .\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*replayer_redact = 'scrub:nothing' can't be loaded*"])


def test_vertex_and_bedrock_clients_are_answered_with_no_credentials(api, rec, db_path):
    """In this process (the plugin is loaded here too): clients of the cloud classes record their
    calls, then, with the cassette in force, new ones with no token, no AWS key and a base URL
    that answers nothing get the recorded answers; their bodies (reshaped by the SDK for Vertex
    and Bedrock) match because both sides build them the same way."""
    from anthropic import AnthropicBedrock, AnthropicVertex

    from replayer.playback.inprocess import Playback, Replaying, serving
    from replayer.playback.matching import Matcher
    from replayer.store.export import cassette_lines
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    def ask(vertex, bedrock):
        messages = [{"role": "user", "content": "from the cloud"}]
        return [client.messages.create(model=model, max_tokens=10, messages=messages).to_dict()
                for client, model in ((vertex, "claude-sonnet-4-5"), (bedrock, "anthropic.claude-sonnet-4-5"))]

    vertex = AnthropicVertex(region="us-east5", project_id="p", access_token="t", base_url=api.url + "/v1")
    recorded = ask(rec.wrap(vertex), rec.wrap(AnthropicBedrock(aws_region="us-east-1", api_key="t", base_url=api.url)))
    rec.close()
    api.stop()
    store = Store(open_db(db_path))
    lines = [line for c in store.conversations(descending=False)
             for line in cassette_lines(store, conversation_id=c.conversation_id)]
    assert len(lines) == 2

    vertex = AnthropicVertex(region="us-east5", project_id="p", base_url=NOWHERE + "/v1")
    bedrock = AnthropicBedrock(aws_region="us-east-1", base_url=NOWHERE)
    assert isinstance(vertex.middleware[-1], Playback) and isinstance(bedrock.middleware[-1], Playback)
    with serving(Replaying(Matcher(lines))) as handler:
        assert ask(vertex, bedrock) == recorded
    assert handler.refused == []


WATCHED = '''
import json, os, sys, threading

import pytest

events = {"imported": [], "writers": []}
recording = []


class _Watch:
    """Notes every replayer module imported while a cassette is being recorded, and on which thread."""

    def find_spec(self, name, path=None, target=None):
        if recording and name.split(".")[0] == "replayer":
            events["imported"].append(f"{threading.current_thread().name}: {name}")
        return None


sys.meta_path.insert(0, _Watch())


@pytest.fixture(autouse=True)
def _recording():  # set up after the plugin started the cassette's recorder
    recording.append(True)
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    if call.when == "teardown":  # the plugin's teardown, the cassette's writing, is over
        recording.clear()
        for thread in threading.enumerate():
            if thread.name.startswith("replayer-"):
                thread.join(5)
                if thread.is_alive():
                    events["writers"].append(f"{item.name}: {thread.name}")
    return (yield)


def pytest_sessionfinish():
    with open(os.environ["WATCHED"], "w") as f:
        json.dump(events, f)
'''

RECORDS = '''
import anthropic
import pytest


def ask():
    hi = [{"role": "user", "content": "refund order 1"}]
    return anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=hi)


@pytest.mark.replayer("cassettes/one.jsonl")
def test_one():
    ask()


@pytest.mark.replayer("blocker/two.jsonl")
def test_unwritable():
    ask()
'''


def test_recording_imports_nothing_while_the_recorder_runs_and_always_closes_it(pytester, monkeypatch, tmp_path):
    """pytest rewrites the asserts of every module of replayer's distribution (a plugin's) as it is
    imported, with ast.parse, which CPython 3.11 can't run on two threads at once: a module the
    writer thread imported while the test's thread imported another (the cassette's reading) made
    recording fail at random. In a process of its own, where nothing of replayer's was imported
    yet; a cassette that can't be written fails in one line, its recorder closed all the same."""
    pytester.makeconftest(WATCHED)
    pytester.makepyfile(test_records=RECORDS)
    (pytester.path / "blocker").write_text("a file where the cassette's folder should be")
    monkeypatch.setenv("WATCHED", str(tmp_path / "watched.json"))
    with FakeAPI() as api:
        live(monkeypatch, api)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
        assert len(api.received) == 2
    watched = json.loads((tmp_path / "watched.json").read_text())
    assert watched == {"imported": [], "writers": []}
    result.assert_outcomes(passed=2, errors=1)  # test_unwritable's body passed; its teardown failed
    result.stdout.fnmatch_lines(["*replayer: cannot write cassette blocker/two.jsonl (blocker: File exists): make its "
                                 "folder writable or give the marker another path"])
    assert "Traceback" not in result.stdout.str()
    assert len((pytester.path / "cassettes" / "one.jsonl").read_text().splitlines()) == 2  # its test's, its call


UNFINISHED = '''
import anthropic
import pytest


def ask(text):
    hi = [{"role": "user", "content": text}]
    return anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=hi)


@pytest.mark.replayer("cassettes/skipped-first.jsonl")
def test_skipped_first():
    pytest.skip("set RUN_SLOW=1")


@pytest.mark.replayer("cassettes/skipped-after.jsonl")
def test_skipped_after():
    ask("one")
    pytest.skip("not today")


@pytest.mark.replayer("cassettes/xfailed.jsonl")
def test_xfailed():
    ask("two")
    pytest.xfail("known to fail")


@pytest.mark.xfail(reason="known to fail")
@pytest.mark.replayer("cassettes/xfail-marked.jsonl")
def test_xfail_marked():
    ask("three")
    assert False


@pytest.mark.replayer("cassettes/failed.jsonl")
def test_failed():
    ask("four")
    assert False


@pytest.mark.replayer("cassettes/passed.jsonl")
def test_passed():
    ask("five")
'''


def test_a_test_that_is_skipped_xfails_or_fails_while_recording_writes_no_cassette(pytester, monkeypatch):
    """Its calls (none, or some) are not what the passing test makes: a cassette of them would
    fail the next run. The cassette is recorded again when the test next runs; with
    --replayer-record the one there is kept as it was."""
    pytester.makepyfile(test_unfinished=UNFINISHED)
    cassettes = pytester.path / "cassettes"
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester).assert_outcomes(passed=1, skipped=2, xfailed=2, failed=1)
        assert len(api.received) == 5
        assert sorted(p.name for p in cassettes.iterdir()) == ["passed.jsonl"]

        kept = {name: f"{name} as it was\n" for name in ("skipped-after.jsonl", "xfailed.jsonl", "failed.jsonl")}
        for name, text in kept.items():
            (cassettes / name).write_text(text)
        run(pytester, "--replayer-record").assert_outcomes(passed=1, skipped=2, xfailed=2, failed=1)
    assert {name: (cassettes / name).read_text() for name in kept} == kept
    assert sorted(p.name for p in cassettes.iterdir()) == ["failed.jsonl", "passed.jsonl", "skipped-after.jsonl",
                                                            "xfailed.jsonl"]


TORN = '''
import anthropic
import pytest


def ask(text):
    hi = [{"role": "user", "content": text}]
    return anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=hi)


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("the fixture's teardown broke")


@pytest.mark.replayer("cassettes/torn.jsonl")
def test_torn(broken_teardown):
    ask("six")
'''


def test_a_test_whose_fixture_fails_in_teardown_writes_no_cassette(pytester, monkeypatch):
    """Its body passed, but pytest reports it as an error: no cassette, as for a failed test; the
    next run records it."""
    pytester.makepyfile(test_torn=TORN)
    cassettes = pytester.path / "cassettes"
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester).assert_outcomes(passed=1, errors=1)
        assert len(api.received) == 1
        assert not (cassettes / "torn.jsonl").exists()
        run(pytester).assert_outcomes(passed=1, errors=1)
        assert len(api.received) == 2  # recorded again, not replayed
    assert not (cassettes / "torn.jsonl").exists()


SHARED = '''
import anthropic
import pytest

pytestmark = pytest.mark.replayer("cassettes/shared.jsonl")


def ask(text):
    hi = [{"role": "user", "content": text}]
    return anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=hi)


@pytest.mark.parametrize("order", ["1", "2"])
def test_refund(order):
    ask(f"refund order {order}")


@pytest.mark.replayer("cassettes/own.jsonl")
def test_own():
    ask("its own")
'''

ALSO_SHARED = '''
import pytest


@pytest.mark.replayer("cassettes/../cassettes/shared.jsonl")
def test_elsewhere():
    pass
'''


def test_a_cassette_named_by_several_tests_fails_them_in_one_line(pytester, monkeypatch):
    """Each would record over the others' calls, and recording again could never make them pass:
    every test naming it errors (even when only some of them were selected), saying which."""
    pytester.makepyfile(test_shared=SHARED, test_also=ALSO_SHARED)
    with FakeAPI() as api:
        live(monkeypatch, api)
        result = run(pytester)
        assert len(api.received) == 1
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines([
        "@pytest.mark.replayer on test_also.py::test_elsewhere: cassette cassettes/shared.jsonl is named by 2 other "
        "tests too (test_shared.py::test_refund[[]1], test_shared.py::test_refund[[]2]): a cassette belongs to one "
        "test: give each its own (a parametrized test's parameters: pytest.param(..., "
        "marks=pytest.mark.replayer(PATH)))",
        "@pytest.mark.replayer on test_shared.py::test_refund[[]1]: cassette cassettes/shared.jsonl is named by 2 "
        "other tests too (test_also.py::test_elsewhere, test_shared.py::test_refund[[]2]): *",
        "@pytest.mark.replayer on test_shared.py::test_refund[[]2]: cassette cassettes/shared.jsonl is named by 2 "
        "other tests too (test_also.py::test_elsewhere, test_shared.py::test_refund[[]1]): *",
    ])
    assert "Traceback" not in result.stdout.str()
    assert sorted(p.name for p in (pytester.path / "cassettes").iterdir()) == ["own.jsonl"]

    result = run(pytester, "-k", "refund and 1")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cassette cassettes/shared.jsonl is named by 2 other tests too*"])


SHARED_IN_A_CLASS = '''
import pytest


class TestOrders:
    pytestmark = pytest.mark.replayer("cassettes/orders.jsonl")

    def test_one(self):
        pass

    def test_two(self):
        pass
'''


def test_a_cassette_shared_through_pytestmark_is_caught_when_one_test_is_run_by_node_id(pytester, monkeypatch):
    """`pytest test_shared.py::test_refund[1]` (or a class's one test): pytest makes the module's
    (the class's) other tests too, and those name the cassette as well: the test errors, naming
    them, as when they all run (it passed, and recorded a cassette the others would then be
    refused)."""
    pytester.makepyfile(test_shared=SHARED, test_orders=SHARED_IN_A_CLASS)
    offline(monkeypatch)
    for args, other in ((["test_shared.py::test_refund[1]"], "test_shared.py::test_refund[[]2]"),
                        (["test_shared.py::test_refund"], "test_shared.py::test_refund[[]*]"),
                        (["test_orders.py::TestOrders::test_one"], "test_orders.py::TestOrders::test_two")):
        result = run(pytester, *args)
        result.assert_outcomes(errors=2 if args == ["test_shared.py::test_refund"] else 1)
        result.stdout.fnmatch_lines([f"@pytest.mark.replayer on *: cassette cassettes/*.jsonl is named by 1 other "
                                     f"test too ({other}): a cassette belongs to one test: *"])
        assert "Traceback" not in result.stdout.str()
    assert not (pytester.path / "cassettes").exists()


OWNED = '''
import anthropic
import pytest

pytestmark = pytest.mark.replayer("cassettes/owned.jsonl")


def ask(text):
    hi = [{"role": "user", "content": text}]
    return anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=hi)


def test_a():
    ask("refund order 1")


@pytest.mark.replayer("cassettes/quiet.jsonl")
def test_quiet():  # makes no call
    pass
'''

OWNED_TOO = '''
import anthropic
import pytest


@pytest.mark.replayer("cassettes/owned.jsonl")
def test_b():  # the same calls: answered from test_a's cassette, it would pass
    hi = [{"role": "user", "content": "refund order 1"}]
    anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=hi)
'''


def test_a_cassette_written_by_one_test_is_refused_to_another_run_alone(pytester, monkeypatch):
    """The cassette's first line names the test that wrote it: another test naming the file errors
    in one line even when it runs alone (the collected tests can't show it), and --replayer-record
    doesn't record over it. A cassette no test wrote (replayer export --cassette, or one from
    before the line) serves any one test."""
    pytester.makepyfile(test_owned=OWNED, test_owned_too=OWNED_TOO)  # a module not collected: the file says
    cassette = pytester.path / "cassettes" / "owned.jsonl"
    with FakeAPI() as api:
        live(monkeypatch, api)
        run(pytester, "test_owned.py::test_a", "test_owned.py::test_quiet").assert_outcomes(passed=2)
        assert len(api.received) == 1
        written = cassette.read_text("utf-8")
        first, *calls = [json.loads(line) for line in written.splitlines()]
        assert first == {"test": "test_owned.py::test_a"}
        assert [line["request"]["messages"][0]["content"] for line in calls] == ["refund order 1"]
        assert (pytester.path / "cassettes" / "quiet.jsonl").read_text("utf-8") == (
            '{"test": "test_owned.py::test_quiet"}\n')

        for args in ((), ("--replayer-record",)):
            result = run(pytester, "test_owned_too.py::test_b", *args)
            result.assert_outcomes(errors=1)
            result.stdout.fnmatch_lines([
                "@pytest.mark.replayer on test_owned_too.py::test_b: cassette cassettes/owned.jsonl was recorded by "
                "another test (test_owned.py::test_a): a cassette belongs to one test: give each its own (a "
                "parametrized test's parameters: pytest.param(..., marks=pytest.mark.replayer(PATH))); a renamed "
                "test: delete the file to record it again",
            ])
            assert "Traceback" not in result.stdout.str()
        assert len(api.received) == 1
    assert cassette.read_text("utf-8") == written

    offline(monkeypatch)
    run(pytester, "test_owned.py::test_a", "test_owned.py::test_quiet").assert_outcomes(passed=2)
    cassette.write_text("".join(line + "\n" for line in written.splitlines()[1:]), "utf-8")  # no test's
    run(pytester, "test_owned_too.py::test_b").assert_outcomes(passed=1)


OWN_RECORDER = '''
import os

import anthropic
import pytest
from replayer import Recorder


@pytest.mark.replayer("cassettes/own.jsonl")
def test_own_recorder():
    with Recorder(os.environ["OWN_DB"]) as rec:  # the code under test records itself
        client = rec.wrap(anthropic.Anthropic())
        reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                                       messages=[{"role": "user", "content": "hi"}])
    assert reply.content
'''


def test_a_recorder_of_the_code_under_test_records_nothing_while_a_cassette_replays(pytester, monkeypatch,
                                                                                     tmp_path):
    """While recording the cassette its own recorder records the live call as it would; while
    the cassette replays, the answers are the cassette's: it passes them through, writing nothing."""
    from conftest import exported

    pytester.makepyfile(test_own=OWN_RECORDER)
    with FakeAPI() as api:
        live(monkeypatch, api)
        monkeypatch.setenv("OWN_DB", str(tmp_path / "recording.db"))
        run(pytester).assert_outcomes(passed=1)
    assert len(exported(tmp_path / "recording.db")) == 1
    offline(monkeypatch)
    monkeypatch.setenv("OWN_DB", str(tmp_path / "replaying.db"))
    run(pytester).assert_outcomes(passed=1)
    assert not (tmp_path / "replaying.db").exists() or exported(tmp_path / "replaying.db") == []


READS_THE_KEY = '''
import os

import anthropic
import pytest


@pytest.mark.replayer("cassettes/key.jsonl")
def test_reads_the_key():
    # as frameworks do (pydantic-ai, inspect-ai): the key read from the environment, or refused
    client = anthropic.Anthropic(api_key=os.environ["ANTHROPIC_API_KEY"])
    reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                                   messages=[{"role": "user", "content": "hi"}])
    assert reply.content


def test_after():
    assert os.environ.get("ANTHROPIC_API_KEY") == os.environ["KEY_BEFORE"]
'''


def test_a_cassette_replays_with_a_placeholder_key_when_the_environment_has_none(pytester, monkeypatch):
    """Code that reads ANTHROPIC_API_KEY itself runs offline with no key while its cassette
    replays (as `replayer replay` gives its program one); the environment is as it was after."""
    pytester.makepyfile(test_key=READS_THE_KEY)
    with FakeAPI() as api:
        live(monkeypatch, api)
        monkeypatch.setenv("KEY_BEFORE", FAKE_KEY)
        run(pytester).assert_outcomes(passed=2)
        assert all(FAKE_KEY in json.dumps(r["headers"]) for r in api.received)  # recording: the real key
    offline(monkeypatch)
    monkeypatch.setenv("KEY_BEFORE", "")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")  # set but empty: no key either
    run(pytester).assert_outcomes(passed=2)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.delenv("KEY_BEFORE")
    pytester.makepyfile(test_key=READS_THE_KEY.replace('os.environ["KEY_BEFORE"]', "None"))
    run(pytester).assert_outcomes(passed=2)


KINDS = '''
import asyncio, json, os

import anthropic
import pytest

MODEL = "claude-sonnet-4-5"
EXPECTED = json.loads(os.environ["EXPECTED"])


def asked(text):
    return dict(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": text}])


def built(message):
    return {k: v for k, v in message.to_dict().items() if not (k == "stop_details" and v is None)}


@pytest.mark.replayer("cassettes/kinds.jsonl", loose=True)
def test_kinds():  # each recorded answer of the other kind than the request asks for
    client = anthropic.Anthropic(max_retries=0)
    with client.messages.stream(**asked("plan it, please")) as s:
        assert built(s.get_final_message()) == EXPECTED["plain"]
    assert built(client.messages.create(**asked("stream it, please"))) == EXPECTED["streamed"]


@pytest.mark.replayer("cassettes/dropped.jsonl", with_errors=True)
def test_dropped():  # the first attempt of each call broke mid-stream, the agent tried again
    client = anthropic.Anthropic(max_retries=0)
    with pytest.raises(anthropic.APIConnectionError), client.messages.stream(**asked("stream it")) as s:
        s.get_final_message()
    with client.messages.stream(**asked("stream it")) as s:
        assert built(s.get_final_message()) == EXPECTED["streamed"]

    async def again():
        async with anthropic.AsyncAnthropic(max_retries=0) as ac:
            with pytest.raises(anthropic.APIConnectionError):
                async with ac.messages.stream(**asked("stream it")) as s:
                    await s.get_final_message()
            async with ac.messages.stream(**asked("stream it")) as s:
                return await s.get_final_message()

    assert built(asyncio.run(again())) == EXPECTED["streamed"]
'''


def cassette_line(n: int, text: str, response: dict, *, stream: bool = False, events: list | None = None,
                  error: dict | None = None, turn: int | None = None) -> dict:
    request = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return {"turn_id": f"turn_{n if turn is None else turn}", "conversation_id": "conv_a", "index": n,
            "attempt": 0 if turn is None else n - turn, "started_at": f"2026-12-01T10:00:{n:02d}Z",
            "stream": stream, "endpoint": "/v1/messages", "request": {**request, "stream": True} if stream else request,
            "request_headers": {}, "status": 200, "response": response, "error": error, "request_id": f"req_{n}",
            "events": events}


def test_answers_come_in_the_kind_asked_for_and_a_broken_stream_breaks_again_in_process(pytester, monkeypatch):
    """In process as through the server (tests/test_replay_matching.py): loose answers a streamed
    call from a recorded message (events) and a plain one from a recorded stream (its message);
    with_errors serves a stream whose connection broke as far as it came, then breaks it, for the
    sync and the async client."""
    from replayer.fakeapi import message_events

    plain = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
             "content": [{"type": "thinking", "thinking": "First the plan.", "signature": "c2ln"},
                         {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"item": 2}}],
             "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 7}}
    streamed = {**plain, "id": "msg_2", "content": [{"type": "text", "text": "Streamed, in several pieces."}],
                "stop_reason": "end_turn"}
    events = [dict(e, ms=None) for e in message_events(streamed)]
    cut = {"type": "connection_error", "message": "peer closed connection", "status": None}
    partial = {**streamed, "content": [], "stop_reason": None}
    cassettes = pytester.path / "cassettes"
    cassettes.mkdir()
    (cassettes / "kinds.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [
        cassette_line(0, "plan it", plain), cassette_line(1, "stream it", streamed, stream=True, events=events)]))
    (cassettes / "dropped.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [
        cassette_line(0, "stream it", partial, stream=True, events=events[:3], error=cut, turn=0),
        cassette_line(1, "stream it", streamed, stream=True, events=events, turn=0),
        cassette_line(2, "stream it", partial, stream=True, events=events[:3], error=cut, turn=2),
        cassette_line(3, "stream it", streamed, stream=True, events=events, turn=2)]))
    pytester.makepyfile(test_kinds=KINDS)
    monkeypatch.setenv("EXPECTED", json.dumps({"plain": plain, "streamed": streamed}))
    offline(monkeypatch)
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*ReplayerDrift: replayer: loose replay of kinds.jsonl served 2 request(s)*"])
    out = result.stdout.str()
    assert "(answered a stream from a non-streamed recording)" in out
    assert "(answered a non-streamed call from a recorded stream)" in out
