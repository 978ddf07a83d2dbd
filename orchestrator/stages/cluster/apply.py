"""Executor of the `cluster` stage: create the cluster, move hosts in, and
merge HA settings and the storage VMs' overrides (modify=True keeps the rest)."""

import logging
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.stages.cluster.diff import DAS_OVERRIDE, DRS_OVERRIDE, das_config, planned
from orchestrator.vsphere.inventory import Inventory
from orchestrator.vsphere.session import Session, transient_retry
from orchestrator.vsphere.tasks import run_task

log = logging.getLogger(__name__)


def apply(session: Session, plan: Plan, inventory: Inventory, change: Change, reporter: Reporter) -> None:
    params = change.params
    name = planned(plan).name
    if "create" in change.steps:
        log.info("CreateClusterEx %s", name)
        spec = vim.cluster.ConfigSpecEx(dasConfig=das_config(plan))
        cluster = transient_retry(inventory.host_folder.CreateClusterEx)(name, spec)
    else:
        cluster = vim.ClusterComputeResource(params["cluster"], session.stub)
    if "move_hosts" in change.steps:
        hosts = [vim.HostSystem(host_id, session.stub) for host_id in params["hosts"]]
        run_task(
            reporter, f"move {len(hosts)} host(s) into cluster {name}", lambda: cluster.MoveInto_Task(hosts)
        )
    spec = vim.cluster.ConfigSpecEx(
        dasConfig=das_config(plan),
        dasVmConfigSpec=[
            _das(vm, exists, session) for kind, vm, exists in params["overrides"] if kind == "das"
        ],
        drsVmConfigSpec=[
            _drs(vm, exists, session) for kind, vm, exists in params["overrides"] if kind == "drs"
        ],
    )
    run_task(
        reporter, f"reconfigure cluster {name}", lambda: cluster.ReconfigureComputeResource_Task(spec, True)
    )


def _das(vm_id: str, exists: bool, session: Session) -> Any:
    priority, isolation, monitoring = DAS_OVERRIDE
    settings = vim.cluster.DasVmSettings(
        restartPriority=priority,
        isolationResponse=isolation,
        vmToolsMonitoringSettings=vim.cluster.VmToolsMonitoringSettings(vmMonitoring=monitoring),
    )
    info = vim.cluster.DasVmConfigInfo(key=vim.VirtualMachine(vm_id, session.stub), dasSettings=settings)
    return vim.cluster.DasVmConfigSpec(operation="edit" if exists else "add", info=info)


def _drs(vm_id: str, exists: bool, session: Session) -> Any:
    enabled, behavior = DRS_OVERRIDE
    info = vim.cluster.DrsVmConfigInfo(
        key=vim.VirtualMachine(vm_id, session.stub), enabled=enabled, behavior=behavior
    )
    return vim.cluster.DrsVmConfigSpec(operation="edit" if exists else "add", info=info)
