"""Command line of the real-kernel harness.

``python -m vusb.harness build [--kernel 6.1 ...|--all] [--rebuild]``
    build (download) guest images into the cache, e.g. in a CI setup step.
``python -m vusb.harness shell [--kernel 6.1] [-c COMMAND]``
    boot a guest and run COMMAND in it (exit status is the command's), or
    read commands line by line from stdin when no -c is given.
``python -m vusb.harness list``
    show the cached images.
``python -m vusb.harness record-emulated --out DIR [--kernel 6.1] [--device usb-kbd ...]``
    boot a guest with QEMU's own USB devices, record each with usbmon inside it and
    write one pcap per device plus recordings.json (vusb.harness.emulated).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .emulated import EMULATED_DEVICES, record_emulated
from .guest import Guest, GuestError
from .image import (
    DEFAULT_KERNEL,
    KERNELS,
    HarnessError,
    default_cache_dir,
    ensure_image,
    iter_cached_images,
)


def _build(args: argparse.Namespace) -> int:
    kernels = list(KERNELS) if args.all else (args.kernel or [DEFAULT_KERNEL])
    for kernel in kernels:
        started = time.monotonic()
        prefix = f"[{kernel}]"

        def log(msg: str, prefix: str = prefix) -> None:
            print(prefix, msg, file=sys.stderr)

        image = ensure_image(kernel, args.cache_dir, rebuild=args.rebuild, log=log)
        elapsed = time.monotonic() - started
        print(f"{kernel}: {image.kernel_release} ({image.package} {image.package_version}) "
              f"in {image.directory} [{elapsed:.1f} s]")
    return 0


def _list(args: argparse.Namespace) -> int:
    cache = args.cache_dir or default_cache_dir()
    images = list(iter_cached_images(cache))
    if not images:
        print(f"no images in {cache}")
    for image in images:
        print(f"{image.kernel}: {image.kernel_release} ({image.package_version}, "
              f"built in {image.build_seconds:.1f} s) {image.directory}")
    return 0


async def _shell(args: argparse.Namespace) -> int:
    kernel = args.kernel[0] if args.kernel else DEFAULT_KERNEL
    started = time.monotonic()
    async with Guest.start(kernel, cache_dir=args.cache_dir) as guest:
        print(f"# {guest.kernel_release} ready in {time.monotonic() - started:.1f} s "
              f"(boot {guest.boot_seconds:.1f} s); the host is {guest.host_address}",
              file=sys.stderr)
        status = 0
        commands: Sequence[str] = [args.command] if args.command is not None else []
        interactive = args.command is None
        try:
            while True:
                if interactive:
                    if sys.stdin.isatty():
                        print("guest# ", end="", file=sys.stderr, flush=True)
                    line = await asyncio.to_thread(sys.stdin.readline)
                    if not line:
                        break
                    if not line.strip():
                        continue
                    commands = [line]
                elif not commands:
                    break
                for command in commands:
                    try:
                        result = await guest.run(command, timeout=args.timeout)
                    except GuestError as e:
                        print(str(e), file=sys.stderr)
                        status = 124
                        continue
                    sys.stdout.buffer.write(result.stdout_bytes)
                    sys.stdout.flush()
                    sys.stderr.buffer.write(result.stderr_bytes)
                    sys.stderr.flush()
                    status = result.returncode
                commands = []
        finally:
            if args.console:
                print("# --- console log ---", file=sys.stderr)
                print(guest.console_log(), file=sys.stderr)
        return status


def _record_emulated(args: argparse.Namespace) -> int:
    out = Path(args.out)
    manifest = asyncio.run(record_emulated(out, args.kernel, args.device))
    for dev in manifest["devices"]:
        size = (out / dev["file"]).stat().st_size
        drivers = ", ".join(i["driver"] for i in dev["interfaces"])
        print(f"{dev['file']}: {dev['vendor_id']}:{dev['product_id']} {dev.get('product', '')!r}, "
              f"{size} bytes, drivers {drivers}")
    print(f"{out / 'recordings.json'}: what the guest saw")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vusb.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="what", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kernel", action="append",
                       help=f"kernel series: {', '.join(KERNELS)} (default {DEFAULT_KERNEL}) "
                            "or an exact Debian ABI such as 6.1.0-50")
        p.add_argument("--cache-dir", default=None,
                       help="image cache (default: $VUSB_GUEST_CACHE or ~/.cache/vusb/guest)")

    p_build = sub.add_parser("build", help="build guest images into the cache")
    common(p_build)
    p_build.add_argument("--all", action="store_true", help="every kernel series")
    p_build.add_argument("--rebuild", action="store_true",
                         help="build again even if cached (picks up newer kernel packages)")
    p_shell = sub.add_parser("shell", help="boot a guest and run commands in it")
    common(p_shell)
    p_shell.add_argument("-c", "--command", help="shell command to run (default: read stdin)")
    p_shell.add_argument("--timeout", type=float, default=300.0, help="per command, seconds")
    p_shell.add_argument("--console", action="store_true", help="print the console log at the end")
    p_list = sub.add_parser("list", help="list cached images")
    p_list.add_argument("--cache-dir", default=None)
    p_rec = sub.add_parser("record-emulated",
                           help="record QEMU's emulated USB devices with usbmon in a guest, one pcap per device")
    p_rec.add_argument("--out", required=True, help="folder for the pcaps and recordings.json")
    p_rec.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"kernel series (default {DEFAULT_KERNEL})")
    p_rec.add_argument("--device", action="append", choices=[d.name for d in EMULATED_DEVICES],
                       help="record only this device (repeatable; default: all)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        if args.what == "build":
            return _build(args)
        if args.what == "list":
            return _list(args)
        if args.what == "record-emulated":
            return _record_emulated(args)
        return asyncio.run(_shell(args))
    except (HarnessError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
