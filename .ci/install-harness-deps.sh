#!/bin/sh
# Install the Debian packages the real-kernel harness (vusb.harness) needs.
# Idempotent: packages already installed are left alone. Needs root (or sudo).
#
#   qemu-system-x86        boots the guest kernel (TCG; no KVM needed)
#   busybox-static         the guest's userland
#   usbip                  /usr/sbin/usbip, copied into the guest
#   kmod                   depmod, to index the guest's kernel modules
#   dosfstools             mkfs.fat, copied into the guest
#   gcc libc6-dev          compile the guest's testusb tool statically (vusb/harness/tools/testusb.c)
#   cpio xz-utils          handy for inspecting images (the harness needs neither)
#   debian-archive-keyring verifies the Debian kernel packages
#   ca-certificates        for https mirrors
#   alsa-utils v4l-utils   aplay/arecord/amidi and v4l2-ctl, copied into the guest (audio, video, MIDI tests)
#   dfu-util tcpdump       copied into the guest (DFU and network adapter tests; tcpdump also
#                          records QEMU's emulated devices with usbmon, vusb.harness.emulated)
#   libusb-1.0-0           the host's libusb, which guests reach through the host root shared
#                          over 9p (vusb.harness.hostroot: vusb proxy tests run in a guest)
set -eu

PACKAGES="qemu-system-x86 busybox-static usbip kmod dosfstools gcc libc6-dev cpio xz-utils debian-archive-keyring ca-certificates alsa-utils v4l-utils dfu-util tcpdump libusb-1.0-0"

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi

missing=
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "harness dependencies already installed"
    exit 0
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
