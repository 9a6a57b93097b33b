"""The one exception hierarchy of vusb.

::

    VusbError                      every error vusb raises on purpose
    ├── DescriptorError            a descriptor value is invalid (raised when defined)
    ├── DeviceDefinitionError      a device, function or endpoint layout is inconsistent
    ├── ProfileError               a YAML profile is wrong (names file, line, column, field)
    ├── UsageError                 the API was misused (wrong state, wrong argument)
    ├── ProtocolError              bytes from the wire break the USB/IP protocol
    │   └── LimitExceeded          a peer asked for more than the configured bounds
    ├── TransferError              a transfer ended with a USB error status (client side)
    │   └── Stall                  the device stalled the request (-EPIPE)
    ├── RemoteError                a USB/IP peer answered an op with a failure status
    │   ├── DeviceBusy             OP_REP_IMPORT status 2: another client holds it
    │   └── NoSuchDevice           OP_REP_IMPORT status 4 / unknown busid
    ├── ConnectionClosed           the peer closed the connection
    └── NetworkError               a socket could not connect or listen (an OSError too)
        ├── NothingListening       connection refused: no server at that address
        └── AddressInUse           the port to listen on is taken

Protocol errors describe what came from the wire; usage errors describe what the
calling program did wrong.  A server never lets either escape: a protocol error
closes the connection that caused it and is logged, nothing else is touched.
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
