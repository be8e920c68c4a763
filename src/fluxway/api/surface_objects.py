"""``/v1/files`` and ``/v1/batches``, passed to the provider that holds them, owned per key.

Which provider: the ``x-fluxway-provider`` header, else (an upload) a ``provider`` form field,
else (a batch input file) the provider of the first target of its first line's model that offers
files and batches, else the first configured provider that offers the endpoint. Every object
created is recorded (``surface_objects``: id -> owning key, provider); a retrieve, delete, content,
cancel or batch creation naming an id the calling key does not own answers 404, as if it did not
exist. Listing reads that table: a key lists only its own objects.

A batch input file (``purpose=batch``) is checked line by line: each line's ``body.model`` must be
a model the key may use, with a target on the file's provider, and is rewritten to that target's
upstream model. When a batch is fetched ``completed``, its output file is read and one usage
record per line is written, once (the row's ``usage_recorded_at`` is claimed first; record ids
are derived from the batch id and the line, so a replay stores no duplicate).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from fluxway.adapters.base import SurfaceAdapter
from fluxway.api.asgi import Receive, Scope, Send
from fluxway.api.multipart import encode as encode_form
from fluxway.api.multipart import parse as parse_form
from fluxway.api.surface import (
    Answer,
    Incoming,
    Prepare,
    Upstream,
    Work,
    json_answer,
    json_object,
    not_supported,
    provider_route,
    send_routed,
    serve,
    upstream_json,
)
from fluxway.canonical import JSON, CanonicalRequest, Credentials, Endpoint, HttpCall, Target, Usage
from fluxway.errors import GatewayError, bad_request, forbidden, missing_field
from fluxway.policy.hooks import CallContext
from fluxway.runtime import Runtime
from fluxway.store.objects import OwnedObject

log = logging.getLogger("fluxway.surface")

PROVIDER_HEADER = "x-fluxway-provider"
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,256}$")
_FILE = "file"
_BATCH = "batch"


def _not_found(kind: str, id_: str, param: str | None = None) -> GatewayError:
    what = "File" if kind == _FILE else "Batch"
    return GatewayError(404, f"No such {what} object: '{id_}'", param=param or "id", code="not_found")


def _provider_named(rt: Runtime, name: str, endpoint: Endpoint) -> str:
    if rt.cfg.provider(name) is None:
        known = ", ".join(p.name for p in rt.cfg.providers) or "(none)"
        raise bad_request(f"unknown provider '{name}'; known: {known}", param="provider", code="unknown_provider")
    if not rt.executor.adapters[name].supports(endpoint):
        raise not_supported(rt, [name], endpoint, param="provider")
    return name


def _default_provider(rt: Runtime, endpoint: Endpoint) -> str:
    for p in rt.cfg.providers:
        if rt.executor.adapters[p.name].supports(endpoint):
            return p.name
    raise GatewayError(400, f"no configured provider supports /v1/{endpoint.value}", code="unsupported_endpoint")


async def _owned(inc: Incoming, kind: str, id_: str, param: str | None = None) -> OwnedObject:
    if not _ID.match(id_):
        raise _not_found(kind, id_[:80], param)
    owned = await inc.rt.governance.store.objects.get(id_, inc.principal.id, kind)
    if owned is None:
        raise _not_found(kind, id_, param)
    return owned


def _call(endpoint: Endpoint, method: str, suffix: str = "", query: str = "", body: bytes | None = None,
          content_type: str | None = None) -> Callable[[SurfaceAdapter, Target, Credentials], HttpCall]:
    def build(adapter: SurfaceAdapter, target: Target, creds: Credentials) -> HttpCall:
        return adapter.surface_call(endpoint, target, creds, method, suffix, query, body, content_type)

    return build


def _req(endpoint: Endpoint, body: JSON | None = None) -> CanonicalRequest:
    return CanonicalRequest(endpoint, "", body or {})


async def _to(inc: Incoming, provider: str, endpoint: Endpoint, method: str, suffix: str = "", *,
              query: str = "", body: bytes | None = None, content_type: str | None = None,
              stream: bool = False, retry: bool = False) -> Answer:
    """One call to ``provider``'s ``endpoint`` (GETs retried as the default retry says)."""
    from fluxway.config import RetryConfig

    if provider not in inc.rt.executor.adapters:  # held by a provider since removed from the config
        raise GatewayError(502, f"provider '{provider}' that holds this object is no longer configured",
                           type="server_error", code="provider_not_configured")
    route = provider_route(provider, endpoint, RetryConfig() if retry else RetryConfig(attempts=1))
    up, trace = await send_routed(inc, _req(endpoint), route, _call(endpoint, method, suffix, query, body,
                                                                     content_type), stream=stream)
    return Answer.of(up, trace)


