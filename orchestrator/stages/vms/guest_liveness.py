"""Part of the `vms` stage: a storage VM that vSphere shows powered on but whose
guest does not answer (hung, panicked) is reset, and only while its peer serves.

observe() probes the SSH banner of every powered-on storage VM at its iSCSI
address (from where the CLI runs: the lab's namespace, or the admin's network),
again every PROBE_INTERVAL_S until it answers or plan.reset_after_s have passed;
a run that already saw a node silent that long probes it once more (the
silences are kept in the run's context, never on disk). For a silent node the
peer is read exactly as `status` reads a node (status/nodes.py: one read-only
SSH command, the guest stage's fact parsers).

decide() and diff() are pure. A silent node is reset only when its peer is
UpToDate and serving the LUN: it holds the VIP, every DRBD resource is
Primary/UpToDate there and the target runs. Otherwise the run refuses with
one line: resetting the only good copy (or a node we cannot see the state
of) is never guessed. The ResetVm handler (apply.py) runs ResetVM_Task
after recheck() has read the peer once more.
"""

import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from orchestrator.changes import Attr, Change, Problem
from orchestrator.guest.ssh import GuestError
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.stages.vms.diff import STAGE
from orchestrator.stages.vms.facts import VmsFacts
from orchestrator.stages.vms.operations import ResetVm
from orchestrator.state import HostKey
from orchestrator.status.model import NodeView
from orchestrator.status.nodes import observe_nodes
from orchestrator.vsphere.vm_facts import VmFact

log = logging.getLogger(__name__)

SSH_PORT = 22
BANNER_TIMEOUT_S = 5.0  # connect and first line; a loaded TCG guest still answers well within it
PROBE_INTERVAL_S = 2.0


@dataclass(frozen=True)
class Silence:
    """A powered-on storage VM whose guest did not answer SSH for silent_s seconds."""

    node: str
    vm: str  # the VM's name
    vm_id: str
    silent_s: float
    peer: NodeView  # the peer node as `status` reads it


@dataclass(frozen=True)
class Verdict:
    action: Literal["reset", "refuse"]
    reason: str


