"""Backing stores: where the blocks of a logical unit live.

A :class:`BackingStore` is a flat array of bytes with a fixed size.  The SCSI
layer addresses it in bytes (LBA times block size), so a store knows nothing of
blocks; it only reads, writes and flushes:

=====================  ==================================================================
:class:`ImageFile`      a disk image file (or block device), created sparse if missing;
                        writes go straight to the file with ``pwrite``, ``flush`` is ``fsync``
:class:`MemoryStore`    bytes in memory, allocated in 64 KiB chunks as they are written
                        (a 3 TiB memory disk costs nothing until it is written)
:class:`OverlayStore`   copy-on-write over another store: the base is only read, changed
                        chunks live in memory or in a scratch side file
=====================  ==================================================================

Every store may raise :class:`OSError` from ``read``, ``write`` and ``flush``;
the SCSI layer turns it into MEDIUM ERROR sense data for the host.  Nothing here
keeps written data in a user-space cache: when ``write`` returns, the data is in
the file (the kernel's page cache), and when ``flush`` returns it is on stable
storage.
"""

from __future__ import annotations

import abc
import errno
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Union

from vusb.errors import UsageError, VusbError
from vusb.urb import FileData


class MediumError(VusbError, OSError):
    """A disk image refused a read or write (read-only, past the end, closed); ``errno`` says which."""


log = logging.getLogger("vusb.storage")

Buffer = Union[bytes, bytearray, memoryview]
"""What stores read and write."""

StrPath = Union[str, "os.PathLike[str]"]

CHUNK_SIZE = 64 * 1024
"""Granularity of memory disks and copy-on-write overlays."""

SENDFILE_MIN = 32 * 1024
"""Reads of an image file at least this long are answered as :class:`~vusb.urb.FileData`: the server
sends them from the page cache with sendfile(2).  Shorter ones are read (a copy costs less than a
system call)."""

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 10**3,
    "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
    "g": 1 << 30, "gib": 1 << 30, "gb": 10**9,
    "t": 1 << 40, "tib": 1 << 40, "tb": 10**12,
    "p": 1 << 50, "pib": 1 << 50, "pb": 10**15,
}


