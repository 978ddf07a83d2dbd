"""Consoles for people (stdout), progress and warnings (stderr).

Markup is off: messages carry plan keys like "[vsphere].server" and
datastore paths like "[ds] vm/vm.vmdk", which must print as written.
"""

from pathlib import Path

from rich.console import Console
from rich.text import Text

from orchestrator.plan import Plan, PlanError, load_plan


def make_console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False, soft_wrap=True)


def error_line(message: object) -> Text:
    return Text("error: ", style="bold red") + Text(str(message))


def warning_line(message: object) -> Text:
    return Text("warning: ", style="bold yellow") + Text(str(message))


def warn_about_plan(errors: Console, plan: Plan) -> None:
    """The warnings every command prints for a plan that runs with less protection."""
    if plan.vsphere.insecure:
        message = "TLS verification is off (insecure = true): anyone on the path can impersonate vSphere"
        errors.print(warning_line(message))
    if plan.ha.manager == "pacemaker" and plan.ha.two_node:
        message = (
            "ha.two_node = true: two votes and no witness; if the storage nodes lose sight of each "
            "other while hosts reach both, both may serve the LUN and its copies diverge"
        )
        errors.print(warning_line(message))


def load_or_report(path: Path, errors: Console) -> Plan | None:
    """The plan, or None after printing each of its issues as an `error:` line."""
    try:
        return load_plan(path)
    except PlanError as err:
        for issue in err.issues:
            errors.print(error_line(issue))
        return None
