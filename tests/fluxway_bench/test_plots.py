"""fluxway_bench.plots: The SVG plots beside the json and stream tables.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

from fluxway_bench import plots, tables
from tests.fluxway_bench.support import wrk_result


def test_json_plot_is_valid_svg_with_a_bar_per_target() -> None:
    import xml.etree.ElementTree as ET

    rows = [
        tables.JsonRow("direct", wrk_result(40000, 0.5), wrk_result(30000, 0.025)),
        tables.JsonRow("fluxway", wrk_result(3000, 9.0), wrk_result(2000, 0.5)),
        tables.JsonRow("litellm", note="not installed"),
    ]
    svg = plots.scenario_svg("json", rows, 32)
    assert svg is not None
    root = ET.fromstring(svg)
    rects = [el for el in root.iter() if el.tag.endswith("rect")]
    # background + 2 throughput bars + 1 added-latency bar (direct has none, litellm has no figures)
    assert len(rects) == 4
    texts = [el.text for el in root.iter() if el.tag.endswith("text")]
    assert "3,000" in texts and "0.475" in texts
    assert plots.scenario_svg("failover", [], 32) is None
