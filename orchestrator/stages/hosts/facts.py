"""Facts of the `hosts` stage: which planned hosts vCenter does not hold yet,
and where an added host goes (the planned cluster when it exists)."""

from dataclasses import dataclass

from pyVmomi import vim

from orchestrator.plan import Plan
from orchestrator.vsphere.inventory import Inventory


@dataclass(frozen=True)
class HostsFacts:
    missing: tuple[str, ...]  # planned host names not in the datacenter
    host_folder: str  # the datacenter's host folder (moId)
    cluster_id: str | None  # the planned cluster, when it exists
    esxi: bool  # connected to a single ESXi host, which cannot add hosts


def missing_names(plan: Plan, inventory: Inventory) -> tuple[str, ...]:
    known = {obj.name for obj in inventory.of_type(vim.HostSystem)}
    return tuple(entry.esxi for entry in plan.hosts if entry.esxi not in known)


def observe(plan: Plan, inventory: Inventory, esxi: bool) -> HostsFacts:
    cluster = inventory.named(vim.ClusterComputeResource, plan.cluster.name) if plan.cluster else None
    return HostsFacts(
        missing=missing_names(plan, inventory),
        host_folder=inventory.host_folder._moId,
        cluster_id=cluster.id if cluster else None,
        esxi=esxi,
    )