def ssh_answers(address: str, timeout: float = BANNER_TIMEOUT_S) -> bool:
    """True when sshd at address sends its banner within timeout."""
    try:
        with socket.create_connection((address, SSH_PORT), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def observe(
    plan: Plan,
    facts: VmsFacts,
    keys: dict[str, HostKey | None],
    silent_since: dict[str, float],
    reporter: Reporter,
    answers: Callable[[str], bool] = ssh_answers,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Silence]:
    """The powered-on storage VMs of ours whose guest stayed silent for plan.reset_after_s."""
    addresses = {node.node: str(node.iscsi_ip) for node in plan.storage_nodes}  # not the witness
    vms = {
        node_facts.node.node: node_facts.vm
        for node_facts in facts.nodes
        if node_facts.vm is not None
        and node_facts.vm.owner == plan.name
        and node_facts.node.node in addresses
    }
    watched = [node for node, vm in vms.items() if vm.power == "poweredOn"]
    if not watched:
        return []
    threshold = plan.reset_after_s

    def silent_for(node: str) -> float | None:
        while True:
            if answers(addresses[node]):
                silent_since.pop(node, None)
                return None
            now = clock()
            began = silent_since.setdefault(node, now)
            if now - began >= threshold:
                return now - began
            sleep(min(PROBE_INTERVAL_S, threshold - (now - began)))

    quiet = [node for node in watched if node in silent_since or not answers(addresses[node])]
    if not quiet:
        return []
    names = ", ".join(plan.vm_name(node) for node in quiet)
    log.warning("%s: powered on but the guest does not answer SSH; waiting up to %d s", names, threshold)
    waiting = reporter.task(f"waiting for {names} to answer SSH (reset after {threshold} s)")
    with waiting, ThreadPoolExecutor(max_workers=len(quiet)) as pool:
        waited = dict(zip(quiet, pool.map(silent_for, quiet), strict=True))
    silent = {node: seconds for node, seconds in waited.items() if seconds is not None}
    if not silent:
        return []
    peers = {node: _peer_view(plan, node, vms) for node in silent}
    observe_nodes(plan, list(peers.values()), keys)
    return [
        Silence(node=node, vm=plan.vm_name(node), vm_id=vms[node].id, silent_s=seconds, peer=peers[node])
        for node, seconds in silent.items()
    ]


def _peer_view(plan: Plan, node: str, vms: dict[str, VmFact]) -> NodeView:
    """The other storage node (a plan has exactly two), not read yet."""
    peer = next(other for other in plan.storage_nodes if other.node != node)
    vm = vms.get(peer.node)
    return NodeView(
        node=peer.node,
        vm=plan.vm_name(peer.node),
        esxi=peer.esxi,
        address=str(peer.iscsi_ip),
        vm_found=vm is not None,
        power=vm.power if vm is not None else None,
        error=None if vm is not None else "its VM was not found",
    )


def serving_gap(peer: NodeView) -> str | None:
    """Why the peer does not serve the LUN UpToDate, or None when it does (pure)."""
    who = peer.node
    if not peer.reachable:
        return f"{who} could not be read either ({peer.error or 'no answer'})"
    if not peer.drbd:
        return f"{who} shows no DRBD resource"
    for drbd in peer.drbd:
        if not drbd.configured:
            return f"{who}'s DRBD {drbd.resource} is down"
        if (drbd.role, drbd.disk) != ("Primary", "UpToDate"):
            return f"{who}'s DRBD {drbd.resource} is {drbd.role}/{drbd.disk}, not Primary/UpToDate"
    if not peer.holds_vip:
        return f"{who} does not hold the VIP"
    if not peer.target_running:
        return f"{who}'s iSCSI target is not running"
    return None


def decide(silence: Silence, threshold: int) -> Verdict | None:
    """Reset a guest silent for threshold seconds only while its peer serves (pure)."""
    if silence.silent_s < threshold:
        return None
    seconds = int(silence.silent_s)
    gap = serving_gap(silence.peer)
    if gap is not None:
        return Verdict(
            "refuse",
            f"powered on, but its guest has not answered SSH for {seconds} s and it is not reset: "
            f"{gap}, so {silence.node} may hold the only good copy; check both nodes' consoles, "
            "then rerun",
        )
    return Verdict("reset", f"guest not answering for {seconds} s; {silence.peer.node} serves")


def diff(plan: Plan, silences: list[Silence]) -> tuple[list[Change], list[Problem]]:
    """A reset Change, or a Problem, per silent guest (pure)."""
    changes: list[Change] = []
    problems: list[Problem] = []
    for silence in silences:
        verdict = decide(silence, plan.reset_after_s)
        if verdict is None:
            continue
        resource = f"vm {silence.vm}"
        if verdict.action == "refuse":
            problems.append(Problem(STAGE, resource, verdict.reason))
            continue
        changes.append(
            Change(
                stage=STAGE,
                action="update",
                resource=resource,
                attrs=[Attr("power", "poweredOn", f"reset ({verdict.reason})")],
                operations=(ResetVm(silence.node, silence.vm, silence.vm_id, silence.peer.node),),
                note=(
                    f"a hard reset of {silence.vm}: {silence.peer.node} keeps serving the LUN, and "
                    f"{silence.node} resyncs from it once it is back"
                ),
            )
        )
    return changes, problems


def recheck(plan: Plan, op: ResetVm, keys: dict[str, HostKey | None]) -> None:
    """Right before a reset: the peer must still serve; raises GuestError otherwise."""
    peer = next(node for node in plan.storage_nodes if node.node == op.peer)
    view = NodeView(node=peer.node, vm=plan.vm_name(peer.node), esxi=peer.esxi, address=str(peer.iscsi_ip))
    observe_nodes(plan, [view], keys)
    gap = serving_gap(view)
    if gap is not None:
        raise GuestError(f"vm {op.name}: not reset: {gap} now; check both nodes' consoles, then rerun")
