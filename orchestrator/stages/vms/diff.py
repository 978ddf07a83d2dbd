"""The `vms` stage: one storage VM per storage node, on its host's local datastore.

observe() reads facts from the shared snapshot (plus a datastore folder
listing only when a disk is missing); diff() is pure: (plan, facts) ->
changes and problems; storage_vm_apply executes the changes.

Source (storage_vm.source): a template, cloned (vCenter only), or the
appliance OVA, imported onto the node's host (vCenter or a single ESXi host,
ova_import.py); either way the same reconfigure follows, so a rerun cannot
tell an imported node from a cloned one.

Device layout, fixed so a rerun can recognise every device:
- OS disk from the source (template or OVA), on its own controller;
- a paravirtual SCSI controller on bus 1 with the meta (unit 0), config
  (unit 1) and data (unit 2) disks, files "[ds] <vm>/<vm>_<role>.vmdk";
- vmxnet3 NICs in key order: iSCSI, replication, with plan-derived MACs.
"""

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Attr, Change, Problem
from orchestrator.identity import NIC_ROLES, NodeIdentity, nic_mac
from orchestrator.plan import Plan, StorageNode
from orchestrator.vsphere import ova_package
from orchestrator.vsphere.inventory import Inventory
from orchestrator.vsphere.ova_package import OvaError, OvfFacts
from orchestrator.vsphere.vm_facts import (
    MARKER_INCOMPLETE,
    MARKER_NODE,
    MARKER_PLAN,
    NicFact,
    VmFact,
    vm_fact,
)

STAGE = "vms"
DATA_BUS = 1
DISK_ROLES = ("meta", "config", "data")  # unit numbers 0, 1, 2 on DATA_BUS
NIC_KIND = "VirtualVmxnet3"
KB_PER_GB = 1024 * 1024


@dataclass(frozen=True)
class Placement:
    """Where the plan puts a node, resolved in the inventory (None: not found)."""

    host_id: str | None
    compute_id: str | None
    pool_id: str | None
    datastore_id: str | None
    datastore_local: bool
    networks: dict[str, str]  # portgroup name -> network id, as seen by the host


@dataclass
class NodeFacts:
    node: StorageNode
    placement: Placement
    vm: VmFact | None
    folder_files: frozenset[str] | None = None  # file names in the VM folder, when looked up


@dataclass(frozen=True)
class OvaSource:
    """The plan's OVA, read and verified (only when a VM is to be imported)."""

    path: str
    fact: VmFact | None  # the VM its descriptor describes; None when unusable
    error: str | None = None  # one line naming the file (and the entry)


@dataclass
class VmsFacts:
    nodes: list[NodeFacts]
    folder_exists: bool
    template: VmFact | None
    orphans: list[VmFact]
    ova: OvaSource | None = None
    esxi: bool = False  # connected to an ESXi host (HostAgent), which cannot clone


def vm_folder(plan: Plan, esxi: bool) -> str:
    """Our VMs live in their own folder, so observing never reads unrelated VMs.
    A single ESXi host has no VM folders (CreateFolder is NotSupported there):
    its VMs, ours among them, live in the root VM folder ("")."""
    return "" if esxi else f"vsa-orchestrate/{plan.name}"


def vm_inventory_path(plan: Plan, esxi: bool, name: str = "") -> str:
    """The inventory path of our VM folder, or of VM `name` in it."""
    return "/".join(part for part in (plan.vsphere.datacenter, "vm", vm_folder(plan, esxi), name) if part)


def vm_paths(plan: Plan) -> list[str]:
    """Other VMs the stage reads: the source template (an inventory path)."""
    return [plan.storage_vm.source.template] if plan.storage_vm.source.template else []