# -- batch input files ------------------------------------------------------------------------------


def _batch_lines(data: bytes) -> list[JSON]:
    out: list[JSON] = []
    for i, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise bad_request(f"line {i} of the batch file is not JSON", param="file", code="invalid_batch_file") \
                from None
        body = line.get("body") if isinstance(line, dict) else None
        if not isinstance(body, dict):
            raise bad_request(f"line {i} of the batch file has no 'body' object", param="file",
                              code="invalid_batch_file")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request(f"line {i} of the batch file has no 'body.model'", param="file",
                              code="invalid_batch_file")
        out.append(line)
    if not out:
        raise bad_request("the batch file has no requests", param="file", code="invalid_batch_file")
    return out


def _batch_provider(rt: Runtime, model: str) -> str | None:
    try:
        route = rt.executor.resolve(model)
    except GatewayError:
        return None
    for t in route.targets:
        adapter = rt.executor.adapters[t.provider]
        if adapter.supports(Endpoint.FILES) and adapter.supports(Endpoint.BATCHES):
            return t.provider
    return None


def _rewrite_batch(inc: Incoming, provider: str, lines: list[JSON]) -> tuple[bytes, dict[str, str]]:
    """The file with each line's public model replaced by its target on ``provider``; upstream ->
    public model names (for the batch's usage records)."""
    rt = inc.rt
    models: dict[str, str] = {}
    out: list[bytes] = []
    for i, line in enumerate(lines, 1):
        body = line["body"]
        model = body["model"]
        if not inc.principal.allows(model):
            raise forbidden(f"this API key may not use model '{model}' (line {i} of the batch file)", param="file")
        route = rt.executor.resolve(model)
        target = next((t for t in route.targets if t.provider == provider), None)
        if target is None:
            raise bad_request(f"model '{model}' (line {i} of the batch file) has no target on provider '{provider}'",
                              param="file", code="invalid_batch_file")
        models.setdefault(target.model, model)
        out.append(orjson.dumps({**line, "body": {**body, "model": target.model}}))
    return b"\n".join(out) + b"\n", models


# -- files ------------------------------------------------------------------------------------------


def _upload(inc: Incoming) -> tuple[CanonicalRequest, Work]:
    form = parse_form(inc.body, inc.headers.get("content-type"))
    purpose = form.field("purpose")
    if not purpose:
        raise missing_field("purpose")
    part = form.file("file")
    if part is None:
        raise missing_field("file")
    rt = inc.rt
    named = inc.headers.get(PROVIDER_HEADER) or form.field("provider")
    lines = _batch_lines(part.data) if purpose == "batch" else None
    if named:
        provider = _provider_named(rt, named, Endpoint.FILES)
    elif lines is not None and (found := _batch_provider(rt, lines[0]["body"]["model"])) is not None:
        provider = found
    else:
        provider = _default_provider(rt, Endpoint.FILES)
    models: dict[str, str] | None = None
    if lines is not None:
        data, models = _rewrite_batch(inc, provider, lines)
        form = form.replace_file("file", data)
    form = form.without(["provider"])
    fields = {"purpose": purpose, "filename": part.filename or "", "bytes": len(part.data)}

    async def work(ctx: CallContext) -> Answer:
        body, ct = encode_form(form)
        answer = await _to(inc, provider, Endpoint.FILES, "POST", body=body, content_type=ct)
        obj = upstream_json(_as_upstream(answer))
        if answer.status < 300 and obj is not None and isinstance(obj.get("id"), str):
            meta = {"models": models} if models else None
            stored = await rt.governance.store.objects.put(_FILE, obj["id"], inc.principal.id, provider, obj,
                                                           time.time(), meta)
            if not stored:
                raise GatewayError(502, f"provider '{provider}' returned file id '{obj['id']}' held by another key",
                                   type="server_error", code="upstream_error")
        return answer

    return CanonicalRequest(Endpoint.FILES, "", fields), work


def _as_upstream(answer: Answer) -> Upstream:
    target = answer.target or Target("", "")
    return Upstream(answer.status, {"content-type": answer.content_type}, target, answer.body, answer.stream)


async def upload_file(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(rt, Endpoint.FILES, _upload, scope, receive, send, upload=True, objects=True)


def _query(inc: Incoming) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(inc.query))


def _limit(q: dict[str, str], default: int) -> int:
    raw = q.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise bad_request("'limit' must be a positive integer", param="limit", code="invalid_value")
    return int(raw)


