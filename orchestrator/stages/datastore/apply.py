"""Executor of the `datastore` stage: format once (after re-checking the LUN
is free and not an unresolved copy), rename when allowed, mount everywhere."""

import logging
import time
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.vsphere.session import Session, VSphereError, transient_retry
from orchestrator.vsphere.tasks import run_task

log = logging.getLogger(__name__)

MOUNT_WAIT_S = 60.0
VMFS_MAJOR_VERSION = 6


def apply(session: Session, plan: Plan, change: Change, reporter: Reporter) -> None:
    params = change.params
    if change.action == "create":
        datastore = _format(session, plan, params, reporter)
    else:
        datastore = vim.Datastore(params["datastore"], session.stub)
        if "rename" in change.steps:
            name = plan.datastore.name
            run_task(reporter, f"rename datastore to {name}", lambda: datastore.Rename_Task(name))
    for host in params["hosts"]:
        storage = vim.host.StorageSystem(host["storage"], session.stub)
        if host["unmounted"]:
            log.info("host %s: MountVmfsVolume %s", host["host"], datastore.info.vmfs.uuid)
            transient_retry(storage.MountVmfsVolume)(datastore.info.vmfs.uuid)
        else:
            log.info("host %s: RescanVmfs", host["host"])
            transient_retry(storage.RescanVmfs)()
    _wait_mounted(plan, datastore, {host["host_id"]: host["host"] for host in params["hosts"]}, reporter)


def _format(session: Session, plan: Plan, params: dict[str, Any], reporter: Reporter) -> Any:
    naa, creator = params["naa"], params["creator"]
    if naa is None:
        raise VSphereError(f"no host sees the LUN of {plan.iqn}; run the iscsi stage first")
    storage = vim.host.StorageSystem(params["storage"], session.stub)
    system = vim.host.DatastoreSystem(params["datastore_system"], session.stub)
    for volume in transient_retry(storage.QueryUnresolvedVmfsVolume)() or []:
        if any(extent.device.diskName == naa for extent in volume.extent or []):
            raise VSphereError(
                f"host {creator}: LUN {naa} holds VMFS volume {volume.vmfsLabel!r} that ESXi sees as an "
                "unresolved (snapshot) copy: the LUN's identity changed, so the storage VMs do not present "
                "the same NAA/serial as before. Nothing was formatted; fix the target's identity"
            )
    free = transient_retry(system.QueryAvailableDisksForVmfs)(None)
    disk = next((disk for disk in free or [] if disk.canonicalName == naa), None)
    if disk is None:
        raise VSphereError(
            f"host {creator}: LUN {naa} is not free for VMFS (it carries a partition or a filesystem); "
            "vsa-orchestrate never formats such a disk. If it holds a datastore, mount it; "
            "else clear it by hand"
        )
    options = transient_retry(system.QueryVmfsDatastoreCreateOptions)(disk.devicePath, VMFS_MAJOR_VERSION)
    if not options:
        raise VSphereError(f"host {creator}: ESXi offers no way to create VMFS on {naa}")
    spec = options[0].spec
    if not isinstance(spec, vim.host.VmfsDatastoreCreateSpec):
        raise VSphereError(f"host {creator}: ESXi offers no VMFS create spec for {naa}")
    spec.vmfs.volumeName = plan.datastore.name
    log.info("host %s: CreateVmfsDatastore %s on %s", creator, plan.datastore.name, naa)
    with reporter.task(f"create VMFS datastore {plan.datastore.name} on {naa}"):
        return transient_retry(system.CreateVmfsDatastore)(spec)


def _wait_mounted(plan: Plan, datastore: Any, hosts: dict[str, str], reporter: Reporter) -> None:
    """Poll the datastore's mounts until every host has it mounted and accessible."""
    if not hosts:
        return
    began = time.monotonic()
    with reporter.task(f"mount {plan.datastore.name} on {len(hosts)} host(s)"):
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
                    f"datastore {plan.datastore.name}: not mounted and accessible on {', '.join(missing)} "
                    f"after {MOUNT_WAIT_S:.0f} s; check that those hosts see the LUN (iscsi stage), "
                    "then rerun"
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
