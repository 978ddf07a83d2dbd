"""`lab up` end to end on the hardware side: the simulator runs inside the
lab namespace in lab mode, the vms stage (run inside the namespace, as a user
would) powers the storage VMs on through it, and each boots under qemu from
the simulator's own disk files and guestinfo: it answers SSH on its planned
address with the host key the vms stage pinned. `lab up` twice is harmless;
`lab down` leaves nothing running and nothing listening."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from orchestrator.cli import main
from orchestrator.lab import commands, netns
from orchestrator.lab.qemu import qemu_pid, wait_until
from orchestrator.plan import load_plan
from orchestrator.state import StateDir
from tests.lab.conftest import pinned_client, report
from tests.lab.nodes import ssh_banner

BOOT_TIMEOUT_S = 300


def _running(pid: int) -> bool:
    """Whether the process exists and is no zombie (a killed daemon waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def lab(tmp_path: Path, appliance, _lab_host):
    lab_dir = tmp_path / "lab"
    try:
        yield lab_dir
    finally:
        commands.lab_down(lab_dir)


def test_power_on_through_the_simulator_boots_the_vm_and_down_leaves_nothing(lab: Path) -> None:
    plan_path = commands.lab_up(lab)
    pid = int((lab / "sim.pid").read_text())
    assert commands.lab_up(lab) == plan_path
    assert int((lab / "sim.pid").read_text()) == pid

    started = time.monotonic()
    result = subprocess.run(
        [
            *netns.exec_prefix(),
            sys.executable,
            "-m",
            "orchestrator",
            str(plan_path),
            "--yes",
            "--only",
            "vms",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "VSA_LAB_NS": netns.NAMESPACE},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    plan = load_plan(plan_path)
    node = plan.storage_nodes[0]
    address = str(node.iscsi_ip)
    folder = lab / "vms" / plan.vm_name(node.node)
    assert wait_until(lambda: ssh_banner(address), BOOT_TIMEOUT_S, interval=1), (
        f"no SSH on {address} within {BOOT_TIMEOUT_S} s; console: {folder / 'console.log'}"
    )
    report(f"power-on through the simulator to SSH: {time.monotonic() - started:.1f} s")

    host_key = StateDir(plan.state_dir, persist=True).host_key(node.node)
    client = pinned_client(host_key.public_openssh, address)
    key = paramiko.Ed25519Key.from_private_key_file(str(lab / "id_ed25519"))
    client.connect(
        address,
        username=plan.storage_vm.ssh_user,
        pkey=key,
        sock=netns.connect(address, 22, timeout=10),
        look_for_keys=False,
        allow_agent=False,
        timeout=60,
        banner_timeout=60,
        auth_timeout=60,
    )
    with client:
        _, stdout, _ = client.exec_command("hostname; lsblk -b -d -n -o NAME,SIZE /dev/sdd", timeout=60)
        lines = stdout.read().decode().split("\n")
    assert lines[0] == node.node
    assert lines[1].split() == ["sdd", str(plan.storage_vm.data_disk_gb * 2**30)]

    qemus = [qemu_pid(vm) for vm in sorted((lab / "vms").iterdir())]
    assert all(qemus) and len(qemus) == 2
    port = json.loads((lab / "sim.json").read_text())["port"]
    commands.lab_down(lab)
    assert not _running(pid)
    assert not any(_running(q) for q in qemus)
    assert not netns.exists()
    with socket.socket() as probe:  # nor on the root namespace's loopback
        assert probe.connect_ex(("127.0.0.1", port)) != 0

    # down, then up again: a fresh lab.
    commands.lab_up(lab)
    assert main(["lab", "status", "--dir", str(lab)]) == 0
    commands.lab_down(lab)
    assert main(["lab", "status", "--dir", str(lab)]) == 2
