"""Scrubbing secrets out of upstream text before it is relayed, logged or recorded.

An upstream's error message is shown to the client, written to the log and stored with the usage
record (``/admin/logs``); an upstream may echo what it was sent, the provider key included. A
:class:`Redactor` replaces

* every configured secret, exactly, whatever its length (provider ``api_keys``, AWS credentials,
  secret-looking custom headers, the master key), longest first: one of 8 characters or more
  wherever it appears, a shorter one wherever it stands as a whole token (``key: k.``);
* anything key-shaped: ``sk-...`` keys, AWS access key ids (``AKIA``/``ASIA``), Google API keys
  (``AIza...``), ``Bearer`` tokens, the value of ``api_key=``/``x-api-key:``/``token=``-style
  pairs, and long mixed-case alphanumeric tokens (AWS secret keys and the like)

with ``[REDACTED]``. It runs on the error path and on captured bodies (in the background flush);
substring checks first tell whether a pattern can match at all, so a body with nothing to mask
costs a few microseconds rather than the patterns' full scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fluxway.canonical import UpstreamError
from fluxway.config import Config

MASK = "[REDACTED]"
_SUBSTRING_MIN = 8
_SECRET_HEADER = re.compile(r"(?i)auth|key|token|secret|password|cookie")
_KEY_SHAPED = (
    r"sk-[A-Za-z0-9_\-]{6,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{12,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
    r"|(?<=[Bb]earer )[A-Za-z0-9._~+/=\-]{6,}"
    r"|(?<![A-Za-z0-9+/=_\-])(?=[A-Za-z0-9+/=_\-]*[A-Z])(?=[A-Za-z0-9+/=_\-]*[a-z])"
    r"(?=[A-Za-z0-9+/=_\-]*[0-9])[A-Za-z0-9+/=_\-]{32,}"
)
# name=value / "name": "value" pairs whose value is a credential, whatever it looks like.
_PAIR = re.compile(
    r"""(?ix)
    (\b(?:x-)?(?:api[-_]?key|goog-api-key|access[-_]?token|auth[-_]?token|token|secret(?:[-_]?access[-_]?key)?
        |password|key|signature|credential|authorization)\b["']?\s*[:=]\s*["']?)
    ([^\s"'&,;}]+)
    """
)


# The words _PAIR's names end in: a text without one of them followed by ``["']?\s*[:=]`` has no pair.
_PAIR_WORDS = ("key", "token", "secret", "password", "signature", "credential", "authorization")
# A run any long key-shaped token lies in (the last _KEY_SHAPED branch, without its case tests).
_LONG_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{32,}")
_KEY_PREFIXES = ("sk-", "AKIA", "ASIA", "AIza", "earer ")


def _has_pair(text: str) -> bool:
    """Whether ``text`` may hold a _PAIR (a cheap necessary condition: a word, then ``:`` or ``=``)."""
    low = text.lower()
    n = len(low)
    for word in _PAIR_WORDS:
        i = low.find(word)
        while i >= 0:
            j = i + len(word)
            if j >= n:
                break
            ch = low[j]
            if not (ch.isalnum() or ch == "_"):
                if ch in "\"'":
                    j += 1
                while j < n and low[j].isspace():
                    j += 1
                if j < n and low[j] in ":=":
                    return True
            i = low.find(word, j)
    return False


def _has_long_token(text: str) -> bool:
    """Whether ``text`` holds a run of 32+ token characters with an upper, a lower case letter and a digit."""
    for m in _LONG_RUN.finditer(text):
        run = m.group(0)
        if not run.isalpha() and any(c.isupper() for c in run) and any(c.islower() for c in run) and any(
            c.isdigit() for c in run
        ):
            return True
    return False


_SECRET_FIELD = re.compile(r"(?i)(?:x-)?(?:api[-_]?key|access[-_]?token|auth[-_]?token|token|secret\w*|password"
                           r"|authorization|credentials?)")


class Redactor:
    """Replaces known secrets and key-shaped strings with ``[REDACTED]``."""

    __slots__ = ("_pattern", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        exact = sorted({s for s in secrets if s}, key=len, reverse=True)
        # A long secret is masked wherever it appears; a short one (a test key, a 1-character
        # key) as a whole token, else every word containing its letters would be mangled.
        parts = [
            re.escape(s) if len(s) >= _SUBSTRING_MIN else rf"(?<![A-Za-z0-9_\-]){re.escape(s)}(?![A-Za-z0-9_\-])"
            for s in exact
        ]
        parts.append(_KEY_SHAPED)
        self._pattern = re.compile("|".join(parts))
        self._secrets = tuple(exact)

    @classmethod
    def from_config(cls, cfg: Config) -> Redactor:
        secrets: list[str] = []
        for p in cfg.providers:
            secrets.extend(p.secrets())
            for name, value in p.headers.items():
                if _SECRET_HEADER.search(name):
                    secrets.append(value)
                    secrets.extend(value.split()[1:])  # "Bearer <token>": the token on its own too
        for server in cfg.mcp.servers:
            secrets.extend(server.secrets())
        if cfg.auth.master_key:
            secrets.append(cfg.auth.master_key)
        return cls(secrets)

    def _may_hold_secret(self, s: str) -> bool:
        """A necessary condition for ``_pattern`` to match, checked with substring searches (a few
        µs where the pattern's scan takes tens on a captured body)."""
        return (
            any(secret in s for secret in self._secrets)
            or any(prefix in s for prefix in _KEY_PREFIXES)
            or _has_long_token(s)
        )

    def text(self, s: str) -> str:
        if self._may_hold_secret(s):
            s = self._pattern.sub(MASK, s)
        if not _has_pair(s):
            return s
        return _PAIR.sub(lambda m: m.group(1) + MASK if m.group(2) != MASK else m.group(0), s)

    def value(self, v: Any) -> Any:
        """JSON-like data with every string (keys included) scrubbed."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {
                self.text(k) if isinstance(k, str) else k: (
                    MASK if isinstance(x, str) and isinstance(k, str) and _SECRET_FIELD.fullmatch(k) else self.value(x)
                )
                for k, x in v.items()
            }
        if isinstance(v, list | tuple):
            return [self.value(x) for x in v]
        return v

    def error(self, err: UpstreamError) -> UpstreamError:
        """Scrub an upstream error in place (message, args and body); returns it."""
        err.message = self.text(err.message)
        err.args = (err.message,)
        if err.body is not None:
            err.body = self.value(err.body)
        return err
