"""URBs as the device model sees them, and setup packets."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Final, Protocol, Union, overload

from vusb import layouts
from vusb.constants import URB_SHORT_NOT_OK, DescriptorType, Feature, Recipient, Request, RequestType, Status
from vusb.errors import ArgumentTypeError
from vusb.protocol import IsoPacket

if TYPE_CHECKING:
    from vusb.endpoint import Endpoint

_SETUP = layouts.SETUP_FAST
_REQUEST_TYPES: Final = tuple(RequestType(i) for i in range(4))  # bits 6..5 of bmRequestType -> RequestType
_PARSED: dict[bytes, SetupPacket] = {}
"""Setup packets already parsed, by their 8 bytes: a host sends the same few again and again, and a
:class:`SetupPacket` is immutable, so one object serves them all (bounded by :data:`_PARSED_MAX`)."""
_PARSED_MAX: Final = 256


@dataclass(frozen=True, slots=True)
class SetupPacket:
    """The 8-byte setup packet of a control transfer (USB 2.0 section 9.3)."""

    request_type: int
    request: int
    value: int = 0
    index: int = 0
    length: int = 0

    @classmethod
    def parse(cls, raw: bytes | memoryview) -> SetupPacket:
        if cls is SetupPacket and type(raw) is bytes:
            known = _PARSED.get(raw)
            if known is None:
                known = cls(*_SETUP.unpack(raw))
                if len(_PARSED) >= _PARSED_MAX:
                    _PARSED.clear()
                _PARSED[raw] = known
            return known
        return cls(*_SETUP.unpack(raw))

    def to_bytes(self) -> bytes:
        return _SETUP.pack(self.request_type, self.request, self.value, self.index, self.length)

    @property
    def is_in(self) -> bool:
        return bool(self.request_type & 0x80)

    @property
    def type(self) -> RequestType:
        return _REQUEST_TYPES[(self.request_type >> 5) & 3]

    @property
    def recipient(self) -> int:
        return self.request_type & 0x1F

    @property
    def descriptor_type(self) -> int:
        return self.value >> 8

    @property
    def descriptor_index(self) -> int:
        return self.value & 0xFF

    def describe(self) -> str:
        """A human reading of the request, for logs and errors."""
        direction = "IN" if self.is_in else "OUT"
        rtype = self.type.name.lower()
        try:
            recip = Recipient(self.recipient).name.lower()
        except ValueError:
            recip = f"recipient {self.recipient}"
        raw = f"[{self.to_bytes().hex(' ')}]"
        if self.type == RequestType.STANDARD:
            try:
                name = Request(self.request).name
            except ValueError:
                name = f"request 0x{self.request:02x}"
            if self.request in (Request.GET_DESCRIPTOR, Request.SET_DESCRIPTOR):
                try:
                    dname = DescriptorType(self.descriptor_type).name
                except ValueError:
                    dname = f"type 0x{self.descriptor_type:02x}"
                detail = f"{dname} index {self.descriptor_index} wIndex 0x{self.index:04x}"
            elif self.request in (Request.SET_FEATURE, Request.CLEAR_FEATURE):
                feat = {0: "ENDPOINT_HALT" if self.recipient == Recipient.ENDPOINT else "FUNCTION_SUSPEND"}.get(self.value)
                if feat is None:
                    try:
                        feat = Feature(self.value).name
                    except ValueError:
                        feat = f"feature {self.value}"
                detail = f"{feat} wIndex 0x{self.index:04x}"
            else:
                detail = f"wValue 0x{self.value:04x} wIndex 0x{self.index:04x}"
            return f"{direction} standard {recip} {name} {detail} wLength {self.length} {raw}"
        return (
            f"{direction} {rtype} {recip} request 0x{self.request:02x} wValue 0x{self.value:04x} "
            f"wIndex 0x{self.index:04x} wLength {self.length} {raw}"
        )

    def __str__(self) -> str:
        return self.describe()


class UrbState(enum.Enum):
    QUEUED = "queued"
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"


_DONE: Final = UrbState.DONE
_CANCELLED: Final = UrbState.CANCELLED

_Piece = Union[bytes, bytearray, memoryview]


class _StandsForBytes:
    """What :class:`Gather` and :class:`FileData` share: they iterate and compare as the bytes they stand for."""

    __slots__ = ()

    def __bytes__(self) -> bytes:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        return iter(bytes(self))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _StandsForBytes):
            return bytes(self) == bytes(other)
        if isinstance(other, (bytes, bytearray, memoryview)):
            return bytes(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class Gather(_StandsForBytes):
    """IN data in several pieces (scatter-gather), e.g. the 64 KiB chunks of a memory disk.

    The server sends the pieces after the RET_SUBMIT header with one vectored write,
    never joining them.  Everything else may treat it as the bytes it stands for:
    ``len`` is the total length, ``bytes()`` joins, a slice cuts the pieces (no copy)
    and an index gives one byte.  The pieces must not change afterwards (the
    transport may still hold them).
    """

    __slots__ = ("_length", "pieces")

    def __init__(self, pieces: Iterable[_Piece]) -> None:
        kept: list[_Piece] = []
        length = 0
        for piece in pieces:
            kind = type(piece)
            if kind is memoryview:
                n = piece.nbytes  # type: ignore[union-attr]
            elif kind is bytes or kind is bytearray or isinstance(piece, (bytes, bytearray)):
                n = len(piece)
            elif isinstance(piece, memoryview):
                n = piece.nbytes
            else:
                raise ArgumentTypeError(f"a Gather piece must be bytes, bytearray or memoryview, not {type(piece).__name__}")
            if n:
                kept.append(piece)
                length += n
        self.pieces: tuple[_Piece, ...] = tuple(kept)
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Gather: ...

    def __getitem__(self, index: int | slice) -> int | Gather:
        if isinstance(index, int):
            if index < 0:
                index += self._length
            if not 0 <= index < self._length:
                raise IndexError(f"Gather index {index} out of range for {self._length} bytes")
            for piece in self.pieces:
                view = memoryview(piece).cast("B")
                if index < len(view):
                    return int(view[index])
                index -= len(view)
        if not isinstance(index, slice):
            raise ArgumentTypeError(f"Gather indices are int or slice, not {type(index).__name__}")
        start, stop, step = index.indices(self._length)
        if step != 1:
            return Gather((bytes(self)[index],))
        cut: list[_Piece] = []
        pos = 0
        for piece in self.pieces:
            view = memoryview(piece).cast("B")
            end = pos + len(view)
            if end > start and pos < stop:
                cut.append(view[max(start - pos, 0) : min(stop, end) - pos])
            pos = end
        return Gather(cut)

    def __repr__(self) -> str:
        return f"<Gather {self._length} bytes in {len(self.pieces)} pieces>"


class FileSource(Protocol):
    """What :class:`FileData` reads from: an open file (a disk image) that knows its descriptor."""

    def fileno(self) -> int:
        """The open file's descriptor; raises (never returns a stale number) once the file is closed."""
        ...  # pragma: no cover

    def describe(self) -> str:
        """The file, for error messages."""
        ...  # pragma: no cover


