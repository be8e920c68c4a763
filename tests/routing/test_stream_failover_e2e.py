"""Mid-stream failover end to end (issues 4 and 10): a stream that breaks after partial output
continues on another target that can continue a partial answer (its provider's ``continuation``);
the client sees one stream, with the remaining output budget and the usage summed across legs.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
import yaml

from fluxway.cli import main
from tests.support.continuing import STORY, ContinuingUpstream, template
from tests.support.faults import FaultyUpstream
from tests.support.gateway import Gateway, run_gateway
from tests.support.pair import pair_config

HI: list[Any] = [{"role": "user", "content": "Hi"}]


def _client(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


async def _metric(gw: Gateway, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert m is not None, f"{name} not in /metrics"
    return float(m.group(1))


async def _stream(gw: Gateway, **kwargs: Any) -> tuple[Any, list[Any]]:
    raw: Any = await _client(gw).chat.completions.with_raw_response.create(
        model="m", messages=HI, stream=True, **kwargs
    )
    return raw, [c async for c in raw.parse()]


def _text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _failover_config(a: FaultyUpstream, b: FaultyUpstream, **model: Any) -> dict[str, Any]:
    """``a`` and ``b`` as generic servers that continue a trailing assistant message (``prefill``):
    an ``openai`` provider has no continuation of its own."""
    cfg = pair_config(a, b, model={"stream_failover": True, "retry": {"attempts": 1}, **model})
    for p in cfg["providers"]:
        p["continuation"] = "prefill"
    return cfg


@pytest.mark.parametrize("mode", ["reset_stream", "stall"])
async def test_broken_stream_continues_on_the_next_target(mode: str) -> None:
    async with (
        FaultyUpstream("a", mode, partial="Hello ") as a,
        FaultyUpstream("b", text="world!") as b,
        run_gateway(_failover_config(a, b)) as gw,
    ):
        raw, chunks = await _stream(gw)
        failovers = await _metric(gw, "fluxway_stream_failovers_total")
    assert _text(chunks) == "Hello world!"
    assert raw.headers["x-fluxway-provider"] == "a"  # sent before A broke
    # B was asked to continue A's partial answer.
    sent = b.requests[0].json()
    assert sent["model"] == "model-b"
    assert sent["stream"] is True
    assert sent["messages"] == [*HI, {"role": "assistant", "content": "Hello "}]
    # One finish, in the last choice chunk, carrying the marker.
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0] is [c for c in chunks if c.choices][-1]
    marker = (finishing[0].model_extra or {}).get("x_fluxway")
    assert marker is not None and marker["stream_failover"][0].pop("after_tokens") > 0  # fluxway.tokens' count
    assert marker == {
        "stream_failover": [
            {
                "from": "a/model-a",
                "to": "b/model-b",
                "error": "timeout" if mode == "stall" else "upstream_5xx",
                "after_chars": len("Hello "),
                "continuation": "prefill",
            }
        ]
    }
    assert failovers == 1
    assert (a.count, b.count) == (1, 1)


async def test_unbroken_stream_carries_no_marker() -> None:
    async with (
        FaultyUpstream("a") as a,
        FaultyUpstream("b") as b,
        run_gateway(_failover_config(a, b)) as gw,
    ):
        _, chunks = await _stream(gw)
        failovers = await _metric(gw, "fluxway_stream_failovers_total")
    assert _text(chunks) == "Hello from a"
    assert all("x_fluxway" not in (c.model_extra or {}) for c in chunks)
    assert failovers == 0
    assert b.count == 0


async def test_usage_is_reported_once_after_a_failover() -> None:
    async with (
        FaultyUpstream("a", "reset_stream") as a,
        FaultyUpstream("b", text="there") as b,
        run_gateway(_failover_config(a, b)) as gw,
    ):
        _, chunks = await _stream(gw, stream_options={"include_usage": True})
    assert _text(chunks) == "Hello there"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].total_tokens > 0
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert b.requests[0].json()["messages"][-1] == {"role": "assistant", "content": "Hello "}
    assert a.count == 1


async def test_failover_with_nowhere_to_go_ends_with_an_error_event() -> None:
    async with (
        FaultyUpstream("a", "reset_stream") as a,
        FaultyUpstream("b", "500") as b,
        run_gateway(_failover_config(a, b)) as gw,
    ):
        stream = await _client(gw).chat.completions.create(model="m", messages=HI, stream=True)
        got = ""
        with pytest.raises(openai.APIError):
            async for c in stream:
                if c.choices:
                    got += c.choices[0].delta.content or ""
    assert got == "Hello "
    assert (a.count, b.count) == (1, 1)


async def test_failover_chains_across_several_targets() -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial="One ") as a,
        FaultyUpstream("b", "reset_stream", partial="two ") as b,
        FaultyUpstream("c", text="three.") as c,
    ):
        cfg = _failover_config(a, b)
        cfg["providers"].append(
            {"name": "c", "type": "openai", "base_url": c.url + "/v1", "api_keys": ["sk-c"], "continuation": "prefill"}
        )
        cfg["models"][0]["targets"].append({"provider": "c", "model": "model-c"})
        async with run_gateway(cfg) as gw:
            _, chunks = await _stream(gw)
    assert _text(chunks) == "One two three."
    assert b.requests[0].json()["messages"][-1] == {"role": "assistant", "content": "One "}
    assert c.requests[0].json()["messages"][-1] == {"role": "assistant", "content": "One two "}
    last = next(x for x in chunks if x.choices and x.choices[0].finish_reason)
    marker = (last.model_extra or {})["x_fluxway"]
    assert [(f["from"], f["to"]) for f in marker["stream_failover"]] == [
        ("a/model-a", "b/model-b"),
        ("b/model-b", "c/model-c"),
    ]


async def test_failover_over_raw_sse_is_one_well_formed_stream() -> None:
    body = {"model": "m", "messages": HI, "stream": True}
    async with (
        FaultyUpstream("a", "reset_stream") as a,
        FaultyUpstream("b", text="world") as b,
        run_gateway(_failover_config(a, b)) as gw,
        aiohttp.ClientSession() as http,
        http.post(gw.url + "/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status == 200
        data = await resp.read()
    frames = [f for f in data.split(b"\n\n") if f]
    assert all(f.startswith(b"data: ") for f in frames)
    assert frames[-1] == b"data: [DONE]"
    events = [orjson.loads(f[6:]) for f in frames[:-1]]
    assert all("error" not in e for e in events)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == "Hello world"
    assert a.count == b.count == 1


async def test_the_continued_stream_keeps_its_identity() -> None:
    """The client sees one stream: the continuation keeps the first leg's id and sends no second role."""
    async with (
        FaultyUpstream("a", "reset_stream") as a,
        FaultyUpstream("b", text="world") as b,
        run_gateway(_failover_config(a, b)) as gw,
    ):
        _, chunks = await _stream(gw)
    assert _text(chunks) == "Hello world"
    assert {c.id for c in chunks} == {"chatcmpl-a"}
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]


