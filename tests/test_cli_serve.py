"""``fluxway serve`` as a newcomer runs it (issue 10): with --workers N the application's log lines
still appear, and a normal start prints no migration chatter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.support.ports import free_port


def test_workers_keep_application_logs_and_alembic_stays_quiet(tmp_path: Path) -> None:
    cfg = tmp_path / "fluxway.yaml"
    cfg.write_text(yaml.safe_dump({
        "providers": [{"name": "up", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_keys": ["k"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxway", "serve", "-c", str(cfg), "--port", str(port), "--workers", "2"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        body = json.dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).encode()
        for _ in range(4):  # 404s, logged by the pipeline in whichever worker takes them
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                         headers={"content-type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=5)
            except urllib.error.HTTPError as err:
                assert err.code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        _, err_text = proc.communicate(timeout=30)
    assert "fluxway.request" in err_text and "rejected: 404" in err_text, err_text
    assert "alembic" not in err_text.lower() and "Context impl" not in err_text, err_text



def test_json_logs_survive_workers_and_carry_the_request_fields(tmp_path: Path) -> None:
    from tests.support.background import in_background
    from tests.support.openai_bodies import completion
    from tests.support.replies import replying
    from tests.support.upstream import FakeUpstream

    with in_background(FakeUpstream) as up:
        up.route("POST", "/v1/chat/completions", replying(completion("hello")))
        cfg = tmp_path / "fluxway.yaml"
        cfg.write_text(yaml.safe_dump({
            "observability": {"logs": {"format": "json", "requests": True, "bodies": "redacted"}},
            "usage": {"spool_dir": str(tmp_path / "spool")},
            "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
            "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
            "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
        }))
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "fluxway", "serve", "-c", str(cfg), "--port", str(port), "--workers", "2"],
            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        trace = "0af7651916cd43dd8448eb211c80319c"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                        break
                except (urllib.error.URLError, ConnectionError):
                    assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.2)
            sent = []
            for i in range(6):
                body = json.dumps({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}).encode()
                rid = f"req-json-{i}"
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                    headers={"content-type": "application/json", "x-request-id": rid,
                             "traceparent": f"00-{trace}-b7ad6b7169203331-01"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    assert resp.status == 200
                sent.append(rid)
        finally:
            proc.send_signal(signal.SIGINT)
            _, err_text = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err_text.splitlines() if line.strip()]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines), lines
    calls = {line["request_id"]: line for line in lines if line["logger"] == "fluxway.request"}
    assert set(sent) <= set(calls), err_text
    one = calls[sent[0]]
    assert one["trace_id"] == trace and one["status"] == 200 and one["model"] == "smart"
    assert one["provider"] == "up" and one["key_id"] == "anonymous" and one["level"] == "info"
    assert one["latency_ms"] >= one["upstream_ms"] > 0 and one["overhead_ms"] >= 0
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # the server's own lines too
