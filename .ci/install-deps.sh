#!/usr/bin/env bash
# Install the Debian packages the test suite needs (the real-kernel harness: QEMU, busybox,
# usbip, cpio, kmod, xz, dosfstools). Idempotent; run as root (or with sudo available).
set -euo pipefail
here="$(dirname "$0")"
if [ -x "$here/install-harness-deps.sh" ] || [ -f "$here/install-harness-deps.sh" ]; then
    bash "$here/install-harness-deps.sh"
else
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q qemu-system-x86 busybox-static usbip cpio kmod xz-utils dosfstools
fi
