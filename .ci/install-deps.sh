#!/usr/bin/env bash
# Install the Debian packages the test suite needs: the real-kernel harness (QEMU,
# busybox, usbip, ...; see install-harness-deps.sh) and tshark, which checks that
# captures decode. Idempotent; run as root (or with sudo available).
set -euo pipefail
here="$(dirname "$0")"
bash "$here/install-harness-deps.sh"
# libusb-1.0-0: the library python-libusb1 loads (`vusb proxy`, tests/test_proxy.py).
if ! dpkg-query -W -f='${Status}' libusb-1.0-0 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libusb-1.0-0
fi
if ! command -v tshark >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tshark
fi
