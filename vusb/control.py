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

``vusb ctl COMMAND ARGS...`` is the command-line client (:func:`ctl_main`); the
protocol and every command are described in docs/control.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import socket
import stat
import struct
import sys
import wave
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vusb.constants import USBIP_PORT
from vusb.device import Device, Function
from vusb.devices.audio.function import AudioFunction
from vusb.devices.audio.pcm import PcmFormat, read_wav, resample
from vusb.devices.cdc_acm.function import CdcAcmFunction
from vusb.devices.hid import HidFunction
from vusb.devices.keyboard import Key, KeyboardFunction, Modifier
from vusb.devices.midi.function import MidiFunction
from vusb.devices.midi.messages import split_messages
from vusb.devices.mouse import ALL_BUTTONS, Button, MouseFunction
from vusb.devices.storage.backing import BackingStore, ImageFile, MemoryStore
from vusb.devices.storage.bot import MassStorageFunction
from vusb.errors import ProfileError, UsageError, VusbError
from vusb.faults import Fault
from vusb.profile import FAULT_FIELDS, ProfileContext, read_fault
from vusb.server import Server

log = logging.getLogger("vusb.control")

DEFAULT_TIMEOUT = 10.0
"""Seconds an action waits for the host (typing, clicking, reading serial data) unless told."""

MAX_LINE = 4 * 1024 * 1024
"""Longest request line accepted (bytes); a longer one closes that connection."""


_PLAYING: set[asyncio.Future[None]] = set()
"""``audio-play`` without ``wait``: the plays in progress (held so they are not collected)."""


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
_MODIFIER_ALIASES = {"CTRL": "LEFT_CTRL", "SHIFT": "LEFT_SHIFT", "ALT": "LEFT_ALT", "GUI": "LEFT_GUI",
                     "META": "LEFT_GUI", "SUPER": "LEFT_GUI", "ALTGR": "RIGHT_ALT"}
_KEY_ALIASES = {"ESC": "ESCAPE", "RETURN": "ENTER", "DEL": "DELETE", "INS": "INSERT", "PGUP": "PAGE_UP",
                "PGDN": "PAGE_DOWN", "CAPSLOCK": "CAPS_LOCK", "BKSP": "BACKSPACE"}


def _name_list(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in value.replace("+", " ").replace(",", " ").split() if p]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise ControlError(f"'{what}' must be a name or a list of names, not {value!r}")


def parse_keys(keys: object, modifiers: object = None) -> tuple[list[Key], Modifier]:
    """Key and modifier names ("A", "ENTER", "F5", "1", "LEFT_CTRL", "ctrl") to usages and modifier bits."""
    out: list[Key] = []
    mods = Modifier.NONE
    for name in _name_list(keys, "keys") + _name_list(modifiers, "modifiers"):
        upper = name.upper().replace("-", "_")
        upper = _MODIFIER_ALIASES.get(upper, upper)
        if upper in Modifier.__members__ and upper != "NONE":
            mods |= Modifier[upper]
            continue
        upper = _KEY_ALIASES.get(upper, upper)
        if len(upper) == 1 and upper.isdigit():
            upper = "N" + upper
        if upper in Key.__members__:
            out.append(Key[upper])
            continue
        raise ControlError(f"unknown key {name!r}: use names such as A, N1 or 1, ENTER, F5, LEFT, SPACE, "
                           "or modifiers LEFT_CTRL, RIGHT_SHIFT, ALT (see vusb.devices.keyboard.Key)")
    return out, mods


def parse_buttons(value: object, default: Button) -> Button:
    names = _name_list(value, "buttons")
    if not names:
        return default
    buttons = Button.NONE
    for name in names:
        upper = name.upper()
        if upper not in Button.__members__ or upper == "NONE":
            raise ControlError(f"unknown mouse button {name!r}: use LEFT, RIGHT, MIDDLE, BACK or FORWARD")
        buttons |= Button[upper]
    return buttons


def function_kind(function: Function) -> str:
    """The kind a control request names: keyboard, mouse, hid, storage, serial or other."""
    if isinstance(function, KeyboardFunction):
        return "keyboard"
    if isinstance(function, MouseFunction):
        return "mouse"
    if isinstance(function, HidFunction):
        return "hid"
    if isinstance(function, MassStorageFunction):
        return "storage"
    if isinstance(function, CdcAcmFunction):
        return "serial"
    if isinstance(function, AudioFunction):
        return "audio"
    if isinstance(function, MidiFunction):
        return "midi"
    return "other"


