"""The guest stage's data-safety interlocks on two real storage nodes (DESIGN.md):
a disk holding data is refused, existing DRBD metadata is adopted, a replaced
node resyncs without anything forced primary, and a split brain provoked by
hand is reported with exit 1 and nothing changed."""

from collections.abc import Iterator

import pytest

from orchestrator.guest import layout
from orchestrator.guest.facts import DrbdMetadata, ProcDrbd
from orchestrator.lab.qemu import LabVm
from orchestrator.plan import Plan
from tests.lab.conftest import report, storage_vm, write_lab_plan
from tests.lab.nodes import active_node, fully_synced, on, qemu_io, vsa, wait_for, wait_ssh

META, CONFIG, DATA = "/dev/sdb", "/dev/sdc", "/dev/sdd"  # the lab VM's data disks (sda is the OS)
LUN = layout.LUN.name
SYNC_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def pair(tmp_path_factory, appliance, lab_network) -> Iterator[Plan]:
    plan = write_lab_plan(tmp_path_factory.mktemp("interlocks") / "lab", data_disk_gb=1)
    folder = plan.base_dir.parent
    vms: dict[str, LabVm] = {
        node.node: storage_vm(plan, node, appliance, folder / node.node) for node in plan.storage_nodes
    }
    for vm in vms.values():
        vm.start()
    try:
        wait_ssh(plan)
        yield plan
    finally:
        for vm in vms.values():
            vm.power_off()


def drbd(plan: Plan, node: str) -> str:
    return on(plan, node, "cat /proc/drbd")


def lun_state(plan: Plan, node: str) -> tuple[str, str, str]:
    """The LUN resource's connection, roles and disk states on a node."""
    state = ProcDrbd().process(drbd(plan, node))[layout.LUN.minor]
    return state.cs, state.ro, state.ds


def take_down(plan: Plan, node: str) -> None:
    """Heartbeat stopped and both DRBD resources down on a node. A standby's `drbdadm down` may
    return before its peer has dealt with the lost connection (the primary's fence-peer handler
    runs then), so the test waits until the kernel has no resource left rather than trusting it."""
    on(plan, node, "systemctl stop heartbeat", check=True)
    on(plan, node, "drbdadm down all")
    wait_for(lambda: all(s.cs == "Unconfigured" for s in ProcDrbd().process(drbd(plan, node)).values()), 60)


def test_a_data_disk_holding_a_filesystem_is_refused_naming_node_and_disk(pair):
    plan = pair
    on(plan, "node2", f"mkfs.ext4 -q -F {DATA}", check=True)
    for args in (("--dry-run",), ("--yes",)):
        refused = vsa(plan, *args)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        shown = refused.stdout + refused.stderr
        assert "node node2" in shown and "ext4" in shown and "never overwritten" in shown
        assert "data disk /dev/disk/by-path/" in shown and f"({DATA})" in shown
    for node in ("node1", "node2"):  # nothing changed anywhere
        assert on(plan, node, "ls /etc/drbd.d/*.res 2>/dev/null") == ""
        assert ProcDrbd().process(drbd(plan, node)) == {}
    assert "ext4" in on(plan, "node2", f"blkid -p -s TYPE -o value {DATA}")
    on(plan, "node2", f"wipefs -q -a {DATA}", check=True)
    created = vsa(plan, "--yes")
    assert created.returncode == 0, created.stdout + created.stderr


def test_existing_metadata_is_adopted_never_recreated(pair):
    plan = pair
    standby = "node2" if active_node(plan) == "node1" else "node1"
    assert "wrote 65536" in qemu_io(plan, "write -P 0x3c 0 64k").stdout
    take_down(plan, standby)
    on(plan, standby, "rm /etc/drbd.d/*.res", check=True)
    log_size = (plan.state_dir / "run.log").stat().st_size
    shown = vsa(plan, "--dry-run")
    assert shown.returncode == 2
    assert f"drbd {LUN}: down -> up" in shown.stdout and "metadata" not in shown.stdout
    adopted = vsa(plan, "--yes")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert "create-md" not in (plan.state_dir / "run.log").read_text()[log_size:]
    wait_for(lambda: fully_synced(plan), SYNC_TIMEOUT_S)
    assert "read 65536/65536" in qemu_io(plan, "read -P 0x3c 0 64k", read_only=True).stdout


