"""Facts of the `cluster` stage (vCenter only): our cluster's HA/DRS
configuration and VM overrides, where each host sits, our storage VMs.

Read from the inventory snapshot (no round trip of its own).
"""

from dataclasses import dataclass, field, replace

from pyVmomi import vim

from orchestrator.plan import Cluster, Plan
from orchestrator.stages.cluster.operations import DasSettings, DrsSettings
from orchestrator.vsphere.inventory import Inventory

HB_OPTION = "das.ignoreInsufficientHbDatastore"


@dataclass(frozen=True)
class HostPlace:
    """A host of the plan and its parent compute resource (None when not in the inventory)."""

    name: str
    host_id: str | None
    parent: str | None


@dataclass(frozen=True)
class ClusterFacts:
    cluster_id: str | None  # None: no cluster of the plan's name
    folder: str  # the datacenter's host folder (Folder moId), where a new cluster goes
    ha_enabled: bool = False
    host_monitoring: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # HA advanced options
    drs_enabled: bool = False
    das_overrides: dict[str, DasSettings] = field(default_factory=dict)  # vm id ->
    drs_overrides: dict[str, DrsSettings] = field(default_factory=dict)  # vm id ->
    hosts: tuple[HostPlace, ...] = ()
    storage_vms: dict[str, str] = field(default_factory=dict)  # vm id -> name
    clusters: dict[str, str] = field(default_factory=dict)  # every cluster's id -> name


def planned(plan: Plan) -> Cluster:
    """The plan's [cluster]; the cluster stage runs only when there is one."""
    if plan.cluster is None:
        raise ValueError("the plan has no [cluster]")
    return plan.cluster


def observe(plan: Plan, inventory: Inventory) -> ClusterFacts:
    cluster = inventory.named(vim.ClusterComputeResource, planned(plan).name)
    hosts = []
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        parent = host.get("parent") if host else None
        hosts.append(
            HostPlace(entry.esxi, host.id if host else None, parent._moId if parent is not None else None)
        )
    wanted = {plan.vm_name(node.node) for node in plan.vm_nodes}
    base = ClusterFacts(
        cluster_id=cluster.id if cluster else None,
        folder=inventory.host_folder._moId,
        hosts=tuple(hosts),
        storage_vms={obj.id: obj.name for obj in inventory.folder_vms() if obj.name in wanted},
        clusters={obj.id: obj.name for obj in inventory.of_type(vim.ClusterComputeResource)},
    )
    config = cluster.get("configurationEx") if cluster else None
    if config is None:
        return base
    das = config.dasConfig
    das_overrides = {}
    for entry in config.dasVmConfig or []:
        settings = entry.dasSettings
        monitoring = settings.vmToolsMonitoringSettings if settings else None
        das_overrides[entry.key._moId] = DasSettings(
            settings.restartPriority if settings else None,
            settings.isolationResponse if settings else None,
            monitoring.vmMonitoring if monitoring else None,
        )
    return replace(
        base,
        ha_enabled=bool(das and das.enabled),
        host_monitoring=das.hostMonitoring if das else None,
        options={option.key: str(option.value) for option in (das.option if das else None) or []},
        drs_enabled=bool(config.drsConfig and config.drsConfig.enabled),
        das_overrides=das_overrides,
        drs_overrides={
            entry.key._moId: DrsSettings(entry.enabled, entry.behavior) for entry in config.drsVmConfig or []
        },
    )
