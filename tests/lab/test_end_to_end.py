"""The whole stack from one plan, on the embedded lab: the simulated vCenter in
lab mode boots real storage VMs, the guest stage configures DRBD, heartbeat and
the LIO target in them, and the simulated hosts log in to the real LUN through
the VIP (RescanHba does a real iSCSI login with the adapter's CHAP).

One lab for the module, in test order: dry run from empty, apply, a no-op
rerun, CHAP drift on an adapter, the lab hook's probe refusing a wrong secret
or a silent portal; the guest stage alone (--only guest) adopting
the deployed secrets into a lost state folder and healing drift in a node's
files, DRBD connection and LIO target; then the crash heals of issue 9: the serving
node's qemu SIGKILLed outside the simulator under a writer (the simulator
reports the VM poweredOff, as ESXi does once the VMX is gone; the peer serves
every acknowledged block; one rerun powers it on), the serving guest frozen
with the qemu monitor's `stop` (the dry run shows the reset; the run resets
it), the standby frozen while the active node does not serve (refused with one
line, no reset); last, lab up twice, and down leaving nothing running or
listening. The CLI runs inside the lab namespace, as
the README says.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.guest.render import lun_serial
from orchestrator.lab import commands, netns
from orchestrator.lab.qemu import monitor, qemu_pid
from orchestrator.lab.simulator import LabError
from orchestrator.plan import ISCSI_PORT, Plan, load_plan
from orchestrator.stages.contract import STAGE_ORDER
from orchestrator.state import StateDir
from tests.lab.acked_writes import AckedWriter
from tests.lab.conftest import report
from tests.lab.nodes import REPO, active_node, initiator, inside, lun_url, on, vsa, wait_for

# Every stage with something to do on an empty lab (its hosts are all in vCenter).
STAGES = tuple(stage for stage in STAGE_ORDER if stage != "hosts")
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
    folder = tmp_path_factory.mktemp("end-to-end") / "lab"
    plan_path = commands.lab_up(folder, manager="heartbeat")
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


def sim_view(lab: Lab, *args: str) -> dict:
    result = inside("-m", "tests.lab.sim_view", str(lab.plan.path), *args, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def node_view(lab: Lab, node: str) -> dict:
    return next(view for view in status(lab)[1]["nodes"] if view["node"] == node)


def tasks(lab: Lab) -> dict[str, int]:
    return {
        name: count for name, count in sim_view(lab, "calls")["methods"].items() if name.endswith("_Task")
    }


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


def hook_probe(lab: Lab, address: str, chap: dict | None) -> tuple[int, str, str]:
    """The simulator's call: the lab hook's probe verb, run inside the lab namespace."""
    request = {"address": address, "port": ISCSI_PORT, "chap": chap}
    result = subprocess.run(
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
    return result.returncode, result.stdout, result.stderr


def running(pid: int) -> bool:
    """Whether the process exists and is no zombie (a killed daemon waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def reported_naa(lab: Lab) -> str:
    """The NAA the LUN itself reports on VPD page 0x83, read with a real login through the VIP."""
    plan = lab.plan
    secret = (plan.state_dir / "secrets" / "chap").read_text().strip()
    code, out, err = hook_probe(lab, str(plan.network.vip), {"name": plan.chap_name, "secret": secret})
    assert code == 0, err
    [lun] = json.loads(out)["luns"]
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
    plan, state = lab.plan, StateDir(lab.plan.state_dir, persist=False)
    for node in ("node1", "node2"):
        drbd = on(plan, node, "cat /proc/drbd")
        assert drbd.count("cs:Connected") == 2 and drbd.count("ds:UpToDate/UpToDate") == 2, drbd
    wrong = lun_url(plan).replace(state.secret("chap"), "wrong-secret")
    assert subprocess.run([*netns.exec_prefix(), "iscsi-inq", wrong], capture_output=True).returncode != 0
    printed = applied.stdout + applied.stderr + (plan.state_dir / "run.log").read_text()
    for name in ("drbd", "heartbeat", "chap"):
        assert state.secret(name) not in printed


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


def test_the_hook_probe_refuses_a_wrong_secret_and_a_silent_portal(lab: Lab):
    """The simulator's RescanHba call (the lab hook's probe verb) on the real target: a
    wrong secret, no CHAP, or a portal nobody answers gives no LUN, and never the secret."""
    secret = StateDir(lab.plan.state_dir, persist=False).secret("chap")
    vip = str(lab.plan.network.vip)
    for address, chap in (
        (vip, {"name": lab.plan.chap_name, "secret": "not-" + secret}),
        (vip, None),
        ("10.11.55.99", {"name": lab.plan.chap_name, "secret": secret}),
    ):
        code, out, err = hook_probe(lab, address, chap)
        assert (code, out) == (1, "") and secret not in err, (address, err)
    assert "Authentication failure" in hook_probe(lab, vip, {"name": lab.plan.chap_name, "secret": "x"})[2]


def test_a_lost_state_folder_adopts_the_deployed_secrets(lab: Lab):
    folder = lab.plan.state_dir / "secrets"
    before = {path.name: path.read_text() for path in folder.iterdir()}
    shutil.rmtree(folder)
    rerun = vsa(lab.plan, "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "No changes" in rerun.stdout  # nothing rotated: no file rewritten, heartbeat not restarted
    assert {path.name: path.read_text() for path in folder.iterdir()} == before


def test_guest_drift_is_healed(lab: Lab):
    plan = lab.plan
    standby = lab.peer(active_node(plan))
    on(
        plan,
        standby,
        "echo '# edited by hand' >> /etc/ha.d/ha.cf; rm /etc/hosts; drbdadm disconnect iscsi.target.0",
    )
    shown = vsa(plan, "--dry-run")
    assert shown.returncode == 2
    assert "/etc/ha.d/ha.cf" in shown.stdout and "/etc/hosts" in shown.stdout
    assert "drbd iscsi.target.0: StandAlone -> connected" in shown.stdout
    healed = vsa(plan, "--yes")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert vsa(plan, "--dry-run").returncode == 0
    wait_for(lambda: on(plan, standby, "cat /proc/drbd").count("cs:Connected") == 2, 60)


def test_lun_or_chap_removed_from_the_target_is_healed(lab: Lab):
    plan = lab.plan
    active = active_node(plan)
    lookup = (
        "from rtslib_fb import Target, FabricModule; "
        f"t = Target(FabricModule('iscsi'), '{plan.iqn}', mode='lookup'); "
    )
    on(plan, active, f'python3 -c "{lookup}[lun.delete() for tpg in t.tpgs for lun in tpg.luns]"')
    shown = vsa(plan, "--dry-run")
    assert shown.returncode == 2 and "~ iSCSI target: stopped -> running" in shown.stdout
    assert vsa(plan, "--yes").returncode == 0
    assert (
        f"Unit Serial Number:[{lun_serial(plan)}]"
        in initiator(plan, "iscsi-inq", "-e", "1", "-c", "128").stdout
    )
    on(plan, active, f"python3 -c \"{lookup}[tpg.set_attribute('authentication', '0') for tpg in t.tpgs]\"")
    assert vsa(plan, "--dry-run").returncode == 2
    assert vsa(plan, "--yes").returncode == 0
    assert vsa(plan, "--dry-run").returncode == 0
    healed = run(lab, "--yes")  # the whole plan: the hosts see their LUN again
    assert healed.returncode == 0, healed.stdout + healed.stderr
    wait_healthy(lab)


def test_a_qemu_killed_outside_the_simulator_loses_no_block_and_one_rerun_powers_it_on(lab: Lab):
    plan = lab.plan
    naa = reported_naa(lab)
    victim = status(lab)[1]["active_node"]
    survivor = lab.peer(victim)
    with AckedWriter(plan, round_no=0) as writer:
        writer.wait_more(3, 60)
        killed = time.monotonic()
        os.kill(qemu_pid(lab.vm_folder(victim)), signal.SIGKILL)  # not through the simulator
        wait_for(lambda: node_view(lab, victim)["power"] == "poweredOff", 60)
        report(
            f"crash heal: killed qemu of {victim} reads poweredOff after {time.monotonic() - killed:.1f} s"
        )
        report(f"end to end failover: {survivor} serves {wait_takeover(lab, survivor):.1f} s later")
        writer.wait_more(2, 60)  # the writer goes on through the survivor
    lost = writer.lost()
    report(f"end to end failover: {lost} of {len(writer.latest)} blocks lost, {writer.count} writes acked")
    assert lost == 0
    for name, seen in sim_view(lab, "rescan").items():  # the same device, not a new one
        assert seen["luns"] == [naa] and seen["datastores"][plan.datastore.name] == [naa], name

    sim_view(lab, "reset-calls")
    rerun = run(lab, "--yes")  # powers the victim on; it resyncs and stays secondary
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

    sim_view(lab, "reset-calls")
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
        sim_view(lab, "reset-calls")
        refused = run(lab, "--yes")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        [line] = errors(refused)
        assert line.startswith(f"error: vm {lab.plan.vm_name(standby)}: powered on, but its guest"), line
        assert f"it is not reset: {active} does not hold the VIP" in line
        assert "Nothing was changed" in refused.stderr
        assert tasks(lab) == {}
    finally:
        monitor(lab.vm_folder(standby), "cont")


def test_lab_up_twice_is_harmless_and_down_leaves_nothing_running_or_listening(lab: Lab):
    pid = int((lab.folder / "sim.pid").read_text())
    assert commands.lab_up(lab.folder, manager="heartbeat") == lab.plan.path
    assert int((lab.folder / "sim.pid").read_text()) == pid
    qemus = [qemu_pid(vm) for vm in sorted((lab.folder / "vms").iterdir())]
    assert all(qemus) and len(qemus) == 2
    port = json.loads((lab.folder / "sim.json").read_text())["port"]
    commands.lab_down(lab.folder)
    assert not running(pid) and not any(running(q) for q in qemus if q)
    assert not netns.exists()
    with socket.socket() as probe:  # nor on the root namespace's loopback
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    # down, then up again: a fresh lab; `lab status` says which.
    assert commands.lab_up(lab.folder, manager="heartbeat") == lab.plan.path
    assert int((lab.folder / "sim.pid").read_text()) != pid
    assert main(["lab", "status", "--dir", str(lab.folder)]) == 0
    commands.lab_down(lab.folder)
    assert main(["lab", "status", "--dir", str(lab.folder)]) == 2
