"""A USB MIDI 1.0 interface: an Audio Control interface and a MIDIStreaming interface with bulk endpoints.

::

    from vusb.devices.midi import MidiFunction, note_on

    midi = MidiFunction(cables=2)
    dev = Device(midi, vendor_id=0x1209, product_id=0x0016)
    await midi.send(note_on(60, 127))          # cable 0 unless told
    async for msg in midi:                      # what the host sends
        print(msg.cable, msg.hex())

Each cable ``n`` has four jacks, as the specification's example adapter has:
host -> device, embedded MIDI IN jack ``n*4+1`` (fed by the bulk OUT endpoint) to
external MIDI OUT jack ``n*4+2``; device -> host, external MIDI IN jack ``n*4+3`` to
embedded MIDI OUT jack ``n*4+4`` (feeding the bulk IN endpoint).  The host sees
one MIDI port per cable in each direction.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from vusb.devices.audio import spec
from vusb.devices.midi.messages import Decoder, Message, encode, split_messages

from vusb.constants import Speed, TransferType
from vusb.descriptors import EndpointDescriptor, InterfaceDescriptor, RawDescriptor
from vusb.device import BuildContext, Device, Function
from vusb.errors import DeviceDefinitionError, UsageError

log = logging.getLogger("vusb.devices.midi")

MS_HEADER = 0x01
MIDI_IN_JACK = 0x02
MIDI_OUT_JACK = 0x03
MS_GENERAL = 0x01
EMBEDDED = 0x01
EXTERNAL = 0x02


def _in_jack(kind: int, jack: int, name: int) -> RawDescriptor:
    return spec.cs(MIDI_IN_JACK, bytes((kind, jack, name)))


def _out_jack(kind: int, jack: int, source: int, name: int) -> RawDescriptor:
    return spec.cs(MIDI_OUT_JACK, bytes((kind, jack, 1, source, 1, name)))


def _ms_endpoint(jacks: list[int]) -> RawDescriptor:
    return spec.cs(MS_GENERAL, bytes((len(jacks), *jacks)), spec.CS_ENDPOINT)


class MidiFunction(Function):
    """USB MIDI 1.0 with ``cables`` ports each way (1..16); see the module documentation.

    Messages from the host are queued (up to ``queue_limit``; older ones are then
    dropped and counted in :attr:`dropped`) for ``async for`` and :meth:`receive`,
    and passed to ``on_message`` if set.
    """

    def __init__(self, *, cables: int = 1, name: str | None = "vusb MIDI", port_names: list[str] | None = None,
                 queue_limit: int = 4096, on_message: Callable[[Message], Any] | None = None) -> None:
        super().__init__()
        if not 1 <= cables <= 16:
            raise DeviceDefinitionError(f"{cables} MIDI cables: 1..16 are possible")
        if port_names is not None and len(port_names) != cables:
            raise DeviceDefinitionError(f"{len(port_names)} port names for {cables} cables")
        self.cables = cables
        self.name = name
        self.port_names = port_names
        self.function_class = (spec.AUDIO, 0, 0)
        self.on_message = on_message
        self.queue_limit = queue_limit
        self.dropped = 0
        self.received: asyncio.Queue[Message] = asyncio.Queue()
        self._decoder = Decoder()
        self.in_address = 0
        self.out_address = 0
        self._built = False

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        ac = ctx.interface_number()
        ms = ctx.interface_number()
        name = ctx.string(self.name)
        size = 512 if ctx.speed == Speed.HIGH else 64
        out_address = ctx.endpoint_address(is_in=False)
        in_address = ctx.endpoint_address(is_in=True)
        if not self._built:
            self.in_address, self.out_address, self._built = in_address, out_address, True
        jacks: list[RawDescriptor] = []
        for n in range(self.cables):
            port = ctx.string(self.port_names[n]) if self.port_names else 0
            base = n * 4
            jacks += [_in_jack(EMBEDDED, base + 1, port), _out_jack(EXTERNAL, base + 2, base + 1, port),
                      _in_jack(EXTERNAL, base + 3, port), _out_jack(EMBEDDED, base + 4, base + 3, port)]
        total = 7 + sum(len(j.to_bytes()) for j in jacks)
        header = spec.cs(MS_HEADER, struct.pack("<HH", 0x0100, total))
        out_ep = EndpointDescriptor(out_address, TransferType.BULK, size, 0, trailing=b"\0\0",
                                    extra=(_ms_endpoint([n * 4 + 1 for n in range(self.cables)]),))
        in_ep = EndpointDescriptor(in_address, TransferType.BULK, size, 0, trailing=b"\0\0",
                                   extra=(_ms_endpoint([n * 4 + 4 for n in range(self.cables)]),))
        return [
            InterfaceDescriptor(ac, 0, spec.AUDIO, spec.SUBCLASS_CONTROL, 0, name,
                                extra=(spec.uac1_header(9, [ms]),)),
            InterfaceDescriptor(ms, 0, spec.AUDIO, spec.SUBCLASS_MIDISTREAMING, 0, name,
                                endpoints=(out_ep, in_ep), extra=(header, *jacks)),
        ]

    def bind(self, device: Device) -> None:
        device.endpoint(self.out_address).on_out = self._from_host

    def _from_host(self, data: bytes | memoryview) -> None:
        for msg in self._decoder.feed(bytes(data)):
            if msg.cable >= self.cables:
                log.warning("MIDI: the host sent %s on cable %d, which this interface does not have; dropped",
                            msg.hex(), msg.cable)
                continue
            if self.received.qsize() >= self.queue_limit:
                self.received.get_nowait()
                self.dropped += 1
            self.received.put_nowait(msg)
            if self.on_message is not None:
                try:
                    self.on_message(msg)
                except Exception:
                    log.exception("MIDI: on_message failed on %s", msg)

    def send(self, message: bytes | Message, cable: int | None = None, *,
             timeout: float | None = None) -> Awaitable[None]:
        """Queue one message (or several concatenated) for the host; await the result to know it was read.

        The packets are queued at the call, so messages keep the order of the calls even
        when their results are awaited later.
        """
        if isinstance(message, Message):
            cable = message.cable if cable is None else cable
            message = message.data
        cable = 0 if cable is None else cable
        if not 0 <= cable < self.cables:
            raise UsageError(f"cable {cable}: this interface has cables 0..{self.cables - 1}")
        packets = b"".join(encode(m, cable) for m in split_messages(bytes(message)))
        if self.device is None:
            raise UsageError("the MIDI function is not part of a device yet")
        taken = self.endpoint(self.in_address).send(packets)
        return taken if timeout is None else asyncio.wait_for(taken, timeout)

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message the host sent."""
        return await asyncio.wait_for(self.received.get(), timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            yield await self.received.get()

    def on_reset(self) -> None:
        self._decoder = Decoder()


class MidiDevice(Device):
    """A device that is just a USB MIDI interface (full speed)."""

    def __init__(self, *, cables: int = 1, vendor_id: int = 0x1209, product_id: int = 0x0016,
                 manufacturer: str = "vusb", product: str = "vusb MIDI", serial_number: str | None = "VMI0001",
                 speed: Speed | str = Speed.FULL, port_names: list[str] | None = None) -> None:
        self.midi = MidiFunction(cables=cables, name=product, port_names=port_names)
        super().__init__(self.midi, vendor_id=vendor_id, product_id=product_id, manufacturer=manufacturer,
                         product=product, serial_number=serial_number, speed=speed)
