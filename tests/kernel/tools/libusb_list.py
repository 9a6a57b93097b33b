"""List USB devices through libusb-1.0, with no Python binding: ctypes only.

Run by the host's Python chrooted in a guest (tests/kernel/test_proxy_kernel.py): one JSON
line per device with bus, address, ids and the manufacturer and product strings, which
libusb reads from the device itself (it opens /dev/bus/usb/BBB/DDD and sends GET_DESCRIPTOR).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json


class DeviceDescriptor(ctypes.Structure):
    _fields_ = [("bLength", ctypes.c_uint8), ("bDescriptorType", ctypes.c_uint8), ("bcdUSB", ctypes.c_uint16),
                ("bDeviceClass", ctypes.c_uint8), ("bDeviceSubClass", ctypes.c_uint8),
                ("bDeviceProtocol", ctypes.c_uint8), ("bMaxPacketSize0", ctypes.c_uint8),
                ("idVendor", ctypes.c_uint16), ("idProduct", ctypes.c_uint16), ("bcdDevice", ctypes.c_uint16),
                ("iManufacturer", ctypes.c_uint8), ("iProduct", ctypes.c_uint8),
                ("iSerialNumber", ctypes.c_uint8), ("bNumConfigurations", ctypes.c_uint8)]


def main() -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("usb-1.0") or "libusb-1.0.so.0")
    lib.libusb_get_device_list.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))]
    lib.libusb_get_device_list.restype = ctypes.c_ssize_t
    lib.libusb_get_bus_number.argtypes = [ctypes.c_void_p]
    lib.libusb_get_device_address.argtypes = [ctypes.c_void_p]
    lib.libusb_get_device_descriptor.argtypes = [ctypes.c_void_p, ctypes.POINTER(DeviceDescriptor)]
    lib.libusb_open.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.libusb_close.argtypes = [ctypes.c_void_p]
    lib.libusb_get_string_descriptor_ascii.argtypes = [ctypes.c_void_p, ctypes.c_uint8, ctypes.c_char_p, ctypes.c_int]
    lib.libusb_free_device_list.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    ctx = ctypes.c_void_p()
    if lib.libusb_init(ctypes.byref(ctx)) != 0:
        raise SystemExit("libusb_init failed")
    devices = ctypes.POINTER(ctypes.c_void_p)()
    count = lib.libusb_get_device_list(ctx, ctypes.byref(devices))
    for i in range(count):
        dev = devices[i]
        desc = DeviceDescriptor()
        lib.libusb_get_device_descriptor(dev, ctypes.byref(desc))
        entry = {"bus": lib.libusb_get_bus_number(dev), "address": lib.libusb_get_device_address(dev),
                 "vid_pid": f"{desc.idVendor:04x}:{desc.idProduct:04x}"}
        handle = ctypes.c_void_p()
        if lib.libusb_open(dev, ctypes.byref(handle)) == 0:
            for field, index in (("manufacturer", desc.iManufacturer), ("product", desc.iProduct)):
                buf = ctypes.create_string_buffer(256)
                n = lib.libusb_get_string_descriptor_ascii(handle, index, buf, 256) if index else 0
                entry[field] = buf.raw[:n].decode("ascii", "replace") if n > 0 else ""
            lib.libusb_close(handle)
        print(json.dumps(entry))
    lib.libusb_free_device_list(devices, 1)
    lib.libusb_exit(ctx)


if __name__ == "__main__":
    main()
