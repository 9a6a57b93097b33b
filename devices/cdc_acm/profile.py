"""The ``cdc-acm`` function kind of YAML profiles.

::

    functions:
      - kind: cdc-acm
        backend: pty            # loopback (default), pty, tcp or none
        pty_link: /tmp/vusb-tty # pty only: a fixed name for the pseudo-terminal
      - kind: cdc-acm
        backend: tcp
        tcp_host: 127.0.0.1
        tcp_port: 4000
        tcp_listen: false       # true: wait for a client instead of connecting
"""

from __future__ import annotations

from vusb.devices.cdc_acm.backends import (
    AnswerBackend,
    AnswerRuleError,
    LoopbackBackend,
    NullBackend,
    PtyBackend,
    SerialBackend,
    TcpBackend,
    compile_answer,
    compile_unmatched,
)
from vusb.devices.cdc_acm.function import DEFAULT_BUFFER_SIZE, CdcAcmFunction
from vusb.devices.cdc_acm.spec import AcmProtocol

from vusb.device import Function
from vusb.profile import Field, Located, ProfileContext, read_mapping
from vusb.registry import register_kind

BACKENDS = ("loopback", "pty", "tcp", "answers", "none")

BACKEND_FIELDS: tuple[str, ...] = ("backend", "pty_link", "tcp_host", "tcp_port", "tcp_listen", "buffer_size",
                                   "answers", "unmatched", "echo")
"""The fields that choose a serial backend (every serial kind takes them)."""

FIELDS: dict[str, Field] = {
    "backend": Field("choice", False, "loopback", choices=BACKENDS,
                     help="loopback: echo; pty: a pseudo-terminal on the server; tcp: a TCP bridge; "
                          "none: nothing reads (the host's writes wait once the buffer is full)"),
    "pty_link": Field("str", False, None, help="pty: make this symbolic link to the pseudo-terminal"),
    "tcp_host": Field("str", False, None, help="tcp: address to connect to (or listen on); default 127.0.0.1"),
    "tcp_port": Field("int", False, None, 0, 0xFFFF, help="tcp: port to connect to (or listen on; 0: any)"),
    "tcp_listen": Field("bool", False, None, help="tcp: listen for one client instead of connecting"),
    "protocol": Field("int", False, int(AcmProtocol.AT_V250), 0, 0xFF,
                      help="bInterfaceProtocol of the communications interface (1: AT commands, 0: none)"),
    "buffer_size": Field("int", False, DEFAULT_BUFFER_SIZE, 64, 1 << 30,
                         help="bytes buffered in each direction before the sender waits"),
    "interface_name": Field("str", False, None, help="iInterface string of the communications interface"),
    "answers": Field("list", False, None, help="answers: each {match: regex, reply: text} for a whole line"),
    "unmatched": Field("str", False, None, help="answers: reply to a line that matches no rule"),
    "echo": Field("bool", False, None, help="answers: echo the host's bytes first, like a modem"),
}

ANSWER_FIELDS: dict[str, Field] = {
    "match": Field("str", True, help="regular expression matched against the whole line (without CR/LF)"),
    "reply": Field("str", True, help="text sent back; \\1 and \\g<name> insert groups"),
}


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    backend = backend_from_options(ctx, o)
    return CdcAcmFunction(backend, protocol=o["protocol"].value, buffer_size=o["buffer_size"].value,
                          interface_name=o["interface_name"].value)


def backend_from_options(ctx: ProfileContext, o: dict[str, Located]) -> SerialBackend:
    """The backend the options of :data:`BACKEND_FIELDS` describe (shared with the USB-serial chip kinds)."""
    kind = o["backend"].value
    owners = {"answers": "answers", "unmatched": "answers", "echo": "answers"}
    given = {name for name, loc in o.items()
             if loc.value is not None and (name.startswith(("tcp_", "pty_")) or name in owners)}
    for name in sorted(given):
        wanted = owners.get(name) or ("tcp" if name.startswith("tcp_") else "pty")
        if kind != wanted:
            loc = o[name]
            raise ctx.error(loc.node, loc.path, f"{name} only applies to backend: {wanted} (this port uses {kind})")
    backend: SerialBackend
    if kind == "loopback":
        backend = LoopbackBackend()
    elif kind == "none":
        backend = NullBackend()
    elif kind == "answers":
        backend = _answers(ctx, o)
    elif kind == "pty":
        link = o["pty_link"].value
        path = ctx.resolve(link, o["pty_link"], follow_final=False) if link is not None else None
        # a check makes no pseudo-terminal and no link: the path is checked, the port stays unconnected
        backend = NullBackend() if ctx.dry_run else PtyBackend(path)
    else:
        listen = bool(o["tcp_listen"].value)
        port = o["tcp_port"].value
        if port is None:
            raise ctx.error(o["backend"].node, o["tcp_port"].path, "backend: tcp needs tcp_port")
        if port == 0 and not listen:
            loc = o["tcp_port"]
            raise ctx.error(loc.node, loc.path, "port 0 only makes sense with tcp_listen: true")
        backend = TcpBackend(o["tcp_host"].value or "127.0.0.1", port, listen=listen)
    return backend


def _answers(ctx: ProfileContext, o: dict[str, Located]) -> SerialBackend:
    loc = o["answers"]
    if loc.value is None:
        raise ctx.error(o["backend"].node, loc.path, "backend: answers needs an answers list of {match, reply}")
    rules = []
    for i, item in enumerate(loc.value.value):
        rule = read_mapping(ctx, item, f"{loc.path}[{i}]", ANSWER_FIELDS)
        pattern, reply = rule["match"].value, rule["reply"].value
        try:
            compile_answer(pattern, reply)  # as the backend will: bytes, one per character
        except AnswerRuleError as exc:
            raise ctx.error(rule[exc.part].node, rule[exc.part].path, exc.reason) from None
        rules.append((pattern, reply))
    try:
        compile_unmatched(o["unmatched"].value)
    except AnswerRuleError as exc:
        raise ctx.error(o["unmatched"].node, o["unmatched"].path, exc.reason) from None
    return AnswerBackend(rules, unmatched=o["unmatched"].value, echo=bool(o["echo"].value))


def register_profile_kinds() -> None:
    """Make ``kind: cdc-acm`` available to profiles."""
    register_kind("cdc-acm", FIELDS, build, "USB serial port (CDC ACM): loopback, pty or TCP bridge")
