"""A local control channel: scripts in any language drive the devices a server exports.

While ``vusb serve`` runs, a Unix domain socket (by default
``$XDG_RUNTIME_DIR/vusb/<port>.sock``, else ``/tmp/vusb-<uid>/<port>.sock``) takes
JSON lines: one request object per line, one reply object per line, in order::

    {"id": 1, "cmd": "type", "busid": "1-1", "text": "hi\\n"}
    {"id": 1, "ok": true}

    {"id": 2, "cmd": "nope"}
    {"id": 2, "ok": false, "error": "unknown command 'nope'; known: list, type, ..."}

Only the user running the server can reach it: the socket's folder is the user's own
with mode 0700 (a folder owned by someone else or open to group/other is refused), the
socket is 0600, and each connecting peer's uid is checked with ``SO_PEERCRED``.
A bad request gets an error reply naming the problem; the connection stays usable.

This module is the server side; the generic commands (list, unplug, plug, fault-*)
are here, and device classes add theirs through :mod:`vusb.registry` (typing comes
with the keyboard, eject with mass storage...).  ``vusb ctl COMMAND ARGS...`` is the
command-line client (:mod:`vusb.control_cli`, over :mod:`vusb.control_client`); the
protocol and every command are described in docs/control.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vusb.constants import USBIP_PORT
from vusb.device import Device, Function
from vusb.errors import ProfileError, UsageError, VusbError
from vusb.faults import Fault
from vusb.profile_faults import read_fault
from vusb.profile_fields import ProfileContext
from vusb.registry import registry
from vusb.server import Server

log = logging.getLogger("vusb.control")

DEFAULT_TIMEOUT = 10.0
"""Seconds an action waits for the host (typing, clicking, reading serial data) unless told."""

MAX_LINE = 4 * 1024 * 1024
"""Longest request line accepted (bytes); a longer one closes that connection."""


class ControlError(VusbError):
    """A request that cannot be carried out; its message goes back to the client."""


# ---------------------------------------------------------------- socket path and permissions
def default_socket_path(port: int = USBIP_PORT) -> Path:
    """``$XDG_RUNTIME_DIR/vusb/<port>.sock``, else ``/tmp/vusb-<uid>/<port>.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "vusb" / f"{port}.sock"
    return Path("/tmp") / f"vusb-{os.getuid()}" / f"{port}.sock"


def check_private_dir(folder: Path) -> None:
    """Refuse a folder that is a symlink, not ours, or open to group/other."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        raise UsageError(f"control socket folder {folder} does not exist") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"control socket folder {folder} is not a plain directory (a symlink or a file)")
    if st.st_uid != os.getuid():
        raise UsageError(f"control socket folder {folder} belongs to uid {st.st_uid}, not to this user "
                         f"(uid {os.getuid()}); refusing to use it")
    if st.st_mode & 0o077:
        raise UsageError(f"control socket folder {folder} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be "
                         "open to group or other (chmod 700 it, or choose another --control path)")


def prepare_socket_path(path: Path) -> None:
    """Create the socket's folder (0700) if missing, check it, and clear a stale socket file."""
    folder = path.parent
    if not folder.exists() and not folder.is_symlink():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    check_private_dir(folder)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"control socket path {path} exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody answers: left over from a server that died
            return
    raise UsageError(f"control socket {path} is in use by another running server")


def _peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED), or None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None or sock is None:
        return None
    try:  # asyncio's TransportSocket and uvloop's PseudoSocket both pass getsockopt through
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


