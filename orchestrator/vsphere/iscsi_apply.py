"""Executor of the `iscsi` stage: HostStorageSystem calls, then a bounded wait
until the host has logged in and sees our LUN."""

import logging
import time
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Change
from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.vsphere.iscsi import ISCSI_PORT, desired_options, host_iscsi, software_adapter
from orchestrator.vsphere.session import Session, VSphereError, fault_msg, transient_retry

log = logging.getLogger(__name__)

LUN_WAIT_S = 60.0
RESCAN_EVERY_S = 10.0
Iscsi = vim.host.InternetScsiHba


def apply(session: Session, plan: Plan, change: Change, chap_secret: str | None, reporter: Reporter) -> str:
    """Run the change's steps on one host; returns the naa id of our LUN there."""
    params = change.params
    name = params["host"]
    storage = vim.host.StorageSystem(params["storage"], session.stub)
    call = _caller(name)
    device = params["adapter"]
    if "enable" in change.steps:
        call("UpdateSoftwareInternetScsiEnabled", storage.UpdateSoftwareInternetScsiEnabled, True)
        adapter = software_adapter(storage.storageDeviceInfo)
        if adapter is None:
            raise VSphereError(f"host {name}: the software iSCSI adapter did not appear after enabling it")
        device = adapter.device
    target = Iscsi.SendTarget(address=str(plan.network.vip), port=ISCSI_PORT)
    target_set = Iscsi.TargetSet(sendTargets=[target])
    if "remove_stale" in change.steps:
        stale = [_send_target(portal) for portal in params["stale"]]
        call("RemoveInternetScsiSendTargets", storage.RemoveInternetScsiSendTargets, device, stale)
    if "add_target" in change.steps:
        call("AddInternetScsiSendTargets", storage.AddInternetScsiSendTargets, device, [target])
    if "chap" in change.steps:
        call(
            "UpdateInternetScsiAuthenticationProperties",
            storage.UpdateInternetScsiAuthenticationProperties,
            device,
            _chap(plan, chap_secret),
            target_set,
        )
    if "options" in change.steps:
        options = [
            Iscsi.ParamValue(key=key, value=value, isInherited=False)
            for key, value in desired_options(plan).items()
        ]
        call(
            "UpdateInternetScsiAdvancedOptions",
            storage.UpdateInternetScsiAdvancedOptions,
            device,
            target_set,
            options,
        )
    return _rescan_until_lun(plan, name, storage, device, call, reporter)


def _caller(host: str):
    def call(method: str, function: Any, *args: Any) -> Any:
        log.info("host %s: %s", host, method)
        try:
            return transient_retry(function)(*args)
        except vim.fault.HostConfigFault as fault:
            raise VSphereError(f"host {host}: {method} failed: {fault_msg(fault)}") from None

    return call


def _send_target(portal: str) -> Any:
    address, port = portal.rsplit(":", 1)
    return Iscsi.SendTarget(address=address, port=int(port))


def _chap(plan: Plan, secret: str | None) -> Any:
    if not plan.target.chap:
        return Iscsi.AuthenticationProperties(
            chapAuthEnabled=False, chapAuthenticationType="chapProhibited", chapInherited=False
        )
    return Iscsi.AuthenticationProperties(
        chapAuthEnabled=True,
        chapAuthenticationType="chapRequired",
        chapName=plan.chap_name,
        chapSecret=secret,
        chapInherited=False,
    )


def _rescan_until_lun(plan: Plan, name: str, storage: Any, device: str, call: Any, reporter: Reporter) -> str:
    """Login is asynchronous on ESXi: rescan, then poll until our IQN shows a LUN."""
    vip = f"{plan.network.vip}:{ISCSI_PORT}"
    began = time.monotonic()
    last_rescan = -RESCAN_EVERY_S
    with reporter.task(f"host {name}: log in to {vip} and find the LUN") as advance:
        delay = 0.1
        while True:
            elapsed = time.monotonic() - began
            if elapsed - last_rescan >= RESCAN_EVERY_S:
                call("RescanHba", storage.RescanHba, device)
                call("RescanVmfs", storage.RescanVmfs)
                last_rescan = elapsed
            facts = host_iscsi(plan, name, "", storage, storage.storageDeviceInfo)
            if facts.lun:
                log.info("host %s: LUN %s visible via %s", name, facts.lun, vip)
                return facts.lun
            if elapsed > LUN_WAIT_S:
                raise VSphereError(
                    f"host {name}: no LUN of {plan.iqn} via {vip} after {LUN_WAIT_S:.0f} s: the portal does "
                    "not answer or refuses the CHAP secret. Check that the storage nodes are up and hold "
                    "the VIP (vsa-orchestrate <plan> --only guest), then rerun"
                )
            advance(int(100 * elapsed / LUN_WAIT_S))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