async def test_failover_through_the_anthropic_ingress_is_one_message() -> None:
    async with (
        FaultyUpstream("a", "reset_stream") as a,
        FaultyUpstream("b", text="world") as b,
        run_gateway(_failover_config(a, b)) as gw,
    ):
        client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0)
        async with client.messages.stream(model="m", max_tokens=50, messages=HI) as stream:
            text = "".join([t async for t in stream.text_stream])
            message = await stream.get_final_message()
    assert text == "Hello world"
    assert [block.type for block in message.content] == ["text"]
    assert message.stop_reason == "end_turn"
    assert b.requests[0].json()["messages"][-1] == {"role": "assistant", "content": "Hello "}
    assert a.count == 1


# -- continuation (issue 10): the backup continues the partial answer instead of restarting it ----

PARTIAL = " ".join(STORY.split()[:50]) + " "
_BACKUP_TYPES: dict[str, dict[str, Any]] = {
    "mistral": {"type": "mistral", "api_keys": ["k"]},
    "vllm": {"type": "vllm"},
    "llamacpp": {"type": "llamacpp"},
    "anthropic": {"type": "anthropic", "api_keys": ["k"]},
    "openai": {"type": "openai", "api_keys": ["k"]},
}


def _continuation_config(a: FaultyUpstream, *backups: tuple[str, ContinuingUpstream]) -> dict[str, Any]:
    """Target ``a`` (breaks after PARTIAL), then each backup ``(name, upstream)`` of its style."""
    providers: list[dict[str, Any]] = [{"name": "a", "type": "openai", "base_url": a.url + "/v1", "api_keys": ["k"]}]
    targets = [{"provider": "a", "model": "model-a"}]
    for name, up in backups:
        base = up.url if up.style == "anthropic" else up.url + "/v1"
        providers.append({"name": name, "base_url": base, **_BACKUP_TYPES[up.style]})
        targets.append({"provider": name, "model": f"model-{name}"})
    return {
        "auth": {"master_key": "sk-m"},
        "usage": {"flush_interval_ms": 20},
        "providers": providers,
        "models": [{"name": "m", "strategy": "fallback", "targets": targets, "stream_failover": True,
                    "retry": {"attempts": 1}}],
    }


