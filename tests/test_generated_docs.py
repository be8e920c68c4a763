"""The generated docs (docs/configuration.md, the tables in docs/providers.md) match the code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parent.parent


def _gen_docs() -> ModuleType:
    name = "fluxway_gen_docs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "gen_docs.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


gen = _gen_docs()


@pytest.mark.parametrize("path", [gen.CONFIG_DOC, gen.PROVIDERS_DOC])
def test_committed_docs_match_the_code(path: str) -> None:
    try:
        expected = gen.render(ROOT)[path]
    except gen.DocsError as exc:
        pytest.fail("\n".join(exc.args[0]))
    committed = (ROOT / path).read_text(encoding="utf-8")
    assert committed == expected, f"{path} is out of date with the code: run `{gen.COMMAND}` and commit the result"


def test_every_config_key_and_provider_type_is_in_the_docs() -> None:
    from fluxway.adapters.registry import ADAPTERS, PRESETS
    from fluxway.adapters.settings import NATIVE, OpenAICompatSettings
    from fluxway.config import Config

    files = gen.render(ROOT)
    config_doc = files[gen.CONFIG_DOC]
    assert set(NATIVE) == set(ADAPTERS), "every native adapter declares its settings class"
    for model in (Config, OpenAICompatSettings, *NATIVE.values()):
        for name in model.model_fields:
            assert f"| `{name}` |" in config_doc
    providers_doc = files[gen.PROVIDERS_DOC]
    for type_ in (*PRESETS, *ADAPTERS):
        assert f"| `{type_}` | `" in providers_doc


# The generator is generic: unions of models (discriminated or not), lists and maps of models.


class _Timeout(BaseModel):
    # Seconds.
    total: float = Field(1.0, gt=0)


class _Alpha(BaseModel):
    """An alpha provider."""

    # Which kind.
    type: Literal["alpha"]
    # Its own setting.
    depth: int = Field(3, ge=1)
    # Timeouts.
    timeout: _Timeout = _Timeout()


class _Beta(BaseModel):
    # Which kind.
    type: Literal["beta", "beta2"]
    region: str | None = None
    """Where it runs."""
    # Timeouts.
    timeout: _Timeout | None = None


class _Root(BaseModel):
    # The providers.
    providers: tuple[Annotated[_Alpha | _Beta, Field(discriminator="type")], ...] = ()
    mode: Literal["a", "b"] = "a"  # The mode.
    # Named timeouts.
    named: dict[str, _Timeout] = Field(default_factory=dict)


def test_the_generator_walks_discriminated_unions_and_nested_models() -> None:
    doc = gen.render_config(_Root)
    assert "## `providers[]` (type: alpha)" in doc
    assert "## `providers[]` (type: beta / beta2)" in doc
    assert "| `depth` | integer, >= 1 | `3` | Its own setting. |" in doc
    assert "| `region` | string or null | `null` | Where it runs. |" in doc  # an attribute docstring
    assert '| `mode` | `"a"` or `"b"` | `"a"` | The mode. |' in doc  # a comment at the end of the line
    assert "An alpha provider." in doc
    assert "## `providers[].timeout`" in doc
    assert "Also used at `named`." in doc  # each other path once, not its own again
    assert "| `named` | map of string to object: [`providers[].timeout`](#providers-timeout) | `{}` |" in doc


class _Undocumented(BaseModel):
    # Documented.
    a: int = 1
    b: int = 2


def test_a_key_without_a_description_is_an_error() -> None:
    with pytest.raises(gen.DocsError) as info:
        gen.render_config(_Undocumented)
    assert any("_Undocumented.b (b)" in line for line in info.value.args[0])


def test_fill_markers_needs_the_markers() -> None:
    with pytest.raises(gen.DocsError):
        gen.fill_markers("no markers here", {"provider-types": "x"}, "docs/providers.md")
