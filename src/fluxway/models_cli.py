"""``fluxway models``: list and search the model catalog (``fluxway/data/models.json``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fluxway.catalog import Catalog, ModelInfo


def register(sub: Any) -> None:
    """Add the ``models`` subcommand to the CLI's subparsers."""
    p = sub.add_parser("models", help="list and search the model catalog (prices, limits, capabilities)")
    p.add_argument("--search", "-s", metavar="TEXT",
                   help="only models whose name, alias, kind or a capability contains TEXT")
    p.add_argument("--provider", "-p", metavar="TYPE", help="only this provider type's models (e.g. openai, groq)")
    p.add_argument("--json", action="store_true", help="one JSON object per model, one per line")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    catalog = Catalog()
    if args.provider is not None and args.provider not in catalog.blocks():
        print(f"fluxway: no provider type '{args.provider}' in the catalog")
        return 2
    found = catalog.search(args.search, args.provider)
    if args.json:
        for e in found:
            print(json.dumps(e.to_dict(), sort_keys=True))
        return 0
    if not found:
        print("no model matches")
        return 1
    rows = [_row(e) for e in found]
    head = ("provider", "model", "kind", "input $/M", "output $/M", "cached $/M", "context", "max out", "capabilities")
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head) - 1)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False)) + "  " + head[-1]
    print(line.rstrip())
    for r in rows:
        print(("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]).rstrip())
    print(f"{len(found)} model(s)")
    return 0


def _row(e: ModelInfo) -> tuple[str, ...]:
    p = e.price or {}

    def usd(key: str) -> str:
        return f"{p[key]:g}" if key in p else "-"

    return (e.provider, e.name, e.kind, usd("input") if e.price is not None else "unpriced", usd("output"),
            usd("cached_input"), str(e.context or "-"), str(e.max_output or "-"), ",".join(sorted(e.capabilities)))
