"""The README's quick start, run as written (issue 10): the gateway on the sample config, the mock
upstream standing in for Ollama, and the README's curl. Only the gateway's port changes (a free one),
and the config is a byte-identical copy in a temporary folder so its SQLite file lands there."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MOCK_PORT = 11434  # where the sample config's ollama provider looks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _bash_blocks(markdown: str) -> list[list[str]]:
    """Each ```bash block of the README as its logical lines (backslash continuations joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    return [block.replace("\\\n", " ").strip().splitlines() for block in blocks]


def _strip_comment(line: str) -> str:
    return line.split("  #", 1)[0].strip()


def _wait_http(url: str, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early: {proc.communicate()[1]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {seconds}s") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[tuple[int, list[str], subprocess.Popen[str]]]:
    if _port_taken(MOCK_PORT):
        pytest.skip(f"port {MOCK_PORT} is taken (a real Ollama?): the quick start needs it for the mock")
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    serve = blocks[0][0].split("&&", 1)[1].strip()
    assert serve == "fluxway serve --config examples/fluxway.yaml", serve
    try_it = blocks[1]
    mock_cmd, curl_cmd = _strip_comment(try_it[0]), try_it[1]
    assert mock_cmd.endswith("&"), mock_cmd
    assert curl_cmd.startswith("curl "), curl_cmd

    cfg = tmp_path / "fluxway.yaml"
    cfg.write_bytes((ROOT / "examples" / "fluxway.yaml").read_bytes())
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "FLUXWAY_MASTER_KEY", "REDIS_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "fluxway", *shlex.split(serve)[1:-1], str(cfg), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    mock = subprocess.Popen(
        [sys.executable if arg == "python" else arg for arg in shlex.split(mock_cmd[:-1])],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{MOCK_PORT}/", mock)
        _wait_http(f"http://127.0.0.1:{port}/health/live", gateway)
        yield port, [curl_cmd], gateway
    finally:
        _stop(mock)
        if gateway.poll() is None:
            _stop(gateway)


def _post(port: int, path: str, body: dict[str, object]) -> tuple[int, dict[str, str], dict[str, object]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def test_readme_quickstart_answers_and_a_missing_key_is_named(
    quickstart: tuple[int, list[str], subprocess.Popen[str]],
) -> None:
    port, (curl_cmd,), gateway = quickstart
    out = subprocess.run(
        ["bash", "-c", curl_cmd.replace("localhost:8400", f"localhost:{port}")],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    answer = json.loads(out)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"]

    # `smart` tries OpenAI first: with no key it is not called, and the fallback answers.
    status, headers, body = _post(port, "/v1/chat/completions", {
        "model": "smart", "messages": [{"role": "user", "content": "Hello"}],
    })
    assert status == 200, body
    assert headers["x-fluxway-provider"] == "ollama"
    assert headers["x-fluxway-attempts"] == "2"

    # `embed` has only OpenAI: the error says which variable to set (no placeholder key was sent).
    status, _, body = _post(port, "/v1/embeddings", {"model": "embed", "input": "hi"})
    assert status >= 400
    error = body["error"]
    assert isinstance(error, dict)
    assert "OPENAI_API_KEY is not set" in error["message"]

    err = _stop(gateway)
    assert "OPENAI_API_KEY is not set" in err  # the start-up warning
    assert "Traceback" not in err
