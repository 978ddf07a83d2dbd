"""A storage VM whose guest died while vSphere had it powered on is healed by one
rerun, on the embedded lab's real VMs (issue 9, item 3).

One lab for the module, in test order: apply; SIGKILL the serving node's qemu
outside the simulator (the simulator reports the VM poweredOff, as ESXi does
once the VMX is gone; the rerun powers it on and the guest stage waits for it);
freeze the serving guest with the qemu monitor's `stop` (the peer takes over;
the dry run shows the reset; the run resets it); freeze the standby while the
active node does not serve (refused with one line, no reset). The CLI runs
inside the lab namespace, as the README says.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.lab import commands, netns
from orchestrator.lab.qemu import monitor, qemu_pid
from orchestrator.lab.simulator import LabError
from orchestrator.plan import ISCSI_PORT, Plan, load_plan
from tests.lab.conftest import report
from tests.lab.nodes import inside, on, wait_for

HEALTHY_TIMEOUT_S = 600
TAKEOVER_TIMEOUT_S = 180


@dataclass(frozen=True)
class Lab:
    folder: Path
    plan: Plan

    def vm_folder(self, node: str) -> Path:
        return self.folder / "vms" / self.plan.vm_name(node)

    def peer(self, node: str) -> str:
        return next(other.node for other in self.plan.storage_nodes if other.node != node)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, appliance, _lab_host) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("crash-heal") / "lab"
    plan_path = commands.lab_up(folder)
    try:
        yield Lab(folder, load_plan(plan_path))
    finally:
        for vm in (folder / "vms").glob("*"):
            if qemu_pid(vm) is not None:  # a guest a failed test left frozen
                with contextlib.suppress(OSError, LabError):
                    monitor(vm, "cont")
        commands.lab_down(folder)


def run(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    """vsa-orchestrate <lab plan> ARGS inside the namespace."""
    return inside("-m", "orchestrator", str(lab.plan.path), *args)


def status(lab: Lab) -> tuple[int, dict]:
    result = inside("-m", "orchestrator", "status", str(lab.plan.path), "--json")
    return result.returncode, json.loads(result.stdout)


def node_view(lab: Lab, node: str) -> dict:
    return next(view for view in status(lab)[1]["nodes"] if view["node"] == node)


def sim_calls(lab: Lab, action: str = "calls") -> dict:
    result = inside("-m", "tests.lab.sim_view", str(lab.plan.path), action, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def tasks(lab: Lab) -> dict[str, int]:
    return {name: count for name, count in sim_calls(lab)["methods"].items() if name.endswith("_Task")}


def wait_healthy(lab: Lab) -> float:
    return wait_for(lambda: status(lab)[0] == 0, HEALTHY_TIMEOUT_S)


def wait_takeover(lab: Lab, survivor: str) -> float:
    """Until the target answers on the VIP again, then `status` must show the survivor
    serving. (Polled with a TCP connect, as an initiator would, not with `status`:
    heartbeat is not asked for its state over and over while it takes over.)"""

    def answers() -> bool:
        try:
            with netns.connect(str(lab.plan.network.vip), ISCSI_PORT, timeout=2):
                return True
        except OSError:
            return False

    seconds = wait_for(answers, TAKEOVER_TIMEOUT_S)
    view = node_view(lab, survivor)
    assert view["holds_vip"] and view["target_running"], view
    return seconds


def errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_apply_brings_the_site_up(lab: Lab):
    applied = run(lab, "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report(f"crash heal: site up, healthy {wait_healthy(lab):.1f} s after the apply")


def test_a_qemu_killed_outside_the_simulator_is_powered_on_by_one_rerun(lab: Lab):
    victim = status(lab)[1]["active_node"]
    survivor = lab.peer(victim)
    killed = time.monotonic()
    os.kill(qemu_pid(lab.vm_folder(victim)), signal.SIGKILL)  # not through the simulator
    wait_for(lambda: node_view(lab, victim)["power"] == "poweredOff", 60)
    report(f"crash heal: killed qemu of {victim} reads poweredOff after {time.monotonic() - killed:.1f} s")
    report(f"crash heal: {survivor} serves {wait_takeover(lab, survivor):.1f} s later")

    sim_calls(lab, "reset-calls")
    rerun = run(lab, "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert tasks(lab).get("PowerOnVM_Task") == 1 and "ResetVM_Task" not in tasks(lab)
    healthy = wait_healthy(lab)
    report(
        f"crash heal: SIGKILLed qemu: healthy {healthy:.1f} s after the rerun, "
        f"{time.monotonic() - killed:.1f} s after the kill"
    )
    assert status(lab)[1]["active_node"] == survivor  # auto_failback off: it stays standby


def test_a_frozen_serving_guest_is_reset_while_its_peer_serves(lab: Lab):
    victim = status(lab)[1]["active_node"]
    survivor = lab.peer(victim)
    frozen = time.monotonic()
    monitor(lab.vm_folder(victim), "stop")  # hung: the process lives, the guest runs nothing
    report(f"crash heal: frozen {victim}; {survivor} serves {wait_takeover(lab, survivor):.1f} s later")
    assert node_view(lab, victim)["power"] == "poweredOn"  # vSphere cannot tell

    sim_calls(lab, "reset-calls")
    shown = run(lab, "--dry-run")
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert f"~ vm {lab.plan.vm_name(victim)}" in shown.stdout
    reset = re.search(rf"reset \(guest not answering for (\d+) s; {survivor} serves\)", shown.stdout)
    assert reset and int(reset.group(1)) >= lab.plan.reset_after_s, shown.stdout
    assert tasks(lab) == {}  # a dry run resets nothing

    applied = run(lab, "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert tasks(lab) == {"ResetVM_Task": 1}
    healthy = wait_healthy(lab)
    report(
        f"crash heal: frozen guest: healthy {healthy:.1f} s after the rerun, "
        f"{time.monotonic() - frozen:.1f} s after the freeze"
    )
    assert status(lab)[1]["active_node"] == survivor


def test_a_frozen_standby_is_not_reset_while_the_active_node_does_not_serve(lab: Lab):
    active = status(lab)[1]["active_node"]
    standby = lab.peer(active)
    vip = str(lab.plan.network.vip)
    # The active node stops serving (its VIP gone: heartbeat's haresources do not
    # monitor it), then the standby hangs: neither node can be trusted to be reset.
    drop_vip = (
        f"ip -o -4 addr | awk '$4 ~ /^{vip}\\// {{print $4, $2}}' | "
        "while read cidr dev; do ip addr del $cidr dev $dev; done"
    )
    on(lab.plan, active, drop_vip)
    assert not status(lab)[1]["active_node"]
    monitor(lab.vm_folder(standby), "stop")
    try:
        sim_calls(lab, "reset-calls")
        refused = run(lab, "--yes")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        [line] = errors(refused)
        assert line.startswith(f"error: vm {lab.plan.vm_name(standby)}: powered on, but its guest"), line
        assert f"it is not reset: {active} does not hold the VIP" in line
        assert "Nothing was changed" in refused.stderr
        assert tasks(lab) == {}
    finally:
        monitor(lab.vm_folder(standby), "cont")
