"""fluxway_bench.processes: Process handling's pure parts.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

from fluxway_bench import processes


def test_failure_line_prefers_the_last_exception() -> None:
    log = (
        "INFO starting\nTraceback (most recent call last):\n  File x\nOSError: [Errno 98] address in use\n"
        "client_session: <aiohttp.client.ClientSession object at 0x1>\n"
    )
    assert processes.failure_line(log) == "OSError: [Errno 98] address in use"
    assert processes.failure_line("just this\n\n") == "just this"
    assert processes.failure_line("") == "(no output)"
