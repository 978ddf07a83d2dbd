"""The `cluster` stage (vCenter only): the hosts in one cluster with vSphere HA.

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
"""

from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Attr, Change, Problem
from orchestrator.plan import Cluster, Plan
from orchestrator.vsphere.inventory import Inventory

STAGE = "cluster"
HB_OPTION = "das.ignoreInsufficientHbDatastore"
DAS_OVERRIDE = ("highest", "none", "vmMonitoringDisabled")  # restart priority, isolation, VM monitoring
DRS_OVERRIDE = (False, "manual")  # enabled, behavior


@dataclass
class ClusterFacts:
    cluster_id: str | None
    ha_enabled: bool = False
    host_monitoring: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    drs_enabled: bool = False
    das_overrides: dict[str, tuple] = field(default_factory=dict)  # vm id -> DAS_OVERRIDE shape
    drs_overrides: dict[str, tuple] = field(default_factory=dict)  # vm id -> DRS_OVERRIDE shape
    hosts: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # name, id, parent id
    storage_vms: dict[str, str] = field(default_factory=dict)  # vm id -> name
    clusters: dict[str, str] = field(default_factory=dict)  # every cluster's id -> name


def planned(plan: Plan) -> Cluster:
    """The plan's [cluster]; the cluster stage runs only when there is one."""
    if plan.cluster is None:
        raise ValueError("the plan has no [cluster]")
    return plan.cluster


def observe(plan: Plan, inventory: Inventory) -> ClusterFacts:
    cluster = inventory.named(vim.ClusterComputeResource, planned(plan).name)
    facts = ClusterFacts(cluster_id=cluster.id if cluster else None)
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        parent = host.get("parent") if host else None
        facts.hosts.append(
            (entry.esxi, host.id if host else None, parent._moId if parent is not None else None)
        )
    facts.clusters = {obj.id: obj.name for obj in inventory.of_type(vim.ClusterComputeResource)}
    wanted = {plan.vm_name(node.node) for node in plan.storage_nodes}
    facts.storage_vms = {obj.id: obj.name for obj in inventory.folder_vms() if obj.name in wanted}
    config = cluster.get("configurationEx") if cluster else None
    if config is None:
        return facts
    das = config.dasConfig
    facts.ha_enabled = bool(das and das.enabled)
    facts.host_monitoring = das.hostMonitoring if das else None
    facts.options = {option.key: str(option.value) for option in (das.option if das else None) or []}
    facts.drs_enabled = bool(config.drsConfig and config.drsConfig.enabled)
    for entry in config.dasVmConfig or []:
        settings = entry.dasSettings
        monitoring = settings.vmToolsMonitoringSettings if settings else None
        facts.das_overrides[entry.key._moId] = (
            settings.restartPriority if settings else None,
            settings.isolationResponse if settings else None,
            monitoring.vmMonitoring if monitoring else None,
        )
    for entry in config.drsVmConfig or []:
        facts.drs_overrides[entry.key._moId] = (entry.enabled, entry.behavior)
    return facts


def diff(plan: Plan, facts: ClusterFacts) -> tuple[list[Change], list[Problem]]:
    name = planned(plan).name
    resource = f"cluster {name}"
    problems = []
    moves = []
    for host, host_id, parent in facts.hosts:
        if host_id is not None and parent != facts.cluster_id:
            if parent in facts.clusters:
                problems.append(
                    Problem(
                        STAGE,
                        resource,
                        f"host {host} is in another cluster ({facts.clusters[parent]}); move it out by hand "
                        "(maintenance mode), then rerun",
                    )
                )
            else:
                moves.append((host, host_id))
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
    for host, _ in moves:
        attrs.append(Attr("hosts", None, host))
    overrides = []
    for vm_id, vm_name in sorted(facts.storage_vms.items(), key=lambda item: item[1]):
        if ha and facts.das_overrides.get(vm_id) != DAS_OVERRIDE:
            attrs.append(
                Attr(f"HA override {vm_name}", _text(facts.das_overrides.get(vm_id)), _text(DAS_OVERRIDE))
            )
            overrides.append(("das", vm_id, vm_id in facts.das_overrides))
        if facts.drs_enabled and facts.drs_overrides.get(vm_id) != DRS_OVERRIDE:
            attrs.append(
                Attr(f"DRS override {vm_name}", _text(facts.drs_overrides.get(vm_id)), _text(DRS_OVERRIDE))
            )
            overrides.append(("drs", vm_id, vm_id in facts.drs_overrides))
    missing_vms = sorted(
        {plan.vm_name(node.node) for node in plan.storage_nodes} - set(facts.storage_vms.values())
    )
    if ha and missing_vms and creating:
        attrs.append(Attr("HA overrides", None, f"{', '.join(missing_vms)} once created"))
    if not attrs:
        return [], []
    return [
        Change(
            stage=STAGE,
            action="create" if creating else "update",
            resource=resource,
            attrs=attrs,
            steps=[
                *(["create"] if creating else []),
                *(["move_hosts"] if moves else []),
                "reconfigure",
            ],
            params={
                "cluster": facts.cluster_id,
                "hosts": [host_id for _, host_id in moves],
                "overrides": overrides,
            },
        )
    ], []


def _text(values: tuple | None) -> str | None:
    return None if values is None else ", ".join(str(value) for value in values)


def das_config(plan: Plan) -> Any:
    if not planned(plan).ha:
        return vim.cluster.DasConfigInfo(enabled=False)
    return vim.cluster.DasConfigInfo(
        enabled=True,
        hostMonitoring="enabled",
        option=[vim.option.OptionValue(key=HB_OPTION, value="true")],
    )
