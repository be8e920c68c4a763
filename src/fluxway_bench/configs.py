"""Generated files: the nginx mock's config, wrk scripts, and the gateways' configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fluxway_bench.fixtures import (
    BENCH_MODEL,
    MARKER,
    MASTER_KEY,
    STREAM_MODEL,
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    chat_completion_body,
    sse_body,
)


def _nginx_string(text: str) -> str:
    """Quote ``text`` for an nginx config (single quotes; ``$`` would start a variable)."""
    if "$" in text:
        raise ValueError("nginx return bodies cannot contain '$'")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def nginx_conf(port: int, workdir: Path) -> str:
    """A self-contained nginx config: one worker on loopback, answers from memory, no logs."""
    temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path {temp["client_body"]};
  proxy_temp_path {temp["proxy"]};
  fastcgi_temp_path {temp["fastcgi"]};
  uwsgi_temp_path {temp["uwsgi"]};
  scgi_temp_path {temp["scgi"]};
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /v1/chat/completions {{
      default_type application/json;
      return 200 {_nginx_string(chat_completion_body().decode())};
    }}
    location = /sse/v1/chat/completions {{
      default_type text/event-stream;
      add_header cache-control no-cache;
      return 200 {_nginx_string(sse_body().decode())};
    }}
    location = /v1/models {{
      default_type application/json;
      return 200 '{{"object":"list","data":[{{"id":"{UPSTREAM_MODEL}","object":"model"}}]}}';
    }}
    location / {{ return 404; }}
  }}
}}
"""


def _lua_long_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def wrk_script(body: dict[str, Any], headers: dict[str, str]) -> str:
    """A wrk Lua script posting ``body`` and printing one machine-readable summary line."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {_lua_long_string(json.dumps(body, separators=(',', ':')))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    for name, value in headers.items():
        lines.append(f"wrk.headers[ {_lua_long_string(name)} ] = {_lua_long_string(value)}")
    lines.append(
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        f"  io.write(string.format('{MARKER}"
        '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,'
        '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,'
        '"max_us":%d,"mean_us":%.2f}\\n\',\n'
        "    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,\n"
        "    e.status, e.timeout, latency:percentile(50), latency:percentile(90),\n"
        "    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))\n"
        "end"
    )
    return "\n".join(lines) + "\n"


def fluxway_config(
    upstreams: dict[str, str],
    port: int,
    store_url: str,
    *,
    governance: bool = False,
    strategy: str = "weighted",
    model_extra: dict[str, Any] | None = None,
    first_token_s: float | None = None,
) -> dict[str, Any]:
    """A Fluxway config: one ``openai`` provider per upstream base URL (``name -> base``).

    Public model ``bench`` routes to every upstream whose name does not end in ``-sse``;
    ``bench-stream`` to the ``-sse`` ones (the nginx mock streams on a separate path).
    """
    providers: list[dict[str, Any]] = [
        {"name": name, "type": "openai", "base_url": base, "api_keys": [UPSTREAM_KEY]}
        for name, base in upstreams.items()
    ]
    if first_token_s is not None:
        for prov in providers:
            prov["timeout"] = {"connect": first_token_s, "first_token": first_token_s, "total": 60}
    plain = [n for n in upstreams if not n.endswith("-sse")]
    sse = [n for n in upstreams if n.endswith("-sse")]
    models: list[dict[str, Any]] = []
    if plain:
        model: dict[str, Any] = {
            "name": BENCH_MODEL,
            "strategy": strategy,
            "targets": [{"provider": n, "model": UPSTREAM_MODEL} for n in plain],
        }
        if len(plain) > 1:
            model["retry"] = {"attempts": 2, "backoff_ms": 0}
        model.update(model_extra or {})
        models.append(model)
    if sse:
        models.append({"name": STREAM_MODEL, "targets": [{"provider": n, "model": UPSTREAM_MODEL} for n in sse]})
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "workers": 1},
        "store": {"url": store_url},
        "providers": providers,
        "models": models,
    }
    if governance:
        cfg["auth"] = {"master_key": MASTER_KEY}
    return cfg


def merge_config(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: nested objects merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def litellm_config(upstreams: dict[str, str], *, retries: int = 2, timeout_s: float | None = None) -> dict[str, Any]:
    """The LiteLLM proxy config equivalent to :func:`fluxway_config` (same models, same upstreams)."""
    model_list = []
    for name, base in upstreams.items():
        params: dict[str, Any] = {"model": f"openai/{UPSTREAM_MODEL}", "api_base": base, "api_key": UPSTREAM_KEY}
        if timeout_s is not None:
            params["timeout"] = timeout_s
            params["stream_timeout"] = timeout_s
        model_list.append(
            {"model_name": STREAM_MODEL if name.endswith("-sse") else BENCH_MODEL, "litellm_params": params}
        )
    router: dict[str, Any] = {"num_retries": retries, "retry_after": 0, "routing_strategy": "simple-shuffle"}
    if timeout_s is not None:
        router["timeout"] = timeout_s
    return {
        "model_list": model_list,
        "router_settings": router,
        "litellm_settings": {"num_retries": retries, "telemetry": False},
        # LiteLLM refuses to start without a master key; checking it costs no store lookup.
        "general_settings": {"master_key": MASTER_KEY},
    }
