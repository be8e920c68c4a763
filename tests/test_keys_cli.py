from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from fluxway.cli import main
from fluxway.config import load
from tests.support.gateway import run_gateway


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_keys_against_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "fw.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/fw.db"}}))
    rc, out, _ = _run(capsys, "db", "upgrade", "-c", str(cfg), "--json")
    assert rc == 0 and json.loads(out)["revision"] == json.loads(out)["head"]

    rc, out, err = _run(capsys, "keys", "create", "-c", str(cfg), "--name", "ci", "--models", "smart, cheap",
                        "--budget", "5", "--period", "daily", "--rpm", "60")
    assert rc == 0 and "sk-fw-" in out and "not shown again" in err
    rc, out, _ = _run(capsys, "keys", "list", "-c", str(cfg), "--json")
    [key] = json.loads(out)["data"]
    assert key["name"] == "ci" and key["models"] == ["smart", "cheap"] and key["rpm"] == 60
    assert key["budget"] == {"amount_usd": 5.0, "period": "daily"}

    rc, out, _ = _run(capsys, "keys", "revoke", "-c", str(cfg), key["id"])
    assert rc == 0 and key["id"] in out
    rc, out, _ = _run(capsys, "keys", "list", "-c", str(cfg), "--json")
    assert json.loads(out)["data"] == []
    rc, out, _ = _run(capsys, "keys", "list", "-c", str(cfg), "--all")
    assert "revoked" in out

    rc, _, err = _run(capsys, "keys", "create", "-c", str(cfg), "--team", "ghost")
    assert rc == 1 and "team 'ghost' does not exist" in err
    rc, out, _ = _run(capsys, "keys", "revoke", "-c", str(cfg), "key_nope", "--json")
    assert rc == 1 and json.loads(out)["ok"] is False


async def test_keys_against_a_running_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with run_gateway({"auth": {"master_key": "sk-admin"}}) as gw:
        base = ["--url", gw.url, "--master-key", "sk-admin", "--json"]
        rc = await asyncio.to_thread(main, ["keys", "create", "--name", "remote", *base])
        created = json.loads(capsys.readouterr().out)
        assert rc == 0 and created["key"].startswith("sk-fw-")
        assert gw.runtime.governance.auth.authenticate(created["key"]).id == created["id"]
        rc = await asyncio.to_thread(main, ["keys", "list", *base])
        assert rc == 0 and [k["id"] for k in json.loads(capsys.readouterr().out)["data"]] == [created["id"]]
        rc = await asyncio.to_thread(main, ["keys", "revoke", created["id"], *base])
        assert rc == 0 and json.loads(capsys.readouterr().out)["revoked"] is True
        rc = await asyncio.to_thread(main, ["keys", "list", "--url", gw.url, "--master-key", "wrong", "--json"])
        assert rc == 1 and "401" in json.loads(capsys.readouterr().out)["error"]


def test_one_store_wherever_you_stand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths in a config resolve against its folder: a key created from another folder is
    in the store the gateway reads (issue 10)."""
    conf_dir = tmp_path / "project" / "examples"
    conf_dir.mkdir(parents=True)
    cfg = conf_dir / "fluxway.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": "sqlite:///./fluxway.db"}, "usage": {"spool_dir": "spool"}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc, out, _ = _run(capsys, "keys", "create", "-c", str(cfg), "--name", "ci", "--json")
    assert rc == 0, out
    monkeypatch.chdir(conf_dir.parent)
    rc, out, _ = _run(capsys, "keys", "list", "-c", "examples/fluxway.yaml", "--json")
    assert [k["name"] for k in json.loads(out)["data"]] == ["ci"]
    assert (conf_dir / "fluxway.db").exists() and not list(elsewhere.iterdir())

    loaded = load("examples/fluxway.yaml")
    assert loaded.store.url == f"sqlite:///{conf_dir / 'fluxway.db'}"
    assert loaded.usage.spool_dir == str(conf_dir / "spool")
    absolute = tmp_path / "abs.db"
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{absolute}?timeout=5"}}))
    assert load(cfg).store.url == f"sqlite:///{absolute}?timeout=5"


def test_teams_against_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "fw.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/fw.db"}}))
    c = ["-c", str(cfg), "--json"]
    rc, out, _ = _run(capsys, "teams", "create", "search", "--models", "smart,cheap", "--rpm", "60",
                      "--budget", "10", *c)
    assert rc == 0 and json.loads(out)["id"] == "search"
    rc, out, _ = _run(capsys, "teams", "update", "search", "--tpm", "1000", *c)
    assert rc == 0 and json.loads(out)["tpm"] == 1000
    rc, out, _ = _run(capsys, "teams", "list", *c)
    [team] = json.loads(out)["data"]
    assert team["models"] == ["smart", "cheap"] and team["rpm"] == 60 and team["tpm"] == 1000
    assert team["budget"] == {"amount_usd": 10.0, "period": "monthly"}
    rc, out, _ = _run(capsys, "teams", "list", "-c", str(cfg))
    assert rc == 0 and "search" in out and "rpm=60" in out
    rc, out, _ = _run(capsys, "teams", "create", "bad name!", *c)
    assert rc == 1 and json.loads(out)["ok"] is False
    rc, out, _ = _run(capsys, "teams", "delete", "search", *c)
    assert rc == 0 and json.loads(out)["deleted"] is True
    rc, out, _ = _run(capsys, "teams", "delete", "search", *c)
    assert rc == 1


async def test_teams_against_a_running_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    async with run_gateway({"auth": {"master_key": "sk-admin"}}) as gw:
        base = ["--url", gw.url, "--master-key", "sk-admin", "--json"]
        assert await asyncio.to_thread(main, ["teams", "create", "ops", "--rpm", "5", *base]) == 0
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["teams", "list", *base]) == 0
        assert [t["id"] for t in json.loads(capsys.readouterr().out)["data"]] == ["ops"]
        assert await asyncio.to_thread(main, ["teams", "delete", "ops", *base]) == 0
