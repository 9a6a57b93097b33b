"""Run every fuzz target for a bounded time; exit non-zero if any of them found something.

::

    python -m fuzz.run_bounded                  # 20 s in all, atheris when installed
    python -m fuzz.run_bounded --seconds 300    # longer
    python -m fuzz.run_bounded --no-atheris --seed 7

Each target runs in its own process (atheris instruments and owns the process),
with a seed corpus of structured inputs (valid USB/IP messages with mutated
fields) written to a temporary directory; findings are saved under
``--artifacts`` (default ``fuzz-artifacts/``) as ``crash-<sha1>`` files, which
``python -m fuzz.fuzz_codec FILE`` (or ``fuzz_server``) replays.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ("fuzz.fuzz_codec", "fuzz.fuzz_server")
SEED_INPUTS = 64


def write_corpus(target: str, directory: Path, seed: int) -> None:
    """Seed inputs from the target's own generator, so atheris starts from valid traffic."""
    module = __import__(target, fromlist=["generate"])
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(SEED_INPUTS):
        (directory / f"seed-{i:03d}").write_bytes(module.generate(rng))


def run_target(target: str, seconds: float, seed: int, use_atheris: bool, artifacts: Path, workdir: Path) -> int:
    corpus = workdir / target.rsplit(".", 1)[-1]
    args = [sys.executable, "-m", target, f"-max_total_time={max(1, int(seconds))}", f"-seed={seed}",
            f"-artifact_prefix={artifacts}{os.sep}", f"-atheris={int(use_atheris)}"]
    if use_atheris:
        write_corpus(target, corpus, seed)
        args.append(str(corpus))
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    started = time.monotonic()
    # libFuzzer's own bound is -max_total_time; the timeout here only catches a hang.
    try:
        proc = subprocess.run(args, env=env, cwd=root, timeout=seconds * 3 + 30, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        print(f"{target}: hung beyond {seconds * 3 + 30:.0f} s", file=sys.stderr)
        return 1
    took = time.monotonic() - started
    tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
    print(f"{target}: exit {proc.returncode} after {took:.1f} s\n{tail}", file=sys.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-8000:], sep="\n", file=sys.stderr)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="total time for all targets (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-atheris", action="store_true", help="use the seeded random loop even if atheris is installed")
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    parser.add_argument("--targets", nargs="*", default=list(TARGETS))
    opts = parser.parse_args(argv)
    from fuzz import have_atheris

    use_atheris = have_atheris() and not opts.no_atheris
    if not use_atheris and not opts.no_atheris:
        print("atheris is not installed: running the seeded random fallback", file=sys.stderr)
    share = opts.seconds / len(opts.targets)
    failed = []
    with tempfile.TemporaryDirectory(prefix="vusb-fuzz-") as tmp:
        for target in opts.targets:
            if run_target(target, share, opts.seed, use_atheris, opts.artifacts.resolve(), Path(tmp)) != 0:
                failed.append(target)
    artifacts = opts.artifacts.resolve()
    if artifacts.is_dir() and not any(artifacts.iterdir()):
        artifacts.rmdir()  # created for libFuzzer; nothing found
    if failed:
        print(f"findings in: {', '.join(failed)} (inputs under {opts.artifacts}/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
