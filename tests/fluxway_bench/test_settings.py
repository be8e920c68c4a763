"""fluxway_bench.settings: The command line's settings: defaults, smoke runs, refused arguments.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import pytest

from fluxway_bench import settings


def test_smoke_settings_write_nothing_and_run_short() -> None:
    s = settings.settings_from_args(
        settings.build_parser().parse_args(["--smoke", "all", "--targets", "direct,fluxway"])
    )
    assert s.scenarios == ("json", "stream", "failover")
    assert s.targets == ("direct", "fluxway")
    assert (s.duration, s.warmup, s.repeat, s.out_dir) == (1, 0, 1, None)


def test_default_settings() -> None:
    s = settings.settings_from_args(settings.build_parser().parse_args([]))
    assert s.scenarios == ("json", "stream")
    assert (s.duration, s.warmup, s.connections, s.repeat) == (10, 3, 32, 2)
    assert s.out_dir is not None and s.out_dir.name == "results"
    assert s.hedge_after_ms == 100.0
    assert (s.rate, s.high_rate, s.failover_duration) == (10.0, 100.0, 20)
    assert s.cases == ("fail", "slow")


@pytest.mark.parametrize(
    "argv",
    [["nope"], ["--targets", "direct,envoy"], ["--model-extra", "[1]"], ["--model-extra", "{bad"], ["--cases", "melt"],
     ["--config-extra", "[]"], ["--config-extra", "{bad"]],
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        settings.settings_from_args(settings.build_parser().parse_args(argv))
