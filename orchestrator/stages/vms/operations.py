"""What the `vms` stage does in vSphere: VM tasks, as data.

A VM is named by its managed object id (`vm`) where it exists when the diff
runs, and by its name (`name`, in our VM folder) where the change itself
creates it. `node` is the storage node the VM serves.

guestinfo.userdata carries the node's SSH host private key: a ReconfigureVm
never holds it; its ExtraConfig value is None and the handler takes it from
the node's identity (planned from the state folder's host key) while applying.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from orchestrator.operations import Operation


@dataclass(frozen=True)
class Target:
    """Where a new VM goes (managed object ids)."""

    host: str | None
    pool: str | None
    datastore: str | None


@dataclass(frozen=True)
class DvPortgroup:
    """A distributed portgroup as a NIC backing needs it: its key and its switch's uuid."""

    key: str
    switch_uuid: str


# Device edits of one ReconfigVM_Task; `kind` tells them apart in JSON.


@dataclass(frozen=True)
class AddController:
    bus: int
    kind: Literal["add_controller"] = "add_controller"

    def __str__(self) -> str:
        return f"add pvscsi controller bus {self.bus}"


@dataclass(frozen=True)
class AddDisk:
    role: str
    unit: int
    size_kb: int
    file: str
    create: bool  # False: re-attach the file that survived
    provisioning: str
    kind: Literal["add_disk"] = "add_disk"

    def __str__(self) -> str:
        return f"{'create' if self.create else 're-attach'} disk {self.file}"


@dataclass(frozen=True)
class GrowDisk:
    key: int
    size_kb: int
    kind: Literal["grow_disk"] = "grow_disk"

    def __str__(self) -> str:
        return f"grow disk {self.key} to {self.size_kb} KB"


@dataclass(frozen=True)
class RemoveDisk:
    """With destroy, the file goes too (a disk replaced by an empty one, under
    --allow-destroy): the handler first re-reads that the device still is this
    file at this size, the disk the diff decided on."""

    key: int
    destroy: bool
    file: str = ""
    capacity_kb: int = 0
    kind: Literal["remove_disk"] = "remove_disk"

    def __str__(self) -> str:
        return f"remove disk {self.key}{' and destroy its file' if self.destroy else ''}"


@dataclass(frozen=True)
class AddNic:
    role: str
    network: str  # portgroup name
    network_id: str
    mac: str
    distributed: DvPortgroup | None = None  # set when the portgroup is a distributed one
    kind: Literal["add_nic"] = "add_nic"

    def __str__(self) -> str:
        return f"add nic {self.role} on {self.network} ({self.mac})"


@dataclass(frozen=True)
class EditNic:
    key: int
    network: str
    network_id: str
    mac: str
    distributed: DvPortgroup | None = None
    kind: Literal["edit_nic"] = "edit_nic"

    def __str__(self) -> str:
        return f"edit nic {self.key} to {self.network} ({self.mac})"


@dataclass(frozen=True)
class RemoveNic:
    key: int
    kind: Literal["remove_nic"] = "remove_nic"

    def __str__(self) -> str:
        return f"remove nic {self.key}"


DeviceEdit = Annotated[
    AddController | AddDisk | GrowDisk | RemoveDisk | AddNic | EditNic | RemoveNic,
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class ExtraConfig:
    """One extraConfig key; value None: the node identity's value (secret-bearing)."""

    key: str
    value: str | None


@dataclass(frozen=True)
class VmOperation(Operation):
    side = "vsphere"
    node: str
    name: str  # the VM's name


@dataclass(frozen=True)
class EnsureVmFolder(Operation):
    """The plan's VM folder, created on first use (a no-op where it exists)."""

    side = "vsphere"
    path: str

    def describe(self) -> str:
        return f"Folder.CreateFolder for each missing part of {self.path!r}"


@dataclass(frozen=True)
class CloneVm(VmOperation):
    template: str  # the template's moId
    target: Target

    def describe(self) -> str:
        return f"vm {self.name}: VirtualMachine.CloneVM_Task({self.template} -> host {self.target.host})"


@dataclass(frozen=True)
class ImportVmFromOva(VmOperation):
    ova: str  # the OVA's path, verified at plan time and again as it is sent
    target: Target

    def describe(self) -> str:
        return (
            f"vm {self.name}: OvfManager.CreateImportSpec + ResourcePool.ImportVApp({self.ova} -> "
            f"host {self.target.host}) + HttpNfcLease upload"
        )


@dataclass(frozen=True)
class ConfigureNewVm(VmOperation):
    """Reconfigure the VM this change just made, with the edits computed against it
    (its device keys are its own), once it exists."""

    def describe(self) -> str:
        return f"vm {self.name}: VirtualMachine.ReconfigVM_Task (edits computed against the new VM)"


@dataclass(frozen=True)
class ShutdownGuest(VmOperation):
    vm: str

    def describe(self) -> str:
        return f"vm {self.name}: VirtualMachine.ShutdownGuest (PowerOffVM_Task without VMware tools), wait"


@dataclass(frozen=True)
class ReconfigureVm(VmOperation):
    vm: str
    devices: tuple[DeviceEdit, ...] = ()
    cpus: int | None = None
    memory_mb: int | None = None
    annotation: str | None = None
    extra_config: tuple[ExtraConfig, ...] = ()

    def describe(self) -> str:
        parts = [str(device) for device in self.devices]
        if self.cpus is not None:
            parts.append(f"numCPUs={self.cpus}")
        if self.memory_mb is not None:
            parts.append(f"memoryMB={self.memory_mb}")
        if self.annotation is not None:
            parts.append("annotation")
        if self.extra_config:
            parts.append("extraConfig " + ", ".join(extra.key for extra in self.extra_config))
        return f"vm {self.name}: VirtualMachine.ReconfigVM_Task({'; '.join(parts)})"


@dataclass(frozen=True)
class PowerOnVm(VmOperation):
    vm: str | None  # None: the VM this change made, found by name in our folder

    def describe(self) -> str:
        return f"vm {self.name}: VirtualMachine.PowerOnVM_Task (unless powered on)"


@dataclass(frozen=True)
class ResetVm(VmOperation):
    """A powered-on VM whose guest does not answer; only while `peer` serves the LUN."""

    destructive = True
    vm: str
    peer: str

    def describe(self) -> str:
        return f"vm {self.name}: VirtualMachine.ResetVM_Task once {self.peer} still serves"


@dataclass(frozen=True)
class DestroyVm(VmOperation):
    """Power off and destroy a VM of plan `plan`: an orphan the user named, or
    (unfinished) an import cut short that holds no data disk."""

    destructive = True
    vm: str
    plan: str
    unfinished: bool

    def describe(self) -> str:
        return f"vm {self.name}: VirtualMachine.PowerOffVM_Task + Destroy_Task ({self.vm})"


@dataclass(frozen=True)
class SetAutostart(Operation):
    side = "vsphere"
    host: str
    manager: str  # HostAutoStartManager moId
    vm_name: str

    def describe(self) -> str:
        return f"host {self.host}: HostAutoStartManager.ReconfigureAutostart({self.vm_name}: powerOn first)"
