"""The vSphere half of `status`, read from the one inventory snapshot.

It reuses the stages' observe functions (vms, iscsi, datastore,
cluster) and adds only what they do not read: the multipath state of our LUN
and each host's connection state.
"""

from typing import Any

from pyVmomi import vim

from orchestrator.plan import ISCSI_PORT, Plan
from orchestrator.stages.cluster import facts as cluster
from orchestrator.stages.datastore import facts as datastore
from orchestrator.stages.iscsi import facts as iscsi
from orchestrator.stages.vms import facts as vms_facts
from orchestrator.status.model import ClusterView, DatastoreView, HostView, PathView
from orchestrator.vsphere.inventory import Inventory
from orchestrator.vsphere.vm_facts import VmFact


def storage_vms_by_node(plan: Plan, inventory: Inventory) -> dict[str, VmFact | None]:
    """Our storage VM per node (the VMs in our folder), None when absent."""
    return {facts.node.node: facts.vm for facts in vms_facts.observe(plan, inventory).nodes}


def host_name(inventory: Inventory, host_id: str | None) -> str | None:
    obj = inventory.objects.get(host_id) if host_id else None
    return obj.name if obj is not None else None


def lun_paths(device_info: Any, naa: str) -> list[PathView]:
    """The multipath paths of the LUN whose canonical name is `naa`."""
    if device_info is None or device_info.multipathInfo is None:
        return []
    keys = {lun.key for lun in device_info.scsiLun or [] if lun.canonicalName == naa}
    return [
        PathView(
            name=path.name,
            state=str(path.state or path.pathState or "unknown"),
            working=bool(path.isWorkingPath),
        )
        for unit in device_info.multipathInfo.lun or []
        if unit.lun in keys
        for path in unit.path or []
    ]


def observe_hosts(plan: Plan, inventory: Inventory, naa: str) -> tuple[list[HostView], DatastoreView]:
    """Per host: adapter, send target, LUN and its paths, our datastore's mount.

    Our datastore is the VMFS on the LUN `naa`, else the one with the plan's name.
    """
    vip = f"{plan.network.vip}:{ISCSI_PORT}"
    adapters = {host.name: host for host in iscsi.observe(plan, inventory)}
    ds_facts = datastore.observe(plan, inventory)
    ours = next((ds for ds in ds_facts.datastores if ds.naa == naa), None) or next(
        (ds for ds in ds_facts.datastores if ds.name == plan.datastore.name), None
    )
    views = []
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        state = adapters.get(entry.esxi)
        if host is None or state is None:
            views.append(HostView(host=entry.esxi, found=False))
            continue
        mounted, accessible = ours.mounts.get(host.id, (False, False)) if ours else (False, False)
        views.append(
            HostView(
                host=entry.esxi,
                found=True,
                connection=str(host.get("runtime.connectionState") or "unknown"),
                adapter=state.adapter,
                adapter_enabled=state.enabled and state.adapter is not None,
                send_target=any(target.portal == vip for target in state.send_targets),
                lun=state.lun,
                paths=lun_paths(host.get("config.storageDevice"), state.lun) if state.lun else [],
                datastore_mounted=mounted,
                datastore_accessible=accessible,
            )
        )
    found = DatastoreView(
        name=ours.name if ours else plan.datastore.name,
        found=ours is not None,
        naa=ours.naa if ours else None,
    )
    return views, found


def observe_cluster(plan: Plan, inventory: Inventory, api_type: str) -> ClusterView:
    if plan.cluster is None:
        return ClusterView(name=None, checked=False, note="the plan has no [cluster]")
    if api_type != "VirtualCenter":
        return ClusterView(
            name=plan.cluster.name, checked=False, note="connected to an ESXi host: clusters need vCenter"
        )
    facts = cluster.observe(plan, inventory)
    return ClusterView(
        name=plan.cluster.name,
        checked=True,
        exists=facts.cluster_id is not None,
        ha_enabled=facts.ha_enabled,
        host_monitoring=facts.host_monitoring,
        hosts_outside=[
            host.name
            for host in facts.hosts
            if host.host_id is not None and (facts.cluster_id is None or host.parent != facts.cluster_id)
        ],
    )
