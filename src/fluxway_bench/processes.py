"""Processes: services started in their own session, ports, RSS, the CPU meter, readiness."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cmd: Sequence[str], core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(core), *cmd]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_busy_ticks() -> int:
    """Busy CPU time of the whole machine (all cores) in clock ticks, steal included."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0
    vals = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(vals) - vals[3] - vals[4]


def _proc_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """How much of the machine *other* work used while we measured: busy time minus our processes'."""

    def __init__(self, sessions: Sequence[int]) -> None:
        self.sessions = list(sessions)
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.ncpu = os.cpu_count() or 1
        self.t0 = time.monotonic()
        self.busy0 = _cpu_busy_ticks()
        self.ours0 = self._ours()

    def _ours(self) -> float:
        import resource

        ticks = sum(_proc_ticks(p) for sid in self.sessions for p in _session_pids(sid))
        cpu = 0.0
        for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF):
            usage = resource.getrusage(who)
            cpu += usage.ru_utime + usage.ru_stime
        return ticks + cpu * self.hz

    def others_pct(self) -> float:
        """Percent of all cores used by other processes since construction (0-100)."""
        elapsed = time.monotonic() - self.t0
        if elapsed <= 0:
            return 0.0
        others = (_cpu_busy_ticks() - self.busy0) - (self._ours() - self.ours0)
        return max(0.0, min(100.0, 100.0 * others / (elapsed * self.hz * self.ncpu)))


class Service:
    """A server started in its own session (so it and its workers stop together), output to a log."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, *, core: int | None, cwd: Path | None = None):
        self.name = name
        self.cmd = pinned(cmd, core)
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        """RSS of the largest process of the server (its worker), in MB."""
        if self.proc is None:
            return 0.0
        return max((_rss_mb(p) for p in _session_pids(self.proc.pid)), default=0.0)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Workers that outlived their parent are in the same session.
        for pid in _session_pids(self.proc.pid):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None


def http_request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def failure_line(log: str) -> str:
    """The line of a server's log that best says why it died: its last exception, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Exit")) and " " not in head:
            return ln
    return lines[-1] if lines else "(no output)"


def wait_ready(service: Service, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            tail = service.log_tail(40)
            raise RuntimeError(f"{service.name} exited during start-up: {failure_line(tail)}\n{tail}")
        try:
            status, _ = http_request(url, timeout=2)
            if status < 500:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} not ready after {timeout:.0f}s ({url}):\n{service.log_tail()}")


def ensure_tool(name: str, package: str, log: list[str]) -> str:
    """The path of ``name``; installs the Debian ``package`` with apt-get when missing (root only)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log.append(f"installed {package} with apt-get")
        for step in (
            ["apt-get", "install", "-y", "-q", package],
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", package],
        ):
            done = subprocess.run(step, check=False, capture_output=True)
            if step[1] == "install" and done.returncode == 0:
                break
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if found:
            return found
    raise RuntimeError(f"{name} is not installed (apt-get install -y {package})")
