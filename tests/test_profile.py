"""YAML profiles: the shipped ones load, and every error names file, line, column and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from vusb.errors import ProfileError
from vusb.profile import load_device, load_profile, parse_profile

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_profiles_load(path: Path, tmp_path: Path) -> None:
    device = load_profile(path, data_dir=tmp_path).build()  # a disk image goes to tmp_path, not into profiles/
    assert device.descriptor.vendor_id
    device.close_unstarted()


def test_keyboard_profile_identity() -> None:
    dev = load_device(ROOT / "profiles" / "keyboard.yaml")
    assert dev.describe() == "1209:0001 Virtual Keyboard"
    assert dev.strings.get(dev.descriptor.serial_number_index, 0x0409) == "VKB0001"


GOOD = "identity:\n  vendor_id: 0x1209\n  product_id: 1\nfunctions:\n  - kind: keyboard\n"

BROKEN = [
    ("missing product id", "identity:\n  vendor_id: 0x1209\nfunctions:\n  - kind: keyboard\n",
     "p.yaml:2:3: field 'identity.product_id': required field 'product_id' is missing"),
    ("vendor id out of range", GOOD.replace("0x1209", "0x12345"),
     "p.yaml:2:14: field 'identity.vendor_id': 74565 is out of range 0..65535"),
    ("vendor id not a number", GOOD.replace("0x1209", "abc"),
     "p.yaml:2:14: field 'identity.vendor_id': expected an integer (decimal or 0x hex), got 'abc'"),
    ("unknown kind", GOOD.replace("keyboard", "keybaord"),
     "p.yaml:5:11: field 'functions[0].kind': unknown kind 'keybaord'; expected one of:"),
    ("unknown identity field", GOOD.replace("  product_id: 1\n", "  product_id: 1\n  colour: red\n"),
     "p.yaml:4:3: field 'identity.colour': unknown field 'colour'"),
    ("bad speed", GOOD.replace("  product_id: 1\n", "  product_id: 1\n  speed: warp\n"),
     "p.yaml:4:10: field 'identity.speed': 'warp' is not one of: low, full, high, super"),
    ("functions is not a list", "identity:\n  vendor_id: 1\n  product_id: 1\nfunctions: keyboard\n",
     "p.yaml:4:12: field 'functions': expected a list"),
    ("empty functions", "identity:\n  vendor_id: 1\n  product_id: 1\nfunctions: []\n",
     "p.yaml:4:12: field 'functions': at least one function is needed"),
    ("kind is a list", GOOD.replace("kind: keyboard", "kind: [keyboard]"),
     "p.yaml:5:11: field 'functions[0].kind': expected the name of a kind; one of: "),
    ("fault kind is a mapping", GOOD + "faults:\n  - kind: {drop: 1}\n",
     "p.yaml:7:11: field 'faults[0].kind': expected the name of a fault kind; one of: stall, "),
    ("fault is not a mapping", GOOD + "faults:\n  - drop\n",
     "p.yaml:7:5: field 'faults[0]': expected a mapping with a 'kind' field"),
    ("function without kind", "identity:\n  vendor_id: 1\n  product_id: 1\nfunctions:\n  - name: x\n",
     "p.yaml:5:5: field 'functions[0].kind': required field 'kind' is missing"),
    ("hid without descriptor", GOOD.replace("keyboard", "hid"),
     "p.yaml:5:5: field 'functions[0].report_descriptor': required field 'report_descriptor' is missing"),
    ("bad hex", GOOD.replace("kind: keyboard", "kind: hid\n    report_descriptor: zz"),
     "p.yaml:6:24: field 'functions[0].report_descriptor': expected hexadecimal bytes"),
    ("string too long", GOOD.replace("  product_id: 1\n", "  product_id: 1\n  product: " + "x" * 130 + "\n"),
     "p.yaml: string 'xxxxxxxxxxxxxxxxxxxx'... is 130 UTF-16 code units long"),
    ("invalid YAML", "identity: [\n", "p.yaml:2:1: invalid YAML"),
    ("empty file", "", "p.yaml: the profile is empty"),
    ("duplicate field", GOOD.replace("  product_id: 1\n", "  product_id: 1\n  product_id: 2\n"),
     "p.yaml:4:3: field 'identity.product_id': field 'product_id' is given twice"),
]


@pytest.mark.parametrize(("case", "text", "message"), BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_profiles_name_file_line_and_field(case: str, text: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "p.yaml")
    assert str(info.value).startswith(message), str(info.value)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"missing\.yaml: cannot read the profile"):
        load_profile(tmp_path / "missing.yaml")


def test_untypable_type_on_attach_names_the_field() -> None:
    text = GOOD.replace("kind: keyboard", "kind: keyboard\n    type_on_attach: \"ça\"")
    with pytest.raises(ProfileError, match=r"p\.yaml:6:21: field 'functions\[0\]\.type_on_attach': character 'ç'"):
        parse_profile(text, "p.yaml")


KEYBOARD_DELAY = GOOD + "    type_delay: {value}\n"
DELAY_FAULT = GOOD + "faults:\n  - kind: delay\n    seconds: {value}\n"
DROP_FAULT = GOOD + "faults:\n  - kind: drop\n    probability: {value}\n"

BAD_FLOATS = [
    ("type_delay nan", KEYBOARD_DELAY, ".nan", "p.yaml:6:17: field 'functions[0].type_delay': "
     "expected a finite number, got '.nan'"),
    ("type_delay infinite", KEYBOARD_DELAY, ".inf", "p.yaml:6:17: field 'functions[0].type_delay': "
     "expected a finite number, got '.inf'"),
    ("type_delay negative", KEYBOARD_DELAY, "-1", "p.yaml:6:17: field 'functions[0].type_delay': "
     "-1 is out of range >= 0"),
    ("seconds nan", DELAY_FAULT, ".NaN", "p.yaml:8:14: field 'faults[0].seconds': expected a finite number, got '.NaN'"),
    ("seconds infinite", DELAY_FAULT, ".inf", "p.yaml:8:14: field 'faults[0].seconds': "
     "expected a finite number, got '.inf'"),
    ("seconds minus infinity", DELAY_FAULT, "-.inf", "p.yaml:8:14: field 'faults[0].seconds': "
     "expected a finite number, got '-.inf'"),
    ("seconds negative", DELAY_FAULT, "-0.5", "p.yaml:8:14: field 'faults[0].seconds': -0.5 is out of range >= 0"),
    ("probability nan", DROP_FAULT, ".nan", "p.yaml:8:18: field 'faults[0].probability': "
     "expected a finite number, got '.nan'"),
    ("probability infinite", DROP_FAULT, ".inf", "p.yaml:8:18: field 'faults[0].probability': "
     "expected a finite number, got '.inf'"),
    ("probability negative", DROP_FAULT, "-1", "p.yaml:8:18: field 'faults[0].probability': "
     "-1 is out of range (0, 1]"),
    ("probability zero", DROP_FAULT, "0", "p.yaml:8:18: field 'faults[0].probability': 0 is out of range (0, 1]"),
    ("probability above one", DROP_FAULT, "1.5", "p.yaml:8:18: field 'faults[0].probability': "
     "1.5 is out of range (0, 1]"),
]


@pytest.mark.parametrize(("case", "text", "value", "message"), BAD_FLOATS, ids=[c[0] for c in BAD_FLOATS])
def test_bad_floats_name_the_field(case: str, text: str, value: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(text.format(value=value), "p.yaml")
    assert str(info.value) == message


GOOD_FLOATS = [
    ("type_delay zero", KEYBOARD_DELAY, "0"),
    ("seconds zero", DELAY_FAULT, "0"),
    ("seconds integer", DELAY_FAULT, "3"),
    ("probability one", DROP_FAULT, "1"),
    ("probability small", DROP_FAULT, "1.0e-9"),
]


@pytest.mark.parametrize(("case", "text", "value"), GOOD_FLOATS, ids=[c[0] for c in GOOD_FLOATS])
def test_floats_at_their_bounds_are_fine(case: str, text: str, value: str) -> None:
    parse_profile(text.format(value=value), "p.yaml")


ESCAPES = [
    ("parent folder", "../outside.img"),
    ("absolute path", "{tmp}/outside-absolute.img"),
]


@pytest.mark.parametrize(("case", "image"), ESCAPES, ids=[c[0] for c in ESCAPES])
def test_profile_paths_cannot_leave_the_profile_folder_unless_allowed(case: str, image: str, tmp_path: Path) -> None:
    image = image.format(tmp=tmp_path)
    folder = tmp_path / "profiles"
    folder.mkdir()
    profile = folder / "disk.yaml"
    profile.write_text("identity: {vendor_id: 0x1209, product_id: 5, speed: high}\n"
                       f"functions:\n  - kind: mass-storage\n    image: {image}\n    size: 1MiB\n")
    with pytest.raises(ProfileError, match=r"disk\.yaml:4:12: field 'functions\[0\]\.image': path .* leaves the profile's folder"):
        load_profile(profile)
    target = (folder / image).resolve()
    assert not target.exists()  # nothing was created outside
    load_profile(profile, allow_outside_paths=True).build().close_unstarted()
    assert target.exists()
    target.unlink()


SYMLINKS = [
    # case, field, link name in the profile folder, where it points (relative to the link), refused
    ("image link leaving", "image", "disk.img", "../secret.img", True),
    ("image link staying inside", "image", "disk.img", "disks/real.img", False),
    ("image in a linked folder", "image", "linked", "../elsewhere", True),
    ("overlay link leaving", "overlay", "changes.cow", "../secret.cow", True),
    ("overlay link staying inside", "overlay", "changes.cow", "disks/changes.cow", False),
]


@pytest.mark.parametrize(("case", "field", "name", "points_to", "refused"), SYMLINKS, ids=[c[0] for c in SYMLINKS])
def test_symbolic_links_are_followed_to_the_end(case: str, field: str, name: str, points_to: str, refused: bool,
                                                tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    (folder / "disks").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (folder / "disks" / "base.img").write_bytes(bytes(1 << 20))
    (folder / name).symlink_to(points_to)
    if not refused:  # the target is there: a dangling link is not created through
        (folder / name).resolve().write_bytes(bytes(1 << 20))
    used = "linked/d.img" if name == "linked" else name
    entry = f"    image: {used}\n" if field == "image" else f"    image: disks/base.img\n    overlay: {used}\n"
    profile = folder / "disk.yaml"
    profile.write_text("identity: {vendor_id: 0x1209, product_id: 5, speed: high}\n"
                       f"functions:\n  - kind: mass-storage\n{entry}    size: 1MiB\n")
    if refused:
        with pytest.raises(ProfileError) as info:
            load_profile(profile)
        message = str(info.value)
        assert f"field 'functions[0].{field}': path {used!r} (it leads to " in message, message
        assert "leaves the profile's folder" in message, message
        assert not (folder / used).resolve().exists()  # nothing was created where the link leads
    else:
        load_profile(profile).build().close_unstarted()


def test_paths_inside_the_folder_are_fine(tmp_path: Path) -> None:
    (tmp_path / "disks").mkdir()
    profile = tmp_path / "disk.yaml"
    profile.write_text("identity: {vendor_id: 0x1209, product_id: 5, speed: high}\n"
                       "functions:\n  - kind: mass-storage\n    image: disks/d.img\n    size: 1MiB\n")
    load_profile(profile).build().close_unstarted()
    assert (tmp_path / "disks" / "d.img").stat().st_size == 1 << 20


CANNED = GOOD + """control:
  - request_type: 0xC0
    request: 0x01
    reply: "de ad be ef"
  - request_type: 0xC0
    request: 0x02
    value: 7
    stall: true
  - request_type: 0x40
    request: 0x03