def test_a_replaced_node_resyncs_without_a_forced_primary(pair):
    plan = pair
    active = active_node(plan)
    replaced = "node2" if active == "node1" else "node1"
    assert "wrote 65536" in qemu_io(plan, "write -P 0x4d 1M 64k").stdout
    wipe = " && ".join(
        f"drbdmeta --force {r.minor} v08 {META} {r.meta_index} wipe-md" for r in layout.RESOURCES
    )
    take_down(plan, replaced)
    on(plan, replaced, f"{wipe} && wipefs -q -a {CONFIG} {DATA}", check=True)
    metadata = DrbdMetadata(META)
    assert not any(metadata.process(on(plan, replaced, metadata.command)).values())
    log_size = (plan.state_dir / "run.log").stat().st_size
    shown = vsa(plan, "--dry-run")
    assert shown.returncode == 2
    assert shown.stdout.count("metadata: created (disk verified empty; full resync from peer)") == 2, (
        shown.stdout
    )
    assert "+ drbd\n" not in shown.stdout  # not a first creation: nothing skips the sync
    applied = vsa(plan, "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    commands = (plan.state_dir / "run.log").read_text()[log_size:]
    assert "primary" not in commands and "new-current-uuid" not in commands
    synced = wait_for(lambda: fully_synced(plan), SYNC_TIMEOUT_S)
    report(f"replaced node: full resync of 2 x 1 GiB in {synced:.1f} s")
    assert "ro:Secondary/Primary" in drbd(plan, replaced) and active_node(plan) == active
    assert "read 65536/65536" in qemu_io(plan, "read -P 0x4d 1M 64k", read_only=True).stdout
    assert vsa(plan, "--dry-run").returncode == 0


def test_split_brain_is_reported_and_nothing_is_changed(pair):
    plan = pair
    active = active_node(plan)
    victim = "node2" if active == "node1" else "node1"
    # Provoke it as a hurried admin would: cut the link, force the standby primary, write on both sides.
    on(plan, victim, f"drbdadm disconnect {LUN}", check=True)
    on(
        plan,
        victim,
        f"drbdadm primary --force {LUN} && "
        f"dd if=/dev/urandom of=/dev/drbd{layout.LUN.minor} bs=4k count=1 seek=4000 oflag=direct "
        f"status=none && drbdadm secondary {LUN}",
        check=True,
    )
    assert "wrote 65536" in qemu_io(plan, "write -P 0x6e 2M 64k").stdout
    on(plan, victim, f"drbdadm connect {LUN}", check=True)
    marker = f"{layout.SPLIT_BRAIN_PREFIX}{LUN}"
    wait_for(lambda: any(marker in on(plan, n, f"ls {layout.SPLIT_BRAIN_DIR}") for n in (active, victim)), 60)
    wait_for(lambda: lun_state(plan, victim)[0] == "StandAlone", 60)
    states = {node: lun_state(plan, node) for node in (active, victim)}
    report(f"split brain provoked: {states}")
    for args in (("--dry-run",), ("--yes",)):
        refused = vsa(plan, *args)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        shown = refused.stdout + refused.stderr
        assert f"drbd {LUN}" in shown and "split brain" in shown
        assert f"drbdadm connect --discard-my-data {LUN}" in shown
        assert active in shown and victim in shown
    assert {node: lun_state(plan, node) for node in (active, victim)} == states  # not reconnected/promoted
    # The user decides: the victim's change is discarded.
    on(plan, victim, f"drbdadm secondary {LUN} && drbdadm connect --discard-my-data {LUN}", check=True)
    on(plan, active, f"drbdadm connect {LUN}")
    wait_for(lambda: fully_synced(plan), SYNC_TIMEOUT_S)
    healed = vsa(plan, "--yes")  # only forgets the split brain now
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert vsa(plan, "--dry-run").returncode == 0
    assert "read 65536/65536" in qemu_io(plan, "read -P 0x6e 2M 64k", read_only=True).stdout
