"""The `guest` diff: pure, (plan, desired files, node facts) -> changes, problems.

Changes come in phases, in this order:
1. "node files" per node: managed files, dopd's helper permissions, DRBD
   metadata for a replaced node with empty disks, `drbdadm up` / `adjust` /
   `connect` for resources that are down, changed or disconnected;
2. "drbd" once, at first creation only (both nodes without metadata and every
   disk verified empty): metadata, skip the initial sync, the config filesystem;
3. "node services" per node: the cluster manager's units (heartbeat, or
   corosync and pacemaker) enabled and running, the target definition on the
   node that holds the config volume, the target running;
4. with Pacemaker, "pacemaker configuration" once: our part of the CIB loaded
   (options, vsa-serve, and its ban from the witness), then Pacemaker started on
   the witness, which must never run it before that ban is in the CIB.
The last change that starts or restarts the manager (or loads the CIB) ends with
WaitServing. A pair running the other manager is refused, never switched.
Data safety: metadata is never created on a disk that has it or that holds
any signature; nothing is forced primary except at first creation; a split
brain (DRBD's handler left its marker and the resource does not replicate)
is reported, never resolved.
"""

from dataclasses import replace

from orchestrator.changes import Attr, Change, Problem
from orchestrator.guest import layout
from orchestrator.guest.facts import REPLICATING, Disk, NodeFacts
from orchestrator.guest.layout import DISK_ROLES
from orchestrator.guest.managers import ALL_UNITS, ClusterManager, manager_for
from orchestrator.guest.managers.pacemaker import CIB_FILE
from orchestrator.guest.render import Desired, drbd_config, sha256
from orchestrator.operations import Operation
from orchestrator.plan import Plan
from orchestrator.stages.guest import witness
from orchestrator.stages.guest.operations import (
    AllowDopd,
    CleanupServe,
    CreateDrbdMetadata,
    DrbdAdjust,
    DrbdConnect,
    DrbdUp,
    EnableService,
    ForgetSplitBrain,
    InitializeDrbd,
    LoadCib,
    NodeDevices,
    RestartService,
    StartService,
    StartTarget,
    WaitServing,
    WriteFile,
    WriteTargetDefinition,
)

STAGE = "guest"


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


def disk_problems(facts: dict[str, NodeFacts]) -> list[Problem]:
    """Nodes without their three data disks: nothing can be rendered for them (checked once,
    before the stage renders the desired files)."""
    return [
        Problem(
            STAGE,
            f"node {node}",
            f"found {len(node_facts.disks)} data disk(s), expected meta, config and data; run the vms stage",
        )
        for node, node_facts in facts.items()
        if devices(node_facts) is None
    ]


def metadata_refusal(
    disks: list[Disk], metadata: dict[str, bool], resource: layout.DrbdResource
) -> str | None:
    """Why `resource` must not get new metadata on a node, or None (no metadata, disks blank)."""
    if metadata.get(resource.name):
        return f"{resource.name} has DRBD metadata already"
    if len(disks) < len(DISK_ROLES):
        return f"found {len(disks)} data disk(s), expected meta, config and data"
    role_disk = disks[DISK_ROLES.index(resource.disk_role)]
    if role_disk.signature is not None or disks[0].signature is not None:
        return (
            f"{resource.name} has no DRBD metadata but its {resource.disk_role} disk "
            f"{role_disk.path} (/dev/{role_disk.name}) holds data "
            f"({role_disk.signature or 'a signature on the meta disk'}); it is never overwritten"
        )
    return None


def fresh_pair(facts: dict[str, tuple[list[Disk], dict[str, bool]]]) -> bool:
    """Every node without any metadata and with every data disk free of signatures."""
    no_metadata = all(not any(metadata.values()) for _, metadata in facts.values())
    empty = all(disk.signature is None for disks, _ in facts.values() for disk in disks[: len(DISK_ROLES)])
    return no_metadata and empty


