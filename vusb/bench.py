"""``vusb bench``: run the benchmarks in ``benchmarks/`` and print their table.

The benchmark scripts live beside the package in a source checkout (they are not installed
with it); this module finds them there.  ``main(argv)`` takes the same options as
``python -m benchmarks.bench_server``: ``--quick``, ``--profile``, ``--top N``, ``--no-storage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


def _load() -> ModuleType | None:
    """``benchmarks.bench_server``, importing it from the checkout this package belongs to if needed."""
    try:
        from benchmarks import bench_server
    except ImportError:
        root = Path(__file__).resolve().parent.parent
        if not (root / "benchmarks" / "bench_server.py").is_file():
            return None
        sys.path.insert(0, str(root))
        try:
            from benchmarks import bench_server
        except ImportError:
            return None
    return bench_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the table; returns the exit status."""
    module = _load()
    if module is None:
        print("vusb bench: the benchmarks/ directory was not found; run it from a source checkout of vusb",
              file=sys.stderr)
        return 2
    status: int = module.main(None if argv is None else list(argv), prog="vusb bench")
    return status


if __name__ == "__main__":
    sys.exit(main())
