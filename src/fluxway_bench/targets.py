"""The servers under test (direct, passthrough, fluxway, litellm) and the upstream mocks they face."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from fluxway_bench.configs import fluxway_config, litellm_config, merge_config, nginx_conf
from fluxway_bench.fixtures import BENCH_MODEL, MASTER_KEY, STREAM_MODEL
from fluxway_bench.harness import LOAD_CORE, SERVER_CORE, Endpoint, Harness, first_line
from fluxway_bench.processes import Service, ensure_tool, free_port, http_request, wait_ready


def start_nginx(h: Harness) -> None:
    nginx = ensure_tool("nginx", "nginx", h.notes)
    h.wrk = ensure_tool("wrk", "wrk", h.notes)
    h.nginx_port = free_port()
    conf = h.work / "nginx.conf"
    conf.write_text(nginx_conf(h.nginx_port, h.work))
    svc = h.service("nginx", [nginx, "-c", str(conf), "-p", str(h.work)], h.core(LOAD_CORE))
    wait_ready(svc, f"http://127.0.0.1:{h.nginx_port}/v1/models", 15)


def start_fault_mock(h: Harness, name: str, *extra: str) -> tuple[Service, str]:
    port = free_port()
    cmd = [
        sys.executable,
        str(h.s.bench_dir / "mock_upstream.py"),
        "--port",
        str(port),
        "--delay-ms",
        str(h.s.upstream_delay_ms),
        *extra,
    ]
    svc = h.service(name, cmd, h.core(LOAD_CORE))
    url = f"http://127.0.0.1:{port}"
    wait_ready(svc, url + "/stats", 20)
    return svc, url


# -- servers under test ------------------------------------------------------------------------


def start_target(
    h: Harness,
    target: str,
    upstreams: dict[str, str],
    model_extra: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> tuple[Service | None, Endpoint]:
    """Start ``target`` in front of ``upstreams``; one retry (a free port can be taken meanwhile)."""
    try:
        return _start_target(h, target, upstreams, model_extra, timeout_s)
    except RuntimeError as exc:
        h.log(f"{target} did not start ({first_line(exc)}); retrying once:\n{exc}")
        return _start_target(h, target, upstreams, model_extra, timeout_s)


def _start_target(
    h: Harness,
    target: str,
    upstreams: dict[str, str],
    model_extra: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> tuple[Service | None, Endpoint]:
    """Start ``target`` in front of ``upstreams`` (``name -> base URL``; ``*-sse`` for streams)."""
    if target == "direct":
        base = next(iter(upstreams.values()))
        sse = upstreams.get("mock-sse", base)
        return None, Endpoint(f"{base}/chat/completions", f"{sse}/chat/completions")
    port = free_port()
    local = f"http://127.0.0.1:{port}"
    if target == "passthrough":
        if h.s.passthrough_server == "granian" and importlib.util.find_spec("granian") is None:
            h.notes.append("installed granian with pip")
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "granian"], check=False)
        origin = next(iter(upstreams.values())).removesuffix("/v1")
        app = ["env", f"PASSTHROUGH_UPSTREAM={origin}"]
        if h.s.passthrough_server == "uvicorn":
            cmd = [
                *app,
                sys.executable,
                "-m",
                "uvicorn",
                "passthrough:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--backlog",
                "4096",
            ]
        else:
            cmd = [
                *app,
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "asgi",
                "--loop",
                "uvloop",
                "--workers",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-ws",
                "--log-level",
                "warning",
                "--backlog",
                "4096",
                "passthrough:app",
            ]
        svc = h.service("passthrough", cmd, h.core(SERVER_CORE), cwd=h.s.bench_dir)
        ready(h, svc, local + "/", 30)
        return svc, Endpoint(f"{local}/v1/chat/completions", f"{local}/sse/v1/chat/completions")
    if target == "fluxway":
        cfg = fluxway_config(
            upstreams,
            port,
            f"sqlite:///{h.work / f'fluxway-{port}.db'}",
            governance=h.s.governance,
            model_extra=h.s.model_extra if model_extra is None else model_extra,
            first_token_s=timeout_s,
        )
        cfg = merge_config(cfg, h.s.config_extra)
        path = h.work / "fluxway.yaml"
        path.write_text(json.dumps(cfg, indent=2))
        cmd = [sys.executable, "-m", "fluxway", "serve", "--config", str(path), "--port", str(port), "--workers", "1"]
        svc = h.service("fluxway", cmd, h.core(SERVER_CORE))
        ready(h, svc, local + "/health/live", 60)
        headers = fluxway_auth(h, local) if h.s.governance else {}
        return svc, Endpoint(f"{local}/v1/chat/completions", f"{local}/v1/chat/completions", headers)
    if target == "litellm":
        if h.s.litellm is None:
            raise RuntimeError("LiteLLM is not installed (bench/install_litellm.sh)")
        path = h.work / "litellm.yaml"
        path.write_text(json.dumps(litellm_config(upstreams, timeout_s=timeout_s), indent=2))
        cmd = [
            "env",
            "LITELLM_LOCAL_MODEL_COST_MAP=True",
            "LITELLM_LOG=ERROR",
            "LITELLM_TELEMETRY=False",
            str(h.s.litellm),
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ]
        svc = h.service("litellm", cmd, h.core(SERVER_CORE))
        ready(h, svc, local + "/health/liveliness", 180)
        auth = {"authorization": f"Bearer {MASTER_KEY}"}
        return svc, Endpoint(f"{local}/v1/chat/completions", f"{local}/v1/chat/completions", auth)
    raise ValueError(f"unknown target {target!r}")


def ready(h: Harness, svc: Service, url: str, timeout: float) -> None:
    try:
        wait_ready(svc, url, timeout)
    except RuntimeError:
        svc.stop()
        raise


def fluxway_auth(h: Harness, base: str) -> dict[str, str]:
    """Governance on: create a virtual key with the master key and load with it."""
    body = json.dumps({"name": "bench", "models": [BENCH_MODEL, STREAM_MODEL]}).encode()
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    try:
        status, data = http_request(base + "/admin/keys", body, headers)
        key = json.loads(data).get("key") if status in (200, 201) else None
    except (OSError, ValueError, urllib.error.URLError):
        status, key = 0, None
    if isinstance(key, str) and key:
        h.notes.append("governance: load sent with a virtual key created through POST /admin/keys")
        return {"authorization": f"Bearer {key}"}
    h.notes.append(f"governance: POST /admin/keys answered {status}; load sent with the master key instead")
    return {"authorization": f"Bearer {MASTER_KEY}"}
