"""The ``vusb`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from vusb.constants import USBIP_PORT
from vusb.errors import VusbError
from vusb.net import parse_port

log = logging.getLogger("vusb")


def _busy_poll(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of microseconds") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{value} µs is outside 0..10000")
    return value


def _serve(args: argparse.Namespace) -> int:
    from vusb.profile import load_profile
    from vusb.server import Server, ServerLimits, run

    profiles = [load_profile(p, allow_outside_paths=args.allow_outside_paths, data_dir=args.data_dir)
                for p in args.profiles]
    devices = [p.build() for p in profiles]

    async def main() -> None:
        limits = ServerLimits(max_connections=args.max_connections, max_transfer_length=args.max_transfer,
                              max_urbs_in_flight=args.max_urbs)
        server = Server(devices, host=args.host, port=args.port, limits=limits, allow_remote=args.allow_remote,
                        allowed_clients=args.allow_client or None, capture=args.capture,
                        capture_format=args.capture_format,
                        busy_poll=args.busy_poll / 1e6)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before the banner: a user may press Ctrl-C at once
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        control = None
        if not args.no_control:
            from vusb.control import ControlServer

            control = ControlServer(server, args.control)  # None: default_socket_path(server.port)
            try:
                await control.start()
            except BaseException:
                await server.close()
                raise
        client_host = "127.0.0.1" if args.host in ("127.0.0.1", "localhost", "::1") else "<this-host>"
        port_opt = f" --tcp-port {server.port}" if server.port != USBIP_PORT else ""
        print(f"vusb: serving {len(devices)} device(s) on {args.host}:{server.port}", flush=True)
        for spec, export in zip(args.profiles, server.exports, strict=False):
            print(f"  {export.busid}  {export.device.describe():40s} ({spec})", flush=True)
            print(f"      attach: usbip{port_opt} attach -r {client_host} -b {export.busid}", flush=True)
        if client_host == "127.0.0.1":
            print("  (a QEMU guest with user networking reaches this server as 10.0.2.2)", flush=True)
        if control is not None:
            print(f"  control: {control.path}  (vusb ctl --socket {control.path} list)", flush=True)
        await stop.wait()
        print("vusb: shutting down", flush=True)
        if control is not None:
            await control.close()
        await server.close()
        for device in devices:
            await device.aclose()  # flushes disk images, stops serial backends

    run(main(), use_uvloop=not args.no_uvloop)
    return 0


def _proxy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vusb.faults import Fault
    from vusb.proxy import ProxyDevice, open_physical, parse_fault_option, read_fault_rules
    from vusb.server import Server, run

    def make_rules() -> list[Fault]:  # fresh rules (a rule belongs to one device)
        rules = []
        for path in args.faults or ():
            rules += read_fault_rules(Path(path).read_text(encoding="utf-8"), path)
        for spec in args.fault or ():
            rules += parse_fault_option(spec)
        return rules

    rules = make_rules()  # wrong rules fail here, before the device is taken
    server = Server(host=args.host, port=args.port, allow_remote=args.allow_remote,
                    allowed_clients=args.allow_client or None, capture=args.record, capture_format="usbmon")
    try:
        backend = open_physical(vid_pid=args.vid_pid, device=args.device)
        try:
            proxy = ProxyDevice(backend, log_transfers=args.log_transfers)
        except BaseException:
            backend.close()
            raise
    except BaseException:
        if server.capture is not None:
            server.capture.close()
        raise

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        current = [proxy]
        unplugged: list[ProxyDevice] = []
        tasks: set[asyncio.Task[None]] = set()

        def gone(device: ProxyDevice) -> None:
            if device.busid is not None:
                server.remove(device)
            print(f"vusb: {device.describe()} was unplugged; it is no longer exported", flush=True)
            if args.vid_pid is not None:
                print(f"vusb: waiting for a device {args.vid_pid} to come back (Ctrl-C to stop)", flush=True)
                task = loop.create_task(comeback())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                unplugged.append(device)
                stop.set()

        async def comeback() -> None:
            while not stop.is_set():
                await asyncio.sleep(1.0)
                try:
                    again = await asyncio.to_thread(open_physical, args.vid_pid, None)
                except VusbError:
                    continue
                try:
                    device = ProxyDevice(again, log_transfers=args.log_transfers)
                    device.open()
                except VusbError as exc:
                    again.close()
                    print(f"vusb: {args.vid_pid} is back but cannot be proxied: {exc}", flush=True)
                    continue
                for rule in make_rules():
                    device.faults.add(rule)
                device.on_gone.append(gone)
                server.add(device, "1-1")
                current[0] = device
                print(f"vusb: {device.describe()} is back, exported as 1-1", flush=True)
                return

        control = None
        try:
            proxy.open()
            for rule in rules:
                proxy.faults.add(rule)
            proxy.on_gone.append(gone)
            server.add(proxy, "1-1")
            await server.start()
            if args.control:
                from vusb.control import ControlServer

                control = ControlServer(server, args.control)
                await control.start()
            client_host = "127.0.0.1" if args.host in ("127.0.0.1", "localhost", "::1") else "<this-host>"
            port_opt = f" --tcp-port {server.port}" if server.port != USBIP_PORT else ""
            print(f"vusb: proxying {proxy.describe()} on {args.host}:{server.port}", flush=True)
            print(f"  1-1  attach: usbip{port_opt} attach -r {client_host} -b 1-1", flush=True)
            if args.record:
                print(f"  recording the session to {args.record} (usbmon form; vusb record reads it)", flush=True)
            if control is not None:
                print(f"  control: {control.path}  (vusb ctl --socket {control.path} fault-add ...)", flush=True)
            await stop.wait()
            if unplugged:
                print(f"vusb: stopping: --device {args.device} was unplugged (a replugged device gets a new address)",
                      file=sys.stderr, flush=True)
            else:
                print("vusb: shutting down; giving the device back", flush=True)
        finally:
            for task in tasks:
                task.cancel()
            if control is not None:
                await control.close()
            await server.close()
            current[0].close()
        return 1 if unplugged else 0

    result: int = run(main(), use_uvloop=not args.no_uvloop)
    return result


def _ctl(args: argparse.Namespace) -> int:
    from vusb.control import ctl_main

    return ctl_main(args.socket, args.port, [*args.ctl_args, *(["--json"] if args.json else [])])


def _list(args: argparse.Namespace) -> int:
    from vusb.client import list_devices
    from vusb.lsusb import SPEED_WORDS, class_names

    devices = asyncio.run(list_devices(args.host, args.port))
    if not devices:
        print(f"{args.host}:{args.port} exports no free device")
    for d in devices:
        speed = SPEED_WORDS.get(d.speed, f"speed {d.speed}")
        triple = (d.device_class, d.device_subclass, d.device_protocol)
        print(f"{d.busid}: {d.vendor_id:04x}:{d.product_id:04x} {speed} speed, "
              f"{d.num_configurations} configuration(s), {d.interface_count} interface(s)")
        print(f"    device class {_triple(triple)} {class_names(*triple)}")
        for n, i in enumerate(d.interfaces):
            triple = (i.interface_class, i.interface_subclass, i.interface_protocol)
            print(f"    interface {n}:  {_triple(triple)} {class_names(*triple)}")
    return 0


def _triple(triple: tuple[int, int, int]) -> str:
    return "{:02x}/{:02x}/{:02x}".format(*triple)


def _probe(args: argparse.Namespace) -> int:
    from vusb.client import RemoteDevice
    from vusb.descriptors import StringDescriptor
    from vusb.errors import TransferError
    from vusb.lsusb import format_device, referenced_strings

    async def main() -> str:
        async with await RemoteDevice.open(args.host, args.busid, args.port) as dev:
            info = await dev.enumerate(configure=False)
            if info.languages:  # the strings class descriptors name (iTerminal, iMacAddress...)
                for index in sorted(referenced_strings(info)):
                    try:
                        raw = await dev.get_descriptor(3, index, 255, info.languages[0])
                        info.strings[index] = StringDescriptor.parse(raw).text
                    except TransferError:
                        pass
            try:
                status: int | None = await dev.get_status()
            except TransferError:
                status = None
            return format_device(info, args.busid, status)

    print(asyncio.run(main()))
    return 0


def _host(args: argparse.Namespace) -> int:
    from vusb.hostcmd import run_host

    asyncio.run(run_host(args.host, args.busid, args.port, seconds=args.seconds, count=args.count))
    return 0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{value:g} s is outside (0, 86400]")
    return value


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def _check(args: argparse.Namespace) -> int:
    from vusb.profile import load_profile

    failed = 0
    for path in args.profiles:
        try:
            profile = load_profile(path, allow_outside_paths=args.allow_outside_paths, data_dir=args.data_dir,
                                   all_errors=True)
        except VusbError as exc:
            for line in str(exc).splitlines():  # every error of the file, one a line
                print(f"error: {line}", file=sys.stderr)
            failed += 1
        else:
            print(f"ok: {path} ({profile.name})")
            for note in profile.notes:
                print(f"note: {note}")
            if profile.descriptors is not None:
                for note in profile.descriptors.notes:
                    print(f"note: {path}: {note}")
    return 1 if failed else 0


def _profiles(args: argparse.Namespace) -> int:
    from vusb.profile import builtin_profiles, find_builtin_profile

    if args.show:
        sys.stdout.write(find_builtin_profile(args.show).path.read_text(encoding="utf-8"))
        return 0
    known = builtin_profiles()
    width = max((len(name) for name in known), default=0)
    for name, profile in known.items():
        print(f"{name:{width}s}  {profile.description}")
    print("\nserve one by name: vusb serve NAME [NAME...]  (files it makes, such as disk images, go in the\n"
          "current folder, or --data-dir DIR); vusb profiles --show NAME prints its YAML to copy and change")
    return 0


def _clone(args: argparse.Namespace) -> int:
    from vusb.clone import clone

    result = clone(args.source, args.input, address=args.address, speed=args.speed)
    text = result.to_yaml()
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
        desc = result.descriptor
        print(f"vusb: wrote {args.output} ({desc.vendor_id:04x}:{desc.product_id:04x}, "
              f"{len(result.configurations)} configuration(s))", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _record(args: argparse.Namespace) -> int:
    from vusb.record import record_to

    rec, written = record_to(args.capture, args.output, vid_pid=args.vid_pid, device=args.device, speed=args.speed)
    for warning in rec.warnings:
        print(f"vusb: warning: {args.capture}: {warning}", file=sys.stderr)
    desc = rec.clone.descriptor
    print(f"vusb: wrote {', '.join(str(p) for p in written)} ({desc.vendor_id:04x}:{desc.product_id:04x} at bus "
          f"{rec.bus} address {rec.address}, class {rec.device_class}: {len(rec.control)} control request(s), "
          f"{len(rec.transfers)} transfer(s))", file=sys.stderr)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from vusb.schema import schema_json

    sys.stdout.write(schema_json())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from vusb.bench import main as bench_main

    return bench_main(args.bench_args)


_PROFILE_HELP = "a profile file (.yaml), or the name of a built-in profile (`vusb profiles` lists them)"


def _listen_options(p: argparse.ArgumentParser) -> None:
    """Where a server listens and whom it accepts (serve and proxy)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=parse_port, default=USBIP_PORT, help=f"TCP port (default {USBIP_PORT})")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (USB/IP has no authentication)")
    p.add_argument("--allow-client", action="append", metavar="ADDR[/PREFIX]",
                   help="only accept clients from these addresses or networks (repeatable)")


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder for the files profiles name (disk images, pty links); default: a profile file's "
                   "own folder, and the current folder for a built-in profile")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let profiles use files outside their data folder (disk images, pty links)")


