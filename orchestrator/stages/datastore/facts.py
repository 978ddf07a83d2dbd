"""Facts of the `datastore` stage: each host's view of our LUN and every VMFS
datastore with its mounts, as plain data.

Read from the inventory snapshot (no round trip of its own). The LUN is known
by its naa id, as the `iscsi` stage reads it (our IQN's LUN on the software
adapter).
"""

from dataclasses import dataclass, field

from pyVmomi import vim

from orchestrator.plan import Plan
from orchestrator.stages.iscsi import facts as iscsi
from orchestrator.vsphere.inventory import Inventory


@dataclass(frozen=True)
class DsHost:
    name: str
    host_id: str
    storage_id: str  # HostStorageSystem moId
    datastore_system_id: str  # HostDatastoreSystem moId
    lun: str | None  # naa id of our IQN's LUN, when this host sees it


@dataclass(frozen=True)
class VmfsDatastore:
    id: str
    name: str
    uuid: str
    naa: str | None  # the disk of its first extent
    mounts: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # host id -> (mounted, accessible)


@dataclass(frozen=True)
class DatastoreFacts:
    hosts: tuple[DsHost, ...]
    datastores: tuple[VmfsDatastore, ...]


def observe(plan: Plan, inventory: Inventory) -> DatastoreFacts:
    hosts = []
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        if host is None:
            continue  # reported once, before any stage (stages.missing_hosts)
        state = iscsi.host_iscsi(
            plan.iqn,
            entry.esxi,
            host.id,
            host.get("configManager.storageSystem"),
            host.get("config.storageDevice"),
        )
        hosts.append(
            DsHost(
                name=entry.esxi,
                host_id=host.id,
                storage_id=state.storage_id or "",
                datastore_system_id=host.get("configManager.datastoreSystem")._moId,
                lun=state.lun,
            )
        )
    datastores = []
    for ds in inventory.of_type(vim.Datastore):
        info = ds.get("info")
        if not isinstance(info, vim.host.VmfsDatastoreInfo) or info.vmfs is None:
            continue
        extents = info.vmfs.extent or []
        datastores.append(
            VmfsDatastore(
                id=ds.id,
                name=ds.name,
                uuid=info.vmfs.uuid,
                naa=extents[0].diskName if extents else None,
                mounts={
                    mount.key._moId: (bool(mount.mountInfo.mounted), bool(mount.mountInfo.accessible))
                    for mount in ds.get("host") or []
                },
            )
        )
    return DatastoreFacts(hosts=tuple(hosts), datastores=tuple(datastores))
