"""The ``events`` config section: strict, every problem with its path."""

from __future__ import annotations

from typing import Any

import pytest

from fluxway.config import ConfigError, parse


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data, env or {})
    return info.value.problems


HOOK = {"name": "ops", "type": "webhook", "url": "https://hooks.example.com/x", "secret": "s"}


def test_the_spec_example_loads_with_defaults() -> None:
    cfg = parse({"redis": {"url": "redis://127.0.0.1:6379/0"}, "events": [
        {**HOOK, "secret": "${HOOK_SECRET}"},
        {"name": "bus", "type": "redis_stream", "stream": "fluxway.events"},
        {"name": "nats", "type": "nats", "url": "nats://127.0.0.1:4222", "subject": "fluxway.events"},
    ]}, {"HOOK_SECRET": "abc"})
    hook, bus, nats = cfg.events
    assert hook.type == "webhook" and hook.secret == "abc" and hook.timeout_s == 10.0 and hook.headers == {}
    assert bus.type == "redis_stream" and bus.maxlen is None and bus.max_backlog == 100_000
    assert nats.type == "nats" and nats.backoff_s == 1.0 and nats.max_backoff_s == 60.0
    assert parse({}, {}).events == ()


@pytest.mark.parametrize(("entry", "expected"), [
    ({**HOOK, "url": "ftp://x"}, "events[0].url: expected an http:// or https:// URL, got 'ftp://x'"),
    ({**HOOK, "secret": ""}, "events[0].secret: String should have at least 1 character"),
    ({**HOOK, "retries": 3}, "events[0].retries: unknown key"),
    ({**HOOK, "timeout_s": 0}, "events[0].timeout_s: Input should be greater than 0"),
    ({k: v for k, v in HOOK.items() if k != "secret"}, "events[0].secret: Field required"),
    ({**HOOK, "name": "has space"}, "events[0].name: expected 1-64 letters, digits, '_', '.' or '-', got 'has space'"),
    ({"name": "n", "type": "nats", "url": "http://x", "subject": "s"},
     "events[0].url: expected a nats:// or tls:// URL, got 'http://x'"),
    ({"name": "n", "type": "nats", "url": "nats://x:1", "subject": "a.*"},
     "events[0].subject: expected a subject without spaces or wildcards, got 'a.*'"),
    ({"name": "k", "type": "kafka"}, "events[0]: Input tag 'kafka' found using 'type' does not match any of the"
     " expected tags: 'webhook', 'redis_stream', 'nats'"),
    ({"name": "r", "type": "redis_stream", "stream": "s", "maxlen": 0}, "events[0].maxlen: Input should be greater"
     " than or equal to 1"),
])
def test_a_bad_sink_is_an_error_with_its_path(entry: dict[str, Any], expected: str) -> None:
    assert expected in problems({"redis": {"url": "redis://x:1/0"}, "events": [entry]})


def test_a_redis_stream_needs_redis_url_and_names_are_unique() -> None:
    got = problems({"events": [HOOK, {**HOOK}, {"name": "bus", "type": "redis_stream", "stream": "s"},
                               {**HOOK, "name": "slow", "backoff_s": 10, "max_backoff_s": 5}]})
    assert got == [
        "events[1].name: duplicate sink name 'ops'",
        "events[2].type: a redis_stream sink needs the top-level redis.url",
        "events[3].max_backoff_s: must be at least backoff_s (10.0)",
    ]


def test_a_missing_secret_variable_is_named() -> None:
    assert "events[0].secret: environment variable HOOK_SECRET is not set" in problems(
        {"events": [{**HOOK, "secret": "${HOOK_SECRET}"}]})