def _product(device: Device) -> str | None:
    index = device.descriptor.product_index
    return device.strings.get(index, device.strings.languages[0]) if index else None


# ---------------------------------------------------------------- request fields
@dataclass
class _Request:
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


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


# ---------------------------------------------------------------- the server
class ControlServer:
    """Serves the control protocol for a :class:`~vusb.server.Server` on a Unix socket.

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
        self._ejected: dict[tuple[str, int], BackingStore] = {}
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._inode: tuple[int, int] | None = None
        self._commands: dict[str, Callable[[_Request], Awaitable[dict[str, Any]]]] = {
            "list": self._list, "type": self._type, "press": self._press, "release": self._release,
            "tap": self._tap, "move": self._move, "click": self._click, "press-button": self._press_button,
            "release-button": self._release_button, "scroll": self._scroll, "eject": self._eject,
            "insert": self._insert, "serial-write": self._serial_write, "serial-read": self._serial_read,
            "unplug": self._unplug, "plug": self._plug,
            "fault-add": self._fault_add, "fault-list": self._fault_list, "fault-clear": self._fault_clear,
            "audio-play": self._audio_play, "audio-save": self._audio_save,
            "midi-send": self._midi_send, "midi-read": self._midi_read,
        }

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
        for store in self._ejected.values():
            with contextlib.suppress(Exception):
                store.close()
        self._ejected.clear()

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
            request = _Request(body)
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
    def _device(self, req: _Request) -> tuple[str, Device]:
        busid = req.get("busid", str, required=True)
        export = self.server.find(busid)
        if export is not None:
            return busid, export.device
        if busid in self.unplugged:
            raise ControlError(f"device {busid} is unplugged; plug it back first (cmd 'plug')")
        known = ", ".join(e.busid for e in self.server.exports) or "none"
        raise ControlError(f"no device {busid!r} (exported: {known})")

    def _function(self, req: _Request, kind: str, *, need_host: bool = False) -> tuple[str, Device, Function]:
        busid, device = self._device(req)
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

    async def _wait_host(self, busid: str, what: str, timeout: float, action: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(action, timeout)
        except TimeoutError:
            raise ControlError(f"timed out after {timeout:g} s waiting for the host to {what} on {busid} "
                               "(is the device configured and its driver bound?)") from None

    # ------------------------------------------------------------ commands
    async def _list(self, req: _Request) -> dict[str, Any]:
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
            if isinstance(f, MassStorageFunction):
                entry["luns"] = [{"lun": n, "present": lun.present,
                                  "medium": lun.medium.describe() if lun.medium is not None else None}
                                 for n, lun in enumerate(f.luns)]
            functions.append(entry)
        return {"busid": busid, "vendor_id": f"{d.vendor_id:04x}", "product_id": f"{d.product_id:04x}",
                "product": _product(device), "plugged": plugged, "attached": device.attached, "client": client,
                "configured": device.configured, "functions": functions}

    async def _type(self, req: _Request) -> dict[str, Any]:
        text = req.get("text", str, required=True)
        busid, _, f = self._function(req, "keyboard", need_host=True)
        assert isinstance(f, KeyboardFunction)
        try:
            await self._wait_host(busid, "read the typed keys", req.timeout(), f.type(text))
        except UsageError as exc:
            raise ControlError(str(exc)) from None
        return {"typed": len(text)}

    async def _keys(self, req: _Request, action: str) -> dict[str, Any]:
        keys, mods = parse_keys(req.body.get("keys", req.body.get("key")), req.body.get("modifiers"))
        if not keys and not mods:
            raise ControlError("missing field 'keys': the keys (and modifiers) to " + action)
        busid, _, f = self._function(req, "keyboard", need_host=True)
        assert isinstance(f, KeyboardFunction)
        method = {"press": f.press, "release": f.release, "tap": f.tap}[action]
        await self._wait_host(busid, "read the key report", req.timeout(), method(*keys, modifiers=mods))
        return {"keys": [k.name for k in keys], "modifiers": [m.name for m in Modifier if m and m in mods]}

    async def _press(self, req: _Request) -> dict[str, Any]:
        return await self._keys(req, "press")

    async def _release(self, req: _Request) -> dict[str, Any]:
        return await self._keys(req, "release")

    async def _tap(self, req: _Request) -> dict[str, Any]:
        return await self._keys(req, "tap")

    def _mouse(self, req: _Request) -> tuple[str, MouseFunction]:
        busid, _, f = self._function(req, "mouse", need_host=True)
        assert isinstance(f, MouseFunction)
        return busid, f

    async def _move(self, req: _Request) -> dict[str, Any]:
        dx, dy = req.integer("dx", 0), req.integer("dy", 0)
        busid, f = self._mouse(req)
        await self._wait_host(busid, "read the mouse report", req.timeout(), f.move(dx, dy))
        return {"dx": dx, "dy": dy}

    async def _scroll(self, req: _Request) -> dict[str, Any]:
        amount = req.integer("amount")
        busid, f = self._mouse(req)
        await self._wait_host(busid, "read the mouse report", req.timeout(), f.scroll(amount))
        return {"amount": amount}

    async def _buttons(self, req: _Request, action: str) -> dict[str, Any]:
        default = ALL_BUTTONS if action == "release" else Button.LEFT
        buttons = parse_buttons(req.body.get("buttons", req.body.get("button")), default)
        busid, f = self._mouse(req)
        method = {"click": f.click, "press": f.press, "release": f.release}[action]
        await self._wait_host(busid, "read the mouse report", req.timeout(), method(buttons))
        return {"buttons": [b.name for b in Button if b and b in buttons]}

    async def _click(self, req: _Request) -> dict[str, Any]:
        return await self._buttons(req, "click")

    async def _press_button(self, req: _Request) -> dict[str, Any]:
        return await self._buttons(req, "press")

    async def _release_button(self, req: _Request) -> dict[str, Any]:
        return await self._buttons(req, "release")

    def _lun(self, req: _Request) -> tuple[str, MassStorageFunction, int]:
        number = req.integer("lun", 0)
        busid, _, f = self._function(req, "storage")
        assert isinstance(f, MassStorageFunction)
        if not 0 <= number < len(f.luns):
            raise ControlError(f"device {busid} has {len(f.luns)} logical unit(s); no LUN {number}")
        return busid, f, number

    async def _eject(self, req: _Request) -> dict[str, Any]:
        busid, f, number = self._lun(req)
        store = f.lun(number).eject()
        if store is None:
            raise ControlError(f"LUN {number} of {busid} holds no medium")
        old = self._ejected.pop((busid, number), None)
        if old is not None and old is not store:
            with contextlib.suppress(Exception):
                old.close()
        self._ejected[(busid, number)] = store
        return {"lun": number, "medium": store.describe()}

    async def _insert(self, req: _Request) -> dict[str, Any]:
        image = req.get("image", str)
        read_only = bool(req.get("read_only", bool, False))
        if image is not None and not image.startswith("memory:") and not os.path.isabs(image):
            raise ControlError(f"image path {image!r} must be absolute (the server's working folder is not yours)")
        busid, f, number = self._lun(req)
        unit = f.lun(number)
        if unit.present:
            raise ControlError(f"LUN {number} of {busid} already holds {unit.medium.describe() if unit.medium else '?'}; "
                               "eject it first")
        store: BackingStore
        if image is None:
            kept = self._ejected.get((busid, number))
            if kept is None:
                raise ControlError("missing field 'image': an image path or memory:SIZE "
                                   f"(LUN {number} of {busid} has no ejected medium to put back)")
            store = kept
        elif image.startswith("memory:"):
            store = MemoryStore(image[len("memory:"):], read_only=read_only)
        else:
            store = ImageFile(image, read_only=read_only)
        try:
            unit.insert(store)
        except BaseException:
            if image is not None:
                store.close()
            raise
        if self._ejected.get((busid, number)) is store:
            del self._ejected[(busid, number)]
        return {"lun": number, "medium": store.describe()}

    def _serial(self, req: _Request) -> tuple[str, CdcAcmFunction]:
        busid, _, f = self._function(req, "serial")
        assert isinstance(f, CdcAcmFunction)
        return busid, f

    async def _serial_write(self, req: _Request) -> dict[str, Any]:
        text = req.get("data", str)
        b64 = req.get("base64", str)
        if (text is None) == (b64 is None):
            raise ControlError("give the bytes as 'data' (text, sent as UTF-8) or 'base64', exactly one of them")
        if b64 is not None:
            try:
                payload = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ControlError(f"field 'base64' is not valid base64: {exc}") from None
        else:
            payload = text.encode("utf-8")
        busid, f = self._serial(req)
        timeout = req.timeout()
        try:
            await asyncio.wait_for(f.write(payload), timeout)
        except TimeoutError:
            raise ControlError(f"timed out after {timeout:g} s: the buffer towards the host of {busid} stays full "
                               "(the host is not reading)") from None
        return {"written": len(payload)}

    async def _serial_read(self, req: _Request) -> dict[str, Any]:
        n = req.get("n", int)
        line = bool(req.get("line", bool, False))
        separator = req.get("separator", str, "\n").encode("utf-8")
        if n is not None and n <= 0:
            raise ControlError(f"field 'n' must be a positive number of bytes, not {n}")
        if not separator:
            raise ControlError("field 'separator' must not be empty")
        busid, f = self._serial(req)
        if f.backend.reads_host_data:
            raise ControlError(f"the serial port {busid} has the {f.backend.describe()} backend, which consumes "
                               "what the host sends; serial-read needs a port with backend none")
        timeout = req.timeout()
        fifo = f.from_host
        acc = bytearray()
        try:
            async with asyncio.timeout(timeout):
                if not line:
                    await fifo.wait_data()
                    acc += fifo.get(n if n is not None else -1)
                else:
                    limit = n if n is not None else fifo.limit
                    while True:
                        idx = acc.find(separator)
                        if idx >= 0:
                            end = idx + len(separator)
                            fifo.unget(bytes(acc[end:]))
                            del acc[end:]
                            break
                        if len(acc) >= limit:
                            fifo.unget(bytes(acc[limit:]))
                            del acc[limit:]
                            break
                        await fifo.wait_data()
                        acc += fifo.get()
        except TimeoutError:
            fifo.unget(bytes(acc))  # nothing taken is lost: the next read sees it
            what = "complete line" if line else "data"
            raise ControlError(f"no {what} from the host of {busid} within {timeout:g} s"
                               + (f" ({len(acc)} byte(s) without a separator are kept)" if acc else "")) from None
        data = bytes(acc)
        return {"data": data.decode("utf-8", "backslashreplace"), "base64": base64.b64encode(data).decode("ascii"),
                "length": len(data)}

    async def _unplug(self, req: _Request) -> dict[str, Any]:
        busid, device = self._device(req)
        had_client = device.attached
        self.server.remove(busid)
        self.unplugged[busid] = device
        return {"busid": busid, "disconnected": had_client}

    async def _plug(self, req: _Request) -> dict[str, Any]:
        busid = req.get("busid", str, required=True)
        device = self.unplugged.get(busid)
        if device is None:
            if self.server.find(busid) is not None:
                raise ControlError(f"device {busid} is already plugged in")
            raise ControlError(f"no unplugged device {busid!r} (unplugged: {', '.join(self.unplugged) or 'none'})")
        self.server.add(device, busid)
        del self.unplugged[busid]
        return {"busid": busid}


    # ------------------------------------------------------------ audio and MIDI
    def _audio(self, req: _Request) -> tuple[str, AudioFunction]:
        busid, _, f = self._function(req, "audio")
        assert isinstance(f, AudioFunction)
        return busid, f

    async def _audio_play(self, req: _Request) -> dict[str, Any]:
        path = req.get("wav", str, required=True)
        wait = bool(req.get("wait", bool, False))
        busid, f = self._audio(req)
        mic = f.microphone
        if mic is None:
            raise ControlError(f"the sound card {busid} has no microphone")
        data, fmt = read_wav(path)  # MediaError (a VusbError) names the file and what is wrong
        data = resample(data, fmt, mic.rate)
        play = mic.play(data, bits=fmt.bits, channels=fmt.channels, wait=True)
        frames = len(data) // fmt.frame_bytes
        if not wait:
            task = asyncio.ensure_future(play)
            _PLAYING.add(task)
            task.add_done_callback(_PLAYING.discard)
            return {"busid": busid, "frames": frames, "rate": mic.rate, "queued": True}
        timeout = req.timeout()
        try:
            await asyncio.wait_for(play, timeout)
        except TimeoutError:
            raise ControlError(f"timed out after {timeout:g} s: the host of {busid} did not capture all "
                               f"{frames} frames (is something recording?)") from None
        return {"busid": busid, "frames": frames, "rate": mic.rate, "queued": False}

    async def _audio_save(self, req: _Request) -> dict[str, Any]:
        path = req.get("wav", str, required=True)
        clear = bool(req.get("clear", bool, False))
        busid, f = self._audio(req)
        speaker = f.speaker
        if speaker is None:
            raise ControlError(f"the sound card {busid} has no speaker")
        data, fmt = speaker.recorded(), speaker.recorded_format
        if fmt is None:
            fmt = PcmFormat(2, 16, speaker.rate)
        try:
            with open(path, "wb") as raw, wave.open(raw, "wb") as w:
                w.setnchannels(fmt.channels)
                w.setsampwidth(fmt.subslot)
                w.setframerate(fmt.rate)
                w.writeframes(data)
        except OSError as exc:
            raise ControlError(f"cannot write {path}: {exc.strerror or exc}") from None
        if clear:
            speaker.clear()
        return {"busid": busid, "frames": len(data) // fmt.frame_bytes, "rate": fmt.rate, "channels": fmt.channels,
                "bits": fmt.bits, "truncated": speaker.recorded_truncated}

    def _midi(self, req: _Request) -> tuple[str, MidiFunction]:
        busid, _, f = self._function(req, "midi")
        assert isinstance(f, MidiFunction)
        return busid, f

    async def _midi_send(self, req: _Request) -> dict[str, Any]:
        text = req.get("data", str, required=True)
        cable = req.integer("cable", 0)
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ControlError(f"field 'data' must be hexadecimal bytes such as '90 3C 7F', not {text!r}") from None
        try:
            messages = split_messages(raw)
        except UsageError as exc:
            raise ControlError(f"field 'data': {exc}") from None
        busid, f = self._midi(req)
        if not 0 <= cable < f.cables:
            raise ControlError(f"the MIDI interface {busid} has cables 0..{f.cables - 1}, not {cable}")
        timeout = req.timeout()
        try:
            await f.send(raw, cable, timeout=timeout)
        except TimeoutError:
            raise ControlError(f"timed out after {timeout:g} s: the host of {busid} is not reading MIDI") from None
        return {"busid": busid, "messages": len(messages), "cable": cable}

    async def _midi_read(self, req: _Request) -> dict[str, Any]:
        busid, f = self._midi(req)
        timeout = req.timeout()
        out = []
        try:
            msg = await f.receive(timeout)
        except TimeoutError:
            raise ControlError(f"no MIDI message from the host of {busid} within {timeout:g} s") from None
        out.append(msg)
        while not f.received.empty():
            out.append(f.received.get_nowait())
        return {"busid": busid, "messages": [{"cable": m.cable, "data": m.hex(), "type": m.type} for m in out]}

    # ------------------------------------------------------------ faults
    async def _fault_add(self, req: _Request) -> dict[str, Any]:
        busid, device = self._device(req)
        spec = req.get("fault", dict, required=True)
        rule = device.faults.add(fault_from_fields(spec))
        return {"busid": busid, "index": len(device.faults) - 1, "rule": repr(rule)}

    async def _fault_list(self, req: _Request) -> dict[str, Any]:
        busid, device = self._device(req)
        return {"busid": busid, "faults": [
            {"index": i, "kind": rule.kind, "rule": repr(rule), "matched": rule.matched, "fired": rule.fired,
             "exhausted": rule.exhausted}
            for i, rule in enumerate(device.faults)]}

    async def _fault_clear(self, req: _Request) -> dict[str, Any]:
        busid, device = self._device(req)
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


# ---------------------------------------------------------------- the client
class ControlClient:
    """A blocking client: ``ControlClient(path).request({"cmd": "list"})`` returns the reply object."""

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = 60.0) -> None:
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError:
            self._sock.close()
            raise
        self._file = self._sock.makefile("rb")
        self._next_id = 1

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {"id": self._next_id, **body}
        self._next_id += 1
        self._sock.sendall(json.dumps(body).encode("utf-8") + b"\n")
        line = self._file.readline()
        if not line:
            raise ConnectionError(f"the server closed the control connection on {self.path}")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ConnectionError(f"unexpected reply {reply!r}")
        return reply

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "0": "\0", "e": "\x1b", "b": "\b", "a": "\a",
                   "f": "\f", "v": "\v", "'": "'", '"': '"'}


def unescape(text: str) -> str:
    """Interpret backslash escapes (\\n \\r \\t \\e \\\\ \\xHH \\uHHHH) as a shell user means them."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(nxt)
        digits = text[i + 2 : i + 2 + width] if width else ""
        if width and len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
            out.append(chr(int(digits, 16)))
            i += 2 + width
            continue
        raise UsageError(f"unknown escape {text[i:i + 2]!r} at position {i} (use \\n \\r \\t \\e \\\\ \\xHH \\uHHHH)")
    return "".join(out)