def observe(plan: Plan, inventory: Inventory, esxi: bool = False) -> VmsFacts:
    """Facts from the snapshot alone; see needs_folder_listing and needs_source for the rest."""
    vms = {obj.name: obj for obj in inventory.folder_vms()}
    nodes = []
    for node in plan.storage_nodes:
        obj = vms.get(plan.vm_name(node.node))
        fact = vm_fact(obj, inventory) if obj is not None else None
        nodes.append(NodeFacts(node=node, placement=placement_of(inventory, node), vm=fact))
    planned = {plan.vm_name(node.node) for node in plan.storage_nodes}
    orphans = [vm_fact(obj, inventory) for name, obj in vms.items() if name not in planned]
    template = next(
        (vm_fact(obj, inventory) for path in vm_paths(plan) if (obj := inventory.vm_at(path))), None
    )
    return VmsFacts(
        nodes=nodes,
        folder_exists=inventory.vm_folder is not None,
        template=template,
        orphans=[vm for vm in orphans if vm.owner == plan.name],
        esxi=esxi,
    )


def needs_source(plan: Plan, facts: VmsFacts) -> bool:
    """True when some node's VM is to be made (missing, or an unfinished import)."""
    return any(node.vm is None or (node.vm.owner == plan.name and node.vm.incomplete) for node in facts.nodes)


def observe_ova(plan: Plan) -> OvaSource:
    """Read and verify the plan's OVA (every manifest digest; once per file version)."""
    path = plan.ova_file
    if path is None:
        raise ValueError("the plan names no OVA (storage_vm.source.ova)")
    try:
        package = ova_package.open_verified(path)
    except OvaError as err:
        return OvaSource(str(path), None, str(err))
    return OvaSource(str(path), ova_fact(package.ovf))


def ova_fact(ovf: OvfFacts) -> VmFact:
    """The VM an OVA's descriptor describes, as a source to diff against (like a template)."""
    return VmFact(
        id="ova",
        name=ovf.name,
        template=True,
        host_id=None,
        pool_id=None,
        power="poweredOff",
        tools_running=False,
        cpus=ovf.cpus,
        memory_mb=ovf.memory_mb,
        annotation="",
        nics=tuple(
            NicFact(key=4000 + index, kind=nic.kind, network=nic.network, mac=None)
            for index, nic in enumerate(ovf.nics)
        ),
        pvscsi_buses={bus: 1000 + bus for bus in ovf.pvscsi_buses},
    )


def placement_of(inventory: Inventory, node: StorageNode) -> Placement:
    host = inventory.named(vim.HostSystem, node.esxi)
    if host is None:
        return Placement(None, None, None, None, False, {})
    compute = inventory.by_ref(host.get("parent"))
    datastore = next(
        (
            obj
            for obj in (inventory.by_ref(ref) for ref in host.get("datastore") or [])
            if obj and obj.name == node.datastore
        ),
        None,
    )
    local = bool(
        datastore
        and not datastore.get("summary.multipleHostAccess")
        and len(datastore.get("host") or []) == 1
    )
    networks = {}
    for ref in host.get("network") or []:
        network = inventory.by_ref(ref)
        if network is not None:
            networks[network.name] = network.id
    pool = compute.get("resourcePool") if compute else None
    return Placement(
        host_id=host.id,
        compute_id=compute.id if compute else None,
        pool_id=pool._moId if pool is not None else None,
        datastore_id=datastore.id if datastore else None,
        datastore_local=local,
        networks=networks,
    )


def needs_folder_listing(plan: Plan, facts: NodeFacts) -> bool:
    """True when a planned disk is missing, so we must know if its file survived."""
    vm = facts.vm
    if vm is None or vm.owner != plan.name:
        return False
    return any(_disk_at(vm, unit) is None for unit in range(len(DISK_ROLES)))


def disk_file(plan: Plan, node: StorageNode, role: str) -> str:
    vm = plan.vm_name(node.node)
    return f"[{node.datastore}] {vm}/{vm}_{role}.vmdk"


def _disk_at(vm: VmFact, unit: int) -> Any:
    controller = vm.pvscsi_buses.get(DATA_BUS)
    if controller is None:
        return None
    return next((d for d in vm.disks if d.controller_key == controller and d.unit == unit), None)