# ---------------------------------------------------------------- names
def name_list(value: object, what: str) -> list[str]:
    """A request field holding one name, several separated by spaces, ``+`` or ``,``, or a list of names."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in value.replace("+", " ").replace(",", " ").split() if p]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise ControlError(f"'{what}' must be a name or a list of names, not {value!r}")


def function_kind(function: Function) -> str:
    """The name a control request gives a function (keyboard, mouse, hid, storage, serial...), or ``other``.

    Device classes name their functions when they register (:meth:`vusb.registry.Registry.name_function`).
    """
    named = registry().function_name(function)
    return named.name if named is not None else "other"


def _product(device: Device) -> str | None:
    index = device.descriptor.product_index
    return device.strings.get(index, device.strings.languages[0]) if index else None


# ---------------------------------------------------------------- request fields
@dataclass
class ControlRequest:
    """One control request object, with typed access to its fields (errors name the field).

    What a ``vusb ctl`` command's handler receives beside the :class:`ControlServer`:
    ``body`` is the JSON object as sent; :meth:`get` reads a field checked for its type,
    :meth:`integer` an integer, :meth:`timeout` the ``timeout`` field (seconds, default
    :data:`DEFAULT_TIMEOUT`).  Every error is a :class:`ControlError` naming the field.
    """

    body: dict[str, Any]

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        if key not in self.body or self.body[key] is None:
            if required:
                raise ControlError(f"missing field '{key}'")
            return default
        value = self.body[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ControlError(f"field '{key}' must be {_type_name(kind)}, not {value!r}")
        if not isinstance(value, kind):
            raise ControlError(f"field '{key}' must be {_type_name(kind)}, not {value!r}")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.get(key, int, default, required=default is None)
        return int(value)

    def timeout(self) -> float:
        value = self.get("timeout", (int, float), DEFAULT_TIMEOUT)
        if value <= 0:
            raise ControlError(f"field 'timeout' must be a positive number of seconds, not {value!r}")
        return float(value)


Request = ControlRequest
"""The name :class:`ControlRequest` had first; still importable from here and :mod:`vusb.control`."""


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class ControlServer:
    """Serves the control protocol for a :class:`~vusb.server.Server` on a Unix socket.

    A device class's command handler (:class:`vusb.Command`) is called with this server
    and the :class:`ControlRequest`; it finds what the request names with
    :meth:`device` and :meth:`function`, waits for the host with :meth:`wait_host`,
    keeps per-server data in :attr:`state` and releases it with :meth:`on_close`.
    Commands are the registry's when the server is made: register a class first.
    :meth:`handle` answers one request object without a socket (tests).

    ::

        async with Server(devices, port=0) as server:
            control = ControlServer(server)             # default_socket_path(server.port)
            await control.start()
            ...
            await control.close()
    """

    def __init__(self, server: Server, path: str | os.PathLike[str] | None = None) -> None:
        self.server = server
        self.path = Path(path) if path is not None else default_socket_path(server.port)
        self.uid = os.getuid()
        """The only uid allowed to connect."""
        self.unplugged: dict[str, Device] = {}
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._inode: tuple[int, int] | None = None
        self.state: dict[str, Any] = {}
        """Per-server state of device classes' commands (the media ``eject`` keeps, say), by a key of theirs."""
        self._cleanups: list[Callable[[], None]] = []
        generic: dict[str, Callable[[ControlRequest], Awaitable[dict[str, Any]]]] = {
            "list": self._list, "unplug": self._unplug, "plug": self._plug,
            "fault-add": self._fault_add, "fault-list": self._fault_list, "fault-clear": self._fault_clear,
        }
        self._commands: dict[str, Callable[[ControlRequest], Awaitable[dict[str, Any]]]] = {
            "list": generic.pop("list")}
        for name, command in registry().commands.items():
            self._commands[name] = self._bind(command.run)
        self._commands.update(generic)

    def _bind(self, run: Callable[[ControlServer, ControlRequest], Awaitable[dict[str, Any]]]
              ) -> Callable[[ControlRequest], Awaitable[dict[str, Any]]]:
        async def handler(req: ControlRequest) -> dict[str, Any]:
            return await run(self, req)

        return handler

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the control server closes (a device class's command releasing what it kept)."""
        self._cleanups.append(cleanup)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._server is not None:
            raise UsageError("control server already started")
        prepare_socket_path(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old_umask)
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            self._unlink()
            raise
        log.info("control socket on %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        self._unlink()
        for cleanup in self._cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()

    def _unlink(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if self._inode is None or (st.st_dev, st.st_ino) == self._inode:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ connections
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = _peer_uid(writer.get_extra_info("socket"))
        checkable = hasattr(socket, "SO_PEERCRED")  # elsewhere the folder and socket modes are the only guard
        if (uid is None and checkable) or (uid is not None and uid != self.uid):
            who = "an unidentified peer" if uid is None else f"uid {uid}"
            log.warning("control: refused a connection from %s (only uid %d may connect)", who, self.uid)
            with contextlib.suppress(Exception):
                writer.write(_encode({"id": None, "ok": False,
                                      "error": f"permission denied: {who} may not use this control socket"}))
                await writer.drain()
            writer.close()
            return
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # asyncio's LimitOverrunError, re-raised by readline
                    writer.write(_encode({"id": None, "ok": False,
                                          "error": f"request line longer than {MAX_LINE} bytes; closing"}))
                    await writer.drain()
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                reply = await self.handle_line(line)
                writer.write(_encode(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def handle_line(self, line: bytes | str) -> dict[str, Any]:
        """One request line to its reply object (never raises for a bad request)."""
        try:
            body = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return {"id": None, "ok": False, "error": f"malformed JSON: {exc}"}
        if not isinstance(body, dict):
            return {"id": None, "ok": False, "error": f"a request is a JSON object, not {type(body).__name__}"}
        return await self.handle(body)

    async def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request object to its reply object."""
        rid = body.get("id")
        cmd = body.get("cmd")
        try:
            if not isinstance(cmd, str):
                raise ControlError(f"missing field 'cmd' (one of: {', '.join(self._commands)})")
            handler = self._commands.get(cmd)
            if handler is None:
                raise ControlError(f"unknown command {cmd!r}; known: {', '.join(self._commands)}")
            request = ControlRequest(body)
            request.timeout()  # a bad timeout is reported before anything else is looked at
            result = await handler(request)
        except ControlError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except (VusbError, OSError, ValueError) as exc:
            return {"id": rid, "ok": False, "error": f"{cmd}: {exc}"}
        except Exception as exc:
            log.exception("control: internal error on %r", body)
            return {"id": rid, "ok": False, "error": f"{cmd}: internal error: {type(exc).__name__}: {exc}"}
        return {"id": rid, "ok": True, **result}

    # ------------------------------------------------------------ lookups
    def device(self, req: ControlRequest) -> tuple[str, Device]:
        """The device a request names (field ``busid``): (busid, device); a clear error if there is none."""
        busid = req.get("busid", str, required=True)
        export = self.server.find(busid)
        if export is not None:
            return busid, export.device
        if busid in self.unplugged:
            raise ControlError(f"device {busid} is unplugged; plug it back first (cmd 'plug')")
        known = ", ".join(e.busid for e in self.server.exports) or "none"
        raise ControlError(f"no device {busid!r} (exported: {known})")

    def function(self, req: ControlRequest, kind: str, *, need_host: bool = False) -> tuple[str, Device, Function]:
        """The function of kind ``kind`` a request names (``busid``, ``function``): (busid, device, function)."""
        busid, device = self.device(req)
        functions = device.functions
        index = req.get("function", int)
        if index is not None:
            if not 0 <= index < len(functions):
                raise ControlError(f"device {busid} has {len(functions)} function(s); no function {index}")
            function = functions[index]
            if function_kind(function) != kind:
                raise ControlError(f"function {index} of {busid} is a {function_kind(function)}, not a {kind}")
        else:
            matching = [f for f in functions if function_kind(f) == kind]
            if not matching:
                have = ", ".join(f"{i} {function_kind(f)}" for i, f in enumerate(functions)) or "none"
                raise ControlError(f"device {busid} ({device.describe()}) has no {kind} function (functions: {have})")
            function = matching[0]
        if need_host and not device.attached:
            raise ControlError(f"device {busid} has no host attached (attach it first: usbip attach -r SERVER -b {busid})")
        return busid, device, function

    async def wait_host(self, busid: str, what: str, timeout: float, action: Awaitable[None]) -> None:
        """Wait for ``action`` (which needs the host to read or write), at most ``timeout`` seconds."""
        try:
            await asyncio.wait_for(action, timeout)
        except TimeoutError:
            raise ControlError(f"timed out after {timeout:g} s waiting for the host to {what} on {busid} "
                               "(is the device configured and its driver bound?)") from None

    # ------------------------------------------------------------ commands
    async def _list(self, req: ControlRequest) -> dict[str, Any]:
        out = []
        for export in self.server.exports:
            out.append(self._describe(export.busid, export.device, plugged=True,
                                      client=export.connection.peer if export.connection else None))
        for busid, device in self.unplugged.items():
            out.append(self._describe(busid, device, plugged=False, client=None))
        return {"devices": out}

    def _describe(self, busid: str, device: Device, *, plugged: bool, client: str | None) -> dict[str, Any]:
        d = device.descriptor
        functions: list[dict[str, Any]] = []
        for i, f in enumerate(device.functions):
            entry: dict[str, Any] = {"index": i, "kind": function_kind(f), "name": getattr(f, "name", None)}
            named = registry().function_name(f)
            if named is not None and named.describe is not None:
                entry.update(named.describe(f))
            functions.append(entry)
        return {"busid": busid, "vendor_id": f"{d.vendor_id:04x}", "product_id": f"{d.product_id:04x}",
                "product": _product(device), "plugged": plugged, "attached": device.attached, "client": client,
                "configured": device.configured, "functions": functions}

    async def _unplug(self, req: ControlRequest) -> dict[str, Any]:
        busid, device = self.device(req)
        had_client = device.attached
        self.server.remove(busid)
        self.unplugged[busid] = device
        return {"busid": busid, "disconnected": had_client}

    async def _plug(self, req: ControlRequest) -> dict[str, Any]:
        busid = req.get("busid", str, required=True)
        device = self.unplugged.get(busid)
        if device is None:
            if self.server.find(busid) is not None:
                raise ControlError(f"device {busid} is already plugged in")
            raise ControlError(f"no unplugged device {busid!r} (unplugged: {', '.join(self.unplugged) or 'none'})")
        self.server.add(device, busid)
        del self.unplugged[busid]
        return {"busid": busid}


    # ------------------------------------------------------------ faults
    async def _fault_add(self, req: ControlRequest) -> dict[str, Any]:
        busid, device = self.device(req)
        spec = req.get("fault", dict, required=True)
        rule = device.faults.add(fault_from_fields(spec))
        return {"busid": busid, "index": len(device.faults) - 1, "rule": repr(rule)}

    async def _fault_list(self, req: ControlRequest) -> dict[str, Any]:
        busid, device = self.device(req)
        return {"busid": busid, "faults": [
            {"index": i, "kind": rule.kind, "rule": repr(rule), "matched": rule.matched, "fired": rule.fired,
             "exhausted": rule.exhausted}
            for i, rule in enumerate(device.faults)]}

    async def _fault_clear(self, req: ControlRequest) -> dict[str, Any]:
        busid, device = self.device(req)
        index = req.get("index", int)
        rules = list(device.faults)
        if index is None:
            device.faults.clear()
            return {"busid": busid, "removed": len(rules)}
        if not 0 <= index < len(rules):
            raise ControlError(f"device {busid} has {len(rules)} fault rule(s); no rule {index}")
        device.faults.remove(rules[index])
        return {"busid": busid, "removed": 1}


def fault_from_fields(spec: dict[str, Any]) -> Fault:
    """A fault rule from a JSON object with the fields of a profile's ``faults:`` entry.

    The object is checked by the profile loader's own reader (:func:`vusb.profile.read_fault`),
    so a rule means the same, and is refused for the same reasons, on both ways in; errors
    name the field as ``fault.FIELD``.
    """
    try:
        # YAML's own writer keeps every JSON value's type (1e-05 stays a number, "0x22" stays text)
        node = yaml.compose(yaml.safe_dump(spec), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ControlError(f"fault: cannot read the fields: {exc}") from None
    assert node is not None  # a dict always dumps to a mapping, {} included
    try:
        return read_fault(ProfileContext("fault-add", Path.cwd()), node, "fault").rule()
    except ProfileError as exc:
        where = f"field '{exc.field}': " if exc.field and exc.field != "fault" else ""
        raise ControlError(f"fault: {where}{exc.reason}") from None


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, ensure_ascii=False).encode("utf-8") + b"\n"