def _ctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vusb ctl", description="drive the devices of a running `vusb serve`")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def command(name: str, help_text: str, *, function: bool = True, timeout: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        if name not in ("list",):
            p.add_argument("busid")
        if function:
            p.add_argument("--function", type=int, metavar="N", help="which function of a composite device")
        if timeout:
            p.add_argument("--timeout", type=float, metavar="SECONDS", help="how long to wait for the host")
        return p

    command("list", "the served devices", function=False, timeout=False)
    command("type", "type text (escapes such as \\n are interpreted)").add_argument("text")
    for name in ("press", "release", "tap"):
        command(name, f"{name} keys by name (A, ENTER, F5, LEFT_CTRL...)").add_argument("keys", nargs="+")
    p = command("move", "move the mouse")
    p.add_argument("dx", type=int)
    p.add_argument("dy", type=int)
    command("scroll", "turn the wheel (positive: away from the user)").add_argument("amount", type=int)
    for name in ("click", "press-button", "release-button"):
        command(name, f"{name.replace('-button', '')} mouse buttons (LEFT, RIGHT, MIDDLE...)").add_argument(
            "buttons", nargs="*")
    command("eject", "take the medium out of a logical unit", timeout=False).add_argument(
        "lun", type=int, nargs="?", default=0)
    p = command("insert", "insert a medium: an image path, memory:SIZE, or (none) the ejected one", timeout=False)
    p.add_argument("image", nargs="?")
    p.add_argument("lun", type=int, nargs="?", default=0)
    p.add_argument("--read-only", action="store_true")
    p = command("serial-write", "send bytes to the host (escapes such as \\r are interpreted)")
    p.add_argument("data")
    p.add_argument("--base64", action="store_true", help="DATA is base64")
    p = command("serial-read", "read bytes the host sent")
    p.add_argument("-n", type=int, help="at most N bytes")
    p.add_argument("--line", action="store_true", help="up to and including a newline")
    for name, help_text in (("unplug", "stop exporting (disconnects its client)"), ("plug", "export again")):
        command(name, help_text, function=False, timeout=False)
    p = command("fault-add", "add a fault rule: KIND FIELD=VALUE... (docs/faults.md)", function=False, timeout=False)
    p.add_argument("kind", help=", ".join(FAULT_FIELDS))
    p.add_argument("fields", nargs="*", metavar="FIELD=VALUE", help="e.g. endpoint=0x81 count=1")
    command("fault-list", "the fault rules and how often they fired", function=False, timeout=False)
    p = command("audio-play", "play a WAV file into a sound card's microphone")
    p.add_argument("wav")
    p.add_argument("--wait", action="store_true", help="return once the host has captured it all")
    p = command("audio-save", "save what the host played on a sound card's speaker as a WAV file", timeout=False)
    p.add_argument("wav")
    p.add_argument("--clear", action="store_true", help="forget the saved samples afterwards")
    p = command("midi-send", "send MIDI messages (hex bytes such as '90 3C 7F') to the host")
    p.add_argument("data")
    p.add_argument("--cable", type=int, help="the cable (port) number, default 0")
    command("midi-read", "MIDI messages the host sent (waits for the first)")
    command("fault-clear", "remove every fault rule, or the one at INDEX", function=False, timeout=False).add_argument(
        "index", type=int, nargs="?")
    return parser


