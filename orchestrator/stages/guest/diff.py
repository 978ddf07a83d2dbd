"""The `guest` diff: pure, (plan, desired files, node facts) -> changes, problems.

Changes come in phases, in this order:
1. "node files" per node: managed files, dopd's helper permissions, DRBD
   metadata for a replaced node with empty disks, `drbdadm up` / `adjust` /
   `connect` for resources that are down, changed or disconnected;
2. "drbd" once, at first creation only (both nodes without metadata and every
   disk verified empty): metadata, skip the initial sync, the config filesystem;
3. "node services" per node: heartbeat enabled and running, the target
   definition on the node that holds the config volume, the target running.
Data safety: metadata is never created on a disk that has it or that holds
any signature; nothing is forced primary except at first creation; a split
brain (DRBD's handler left its marker and the resource does not replicate)
is reported, never resolved.
"""

import hashlib
from dataclasses import dataclass

from orchestrator.changes import Attr, Change, Problem
from orchestrator.guest import layout
from orchestrator.guest.facts import NodeFacts
from orchestrator.guest.render import NodeFile
from orchestrator.plan import Plan

STAGE = "guest"
DISK_ROLES = ("meta", "config", "data")


@dataclass(frozen=True)
class Desired:
    files: dict[str, NodeFile]  # path -> file this node must hold
    target_definition: str  # JSON kept on the config volume


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stale_files(desired: Desired, facts: NodeFacts) -> list[str]:
    """Managed files whose content or mode differs from what the node should hold."""
    return [
        path
        for path, file in desired.files.items()
        if facts.files.get(path) != (sha256(file.content), file.mode)
    ]


def devices(facts: NodeFacts) -> dict[str, str] | None:
    """role -> stable device path, or None when the VM lacks its three data disks."""
    if len(facts.disks) < len(DISK_ROLES):
        return None
    return {role: disk.path for role, disk in zip(DISK_ROLES, facts.disks, strict=False)}


def disk_problems(plan: Plan, node: str, facts: NodeFacts) -> list[Problem]:
    if devices(facts) is None:
        return [
            Problem(
                STAGE,
                f"node {node}",
                f"found {len(facts.disks)} data disk(s), expected meta, config and data; run the vms stage",
            )
        ]
    return []


def diff(
    plan: Plan,
    desired: dict[str, Desired],
    facts: dict[str, NodeFacts],
) -> tuple[list[Change], list[Problem]]:
    problems = [
        problem for node, node_facts in facts.items() for problem in disk_problems(plan, node, node_facts)
    ]
    if problems:
        return [], problems
    fresh = _first_creation(facts)
    problems += _metadata_problems(facts, fresh)
    problems += _split_brain(facts)
    if problems:
        return [], problems
    changes = [change for node in facts if (change := _node_files(node, desired[node], facts, fresh))]
    if fresh:
        changes.append(_initialize(plan))
    changes += [
        change for node in facts if (change := _node_services(node, desired[node], facts[node], fresh))
    ]
    return changes, []


def _first_creation(facts: dict[str, NodeFacts]) -> bool:
    """Both nodes without any metadata and with every data disk free of signatures."""
    no_metadata = all(not any(node.metadata.values()) for node in facts.values())
    empty = all(disk.signature is None for node in facts.values() for disk in node.disks[: len(DISK_ROLES)])
    return no_metadata and empty


def _metadata_problems(facts: dict[str, NodeFacts], fresh: bool) -> list[Problem]:
    if fresh:
        return []
    problems = []
    for node, node_facts in facts.items():
        for resource in layout.RESOURCES:
            if node_facts.metadata.get(resource.name):
                continue
            role_disk = node_facts.disks[DISK_ROLES.index(resource.disk_role)]
            if role_disk.signature is not None or node_facts.disks[0].signature is not None:
                problems.append(
                    Problem(
                        STAGE,
                        f"node {node}",
                        f"{resource.name} has no DRBD metadata but its {resource.disk_role} disk "
                        f"{role_disk.path} (/dev/{role_disk.name}) holds data "
                        f"({role_disk.signature or 'a signature on the meta disk'}); it is never "
                        "overwritten. Check the disk by hand",
                    )
                )
    return problems


# Connection states in which the two nodes replicate again: a split brain is over.
REPLICATING = ("Connected", "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT")


def _connection(facts: NodeFacts, resource: layout.DrbdResource) -> str:
    state = facts.drbd.get(resource.minor)
    return state.cs if state else "Unconfigured"


def _split_brain(facts: dict[str, NodeFacts]) -> list[Problem]:
    """A resource whose split-brain handler fired on some node and that does not replicate again."""
    problems = []
    for resource in layout.RESOURCES:
        detected = [node for node, node_facts in facts.items() if resource.name in node_facts.split_brain]
        if not detected or any(_connection(facts[node], resource) in REPLICATING for node in facts):
            continue
        roles = ", ".join(
            f"{node} ({_role(facts[node], resource)}, {_connection(facts[node], resource)})" for node in facts
        )
        name = resource.name
        problems.append(
            Problem(
                STAGE,
                f"drbd {name}",
                f"split brain: {roles} each changed the data while disconnected (detected on "
                f"{' and '.join(detected)}); nothing was changed, vsa-orchestrate never picks the data "
                "to discard. Choose the node whose changes since the split are lost (the victim); on it run "
                f"`drbdadm secondary {name}; drbdadm connect --discard-my-data {name}` (stop heartbeat "
                f"there first if it serves the LUN), on the other `drbdadm connect {name}`, then rerun",
            )
        )
    return problems


