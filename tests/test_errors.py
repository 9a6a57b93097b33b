"""One exception hierarchy: every error class vusb defines derives from VusbError and is in errors.py's tree."""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings

import pytest
import vusb.devices

import vusb
from vusb import errors, faults
from vusb.errors import VusbError


def error_classes() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a vusb module (vusb.devices included)."""
    found: dict[str, type[BaseException]] = {}
    for package in (vusb, vusb.devices):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == info.name \
                        and not name.startswith("_"):
                    found[name] = value
    return found


def drawn_tree() -> dict[str, str | None]:
    """Each class in errors.py's docstring tree with the class it is drawn under."""
    doc = errors.__doc__ or ""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*)(?:[│ ]*[├└]── )?([A-Z]\w+)\s", line + " ")
        if not match or not re.match(r"^\s+(?:[│ ]*[├└]── )?[A-Z]\w+ {2,}", line + "  "):
            continue
        depth = line.find(match.group(2))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_every_error_class_derives_from_vusb_error() -> None:
    strays = sorted(name for name, cls in error_classes().items() if not issubclass(cls, VusbError))
    assert strays == []


def test_the_tree_draws_every_error_class_under_its_base() -> None:
    tree, classes = drawn_tree(), error_classes()
    assert tree["VusbError"] is None
    assert sorted(set(classes) - set(tree)) == [], "classes missing from the tree in vusb/errors.py"
    assert sorted(set(tree) - set(classes)) == [], "the tree draws classes that do not exist"
    for name, parent in tree.items():
        if parent is not None:
            assert parent in [base.__name__ for base in classes[name].__mro__[1:]], f"{name} is drawn under {parent}"


@pytest.mark.parametrize(("error", "builtin"), [
    (errors.ArgumentError, ValueError), (errors.ArgumentTypeError, TypeError), (errors.DescriptorError, ValueError),
    (errors.TransferTimeout, TimeoutError), (errors.ConnectionClosed, ConnectionError),
])
def test_errors_that_replaced_a_builtin_still_are_one(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, builtin) and issubclass(error, VusbError)


def test_wire_errors_and_usage_errors_are_apart() -> None:
    assert not issubclass(errors.ProtocolError, errors.UsageError)
    assert not issubclass(errors.UsageError, errors.ProtocolError)


def test_the_stall_rule_has_its_own_name_and_the_old_one_warns() -> None:
    assert faults.StallRule is not vusb.Stall
    with pytest.warns(DeprecationWarning, match="vusb.faults.Stall is now vusb.faults.StallRule"):
        old = faults.Stall  # type: ignore[attr-defined]
    assert old is faults.StallRule
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert faults.KINDS["stall"] is faults.StallRule
