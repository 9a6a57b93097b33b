"""The ``printer`` function kind of YAML profiles.

::

    functions:
      - kind: printer
        device_id: "MFG:ACME;MDL:LaserJet 9;CMD:PJL,PCL;CLS:PRINTER;"
        job_folder: jobs          # relative to the profile's folder; default ./print-jobs/ of the server
        job_timeout: 2            # seconds without data that end a job
        paper_out: false
"""

from __future__ import annotations

from pathlib import Path

from vusb.devices.printer.function import (
    DEFAULT_JOB_FOLDER,
    DEFAULT_JOB_TIMEOUT,
    JobFolder,
    JobFolderError,
    PrinterFunction,
)
from vusb.devices.printer.spec import DeviceIdError, PrinterProtocol, encode_device_id

from vusb.device import Function
from vusb.profile import Field, Located, ProfileContext, register_kind

FIELDS: dict[str, Field] = {
    "device_id": Field("str", help="IEEE 1284 device ID, 'KEY:value;' fields (default MFG:vusb;MDL:Virtual Printer;...)"),
    "job_folder": Field("str", help="folder each job is saved in as job-NNNN.prn; relative to the profile's folder "
                                    "(default: print-jobs in the server's working directory)"),
    "job_timeout": Field("float", False, DEFAULT_JOB_TIMEOUT, low=0, low_open=True,
                         help="seconds without data after which a job ends (default 2)"),
    "protocol": Field("choice", False, "bidirectional", choices=("bidirectional", "unidirectional"),
                      help="bidirectional (protocol 2: bulk OUT and IN) or unidirectional (protocol 1: OUT only)"),
    "paper_out": Field("bool", False, False, help="start out of paper"),
    "selected": Field("bool", False, True, help="start on line (default true)"),
    "error": Field("bool", False, False, help="start in error"),
    "interface_name": Field("str", help="iInterface string"),
}


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    text = o["device_id"].value
    if text is not None:
        try:
            encode_device_id(text)
        except DeviceIdError as exc:
            raise ctx.error(o["device_id"].node, o["device_id"].path, str(exc)) from None
    folder_loc = o["job_folder"]
    folder = ctx.resolve(folder_loc.value, folder_loc) if folder_loc.value is not None else Path(DEFAULT_JOB_FOLDER)
    protocol = PrinterProtocol.BIDIRECTIONAL if o["protocol"].value == "bidirectional" \
        else PrinterProtocol.UNIDIRECTIONAL
    try:
        return PrinterFunction(device_id=text, job_folder=JobFolder(folder, write_probe=not ctx.dry_run), job_timeout=o["job_timeout"].value,
                               protocol=protocol, paper_out=o["paper_out"].value, selected=o["selected"].value,
                               error=o["error"].value, interface_name=o["interface_name"].value)
    except JobFolderError as exc:
        raise ctx.error(folder_loc.node, folder_loc.path or "job_folder", str(exc)) from None


def register_profile_kinds() -> None:
    """Make ``kind: printer`` available to profiles."""
    register_kind("printer", FIELDS, build, "USB printer (usblp): saves each job as a file in a job folder")