def diff(
    plan: Plan,
    desired: dict[str, Desired],
    facts: dict[str, NodeFacts],
    witness_facts: witness.WitnessFacts | None = None,
) -> tuple[list[Change], list[Problem]]:
    """`desired` is rendered from these facts' disks, so every node has its three (disk_problems).
    The witness (when the plan has one, `witness_facts`) gets its files and unit before the
    storage nodes' services start, so the cluster forms with three votes."""
    manager = manager_for(plan)
    fresh = _first_creation(facts)
    problems = _manager_problems(plan, facts) + _metadata_problems(facts, fresh) + _split_brain(facts)
    if problems:
        return [], problems
    node_devices = tuple(
        NodeDevices(node, **found) for node, node_facts in facts.items() if (found := devices(node_facts))
    )
    changes = [
        change
        for node in facts
        if (change := _node_files(node, desired[node], facts, fresh, node_devices, manager))
    ]
    if fresh:
        changes.append(_initialize(plan, facts, desired))
    if plan.witness is not None and witness_facts is not None:
        changes += filter(None, [witness.diff(plan.witness.node, desired[plan.witness.node], witness_facts)])
    services = [
        change
        for node in facts
        if (change := _node_services(node, desired[node], facts[node], fresh, manager))
    ]
    if manager.name == "pacemaker":
        if cib := _cib(desired, facts, bool(services)):
            services.append(cib)
        elif unserved := _unserved(facts):
            services.append(unserved)
        if plan.witness is not None and witness_facts is not None:
            services += filter(None, [witness.pacemaker_change(plan.witness.node, witness_facts)])
    starts = [index for index, change in enumerate(services) if any(map(_takes_over, change.operations))]
    if starts:
        last = services[starts[-1]]
        services[starts[-1]] = replace(last, operations=(*last.operations, WaitServing()))
    return changes + services, []


def _takes_over(operation: Operation) -> bool:
    """Starting the manager (or loading its resources) lets a node take the LUN over."""
    if isinstance(operation, LoadCib | CleanupServe):
        return True
    return isinstance(operation, StartService | RestartService) and operation.unit in (
        "heartbeat",
        "pacemaker",
    )


def _manager_problems(plan: Plan, facts: dict[str, NodeFacts]) -> list[Problem]:
    """A node running (or set to start) another manager's units: switching a pair that
    serves is not done here, and two managers must never drive the same DRBD."""
    wanted = manager_for(plan)
    problems = []
    for node, node_facts in facts.items():
        services = node_facts.services
        other = [u for u in ALL_UNITS if u not in wanted.units and u in services.active | services.enabled]
        if not other:
            continue
        units = " ".join(other)
        running = "heartbeat" if "heartbeat" in other else "pacemaker"
        default = " (the default when [ha] names none)" if wanted.name == "pacemaker" else ""
        problems.append(
            Problem(
                STAGE,
                f"node {node}",
                f"runs {units}, but the plan's [ha] manager is {wanted.name!r}{default}; a serving pair "
                f"is not switched between managers: keep the one it "
                f'runs, [ha] manager = "{running}", or switch by hand (the LUN is unserved meanwhile): '
                f"on both nodes `systemctl disable --now {units}`, then rerun",
            )
        )
    return problems


def _first_creation(facts: dict[str, NodeFacts]) -> bool:
    """Both nodes without any metadata and with every data disk free of signatures."""
    return fresh_pair({node: (node_facts.disks, node_facts.metadata) for node, node_facts in facts.items()})


def _metadata_problems(facts: dict[str, NodeFacts], fresh: bool) -> list[Problem]:
    if fresh:
        return []
    problems = []
    for node, node_facts in facts.items():
        for resource in layout.RESOURCES:
            if node_facts.metadata.get(resource.name):
                continue
            refusal = metadata_refusal(node_facts.disks, node_facts.metadata, resource)
            if refusal is not None:
                problems.append(Problem(STAGE, f"node {node}", f"{refusal}. Check the disk by hand"))
    return problems


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
                f"`drbdadm secondary {name}; drbdadm connect --discard-my-data {name}` (stop its cluster "
                f"manager first if it serves the LUN), on the other `drbdadm connect {name}`, then rerun",
            )
        )
    return problems


