"""Executor of the `vms` stage: one handler per operation type, each a vSphere task.

A new VM is cloned (template) or imported (OVA, ova_import.py), then re-read
and reconfigured with the edits computed against itself (ConfigureNewVm),
then powered on. DestroyVm and ResetVm re-read, right before the task, the
fact the diff allowed them by, and refuse with one line if it changed.
"""

import logging
import time
from pathlib import Path
from typing import Any

from pyVmomi import vim, vmodl

from orchestrator.changes import Change
from orchestrator.executors import VSPHERE, run_operations
from orchestrator.identity import NIC_ROLES
from orchestrator.progress import Reporter
from orchestrator.stages.contract import RunContext
from orchestrator.stages.vms import diff, facts, guest_liveness
from orchestrator.stages.vms.autostart import WANTED
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
    GrowDisk,
    ImportVmFromOva,
    PowerOnVm,
    ReconfigureVm,
    RemoveDisk,
    RemoveNic,
    ResetVm,
    SetAutostart,
    ShutdownGuest,
    Target,
)
from orchestrator.vsphere import ova_import, ova_package
from orchestrator.vsphere.inventory import retrieve_one
from orchestrator.vsphere.session import Session, VSphereError, required, transient_retry
from orchestrator.vsphere.tasks import run_task
from orchestrator.vsphere.vm_facts import MARKER_NODE, MARKER_PLAN, vm_fact

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 300
NEW_CONTROLLER_KEY = -100
Device = vim.vm.device


def _vm(ctx: RunContext, vm: str) -> Any:
    return vim.VirtualMachine(vm, ctx.vsphere.stub)


def _by_name(ctx: RunContext, name: str) -> Any:
    """A VM of our folder by its name (one this change made)."""
    if name in ctx.created_vms:
        return _vm(ctx, ctx.created_vms[name])
    folder = ctx.snapshot.vm_folder
    found = None
    if folder is not None:
        found = required(ctx.vsphere.content.searchIndex, "searchIndex").FindChild(folder, name)
    if not isinstance(found, vim.VirtualMachine):
        raise VSphereError(f"vm {name}: not found in the plan's VM folder after creating it; rerun")
    return found


@VSPHERE.handles(EnsureVmFolder)
def ensure_vm_folder(op: EnsureVmFolder, ctx: RunContext) -> None:
    _our_folder(ctx, op.path)


def _our_folder(ctx: RunContext, path: str) -> Any:
    """The plan's VM folder, created on first use."""
    inventory = ctx.snapshot
    if inventory.vm_folder is None:
        inventory.vm_folder = _ensure_folder(ctx.vsphere, inventory.root_vm_folder, path)
    return inventory.vm_folder


@VSPHERE.handles(DestroyVm)
def destroy_vm(op: DestroyVm, ctx: RunContext) -> None:
    resource = f"vm {op.name}"
    vm = _vm(ctx, op.vm)
    _recheck_destroy(ctx, op, vm)
    _power_off(vm, ctx.reporter, resource)
    run_task(ctx.reporter, f"destroy {'unfinished ' if op.unfinished else ''}{resource}", vm.Destroy_Task)


def _recheck_destroy(ctx: RunContext, op: DestroyVm, vm: Any) -> None:
    """Right before destroying: still ours, still the same node, and (an unfinished
    import) still marked incomplete and holding no data disk."""
    try:
        fact = vm_fact(retrieve_one(ctx.vsphere, vm), ctx.snapshot)
    except (KeyError, vmodl.fault.ManagedObjectNotFound):
        raise VSphereError(f"vm {op.name}: not destroyed: {op.vm} is gone meanwhile; rerun") from None
    if fact.owner != op.plan or fact.extra.get(MARKER_NODE, fact.name) != op.node:
        raise VSphereError(
            f"vm {op.name}: not destroyed: it is no longer marked as node {op.node} of plan {op.plan}; rerun"
        )
    if op.unfinished and (not fact.incomplete or facts.holds_data_disk(fact)):
        raise VSphereError(
            f"vm {op.name}: not destroyed: it is no longer an unfinished import without data disks; rerun"
        )


