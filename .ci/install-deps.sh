#!/usr/bin/env bash
# Install the Debian packages the test suite needs: the real-kernel harness (QEMU,
# busybox, usbip, ...; see install-harness-deps.sh) and tshark, which checks that
# captures decode. Idempotent; run as root (or with sudo available).
set -euo pipefail
here="$(dirname "$0")"
bash "$here/install-harness-deps.sh"
if ! command -v tshark >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tshark
fi
