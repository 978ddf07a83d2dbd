"""The `datastore` diff, pure: (plan, facts) -> changes and problems.

One VMFS datastore on our LUN, mounted on every host. A datastore whose VMFS
extent is our LUN is ours, whatever its name (a name other than the plan's is
refused unless datastore.rename says to rename it). With none, the datastore
is created once, on one host (CreateVmfs, which re-checks the LUN right before
formatting it), and the other hosts rescan until they mount it. A LUN is never
formatted when it carries VMFS or any partition.
"""

from orchestrator.changes import Attr, Change, Problem
from orchestrator.operations import Operation
from orchestrator.plan import Plan
from orchestrator.stages.datastore.facts import DatastoreFacts, DsHost, VmfsDatastore
from orchestrator.stages.datastore.operations import (
    CreateVmfs,
    MountOn,
    MountVmfs,
    RenameDatastore,
    RequireLun,
    RescanVmfs,
    WaitMounted,
)

STAGE = "datastore"


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
    named = next((ds for ds in facts.datastores if ds.name == name), None)
    if not luns:
        if named is not None:
            return [], []  # the LUN is not visible yet; the iscsi stage shows the rescan
        return [_create(plan, None, None, [])], []
    naa = luns[0]
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
        others = [host for host in facts.hosts if host.host_id != creator.host_id]
        return [_create(plan, naa, creator, others)], []
    return _update(plan, facts, ours[0], naa, resource)


def _create(plan: Plan, naa: str | None, creator: DsHost | None, others: list[DsHost]) -> Change:
    name = plan.datastore.name
    operations: list[Operation] = []
    if naa is None or creator is None:
        operations.append(RequireLun(plan.iqn))
    else:
        operations.append(
            CreateVmfs(
                host=creator.name,
                storage=creator.storage_id,
                datastore_system=creator.datastore_system_id,
                naa=naa,
                name=name,
                iqn=plan.iqn,
            )
        )
        operations += [RescanVmfs(host.name, host.storage_id) for host in others]
        if others:
            hosts = tuple(MountOn(host.name, host.host_id) for host in others)
            operations.append(WaitMounted(name=name, naa=naa, hosts=hosts, datastore=None))
    on = naa or f"the LUN of {plan.iqn}, once the iscsi stage makes it visible"
    return Change(
        stage=STAGE,
        action="create",
        resource=f"datastore {name}",
        attrs=[
            Attr("device", None, on),
            Attr("filesystem", None, "VMFS 6"),
            Attr("formatted on", None, creator.name if creator else "the first host that sees the LUN"),
        ],
        operations=tuple(operations),
    )


def _update(
    plan: Plan, facts: DatastoreFacts, ds: VmfsDatastore, naa: str, resource: str
) -> tuple[list[Change], list[Problem]]:
    attrs: list[Attr] = []
    operations: list[Operation] = []
    if ds.name != plan.datastore.name:
        if not plan.datastore.rename:
            message = (
                f"the VMFS datastore on our LUN {ds.naa} is named {ds.name!r}, the plan says "
                f"{plan.datastore.name!r}; it is not renamed unless the plan sets datastore.rename = true"
            )
            return [], [Problem(STAGE, resource, message)]
        attrs.append(Attr("name", ds.name, plan.datastore.name))
        operations.append(RenameDatastore(ds.id, plan.datastore.name))
    remount: list[MountOn] = []
    for host in facts.hosts:
        mounted, accessible = ds.mounts.get(host.host_id, (False, False))
        if mounted and accessible:
            continue
        before = "not mounted" if not mounted else "mounted, inaccessible"
        attrs.append(Attr(f"on {host.name}", before, "mounted, accessible"))
        if host.host_id in ds.mounts and not mounted:
            operations.append(MountVmfs(host.name, host.storage_id, ds.uuid))
        else:
            operations.append(RescanVmfs(host.name, host.storage_id))
        remount.append(MountOn(host.name, host.host_id))
    if remount:
        operations.append(
            WaitMounted(name=plan.datastore.name, naa=naa, hosts=tuple(remount), datastore=ds.id)
        )
    if not operations:
        return [], []
    return [
        Change(
            stage=STAGE,
            action="update",
            resource=resource,
            attrs=attrs,
            operations=tuple(operations),
        )
    ], []
