"""`--version` and `-h` on every command line tool: memento, ottermq and ottermq ctl, and their verbs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(_BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("tool", ["memento", "ottermq"])
def test_version(tool: str) -> None:
    done = _run(tool, "--version")
    assert done.returncode == 0 and done.stdout.startswith(f"{tool} "), done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("memento",),
        ("memento", "inspect"),
        ("memento", "replay"),
        ("memento", "verify"),
        ("ottermq",),
        ("ottermq", "serve"),
        ("ottermq", "ctl"),
        ("ottermq", "ctl", "status"),
    ],
)
def test_dash_h_is_help(argv: tuple[str, ...]) -> None:
    done = _run(*argv, "-h")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
