"""Reading a Prometheus text exposition in tests: its families (from ``# TYPE`` / ``# HELP``) and
its samples, keyed by the series as written (``name{a="x",b="y"}``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)  # family -> counter | gauge | histogram
    helps: dict[str, str] = field(default_factory=dict)
    samples: dict[str, float] = field(default_factory=dict)

    def value(self, series: str) -> float:
        return self.samples[series]

    def family_of(self, name: str) -> str | None:
        """The family a sample or metric name belongs to (``x_bucket`` -> ``x`` for histograms)."""
        if name in self.types:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name.removesuffix(suffix)
            if base != name and self.types.get(base) == "histogram":
                return base
        return None


def parse(text: str) -> Exposition:
    out = Exposition()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out.types[name] = kind
        elif line.startswith("# HELP "):
            _, _, name, help_ = line.split(" ", 3)
            out.helps[name] = help_
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m is not None, line
            out.samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out
