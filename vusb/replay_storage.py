"""Class-aware replay of a Bulk-Only mass storage device (``class: storage``).

A host never sends the same command block wrappers twice: the tags change, the
kernel reads other blocks in another order.  So the recorded conversation is turned
into what a disk is, and served as one:

* the blocks every recorded READ returned, by logical unit and LBA (the block size
  comes from the recorded READ CAPACITY);
* every other SCSI command's recorded answers (data and CSW status), keyed by the
  logical unit and the command block, given in recorded order (the last one repeats).

Replayed, each CBW gets a CSW with the host's own tag; READ(6/10/12/16) is served by
LBA (from the overlay first), WRITE(6/10/12/16) lands in an in-memory overlay that
later READs see; a block never read in the recording reads as zeros and is a
divergence.  A command the recording does not hold is refused the SCSI way (CSW
status 1, then REQUEST SENSE says ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE) —
that is what the ``stall`` policy means for this class; ``nearest`` answers with the
recorded answer of the same operation code, ``handler`` calls the handler with
``("scsi", lun, cdb)`` and sends back the bytes it returns.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from vusb.constants import Status
from vusb.errors import Stall
from vusb.function import ControlResult
from vusb.replay import RecordedControl, RecordedTransfer, ReplayFunction, _preview
from vusb.urb import Completion, SetupPacket, Urb

CBW_SIGNATURE = b"USBC"
CSW_SIGNATURE = b"USBS"
READS = {0x08: 6, 0x28: 10, 0xA8: 12, 0x88: 16}
WRITES = {0x0A: 6, 0x2A: 10, 0xAA: 12, 0x8A: 16}
REQUEST_SENSE = 0x03
INVALID_OPCODE_SENSE = bytes((0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0))


def lba_and_count(cdb: bytes) -> tuple[int, int]:
    """(first LBA, number of blocks) of a READ or WRITE command block."""
    op = cdb[0]
    if op in (0x08, 0x0A):
        lba = ((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3]
        return lba, cdb[4] or 256
    if op in (0x28, 0x2A):
        return struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
    if op in (0xA8, 0xAA):
        return struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">I", cdb, 6)[0]
    return struct.unpack_from(">Q", cdb, 2)[0], struct.unpack_from(">I", cdb, 10)[0]


@dataclass(frozen=True)
class ScsiAnswer:
    data: bytes
    status: int
    index: int  # the CBW's position in the recorded transfers


@dataclass
class Disk:
    """What the recorded conversation says the device holds."""

    block_size: dict[int, int]
    blocks: dict[tuple[int, int], bytes]
    answers: dict[tuple[int, bytes], list[ScsiAnswer]]
    commands: int
    problems: list[str]


def disk_from(transfers: Sequence[RecordedTransfer]) -> Disk:
    """Rebuild the disk from a recorded Bulk-Only conversation (CBW, data, CSW on the bulk endpoints)."""
    disk = Disk({}, {}, {}, 0, [])
    current: tuple[int, bytes, int] | None = None  # lun, cdb, index
    data_in = bytearray()
    for t in transfers:
        if not t.is_in and len(t.data) == 31 and t.data[:4] == CBW_SIGNATURE:
            lun, cb_len = t.data[13] & 0x0F, t.data[14] & 0x1F
            current = (lun, bytes(t.data[15:15 + cb_len]), t.index)
            data_in = bytearray()
            continue
        if current is None:
            continue
        if t.is_in and len(t.data) == 13 and t.data[:4] == CSW_SIGNATURE:
            lun, cdb, index = current
            status = t.data[12]
            disk.commands += 1
            op = cdb[0] if cdb else -1
            if op in READS and status == 0 and len(cdb) >= READS[op]:
                size = disk.block_size.get(lun, 512)
                lba, _ = lba_and_count(cdb)
                for k in range(len(data_in) // size):
                    disk.blocks[(lun, lba + k)] = bytes(data_in[k * size:(k + 1) * size])
            elif op not in WRITES:
                disk.answers.setdefault((lun, cdb), []).append(ScsiAnswer(bytes(data_in), status, index))
                if op == 0x25 and status == 0 and len(data_in) >= 8:
                    disk.block_size[lun] = struct.unpack_from(">I", data_in, 4)[0] or 512
                elif op == 0x9E and status == 0 and len(data_in) >= 12:
                    disk.block_size[lun] = struct.unpack_from(">I", data_in, 8)[0] or 512
            current = None
            continue
        if t.is_in and not t.status:
            data_in += t.data
    return disk


@dataclass
class _Receive:
    """A data-out phase under way: WRITE data for the overlay (``lba`` None: data to take and drop)."""

    lun: int
    lba: int | None
    blocks: int
    length: int
    tag: bytes
    status: int = 0
    data: bytearray = field(default_factory=bytearray)


_STALL = b"stall"  # in the IN queue: answer that URB with a stall (no data phase where the host expected one)


class StorageReplay(ReplayFunction):
    """A Bulk-Only mass storage device served from its recording (see the module's docstring)."""

    def __init__(self, control: Sequence[RecordedControl], transfers: Sequence[RecordedTransfer], **options: object
                 ) -> None:
        super().__init__(control, transfers, **options)  # type: ignore[arg-type]
        self.disk = disk_from(self.transfer_entries)
        self.overlay: dict[tuple[int, int], bytes] = {}
        """Blocks the host wrote, by (LUN, LBA): later READs return them."""
        self.in_address = next((t.endpoint for t in self.transfer_entries if t.is_in), 0x81)
        self.out_address = next((t.endpoint for t in self.transfer_entries if not t.is_in), 0x02)
        self._asked_scsi: dict[tuple[int, bytes], int] = {}
        self._sense: dict[int, bytes] = {}
        self._reply: list[bytes] = []  # data then the CSW, for the IN endpoint
        self._writing: _Receive | None = None
        self._ready_event: asyncio.Event | None = None
        self._data_in = True

    def reset_conversation(self) -> None:
        super().reset_conversation()
        self._reply = []
        self._writing = None

    def bind(self, device: object) -> None:
        from vusb.device import Device

        assert isinstance(device, Device)
        for config in device.configurations:
            for itf in config.interfaces:
                if itf.number in self.interface_numbers:
                    for ep in itf.endpoints:
                        device.endpoint(ep.address).handler = self._bulk
                        if ep.is_in:
                            self.in_address = ep.address
                        else:
                            self.out_address = ep.address

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        """Bulk-Only's two class requests are answered as the class says when the recording lacks them:
        the reset (0xFF) clears the command in progress, GET MAX LUN (0xFE) says one unit."""
        if setup.request_type == 0x21 and setup.request == 0xFF:
            self._reply = []
            self._writing = None
            self._sense.clear()
            if not any(e.key == (0x21, 0xFF, setup.value, setup.index) for e in self.control_entries):
                return None
        if setup.request_type == 0xA1 and setup.request == 0xFE and \
                not any(e.key[:2] == (0xA1, 0xFE) for e in self.control_entries):
            return b"\x00"
        return super().control(setup, data)

    # ------------------------------------------------------------ the endpoints
    def _bulk(self, urb: Urb) -> Completion | Awaitable[Completion]:
        if urb.is_in:
            if self._reply:
                return self._pop(urb.length)
            return self._wait_reply(urb)
        return self._out(bytes(urb.data))

    def _pop(self, length: int) -> Completion:
        data = self._reply[0]
        if data is _STALL:
            self._reply.pop(0)
            return Completion(Status.EPIPE)
        if len(data) > length:
            self._reply[0] = data[length:]
            return Completion(0, data[:length])
        self._reply.pop(0)
        return Completion(0, data)

    async def _wait_reply(self, urb: Urb) -> Completion:
        while not self._reply:
            if self._ready_event is None:
                self._ready_event = asyncio.Event()
            await self._ready_event.wait()
        return self._pop(urb.length)

    def _queue(self, *parts: bytes) -> None:
        self._reply.extend(p for p in parts if p)
        if self._ready_event is not None:
            self._ready_event.set()
            self._ready_event = None

    def _out(self, data: bytes) -> Completion:
        w = self._writing
        if w is not None:
            w.data += data
            if len(w.data) >= w.length:
                size = self.disk.block_size.get(w.lun, 512)
                if w.lba is not None:
                    for k in range(w.blocks):
                        self.overlay[(w.lun, w.lba + k)] = bytes(w.data[k * size:(k + 1) * size])
                self._writing = None
                self._queue(self._csw(w.tag, 0, w.status))
            return Completion(0, b"", len(data))
        if len(data) != 31 or data[:4] != CBW_SIGNATURE:
            self.diverged(f"OUT ep 0x{self.out_address:02x} {_preview(data)}", "a command block wrapper (USBC)",
                          "stalled")
            return Completion(Status.EPIPE)
        tag = data[4:8]
        length = struct.unpack_from("<I", data, 8)[0]
        lun, cb_len = data[13] & 0x0F, data[14] & 0x1F
        cdb = bytes(data[15:15 + cb_len])
        self._data_in = bool(data[12] & 0x80)
        self._command(lun, cdb, tag, length)
        self.served += 1
        return Completion(0, b"", len(data))

    def _csw(self, tag: bytes, residue: int, status: int) -> bytes:
        return CSW_SIGNATURE + tag + struct.pack("<IB", residue, status)

    def _reply_with(self, tag: bytes, length: int, data: bytes, status: int) -> None:
        if length and not self._data_in:  # the host sends data first: take it, then answer
            self._writing = _Receive(-1, None, 0, length, tag, status)
            return
        data = data[:length]
        if length and not data:
            self._queue(_STALL)  # no data where the host expects some: stall the data phase, as BOT says
        self._queue(data, self._csw(tag, length - len(data), status))

    # ------------------------------------------------------------ SCSI
    def _command(self, lun: int, cdb: bytes, tag: bytes, length: int) -> None:
        op = cdb[0] if cdb else -1
        size = self.disk.block_size.get(lun, 512)
        if op in READS and len(cdb) >= READS[op]:
            lba, count = lba_and_count(cdb)
            out = bytearray()
            missing = []
            for k in range(count):
                block = self.overlay.get((lun, lba + k)) or self.disk.blocks.get((lun, lba + k))
                if block is None:
                    missing.append(lba + k)
                    block = bytes(size)
                out += block
            if missing:
                self.diverged(f"READ LUN {lun} LBA {lba} x{count}",
                              f"{len(missing)} of these blocks were never read in the recording (first: LBA {missing[0]})",
                              "served zeros for them")
            self._reply_with(tag, length, bytes(out), 0)
            return
        if op in WRITES and len(cdb) >= WRITES[op]:
            lba, count = lba_and_count(cdb)
            if length == 0:
                self._queue(self._csw(tag, 0, 0))
                return
            self._writing = _Receive(lun, lba, count, min(length, count * size), tag)
            return
        if op == REQUEST_SENSE and lun in self._sense:
            self._reply_with(tag, length, self._sense.pop(lun), 0)
            return
        answers = self.disk.answers.get((lun, cdb))
        if answers:
            n = self._asked_scsi.get((lun, cdb), 0)
            self._asked_scsi[(lun, cdb)] = n + 1
            answer = answers[min(n, len(answers) - 1)]
            self._reply_with(tag, length, answer.data, answer.status)
            return
        what = f"SCSI LUN {lun} [{cdb.hex(' ')}]"
        same_op = [a for (ln, c), lst in self.disk.answers.items() if ln == lun and c[:1] == cdb[:1] for a in lst]
        recorded = (f"{len(same_op)} answer(s) to operation 0x{op:02x} with other fields" if same_op
                    else f"no operation 0x{op:02x}")
        if self.policy == "nearest" and same_op:
            self.diverged(what, recorded, f"answered as the command at transfers[{same_op[0].index}]")
            self._reply_with(tag, length, same_op[0].data, same_op[0].status)
            return
        if self.policy == "handler" and self.handler is not None:
            self.diverged(what, recorded, "passed to the handler")
            try:
                result = self.handler(("scsi", lun, cdb), recorded)
            except Stall:
                result = None
                self._sense[lun] = INVALID_OPCODE_SENSE
                self._reply_with(tag, length, b"", 1)
                return
            self._reply_with(tag, length, bytes(result or b""), 0)
            return
        self.diverged(what, recorded, "failed it (CSW status 1, sense ILLEGAL REQUEST)")
        self._sense[lun] = INVALID_OPCODE_SENSE
        self._reply_with(tag, length, b"", 1)
