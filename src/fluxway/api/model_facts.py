"""What ``/v1/models`` says of each served model in its ``x_fluxway`` field, from the catalog.

For a public model: the capabilities every one of its targets has (a target's
``targets[].capabilities`` replaces the catalog's flags), the smallest context window and output
limit the catalog knows of them, and whether every target is priced (budgeted keys refuse
unpriced ones). Computed once per runtime, at the first listing: nothing on the hot path.
"""

from __future__ import annotations

from typing import Any

from fluxway.catalog import Catalog
from fluxway.config import Config


def model_facts(cfg: Config, catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Public model name -> its ``x_fluxway`` object (only models with at least one catalog entry
    or capability override)."""
    out: dict[str, dict[str, Any]] = {}
    for m in cfg.models:
        caps: set[str] | None = None
        contexts: list[int] = []
        outputs: list[int] = []
        targets: list[dict[str, Any]] = []
        known = False
        priced = True
        for t in m.targets:
            p = cfg.provider(t.provider)
            entry = catalog.find(p.type if p else None, t.model)
            own = set(t.capabilities) if t.capabilities is not None else None
            if entry is not None or own is not None:
                known = True
            target_caps = own if own is not None else set(entry.capabilities if entry else ())
            caps = target_caps if caps is None else caps & target_caps
            if entry is not None and entry.context is not None:
                contexts.append(entry.context)
            if entry is not None and entry.max_output is not None:
                outputs.append(entry.max_output)
            priced = priced and (t.price is not None or (entry is not None and entry.priced))
            targets.append({"provider": t.provider, "model": t.model,
                            "catalog": f"{entry.provider}/{entry.name}" if entry is not None else None})
        if not known:
            continue
        facts: dict[str, Any] = {"capabilities": sorted(caps or ())}
        if contexts:
            facts["context_window"] = min(contexts)
        if outputs:
            facts["max_output_tokens"] = min(outputs)
        facts["priced"] = priced
        facts["targets"] = targets
        out[m.name] = facts
    return out
