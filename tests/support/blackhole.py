"""A loopback port where connecting hangs, for connect-timeout tests."""

from __future__ import annotations

import contextlib
import socket


class Blackhole:
    """A loopback port where connecting hangs: it listens with a full accept queue and never
    accepts, so the kernel drops further SYNs (a connect timeout, without leaving 127.0.0.1).

    ``with Blackhole() as hole:`` -> ``hole.url``.
    """

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._fillers: list[socket.socket] = []
        self.url = ""

    def __enter__(self) -> Blackhole:
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(0)
        port = self._server.getsockname()[1]
        for _ in range(8):  # fill the accept queue (and the SYN queue behind it)
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            self._fillers.append(c)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self._fillers:
            c.close()
        self._server.close()
