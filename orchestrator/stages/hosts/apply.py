"""Executor of the `hosts` stage: add the host with the pinned thumbprint.

vCenter itself checks the host's certificate against sslThumbprint and refuses
(SSLVerifyFault, carrying the thumbprint it saw) before adding anything; that
refusal becomes one line naming the host and both thumbprints.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.executors import VSPHERE, run_operations
from orchestrator.plan import HostEntry
from orchestrator.stages.contract import RunContext
from orchestrator.stages.hosts.operations import AddHost
from orchestrator.vsphere.session import VSphereError
from orchestrator.vsphere.tasks import TaskFailed, run_task


def _entry(ctx: RunContext, name: str) -> tuple[int, HostEntry]:
    return next((i, e) for i, e in enumerate(ctx.plan.hosts) if e.esxi == name and e.add is not None)


@VSPHERE.handles(AddHost)
def add_host(op: AddHost, ctx: RunContext) -> None:
    index, entry = _entry(ctx, op.host)
    add = entry.add
    if add is None:  # _entry only returns entries with add
        raise VSphereError(f"host {op.host}: hosts[{index}] has no add")
    password = add.password.resolve(ctx.plan.base_dir, f"hosts[{index}].add.password")
    ctx.redactor.add(password)
    spec = vim.host.ConnectSpec(
        hostName=op.host, userName=op.user, password=password, sslThumbprint=op.thumbprint
    )
    stub = ctx.vsphere.stub
    start: Callable[[], Any]
    if op.cluster_id is not None:
        start = partial(vim.ClusterComputeResource(op.cluster_id, stub).AddHost_Task, spec, True)
    else:
        start = partial(vim.Folder(op.host_folder, stub).AddStandaloneHost_Task, spec, None, True)
    try:
        run_task(ctx.reporter, f"add host {op.host}", start)
    except TaskFailed as failed:
        raise VSphereError(_refusal(op, index, failed)) from None


def _refusal(op: AddHost, index: int, failed: TaskFailed) -> str:
    fault = failed.fault
    if isinstance(fault, vim.fault.SSLVerifyFault):
        return (
            f"host {op.host}: vCenter sees certificate thumbprint {fault.thumbprint}, not the planned "
            f"{op.thumbprint} (hosts[{index}].add.thumbprint); nothing was added. Check the thumbprint on "
            "the host's console before changing the plan: a different one can mean a different machine"
        )
    if isinstance(fault, vim.fault.InvalidLogin):
        return (
            f"host {op.host}: the host refused user {op.user!r} with hosts[{index}].add.password; "
            "nothing was added"
        )
    if isinstance(fault, vim.fault.NoHost):
        return (
            f"host {op.host}: vCenter cannot reach a host of that name; nothing was added; "
            f"check hosts[{index}].esxi"
        )
    return str(failed)


def apply(ctx: RunContext, change: Change) -> None:
    run_operations(ctx, change)
