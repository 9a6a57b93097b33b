"""USB printer: descriptors, class requests, jobs saved whole, port status, the job folder and the profile."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from vusb.devices import KeyboardFunction
from vusb.devices.printer import (
    JobFolderError,
    PortStatus,
    Printer,
    PrinterFunction,
    PrintJob,
    build_device_id,
    encode_device_id,
    parse_device_id,
)

from vusb.control import ControlServer, build_request
from vusb.device import Device
from vusb.errors import DeviceDefinitionError, ProfileError, Stall
from vusb.profile import load_device, parse_profile
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

ROOT = Path(__file__).resolve().parent.parent
BULK_OUT, BULK_IN = 0x01, 0x81
GET_DEVICE_ID = SetupPacket(0xA1, 0x00, 0, 0x0000, 1023)  # wIndex: interface 0 << 8 | alternate 0
GET_PORT_STATUS = SetupPacket(0xA1, 0x01, 0, 0, 1)
SOFT_RESET_AS_USBLP_SENDS_IT = SetupPacket(0x23, 0x02, 0, 0, 0)  # recipient "other", as drivers/usb/class/usblp.c


# ---------------------------------------------------------------- the device ID

DEVICE_IDS = [
    ("fields in order", {"MFG": "ACME", "MDL": "Laser 9", "CLS": "PRINTER"}, "MFG:ACME;MDL:Laser 9;CLS:PRINTER;"),
    ("empty value", {"MFG": "ACME", "DES": ""}, "MFG:ACME;DES:;"),
]


@pytest.mark.parametrize(("case", "fields", "text"), DEVICE_IDS, ids=[c[0] for c in DEVICE_IDS])
def test_device_id_is_built_and_parsed_back(case: str, fields: dict[str, str], text: str) -> None:
    assert build_device_id(fields) == text
    assert parse_device_id(text) == fields


def test_device_id_answer_is_length_prefixed_big_endian_counting_itself() -> None:
    assert encode_device_id("MFG:A;") == bytes.fromhex("0008") + b"MFG:A;"


BAD_DEVICE_IDS = [
    ("semicolon in a value", {"MDL": "a;b"}, "device ID field 'MDL': the value 'a;b' must be printable ASCII without ';'"),
    ("colon in a key", {"M:D": "x"}, "a key is printable ASCII without ':' or ';'"),
    ("not ASCII", {"MDL": "Drucker \u00e4"}, "must be printable ASCII"),
    ("longer than usblp keeps", {"DES": "x" * 1100}, "Linux's usblp keeps only 1021"),
]


@pytest.mark.parametrize(("case", "fields", "message"), BAD_DEVICE_IDS, ids=[c[0] for c in BAD_DEVICE_IDS])
def test_bad_device_ids_are_refused_by_name(case: str, fields: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(DeviceDefinitionError if case == "longer than usblp keeps" else ValueError, match=None) as info:
        PrinterFunction(device_id=fields, job_folder=tmp_path)
    assert message in str(info.value)


# ---------------------------------------------------------------- descriptors and class requests


async def test_descriptor_is_a_bidirectional_printer_interface(tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path)
    async with LocalHost(printer) as host:
        info = await host.enumerate()
    itf = info.configurations[0].interfaces[0]
    assert (itf.interface_class, itf.interface_subclass, itf.interface_protocol) == (7, 1, 2)
    assert sorted((e.address, e.transfer_type.name) for e in itf.endpoints) == [(BULK_OUT, "BULK"), (BULK_IN, "BULK")]


async def test_unidirectional_printer_has_only_bulk_out(tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path, protocol=1)
    async with LocalHost(printer) as host:
        itf = (await host.enumerate()).configurations[0].interfaces[0]
    assert itf.interface_protocol == 1 and [e.address for e in itf.endpoints] == [BULK_OUT]


PORT_STATUS = [
    ("ready", {}, 0x18),
    ("paper out", {"paper_out": True}, 0x38),
    ("off line", {"selected": False}, 0x08),
    ("error", {"error": True}, 0x10),
    ("everything wrong", {"paper_out": True, "selected": False, "error": True}, 0x20),
]


@pytest.mark.parametrize(("case", "status", "byte"), PORT_STATUS, ids=[c[0] for c in PORT_STATUS])
async def test_get_port_status_reports_what_python_set(case: str, status: dict[str, bool], byte: int,
                                                       tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path)
    async with LocalHost(printer) as host:
        await host.enumerate()
        printer.set_status(**status)
        assert await host.control(GET_PORT_STATUS) == bytes((byte,))
    assert printer.printer.status_reads == 1


async def test_get_device_id_as_usblp_asks_it(tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path, device_id={"MFG": "ACME", "MDL": "Laser 9"})
    async with LocalHost(printer) as host:
        await host.enumerate()
        answer = await host.control(GET_DEVICE_ID)
        assert answer == bytes.fromhex("0017") + b"MFG:ACME;MDL:Laser 9;"
        assert await host.control(SetupPacket(0xA1, 0x00, 0, 0, 2)) == bytes.fromhex("0017")  # length first


# A keyboard at interface 0 and the printer at interface 1: usblp names the printer's interface
# in wIndex's HIGH byte for GET_DEVICE_ID only (drivers/usb/class/usblp.c, usblp_ctrl_msg; Printer
# class 1.1, 4.2.1), in the low byte for the other requests. Each row: the request, who answers.
SECOND_INTERFACE_ROUTES = [
    ("GET_DEVICE_ID names interface 1 in the high byte", SetupPacket(0xA1, 0x00, 0, 0x0100, 1023),
     bytes.fromhex("0011") + b"MFG:ACME;MDL:P;"),
    ("GET_PORT_STATUS names interface 1 in the low byte", SetupPacket(0xA1, 0x01, 0, 0x0001, 1), b"\x18"),
    ("the keyboard's GET_PROTOCOL to interface 0 still reaches the keyboard", SetupPacket(0xA1, 0x03, 0, 0, 1),
     b"\x01"),
    ("GET_DEVICE_ID to interface 0 is not the printer's: stall", SetupPacket(0xA1, 0x00, 0, 0x0000, 1023), None),
]


@pytest.mark.parametrize(("case", "setup", "answer"), SECOND_INTERFACE_ROUTES,
                         ids=[c[0] for c in SECOND_INTERFACE_ROUTES])
async def test_a_printer_at_interface_1_gets_its_requests(case: str, setup: SetupPacket, answer: bytes | None,
                                                          tmp_path: Path) -> None:
    device = Device(KeyboardFunction(), PrinterFunction(job_folder=tmp_path, device_id={"MFG": "ACME", "MDL": "P"}),
                    vendor_id=0x1209, product_id=0x10, speed="full")
    assert [i.interface_class for i in device.interfaces()] == [3, 7]
    async with LocalHost(device) as host:
        await host.enumerate()
        if answer is None:
            with pytest.raises(Stall):
                await host.control(setup)
        else:
            assert await host.control(setup) == answer


async def test_unknown_class_request_stalls(tmp_path: Path) -> None:
    async with LocalHost(Printer(job_folder=tmp_path)) as host:
        await host.enumerate()
        with pytest.raises(Stall):
            await host.control(SetupPacket(0xA1, 0x07, 0, 0, 4))


# ---------------------------------------------------------------- jobs


async def test_a_job_is_saved_whole_and_handed_to_the_callback_after_the_idle_timeout(tmp_path: Path) -> None:
    seen: list[PrintJob] = []
    printer = Printer(job_folder=tmp_path, job_timeout=0.2, on_job=seen.append)
    data = os.urandom(100_000)
    async with LocalHost(printer) as host:
        await host.enumerate()
        for i in range(0, len(data), 8192):  # as usblp writes: 8 KiB URBs
            await host.transfer_out(BULK_OUT, data[i:i + 8192])
        assert list(tmp_path.iterdir()) == [tmp_path / "job-0001.prn.part"]  # not finished yet
        job = await printer.next_job(timeout=5)
    assert job.path == tmp_path / "job-0001.prn" and job.read_bytes() == data
    assert (job.number, job.size, job.ended_by) == (1, len(data), "idle") and seen == [job]


@pytest.mark.parametrize("ending", ["soft reset", "deconfigure", "detach", "end_job"])
async def test_how_a_job_ends(ending: str, tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path, job_timeout=60)
    async with LocalHost(printer) as host:
        await host.enumerate()
        await host.transfer_out(BULK_OUT, b"%!PS first")
        if ending == "soft reset":
            await host.control(SOFT_RESET_AS_USBLP_SENDS_IT)
        elif ending == "deconfigure":
            await host.set_configuration(0)
        elif ending == "detach":
            host.detach()
        else:
            printer.end_job()
        job = await printer.next_job(timeout=1)
    assert job.read_bytes() == b"%!PS first"
    assert job.ended_by == {"soft reset": "soft-reset", "deconfigure": "disconnect", "detach": "disconnect",
                            "end_job": "end_job"}[ending]


async def test_jobs_are_numbered_after_those_already_in_the_folder(tmp_path: Path) -> None:
    (tmp_path / "job-0041.prn").write_bytes(b"old")
    printer = Printer(job_folder=tmp_path, job_timeout=0.05)
    async with LocalHost(printer) as host:
        await host.enumerate()
        await host.transfer_out(BULK_OUT, b"one")
        first = await printer.next_job(timeout=2)
        await host.transfer_out(BULK_OUT, b"two")
        second = await printer.next_job(timeout=2)
    assert (first.path.name, second.path.name) == ("job-0042.prn", "job-0043.prn")
    assert (tmp_path / "job-0041.prn").read_bytes() == b"old"


async def test_async_callback_is_awaited(tmp_path: Path) -> None:
    done = asyncio.Event()

    async def on_job(job: PrintJob) -> None:
        await asyncio.sleep(0)
        done.set()

    printer = Printer(job_folder=tmp_path, job_timeout=0.05, on_job=on_job)
    async with LocalHost(printer) as host:
        await host.enumerate()
        await host.transfer_out(BULK_OUT, b"x")
        await asyncio.wait_for(done.wait(), 2)


async def test_back_channel_goes_to_the_bulk_in_pipe(tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path)
    async with LocalHost(printer) as host:
        await host.enumerate()
        printer.printer.send_to_host(b"@PJL USTATUS DEVICE\r\n")
        assert await host.transfer_in(BULK_IN, 512) == b"@PJL USTATUS DEVICE\r\n"


# ---------------------------------------------------------------- not ready: data waits, nothing is lost


@pytest.mark.parametrize("condition", [{"paper_out": True}, {"selected": False}, {"error": True}])
async def test_a_printer_that_is_not_ready_holds_the_data_until_it_is(condition: dict[str, bool],
                                                                      tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path, job_timeout=0.1)
    async with LocalHost(printer) as host:
        await host.enumerate()
        printer.set_status(**condition)
        write = asyncio.create_task(host.transfer_out(BULK_OUT, b"page one"))
        await asyncio.sleep(0.3)
        assert not write.done() and printer.jobs == []  # the host sees a write that does not finish
        printer.set_status(paper_out=False, selected=True, error=False)
        assert await asyncio.wait_for(write, 2) == 8
        job = await printer.next_job(timeout=2)
    assert job.read_bytes() == b"page one"


async def test_a_job_file_that_fails_mid_job_turns_into_error_status_not_a_lost_job(tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path, job_timeout=0.1)
    async with LocalHost(printer) as host:
        await host.enumerate()
        await host.transfer_out(BULK_OUT, b"first half ")
        assert printer.printer._file is not None
        real = printer.printer._file

        class Full:
            def write(self, data: object) -> int:
                raise OSError(28, "No space left on device")

        printer.printer._file = Full()  # type: ignore[assignment]
        write = asyncio.create_task(host.transfer_out(BULK_OUT, b"second half"))
        await asyncio.sleep(0.2)
        assert not write.done() and printer.printer.error
        assert await host.control(GET_PORT_STATUS) == bytes((PortStatus.SELECTED,))  # NOT_ERROR bit cleared
        printer.printer._file = real
        printer.set_status(error=False)
        await asyncio.wait_for(write, 2)
        job = await printer.next_job(timeout=2)
    assert job.read_bytes() == b"first half second half"


# ---------------------------------------------------------------- the job folder


def test_job_folder_that_is_a_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "jobs").write_text("not a folder")
    with pytest.raises(JobFolderError, match=r"print job folder '.*jobs': exists and is not a folder"):
        Printer(job_folder=tmp_path / "jobs")


def test_job_folder_that_cannot_be_created_is_refused_at_start(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only parent (root could write anywhere)
    with pytest.raises(JobFolderError, match=r"jobs': cannot be created: '.*' is not writable"):
        Printer(job_folder=tmp_path / "jobs")


def test_existing_job_folder_that_cannot_be_written_is_refused_at_start(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = open

    def refusing_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode and str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied")
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(JobFolderError, match=r"cannot be written: Permission denied"):
        Printer(job_folder=tmp_path)


def test_job_folder_under_a_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(JobFolderError, match=r"cannot be created: '.*f' is not a folder"):
        Printer(job_folder=tmp_path / "f" / "jobs")


def test_missing_job_folder_is_made_only_when_the_first_job_comes(tmp_path: Path) -> None:
    Printer(job_folder=tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()


# ---------------------------------------------------------------- profile and vusb ctl


def test_shipped_printer_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    device = load_device(ROOT / "profiles" / "printer.yaml")
    (f,) = device.functions
    assert isinstance(f, PrinterFunction)
    assert f.folder.path == tmp_path / "print-jobs" and f.job_timeout == 2
    assert parse_device_id(f.device_id)["MDL"] == "Virtual Printer"


PROFILE = """identity:
  vendor_id: 0x1209
  product_id: 0x10
