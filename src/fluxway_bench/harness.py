"""One run's harness: the settings, the services it started, notes and the other-work figures."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from fluxway_bench.fixtures import BENCH_MODEL, STREAM_MODEL
from fluxway_bench.processes import CpuMeter, Service
from fluxway_bench.settings import Settings

LOAD_CORE = 1
SERVER_CORE = 0


@dataclass
class Endpoint:
    """Where the load goes for one target: URL of the JSON and streaming routes + auth headers."""

    json_url: str
    stream_url: str
    headers: dict[str, str] = field(default_factory=dict)
    json_model: str = BENCH_MODEL
    stream_model: str = STREAM_MODEL


class Harness:
    def __init__(self, settings: Settings, workdir: Path, stack: ExitStack) -> None:
        self.s = settings
        self.work = workdir
        self.stack = stack
        self.notes: list[str] = []
        self.nginx_port = 0
        self.wrk = ""
        self.services: list[Service] = []
        # Share of the machine other processes used during each measured run (percent of all cores).
        self.other_load: list[float] = []

    def core(self, which: int) -> int | None:
        return which if self.s.pin else None

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    def service(self, name: str, cmd: Sequence[str], core: int | None, cwd: Path | None = None) -> Service:
        svc = Service(name, cmd, self.work / f"{name}.log", core=core, cwd=cwd).start()
        self.stack.callback(svc.stop)
        self.services.append(svc)
        return svc

    def meter(self) -> CpuMeter:
        return CpuMeter([svc.proc.pid for svc in self.services if svc.proc is not None and svc.alive()])

    def wait_quiet(self) -> None:
        """Before a measured run: wait (up to ``--wait-quiet`` s) until other work uses < 25% of the machine."""
        deadline = time.monotonic() + self.s.wait_quiet
        busy = 0.0
        while time.monotonic() < deadline:
            meter = self.meter()
            time.sleep(1.0)
            busy = meter.others_pct()
            if busy < 25:
                return
        if self.s.wait_quiet > 0:
            self.log(f"machine still busy with other work ({busy:.0f}% of all cores); measuring anyway")

    # -- upstreams ------------------------------------------------------------------------------
    @property
    def nginx(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def nginx_upstreams(self) -> dict[str, str]:
        return {"mock": f"{self.nginx}/v1", "mock-sse": f"{self.nginx}/sse/v1"}

    def other_since(self, mark: int) -> float | None:
        """Mean share of the machine other work used over the measured runs since ``mark``."""
        runs = self.other_load[mark:]
        return sum(runs) / len(runs) if runs else None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
