"""Build and cache the guest images used by :mod:`vusb.harness`.

A guest image is a Debian kernel plus an initramfs (an uncompressed cpio
archive) holding busybox, ``usbip`` with its shared libraries, a FAT
formatter, ``testusb`` (compiled statically from ``tools/testusb.c`` with the
host's C compiler, to run the ``usbtest`` driver's tests) and the kernel
modules a USB/IP client needs.  When the kernel's
bzImage payload can be decompressed with the standard library (xz, gzip)
and has a PVH entry point, the uncompressed ``vmlinux`` is kept too and
booted directly: under TCG that saves a few seconds per boot.

Images are built once per kernel selection and format version and cached:

* cache directory: the ``cache_dir`` argument, else ``$VUSB_GUEST_CACHE``,
  else ``$XDG_CACHE_HOME/vusb/guest``, else ``~/.cache/vusb/guest``;
* one sub-directory per image, e.g. ``linux-6.1-v1``, holding ``vmlinuz``,
  maybe ``vmlinux``, ``initrd.cpio`` and ``image.json``.

Builds take a file lock (two processes building the same image wait for
each other) and happen in a temporary directory that is renamed into place
only when complete, so an interrupted build never leaves a broken image.

The boot scripts (``/init`` configuration, the command agent) are *not*
part of the cached image: :mod:`vusb.harness.guest` appends them at boot
time as a second, tiny cpio archive.
"""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from vusb.errors import ArgumentError, HarnessError

__all__ = [
    "DEFAULT_KERNEL",
    "FORMAT_VERSION",
    "KERNELS",
    "MODULES",
    "CpioWriter",
    "GuestImage",
    "HarnessError",
    "HarnessPrerequisiteError",
    "ImageBuildError",
    "check_build_prerequisites",
    "default_cache_dir",
    "ensure_image",
    "extract_vmlinux",
    "find_cached_image",
    "find_qemu",
    "iter_cached_images",
]

#: Bump whenever the content of a built image changes (module list, files).
FORMAT_VERSION = 5

#: The kernel used when none is named.
DEFAULT_KERNEL = "6.1"

INSTALL_SCRIPT_HINT = (
    "The repository's .ci/install-harness-deps.sh installs everything the harness needs."
)


class HarnessPrerequisiteError(HarnessError):
    """A host program or file the harness needs is missing."""


class ImageBuildError(HarnessError):
    """A guest image could not be built (download, unpack, module lookup...)."""


@dataclasses.dataclass(frozen=True)
class KernelSeries:
    """A selectable kernel series and where Debian ships it."""

    series: str
    suite: str
    #: Regular expression matching the wanted package names; group 1 is the ABI.
    package_re: str


KERNELS: dict[str, KernelSeries] = {
    "5.10": KernelSeries("5.10", "bullseye", r"^linux-image-(5\.10\.0-\d+)-amd64-unsigned$"),
    "6.1": KernelSeries("6.1", "bookworm", r"^linux-image-(6\.1\.0-\d+)-amd64-unsigned$"),
    "6.12": KernelSeries(
        "6.12", "trixie", r"^linux-image-(6\.12\.\d+\+deb13(?:\.\d+)?)-amd64-unsigned$"
    ),
}


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """A kernel module wanted in the guest (loaded at boot, in list order)."""

    name: str
    required: bool = False


#: Modules put into the guest and loaded at boot, in this order (dependencies
#: are added automatically).  Required ones must exist as a module or be
#: built in; optional ones are skipped when the kernel has neither.
MODULES: tuple[ModuleSpec, ...] = (
    # Command channel and network.
    ModuleSpec("virtio_pci", True),
    ModuleSpec("virtio_console", True),
    ModuleSpec("e1000", True),
    # The host's root shared read-only with virtio-9p (-virtfs ... mount_tag=hostroot), so a
    # guest can chroot into it and run the host's own Python and libusb (vusb proxy tests).
    # Their dependencies (9pnet, netfs, fscache) come from modules.dep.
    ModuleSpec("9pnet_virtio"),
    ModuleSpec("9p"),
    # USB/IP client.
    ModuleSpec("usbip_core", True),
    ModuleSpec("vhci_hcd", True),
    ModuleSpec("usbmon"),
    # USB/IP server side (usbipd + usbip-host), for interoperability tests against Linux usbipd
    # with an emulated host controller (qemu-xhci) carrying QEMU's own USB devices.
    ModuleSpec("usbip_host"),
    ModuleSpec("xhci_pci"),
    # HID and input.
    ModuleSpec("evdev", True),
    ModuleSpec("usbhid", True),
    ModuleSpec("hid_generic", True),
    ModuleSpec("hid_multitouch"),
    ModuleSpec("joydev"),
    # Mass storage.  crct10dif_generic must precede sd_mod's crc-t10dif on
    # kernels where that is a module: crc-t10dif asks the crypto API for it.
    ModuleSpec("crct10dif_generic"),
    ModuleSpec("crc_t10dif"),
    ModuleSpec("sd_mod", True),
    ModuleSpec("usb_storage", True),
    ModuleSpec("uas"),
    ModuleSpec("sg"),
    ModuleSpec("sr_mod"),
    ModuleSpec("isofs"),
    ModuleSpec("loop"),
    ModuleSpec("vfat", True),
    ModuleSpec("nls_cp437", True),
    ModuleSpec("nls_iso8859_1", True),
    ModuleSpec("nls_utf8"),
    ModuleSpec("nls_ascii"),  # Debian's default FAT iocharset
    # Serial and communication classes.
    ModuleSpec("cdc_acm", True),
    ModuleSpec("usbserial"),
    ModuleSpec("usb_serial_simple"),
    ModuleSpec("ftdi_sio"),
    ModuleSpec("cp210x"),
    ModuleSpec("ch341"),
    ModuleSpec("pl2303"),
    ModuleSpec("cdc_wdm"),
    ModuleSpec("usbnet"),
    ModuleSpec("cdc_ether"),
    ModuleSpec("cdc_eem"),
    ModuleSpec("cdc_ncm"),
    ModuleSpec("rndis_host"),
    # Printer, audio, video, test.
    ModuleSpec("usblp"),
    ModuleSpec("snd_usb_audio"),
    ModuleSpec("uvcvideo"),
    ModuleSpec("usbtest"),
)

