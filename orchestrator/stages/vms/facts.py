"""Facts of the `vms` stage: our storage VMs, where the plan puts them, the
source they are made from, and each host's autostart, as plain data.

Read from the run's inventory snapshot, plus a datastore folder listing only
when a planned disk is missing (did its file survive?) and the OVA's digests
only when a VM is to be made from it. VM properties are parsed by
orchestrator/vsphere/vm_facts.py (shared with `status`).
"""

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from orchestrator.guest.layout import DISK_ROLES
from orchestrator.plan import Plan, StorageNode, VmNode
from orchestrator.stages.vms.operations import DvPortgroup
from orchestrator.state import HostKey
from orchestrator.vsphere import ova_package
from orchestrator.vsphere.datastore_files import existing_files
from orchestrator.vsphere.inventory import Inventory
from orchestrator.vsphere.ova_package import OvaError, OvfFacts
from orchestrator.vsphere.session import Session
from orchestrator.vsphere.vm_facts import DiskFact, NicFact, VmFact, vm_fact

DATA_BUS = 1


PENDING_NETWORK = "(created by the network stage)"  # a portgroup's id before it exists


@dataclass(frozen=True)
class Placement:
    """Where the plan puts a node, resolved in the inventory (None: not found)."""

    host_id: str | None
    compute_id: str | None
    pool_id: str | None
    datastore_id: str | None
    datastore_local: bool
    networks: dict[str, str]  # portgroup name -> network id, as seen by the host
    distributed: dict[str, DvPortgroup] = field(default_factory=dict)  # of those, the distributed ones


def disk_roles(node: VmNode) -> tuple[str, ...]:
    """A storage node's data disks; the witness holds no data."""
    return DISK_ROLES if isinstance(node, StorageNode) else ()


@dataclass
class NodeVmFacts:
    node: VmNode
    placement: Placement
    vm: VmFact | None
    folder_files: frozenset[str] | None = None  # planned disk files found in the VM folder, when checked


@dataclass(frozen=True)
class OvaSource:
    """The plan's OVA, read and verified (only when a VM is to be imported)."""

    path: str
    fact: VmFact | None  # the VM its descriptor describes; None when unusable
    error: str | None = None  # one line naming the file (and the entry)


@dataclass
class VmsFacts:
    nodes: list[NodeVmFacts]
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
    """Facts from the snapshot alone; see needs_disk_file_check and needs_source for the rest."""
    vms = {obj.name: obj for obj in inventory.folder_vms()}
    nodes = []
    for node in plan.vm_nodes:
        obj = vms.get(plan.vm_name(node.node))
        fact = vm_fact(obj, inventory) if obj is not None else None
        nodes.append(NodeVmFacts(node=node, placement=placement_of(inventory, node), vm=fact))
    planned = {plan.vm_name(node.node) for node in plan.vm_nodes}
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


def placement_of(inventory: Inventory, node: VmNode) -> Placement:
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
    networks, distributed = {}, {}
    for ref in host.get("network") or []:
        network = inventory.by_ref(ref)
        if network is None:
            continue
        networks[network.name] = network.id
        switch = inventory.by_ref(network.get("config.distributedVirtualSwitch"))
        if switch is not None and switch.get("uuid"):
            distributed[network.name] = DvPortgroup(network.get("key") or network.id, switch.get("uuid"))
    pool = compute.get("resourcePool") if compute else None
    return Placement(
        host_id=host.id,
        compute_id=compute.id if compute else None,
        pool_id=pool._moId if pool is not None else None,
        datastore_id=datastore.id if datastore else None,
        datastore_local=local,
        networks=networks,
        distributed=distributed,
    )


def needs_disk_file_check(plan: Plan, facts: NodeVmFacts) -> bool:
    """True when a planned disk is missing, so we must know if its file survived."""
    vm = facts.vm
    if vm is None or vm.owner != plan.name:
        return False
    return any(disk_at(vm, unit) is None for unit in range(len(disk_roles(facts.node))))


def disk_at(vm: VmFact, unit: int) -> DiskFact | None:
    controller = vm.pvscsi_buses.get(DATA_BUS)
    if controller is None:
        return None
    return next((d for d in vm.disks if d.controller_key == controller and d.unit == unit), None)


def holds_data_disk(vm: VmFact) -> bool:
    return any(disk_at(vm, unit) is not None for unit in range(len(DISK_ROLES)))


def disk_files_present(session: Session, plan: Plan, node: VmNode) -> frozenset[str]:
    """File names of the node's planned disks that exist in its VM folder (read without a task)."""
    vm = plan.vm_name(node.node)
    paths = [f"{vm}/{vm}_{role}.vmdk" for role in disk_roles(node)]
    if not paths:
        return frozenset()
    found = existing_files(session, plan.vsphere.datacenter, node.datastore, paths)
    return frozenset(path.rsplit("/", 1)[-1] for path in found)


def deployed_host_key(vm: VmFact | None) -> HostKey | None:
    """The host key a VM of ours already carries in its cloud-init userdata.

    When the state folder is lost this keeps the key instead of rotating it.
    """
    if vm is None or vm.owner is None:
        return None
    encoded = vm.extra.get("guestinfo.userdata")
    if not encoded:
        return None
    try:
        text = base64.b64decode(encoded).decode()
        keys: dict[str, Any] = json.loads(text.removeprefix("#cloud-config\n"))["ssh_keys"]
        return HostKey(keys["ed25519_private"], keys["ed25519_public"])
    except (ValueError, KeyError, TypeError):
        return None
