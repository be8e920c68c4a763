"""``fluxway bench``'s entry point: parse, start, run each scenario, print and save."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from fluxway_bench.harness import Harness
from fluxway_bench.machine import machine_info, versions
from fluxway_bench.report import TITLES, jsonable, load_line, render_scenario, report_header, save, scenario_markdown
from fluxway_bench.scenarios import run_failover, run_json, run_stream
from fluxway_bench.settings import build_parser, settings_from_args
from fluxway_bench.targets import start_nginx


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    s = settings_from_args(args)
    if "litellm" in s.targets and s.litellm is None:
        print("[bench] litellm not installed (bench/install_litellm.sh); skipping it", file=sys.stderr)
        s.targets = tuple(t for t in s.targets if t != "litellm")
    now = _dt.datetime.now(_dt.UTC)
    info = machine_info()
    vers = versions(s.litellm.parent / "python" if s.litellm else None, s.bench_dir.parent)
    results: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "machine": info,
        "versions": vers,
        "settings": jsonable(s),
        "scenarios": {},
    }
    suffix = "-governance" if s.governance else ""
    workdir = Path(tempfile.mkdtemp(prefix="fluxway-bench-"))
    previous = signal.signal(signal.SIGTERM, _terminate)  # so SIGTERM still stops every server we started
    try:
        with ExitStack() as stack:
            h = Harness(s, workdir, stack)
            if any(sc in s.scenarios for sc in ("json", "stream")):
                start_nginx(h)
            runners: dict[str, Callable[[], Sequence[Any]]] = {
                "json": lambda: run_json(h),
                "stream": lambda: run_stream(h),
                "failover": lambda: run_failover(h),
            }
            for sc in s.scenarios:
                rows = runners[sc]()
                header = report_header(TITLES[sc], s, info, vers, results["date"])
                if h.other_load:
                    header += "\n" + load_line(h.other_load)
                    results.setdefault("other_load_pct", {})[sc] = [round(x, 1) for x in h.other_load]
                h.other_load = []
                md = scenario_markdown(header, render_scenario(sc, rows, s), h.notes)
                results["scenarios"][sc] = jsonable(list(rows))
                if not s.print_json:
                    print(md, flush=True)
                if s.out_dir is not None:
                    save(s.out_dir / f"{now:%Y-%m-%d}-{sc}{suffix}", sc, md, rows, results, s.connections)
    except RuntimeError as exc:
        print(f"fluxway bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if s.keep_logs:
            print(f"[bench] logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if s.print_json:
        print(json.dumps(results, indent=2))
    return 0
