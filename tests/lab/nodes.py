"""Helpers for tests on a pair of real storage nodes: the CLI and an iSCSI
initiator inside the lab namespace, commands on a node over pinned SSH."""

import subprocess
import sys
import time
from pathlib import Path

import paramiko

from orchestrator.lab import netns
from orchestrator.plan import Plan
from orchestrator.state import StateDir
from tests.lab.conftest import pinned_client

REPO = Path(__file__).resolve().parents[2]
VIP_TAG = "10.11.55.50/"  # the lab plan's VIP as `ip -o -4 addr` prints it


def inside(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """A Python module of this repository run inside the lab namespace (where the lab's
    networks and the lab-mode simulator are), e.g. inside("-m", "orchestrator", ...)."""
    command = [*netns.exec_prefix(), sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def vsa(plan: Plan, *args: str) -> subprocess.CompletedProcess:
    """The guest stage alone, from the CLI inside the lab namespace."""
    return inside("-m", "orchestrator", str(plan.path), "--only", "guest", *args)


def on(plan: Plan, node: str, command: str, check: bool = False) -> str:
    """A shell command's stdout on a node; with check, a non-zero exit fails the test with its
    stderr (for the steps a test sets up: a step that silently failed would blame the code)."""
    address = str(next(n.iscsi_ip for n in plan.vm_nodes if n.node == node))
    key = StateDir(plan.state_dir, persist=False).host_key(node)
    client = pinned_client(key.public_openssh, address)
    client.connect(
        address,
        username="root",
        key_filename=str(plan.base_dir / "id_ed25519"),
        sock=netns.connect(address, 22, 10),
        allow_agent=False,
        look_for_keys=False,
    )
    try:
        _, out, err = client.exec_command(command)
        stdout, stderr = out.read().decode(), err.read().decode()
        status = out.channel.recv_exit_status()
        assert not check or status == 0, f"{node}: `{command}` exited {status}: {stderr.strip()}"
        return stdout
    finally:
        client.close()


def lun_url(plan: Plan) -> str:
    secret = StateDir(plan.state_dir, persist=False).secret("chap")
    return f"iscsi://{plan.chap_name}%{secret}@{plan.network.vip}/{plan.iqn}/0"


def initiator(plan: Plan, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """A lab-side initiator command on the LUN URL; a hang (a portal moving) counts as a failure,
    and nothing printed on failure carries the URL (it holds the CHAP secret)."""
    try:
        return subprocess.run(
            [*netns.exec_prefix(), *args, lun_url(plan)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args[:1], 124, "", "timed out")


def qemu_io(plan: Plan, *commands: str, read_only: bool = False) -> subprocess.CompletedProcess:
    args = ["qemu-io", "-f", "raw", *(["-r"] if read_only else [])]
    for command in commands:
        args += ["-c", command]
    return initiator(plan, *args, timeout=10)


def wait_for(condition, timeout: float) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.5)
    return time.monotonic() - began


def active_node(plan: Plan) -> str:
    """The node holding the VIP (serving the LUN)."""
    return "node1" if VIP_TAG in on(plan, "node1", "ip -o -4 addr") else "node2"


def wait_ssh(plan: Plan, timeout: float = 300) -> None:
    """Until every node answers on SSH with its pinned key (booting under TCG is slow)."""

    def answers(node: str) -> bool:
        try:
            return on(plan, node, "echo up").strip() == "up"
        except (OSError, paramiko.SSHException):
            return False

    for node in plan.storage_nodes:
        wait_for(lambda node=node: answers(node.node), timeout)


def fully_synced(plan: Plan) -> bool:
    """Both DRBD resources UpToDate on both sides, seen from every node."""
    states = [on(plan, node.node, "cat /proc/drbd") for node in plan.storage_nodes]
    return all(state.count("ds:UpToDate/UpToDate") == 2 for state in states)


def ssh_banner(address: str) -> bool:
    """True once sshd sends its banner at address (a listening socket alone is not enough)."""
    try:
        with netns.connect(address, 22, timeout=2) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False