"""


async def test_canned_control_responses() -> None:
    from vusb.errors import Stall
    from vusb.testing import LocalHost
    from vusb.urb import SetupPacket

    device = parse_profile(CANNED, "p.yaml").build()
    async with LocalHost(device) as host:
        assert await host.control(SetupPacket(0xC0, 0x01, 0, 0, 2)) == b"\xde\xad"  # cut to wLength
        with pytest.raises(Stall):
            await host.control(SetupPacket(0xC0, 0x02, 7, 0, 4))
        with pytest.raises(Stall):  # value 8 matches no entry: unhandled, stalls
            await host.control(SetupPacket(0xC0, 0x02, 8, 0, 4))
        assert await host.control(SetupPacket(0x40, 0x03, 0, 0, 3), b"abc") == b""


CANNED_ERRORS = [
    ("standard request", "  - request_type: 0x80\n    request: 6\n",
     "p.yaml:7:19: field 'control[0].request_type': 0x80 is not a class (0x20) or vendor (0x40) request; "
     "standard requests are answered by the device itself"),
    ("standard request in range", "  - request_type: 0x82\n    request: 0\n",
     "p.yaml:7:19: field 'control[0].request_type': 0x82 is not a class (0x20) or vendor (0x40) request"),
    ("reply on OUT", "  - request_type: 0x40\n    request: 1\n    reply: '01'\n",
     "p.yaml:9:12: field 'control[0].reply': a reply is IN data"),
    ("reply and stall", "  - request_type: 0xC0\n    request: 1\n    reply: '01'\n    stall: true\n",
     "p.yaml:10:12: field 'control[0].stall': give either a reply or stall: true"),
]


@pytest.mark.parametrize(("case", "entry", "message"), CANNED_ERRORS, ids=[c[0] for c in CANNED_ERRORS])
def test_canned_control_errors(case: str, entry: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(GOOD + "control:\n" + entry, "p.yaml")
    assert str(info.value).startswith(message), str(info.value)
