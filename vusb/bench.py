"""``vusb bench``: run the benchmarks of a source checkout and print their table.

The benchmark scripts live in ``benchmarks/`` beside the package in a source checkout of
vusb; they are not installed with the package (the wheel holds only ``vusb``), so
``vusb bench`` works from a checkout (``python3 -m pip install -e .``) and, installed
from a wheel, says where to get them. ``main(argv)`` takes the options of
``python -m benchmarks.bench_server``; ``vusb bench --help`` lists them.
``vusb bench --against usbip [OPTIONS]`` runs ``benchmarks.bench_peer`` instead: the same
devices served by vusb and by PyPI's ``usbip`` 0.7.0, measured side by side in one run.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

NOT_INSTALLED = (
    "vusb bench: the benchmarks are not installed with vusb; they are in benchmarks/ of a source checkout.\n"
    "  git clone <the vusb repository> && cd vusb && python3 -m pip install -e . && vusb bench\n"
    "  (or, in the checkout: python3 -m benchmarks.bench_server)"
)


def checkout_root() -> Path | None:
    """The source checkout this package is imported from, if it has the benchmarks."""
    root = Path(__file__).resolve().parent.parent
    if (root / "benchmarks" / "bench_server.py").is_file() and (root / "pyproject.toml").is_file():
        return root
    return None


PEERS = {"usbip": "benchmarks.bench_peer"}
"""What ``--against`` can name, and the benchmark that measures vusb beside it."""


def _load(name: str = "benchmarks.bench_server") -> ModuleType | None:
    """A benchmark module of this package's checkout (never another ``benchmarks`` on the path)."""
    root = checkout_root()
    if root is None:
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    if not Path(module.__file__ or "").resolve().is_relative_to(root):
        return None
    return module


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the table; returns the exit status (2: not available)."""
    args = list(sys.argv[1:] if argv is None else argv)
    name, call = "benchmarks.bench_server", {"prog": "vusb bench"}
    against = [a for a in args if a == "--against" or a.startswith("--against=")]
    if against:
        at = args.index(against[0])
        peer = args[at].partition("=")[2] if "=" in args[at] else (args[at + 1] if at + 1 < len(args) else "")
        del args[at:at + (1 if "=" in args[at] else 2)]
        if peer not in PEERS:
            print(f"vusb bench: --against {peer or '?'}: the peers measured side by side are: "
                  f"{', '.join(PEERS)}", file=sys.stderr)
            return 2
        name, call = PEERS[peer], {}
    module = _load(name)
    if module is None:
        print(NOT_INSTALLED, file=sys.stderr)
        return 2
    try:
        status: int = module.main(args, **call)
    except SystemExit as exc:  # --help, or an option the benchmark refuses
        return exc.code if isinstance(exc.code, int) else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
