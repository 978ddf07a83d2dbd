"""Drift of the storage VMs, healed by a rerun; and what a rerun refuses to do."""

import pytest
from pyVmomi import vim

from tests.vsphere.conftest import Site, vsa, wait_task

GB_KB = 1024 * 1024
Spec = vim.vm.device.VirtualDeviceSpec


@pytest.fixture
def deployed(site: Site, capsys) -> Site:
    assert vsa(site.plan, "--yes") == 0
    capsys.readouterr()
    return site


def reconfigure(vm: vim.VirtualMachine, spec: vim.vm.ConfigSpec) -> None:
    wait_task(vm.ReconfigVM_Task(spec))


def nics(vm: vim.VirtualMachine) -> list:
    found = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    return sorted(found, key=lambda d: d.key)


def data_disk(vm: vim.VirtualMachine, role_unit: int = 2) -> vim.vm.device.VirtualDisk:
    controller = next(
        d.key
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.ParaVirtualSCSIController) and d.busNumber == 1
    )
    return next(
        d
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualDisk)
        and d.controllerKey == controller
        and d.unitNumber == role_unit
    )


def heal(site: Site, capsys, *extra: str) -> str:
    """Dry run shows the drift (exit 2), the rerun heals it, the next dry run is clean."""
    assert vsa(site.plan, "--dry-run", *extra) == 2
    shown = capsys.readouterr().out
    assert vsa(site.plan, "--yes", *extra) == 0
    capsys.readouterr()
    assert vsa(site.plan, "--dry-run") == 0
    return shown


def test_powered_off_vm_is_powered_on(deployed: Site, capsys):
    vm = deployed.vm("vsa-node1")
    wait_task(vm.PowerOffVM_Task())

    shown = heal(deployed, capsys)

    assert "~ power: poweredOff -> poweredOn" in shown
    assert vm.runtime.powerState == "poweredOn"


def test_missing_nic_is_added_back_with_its_mac(deployed: Site, capsys):
    vm = deployed.vm("vsa-node2")
    replication = nics(vm)[1]
    mac = replication.macAddress
    reconfigure(vm, vim.vm.ConfigSpec(deviceChange=[Spec(operation="remove", device=replication)]))

    shown = heal(deployed, capsys)

    assert "+ nic replication: VirtualVmxnet3 on VSA-Replication" in shown
    assert [(n.backing.deviceName, n.macAddress) for n in nics(vm)][1] == ("VSA-Replication", mac)


def test_nic_on_wrong_portgroup_is_moved_back(deployed: Site, capsys):
    vm = deployed.vm("vsa-node1")
    iscsi = nics(vm)[0]
    iscsi.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network")
    reconfigure(vm, vim.vm.ConfigSpec(deviceChange=[Spec(operation="edit", device=iscsi)]))

    shown = heal(deployed, capsys)

    assert "~ nic iscsi: VirtualVmxnet3 on VM Network" in shown
    assert [n.backing.deviceName for n in nics(vm)] == ["VSA-iSCSI", "VSA-Replication"]


def test_changed_cpu_and_memory_are_restored_with_a_power_cycle(deployed: Site, capsys):
    vm = deployed.vm("vsa-node2")
    wait_task(vm.PowerOffVM_Task())
    reconfigure(vm, vim.vm.ConfigSpec(numCPUs=2, memoryMB=2048))
    wait_task(vm.PowerOnVM_Task())
    deployed.info.reset_calls()

    shown = heal(deployed, capsys)

    assert "~ cpus: 2 -> 1" in shown
    assert "~ memory_mb: 2048 -> 1024" in shown
    assert "needs a power cycle" in shown
    assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (1, 1024)
    assert vm.runtime.powerState == "poweredOn"
    methods = deployed.info.calls()["methods"]
    assert methods.get("ShutdownGuest", 0) + methods.get("PowerOffVM_Task", 0) == 1
    assert methods.get("PowerOnVM_Task") == 1