class FileData(_StandsForBytes):
    """IN data that is ``length`` bytes of an open file at ``offset``, not yet read.

    The server sends it from the page cache with ``sendfile(2)`` after the RET_SUBMIT
    header, so the bytes never pass through Python; where it cannot (a capture is
    running, the socket has a backlog, the transport is not a socket) it reads them at
    once.  Everything else may treat it as the bytes it stands for: ``len`` is the
    length, ``bytes()`` reads them (zeros past the end of a file that shrank), a slice
    is a :class:`FileData` of the part, an index gives one byte.

    The bytes are the file's when they are sent: a write to the same range of the file
    from elsewhere while the reply is on its way may show in it, as in any file served
    by ``sendfile``.  Writes by the same host cannot race with it (the host reads the
    reply before it can see the command end).
    """

    __slots__ = ("length", "offset", "source")

    def __init__(self, source: FileSource, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise ArgumentTypeError(f"FileData offset and length must be >= 0, not {offset} and {length}")
        self.source = source
        self.offset = offset
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __bytes__(self) -> bytes:
        fd = self.source.fileno()
        data = os.pread(fd, self.length, self.offset)
        if len(data) == self.length:
            return data
        parts = [data]
        got = len(data)
        while got < self.length:
            more = os.pread(fd, self.length - got, self.offset + got)
            if not more:  # the file is shorter than it was: zeros past its end, as a sparse file reads
                parts.append(bytes(self.length - got))
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> FileData | bytes: ...

    def __getitem__(self, index: int | slice) -> int | FileData | bytes:
        if isinstance(index, int):
            if index < 0:
                index += self.length
            if not 0 <= index < self.length:
                raise IndexError(f"FileData index {index} out of range for {self.length} bytes")
            return bytes(FileData(self.source, self.offset + index, 1))[0]
        if not isinstance(index, slice):
            raise ArgumentTypeError(f"FileData indices are int or slice, not {type(index).__name__}")
        start, stop, step = index.indices(self.length)
        if step != 1:
            return bytes(self)[index]
        return FileData(self.source, self.offset + start, max(stop - start, 0))

    def __repr__(self) -> str:
        return f"<FileData {self.length} bytes at {self.offset} of {self.source.describe()}>"


@dataclass(frozen=True, slots=True)
class Completion:
    """How a URB ended: status, IN data, and for OUT the bytes consumed.

    IN data may be a :class:`Gather` of pieces, which the server sends without joining them,
    or :class:`FileData`, which it sends from the file without reading it into Python.
    """

    status: int = 0
    data: bytes | bytearray | memoryview | Gather | FileData = b""
    actual_length: int | None = None  # OUT: bytes consumed (defaults to all); IN: len(data)
    iso_packets: tuple[IsoPacket, ...] | None = None
    error_count: int = 0
    start_frame: int = 0  # isochronous: the (micro)frame the URB's first packet went in, echoed in RET_SUBMIT


OK: Final = Completion()
STALL: Final = Completion(Status.EPIPE)


class Urb:
    """One USB request block from a host, pending until completed or cancelled."""

    __slots__ = (
        "_sink",
        "data",
        "direction",
        "endpoint",
        "ep",
        "flags",
        "interval",
        "iso_packets",
        "length",
        "seqnum",
        "setup",
        "start_frame",
        "state",
    )

    def __init__(
        self,
        seqnum: int,
        ep: int,
        direction: int,
        length: int,
        *,
        flags: int = 0,
        setup: SetupPacket | None = None,
        data: bytes | memoryview = b"",
        iso_packets: tuple[IsoPacket, ...] | None = None,
        interval: int = 0,
        start_frame: int = 0,
        sink: Callable[[Urb, Completion], None] | None = None,
    ) -> None:
        self.seqnum = seqnum
        self.ep = ep
        self.direction = direction
        self.length = length
        self.flags = flags
        self.setup = setup
        self.data = data
        self.iso_packets = iso_packets
        self.interval = interval
        self.start_frame = start_frame
        self.state = UrbState.QUEUED
        self.endpoint: Endpoint | None = None
        self._sink = sink

    @property
    def is_in(self) -> bool:
        return self.direction == 1

    @property
    def address(self) -> int:
        return self.ep | (0x80 if self.direction == 1 and self.ep else 0)

    def complete(self, result: Completion) -> None:
        """Finish the URB; the completion is normalised to what the wire allows."""
        state = self.state
        if state is _DONE or state is _CANCELLED:
            return
        self.state = _DONE
        if self.direction == 1 and result.iso_packets is None:
            data = result.data
            if len(data) > self.length:
                # Never send more than the host asked for: that detaches the device.
                result = Completion(Status.EOVERFLOW if result.status == 0 else result.status, data[: self.length])
            elif result.status == 0 and len(data) < self.length and self.flags & URB_SHORT_NOT_OK:
                result = Completion(Status.EREMOTEIO, data)
        if self._sink is not None:
            self._sink(self, result)

    def cancel(self) -> None:
        """Mark the URB as unlinked: it will never be completed."""
        if self.state is not UrbState.DONE:
            self.state = UrbState.CANCELLED

    def __repr__(self) -> str:
        d = "IN" if self.direction else "OUT"
        return f"<Urb seqnum={self.seqnum} ep{self.ep} {d} len={self.length} {self.state.value}>"
