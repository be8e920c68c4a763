"""The pass-through surface (issue 11): files, batches, images, audio and rerank through Fluxway to a
mock OpenAI-compatible upstream, with the official openai SDK; ownership per key, allowlists,
limits, capability errors, malformed multipart, and usage records (a batch's once)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import sqlalchemy as sa

from fluxway.store.tables import usage_records
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_surface import AUDIO, LINE_USAGE, SurfaceUpstream, surface_upstream

MASTER = "sk-master"


def _config(url: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "auth": {"master_key": MASTER},
        "providers": [
            {"name": "up", "type": "openai", "base_url": url + "/v1", "api_keys": ["sk-a"]},
            {"name": "compat", "type": "openai-compatible", "base_url": url + "/v1"},
            {"name": "co", "type": "cohere", "base_url": url, "api_keys": ["co-key"]},
            {"name": "anth", "type": "anthropic", "base_url": url, "api_keys": ["an-key"]},
        ],
        "models": [
            {"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]},
            {"name": "img", "targets": [{"provider": "up", "model": "dall-e-3", "price": {"per_image": 0.04}}]},
            {"name": "tts", "targets": [{"provider": "up", "model": "tts-1", "price": {"per_mchar": 15.0}}]},
            {"name": "whisper", "targets": [{"provider": "up", "model": "whisper-1",
                                             "price": {"per_audio_second": 0.0001}}]},
            {"name": "rr", "targets": [{"provider": "compat", "model": "bge-reranker"}]},
            {"name": "co-rr", "targets": [{"provider": "co", "model": "rerank-v3.5"}]},
            {"name": "claude", "targets": [{"provider": "anth", "model": "claude-sonnet-4-5"}]},
        ],
    }
    cfg.update(extra)
    return cfg


@asynccontextmanager
async def _setup(**extra: Any) -> AsyncIterator[tuple[SurfaceUpstream, Gateway]]:
    async with surface_upstream() as up, run_gateway(_config(up.url, **extra)) as gw:
        yield up, gw


def _client(gw: Gateway, key: str = MASTER) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


class _Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status_code, self.headers, self.text = status, headers, body.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.text)


async def _http(method: str, url: str, key: str = MASTER, *, json: Any = None, content: bytes | None = None,
                content_type: str | None = None) -> _Reply:
    headers = {"authorization": f"Bearer {key}"}
    if content_type:
        headers["content-type"] = content_type
    async with aiohttp.ClientSession() as http, http.request(method, url, json=json, data=content,
                                                             headers=headers) as r:
        return _Reply(r.status, r.headers, await r.read())


async def _key(gw: Gateway, **fields: Any) -> str:
    r = await _http("POST", gw.url + "/admin/keys", json={"name": "k", **fields})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def _records(gw: Gateway, endpoint: str) -> list[dict[str, Any]]:
    gov = gw.runtime.governance
    await gov.usage.flush()
    async with gov.store.engine.connect() as conn:
        rows = await conn.execute(sa.select(usage_records).where(usage_records.c.endpoint == endpoint))
        return [dict(r) for r in rows.mappings()]


async def test_files_round_trip_and_stay_private_to_their_key() -> None:
    async with _setup() as (up, gw):
        alice, bob = _client(gw, await _key(gw)), _client(gw, await _key(gw))
        created = await alice.files.create(file=("notes.txt", b"hello files", "text/plain"), purpose="user_data")
        assert created.id.startswith("file-") and created.bytes == 11 and created.filename == "notes.txt"
        assert up.uploads[-1]["file"] == b"hello files" and up.uploads[-1]["purpose"] == "user_data"
        assert (await alice.files.retrieve(created.id)).id == created.id
        assert [f.id async for f in alice.files.list()] == [created.id]
        content = await alice.files.content(created.id)
        assert content.content == b"hello files"
        # Another key: the file does not exist for it.
        assert [f.id async for f in bob.files.list()] == []
        for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
            with pytest.raises(openai.NotFoundError) as err:
                await call(created.id)  # type: ignore[operator]
            assert created.id in err.value.message
        assert created.id in up.files  # bob's delete never reached the upstream
        deleted = await alice.files.delete(created.id)
        assert deleted.deleted is True and created.id not in up.files
        with pytest.raises(openai.NotFoundError):
            await alice.files.retrieve(created.id)
        records = await _records(gw, "files")
        assert {r["status"] for r in records} == {200, 404}
        assert all(r["cost_usd"] == 0 for r in records)


def _batch_file(*models: str) -> bytes:
    return b"\n".join(orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"model": m, "messages": [{"role": "user", "content": "hi"}]}})
                      for i, m in enumerate(models)) + b"\n"


async def test_a_batch_lifecycle_records_its_usage_once() -> None:
    async with _setup() as (up, gw):
        key = await _key(gw, models=["smart"])
        client = _client(gw, key)
        f = await client.files.create(file=("in.jsonl", _batch_file("smart", "smart", "smart"), "application/jsonl"),
                                      purpose="batch")
        sent = [orjson.loads(line) for line in up.uploads[-1]["file"].splitlines()]
        assert [line["body"]["model"] for line in sent] == ["gpt-4o-mini"] * 3  # the public model rewritten
        batch = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")
        assert batch.status == "validating"
        assert (await client.batches.retrieve(batch.id)).status == "validating"
        assert await _records(gw, "batch") == []
        assert [b.id async for b in client.batches.list()] == [batch.id]
        up.complete(batch.id)
        done = await client.batches.retrieve(batch.id)
        assert done.status == "completed" and done.output_file_id
        output = await client.files.content(done.output_file_id)
        assert [orjson.loads(line)["custom_id"] for line in output.content.splitlines()] == ["r0", "r1", "r2"]
        for _ in range(2):  # fetched again: no second set of records
            assert (await client.batches.retrieve(batch.id)).status == "completed"
        records = await _records(gw, "batch")
        assert len(records) == 3
        assert {(r["model"], r["provider"], r["upstream_model"]) for r in records} == {
            ("smart", "up", "gpt-4o-mini-2024-07-18")}
        assert all(r["prompt_tokens"] == LINE_USAGE["prompt_tokens"] for r in records)
        assert all(r["completion_tokens"] == LINE_USAGE["completion_tokens"] for r in records)
        assert all(r["price_known"] and r["cost_usd"] > 0 for r in records)
        usage = (await _http("GET", gw.url + "/admin/usage?group_by=model")).json()
        assert "smart" in orjson.dumps(usage).decode()
        # The output file is the caller's to read, only through the batch's owner.
        other = _client(gw, await _key(gw))
        with pytest.raises(openai.NotFoundError):
            await other.batches.retrieve(batch.id)
        with pytest.raises(openai.NotFoundError):
            await other.files.content(done.output_file_id)
        with pytest.raises(openai.NotFoundError):
            await other.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        second = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
        assert (await client.batches.cancel(second.id)).status == "cancelling"
        assert [b.id async for b in client.batches.list()] == [second.id, batch.id]


async def test_a_batch_file_may_only_name_models_the_key_may_use() -> None:
    async with _setup() as (up, gw):
        client = _client(gw, await _key(gw, models=["smart"]))
        with pytest.raises(openai.PermissionDeniedError) as err:
            await client.files.create(file=("in.jsonl", _batch_file("smart", "img"), "application/jsonl"),
                                      purpose="batch")
        assert "'img' (line 2" in err.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            await client.files.create(file=("in.jsonl", b"{not json\n", "application/jsonl"), purpose="batch")
        assert "line 1" in bad.value.message
        assert up.uploads == []


async def test_images_speech_and_transcriptions_pass_through_and_are_priced() -> None:
    async with _setup() as (up, gw):
        client = _client(gw, await _key(gw))
        images = await client.images.generate(model="img", prompt="a cat", n=2)
        assert [i.url for i in images.data or []] == ["https://img/0.png", "https://img/1.png"]
        assert up.up.requests[-1].json()["model"] == "dall-e-3"
        speech = await client.audio.speech.create(model="tts", voice="alloy", input="hello")
        assert speech.content == AUDIO
        assert speech.response.headers["content-type"] == "audio/mpeg"
        assert speech.response.headers["x-fluxway-provider"] == "up"
        audio = b"RIFF\x00\x01binary\r\n--not-a-boundary\r\n" + bytes(range(256))
        text = await client.audio.transcriptions.create(model="whisper", file=("a.wav", audio, "audio/wav"),
                                                        language="en")
        assert text.text == "hello world"
        seen = up.uploads[-1]
        assert (seen["file"], seen["filename"], seen["file_type"]) == (audio, "a.wav", "audio/wav")
        assert (seen["model"], seen["language"]) == ("whisper-1", "en")
        [img] = await _records(gw, "images")
        assert img["cost_usd"] == pytest.approx(0.08) and img["price_known"] and img["upstream_model"] == "dall-e-3"
        [tts] = await _records(gw, "audio.speech")
        assert tts["cost_usd"] == pytest.approx(5 * 15.0 / 1e6) and tts["status"] == 200
        [stt] = await _records(gw, "audio.transcriptions")
        assert stt["cost_usd"] == pytest.approx(3 * 0.0001) and stt["model"] == "whisper"


async def test_rerank_through_an_openai_compatible_server_and_cohere() -> None:
    async with _setup() as (up, gw):
        key = await _key(gw)
        body = {"model": "rr", "query": "q", "documents": ["a", "b", "c"], "top_n": 2}
        r = await _http("POST", gw.url + "/v1/rerank", key, json=body)
        assert r.status_code == 200, r.text
        assert [x["index"] for x in r.json()["results"]] == [0, 1]
        assert r.headers["x-fluxway-provider"] == "compat"
        assert up.up.requests[-1].json()["model"] == "bge-reranker"
        r = await _http("POST", gw.url + "/v1/rerank", key, json={**body, "model": "co-rr"})
        assert r.status_code == 200, r.text
        seen = up.up.requests[-1]
        assert (seen.path, seen.json()["model"], seen.headers["authorization"]) == (
            "/v2/rerank", "rerank-v3.5", "Bearer co-key")
        [rec] = [r for r in await _records(gw, "rerank") if r["provider"] == "compat"]
        assert rec["prompt_tokens"] == 42 and rec["price_known"] is False and rec["cost_usd"] == 0


async def test_a_provider_without_the_endpoint_is_named_in_a_400() -> None:
    async with _setup() as (_, gw):
        client = _client(gw)
        with pytest.raises(openai.BadRequestError) as err:
            await client.audio.speech.create(model="claude", voice="alloy", input="hi")
        assert err.value.body == {"message": "provider 'anth' (type anthropic) does not support /v1/audio/speech",
                                  "type": "invalid_request_error", "param": "model", "code": "unsupported_endpoint"}
        assert err.value.code == "unsupported_endpoint"
        r = await _http("POST", gw.url + "/v1/rerank", json={"model": "smart", "query": "q", "documents": ["a"]})
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "provider 'up' (type openai) does not support /v1/rerank"
        with pytest.raises(openai.BadRequestError) as err:
            await client.files.create(file=("a", b"x"), purpose="user_data",
                                      extra_headers={"x-fluxway-provider": "anth"})
        assert "provider 'anth' (type anthropic) does not support /v1/files" in err.value.message
        with pytest.raises(openai.BadRequestError) as err:
            await client.files.create(file=("a", b"x"), purpose="user_data", extra_headers={"x-fluxway-provider": "zz"})
        assert "unknown provider 'zz'" in err.value.message


async def test_allowlists_unknown_models_and_rate_limits_apply() -> None:
    async with _setup() as (_, gw):
        limited = _client(gw, await _key(gw, models=["smart"]))
        with pytest.raises(openai.PermissionDeniedError):
            await limited.images.generate(model="img", prompt="a cat")
        with pytest.raises(openai.NotFoundError) as err:
            await _client(gw).images.generate(model="nope", prompt="a cat")
        assert err.value.code == "model_not_found"
        slow = _client(gw, await _key(gw, rpm=1))
        await slow.images.generate(model="img", prompt="a cat")
        with pytest.raises(openai.RateLimitError):
            await slow.images.generate(model="img", prompt="a cat")


async def test_malformed_multipart_is_a_400_naming_the_problem() -> None:
    async with _setup(server={"max_upload_bytes": 4096}) as (_, gw):
        good = (b"--xyz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n"
                b"--xyz\r\nContent-Disposition"
                b": form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                b"\r\nRIFF\r\n--xyz--\r\n")
        cases = [
            ("multipart/form-data", good, "no usable boundary"),
            ("multipart/form-data; boundary=abc", good, "does not start with the boundary"),
            ("multipart/form-data; boundary=xyz", good[:-9], "ends before its closing boundary"),
            ("multipart/form-data; boundary=xyz", good.replace(b"Content-Disposition", b"X-Other"),
             "no Content-Disposition"),
            ("multipart/form-data; boundary=xyz", good.replace(b"\r\n\r\nwhisper", b"whisper"),
             "part header line has no ':'"),
            ("application/json", b"{}", "expected a multipart/form-data body"),
            ("multipart/form-data; boundary=xyz", good.replace(b"name=\"file\"", b"name=\"other\""), "'file'"),
        ]
        for path in ("/v1/audio/transcriptions", "/v1/files"):
            for ct, body, problem in cases:
                if path == "/v1/files" and problem == "'file'":
                    continue
                r = await _http("POST", gw.url + path, content=body, content_type=ct)
                assert r.status_code == 400, (path, problem, r.text)
                assert problem in r.json()["error"]["message"], (path, r.text)
        r = await _http("POST", gw.url + "/v1/files", content=b"x" * 5000,
                        content_type="multipart/form-data; boundary=xyz")
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = await _http("POST", gw.url + "/v1/rerank", content=b"{nope", content_type="application/json")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


async def test_a_budget_is_charged_the_price_of_what_was_generated() -> None:
    async with _setup() as (_, gw):
        client = _client(gw, await _key(gw, budget={"amount_usd": 0.05, "period": "monthly"}))
        await client.images.generate(model="img", prompt="a cat", n=2)  # $0.08: past the budget now
        with pytest.raises(openai.RateLimitError) as err:
            await client.images.generate(model="img", prompt="a cat")
        assert err.value.code == "budget_exceeded"
        with pytest.raises(openai.PermissionDeniedError):  # no price known, and the key has a budget
            await client.post("/rerank", body={"model": "rr", "query": "q", "documents": ["a"]}, cast_to=object)


async def test_a_file_goes_to_the_provider_the_caller_names() -> None:
    async with _setup() as (up, gw):
        client = _client(gw, await _key(gw))
        f = await client.files.create(file=("a.txt", b"x"), purpose="user_data")
        assert up.up.requests[-1].headers["authorization"] == "Bearer sk-a"  # the first provider with files
        g = await client.files.create(file=("b.txt", b"y"), purpose="user_data",
                                      extra_headers={"x-fluxway-provider": "compat"})
        assert "authorization" not in up.up.requests[-1].headers  # compat: no key
        await client.files.retrieve(g.id)
        assert "authorization" not in up.up.requests[-1].headers  # fetched where it lives
        await client.files.retrieve(f.id)
        assert up.up.requests[-1].headers["authorization"] == "Bearer sk-a"
        body, ct = (b"--q\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
                    b"--q\r\nContent-Disposition: form-data; name=\"provider\"\r\n\r\ncompat\r\n"
                    b"--q\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.txt\"\r\n\r\nz\r\n--q--\r\n",
                    "multipart/form-data; boundary=q")
        r = await _http("POST", gw.url + "/v1/files", content=body, content_type=ct)
        assert r.status_code == 200 and r.headers["x-fluxway-provider"] == "compat", r.text
        assert "provider" not in up.uploads[-1]  # the routing field is not sent on
