"""The printer function, its job folder, and the ready-made :class:`Printer` device."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vusb.devices.printer.spec import (
    PRINTER_CLASS,
    PRINTER_SUBCLASS,
    DeviceIdError,
    PortStatus,
    PrinterProtocol,
    PrinterRequest,
    build_device_id,
    encode_device_id,
)

from vusb.constants import Recipient, RequestType, Speed, TransferType
from vusb.descriptors import EndpointDescriptor, InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function
from vusb.errors import DeviceDefinitionError, Stall, UsageError
from vusb.urb import Completion, SetupPacket, Urb

log = logging.getLogger("vusb.printer")

DEFAULT_JOB_FOLDER = "print-jobs"
DEFAULT_JOB_TIMEOUT = 2.0
"""Seconds without data after which the job in progress ends (real printers call this the I/O timeout)."""

DEFAULT_DEVICE_ID = {"MFG": "vusb", "MDL": "Virtual Printer", "CMD": "PJL,PCL,POSTSCRIPT,PDF", "CLS": "PRINTER",
                     "DES": "vusb virtual printer"}

_JOB_NAME = re.compile(r"^job-(\d{4,})\.prn(\.part)?$")


@dataclass(frozen=True)
class PrintJob:
    """One job the host sent, saved whole in the job folder."""

    number: int
    path: Path
    size: int
    ended_by: str
    """Why the job ended: ``idle`` (no data for ``job_timeout`` s), ``soft-reset``, ``disconnect``
    (the host let the device go: detach, USB reset, SET_CONFIGURATION 0), ``end_job`` (Python) or ``close``."""
    started: float
    ended: float

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


class JobFolderError(UsageError):
    """The job folder cannot hold jobs (missing and not creatable, not a folder, not writable)."""


class JobFolder:
    """Where jobs are written: ``job-0001.prn``, ``job-0002.prn``... A job being received is
    ``job-NNNN.prn.part`` and gets its final name when it ends. Numbering continues after the
    highest job already in the folder, so a restart never overwrites an earlier job.

    The folder is checked when the printer is made, before a host can send a job that
    would be lost: an existing folder must take a file (a probe is written and removed), a
    missing one must be creatable (its nearest existing parent a writable folder); it is
    created when the first job starts. Any failure is a :class:`JobFolderError` naming the
    folder and the reason. ``write_probe=False`` (``vusb check``, a dry run) writes no probe and
    asks the file system for write permission instead.
    """

    def __init__(self, path: str | os.PathLike[str], *, write_probe: bool = True) -> None:
        self.path = Path(path).expanduser().absolute()
        where = f"print job folder {str(self.path)!r}"
        if self.path.exists():
            if not self.path.is_dir():
                raise JobFolderError(f"{where}: exists and is not a folder")
            if not write_probe:
                if not os.access(self.path, os.W_OK | os.X_OK):
                    raise JobFolderError(f"{where}: cannot be written: Permission denied")
                return
            probe = self.path / f".vusb-write-test-{os.getpid()}"
            try:
                with open(probe, "wb") as f:
                    f.write(b"x")
                probe.unlink()
            except OSError as exc:
                raise JobFolderError(f"{where}: cannot be written: {exc.strerror or exc}") from None
            return
        parent = self.path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise JobFolderError(f"{where}: cannot be created: {str(parent)!r} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise JobFolderError(f"{where}: cannot be created: {str(parent)!r} is not writable")

    def open_job(self) -> tuple[int, Path, IO[bytes]]:
        """A new job file (the folder made first if need be), named after the highest job number there."""
        self.path.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in self.path.iterdir() if (m := _JOB_NAME.match(p.name))]
        number = max(numbers, default=0) + 1
        path = self.path / f"job-{number:04d}.prn"
        return number, path, open(path.with_name(path.name + ".part"), "xb")  # kept open across URBs


JobCallback = Callable[[PrintJob], "Awaitable[None] | None"]


class PrinterFunction(Function):
    """A USB printer interface (class 7, subclass 1), bidirectional (protocol 2) by default.

    ``device_id``: the IEEE 1284 device ID, as text (``"MFG:...;MDL:...;"``) or a mapping of
    its fields. ``job_folder``: where jobs are saved (a path checked now, or a :class:`JobFolder`).
    ``on_job``: called with each :class:`PrintJob` once it is whole (may be a coroutine
    function). ``job_timeout``: seconds without data that end a job.

    The port status (``paper_out``, ``selected``, ``error``) is what GET_PORT_STATUS reports.
    While the printer cannot print (paper out, off line or in error) it takes no data: bulk
    OUT transfers wait, as a real printer NAKs them, and go on once the condition clears.
    """

    name: str | None = "Printer"
    function_class: tuple[int, int, int] | None = (PRINTER_CLASS, PRINTER_SUBCLASS, PrinterProtocol.BIDIRECTIONAL)
    interface_in_high_byte: frozenset[int] = frozenset({PrinterRequest.GET_DEVICE_ID})  # wIndex: interface << 8 | alternate

    def __init__(
        self,
        *,
        device_id: str | Mapping[str, str] | None = None,
        job_folder: str | os.PathLike[str] | JobFolder = DEFAULT_JOB_FOLDER,
        on_job: JobCallback | None = None,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
        protocol: int = PrinterProtocol.BIDIRECTIONAL,
        paper_out: bool = False,
        selected: bool = True,
        error: bool = False,
        interface_name: str | None = None,
    ) -> None:
        super().__init__()
        if protocol not in (PrinterProtocol.UNIDIRECTIONAL, PrinterProtocol.BIDIRECTIONAL):
            raise DeviceDefinitionError(f"printer protocol {protocol}: 1 (unidirectional) or 2 (bidirectional)")
        if not job_timeout > 0:
            raise DeviceDefinitionError(f"job_timeout {job_timeout!r}: a positive number of seconds")
        text = build_device_id(DEFAULT_DEVICE_ID if device_id is None else device_id) \
            if not isinstance(device_id, str) else device_id
        try:
            self._device_id_bytes = encode_device_id(text)
        except DeviceIdError as exc:
            raise DeviceDefinitionError(str(exc)) from None
        self.device_id = text
        self.protocol = PrinterProtocol(protocol)
        self.function_class = (PRINTER_CLASS, PRINTER_SUBCLASS, int(self.protocol))
        self.folder = job_folder if isinstance(job_folder, JobFolder) else JobFolder(job_folder)
        self.on_job = on_job
        self.job_timeout = float(job_timeout)
        self.interface_name = interface_name
        self._paper_out, self._selected, self._error = paper_out, selected, error
        self.jobs: list[PrintJob] = []
        """Every job finished so far, oldest first."""
        self.status_reads = 0
        """GET_PORT_STATUS requests answered (Linux's usblp asks every 1.5 s while a write waits)."""
        self.soft_resets = 0
        self.interface = 0
        self.out_address = 0
        self.in_address = 0
        self._file: IO[bytes] | None = None
        self._job: tuple[int, Path, float] | None = None
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._held: tuple[bytes, asyncio.Future[Completion]] | None = None
        self._finished: asyncio.Queue[PrintJob] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ declaration
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        if ctx.speed == Speed.LOW:
            raise DeviceDefinitionError("a printer needs bulk endpoints, which low-speed devices cannot have")
        self.interface = ctx.interface_number()
        out = ctx.endpoint_out(TransferType.BULK)
        self.out_address = out.address
        endpoints: tuple[EndpointDescriptor, ...] = (out,)
        if self.protocol == PrinterProtocol.BIDIRECTIONAL:  # the next free IN number: other functions may hold out's
            bulk_in = ctx.endpoint_in(TransferType.BULK)
            self.in_address = bulk_in.address
            endpoints = (out, bulk_in)
        return [InterfaceDescriptor(self.interface, 0, PRINTER_CLASS, PRINTER_SUBCLASS, int(self.protocol),
                                    ctx.string(self.interface_name), endpoints)]

    def bind(self, device: Device) -> None:
        device.endpoint(self.out_address).handler = self._bulk_out

    # ------------------------------------------------------------ port status
    @property
    def port_status(self) -> PortStatus:
        return PortStatus.of(paper_out=self._paper_out, selected=self._selected, error=self._error)

    @property
    def paper_out(self) -> bool:
        return self._paper_out

    @property
    def selected(self) -> bool:
        return self._selected

    @property
    def error(self) -> bool:
        return self._error

    @property
    def ready(self) -> bool:
        """Takes data: paper in, on line, no error."""
        return not self._paper_out and self._selected and not self._error

    def set_status(self, *, paper_out: bool | None = None, selected: bool | None = None,
                   error: bool | None = None) -> PortStatus:
        """Change what GET_PORT_STATUS reports; data held while the printer was not ready goes on once it is."""
        if paper_out is not None:
            self._paper_out = paper_out
        if selected is not None:
            self._selected = selected
        if error is not None:
            self._error = error
        log.info("%s: port status %s", self._where(), self.describe_status())
        self._release_held()
        return self.port_status

    def describe_status(self) -> str:
        return ", ".join([("paper out" if self._paper_out else "paper ok"),
                          ("selected" if self._selected else "off line"), ("error" if self._error else "no error")])

    # ------------------------------------------------------------ class requests
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        if setup.type != RequestType.CLASS:
            return NOT_HANDLED
        req = setup.request
        if req == PrinterRequest.GET_DEVICE_ID and setup.is_in and setup.recipient == Recipient.INTERFACE:
            if setup.index >> 8 != self.interface:  # wIndex: interface high, alternate setting low
                return NOT_HANDLED
            return self._device_id_bytes
        if req == PrinterRequest.GET_PORT_STATUS and setup.is_in and setup.recipient == Recipient.INTERFACE:
            if setup.index & 0xFF != self.interface:
                return NOT_HANDLED
            self.status_reads += 1
            return bytes((int(self.port_status),))
        if req == PrinterRequest.SOFT_RESET and not setup.is_in \
                and setup.recipient in (Recipient.INTERFACE, Recipient.OTHER):
            if setup.index & 0xFF != self.interface:
                return NOT_HANDLED
            if setup.length:
                raise Stall("SOFT_RESET has no data stage")
            self.soft_reset()
            return None
        return NOT_HANDLED

    def soft_reset(self) -> None:
        """What SOFT_RESET does: the job in progress ends, halted bulk pipes are cleared."""
        self.soft_resets += 1
        self._end_job("soft-reset")
        if self.device is not None:
            for address in (self.out_address, self.in_address):
                if address and self.device.endpoint(address).halted:
                    self.device.endpoint(address).clear_halt()

    # ------------------------------------------------------------ data from the host
    def _bulk_out(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        data = urb.data
        if self.ready and self._write(data):
            return Completion(0, b"", len(data))
        held: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._held = (bytes(data), held)
        return held

    def _release_held(self) -> None:
        held = self._held
        if held is None or not self.ready:
            return
        data, fut = held
        if fut.done():  # unlinked meanwhile: the host keeps those bytes
            self._held = None
            return
        if self._write(data):
            self._held = None
            fut.set_result(Completion(0, b"", len(data)))

    def _write(self, data: bytes | memoryview) -> bool:
        """Append to the job in progress (starting one); False (and error status) when the file fails."""
        try:
            if self._file is None:
                number, path, self._file = self.folder.open_job()
                self._job = (number, path, time.time())
                self._size = 0
                log.info("%s: job %d started (%s)", self._where(), number, path.name)
            self._file.write(data)
        except OSError as exc:
            where = self._job[1] if self._job is not None else self.folder.path
            log.error("%s: cannot write the print job to %s: %s; reporting an error and holding the data "
                      "until set_status(error=False)", self._where(), where, exc.strerror or exc)
            self._error = True
            return False
        self._size += len(data)
        self._arm_timer()
        return True

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.job_timeout, self._end_job, "idle")

    # ------------------------------------------------------------ jobs
    def end_job(self) -> PrintJob | None:
        """End the job in progress now (None if no data came since the last one)."""
        return self._end_job("end_job")

    def _end_job(self, reason: str) -> PrintJob | None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._file is None or self._job is None:
            return None
        number, path, started = self._job
        self._file.close()
        self._file, self._job = None, None
        os.replace(path.with_name(path.name + ".part"), path)
        job = PrintJob(number, path, self._size, reason, started, time.time())
        self.jobs.append(job)
        log.info("%s: job %d ended (%s): %d bytes in %s", self._where(), number, reason, job.size, path)
        if self._finished is not None:
            self._finished.put_nowait(job)
        if self.on_job is not None:
            try:
                result = self.on_job(job)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(self._await_callback(result))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("%s: on_job callback failed for job %d", self._where(), number)
        return job

    async def _await_callback(self, result: Awaitable[None]) -> None:
        try:
            await result
        except Exception:
            log.exception("%s: on_job callback failed", self._where())

    async def next_job(self, timeout: float | None = None) -> PrintJob:
        """The oldest finished job not handed out yet by this method (waits for one)."""
        if self._finished is None:
            self._finished = asyncio.Queue()
            for job in self.jobs:
                self._finished.put_nowait(job)
        return await asyncio.wait_for(self._finished.get(), timeout)

    # ------------------------------------------------------------ data to the host
    def send_to_host(self, data: bytes) -> asyncio.Future[None]:
        """Queue bytes for the host's next reads of the bulk IN pipe (the back channel)."""
        if not self.in_address or self.device is None:
            raise UsageError("a unidirectional printer (protocol 1) has no back channel")
        return self.device.endpoint(self.in_address).send(data)

    # ------------------------------------------------------------ lifecycle
    def on_configured(self, configured: bool) -> None:
        self._held = None
        if not configured:
            self._end_job("disconnect")

    def on_reset(self) -> None:
        self._held = None
        self._end_job("disconnect")

    def close(self) -> None:
        self._end_job("close")

    def _where(self) -> str:
        dev = self.device
        return f"{dev.describe()} printer" if dev is not None else "printer"


class Printer(Device):
    """A USB printer that saves every job it receives as a file.

    ::

        printer = Printer(job_folder="jobs", on_job=lambda job: print(job.path, job.size))
        job = await printer.next_job()            # after the host printed something
        printer.set_status(paper_out=True)        # GET_PORT_STATUS reports it; writes wait
    """

    def __init__(
        self,
        *,
        device_id: str | Mapping[str, str] | None = None,
        job_folder: str | os.PathLike[str] | JobFolder = DEFAULT_JOB_FOLDER,
        on_job: JobCallback | None = None,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
        protocol: int = PrinterProtocol.BIDIRECTIONAL,
        vendor_id: int = 0x1209,
        product_id: int = 0x0017,
        device_version: int = 0x0100,
        manufacturer: str | None = "vusb",
        product: str | None = "Virtual Printer",
        serial_number: str | None = None,
        speed: Speed | str = "high",
        interface_name: str | None = None,
        **kwargs: object,
    ) -> None:
        self.printer = PrinterFunction(device_id=device_id, job_folder=job_folder, on_job=on_job,
                                       job_timeout=job_timeout, protocol=protocol, interface_name=interface_name)
        super().__init__(self.printer, vendor_id=vendor_id, product_id=product_id, device_version=device_version,
                         manufacturer=manufacturer, product=product, serial_number=serial_number, speed=speed,
                         **kwargs)  # type: ignore[arg-type]

    @property
    def jobs(self) -> list[PrintJob]:
        return self.printer.jobs

    async def next_job(self, timeout: float | None = None) -> PrintJob:
        return await self.printer.next_job(timeout)

    def set_status(self, *, paper_out: bool | None = None, selected: bool | None = None,
                   error: bool | None = None) -> PortStatus:
        return self.printer.set_status(paper_out=paper_out, selected=selected, error=error)

    def end_job(self) -> PrintJob | None:
        return self.printer.end_job()