def _role(facts: NodeFacts, resource: layout.DrbdResource) -> str:
    state = facts.drbd.get(resource.minor)
    return state.ro.split("/")[0] if state else "down"


def _node_files(
    node: str,
    desired: Desired,
    facts: dict[str, NodeFacts],
    fresh: bool,
    node_devices: tuple[NodeDevices, ...],
    manager: ClusterManager,
) -> Change | None:
    node_facts = facts[node]
    attrs: list[Attr] = []
    operations: list[Operation] = []
    writes = stale_files(desired, node_facts)
    for path in writes:
        file, current = desired.files[path], node_facts.files.get(path)
        before = None if current is None else f"sha256 {current[0][:12]}, mode {oct(current[1])}"
        after = f"sha256 {sha256(file.content)[:12]}, mode {oct(file.mode)}"
        attrs.append(Attr(path, before, after, sensitive=file.sensitive))
        operations.append(
            WriteFile(node, path, sha256(file.content), file.mode, file.sensitive, node_devices)
        )
    resolved = tuple(
        r.name
        for r in layout.RESOURCES
        if r.name in node_facts.split_brain and _connection(node_facts, r) in REPLICATING
    )
    for name in resolved:
        attrs.append(Attr(f"drbd {name} split-brain marker", "set (resolved since)", None))
    if resolved:
        operations.append(ForgetSplitBrain(node, resolved))
    if manager.dopd and not node_facts.services.dopd_ready:
        attrs.append(Attr("dopd may call drbdsetup/drbdmeta", None, "root:haclient 4750"))
        operations.append(AllowDopd(node))
    create_md = [] if fresh else [r.name for r in layout.RESOURCES if not node_facts.metadata.get(r.name)]
    for name in create_md:
        attrs.append(
            Attr(f"drbd {name} metadata", None, "created (disk verified empty; full resync from peer)")
        )
    if create_md:
        operations.append(CreateDrbdMetadata(node, tuple(create_md)))
    up, adjust, connect = [], [], []
    for resource in [] if fresh else layout.RESOURCES:
        state = node_facts.drbd.get(resource.minor)
        if state is None or state.cs == "Unconfigured":
            attrs.append(Attr(f"drbd {resource.name}", "down", "up"))
            up.append(resource.name)
        elif drbd_config(resource) in writes:
            adjust.append(resource.name)  # a running resource takes changed settings online
        elif state.cs == "StandAlone":
            attrs.append(Attr(f"drbd {resource.name}", "StandAlone", "connected (resync follows)"))
            connect.append(resource.name)
    if up:
        operations.append(DrbdUp(node, tuple(up)))
    if adjust:
        operations.append(DrbdAdjust(node, tuple(adjust)))
    if connect:
        operations.append(DrbdConnect(node, tuple(connect)))
    if not operations:
        return None
    return Change(
        stage=STAGE,
        action="update",
        resource=f"node {node} files",
        attrs=attrs,
        operations=tuple(operations),
    )


def _initialize(plan: Plan, facts: dict[str, NodeFacts], desired: dict[str, Desired]) -> Change:
    first = plan.storage_nodes[0].node
    definition = sha256(desired[first].target_definition)
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
        operations=(InitializeDrbd(first, tuple(facts), definition),),
    )


