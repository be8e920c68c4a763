"""The store's tables (SQLAlchemy Core). Migrations under ``migrations/`` create and evolve them.

Times are UTC epoch seconds (double precision): portable across SQLite and PostgreSQL and cheap to
compare; usage records also carry their UTC day (``YYYY-MM-DD``) for grouping without date functions.
Money is USD as double precision.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),  # the team's name; keys refer to it
    sa.Column("models", sa.JSON, nullable=True),  # allowed model globs; null: all
    sa.Column("mcp_tools", sa.JSON, nullable=True),  # allowed MCP tool globs (`server.tool`); null: all
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("budget_usd", sa.Double, nullable=True),
    sa.Column("budget_period", sa.String(16), nullable=True),
    sa.Column("metadata", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

virtual_keys = sa.Table(
    "virtual_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(256), nullable=True),
    sa.Column("owner", sa.String(256), nullable=True),  # who the key belongs to (a person, a service)
    sa.Column("prefix", sa.String(32), nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("team", sa.String(128), nullable=True, index=True),
    sa.Column("models", sa.JSON, nullable=True),
    sa.Column("mcp_tools", sa.JSON, nullable=True),  # allowed MCP tool globs (`server.tool`); null: all
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("model_limits", sa.JSON, nullable=True),  # {"<model glob>": {"rpm": .., "tpm": ..}}
    sa.Column("budget_usd", sa.Double, nullable=True),
    sa.Column("budget_period", sa.String(16), nullable=True),
    sa.Column("expires_at", sa.Double, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.UniqueConstraint("key_hash", name="uq_virtual_keys_key_hash"),
)

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # made when the call ends; replays are idempotent on it
    sa.Column("request_id", sa.String(128), nullable=False),  # x-request-id (a client may reuse one)
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=True),
    sa.Column("team", sa.String(128), nullable=True),
    sa.Column("endpoint", sa.String(32), nullable=True),
    sa.Column("model", sa.String(256), nullable=True),  # the public model the caller asked for
    sa.Column("provider", sa.String(128), nullable=True),
    sa.Column("upstream_model", sa.String(256), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False, default=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("cost_usd", sa.Double, nullable=False, default=0.0),
    sa.Column("price_known", sa.Boolean, nullable=False, default=True),
    sa.Column("estimated", sa.Boolean, nullable=False, default=False),
    sa.Column("latency_ms", sa.Double, nullable=True),
    sa.Column("ttft_ms", sa.Double, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("cache", sa.String(8), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # Captured bodies (observability.logs.bodies), JSON text, capped; body_status says what they
    # are or why they are missing (off, full, redacted, truncated, stream_cut, lost).
    sa.Column("request_body", sa.Text, nullable=True),
    sa.Column("response_body", sa.Text, nullable=True),
    sa.Column("body_status", sa.String(16), nullable=True),
    sa.Column("tags", sa.String(512), nullable=True),  # x-fluxway-tags, comma-joined (validated, no commas inside)
    sa.Index("ix_usage_key_time", "key_id", "created_at"),
    sa.Index("ix_usage_team_time", "team", "created_at"),
    sa.Index("ix_usage_time", "created_at", "id"),
    sa.Index("ix_usage_request", "request_id"),
    sa.Index("ix_usage_model", "model"),
)

USAGE_COLUMNS: tuple[str, ...] = tuple(c.name for c in usage_records.columns)
BODY_COLUMNS: tuple[str, ...] = ("request_body", "response_body")

# Usage totals per time bucket, kept up to date as records are stored (:mod:`fluxway.store.rollups`).
# One row per (scope, dimension, grain, bucket, value): ``scope`` is "" for the whole gateway or a
# key id (that key's own lines, for ``/v1/me/usage``); ``dim`` is ``all`` (value "") or one of key,
# team, model, provider, status, tag; ``grain`` is the bucket width in seconds (60, 3600, 86400) and
# ``bucket`` its UTC start in epoch seconds. A missing value (no team, no tag) is stored as "".
usage_rollups = sa.Table(
    "usage_rollups",
    metadata,
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("dim", sa.String(16), nullable=False),
    sa.Column("grain", sa.Integer, nullable=False),
    sa.Column("bucket", sa.BigInteger, nullable=False),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Double, nullable=False),
    sa.Column("latency_ms_sum", sa.Double, nullable=False),
    sa.Column("latency_count", sa.BigInteger, nullable=False),  # records with a latency (for the mean)
    sa.PrimaryKeyConstraint("scope", "dim", "grain", "bucket", "value", name="pk_usage_rollups"),
    sa.Index("ix_rollups_grain_bucket", "grain", "bucket"),  # pruning old minute rows
)

# Alerts (:mod:`fluxway.events.alerts`): one state row per rule and subject ("*" for a rule over all
# its calls, else ``model=smart``, ``key=<id>``, ``target=<provider/model>``, ``key:<id>`` for a
# budget, ...), moved between ``ok`` and ``firing`` by conditional UPDATEs so instances sharing the
# store fire and resolve each alert once; and the history of those transitions.
alert_states = sa.Table(
    "alert_states",
    metadata,
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(400), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # ok | firing
    sa.Column("value", sa.Double, nullable=True),  # at the last transition
    sa.Column("threshold", sa.Double, nullable=True),
    sa.Column("since", sa.Double, nullable=False),  # the state's start
    sa.Column("resolved_at", sa.Double, nullable=True),  # the cool-down runs from it
    sa.Column("checked_at", sa.Double, nullable=True),  # a firing alert last seen still breaching
    sa.PrimaryKeyConstraint("rule", "subject", name="pk_alert_states"),
)

alert_history = sa.Table(
    "alert_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(400), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # fired | resolved
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("threshold", sa.Double, nullable=True),
    sa.Index("ix_alert_history_rule", "rule", "id"),
)

# Files and batches created through the pass-through surface (api/surface.py): who owns each
# upstream object (one key never sees another's) and which provider holds it.
surface_objects = sa.Table(
    "surface_objects",
    metadata,
    sa.Column("id", sa.String(256), primary_key=True),  # the upstream's id (file-..., batch_...)
    sa.Column("kind", sa.String(16), nullable=False),  # file | batch
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("object", sa.JSON, nullable=True),  # the upstream object as last seen
    sa.Column("meta", sa.JSON, nullable=True),  # {"models": {upstream model: public model}} of a batch's lines
    sa.Column("usage_recorded_at", sa.Double, nullable=True),  # a completed batch's usage, recorded once
    sa.Index("ix_surface_objects_owner", "key_id", "kind", "created_at"),
)

# The events outbox (:mod:`fluxway.store.outbox`): every event emitted, once, with its JSON body; and
# per sink the events not yet delivered to it (a row is deleted once its sink took the event). A
# delivery row is claimed by the instance delivering it (``lease_until``), so instances sharing the
# store do not each deliver every event. Delivered events are pruned after a while.
event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False),  # the event id (x-fluxway-event-id), stable across retries
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the event as delivered (JSON)
    sa.UniqueConstraint("id", name="uq_event_outbox_id"),
    sa.Index("ix_event_outbox_time", "created_at"),
)

event_deliveries = sa.Table(
    "event_deliveries",
    metadata,
    sa.Column("sink", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # event_outbox.seq
    sa.Column("created_at", sa.Double, nullable=False),  # the event's (for the lag metric without a join)
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_at", sa.Double, nullable=False, default=0.0),  # not retried before this time
    sa.Column("lease_until", sa.Double, nullable=True),  # claimed by an instance until then
    sa.Column("owner", sa.String(32), nullable=True),  # the instance holding the claim
    sa.PrimaryKeyConstraint("sink", "seq", name="pk_event_deliveries"),
)

# Stored Responses API answers (``POST /v1/responses`` with ``store`` true), one row per response,
# readable only by the key that created it. ``context`` holds the conversation before this turn
# (previous responses' input and output items, chained), ``input`` this turn's input items,
# ``response`` the whole Response object as it was sent; a follow-up's history is
# ``context + input + response.output``, one row read whatever the chain's length.
responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # resp_...
    sa.Column("key_id", sa.String(64), nullable=False),  # the owning key ("master", "anonymous")
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),  # created_at + responses.retention_days
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("previous_response_id", sa.String(64), nullable=True),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("response", sa.JSON, nullable=False),
    sa.Index("ix_responses_expires_at", "expires_at"),
)
