"""One storage node boots from the appliance image with its cloud-init identity,
and carries what the guest stage needs (DRBD 8.4, heartbeat, LIO, its disks)."""

import time
from collections.abc import Iterator
from dataclasses import dataclass

import paramiko
import pytest

from orchestrator.appliance.build import Appliance
from orchestrator.lab import netns
from orchestrator.lab.qemu import LabVm, wait_until
from orchestrator.plan import Plan, StorageNode
from orchestrator.state import StateDir, new_ed25519_key
from tests.lab.conftest import GIB, pinned_client, report, storage_vm, write_lab_plan
from tests.lab.nodes import ssh_banner

BOOT_TIMEOUT_S = 300

# One SSH round trip costs seconds under TCG: read every fact in one command.
FACTS_SCRIPT = """
echo "== hostname"; hostname
echo "== eth0"; ip -o -4 address show dev eth0
echo "== eth1"; ip -o -4 address show dev eth1
echo "== drbd"; modinfo -F version drbd
echo "== drbdadm"; drbdadm --version | grep DRBDADM_VERSION=
echo "== heartbeat"; dpkg-query -W -f '${Status}\n' heartbeat
echo "== targetcli"; command -v targetcli
echo "== disks"; lsblk -b -d -n -o NAME,SIZE,SERIAL /dev/sdb /dev/sdc /dev/sdd
"""


@dataclass(frozen=True)
class Booted:
    plan: Plan
    node: StorageNode
    vm: LabVm


@pytest.fixture(scope="module")
def booted(tmp_path_factory, appliance: Appliance, lab_network: None) -> Iterator[Booted]:
    """node1 booted once for the module (each boot costs a minute under TCG), in test order."""
    folder = tmp_path_factory.mktemp("boot")
    plan = write_lab_plan(folder / "lab")
    node = plan.storage_nodes[0]
    vm = storage_vm(plan, node, appliance, folder / "node1")
    try:
        started = time.monotonic()
        vm.start()
        _wait_for_ssh(vm, str(node.iscsi_ip))
        report(f"boot to SSH under TCG: {time.monotonic() - started:.1f} s")
        yield Booted(plan, node, vm)
    finally:
        vm.remove()


def test_node_boots_with_its_identity_and_storage_stack(booted: Booted) -> None:
    plan, node, vm = booted.plan, booted.node, booted.vm
    address = str(node.iscsi_ip)
    host_key = StateDir(plan.state_dir, persist=True).host_key(node.node)
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(pinned_client(new_ed25519_key("impostor").public_openssh, address), plan, address)

    client = _connect(pinned_client(host_key.public_openssh, address), plan, address)
    with client:
        _, stdout, stderr = client.exec_command(FACTS_SCRIPT, timeout=120)
        output = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
    facts = _sections(output)
    report(f"qemu RSS after boot: {vm.rss_bytes() >> 20} MiB")

    assert facts["hostname"] == [node.node]
    assert f"inet {node.iscsi_ip}/24" in facts["eth0"][0]
    assert f"inet {node.replication_ip}/24" in facts["eth1"][0]
    assert facts["drbd"][0].startswith("8.4."), facts["drbd"]
    assert facts["drbdadm"][0].startswith("DRBDADM_VERSION=9."), facts["drbdadm"]
    assert facts["heartbeat"] == ["install ok installed"]
    assert facts["targetcli"] == ["/usr/bin/targetcli"]
    sizes = plan.storage_vm
    assert [line.split() for line in facts["disks"]] == [
        ["sdb", str(sizes.meta_disk_gb * GIB), "vsa-node1-meta"],
        ["sdc", str(sizes.config_disk_gb * GIB), "vsa-node1-config"],
        ["sdd", str(sizes.data_disk_gb * GIB), "vsa-node1-data"],
    ]


def test_node_stops_cleanly_and_keeps_its_identity_across_a_restart(booted: Booted) -> None:
    plan, node, vm = booted.plan, booted.node, booted.vm
    address = str(node.iscsi_ip)
    host_key = StateDir(plan.state_dir, persist=True).host_key(node.node)
    vm.stop()
    assert vm.pid() is None
    assert "reboot: Power down" in vm.console_log.read_text(errors="replace")

    started = time.monotonic()
    vm.start()
    _wait_for_ssh(vm, address)
    report(f"restart to SSH under TCG: {time.monotonic() - started:.1f} s")
    with _connect(pinned_client(host_key.public_openssh, address), plan, address) as client:
        _, stdout, _ = client.exec_command("hostname", timeout=60)
        assert stdout.read().decode().strip() == node.node

    vm.power_off()
    assert vm.pid() is None


def _wait_for_ssh(vm: LabVm, address: str) -> None:
    assert wait_until(lambda: ssh_banner(address) or vm.pid() is None, BOOT_TIMEOUT_S, interval=1), (
        f"no SSH on {address}:22 within {BOOT_TIMEOUT_S} s; console: {vm.console_log}"
    )
    assert vm.pid() is not None, f"qemu exited during boot; console: {vm.console_log}"


def _connect(client: paramiko.SSHClient, plan: Plan, address: str) -> paramiko.SSHClient:
    key_path = plan.ssh_key_file
    client.connect(
        address,
        username=plan.storage_vm.ssh_user,
        pkey=paramiko.Ed25519Key.from_private_key_file(str(key_path)),
        sock=netns.connect(address, 22, timeout=10),
        look_for_keys=False,
        allow_agent=False,
        timeout=60,
        banner_timeout=60,
        auth_timeout=60,
    )
    return client


def _sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:], [])
        elif line.strip():
            current.append(line.strip())
    return sections
