"""The stages in dependency order, each behind the Stage contract (contract.py).

One inventory snapshot serves every vSphere stage; ctx.refresh() takes a new
one after changes were applied.
"""

from typing import Any

from pyVmomi import vim

from orchestrator.changes import Problem
from orchestrator.plan import Plan
from orchestrator.stages.cluster.stage import ClusterStage
from orchestrator.stages.contract import Stage
from orchestrator.stages.datastore.stage import DatastoreStage
from orchestrator.stages.guest.stage import GuestStage
from orchestrator.stages.hosts.stage import HostsStage
from orchestrator.stages.iscsi.stage import IscsiStage
from orchestrator.stages.network.stage import NetworkStage
from orchestrator.stages.vms.facts import deployed_host_key
from orchestrator.stages.vms.stage import VmsStage
from orchestrator.vsphere.inventory import Inventory


def missing_hosts(plan: Plan, inventory: Inventory, adding: bool) -> list[Problem]:
    """Every stage needs every host of the plan: an unknown one is reported once, here
    (unless its entry says how to add it and the hosts stage runs: `adding`)."""
    known = {obj.name for obj in inventory.of_type(vim.HostSystem)}
    return [
        Problem(
            "site",
            f"host {entry.esxi}",
            f"ESXi host {entry.esxi!r} not found in datacenter {plan.vsphere.datacenter!r}; check "
            "hosts[].esxi (the host's name in the inventory) or add the host to vCenter",
        )
        for entry in plan.hosts
        if entry.esxi not in known and not (adding and entry.add is not None)
    ]


__all__ = ["STAGES", "deployed_host_key", "missing_hosts"]

STAGES: dict[str, Stage[Any]] = {
    "hosts": HostsStage(),
    "network": NetworkStage(),
    "vms": VmsStage(),
    "guest": GuestStage(),
    "iscsi": IscsiStage(),
    "datastore": DatastoreStage(),
    "cluster": ClusterStage(),
}
