"""The one exception hierarchy of vusb: every error it raises on purpose is a :class:`VusbError`.

::

    VusbError                            every error vusb raises on purpose
    ├── UsageError                       the calling program misused the API (wrong state, wrong argument)
    │   ├── ArgumentError                an argument has a value the API does not accept (also a ValueError)
    │   │   └── DeviceIdError            a printer's IEEE 1284 device ID a host cannot read back (vusb.devices.printer)
    │   ├── ArgumentTypeError            an argument has a type the API does not accept (also a TypeError)
    │   ├── AnswerRuleError              a serial port's answer rule is invalid (vusb.devices.cdc_acm)
    │   └── JobFolderError               a printer's job folder cannot hold jobs (vusb.devices.printer)
    ├── DescriptorError                  a descriptor value is invalid (raised when defined; also a ValueError)
    ├── DeviceDefinitionError            a device, function or endpoint layout is inconsistent (also a ValueError)
    ├── ProfileError                     a YAML profile is wrong (names file, line, column, field)
    │   └── ProfileErrors                several errors of one profile, one line each (vusb check)
    ├── CloneError                       a device could not be cloned (vusb.clone)
    ├── CaptureReadError                 a capture cannot be read: cut short, another link type (vusb.capture_read)
    │   └── RecordError                  no device in a capture matches, or it makes no replay profile (vusb.record)
    ├── ProxyError                       a physical device cannot be proxied: not found, no access, no libusb1 (vusb.proxy)
    │   └── DeviceGone                   the proxied physical device was unplugged (vusb.proxy)
    ├── ControlError                     a control-channel command failed (vusb.control)
    ├── ProtocolError                    bytes from the wire break the USB/IP protocol
    │   └── LimitExceeded                a peer asked for more than the configured bounds
    ├── TransferError                    a transfer ended with a USB error status (client side)
    │   └── Stall                        the device stalled the request (-EPIPE); handlers raise it to refuse one
    ├── TransferTimeout                  a transfer got no answer in time and was unlinked (also a TimeoutError)
    ├── RemoteError                      a USB/IP peer answered an op with a failure status
    │   ├── DeviceBusy                   OP_REP_IMPORT status 2: another client holds it
    │   └── NoSuchDevice                 OP_REP_IMPORT status 4 / unknown busid
    ├── ConnectionClosed                 the peer closed the connection (also a ConnectionError)
    ├── NetworkError                     a socket could not connect or listen (also an OSError)
    │   ├── NothingListening             connection refused: no server at that address
    │   └── AddressInUse                 the port to listen on is taken
    ├── LineCodingError                  a CDC line coding field is out of range (vusb.devices.cdc_acm; a ValueError)
    ├── CheckCondition                   a SCSI command ends in CHECK CONDITION (vusb.devices.storage, internal)
    ├── MediumError                      a disk image refused a read or write (vusb.devices.storage; an OSError)
    ├── VideoSourceError                 a webcam's frame source failed: an image, Pillow, a frame (vusb.devices.video)
    ├── MediaError                       a WAV file cannot be read or written (vusb.devices.audio)
    ├── NetFormatError                   a malformed NTB, RNDIS message, frame or MAC address (vusb.devices.net; a ValueError)
    ├── NetBackendError                  a network adapter's backend cannot work as configured (vusb.devices.net)
    └── HarnessError                     the test harness failed (vusb.harness)
        ├── HarnessPrerequisiteError     a host program or file the harness needs is missing
        ├── ImageBuildError              a guest image could not be built
        └── GuestError                   something went wrong with a running guest
            ├── GuestBootError           the guest did not come up
            ├── GuestDiedError           QEMU exited while the guest was in use
            ├── GuestCommandError        a guest command exited with a non-zero status
            └── GuestTimeoutError        a guest command or wait did not finish in time (also a TimeoutError)

Two families never mix.  Errors from the wire (:class:`ProtocolError`,
:class:`RemoteError`, :class:`ConnectionClosed`) describe what a peer sent; a server
never lets one escape: it closes the connection that caused it and logs it, nothing
else is touched.  Errors of the calling program (:class:`UsageError`,
:class:`DescriptorError`, :class:`DeviceDefinitionError`, :class:`ProfileError`) are
raised where the program made the mistake, when it defines a device or calls the
API, never later when a host enumerates the device.  Where a builtin exception used
to be raised, the vusb error also derives from it (``except ValueError`` keeps
working).  The classes outside this module are defined next to their code; the
tree lists them all (``tests/test_errors.py`` checks it against the code).
"""

from __future__ import annotations


class VusbError(Exception):
    """Base class of every error vusb raises on purpose."""


class DescriptorError(VusbError, ValueError):
    """A descriptor field has a value the USB specification does not allow."""


class DeviceDefinitionError(VusbError, ValueError):
    """A device definition is inconsistent (duplicate endpoints, bad speed mix, ...)."""


class ProfileError(VusbError):
    """A YAML profile is wrong.  The message names file, line, column and field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.reason = message
        where = []
        if file is not None:
            loc = file
            if line is not None:
                loc += f":{line}"
                if column is not None:
                    loc += f":{column}"
            where.append(loc)
        if field:
            where.append(f"field '{field}'")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UsageError(VusbError, RuntimeError):
    """The library was used in a way it does not support."""


class ArgumentError(UsageError, ValueError):
    """An argument has a value the API does not accept."""


class ArgumentTypeError(UsageError, TypeError):
    """An argument has a type the API does not accept."""


class ProtocolError(VusbError):
    """Bytes received from a peer violate the USB/IP protocol."""


class LimitExceeded(ProtocolError):
    """A peer asked for more than a configured limit allows."""


class TransferError(VusbError):
    """A transfer completed with a non-zero USB status."""

    def __init__(self, status: int, message: str = "", data: bytes = b"") -> None:
        self.status = status
        self.data = data
        super().__init__(message or f"transfer failed with status {status}")


class Stall(TransferError):
    """The device stalled the request (status -EPIPE)."""

    def __init__(self, message: str = "", data: bytes = b"") -> None:
        super().__init__(-32, message or "request stalled (-EPIPE)", data)


class TransferTimeout(VusbError, TimeoutError):
    """A transfer got no answer within its timeout; the client unlinked it."""


class RemoteError(VusbError):
    """A USB/IP peer answered an operation with a failure status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class DeviceBusy(RemoteError):
    """The device is already imported by another client."""


class NoSuchDevice(RemoteError):
    """The peer exports no device with that busid."""


class ConnectionClosed(VusbError, ConnectionError):
    """The peer closed the connection."""


class NetworkError(VusbError, OSError):
    """A socket could not connect or listen; the message names the address and what to do.

    It is an :class:`OSError` too, with the operating system's ``errno``, so code that
    catches socket errors keeps working.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno  # type: ignore[assignment]


class NothingListening(NetworkError, ConnectionRefusedError):
    """Nothing listens at the address a client connected to (connection refused)."""


class AddressInUse(NetworkError):
    """The address and port a server was to listen on are taken."""


class HarnessError(VusbError):
    """Base class of every error raised by :mod:`vusb.harness`."""
