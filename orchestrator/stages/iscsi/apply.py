"""Executor of the `iscsi` stage: each operation is one HostStorageSystem call,
and RescanForLun a bounded wait until the host has logged in and sees our LUN."""

import logging
import time
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.executors import VSPHERE, run_operations
from orchestrator.stages.contract import RunContext
from orchestrator.stages.iscsi.facts import host_iscsi, software_adapter
from orchestrator.stages.iscsi.operations import (
    AddSendTarget,
    BindVnic,
    EnableSoftwareIscsi,
    HostIscsiOperation,
    Portal,
    RemoveSendTargets,
    RescanForLun,
    SetChap,
    SetTargetOptions,
)
from orchestrator.vsphere.session import VSphereError, fault_msg, transient_retry

log = logging.getLogger(__name__)

LUN_WAIT_S = 60.0
RESCAN_EVERY_S = 10.0
Iscsi = vim.host.InternetScsiHba


class _Host:
    """One host's storage system, as an operation names it."""

    def __init__(self, ctx: RunContext, op: HostIscsiOperation) -> None:
        self.name = op.host
        self.storage = vim.host.StorageSystem(op.storage, ctx.vsphere.stub)
        self._enabled = ctx.enabled_adapters
        self._key = op.storage
        self._adapter = op.adapter or ctx.enabled_adapters.get(op.storage)

    def adapter(self) -> str:
        """The software adapter's device: as planned, or (after enabling) found by its kind."""
        if self._adapter is None:
            found = software_adapter(self.storage.storageDeviceInfo)
            if found is None:
                raise VSphereError(
                    f"host {self.name}: the software iSCSI adapter did not appear after enabling it"
                )
            self._adapter = self._enabled[self._key] = found.device
        return self._adapter

    def call(self, method: str, *args: Any) -> Any:
        log.info("host %s: %s", self.name, method)
        try:
            return transient_retry(getattr(self.storage, method))(*args)
        except vim.fault.HostConfigFault as fault:
            raise VSphereError(f"host {self.name}: {method} failed: {fault_msg(fault)}") from None


def _target(portal: Portal) -> Any:
    return Iscsi.SendTarget(address=portal.address, port=portal.port)


def _target_set(portal: Portal) -> Any:
    return Iscsi.TargetSet(sendTargets=[_target(portal)])


@VSPHERE.handles(EnableSoftwareIscsi)
def enable(op: EnableSoftwareIscsi, ctx: RunContext) -> None:
    host = _Host(ctx, op)
    host.call("UpdateSoftwareInternetScsiEnabled", True)
    host.adapter()  # found once, right after enabling, for the operations that follow


@VSPHERE.handles(RemoveSendTargets)
def remove_send_targets(op: RemoveSendTargets, ctx: RunContext) -> None:
    host = _Host(ctx, op)
    host.call("RemoveInternetScsiSendTargets", host.adapter(), [_target(portal) for portal in op.portals])


@VSPHERE.handles(AddSendTarget)
def add_send_target(op: AddSendTarget, ctx: RunContext) -> None:
    host = _Host(ctx, op)
    host.call("AddInternetScsiSendTargets", host.adapter(), [_target(op.portal)])


@VSPHERE.handles(SetChap)
def set_chap(op: SetChap, ctx: RunContext) -> None:
    if op.name is None or op.secret is None:
        chap = Iscsi.AuthenticationProperties(
            chapAuthEnabled=False, chapAuthenticationType="chapProhibited", chapInherited=False
        )
    else:
        chap = Iscsi.AuthenticationProperties(
            chapAuthEnabled=True,
            chapAuthenticationType="chapRequired",
            chapName=op.name,
            chapSecret=ctx.secret(op.secret.name),
            chapInherited=False,
        )
    host = _Host(ctx, op)
    host.call("UpdateInternetScsiAuthenticationProperties", host.adapter(), chap, _target_set(op.portal))


@VSPHERE.handles(SetTargetOptions)
def set_target_options(op: SetTargetOptions, ctx: RunContext) -> None:
    options = [Iscsi.ParamValue(key=key, value=value, isInherited=False) for key, value in op.options]
    host = _Host(ctx, op)
    host.call("UpdateInternetScsiAdvancedOptions", host.adapter(), _target_set(op.portal), options)


@VSPHERE.handles(RescanForLun)
def rescan_for_lun(op: RescanForLun, ctx: RunContext) -> None:
    """Login is asynchronous on ESXi: rescan, then poll until our IQN shows a LUN."""
    host = _Host(ctx, op)
    device = host.adapter()
    began = time.monotonic()
    last_rescan = -RESCAN_EVERY_S
    with ctx.reporter.task(f"host {host.name}: log in to {op.portal} and find the LUN") as advance:
        delay = 0.1
        while True:
            elapsed = time.monotonic() - began
            if elapsed - last_rescan >= RESCAN_EVERY_S:
                host.call("RescanHba", device)
                host.call("RescanVmfs")
                last_rescan = elapsed
            facts = host_iscsi(op.iqn, host.name, "", host.storage, host.storage.storageDeviceInfo)
            if facts.lun:
                log.info("host %s: LUN %s visible via %s", host.name, facts.lun, op.portal)
                return
            if elapsed > LUN_WAIT_S:
                raise VSphereError(
                    f"host {host.name}: no LUN of {op.iqn} via {op.portal} after {LUN_WAIT_S:.0f} s: the "
                    "portal does not answer or refuses the CHAP secret. Check that the storage nodes are up "
                    "and hold the VIP (vsa-orchestrate <plan> --only guest), then rerun"
                )
            advance(int(100 * elapsed / LUN_WAIT_S))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def bound_vnics(ctx: RunContext, manager: str, adapter: str) -> tuple[str, ...]:
    """The vmknics bound to `adapter` (IscsiManager.QueryBoundVnics)."""
    found = transient_retry(vim.host.IscsiManager(manager, ctx.vsphere.stub).QueryBoundVnics)(adapter)
    return tuple(port.vnicDevice for port in found or [] if port.vnicDevice)


@VSPHERE.handles(BindVnic)
def bind_vnic(op: BindVnic, ctx: RunContext) -> None:
    host = _Host(ctx, op)
    vnic = op.vnic
    if vnic is None:  # made by the network stage in this run: found by its portgroup
        info = vim.host.NetworkSystem(op.network_system, ctx.vsphere.stub).networkInfo
        vnic = next(
            (v.device for v in (info.vnic if info else None) or [] if v.portgroup == op.portgroup), None
        )
        if vnic is None:
            raise VSphereError(
                f"host {host.name}: no vmknic on {op.portgroup} to bind; rerun the network stage"
            )
    log.info("host %s: IscsiManager.BindVnic(%s, %s)", host.name, host.adapter(), vnic)
    manager = vim.host.IscsiManager(op.iscsi_manager, ctx.vsphere.stub)
    try:
        transient_retry(manager.BindVnic)(host.adapter(), vnic)
    except vim.fault.IscsiFault as fault:
        kind = type(fault).__name__.rsplit(".", 1)[-1]
        raise VSphereError(
            f"host {host.name}: binding {vnic} to the iSCSI adapter refused ({kind}): "
            f"{fault_msg(fault) or 'no details'}"
        ) from None


def apply(ctx: RunContext, change: Change) -> None:
    run_operations(ctx, change)
