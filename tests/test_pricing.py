"""Cost from raw usage: every number here is worked out by hand from the price table."""

from __future__ import annotations

import logging

import pytest

from replayer.pricing import PriceTable, PricingError


@pytest.fixture
def table():
    return PriceTable.load()


def usage(inp=0, out=0, w5=0, w1=0, read=0, split=True, **extra):
    u = {"input_tokens": inp, "output_tokens": out,
         "cache_creation_input_tokens": w5 + w1, "cache_read_input_tokens": read}
    if split:
        u["cache_creation"] = {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1}
    u.update(extra)
    return u


def test_every_row_has_a_source_and_date(table):
    assert table.rows
    for row in table.rows:
        assert row.source and row.date, row.ids


def test_input_tokens_exclude_cached_tokens(table):
    # opus-4-5: 5 in / 25 out / 6.25 5m / 10 1h / 0.50 read
    u = usage(inp=1_000, out=2_000, w5=10_000, w1=20_000, read=100_000)
    want = (1_000 * 5 + 2_000 * 25 + 10_000 * 6.25 + 20_000 * 10 + 100_000 * 0.50) / 1e6
    assert table.cost(u, "claude-opus-4-5") == pytest.approx(want)
    b = table.breakdown(u, "claude-opus-4-5")
    assert b.tokens == {
        "input": 1_000, "output": 2_000, "cache_write_5m": 10_000, "cache_write_1h": 20_000, "cache_read": 100_000,
    }


def test_rates_are_not_multipliers(table):
    # fable-5-1 cache reads are 0.25, not 0.1 x 10
    assert table.cost(usage(read=1_000_000), "claude-fable-5-1") == pytest.approx(0.25)
    assert table.cost(usage(read=1_000_000), "claude-fable-5") == pytest.approx(1.00)


def test_missing_ttl_split_means_5_minute_writes(table):
    u = usage(w5=1_000_000, split=False)
    assert table.cost(u, "claude-haiku-4-5") == pytest.approx(1.25)


def test_dated_ids_price_as_their_alias(table):
    u = usage(inp=1_000_000)
    assert table.cost(u, "claude-haiku-4-5-20251001") == table.cost(u, "claude-haiku-4-5") == pytest.approx(1.0)
    assert table.cost(usage(inp=100_000), "claude-sonnet-4-5-20250929") == pytest.approx(0.3)


@pytest.mark.parametrize("model, alias", [
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),  # Vertex AI
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),  # Bedrock
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),  # its cross-region profiles
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
])  # fmt: skip
def test_provider_and_latest_ids_price_as_their_model(table, model, alias, caplog):
    u = usage(inp=1_000_000, out=1_000)
    with caplog.at_level(logging.WARNING, logger="replayer"):
        assert table.cost(u, model) == table.cost(u, alias) is not None
    assert "no price" not in caplog.text


