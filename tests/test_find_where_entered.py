"""Find (`/` in a conversation) opens the turn where the text entered the context, not every turn
that sent it again with its cache breakpoint moved (Claude Code moves `cache_control` to the
newest block each turn, so the message that loses it is a new byte sequence, not a new message)."""

from __future__ import annotations

import pytest

from replayer.store.queries import Store
from replayer.store.schema import open_db

CACHE = {"type": "ephemeral"}


def _moving_breakpoint_agent(client, turns: int = 3) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "zebra question", "cache_control": CACHE}]}]
    for i in range(turns):
        reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages)
        for m in messages:  # the breakpoint moves to the newest block
            for block in m["content"]:
                block.pop("cache_control", None)
        messages = [
            *messages,
            {"role": "assistant", "content": [{"type": "text", "text": reply.content[0].text}]},
            {"role": "user", "content": [{"type": "text", "text": f"follow-up {i}", "cache_control": CACHE}]},
        ]


@pytest.mark.parametrize("explicit", [False, True], ids=["threaded", "explicit-conversation"])
def test_find_names_only_the_turn_a_message_entered_when_the_cache_breakpoint_moves(client, rec, db_path, explicit):
    if explicit:
        with rec.conversation("conv_moving"):
            _moving_breakpoint_agent(client)
    else:
        _moving_breakpoint_agent(client)
    assert rec.flush()
    store = Store(open_db(db_path, create=False))
    (conv,) = [c.conversation_id for c in store.conversations()]
    assert len(store.turns(conv)) == 3
    assert [idx for idx, _ in store.find_in_conversation(conv, "zebra")] == [0]
    assert [idx for idx, _ in store.find_in_conversation(conv, "follow-up 0")] == [1]
    assert [idx for idx, _ in store.find_in_conversation(conv, "follow-up 1")] == [2]


def test_find_opens_the_turn_whose_changed_system_prompt_first_holds_every_word(client, rec, db_path):
    """The words of a query can be some in a system prompt's old block and some in a block a later
    turn added: the list lists the conversation (the whole prompt holds them), so find opens the
    turn where the prompt first held them all (it opened none)."""
    base = [{"type": "text", "text": "You review alpaca invoices."}]
    with rec.conversation("conv_prompt"):
        messages: list = [{"role": "user", "content": "first"}]
        prompts = [base, [*base, {"type": "text", "text": "Flag every ocelot receipt."}],  # added a block
                   [*base, {"type": "text", "text": "Be brief."}]]  # replaced it  # fmt: skip
        for system in prompts:
            reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=messages, system=system)
            messages = [*messages, {"role": "assistant", "content": reply.content[0].text},
                        {"role": "user", "content": "next"}]  # fmt: skip
    assert rec.flush()
    store = Store(open_db(db_path, create=False))
    assert [c.conversation_id for c in store.conversations(query="alpaca ocelot")] == ["conv_prompt"]
    assert [idx for idx, _ in store.find_in_conversation("conv_prompt", "alpaca ocelot")] == [1]
    assert [idx for idx, _ in store.find_in_conversation("conv_prompt", "alpaca")] == [0]
    assert [idx for idx, _ in store.find_in_conversation("conv_prompt", "ocelot")] == [1]