def build_request(argv: Sequence[str]) -> tuple[dict[str, Any], bool]:
    """``vusb ctl`` arguments to a request object (and whether to print raw JSON)."""
    parser = _ctl_parser()
    as_json = "--json" in argv
    args = parser.parse_args([a for a in argv if a != "--json"])
    body: dict[str, Any] = {"cmd": args.cmd}
    for key in ("busid", "function", "timeout", "dx", "dy", "amount", "lun", "n"):
        value = getattr(args, key, None)
        if value is not None:
            body[key] = value
    cmd = args.cmd
    if cmd == "type":
        body["text"] = unescape(args.text)
    elif cmd in ("press", "release", "tap"):
        body["keys"] = args.keys
    elif cmd in ("click", "press-button", "release-button") and args.buttons:
        body["buttons"] = args.buttons
    elif cmd == "insert":
        if args.image is not None:
            image = args.image
            body["image"] = image if image.startswith("memory:") else os.path.abspath(image)
        if args.read_only:
            body["read_only"] = True
    elif cmd == "serial-write":
        if args.base64:
            body["base64"] = args.data
        else:
            body["data"] = unescape(args.data)
    elif cmd == "serial-read" and args.line:
        body["line"] = True
    elif cmd == "fault-add":
        body["fault"] = {"kind": args.kind, **dict(_field_value(item) for item in args.fields)}
    elif cmd == "fault-clear" and args.index is not None:
        body["index"] = args.index
    elif cmd in ("audio-play", "audio-save"):
        body["wav"] = os.path.abspath(args.wav)
        if getattr(args, "wait", False):
            body["wait"] = True
        if getattr(args, "clear", False):
            body["clear"] = True
    elif cmd == "midi-send":
        body["data"] = args.data
        if args.cable is not None:
            body["cable"] = args.cable
    return body, as_json


