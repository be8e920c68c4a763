"""fluxway_bench.report: Report headers and the lines under them.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import json
from pathlib import Path

from fluxway_bench import report, settings, tables
from tests.fluxway_bench.support import wrk_result


def test_load_line_reports_mean_and_max() -> None:
    assert report.load_line([]) == ""
    line = report.load_line([10.0, 30.0])
    assert "20% of all cores on average" in line and "30% at most" in line


def test_report_header_names_machine_versions_and_run_length() -> None:
    s = settings.settings_from_args(settings.build_parser().parse_args(["--smoke"]))
    info = {"nproc": 2, "cpu": "AMD EPYC", "mem_gb": 23.5, "kernel": "6.1"}
    head = report.report_header(report.TITLES["failover"], s, info, {"python": "3.11.7", "wrk": "4.1.0"}, "2026-01-01")
    assert "2 cores, AMD EPYC" in head and "python 3.11.7, wrk 4.1.0" in head
    assert f"{s.failover_duration} s per measured run" in head
    assert f"{s.duration} s per measured run" in report.report_header(report.TITLES["json"], s, info, {}, "2026-01-01")


def test_save_writes_markdown_json_and_the_plot(tmp_path: Path) -> None:
    rows = [tables.JsonRow("direct", wrk_result(40000, 0.5), wrk_result(30000, 0.025))]
    results = {"date": "2026-01-01", "scenarios": {"json": [{"through": "direct"}], "stream": []}}
    md = report.scenario_markdown("# title", "| table |", ["a note", "a note"])
    assert md == "# title\n\n| table |\n\nNotes:\n- a note\n"
    report.save(tmp_path / "out" / "2026-01-01-json", "json", md, rows, results, 32)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["2026-01-01-json.json", "2026-01-01-json.md", "2026-01-01-json.svg"]
    saved = json.loads((tmp_path / "out" / "2026-01-01-json.json").read_text())
    assert saved["scenarios"] == {"json": [{"through": "direct"}]}
    assert (tmp_path / "out" / "2026-01-01-json.md").read_text().endswith("![json plot](2026-01-01-json.svg)\n")
