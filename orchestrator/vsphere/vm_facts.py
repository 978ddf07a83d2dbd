"""Plain-data facts about one VM, parsed from a snapshot's properties.

Facts hold ids and values only (no live pyvmomi objects), so the diff that
reads them is pure and testable without a server.
"""

from dataclasses import dataclass, field

from pyVmomi import vim

from orchestrator.vsphere.inventory import Inventory, Obj

MARKER_PLAN = "vsa-orchestrate.plan"
MARKER_NODE = "vsa-orchestrate.node"
# Set by an OVA import from birth, removed by the reconfigure that completes the
# VM: a VM that still carries it is not a finished node (the vms stage replaces it).
MARKER_INCOMPLETE = "vsa-orchestrate.incomplete"


@dataclass(frozen=True)
class DiskFact:
    key: int
    controller_key: int | None
    unit: int | None
    capacity_kb: int
    file: str


@dataclass(frozen=True)
class NicFact:
    key: int
    kind: str  # e.g. "VirtualVmxnet3"
    network: str | None
    mac: str | None


@dataclass(frozen=True)
class VmFact:
    id: str
    name: str
    template: bool
    host_id: str | None
    pool_id: str | None
    power: str
    tools_running: bool
    cpus: int
    memory_mb: int
    annotation: str
    extra: dict[str, str] = field(default_factory=dict)
    disks: tuple[DiskFact, ...] = ()
    nics: tuple[NicFact, ...] = ()
    pvscsi_buses: dict[int, int] = field(default_factory=dict)  # bus number -> controller key

    @property
    def owner(self) -> str | None:
        return self.extra.get(MARKER_PLAN)

    @property
    def incomplete(self) -> bool:
        return bool(self.extra.get(MARKER_INCOMPLETE)) and not self.template


def vm_fact(vm: Obj, inventory: Inventory) -> VmFact:
    devices = vm.get("config.hardware.device") or []
    host = vm.get("runtime.host")
    pool = vm.get("resourcePool")
    return VmFact(
        id=vm.id,
        name=vm.name,
        template=bool(vm.get("config.template")),
        host_id=host._moId if host is not None else None,
        pool_id=pool._moId if pool is not None else None,
        power=str(vm.get("runtime.powerState") or "poweredOff"),
        tools_running=vm.get("guest.toolsRunningStatus") == "guestToolsRunning",
        cpus=int(vm.get("config.hardware.numCPU") or 0),
        memory_mb=int(vm.get("config.hardware.memoryMB") or 0),
        annotation=vm.get("config.annotation") or "",
        extra={opt.key: str(opt.value) for opt in vm.get("config.extraConfig") or []},
        disks=tuple(_disk(device) for device in devices if isinstance(device, vim.vm.device.VirtualDisk)),
        nics=tuple(
            sorted(
                (
                    _nic(device, inventory)
                    for device in devices
                    if isinstance(device, vim.vm.device.VirtualEthernetCard)
                ),
                key=lambda nic: nic.key,
            )
        ),
        pvscsi_buses={
            device.busNumber: device.key
            for device in devices
            if isinstance(device, vim.vm.device.ParaVirtualSCSIController)
        },
    )


def _disk(device: vim.vm.device.VirtualDisk) -> DiskFact:
    capacity_kb = device.capacityInKB or (device.capacityInBytes or 0) // 1024
    return DiskFact(
        key=device.key,
        controller_key=device.controllerKey,
        unit=device.unitNumber,
        capacity_kb=int(capacity_kb),
        file=getattr(device.backing, "fileName", "") or "",
    )


def _nic(device: vim.vm.device.VirtualEthernetCard, inventory: Inventory) -> NicFact:
    backing = device.backing
    network = None
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
        network = backing.deviceName
    elif isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        key = backing.port.portgroupKey
        portgroup = inventory.objects.get(key) if key is not None else None
        network = portgroup.name if portgroup else key
    return NicFact(
        key=device.key,
        kind=type(device).__name__.rsplit(".", 1)[-1],
        network=network,
        mac=(device.macAddress or "").lower() or None,
    )
