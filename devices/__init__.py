"""Ready device classes for vusb: one module per USB device class."""

from devices.hid import HidDevice, HidFunction
from devices.keyboard import Key, Keyboard, KeyboardFunction, Led, Modifier
from devices.mouse import Button, Mouse, MouseFunction

__all__ = [
    "Button", "HidDevice", "HidFunction", "Key", "Keyboard", "KeyboardFunction", "Led", "Modifier",
    "Mouse", "MouseFunction",
]
