"""A small history with numbers worked out by hand, recorded through the real SDK (fake server).

Every reply is claude-sonnet-4-5 ($3 input, $15 output, $3.75 5-minute write, $0.30 read per
million tokens).
- conv_ana1, conv_ana2 (ana), conv_ben (ben), conv_cy (cy, the day before): a tool loop of 11
  turns each, turn k >= 1 sending the tool_result of turn k-1: 10 tool results per conversation,
  40 in all, 2 of them errors (conv_ana2 turn 3, conv_cy turn 7). Each turn: 1,000 input and 100
  output tokens, no cache: $0.0045; a conversation $0.0495.
- conv_ben turn 5 is answered 529 three times before it succeeds: 3 of the 54 attempts (51 turns).
- conv_dee (dee): 5 turns whose cache writes keep coming while reads fall to 0 from turn 2.
- conv_eve (eve): 2 turns whose system prompt changes; big cache reads that the cache hit rate
  must leave out (its prompt isn't stable).
"""

from __future__ import annotations

import anthropic
from conftest import FAKE_KEY

from replayer import Recorder
from replayer.fakeapi import FakeAPI, Reply

SONNET = {"input": 3.0, "output": 15.0, "w5m": 3.75, "read": 0.30}
TURN_COST = (1000 * 3.0 + 100 * 15.0) / 1e6
DEE_USAGE = [  # (writes, reads); input 10 and output 10 each
    (2000, 0),
    (100, 2000),
    (2100, 0),
    (2200, 0),
    (2300, 0),
]
EVE_USAGE = [(0, 5000), (0, 5000)]


def _usage(inp, out, writes=0, reads=0):
    return {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": writes,
            "cache_read_input_tokens": reads}  # fmt: skip


def _reply(n, usage, tool_id=None):
    content = [{"type": "text", "text": f"step {n}"}]
    if tool_id:
        content.append({"type": "tool_use", "id": tool_id, "name": "run", "input": {"n": n}})
    return {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": content, "stop_reason": "tool_use" if tool_id else "end_turn", "stop_sequence": None,
            "usage": usage}  # fmt: skip


def build(path, *, today: float, yesterday: float) -> None:
    """Record the history: today's conversations from `today` on, conv_cy at `yesterday`."""
    with FakeAPI() as api, Recorder(path) as rec:
        client = rec.wrap(anthropic.Anthropic(base_url=api.url, api_key=FAKE_KEY, max_retries=3))
        clock = [today]
        rec._clock = lambda: clock[0]

        def call(system, messages, reply, retries=0):
            for _ in range(retries):
                api.enqueue(Reply(status=529, body={"type": "error", "error": {"type": "overloaded_error",
                                                                               "message": "Overloaded"}},
                                  headers={"retry-after-ms": "1"}))  # fmt: skip
            api.enqueue(Reply(body=reply))
            client.messages.create(model="claude-sonnet-4-5", max_tokens=200, system=system, messages=messages)
            clock[0] += 1

        loops = [("conv_ana1", "ana", None), ("conv_ana2", "ana", 3), ("conv_ben", "ben", None),
                 ("conv_cy", "cy", 7)]  # fmt: skip
        for conv, user, failing in loops:
            if conv == "conv_cy":
                saved, clock[0] = clock[0], yesterday
            with rec.conversation(conv, user_id=user):
                msgs = [{"role": "user", "content": "fix the build"}]
                for k in range(11):
                    tool_id = f"toolu_{conv}_{k}" if k < 10 else None
                    reply = _reply(k, _usage(1000, 100), tool_id)
                    call("You are a build fixer.", msgs, reply, retries=3 if conv == "conv_ben" and k == 5 else 0)
                    msgs = [*msgs, {"role": "assistant", "content": reply["content"]}]
                    if tool_id:
                        result = {"type": "tool_result", "tool_use_id": tool_id, "content": f"output {k}"}
                        if k + 1 == failing:  # the result sent with turn `failing`
                            result["is_error"] = True
                        msgs.append({"role": "user", "content": [result]})
            if conv == "conv_cy":
                clock[0] = saved
        with rec.conversation("conv_dee", user_id="dee"):
            msgs = [{"role": "user", "content": "summarise the log"}]
            for k, (writes, reads) in enumerate(DEE_USAGE):
                reply = _reply(k, _usage(10, 10, writes, reads))
                call("You summarise logs.", msgs, reply)
                msgs = [*msgs, {"role": "assistant", "content": reply["content"]},
                        {"role": "user", "content": f"and part {k + 1}"}]  # fmt: skip
        with rec.conversation("conv_eve", user_id="eve"):
            msgs = [{"role": "user", "content": "hello"}]
            for k, (writes, reads) in enumerate(EVE_USAGE):
                reply = _reply(k, _usage(10, 10, writes, reads))
                call(f"prompt version {k}", msgs, reply)
                msgs = [*msgs, {"role": "assistant", "content": reply["content"]}, {"role": "user", "content": "more"}]


def one_turn(rec: Recorder, model: str, usage: dict[str, int], at: float, text: str = "hi") -> None:
    """One recorded call of `model` at `at`, answered "ok" with `usage`."""
    rec.record({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": text}]},
               {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": usage},
               started_at=at, status=200)  # fmt: skip


def unpriced_history(path, at: float) -> None:
    """gil: one priced turn and two of a model with no price, today; hal: one of that model only."""
    usage = {"input_tokens": 1000, "output_tokens": 100}
    with Recorder(path) as rec:
        for conv, user, model in [("conv_gil1", "gil", "claude-sonnet-4-5"), ("conv_gil2", "gil", "claude-nova-9"),
                                  ("conv_gil2", "gil", "claude-nova-9"), ("conv_hal", "hal", "claude-nova-9")]:
            with rec.conversation(conv, user_id=user):
                one_turn(rec, model, usage, at, conv)


def many_users(path, at: float, n: int) -> None:
    """`n` users (user_00 first by spend) with one priced turn each."""
    with Recorder(path) as rec:
        for i in range(n):
            with rec.conversation(f"conv_{i:02d}", user_id=f"user_{i:02d}"):
                one_turn(rec, "claude-sonnet-4-5", {"input_tokens": 1000 * (n - i), "output_tokens": 10}, at)
