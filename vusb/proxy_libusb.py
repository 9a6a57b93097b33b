"""The libusb backend of :mod:`vusb.proxy`: a device plugged into this machine.

It uses python-libusb1 (PyPI ``libusb1``, the ``proxy`` extra), a thin binding of
libusb-1.0 that exposes libusb's asynchronous transfer API: each URB from the USB/IP
host becomes one ``libusb_transfer`` submitted as it comes (several per endpoint can be
in flight, as on a real host controller), its completion callback answers the URB, and
an UNLINK becomes ``libusb_cancel_transfer`` of exactly that transfer.  Bindings with
only synchronous calls (pyusb's usual API) would need a thread per pending transfer
and could not cancel one.  One thread runs libusb's event handling; completions are
handed to the asyncio loop from there.

The device is taken from the operating system while the backend is open: each
interface's kernel driver is detached (``libusb_detach_kernel_driver``) and the
interface claimed; :meth:`LibusbBackend.close` releases them, restores the configuration
the device had and re-attaches the drivers that were detached.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from vusb.constants import Speed, Status, TransferType
from vusb.proxy_backend import (
    DeviceGone,
    DoneCallback,
    PendingTransfer,
    ProxyBackend,
    ProxyError,
    TransferRequest,
    TransferResult,
)

log = logging.getLogger("vusb.proxy")

T = TypeVar("T")

_EXTRA_HINT = ("vusb proxy needs python-libusb1 and the libusb-1.0 library: pip install 'vusb[proxy]' "
               "(and apt-get install libusb-1.0-0, or your system's libusb package)")


def _usb1() -> Any:
    try:
        import usb1
    except (ImportError, OSError) as exc:  # OSError: the binding is there, the libusb-1.0 library is not
        raise ProxyError(f"{_EXTRA_HINT} ({exc})") from None
    return usb1


def _statuses(usb1: Any) -> dict[int, int]:
    return {
        usb1.TRANSFER_COMPLETED: 0,
        usb1.TRANSFER_ERROR: Status.EPROTO,
        usb1.TRANSFER_TIMED_OUT: Status.ETIME,
        usb1.TRANSFER_CANCELLED: Status.ECONNRESET,
        usb1.TRANSFER_STALL: Status.EPIPE,
        usb1.TRANSFER_NO_DEVICE: Status.ENODEV,
        usb1.TRANSFER_OVERFLOW: Status.EOVERFLOW,
    }


def parse_vid_pid(text: str) -> tuple[int, int]:
    """``"0627:0001"`` -> (0x0627, 0x0001); a clear error otherwise."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        vid, pid = (int(p, 16) for p in parts)
        if not (0 <= vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
            raise ValueError
    except ValueError:
        raise ProxyError(f"--vid-pid {text!r}: expected VVVV:PPPP in hexadecimal, e.g. 0627:0001") from None
    return vid, pid


def parse_bus_address(text: str) -> tuple[int, int]:
    """``"1.4"`` (or ``"1:4"``, ``"001/004"``) -> (1, 4): bus number and device address, as lsusb prints them."""
    for sep in (".", ":", "/", "-"):
        if sep in text:
            bus, _, addr = text.partition(sep)
            try:
                b, a = int(bus, 10), int(addr, 10)
            except ValueError:
                break
            if 1 <= b <= 255 and 1 <= a <= 127:
                return b, a
            break
    raise ProxyError(f"--device {text!r}: expected BUS.ADDR as lsusb shows them (Bus 001 Device 004: 1.4)")


class _Transfer(PendingTransfer):
    def __init__(self, transfer: Any, usb1: Any) -> None:
        self.transfer = transfer
        self.usb1 = usb1

    def cancel(self) -> None:
        try:
            self.transfer.cancel()
        except self.usb1.USBErrorNotFound:
            pass  # finished meanwhile: its callback brings the result
        except self.usb1.USBErrorNoDevice:
            pass
        except self.usb1.USBError as exc:
            raise ProxyError(f"cancelling a transfer: {exc}") from None


class LibusbBackend(ProxyBackend):
    """A physical device opened through libusb (see the module docstring); made by :meth:`find`."""

    def __init__(self, context: Any, device: Any, handle: Any, usb1: Any) -> None:
        self.usb1 = usb1
        self.context = context
        self.device = device
        self.handle = handle
        self.bus = device.getBusNumber()
        self.address = device.getDeviceAddress()
        vid, pid = device.getVendorID(), device.getProductID()
        self.description = f"bus {self.bus} device {self.address} ({vid:04x}:{pid:04x})"
        speed = device.getDeviceSpeed()
        self.speed = {usb1.SPEED_LOW: Speed.LOW, usb1.SPEED_FULL: Speed.FULL, usb1.SPEED_HIGH: Speed.HIGH}.get(
            speed, Speed.SUPER if speed and speed >= usb1.SPEED_SUPER else Speed.FULL)
        self._status = _statuses(usb1)
        self.device_descriptor = self._read_descriptor(1, 0, 18)
        count = self.device_descriptor[17]
        self.configurations = [self._read_descriptor(2, i, None) for i in range(count)]
        usb_version = int.from_bytes(self.device_descriptor[2:4], "little")
        self.bos = None
        if usb_version >= 0x0201:
            try:
                self.bos = self._read_descriptor(15, 0, None)
            except ProxyError:
                self.bos = None
        try:
            product = handle.getProduct()
        except (usb1.USBError, UnicodeDecodeError, ValueError):
            product = None
        if product:
            self.description = f"bus {self.bus} device {self.address} ({vid:04x}:{pid:04x} {product.strip()})"
        self._detached: list[int] = []
        self._claimed: list[int] = []
        self._original_configuration = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ finding the device
    @classmethod
    def find(cls, *, vid_pid: str | None = None, device: str | None = None) -> LibusbBackend:
        """Open the one device with ``vid_pid`` ("VVVV:PPPP") or at ``device`` ("BUS.ADDR")."""
        if (vid_pid is None) == (device is None):
            raise ProxyError("name the device to proxy with --vid-pid VVVV:PPPP or --device BUS.ADDR (one of them)")
        usb1 = _usb1()
        want_ids = parse_vid_pid(vid_pid) if vid_pid is not None else None
        want_at = parse_bus_address(device) if device is not None else None
        try:
            context = usb1.USBContext()
            context.open()
        except (usb1.USBError, OSError) as exc:
            raise ProxyError(f"libusb could not start: {exc}. {_EXTRA_HINT}") from None
        found = []
        seen = []
        for dev in context.getDeviceIterator(skip_on_error=True):
            ids = (dev.getVendorID(), dev.getProductID())
            at = (dev.getBusNumber(), dev.getDeviceAddress())
            seen.append(f"{at[0]}.{at[1]} {ids[0]:04x}:{ids[1]:04x}")
            if (want_ids is not None and ids == want_ids) or (want_at is not None and at == want_at):
                found.append(dev)
        what = f"--vid-pid {vid_pid}" if vid_pid is not None else f"--device {device}"
        if not found:
            context.close()
            here = ", ".join(seen) if seen else "none (is this machine's USB visible here? /dev/bus/usb)"
            raise ProxyError(f"no USB device matches {what}; devices here (BUS.ADDR VID:PID): {here}")
        if len(found) > 1:
            places = ", ".join(f"{d.getBusNumber()}.{d.getDeviceAddress()}" for d in found)
            context.close()
            raise ProxyError(f"{len(found)} devices match {what} (at {places}); pick one with --device BUS.ADDR")
        dev = found[0]
        if dev.getDeviceClass() == 9:
            context.close()
            raise ProxyError(f"{what} is a hub; USB/IP cannot export hubs")
        path = f"/dev/bus/usb/{dev.getBusNumber():03d}/{dev.getDeviceAddress():03d}"
        try:
            handle = dev.open()
        except usb1.USBErrorAccess:
            context.close()
            raise ProxyError(f"no permission to open {path} ({what}): run as root or give your user access "
                             "with a udev rule") from None
        except usb1.USBError as exc:
            context.close()
            raise ProxyError(f"could not open {path} ({what}): {exc}") from None
        try:
            return cls(context, dev, handle, usb1)
        except usb1.USBErrorNoDevice:
            handle.close()
            context.close()
            raise DeviceGone(f"{what} was unplugged while being opened") from None

    def _read_descriptor(self, dtype: int, index: int, length: int | None) -> bytes:
        usb1 = self.usb1
        try:
            if length is None:  # a descriptor with a wTotalLength: its head, then all of it
                head = bytes(self.handle.controlRead(0x80, 6, (dtype << 8) | index, 0, 9 if dtype == 2 else 5,
                                                     timeout=5000))
                length = int.from_bytes(head[2:4], "little")
            data = bytes(self.handle.controlRead(0x80, 6, (dtype << 8) | index, 0, length, timeout=5000))
        except usb1.USBErrorNoDevice:
            raise DeviceGone(f"{self.description} was unplugged") from None
        except usb1.USBError as exc:
            raise ProxyError(f"{self.description}: reading descriptor type {dtype} index {index}: {exc}") from None
        if len(data) < min(length, 2):
            raise ProxyError(f"{self.description}: descriptor type {dtype} index {index} is {len(data)} bytes long")
        return data

    # ------------------------------------------------------------ taking and giving back the device
    def active_configuration(self) -> int:
        try:
            return int(self.handle.getConfiguration())
        except self.usb1.USBErrorNoDevice:
            raise DeviceGone(f"{self.description} was unplugged") from None
        except self.usb1.USBError as exc:
            raise ProxyError(f"{self.description}: reading its configuration: {exc}") from None

    def _interfaces(self, value: int) -> list[int]:
        for raw in self.configurations:
            if len(raw) >= 9 and raw[5] == value:
                return list(range(raw[4]))
        return []

    def _take_interfaces(self) -> None:
        usb1 = self.usb1
        for number in self._interfaces(self.active_configuration()):
            try:
                if self.handle.kernelDriverActive(number):
                    self.handle.detachKernelDriver(number)
                    if number not in self._detached:
                        self._detached.append(number)
                    log.info("%s: kernel driver of interface %d detached", self.description, number)
            except usb1.USBErrorNotSupported:
                pass  # no kernel drivers on this platform
            except usb1.USBErrorNoDevice:
                raise DeviceGone(f"{self.description} was unplugged") from None
            except usb1.USBError as exc:
                raise ProxyError(f"{self.description}: could not detach the kernel driver of interface {number}: "
                                 f"{exc}") from None
            try:
                self.handle.claimInterface(number)
            except usb1.USBErrorBusy:
                raise ProxyError(f"{self.description}: interface {number} is in use by another program") from None
            except usb1.USBErrorNoDevice:
                raise DeviceGone(f"{self.description} was unplugged") from None
            except usb1.USBError as exc:
                raise ProxyError(f"{self.description}: could not claim interface {number}: {exc}") from None
            self._claimed.append(number)

    def _release_interfaces(self) -> None:
        for number in self._claimed:
            try:
                self.handle.releaseInterface(number)
            except self.usb1.USBError:
                pass
        self._claimed = []

    def open(self) -> None:
        self._original_configuration = self.active_configuration()
        try:
            self._take_interfaces()
        except ProxyError:
            self._give_back()
            raise
        self._running = True
        self._thread = threading.Thread(target=self._events, name=f"vusb-libusb {self.description}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._running = False
        if self._thread is not None:
            try:
                self.context.interruptEventHandler()
            except (AttributeError, self.usb1.USBError):
                pass
            self._thread.join(2.0)
            self._thread = None
        self._give_back()
        try:
            self.handle.close()
        finally:
            self.context.close()

    def _give_back(self) -> None:
        """Release the interfaces, restore the configuration and re-attach the detached kernel drivers."""
        usb1 = self.usb1
        try:
            self.handle.getConfiguration()
        except usb1.USBErrorNoDevice:
            self._claimed = []
            self._detached = []  # unplugged: its drivers went with it, nothing to give back
            return
        except usb1.USBError:
            pass
        self._release_interfaces()
        try:
            if self._original_configuration and self.active_configuration() != self._original_configuration:
                self.handle.setConfiguration(self._original_configuration)
        except (ProxyError, usb1.USBError) as exc:
            log.warning("%s: could not restore configuration %d: %s", self.description,
                        self._original_configuration, exc)
        for number in self._detached:
            try:
                self.handle.attachKernelDriver(number)
                log.info("%s: kernel driver of interface %d re-attached", self.description, number)
            except usb1.USBErrorBusy:
                # A driver bound to an earlier interface claimed this one too (snd-usb-audio takes
                # its streaming interfaces with the control one): it is back already.
                log.info("%s: interface %d is bound again (its driver took it with another interface)",
                         self.description, number)
            except usb1.USBError as exc:
                log.warning("%s: could not re-attach the kernel driver of interface %d: %s", self.description,
                            number, exc)
        self._detached = []

    def _events(self) -> None:
        usb1 = self.usb1
        while self._running:
            try:
                self.context.handleEventsTimeout(0.2)
            except usb1.USBErrorInterrupted:
                continue
            except usb1.USBError as exc:
                log.warning("%s: libusb event handling: %s", self.description, exc)

    # ------------------------------------------------------------ transfers
    def submit(self, request: TransferRequest, done: DoneCallback) -> PendingTransfer:
        usb1 = self.usb1
        iso = request.iso_lengths
        try:
            transfer = self.handle.getTransfer(iso_packets=len(iso) if iso else 0,
                                               short_is_error=request.short_not_ok,
                                               add_zero_packet=request.zero_packet)
        except usb1.USBErrorNoDevice:
            raise DeviceGone(f"{self.description} was unplugged") from None
        except usb1.USBError as exc:
            raise ProxyError(f"allocating a transfer: {exc}") from None
        callback = self._callback(request, done)
        buffer: int | bytes = request.length if request.is_in else request.data
        try:
            if request.transfer_type == TransferType.CONTROL:
                setup = request.setup
                assert setup is not None
                transfer.setControl(setup.request_type, setup.request, setup.value, setup.index,
                                    setup.length if setup.is_in else request.data, callback=callback)
            elif request.transfer_type == TransferType.BULK:
                transfer.setBulk(request.endpoint, buffer, callback=callback)
            elif request.transfer_type == TransferType.INTERRUPT:
                transfer.setInterrupt(request.endpoint, buffer, callback=callback)
            else:
                if not iso or any(n <= 0 for n in iso):
                    raise ProxyError("libusb1 cannot send an isochronous packet of length 0")
                transfer.setIsochronous(request.endpoint, sum(iso) if request.is_in else request.data,
                                        callback=callback, iso_transfer_length_list=list(iso))
            transfer.submit()
        except usb1.USBErrorNoDevice:
            raise DeviceGone(f"{self.description} was unplugged") from None
        except usb1.USBError as exc:
            raise ProxyError(f"submitting a transfer to endpoint 0x{request.endpoint:02x}: {exc}") from None
        except ValueError as exc:
            raise ProxyError(f"transfer to endpoint 0x{request.endpoint:02x}: {exc}") from None
        return _Transfer(transfer, usb1)

    def _callback(self, request: TransferRequest, done: DoneCallback) -> Callable[[Any], None]:
        statuses = self._status

        def finished(transfer: Any) -> None:  # libusb's event thread
            transfer.doom()  # freed after this callback
            status = statuses.get(transfer.getStatus(), Status.EPROTO)
            if request.iso_lengths is not None:
                packets = []
                chunks = []
                for (st, buf), _ in zip(transfer.iterISO(), request.iso_lengths, strict=False):
                    data = bytes(buf)
                    packets.append((len(data), statuses.get(st, Status.EPROTO)))
                    if request.is_in:
                        chunks.append(data)
                if not request.is_in:  # OUT: what each packet carried
                    packets = [(n if s == 0 else 0, s) for (_, s), n in zip(packets, request.iso_lengths, strict=False)]
                result = TransferResult(status, b"".join(chunks), sum(n for n, _ in packets), tuple(packets))
            else:
                actual = transfer.getActualLength()
                data = bytes(transfer.getBuffer()[:actual]) if request.is_in else b""
                result = TransferResult(status, data, actual)
            done(result)

        return finished

    # ------------------------------------------------------------ state changes
    async def _blocking(self, call: Callable[[], T]) -> T:
        def guarded() -> T:
            try:
                return call()
            except self.usb1.USBErrorNoDevice:
                raise DeviceGone(f"{self.description} was unplugged") from None
            except self.usb1.USBErrorNotFound as exc:
                raise ProxyError(f"{self.description}: {exc}") from None
            except self.usb1.USBError as exc:
                raise ProxyError(f"{self.description}: {exc}") from None

        return await asyncio.to_thread(guarded)

    async def set_configuration(self, value: int) -> None:
        def change() -> None:
            with self._lock:
                if value == int(self.handle.getConfiguration()):
                    # The configuration in use: only the alternate settings go back to 0 (a
                    # real SET_CONFIGURATION would need every interface released first).
                    for number in self._claimed:
                        self.handle.setInterfaceAltSetting(number, 0)
                    return
                self._release_interfaces()
                self.handle.setConfiguration(value)
                if value:
                    self._take_interfaces()

        await self._blocking(change)

    async def set_interface(self, interface: int, alternate: int) -> None:
        await self._blocking(lambda: self.handle.setInterfaceAltSetting(interface, alternate))

    async def clear_halt(self, endpoint: int) -> None:
        await self._blocking(lambda: self.handle.clearHalt(endpoint))


def available() -> bool:
    """Whether python-libusb1 can be imported (the ``proxy`` extra is installed)."""
    try:
        _usb1()
    except ProxyError:
        return False
    return True


__all__ = ["LibusbBackend", "available", "parse_bus_address", "parse_vid_pid"]