def _field_value(item: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` of ``vusb ctl fault-add``: integers (0x hex too), numbers, true/false, else text."""
    name, sep, text = item.partition("=")
    if not sep or not name:
        raise UsageError(f"fault field {item!r} is not FIELD=VALUE (for example endpoint=0x81)")
    if name == "data":
        return name, text  # hexadecimal bytes stay text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    for convert in (lambda t: int(t, 0), float):
        try:
            return name, convert(text)
        except ValueError:
            pass
    return name, text


def format_reply(body: dict[str, Any], reply: dict[str, Any]) -> str:
    if body["cmd"] == "list":
        lines = []
        for d in reply.get("devices", []):
            state = ("attached" if d["attached"] else "free") if d["plugged"] else "unplugged"
            kinds = ", ".join(f"{f['index']}:{f['kind']}" for f in d["functions"])
            lines.append(f"{d['busid']}  {d['vendor_id']}:{d['product_id']} {d['product'] or '':28s} {state:9s} "
                         f"functions {kinds}")
            for f in d["functions"]:
                for lun in f.get("luns", []):
                    lines.append(f"      lun {lun['lun']}: {lun['medium'] or 'no medium'}")
        return "\n".join(lines) if lines else "no devices"
    if body["cmd"] == "serial-read":
        return str(reply.get("data", ""))
    if body["cmd"] == "midi-read":
        return "\n".join(f"cable {m['cable']}: {m['data']}" for m in reply.get("messages", []))
    if body["cmd"] == "fault-list":
        lines = [f"{f['index']}: {f['rule']}  matched {f['matched']} fired {f['fired']}"
                 + (" (spent)" if f["exhausted"] else "") for f in reply.get("faults", [])]
        return "\n".join(lines) if lines else "no fault rules"
    details = {k: v for k, v in reply.items() if k not in ("id", "ok")}
    return "ok" + "".join(f" {k}={v}" for k, v in details.items())


def ctl_main(socket_path: str | None, port: int, argv: Sequence[str]) -> int:
    """``vusb ctl``: send one request, print the result; 0 on success, 1 on an error reply, 2 if unreachable."""
    body, as_json = build_request(argv)
    path = Path(socket_path) if socket_path else default_socket_path(port)
    timeout = float(body.get("timeout", DEFAULT_TIMEOUT)) + 30.0
    try:
        with ControlClient(path, timeout=timeout) as client:
            reply = client.request(body)
    except FileNotFoundError:
        print(f"vusb ctl: error: no control socket at {path} (is `vusb serve` running"
              f"{'' if socket_path else f' on port {port}'}?)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"vusb ctl: error: control socket {path}: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(reply))
    if not reply.get("ok"):
        print(f"vusb ctl: error: {reply.get('error', 'failed')}", file=sys.stderr)
        return 1
    if not as_json:
        text = format_reply(body, reply)
        if body["cmd"] == "serial-read":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            print(text)
    return 0
