"""The ``fluxway`` command line (``python -m fluxway`` is the same program)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from typing import Any

from fluxway import __version__
from fluxway.config import Config, ConfigError, config_warnings, env_config_path, load


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_or_report(path: str | None, as_json: bool = False) -> Config | None:
    path = path or env_config_path()
    if not path:
        print("fluxway: no config given: use --config FILE or set FLUXWAY_CONFIG", file=sys.stderr)
        return None
    try:
        return load(path)
    except ConfigError as exc:
        if as_json:
            print(json.dumps({"ok": False, "problems": exc.problems}))
        else:
            print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
            for p in exc.problems:
                print(f"  {p}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load_or_report(args.config, args.json)
    if cfg is None:
        return 1
    warnings = config_warnings(cfg)
    if args.json:
        print(
            json.dumps({"ok": True, "providers": len(cfg.providers), "models": len(cfg.models), "warnings": warnings})
        )
    else:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"ok: {len(cfg.providers)} provider(s), {len(cfg.models)} model(s)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load_or_report(args.config)
    if cfg is None:
        return 1
    host = args.host or cfg.server.host
    port = args.port if args.port is not None else cfg.server.port
    workers = args.workers or cfg.server.workers
    if not _is_loopback(host) and not cfg.auth.master_key and not args.insecure:
        print(
            f"fluxway: refusing to listen on {host} without auth.master_key; set one, or pass --insecure",
            file=sys.stderr,
        )
        return 2
    log_config = server_log_config(args.log_level, cfg.observability.logs.format)
    logging.config.dictConfig(log_config)
    import uvicorn

    from fluxway.api.server_protocol import GuardedHttpToolsProtocol, raise_fd_limit

    raise_fd_limit(cfg.server.max_connections)
    common: dict[str, object] = {
        "host": host,
        "port": port,
        "loop": "uvloop" if sys.platform != "win32" else "asyncio",
        "http": GuardedHttpToolsProtocol,  # httptools + header timeout/size limit, connection cap
        "log_level": args.log_level,
        "log_config": log_config,  # applied again in every worker process: --workers N keeps the app's logs
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": cfg.server.drain_s,
        "backlog": 4096,
        "proxy_headers": False,  # no middleware on the hot path; the gateway is the edge or behind an LB
        "server_header": False,
    }
    if workers > 1:
        os.environ["FLUXWAY_CONFIG"] = os.path.abspath(args.config or env_config_path() or "")
        uvicorn.run("fluxway.app:from_env", factory=True, workers=workers, **common)  # type: ignore[arg-type]
    else:
        from fluxway.app import create_app

        uvicorn.run(create_app(cfg, server=True), **common)  # type: ignore[arg-type]
    return 0


def server_log_config(level: str, fmt: str = "text") -> dict[str, Any]:
    """One logging setup for the server and each of its workers: the application's records on stderr
    at ``level``, uvicorn's own, and the migration tool's INFO chatter kept out of a normal start.
    ``fmt`` is ``text`` or ``json`` (one object per line, :mod:`fluxway.log_format`)."""
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": fmt}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"()": "fluxway.log_format.JsonFormatter"},
        },
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": "WARNING"},
            "alembic": {"level": "WARNING"},
        },
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fluxway", description="Fluxway: a fast unified AI gateway")
    parser.add_argument("--version", action="version", version=f"fluxway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", "-c", help="YAML config (or FLUXWAY_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback address without a master key")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate a config and print every problem")
    check.add_argument("--config", "-c", help="YAML config (or FLUXWAY_CONFIG)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_check)

    from fluxway.keys_cli import register as register_keys

    register_keys(sub)  # keys create/list/revoke, db upgrade

    from fluxway.models_cli import register as register_models

    register_models(sub)  # models [--search TEXT] [--provider TYPE] [--json]

    bench = sub.add_parser("bench", help="the load test against a mock upstream (see bench/README.md)", add_help=False)
    bench.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from fluxway_bench.cli import main as bench_main

        return int(bench_main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc
