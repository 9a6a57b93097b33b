"""Ready device classes for vusb: one module per USB device class."""

from devices.cdc_acm import CdcAcmFunction, SerialPort
from devices.hid import HidDevice, HidFunction
from devices.keyboard import Key, Keyboard, KeyboardFunction, Led, Modifier
from devices.mouse import Button, Mouse, MouseFunction
from devices.storage import MassStorage, MassStorageFunction

__all__ = [
    "Button", "CdcAcmFunction", "HidDevice", "HidFunction", "Key", "Keyboard", "KeyboardFunction", "Led",
    "MassStorage", "MassStorageFunction", "Modifier", "Mouse", "MouseFunction", "SerialPort",
]
