"""A disk replaced under --allow-destroy is destroyed only if it still is the disk
the diff decided on (file and size re-read right before the reconfigure)."""

import pytest
from pyVmomi import vim

from orchestrator.stages.vms.apply import _device_spec
from orchestrator.stages.vms.operations import RemoveDisk
from orchestrator.vsphere.session import VSphereError

FILE = "[ds] vsa-node1/vsa-node1_data.vmdk"


def disk(file: str, capacity_kb: int) -> vim.vm.device.VirtualDisk:
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=file)
    return vim.vm.device.VirtualDisk(key=2002, capacityInKB=capacity_kb, backing=backing)


def test_the_decided_disk_is_removed_with_its_file():
    spec = _device_spec(RemoveDisk(2002, True, FILE, 8 << 20), {2002: disk(FILE, 8 << 20)}, 1000, None)
    assert (spec.operation, spec.fileOperation) == ("remove", "destroy")


@pytest.mark.parametrize("now", [disk(FILE, 9 << 20), disk("[ds] other/other.vmdk", 8 << 20)])
def test_a_disk_that_changed_since_the_diff_is_never_destroyed(now):
    with pytest.raises(VSphereError, match="refusing to destroy disk 2002"):
        _device_spec(RemoveDisk(2002, True, FILE, 8 << 20), {2002: now}, 1000, None)


def test_a_disk_gone_since_the_diff_stops_the_reconfigure():
    with pytest.raises(VSphereError, match="disk 2002 is gone since the diff"):
        _device_spec(RemoveDisk(2002, True, FILE, 8 << 20), {}, 1000, None)