def _role(facts: NodeFacts, resource: layout.DrbdResource) -> str:
    state = facts.drbd.get(resource.minor)
    return state.ro.split("/")[0] if state else "down"


def _node_files(node: str, desired: Desired, facts: dict[str, NodeFacts], fresh: bool) -> Change | None:
    node_facts = facts[node]
    attrs: list[Attr] = []
    writes = stale_files(desired, node_facts)
    for path in writes:
        file, current = desired.files[path], node_facts.files.get(path)
        before = None if current is None else f"sha256 {current[0][:12]}, mode {oct(current[1])}"
        after = f"sha256 {sha256(file.content)[:12]}, mode {oct(file.mode)}"
        attrs.append(Attr(path, before, after, sensitive=file.sensitive))
    steps = ["write"] if writes else []
    resolved = [
        r.name
        for r in layout.RESOURCES
        if r.name in node_facts.split_brain and _connection(node_facts, r) in REPLICATING
    ]
    for name in resolved:
        attrs.append(Attr(f"drbd {name} split-brain marker", "set (resolved since)", None))
    if resolved:
        steps.append("forget_split_brain")
    if not node_facts.services.dopd_ready:
        attrs.append(Attr("dopd may call drbdsetup/drbdmeta", None, "root:haclient 4750"))
        steps.append("dopd")
    create_md = [] if fresh else [r.name for r in layout.RESOURCES if not node_facts.metadata.get(r.name)]
    for name in create_md:
        attrs.append(
            Attr(f"drbd {name} metadata", None, "created (disk verified empty; full resync from peer)")
        )
    if create_md:
        steps.append("create_md")
    up, adjust, connect = [], [], []
    for resource in [] if fresh else layout.RESOURCES:
        state = node_facts.drbd.get(resource.minor)
        if state is None or state.cs == "Unconfigured":
            attrs.append(Attr(f"drbd {resource.name}", "down", "up"))
            up.append(resource.name)
        elif f"/etc/drbd.d/{resource.name}.res" in writes:
            adjust.append(resource.name)  # a running resource takes changed settings online
        elif state.cs == "StandAlone":
            attrs.append(Attr(f"drbd {resource.name}", "StandAlone", "connected (resync follows)"))
            connect.append(resource.name)
    if up:
        steps.append("up")
    if adjust:
        steps.append("adjust")
    if connect:
        steps.append("connect")
    if not steps:
        return None
    return Change(
        stage=STAGE,
        action="update",
        resource=f"node {node} files",
        attrs=attrs,
        steps=steps,
        params={
            "node": node,
            "write": writes,
            "create_md": create_md,
            "up": up,
            "adjust": adjust,
            "connect": connect,
            "resolved_split_brain": resolved,
        },
    )


def _initialize(plan: Plan) -> Change:
    first = plan.storage_nodes[0].node
    return Change(
        stage=STAGE,
        action="create",
        resource="drbd",
        attrs=[
            Attr("resources", None, ", ".join(r.name for r in layout.RESOURCES)),
            Attr("metadata", None, "created on both nodes (every disk verified empty)"),
            Attr("initial sync", None, "skipped (both disks are empty: new-current-uuid --clear-bitmap)"),
            Attr(
                "config filesystem",
                None,
                f"{layout.CONFIG_FSTYPE} on {layout.CONFIG.device}, made on {first}",
            ),
        ],
        steps=["create_md", "up", "skip_sync", "config_fs"],
        params={"first": first},
    )


def _node_services(node: str, desired: Desired, facts: NodeFacts, fresh: bool) -> Change | None:
    attrs: list[Attr] = []
    steps: list[str] = []
    services = facts.services
    if not services.drbd_enabled:
        # A rebooted node brings its DRBD resources up as Secondary by itself and resyncs.
        attrs.append(Attr("drbd at boot", False, True))
        steps.append("enable_drbd")
    if not services.heartbeat_enabled:
        attrs.append(Attr("heartbeat enabled", False, True))
        steps.append("enable")
    if not services.heartbeat_active:
        attrs.append(Attr("heartbeat", "stopped", "running"))
        steps.append("start")
    elif any(desired.files[path].service == "heartbeat" for path in stale_files(desired, facts)):
        attrs.append(
            Attr("heartbeat", "running", "restarted (configuration changed; resources move briefly)")
        )
        steps.append("restart")
    if services.config_mounted and not fresh:
        current = facts.target_definition
        if current != sha256(desired.target_definition):
            attrs.append(
                Attr(layout.TARGET_DEFINITION, current and current[:12], "rewritten", sensitive=True)
            )
            steps.append("target_definition")
        if not services.target_running or "target_definition" in steps:
            attrs.append(
                Attr("iSCSI target", "stopped" if not services.target_running else "stale", "running")
            )
            steps.append("target")
    if not steps:
        return None
    return Change(
        stage=STAGE,
        action="update",
        resource=f"node {node} services",
        attrs=attrs,
        steps=steps,
        params={"node": node},
    )
