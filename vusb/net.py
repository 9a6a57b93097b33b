"""TCP ports and addresses: checked where they are given, and errors that say what to do.

Every command line option and every API argument that names a TCP port goes through
:func:`check_port`, so ``--port 70000`` is refused with the value it got instead of
being wrapped modulo 65536 by the event loop.  :func:`connect_error` and
:func:`listen_error` turn the operating system's socket errors into messages that name
the address and suggest the fix.
"""

from __future__ import annotations

import errno

from vusb.errors import AddressInUse, NetworkError, NothingListening, UsageError

MAX_PORT = 65535


def check_port(value: object, what: str = "port") -> int:
    """``value`` as a TCP port number, or :class:`UsageError` naming it.

    0 is allowed (a server then takes a free port); ``bool`` is refused although it is an
    ``int`` in Python, since ``port=True`` is always a mistake.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} {value!r} is not a whole number (a TCP port is 0..{MAX_PORT})")
    if not 0 <= value <= MAX_PORT:
        raise UsageError(f"{what} {value} is outside 0..{MAX_PORT}")
    return value


def parse_port(text: str) -> int:
    """An argparse ``type=`` for ``--port``: a port number, or an error naming the text."""
    import argparse

    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a whole number (a TCP port is 0..{MAX_PORT})") from None
    try:
        return check_port(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_error(exc: OSError, host: str, port: int) -> NetworkError:
    """The error to raise when connecting to a USB/IP server at ``host:port`` failed with ``exc``."""
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return NothingListening(f"nothing answers on {host_port(host, port)} — is `vusb serve` running there?",
                                exc.errno)
    return NetworkError(f"cannot connect to {host_port(host, port)}: {exc.strerror or exc}", exc.errno)


def listen_error(exc: OSError, host: str, port: int) -> NetworkError:
    """The error to raise when listening on ``host:port`` failed with ``exc``."""
    if exc.errno == errno.EADDRINUSE:
        return AddressInUse(
            f"port {port} on {host} is already in use (another `vusb serve`, or usbipd?); "
            "choose another with --port (port= in Python), or --port 0 for any free port", exc.errno)
    if exc.errno == errno.EACCES:
        return NetworkError(f"cannot listen on {host_port(host, port)}: permission denied "
                            "(ports below 1024 need root); choose another with --port", exc.errno)
    if exc.errno == errno.EADDRNOTAVAIL:
        return NetworkError(f"cannot listen on {host_port(host, port)}: {host} is not an address of this machine",
                            exc.errno)
    return NetworkError(f"cannot listen on {host_port(host, port)}: {exc.strerror or exc}", exc.errno)
