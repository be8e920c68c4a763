"""A routed stream after its first chunk: the rest of it, and its mid-stream failover.

With ``stream_failover`` on, a leg that breaks after partial output is continued on another target
that can continue a partial answer (:mod:`.continuation`), with what is left of the output budget;
the client sees one stream, and the usage is the sum of the legs. Where no target can continue, the
stream ends with an error event rather than splicing two different answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fluxway.adapters.base import StreamDecoder
from fluxway.canonical import JSON, CanonicalRequest, Endpoint, StreamChunk, Target, UpstreamError, Usage
from fluxway.errors import GatewayError
from fluxway.policy.hooks import ModelFilter
from fluxway.routing.continuation import (
    Continuer,
    add_usage,
    leg_usage,
    remaining_budget,
    streamed_tokens,
    trim_echo,
)
from fluxway.routing.health import Permit
from fluxway.routing.transport import OpenStream

if TYPE_CHECKING:
    from fluxway.routing.executor import Executor, Route, Trace
    from fluxway.tracing.spans import AttemptSpan

log = logging.getLogger("fluxway.executor")


@dataclass(slots=True)
class Leg:
    """One upstream stream after its first chunk (``body``: the request it answers)."""

    target: Target
    permit: Permit
    upstream: OpenStream
    decoder: StreamDecoder
    chunks: AsyncIterator[bytes]
    first: list[StreamChunk]
    body: JSON
    ended: bool = False
    span: AttemptSpan | None = None  # its attempt's trace span (tracing on), ended with the leg

    def close(self) -> None:
        self.upstream.close()


def _mark(data: JSON, key: str, value: object) -> None:
    marker = data.get("x_fluxway")
    data["x_fluxway"] = {**(marker if isinstance(marker, dict) else {}), key: value}


class RoutedStream:
    """A stream that has produced its first chunks; ``rest()`` yields the others."""

    def __init__(
        self,
        executor: Executor,
        req: CanonicalRequest,
        route: Route,
        leg: Leg,
        trace: Trace,
        allows: ModelFilter | None = None,
    ) -> None:
        self._executor = executor
        self._req = req
        self._route = route
        self._allows = allows
        self._leg = leg
        self.target = leg.target
        self.trace = trace
        self.first = leg.first
        self.usage: Usage | None = None
        # The generated text (content and tool-call arguments), for Fluxway's own count when the
        # upstream reports no usage.
        self.texts: list[str] = []
        self.failovers: list[dict[str, object]] = []
        self._failover_on = route.stream_failover
        self._text: list[str] = []  # the answer so far (with failover on): a continuation's prefix
        self._leg_text: list[str] = []  # the current leg's part of it
        self._leg_usage: Usage | None = None  # what the current leg reported
        self._prior: Usage | None = None  # the legs before the current one, summed
        self._trim: str | None = None  # a prefill whose echoed trailing whitespace the next text drops
        self._no_continue: str | None = None  # why the answer cannot be continued
        self._done = False
        self._closed = False  # closed by the caller (the client went away): not the upstream's fault
        self._id: object = None  # the stream's chunk id; continuation legs are renamed to it
        self.finish_reason: str | None = None  # the last one seen
        self._model: object = None
        self._track(leg.first)

    def _track(self, chunks: list[StreamChunk]) -> list[StreamChunk]:
        for c in chunks:
            data = c.data
            if self._id is None:
                self._id = data.get("id")
                self._model = data.get("model")
            elif self.failovers:
                self._splice(c)
            u = data.get("usage")
            if u:
                self._leg_usage = usage = Usage.from_openai(u)
                if self._prior is not None and usage is not None:
                    usage = add_usage(self._prior, usage)  # the client sees the sum of the legs
                    data["usage"] = usage.to_openai()
                    if usage.estimated:
                        _mark(data, "usage_estimated", True)
                    c.raw = None
                self.usage = usage
            for choice in data.get("choices") or ():
                delta = choice.get("delta") or choice
                text = delta.get("content") or delta.get("text")
                if isinstance(text, str) and text:
                    if self._trim is not None:
                        text = trim_echo(text, self._trim)
                        self._trim = None
                        if text != delta.get("content"):
                            delta["content"] = text
                            c.raw = None
                    self.texts.append(text)
                    if self._failover_on:
                        self._text.append(text)
                        self._leg_text.append(text)
                calls = delta.get("tool_calls")
                if calls:
                    for call in calls:
                        args = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
                        if isinstance(args, str) and args:
                            self.texts.append(args)
                    if self._failover_on:
                        self._no_continue = "it holds a tool call"
                finish = choice.get("finish_reason")
                if finish:
                    self.finish_reason = finish
                    if self.failovers:
                        _mark(data, "stream_failover", self.failovers)
                        c.raw = None
        return chunks

    def _splice(self, c: StreamChunk) -> None:
        """A continuation chunk made to look like the rest of the first stream: its id, no new role."""
        data = c.data
        if "id" in data and data["id"] != self._id:
            data["id"] = self._id
            c.raw = None
        for choice in data.get("choices") or ():
            delta = choice.get("delta")
            if isinstance(delta, dict) and "role" in delta:
                del delta["role"]
                c.raw = None

    async def rest(self) -> AsyncIterator[StreamChunk]:
        """The remaining chunks; raises UpstreamError if the upstream breaks mid-stream."""
        board = self._executor.board
        while True:
            leg = self._leg
            try:
                if not leg.ended:
                    async for data in leg.chunks:
                        for c in self._track(leg.decoder.feed(data)):
                            yield c
                    for c in self._track(leg.decoder.close()):
                        yield c
            except UpstreamError as err:
                self._executor.redactor.error(err)  # the message reaches the client, logs and records
                if self._closed:
                    raise
                err.target = err.target or leg.target.key
                self.trace.errors.append(err)
                if leg.span is not None:
                    leg.span.fail(err)
                board.record_failure(leg.permit, err.kind, err.retry_after)
                leg.close()
                if not self._failover_on:
                    raise
                self._fold_leg()
                try:
                    nxt = await self._failover(err)
                finally:
                    self.usage = self._prior
                if nxt is None:  # nothing left of the output budget: the answer ends here
                    yield self._length_finish()
                    self._done = True
                    return
                self._leg = nxt
                for c in self._track(nxt.first):
                    yield c
                continue
            except BaseException:
                board.release(leg.permit)
                leg.close()
                if leg.span is not None:
                    leg.span.cancel()
                raise
            board.record_success(leg.permit)
            leg.upstream.release()
            if leg.span is not None:
                leg.span.streamed(leg.first[0].data if leg.first else None, self._leg_usage, self.finish_reason)
            if self._prior is not None and self._leg_usage is None:
                self.usage = add_usage(self._prior, leg_usage(leg.body, "".join(self._leg_text), leg.target.model))
            self._done = True
            return

    def _fold_leg(self) -> None:
        """The broken leg's usage (its own, else Fluxway's count) joins the sum of the legs."""
        used = self._leg_usage or leg_usage(self._leg.body, "".join(self._leg_text), self._leg.target.model)
        self._prior = used if self._prior is None else add_usage(self._prior, used)
        self._leg_usage = None
        self._leg_text = []

    async def _failover(self, err: UpstreamError) -> Leg | None:
        """Continue on a target that can continue the partial answer; None: no output budget left.
        Raises ``err`` (saying why) when the answer cannot be continued."""
        if self._req.endpoint is not Endpoint.CHAT:
            raise err
        ex = self._executor
        failed = self._leg.target.key
        partial = "".join(self._text)
        n = self._req.body.get("n")
        why = self._no_continue or ("it has several choices (n > 1)" if isinstance(n, int) and n > 1 else None)
        if why and partial:
            raise _not_continued(err, why)
        streamed = streamed_tokens(partial, self._leg.target.model)
        remaining = remaining_budget(self._req.body, streamed)
        entry: dict[str, object] = {"from": failed, "error": err.kind.value, "after_chars": len(partial)}
        if remaining is not None and remaining <= 0:
            self.failovers.append({**entry, "to": None, "after_tokens": streamed})
            return None
        exclude = set(self.trace.tried)
        if partial:
            targets = [t for r in ex.chain(self._route, self._allows) for t in r.targets if t.key not in exclude]
            cannot = [t.key for t in targets if ex.continuation(t) == "none"]
            exclude.update(cannot)
            if len(cannot) == len(targets):
                skipped = f" ({', '.join(cannot)}: continuation none)" if cannot else ""
                raise _not_continued(err, f"no other target of model '{self._route.name}' can continue it{skipped}")
        if self.trace.span is not None:
            self.trace.span.failover = True  # the attempts from here on continue this stream
        try:
            leg = await ex.run(
                self._req, self._route, Continuer(ex, partial, remaining), self.trace, frozenset(exclude), self._allows
            )
        except (GatewayError, UpstreamError) as exc:
            log.warning("mid-stream failover from %s found no target", failed)
            raise _not_continued(err, f"every target that could continue it failed ({exc})") from None
        kind = ex.continuation(leg.target) if partial else "restart"
        if kind == "prefill":
            self._trim = partial
        ex.counters.stream_failovers += 1
        self.failovers.append({**entry, "to": leg.target.key, "continuation": kind, "after_tokens": streamed})
        self.target = leg.target
        log.info("stream continued on %s after %s broke (%s)", leg.target.key, failed, err.kind.value)
        return leg

    def _length_finish(self) -> StreamChunk:
        choice: JSON = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
        data: JSON = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self._model,
            "choices": [choice],
            "x_fluxway": {"stream_failover": self.failovers},
        }
        return StreamChunk(data)

    @property
    def done(self) -> bool:
        """The upstream finished the stream (its last chunk has been read)."""
        return self._done

    def close(self) -> None:
        """Drop the upstream stream (the client went away); a reader in ``rest()`` stops at once."""
        if not self._done and not self._closed:
            self._closed = True
            self._executor.board.release(self._leg.permit)
            self._leg.close()
            if self._leg.span is not None:
                self._leg.span.cancel()


def _not_continued(err: UpstreamError, why: str) -> UpstreamError:
    err.message = f"{err.message}; the partial answer was not continued: {why}"
    return err