_DEBIAN_CODENAMES = frozenset(
    {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "unstable",
     "testing", "stable", "oldstable", "oldoldstable"}
)
_DEFAULT_MIRROR = "http://deb.debian.org/debian"
_DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """A built guest image in the cache."""

    directory: Path
    kernel: str
    kernel_release: str
    package: str
    package_version: str
    suite: str
    modules: tuple[str, ...]
    load_paths: tuple[str, ...]
    build_seconds: float

    @property
    def vmlinuz(self) -> Path:
        """The kernel as Debian ships it (a compressed bzImage)."""
        return self.directory / "vmlinuz"

    @property
    def kernel_image(self) -> Path:
        """What QEMU boots: the uncompressed ``vmlinux`` (PVH entry) when the
        build could extract it, which saves seconds of in-guest kernel
        decompression under TCG; otherwise the bzImage."""
        vmlinux = self.directory / "vmlinux"
        return vmlinux if vmlinux.is_file() else self.vmlinuz

    @property
    def initrd(self) -> Path:
        """The base initramfs (an uncompressed cpio archive)."""
        return self.directory / "initrd.cpio"

    @classmethod
    def load(cls, directory: Path) -> GuestImage:
        meta: dict[str, Any] = json.loads((directory / "image.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"image format {meta.get('format')!r} != {FORMAT_VERSION}")
        image = cls(
            directory=directory,
            kernel=str(meta["kernel"]),
            kernel_release=str(meta["kernel_release"]),
            package=str(meta["package"]),
            package_version=str(meta["package_version"]),
            suite=str(meta["suite"]),
            modules=tuple(str(m) for m in meta["modules"]),
            load_paths=tuple(str(p) for p in meta["load_paths"]),
            build_seconds=float(meta["build_seconds"]),
        )
        if not image.kernel_image.is_file() or not image.initrd.is_file():
            raise ValueError(f"incomplete image in {directory}")
        return image


# ---------------------------------------------------------------------------
# Prerequisites


def default_cache_dir() -> Path:
    """The cache directory used when none is given explicitly."""
    env = os.environ.get("VUSB_GUEST_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vusb" / "guest"


def _missing(what: str, package: str, extra: str = "") -> HarnessPrerequisiteError:
    msg = (
        f"{what} is missing: install the Debian package '{package}' "
        f"(apt-get install {package}). {INSTALL_SCRIPT_HINT}"
    )
    if extra:
        msg += " " + extra
    return HarnessPrerequisiteError(msg)


def _which(name: str, extra_dirs: Sequence[str] = ("/usr/sbin", "/sbin")) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_qemu() -> str:
    """Path of ``qemu-system-x86_64`` or a :class:`HarnessPrerequisiteError`."""
    env = os.environ.get("VUSB_QEMU")
    if env:
        if not os.access(env, os.X_OK):
            raise HarnessPrerequisiteError(f"VUSB_QEMU={env} is not an executable program")
        return env
    path = _which("qemu-system-x86_64")
    if path is None:
        raise _missing("qemu-system-x86_64", "qemu-system-x86")
    return path


def _elf_interpreter(path: Path) -> str | None:
    """The PT_INTERP of a 64-bit little-endian ELF file (None when static).

    Raises ValueError if the file is not such an ELF executable.
    """
    with path.open("rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise ValueError(f"{path} is not a 64-bit little-endian ELF file")
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            entry = table[i * phentsize : (i + 1) * phentsize]
            if int.from_bytes(entry[0:4], "little") == 3:  # PT_INTERP
                offset = int.from_bytes(entry[8:16], "little")
                size = int.from_bytes(entry[32:40], "little")
                f.seek(offset)
                return f.read(size).rstrip(b"\0").decode()
    return None


#: Host programs copied into the guest with their shared libraries, for the device classes'
#: kernel tests: guest path -> Debian package.  Optional: a build on a host without one
#: leaves it out, and the tests that need it say which package to install.
GUEST_PROGRAMS: dict[str, str] = {
    "usr/bin/aplay": "alsa-utils",
    "usr/bin/arecord": "alsa-utils",
    "usr/bin/amidi": "alsa-utils",
    "usr/bin/v4l2-ctl": "v4l-utils",
    "usr/bin/dfu-util": "dfu-util",
    "usr/bin/tcpdump": "tcpdump",
}

#: Host folders copied whole into the guest when present (alsa-lib reads its configuration there).
GUEST_DATA_DIRS: tuple[str, ...] = ("usr/share/alsa",)


@dataclasses.dataclass(frozen=True)
class _HostTools:
    busybox: Path
    usbip: Path
    usbipd: Path | None
    mkfs_fat: Path | None
    programs: dict[str, Path]
    depmod: str
    apt_get: str
    apt_cache: str
    dpkg: str
    ldd: str
    cc: str


def _find_busybox() -> Path:
    candidates = [os.environ.get("VUSB_BUSYBOX", ""), "/bin/busybox", "/usr/bin/busybox"]
    seen_dynamic = False
    for c in candidates:
        if not c or not os.path.isfile(c):
            continue
        p = Path(c)
        try:
            if _elf_interpreter(p) is None:
                return p
            seen_dynamic = True
        except ValueError:
            continue
    raise _missing(
        "A statically linked busybox",
        "busybox-static",
        "(the dynamically linked 'busybox' package is not enough)" if seen_dynamic else "",
    )


def check_build_prerequisites() -> _HostTools:
    """Check every host program an image build needs; raise on the first missing."""
    busybox = _find_busybox()
    usbip_path = os.environ.get("VUSB_USBIP") or _which("usbip")
    if usbip_path is None:
        raise _missing("usbip (/usr/sbin/usbip)", "usbip")
    usbip = Path(usbip_path).resolve()
    try:
        _elf_interpreter(usbip)
    except ValueError:
        raise HarnessPrerequisiteError(
            f"{usbip_path} is not an x86-64 ELF program (a wrapper script?): the harness "
            "copies the usbip binary into the guest; install Debian's 'usbip' package or "
            "set VUSB_USBIP to the real binary."
        ) from None
    mkfs = _which("mkfs.fat")
    depmod = _which("depmod")
    if depmod is None:
        raise _missing("depmod", "kmod")
    tools: dict[str, str] = {}
    for name, package in (("apt-get", "apt"), ("apt-cache", "apt"), ("dpkg", "dpkg"),
                          ("ldd", "libc-bin")):
        found = _which(name)
        if found is None:
            raise _missing(name, package, "Building a guest image needs a Debian-like host.")
        tools[name] = found
    if not _KEYRING.is_file():
        raise _missing(str(_KEYRING), "debian-archive-keyring")
    cc = os.environ.get("VUSB_CC") or _which("gcc") or _which("cc")
    if cc is None:
        raise _missing("A C compiler (gcc)", "gcc",
                       "The guest's testusb tool is compiled from vusb/harness/tools/testusb.c when an image is built.")
    return _HostTools(
        busybox=busybox,
        usbip=usbip,
        usbipd=Path(usbipd_path).resolve() if (usbipd_path := _which("usbipd")) else None,
        mkfs_fat=Path(mkfs).resolve() if mkfs else None,
        programs={guest: Path(found).resolve() for guest in GUEST_PROGRAMS
                  if (found := _which(Path(guest).name, ("/usr/bin", "/usr/sbin", "/sbin"))) is not None},
        depmod=depmod,
        apt_get=tools["apt-get"],
        apt_cache=tools["apt-cache"],
        dpkg=tools["dpkg"],
        ldd=tools["ldd"],
        cc=cc,
    )


# ---------------------------------------------------------------------------
# Guest tools compiled from source

#: C sources of the guest's own tools: guest path -> file in vusb/harness/tools.
GUEST_TOOLS: dict[str, str] = {"usr/bin/testusb": "testusb.c"}

TOOLS_DIR = Path(__file__).resolve().parent / "tools"


def compile_guest_tool(cc: str, source: Path, output: Path) -> None:
    """Compile one tool statically for the guest (which has no shared C library of its own).

    Raises :class:`HarnessPrerequisiteError` when the static C library or the kernel's
    user-space headers are missing, :class:`ImageBuildError` for any other failure.
    """
    if not source.is_file():
        raise ImageBuildError(f"guest tool source {source} is missing (a broken vusb installation?)")
    cmd = [cc, "-static", "-O2", "-Wall", "-std=gnu11", "-o", str(output), str(source)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    except OSError as exc:
        raise HarnessPrerequisiteError(f"cannot run the C compiler {cc}: {exc}. {INSTALL_SCRIPT_HINT}") from exc
    if r.returncode == 0:
        return
    err = r.stderr.strip()
    if "cannot find -lc" in err or "stdio.h" in err or ("No such file" in err and "linux/" in err):
        raise _missing(f"The static C library or kernel headers ({source.name} did not compile)", "libc6-dev",
                       f"The compiler said: {_last_lines(err)}")
    raise ImageBuildError(f"compiling {source.name} for the guest failed ({' '.join(cmd)}):\n{_last_lines(err)}")


def _last_lines(text: str, count: int = 12) -> str:
    return "\n".join(text.splitlines()[-count:])


# ---------------------------------------------------------------------------
# Kernel selection


def _parse_kernel(kernel: str) -> tuple[KernelSeries, str | None]:
    """Map a kernel selection to its series and an optional exact ABI."""
    if kernel in KERNELS:
        return KERNELS[kernel], None
    for series in sorted(KERNELS.values(), key=lambda s: -len(s.series)):
        if kernel.startswith(series.series + "."):
            name = f"linux-image-{kernel}-amd64-unsigned"
            if re.match(series.package_re, name):
                return series, kernel
    choices = ", ".join(repr(k) for k in KERNELS)
    raise ArgumentError(
        f"unknown kernel {kernel!r}: choose one of {choices} or an exact Debian ABI "
        "such as '6.1.0-50' or '6.12.117+deb13'"
    )


def image_key(kernel: str) -> str:
    """The cache sub-directory name of an image."""
    _parse_kernel(kernel)
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", kernel)
    return f"linux-{safe}-v{FORMAT_VERSION}"


def _debian_version_key(version: str) -> tuple[Any, ...]:
    """Sort key implementing Debian's version ordering (epoch:upstream-revision)."""

    def part_key(s: str) -> tuple[Any, ...]:
        # Alternating non-digit and digit parts; "~" sorts before everything,
        # even the end of the string, and letters sort before other symbols.
        out: list[Any] = []
        i = 0
        while i < len(s):
            j = i
            while j < len(s) and not s[j].isdigit():
                j += 1
            out.append((*(-1 if c == "~" else ord(c) if c.isalpha() else ord(c) + 256 for c in s[i:j]), 0))
            k = j
            while k < len(s) and s[k].isdigit():
                k += 1
            out.append(int(s[j:k] or "0"))
            i = k
        out += [(0,), 0]
        return tuple(out)

    epoch = 0
    if ":" in version:
        e, version = version.split(":", 1)
        epoch = int(e or "0")
    upstream, _, revision = version.rpartition("-")
    if not upstream:
        upstream, revision = revision, "0"
    return (epoch, part_key(upstream), part_key(revision))


def _mirrors() -> tuple[str, str]:
    """(Debian mirror, Debian security mirror) from the host's apt configuration."""
    env = os.environ.get("VUSB_DEBIAN_MIRROR")
    env_sec = os.environ.get("VUSB_DEBIAN_SECURITY_MIRROR")
    mirror: str | None = env
    security: str | None = env_sec
    entries: list[tuple[str, str]] = []  # (uri, suite)
    src_dir = Path("/etc/apt/sources.list.d")
    files = [Path("/etc/apt/sources.list")]
    if src_dir.is_dir():
        files += sorted(src_dir.iterdir())
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        entries.append((uri, suite))
        elif f.suffix == ".list" or f.name == "sources.list":
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    entries.append((line[1], line[2]))
    for uri, suite in entries:
        base = suite.split("-", 1)[0].split("/", 1)[0]
        if base not in _DEBIAN_CODENAMES or not uri.startswith(("http://", "https://")):
            continue
        if suite.endswith("-security") or "/updates" in suite:
            security = security or uri
        else:
            mirror = mirror or uri
    return (mirror or _DEFAULT_MIRROR).rstrip("/"), (security or _DEFAULT_SECURITY_MIRROR).rstrip("/")


class _Apt:
    """apt-get/apt-cache with private sources, lists and caches."""

    def __init__(self, tools: _HostTools, workdir: Path, suite: str, log: Callable[[str], None]):
        self.tools = tools
        self.log = log
        self.suite = suite
        self.workdir = workdir
        mirror, security = _mirrors()
        self.mirror = mirror
        lists = workdir / "lists"
        (lists / "partial").mkdir(parents=True)
        (workdir / "cache" / "archives" / "partial").mkdir(parents=True)
        sources = workdir / "sources.list"
        opts = f"[signed-by={_KEYRING}]"
        sources.write_text(
            f"deb {opts} {mirror} {suite} main\n"
            f"deb {opts} {security} {suite}-security main\n"
        )
        self.options = [
            "-o", f"Dir::Etc::sourcelist={sources}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={lists}",
            "-o", f"Dir::Cache={workdir / 'cache'}",
            "-o", "Dir::Cache::pkgcache=",
            "-o", "Dir::Cache::srcpkgcache=",
            "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "Debug::NoLocking=1",
            "-o", "Acquire::Retries=3",
        ]

    def _run(self, tool: str, args: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [tool, *self.options, *args]
        return subprocess.run(
            cmd, cwd=cwd, text=True, capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"},
            check=False,
        )

    def update(self) -> str:
        self.log(f"apt-get update ({self.suite} from {self.mirror})")
        r = self._run(self.tools.apt_get, ["-q", "update"])
        return r.stdout + r.stderr

    def candidates(self, package_re: str) -> list[tuple[str, str]]:
        """(package, version) pairs matching the regex, newest first."""
        names = self._run(self.tools.apt_cache, ["pkgnames", "linux-image-"]).stdout.split()
        wanted = sorted(n for n in names if re.match(package_re, n))
        if not wanted:
            return []
        show = self._run(self.tools.apt_cache, ["show", *wanted]).stdout
        pairs: set[tuple[str, str]] = set()
        for stanza in show.split("\n\n"):
            m_pkg = re.search(r"^Package: (\S+)", stanza, re.M)
            m_ver = re.search(r"^Version: (\S+)", stanza, re.M)
            if m_pkg and m_ver:
                pairs.add((m_pkg.group(1), m_ver.group(1)))
        return sorted(pairs, key=lambda p: _debian_version_key(p[1]), reverse=True)

    def download(self, package: str, version: str, dest: Path) -> Path:
        self.log(f"apt-get download {package}={version}")
        r = self._run(self.tools.apt_get, ["-q", "download", f"{package}={version}"], cwd=dest)
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if r.returncode != 0 or not debs:
            raise ImageBuildError(
                f"could not download {package} {version} from suite {self.suite} "
                f"({self.mirror}):\n{(r.stdout + r.stderr).strip()}"
            )
        return debs[0]


# ---------------------------------------------------------------------------
# cpio (newc) writer


class CpioWriter:
    """Write a cpio archive in the "newc" format the kernel unpacks.

    Entries are always owned by root; parent directories are added
    automatically.  Paths are given without a leading slash or with one.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._ino = 1000
        self._dirs: set[str] = {""}
        self._mtime = 0

    @staticmethod
    def _norm(path: str) -> str:
        return path.strip("/")

    def _header(self, name: str, mode: int, size: int, nlink: int = 1,
                rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, nlink, self._mtime, size, 0, 0, rdev[0], rdev[1],
                  len(encoded), 0]
        head = b"070701" + b"".join(b"%08X" % v for v in fields)
        self._out.write(head + encoded)
        self._pad(len(head) + len(encoded))

    def _pad(self, n: int) -> None:
        if n % 4:
            self._out.write(b"\0" * (4 - n % 4))

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            self.add_dir(parent)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        path = self._norm(path)
        if path in self._dirs:
            return
        self._parents(path)
        self._dirs.add(path)
        self._header(path, stat.S_IFDIR | mode, 0, nlink=2)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = self._norm(path)
        self._parents(path)
        self._header(path, stat.S_IFREG | mode, len(data))
        self._out.write(data)
        self._pad(len(data))

    def add_symlink(self, path: str, target: str) -> None:
        path = self._norm(path)
        self._parents(path)
        data = target.encode()
        self._header(path, stat.S_IFLNK | 0o777, len(data))
        self._out.write(data)
        self._pad(len(data))

    def add_chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        path = self._norm(path)
        self._parents(path)
        self._header(path, stat.S_IFCHR | mode, 0, rdev=(major, minor))

    def close(self) -> None:
        self._header("TRAILER!!!", 0, 0, nlink=1)


# ---------------------------------------------------------------------------
# Module selection


def _mod_name(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".xz", ".zst", ".gz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base.removesuffix(".ko").replace("-", "_")


def _read_modules_dep(moddir: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (relative path, [relative paths of dependencies])."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        table[_mod_name(path)] = (path.strip(), deps.split())
    return table


def _read_builtin(moddir: Path) -> set[str]:
    f = moddir / "modules.builtin"
    if not f.is_file():
        return set()
    return {_mod_name(line.strip()) for line in f.read_text().splitlines() if line.strip()}


def select_modules(moddir: Path) -> tuple[list[str], list[str], list[str]]:
    """Resolve :data:`MODULES` against a module tree that has a modules.dep.

    Returns (load order of relative paths, wanted names found as modules,
    wanted names that are built in).
    """
    table = _read_modules_dep(moddir)
    by_path = {path: deps for path, deps in table.values()}
    builtin = _read_builtin(moddir)
    order: list[str] = []
    seen: set[str] = set()
    found: list[str] = []
    builtins: list[str] = []
    missing: list[str] = []

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        # modules.dep lists dependencies so that the last one loads first.
        for dep in reversed(by_path.get(path, [])):
            visit(dep)
        order.append(path)

    for spec in MODULES:
        if spec.name in table:
            visit(table[spec.name][0])
            found.append(spec.name)
        elif spec.name in builtin:
            builtins.append(spec.name)
        elif spec.required:
            missing.append(spec.name)
    if missing:
        raise ImageBuildError(
            f"the kernel in {moddir} has neither a module nor built-in support for: "
            + ", ".join(missing)
        )
    return order, found, builtins


def _decompress_module(src: Path) -> bytes:
    name = src.name
    if name.endswith(".xz"):
        return lzma.decompress(src.read_bytes())
    if name.endswith(".gz"):
        return gzip.decompress(src.read_bytes())
    if name.endswith(".zst"):
        zstd = _which("zstd")
        if zstd is None:
            raise _missing("zstd (the kernel ships .ko.zst modules)", "zstd")
        return subprocess.run([zstd, "-dc", str(src)], capture_output=True, check=True).stdout
    return src.read_bytes()


def _strip_compression(path: str) -> str:
    for suffix in (".xz", ".zst", ".gz"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


# ---------------------------------------------------------------------------
# Host binaries


def _shared_libs(ldd: str, binary: Path) -> list[tuple[str, Path]]:
    """(path in the guest, host file) for each shared library of a binary."""
    r = subprocess.run([ldd, str(binary)], capture_output=True, text=True, check=False)
    libs: list[tuple[str, Path]] = []
    for line in r.stdout.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+) \(0x", line) or re.match(r"(/\S+) \(0x", line)
        if m:
            p = m.group(1)
            libs.append((p, Path(p).resolve()))
        elif "not found" in line:
            raise HarnessPrerequisiteError(f"{binary}: shared library {line} (ldd)")
    interp = _elf_interpreter(binary)
    if interp and interp not in {g for g, _ in libs}:
        libs.append((interp, Path(interp).resolve()))
    return libs


def _busybox_applets(busybox: Path) -> list[str]:
    r = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=False)
    applets = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    if not applets:
        raise HarnessPrerequisiteError(f"{busybox} --list-full printed no applets")
    return applets


# ---------------------------------------------------------------------------
# Kernel image


def _has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit ELF kernel has the Xen PVH entry note QEMU boots from."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff = int.from_bytes(elf[32:40], "little")
    phentsize = int.from_bytes(elf[54:56], "little")
    phnum = int.from_bytes(elf[56:58], "little")
    for i in range(phnum):
        ph = elf[phoff + i * phentsize : phoff + (i + 1) * phentsize]
        if int.from_bytes(ph[0:4], "little") != 4:  # PT_NOTE
            continue
        pos = int.from_bytes(ph[8:16], "little")
        end = pos + int.from_bytes(ph[32:40], "little")
        while pos + 12 <= end:
            namesz = int.from_bytes(elf[pos : pos + 4], "little")
            descsz = int.from_bytes(elf[pos + 4 : pos + 8], "little")
            ntype = int.from_bytes(elf[pos + 8 : pos + 12], "little")
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:  # XEN_ELFNOTE_PHYS32_ENTRY
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed ELF kernel inside an x86 bzImage, if it can boot via PVH.

    Handles xz and gzip payloads (Python's standard library); returns None
    for other compressions or kernels without a PVH entry point.
    """
    if bzimage[0x202:0x206] != b"HdrS" or int.from_bytes(bzimage[0x206:0x208], "little") < 0x208:
        return None
    setup_sects = bzimage[0x1F1] or 4
    start = (setup_sects + 1) * 512 + int.from_bytes(bzimage[0x248:0x24C], "little")
    payload = bzimage[start : start + int.from_bytes(bzimage[0x24C:0x250], "little")]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            out = zlib.decompressobj(wbits=31).decompress(payload)
        else:
            return None
    except (lzma.LZMAError, zlib.error):
        return None
    return out if _has_pvh_note(out) else None


# ---------------------------------------------------------------------------
# Build


def _build(kernel: str, dest: Path, tools: _HostTools, log: Callable[[str], None]) -> None:
    """Build an image for `kernel` into the (empty, existing) directory `dest`."""
    started = time.monotonic()
    series, exact = _parse_kernel(kernel)
    work = dest / "_work"
    work.mkdir()
    # vusb's own guest tools first: a missing compiler or C library fails before any download.
    (work / "tools").mkdir()
    guest_tools: dict[str, Path] = {}
    for guest_path, source_name in sorted(GUEST_TOOLS.items()):
        log(f"compiling {source_name}")
        guest_tools[guest_path] = work / "tools" / Path(guest_path).name
        compile_guest_tool(tools.cc, TOOLS_DIR / source_name, guest_tools[guest_path])
    apt = _Apt(tools, work / "apt", series.suite, log)
    update_output = apt.update()
    candidates = apt.candidates(series.package_re)
    if exact is not None:
        wanted = f"linux-image-{exact}-amd64-unsigned"
        candidates = [c for c in candidates if c[0] == wanted]
    if not candidates:
        what = f"linux-image-{exact}-amd64-unsigned" if exact else f"linux-image-{series.series}.*-amd64-unsigned"
        raise ImageBuildError(
            f"no package {what} found in Debian suite {series.suite} (mirror {apt.mirror}); "
            f"apt-get update said:\n{update_output.strip()}"
        )
    debs = work / "debs"
    debs.mkdir()
    errors: list[str] = []
    deb: Path | None = None
    package, version = candidates[0]
    for package, version in candidates[:3]:
        try:
            deb = apt.download(package, version, debs)
            break
        except ImageBuildError as e:
            errors.append(str(e))
    if deb is None:
        raise ImageBuildError("\n".join(errors))
    log(f"unpacking {deb.name}")
    root = work / "root"
    subprocess.run([tools.dpkg, "-x", str(deb), str(root)], check=True, capture_output=True)
    deb.unlink()

    module_bases = [p for p in (root / "lib" / "modules", root / "usr" / "lib" / "modules") if p.is_dir()]
    releases = [d for base in module_bases for d in base.iterdir() if d.is_dir()]
    if len(releases) != 1:
        raise ImageBuildError(f"{package}: expected one module directory, found {releases}")
    moddir = releases[0]
    release = moddir.name
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    if not vmlinuz.is_file():
        raise ImageBuildError(f"{package}: no boot/vmlinuz-{release}")
    log(f"depmod {release}")
    depmod_base = moddir.parent.parent.parent  # .../lib/modules/<release> -> base
    r = subprocess.run([tools.depmod, "-b", str(depmod_base), release],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ImageBuildError(f"depmod failed for {release}: {r.stderr.strip()}")
    load_order, found, builtins = select_modules(moddir)
    log(f"{len(found)} wanted modules ({len(load_order)} with dependencies), "
        f"{len(builtins)} built in")

    # Staging tree for the guest's /lib/modules (uncompressed, fresh depmod).
    stage = work / "stage"
    stage_mod = stage / "lib" / "modules" / release
    load_paths: list[str] = []
    for rel in load_order:
        out_rel = _strip_compression(rel)
        target = stage_mod / out_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_decompress_module(moddir / rel))
        load_paths.append(f"/lib/modules/{release}/{out_rel}")
    for extra in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (moddir / extra).is_file():
            text = (moddir / extra).read_bytes()
            if extra == "modules.order":
                text = re.sub(rb"\.ko\.(xz|zst|gz)\b", b".ko", text)
            (stage_mod / extra).write_bytes(text)
    r = subprocess.run([tools.depmod, "-b", str(stage), release],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ImageBuildError(f"depmod of the guest modules failed: {r.stderr.strip()}")

    log("writing initramfs")
    buf = io.BytesIO()
    cpio = CpioWriter(buf)
    for d in ("dev", "proc", "sys", "tmp", "run", "root", "mnt", "etc", "var",
              "bin", "sbin", "usr/bin", "usr/sbin", "lib", "lib64"):
        cpio.add_dir(d)
    cpio.add_dir("tmp", 0o1777)
    cpio.add_symlink("var/run", "../run")
    cpio.add_chardev("dev/console", 5, 1)
    cpio.add_chardev("dev/null", 1, 3, 0o666)
    cpio.add_chardev("dev/ttyS0", 4, 64)
    # busybox and its applets
    cpio.add_file("bin/busybox", tools.busybox.read_bytes(), 0o755)
    own = {"usr/sbin/usbip", "usr/sbin/usbipd", "usr/sbin/mkfs.fat", "usr/sbin/mkfs.vfat", "usr/sbin/mkfs.msdos",
           "sbin/mkfs.vfat", "init", *GUEST_TOOLS}
    for applet in _busybox_applets(tools.busybox):
        applet = applet.strip("/")
        if applet == "bin/busybox" or applet in own:
            continue
        depth = applet.count("/")
        cpio.add_symlink(applet, "../" * depth + "bin/busybox" if depth else "bin/busybox")
    cpio.add_symlink("init", "bin/busybox")
    # usbip and a FAT formatter, with their shared libraries
    binaries: list[tuple[str, Path]] = [("usr/sbin/usbip", tools.usbip)]
    if tools.usbipd is not None:
        binaries.append(("usr/sbin/usbipd", tools.usbipd))
    if tools.mkfs_fat is not None:
        binaries.append(("usr/sbin/mkfs.fat", tools.mkfs_fat))
    binaries.extend(sorted(tools.programs.items()))
    libs: dict[str, Path] = {}
    for guest_path, host_path in binaries:
        cpio.add_file(guest_path, host_path.read_bytes(), 0o755)
        for lib_guest, lib_host in _shared_libs(tools.ldd, host_path):
            libs[lib_guest] = lib_host
    for lib_guest, lib_host in sorted(libs.items()):
        cpio.add_file(lib_guest, lib_host.read_bytes(), 0o755)
    for guest_path, binary in sorted(guest_tools.items()):
        cpio.add_file(guest_path, binary.read_bytes(), 0o755)
    if tools.mkfs_fat is not None:
        cpio.add_symlink("usr/sbin/mkfs.vfat", "mkfs.fat")
        cpio.add_symlink("usr/sbin/mkfs.msdos", "mkfs.fat")
        # mkfs.fat converts labels with iconv (codepage 850): without these
        # glibc modules it falls back with a warning on stderr.
        for lib_guest, lib_host in libs.items():
            if os.path.basename(lib_guest).startswith("libc.so"):
                gconv = lib_host.parent / "gconv"
                for name in ("IBM850.so", "IBM437.so", "gconv-modules", "gconv-modules.cache"):
                    if (gconv / name).is_file():
                        cpio.add_file(str(gconv / name), (gconv / name).read_bytes(), 0o644)
                if (gconv / "gconv-modules.d").is_dir():
                    for conf in sorted((gconv / "gconv-modules.d").iterdir()):
                        if conf.is_file():
                            cpio.add_file(str(conf), conf.read_bytes())
    else:
        cpio.add_file("usr/sbin/mkfs.vfat", b'#!/bin/sh\nexec /bin/busybox mkdosfs "$@"\n', 0o755)
    for data_dir in GUEST_DATA_DIRS:
        host_dir = Path("/", data_dir)
        if host_dir.is_dir():
            for path in sorted(p for p in host_dir.rglob("*") if p.is_file()):
                cpio.add_file(str(path.relative_to("/")), path.read_bytes())
    for ids in (Path("/usr/share/misc/usb.ids"), Path("/usr/share/hwdata/usb.ids"),
                Path("/var/lib/usbutils/usb.ids")):
        if ids.is_file():
            cpio.add_file("usr/share/misc/usb.ids", ids.resolve().read_bytes())
            break
    # modules
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        cpio.add_file(str(path.relative_to(stage)), path.read_bytes())
    cpio.close()

    # Uncompressed: the guest would spend about a second gunzipping it under TCG.
    (dest / "initrd.cpio").write_bytes(buf.getvalue())
    shutil.copyfile(vmlinuz, dest / "vmlinuz")
    log("extracting vmlinux")
    elf = extract_vmlinux(vmlinuz.read_bytes())
    if elf is not None:
        (dest / "vmlinux").write_bytes(elf)
    shutil.rmtree(work)
    meta = {
        "format": FORMAT_VERSION,
        "kernel": kernel,
        "kernel_release": release,
        "package": package,
        "package_version": version,
        "suite": series.suite,
        "mirror": apt.mirror,
        "boots": "vmlinux (PVH)" if elf is not None else "vmlinuz",
        "modules": found + builtins,
        "builtin_modules": builtins,
        "load_paths": load_paths,
        "tools": sorted("/" + path for path in guest_tools),
        "programs": sorted("/" + path for path in tools.programs),
        "build_seconds": round(time.monotonic() - started, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (dest / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"built {package} {version} in {meta['build_seconds']} s")


def find_cached_image(kernel: str = DEFAULT_KERNEL, cache_dir: str | os.PathLike[str] | None = None) -> GuestImage | None:
    """The cached image for `kernel`, or None when it has not been built."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / image_key(kernel)
    try:
        return GuestImage.load(final)
    except (OSError, ValueError, KeyError):
        return None


def ensure_image(
    kernel: str = DEFAULT_KERNEL,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    rebuild: bool = False,
    log: Callable[[str], None] | None = None,
) -> GuestImage:
    """Return the cached image for `kernel`, building it first if needed.

    `kernel` is "5.10", "6.1" or "6.12" (the newest Debian package of that
    series is used), or an exact Debian ABI such as "6.1.0-50".  Blocking:
    a first build downloads about 60-110 MB and takes a minute or so.
    """
    _parse_kernel(kernel)
    emit = log or (lambda _msg: None)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = image_key(kernel)
    final = cache / key
    if not rebuild:
        image = find_cached_image(kernel, cache)
        if image is not None:
            return image
    tools = check_build_prerequisites()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".{key}.lock").open("a+") as lock:
        emit(f"waiting for the build lock of {key}")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not rebuild:
                image = find_cached_image(kernel, cache)
                if image is not None:  # built by another process meanwhile
                    return image
            for stale in cache.glob(f".tmp-{key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache))
            try:
                _build(kernel, tmp, tools, emit)
                os.chmod(tmp, 0o755)
                if final.exists():
                    old = cache / f".tmp-{key}-old"
                    shutil.rmtree(old, ignore_errors=True)
                    os.rename(final, old)
                    os.rename(tmp, final)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return GuestImage.load(final)


def iter_cached_images(cache_dir: str | os.PathLike[str] | None = None) -> Iterable[GuestImage]:
    """Every valid image in the cache directory."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not cache.is_dir():
        return
    for d in sorted(cache.iterdir()):
        if d.name.startswith("linux-"):
            try:
                yield GuestImage.load(d)
            except (OSError, ValueError, KeyError):
                continue
