"""fluxway_bench.configs: Generated files: the nginx config, wrk scripts and both gateways' configs.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fluxway.config import parse
from fluxway_bench import configs, fixtures, stats


def test_nginx_conf_serves_both_bodies_on_loopback(tmp_path: Path) -> None:
    conf = configs.nginx_conf(9123, tmp_path)
    assert "listen 127.0.0.1:9123" in conf
    assert "location = /v1/chat/completions" in conf
    assert "location = /sse/v1/chat/completions" in conf
    assert str(tmp_path / "nginx.pid") in conf
    # The SSE body's blank lines survive as nginx escapes inside one quoted string.
    assert "\\n\\ndata: [DONE]\\n\\n'" in conf


def test_nginx_string_escapes_quotes_and_refuses_variables() -> None:
    assert configs._nginx_string("it's \\ ok\n") == "'it\\'s \\\\ ok\\n'"
    with pytest.raises(ValueError):
        configs._nginx_string("costs $5")


def test_lua_long_string_survives_closing_brackets() -> None:
    assert configs._lua_long_string("plain") == "[[plain]]"
    assert configs._lua_long_string("a]]b") == "[=[a]]b]=]"
    assert configs._lua_long_string("a]]b]=]c") == "[==[a]]b]=]c]==]"


def test_wrk_script_posts_the_body_with_headers() -> None:
    script = configs.wrk_script(fixtures.chat_request("bench"), {"authorization": "Bearer k"})
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = [[{"model":"bench",' in script
    # A space keeps `[ [[...]] ]` from reading as a long-string opener `[[[`.
    assert "wrk.headers[ [[authorization]] ] = [[Bearer k]]" in script


def test_wrk_script_summary_line_is_what_parse_wrk_reads() -> None:
    script = configs.wrk_script(fixtures.chat_request(), {})
    fmt = re.search(r"string\.format\('(.*?)',\n", script, re.S)
    assert fmt is not None
    # Lua's string.format is C printf; Python's % operator formats the same conversions.
    line = fmt.group(1).replace("\\n", "\n") % (500, 2_000_000, 9000, 0, 0, 0, 4, 1, 250, 300, 900, 1500, 2000, 260.5)
    r = stats.parse_wrk("noise\n" + line)
    assert r.requests == 500
    assert r.rps == 250.0
    assert (r.p50_ms, r.p99_ms, r.max_ms) == (0.25, 0.9, 2.0)
    assert (r.non2xx, r.socket_errors) == (4, 1)


def test_fluxway_config_is_valid_for_the_gateway(tmp_path: Path) -> None:
    ups = {"mock": "http://127.0.0.1:1/v1", "mock-sse": "http://127.0.0.1:1/sse/v1"}
    cfg = parse(configs.fluxway_config(ups, 8401, f"sqlite:///{tmp_path}/x.db"), env={})
    assert cfg.auth.master_key is None
    bench = cfg.model(fixtures.BENCH_MODEL)
    stream = cfg.model(fixtures.STREAM_MODEL)
    assert bench is not None and [t.provider for t in bench.targets] == ["mock"]
    assert stream is not None and [t.provider for t in stream.targets] == ["mock-sse"]
    prov = cfg.provider("mock-sse")
    assert prov is not None and prov.base_url == "http://127.0.0.1:1/sse/v1"


def test_fluxway_failover_config_with_governance_and_extra(tmp_path: Path) -> None:
    ups = {"mock-a": "http://127.0.0.1:1/v1", "mock-b": "http://127.0.0.1:2/v1"}
    raw = configs.fluxway_config(ups, 8401, "sqlite:///x.db", governance=True, model_extra={"hedge": {"after_ms": 50}})
    cfg = parse(raw, env={})
    assert cfg.auth.master_key == fixtures.MASTER_KEY
    model = cfg.model(fixtures.BENCH_MODEL)
    assert model is not None
    assert [t.provider for t in model.targets] == ["mock-a", "mock-b"]
    assert model.retry.attempts == 2 and model.retry.backoff_ms == 0
    assert model.hedge is not None and model.hedge.after_ms == 50
    assert cfg.model(fixtures.STREAM_MODEL) is None


def test_config_extra_merges_nested_sections_into_a_valid_config(tmp_path: Path) -> None:
    ups = {"mock": "http://127.0.0.1:1/v1"}
    base = configs.fluxway_config(ups, 8401, f"sqlite:///{tmp_path}/x.db")
    extra = {"observability": {"logs": {"bodies": "off"}, "otlp": {"endpoint": "http://127.0.0.1:4318"}},
             "server": {"workers": 2}}
    cfg = parse(configs.merge_config(base, extra), env={})
    assert cfg.observability.logs.bodies == "off" and cfg.observability.otlp.endpoint == "http://127.0.0.1:4318"
    assert cfg.server.workers == 2 and cfg.server.port == 8401  # merged, not replaced
    assert base["server"]["workers"] == 1  # the base is left as it was


def test_failover_timeouts_reach_both_gateways() -> None:
    ups = {"mock-a": "http://127.0.0.1:1/v1", "mock-b": "http://127.0.0.1:2/v1"}
    cfg = parse(configs.fluxway_config(ups, 8401, "sqlite:///x.db", first_token_s=2.0), env={})
    prov = cfg.provider("mock-a")
    assert prov is not None and prov.timeout.first_token == 2.0 and prov.timeout.connect == 2.0
    lite = configs.litellm_config(ups, timeout_s=2.0)
    assert lite["router_settings"]["timeout"] == 2.0
    assert all(m["litellm_params"]["timeout"] == 2.0 for m in lite["model_list"])
    assert "timeout" not in configs.litellm_config(ups)["router_settings"]


def test_litellm_config_mirrors_the_upstreams() -> None:
    cfg = configs.litellm_config({"mock": "http://u/v1", "mock-sse": "http://u/sse/v1"}, retries=3)
    names = [(m["model_name"], m["litellm_params"]["api_base"]) for m in cfg["model_list"]]
    assert names == [(fixtures.BENCH_MODEL, "http://u/v1"), (fixtures.STREAM_MODEL, "http://u/sse/v1")]
    assert cfg["router_settings"]["num_retries"] == 3
    assert cfg["general_settings"]["master_key"] == fixtures.MASTER_KEY
