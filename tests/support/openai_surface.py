"""An OpenAI-compatible upstream for the pass-through surface: files, batches, images, speech,
transcriptions and rerank, kept in memory (one instance per test).

:meth:`SurfaceUpstream.complete` finishes a batch the way OpenAI does: an output file with one
line per input line, each answer carrying ``usage`` (10 prompt + 5 completion tokens).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support.openai_upstream import chat_handler
from tests.support.replies import json_reply
from tests.support.upstream import FakeUpstream

AUDIO = bytes(range(256)) * 64  # 16 KiB of "audio", sent in pieces
LINE_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@dataclass
class Upload:
    filename: str | None
    content_type: str
    data: bytes


async def form_of(request: web.Request) -> dict[str, str | Upload]:
    """A multipart body as the stdlib's MIME parser reads it (independent of Fluxway's parser):
    text fields as str, file parts as :class:`Upload`."""
    raw = await request.read()
    head = f"Content-Type: {request.headers['content-type']}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    assert msg.is_multipart(), "not a multipart body"
    out: dict[str, str | Upload] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        filename = part.get_filename()
        out[name] = data.decode() if filename is None else Upload(filename, part.get_content_type(), data)
    return out


class SurfaceUpstream:
    def __init__(self, up: FakeUpstream) -> None:
        self.up = up
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.uploads: list[dict[str, Any]] = []  # each upload's form, as the upstream parsed it
        self._ids = itertools.count(1)
        up.fallback = self.dispatch
        up.route("POST", "/v1/chat/completions", chat_handler)

    @property
    def url(self) -> str:
        return self.up.url

    def _file(self, purpose: str, filename: str, data: bytes) -> dict[str, Any]:
        fid = f"file-{next(self._ids)}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": 1700000000, "filename": filename,
               "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}
        self.files[fid] = obj
        self.contents[fid] = data
        return obj

    def complete(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        out: list[bytes] = []
        for line in self.contents[batch["input_file_id"]].splitlines():
            if not line.strip():
                continue
            req = orjson.loads(line)
            body = {"id": "chatcmpl-x", "object": "chat.completion", "created": 1,
                    "model": req["body"]["model"] + "-2024-07-18", "usage": LINE_USAGE,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                 "finish_reason": "stop"}]}
            out.append(orjson.dumps({"id": "r", "custom_id": req["custom_id"], "error": None,
                                     "response": {"status_code": 200, "request_id": "q", "body": body}}))
        output = self._file("batch_output", "out.jsonl", b"\n".join(out) + b"\n")
        batch.update(status="completed", output_file_id=output["id"],
                     request_counts={"total": len(out), "completed": len(out), "failed": 0})

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path, request.method
        if (method, path) == ("POST", "/v1/files"):
            form = await form_of(request)
            upload = form["file"]
            assert isinstance(upload, Upload)
            self.uploads.append({k: v for k, v in form.items() if k != "file"} | {"file": upload.data,
                                                                                    "filename": upload.filename})
            return json_reply(self._file(str(form["purpose"]), upload.filename or "", upload.data))
        if (method, path) == ("GET", "/v1/files"):
            return json_reply({"object": "list", "data": list(self.files.values()), "has_more": False})
        if m := re.fullmatch(r"/v1/files/([^/]+)(/content)?", path):
            fid = m.group(1)
            if fid not in self.files:
                return json_reply({"error": {"message": f"No such File object: {fid}", "type": "invalid_request_error",
                                             "param": "id", "code": None}}, status=404)
            if m.group(2) and method == "GET":
                return web.Response(body=self.contents[fid], content_type="application/octet-stream")
            if method == "DELETE":
                del self.files[fid]
                return json_reply({"id": fid, "object": "file", "deleted": True})
            return json_reply(self.files[fid])
        if (method, path) == ("POST", "/v1/batches"):
            body = await request.json()
            bid = f"batch_{next(self._ids)}"
            self.batches[bid] = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                                 "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                                 "status": "validating", "output_file_id": None, "error_file_id": None,
                                 "created_at": 1700000000, "metadata": body.get("metadata")}
            return json_reply(self.batches[bid])
        if m := re.fullmatch(r"/v1/batches/([^/]+)(/cancel)?", path):
            batch = self.batches.get(m.group(1))
            if batch is None:
                return json_reply({"error": {"message": "No such batch"}}, status=404)
            if m.group(2):
                batch["status"] = "cancelling"
            return json_reply(batch)
        if (method, path) == ("POST", "/v1/images/generations"):
            body = await request.json()
            n = int(body.get("n") or 1)
            return json_reply({"created": 1, "data": [{"url": f"https://img/{i}.png"} for i in range(n)]})
        if (method, path) == ("POST", "/v1/audio/speech"):
            resp = web.StreamResponse(headers={"content-type": "audio/mpeg"})
            await resp.prepare(request)
            for i in range(0, len(AUDIO), 4096):
                await resp.write(AUDIO[i:i + 4096])
            await resp.write_eof()
            return resp
        if (method, path) == ("POST", "/v1/audio/transcriptions"):
            form = await form_of(request)
            upload = form["file"]
            assert isinstance(upload, Upload)
            self.uploads.append({k: v for k, v in form.items() if k != "file"} | {
                "file": upload.data, "filename": upload.filename, "file_type": upload.content_type})
            return json_reply({"text": "hello world", "usage": {"type": "duration", "seconds": 3}})
        if method == "POST" and path in ("/v1/rerank", "/v2/rerank"):  # vLLM/Jina style, Cohere v2
            body = await request.json()
            docs = body["documents"]
            results = sorted(({"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(docs))),
                             key=lambda r: -float(r["relevance_score"]))
            return json_reply({"id": "rr-1", "model": body["model"], "results": results[: body.get("top_n") or None],
                               "usage": {"total_tokens": 42}})
        return json_reply({"error": {"message": f"no route {method} {path}"}}, status=404)


@asynccontextmanager
async def surface_upstream() -> AsyncIterator[SurfaceUpstream]:
    async with FakeUpstream() as up:
        yield SurfaceUpstream(up)
