"""`replayer record -- COMMAND`: every SDK client class is recorded, and the run ends with one
line saying what was recorded where, or why nothing was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import FAKE_KEY, exported

RECORD = [sys.executable, "-m", "replayer.cli"]


def record(db: Path, *command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RECORD, "--db", str(db), "record", "--", *command],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})},
    )


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def test_vertex_bedrock_and_any_client_class_are_recorded_once(api, tmp_path):
    """Every client class deriving from the SDK's base clients records, with no code change; a
    client the program also wraps itself (rec.wrap, middleware=[rec.middleware]) records once."""
    script = write(tmp_path / "agent.py", f"""
        import asyncio
        import anthropic
        from anthropic import AnthropicVertex, AsyncAnthropicVertex, AnthropicBedrock, AsyncAnthropicBedrock
        from anthropic._base_client import SyncAPIClient
        from replayer import Recorder

        URL, KEY = {api.url!r}, {FAKE_KEY!r}
        def ask(client, text, model="claude-sonnet-4-5"):
            return client.messages.create(model=model, max_tokens=10, messages=[{{"role": "user", "content": text}}])

        vertex = AnthropicVertex(region="us-east5", project_id="proj", access_token="fake-token", base_url=URL + "/v1")
        ask(vertex, "vertex")
        with vertex.messages.stream(model="claude-sonnet-4-5", max_tokens=10,
                                    messages=[{{"role": "user", "content": "vertex stream"}}]) as s:
            s.get_final_message()
        bedrock = AnthropicBedrock(aws_region="us-east-1", api_key="fake-bedrock-token", base_url=URL)
        ask(bedrock, "bedrock", "anthropic.claude-sonnet-4-5")

        class InHouse(SyncAPIClient):  # a client class of the program's own, on the SDK's base client
            def __init__(self):
                super().__init__(version="1", base_url=URL, _strict_response_validation=False)
            @property
            def auth_headers(self):
                return {{"x-api-key": KEY}}
        InHouse().post("/v1/messages", body={{"model": "claude-haiku-4-5", "max_tokens": 5,
                       "messages": [{{"role": "user", "content": "in-house"}}]}}, cast_to=object)

        async def main():
            await ask_async(AsyncAnthropicVertex(region="us-east5", project_id="proj", access_token="t",
                                                 base_url=URL + "/v1"), "async vertex")
            await ask_async(AsyncAnthropicBedrock(aws_region="us-east-1", api_key="t", base_url=URL), "async bedrock",
                            "anthropic.claude-haiku-4-5")
        async def ask_async(client, text, model="claude-sonnet-4-5"):
            await client.messages.create(model=model, max_tokens=10, messages=[{{"role": "user", "content": text}}])
        asyncio.run(main())

        # the program's own recorder as well: each call still recorded once
        rec = Recorder()
        ask(rec.wrap(AnthropicVertex(region="us-east5", project_id="proj", access_token="t", base_url=URL + "/v1")),
            "wrapped vertex")
        ask(AnthropicBedrock(aws_region="us-east-1", api_key="t", base_url=URL, middleware=[rec.middleware]),
            "bedrock with rec.middleware", "anthropic.claude-sonnet-4-5")
        ask(rec.wrap(anthropic.Anthropic(base_url=URL, api_key=KEY)).with_options(timeout=20), "wrapped copy")
        print("agent done")
    """)
    db = tmp_path / "cloud.db"
    proc = record(db, sys.executable, str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "agent done" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr

    paths = [r["path"] for r in api.received]
    assert any(p.endswith(":rawPredict") for p in paths) and any(p.endswith(":streamRawPredict") for p in paths)
    assert any(p.startswith("/model/anthropic.claude-sonnet-4-5/invoke") for p in paths)
    lines = exported(db)
    sent = sorted(json.loads(r["body"])["messages"][0]["content"] for r in api.received)
    assert sorted(line["request"]["messages"][0]["content"] for line in lines) == sent  # each call, once
    assert sorted(json.dumps(line["request"], sort_keys=True) for line in lines) == sorted(
        json.dumps(json.loads(r["body"]), sort_keys=True) for r in api.received
    )