def desired_extra_config(plan: Plan, node: StorageNode, identity: NodeIdentity) -> dict[str, str]:
    return {
        MARKER_PLAN: plan.name,
        MARKER_NODE: node.node,
        "disk.EnableUUID": "TRUE",
        **identity.guestinfo(),
    }


def annotation(plan: Plan, node: StorageNode) -> str:
    return (
        f"Storage VM of vsa-orchestrate plan '{plan.name}' (node {node.node}). "
        "Holds replicated data: change it through the plan, not by hand."
    )


SENSITIVE_KEYS = {"guestinfo.userdata"}


def diff(
    plan: Plan,
    facts: VmsFacts,
    identities: dict[str, NodeIdentity],
    allow_destroy: frozenset[str],
) -> tuple[list[Change], list[Problem]]:
    changes: list[Change] = []
    problems: list[Problem] = []
    source = plan.storage_vm.source
    if facts.esxi and source.template:
        message = (
            f"{plan.vsphere.server} is an ESXi host, which cannot clone a template (only vCenter "
            'can); import the appliance instead: storage_vm.source = { ova = "path/to/appliance.ova" }'
        )
        return [], [Problem(STAGE, "storage_vm.source", message)]
    if source.ova and facts.ova is not None and facts.ova.error:
        # One line for the OVA, not one per node that needs it.
        return [], [Problem(STAGE, "storage_vm.source", facts.ova.error)]
    for node_facts in facts.nodes:
        change, found = diff_node(plan, node_facts, facts, identities[node_facts.node.node], allow_destroy)
        problems += found
        if change is not None:
            changes.append(change)
    for orphan in facts.orphans:
        node = orphan.extra.get(MARKER_NODE, orphan.name)
        resource = f"vm {orphan.name}"
        if node in allow_destroy:
            changes.append(
                Change(
                    stage=STAGE,
                    action="delete",
                    resource=resource,
                    steps=["power_off", "destroy"],
                    params={"vm": orphan.id},
                    note=f"destroys node {node} and every disk it holds (--allow-destroy {node})",
                )
            )
        else:
            problems.append(
                Problem(
                    STAGE,
                    resource,
                    f"belongs to this plan (node {node}) but the plan no longer lists it; it holds "
                    f"data, so it is not removed. Put it back in the plan, or rerun with "
                    f"--allow-destroy {node} to delete it and its disks",
                )
            )
    return changes, problems


