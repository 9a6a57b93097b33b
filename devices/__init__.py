"""Ready device classes for vusb: one module per USB device class."""

from vusb.devices.cdc_acm import CdcAcmFunction, SerialPort
from vusb.devices.gadget_zero import GadgetZero, GadgetZeroFunction
from vusb.devices.hid import HidDevice, HidFunction
from vusb.devices.keyboard import Key, Keyboard, KeyboardFunction, Led, Modifier
from vusb.devices.mouse import Button, Mouse, MouseFunction
from vusb.devices.storage import MassStorage, MassStorageFunction

__all__ = [
    "Button", "CdcAcmFunction", "GadgetZero", "GadgetZeroFunction", "HidDevice", "HidFunction", "Key", "Keyboard", "KeyboardFunction", "Led",
    "MassStorage", "MassStorageFunction", "Modifier", "Mouse", "MouseFunction", "SerialPort",
]