@VSPHERE.handles(ResetVm)
def reset_vm(op: ResetVm, ctx: RunContext) -> None:
    """A powered-on VM whose guest does not answer (guest_liveness), once its peer still serves."""
    guest_liveness.recheck(ctx.plan, op, ctx.host_keys)
    vm = _vm(ctx, op.vm)
    if vm.runtime.powerState == "poweredOn":
        run_task(ctx.reporter, f"reset vm {op.name}", vm.ResetVM_Task)
    else:  # its process died meanwhile: vSphere shows it off
        run_task(ctx.reporter, f"power on vm {op.name}", vm.PowerOnVM_Task)


def _placement(target: Target) -> dict[str, Any]:
    """ova_import's placement argument."""
    return {"host": target.host, "pool": target.pool, "datastore": target.datastore}


@VSPHERE.handles(CloneVm)
def clone_vm(op: CloneVm, ctx: RunContext) -> None:
    stub = ctx.vsphere.stub
    template = _vm(ctx, op.template)
    spec = vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(
            host=vim.HostSystem(op.target.host, stub),
            pool=vim.ResourcePool(op.target.pool, stub),
            datastore=vim.Datastore(op.target.datastore, stub),
        ),
        powerOn=False,
        template=False,
        # Marked ours from birth: a run cut short after the clone must not
        # leave a same-named VM that the next run refuses to touch.
        config=vim.vm.ConfigSpec(
            extraConfig=[
                vim.option.OptionValue(key=MARKER_PLAN, value=ctx.plan.name),
                vim.option.OptionValue(key=MARKER_NODE, value=op.node),
            ]
        ),
    )
    folder = _our_folder(ctx, facts.vm_folder(ctx.plan, ctx.vsphere.esxi))
    vm = run_task(ctx.reporter, f"clone vm {op.name}", lambda: template.CloneVM_Task(folder, op.name, spec))
    ctx.created_vms[op.name] = vm._moId


@VSPHERE.handles(ImportVmFromOva)
def import_vm_from_ova(op: ImportVmFromOva, ctx: RunContext) -> None:
    # Verified at plan time; the digests are checked again as the bytes are sent.
    package = ova_package.open_verified(Path(op.ova))
    vm = ova_import.import_vm(
        ctx.vsphere,
        ctx.plan,
        package,
        op.node,
        _placement(op.target),
        _our_folder(ctx, facts.vm_folder(ctx.plan, ctx.vsphere.esxi)),
        ctx.reporter,
        f"vm {op.name}",
    )
    ctx.created_vms[op.name] = vm._moId


@VSPHERE.handles(ConfigureNewVm)
def configure_new_vm(op: ConfigureNewVm, ctx: RunContext) -> None:
    """Recompute the edits against the new VM itself (its device keys are its own)."""
    session, plan = ctx.vsphere, ctx.plan
    node = next(node for node in plan.vm_nodes if node.node == op.node)
    identity = ctx.identities.get(op.node)
    if identity is None:  # the vms stage plans an identity for every node it creates
        raise RuntimeError(f"vm {op.name}: no identity for node {op.node!r}")
    vm = _by_name(ctx, op.name)
    fact = vm_fact(retrieve_one(session, vm), ctx.snapshot)
    placement = facts.placement_of(ctx.snapshot, node)
    if placement.datastore_id is None:  # the VM was just made on it: gone meanwhile
        raise VSphereError(f"datastore {node.datastore!r} is no longer on host {node.esxi!r}")
    resource = f"vm {op.name}"
    problems = diff.placement_problems(plan, node, placement, resource)
    if problems:
        raise VSphereError("; ".join(str(problem) for problem in problems))
    folder = facts.disk_files_present(session, plan, node)
    edits = diff.vm_edits(plan, node, placement, fact, identity, folder, frozenset(), resource)
    if edits.problems:
        raise VSphereError("; ".join(str(problem) for problem in edits.problems))
    if reconfigure := edits.reconfigure(op.node, op.name, vm._moId):
        reconfigure_vm(reconfigure, ctx)


@VSPHERE.handles(ShutdownGuest)
def shutdown_guest(op: ShutdownGuest, ctx: RunContext) -> None:
    _shutdown(_vm(ctx, op.vm), ctx.reporter, f"vm {op.name}")


@VSPHERE.handles(ReconfigureVm)
def reconfigure_vm(op: ReconfigureVm, ctx: RunContext) -> None:
    vm = _vm(ctx, op.vm)
    spec = _config_spec(ctx, vm, op)
    run_task(ctx.reporter, f"reconfigure vm {op.name}", lambda: vm.ReconfigVM_Task(spec))