async def _continued(gw: Gateway, **kwargs: Any) -> tuple[str, list[Any]]:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0)
    stream = await client.chat.completions.create(model="m", messages=HI, stream=True, max_tokens=200, **kwargs)
    chunks = [c async for c in stream]
    return _text(chunks), chunks


def _marker(chunks: list[Any]) -> dict[str, Any]:
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    entries = (last.model_extra or {})["x_fluxway"]["stream_failover"]
    assert len(entries) == 1
    return dict(entries[0])


@pytest.mark.parametrize("style", ["mistral", "vllm", "anthropic", "llamacpp"])
async def test_the_backup_continues_the_partial_answer_with_the_remaining_budget(style: str) -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial=PARTIAL) as a,
        ContinuingUpstream(style) as b,
        run_gateway(_continuation_config(a, ("b", b))) as gw,
    ):
        text, chunks = await _continued(gw)
    # One story, continued where A broke off (a restart would repeat "word0 ...").
    assert text.startswith(PARTIAL) and STORY.startswith(text) and len(text) > len(PARTIAL)
    assert text.count("word0 ") == 1
    marker = _marker(chunks)
    kind = {"mistral": "prefix", "vllm": "continue_final_message", "anthropic": "prefill", "llamacpp": "completion"}
    assert (marker["to"], marker["continuation"]) == ("b/model-b", kind[style])
    sent = [r.json() for r in b.requests]
    last = sent[-1]
    if style == "mistral":
        assert last["messages"][-1] == {"role": "assistant", "content": PARTIAL, "prefix": True}
    elif style == "vllm":
        assert last["messages"][-1] == {"role": "assistant", "content": PARTIAL}
        assert last["continue_final_message"] is True and last["add_generation_prompt"] is False
    elif style == "anthropic":
        assert last["messages"][-1] == {"role": "assistant", "content": PARTIAL.rstrip()}  # no trailing space
    else:
        assert [r.path for r in b.requests] == ["/apply-template", "/v1/completions"]
        assert sent[0] == {"messages": HI}
        assert last["prompt"] == template(HI) + PARTIAL and last["stream"] is True
    # Only what is left of the 200 tokens asked for, as Fluxway counted the streamed part.
    assert 0 < marker["after_tokens"] < 200
    assert last["max_tokens"] == 200 - marker["after_tokens"]
    assert len(text[len(PARTIAL) :].split()) == last["max_tokens"]  # the mock's tokens are words
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason == "length"


