"""The guest command vusb.harness.hostroot builds: a chroot into the shared host root, with a
clean environment and every argument quoted (the guest runs it with sh)."""

from __future__ import annotations

import shlex
import sys

from vusb.harness import HOST_ROOT_QEMU_ARGS, host_python
from vusb.harness.hostroot import HOST_ROOT, host_root_command


def test_the_command_chroots_with_a_clean_environment_and_quotes_every_argument() -> None:
    command = host_root_command(["echo", "two words", "$HOME;rm"], env={"A": "b c"}, cwd="/some dir")
    words = shlex.split(command)
    assert words[:5] == ["exec", "chroot", HOST_ROOT, "/usr/bin/env", "-i"]
    assert {"HOME=/run/scratch", "TMPDIR=/run/scratch", "PYTHONDONTWRITEBYTECODE=1", "A=b c"} <= set(words)
    inner = shlex.split(words[-1])  # what sh -c runs inside the chroot
    assert words[-3:-1] == ["/bin/sh", "-c"]
    assert inner[:2] == ["cd", "/some dir"]
    assert inner[-4:] == ["exec", "echo", "two words", "$HOME;rm"]


def test_host_python_is_the_running_interpreter() -> None:
    assert host_python("-m", "vusb") == [sys.executable, "-m", "vusb"]


def test_the_share_is_read_only() -> None:
    assert any("readonly=on" in arg and "path=/," in arg for arg in HOST_ROOT_QEMU_ARGS)
