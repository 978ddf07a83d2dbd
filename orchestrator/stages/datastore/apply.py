"""Executor of the `datastore` stage: format once (after re-checking, on the
formatting host, that the LUN is still ours, not an unresolved copy and free),
rename when allowed, rescan or mount on the other hosts, wait until mounted."""

import logging
import time
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.executors import VSPHERE, run_operations
from orchestrator.stages.contract import RunContext
from orchestrator.stages.datastore.operations import (
    CreateVmfs,
    MountVmfs,
    RenameDatastore,
    RequireLun,
    RescanVmfs,
    WaitMounted,
)
from orchestrator.stages.iscsi.facts import host_iscsi
from orchestrator.vsphere.session import VSphereError, required, transient_retry
from orchestrator.vsphere.tasks import run_task

log = logging.getLogger(__name__)

MOUNT_WAIT_S = 60.0
VMFS_MAJOR_VERSION = 6


@VSPHERE.handles(RequireLun)
def require_lun(op: RequireLun, ctx: RunContext) -> None:
    raise VSphereError(f"no host sees the LUN of {op.iqn}; run the iscsi stage first")


@VSPHERE.handles(CreateVmfs)
def create_vmfs(op: CreateVmfs, ctx: RunContext) -> None:
    """The only operation that formats: every guarding fact is read again on the host first."""
    stub = ctx.vsphere.stub
    storage = vim.host.StorageSystem(op.storage, stub)
    system = vim.host.DatastoreSystem(op.datastore_system, stub)
    _check_still_ours(op, storage)
    for volume in transient_retry(storage.QueryUnresolvedVmfsVolume)() or []:
        if any(extent.device.diskName == op.naa for extent in volume.extent or []):
            raise VSphereError(
                f"host {op.host}: LUN {op.naa} holds VMFS volume {volume.vmfsLabel!r} that ESXi sees as an "
                "unresolved (snapshot) copy: the LUN's identity changed, so the storage VMs do not present "
                "the same NAA/serial as before. Nothing was formatted; fix the target's identity"
            )
    free = transient_retry(system.QueryAvailableDisksForVmfs)(None)
    disk = next((disk for disk in free or [] if disk.canonicalName == op.naa), None)
    if disk is None:
        raise VSphereError(
            f"host {op.host}: LUN {op.naa} is not free for VMFS (it carries a partition or a filesystem); "
            "vsa-orchestrate never formats such a disk. If it holds a datastore, mount it; "
            "else clear it by hand"
        )
    options = transient_retry(system.QueryVmfsDatastoreCreateOptions)(disk.devicePath, VMFS_MAJOR_VERSION)
    if not options:
        raise VSphereError(f"host {op.host}: ESXi offers no way to create VMFS on {op.naa}")
    spec = options[0].spec
    if not isinstance(spec, vim.host.VmfsDatastoreCreateSpec):
        raise VSphereError(f"host {op.host}: ESXi offers no VMFS create spec for {op.naa}")
    spec.vmfs.volumeName = op.name
    log.info("host %s: CreateVmfsDatastore %s on %s", op.host, op.name, op.naa)
    with ctx.reporter.task(f"create VMFS datastore {op.name} on {op.naa}"):
        transient_retry(system.CreateVmfsDatastore)(spec)


def _check_still_ours(op: CreateVmfs, storage: Any) -> None:
    """The device must still be our IQN's LUN on this host, as when the change was planned."""
    device_info = transient_retry(lambda: storage.storageDeviceInfo)()
    now = host_iscsi(op.iqn, op.host, "", storage, device_info).lun
    if now != op.naa:
        seen = f"it is now {now}" if now else "the host sees no LUN of it now"
        raise VSphereError(
            f"host {op.host}: {op.naa} is no longer the LUN of {op.iqn} ({seen}); nothing was formatted. "
            "Rerun to plan again against what the hosts see"
        )


@VSPHERE.handles(RenameDatastore)
def rename(op: RenameDatastore, ctx: RunContext) -> None:
    datastore = vim.Datastore(op.datastore, ctx.vsphere.stub)
    run_task(ctx.reporter, f"rename datastore to {op.name}", lambda: datastore.Rename_Task(op.name))


@VSPHERE.handles(RescanVmfs)
def rescan_vmfs(op: RescanVmfs, ctx: RunContext) -> None:
    log.info("host %s: RescanVmfs", op.host)
    transient_retry(vim.host.StorageSystem(op.storage, ctx.vsphere.stub).RescanVmfs)()


@VSPHERE.handles(MountVmfs)
def mount_vmfs(op: MountVmfs, ctx: RunContext) -> None:
    log.info("host %s: MountVmfsVolume %s", op.host, op.uuid)
    transient_retry(vim.host.StorageSystem(op.storage, ctx.vsphere.stub).MountVmfsVolume)(op.uuid)


@VSPHERE.handles(WaitMounted)
def wait_mounted(op: WaitMounted, ctx: RunContext) -> None:
    """Poll the datastore's mounts until every host has it mounted and accessible."""
    datastore = _datastore(op, ctx)
    hosts = {host.host_id: host.host for host in op.hosts}
    began = time.monotonic()
    with ctx.reporter.task(f"mount {op.name} on {len(hosts)} host(s)"):
        delay = 0.1
        while True:
            ready = {
                mount.key._moId
                for mount in datastore.host or []
                if mount.mountInfo.mounted and mount.mountInfo.accessible
            }
            missing = [name for host_id, name in hosts.items() if host_id not in ready]
            if not missing:
                return
            if time.monotonic() - began > MOUNT_WAIT_S:
                raise VSphereError(
                    f"datastore {op.name}: not mounted and accessible on {', '.join(missing)} "
                    f"after {MOUNT_WAIT_S:.0f} s; check that those hosts see the LUN (iscsi stage), "
                    "then rerun"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _datastore(op: WaitMounted, ctx: RunContext) -> Any:
    """The datastore to wait for: as planned, or the one just created, by its name and LUN."""
    if op.datastore is not None:
        return vim.Datastore(op.datastore, ctx.vsphere.stub)
    search = required(ctx.vsphere.content.searchIndex, "searchIndex")
    found = transient_retry(search.FindByInventoryPath)(f"{ctx.plan.vsphere.datacenter}/datastore/{op.name}")
    info = found.info if isinstance(found, vim.Datastore) else None
    vmfs = info.vmfs if isinstance(info, vim.host.VmfsDatastoreInfo) else None
    if vmfs is None or not any(extent.diskName == op.naa for extent in vmfs.extent or []):
        raise VSphereError(
            f"datastore {op.name}: the VMFS just created on {op.naa} is not in datacenter "
            f"{ctx.plan.vsphere.datacenter!r}'s datastore folder; rerun"
        )
    return found


def apply(ctx: RunContext, change: Change) -> None:
    run_operations(ctx, change)