def _node_services(
    node: str, desired: Desired, facts: NodeFacts, fresh: bool, manager: ClusterManager
) -> Change | None:
    attrs: list[Attr] = []
    operations: list[Operation] = []
    services = facts.services
    if "drbd" not in services.enabled:
        # A rebooted node brings its DRBD resources up as Secondary by itself and resyncs.
        attrs.append(Attr("drbd at boot", False, True))
        operations.append(EnableService(node, "drbd"))
    for unit in manager.units:
        if unit not in services.enabled:
            attrs.append(Attr(f"{unit} enabled", False, True))
            operations.append(EnableService(node, unit))
    stopped = [unit for unit in manager.units if unit not in services.active]
    changed = any(desired.files[path].service in manager.units for path in stale_files(desired, facts))
    for unit in stopped:
        attrs.append(Attr(unit, "stopped", "running"))
        operations.append(StartService(node, unit))
    if changed and not stopped:
        for unit in manager.units:
            attrs.append(Attr(unit, "running", "restarted (configuration changed; resources move briefly)"))
            operations.append(RestartService(node, unit))
    if services.config_mounted and not fresh:
        current = facts.target_definition
        wanted = sha256(desired.target_definition)
        rewrite = current != wanted
        if rewrite:
            attrs.append(
                Attr(layout.TARGET_DEFINITION, current and current[:12], "rewritten", sensitive=True)
            )
            operations.append(WriteTargetDefinition(node, wanted))
        if not services.target_running or rewrite:
            attrs.append(
                Attr("iSCSI target", "stopped" if not services.target_running else "stale", "running")
            )
            operations.append(StartTarget(node))
    if not operations:
        return None
    return Change(
        stage=STAGE,
        action="update",
        resource=f"node {node} services",
        attrs=attrs,
        operations=tuple(operations),
    )


def _cib(desired: dict[str, Desired], facts: dict[str, NodeFacts], starting: bool) -> Change | None:
    """Our part of the CIB, loaded when a node's copy of it changes, when no node's
    Pacemaker holds our resource, or when the cluster is (re)started."""
    stale = [node for node, node_facts in facts.items() if CIB_FILE in stale_files(desired[node], node_facts)]
    loaded = any(node_facts.services.cib_loaded for node_facts in facts.values())
    if not (stale or not loaded or starting):
        return None
    first = next(iter(facts))
    content = desired[first].files[CIB_FILE].content
    before = "loaded" if loaded else None
    return Change(
        stage=STAGE,
        action="update" if loaded else "create",
        resource="pacemaker configuration",
        attrs=[Attr("vsa-serve and cluster options", before, f"loaded (sha256 {sha256(content)[:12]})")],
        operations=(LoadCib(first, sha256(content)),),
    )


def _unserved(facts: dict[str, NodeFacts]) -> Change | None:
    """Pacemaker runs with quorum everywhere, our resource is loaded, and no node serves:
    a start failed (its fail count keeps it stopped); clear it so it starts again."""
    services = [node_facts.services for node_facts in facts.values()]
    if not all(s.quorate and s.cib_loaded for s in services) or any(s.vip_here for s in services):
        return None
    return Change(
        stage=STAGE,
        action="update",
        resource="pacemaker resource vsa-serve",
        attrs=[Attr("served by", None, "a node again (failures cleared)")],
        operations=(CleanupServe(next(iter(facts))),),
    )


def deployed_secrets(
    plan: Plan, facts: dict[str, NodeFacts], lost: list[str]
) -> tuple[dict[str, str], list[Problem]]:
    """The secrets the state folder lost, as the nodes use them. A problem when nodes
    disagree, or when a node holds the secret's file but it could not be read back
    (a new secret would rotate it on a working pair)."""
    deployed, problems = {}, []
    for name in lost:
        values = {node_facts.secrets[name] for node_facts in facts.values() if name in node_facts.secrets}
        unread = [
            node
            for node, node_facts in facts.items()
            if _holds(plan, node_facts, name) and name not in node_facts.secrets
        ]
        if len(values) > 1 or unread:
            why = "use different ones" if len(values) > 1 else f"hold it unreadably ({', '.join(unread)})"
            problems.append(
                Problem(
                    STAGE,
                    f"secret {name}",
                    f"the state folder has no {name} secret and the storage nodes {why}; "
                    f"restore secrets/{name} in the state folder from a backup",
                )
            )
        elif values:
            deployed[name] = values.pop()
    return deployed, problems


def _holds(plan: Plan, facts: NodeFacts, secret: str) -> bool:
    """Whether the node has the file a secret is read back from."""
    if secret == "chap":
        return facts.target_definition is not None
    manager = manager_for(plan)
    path = {"drbd": drbd_config(layout.CONFIG), manager.secret: manager.secret_path()}[secret]
    return path in facts.files
