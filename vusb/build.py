"""What a function declares itself with: :class:`BuildContext` and the device's :class:`StringTable`.

:meth:`~vusb.function.Function.build` receives a :class:`BuildContext`.  It hands out
interface numbers, endpoint addresses and string indices, so several functions
compose into one device without clashes, and it makes endpoint descriptors with
defaults suited to the device's speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vusb.constants import LANG_EN_US, Speed, TransferType
from vusb.descriptors import (
    Descriptor,
    EndpointDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    StringDescriptor,
    SuperSpeedEndpointCompanion,
)
from vusb.errors import DescriptorError, DeviceDefinitionError

__all__ = ["BuildContext", "StringTable"]


class StringTable:
    """Strings of a device, per language, indexed from 1."""

    def __init__(self, languages: Sequence[int] = (LANG_EN_US,)) -> None:
        self.languages = tuple(languages)
        self._by_text: dict[str, int] = {}
        self.strings: dict[int, dict[int, str]] = {lang: {} for lang in self.languages}

    def add(self, text: str | None, index: int | None = None) -> int:
        """The index of ``text`` (added in every language if new; at ``index`` if given); 0 for no text."""
        if text is None or text == "":
            return 0
        StringDescriptor(text)  # validates the length
        if index is None:
            if text in self._by_text:
                return self._by_text[text]
            used = set().union(*(s.keys() for s in self.strings.values()))
            index = max(used, default=0) + 1
            if index > 255:
                raise DescriptorError("more than 255 strings")
        for lang in self.languages:
            self.strings[lang][index] = text
        self._by_text.setdefault(text, index)
        return index

    def set(self, lang: int, index: int, text: str) -> None:
        """Set the text of string ``index`` in one language of the table."""
        StringDescriptor(text)
        if lang not in self.strings:
            raise DescriptorError(f"language 0x{lang:04x} is not in the language table")
        self.strings[lang][index] = text

    def get(self, index: int, lang: int) -> str | None:
        """The text of string ``index`` in ``lang`` (the first language if ``lang`` is unknown), or None."""
        table = self.strings.get(lang) or self.strings.get(self.languages[0], {})
        return table.get(index)


class BuildContext:
    """Hands out interface numbers, endpoint addresses and string indices while a device is assembled."""

    def __init__(self, speed: Speed, strings: StringTable) -> None:
        self.speed = speed
        self._strings = strings
        self._next_interface = 0
        self._used_in: set[int] = set()
        self._used_out: set[int] = set()
        self.associations: list[InterfaceAssociation] = []
        """Interface associations the device adds to the configuration."""

    def interface_number(self) -> int:
        """The next free interface number."""
        n = self._next_interface
        self._next_interface += 1
        return n

    def reserve_interface(self, number: int) -> int:
        """Take interface ``number`` (and every number below it); raises if it is already taken."""
        if number < self._next_interface:
            raise DeviceDefinitionError(f"interface number {number} is already taken")
        self._next_interface = number + 1
        return number

    def endpoint_address(self, is_in: bool, preferred: int | None = None) -> int:
        """Next free endpoint address in that direction (or ``preferred``, a whole address, if free)."""
        used = self._used_in if is_in else self._used_out
        if preferred is not None:
            num = preferred & 0x0F
            if bool(preferred & 0x80) != is_in:
                raise DeviceDefinitionError(f"endpoint address 0x{preferred:02x} has the wrong direction bit")
            if num in used or num == 0:
                raise DeviceDefinitionError(f"endpoint address 0x{preferred:02x} is already used")
            used.add(num)
            return preferred
        for num in range(1, 16):
            if num not in used:
                used.add(num)
                return num | (0x80 if is_in else 0)
        raise DeviceDefinitionError("no free endpoint numbers left (1..15 per direction)")

    def string(self, text: str | None) -> int:
        """The string index of ``text`` (0 for None or an empty text), for an ``i...`` field."""
        return self._strings.add(text)

    def interface(
        self,
        interface_class: int,
        subclass: int = 0,
        protocol: int = 0,
        *,
        endpoints: Sequence[EndpointDescriptor] = (),
        extra: Sequence[Descriptor] = (),
        name: str | None = None,
        number: int | None = None,
        alternate: int = 0,
    ) -> InterfaceDescriptor:
        """An interface descriptor: a fresh interface number unless ``number`` is given (an alternate setting
        of an interface declared before), its endpoints, and the class-specific descriptors (``extra``)
        that sit between the interface descriptor and its endpoints."""
        if number is None:
            number = self.interface_number()
        try:
            return InterfaceDescriptor(number, alternate, interface_class, subclass, protocol, self.string(name),
                                       tuple(endpoints), tuple(extra))
        except DescriptorError as exc:
            raise DeviceDefinitionError(f"interface {number} alternate {alternate}: {exc}") from exc

    def endpoint_in(
        self,
        transfer_type: TransferType,
        *,
        max_packet_size: int | None = None,
        interval: int | None = None,
        number: int | None = None,
        max_burst: int = 0,
        attributes_extra: int = 0,
        extra: Sequence[Descriptor] = (),
        trailing: bytes = b"",
    ) -> EndpointDescriptor:
        """An IN endpoint (device to host) with a fresh address and defaults suited to the speed.

        ``max_packet_size`` defaults to the largest the speed allows for bulk (64, 512,
        1024), 64 for interrupt (8 at low speed), 1023/1024 for isochronous.  ``interval``
        defaults to 10 ms for interrupt at low/full speed, 4 (2^3 microframes) at high
        speed and up, 1 for isochronous.  ``number`` asks for an endpoint number (1..15;
        raises :class:`~vusb.errors.DeviceDefinitionError` if it is taken).
        ``max_burst`` goes to the SuperSpeed companion descriptor (added at SuperSpeed).
        ``attributes_extra`` sets bmAttributes bits 2..5 (isochronous sync and usage types);
        ``extra`` holds class-specific endpoint descriptors (a
        :class:`~vusb.descriptors.ClassSpecificDescriptor` of type CS_ENDPOINT) that follow
        it, and ``trailing`` the bytes of an extended endpoint descriptor (USB Audio 1.0
        bRefresh and bSynchAddress).
        """
        return self._endpoint(True, transfer_type, max_packet_size, interval, number, max_burst, attributes_extra,
                              extra, trailing)

    def endpoint_out(
        self,
        transfer_type: TransferType,
        *,
        max_packet_size: int | None = None,
        interval: int | None = None,
        number: int | None = None,
        max_burst: int = 0,
        attributes_extra: int = 0,
        extra: Sequence[Descriptor] = (),
        trailing: bytes = b"",
    ) -> EndpointDescriptor:
        """An OUT endpoint (host to device); the arguments are those of :meth:`endpoint_in`."""
        return self._endpoint(False, transfer_type, max_packet_size, interval, number, max_burst, attributes_extra,
                              extra, trailing)

    def _endpoint(
        self,
        is_in: bool,
        transfer_type: TransferType,
        max_packet_size: int | None,
        interval: int | None,
        number: int | None,
        max_burst: int,
        attributes_extra: int,
        extra: Sequence[Descriptor],
        trailing: bytes,
    ) -> EndpointDescriptor:
        if number is not None and not 1 <= number <= 15:
            raise DeviceDefinitionError(f"endpoint number {number} is not 1..15")
        preferred = None if number is None else number | (0x80 if is_in else 0)
        plain = self.endpoint(is_in, transfer_type, max_packet_size=max_packet_size, interval=interval,
                              preferred=preferred, max_burst=max_burst)
        if not (attributes_extra or extra or trailing):
            return plain
        try:
            return dataclasses.replace(plain, attributes_extra=attributes_extra, extra=tuple(extra),
                                       trailing=bytes(trailing))
        except DescriptorError as exc:
            raise DeviceDefinitionError(f"endpoint 0x{plain.address:02x}: {exc}") from exc

    def endpoint(
        self,
        is_in: bool,
        transfer_type: TransferType,
        *,
        max_packet_size: int | None = None,
        interval: int | None = None,
        preferred: int | None = None,
        max_burst: int = 0,
    ) -> EndpointDescriptor:
        """An endpoint descriptor with a fresh address and speed-appropriate defaults.

        The first spelling of :meth:`endpoint_in` / :meth:`endpoint_out`, kept working:
        ``is_in`` gives the direction and ``preferred`` a whole address (0x81).
        """
        address = self.endpoint_address(is_in, preferred)
        speed = self.speed
        if max_packet_size is None:
            max_packet_size = {
                TransferType.BULK: {Speed.FULL: 64, Speed.HIGH: 512, Speed.SUPER: 1024}.get(speed, 64),
                TransferType.INTERRUPT: 8 if speed == Speed.LOW else 64,
                TransferType.ISOCHRONOUS: 1023 if speed == Speed.FULL else 1024,
            }[transfer_type]
        if interval is None:
            if transfer_type == TransferType.BULK:
                interval = 0
            elif speed in (Speed.HIGH, Speed.SUPER) or transfer_type == TransferType.ISOCHRONOUS:
                interval = 4 if transfer_type == TransferType.INTERRUPT else 1
            else:
                interval = 10
        companion = None
        if speed == Speed.SUPER:
            bpi = 0 if transfer_type == TransferType.BULK else max_packet_size * (max_burst + 1)
            companion = SuperSpeedEndpointCompanion(max_burst, 0, bpi)
        return EndpointDescriptor(address, transfer_type, max_packet_size, interval, companion=companion)
