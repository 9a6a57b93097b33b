"""Ready device classes for vusb: one module (or package) per USB device class.

A class is a :class:`vusb.Function` subclass (composable into any device) plus,
usually, a ready-made device of that one function (:class:`vusb.SingleFunctionDevice`):
``HidFunction``/``HidDevice``, ``KeyboardFunction``/``Keyboard``, ``MouseFunction``/``Mouse``,
``CdcAcmFunction``/``SerialPort`` (package :mod:`vusb.devices.cdc_acm`),
``MassStorageFunction``/``MassStorage`` (package :mod:`vusb.devices.storage`),
``GadgetZeroFunction``/``GadgetZero``, ``PrinterFunction``/``Printer`` (package
:mod:`vusb.devices.printer`), ``DfuFunction``/``DfuDevice`` (package :mod:`vusb.devices.dfu`), the USB-serial
chips ``Ft232r``, ``Ft2232h``, ``Cp2102``, ``Cp2105``, ``Ch340``, ``Pl2303`` (package :mod:`vusb.devices.usb_serial`),
``NcmFunction``/``EcmFunction``/``RndisFunction``/``NetworkAdapter`` (package :mod:`vusb.devices.net`),
``UvcFunction``/``Webcam`` (package :mod:`vusb.devices.video`), ``AudioFunction``/``SoundCard`` (package
:mod:`vusb.devices.audio`), ``MidiFunction``/``MidiDevice`` (package :mod:`vusb.devices.midi`).
docs/writing-a-device.md writes a new one.
"""

from vusb.devices.audio import AudioFunction, SoundCard
from vusb.devices.cdc_acm import CdcAcmFunction, SerialPort
from vusb.devices.dfu import DfuDevice, DfuFunction
from vusb.devices.gadget_zero import GadgetZero, GadgetZeroFunction
from vusb.devices.hid import HidDevice, HidFunction
from vusb.devices.keyboard import Key, Keyboard, KeyboardFunction, Led, Modifier
from vusb.devices.midi import MidiDevice, MidiFunction
from vusb.devices.mouse import Button, Mouse, MouseFunction
from vusb.devices.net import EcmFunction, NcmFunction, NetworkAdapter, RndisFunction
from vusb.devices.printer import Printer, PrinterFunction
from vusb.devices.storage import MassStorage, MassStorageFunction
from vusb.devices.usb_serial import Ch340, Cp2102, Cp2105, Ft232r, Ft2232h, Pl2303
from vusb.devices.video import UvcFunction, Webcam

__all__ = [
    "AudioFunction", "Button", "CdcAcmFunction", "Ch340", "Cp2102", "Cp2105", "DfuDevice", "DfuFunction",
    "EcmFunction", "Ft232r", "Ft2232h", "GadgetZero", "GadgetZeroFunction", "HidDevice", "HidFunction", "Key",
    "Keyboard", "KeyboardFunction", "Led", "MassStorage", "MassStorageFunction", "MidiDevice", "MidiFunction",
    "Modifier", "Mouse", "MouseFunction", "NcmFunction", "NetworkAdapter", "Pl2303", "Printer", "PrinterFunction",
    "RndisFunction", "SerialPort", "SoundCard", "UvcFunction", "Webcam",
]