@VSPHERE.handles(PowerOnVm)
def power_on_vm(op: PowerOnVm, ctx: RunContext) -> None:
    vm = _by_name(ctx, op.name) if op.vm is None else _vm(ctx, op.vm)
    if vm.runtime.powerState != "poweredOn":
        run_task(ctx.reporter, f"power on vm {op.name}", vm.PowerOnVM_Task)


@VSPHERE.handles(SetAutostart)
def set_autostart(op: SetAutostart, ctx: RunContext) -> None:
    folder = ctx.snapshot.vm_folder
    if folder is None:  # the VM is in it, so the folder exists
        raise VSphereError(f"no VM folder for {op.vm_name}; rerun")
    vm = required(ctx.vsphere.content.searchIndex, "searchIndex").FindChild(folder, op.vm_name)
    start, order, stop = WANTED
    spec = vim.host.AutoStartManager.Config(
        defaults=vim.host.AutoStartManager.SystemDefaults(enabled=True),
        powerInfo=[
            vim.host.AutoStartManager.AutoPowerInfo(
                key=vm,
                startAction=start,
                startOrder=order,
                startDelay=-1,
                stopAction=stop,
                stopDelay=-1,
                waitForHeartbeat="systemDefault",
            )
        ],
    )
    manager: Any = vim.host.AutoStartManager(op.manager, ctx.vsphere.stub)
    with ctx.reporter.task(f"host {op.host} autostart: {op.vm_name} starts with the host"):
        transient_retry(manager.ReconfigureAutostart)(spec)


def apply(ctx: RunContext, change: Change) -> None:
    run_operations(ctx, change)


def _ensure_folder(session: Session, root: Any, path: str) -> Any:
    """Find or create each folder of `path` under the datacenter's VM folder."""
    parent = root
    for part in filter(None, path.split("/")):
        child = required(session.content.searchIndex, "searchIndex").FindChild(parent, part)
        if child is None:
            try:
                child = parent.CreateFolder(part)
            except vim.fault.DuplicateName:
                child = required(session.content.searchIndex, "searchIndex").FindChild(parent, part)
        if not isinstance(child, vim.Folder):
            raise VSphereError(f"{part!r} under the VM folder exists but is not a folder; rename it")
        parent = child
    return parent


def _config_spec(ctx: RunContext, vm: Any, op: ReconfigureVm) -> Any:
    spec: Any = vim.vm.ConfigSpec()
    if op.cpus is not None:
        spec.numCPUs = op.cpus
    if op.memory_mb is not None:
        spec.memoryMB = op.memory_mb
    if op.annotation is not None:
        spec.annotation = op.annotation
    if op.extra_config:
        spec.extraConfig = [
            vim.option.OptionValue(key=extra.key, value=_extra_value(ctx, op, extra.key, extra.value))
            for extra in op.extra_config
        ]
    if op.devices:
        current = {device.key: device for device in vm.config.hardware.device}
        controller_key = next(
            (
                device.key
                for device in current.values()
                if isinstance(device, Device.ParaVirtualSCSIController) and device.busNumber == facts.DATA_BUS
            ),
            NEW_CONTROLLER_KEY,
        )
        spec.deviceChange = [_device_spec(edit, current, controller_key, vm._stub) for edit in op.devices]
    return spec


def _extra_value(ctx: RunContext, op: ReconfigureVm, key: str, value: str | None) -> str:
    """A value the operation holds, or (secret-bearing) the node identity's."""
    if value is not None:
        return value
    identity = ctx.identities.get(op.node)
    if identity is None or key not in identity.guestinfo():
        raise RuntimeError(f"vm {op.name}: no identity value for {key} of node {op.node!r}")
    return identity.guestinfo()[key]


