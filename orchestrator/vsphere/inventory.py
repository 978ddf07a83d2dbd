"""One snapshot of the datacenter, in a fixed number of PropertyCollector calls.

Calls per snapshot, whatever the inventory size: FindByInventoryPath (the
datacenter), CreateContainerView, RetrievePropertiesEx (every host, compute
resource, datastore, network, and every VM's name only), RetrievePropertiesEx
(full properties of the few VMs the plan names), DestroyView. A server that
pages results adds ContinueRetrievePropertiesEx calls.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from orchestrator.vsphere.session import Session, VSphereError, transient_retry

PC = vmodl.query.PropertyCollector

# Properties every stage may read; stages list theirs here, so one call serves all.
INVENTORY_PROPERTIES: dict[type, list[str]] = {
    vim.HostSystem: [
        "name",
        "parent",
        "datastore",
        "network",
        "runtime.connectionState",
        "runtime.inMaintenanceMode",
    ],
    vim.ComputeResource: ["name", "resourcePool", "host"],
    vim.ClusterComputeResource: ["name", "resourcePool", "host"],
    vim.Datastore: ["name", "host", "summary.multipleHostAccess", "summary.accessible"],
    vim.Network: ["name"],
    vim.ResourcePool: ["owner"],
    vim.VirtualMachine: ["name"],
}

VM_DETAIL_PROPERTIES = [
    "name",
    "config.template",
    "config.annotation",
    "config.extraConfig",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "runtime.powerState",
    "runtime.host",
    "resourcePool",
    "guest.toolsRunningStatus",
]


@dataclass
class Obj:
    """A managed object with the properties the snapshot read (absent ones are None)."""

    ref: Any
    props: dict[str, Any]

    def get(self, path: str) -> Any:
        return self.props.get(path)

    @property
    def name(self) -> str:
        return self.props.get("name", "")

    @property
    def id(self) -> str:
        return self.ref._moId


@dataclass
class Inventory:
    datacenter: Any
    vm_folder: Any
    objects: dict[str, Obj] = field(default_factory=dict)

    def of_type(self, kind: type) -> list[Obj]:
        return [obj for obj in self.objects.values() if isinstance(obj.ref, kind)]

    def named(self, kind: type, name: str) -> Obj | None:
        return next((obj for obj in self.of_type(kind) if obj.name == name), None)

    def by_ref(self, ref: Any) -> Obj | None:
        return self.objects.get(ref._moId) if ref is not None else None


def take_snapshot(session: Session, datacenter: str, want_vm: Callable[[str], bool]) -> Inventory:
    """Read the datacenter's inventory, and full details of the VMs whose name is wanted."""
    content = session.content
    dc = _find_datacenter(content, datacenter)
    view = _create_view(content, dc)
    try:
        view_spec = PC.ObjectSpec(
            obj=view,
            skip=True,
            selectSet=[PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)],
        )
        dc_spec = PC.ObjectSpec(obj=dc, skip=False)
        prop_specs = [
            PC.PropertySpec(type=kind, pathSet=paths) for kind, paths in INVENTORY_PROPERTIES.items()
        ]
        prop_specs.append(PC.PropertySpec(type=vim.Datacenter, pathSet=["name", "vmFolder"]))
        found = _retrieve(content, PC.FilterSpec(objectSet=[view_spec, dc_spec], propSet=prop_specs))
    finally:
        _destroy_view(view)
    dc_obj = found.pop(dc._moId)
    inventory = Inventory(datacenter=dc, vm_folder=dc_obj.get("vmFolder"), objects=found)
    details = [obj.ref for obj in inventory.of_type(vim.VirtualMachine) if want_vm(obj.name)]
    if details:
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=ref, skip=False) for ref in details],
            propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=VM_DETAIL_PROPERTIES)],
        )
        inventory.objects.update(_retrieve(content, spec))
    return inventory


@transient_retry
def _find_datacenter(content: vim.ServiceContent, name: str) -> Any:
    found = content.searchIndex.FindByInventoryPath(name)
    if not isinstance(found, vim.Datacenter):
        raise VSphereError(
            f"datacenter {name!r} not found; set [vsphere].datacenter to its inventory path "
            '(e.g. "DC" or "Folder/DC")'
        )
    return found


@transient_retry
def _create_view(content: vim.ServiceContent, dc: Any) -> Any:
    kinds = [
        vim.HostSystem,
        vim.ComputeResource,
        vim.ResourcePool,
        vim.Datastore,
        vim.Network,
        vim.VirtualMachine,
    ]
    return content.viewManager.CreateContainerView(dc, kinds, True)


def _destroy_view(view: Any) -> None:
    view.DestroyView()


@transient_retry
def _retrieve(content: vim.ServiceContent, spec: Any) -> dict[str, Obj]:
    collector = content.propertyCollector
    found: dict[str, Obj] = {}
    result = collector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    while result is not None:
        for item in result.objects:
            props = {prop.name: prop.val for prop in item.propSet or []}
            found[item.obj._moId] = Obj(ref=item.obj, props=props)
        if not result.token:
            break
        result = collector.ContinueRetrievePropertiesEx(result.token)
    return found


def retrieve_one(session: Session, vm: Any) -> Obj:
    """Full details of one VM (after we created it)."""
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=vm, skip=False)],
        propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=VM_DETAIL_PROPERTIES)],
    )
    return _retrieve(session.content, spec)[vm._moId]
