"""The machine and the versions a report names."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gb": mem_gb, "kernel": platform.release()}


def _run_text(cmd: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout + proc.stderr).strip()


def versions(litellm_python: Path | None, repo: Path | None) -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {"python": platform.python_version()}
    for dist in ("fluxway", "aiohttp", "orjson", "granian", "uvicorn", "uvloop", "httptools", "starlette"):
        with suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    nginx = _run_text(["nginx", "-v"])
    if nginx:
        out["nginx"] = nginx.rsplit("/", 1)[-1]
    wrk = _run_text(["wrk", "-v"]).splitlines()
    if wrk:
        out["wrk"] = wrk[0].split(" [")[0].removeprefix("wrk ")
    if litellm_python is not None:
        ver = _run_text([str(litellm_python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"])
        if ver:
            out["litellm"] = ver.splitlines()[-1]
    if repo is not None:
        commit = _run_text(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
        if commit and " " not in commit:
            out["fluxway_commit"] = commit
    return out
