"""The complete example of docs/record-replay.md runs as written and prints what the page says.

The program is written out into a fresh folder and run there; then the page's shell
lines run in that folder with ``vusb`` on the PATH, on the capture the program wrote.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "record-replay.md").read_text()
SECTION = PAGE.split("## A complete example", 1)[1].split("\n## ", 1)[0]
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", SECTION, re.S)


def test_the_page_shows_a_program_its_output_commands_and_their_output() -> None:
    assert [lang for lang, _ in BLOCKS] == ["python", "", "sh", ""]
    assert BLOCKS[0][1].startswith("# record_keyboard.py\n")


def test_the_record_and_replay_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "record_keyboard.py").write_text(BLOCKS[0][1])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = subprocess.run([sys.executable, "record_keyboard.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == BLOCKS[1][1]
    shell = subprocess.run(["bash", "-e", "-c", BLOCKS[2][1]], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, env=env)
    assert shell.returncode == 0, shell.stderr
    assert sorted((shell.stderr + shell.stdout).splitlines()) == sorted(BLOCKS[3][1].splitlines())
