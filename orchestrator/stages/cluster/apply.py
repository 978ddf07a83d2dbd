"""Executor of the `cluster` stage: create the cluster, move hosts in, and
merge the HA configuration and the storage VMs' overrides (modify=True keeps
everything else the cluster has)."""

import logging
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.executors import VSPHERE, run_operations
from orchestrator.stages.cluster.facts import HB_OPTION
from orchestrator.stages.cluster.operations import (
    ClusterRef,
    ConfigureHa,
    CreateCluster,
    DasOverride,
    DrsOverride,
    MoveHostsIntoCluster,
    SetVmOverrides,
)
from orchestrator.stages.contract import RunContext
from orchestrator.vsphere.session import VSphereError, required, transient_retry
from orchestrator.vsphere.tasks import run_task

log = logging.getLogger(__name__)


def das_config(ha: bool) -> Any:
    if not ha:
        return vim.cluster.DasConfigInfo(enabled=False)
    return vim.cluster.DasConfigInfo(
        enabled=True,
        hostMonitoring="enabled",
        option=[vim.option.OptionValue(key=HB_OPTION, value="true")],
    )


def _cluster(ctx: RunContext, ref: ClusterRef) -> Any:
    """The cluster an operation names: by its id, or (created in this change) by name in its folder."""
    stub = ctx.vsphere.stub
    if ref.id is not None:
        return vim.ClusterComputeResource(ref.id, stub)
    search = required(ctx.vsphere.content.searchIndex, "searchIndex")
    found = transient_retry(search.FindChild)(vim.Folder(ref.folder, stub), ref.name)
    if not isinstance(found, vim.ClusterComputeResource):
        raise VSphereError(f"cluster {ref.name}: not found in the host folder after creating it; rerun")
    return found


def _reconfigure(ctx: RunContext, ref: ClusterRef, spec: Any) -> None:
    cluster = _cluster(ctx, ref)
    run_task(
        ctx.reporter,
        f"reconfigure cluster {ref.name}",
        lambda: cluster.ReconfigureComputeResource_Task(spec, True),
    )


@VSPHERE.handles(CreateCluster)
def create_cluster(op: CreateCluster, ctx: RunContext) -> None:
    log.info("CreateClusterEx %s", op.cluster.name)
    folder = vim.Folder(op.cluster.folder, ctx.vsphere.stub)
    spec = vim.cluster.ConfigSpecEx(dasConfig=das_config(op.ha))
    transient_retry(folder.CreateClusterEx)(op.cluster.name, spec)


@VSPHERE.handles(MoveHostsIntoCluster)
def move_hosts(op: MoveHostsIntoCluster, ctx: RunContext) -> None:
    cluster = _cluster(ctx, op.cluster)
    hosts = [vim.HostSystem(host.host_id, ctx.vsphere.stub) for host in op.hosts]
    run_task(
        ctx.reporter,
        f"move {len(hosts)} host(s) into cluster {op.cluster.name}",
        lambda: cluster.MoveInto_Task(hosts),
    )


@VSPHERE.handles(ConfigureHa)
def configure_ha(op: ConfigureHa, ctx: RunContext) -> None:
    _reconfigure(ctx, op.cluster, vim.cluster.ConfigSpecEx(dasConfig=das_config(op.ha)))


@VSPHERE.handles(SetVmOverrides)
def set_vm_overrides(op: SetVmOverrides, ctx: RunContext) -> None:
    stub = ctx.vsphere.stub
    spec = vim.cluster.ConfigSpecEx(
        dasVmConfigSpec=[_das(override, stub) for override in op.das],
        drsVmConfigSpec=[_drs(override, stub) for override in op.drs],
    )
    _reconfigure(ctx, op.cluster, spec)


def _das(override: DasOverride, stub: Any) -> Any:
    wanted = override.settings
    settings = vim.cluster.DasVmSettings(
        restartPriority=wanted.restart_priority,
        isolationResponse=wanted.isolation_response,
        vmToolsMonitoringSettings=vim.cluster.VmToolsMonitoringSettings(vmMonitoring=wanted.vm_monitoring),
    )
    info = vim.cluster.DasVmConfigInfo(key=vim.VirtualMachine(override.vm, stub), dasSettings=settings)
    return vim.cluster.DasVmConfigSpec(operation=override.operation, info=info)


def _drs(override: DrsOverride, stub: Any) -> Any:
    info = vim.cluster.DrsVmConfigInfo(
        key=vim.VirtualMachine(override.vm, stub),
        enabled=override.settings.enabled,
        behavior=override.settings.behavior,
    )
    return vim.cluster.DrsVmConfigSpec(operation=override.operation, info=info)


def apply(ctx: RunContext, change: Change) -> None:
    run_operations(ctx, change)
