"""Partitions on a real bridge, without VMs: a throwaway namespace holds a
bridge (with a lab-side address, as br-iscsi has) and three veth ports whose far
ends are three small namespaces with fixed MACs; cut() must part two of them
while both keep reaching the third and the bridge, and heal() must undo it.

Needs root (network namespaces) and nft (scripts/install-lab-deps).
"""

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.lab import netns, partition
from orchestrator.lab.simulator import LabError
from orchestrator.plan import load_plan
from tests.lab.conftest import LAB_PLAN

TOOLS = {"ip": "iproute2", "nft": "nftables", "ping": "iputils-ping"}
LAB_SIDE = "10.99.0.254"


@dataclass(frozen=True)
class Peer:
    namespace: str
    mac: str
    address: str


@dataclass(frozen=True)
class Net:
    namespace: str  # the bridge's, where partition's table goes
    peers: dict[str, Peer]


def _ip(*args: str) -> None:
    netns.run(["ip", *args])


def _delete(namespace: str) -> None:
    subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)


@pytest.fixture
def net() -> Iterator[Net]:
    if os.geteuid() != 0:
        pytest.fail("the partition test needs root (network namespaces)")
    netns.require_tools(TOOLS)
    # Named after this run's lab namespace, so a second test run beside this one differs.
    base = f"{netns.NAMESPACE}-part"
    peers = {
        name: Peer(f"{base}-{name}", f"02:99:00:00:00:0{index}", f"10.99.0.{index}")
        for index, name in enumerate("abc", start=1)
    }
    names = [base, *(peer.namespace for peer in peers.values())]
    for name in names:
        _delete(name)  # left over from an interrupted run
    try:
        for name in names:
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", base, "link", "add", "br-part", "type", "bridge")
        _ip("-n", base, "address", "add", f"{LAB_SIDE}/24", "dev", "br-part")
        _ip("-n", base, "link", "set", "br-part", "up")
        for name, peer in peers.items():
            port = f"port-{name}"
            _ip(
                "-n",
                base,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer.namespace,
            )
            _ip("-n", base, "link", "set", port, "master", "br-part", "up")
            _ip("-n", peer.namespace, "link", "set", "eth0", "address", peer.mac)
            _ip("-n", peer.namespace, "address", "add", f"{peer.address}/24", "dev", "eth0")
            _ip("-n", peer.namespace, "link", "set", "eth0", "up")
        yield Net(base, peers)
    finally:
        for name in names:
            _delete(name)


def _pings(namespace: str, address: str) -> bool:
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, "ping", "-n", "-q", "-c1", "-W1", address],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _reaches(source: Peer, address: str, attempts: int = 5) -> bool:
    """A ping gets through within a few tries (a fresh port or ARP entry may take a moment)."""
    for _ in range(attempts):
        if _pings(source.namespace, address):
            return True
        time.sleep(0.2)
    return False


def _all_reach_each_other(net: Net) -> None:
    for source in net.peers.values():
        for target in (*(peer.address for peer in net.peers.values() if peer != source), LAB_SIDE):
            assert _reaches(source, target), f"{source.address} -> {target}"


def test_cut_parts_two_peers_and_heal_joins_them(net: Net) -> None:
    a, b, c = net.peers["a"], net.peers["b"], net.peers["c"]
    _all_reach_each_other(net)

    partition.cut(net.namespace, [(a.mac.upper(), b.mac)])
    assert a.mac in partition.rules(net.namespace)
    assert not _pings(a.namespace, b.address)
    assert not _pings(b.namespace, a.address)
    for source in (a, b):
        assert _reaches(source, c.address), f"{source.address} -> c while a|b"
        assert _reaches(source, LAB_SIDE), f"{source.address} -> lab side while a|b"
    assert _reaches(c, a.address) and _reaches(c, b.address)

    partition.heal(net.namespace)
    assert partition.rules(net.namespace) == ""
    assert _reaches(a, b.address) and _reaches(b, a.address)
    partition.heal(net.namespace)  # nothing to heal: fine
    partition.heal(net.namespace)


def test_a_new_cut_replaces_the_old_and_the_context_manager_heals(net: Net) -> None:
    a, b, c = net.peers["a"], net.peers["b"], net.peers["c"]
    _all_reach_each_other(net)
    partition.cut(net.namespace, [(a.mac, b.mac)])
    with partition.Partition([(a.mac, c.mac), (b.mac, c.mac)], namespace=net.namespace):
        assert _reaches(a, b.address)  # the a|b cut was replaced
        assert not _pings(c.namespace, a.address)
        assert not _pings(b.namespace, c.address)
        assert _reaches(c, LAB_SIDE)
    assert partition.rules(net.namespace) == ""
    _all_reach_each_other(net)


def test_heal_leaves_other_tables_alone(net: Net) -> None:
    netns.run(["ip", "netns", "exec", net.namespace, "nft", "add", "table", "bridge", "someone_else"])
    partition.cut(net.namespace, [(net.peers["a"].mac, net.peers["b"].mac)])
    partition.heal(net.namespace)
    tables = netns.run(["ip", "netns", "exec", net.namespace, "nft", "list", "tables"])
    assert "table bridge someone_else" in tables
    assert partition.TABLE not in tables


def test_bad_input_and_a_missing_namespace_are_lab_errors() -> None:
    with pytest.raises(LabError, match="not a MAC"):
        partition.cut("unused", [("00:50:56:00:00:01", "node2")])
    with pytest.raises(LabError, match="from itself"):
        partition.Partition([("00:50:56:00:00:01", "00:50:56:00:00:01")])
    with pytest.raises(LabError, match="vsa-no-such-namespace"):
        partition.heal("vsa-no-such-namespace")


def test_node_pairs_are_the_plans_nic_macs(tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text(LAB_PLAN)
    plan = load_plan(tmp_path / "lab.toml")
    pairs = partition.node_pairs(plan, "node1", "node2")
    assert len(pairs) == 2 and all(len({x, y}) == 2 for x, y in pairs)
    assert {x for x, _ in pairs} == {partition.nic_mac(plan, "node1", role) for role in netns.BRIDGES}
