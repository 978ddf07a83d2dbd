"""The whole stack from one plan, on the embedded lab: the simulated vCenter in
lab mode boots real storage VMs, the guest stage configures DRBD, heartbeat and
the LIO target in them, and the simulated hosts log in to the real LUN through
the VIP (RescanHba does a real iSCSI login with the adapter's CHAP).

One lab for the module, in test order: dry run from empty, apply, a no-op
rerun, CHAP drift on an adapter, a hard failover through the simulator, and
lab up/down. The CLI runs inside the lab namespace, as the README says.
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

from orchestrator.lab import commands, netns
from orchestrator.plan import Plan, load_plan
from orchestrator.stages.contract import STAGE_ORDER
from tests.lab.acked_writes import AckedWriter
from tests.lab.conftest import report
from tests.lab.nodes import REPO, inside, on, wait_for

# Every stage with something to do on an empty lab (its hosts are all in vCenter).
STAGES = tuple(stage for stage in STAGE_ORDER if stage != "hosts")
HEALTHY_TIMEOUT_S = 600


@dataclass(frozen=True)
class Lab:
    folder: Path
    plan: Plan


@pytest.fixture(scope="module")
def lab(tmp_path_factory, appliance, _lab_host) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("end-to-end") / "lab"
    plan_path = commands.lab_up(folder)
    try:
        yield Lab(folder, load_plan(plan_path))
    finally:
        commands.lab_down(folder)


def run(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    """vsa-orchestrate <lab plan> ARGS inside the namespace."""
    return inside("-m", "orchestrator", str(lab.plan.path), *args)


def status(lab: Lab) -> tuple[int, dict]:
    result = inside("-m", "orchestrator", "status", str(lab.plan.path), "--json")
    return result.returncode, json.loads(result.stdout)


def sim_view(lab: Lab, *args: str) -> dict:
    result = inside("-m", "tests.lab.sim_view", str(lab.plan.path), *args, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def reported_naa(lab: Lab) -> str:
    """The NAA the LUN itself reports on VPD page 0x83, read with a real login through the VIP."""
    plan = lab.plan
    secret = (plan.state_dir / "secrets" / "chap").read_text().strip()
    request = {
        "address": str(plan.network.vip),
        "port": 3260,
        "chap": {"name": plan.chap_name, "secret": secret},
    }
    probe = subprocess.run(
        [
            *netns.exec_prefix(),
            sys.executable,
            "-m",
            "orchestrator.lab.hook",
            "--lab-dir",
            str(lab.folder),
            "probe",
        ],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert probe.returncode == 0, probe.stderr
    [lun] = json.loads(probe.stdout)["luns"]
    assert lun["iqn"] == plan.iqn and lun["capacity_bytes"] == plan.storage_vm.data_disk_gb * 2**30
    return lun["naa"]


def stage_times(output: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"stage (\w+): \d+ change\(s\) in ([\d.]+) s", output)
    }


def wait_healthy(lab: Lab) -> float:
    return wait_for(lambda: status(lab)[0] == 0, HEALTHY_TIMEOUT_S)


def test_dry_run_from_an_empty_lab_lists_every_stage(lab: Lab):
    shown = run(lab, "--dry-run", "--json")
    assert shown.returncode == 2, shown.stdout + shown.stderr
    changes = json.loads(shown.stdout)["changes"]
    assert {change["stage"] for change in changes} == set(STAGES)
    resources = {change["resource"] for change in changes}
    assert {"vm vsa-node1", "vm vsa-node2", "node node1", "node node2", "datastore vsa-ds0"} <= resources


def test_apply_from_empty_serves_the_datastore_on_the_luns_own_naa(lab: Lab):
    began = time.monotonic()
    applied = run(lab, "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report(f"end to end apply: {time.monotonic() - began:.1f} s, per stage {stage_times(applied.stdout)}")
    assert set(stage_times(applied.stdout)) == set(STAGE_ORDER)
    code, site = status(lab)
    assert code == 0, site["problems"]
    naa = reported_naa(lab)
    assert site["datastore"]["naa"] == naa
    hosts = sim_view(lab, "show")
    assert len(hosts) == 3
    for name, seen in hosts.items():
        assert seen["luns"] == [naa], name
        assert seen["datastores"][lab.plan.datastore.name] == [naa], name


def test_a_second_run_changes_nothing(lab: Lab):
    probe = "stat -c %Y /etc/ha.d/ha.cf /etc/drbd.d/*.res; systemctl show -p ActiveEnterTimestamp heartbeat"
    before = {node: on(lab.plan, node, probe) for node in ("node1", "node2")}
    sim_view(lab, "reset-calls")
    began = time.monotonic()
    rerun = run(lab, "--yes")
    report(f"end to end no-op rerun: {time.monotonic() - began:.1f} s")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "No changes" in rerun.stdout
    methods = sim_view(lab, "calls")["methods"]
    assert not [
        method for method in methods if method.endswith("_Task") or method.startswith(("Update", "Rescan"))
    ]
    assert {node: on(lab.plan, node, probe) for node in ("node1", "node2")} == before


def test_a_wrong_chap_secret_on_an_adapter_is_healed(lab: Lab):
    naa = reported_naa(lab)
    broken = sim_view(lab, "break-chap", "esx2.lab.local")
    assert broken["esx2.lab.local"]["luns"] == []  # a wrong secret means no disk
    code, site = status(lab)
    assert code == 2 and any("esx2.lab.local" in problem for problem in site["problems"])
    healed = run(lab, "--yes")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert sim_view(lab, "show")["esx2.lab.local"]["luns"] == [naa]
    assert status(lab)[0] == 0


def test_failover_through_the_simulator_keeps_every_acknowledged_block(lab: Lab):
    plan = lab.plan
    naa = reported_naa(lab)
    victim = status(lab)[1]["active_node"]
    with AckedWriter(plan, round_no=0) as writer:
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
        report(f"end to end failover: {seconds:.1f} s")
        writer.wait_more(2, 60)  # the writer goes on through the survivor
    lost = writer.lost()
    report(f"end to end failover: {lost} of {len(writer.latest)} blocks lost, {writer.count} writes acked")
    assert lost == 0
    code, site = status(lab)
    assert code == 2 and site["active_node"] not in (None, victim)
    for name, seen in sim_view(lab, "rescan").items():  # the same device, not a new one
        assert seen["luns"] == [naa] and seen["datastores"][plan.datastore.name] == [naa], name
    healed = run(lab, "--yes")  # powers the victim on; it resyncs and stays secondary
    assert healed.returncode == 0, healed.stdout + healed.stderr
    report(f"end to end: healthy again {wait_healthy(lab):.1f} s after the rerun")
    assert status(lab)[1]["active_node"] not in (None, victim)


def test_lab_up_twice_is_harmless_and_down_then_up_works(lab: Lab):
    pid = (lab.folder / "sim.pid").read_text()
    assert commands.lab_up(lab.folder) == lab.plan.path
    assert (lab.folder / "sim.pid").read_text() == pid
    commands.lab_down(lab.folder)
    assert not netns.exists()
    assert commands.lab_up(lab.folder) == lab.plan.path
    assert (lab.folder / "sim.pid").read_text() != pid
