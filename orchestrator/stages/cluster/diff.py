"""The `cluster` diff, pure (vCenter only): the hosts in one cluster with vSphere HA.

HA watches the hosts; das.ignoreInsufficientHbDatastore is set because the VSA
datastore is usually the only shared one. The storage VMs are pinned to their
hosts' local disks, so their HA overrides are:
- restart priority highest: HA cannot run them elsewhere, but restarts them on
  their own host when it returns (host autostart has no effect in an HA
  cluster; outside one the `vms` stage sets autostart instead);
- isolation response none: an isolated host must not power off the storage;
- VM monitoring off: heartbeat, not an HA reset, decides a failover.
With DRS on, they are also excluded from DRS (manual, disabled): never moved.
A rerun powers a storage VM on if it is still off (`vms` stage).

A new cluster is created with the planned HA configuration; an existing one
is reconfigured only where it differs (HA, then the VM overrides).
"""

from orchestrator.changes import Attr, Change, Problem
from orchestrator.operations import Operation
from orchestrator.plan import Plan
from orchestrator.stages.cluster.facts import HB_OPTION, ClusterFacts, planned
from orchestrator.stages.cluster.operations import (
    DAS_OVERRIDE,
    DRS_OVERRIDE,
    ClusterHost,
    ClusterRef,
    ConfigureHa,
    CreateCluster,
    DasOverride,
    DrsOverride,
    MoveHostsIntoCluster,
    SetVmOverrides,
)

STAGE = "cluster"


def diff(plan: Plan, facts: ClusterFacts) -> tuple[list[Change], list[Problem]]:
    name = planned(plan).name
    resource = f"cluster {name}"
    problems = []
    moves: list[ClusterHost] = []
    for host in facts.hosts:
        if host.host_id is None or host.parent == facts.cluster_id:
            continue
        if host.parent in facts.clusters:
            problems.append(
                Problem(
                    STAGE,
                    resource,
                    f"host {host.name} is in another cluster ({facts.clusters[host.parent]}); move it out by "
                    "hand (maintenance mode), then rerun",
                )
            )
        else:
            moves.append(ClusterHost(host.name, host.host_id))
    if problems:
        return [], problems
    attrs: list[Attr] = []
    creating = facts.cluster_id is None
    ha = planned(plan).ha
    if facts.ha_enabled != ha:
        attrs.append(Attr("ha", None if creating else facts.ha_enabled, ha))
    if ha and facts.host_monitoring != "enabled":
        attrs.append(Attr("host monitoring", facts.host_monitoring, "enabled"))
    if ha and facts.options.get(HB_OPTION) != "true":
        attrs.append(Attr(HB_OPTION, facts.options.get(HB_OPTION), "true"))
    ha_differs = bool(attrs)
    for move in moves:
        attrs.append(Attr("hosts", None, move.name))
    das: list[DasOverride] = []
    drs: list[DrsOverride] = []
    for vm_id, vm_name in sorted(facts.storage_vms.items(), key=lambda item: item[1]):
        das_now = facts.das_overrides.get(vm_id)
        if ha and das_now != DAS_OVERRIDE:
            attrs.append(Attr(f"HA override {vm_name}", _text(das_now), str(DAS_OVERRIDE)))
            das.append(DasOverride(vm_id, vm_name, "add" if das_now is None else "edit", DAS_OVERRIDE))
        drs_now = facts.drs_overrides.get(vm_id)
        if facts.drs_enabled and drs_now != DRS_OVERRIDE:
            attrs.append(Attr(f"DRS override {vm_name}", _text(drs_now), str(DRS_OVERRIDE)))
            drs.append(DrsOverride(vm_id, vm_name, "add" if drs_now is None else "edit", DRS_OVERRIDE))
    missing_vms = sorted(
        {plan.vm_name(node.node) for node in plan.vm_nodes} - set(facts.storage_vms.values())
    )
    if ha and missing_vms and creating:
        # Shown only: the stage plans again after the vms stage made them.
        attrs.append(Attr("HA overrides", None, f"{', '.join(missing_vms)} once created"))
    if not attrs:
        return [], []
    cluster = ClusterRef(name=name, folder=facts.folder, id=facts.cluster_id)
    operations: list[Operation] = []
    if creating:
        operations.append(CreateCluster(cluster, ha=ha))  # created with the planned HA configuration
    if moves:
        operations.append(MoveHostsIntoCluster(cluster, hosts=tuple(moves)))
    if ha_differs and not creating:
        operations.append(ConfigureHa(cluster, ha=ha))
    if das or drs:
        operations.append(SetVmOverrides(cluster, das=tuple(das), drs=tuple(drs)))
    return [
        Change(
            stage=STAGE,
            action="create" if creating else "update",
            resource=resource,
            attrs=attrs,
            operations=tuple(operations),
        )
    ], []


def _text(settings: object | None) -> str | None:
    return None if settings is None else str(settings)
