"""Fixtures for tests on real storage VMs: the appliance image (built once and
cached), the lab network namespace, the lab plan, and a storage node's VM.

A machine without qemu, debootstrap or xorriso fails here, saying what to
install; these tests need root (debootstrap, network namespaces).
"""

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from orchestrator.appliance.build import Appliance, build_appliance
from orchestrator.identity import nic_mac, node_identity, ssh_public_key
from orchestrator.lab import netns
from orchestrator.lab.qemu import Disk, LabVm, Nic, VmSpec
from orchestrator.lab.seed import nocloud_files, write_seed
from orchestrator.plan import Plan, StorageNode, load_plan
from orchestrator.state import StateDir, new_ed25519_key

LAB_TOOLS = {
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "xorriso": "xorriso",
    "ip": "iproute2",
}
GIB = 2**30

# The lab plan's storage topology (orchestrator/lab/templates/lab.toml.j2); these
# tests boot the nodes without a simulated vCenter, so its vSphere part is a placeholder.
LAB_PLAN = """
name = "vsa"

[vsphere]
server = "127.0.0.1"
user = "user"
password = { file = "vsphere-password" }
thumbprint = "AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB"
datacenter = "DC0"

[network]
iscsi_portgroup = "VSA-iSCSI"
iscsi_prefix = 24
vip = "10.11.55.50"
replication_portgroup = "VSA-Replication"
replication_prefix = 24

[ha]
manager = "heartbeat"   # these plans' pairs run the original recipe (tests/lab/test_pacemaker.py: the other)

[storage_vm]
source = { template = "vsa-appliance" }
memory_mb = 1024
meta_disk_gb = 1
config_disk_gb = 1
data_disk_gb = 4
provisioning = "thin"
ssh_key = "id_ed25519"

[datastore]
name = "vsa-ds0"

[[hosts]]
esxi = "esx1.lab"
datastore = "local-esx1"
node = "node1"
iscsi_ip = "10.11.55.55"
replication_ip = "192.168.22.11"

[[hosts]]
esxi = "esx2.lab"
datastore = "local-esx2"
node = "node2"
iscsi_ip = "10.11.55.56"
replication_ip = "192.168.22.12"
"""


def report(line: str) -> None:
    """Print a measured figure even when pytest captures output."""
    print(f"[lab] {line}", flush=True)


@pytest.fixture(scope="session")
def _lab_host() -> None:
    missing = sorted({package for tool, package in LAB_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        pytest.fail(
            f"the lab needs {' '.join(missing)}: run scripts/install-lab-deps "
            f"(or apt-get install {' '.join(missing)})"
        )
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (debootstrap, network namespaces, taps)")


@pytest.fixture(scope="session")
def appliance(_lab_host: None) -> Appliance:
    started = time.monotonic()
    disk = build_appliance(progress=lambda step: report(f"appliance: {step}"))
    report(f"appliance ready in {time.monotonic() - started:.1f} s: {disk} ({disk.stat().st_size >> 20} MiB)")
    return Appliance.of(disk)


@pytest.fixture(scope="module")
def lab_network(_lab_host: None) -> Iterator[None]:
    """The lab namespace for one module: `lab down` in another module deletes it."""
    netns.up()
    try:
        yield
    finally:
        netns.down()


@pytest.fixture
def lab_plan(tmp_path: Path) -> Plan:
    return write_lab_plan(tmp_path / "lab")


def write_lab_plan(folder: Path, data_disk_gb: int = 4) -> Plan:
    """The lab plan (with this LUN size) and its admin SSH key pair in a new folder."""
    folder.mkdir()
    key = new_ed25519_key("vsa-lab-admin")
    (folder / "id_ed25519").write_text(key.private_openssh)
    (folder / "id_ed25519").chmod(0o600)
    (folder / "id_ed25519.pub").write_text(key.public_openssh + "\n")
    (folder / "lab.toml").write_text(LAB_PLAN.replace("data_disk_gb = 4", f"data_disk_gb = {data_disk_gb}"))
    return load_plan(folder / "lab.toml")


def storage_vm(plan: Plan, node: StorageNode, appliance: Appliance, directory: Path) -> LabVm:
    """The node's VM as the vms stage would make it: disks at planned sizes,
    NICs with the plan's MACs, identity from the state folder as a NoCloud seed."""
    vm_config = plan.storage_vm
    host_key = StateDir(plan.state_dir, persist=True).host_key(node.node)
    identity = node_identity(plan, node, host_key, ssh_public_key(plan))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    seed = write_seed(directory / "seed.iso", nocloud_files(identity))
    spec = VmSpec(
        name=plan.vm_name(node.node),
        appliance=appliance,
        disks=(
            Disk("meta", vm_config.meta_disk_gb * GIB),
            Disk("config", vm_config.config_disk_gb * GIB),
            Disk("data", vm_config.data_disk_gb * GIB),
        ),
        nics=tuple(
            Nic(role, nic_mac(plan, node.node, role), f"{node.node[:10]}-{role[:4]}")
            for role in ("iscsi", "replication")
        ),
        seed=seed,
        memory_mb=vm_config.memory_mb,
        cpus=vm_config.cpus,
    )
    return LabVm(spec, directory)


def pinned_client(public_openssh: str, address: str) -> paramiko.SSHClient:
    """An SSH client that accepts only this host key for address."""
    key_type, key_data = public_openssh.split()[:2]
    client = paramiko.SSHClient()
    key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data))
    client.get_host_keys().add(address, key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client