def test_detached_disk_is_reattached_from_its_file(deployed: Site, capsys):
    vm = deployed.vm("vsa-node1")
    disk = data_disk(vm)
    path = disk.backing.fileName
    reconfigure(vm, vim.vm.ConfigSpec(deviceChange=[Spec(operation="remove", device=disk)]))
    files_before = deployed.datastore_files("esx1-local", "vsa-node1")

    shown = heal(deployed, capsys)

    assert f"re-attach existing {path}" in shown
    assert data_disk(vm).backing.fileName == path
    assert data_disk(vm).capacityInKB == 4 * GB_KB
    assert deployed.datastore_files("esx1-local", "vsa-node1") == files_before


def test_a_dry_run_finds_a_surviving_disk_file_without_a_vsphere_task(deployed: Site, capsys):
    vm = deployed.vm("vsa-node2")
    disk = data_disk(vm)
    path = disk.backing.fileName
    reconfigure(vm, vim.vm.ConfigSpec(deviceChange=[Spec(operation="remove", device=disk)]))
    deployed.info.reset_calls()
    assert vsa(deployed.plan, "--dry-run") == 2
    assert f"re-attach existing {path}" in capsys.readouterr().out
    assert deployed.tasks_since_reset() == {}  # read over /folder, not a SearchDatastore_Task


def test_deleted_disk_is_recreated(deployed: Site, capsys):
    vm = deployed.vm("vsa-node1")
    disk = data_disk(vm, role_unit=1)
    path = disk.backing.fileName
    reconfigure(
        vm,
        vim.vm.ConfigSpec(deviceChange=[Spec(operation="remove", device=disk, fileOperation="destroy")]),
    )
    assert "vsa-node1_config.vmdk" not in deployed.datastore_files("esx1-local", "vsa-node1")

    shown = heal(deployed, capsys)

    assert f"+ disk config (scsi1:1): 1 GB ({path})" in shown
    assert "re-attach" not in shown
    assert data_disk(vm, role_unit=1).backing.fileName == path
    assert "vsa-node1_config.vmdk" in deployed.datastore_files("esx1-local", "vsa-node1")


def test_growing_the_data_disk_extends_it(deployed: Site, capsys):
    deployed.edit_plan("data_disk_gb = 4", "data_disk_gb = 6")

    shown = heal(deployed, capsys)

    assert "~ disk data (scsi1:2): 4 GB -> 6 GB" in shown
    assert data_disk(deployed.vm("vsa-node2")).capacityInKB == 6 * GB_KB


def test_shrinking_the_data_disk_is_refused_unless_the_node_is_named(deployed: Site, capsys):
    deployed.edit_plan("data_disk_gb = 4", "data_disk_gb = 2")
    deployed.info.reset_calls()

    assert vsa(deployed.plan, "--yes") == 1

    out = capsys.readouterr().err
    assert "data disk is 4 GB but the plan says 2 GB; a disk is never shrunk" in out
    assert "--allow-destroy node1" in out and "--allow-destroy node2" in out
    assert deployed.tasks_since_reset() == {}
    assert data_disk(deployed.vm("vsa-node1")).capacityInKB == 4 * GB_KB

    assert vsa(deployed.plan, "--yes", "--allow-destroy", "node1,node2") == 0
    assert data_disk(deployed.vm("vsa-node1")).capacityInKB == 2 * GB_KB


def test_a_node_removed_from_the_plan_is_kept_unless_named(deployed: Site, capsys):
    deployed.edit_plan('node = "node2"', 'node = "node3"')

    assert vsa(deployed.plan, "--yes") == 1

    out = capsys.readouterr().err
    assert "vm vsa-node2: belongs to this plan (node node2) but the plan no longer lists it" in out
    assert deployed.vm_names() == ["vsa-appliance", "vsa-node1", "vsa-node2"]

    assert vsa(deployed.plan, "--yes", "--allow-destroy", "node2") == 0
    assert deployed.vm_names() == ["vsa-appliance", "vsa-node1", "vsa-node3"]