async def test_usage_is_summed_across_the_legs() -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial=PARTIAL) as a,
        ContinuingUpstream("mistral", prompt_tokens=7) as b,
        run_gateway(_continuation_config(a, ("b", b))) as gw,
        aiohttp.ClientSession(headers={"authorization": "Bearer sk-m"}) as http,
    ):
        _, chunks = await _continued(gw, stream_options={"include_usage": True})
        rows: list[Any] = []
        for _ in range(100):  # the recorder flushes in the background
            async with http.get(gw.url + "/admin/usage?group_by=model") as resp:
                rows = (await resp.json())["data"]
            if rows:
                break
            await asyncio.sleep(0.05)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and chunks[-1].usage is usage[0]
    marker = _marker(chunks)
    continued = 200 - marker["after_tokens"]  # what B reported: one token per word, all of its budget
    assert usage[0].completion_tokens == marker["after_tokens"] + continued == 200
    assert usage[0].prompt_tokens > 7  # A's prompt (counted: it sent no usage) + B's 7
    assert (chunks[-1].model_extra or {})["x_fluxway"] == {"usage_estimated": True}
    assert [(r["model"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("m", usage[0].prompt_tokens, 200)
    ]


async def test_usage_is_summed_when_no_leg_reports_any() -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial=PARTIAL) as a,
        ContinuingUpstream("llamacpp") as b,
        run_gateway(_continuation_config(a, ("b", b))) as gw,
    ):
        _, chunks = await _continued(gw, stream_options={"include_usage": True})
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert (chunks[-1].model_extra or {})["x_fluxway"] == {"usage_estimated": True}
    assert chunks[-1].usage.completion_tokens > _marker(chunks)["after_tokens"]


async def test_a_backup_that_cannot_continue_is_skipped() -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial=PARTIAL) as a,
        ContinuingUpstream("openai") as c,
        ContinuingUpstream("mistral") as b,
        run_gateway(_continuation_config(a, ("c", c), ("b", b))) as gw,
    ):
        text, chunks = await _continued(gw)
    assert text.startswith(PARTIAL) and STORY.startswith(text)
    assert _marker(chunks)["to"] == "b/model-b"
    assert c.requests == []


async def test_no_backup_can_continue_ends_with_an_error_event() -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial=PARTIAL) as a,
        ContinuingUpstream("openai") as c,
        run_gateway(_continuation_config(a, ("c", c))) as gw,
    ):
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0)
        stream = await client.chat.completions.create(model="m", messages=HI, stream=True)
        got = ""
        with pytest.raises(openai.APIError, match="not continued: no other target of model 'm' can continue it"):
            async for chunk in stream:
                if chunk.choices:
                    got += chunk.choices[0].delta.content or ""
        aclient = anthropic.AsyncAnthropic(base_url=gw.url, api_key="sk-m", max_retries=0)
        with pytest.raises(anthropic.APIStatusError, match="c/model-c: continuation none"):
            async with aclient.messages.stream(model="m", max_tokens=500, messages=HI) as astream:
                async for _ in astream.text_stream:
                    pass
    assert got == PARTIAL  # never spliced with a restarted answer
    assert c.requests == []


async def test_no_budget_left_ends_the_stream_normally() -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial=PARTIAL) as a,
        ContinuingUpstream("mistral") as b,
        run_gateway(_continuation_config(a, ("b", b))) as gw,
    ):
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0)
        stream = await client.chat.completions.create(model="m", messages=HI, stream=True, max_tokens=10)
        chunks = [c async for c in stream]
    assert _text(chunks) == PARTIAL
    assert chunks[-1].choices[0].finish_reason == "length"
    assert _marker(chunks)["to"] is None
    assert b.requests == []


def test_check_warns_of_failover_targets_that_cannot_continue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = {
        "providers": [
            {"name": "mis", "type": "mistral", "api_keys": ["k"]},
            {"name": "oai", "type": "openai", "api_keys": ["k"]},
            {"name": "local", "type": "openai-compatible", "base_url": "http://127.0.0.1:1/v1",
             "continuation": "prefill"},
        ],
        "models": [
            {"name": "m", "targets": [{"provider": "mis", "model": "x"}, {"provider": "oai", "model": "y"}],
             "stream_failover": True},
            {"name": "ok", "targets": [{"provider": "mis", "model": "x"}, {"provider": "local", "model": "z"}],
             "stream_failover": True},
        ],
    }
    f = tmp_path / "fluxway.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert main(["check", "--config", str(f)]) == 0
    err = capsys.readouterr().err
    assert "warning: models[0] 'm': stream_failover is on but target(s) oai/y cannot continue" in err
    assert "'ok'" not in err
    bad = tmp_path / "bad.yaml"
    cfg["providers"][0]["continuation"] = "rewind"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["check", "--config", str(bad)]) == 1
    assert "providers[0].continuation" in capsys.readouterr().err
