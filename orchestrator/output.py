"""Consoles for people (stdout), progress and warnings (stderr).

Markup is off: messages carry plan keys like "[vsphere].server" and
datastore paths like "[ds] vm/vm.vmdk", which must print as written.
"""

from rich.console import Console
from rich.text import Text


def make_console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False, soft_wrap=True)


def error_line(message: object) -> Text:
    return Text("error: ", style="bold red") + Text(str(message))


def warning_line(message: object) -> Text:
    return Text("warning: ", style="bold yellow") + Text(str(message))


def warn_if_insecure(errors: Console, insecure: bool) -> None:
    """The warning every command that talks to vSphere prints when TLS is not verified."""
    if insecure:
        message = "TLS verification is off (insecure = true): anyone on the path can impersonate vSphere"
        errors.print(warning_line(message))
