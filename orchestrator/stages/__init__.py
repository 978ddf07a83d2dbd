"""The stages in dependency order, each behind the Stage contract (contract.py).

One inventory snapshot serves every vSphere stage; ctx.refresh() takes a new
one after changes were applied.
"""

from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change, Problem
from orchestrator.plan import Plan
from orchestrator.stages.contract import RunContext, Stage
from orchestrator.stages.guest.stage import GuestStage
from orchestrator.stages.iscsi.stage import IscsiStage
from orchestrator.stages.vms.facts import deployed_host_key
from orchestrator.stages.vms.stage import VmsStage
from orchestrator.vsphere import cluster, cluster_apply, datastore, datastore_apply
from orchestrator.vsphere.inventory import Inventory


def missing_hosts(plan: Plan, inventory: Inventory) -> list[Problem]:
    """Every stage needs every host of the plan: an unknown one is reported once, here."""
    known = {obj.name for obj in inventory.of_type(vim.HostSystem)}
    return [
        Problem(
            "site",
            f"host {entry.esxi}",
            f"ESXi host {entry.esxi!r} not found in datacenter {plan.vsphere.datacenter!r}; check "
            "hosts[].esxi (the host's name in the inventory) or add the host to vCenter",
        )
        for entry in plan.hosts
        if entry.esxi not in known
    ]


class DatastoreStage:
    needs_vsphere = True

    def close(self) -> None:
        pass

    name = "datastore"

    def observe(self, ctx: RunContext) -> None:
        return None

    def diff(self, ctx: RunContext, observed: None) -> tuple[list[Change], list[Problem]]:
        return datastore.diff(ctx.plan, datastore.observe(ctx.plan, ctx.snapshot))

    def apply(self, ctx: RunContext, change: Change) -> None:
        datastore_apply.apply(ctx.vsphere, ctx.plan, change, ctx.reporter)


class ClusterStage:
    needs_vsphere = True

    def close(self) -> None:
        pass

    name = "cluster"

    def observe(self, ctx: RunContext) -> None:
        return None

    def diff(self, ctx: RunContext, observed: None) -> tuple[list[Change], list[Problem]]:
        if ctx.plan.cluster is None:
            ctx.notes.append("stage cluster: the plan has no [cluster]; skipped")
            return [], []
        if ctx.vsphere.content.about.apiType != "VirtualCenter":
            ctx.notes.append(
                "stage cluster: connected to an ESXi host, not vCenter; clusters need vCenter; skipped"
            )
            return [], []
        return cluster.diff(ctx.plan, cluster.observe(ctx.plan, ctx.snapshot))

    def apply(self, ctx: RunContext, change: Change) -> None:
        cluster_apply.apply(ctx.vsphere, ctx.plan, ctx.snapshot, change, ctx.reporter)


__all__ = ["STAGES", "deployed_host_key", "missing_hosts"]

STAGES: dict[str, Stage[Any]] = {
    "vms": VmsStage(),
    "guest": GuestStage(),
    "iscsi": IscsiStage(),
    "datastore": DatastoreStage(),
    "cluster": ClusterStage(),
}
