"""Running the build's host tools, with failures explained in one line.

Every command's full output goes to the build log (log_to); a failure raises
ApplianceError with the command's gist, which build.py prefixes with the step
("appliance build: <step>: ...") and what to check.
"""

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from orchestrator.host_files import COMMANDS, install_hint


class ApplianceError(Exception):
    """The image could not be built; the one-line message says why and what to do."""


_log: Path | None = None


@contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Append every command's output to path while the block runs."""
    global _log
    previous, _log = _log, path
    try:
        yield
    finally:
        _log = previous


def missing_tools(commands: Sequence[str]) -> list[str]:
    return [command for command in commands if shutil.which(command) is None]


def run(command: Sequence[str | Path], stdin: str | None = None) -> str:
    """Run a command to completion; its stdout, or ApplianceError with the gist of its output."""
    argv = [str(part) for part in command]
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        package = COMMANDS.get(argv[0])
        hint = install_hint(package) if package else "check PATH"
        raise ApplianceError(f"{argv[0]} not found; {hint}") from None
    if _log is not None:
        with open(_log, "a") as log:
            log.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}(exit {result.returncode})\n")
    if result.returncode != 0:
        raise ApplianceError(
            f"{argv[0]} failed (exit {result.returncode}): {gist(result.stderr or result.stdout)}"
        )
    return result.stdout


def gist(output: str) -> str:
    """The line of a tool's output that says what went wrong: its last error line
    (debootstrap's "E: ..."), else its last line."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return "no output"
    errors = [line for line in lines if line.startswith(("E:", "error", "Error", "ERROR", "fatal"))]
    return (errors or lines)[-1]