def test_an_exact_row_for_a_providers_id_wins_over_its_model(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('''[[model]]
ids = ["us.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5@20251001"]
input = 7.0
output = 7.0
cache_write_5m = 7.0
cache_write_1h = 7.0
cache_read = 7.0
source = "our Bedrock contract"
date = "2026-12-01"
''')
    t = PriceTable.load(f)
    for model in ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5@20251001"):
        assert t.cost(usage(inp=1_000_000), model) == pytest.approx(7.0)
    assert t.cost(usage(inp=1_000_000), "eu.anthropic.claude-haiku-4-5-20251001-v1:0") == pytest.approx(1.0)


def test_sonnet_long_context_band_prices_every_token(table):
    below = usage(inp=150_000, read=50_000, out=1_000)  # exactly 200K: not above
    assert table.cost(below, "claude-sonnet-4-5") == pytest.approx((150_000 * 3 + 50_000 * 0.30 + 1_000 * 15) / 1e6)
    above = usage(inp=150_000, read=50_001, out=1_000)
    assert table.cost(above, "claude-sonnet-4-5") == pytest.approx((150_000 * 6 + 50_001 * 0.60 + 1_000 * 22.5) / 1e6)
    assert table.breakdown(above, "claude-sonnet-4-5").banded


def test_haiku_5_5_band_at_100k(table):
    small = usage(inp=100_000, out=10_000)
    assert table.cost(small, "claude-haiku-5-5") == pytest.approx((100_000 * 0.10 + 10_000 * 0.50) / 1e6)
    big = usage(inp=90_000, w5=10_001, out=10_000)
    assert table.cost(big, "claude-haiku-5-5") == pytest.approx((90_000 * 0.50 + 10_001 * 0.625 + 10_000 * 2.50) / 1e6)


def test_batch_is_half_price(table):
    u = usage(inp=1_000_000, out=1_000_000, service_tier="batch")
    assert table.cost(u, "claude-haiku-4-5") == pytest.approx((1 + 5) / 2)
    assert table.breakdown(u, "claude-haiku-4-5").batch


def test_web_search_is_billed_per_search(table):
    u = usage(inp=1_000, out=100, server_tool_use={"web_search_requests": 3})
    assert table.cost(u, "claude-haiku-4-5") == pytest.approx((1_000 * 1 + 100 * 5) / 1e6 + 3 * 10 / 1000)


def test_compaction_iterations_are_added(table):
    u = usage(inp=1_000, out=100, iterations=[{"type": "compaction", "input_tokens": 10_000, "output_tokens": 500},
                                               {"type": "message", "input_tokens": 1_000, "output_tokens": 100}])
    base = (1_000 * 5 + 100 * 25) / 1e6
    assert table.cost(u, "claude-opus-4-6") == pytest.approx(base + (10_000 * 5 + 500 * 25) / 1e6)


def test_unknown_model_has_unknown_cost_and_one_warning(table, caplog):
    with caplog.at_level(logging.WARNING, logger="replayer"):
        assert table.cost(usage(inp=10), "claude-nova-9") is None
        assert table.cost(usage(inp=10), "claude-nova-9") is None
        assert table.cost(usage(inp=10), "claude-3-opus-latest") is None  # never guessed from a neighbour
    warnings = [r for r in caplog.records if "claude-nova-9" in r.getMessage()]
    assert len(warnings) == 1


def test_user_file_adds_and_overrides(tmp_path, monkeypatch):
    f = tmp_path / "prices.toml"
    f.write_text(
        """
[[model]]
ids = ["claude-haiku-4-5"]
input = 2.0
output = 10.0
cache_write_5m = 2.5
cache_write_1h = 4.0
cache_read = 0.2
source = "corrected"
date = "2026-12-01"

[[model]]
ids = ["my-model"]
input = 1.0
output = 1.0
cache_write_5m = 1.0
cache_write_1h = 1.0
cache_read = 1.0
source = "ours"
date = "2026-12-01"
"""
    )
    t = PriceTable.load(f)
    assert t.cost(usage(inp=1_000_000), "claude-haiku-4-5") == pytest.approx(2.0)
    assert t.cost(usage(out=1_000_000), "my-model") == pytest.approx(1.0)
    assert t.row_for("claude-haiku-4-5").source == "corrected"
    monkeypatch.setenv("REPLAYER_PRICING", str(f))
    assert PriceTable.load().cost(usage(inp=1_000_000), "my-model") == pytest.approx(1.0)


def test_bad_user_files_say_what_is_wrong(tmp_path):
    with pytest.raises(PricingError, match="not found"):
        PriceTable.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]\nids=")
    with pytest.raises(PricingError, match="not valid TOML"):
        PriceTable.load(bad)
    partial = tmp_path / "partial.toml"
    partial.write_text('[[model]]\nids = ["x"]\ninput = 1\n')
    with pytest.raises(PricingError, match="missing rate"):
        PriceTable.load(partial)


def test_correcting_a_price_reprices_history(tmp_path, api, rec, client, db_path):
    import json

    from replayer.fakeapi import Reply
    from replayer.store.queries import Store
    from replayer.store.schema import open_db

    api.enqueue(Reply(body={"id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                            "content": [], "stop_reason": "end_turn", "stop_sequence": None,
                            "usage": {"input_tokens": 1_000_000, "output_tokens": 0}}))
    client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert rec.flush(10)
    before = json.loads(next(Store(open_db(db_path)).export_lines()))["cost_usd"]
    f = tmp_path / "fix.toml"
    f.write_text('[[model]]\nids=["claude-haiku-4-5"]\ninput=0.5\noutput=1\ncache_write_5m=1\ncache_write_1h=1\ncache_read=1\n')
    after = json.loads(next(Store(open_db(db_path), PriceTable.load(f)).export_lines()))["cost_usd"]
    assert before == pytest.approx(1.0) and after == pytest.approx(0.5)
