"""The conversation list's search (`list -q`, `/` in the list) finds what find in the conversation
finds: a word of the system prompt or of the tools (a tool's name, description or schema) lists
the conversations that sent them, as it lists those whose messages hold it; the words of one
query are looked for together in one place (one turn's messages or reply, one system prompt, one
tool list), as find looks for them."""

from __future__ import annotations

import json

import anthropic
import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY
from tui_data import record_big_agent, unused_port

from replayer.cli import cli
from replayer.store.queries import QUERY_MATCH, Store
from replayer.store.schema import open_db
from replayer.text import fts_query


@pytest.fixture
def two_agents(api, rec, db_path):
    """conv_ops (tui_data.record_big_agent: a system prompt, 40 tools) and conv_plain, a
    conversation with neither."""
    record_big_agent(api, rec, unused_port())
    client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=0))
    with rec.conversation("conv_plain"):
        client.messages.create(model="claude-haiku-4-5", max_tokens=20,
                               messages=[{"role": "user", "content": "What is a ledger?"}])  # fmt: skip
    assert rec.flush(10)
    return db_path


def listed(store: Store, text: str) -> list[str]:
    return sorted(c.conversation_id for c in store.conversations(query=text))


def test_the_list_finds_a_word_of_the_system_prompt_or_the_tools(two_agents):
    store = Store(open_db(two_agents, create=False))
    for text in ("payments company", "Escalate refunds above",  # the system prompt
                 "close_webhook", "close webhook",  # a tool's name (a tool never called)
                 "dashboard shows",  # the tools' descriptions
                 "verbose boolean"):  # a tool's schema, as JSON  # fmt: skip
        assert listed(store, text) == ["conv_ops"], text
        assert store.find_in_conversation("conv_ops", text), text  # where find finds it
    assert listed(store, "ledger") == ["conv_ops", "conv_plain"]  # a tool's name; a message's word
    assert listed(store, "Why is refund") == ["conv_ops"]  # the messages, as before


def test_words_split_between_the_messages_and_the_system_prompt_match_nothing(two_agents):
    """A query is matched in one place: `payments` is only in the system prompt, `pending` only in
    the messages; find in the conversation finds neither together, and the list lists nothing."""
    store = Store(open_db(two_agents, create=False))
    assert listed(store, "payments") == ["conv_ops"] and listed(store, "pending") == ["conv_ops"]
    assert listed(store, "payments pending") == []
    assert store.find_in_conversation("conv_ops", "payments pending") == []
    # the system prompt and the tools are two places too
    assert listed(store, "payments close_webhook") == []


def test_list_q_on_the_command_line(two_agents):
    out = CliRunner().invoke(cli, ["--db", str(two_agents), "list", "-q", "audit_ledger_entry dashboard", "--json"])
    assert out.exit_code == 0, out.output
    assert [c["conversation_id"] for c in json.loads(out.output)] == ["conv_ops"]


def test_the_search_reads_the_turns_of_matching_system_prompts_only(two_agents):
    """The turns that sent a system prompt or tool list are found through an index, not by reading
    every turn (reading them all twice cost every search 50-75 ms on 100,000 turns, a match or not)."""
    store = Store(open_db(two_agents, create=False))
    plan = [r[3] for r in store.db.execute(f"EXPLAIN QUERY PLAN SELECT c.id FROM conversations c WHERE {QUERY_MATCH}",
                                           [fts_query("payments")] * 2)]  # fmt: skip
    assert any("turns_system" in p for p in plan) and any("turns_tools" in p for p in plan), plan
    assert not any(p.split()[:2] in (["SCAN", "t"], ["SCAN", "turns"]) for p in plan), plan
