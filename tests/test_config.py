"""Config loading: env expansion, strict validation with paths, cross-reference checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fluxway.cli import main
from fluxway.config import ConfigError, config_warnings, expand_env, load, parse


def base(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": [{"name": "openai", "type": "openai", "api_keys": ["sk-1"]}],
        "models": [{"name": "smart", "targets": [{"provider": "openai", "model": "gpt-4o"}]}],
    }
    cfg.update(extra)
    return cfg


def problems(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data, env or {})
    return info.value.problems


def test_valid_config_is_frozen() -> None:
    cfg = parse(base(), {})
    assert cfg.server.port == 8400
    assert cfg.models[0].targets[0].to_target().key == "openai/gpt-4o"
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on a frozen model
        cfg.server.port = 1  # type: ignore[misc]


def test_unknown_provider_reference_has_path() -> None:
    data = base()
    data["models"].append({"name": "b", "targets": [{"provider": "opnai", "model": "x"}]})
    assert problems(data) == ["models[1].targets[0].provider: unknown provider 'opnai'"]


def test_unknown_provider_type() -> None:
    data = base(providers=[{"name": "openai", "type": "opnai", "api_keys": ["k"]}])
    assert "providers[0].type: unknown provider type 'opnai'" in problems(data)


def test_unknown_keys_are_errors() -> None:
    data = base(server={"port": 1, "colour": "red"})
    assert problems(data) == ["server.colour: unknown key"]


def test_wrong_types_reported_with_paths() -> None:
    data = base(server={"port": "eighty"})
    data["models"][0]["targets"][0]["weight"] = -1
    found = problems(data)
    assert any(p.startswith("server.port:") for p in found)
    assert any(p.startswith("models[0].targets[0].weight:") for p in found)


def test_every_problem_listed_at_once() -> None:
    data = base()
    data["models"][0]["fallbacks"] = ["nope", "smart"]
    data["providers"].append({"name": "openai", "type": "groq", "api_keys": ["k"]})
    found = problems(data)
    assert "models[0].fallbacks[0]: unknown model 'nope'" in found
    assert "models[0].fallbacks[1]: a model cannot fall back to itself" in found
    assert "providers[1].name: duplicate provider name 'openai'" in found


def test_missing_secret_is_an_error_with_path() -> None:
    data = base(providers=[{"name": "openai", "type": "openai", "api_keys": ["${OPENAI_API_KEY}"]}])
    assert "providers[0].api_keys[0]: environment variable OPENAI_API_KEY is not set" in problems(data)


def test_key_required_unless_preset_is_keyless() -> None:
    data = base(providers=[{"name": "openai", "type": "openai"}])
    assert problems(data) == ["providers[0].api_keys: provider type 'openai' needs at least one API key"]
    ok = base(providers=[{"name": "openai", "type": "ollama"}])
    assert parse(ok, {}).providers[0].api_keys == ()


def test_key_from_an_unset_variable_with_empty_default_loads_with_a_warning() -> None:
    data = base(providers=[{"name": "openai", "type": "openai", "api_keys": ["${OPENAI_API_KEY:-}"]}])
    cfg = parse(data, {})
    assert cfg.providers[0].api_keys == ()
    assert cfg.providers[0].unset_key_vars == ("OPENAI_API_KEY",)
    assert any("OPENAI_API_KEY is not set" in w for w in config_warnings(cfg))
    cfg = parse(data, {"OPENAI_API_KEY": "sk-real"})
    assert cfg.providers[0].api_keys == ("sk-real",)
    assert cfg.providers[0].unset_key_vars == ()
    assert config_warnings(cfg) == []


def test_env_expansion_forms() -> None:
    found: list[str] = []
    env = {"A": "1", "EMPTY": ""}
    tree = {"x": "${A}", "y": "${B:-dflt}", "z": "pre-${A}-post", "w": "${EMPTY:-fallback}", "n": 5}
    assert expand_env(tree, env, found) == {"x": "1", "y": "dflt", "z": "pre-1-post", "w": "fallback", "n": 5}
    assert found == []


def test_master_key_from_env_and_empty_default() -> None:
    data = base(auth={"master_key": "${FLUXWAY_MASTER_KEY:-}"})
    assert parse(data, {}).auth.master_key is None
    assert parse(data, {"FLUXWAY_MASTER_KEY": "sk-m"}).auth.master_key == "sk-m"


def test_load_reports_yaml_errors(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("models: [\n  - name: x\n")
    with pytest.raises(ConfigError) as info:
        load(f, {})
    assert info.value.problems[0].startswith("(file): invalid YAML at line")


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "providers:\n  - {name: openai, type: openai, api_keys: [k]}\n"
        "models:\n  - name: a\n    targets: [{provider: openai, model: m}]\n"
        "  - name: b\n    targets: [{provider: opnai, model: m}]\n"
    )
    assert main(["check", "--config", str(f)]) == 1
    assert "models[1].targets[0].provider: unknown provider 'opnai'" in capsys.readouterr().err
    good = tmp_path / "g.yaml"
    good.write_text(
        "providers:\n  - {name: o, type: ollama}\nmodels:\n  - name: a\n    targets: [{provider: o, model: m}]\n"
    )
    assert main(["check", "--config", str(good)]) == 0


def test_example_config_is_valid() -> None:
    cfg = load(Path(__file__).parents[1] / "examples" / "fluxway.yaml", {})
    assert cfg.models


def test_serve_refuses_public_address_without_master_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("providers:\n  - {name: o, type: ollama}\n")
    assert main(["serve", "--config", str(f), "--host", "0.0.0.0"]) == 2
    assert "--insecure" in capsys.readouterr().err


def test_each_provider_type_takes_only_its_own_settings() -> None:
    """Typed provider settings: a Bedrock field on an OpenAI provider is an unknown key, each type's
    rules name the field at the provider's path (no settings-class name in it)."""
    wrong = base(providers=[{"name": "openai", "type": "openai", "api_keys": ["k"], "region": "us-east-1"}])
    assert problems(wrong) == ["providers[0].region: unknown key"]
    typo = base(providers=[{"name": "openai", "type": "opnai", "api_keys": ["k"]}])
    assert "providers[0].type: unknown provider type 'opnai'" in problems(typo)
    bedrock = base(providers=[{"name": "openai", "type": "bedrock", "regoin": "x"}])
    found = problems(bedrock, {})
    assert "providers[0].regoin: unknown key" in found
    bedrock = base(providers=[{"name": "openai", "type": "bedrock"}])
    found = problems(bedrock, {})
    assert "providers[0].region: bedrock needs a region (or AWS_REGION)" in found
    # no keys at all: the AWS credential chain finds them at run time; half a pair is refused
    assert not any(p.startswith("providers[0].aws_access_key_id") for p in found)
    half = base(providers=[{"name": "openai", "type": "bedrock", "region": "us-east-1", "aws_access_key_id": "A"}])
    assert problems(half, {}) == [
        "providers[0].aws_access_key_id: bedrock needs both aws_access_key_id and aws_secret_access_key"]
    azure = base(providers=[{"name": "openai", "type": "azure", "api_keys": ["k"]}])
    assert problems(azure) == ["providers[0].base_url: azure needs the resource's base_url"]
    compat = base(providers=[{"name": "openai", "type": "openai-compatible"}])
    assert problems(compat) == ["providers[0].base_url: provider type 'openai-compatible' needs the server's base_url"]


def test_provider_settings_are_typed_per_adapter() -> None:
    from fluxway.adapters.settings import AzureSettings, BedrockSettings, OpenAICompatSettings

    cfg = parse(base(providers=[
        {"name": "openai", "type": "openai", "api_keys": ["k"]},
        {"name": "az", "type": "azure", "base_url": "https://r.openai.azure.com", "api_keys": ["k"],
         "api_version": "v1"},
        {"name": "br", "type": "bedrock", "region": "eu-west-1", "aws_access_key_id": "AKIAEXAMPLE",
         "aws_secret_access_key": "s3cr3t"},
    ]), {})
    openai, az, br = cfg.providers
    assert isinstance(openai, OpenAICompatSettings)
    assert isinstance(az, AzureSettings) and az.api_version == "v1"
    assert isinstance(br, BedrockSettings) and br.region == "eu-west-1"
    assert set(br.secrets()) == {"AKIAEXAMPLE", "s3cr3t"}
    assert br.continuation_for("anthropic.claude-3-haiku") == "prefill"
    assert br.continuation_for("amazon.nova-lite-v1:0") == "none"
