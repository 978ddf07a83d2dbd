"""The guest stage on two real storage VMs under qemu: first creation, a no-op
rerun, adopted secrets and drift healing. (A hard failover under a writer is
tests/lab/test_end_to_end.py's, through the whole stack.)

The CLI runs inside the lab namespace, as a user's shell would on the storage
network; the data path is checked with a userspace iSCSI initiator (qemu-io
with an iscsi:// URL) through the VIP.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from orchestrator.guest.render import lun_serial
from orchestrator.lab import netns
from orchestrator.lab.qemu import LabVm
from orchestrator.plan import Plan
from orchestrator.state import StateDir
from tests.lab.conftest import report, storage_vm, write_lab_plan
from tests.lab.nodes import active_node, initiator, lun_url, on, qemu_io, vsa, wait_for

GIB = 2**30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, appliance, lab_network) -> Iterator[tuple[Plan, dict[str, LabVm]]]:
    plan = write_lab_plan(tmp_path_factory.mktemp("guest") / "lab")
    folder = plan.base_dir.parent
    vms = {node.node: storage_vm(plan, node, appliance, folder / node.node) for node in plan.storage_nodes}
    for vm in vms.values():
        vm.start()
    try:
        yield plan, vms
    finally:
        for vm in vms.values():
            vm.power_off()


def test_first_apply_serves_one_replicated_lun_at_the_vip(cluster):
    plan, _ = cluster
    wait_for(
        lambda: vsa(plan, "--dry-run").returncode == 2 and "+ drbd" in vsa(plan, "--dry-run").stdout, 300
    )
    began = time.monotonic()
    applied = vsa(plan, "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report(f"guest stage first apply: {time.monotonic() - began:.1f} s")
    for node in ("node1", "node2"):
        drbd = on(plan, node, "cat /proc/drbd")
        assert drbd.count("cs:Connected") == 2 and drbd.count("ds:UpToDate/UpToDate") == 2, drbd
    inquiry = initiator(plan, "iscsi-inq", "-e", "1", "-c", "128").stdout
    assert f"Unit Serial Number:[{lun_serial(plan)}]" in inquiry
    capacity = initiator(plan, "iscsi-readcapacity16", "-s").stdout
    assert int(capacity.strip()) == plan.storage_vm.data_disk_gb * GIB
    written = qemu_io(plan, "write -P 0x5a 0 64k", "read -P 0x5a 0 64k")
    assert "read 65536/65536" in written.stdout
    wrong = lun_url(plan).replace(StateDir(plan.state_dir, persist=False).secret("chap"), "wrong-secret")
    refused = subprocess.run([*netns.exec_prefix(), "iscsi-inq", wrong], capture_output=True, text=True)
    assert refused.returncode != 0
    secrets_text = applied.stdout + applied.stderr + (plan.state_dir / "run.log").read_text()
    for name in ("drbd", "heartbeat", "chap"):
        assert StateDir(plan.state_dir, persist=False).secret(name) not in secrets_text


def test_rerun_changes_nothing_and_restarts_nothing(cluster):
    plan, _ = cluster
    probe = "stat -c %Y /etc/ha.d/ha.cf /etc/drbd.d/*.res; systemctl show -p ActiveEnterTimestamp heartbeat"
    before = {node: on(plan, node, probe) for node in ("node1", "node2")}
    began = time.monotonic()
    rerun = vsa(plan, "--yes")
    report(f"guest stage no-op rerun: {time.monotonic() - began:.1f} s")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "No changes" in rerun.stdout
    assert {node: on(plan, node, probe) for node in ("node1", "node2")} == before


def test_a_lost_state_folder_adopts_the_deployed_secrets(cluster):
    plan, _ = cluster
    folder = plan.state_dir / "secrets"
    before = {path.name: path.read_text() for path in folder.iterdir()}
    shutil.rmtree(folder)
    rerun = vsa(plan, "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "No changes" in rerun.stdout  # nothing rotated: no file rewritten, heartbeat not restarted
    assert {path.name: path.read_text() for path in folder.iterdir()} == before


def test_drift_is_healed(cluster):
    plan, _ = cluster
    standby = "node2" if active_node(plan) == "node1" else "node1"
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


def test_lun_or_chap_removed_from_the_target_is_healed(cluster):
    plan, _ = cluster
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
