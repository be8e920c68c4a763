"""A private PostgreSQL server in a temporary directory, for tests that stop and restart the database.

The shared test server (scripts/services.sh) is never stopped: other tests and sessions use it.
``PrivatePostgres`` runs initdb once, then ``start()`` / ``stop()`` on a free loopback port. As root,
PostgreSQL's tools run as the ``postgres`` user (it refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[4].split(".")])
    for d in reversed(dirs):
        if os.access(f"{d}/initdb", os.X_OK):
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
        self.bin = bindir
        self.base = Path(tempfile.mkdtemp(prefix="fluxway-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._root = os.getuid() == 0
        os.chmod(self.base, 0o755)
        self.data.mkdir(mode=0o700)
        if self._root:
            shutil.chown(self.data, "postgres")
            shutil.chown(self.base, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.base / "pg.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", "start", "-o", opts)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
