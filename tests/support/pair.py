"""Two fault-injecting providers behind one fallback model: the end-to-end resilience scenarios' config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.faults import FaultyUpstream

MODEL_A = "model-a"
MODEL_B = "model-b"


def pair_config(
    a: FaultyUpstream,
    b: FaultyUpstream,
    *,
    model: dict[str, Any] | None = None,
    timeout: dict[str, float] | None = None,
    timeout_b: dict[str, float] | None = None,
    extra_models: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Providers ``a`` and ``b`` (one key each) behind public model ``m`` (strategy ``fallback``:
    targets ``a/model-a`` then ``b/model-b``, 2 attempts each with ~1 ms backoff).

    ``a`` has small timeouts (first token 0.3 s, total 2 s; ``timeout`` updates them), ``b`` generous
    ones (``timeout_b``): on a busy machine a healthy upstream must not time out. ``model`` updates
    the model's entry; ``extra`` updates the top level.
    """
    ta = {"connect": 1.0, "first_token": 0.3, "total": 2.0, **(timeout or {})}
    tb = {"connect": 2.0, "first_token": 10.0, "total": 20.0, **(timeout_b or {})}
    m: dict[str, Any] = {
        "name": "m",
        "strategy": "fallback",
        "targets": [{"provider": "a", "model": MODEL_A}, {"provider": "b", "model": MODEL_B}],
        "retry": {"attempts": 2, "backoff_ms": 1, "max_backoff_ms": 5},
    }
    m.update(model or {})
    cfg: dict[str, Any] = {
        "providers": [
            {"name": "a", "type": "openai", "base_url": a.url + "/v1", "api_keys": ["sk-a"], "timeout": ta},
            {"name": "b", "type": "openai", "base_url": b.url + "/v1", "api_keys": ["sk-b"], "timeout": tb},
        ],
        "models": [m, *(extra_models or [])],
    }
    cfg.update(extra)
    return cfg
