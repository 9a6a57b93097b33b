"""Run the host's own programs inside a guest: its root, shared read-only over virtio-9p.

A guest started with :data:`HOST_ROOT_QEMU_ARGS` sees the host's ``/`` as the 9p share
``hostroot``. :func:`mount_host_root` mounts it at ``/host`` in the guest, binds the
guest's ``/dev``, ``/proc`` and ``/sys`` into it and puts a tmpfs on its ``/run``;
:func:`run_on_host_root` then ``chroot``\\ s there to run a host command, so the
host's Python (``sys.executable``), its packages (vusb itself, installed editable or not)
and its shared libraries (libusb) run against the *guest's* kernel, devices and network,
without copying anything into the image::

    guest = await Guest.start("6.1", qemu_args=[*HOST_ROOT_QEMU_ARGS, ...])
    result = await run_on_host_root(guest, host_python("-c", "import vusb; print(vusb.__file__)"))

Needs the 9p modules in the guest image (format 5 and later). The share is read-only,
and the host's ``/tmp`` stays visible (a checkout or virtual environment there keeps
working); :data:`HOST_SCRATCH` (``/run/scratch``) is the writable place inside, the
guest's own tmpfs, seen from the guest as ``/host/run/scratch``. Programs get it as
``HOME`` and ``TMPDIR``.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence

from .results import CommandResult
from .target import BackgroundJob, UsbTarget

__all__ = [
    "HOST_ROOT",
    "HOST_ROOT_QEMU_ARGS",
    "HOST_SCRATCH",
    "host_python",
    "host_root_command",
    "mount_host_root",
    "run_on_host_root",
    "start_on_host_root",
]

#: Where the host's root is mounted in the guest.
HOST_ROOT = "/host"

#: The writable folder inside the host's root (a tmpfs of the guest's), as a chrooted program sees it.
HOST_SCRATCH = "/run/scratch"

#: QEMU arguments that share the host's root read-only with the guest (mount tag ``hostroot``).
HOST_ROOT_QEMU_ARGS: tuple[str, ...] = (
    "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on",
    "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
)

_MOUNT = f"""
set -e
r={HOST_ROOT}
if ! grep -q " $r 9p " /proc/mounts; then
  mkdir -p $r
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot $r
  for d in dev proc sys; do mount --bind /$d $r/$d; done
  mount -t tmpfs tmpfs $r/run
  mkdir -p $r{HOST_SCRATCH}
fi
"""


def host_python(*args: str) -> list[str]:
    """The host's Python interpreter (the one running this code) with `args`."""
    return [sys.executable, *args]


async def mount_host_root(target: UsbTarget) -> str:
    """Mount the host's root in the guest (once; later calls do nothing); return where."""
    await target.run(_MOUNT, timeout=60, check=True)
    return HOST_ROOT


def host_root_command(argv: Sequence[str], env: Mapping[str, str] | None = None,
                      cwd: str | None = None) -> str:
    """The guest shell command that runs `argv` chrooted in the host's root.

    The environment is cleared but for PATH, HOME and TMPDIR (both :data:`HOST_SCRATCH`),
    PYTHONDONTWRITEBYTECODE=1 (the share is read-only), the host's VIRTUAL_ENV if set,
    and `env`. `cwd` defaults to
    the host's current directory.
    """
    variables = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
                 "HOME": HOST_SCRATCH, "TMPDIR": HOST_SCRATCH, "PYTHONDONTWRITEBYTECODE": "1",
                 "LANG": "C.UTF-8"}
    if "VIRTUAL_ENV" in os.environ:
        variables["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    variables.update(env or {})
    # A folder the guest cannot see (under the host's /run, hidden by the guest's tmpfs) falls back to /.
    inner = f"cd {shlex.quote(cwd or os.getcwd())} 2>/dev/null || cd /; exec " + shlex.join(argv)
    return (f"exec chroot {HOST_ROOT} /usr/bin/env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in variables.items())
            + " /bin/sh -c " + shlex.quote(inner))


async def run_on_host_root(target: UsbTarget, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                           cwd: str | None = None, timeout: float | None = 120.0,
                           input: bytes | str | None = None, check: bool = False) -> CommandResult:
    """Run a host program (`argv`) in the guest, chrooted in the host's root.

    The host root is mounted first if needed. See :func:`host_root_command` for the
    environment; the other arguments are :meth:`UsbTarget.run`'s.
    """
    await mount_host_root(target)
    return await target.run(host_root_command(argv, env, cwd), timeout=timeout, input=input, check=check)


async def start_on_host_root(target: UsbTarget, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                             cwd: str | None = None) -> BackgroundJob:
    """Start a host program in the guest in the background (e.g. ``vusb proxy``)."""
    await mount_host_root(target)
    return await target.start_background(host_root_command(argv, env, cwd))
