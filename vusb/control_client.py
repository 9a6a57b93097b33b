"""The client of the control channel: a blocking connection that sends request objects and returns replies."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


class ControlClient:
    """A blocking client: ``ControlClient(path).request({"cmd": "list"})`` returns the reply object."""

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = 60.0) -> None:
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError:
            self._sock.close()
            raise
        self._file = self._sock.makefile("rb")
        self._next_id = 1

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {"id": self._next_id, **body}
        self._next_id += 1
        self._sock.sendall(json.dumps(body).encode("utf-8") + b"\n")
        line = self._file.readline()
        if not line:
            raise ConnectionError(f"the server closed the control connection on {self.path}")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ConnectionError(f"unexpected reply {reply!r}")
        return reply

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

