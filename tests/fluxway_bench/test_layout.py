"""The load test lives beside the gateway, not in it: `fluxway bench` reaches it lazily, nothing else does."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fluxway
from fluxway import cli as fluxway_cli

SERVING = Path(fluxway.__file__).parent


def _bench_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, at module level) of every import of fluxway_bench in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        if any(n == "fluxway_bench" or n.startswith("fluxway_bench.") for n in names):
            found.append((node.lineno, id(node) in top))
    return found


def test_only_the_cli_imports_the_bench_package_and_only_lazily() -> None:
    offenders = {}
    for path in SERVING.rglob("*.py"):
        hits = _bench_imports(path)
        if path.name == "cli.py" and path.parent == SERVING:
            assert hits and not any(top for _, top in hits), "fluxway/cli.py must import fluxway_bench inside main"
        elif hits:
            offenders[str(path.relative_to(SERVING))] = hits
    assert offenders == {}


def test_importing_the_serving_app_does_not_load_the_bench_package() -> None:
    code = (
        "import sys, fluxway.app, fluxway.cli; print(sorted(m for m in sys.modules if m.startswith('fluxway_bench')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_fluxway_bench_subcommand_reaches_the_bench_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        fluxway_cli.main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fluxway bench")
    assert "--failover-duration" in out and "--no-save" in out
