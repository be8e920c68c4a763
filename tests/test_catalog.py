"""The model catalog (fluxway/data/models.json): its schema, its coverage, exact lookups, the
``fluxway models`` command and /v1/models' ``x_fluxway`` field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest

from fluxway.adapters.presets import PRESETS
from fluxway.adapters.registry import ADAPTERS
from fluxway.catalog import CAPABILITIES, KINDS, TOKEN_PRICES, UNIT_PRICES, Catalog, load_shipped
from fluxway.cli import main
from fluxway.config import ConfigError, parse
from fluxway.policy.pricing import PriceTable
from tests.support.gateway import run_gateway
from tests.support.openai_upstream import openai_upstream

DATA = load_shipped()
BLOCKS: dict[str, Any] = DATA["providers"]
ENTRY_FIELDS = {"kind", "price", "context", "max_output", "capabilities", "aliases", "deprecated"}
BLOCK_FIELDS = {"scope", "source", "via", "as_of", "checked", "defaults", "unpriced_reason", "models"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _entries() -> list[tuple[str, str, dict[str, Any]]]:
    return [(t, name, row) for t, block in BLOCKS.items() for name, row in block["models"].items()]


def test_header() -> None:
    assert DATA["schema"] == 1 and DATA["currency"] == "USD"
    assert tuple(DATA["capabilities"]) == CAPABILITIES
    assert isinstance(DATA["default_max_output_tokens"], int) and DATA["default_max_output_tokens"] > 0


@pytest.mark.parametrize("ptype", sorted(BLOCKS))
def test_every_block_says_where_its_figures_come_from(ptype: str) -> None:
    block = BLOCKS[ptype]
    assert set(block) <= BLOCK_FIELDS, set(block) - BLOCK_FIELDS
    assert block["scope"] in ("any", "provider")
    assert DATE.match(block["checked"])
    if block["models"]:
        assert block["source"].startswith("https://"), ptype
        assert block["via"] and DATE.match(block["as_of"])
    else:
        assert block.get("unpriced_reason"), f"{ptype}: a block without models says why"


def test_every_entry_fits_the_schema() -> None:
    problems = []
    for ptype, name, row in _entries():
        where = f"{ptype}/{name}"
        if set(row) - ENTRY_FIELDS:
            problems.append(f"{where}: unknown fields {set(row) - ENTRY_FIELDS}")
        if row.get("kind") not in KINDS:
            problems.append(f"{where}: kind {row.get('kind')!r}")
        price = row.get("price")
        if price is not None:
            if not isinstance(price, dict) or not price:
                problems.append(f"{where}: price must be an object or null")
            else:
                for key, value in price.items():
                    if key not in TOKEN_PRICES + UNIT_PRICES:
                        problems.append(f"{where}: unknown price field {key}")
                    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                        problems.append(f"{where}: price {key}={value!r}")
                if ("input" in price) != ("output" in price):
                    problems.append(f"{where}: input and output prices go together")
        for key in ("context", "max_output"):
            value = row.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                problems.append(f"{where}: {key}={value!r}")
        if row.get("context") and row.get("max_output") and row["max_output"] > row["context"]:
            problems.append(f"{where}: max_output {row['max_output']} > context {row['context']}")
        caps = row.get("capabilities")
        if not isinstance(caps, list) or set(caps) - set(CAPABILITIES) or len(set(caps)) != len(caps):
            problems.append(f"{where}: capabilities {caps!r}")
        if row.get("kind") == "embedding" and "embeddings" not in (caps or ()):
            problems.append(f"{where}: an embedding model has the embeddings capability")
        aliases = row.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            problems.append(f"{where}: aliases {aliases!r}")
        if "deprecated" in row and not DATE.match(str(row["deprecated"])):
            problems.append(f"{where}: deprecated {row['deprecated']!r}")
    assert not problems, "\n".join(problems[:40])


def test_names_are_unique_where_they_are_looked_up() -> None:
    """Within a block (names and aliases, case-insensitively) and across first-party (scope any)
    blocks, one name is one model: an exact lookup never has two answers."""
    seen_any: dict[str, str] = {}
    clashes = []
    for ptype, block in BLOCKS.items():
        seen: set[str] = set()
        for name, row in block["models"].items():
            for key in (name, *row.get("aliases", [])):
                low = key.lower()
                if low in seen:
                    clashes.append(f"{ptype}: {key} twice")
                seen.add(low)
                if block["scope"] == "any":
                    if low in seen_any and seen_any[low] != ptype:
                        clashes.append(f"{key}: in {seen_any[low]} and {ptype}")
                    seen_any.setdefault(low, ptype)
    assert not clashes, clashes[:20]


def test_coverage() -> None:
    entries = _entries()
    assert len(entries) >= 300
    priced = [e for e in entries if (e[2].get("price") or {}).get("input") is not None]
    assert len(priced) >= 300
    # The providers issue 12 names, each with priced models.
    for ptype in ("openai", "anthropic", "gemini", "mistral", "bedrock", "azure", "cohere", "groq", "deepseek",
                  "xai", "fireworks", "together", "openrouter", "perplexity", "cerebras", "cloudflare", "databricks",
                  "sambanova", "nebius", "novita", "hyperbolic", "baseten", "deepinfra", "moonshot", "qwen", "zai",
                  "minimax", "ai21", "nscale", "scaleway", "ovhcloud", "voyage"):
        assert any(t == ptype for t, _, _ in priced), ptype


def test_every_provider_type_has_a_block_and_its_default_models_are_priced() -> None:
    """Each preset and native type names its default models (docs/providers.md lists them), and the
    catalog prices every one of them exactly, or the block says why the type has no prices."""
    table = PriceTable()
    for ptype in sorted(set(PRESETS) | set(ADAPTERS)):
        assert ptype in BLOCKS, f"{ptype}: no catalog block"
        block = BLOCKS[ptype]
        if block.get("unpriced_reason"):
            assert block["defaults"] == [], ptype
            continue
        assert block["defaults"], f"{ptype}: no default models"
        for model in block["defaults"]:
            info = table.lookup(ptype, model)
            assert info.known and info.price.input_per_mtok > 0, (ptype, model)


def test_lookups_are_exact() -> None:
    catalog = Catalog()
    gpt4o = catalog.find("openai", "gpt-4o")
    assert gpt4o is not None and gpt4o.priced and "gpt-4o-2024-08-06" in gpt4o.aliases
    assert catalog.find("openai", "gpt-4o-2024-08-06") is gpt4o  # an alias
    assert catalog.find("azure", "GPT-4O") is not None  # case-insensitive
    assert catalog.find("openai", "gpt-4o-2099-01-01") is None  # an unknown dated name
    assert catalog.find("openai", "gpt-4") is not None and catalog.find("openai", "gpt-4o-x") is None
    assert catalog.find("openrouter", "openai/gpt-4o-mini") is not None  # vendor path: the exact name after it


def test_a_flat_table_is_still_accepted() -> None:
    table = PriceTable({"models": {"x": {"input": 1.0, "output": 2.0, "max_output_tokens": 10},
                                   "groq/y": {"input": 3.0, "output": 4.0}}})
    assert table.lookup("openai", "x").price.output_per_mtok == 2.0
    assert table.lookup("openai", "x").max_output_tokens == 10
    assert table.lookup("groq", "y").known and not table.lookup("together", "y").known
    assert not table.lookup("openai", "x-2025-01-01").known


def test_search() -> None:
    catalog = Catalog()
    names = [e.name for e in catalog.search("sonnet-4-5", "anthropic")]
    assert "claude-sonnet-4-5" in names and all("sonnet-4-5" in n for n in names)
    embeddings = catalog.search("embeddings", "voyage")
    assert embeddings and all(e.kind == "embedding" for e in embeddings)
    assert catalog.search("no-such-model-anywhere") == []


def test_cli_models_search_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--search", "gpt-4o-mini", "--provider", "openai"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["provider", "model", "kind", "input", "$/M"]
    row = next(line.split() for line in out[1:] if line.split()[1] == "gpt-4o-mini")
    assert row[:5] == ["openai", "gpt-4o-mini", "chat", "0.15", "0.6"]
    assert out[-1].endswith("model(s)") and int(out[-1].split()[0]) == len(out) - 2


def test_cli_models_json_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "-s", "claude-haiku-4-5", "-p", "anthropic", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    haiku = next(r for r in rows if r["model"] == "claude-haiku-4-5")
    assert haiku["provider"] == "anthropic" and haiku["price"]["input"] > 0 and "tools" in haiku["capabilities"]
    assert haiku["source"].startswith("https://")
    assert main(["models", "--search", "no-such-model-anywhere"]) == 1
    assert main(["models", "--provider", "no-such-type"]) == 2


def test_capability_overrides_are_validated() -> None:
    base: dict[str, Any] = {"providers": [{"name": "up", "type": "openai", "api_keys": ["k"]}]}
    cfg = parse({**base, "models": [{"name": "m", "targets": [
        {"provider": "up", "model": "x", "capabilities": ["tools", "vision"]}]}]})
    assert cfg.models[0].targets[0].capabilities == ("tools", "vision")
    with pytest.raises(ConfigError) as err:
        parse({**base, "models": [{"name": "m", "targets": [
            {"provider": "up", "model": "x", "capabilities": ["telepathy"]}]}]})
    assert "telepathy" in str(err.value.problems)


async def test_v1_models_carries_catalog_facts() -> None:
    async with openai_upstream() as up:
        cfg = {
            "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
            "models": [
                {"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o"},
                                              {"provider": "up", "model": "gpt-4o-mini"}]},
                {"name": "mine", "targets": [{"provider": "up", "model": "my-finetune",
                                              "capabilities": ["tools"]}]},
                {"name": "unknown", "targets": [{"provider": "up", "model": "my-other-finetune"}]},
            ],
        }
        async with run_gateway(cfg) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="any", max_retries=0)
            listed = {m.id: m.model_dump() for m in (await client.models.list()).data}
            smart = listed["smart"]["x_fluxway"]
            gpt4o, mini = Catalog().find("openai", "gpt-4o"), Catalog().find("openai", "gpt-4o-mini")
            assert gpt4o is not None and mini is not None
            assert smart["capabilities"] == sorted(gpt4o.capabilities & mini.capabilities)
            assert "tools" in smart["capabilities"] and "vision" in smart["capabilities"]
            assert smart["context_window"] == min(gpt4o.context or 0, mini.context or 0)
            assert smart["priced"] is True
            assert [t["catalog"] for t in smart["targets"]] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
            mine = listed["mine"]["x_fluxway"]
            assert mine["capabilities"] == ["tools"] and mine["priced"] is False
            assert "x_fluxway" not in listed["unknown"]  # nothing known of it
            one = await client.models.retrieve("smart")
            assert one.model_dump()["x_fluxway"] == smart


def test_the_documented_default_models_are_the_catalogs() -> None:
    """docs/providers.md "Default models per provider type" names what each block's defaults are."""
    doc = (Path(__file__).parent.parent / "docs" / "providers.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Default models per provider type"):]
    section = section[:section.index("\n\n", section.index("| type | default models |"))]
    documented = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([\w-]+)` \| (.*) \|$", line)
        if m:
            documented[m.group(1)] = re.findall(r"`([^`]+)`", m.group(2))
    assert set(documented) == set(PRESETS) | set(ADAPTERS)
    for ptype, models in documented.items():
        assert models == BLOCKS[ptype]["defaults"], ptype


@pytest.mark.parametrize("ptype", ["cloudflare", "databricks", "litellm"])
def test_presets_whose_url_holds_an_account_need_a_base_url(ptype: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"providers": [{"name": "p", "type": ptype, "api_keys": ["k"]}],
               "models": [{"name": "m", "targets": [{"provider": "p", "model": "x"}]}]})
    assert any("base_url" in problem for problem in err.value.problems)
    cfg = parse({"providers": [{"name": "p", "type": ptype, "base_url": "https://example.test/v1"}
                               | ({} if ptype == "litellm" else {"api_keys": ["k"]})],
                 "models": [{"name": "m", "targets": [{"provider": "p", "model": "x"}]}]})
    assert cfg.providers[0].base_url == "https://example.test/v1"


def test_media_prices_reach_the_pass_through_pricing() -> None:
    """The catalog's per-unit prices become Price's media fields (policy/media_cost.py bills them)."""
    table = PriceTable()
    image = table.lookup("openai", "dall-e-3")
    assert image.known and image.price.per_image == 0.04 and image.price.input_per_mtok == 0.0
    assert table.lookup("openai", "whisper-1").price.per_audio_second == 0.0001
    assert table.lookup("openai", "tts-1").price.per_mchar == 15.0
    tokens = table.lookup("openai", "gpt-image-1").price  # billed by image tokens
    assert tokens.input_per_mtok > 0 and tokens.output_per_mtok > 0 and tokens.per_image is None