functions:
  - kind: printer
{extra}"""

BAD_PROFILES = [
    ("job folder is a file", "    job_folder: afile\n", "p.yaml:6:17: field 'functions[0].job_folder': print job folder"),
    ("semicolon in device id", "    device_id: 'MFG:a;b'\n", None),
    ("timeout zero", "    job_timeout: 0\n", "p.yaml:6:18: field 'functions[0].job_timeout': 0 is out of range > 0"),
    ("protocol", "    protocol: sideways\n", "'sideways' is not one of: bidirectional, unidirectional"),
]


@pytest.mark.parametrize(("case", "extra", "message"), BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES])
def test_bad_printer_profiles_name_the_field(case: str, extra: str, message: str | None, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    text = PROFILE.format(extra=extra)
    if message is None:  # a valid device ID after all: fields may be given as one string with their own ';'
        parse_profile(text, "p.yaml", tmp_path)
        return
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "p.yaml", tmp_path)
    assert message in str(info.value)


async def test_vusb_ctl_printer_status_sets_what_the_host_reads(tmp_path: Path) -> None:
    printer = Printer(job_folder=tmp_path / "jobs")
    async with Server([printer], port=0) as server:
        control = ControlServer(server, tmp_path / "c.sock")  # handle() works without the socket started
        request, _ = build_request(["printer-status", "1-1", "paper_out=true"])
        reply = await control.handle(request)
        assert reply["ok"] and reply["paper_out"] is True and reply["port_status"] == "0x38"
        async with LocalHost(printer) as host:
            await host.enumerate()
            assert await host.control(GET_PORT_STATUS) == b"\x38"
        reply = await control.handle((build_request(["printer-status", "1-1"]))[0])
        assert {k: v for k, v in reply.items() if k != "id"} == {"ok": True, "paper_out": True, "selected": True, "error": False, "port_status": "0x38",
                         "jobs": 0}
        bad = await control.handle({"cmd": "printer-status", "busid": "1-1", "paper_out": "yes"})
        assert bad["ok"] is False and "field 'paper_out' must be true or false" in bad["error"]


def test_device_composed_with_a_printer_function(tmp_path: Path) -> None:
    device = Device(PrinterFunction(job_folder=tmp_path), vendor_id=0x1209, product_id=0x10, speed="full")
    assert device.interfaces()[0].interface_class == 7


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "devices" / "printer.md").read_text()
    code = re.search(r"## Example.*?```python\n(.*?)```", page, re.S)
    assert code is not None, "docs/devices/printer.md: no example"
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "job-0001.prn 24 bytes, ended by idle\n"
