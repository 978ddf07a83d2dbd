"""Pure: what is wrong with an observed site, one line per finding.

No finding = healthy (exit 0); any finding = degraded (exit 2). Each line
names the node, host, resource or cluster it is about.
"""

from orchestrator.guest import layout
from orchestrator.guest.facts import REPLICATING
from orchestrator.plan import ISCSI_PORT
from orchestrator.status.model import ClusterView, DatastoreView, Expected, HostView, NodeView, WitnessView

DRBD_HEALTHY = ("Connected", "UpToDate", "UpToDate")


def active_node(nodes: list[NodeView]) -> str | None:
    """The node holding the VIP (the resource group's last member), when exactly one does."""
    holders = [node.node for node in nodes if node.holds_vip]
    return holders[0] if len(holders) == 1 else None


def node_findings(node: NodeView) -> list[str]:
    who = f"node {node.node}"
    if not node.vm_found:
        found = [f"{who}: VM {node.vm} not found in our VM folder"]
    elif node.power != "poweredOn":
        found = [f"{who}: VM {node.vm} is {node.power}"]
    else:
        found = []
    if not node.reachable:
        # A VM that is missing or off explains why its node was not read.
        return found or [f"{who}: unreachable ({node.error})"]
    for drbd in node.drbd:
        resource = f"{who}: DRBD {drbd.resource}"
        if not drbd.configured:
            found.append(f"{resource} is not configured (down)")
            continue
        if drbd.split_brain and drbd.connection not in REPLICATING:
            found.append(f"{resource}: split brain; resolve it by hand (the plan run says how)")
        elif (drbd.connection, drbd.disk, drbd.peer_disk) != DRBD_HEALTHY:
            detail = f"{drbd.connection}, disks {drbd.disk}/{drbd.peer_disk}"
            if drbd.sync_percent is not None:
                detail += f", resync {drbd.sync_percent}% done, finish {drbd.sync_finish}"
            elif drbd.out_of_sync_kib:
                detail += f", {drbd.out_of_sync_kib} KiB out of sync"
            found.append(f"{resource} is {detail}")
    if not node.manager_running:
        found.append(f"{who}: {node.manager} is not running")
    elif node.manager == "pacemaker" and node.quorate is False:
        found.append(f"{who}: Pacemaker has no quorum here, so this node does not serve the LUN")
    elif node.heartbeat_resources == "transition":
        found.append(f"{who}: heartbeat is moving the resources (transition)")
    return found


def witness_findings(witness: WitnessView | None) -> list[str]:
    """A witness that does not vote leaves the pair no vote to spare: one more loss stops the LUN."""
    if witness is None:
        return []
    who = f"witness {witness.node}"
    lost = "; the pair has no vote to spare (one more node lost stops the LUN)"
    if not witness.vm_found:
        return [f"{who}: VM {witness.vm} not found in our VM folder{lost}"]
    if witness.power != "poweredOn":
        return [f"{who}: VM {witness.vm} is {witness.power}{lost}"]
    if not witness.reachable:
        return [f"{who}: unreachable ({witness.error}){lost}"]
    if not witness.corosync_running:
        return [f"{who}: corosync is not running{lost}"]
    if not witness.pacemaker_running:
        return [
            f"{who}: pacemaker is not running, so the witness holds no copy of the CIB: a node "
            "outdated while the other was cut off could serve its stale copy; rerun the plan"
        ]
    return []


def dual_primary_findings(nodes: list[NodeView]) -> list[str]:
    """Both nodes Primary on one resource: each may have written alone (split brain)."""
    found = []
    for resource in layout.RESOURCES:
        primaries = [
            node.node
            for node in nodes
            for drbd in node.drbd
            if drbd.resource == resource.name and drbd.configured and drbd.role == "Primary"
        ]
        if len(primaries) > 1:
            found.append(f"DRBD {resource.name} is Primary on {' and '.join(primaries)}: split brain risk")
    return found