def diff_node(
    plan: Plan,
    facts: NodeFacts,
    site: VmsFacts,
    identity: NodeIdentity,
    allow_destroy: frozenset[str],
) -> tuple[Change | None, list[Problem]]:
    node = facts.node
    name = plan.vm_name(node.node)
    resource = f"vm {name}"
    problems = _placement_problems(plan, node, facts.placement, resource)
    vm = facts.vm
    if vm is not None and vm.owner != plan.name:
        owner = f"plan {vm.owner!r}" if vm.owner else "no vsa-orchestrate marker"
        problems.append(
            Problem(
                STAGE,
                resource,
                f"a VM with this name exists but is not ours ({owner}); it is never adopted or "
                "touched. Rename or remove it, or change the plan's name",
            )
        )
    if problems:
        return None, problems
    replaces = vm if vm is not None and vm.incomplete else None
    if replaces is not None:
        problems += _incomplete_problems(replaces, resource)
        if problems:
            return None, problems
    if vm is None or replaces is not None:
        base = _source_base(plan, site, resource, problems)
        if base is None:
            return None, problems
        creating = True
    else:
        base, creating = vm, False
        problems += _location_problems(node, facts.placement, vm, resource)
        if problems:
            return None, problems
    edits = vm_edits(plan, node, facts.placement, base, identity, facts.folder_files, allow_destroy, resource)
    if edits.problems:
        return None, edits.problems
    if creating:
        source = plan.storage_vm.source
        ova = site.ova.path if site.ova is not None else None  # read whenever it is the source
        made = {"template": base.id} if source.template else {"ova": ova}
        return (
            Change(
                stage=STAGE,
                action="replace" if replaces else "create",
                resource=resource,
                attrs=[
                    Attr("folder", None, vm_folder(plan, site.esxi) or "(the host's root VM folder)"),
                    Attr("host", None, node.esxi),
                    Attr("datastore", None, node.datastore),
                    Attr(
                        "source",
                        None,
                        f"template {source.template}" if source.template else f"ova {ova}",
                    ),
                    *edits.attrs,
                ],
                steps=[
                    *(["destroy"] if replaces else []),
                    *([] if site.folder_exists else ["folder"]),
                    "clone" if source.template else "import",
                    "reconfigure",
                    "power_on",
                ],
                params={
                    "node": node.node,
                    **made,
                    **({"replaces": replaces.id} if replaces else {}),
                    **edits.params,
                },
                note=(
                    f"an import that did not finish ({MARKER_INCOMPLETE} is set, no data disk): "
                    "destroyed and imported again"
                    if replaces
                    else None
                ),
            ),
            [],
        )
    if not edits.attrs:
        return None, []
    steps = []
    if edits.power_cycle:
        steps.append("shutdown")
    if edits.params["devices"] or edits.params["config"]:
        steps.append("reconfigure")
    if edits.power_on:
        steps.append("power_on")
    return (
        Change(
            stage=STAGE,
            action="update",
            resource=resource,
            attrs=edits.attrs,
            steps=steps,
            params={"node": node.node, "vm": base.id, **edits.params},
            note=edits.note,
        ),
        [],
    )


def _placement_problems(plan: Plan, node: StorageNode, placement: Placement, resource: str) -> list[Problem]:
    def problem(message: str) -> Problem:
        return Problem(STAGE, resource, message)

    problems = []
    if placement.datastore_id is None:
        problems.append(
            problem(
                f"host {node.esxi} has no datastore named {node.datastore!r}; "
                "set hosts[].datastore to that host's local datastore"
            )
        )
    elif not placement.datastore_local:
        problems.append(
            problem(
                f"datastore {node.datastore!r} is shared by several hosts, not local to {node.esxi}; "
                "a storage node needs the host's own local disk"
            )
        )
    for portgroup in (plan.network.iscsi_portgroup, plan.network.replication_portgroup):
        if portgroup not in placement.networks:
            problems.append(
                problem(
                    f"host {node.esxi} has no portgroup {portgroup!r}; "
                    "create it on the host's vSwitch or fix [network]"
                )
            )
    return problems


def _incomplete_problems(vm: VmFact, resource: str) -> list[Problem]:
    """An unfinished import is replaced only while it holds no data disk."""
    if not any(_disk_at(vm, unit) is not None for unit in range(len(DISK_ROLES))):
        return []
    message = (
        f"is marked {MARKER_INCOMPLETE} (an unfinished import) but holds data disks, so it is not "
        "replaced; check it by hand: remove that extraConfig key if the node is fine, or move its "
        "data away and delete the VM"
    )
    return [Problem(STAGE, resource, message)]


def _source_base(plan: Plan, site: VmsFacts, resource: str, problems: list[Problem]) -> VmFact | None:
    """What a new VM starts from: the template, or the VM the OVA describes."""
    source = plan.storage_vm.source
    if source.template is None:
        if site.ova is None or site.ova.fact is None:
            error = site.ova.error if site.ova else f"{plan.ova_file}: not read"
            problems.append(Problem(STAGE, resource, error or "the OVA could not be read"))
            return None
        return site.ova.fact
    if site.template is None or not site.template.template:
        message = (
            f"source template {source.template!r} not found (or not a template) in the datacenter; "
            "import the appliance as a template with that name"
        )
        problems.append(Problem(STAGE, resource, message))
        return None
    return site.template


