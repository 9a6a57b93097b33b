"""USB printer class (Printing Devices 1.1): a printer that saves each job as a file.

Linux binds ``usblp`` to it (``/dev/usb/lp0``), CUPS' usb backend drives it through libusb.
The interface is class 7, subclass 1, protocol 2 (bidirectional: bulk OUT for print data,
bulk IN for the printer's answers) or 1 (bulk OUT only). See docs/devices/printer.md.

::

    printer = Printer(job_folder="print-jobs", on_job=print)
    job = await printer.next_job()
    printer.set_status(paper_out=True)
"""

from vusb.devices.printer.function import (
    DEFAULT_DEVICE_ID,
    DEFAULT_JOB_FOLDER,
    DEFAULT_JOB_TIMEOUT,
    JobFolder,
    JobFolderError,
    Printer,
    PrinterFunction,
    PrintJob,
)
from vusb.devices.printer.spec import (
    PortStatus,
    PrinterProtocol,
    PrinterRequest,
    build_device_id,
    encode_device_id,
    parse_device_id,
)


def register_profile_kinds() -> None:
    """Make ``kind: printer`` available to profiles."""
    from vusb.devices.printer.profile import register_profile_kinds as register

    register()


__all__ = [
    "DEFAULT_DEVICE_ID", "DEFAULT_JOB_FOLDER", "DEFAULT_JOB_TIMEOUT", "JobFolder", "JobFolderError", "PortStatus",
    "PrintJob", "Printer", "PrinterFunction", "PrinterProtocol", "PrinterRequest", "build_device_id",
    "encode_device_id", "parse_device_id", "register_profile_kinds",
]