def _lister(kind: str, endpoint: Endpoint, default_limit: int) -> Prepare:
    def prepare(inc: Incoming) -> tuple[CanonicalRequest, Work]:
        q = _query(inc)
        limit = _limit(q, default_limit)
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request("'order' must be 'asc' or 'desc'", param="order", code="invalid_value")

        async def work(ctx: CallContext) -> Answer:
            rows, more = await inc.rt.governance.store.objects.page(
                kind, inc.principal.id, limit, q.get("after") or None, q.get("purpose") or None, order == "asc"
            )
            data = [r.object for r in rows if r.object is not None]
            return json_answer({
                "object": "list", "data": data, "has_more": more,
                "first_id": data[0].get("id") if data else None, "last_id": data[-1].get("id") if data else None,
            })

        return _req(endpoint), work

    return prepare


async def list_files(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(rt, Endpoint.FILES, _lister(_FILE, Endpoint.FILES, 10000), scope, receive, send, objects=True)


async def list_batches(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(rt, Endpoint.BATCHES, _lister(_BATCH, Endpoint.BATCHES, 20), scope, receive, send, objects=True)


def _file_op(id_: str, action: str) -> Prepare:
    def prepare(inc: Incoming) -> tuple[CanonicalRequest, Work]:
        async def work(ctx: CallContext) -> Answer:
            owned = await _owned(inc, _FILE, id_)
            objects = inc.rt.governance.store.objects
            if action == "content":
                return await _to(inc, owned.provider, Endpoint.FILES, "GET", f"/{id_}/content", stream=True,
                                 retry=True)
            if action == "delete":
                answer = await _to(inc, owned.provider, Endpoint.FILES, "DELETE", f"/{id_}")
                if answer.status < 300 or answer.status == 404:
                    await objects.delete(id_, inc.principal.id)
                return answer
            answer = await _to(inc, owned.provider, Endpoint.FILES, "GET", f"/{id_}", retry=True)
            obj = upstream_json(_as_upstream(answer))
            if answer.status < 300 and obj is not None:
                await objects.update(id_, obj)
            return answer

        return _req(Endpoint.FILES, {"id": id_}), work

    return prepare


# -- batches ----------------------------------------------------------------------------------------


def _create_batch(inc: Incoming) -> tuple[CanonicalRequest, Work]:
    data = json_object(inc.body)
    file_id = data.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise missing_field("input_file_id")

    async def work(ctx: CallContext) -> Answer:
        owned = await _owned(inc, _FILE, file_id, "input_file_id")
        named = inc.headers.get(PROVIDER_HEADER)
        if named and named != owned.provider:
            raise bad_request(f"file '{file_id}' is held by provider '{owned.provider}', not '{named}'",
                              param="input_file_id", code="provider_mismatch")
        if not inc.rt.executor.adapters[owned.provider].supports(Endpoint.BATCHES):
            raise not_supported(inc.rt, [owned.provider], Endpoint.BATCHES, param="input_file_id")
        answer = await _to(inc, owned.provider, Endpoint.BATCHES, "POST", body=inc.body,
                           content_type="application/json")
        obj = upstream_json(_as_upstream(answer))
        if answer.status < 300 and obj is not None and isinstance(obj.get("id"), str):
            await inc.rt.governance.store.objects.put(_BATCH, obj["id"], inc.principal.id, owned.provider, obj,
                                                      time.time(), owned.meta)
        return answer

    return CanonicalRequest(Endpoint.BATCHES, "", {k: v for k, v in data.items() if k != "metadata"}), work


async def create_batch(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(rt, Endpoint.BATCHES, _create_batch, scope, receive, send, objects=True)


def _batch_op(id_: str, action: str) -> Prepare:
    def prepare(inc: Incoming) -> tuple[CanonicalRequest, Work]:
        async def work(ctx: CallContext) -> Answer:
            owned = await _owned(inc, _BATCH, id_)
            if action == "cancel":
                answer = await _to(inc, owned.provider, Endpoint.BATCHES, "POST", f"/{id_}/cancel")
            else:
                answer = await _to(inc, owned.provider, Endpoint.BATCHES, "GET", f"/{id_}", retry=True)
            obj = upstream_json(_as_upstream(answer))
            if answer.status < 300 and obj is not None:
                await inc.rt.governance.store.objects.update(id_, obj)
                await _adopt_outputs(inc, owned, obj)
                if obj.get("status") == "completed" and not owned.usage_recorded:
                    await record_batch_usage(inc, ctx, owned, obj)
            return answer

        return _req(Endpoint.BATCHES, {"id": id_}), work

    return prepare


async def _adopt_outputs(inc: Incoming, owned: OwnedObject, batch: JSON) -> None:
    """A batch's output and error files belong to the batch's owner (the upstream made them)."""
    objects = inc.rt.governance.store.objects
    for name, purpose in (("output_file_id", "batch_output"), ("error_file_id", "batch_output")):
        fid = batch.get(name)
        if not isinstance(fid, str) or not _ID.match(fid):
            continue
        if await objects.get(fid, owned.key_id, _FILE) is None:
            stub = {"id": fid, "object": "file", "purpose": purpose, "filename": f"{owned.id}_{name[:-8]}.jsonl",
                    "bytes": None, "created_at": int(time.time()), "status": "processed"}
            await objects.put(_FILE, fid, owned.key_id, owned.provider, stub, time.time())


def record_id(batch_id: str, line: int) -> str:
    """A batch line's usage record id: the same on every try (the store keeps one record per id)."""
    return "b" + hashlib.sha256(f"{batch_id}\0{line}".encode()).hexdigest()[:31]


def _public_model(meta: dict[str, Any] | None, upstream: str) -> str:
    models = (meta or {}).get("models")
    if not isinstance(models, dict) or not models:
        return upstream
    if upstream in models:
        return str(models[upstream])
    for sent, public in sorted(models.items(), key=lambda kv: -len(kv[0])):  # a dated snapshot of it
        if upstream.startswith(sent):
            return str(public)
    return str(next(iter(models.values()))) if len(models) == 1 else upstream


def batch_records(inc: Incoming, ctx: CallContext, owned: OwnedObject, batch: JSON, output: bytes,
                  now: float) -> list[dict[str, Any]]:
    """One usage record per line of a completed batch's output file."""
    pricer = inc.rt.governance.pricer
    p = inc.principal
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    records: list[dict[str, Any]] = []
    for i, raw in enumerate(output.split(b"\n")):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        resp = line.get("response") if isinstance(line, dict) else None
        if not isinstance(resp, dict):
            continue
        found = resp.get("body")
        body: JSON = found if isinstance(found, dict) else {}
        status = resp.get("status_code")
        upstream_model = str(body.get("model") or "")
        usage = Usage.from_openai(body.get("usage")) or Usage()
        target = Target(owned.provider, upstream_model)
        usd, known = pricer.cost(target, usage)
        records.append({
            "id": record_id(owned.id, i),
            "request_id": ctx.request_id,
            "created_at": now,
            "day": day,
            "key_id": p.id,
            "team": p.team,
            "endpoint": "batch",
            "model": _public_model(owned.meta, upstream_model)[:256],
            "provider": owned.provider,
            "upstream_model": upstream_model[:256],
            "status": status if isinstance(status, int) and not isinstance(status, bool) else 200,
            "stream": False,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
            "cost_usd": usd,
            "price_known": known,
            "estimated": False,
            "latency_ms": 0.0,
            "ttft_ms": None,
            "attempts": 1,
            "cache": "off",
            "error": None,
            "tags": None,
            "body_status": "off",
        })
    return records


async def record_batch_usage(inc: Incoming, ctx: CallContext, owned: OwnedObject, batch: JSON) -> int:
    """Record a completed batch's usage, once: claim it, read its output file, spool the records."""
    output_id = batch.get("output_file_id")
    if not isinstance(output_id, str) or not _ID.match(output_id):
        return 0
    objects = inc.rt.governance.store.objects
    now = time.time()
    if not await objects.claim_usage(owned.id, now):
        return 0
    try:
        answer = await _to(inc, owned.provider, Endpoint.FILES, "GET", f"/{output_id}/content", retry=True)
        if answer.status >= 300:
            raise RuntimeError(f"its output file answered {answer.status}")
        records = batch_records(inc, ctx, owned, batch, answer.body, now)
        recorder = inc.rt.governance.usage
        for rec in records:
            recorder.spool.append(rec)
    except Exception as exc:
        await objects.unclaim_usage(owned.id)  # the next fetch tries again
        log.warning("batch %s: usage not recorded yet: %s", owned.id, exc)
        return 0
    log.info("batch %s completed: %d usage records", owned.id, len(records))
    return len(records)


# -- dispatch ---------------------------------------------------------------------------------------


async def object_handler(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> bool:
    """``/v1/files/{id}[/content]`` and ``/v1/batches/{id}[/cancel]``; False when the path is none."""
    path: str = scope["path"]
    rest = path[3:] if path.startswith("/v1/") else path
    method = scope["method"]
    kind, _, tail = rest[1:].partition("/")
    id_, _, action = tail.partition("/")
    if not id_:
        return False
    if kind == "files":
        op = {("GET", ""): "get", ("DELETE", ""): "delete", ("GET", "content"): "content"}.get((method, action))
        if op is None:
            return False
        await serve(rt, Endpoint.FILES, _file_op(id_, op), scope, receive, send, objects=True)
        return True
    if kind == "batches":
        op = {("GET", ""): "get", ("POST", "cancel"): "cancel"}.get((method, action))
        if op is None:
            return False
        await serve(rt, Endpoint.BATCHES, _batch_op(id_, op), scope, receive, send, objects=True)
        return True
    return False