def _location_problems(node: StorageNode, placement: Placement, vm: VmFact, resource: str) -> list[Problem]:
    if vm.host_id != placement.host_id:
        message = (
            f"runs on another host than {node.esxi}; a storage VM lives on its host's local disk "
            f"and is never moved by us; move it back to {node.esxi} or fix the plan"
        )
        return [Problem(STAGE, resource, message)]
    return []


@dataclass
class VmEdits:
    attrs: list[Attr] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    power_cycle: bool = False
    power_on: bool = False
    note: str | None = None


def vm_edits(
    plan: Plan,
    node: StorageNode,
    placement: Placement,
    vm: VmFact,
    identity: NodeIdentity,
    folder_files: frozenset[str] | None,
    allow_destroy: frozenset[str],
    resource: str,
) -> VmEdits:
    """Compare one VM (or the template it will be cloned from) with the plan."""
    edits = VmEdits()
    devices: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    _diff_controller(vm, edits, devices)
    _diff_disks(plan, node, vm, folder_files, allow_destroy, resource, edits, devices)
    _diff_nics(plan, node, placement, vm, edits, devices)
    settings = plan.storage_vm
    if vm.cpus != settings.cpus:
        edits.attrs.append(Attr("cpus", vm.cpus, settings.cpus))
        config["numCPUs"] = settings.cpus
    if vm.memory_mb != settings.memory_mb:
        edits.attrs.append(Attr("memory_mb", vm.memory_mb, settings.memory_mb))
        config["memoryMB"] = settings.memory_mb
    if config and vm.power == "poweredOn":
        edits.power_cycle = edits.power_on = True
        edits.note = (
            "CPU/memory change needs a power cycle: the guest is shut down, so heartbeat "
            "moves the storage service to the peer node while this one restarts"
        )
    extra_changes = {}
    for key, value in desired_extra_config(plan, node, identity).items():
        current = vm.extra.get(key) if not vm.template else None
        if current != value:
            edits.attrs.append(
                Attr(
                    f"extraConfig {key}",
                    _shown_extra(key, current),
                    _shown_extra(key, value),
                    sensitive=key in SENSITIVE_KEYS,
                )
            )
            extra_changes[key] = value
    if vm.incomplete:  # the import is finished by this very reconfigure
        edits.attrs.append(Attr(f"extraConfig {MARKER_INCOMPLETE}", vm.extra[MARKER_INCOMPLETE], None))
        extra_changes[MARKER_INCOMPLETE] = ""
    if extra_changes:
        config["extraConfig"] = extra_changes
    wanted_note = annotation(plan, node)
    if (vm.annotation if not vm.template else None) != wanted_note:
        edits.attrs.append(
            Attr("annotation", vm.annotation or None if not vm.template else None, wanted_note)
        )
        config["annotation"] = wanted_note
    if vm.power != "poweredOn" or vm.template:
        edits.attrs.append(Attr("power", None if vm.template else vm.power, "poweredOn"))
        edits.power_on = True
    edits.params = {"devices": devices, "config": config, "placement": _placement_params(placement)}
    return edits


def _shown_extra(key: str, value: str | None) -> str | None:
    """cloud-init metadata is shown by its instance-id, not as a base64 blob."""
    if key != "guestinfo.metadata" or not value:
        return value
    try:
        return "instance-id " + json.loads(base64.b64decode(value))["instance-id"]
    except (ValueError, KeyError, TypeError):
        return f"(unreadable, {len(value)} characters)"


def _placement_params(placement: Placement) -> dict[str, Any]:
    return {
        "host": placement.host_id,
        "pool": placement.pool_id,
        "datastore": placement.datastore_id,
        "networks": placement.networks,
    }


def _diff_controller(vm: VmFact, edits: VmEdits, devices: list[dict[str, Any]]) -> None:
    if DATA_BUS not in vm.pvscsi_buses:
        edits.attrs.append(Attr(f"scsi{DATA_BUS} controller", None, "paravirtual"))
        devices.append({"op": "add_controller", "bus": DATA_BUS})


