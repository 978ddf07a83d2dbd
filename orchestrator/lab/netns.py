"""The lab's network: one namespace ("vsa-lab") holding a bridge per storage
network and a tap device per VM NIC. Nothing is created in the root namespace,
and the namespace has no link out, so lab traffic cannot leave it.

The iSCSI bridge carries an address (the lab side: initiator, orchestrator's
SSH), reached by running inside the namespace (`ip netns exec`) or through a
socket made there (connect()).
"""

import ctypes
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from orchestrator.lab.simulator import LabError

# VSA_LAB_NS gives a second lab (a developer's, beside the tests') its own namespace.
NAMESPACE = os.environ.get("VSA_LAB_NS", "vsa-lab")
T = TypeVar("T")
INSTALL_HINT = "run scripts/install-lab-deps (as root) or apt-get install"
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Bridge:
    name: str
    address: str | None  # CIDR of the lab side on this network, if any


# Keyed by NIC role (orchestrator.identity.NIC_ROLES).
BRIDGES = {
    "iscsi": Bridge("br-iscsi", "10.11.55.1/24"),
    "replication": Bridge("br-repl", None),
}


def run(command: Sequence[str | Path]) -> str:
    """Run a host command; its stdout, or LabError carrying its stderr."""
    try:
        result = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LabError(f"{command[0]} not found; {INSTALL_HINT} iproute2") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"{' '.join(map(str, command))} failed (exit {result.returncode}): {detail}")
    return result.stdout


def require_tools(tools: dict[str, str]) -> None:
    """LabError naming the packages to install when any command (key) is missing."""
    missing = sorted({package for command, package in tools.items() if shutil.which(command) is None})
    if missing:
        raise LabError(f"missing host tools; {INSTALL_HINT} {' '.join(missing)}")


def exists() -> bool:
    return Path("/run/netns", NAMESPACE).exists()


def inside() -> bool:
    """Whether this process runs in the lab namespace."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat(Path("/run/netns", NAMESPACE)).st_ino
    except OSError:
        return False


def exec_prefix() -> list[str]:
    """Prefix a command with this to run it inside the lab namespace."""
    return ["ip", "netns", "exec", NAMESPACE]


def up() -> None:
    """Create the namespace and its bridges; harmless when they exist."""
    require_tools({"ip": "iproute2"})
    if os.geteuid() != 0:
        raise LabError("the lab network needs root (ip netns)")
    guard_routes()
    if not exists():
        run(["ip", "netns", "add", NAMESPACE])
    _ip("link", "set", "lo", "up")
    present = _links()
    for bridge in BRIDGES.values():
        if bridge.name not in present:
            _ip("link", "add", "name", bridge.name, "type", "bridge")
        _ip("link", "set", bridge.name, "up")
        if bridge.address:
            _ip("address", "replace", bridge.address, "dev", bridge.name)


# The lab's networks. Outside the namespace they are blackholed, so a stray
# connection to a lab address (a guest stage run outside the namespace, say)
# fails at once instead of going out through the machine's default route.
LAB_SUBNETS = ("10.11.55.0/24", "192.168.22.0/24")


def guard_routes() -> None:
    """Blackhole the lab subnets in the root namespace; harmless when present."""
    for subnet in LAB_SUBNETS:
        run(["ip", "route", "replace", "blackhole", subnet])


def down() -> None:
    """Delete the namespace with everything in it; harmless when it is gone.
    Stop the VMs first: a process still inside keeps the network alive."""
    if exists():
        run(["ip", "netns", "delete", NAMESPACE])


def add_tap(name: str, role: str) -> None:
    """A tap device for one VM NIC, on the bridge of its network (a role in BRIDGES)."""
    if name not in _links():
        _ip("tuntap", "add", "dev", name, "mode", "tap")
    _ip("link", "set", name, "master", BRIDGES[role].name, "up")


def delete_tap(name: str) -> None:
    if exists() and name in _links():
        _ip("link", "delete", name)


def call_inside(work: Callable[[], T], name: str = "netns") -> T:
    """work() run in a short-lived thread that entered the namespace; its result or its
    exception. Sockets it makes stay in the namespace; the caller's thread never moves."""
    outcome: list[T | BaseException] = []

    def inside() -> None:
        try:
            with open(Path("/run/netns", NAMESPACE)) as handle:
                if ctypes.CDLL(None, use_errno=True).setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {NAMESPACE} failed")
            outcome.append(work())
        except BaseException as err:  # handed to the caller's thread
            outcome.append(err)

    worker = threading.Thread(target=inside, name=name)
    worker.start()
    worker.join()
    found = outcome[0]
    if isinstance(found, BaseException):
        raise found
    return found


def connect(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection made inside the namespace (for paramiko's sock=, say)."""
    return call_inside(lambda: socket.create_connection((address, port), timeout=timeout), f"netns-{address}")


def _links() -> set[str]:
    return {link["ifname"] for link in json.loads(_ip("-json", "link", "show") or "[]")}


def _ip(*args: str) -> str:
    return run(["ip", "-n", NAMESPACE, *args])
