"""fluxway_bench.cli: The entry point.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import pytest

from fluxway_bench import cli


def test_help_documents_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--duration", "--warmup", "--connections", "--smoke", "--governance", "--rate", "--targets"):
        assert flag in out
