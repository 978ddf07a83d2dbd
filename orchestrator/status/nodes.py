"""The guest half of `status`: each storage node read over SSH, in one command.

The host key is pinned exactly as the guest stage does (the state folder, or
the key already deployed in the VM's cloud-init userdata); nothing is ever
generated or written. A node that does not answer at once (wait_s=0) is
"unreachable", which is a finding, not an error.
"""

import shlex
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestrator.guest import layout
from orchestrator.guest.facts import ServicesFact, SplitBrainMarkers, script, split
from orchestrator.guest.managers import ClusterManager, manager_for, services_fact
from orchestrator.guest.ssh import GuestError, NodeShell
from orchestrator.plan import Plan, VmNode
from orchestrator.state import HostKey, StateDir
from orchestrator.status.model import DrbdView, NodeView, TargetView, WitnessView
from orchestrator.status.node_facts import DrbdStatus, HeartbeatResources, LioTargets, QuorumVotes

READ_TIMEOUT_S = 30  # a wedged node (hung cl_status, D-state I/O) must not hang status


def facts_for(plan: Plan) -> dict:
    facts: dict = {
        "drbd": DrbdStatus(),
        "services": services_fact(plan),
        "split_brain": SplitBrainMarkers(),
        "lio": LioTargets(),
    }
    if plan.ha.manager == "heartbeat":
        facts["heartbeat"] = HeartbeatResources()
    else:
        facts["votes"] = QuorumVotes()
    return facts


def pinned_key(state: StateDir, node: str, deployed: HostKey | None) -> HostKey | None:
    """The node's pinned host key without generating one (None: nothing to pin)."""
    stored = state.path / "hostkeys" / f"{node}_ssh_host_ed25519_key"
    if stored.exists() and stored.with_name(stored.name + ".pub").exists():
        return state.host_key(node)
    return deployed


def read_command(facts: dict) -> str:
    """Every fact in one read-only shell command, bounded in time."""
    return f"timeout {READ_TIMEOUT_S} sh -c {shlex.quote(script(facts))}"


def read_node(plan: Plan, node: VmNode, host_key: HostKey, facts: dict | None = None) -> dict[str, Any]:
    """Connect (no waiting), run the facts' one script, parse each section."""
    shell = NodeShell(
        node.node, str(node.iscsi_ip), plan.storage_vm.ssh_user, plan.ssh_key_file, host_key, wait_s=0
    )
    try:
        facts = facts or facts_for(plan)
        result = shell.run(read_command(facts), check=False)
        if result.code == 124:
            raise GuestError(f"{node.node}: reading its state took longer than {READ_TIMEOUT_S} s")
        sections = split(result.out)
        return {name: fact.process(sections.get(name, "")) for name, fact in facts.items()}
    finally:
        shell.close()


def apply_facts(view: NodeView, parsed: dict[str, Any], manager: ClusterManager) -> None:
    """Fill a NodeView from parsed facts (pure; tested on captured outputs)."""
    view.reachable = True
    drbd = parsed["drbd"]
    for resource in layout.RESOURCES:
        status = drbd.get(resource.minor)
        if status is None:
            view.drbd.append(DrbdView(resource.name, resource.minor, configured=False))
            continue
        state = status.state
        role, _, peer_role = state.ro.partition("/")
        disk, _, peer_disk = state.ds.partition("/")
        view.drbd.append(
            DrbdView(
                resource=resource.name,
                minor=resource.minor,
                configured=True,
                connection=state.cs,
                role=role,
                peer_role=peer_role or None,
                disk=disk,
                peer_disk=peer_disk or None,
                out_of_sync_kib=state.oos,
                sync_percent=status.sync_percent,
                sync_finish=status.finish,
                split_brain=resource.name in parsed.get("split_brain", set()),
            )
        )
    services = parsed["services"]
    view.manager = manager.name
    view.manager_running = all(unit in services.active for unit in manager.units)
    if manager.name == "heartbeat":
        view.heartbeat_running = view.manager_running
        view.heartbeat_resources = parsed["heartbeat"]
    view.quorate = services.quorate
    if votes := parsed.get("votes"):
        view.votes, view.expected_votes = votes.total, votes.expected
    view.holds_vip = services.vip_here
    view.config_mounted = services.config_mounted
    view.target_running = services.target_running
    for tpg in parsed.get("lio", []):
        lun = next((lun for lun in tpg.luns if lun.lun == 0), tpg.luns[0] if tpg.luns else None)
        view.targets.append(
            TargetView(
                iqn=tpg.iqn,
                tpg=tpg.tpg,
                enabled=tpg.enabled,
                chap=tpg.authentication,
                lun=lun.lun if lun else None,
                device=lun.device if lun else None,
                serial=lun.serial if lun else None,
                naa=lun.naa if lun else None,
            )
        )


def observe_nodes(plan: Plan, views: list[NodeView], keys: dict[str, HostKey | None]) -> None:
    """Read every node that may answer, in parallel; fill `views` in place."""
    nodes = {node.node: node for node in plan.storage_nodes}

    def one(view: NodeView) -> None:
        if view.vm_found and view.power != "poweredOn":
            view.error = f"not read: the VM is {view.power}"
            return
        key = keys.get(view.node)
        if key is None:
            view.error = f"no pinned SSH host key for {view.node} (state folder and VM userdata have none)"
            return
        try:
            apply_facts(view, read_node(plan, nodes[view.node], key), manager_for(plan))
        except GuestError as err:
            view.error = str(err)

    with ThreadPoolExecutor(max_workers=len(views) or 1) as pool:
        list(pool.map(one, views))


def observe_witness(plan: Plan, view: WitnessView, key: HostKey | None) -> None:
    """Read the witness: are Corosync and Pacemaker running there (it runs nothing else of ours)."""
    witness = plan.witness
    if witness is None:
        return
    if view.vm_found and view.power != "poweredOn":
        view.error = f"not read: the VM is {view.power}"
        return
    if key is None:
        view.error = f"no pinned SSH host key for {view.node} (state folder and VM userdata have none)"
        return
    try:
        parsed = read_node(plan, witness, key, {"services": ServicesFact(str(plan.network.vip))})
    except GuestError as err:
        view.error = str(err)
        return
    view.reachable = True
    view.corosync_running = "corosync" in parsed["services"].active
    view.pacemaker_running = "pacemaker" in parsed["services"].active