def _device_spec(edit: DeviceEdit, current: dict[int, Any], controller_key: int, stub: Any) -> Any:
    Op = Device.VirtualDeviceSpec.Operation
    if isinstance(edit, AddController):
        controller = Device.ParaVirtualSCSIController(
            key=NEW_CONTROLLER_KEY, busNumber=edit.bus, sharedBus="noSharing"
        )
        return Device.VirtualDeviceSpec(operation=Op.add, device=controller)
    if isinstance(edit, AddDisk):
        return _add_disk(edit, controller_key)
    if isinstance(edit, GrowDisk):
        disk = current[edit.key]
        disk.capacityInKB = edit.size_kb
        disk.capacityInBytes = edit.size_kb * 1024
        return Device.VirtualDeviceSpec(operation=Op.edit, device=disk)
    if isinstance(edit, RemoveDisk):
        disk = current.get(edit.key)
        if disk is None:
            raise VSphereError(f"disk {edit.key} is gone since the diff; nothing was changed, rerun")
        if edit.destroy:
            now = (getattr(disk.backing, "fileName", None), disk.capacityInKB)
            if now != (edit.file, edit.capacity_kb):
                raise VSphereError(
                    f"refusing to destroy disk {edit.key}: it is {now[0]} at {now[1]} KB, not {edit.file} "
                    f"at {edit.capacity_kb} KB as the diff decided; nothing was changed, rerun"
                )
        spec = Device.VirtualDeviceSpec(operation=Op.remove, device=disk)
        if edit.destroy:
            spec.fileOperation = Device.VirtualDeviceSpec.FileOperation.destroy
        return spec
    if isinstance(edit, RemoveNic):
        return Device.VirtualDeviceSpec(operation=Op.remove, device=current[edit.key])
    if edit.network_id == facts.PENDING_NETWORK:
        raise VSphereError(
            f"portgroup {edit.network} does not exist yet; rerun (the network stage creates it)"
        )
    backing = _nic_backing(edit, stub)
    if isinstance(edit, AddNic):
        nic = Device.VirtualVmxnet3(
            key=-300 - NIC_ROLES.index(edit.role),
            connectable=Device.VirtualDevice.ConnectInfo(
                startConnected=True, connected=True, allowGuestControl=True
            ),
        )
        operation = Op.add
    else:
        nic = current[edit.key]
        operation = Op.edit
    nic.backing = backing
    nic.addressType = "manual"
    nic.macAddress = edit.mac
    return Device.VirtualDeviceSpec(operation=operation, device=nic)


def _nic_backing(edit: AddNic | EditNic, stub: Any) -> Any:
    """A standard portgroup is named by its network; a distributed one by its
    key and switch, or vCenter refuses the NIC."""
    if edit.distributed is not None:
        port = vim.dvs.PortConnection(
            portgroupKey=edit.distributed.key, switchUuid=edit.distributed.switch_uuid
        )
        return Device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(port=port)
    network = vim.Network(edit.network_id, stub)
    return Device.VirtualEthernetCard.NetworkBackingInfo(deviceName=edit.network, network=network)


def _add_disk(edit: AddDisk, controller_key: int) -> Any:
    Op = Device.VirtualDeviceSpec.Operation
    backing = Device.VirtualDisk.FlatVer2BackingInfo(
        fileName=edit.file,
        diskMode="persistent",
        thinProvisioned=edit.provisioning == "thin",
        eagerlyScrub=edit.provisioning == "thick-eager",
    )
    disk = Device.VirtualDisk(
        key=-200 - edit.unit,
        controllerKey=controller_key,
        unitNumber=edit.unit,
        backing=backing,
    )
    spec = Device.VirtualDeviceSpec(operation=Op.add, device=disk)
    if edit.create:
        disk.capacityInKB = edit.size_kb
        spec.fileOperation = Device.VirtualDeviceSpec.FileOperation.create
    return spec


def _shutdown(vm: Any, reporter: Reporter, resource: str) -> None:
    if vm.runtime.powerState != "poweredOn":
        return
    if vm.guest.toolsRunningStatus != "guestToolsRunning":
        log.warning("%s: VMware tools not running; powering off instead of a guest shutdown", resource)
        run_task(reporter, f"power off {resource}", vm.PowerOffVM_Task)
        return
    vm.ShutdownGuest()
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    with reporter.task(f"guest shutdown of {resource}"):
        delay = 0.1
        while vm.runtime.powerState != "poweredOff":
            if time.monotonic() > deadline:
                raise VSphereError(
                    f"{resource}: the guest did not shut down within {SHUTDOWN_TIMEOUT_S} s; "
                    "check the storage node's console, then rerun"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _power_off(vm: Any, reporter: Reporter, resource: str) -> None:
    if vm.runtime.powerState == "poweredOn":
        run_task(reporter, f"power off {resource}", vm.PowerOffVM_Task)
