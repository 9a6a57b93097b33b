"""Where device classes plug into the framework: one registry, filled the same way by every class.

The framework (``vusb/``) imports no device class.  A device class module has a
``register(registry)`` function that tells the framework, in one place, everything it
adds:

- its profile kinds and their fields (:meth:`Registry.add_kind`), read by the profile
  loader, by ``vusb check`` and by the JSON Schema alike; a kind may declare nested
  field tables (a list field whose items are mappings of known fields, such as
  ``luns``), so the schema needs no special case;
- its ``vusb ctl`` commands (:meth:`Registry.add_command`) and the name its functions
  go by in control requests (:meth:`Registry.name_function`);
- its fault kinds (:meth:`Registry.add_fault`), usable in profiles and with
  ``vusb ctl fault-add``;
- its documentation page (``docs=`` of its kinds).

Built-in classes are listed in :data:`BUILTIN_CLASSES` (dotted module names, imported
when the registry is first used); a third-party package adds classes through the
``vusb.devices`` entry-point group, each entry point naming a module with a
``register`` function (or the function itself)::

    [project.entry-points."vusb.devices"]
    blinker = "blinker_usb.vusb_class"

A program or a test can add a class that is not installed with
:func:`load_device_class` (``vusb.load_device_class("megaphone")``).

The names a class module registers with are public, importable from :mod:`vusb`:
:class:`Registry`, :class:`Command`, :func:`load_device_class`, the field reader's
``Field``, ``Located`` and ``ProfileContext``, and the control server's
``ControlServer``, ``ControlRequest`` and ``ControlError``.

Kind names follow one rule: lower case words joined by ``-`` (``gadget-zero``,
``mass-storage``, ``cdc-acm``).  A name registered with ``_`` is stored under the
``-`` spelling; the ``_`` spelling stays accepted with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
import threading
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from vusb.errors import UsageError
from vusb.profile_fields import Field, Located, ProfileContext

if TYPE_CHECKING:
    import argparse

    from vusb.control_server import ControlRequest, ControlServer
    from vusb.device import Function
    from vusb.faults import Fault

log = logging.getLogger("vusb.registry")

BUILTIN_CLASSES: tuple[str, ...] = (
    "vusb.devices.hid_plugin",
    "vusb.devices.keyboard_plugin",
    "vusb.devices.mouse_plugin",
    "vusb.devices.storage.plugin",
    "vusb.devices.cdc_acm.plugin",
    "vusb.devices.gadget_zero_plugin",
    "vusb.devices.printer.plugin",
    "vusb.devices.dfu.plugin",
    "vusb.devices.usb_serial.plugin",
    "vusb.devices.video.plugin",
    "vusb.devices.audio.plugin",
    "vusb.devices.midi.plugin",
    "vusb.devices.net.plugin",
    "vusb.replay_profile",
)
"""The device classes shipped with vusb: modules with a ``register(registry)`` function."""

ENTRY_POINT_GROUP = "vusb.devices"
"""The entry-point group third-party device classes are found in."""

FunctionBuilder = Callable[[ProfileContext, dict[str, Located]], "Function"]
FaultPreparer = Callable[[ProfileContext, dict[str, Located], dict[str, Any]], None]
CommandHandler = Callable[["ControlServer", "ControlRequest"], Awaitable[dict[str, Any]]]

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def canonical_name(name: str) -> str:
    """The one spelling of a kind: lower case words joined by ``-`` (``gadget_zero`` -> ``gadget-zero``)."""
    return name.replace("_", "-")


@dataclass(frozen=True)
class Kind:
    """A function kind of profiles: ``functions: [{kind: NAME, ...fields}]``."""

    name: str
    fields: Mapping[str, Field]
    build: FunctionBuilder
    description: str = ""
    tables: Mapping[str, Mapping[str, Field]] = field(default_factory=dict)
    """Nested field tables: a ``list`` field name -> the fields of each of its items (``luns``)."""
    docs: str | None = None
    """The class's documentation page, relative to docs/ (``devices/mass-storage.md``)."""
    raw_hid: bool = False
    """Its functions are HID functions that raw-descriptor profiles can attach to a HID interface."""
    raw_any: bool = False
    """Its functions attach to any interfaces of raw-descriptor profiles (``interface: [..]``), as they are."""


@dataclass(frozen=True)
class FaultKind:
    """A fault kind of profiles and ``vusb ctl fault-add``: ``faults: [{kind: NAME, ...fields}]``."""

    name: str
    fields: Mapping[str, Field]
    rule: type[Fault]
    prepare: FaultPreparer | None = None
    """Turns checked field values into the rule's keyword arguments (a name into a number, say)."""


