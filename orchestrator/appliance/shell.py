"""Running the build's host tools, with failures explained."""

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

INSTALL_HINT = "run scripts/install-lab-deps (as root) or apt-get install"


class ApplianceError(Exception):
    """The image could not be built; the message says why and what to do."""


def require_tools(tools: dict[str, str]) -> None:
    """Fail with the packages to install when any command (key) is missing."""
    missing = sorted({package for command, package in tools.items() if shutil.which(command) is None})
    if missing:
        raise ApplianceError(f"missing host tools; {INSTALL_HINT} {' '.join(missing)}")


def run(command: Sequence[str | Path], stdin: str | None = None) -> str:
    """Run a command to completion; its stdout, or ApplianceError with its stderr's tail."""
    result = subprocess.run(
        [str(part) for part in command], input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ApplianceError(f"{' '.join(map(str, command))} failed (exit {result.returncode}):\n{tail}")
    return result.stdout
