"""USB-serial adapter chips, each bound by its own Linux driver: FTDI, Silicon Labs CP210x, WCH CH340, Prolific PL2303.

==========================  ===========  =========  ==========================
device class                id           driver     Linux node
==========================  ===========  =========  ==========================
:class:`Ft232r`             0403:6001    ftdi_sio   /dev/ttyUSB0
:class:`Ft2232h`            0403:6010    ftdi_sio   /dev/ttyUSB0, ttyUSB1
:class:`Cp2102`             10c4:ea60    cp210x     /dev/ttyUSB0
:class:`Cp2105`             10c4:ea70    cp210x     /dev/ttyUSB0, ttyUSB1
:class:`Ch340`              1a86:7523    ch341      /dev/ttyUSB0
:class:`Pl2303`             067b:23a3    pl2303     /dev/ttyUSB0
==========================  ===========  =========  ==========================

Each speaks its chip's vendor protocol (one module per chip family, written from the
Linux drivers and the vendors' documents) and shares the serial core with CDC ACM:
the same backends and the API of :class:`~vusb.devices.cdc_acm.SerialPort`::

    adapter = Cp2102(backend="loopback")      # what the host writes comes back
    adapter = Ft232r()                        # Python code is the other end
    await adapter.wait_dtr()
    print(adapter.line)                       # "115200 8N1": the rate the chip really makes
    adapter.set_cts(False)                    # the host sees CTS fall (TIOCMGET)
"""

from vusb.devices.usb_serial.ch341 import Ch340, Ch340Function
from vusb.devices.usb_serial.chip import SerialChip, UsbSerialDevice
from vusb.devices.usb_serial.cp210x import Cp210xDevice, Cp210xFunction, Cp2102, Cp2105
from vusb.devices.usb_serial.ftdi import Ft232r, Ft2232h, FtdiDevice, FtdiFunction
from vusb.devices.usb_serial.pl2303 import Pl2303, Pl2303Function
from vusb.devices.usb_serial.profile import register_profile_kinds
from vusb.devices.usb_serial.uart import Change, FlowControl, LineSettings, ModemStatus, Uart

__all__ = [
    "Ch340",
    "Ch340Function",
    "Change",
    "Cp210xDevice",
    "Cp210xFunction",
    "Cp2102",
    "Cp2105",
    "FlowControl",
    "Ft232r",
    "Ft2232h",
    "FtdiDevice",
    "FtdiFunction",
    "LineSettings",
    "ModemStatus",
    "Pl2303",
    "Pl2303Function",
    "SerialChip",
    "Uart",
    "UsbSerialDevice",
    "register_profile_kinds",
]