@dataclass(frozen=True)
class Command:
    """A ``vusb ctl`` command: its request handler on the server and its command-line form.

    ``run(server, request)`` is the handler: an ``async`` function of the
    :class:`~vusb.control_server.ControlServer` and the
    :class:`~vusb.control_server.ControlRequest` that returns the reply's fields (a
    :class:`~vusb.control_server.ControlError` it raises becomes the error reply).
    ``arguments`` adds the command's own arguments to its ``argparse`` parser (``busid``,
    ``--function`` and ``--timeout`` are added as the flags say); ``request`` copies the
    parsed arguments into the request object; ``format`` turns a reply into the text
    ``vusb ctl`` prints (default: ``ok key=value...``).
    """

    name: str
    help: str
    run: CommandHandler
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    request: Callable[[argparse.Namespace, dict[str, Any]], None] | None = None
    format: Callable[[dict[str, Any]], str] | None = None
    busid: bool = True
    function: bool = True
    timeout: bool = True
    raw_output: bool = False
    """Print the formatted reply as it is, without a newline (data read from a device)."""


@dataclass(frozen=True)
class FunctionName:
    """The name control requests give functions of a class (``keyboard``, ``storage``), and what ``list`` shows."""

    cls: type
    name: str
    describe: Callable[[Any], dict[str, Any]] | None = None


@dataclass(frozen=True)
class BootReport:
    """A HID boot protocol's default report descriptor, served to raw-descriptor profiles that give none."""

    protocol: int
    name: str
    descriptor: bytes
    input_size: int


@dataclass
class Registry:
    """Every kind, command and fault kind the device classes registered.

    A device class module's ``register(registry)`` function receives it and calls
    :meth:`add_kind`, :meth:`add_command`, :meth:`name_function` and :meth:`add_fault`.
    """

    kinds: dict[str, Kind] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    """Old spellings of kind names -> their name (accepted with a DeprecationWarning)."""
    faults: dict[str, FaultKind] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    function_names: list[FunctionName] = field(default_factory=list)
    boot_reports: dict[int, BootReport] = field(default_factory=dict)
    hid_function: Callable[..., Function] | None = None
    """Makes a HID function for a raw-descriptor profile's HID interface that no kind claims."""
    classes: list[str] = field(default_factory=list)
    """The modules that registered, in order."""
    problems: list[str] = field(default_factory=list)
    """Third-party classes that failed to load, with the reason."""
    registered: list[object] = field(default_factory=list, repr=False)
    """The modules (or ``register`` functions) that registered, so that one registers once."""

    # ------------------------------------------------------------ registering
    def add_kind(self, name: str, fields: Mapping[str, Field], build: FunctionBuilder, description: str = "", *,
                 tables: Mapping[str, Mapping[str, Field]] | None = None, docs: str | None = None,
                 raw_hid: bool = False, raw_any: bool = False) -> Kind:
        """Make a function kind available to profiles."""
        canonical = canonical_name(name)
        if not _NAME.match(canonical):
            raise UsageError(f"kind name {name!r}: use lower case words joined by '-' (such as 'mass-storage')")
        for table in tables or {}:
            if table not in fields or fields[table].kind != "list":
                raise UsageError(f"kind {canonical!r}: table {table!r} is not one of its list fields")
        kind = Kind(canonical, dict(fields), build, description, dict(tables or {}), docs, raw_hid, raw_any)
        self.kinds[canonical] = kind
        if "-" in canonical:  # the old spelling of multi-word kinds, still accepted (with a warning)
            self.aliases[canonical.replace("-", "_")] = canonical
        return kind

    def add_fault(self, name: str, fields: Mapping[str, Field], rule: type[Fault], *,
                  prepare: FaultPreparer | None = None) -> FaultKind:
        """Make a fault kind available to profiles and ``vusb ctl fault-add``."""
        kind = FaultKind(name, dict(fields), rule, prepare)
        self.faults[name] = kind
        return kind

    def add_command(self, command: Command) -> None:
        """Add a ``vusb ctl`` command."""
        self.commands[command.name] = command

    def name_function(self, cls: type, name: str, describe: Callable[[Any], dict[str, Any]] | None = None) -> None:
        """Name the functions of class ``cls`` (and its subclasses, unless they have a name) in control requests."""
        self.function_names = [n for n in self.function_names if n.cls is not cls]
        self.function_names.append(FunctionName(cls, name, describe))

    def add_boot_report(self, protocol: int, name: str, descriptor: bytes, input_size: int) -> None:
        """The default report descriptor of a HID boot protocol (1 keyboard, 2 mouse)."""
        self.boot_reports[protocol] = BootReport(protocol, name, descriptor, input_size)

    # ------------------------------------------------------------ looking up
    def kind(self, name: str) -> Kind:
        """The kind called ``name``; an old spelling gives it too, with a DeprecationWarning."""
        if name in self.aliases:
            new = self.aliases[name]
            warnings.warn(f"kind {name!r} is spelt {new!r} now", DeprecationWarning, stacklevel=2)
            return self.kinds[new]
        return self.kinds[name]

    def function_name(self, function: object) -> FunctionName | None:
        """How control requests name ``function``: the entry of the most derived class registered."""
        by_class = {n.cls: n for n in self.function_names}
        for cls in type(function).__mro__:
            if cls in by_class:
                return by_class[cls]
        return None

    def docs_pages(self) -> dict[str, str]:
        """Kind name -> documentation page of every kind that has one."""
        return {name: kind.docs for name, kind in self.kinds.items() if kind.docs}


