"""The ``fluxway bench`` command line and the settings of one run."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALL_TARGETS = ("direct", "passthrough", "fluxway", "litellm")
ALL_SCENARIOS = ("json", "stream", "failover")
FAILOVER_CASES = ("fail", "slow", "reset", "hang")
# Failover scenario: both gateways give up on a silent upstream after this long (the "hang" case).
FAILOVER_FIRST_TOKEN_S = 2.0


@dataclass
class Settings:
    scenarios: tuple[str, ...]
    targets: tuple[str, ...]
    duration: int
    warmup: int
    connections: int
    repeat: int
    governance: bool
    pin: bool
    passthrough_server: str
    rate: float
    failover_duration: int
    fail_rate: float
    fail_status: int
    slow_rate: float
    slow_ms: float
    upstream_delay_ms: float
    model_extra: dict[str, Any]
    config_extra: dict[str, Any]
    hedge_after_ms: float | None
    high_rate: float
    wait_quiet: float
    cases: tuple[str, ...]
    bench_dir: Path
    litellm: Path | None
    out_dir: Path | None
    print_json: bool
    keep_logs: bool


def _find_bench_dir() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "bench" / "loadgen.py").exists():
            return base / "bench"
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fluxway bench",
        description="Load-test Fluxway beside direct, a minimal Python pass-through and LiteLLM, against a local "
        "mock upstream (nginx; an aiohttp fault mock for failover). Prints markdown tables and writes them to "
        "bench/results/<date>-<scenario>.md (+ .json).",
        epilog="Examples: `fluxway bench` (json + stream, 10 s runs); `fluxway bench --smoke` (1 s, no files); "
        "`fluxway bench failover --targets fluxway,litellm`; `fluxway bench json --governance`.",
    )
    ap.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="json, stream, failover, or all (default: json stream)"
    )
    ap.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help="comma list of direct,passthrough,fluxway,litellm (litellm is skipped when not installed)",
    )
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before measuring (default 3; 0: none)")
    ap.add_argument("--connections", "-c", type=int, default=32, help="connections of the throughput run (default 32)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per row, the better one kept (default 2)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="quick check that everything runs: 1 s runs, no warm-up, 1 repeat, nothing written",
    )
    ap.add_argument("--governance", action="store_true", help="Fluxway with a master key and a virtual key")
    ap.add_argument(
        "--passthrough-server",
        choices=("granian", "uvicorn"),
        default="uvicorn",
        help="server of the minimal pass-through (default uvicorn+httptools: faster here)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="failover: open-loop requests per second for every target (default 10: below LiteLLM's "
        "saturation on 2 shared cores, so its latency is not queueing)",
    )
    ap.add_argument(
        "--high-rate",
        type=float,
        default=100.0,
        help="failover: a second rate measured for Fluxway only (default 100; 0: none)",
    )
    ap.add_argument("--failover-duration", type=int, default=20, help="failover: seconds of load per run (default 20)")
    ap.add_argument(
        "--cases",
        default="fail,slow",
        help="failover: comma list of fail (A answers --fail-status), slow (A's first byte is slow), "
        "reset (A resets the connection mid-body), hang (A never answers; gateways time out after "
        f"{FAILOVER_FIRST_TOKEN_S:g} s) (default fail,slow)",
    )
    ap.add_argument(
        "--fail-rate",
        type=float,
        default=0.5,
        help="failover: fraction of requests target A fails, resets or hangs (default 0.5)",
    )
    ap.add_argument(
        "--fail-status",
        type=int,
        default=500,
        choices=(500, 502, 503, 429),
        help="failover: status target A fails with (default 500)",
    )
    ap.add_argument("--slow-rate", type=float, default=0.1, help="failover: fraction A's first byte is slow (0.1)")
    ap.add_argument("--slow-ms", type=float, default=1000.0, help="failover: delay of a slow first byte (1000 ms)")
    ap.add_argument(
        "--upstream-delay-ms",
        type=float,
        default=0.0,
        help="failover: fixed delay of every fault-mock answer (default 0)",
    )
    ap.add_argument(
        "--model-extra",
        default="{}",
        help="failover/json: JSON merged into Fluxway's `bench` model config, e.g. a hedging setting",
    )
    ap.add_argument(
        "--config-extra",
        default="{}",
        help="JSON merged into Fluxway's whole config (nested objects merged), e.g. "
        '\'{"observability": {"logs": {"bodies": "off"}}}\'',
    )
    ap.add_argument(
        "--hedge-after-ms",
        type=float,
        default=100.0,
        help="failover: also run Fluxway with hedging after this delay in the slow case "
        "(0: hedge at the observed p95; negative: no hedged row; default 100)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=30.0,
        help="before each measured run, wait up to this many seconds for other work on the machine "
        "to drop below 25%% of the cores (default 30; 0: do not wait)",
    )
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    ap.add_argument("--out", default=None, help="results directory (default bench/results)")
    ap.add_argument("--no-save", action="store_true", help="print only; write no results files")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of markdown")
    ap.add_argument("--bench-dir", default=None, help="the repository's bench/ directory (found automatically)")
    ap.add_argument("--litellm", default=None, help="litellm executable (default bench/.venv-litellm/bin/litellm)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary directory with the servers' logs")
    return ap


def settings_from_args(args: argparse.Namespace) -> Settings:
    scenarios = list(args.scenarios) or ["json", "stream"]
    if "all" in scenarios:
        scenarios = list(ALL_SCENARIOS)
    for sc in scenarios:
        if sc not in ALL_SCENARIOS:
            raise SystemExit(f"fluxway bench: unknown scenario {sc!r} (json, stream, failover, all)")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in ALL_TARGETS:
            raise SystemExit(f"fluxway bench: unknown target {t!r} ({', '.join(ALL_TARGETS)})")
    bench_dir = Path(args.bench_dir) if args.bench_dir else _find_bench_dir()
    if bench_dir is None:
        raise SystemExit("fluxway bench: cannot find the bench/ directory; run from the repository or pass --bench-dir")
    litellm = Path(args.litellm) if args.litellm else bench_dir / ".venv-litellm" / "bin" / "litellm"
    try:
        model_extra = json.loads(args.model_extra)
    except ValueError:
        raise SystemExit("fluxway bench: --model-extra must be a JSON object") from None
    if not isinstance(model_extra, dict):
        raise SystemExit("fluxway bench: --model-extra must be a JSON object")
    try:
        config_extra = json.loads(args.config_extra)
    except ValueError:
        raise SystemExit("fluxway bench: --config-extra must be a JSON object") from None
    if not isinstance(config_extra, dict):
        raise SystemExit("fluxway bench: --config-extra must be a JSON object")
    cases = tuple(dict.fromkeys(c.strip() for c in args.cases.split(",") if c.strip()))
    for c in cases:
        if c not in FAILOVER_CASES:
            raise SystemExit(f"fluxway bench: unknown failover case {c!r} ({', '.join(FAILOVER_CASES)})")
    smoke = bool(args.smoke)
    return Settings(
        scenarios=tuple(dict.fromkeys(scenarios)),
        targets=tuple(targets),
        duration=1 if smoke else max(1, args.duration),
        warmup=0 if smoke else max(0, args.warmup),
        connections=max(1, args.connections),
        repeat=1 if smoke else max(1, args.repeat),
        governance=bool(args.governance),
        pin=not args.no_pin and (os.cpu_count() or 1) >= 2,
        passthrough_server=args.passthrough_server,
        rate=args.rate,
        failover_duration=2 if smoke else max(1, args.failover_duration),
        fail_rate=args.fail_rate,
        fail_status=args.fail_status,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        upstream_delay_ms=args.upstream_delay_ms,
        model_extra=model_extra,
        config_extra=config_extra,
        hedge_after_ms=None if args.hedge_after_ms < 0 else args.hedge_after_ms,
        high_rate=max(0.0, args.high_rate),
        wait_quiet=0.0 if smoke else max(0.0, args.wait_quiet),
        cases=cases,
        bench_dir=bench_dir.resolve(),
        litellm=litellm if litellm.exists() else None,
        out_dir=None if (smoke or args.no_save) else Path(args.out) if args.out else bench_dir / "results",
        print_json=bool(args.json),
        keep_logs=bool(args.keep_logs),
    )
