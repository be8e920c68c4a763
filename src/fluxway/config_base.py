"""The building blocks config sections share: the strict, frozen base model, and the timeout and
health-check sections that both providers (``fluxway.adapters.settings``) and models
(``fluxway.config``) carry. Imports nothing of Fluxway's, so both sides can build on it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutConfig(Strict):
    # Seconds to open a connection to the upstream.
    connect: float = Field(5.0, gt=0)
    # Seconds the upstream may stay silent: before its first byte, and between reads after it.
    first_token: float = Field(30.0, gt=0)
    # Seconds for one whole upstream call, stream included.
    total: float = Field(600.0, gt=0)


class HealthCheckConfig(Strict):
    # Seconds between two checks of a target.
    interval_s: float = Field(30.0, gt=0)
    # Seconds a check may take before it counts as a failure.
    timeout_s: float = Field(10.0, gt=0)
    # The upstream model to probe; default: every model of this provider named in `models`.
    model: str | None = None