def _version() -> str:
    """The installed distribution's version, else the package's own (a source tree on sys.path)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vusb")
    except PackageNotFoundError:
        from vusb import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vusb", description="Virtual USB devices served over USB/IP.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"vusb {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="serve profiles as USB/IP devices")
    p.add_argument("profiles", nargs="+", metavar="PROFILE", help=_PROFILE_HELP)
    _data_options(p)
    _listen_options(p)
    p.add_argument("--max-connections", type=int, default=256, help="connections at once (default 256)")
    p.add_argument("--max-transfer", type=int, default=64 * 1024 * 1024, metavar="BYTES",
                   help="largest transfer a client may ask for (default 64 MiB)")
    p.add_argument("--max-urbs", type=int, default=4096, help="URBs in flight per connection (default 4096)")
    p.add_argument("--capture", metavar="FILE.pcap",
                   help="write the traffic as a pcap (usbip form: Wireshark -d tcp.port==PORT,usbip)")
    p.add_argument("--capture-format", choices=("usbip", "usbmon"), default="usbip",
                   help="usbip: the USB/IP messages as TCP streams (default); usbmon: the URBs as Linux's "
                        "usbmon records them (what tcpdump -i usbmon0 writes on a machine with the hardware)")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    p.add_argument("--busy-poll", type=_busy_poll, default=0, metavar="MICROSECONDS",
                   help="after each reply keep polling this long instead of sleeping: lower latency on virtual "
                        "machines, at the cost of CPU (default 0: off; 50 is a good value; at most 10000)")
    p.add_argument("--control", metavar="PATH",
                   help="control socket for `vusb ctl` (default $XDG_RUNTIME_DIR/vusb/PORT.sock, "
                   "else /tmp/vusb-UID/PORT.sock)")
    p.add_argument("--no-control", action="store_true", help="do not open the control socket")
    p.set_defaults(func=_serve)

    p = sub.add_parser("proxy", help="export a USB device plugged into this machine (through libusb; "
                       "pip install 'vusb[proxy]')",
                       description="Export a physical USB device plugged into this machine over USB/IP, from user "
                       "space: its kernel drivers are detached while it is exported and re-attached after. Each "
                       "URB becomes one libusb transfer; an UNLINK cancels it. Needs the proxy extra "
                       "(python-libusb1) and the libusb-1.0 library.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--vid-pid", metavar="VVVV:PPPP", help="the device with these ids (hexadecimal, as lsusb)")
    which.add_argument("--device", metavar="BUS.ADDR", help="the device at this bus number and address (lsusb's "
                       "'Bus 001 Device 004' is 1.4)")
    _listen_options(p)
    p.add_argument("--record", metavar="FILE.pcap",
                   help="write the session as a usbmon capture (what tcpdump -i usbmonN writes; vusb record reads it)")
    p.add_argument("--faults", action="append", metavar="FILE.yaml",
                   help="fault rules between host and device: a YAML list of entries as in a profile's faults: "
                   "(repeatable)")
    p.add_argument("--fault", action="append", metavar="KIND,FIELD=VALUE,...",
                   help="one fault rule, e.g. stall,endpoint=0x81,count=1 or delay,endpoint=0x02,seconds=0.5 "
                   "(repeatable)")
    p.add_argument("--log-transfers", action="store_true", help="log every transfer and its answer")
    p.add_argument("--control", metavar="PATH",
                   help="open a control socket here, for `vusb ctl --socket PATH` (fault-add, fault-list, unplug...)")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    p.set_defaults(func=_proxy)

    p = sub.add_parser("ctl", help="drive the devices of a running `vusb serve` (type, move, eject, unplug...)",
                       description="Send one command to the control socket of a running `vusb serve`. "
                       "`vusb ctl` alone lists the commands (the device classes add their own); "
                       "`vusb ctl COMMAND --help` shows a command's arguments.")
    p.add_argument("--socket", metavar="PATH", help="the control socket (default: the one of --port)")
    p.add_argument("--port", type=parse_port, default=USBIP_PORT, help=f"the server's TCP port (default {USBIP_PORT})")
    p.add_argument("--json", action="store_true", help="print the reply object as JSON")
    p.add_argument("ctl_args", nargs=argparse.REMAINDER, metavar="COMMAND ARGS...")
    p.set_defaults(func=_ctl)

    p = sub.add_parser("list", help="list the devices a USB/IP server exports")
    p.add_argument("host", nargs="?", default="127.0.0.1")
    p.add_argument("--port", type=parse_port, default=USBIP_PORT, help=f"the server's TCP port (default {USBIP_PORT})")
    p.set_defaults(func=_list)

    p = sub.add_parser("probe", help="import a device and print its descriptors like lsusb -v")
    p.add_argument("host")
    p.add_argument("busid")
    p.add_argument("--port", type=parse_port, default=USBIP_PORT, help=f"the server's TCP port (default {USBIP_PORT})")
    p.set_defaults(func=_probe)

    p = sub.add_parser("host", help="be the host without a kernel: configure a device as Linux does and show "
                       "what it sends", description="Import a device, enumerate and configure it as Linux does "
                       "(descriptors, strings, SET_CONFIGURATION, HID SET_IDLE and report descriptor), then read "
                       "its interrupt IN endpoints and print each report, decoded for boot keyboards and mice.")
    p.add_argument("host")
    p.add_argument("busid")
    p.add_argument("--port", type=parse_port, default=USBIP_PORT, help=f"the server's TCP port (default {USBIP_PORT})")
    p.add_argument("--seconds", type=_positive_seconds, default=5.0, help="read for this long (default 5)")
    p.add_argument("--count", type=_positive_count, help="stop after this many reports")
    p.set_defaults(func=_host)

    p = sub.add_parser("schema", help="print the JSON Schema of the profile format")
    p.set_defaults(func=_schema)

    p = sub.add_parser("bench", add_help=False,  # --help goes to the benchmark, which lists its real options
                       help="measure the server beside the machine's limits (from a source checkout; "
                       "`vusb bench --help` for its options)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="OPTIONS")
    p.set_defaults(func=_bench)

    p = sub.add_parser("check", aliases=["validate"],
                       help="check profiles and report every error with file, line, column and field")
    p.add_argument("profiles", nargs="+", metavar="PROFILE", help=_PROFILE_HELP)
    _data_options(p)
    p.set_defaults(func=_check)

    p = sub.add_parser("profiles", help="list the built-in profiles (serve one by name: vusb serve keyboard)")
    p.add_argument("--show", metavar="NAME", help="print a built-in profile's YAML, to copy and change it")
    p.set_defaults(func=_profiles)

    p = sub.add_parser("clone", help="make a raw-descriptor profile from lsusb -v text, sysfs or a usbmon capture")
    p.add_argument("input", metavar="INPUT", help="lsusb -v text file, sysfs device folder or descriptors file, "
                   "or pcap/pcapng file")
    p.add_argument("--from", dest="source", required=True, choices=("lsusb", "sysfs", "pcap"),
                   help="what INPUT is")
    p.add_argument("--address", help="which device: its address (N or BUS:N) in a capture or lsusb text")
    p.add_argument("--speed", choices=("low", "full", "high", "super"),
                   help="the speed to serve at (default: what the source says, else a guess)")
    p.add_argument("-o", "--output", metavar="OUT.yaml", help="write the profile here (default: standard output)")
    p.set_defaults(func=_clone)

    p = sub.add_parser("record", help="make a replay profile from a capture (usbmon pcap/pcapng, USB/IP in TCP, "
                       "vusb's --capture): the descriptors and what the device answered")
    p.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file")
    p.add_argument("-o", "--output", metavar="OUT.yaml", required=True,
                   help="the replay profile to write (large payloads go to OUT.bin beside it)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--vid-pid", metavar="VVVV:PPPP", help="the device with this vendor and product id")
    which.add_argument("--device", metavar="BUS.ADDR", help="the device at this bus number and address")
    p.add_argument("--speed", choices=("low", "full", "high", "super"),
                   help="the speed to serve at (default: what the capture says, else a guess)")
    p.set_defaults(func=_record)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(raw)
    if args.command == "bench":  # everything after `bench` is the benchmark's, in the order given
        args.bench_args = raw[raw.index("bench") + 1:]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.WARNING - 10 * min(args.verbose + (1 if args.command in ("serve", "proxy") else 0), 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.func(args)
        return result
    except VusbError as exc:
        print(f"vusb: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"vusb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
