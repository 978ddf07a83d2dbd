"""`vsa-orchestrate lab failover`: the active storage node's host loses power.

Finds the node that serves the LUN (the status view), powers its VM off
through the simulated vCenter (the lab hook kills its qemu: no clean
shutdown, as when an ESXi host fails), then probes the VIP with a real iSCSI
login until the LUN answers again with the same NAA, from the other node,
and prints the seconds. A rerun of the plan powers the node back on; it
resyncs and returns as secondary.
"""

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from orchestrator.lab.iscsi_probe import probe
from orchestrator.lab.simulator import LabError
from orchestrator.plan import ISCSI_PORT, Plan, load_plan
from orchestrator.progress import Reporter
from orchestrator.stages.vms import facts as vms_facts
from orchestrator.state import StateDir
from orchestrator.status import render
from orchestrator.status.command import observe
from orchestrator.vsphere.session import connect, required
from orchestrator.vsphere.tasks import run_task

SERVE_TIMEOUT_S = 300.0
REPORT_EVERY_S = 5.0


def failover(plan_path: Path, console: Console) -> float:
    """Power off the serving node's VM; seconds until the LUN is served again."""
    plan = load_plan(plan_path)
    before = observe(plan)
    victim = before.active_node
    naa = before.expected.naa
    if not before.healthy or victim is None:
        findings = "; ".join(before.problems) or "no node serves the LUN"
        raise LabError(
            f"the site is not healthy ({findings}); a failover now could power off the only up-to-date "
            "copy. Apply the lab plan and wait until `status` exits 0"
        )
    chap = _chap(plan)
    _power_off(plan, victim, console)
    killed = time.monotonic()
    console.print(f"{victim}'s host lost power; waiting for {naa} on {plan.network.vip}:{ISCSI_PORT}")

    def waiting(elapsed: float) -> None:
        console.print(f"  {elapsed:5.1f} s: not served yet")

    seconds = _wait_served(plan, naa, chap, killed, waiting)
    after = observe(plan)
    render.render_text(console, after)
    if after.active_node in (None, victim):
        raise LabError(f"the LUN answers, but the status view shows {after.active_node} serving it")
    console.print(
        f"failover: {naa} served by {after.active_node} {seconds:.1f} s after {victim}'s host lost power"
    )
    return seconds


def _power_off(plan: Plan, node: str, console: Console) -> None:
    session = connect(plan, plan.resolve_password())
    try:
        path = vms_facts.vm_inventory_path(plan, session.esxi, plan.vm_name(node))
        vm = required(session.content.searchIndex, "searchIndex").FindByInventoryPath(path)
        if vm is None:
            raise LabError(f"no VM at {path}")
        run_task(Reporter(console), f"power off {plan.vm_name(node)}", vm.PowerOffVM_Task)
    finally:
        session.close()


def _chap(plan: Plan) -> dict[str, str] | None:
    """The initiator's CHAP credentials, as the hosts use them."""
    if not plan.target.chap:
        return None
    state = StateDir(plan.state_dir, persist=False)
    if not state.has_secret("chap"):
        raise LabError(f"no CHAP secret in {plan.state_dir}; apply the lab plan first")
    return {"name": plan.chap_name, "secret": state.secret("chap")}


def _wait_served(
    plan: Plan, naa: str, chap: dict[str, str] | None, since: float, waiting: Callable[[float], None]
) -> float:
    reported = since
    while True:
        try:
            if any(lun.naa == naa for lun in probe(str(plan.network.vip), ISCSI_PORT, chap)):
                return time.monotonic() - since
        except LabError:
            pass  # nobody answers on the VIP yet
        now = time.monotonic()
        if now - since > SERVE_TIMEOUT_S:
            raise LabError(f"{naa} not served on {plan.network.vip} within {SERVE_TIMEOUT_S:.0f} s")
        if now - reported >= REPORT_EVERY_S:
            waiting(now - since)
            reported = now
        time.sleep(0.5)
