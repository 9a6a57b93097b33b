"""`vusb check` reports every error of a file, and suggests the closest known name for a misspelled one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vusb.errors import ProfileError
from vusb.profile import ProfileErrors, parse_profile

BROKEN = """\
identity:
  vendor_id: 0x12345
  prodct_id: 1
functions:
  - kind: keybaord
  - kind: keyboard
    type_dealy: 2
  - kind: mass-storage
    image: nothere.img
control:
  - {request_type: 0x00, request: 1}
faults:
  - {kind: stal, endpoint: 0x81}
  - {kind: scsi-failure, sense_key: MEDIUM_EROR}
"""

# (line:column, field, what the message says) of each error, in the order they are reported
EXPECTED = [
    ("2:14", "identity.vendor_id", "74565 is out of range 0..65535"),
    ("3:3", "identity.prodct_id", "unknown field 'prodct_id'; expected one of: device_version, manufacturer, "
                                  "max_power_ma, product, product_id, remote_wakeup, self_powered, serial_number, "
                                  "speed, vendor_id; did you mean 'product_id'?"),
    ("2:3", "identity.product_id", "required field 'product_id' is missing"),
    ("5:11", "functions[0].kind", "unknown kind 'keybaord'; expected one of: audio, cdc-acm, ch340, cp210x, dfu, "
                                  "ecm, ftdi, gadget-zero, hid, keyboard, mass-storage, midi, mouse, ncm, pl2303, "
                                  "printer, replay, rndis, uvc; "
                                  "did you mean 'keyboard'?"),
    ("7:5", "functions[1].type_dealy", "unknown field 'type_dealy'; expected one of: interface_name, type_delay, "
                                       "type_on_attach; did you mean 'type_delay'?"),
    ("11:20", "control[0].request_type", "0 is out of range 32..255"),
    ("13:12", "faults[0].kind", "unknown fault kind 'stal'; expected one of: stall, delay, drop, disconnect, short, "
                                "babble, corrupt-descriptor, scsi-failure; did you mean 'stall'?"),
    ("14:37", "faults[1].sense_key", "unknown sense key 'MEDIUM_EROR'"),
    ("9:12", "functions[2].image", "does not exist; give a size to create it"),
]


def test_every_error_of_a_file_is_reported_with_where_it_is(tmp_path: Path) -> None:
    with pytest.raises(ProfileErrors) as info:
        parse_profile(BROKEN, "broken.yaml", tmp_path, all_errors=True)
    got = info.value.errors
    assert len(got) == len(EXPECTED), "\n".join(map(str, got))
    for error, (where, field, message) in zip(got, EXPECTED, strict=True):
        assert str(error).startswith(f"broken.yaml:{where}: field '{field}': "), error
        assert message in error.reason, error
    assert "did you mean 'MEDIUM_ERROR'?" in got[7].reason
    assert list(tmp_path.iterdir()) == []


def test_without_all_errors_the_first_one_is_raised() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(BROKEN, "broken.yaml")
    assert not isinstance(info.value, ProfileErrors)
    assert str(info.value) == "broken.yaml:2:14: field 'identity.vendor_id': 74565 is out of range 0..65535 " \
                              "(0x0..0xffff)"


def test_check_prints_one_error_a_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / "good.yaml").write_text("identity: {vendor_id: 1, product_id: 2}\nfunctions: [{kind: mouse}]\n")
    result = subprocess.run([sys.executable, "-m", "vusb", "check", "broken.yaml", "good.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(": field")[0] for line in lines] == [f"error: broken.yaml:{w}" for w, _, _ in EXPECTED]
    assert result.stdout == "ok: good.yaml (good)\n"


@pytest.mark.parametrize(("typo", "suggestion"), [
    ("type_dealy", "type_delay"),
    ("colour", None),                  # nothing close enough: no suggestion
    ("interfacename", "interface_name"),
])
def test_suggestions_for_misspelled_fields(typo: str, suggestion: str | None) -> None:
    text = f"identity: {{vendor_id: 1, product_id: 2}}\nfunctions:\n  - {{kind: keyboard, {typo}: 1}}\n"
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "p.yaml")
    if suggestion is None:
        assert "did you mean" not in str(info.value)
    else:
        assert str(info.value).endswith(f"; did you mean {suggestion!r}?")
