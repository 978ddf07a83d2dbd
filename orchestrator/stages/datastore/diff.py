"""The `datastore` stage: one VMFS datastore on our LUN, mounted on every host.

The LUN is known by its naa id (the `iscsi` stage makes every host see it).
A datastore whose VMFS extent is that LUN is ours, whatever its name (a name
other than the plan's is refused unless datastore.rename says to rename it).
With none, the datastore is created once, on one host, and the other hosts
rescan until they mount it. A LUN is never formatted when it carries VMFS or
any partition: the executor re-checks QueryAvailableDisksForVmfs right before.
"""

from dataclasses import dataclass, field

from pyVmomi import vim

from orchestrator.changes import Attr, Change, Problem
from orchestrator.plan import Plan
from orchestrator.stages.iscsi import facts as iscsi
from orchestrator.vsphere.inventory import Inventory

STAGE = "datastore"


@dataclass(frozen=True)
class DsHost:
    name: str
    host_id: str
    storage_id: str
    datastore_system_id: str
    lun: str | None


@dataclass(frozen=True)
class VmfsDatastore:
    id: str
    name: str
    uuid: str
    naa: str | None
    mounts: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # host id -> (mounted, accessible)


@dataclass
class DatastoreFacts:
    hosts: list[DsHost]
    datastores: list[VmfsDatastore]


def observe(plan: Plan, inventory: Inventory) -> DatastoreFacts:
    hosts = []
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        if host is None:
            continue  # the iscsi stage reports unknown hosts
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
    return DatastoreFacts(hosts=hosts, datastores=datastores)


def diff(plan: Plan, facts: DatastoreFacts) -> tuple[list[Change], list[Problem]]:
    name = plan.datastore.name
    resource = f"datastore {name}"
    luns = sorted({host.lun for host in facts.hosts if host.lun})
    if len(luns) > 1:
        message = (
            f"hosts see different LUN ids for {plan.iqn} ({', '.join(luns)}): the storage nodes do not "
            "present the same NAA/serial; fix the target identity before any datastore is touched"
        )
        return [], [Problem(STAGE, resource, message)]
    naa = luns[0] if luns else None
    named = next((ds for ds in facts.datastores if ds.name == name), None)
    if naa is None:
        if named is not None:
            return [], []  # the LUN is not visible yet; the iscsi stage shows the rescan
        return [_create(plan, None, None, [])], []
    ours = [ds for ds in facts.datastores if ds.naa == naa]
    if not ours:
        if named is not None:
            message = (
                f"a datastore named {name!r} exists on device {named.naa}, but our LUN shows as {naa}. "
                "If it was ours, the storage nodes changed the LUN's identity (NAA/serial) and ESXi "
                "sees its VMFS as an unresolved snapshot copy: restore the target's identity, never "
                "resignature. Otherwise it is someone else's: rename it or choose another datastore.name"
            )
            return [], [Problem(STAGE, resource, message)]
        creator = next(host for host in facts.hosts if host.lun == naa)
        others = [_mount_params(host, unmounted=False) for host in facts.hosts if host is not creator]
        return [_create(plan, naa, creator, others)], []
    ds = ours[0]
    return _update(plan, facts, ds, resource)


def _mount_params(host: DsHost, unmounted: bool) -> dict[str, str | bool]:
    return {"host": host.name, "host_id": host.host_id, "storage": host.storage_id, "unmounted": unmounted}


def _create(plan: Plan, naa: str | None, creator: DsHost | None, others: list[dict]) -> Change:
    on = naa or f"the LUN of {plan.iqn}, once the iscsi stage makes it visible"
    return Change(
        stage=STAGE,
        action="create",
        resource=f"datastore {plan.datastore.name}",
        attrs=[
            Attr("device", None, on),
            Attr("filesystem", None, "VMFS 6"),
            Attr("formatted on", None, creator.name if creator else "the first host that sees the LUN"),
        ],
        steps=["format", "mount"],
        params={
            "naa": naa,
            "creator": creator.name if creator else None,
            "storage": creator.storage_id if creator else None,
            "datastore_system": creator.datastore_system_id if creator else None,
            "hosts": others,
        },
    )


def _update(
    plan: Plan, facts: DatastoreFacts, ds: VmfsDatastore, resource: str
) -> tuple[list[Change], list[Problem]]:
    attrs: list[Attr] = []
    steps: list[str] = []
    if ds.name != plan.datastore.name:
        if not plan.datastore.rename:
            message = (
                f"the VMFS datastore on our LUN {ds.naa} is named {ds.name!r}, the plan says "
                f"{plan.datastore.name!r}; it is not renamed unless the plan sets datastore.rename = true"
            )
            return [], [Problem(STAGE, resource, message)]
        attrs.append(Attr("name", ds.name, plan.datastore.name))
        steps.append("rename")
    remount = []
    for host in facts.hosts:
        mounted, accessible = ds.mounts.get(host.host_id, (False, False))
        if not (mounted and accessible):
            before = "not mounted" if not mounted else "mounted, inaccessible"
            attrs.append(Attr(f"on {host.name}", before, "mounted, accessible"))
            remount.append(_mount_params(host, unmounted=host.host_id in ds.mounts and not mounted))
    if remount:
        steps.append("mount")
    if not steps:
        return [], []
    return [
        Change(
            stage=STAGE,
            action="update",
            resource=resource,
            attrs=attrs,
            steps=steps,
            params={"datastore": ds.id, "uuid": ds.uuid, "naa": ds.naa, "hosts": remount},
        )
    ], []