def _diff_disks(
    plan: Plan,
    node: StorageNode,
    vm: VmFact,
    folder_files: frozenset[str] | None,
    allow_destroy: frozenset[str],
    resource: str,
    edits: VmEdits,
    devices: list[dict[str, Any]],
) -> None:
    settings = plan.storage_vm
    for unit, role in enumerate(DISK_ROLES):
        size_kb = getattr(settings, f"{role}_disk_gb") * KB_PER_GB
        file = disk_file(plan, node, role)
        label = f"disk {role} (scsi{DATA_BUS}:{unit})"
        current = _disk_at(vm, unit) if not vm.template else None
        add = {"op": "add_disk", "role": role, "unit": unit, "size_kb": size_kb, "file": file}
        if current is None:
            reattach = folder_files is not None and file.rsplit("/", 1)[-1] in folder_files
            shown = f"{_gb(size_kb)} ({'re-attach existing ' if reattach else ''}{file})"
            edits.attrs.append(Attr(label, None, shown))
            devices.append({**add, "create": not reattach, "provisioning": settings.provisioning})
        elif current.capacity_kb < size_kb:
            edits.attrs.append(Attr(label, _gb(current.capacity_kb), _gb(size_kb)))
            devices.append({"op": "grow_disk", "key": current.key, "size_kb": size_kb})
        elif current.capacity_kb > size_kb:
            if node.node not in allow_destroy:
                edits.problems.append(
                    Problem(
                        STAGE,
                        resource,
                        f"{role} disk is {_gb(current.capacity_kb)} but the plan says {_gb(size_kb)}; "
                        "a disk is never shrunk (it holds data). Fix storage_vm."
                        f"{role}_disk_gb, or rerun with --allow-destroy {node.node} to replace the "
                        "disk with an empty one",
                    )
                )
                continue
            edits.attrs.append(
                Attr(label, _gb(current.capacity_kb), f"{_gb(size_kb)} (replaced, data destroyed)")
            )
            devices.append({"op": "remove_disk", "key": current.key, "destroy": True})
            devices.append({**add, "create": True, "provisioning": settings.provisioning})


def _diff_nics(
    plan: Plan,
    node: StorageNode,
    placement: Placement,
    vm: VmFact,
    edits: VmEdits,
    devices: list[dict[str, Any]],
) -> None:
    portgroups = {"iscsi": plan.network.iscsi_portgroup, "replication": plan.network.replication_portgroup}
    for index, role in enumerate(NIC_ROLES):
        network, mac = portgroups[role], nic_mac(plan, node.node, role)
        wanted = f"{NIC_KIND} on {network} ({mac})"
        label = f"nic {role}"
        current = vm.nics[index] if index < len(vm.nics) else None
        add = {"op": "add_nic", "role": role, "network": network, "mac": mac}
        if current is None:
            edits.attrs.append(Attr(label, None, wanted))
            devices.append(add)
        elif current.kind != NIC_KIND:
            edits.attrs.append(Attr(label, _nic_text(current), wanted))
            devices.append({"op": "remove_nic", "key": current.key})
            devices.append(add)
        elif current.network != network or current.mac != mac:
            edits.attrs.append(Attr(label, _nic_text(current), wanted))
            devices.append({"op": "edit_nic", "key": current.key, "network": network, "mac": mac})
    for extra in vm.nics[len(NIC_ROLES) :]:
        edits.attrs.append(Attr(f"nic key {extra.key}", _nic_text(extra), None))
        devices.append({"op": "remove_nic", "key": extra.key})


def _nic_text(nic: Any) -> str:
    return f"{nic.kind} on {nic.network} ({nic.mac})"


def _gb(size_kb: int) -> str:
    return f"{size_kb / KB_PER_GB:g} GB"
