"""`vsa-orchestrate switchover PLAN [--to NODE]`: move the LUN to the other storage node on purpose.

Pacemaker only. Refused unless the site's status shows one node serving, the
target node reachable with both DRBD resources Connected and UpToDate on both
sides, and Pacemaker quorate on both. The move is Pacemaker's own
(`crm_resource --move`, then `--clear` so stickiness keeps the new placement):
vsa-serve stops on the old node (VIP first, so initiators only wait) and
starts on the new one. The stall is measured from the move to the LUN served
on the new node and printed in seconds.
"""

import argparse
import time
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from orchestrator.engine import EXIT_ERROR, EXIT_OK, RUN_ERRORS, one_line
from orchestrator.guest.managers.pacemaker import SERVE
from orchestrator.guest.ssh import NodeShell
from orchestrator.output import error_line, load_or_report, make_console, warn_about_plan
from orchestrator.plan import Plan
from orchestrator.state import StateDir
from orchestrator.status import nodes as status_nodes
from orchestrator.status.command import observe
from orchestrator.status.health import DRBD_HEALTHY
from orchestrator.status.model import NodeView, SiteStatus

MOVE_TIMEOUT_S = 120.0
POLL_S = 0.25


class SwitchoverError(Exception):
    """Refused or failed; one line saying why and what to do."""


def refusal(plan: Plan, status: SiteStatus, to: str | None) -> tuple[str, str] | str:
    """(from, to) when the LUN may move, else why not (pure: tested on status documents)."""
    if plan.ha.manager != "pacemaker":
        return (
            'switchover drives Pacemaker; this plan runs heartbeat (ha.manager = "heartbeat"): on the '
            "serving node run /usr/share/heartbeat/hb_standby to move the LUN"
        )
    views = {view.node: view for view in status.nodes}
    active = status.active_node
    if active is None:
        return "no single node serves the LUN now; run `vsa-orchestrate status` and fix what it reports first"
    if to is not None and to not in views:
        return f"--to {to}: not a storage node of this plan (nodes: {', '.join(views)})"
    target = to or next(node for node in views if node != active)
    if target == active:
        return f"{target} serves the LUN already; nothing to move"
    for view in (views[active], views[target]):
        why = _not_ready(view)
        if why:
            return f"{view.node} {why}; the LUN stays on {active}"
    return active, target


def _not_ready(view: NodeView) -> str | None:
    if not view.reachable:
        return f"is unreachable ({view.error})"
    for drbd in view.drbd:
        if (drbd.connection, drbd.disk, drbd.peer_disk) != DRBD_HEALTHY:
            state = f"{drbd.connection}, disks {drbd.disk}/{drbd.peer_disk}"
            return f"has DRBD {drbd.resource} {state}, not Connected UpToDate/UpToDate"
    if not view.manager_running or view.quorate is not True:
        return "has no running, quorate Pacemaker"
    return None


def switchover(plan: Plan, to: str | None, console: Console) -> float:
    """Move the LUN; seconds from the move until the new node serves it."""
    decided = refusal(plan, observe(plan), to)
    if isinstance(decided, str):
        raise SwitchoverError(decided)
    source, target = decided
    state = StateDir(plan.state_dir, persist=False)
    shells = {}
    for node in plan.storage_nodes:
        key = status_nodes.pinned_key(state, node.node, None)
        if key is None:
            raise SwitchoverError(f"no pinned SSH host key for {node.node} in {plan.state_dir}")
        user, address = plan.storage_vm.ssh_user, str(node.iscsi_ip)
        shells[node.node] = NodeShell(node.node, address, user, plan.ssh_key_file, key, wait_s=0)
    try:
        for shell in shells.values():
            shell.run("true")  # both sessions open before the clock starts
        console.print(f"switchover: moving the LUN from {source} to {target}")
        began = time.monotonic()
        shells[source].run(f"crm_resource --move --resource {SERVE} --node {target}")
        try:
            seconds = _wait_serving(plan, shells[target], began)
        finally:
            shells[source].run(f"crm_resource --clear --resource {SERVE}")
    finally:
        for shell in shells.values():
            shell.close()
    console.print(f"switchover: {target} serves the LUN; initiators stalled at most {seconds:.1f} s")
    return seconds


def _wait_serving(plan: Plan, shell: NodeShell, began: float) -> float:
    """Seconds from `began` until Pacemaker reports vsa-serve started on the node (its
    start ends with the VIP up, after the target) and the node holds the VIP."""
    vip = f" {plan.network.vip}/"
    check = f"crm_resource --locate --resource {SERVE} 2>/dev/null; ip -o -4 addr show"
    while True:
        out = shell.run(check, check=False).out
        if f"is running on: {shell.node}" in out and vip in out:
            return time.monotonic() - began
        if time.monotonic() - began > MOVE_TIMEOUT_S:
            raise SwitchoverError(
                f"{shell.node} did not serve the LUN within {MOVE_TIMEOUT_S:.0f} s; the move was withdrawn "
                "(crm_resource --clear), so Pacemaker places it as before. Check `crm_mon -1` and the "
                "journal on both nodes, then `vsa-orchestrate status`"
            )
        time.sleep(POLL_S)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage()
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def switchover_main(argv: list[str]) -> int:
    parser = _Parser(
        prog="vsa-orchestrate switchover",
        description="Move the LUN to the other storage node (Pacemaker), with no I/O error: initiators "
        "stall for the seconds printed. Refused unless both nodes are UpToDate and quorate.",
    )
    parser.add_argument("plan", type=Path, help="the plan file (plan.toml)")
    parser.add_argument("--to", metavar="NODE", help="the node to serve the LUN (default: the other one)")
    args = parser.parse_args(argv)
    console, errors = make_console(), make_console(stderr=True)
    plan = load_or_report(args.plan, errors)
    if plan is None:
        return EXIT_ERROR
    warn_about_plan(errors, plan)
    try:
        switchover(plan, args.to, console)
    except (SwitchoverError, *RUN_ERRORS) as err:
        errors.print(error_line(one_line(err)))
        return EXIT_ERROR
    return EXIT_OK
