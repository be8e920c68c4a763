"""Reports: the header and notes of each scenario's markdown, and the files saved beside it."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fluxway_bench.plots import scenario_svg
from fluxway_bench.settings import FAILOVER_FIRST_TOKEN_S, Settings
from fluxway_bench.tables import ratio_lines, render_failover_table, render_json_table, render_stream_table

TITLES = {
    "json": "Fluxway benchmark: JSON chat completions (throughput, latency, memory)",
    "stream": "Fluxway benchmark: streaming (5-chunk SSE)",
    "failover": "Fluxway benchmark: one of two targets failing (open loop)",
}


def render_scenario(name: str, rows: Sequence[Any], s: Settings) -> str:
    if name == "json":
        lines = ratio_lines(rows, "c32")
        table = render_json_table(rows, s.connections)
        return "\n".join([table, "", *lines, "", targets_note()])
    if name == "stream":
        lines = ratio_lines(rows, "c32")
        table = render_stream_table(rows, s.connections)
        note = (
            "- streams/s: complete 5-chunk streams per second (wrk). TTFB: time to the first body byte at c=1, "
            "measured with `bench/loadgen.py` (aiohttp client; its own overhead is in every row, so read the "
            "added column)."
        )
        return "\n".join([table, "", *lines, "", note])
    table = render_failover_table(rows)
    note = (
        f"- Two upstreams (`bench/mock_upstream.py`): A injects the fault, B is healthy; open loop at the "
        f"given rate for {s.failover_duration} s after a {min(s.warmup, s.failover_duration)} s warm-up "
        "(`bench/loadgen.py`; latency counted from when each request was due, failures included). "
        "Counters are reset after the warm-up, so a breaker already open shows as 1.00 upstream calls / request. "
        "Fluxway: `weighted` over A and B, retry attempts 2, backoff 0"
        + (f", plus {json.dumps(s.model_extra)}" if s.model_extra else "")
        + "; LiteLLM: the same two deployments, simple-shuffle, num_retries 2. Both give up on a silent "
        f"upstream after {FAILOVER_FIRST_TOKEN_S:g} s (Fluxway connect/first_token timeout, LiteLLM timeout). "
        "Upstream calls / request = requests the mocks saw divided by requests sent."
    )
    return "\n".join([table, "", note])


def load_line(other_load: Sequence[float]) -> str:
    """One line on how busy the machine was with other work while we measured."""
    if not other_load:
        return ""
    mean = sum(other_load) / len(other_load)
    return (
        f"- other work on the machine during the measured runs: {mean:.0f}% of all cores on average, "
        f"{max(other_load):.0f}% at most in one run (0% = the cores were ours alone)"
    )


def report_header(title: str, settings: Settings, info: dict[str, Any], vers: dict[str, str], when: str) -> str:
    pin = "server under test on core 0; wrk, load generator and mock on core 1" if settings.pin else "no pinning"
    seconds = settings.failover_duration if title == TITLES["failover"] else settings.duration
    lines = [
        f"# {title}",
        "",
        f"- date: {when}",
        f"- machine: {info['nproc']} cores, {info['cpu']}, {info['mem_gb']} GB, Linux {info['kernel']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- method: {seconds} s per measured run after a {settings.warmup} s warm-up; each row "
        f"measured {settings.repeat}x and the better run kept (the 2 cores are shared with other work, so "
        f"figures are noisy: read the ratios); {pin}; one worker per server.",
    ]
    if settings.governance:
        lines.append("- Fluxway with governance on (master key + virtual key).")
    if settings.config_extra:
        lines.append(f"- Fluxway's config merged with `{json.dumps(settings.config_extra)}`.")
    return "\n".join(lines)


def targets_note() -> str:
    return (
        "- direct: wrk straight to the nginx mock; passthrough: `bench/passthrough.py` (raw ASGI + aiohttp + orjson, "
        "no features); fluxway: `fluxway serve --workers 1`; litellm: `litellm --num_workers 1` from "
        "`bench/.venv-litellm`.\n"
        "- added = the row's c=1 figure minus direct's. RSS: the server's largest process (its worker), "
        "before load / peak during the c=32 runs. other work: share of the 2 cores used by processes not part "
        "of the benchmark during the row's measured runs (high = its figures are pessimistic)."
    )


def jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def scenario_markdown(header: str, body: str, notes: Sequence[str]) -> str:
    """One scenario's markdown: the header, its table and notes, then the run's notes (each once)."""
    parts = [header, body]
    if notes:
        parts.append("Notes:\n" + "\n".join(f"- {n}" for n in dict.fromkeys(notes)))
    return "\n\n".join(parts) + "\n"


def save(stem: Path, scenario: str, md: str, rows: Sequence[Any], results: dict[str, Any], connections: int) -> None:
    """Write ``stem``.md, .json (this scenario's results only) and, for json and stream, .svg."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    svg = scenario_svg(scenario, rows, connections)
    if svg is not None:
        stem.with_suffix(".svg").write_text(svg)
        md += f"\n![{scenario} plot]({stem.name}.svg)\n"
    stem.with_suffix(".md").write_text(md)
    one = {**results, "scenarios": {scenario: results["scenarios"][scenario]}}
    stem.with_suffix(".json").write_text(json.dumps(one, indent=2) + "\n")
    print(f"[bench] wrote {stem}.md, .json" + (" and .svg" if svg else ""), file=sys.stderr)
