"""The GraphQL schema: the SDL below, bound to :data:`fluxway.api.graphql.resolvers.RESOLVERS`.

Objects carry the fields of the REST admin API's JSON, camelCased (``created_at`` -> ``createdAt``),
with the same values: a field with no resolver of its own reads the snake_case key of its parent's
dict. Secrets and key hashes are in no type. Read-only: there is no ``Mutation`` type.

Adding a field is a line of SDL and, unless it is a plain value of its parent, one resolver.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from graphql import GraphQLObjectType, GraphQLScalarType, GraphQLSchema, build_schema

from fluxway.api.graphql.resolvers import RESOLVERS, Resolver

SDL = '''
"""Read-only queries over Fluxway's keys, teams, usage and request logs (the REST admin API's data)."""
schema {
  query: Query
}

"Any JSON value."
scalar JSON

"An integer that may exceed 32 bits (token and request counts), as a JSON number."
scalar Long

type Query {
  "Virtual keys, oldest first (the order of GET /admin/keys)."
  keys(
    first: Int
    after: String
    "Only this team's keys."
    team: String
    "true: only revoked keys; false: only active ones; absent: both."
    revoked: Boolean
    "Only keys with this role (user or admin)."
    role: String
  ): KeyConnection
  "One key by id (GET /admin/keys/{id}); null when there is none."
  key(id: ID!): Key
  "Teams by name (GET /admin/teams)."
  teams(first: Int, after: String): TeamConnection
  "One team by name (GET /admin/teams/{name}); null when there is none."
  team(name: String!): Team
  "Usage totals per group from the rollups (GET /admin/usage), over [since, until)."
  usage(
    groupBy: UsageGroup = KEY
    "ISO 8601 or epoch seconds; absent: from the first record."
    since: String
    "ISO 8601 or epoch seconds (exclusive); absent: up to now."
    until: String
  ): UsageReport
  "Request logs, newest first (GET /admin/logs)."
  logs(
    "A key id."
    key: String
    "A public model name."
    model: String
    "An HTTP status, success (below 400) or error."
    status: String
    since: String
    until: String
    first: Int
    after: String
    "Read the captured request and response bodies too (GET /admin/logs?bodies=true)."
    bodies: Boolean = false
  ): LogConnection
  "Prompt APIs (POST /admin/prompts); answers NOT_AVAILABLE until the gateway has them."
  prompts(first: Int, after: String): PromptConnection
}

type PageInfo {
  hasNextPage: Boolean!
  "Pass it as after to get the next page; null on an empty page."
  endCursor: String
}

type Budget {
  amountUsd: Float!
  "daily, monthly or total."
  period: String!
}

"A virtual key as GET /admin/keys shows it: never its secret or hash."
type Key {
  id: ID!
  object: String!
  name: String
  owner: String
  "The first characters of the secret, to recognise it."
  prefix: String!
  role: String!
  team: String
  "The key's team, with its own fields."
  teamDetails: Team
  models: [String!]
  mcpTools: [String!]
  rpm: Int
  tpm: Int
  modelLimits: JSON
  budget: Budget
  expiresAt: String
  metadata: JSON!
  createdAt: String!
  updatedAt: String!
  revoked: Boolean!
  revokedAt: String
}

type KeyEdge {
  cursor: String!
  node: Key!
}

type KeyConnection {
  edges: [KeyEdge!]!
  pageInfo: PageInfo!
  "Keys matching the filters, on every page."
  totalCount: Int!
}

type Team {
  id: ID!
  object: String!
  name: String!
  models: [String!]
  mcpTools: [String!]
  rpm: Int
  tpm: Int
  budget: Budget
  metadata: JSON!
  createdAt: String!
  updatedAt: String!
  "The team's keys, oldest first."
  keys(first: Int, after: String, revoked: Boolean, role: String): KeyConnection!
}

type TeamEdge {
  cursor: String!
  node: Team!
}

type TeamConnection {
  edges: [TeamEdge!]!
  pageInfo: PageInfo!
  totalCount: Int!
}

enum UsageGroup {
  KEY
  TEAM
  MODEL
  PROVIDER
  TAG
  STATUS
  DAY
  HOUR
}

type UsageReport {
  groupBy: UsageGroup!
  since: String
  until: String
  rows: [UsageRow!]!
}

"One group's totals (a row of GET /admin/usage's data)."
type UsageRow {
  """
  The group's value: a key id, team, model, provider, tag, HTTP status, day (2025-01-31) or hour
  (2025-01-31T12:00:00Z); null for records without one (no team, no tag).
  """
  group: String
  "The key's name, when grouped by key."
  name: String
  requests: Long!
  errors: Long!
  promptTokens: Long!
  completionTokens: Long!
  cachedTokens: Long!
  costUsd: Float!
  avgLatencyMs: Float
}

"A usage record as GET /admin/logs shows it."
type LogEntry {
  id: ID!
  requestId: String!
  createdAt: String!
  day: String!
  keyId: String
  "The key that made the call (null for the master key or a deleted key)."
  keyDetails: Key
  team: String
  endpoint: String
  model: String
  provider: String
  upstreamModel: String
  status: Int!
  stream: Boolean!
  promptTokens: Long!
  completionTokens: Long!
  cachedTokens: Long!
  costUsd: Float!
  priceKnown: Boolean!
  estimated: Boolean!
  latencyMs: Float
  ttftMs: Float
  attempts: Int!
  cache: String
  error: String
  "JSON text; null unless logs(bodies: true)."
  requestBody: String
  "JSON text; null unless logs(bodies: true)."
  responseBody: String
  "What the bodies are or why they are missing: off, full, redacted, truncated, stream_cut, lost."
  bodyStatus: String
  "x-fluxway-tags, comma-joined."
  tags: String
}

type LogEdge {
  cursor: String!
  node: LogEntry!
}

type LogConnection {
  edges: [LogEdge!]!
  pageInfo: PageInfo!
}

"A prompt API (its latest version)."
type Prompt {
  name: String!
  version: Int!
  "draft, published, deprecated or retired."
  state: String!
  model: String
}

type PromptEdge {
  cursor: String!
  node: Prompt!
}

type PromptConnection {
  edges: [PromptEdge!]!
  pageInfo: PageInfo!
  totalCount: Int!
}
'''

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    """``createdAt`` -> ``created_at``."""
    return _CAMEL.sub("_", name).lower()


def _reader(key: str) -> Resolver:
    def read(parent: Any, info: Any, **_: Any) -> Any:
        return parent.get(key) if isinstance(parent, Mapping) else getattr(parent, key, None)

    return read


def _long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Long cannot represent {value!r}")
    return int(value)


def build(resolvers: Mapping[str, Mapping[str, Resolver]] = RESOLVERS) -> GraphQLSchema:
    """The schema of :data:`SDL` with ``resolvers`` (type -> field -> function) bound."""
    schema = build_schema(SDL)
    for type_name, fields in resolvers.items():
        obj = schema.get_type(type_name)
        if not isinstance(obj, GraphQLObjectType):
            raise ValueError(f"resolvers for {type_name!r}, which is no object type of the schema")
        for field_name, fn in fields.items():
            if field_name not in obj.fields:
                raise ValueError(f"a resolver for {type_name}.{field_name}, which the schema does not have")
            obj.fields[field_name].resolve = fn
    for named in schema.type_map.values():
        if isinstance(named, GraphQLObjectType) and not named.name.startswith("__"):
            for field_name, fdef in named.fields.items():
                if fdef.resolve is None:
                    fdef.resolve = _reader(snake(field_name))
    long_type = schema.get_type("Long")
    assert isinstance(long_type, GraphQLScalarType)
    long_type.serialize = _long  # type: ignore[method-assign]
    return schema

