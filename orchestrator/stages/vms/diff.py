"""The `vms` diff, pure: (plan, facts) -> changes and problems.

One storage VM per storage node, on its host's local datastore. Facts come
from facts.py; the handlers of the operations emitted here are in apply.py.

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
from dataclasses import dataclass, field, replace

from orchestrator.changes import Attr, Change, Problem
from orchestrator.identity import NodeIdentity, nic_mac, nic_roles
from orchestrator.operations import Operation
from orchestrator.plan import Plan, VmNode, WitnessNode
from orchestrator.stages.vms.facts import (
    DATA_BUS,
    NodeVmFacts,
    Placement,
    VmsFacts,
    disk_at,
    disk_roles,
    holds_data_disk,
    vm_folder,
)
from orchestrator.stages.vms.operations import (
    AddController,
    AddDisk,
    AddNic,
    CloneVm,
    ConfigureNewVm,
    DestroyVm,
    DeviceEdit,
    EditNic,
    EnsureVmFolder,
    ExtraConfig,
    GrowDisk,
    ImportVmFromOva,
    PowerOnVm,
    ReconfigureVm,
    RemoveDisk,
    RemoveNic,
    ShutdownGuest,
    Target,
)
from orchestrator.vsphere.vm_facts import MARKER_INCOMPLETE, MARKER_NODE, MARKER_PLAN, NicFact, VmFact

STAGE = "vms"
NIC_KIND = "VirtualVmxnet3"
KB_PER_GB = 1024 * 1024


def disk_file(plan: Plan, node: VmNode, role: str) -> str:
    vm = plan.vm_name(node.node)
    return f"[{node.datastore}] {vm}/{vm}_{role}.vmdk"


def desired_extra_config(plan: Plan, node: VmNode, identity: NodeIdentity) -> dict[str, str]:
    return {
        MARKER_PLAN: plan.name,
        MARKER_NODE: node.node,
        "disk.EnableUUID": "TRUE",
        **identity.guestinfo(),
    }


def annotation(plan: Plan, node: VmNode) -> str:
    if isinstance(node, WitnessNode):
        return (
            f"Witness VM of vsa-orchestrate plan '{plan.name}' (node {node.node}): the cluster's "
            "third vote. Holds no data; change it through the plan, not by hand."
        )
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
                    operations=(DestroyVm(node, orphan.name, orphan.id, plan.name, unfinished=False),),
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
    facts: NodeVmFacts,
    site: VmsFacts,
    identity: NodeIdentity,
    allow_destroy: frozenset[str],
) -> tuple[Change | None, list[Problem]]:
    node = facts.node
    name = plan.vm_name(node.node)
    resource = f"vm {name}"
    problems = placement_problems(plan, node, facts.placement, resource)
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
        target = Target(facts.placement.host_id, facts.placement.pool_id, facts.placement.datastore_id)
        operations: list[Operation] = []
        if replaces:
            operations.append(DestroyVm(node.node, name, replaces.id, plan.name, unfinished=True))
        if not site.folder_exists:
            operations.append(EnsureVmFolder(vm_folder(plan, site.esxi)))
        if source.template:
            operations.append(CloneVm(node.node, name, base.id, target))
        else:
            operations.append(ImportVmFromOva(node.node, name, str(ova), target))
        operations += [ConfigureNewVm(node.node, name), PowerOnVm(node.node, name, None)]
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
                operations=tuple(operations),
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
    operations = []
    if edits.power_cycle:
        operations.append(ShutdownGuest(node.node, name, base.id))
    if reconfigure := edits.reconfigure(node.node, name, base.id):
        operations.append(reconfigure)
    if edits.power_on:
        operations.append(PowerOnVm(node.node, name, base.id))
    return (
        Change(
            stage=STAGE,
            action="update",
            resource=resource,
            attrs=edits.attrs,
            operations=tuple(operations),
            note=edits.note,
        ),
        [],
    )


def placement_problems(plan: Plan, node: VmNode, placement: Placement, resource: str) -> list[Problem]:
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
    portgroups = {"iscsi": plan.network.iscsi_portgroup, "replication": plan.network.replication_portgroup}
    for portgroup in (portgroups[role] for role in nic_roles(node)):
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
    if not holds_data_disk(vm):
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


def _location_problems(node: VmNode, placement: Placement, vm: VmFact, resource: str) -> list[Problem]:
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
    devices: list[DeviceEdit] = field(default_factory=list)
    cpus: int | None = None
    memory_mb: int | None = None
    annotation: str | None = None
    extra_config: list[ExtraConfig] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    power_cycle: bool = False
    power_on: bool = False
    note: str | None = None

    def reconfigure(self, node: str, name: str, vm: str) -> ReconfigureVm | None:
        """The ReconfigVM_Task these edits need, or None when they need none."""
        config = (self.cpus, self.memory_mb, self.annotation)
        if not self.devices and not self.extra_config and config == (None, None, None):
            return None
        return ReconfigureVm(
            node, name, vm, tuple(self.devices), *config, extra_config=tuple(self.extra_config)
        )


def vm_edits(
    plan: Plan,
    node: VmNode,
    placement: Placement,
    vm: VmFact,
    identity: NodeIdentity,
    folder_files: frozenset[str] | None,
    allow_destroy: frozenset[str],
    resource: str,
) -> VmEdits:
    """Compare one VM (or the template it will be cloned from) with the plan."""
    edits = VmEdits()
    if disk_roles(node):
        _diff_controller(vm, edits)
    _diff_disks(plan, node, vm, folder_files, allow_destroy, resource, edits)
    _diff_nics(plan, node, placement, vm, edits)
    settings = plan.storage_vm
    if vm.cpus != settings.cpus:
        edits.attrs.append(Attr("cpus", vm.cpus, settings.cpus))
        edits.cpus = settings.cpus
    memory_mb = node.memory_mb if isinstance(node, WitnessNode) else settings.memory_mb
    if vm.memory_mb != memory_mb:
        edits.attrs.append(Attr("memory_mb", vm.memory_mb, memory_mb))
        edits.memory_mb = memory_mb
    if (edits.cpus, edits.memory_mb) != (None, None) and vm.power == "poweredOn":
        edits.power_cycle = edits.power_on = True
        edits.note = (
            "CPU/memory change needs a power cycle: the guest is shut down, so heartbeat "
            "moves the storage service to the peer node while this one restarts"
        )
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
            # A secret-bearing value stays out of the operation: the handler takes it from the identity.
            edits.extra_config.append(ExtraConfig(key, None if key in SENSITIVE_KEYS else value))
    if vm.incomplete:  # the import is finished by this very reconfigure
        edits.attrs.append(Attr(f"extraConfig {MARKER_INCOMPLETE}", vm.extra[MARKER_INCOMPLETE], None))
        edits.extra_config.append(ExtraConfig(MARKER_INCOMPLETE, ""))
    wanted_note = annotation(plan, node)
    if (vm.annotation if not vm.template else None) != wanted_note:
        edits.attrs.append(
            Attr("annotation", vm.annotation or None if not vm.template else None, wanted_note)
        )
        edits.annotation = wanted_note
    if vm.power != "poweredOn" or vm.template:
        edits.attrs.append(Attr("power", None if vm.template else vm.power, "poweredOn"))
        edits.power_on = True
    return edits


def _shown_extra(key: str, value: str | None) -> str | None:
    """cloud-init metadata is shown by its instance-id, not as a base64 blob."""
    if key != "guestinfo.metadata" or not value:
        return value
    try:
        return "instance-id " + json.loads(base64.b64decode(value))["instance-id"]
    except (ValueError, KeyError, TypeError):
        return f"(unreadable, {len(value)} characters)"


def _diff_controller(vm: VmFact, edits: VmEdits) -> None:
    if DATA_BUS not in vm.pvscsi_buses:
        edits.attrs.append(Attr(f"scsi{DATA_BUS} controller", None, "paravirtual"))
        edits.devices.append(AddController(DATA_BUS))


def _diff_disks(
    plan: Plan,
    node: VmNode,
    vm: VmFact,
    folder_files: frozenset[str] | None,
    allow_destroy: frozenset[str],
    resource: str,
    edits: VmEdits,
) -> None:
    settings = plan.storage_vm
    for unit, role in enumerate(disk_roles(node)):
        size_kb = getattr(settings, f"{role}_disk_gb") * KB_PER_GB
        file = disk_file(plan, node, role)
        label = f"disk {role} (scsi{DATA_BUS}:{unit})"
        current = disk_at(vm, unit) if not vm.template else None
        add = AddDisk(role, unit, size_kb, file, create=True, provisioning=settings.provisioning)
        if current is None:
            reattach = folder_files is not None and file.rsplit("/", 1)[-1] in folder_files
            shown = f"{_gb(size_kb)} ({'re-attach existing ' if reattach else ''}{file})"
            edits.attrs.append(Attr(label, None, shown))
            edits.devices.append(replace(add, create=not reattach))
        elif current.capacity_kb < size_kb:
            edits.attrs.append(Attr(label, _gb(current.capacity_kb), _gb(size_kb)))
            edits.devices.append(GrowDisk(current.key, size_kb))
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
            edits.devices += [RemoveDisk(current.key, True, current.file, current.capacity_kb), add]


def _diff_nics(
    plan: Plan,
    node: VmNode,
    placement: Placement,
    vm: VmFact,
    edits: VmEdits,
) -> None:
    portgroups = {"iscsi": plan.network.iscsi_portgroup, "replication": plan.network.replication_portgroup}
    roles = nic_roles(node)
    for index, role in enumerate(roles):
        network, mac = portgroups[role], nic_mac(plan, node.node, role)
        wanted = f"{NIC_KIND} on {network} ({mac})"
        label = f"nic {role}"
        current = vm.nics[index] if index < len(vm.nics) else None
        network_id = placement.networks[network]  # a missing portgroup is a problem before any edit
        distributed = placement.distributed.get(network)
        add = AddNic(role, network, network_id, mac, distributed)
        if current is None:
            edits.attrs.append(Attr(label, None, wanted))
            edits.devices.append(add)
        elif current.kind != NIC_KIND:
            edits.attrs.append(Attr(label, _nic_text(current), wanted))
            edits.devices += [RemoveNic(current.key), add]
        elif current.network != network or current.mac != mac:
            edits.attrs.append(Attr(label, _nic_text(current), wanted))
            edits.devices.append(EditNic(current.key, network, network_id, mac, distributed))
    for extra in vm.nics[len(roles) :]:
        edits.attrs.append(Attr(f"nic key {extra.key}", _nic_text(extra), None))
        edits.devices.append(RemoveNic(extra.key))


def _nic_text(nic: NicFact) -> str:
    return f"{nic.kind} on {nic.network} ({nic.mac})"


def _gb(size_kb: int) -> str:
    return f"{size_kb / KB_PER_GB:g} GB"
