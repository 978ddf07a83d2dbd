"""[ha] manager = "pacemaker" on the embedded lab's real VMs: Corosync and
Pacemaker configured by the guest stage, the LUN served by ocf:vsa:serve, a
hard failover under a writer that records every acknowledged block, and the
fence-peer handler's constraint lifted once the victim is back and resynced.

One lab for the module, in test order. The plan runs with ha.two_node = true
(two votes: the witness VM is not built yet); every run says so.
"""

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.lab import commands
from orchestrator.plan import Plan, load_plan
from tests.lab.acked_writes import AckedWriter
from tests.lab.conftest import report
from tests.lab.nodes import REPO, inside, on, wait_for

HEALTHY_TIMEOUT_S = 600
NODES = ("node1", "node2")
PACEMAKER = '[ha]\nmanager = "pacemaker"\ntwo_node = true\n\n'


@dataclass(frozen=True)
class Lab:
    folder: Path
    plan: Plan


@pytest.fixture(scope="module")
def lab(tmp_path_factory, appliance, _lab_host) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("pacemaker") / "lab"
    plan_path = commands.lab_up(folder)
    text = plan_path.read_text()
    plan_path.write_text(text.replace("[target]", PACEMAKER + "[target]", 1))
    try:
        yield Lab(folder, load_plan(plan_path))
    finally:
        commands.lab_down(folder)


def run(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    return inside("-m", "orchestrator", str(lab.plan.path), *args)


def status(lab: Lab) -> tuple[int, dict]:
    result = inside("-m", "orchestrator", "status", str(lab.plan.path), "--json")
    return result.returncode, json.loads(result.stdout)


def wait_healthy(lab: Lab) -> float:
    return wait_for(lambda: status(lab)[0] == 0, HEALTHY_TIMEOUT_S)


def constraints(lab: Lab) -> str:
    return on(lab.plan, "node1", "cibadmin -Q -o constraints")


def test_apply_configures_pacemaker_and_serves_the_lun(lab: Lab):
    began = time.monotonic()
    applied = run(lab, "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report(f"pacemaker apply: {time.monotonic() - began:.1f} s")
    assert "ha.two_node = true" in applied.stderr  # warned on every run
    code, site = status(lab)
    assert code == 0, site["problems"]
    views = {view["node"]: view for view in site["nodes"]}
    assert all(views[n]["manager"] == "pacemaker" and views[n]["quorate"] for n in NODES)
    active = site["active_node"]
    assert "vsa-serve\t(ocf:vsa:serve):\t Started " + active in on(lab.plan, active, "crm_mon -1r")
    # heartbeat is installed in the same image but never started
    assert {
        on(lab.plan, n, "systemctl is-enabled heartbeat; systemctl is-active heartbeat") for n in NODES
    } == {"disabled\ninactive\n"}


def test_a_second_run_changes_nothing_and_restarts_nothing(lab: Lab):
    probe = (
        "systemctl show -p ActiveEnterTimestamp corosync pacemaker; stat -c %Y /etc/corosync/corosync.conf"
    )
    before = {node: on(lab.plan, node, probe) for node in NODES}
    rerun = run(lab, "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "No changes" in rerun.stdout
    assert {node: on(lab.plan, node, probe) for node in NODES} == before


def test_hard_failover_keeps_every_acknowledged_block_and_the_rerun_lifts_the_fence(lab: Lab):
    victim = status(lab)[1]["active_node"]
    with AckedWriter(lab.plan, round_no=0) as writer:
        writer.wait_more(3, 60)
        failover = subprocess.run(
            [sys.executable, "-m", "orchestrator", "lab", "failover", "--dir", str(lab.folder)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            timeout=600,
        )
        assert failover.returncode == 0, failover.stdout + failover.stderr
        seconds = float(re.search(r"served by node\d ([\d.]+) s after", failover.stdout).group(1))
        report(f"pacemaker failover: {seconds:.1f} s")
        writer.wait_more(2, 60)
    lost = writer.lost()
    report(f"pacemaker failover: {lost} of {len(writer.latest)} blocks lost, {writer.count} writes acked")
    assert lost == 0
    survivor = next(node for node in NODES if node != victim)
    # The survivor outdated its dead peer by a constraint (with quorum: two_node) before promoting.
    assert f'value="{survivor}"' in on(lab.plan, survivor, "cibadmin -Q -o constraints")
    healed = run(lab, "--yes")  # powers the victim on; it resyncs and stays secondary
    assert healed.returncode == 0, healed.stdout + healed.stderr
    report(f"pacemaker: healthy again {wait_healthy(lab):.1f} s after the rerun")
    assert status(lab)[1]["active_node"] == survivor
    # Once both disks are UpToDate, vsa-serve's monitor lifts the constraint.
    wait_for(lambda: 'id="vsa-fence"' not in on(lab.plan, survivor, "cibadmin -Q -o constraints"), 120)
