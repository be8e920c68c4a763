from __future__ import annotations

import pytest

from fluxway.canonical import Price, Target, Usage
from fluxway.config import parse
from fluxway.policy.pricing import Pricer, PriceTable, cost_usd


def test_shipped_table_covers_common_models() -> None:
    table = PriceTable()
    for provider_type, model in [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1"),
        ("openai", "gpt-4.1-mini"),
        ("openai", "o3"),
        ("openai", "o4-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("anthropic", "claude-opus-4-1"),
        ("gemini", "gemini-2.5-flash"),
        ("gemini", "gemini-2.5-pro"),
        ("gemini", "gemini-2.0-flash"),
        ("mistral", "mistral-large-latest"),
        ("groq", "llama-3.3-70b-versatile"),
        ("deepseek", "deepseek-chat"),
    ]:
        info = table.lookup(provider_type, model)
        assert info.known, (provider_type, model)
        assert info.price.input_per_mtok > 0
        assert info.price.output_per_mtok > 0


def test_exact_prices_and_prefix_resolution() -> None:
    table = PriceTable()
    assert table.lookup("openai", "gpt-4o").price == Price(2.5, 10.0, 1.25)
    # dated names resolve to the longest listed prefix, not a shorter sibling
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18").price.input_per_mtok == 0.15
    assert table.lookup("openai", "gpt-4o-2024-08-06").price.input_per_mtok == 2.5
    assert table.lookup("anthropic", "claude-sonnet-4-5-20250929").price.output_per_mtok == 15.0
    assert table.lookup("anthropic", "claude-opus-4-5-20251101").price.input_per_mtok == 5.0
    assert table.lookup("anthropic", "claude-opus-4-20250514").price.input_per_mtok == 15.0
    # a bare name must not match a shorter key without a separator ("gpt-4" is not a prefix of "gpt-4o")
    assert table.lookup(None, "gpt-4o").price.input_per_mtok == 2.5
    # bedrock ids and openrouter-style vendor paths
    assert table.lookup("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0").price.input_per_mtok == 3.0
    assert table.lookup("openrouter", "openai/gpt-4o-mini").price.input_per_mtok == 0.15


def test_provider_specific_entry_wins_over_model_only() -> None:
    data = {"models": {"llama-x": {"input": 1.0, "output": 1.0}, "groq/llama-x": {"input": 0.5, "output": 0.6}}}
    table = PriceTable(data)
    assert table.lookup("groq", "llama-x").price.input_per_mtok == 0.5
    assert table.lookup("together", "llama-x").price.input_per_mtok == 1.0


def test_unknown_model_costs_zero_and_is_flagged() -> None:
    info = PriceTable().lookup("openai", "my-private-finetune")
    assert not info.known
    assert info.price == Price()
    assert info.max_output_tokens == 4096


def test_cost_uses_cached_rate() -> None:
    price = Price(2.0, 8.0, 0.5)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=500_000, cached_tokens=400_000)
    assert cost_usd(price, usage) == pytest.approx(600_000 * 2.0 / 1e6 + 400_000 * 0.5 / 1e6 + 4.0)
    # no cached rate: cached tokens cost the input rate
    assert cost_usd(Price(1.0, 1.0), Usage(prompt_tokens=1000, cached_tokens=1000)) == pytest.approx(0.001)


def _cfg() -> object:
    return parse(
        {
            "providers": [
                {"name": "oai", "type": "openai", "api_keys": ["k"]},
                {"name": "ant", "type": "anthropic", "api_keys": ["k"]},
            ],
            "models": [
                {
                    "name": "smart",
                    "targets": [
                        {"provider": "oai", "model": "gpt-4o-mini"},
                        {
                            "provider": "ant",
                            "model": "claude-sonnet-4-5",
                            "price": {"input_per_mtok": 7, "output_per_mtok": 9},
                        },
                    ],
                    "fallbacks": ["big"],
                },
                {"name": "big", "targets": [{"provider": "oai", "model": "o3"}], "fallbacks": ["smart"]},
            ],
        }
    )


def test_pricer_overrides_and_worst_case() -> None:
    pricer = Pricer(_cfg())  # type: ignore[arg-type]
    assert pricer.for_target(Target("ant", "claude-sonnet-4-5")).price.input_per_mtok == 7
    assert pricer.for_target(Target("oai", "gpt-4o-mini")).price.input_per_mtok == 0.15
    worst = pricer.worst_case("smart")  # gpt-4o-mini, overridden sonnet, and fallback o3 (cycle-safe)
    assert worst.price.input_per_mtok == 7
    assert worst.price.output_per_mtok == 9
    assert worst.max_output_tokens == 100000
    assert worst.known
    assert pricer.worst_case("oai/gpt-4.1").price.input_per_mtok == 2.0  # direct provider/model
    assert not pricer.worst_case("nope").known
    cost, known = pricer.cost(Target("oai", "gpt-4o-mini"), Usage(prompt_tokens=1000, completion_tokens=1000))
    assert known and cost == pytest.approx((1000 * 0.15 + 1000 * 0.6) / 1e6)
    assert pricer.cost(Target("oai", "unknown-model"), Usage(prompt_tokens=10)) == (0.0, False)


def test_only_listed_names_and_aliases_are_priced() -> None:
    """Exact matches only: a dated name is priced when the catalog lists it (as a model or an alias
    of one), never because it starts with a listed name."""
    table = PriceTable()
    for alias, listed in [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ]:
        info = table.lookup("openai", alias)
        assert info.known and info == table.lookup("openai", listed), alias
    # A dated snapshot with its own price is its own entry, not its base model's.
    assert table.lookup("openai", "gpt-4o-2024-05-13").price.input_per_mtok == 5.0
    # Unlisted snapshots, siblings and fine-tunes are unpriced, whatever they start with.
    for other in ["gpt-4o-2031-01-01", "claude-sonnet-4-5-20991231", "o1-pro-max", "o3-pro-max",
                  "ft:gpt-4o:acme::x1", "gpt-4o-custom", "claude-sonnet-4-5-custom", "gpt-4o-mini-9999"]:
        assert not table.lookup("openai", other).known, other


def test_provider_scoped_entries_need_their_provider_type() -> None:
    table = PriceTable()
    # A hosted open model is priced by the host that lists it, not by a name seen elsewhere.
    assert table.lookup("groq", "llama-3.3-70b-versatile").known
    assert not table.lookup("together", "llama-3.3-70b-versatile").known
    assert not table.lookup(None, "llama-3.3-70b-versatile").known
    # Bedrock's cross-region profile is billed as the model id it names.
    us = table.lookup("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert us.known and us == table.lookup("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0")