def serving_findings(nodes: list[NodeView], expected: Expected) -> list[str]:
    """Who serves the LUN: exactly one node, Primary, target running as the plan says."""
    holders = [node for node in nodes if node.holds_vip]
    if len(holders) > 1:
        names = ", ".join(node.node for node in holders)
        return [f"the VIP {expected.vip} is up on several nodes ({names}): split brain risk"]
    if not holders:
        read = [node for node in nodes if node.reachable]
        where = "no storage node" if len(read) == len(nodes) else "no reachable storage node"
        return [f"{where} holds the VIP {expected.vip}: the LUN is not served"]
    found = []
    active = holders[0]
    who = f"node {active.node} (active)"
    for drbd in active.drbd:
        if drbd.configured and drbd.role != "Primary":
            found.append(f"{who}: DRBD {drbd.resource} is {drbd.role}, not Primary")
    if not active.config_mounted:
        found.append(f"{who}: the config volume {layout.CONFIG_MOUNT} is not mounted")
    if not active.target_running:
        found.append(f"{who}: the iSCSI target is not running as defined")
    if active.heartbeat_resources == "none":
        found.append(f"{who}: holds the VIP but heartbeat says it holds no resources (VIP set by hand?)")
    found += target_findings(active, expected)
    for standby in nodes:
        if standby is not active and any(t.iqn == expected.iqn for t in standby.targets):
            found.append(f"node {standby.node}: a target {expected.iqn} is defined but the node is standby")
    return found


def target_findings(active: NodeView, expected: Expected) -> list[str]:
    who = f"node {active.node} (active)"
    target = next((t for t in active.targets if t.iqn == expected.iqn), None)
    if target is None:
        return [f"{who}: no LIO target {expected.iqn}"]
    found = []
    if not target.enabled:
        found.append(f"{who}: target {expected.iqn} TPG {target.tpg} is disabled")
    if target.lun is None:
        found.append(f"{who}: target {expected.iqn} has no LUN")
    elif target.serial != expected.serial:
        found.append(
            f"{who}: LUN serial {target.serial} is not the plan's {expected.serial} (NAA {target.naa}): "
            "ESXi would see a different disk"
        )
    elif target.device != layout.LUN.device:
        found.append(f"{who}: the LUN is backed by {target.device}, not {layout.LUN.device}")
    return found


def host_findings(host: HostView, expected: Expected, datastore: DatastoreView) -> list[str]:
    who = f"host {host.host}"
    if not host.found:
        return [f"{who}: not found in the datacenter"]
    found = []
    if host.connection != "connected":
        found.append(f"{who}: {host.connection}")
    if not host.adapter_enabled:
        found.append(f"{who}: software iSCSI adapter disabled")
    if not host.send_target:
        found.append(f"{who}: no send target {expected.vip}:{ISCSI_PORT}")
    if host.lun is None:
        found.append(f"{who}: no LUN of {expected.iqn}")
    else:
        if host.lun != expected.naa:
            found.append(f"{who}: sees our LUN as {host.lun}, the target presents {expected.naa}")
        if not any(path.state == "active" for path in host.paths):
            states = ", ".join(f"{path.name} {path.state}" for path in host.paths) or "no paths"
            found.append(f"{who}: no active path to {host.lun} ({states})")
    if datastore.found and not (host.datastore_mounted and host.datastore_accessible):
        state = "mounted, inaccessible" if host.datastore_mounted else "not mounted"
        found.append(f"{who}: datastore {datastore.name} {state}")
    return found


def cluster_findings(cluster: ClusterView, ha_wanted: bool) -> list[str]:
    if not cluster.checked:
        return []
    who = f"cluster {cluster.name}"
    if not cluster.exists:
        return [f"{who}: not found"]
    found = []
    if cluster.ha_enabled != ha_wanted:
        found.append(
            f"{who}: vSphere HA is {'on' if cluster.ha_enabled else 'off'}, the plan says {ha_wanted}"
        )
    elif ha_wanted and cluster.host_monitoring != "enabled":
        found.append(f"{who}: HA host monitoring is {cluster.host_monitoring}")
    found += [f"{who}: host {host} is not in the cluster" for host in cluster.hosts_outside]
    return found


def findings(
    nodes: list[NodeView],
    hosts: list[HostView],
    datastore: DatastoreView,
    cluster: ClusterView,
    expected: Expected,
    ha_wanted: bool,
) -> list[str]:
    found = [line for node in nodes for line in node_findings(node)]
    found += dual_primary_findings(nodes)
    found += serving_findings(nodes, expected)
    if not datastore.found:
        found.append(f"datastore {datastore.name}: not found")
    found += [line for host in hosts for line in host_findings(host, expected, datastore)]
    found += cluster_findings(cluster, ha_wanted)
    return found
