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
