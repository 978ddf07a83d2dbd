"""Executor of the `vms` stage: turns a Change's steps and data into vSphere tasks.

A new VM is cloned (template) or imported (OVA, ova_import.py), then re-read
and reconfigured with the edits computed against itself, then powered on.
"""

import logging
import time
from pathlib import Path
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.identity import NIC_ROLES, NodeIdentity
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.stages.vms import diff as storage_vms
from orchestrator.vsphere import ova_import, ova_package
from orchestrator.vsphere.inventory import Inventory, retrieve_one
from orchestrator.vsphere.session import Session, VSphereError, required
from orchestrator.vsphere.tasks import run_task
from orchestrator.vsphere.vm_facts import MARKER_NODE, MARKER_PLAN, vm_fact

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 300
NEW_CONTROLLER_KEY = -100
Device = vim.vm.device


def list_folder(
    session: Session, reporter: Reporter, datastore_id: str, datastore: str, folder: str
) -> frozenset[str]:
    """Names of the .vmdk files in "[datastore] folder" (empty if the folder is gone)."""
    ref = vim.Datastore(datastore_id, session.stub)
    spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*.vmdk"])
    path = f"[{datastore}] {folder}"
    try:
        result = run_task(reporter, f"list {path}", lambda: ref.browser.SearchDatastore_Task(path, spec))
    except VSphereError:
        return frozenset()
    return frozenset(item.path for item in result.file or [])


def apply(
    session: Session,
    plan: Plan,
    inventory: Inventory,
    change: Change,
    identity: NodeIdentity | None,  # None only for a VM the plan no longer lists (delete)
    reporter: Reporter,
) -> None:
    params = change.params
    if change.action == "delete":
        vm = vim.VirtualMachine(params["vm"], session.stub)
        _power_off(vm, reporter, change.resource)
        run_task(reporter, f"destroy {change.resource}", vm.Destroy_Task)
        return
    if "reset" in change.steps:  # a powered-on VM whose guest does not answer (guest_liveness)
        vm = vim.VirtualMachine(params["vm"], session.stub)
        if vm.runtime.powerState == "poweredOn":
            run_task(reporter, f"reset {change.resource}", vm.ResetVM_Task)
        else:  # its process died meanwhile: vSphere shows it off
            run_task(reporter, f"power on {change.resource}", vm.PowerOnVM_Task)
        return
    placement = params["placement"]
    if "destroy" in change.steps:  # replace: an unfinished import (no data disk) goes first
        old = vim.VirtualMachine(params["replaces"], session.stub)
        _power_off(old, reporter, change.resource)
        run_task(reporter, f"destroy unfinished {change.resource}", old.Destroy_Task)
    if "clone" in change.steps or "import" in change.steps:
        if identity is None:  # the vms stage plans an identity for every node it creates
            raise RuntimeError(f"{change.resource}: no identity for node {params['node']!r}")
        if "clone" in change.steps:
            vm = _clone(session, plan, inventory, params, reporter, change.resource)
        else:
            vm = _import(session, plan, inventory, params, reporter, change.resource)
        params = _edits_for_new_vm(session, plan, inventory, vm, params["node"], identity, reporter)
    else:
        vm = vim.VirtualMachine(params["vm"], session.stub)
    if "shutdown" in change.steps:
        _shutdown(vm, reporter, change.resource)
    if params["devices"] or params["config"]:
        spec = _config_spec(vm, params, placement)
        run_task(reporter, f"reconfigure {change.resource}", lambda: vm.ReconfigVM_Task(spec))
    if "power_on" in change.steps and vm.runtime.powerState != "poweredOn":
        run_task(reporter, f"power on {change.resource}", vm.PowerOnVM_Task)


def _clone(
    session: Session,
    plan: Plan,
    inventory: Inventory,
    params: dict[str, Any],
    reporter: Reporter,
    resource: str,
) -> Any:
    placement = params["placement"]
    template = vim.VirtualMachine(params["template"], session.stub)
    spec = vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(
            host=vim.HostSystem(placement["host"], session.stub),
            pool=vim.ResourcePool(placement["pool"], session.stub),
            datastore=vim.Datastore(placement["datastore"], session.stub),
        ),
        powerOn=False,
        template=False,
        # Marked ours from birth: a run cut short after the clone must not
        # leave a same-named VM that the next run refuses to touch.
        config=vim.vm.ConfigSpec(
            extraConfig=[
                vim.option.OptionValue(key=MARKER_PLAN, value=plan.name),
                vim.option.OptionValue(key=MARKER_NODE, value=params["node"]),
            ]
        ),
    )
    name = plan.vm_name(params["node"])
    folder = _our_folder(session, plan, inventory)
    return run_task(reporter, f"clone {resource}", lambda: template.CloneVM_Task(folder, name, spec))


def _our_folder(session: Session, plan: Plan, inventory: Inventory) -> Any:
    """The plan's VM folder, created on first use."""
    if inventory.vm_folder is None:
        folder = storage_vms.vm_folder(plan, session.esxi)
        inventory.vm_folder = _ensure_folder(session, inventory.root_vm_folder, folder)
    return inventory.vm_folder