_registry = Registry()
_loaded = False
_lock = threading.RLock()


def _register_module(target: ModuleType | Callable[[Registry], None], name: str) -> None:
    if any(done is target for done in _registry.registered):
        return  # the same module twice (an entry point and a load_device_class() of it): once is enough
    register = getattr(target, "register", None) if isinstance(target, ModuleType) else target
    if not callable(register):
        raise UsageError(f"device class {name} has no register(registry) function")
    register(_registry)
    _registry.classes.append(name)
    _registry.registered.append(target)


def _load(module: str) -> None:
    _register_module(importlib.import_module(module), module)


def load_device_class(module: str | ModuleType | Callable[[Registry], None]) -> Registry:
    """Add a device class to the registry: a module (or its dotted name) with a ``register(registry)`` function.

    It does for one program what the ``vusb.devices`` entry point of an installed package
    does for every program: a test or a script calls it for a class it has beside it
    (``load_device_class("megaphone")``).  The built-in classes and the installed entry
    points are loaded first; a module that already registered is not registered again.
    Returns the registry.
    """
    reg = registry()
    with _lock:
        if isinstance(module, str):
            _load(module)
        else:
            _register_module(module, getattr(module, "__name__", repr(module)))
    return reg


load_class = load_device_class
"""The first name of :func:`load_device_class`."""


def registry() -> Registry:
    """The registry, with the built-in classes and every installed ``vusb.devices`` entry point loaded."""
    global _loaded
    if _loaded:
        return _registry
    with _lock:
        if _loaded:
            return _registry
        _loaded = True
        from vusb import profile_faults

        profile_faults.register(_registry)
        for module in BUILTIN_CLASSES:
            _load(module)
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                _register_module(entry.load(), f"{entry.value} (entry point {entry.name!r})")
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the built-in classes down
                problem = f"device class {entry.value!r} (entry point {entry.name!r} of {ENTRY_POINT_GROUP}) " \
                          f"failed to load: {type(exc).__name__}: {exc}"
                log.warning("%s", problem)
                _registry.problems.append(problem)
    return _registry


def register_kind(name: str, fields: Mapping[str, Field], build: FunctionBuilder, description: str = "", **options: Any
                  ) -> None:
    """Make a function kind available to profiles at once (see :meth:`Registry.add_kind`).

    What the deprecated ``vusb.profile.register_kind`` does, and what the built-in classes'
    older ``register_profile_kinds()`` call; a new class registers its kinds in its
    ``register(registry)`` function instead.  Registering a kind its class already
    registered again keeps what the class declared beyond the fields (nested tables, docs page).
    """
    existing = _registry.kinds.get(canonical_name(name))
    if existing is not None:
        options.setdefault("tables", existing.tables)
        options.setdefault("docs", existing.docs)
        options.setdefault("raw_hid", existing.raw_hid)
        options.setdefault("raw_any", existing.raw_any)
    _registry.add_kind(name, fields, build, description, **options)


__all__ = [
    "BUILTIN_CLASSES", "ENTRY_POINT_GROUP", "BootReport", "Command", "FaultKind", "FunctionName", "Kind", "Registry",
    "canonical_name", "load_class", "load_device_class", "register_kind", "registry",
]
