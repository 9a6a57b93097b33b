"""Communications Device Class, Abstract Control Model: a USB serial port (CDC 1.2, PSTN 1.2).

Linux binds ``cdc_acm`` to it and makes ``/dev/ttyACM0``.  The function has two
interfaces, tied together by a union functional descriptor (and an IAD when the
device has other functions too):

* the communications interface (class 0x02, subclass 0x02 ACM, protocol 0x01 AT
  commands) with the header, call management, ACM and union functional
  descriptors and an interrupt IN endpoint for notifications;
* the data interface (class 0x0A) with a bulk OUT and a bulk IN endpoint that
  carry the serial bytes.

Class requests (PSTN 1.2 section 6.3), sent to the communications interface:

=========================  ====  ==============================================
SEND_ENCAPSULATED_COMMAND  0x00  accepted and ignored (required by CDC)
GET_ENCAPSULATED_RESPONSE  0x01  always empty
SET/GET/CLEAR_COMM_FEATURE 0x02  only with the COMM_FEATURE capability
SET_LINE_CODING            0x20  7 bytes: dwDTERate, bCharFormat, bParityType,
                                 bDataBits; checked, stalled if invalid
GET_LINE_CODING            0x21  the line coding last set (9600 8N1 at first)
SET_CONTROL_LINE_STATE     0x22  wValue bit 0 DTR, bit 1 RTS
SEND_BREAK                 0x23  wValue: duration in ms, 0xFFFF until a 0
=========================  ====  ==============================================

Any other request stalls.  The device reports its UART state with the
SERIAL_STATE notification (PSTN 6.5.4): DCD, DSR, and the one-shot events break,
ring, framing, parity and overrun error.

::

    port = SerialPort()                 # Python code is the other end
    await port.wait_dtr()               # a program opened /dev/ttyACM0
    await port.write(b"hello\\r\\n")
    line = await port.readline()
    port.set_dcd(True)

    SerialPort(backend="loopback")
    SerialPort(backend=PtyBackend("/tmp/ttyV0"))
    SerialPort(backend=TcpBackend("127.0.0.1", 4000, listen=True))
"""

from vusb.devices.cdc_acm.backends import (
    AnswerBackend,
    BackendSpec,
    LoopbackBackend,
    NullBackend,
    PtyBackend,
    SerialBackend,
    TcpBackend,
    make_backend,
)
from vusb.devices.cdc_acm.fifo import ByteFifo
from vusb.devices.cdc_acm.function import DEFAULT_BUFFER_SIZE, CdcAcmFunction, SerialPort
from vusb.devices.cdc_acm.profile import register_profile_kinds
from vusb.devices.cdc_acm.spec import (
    AcmCapability,
    AcmDescriptor,
    AcmProtocol,
    CallManagementCapability,
    CallManagementDescriptor,
    CdcNotification,
    CdcRequest,
    ControlLine,
    HeaderDescriptor,
    LineCoding,
    LineCodingError,
    Notification,
    Parity,
    SerialState,
    StopBits,
    UnionDescriptor,
    parse_functional,
)

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "AcmCapability",
    "AcmDescriptor",
    "AcmProtocol",
    "AnswerBackend",
    "BackendSpec",
    "ByteFifo",
    "CallManagementCapability",
    "CallManagementDescriptor",
    "CdcAcmFunction",
    "CdcNotification",
    "CdcRequest",
    "ControlLine",
    "HeaderDescriptor",
    "LineCoding",
    "LineCodingError",
    "LoopbackBackend",
    "Notification",
    "NullBackend",
    "Parity",
    "PtyBackend",
    "SerialBackend",
    "SerialPort",
    "SerialState",
    "StopBits",
    "TcpBackend",
    "UnionDescriptor",
    "make_backend",
    "parse_functional",
    "register_profile_kinds",
]
