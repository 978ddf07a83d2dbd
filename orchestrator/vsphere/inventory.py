"""One snapshot of the datacenter, in a fixed number of calls.

Calls per snapshot, whatever the inventory size: FindByInventoryPath for the
datacenter, our VM folder and each VM path asked for (the template);
CreateContainerView; one RetrievePropertiesEx (every host, compute resource,
pool, datastore, network and distributed switch through the view, plus full details of the VMs in
our folder and at the given paths); DestroyView. A server that pages results
adds ContinueRetrievePropertiesEx calls. Unrelated VMs are never read.
"""

from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from orchestrator.vsphere.session import Session, VSphereError, required, transient_retry

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
        "config.storageDevice",
        "config.autoStart",
        "config.network",
        "configManager.storageSystem",
        "configManager.networkSystem",
        "configManager.iscsiManager",
        "configManager.datastoreSystem",
        "configManager.autoStartManager",
    ],
    vim.ComputeResource: ["name", "resourcePool", "host"],
    vim.ClusterComputeResource: ["name", "resourcePool", "host", "configurationEx"],
    vim.Datastore: ["name", "host", "info", "summary.multipleHostAccess", "summary.accessible"],
    vim.Network: ["name"],
    vim.dvs.DistributedVirtualPortgroup: ["key", "config.distributedVirtualSwitch"],
    vim.DistributedVirtualSwitch: ["uuid"],
    vim.ResourcePool: ["owner"],
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
    host_folder: Any
    root_vm_folder: Any
    vm_folder: Any | None  # the folder our VMs live in; None until created
    folder_vm_ids: list[str] = field(default_factory=list)
    path_vm_ids: dict[str, str] = field(default_factory=dict)  # inventory path -> VM id
    objects: dict[str, Obj] = field(default_factory=dict)

    def of_type(self, kind: type) -> list[Obj]:
        return [obj for obj in self.objects.values() if isinstance(obj.ref, kind)]

    def named(self, kind: type, name: str) -> Obj | None:
        return next((obj for obj in self.of_type(kind) if obj.name == name), None)

    def by_ref(self, ref: Any) -> Obj | None:
        return self.objects.get(ref._moId) if ref is not None else None

    def folder_vms(self) -> list[Obj]:
        return [self.objects[vm_id] for vm_id in self.folder_vm_ids if vm_id in self.objects]

    def vm_at(self, path: str) -> Obj | None:
        vm_id = self.path_vm_ids.get(path)
        return self.objects.get(vm_id) if vm_id else None


def take_snapshot(session: Session, datacenter: str, vm_folder: str, vm_paths: list[str]) -> Inventory:
    """Read the datacenter's hosts, datastores and networks, and full details of
    the VMs in `vm_folder` and at `vm_paths` (both relative to the datacenter's
    VM folder; "" is that folder itself). Other VMs are never read, so the cost
    does not grow with them."""
    content = session.content
    dc = _find_datacenter(content, datacenter)
    folder = _find_path(content, "/".join(part for part in (datacenter, "vm", vm_folder) if part), vim.Folder)
    vms = {path: _find_path(content, f"{datacenter}/vm/{path}", vim.VirtualMachine) for path in vm_paths}
    view = _create_view(content, dc)
    try:
        object_specs = [
            PC.ObjectSpec(
                obj=view,
                skip=True,
                selectSet=[
                    PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
                ],
            ),
            PC.ObjectSpec(obj=dc, skip=False),
            *(PC.ObjectSpec(obj=vm, skip=False) for vm in vms.values() if vm is not None),
        ]
        if folder is not None:
            children = PC.TraversalSpec(name="children", path="childEntity", skip=False, type=vim.Folder)
            object_specs.append(PC.ObjectSpec(obj=folder, skip=False, selectSet=[children]))
        prop_specs = [
            PC.PropertySpec(type=kind, pathSet=paths) for kind, paths in INVENTORY_PROPERTIES.items()
        ]
        prop_specs += [
            PC.PropertySpec(type=vim.Datacenter, pathSet=["name", "vmFolder", "hostFolder"]),
            PC.PropertySpec(type=vim.Folder, pathSet=["name", "childEntity"]),
            PC.PropertySpec(type=vim.VirtualMachine, pathSet=VM_DETAIL_PROPERTIES),
        ]
        found = _retrieve(content, PC.FilterSpec(objectSet=object_specs, propSet=prop_specs))
    finally:
        _destroy_view(view)
    dc_obj = found.pop(dc._moId)
    folder_obj = found.pop(folder._moId) if folder is not None else None
    children_ids = [child._moId for child in (folder_obj.get("childEntity") if folder_obj else None) or []]
    return Inventory(
        datacenter=dc,
        host_folder=dc_obj.get("hostFolder"),
        root_vm_folder=dc_obj.get("vmFolder"),
        vm_folder=folder,
        folder_vm_ids=[
            child
            for child in children_ids
            if isinstance(found.get(child, Obj(None, {})).ref, vim.VirtualMachine)
        ],
        path_vm_ids={path: vm._moId for path, vm in vms.items() if vm is not None},
        objects=found,
    )


@transient_retry
def _find_path(content: vim.ServiceInstanceContent, path: str, kind: type) -> Any | None:
    found = required(content.searchIndex, "searchIndex").FindByInventoryPath(path)
    return found if isinstance(found, kind) else None


@transient_retry
def _find_datacenter(content: vim.ServiceInstanceContent, name: str) -> Any:
    found = required(content.searchIndex, "searchIndex").FindByInventoryPath(name)
    if not isinstance(found, vim.Datacenter):
        raise VSphereError(
            f"datacenter {name!r} not found; set [vsphere].datacenter to its inventory path "
            '(e.g. "DC" or "Folder/DC")'
        )
    return found


@transient_retry
def _create_view(content: vim.ServiceInstanceContent, dc: Any) -> Any:
    kinds: list[type] = [
        vim.HostSystem,
        vim.ComputeResource,
        vim.ResourcePool,
        vim.Datastore,
        vim.Network,
        vim.DistributedVirtualSwitch,
    ]
    return required(content.viewManager, "viewManager").CreateContainerView(dc, kinds, True)


def _destroy_view(view: Any) -> None:
    view.DestroyView()


@transient_retry
def _retrieve(content: vim.ServiceInstanceContent, spec: Any) -> dict[str, Obj]:
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
