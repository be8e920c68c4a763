"""Real MCP servers for the MCP tests: the SDK's MCPServer of tests/support/mcp_server.py over
streamable HTTP (a subprocess on a free port, killable and restartable) and its stdio config."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-upstream-db-password"


class HttpMcpServer:
    def __init__(self, port: int, name: str = "docs") -> None:
        self.port = port
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        env = {**os.environ, "MCP_TEST_SECRET": SECRET, "MCP_TEST_NAME": self.name,
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.mcp_server", "http", str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the MCP test server exited at start")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the MCP test server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def stdio_server(name: str = "files", **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "transport": "stdio", "command": [sys.executable, "-m", "tests.support.mcp_server", "stdio"],
        "env": {"PYTHONPATH": str(ROOT), "MCP_TEST_SECRET": SECRET, "MCP_TEST_NAME": name}, "cwd": str(ROOT),
        **extra,
    }
