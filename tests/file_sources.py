"""A :class:`vusb.urb.FileSource` for tests: FileData over a plain descriptor, or over one whose reads fail."""

from __future__ import annotations

import os


class FdSource:
    """Reads through ``fd``; with ``error``, every read fails with that errno (a disk that went bad)."""

    def __init__(self, fd: int, error: int | None = None, name: str = "the test's file") -> None:
        self.fd, self.error, self.name = fd, error, name

    def fileno(self) -> int:
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))
        return self.fd

    def describe(self) -> str:
        return self.name