def parse_size(value: int | str) -> int:
    """A size in bytes from an int or a string such as ``"64MiB"``, ``"1.5G"``, ``"2TB"``.

    Binary units (K, KiB, M, MiB...) are powers of 1024, decimal ones (KB, MB...)
    powers of 1000.
    """
    if isinstance(value, bool):
        raise UsageError(f"a size is a number of bytes or a string such as '64MiB', not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UsageError(f"size {value} is negative")
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise UsageError(f"cannot read size {value!r}: expected bytes or a number with a unit such as 64MiB, 1G, 2TB")
    number = float(match.group(1)) if "." in match.group(1) else int(match.group(1))
    size = int(number * _SIZE_UNITS[unit])
    if size != number * _SIZE_UNITS[unit]:
        raise UsageError(f"size {value!r} is not a whole number of bytes")
    return size


class BackingStore(abc.ABC):
    """The bytes behind a logical unit.

    Subclasses set :attr:`size` and implement :meth:`read` and :meth:`write`; a
    store that caches anything must implement :meth:`flush`.  ``read`` returns
    exactly ``length`` bytes (zeros past the end of a short file).  The returned
    object must not change afterwards (the host may still be sending it).
    """

    size: int = 0
    read_only: bool = False

    @abc.abstractmethod
    def read(self, offset: int, length: int) -> Buffer:
        """``length`` bytes from ``offset``."""

    @abc.abstractmethod
    def write(self, offset: int, data: Buffer) -> None:
        """Store ``data`` at ``offset`` (all of it, or raise :class:`OSError`)."""

    def read_pieces(self, offset: int, length: int) -> Sequence[Buffer | FileData]:
        """The bytes of :meth:`read` as consecutive pieces, for a vectored send with no join.

        Stores that hold their bytes in pieces (memory disks, overlays) return views of
        them; the pieces never change afterwards (a later write copies a chunk that is
        still viewed).  An image file gives a long read as one :class:`~vusb.urb.FileData`,
        which the server sends from the file.  The default is the one piece :meth:`read`
        gives, and a subclass that overrides :meth:`read` is read through it.
        """
        return [self.read(offset, length)]

    def flush(self) -> None:  # noqa: B027  (stores without a cache have nothing to flush)
        """Make every write so far durable.  May run in a worker thread."""

    def close(self) -> None:
        """Flush and release the store's resources."""
        self.flush()

    def describe(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self.describe()} size={self.size}{' read-only' if self.read_only else ''}>"

    def _check_write(self, offset: int, length: int) -> None:
        if self.read_only:
            raise MediumError(errno.EROFS, f"{self.describe()} is read-only")
        if offset < 0 or offset + length > self.size:
            raise MediumError(errno.ENOSPC, f"write of {length} bytes at {offset} is past the end ({self.size} bytes)")


# ------------------------------------------------------------------ image files


class ImageFile(BackingStore):
    """A disk image file, or a block device.

    A missing file is created with ``size`` bytes as a sparse file (``size`` is
    required then).  An existing file keeps its own size and ``size`` is ignored.
    Writes are ``pwrite`` calls on the file descriptor and are in the file when
    :meth:`write` returns; :meth:`flush` calls ``fsync`` if anything was written
    since the last one.

    Reads of :data:`SENDFILE_MIN` bytes or more leave as :class:`~vusb.urb.FileData`:
    the server sends them from the page cache with ``sendfile(2)``, so they are
    never copied into Python.  Such a read takes the file's bytes when it is sent;
    ``zero_copy=False`` reads every READ's data when the command asks for it (a
    snapshot), for an image that something else writes while it is served.
    """

    def __init__(self, path: StrPath, size: int | str | None = None, *, read_only: bool = False,
                 create: bool = True, zero_copy: bool = True) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.zero_copy = zero_copy
        self._dirty = False
        self._lock = threading.Lock()
        self.created = False
        if not self.path.exists():
            if not create or size is None:
                raise UsageError(f"disk image {self.path} does not exist" +
                                 ("; give a size to create it" if size is None else ""))
            if read_only:
                raise UsageError(f"disk image {self.path} does not exist and cannot be created read-only")
            nbytes = parse_size(size)
            if nbytes <= 0:
                raise UsageError(f"cannot create disk image {self.path} with size {nbytes}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.ftruncate(fd, nbytes)  # sparse: no block is allocated until written
            except OSError:
                os.close(fd)
                self.path.unlink(missing_ok=True)
                raise
            os.close(fd)
            self.created = True
            log.info("created sparse disk image %s (%d bytes)", self.path, nbytes)
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            self._fd: int | None = os.open(self.path, flags)
        except OSError as exc:
            hint = "; open it read-only (read_only=True)" if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM) else ""
            raise UsageError(f"cannot open disk image {self.path}: {exc.strerror}{hint}") from exc
        # lseek works for regular files and block devices alike (st_size is 0 for the latter).
        self.size = os.lseek(self._fd, 0, os.SEEK_END)

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise MediumError(errno.EBADF, f"disk image {self.path} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        """The image's descriptor (:class:`~vusb.urb.FileData` reads through it); :class:`MediumError` once closed."""
        return self.fd

    def read_pieces(self, offset: int, length: int) -> list[Buffer | FileData]:
        """A long read is one :class:`~vusb.urb.FileData`, sent from the page cache without a copy."""
        if length >= SENDFILE_MIN and self.zero_copy and type(self).read is ImageFile.read:
            self.fd  # noqa: B018 - a closed image fails the command now, not its reply
            return [FileData(self, offset, length)]
        return [self.read(offset, length)]

    def read(self, offset: int, length: int) -> bytes:
        return bytes(FileData(self, offset, length))  # pread until done; zeros past the end of a shrunk file

    def write(self, offset: int, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        self._check_write(offset, len(view))
        fd = self.fd
        try:
            while view:
                done = os.pwrite(fd, view, offset)
                if done <= 0:
                    raise MediumError(errno.EIO, f"short write to {self.path}")
                view = view[done:]
                offset += done
        finally:
            # Marked after the data is in the file, so a flush running meanwhile in another
            # thread cannot clear the mark of a write its fsync did not cover.
            self._dirty = True

    @property
    def dirty(self) -> bool:
        """Whether something was written since the last flush."""
        return self._dirty

    def flush(self) -> None:
        with self._lock:
            if self._fd is None or not self._dirty:
                return
            self._dirty = False  # writes that land during fsync set it again
            try:
                os.fsync(self._fd)
            except OSError:
                self._dirty = True
                raise

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)

    def describe(self) -> str:
        return f"image {self.path}"


# ------------------------------------------------------------------ chunked storage


class _Chunks:
    """Chunks of a byte array that differ from some fallback, kept in memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.chunks: dict[int, bytearray] = {}

    def has(self, index: int) -> bool:
        return index in self.chunks

    def get(self, index: int, start: int, length: int) -> memoryview:
        """A view of the chunk, not a copy; while it lives, :meth:`put` leaves the viewed bytes alone."""
        return memoryview(self.chunks[index])[start : start + length]

    def put(self, index: int, start: int, data: memoryview) -> None:
        chunk = self.chunks[index]
        # References: the dict, ``chunk`` and getrefcount's argument.  More means a view of the chunk
        # handed out by get() is still alive (a send in progress): copy on write, the view keeps the old bytes.
        if sys.getrefcount(chunk) > 3:
            chunk = self.chunks[index] = bytearray(chunk)
        with memoryview(chunk) as view:
            view[start : start + len(data)] = data

    def create(self, index: int, content: Buffer) -> None:
        self.chunks[index] = bytearray(content)

    def clear(self) -> None:
        self.chunks.clear()

    @property
    def allocated(self) -> int:
        return sum(len(c) for c in self.chunks.values())


class _SideFile:
    """Chunks kept at their own offsets in a sparse scratch file; which ones exist is kept in memory."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.present: set[int] = set()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.ftruncate(self.fd, size)

    def has(self, index: int) -> bool:
        return index in self.present

    def get(self, index: int, start: int, length: int) -> bytes:
        data = os.pread(self.fd, length, index * CHUNK_SIZE + start)
        return data if len(data) == length else data + bytes(length - len(data))

    def _pwrite(self, offset: int, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        while view:
            done = os.pwrite(self.fd, view, offset)
            view = view[done:]
            offset += done

    def put(self, index: int, start: int, data: memoryview) -> None:
        self._pwrite(index * CHUNK_SIZE + start, data)

    def create(self, index: int, content: Buffer) -> None:
        self._pwrite(index * CHUNK_SIZE, content)
        self.present.add(index)

    def clear(self) -> None:
        self.present.clear()
        os.ftruncate(self.fd, 0)
        os.ftruncate(self.fd, self.size)

    @property
    def allocated(self) -> int:
        return len(self.present) * CHUNK_SIZE

    def close(self) -> None:
        os.close(self.fd)


_Layer = Union[_Chunks, _SideFile]


def _spans(offset: int, length: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index, start within the chunk, length) for each chunk that [offset, offset+length) touches."""
    end = offset + length
    while offset < end:
        index, start = divmod(offset, CHUNK_SIZE)
        n = min(CHUNK_SIZE - start, end - offset)
        yield index, start, n
        offset += n


def _chunk_length(index: int, size: int) -> int:
    return min(CHUNK_SIZE, size - index * CHUNK_SIZE)


def _layered_pieces(layer: _Layer, offset: int, length: int, below: Callable[[int, int], Buffer]) -> list[Buffer]:
    """The bytes at [offset, offset+length) as pieces: views of memory chunks, reads from below for the gaps."""
    if type(layer) is _Chunks:  # the memory layer, inlined: every span a chunk held in memory
        chunks = layer.chunks
        fast: list[Buffer] = []
        end = offset + length
        pos = offset
        while pos < end:
            index, start = divmod(pos, CHUNK_SIZE)
            chunk = chunks.get(index)
            if chunk is None:
                break  # a gap: the general loop below reads it from below
            n = min(CHUNK_SIZE - start, end - pos)
            fast.append(memoryview(chunk)[start : start + n])
            pos += n
        else:
            return fast
    parts: list[Buffer] = []
    gap_start = gap_len = 0  # consecutive chunks missing from the layer are read from below at once
    for index, start, n in _spans(offset, length):
        if layer.has(index):
            if gap_len:
                parts.append(below(gap_start, gap_len))
                gap_len = 0
            parts.append(layer.get(index, start, n))
        else:
            if not gap_len:
                gap_start = index * CHUNK_SIZE + start
            gap_len += n
    if gap_len:
        parts.append(below(gap_start, gap_len))
    return parts


def _layered_read(layer: _Layer, offset: int, length: int, below: Callable[[int, int], Buffer]) -> bytes:
    """The bytes at [offset, offset+length): memory chunks are views until the one final copy (a join)."""
    parts = _layered_pieces(layer, offset, length, below)
    if len(parts) == 1 and isinstance(parts[0], bytes):
        return parts[0]
    return b"".join(parts)


def _layered_write(layer: _Layer, offset: int, data: Buffer, below: Callable[[int, int], Buffer]) -> None:
    view = memoryview(data).cast("B")
    pos = 0
    for index, start, n in _spans(offset, len(view)):
        piece = view[pos : pos + n]
        pos += n
        if layer.has(index):
            layer.put(index, start, piece)
            continue
        full = _chunk_length(index, layer.size)
        if start == 0 and n == full:
            layer.create(index, piece)
        else:  # copy on write: the chunk starts as what lies below
            content = bytearray(below(index * CHUNK_SIZE, full))
            content[start : start + n] = piece
            layer.create(index, content)


_ZERO_CHUNK = bytes(CHUNK_SIZE)


def _zeros(offset: int, length: int) -> Buffer:
    return memoryview(_ZERO_CHUNK)[:length] if length <= CHUNK_SIZE else bytes(length)


class MemoryStore(BackingStore):
    """A disk in memory.  Chunks are allocated as they are written; unwritten ones read as zeros.

    ``data`` gives initial content (``size`` defaults to its length).
    """

    def __init__(self, size: int | str | None = None, data: Buffer | None = None, *, read_only: bool = False) -> None:
        if size is None:
            if data is None:
                raise UsageError("a memory disk needs a size (or initial data)")
            size = len(data)
        self.size = parse_size(size)
        if self.size <= 0:
            raise UsageError(f"a memory disk needs a positive size, not {self.size}")
        self._chunks = _Chunks(self.size)
        if data is not None:
            if len(data) > self.size:
                raise UsageError(f"{len(data)} bytes of initial data do not fit in a {self.size}-byte memory disk")
            _layered_write(self._chunks, 0, data, _zeros)
        self.read_only = read_only

    def read(self, offset: int, length: int) -> bytes:
        return _layered_read(self._chunks, offset, length, _zeros)

    def read_pieces(self, offset: int, length: int) -> list[Buffer]:
        if type(self).read is not MemoryStore.read:  # a subclass that changes read() is read through it
            return [self.read(offset, length)]
        return _layered_pieces(self._chunks, offset, length, _zeros)

    def write(self, offset: int, data: Buffer) -> None:
        self._check_write(offset, len(data))
        _layered_write(self._chunks, offset, data, _zeros)

    @property
    def allocated(self) -> int:
        """Bytes of memory in use."""
        return self._chunks.allocated

    def getvalue(self) -> bytes:
        """The whole disk as bytes (for small disks in tests)."""
        return self.read(0, self.size)

    def describe(self) -> str:
        return "memory disk"


class OverlayStore(BackingStore):
    """Copy-on-write over a base store, which is never written.

    Changed 64 KiB chunks are kept in memory, or in the scratch file ``side_file``
    if given (created or emptied when the overlay opens: it does not survive a
    restart).  :meth:`discard` drops every change.
    """

    def __init__(self, base: BackingStore, side_file: StrPath | None = None, *, read_only: bool = False,
                 close_base: bool = True) -> None:
        self.base = base
        self.size = base.size
        self.read_only = read_only
        self.close_base = close_base
        self.side_file = Path(side_file) if side_file is not None else None
        if self.side_file is not None:
            if isinstance(base, ImageFile) and self.side_file.resolve() == base.path.resolve():
                raise UsageError(f"the overlay's side file {self.side_file} is its base image")
            self._layer: _Layer = _SideFile(self.side_file, self.size)
        else:
            self._layer = _Chunks(self.size)

    def read(self, offset: int, length: int) -> bytes:
        return _layered_read(self._layer, offset, length, self.base.read)

    def read_pieces(self, offset: int, length: int) -> list[Buffer]:
        if type(self).read is not OverlayStore.read:  # a subclass that changes read() is read through it
            return [self.read(offset, length)]
        return _layered_pieces(self._layer, offset, length, self.base.read)

    def write(self, offset: int, data: Buffer) -> None:
        self._check_write(offset, len(data))
        _layered_write(self._layer, offset, data, self.base.read)

    def discard(self) -> None:
        """Forget every change: the overlay reads as its base again."""
        self._layer.clear()

    @property
    def allocated(self) -> int:
        """Bytes of changed chunks."""
        return self._layer.allocated

    def close(self) -> None:
        if isinstance(self._layer, _SideFile):
            self._layer.close()
        if self.close_base:
            self.base.close()

    def describe(self) -> str:
        where = f"side file {self.side_file}" if self.side_file is not None else "memory"
        return f"overlay ({where}) over {self.base.describe()}"


def open_store(
    image: StrPath | BackingStore | None = None,
    *,
    size: int | str | None = None,
    read_only: bool = False,
    memory: bool = False,
    overlay: bool | StrPath | None = None,
) -> BackingStore:
    """A store from the usual options.

    - ``image`` alone: the image file (created sparse with ``size`` if missing);
    - ``memory=True``: a memory disk of ``size`` bytes (``image``, if given, is its initial content);
    - ``overlay=True``: copy-on-write in memory over ``image``, which is opened read-only;
      ``overlay="path"``: the same with changes in that scratch file.
    """
    side = None if overlay is None or isinstance(overlay, bool) else overlay
    if isinstance(image, BackingStore):
        if memory:
            raise UsageError("memory=True makes a new disk; it cannot be combined with an existing store")
        if overlay not in (None, False):
            return OverlayStore(image, side, read_only=read_only)
        return image
    if overlay not in (None, False):
        if image is None:
            raise UsageError("an overlay needs a base image")
        if memory:
            raise UsageError("give either memory=True or overlay, not both")
        return OverlayStore(ImageFile(image, size, read_only=True), side, read_only=read_only)
    if memory:
        data = Path(image).read_bytes() if image is not None else None
        return MemoryStore(size if size is not None else None, data, read_only=read_only)
    if image is None:
        raise UsageError("give a disk image path, memory=True, or a BackingStore")
    return ImageFile(image, size, read_only=read_only)