def _import(
    session: Session,
    plan: Plan,
    inventory: Inventory,
    params: dict[str, Any],
    reporter: Reporter,
    resource: str,
) -> Any:
    # Verified at plan time; the digests are checked again as the bytes are sent.
    package = ova_package.open_verified(Path(params["ova"]))
    return ova_import.import_vm(
        session,
        plan,
        package,
        params["node"],
        params["placement"],
        _our_folder(session, plan, inventory),
        reporter,
        resource,
    )


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


def _edits_for_new_vm(
    session: Session,
    plan: Plan,
    inventory: Inventory,
    vm: Any,
    node_name: str,
    identity: NodeIdentity,
    reporter: Reporter,
) -> dict[str, Any]:
    """Recompute the device edits against the clone itself (its device keys are its own)."""
    node = next(node for node in plan.storage_nodes if node.node == node_name)
    obj = retrieve_one(session, vm)
    fact = vm_fact(obj, inventory)
    placement = storage_vms.placement_of(inventory, node)
    if placement.datastore_id is None:  # the VM was just made on it: gone meanwhile
        raise VSphereError(f"datastore {node.datastore!r} is no longer on host {node.esxi!r}")
    folder = list_folder(session, reporter, placement.datastore_id, node.datastore, plan.vm_name(node_name))
    resource = f"vm {plan.vm_name(node_name)}"
    edits = storage_vms.vm_edits(plan, node, placement, fact, identity, folder, frozenset(), resource)
    if edits.problems:
        raise VSphereError("; ".join(str(problem) for problem in edits.problems))
    return edits.params


def _config_spec(vm: Any, params: dict[str, Any], placement: dict[str, Any]) -> Any:
    config = params["config"]
    spec = vim.vm.ConfigSpec()
    if "numCPUs" in config:
        spec.numCPUs = config["numCPUs"]
    if "memoryMB" in config:
        spec.memoryMB = config["memoryMB"]
    if "annotation" in config:
        spec.annotation = config["annotation"]
    if "extraConfig" in config:
        spec.extraConfig = [vim.option.OptionValue(key=k, value=v) for k, v in config["extraConfig"].items()]
    if params["devices"]:
        current = {device.key: device for device in vm.config.hardware.device}
        controller_key = next(
            (
                device.key
                for device in current.values()
                if isinstance(device, Device.ParaVirtualSCSIController)
                and device.busNumber == storage_vms.DATA_BUS
            ),
            NEW_CONTROLLER_KEY,
        )
        spec.deviceChange = [
            _device_spec(op, current, controller_key, placement, vm._stub) for op in params["devices"]
        ]
    return spec


def _device_spec(
    op: dict[str, Any], current: dict[int, Any], controller_key: int, placement: dict[str, Any], stub: Any
) -> Any:
    Op = Device.VirtualDeviceSpec.Operation
    kind = op["op"]
    if kind == "add_controller":
        controller = Device.ParaVirtualSCSIController(
            key=NEW_CONTROLLER_KEY, busNumber=op["bus"], sharedBus="noSharing"
        )
        return Device.VirtualDeviceSpec(operation=Op.add, device=controller)
    if kind == "add_disk":
        return _add_disk(op, controller_key)
    if kind == "grow_disk":
        disk = current[op["key"]]
        disk.capacityInKB = op["size_kb"]
        disk.capacityInBytes = op["size_kb"] * 1024
        return Device.VirtualDeviceSpec(operation=Op.edit, device=disk)
    if kind == "remove_disk":
        return Device.VirtualDeviceSpec(
            operation=Op.remove,
            device=current[op["key"]],
            fileOperation=Device.VirtualDeviceSpec.FileOperation.destroy,
        )
    if kind == "remove_nic":
        return Device.VirtualDeviceSpec(operation=Op.remove, device=current[op["key"]])
    network = vim.Network(placement["networks"][op["network"]], stub)
    backing = Device.VirtualEthernetCard.NetworkBackingInfo(deviceName=op["network"], network=network)
    if kind == "add_nic":
        nic = Device.VirtualVmxnet3(
            key=-300 - NIC_ROLES.index(op["role"]),
            connectable=Device.VirtualDevice.ConnectInfo(
                startConnected=True, connected=True, allowGuestControl=True
            ),
        )
        operation = Op.add
    else:
        nic = current[op["key"]]
        operation = Op.edit
    nic.backing = backing
    nic.addressType = "manual"
    nic.macAddress = op["mac"]
    return Device.VirtualDeviceSpec(operation=operation, device=nic)


def _add_disk(op: dict[str, Any], controller_key: int) -> Any:
    Op = Device.VirtualDeviceSpec.Operation
    provisioning = op.get("provisioning", "thin")
    backing = Device.VirtualDisk.FlatVer2BackingInfo(
        fileName=op["file"],
        diskMode="persistent",
        thinProvisioned=provisioning == "thin",
        eagerlyScrub=provisioning == "thick-eager",
    )
    disk = Device.VirtualDisk(
        key=-200 - op["unit"],
        controllerKey=controller_key,
        unitNumber=op["unit"],
        backing=backing,
    )
    spec = Device.VirtualDeviceSpec(operation=Op.add, device=disk)
    if op["create"]:
        disk.capacityInKB = op["size_kb"]
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
