"""Every shell command and Python example of README.md and docs/quickstart.md, run as written.

A new user copies these blocks first; they must work exactly as printed. Each block is
either run by a test below (``RUN``: the test's name) or listed in ``NOT_RUN`` with the
reason; ``test_every_block_is_run_or_listed_with_why`` fails on a block that is neither,
so no example is skipped silently.

How they run:

- From a copy of the checkout ("a clone"), in a fresh virtual environment into which the
  documented ``python3 -m pip install .`` installs vusb as a wheel, as a user installs it.
- Each test gets a private network namespace (``unshare -n``; the tests run as root, as CI
  does), so the documented default port 3240 is free however many servers run elsewhere;
  ``vusb serve``'s control socket goes to a private ``$XDG_RUNTIME_DIR``.
- Where the docs need a Linux client, ``vusb host`` plays it (the quickstart says so).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", "docs/quickstart.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    page: str
    lang: str
    text: str
    output: str | None  # the plain ``` block after it in its section, if any: what the docs say it prints

    @property
    def key(self) -> tuple[str, str]:
        return self.page, self.text.splitlines()[0].strip()


def blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text(encoding="utf-8")
    found = list(FENCE.finditer(text))
    out = []
    for i, match in enumerate(found):
        nxt = found[i + 1] if i + 1 < len(found) else None
        # the documented output: a plain block right after, or after a paragraph, in the same section
        follows = nxt is not None and nxt.group(1) == "" and "\n#" not in text[match.end():nxt.start()]
        out.append(Block(page, match.group(1), match.group(2),
                         nxt.group(2) if nxt is not None and follows else None))
    return out


def block(page: str, first_line: str) -> Block:
    return next(b for b in blocks(page) if b.key == (page, first_line))


# ------------------------------------------------------------------------------------ the inventory
# blocks named by their first line
QUICKSTART_INSTALL = "python3 -m pip install .            # from a clone (or pip install vusb-*.whl); Python 3.11+"
QUICKSTART_ECHO = ("from vusb import (BuildContext, Device, Direction, Function, InterfaceDescriptor, Recipient, "
                   "RequestType,")
QUICKSTART_ECHO_TEST = "from collections.abc import Callable"
QUICKSTART_MODES = '"""A device with two configurations, and its test."""'
RUN = {
    ("README.md", "python3 -m pip install . && vusb serve keyboard mouse"):
        "test_readme_install_and_serve",
    ("README.md", "import asyncio"): "test_readme_python_example",
    ("docs/quickstart.md", QUICKSTART_INSTALL):
        "test_quickstart_install_and_serve",
    ("docs/quickstart.md", "vusb list 127.0.0.1               # OP_REQ_DEVLIST"):
        "test_quickstart_look_at_a_served_device",
    ("docs/quickstart.md", "import asyncio"): "test_quickstart_python_example_and_vusb_host",
    ("docs/quickstart.md", "vusb host 127.0.0.1 1-1 --seconds 3"): "test_quickstart_python_example_and_vusb_host",
    ("docs/quickstart.md", QUICKSTART_ECHO): "test_quickstart_tests_pass_under_plain_pytest",
    ("docs/quickstart.md", QUICKSTART_ECHO_TEST): "test_quickstart_tests_pass_under_plain_pytest",
    ("docs/quickstart.md", QUICKSTART_MODES): "test_quickstart_tests_pass_under_plain_pytest",
}
NOT_RUN = {
    ("README.md", "bash .ci/install-deps.sh && python3 -m pip install -e '.[test]' && python3 -m pytest"):
        "installs system packages and runs this whole test suite; .ci/run runs exactly this line",
    ("docs/quickstart.md", "usbip list -r 127.0.0.1          # what the server exports"):
        "needs Linux's usbip tools and vhci-hcd on the machine; tests/kernel/ attach served devices "
        "to real kernels through the QEMU harness instead",
}


def test_every_block_is_run_or_listed_with_why() -> None:
    keys = [b.key for page in PAGES for b in blocks(page) if b.lang in ("sh", "python")]
    unaccounted = [k for k in keys if k not in RUN and k not in NOT_RUN]
    assert not unaccounted, f"blocks neither run nor listed in NOT_RUN with a reason: {unaccounted}"
    stale = [k for k in [*RUN, *NOT_RUN] if k not in keys]
    assert not stale, f"RUN/NOT_RUN name blocks that are no longer in the docs: {stale}"
    assert not set(RUN) & set(NOT_RUN)
    missing = {name for name in RUN.values() if not callable(globals().get(name))}
    assert not missing, f"RUN names tests that do not exist: {missing}"


# ------------------------------------------------------------------------------------ the machinery
class Namespace:
    """A private network namespace (loopback only) that commands run in."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"], stdin=subprocess.DEVNULL)
        self.prefix = ["nsenter", "-t", str(self.holder.pid), "-n"]
        deadline = time.monotonic() + 30
        while not _own_namespace(self.holder.pid):  # until unshare has made the namespace and exec'd sleep in it
            if self.holder.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("cannot make a network namespace: `unshare -n` needs root")
            time.sleep(0.02)
        # only now: before, nsenter would have entered this machine's own namespace
        subprocess.run([*self.prefix, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def _own_namespace(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:
        return False


class Background:
    """A process left running (a server, an example waiting for its host); its output is read all along."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        for pipe, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(pipe, into), daemon=True).start()

    def _read(self, pipe: object, into: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            with self.changed:
                into.append(line)
                self.changed.notify_all()

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while text not in self.stdout:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{text!r} never printed (exit {self.proc.poll()}):\n"
                                         f"{self.stdout}\n{self.stderr}")
                self.changed.wait(0.2)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a user presses it: SIGINT to the process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            time.sleep(0.1)  # the reader threads catch up with the last lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class Installed:
    """A clone of the checkout and a virtual environment where README's line installed vusb."""

    clone: Path
    venv: Path
    runtime: Path  # $XDG_RUNTIME_DIR of the servers (their control sockets)
    install_and_serve: subprocess.CompletedProcess[str] | None = None
    banner: str = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(PATH=f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", XDG_RUNTIME_DIR=str(self.runtime),
                   VIRTUAL_ENV=str(self.venv), PYTHONUNBUFFERED="1")
        return env

    def start(self, ns: Namespace, argv: Sequence[str], cwd: Path | None = None) -> Background:
        return Background([*ns.prefix, *argv], cwd=cwd or self.clone, env=self.env())

    def run(self, ns: Namespace, argv: Sequence[str], cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ns.prefix, *argv], cwd=cwd or self.clone, env=self.env(), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _copy_checkout(to: Path) -> None:
    """The files of the work tree that git does not ignore, as they are now: what a clone would hold."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)


@pytest.fixture
def ns() -> Iterator[Namespace]:
    namespace = Namespace()
    yield namespace
    namespace.close()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """README's first command, as written: install from the clone, serve, stop with Ctrl-C."""
    base = tmp_path_factory.mktemp("newuser")
    clone = base / "vusb"
    _copy_checkout(clone)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    runtime = base / "runtime"
    runtime.mkdir(mode=0o700)
    inst = Installed(clone, venv, runtime)
    line = block("README.md", "python3 -m pip install . && vusb serve keyboard mouse")
    namespace = Namespace()
    server = inst.start(namespace, ["bash", "-c", line.text])  # a user's shell; Ctrl-C reaches vusb serve
    try:
        server.wait_for("(vusb ctl --socket", 300)  # the banner's last line; pip takes a while first
        inst.banner = server.stdout
        status = server.interrupt()
        inst.install_and_serve = subprocess.CompletedProcess(line.text, status, server.stdout, server.stderr)
    finally:
        server.kill()
        namespace.close()
    yield inst


def assert_lines_in_order(actual: str, expected: Sequence[str]) -> None:
    lines = actual.splitlines()
    at = 0
    for want in expected:
        for i in range(at, len(lines)):
            if lines[i].rstrip() == want.rstrip():
                at = i + 1
                break
        else:
            raise AssertionError(f"{want!r} not printed (in order):\n{actual}")


def documented_lines(output: str | None) -> list[str]:
    """The lines of a documented output block that must appear as printed ("..." and timings vary)."""
    assert output is not None, "the block has no documented output after it"
    keep = []
    for line in output.splitlines():
        if line.strip() in ("...", "") or re.match(r"\s+\+\s*[\d.]+ s ", line):
            continue
        keep.append(line)
    return keep


# ------------------------------------------------------------------------------------ README.md
def test_readme_install_and_serve(installed: Installed) -> None:
    result = installed.install_and_serve
    assert result is not None
    assert "vusb: serving 2 device(s) on 127.0.0.1:3240" in result.stdout
    assert "      attach: usbip attach -r 127.0.0.1 -b 1-1" in result.stdout  # README: "for example"
    assert "  (a QEMU guest with user networking reaches this server as 10.0.2.2)" in result.stdout
    # "Ctrl-C stops the server cleanly"
    assert result.returncode == 0 and "vusb: shutting down" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr


def test_readme_python_example(installed: Installed, ns: Namespace, tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(block("README.md", "import asyncio").text)
    running = installed.start(ns, ["python3", str(example)])
    try:
        running.wait_for("waiting for a host to configure it (Ctrl-C stops)...", 120)
        assert running.stdout.splitlines()[:2] == [
            "serving 1209:0001 Virtual Keyboard as 1-1",
            "attach it: usbip attach -r 127.0.0.1 -b 1-1   (or: vusb host 127.0.0.1 1-1)"]
        host = installed.run(ns, ["vusb", "host", "127.0.0.1", "1-1"])  # as the README says, no kernel needed
        assert host.returncode == 0, host.stderr
        assert host.stdout.splitlines()[-1] == "typed: 'Hello, World!\\n'", host.stdout
        running.wait_for("typed; serving until Ctrl-C", 60)
        assert running.interrupt() == 0, running.stderr
        assert running.stdout.splitlines()[-1] == "stopped" and "Traceback" not in running.stderr
    finally:
        running.kill()


# ------------------------------------------------------------------------------------ docs/quickstart.md
def test_quickstart_install_and_serve(installed: Installed, ns: Namespace) -> None:
    commands = block("docs/quickstart.md", QUICKSTART_INSTALL)
    server = installed.start(ns, ["bash", "-ec", commands.text])
    try:
        server.wait_for("(vusb ctl --socket", 300)
        printed = server.stdout.replace(str(installed.runtime), "/run/user/1000")
        assert_lines_in_order(printed, documented_lines(commands.output))
        assert server.interrupt() == 0, server.stderr
    finally:
        server.kill()


def test_quickstart_look_at_a_served_device(installed: Installed, ns: Namespace) -> None:
    server = installed.start(ns, ["vusb", "serve", "profiles/keyboard.yaml", "profiles/mouse.yaml"])
    try:
        server.wait_for("(vusb ctl --socket", 120)  # generous: the machine may be busy
        commands = block("docs/quickstart.md", "vusb list 127.0.0.1               # OP_REQ_DEVLIST")
        result = installed.run(ns, ["sh", "-ec", commands.text])
        assert result.returncode == 0, result.stdout + result.stderr
        for expected in ["1-1: 1209:0001 full speed, 1 configuration(s), 1 interface(s)",
                         "    interface 0:  03/01/01 Human Interface Device / Boot Interface Subclass / Keyboard",
                         "1-2: 1209:0002 full speed, 1 configuration(s), 1 interface(s)",
                         "Bus 1-1: ID 1209:0001 Virtual Keyboard", "Device Status:     0x0000",
                         "ok: keyboard (Virtual Keyboard)", "ok: mouse (Virtual Mouse)"]:
            assert expected in result.stdout.splitlines(), f"{expected!r} missing:\n{result.stdout}"
        assert server.interrupt() == 0
    finally:
        server.kill()


def test_quickstart_python_example_and_vusb_host(installed: Installed, ns: Namespace, tmp_path: Path) -> None:
    example = block("docs/quickstart.md", "import asyncio")
    (tmp_path / "example.py").write_text(example.text)
    running = installed.start(ns, ["python3", str(tmp_path / "example.py")])
    try:
        running.wait_for("waiting for a host to configure the keyboard (Ctrl-C stops)...", 120)
        assert running.stdout.splitlines() == documented_lines(example.output)
        host = block("docs/quickstart.md", "vusb host 127.0.0.1 1-1 --seconds 3")
        result = installed.run(ns, ["sh", "-ec", host.text])
        assert result.returncode == 0, result.stderr
        expected = documented_lines(host.output)
        summary = expected.pop(-2)  # "28 report(s) in 3.0 s": the time is what this run took
        assert_lines_in_order(result.stdout, expected)
        assert re.search(summary.replace("3.0", r"3\.\d").replace("(", r"\(").replace(")", r"\)"), result.stdout)
        running.wait_for("waiting for a host to configure the mouse...", 60)
        mouse = installed.run(ns, ["vusb", "host", "127.0.0.1", "1-2", "--count", "3"])
        assert "mouse: buttons none, x +40, y -10" in mouse.stdout, mouse.stdout + mouse.stderr
        running.wait_for("moved and clicked; serving until Ctrl-C", 60)
        assert running.interrupt() == 0, running.stderr  # "Ctrl-C stops the example cleanly"
        assert running.stdout.splitlines()[-1] == "stopped" and "Traceback" not in running.stderr
    finally:
        running.kill()


def test_quickstart_tests_pass_under_plain_pytest(installed: Installed, ns: Namespace, tmp_path: Path) -> None:
    """A fresh project: no pytest.ini, no pyproject.toml, no conftest.py; just the files the page shows."""
    project = tmp_path / "project"
    project.mkdir()
    echo = block("docs/quickstart.md", QUICKSTART_ECHO)
    test = block("docs/quickstart.md", QUICKSTART_ECHO_TEST)
    (project / "test_echo.py").write_text(echo.text + "\n\n" + test.text)  # "beside the Echo device above"
    modes = block("docs/quickstart.md", QUICKSTART_MODES)
    (project / "test_echo_modes.py").write_text(modes.text)
    result = installed.run(ns, ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout
