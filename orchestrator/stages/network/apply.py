"""Executor of the `network` stage: each operation is one HostNetworkSystem call.

The updates read the host's current spec right before and change only what the
operation names, so a site's own teaming, security and port settings stay.
"""

import ipaddress
import logging
from typing import Any

from pyVmomi import vim, vmodl

from orchestrator.changes import Change
from orchestrator.executors import VSPHERE, run_operations
from orchestrator.stages.contract import RunContext
from orchestrator.stages.network.diff import MANAGEMENT_VMKNIC
from orchestrator.stages.network.operations import (
    AddPortgroup,
    AddVmknic,
    AddVswitch,
    HostNetworkOperation,
    SetPortgroupVlan,
    UpdateVmknic,
    UpdateVswitch,
)
from orchestrator.vsphere.session import VSphereError, fault_msg, transient_retry

log = logging.getLogger(__name__)

NETWORK_FAULTS = (
    vim.fault.AlreadyExists,
    vim.fault.NotFound,
    vim.fault.ResourceInUse,
    vim.fault.HostConfigFault,
    vim.fault.PlatformConfigFault,
    vim.fault.InvalidState,
)


class _Host:
    def __init__(self, ctx: RunContext, op: HostNetworkOperation) -> None:
        self.name = op.host
        self.system = vim.host.NetworkSystem(op.network_system, ctx.vsphere.stub)

    def info(self) -> Any:
        return transient_retry(lambda: self.system.networkInfo)()

    def call(self, method: str, *args: Any) -> Any:
        log.info("host %s: HostNetworkSystem.%s", self.name, method)
        try:
            return transient_retry(getattr(self.system, method))(*args)
        except (*NETWORK_FAULTS, vmodl.fault.InvalidArgument, vmodl.fault.NotSupported) as fault:
            kind = type(fault).__name__.rsplit(".", 1)[-1]
            raise VSphereError(f"host {self.name}: {method} refused ({kind}): {fault_msg(fault)}") from None


def _ip(address: str, prefix: int) -> Any:
    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)
    return vim.host.IpConfig(dhcp=False, ipAddress=address, subnetMask=mask)


@VSPHERE.handles(AddVswitch)
def add_vswitch(op: AddVswitch, ctx: RunContext) -> None:
    bridge = vim.host.VirtualSwitch.BondBridge(nicDevice=list(op.uplinks))
    spec = vim.host.VirtualSwitch.Specification(numPorts=128, mtu=op.mtu, bridge=bridge)
    _Host(ctx, op).call("AddVirtualSwitch", op.name, spec)


@VSPHERE.handles(UpdateVswitch)
def update_vswitch(op: UpdateVswitch, ctx: RunContext) -> None:
    host = _Host(ctx, op)
    vswitch = next((v for v in host.info().vswitch or [] if v.name == op.name), None)
    if vswitch is None:
        raise VSphereError(f"host {host.name}: vSwitch {op.name} is gone; rerun to plan again")
    spec = vswitch.spec
    if op.mtu is not None:
        spec.mtu = op.mtu
    if op.add_uplinks:
        now = list(getattr(spec.bridge, "nicDevice", None) or [])
        spec.bridge = vim.host.VirtualSwitch.BondBridge(nicDevice=now + list(op.add_uplinks))
    host.call("UpdateVirtualSwitch", op.name, spec)


@VSPHERE.handles(AddPortgroup)
def add_portgroup(op: AddPortgroup, ctx: RunContext) -> None:
    spec = vim.host.PortGroup.Specification(
        name=op.name, vswitchName=op.vswitch, vlanId=op.vlan, policy=vim.host.NetworkPolicy()
    )
    _Host(ctx, op).call("AddPortGroup", spec)


@VSPHERE.handles(SetPortgroupVlan)
def set_portgroup_vlan(op: SetPortgroupVlan, ctx: RunContext) -> None:
    host = _Host(ctx, op)
    portgroup = next((pg for pg in host.info().portgroup or [] if pg.spec.name == op.name), None)
    if portgroup is None:
        raise VSphereError(f"host {host.name}: portgroup {op.name} is gone; rerun to plan again")
    spec = portgroup.spec
    spec.vlanId = op.vlan
    host.call("UpdatePortGroup", op.name, spec)


@VSPHERE.handles(AddVmknic)
def add_vmknic(op: AddVmknic, ctx: RunContext) -> None:
    spec = vim.host.VirtualNic.Specification(ip=_ip(op.ip, op.prefix))
    if op.mtu is not None:
        spec.mtu = op.mtu
    device = _Host(ctx, op).call("AddVirtualNic", op.portgroup, spec)
    log.info("host %s: %s on %s is %s/%s", op.host, device, op.portgroup, op.ip, op.prefix)


@VSPHERE.handles(UpdateVmknic)
def update_vmknic(op: UpdateVmknic, ctx: RunContext) -> None:
    host = _Host(ctx, op)
    vnic = next((v for v in host.info().vnic or [] if v.device == op.device), None)
    if vnic is None or vnic.portgroup != op.portgroup or op.device == MANAGEMENT_VMKNIC:
        raise VSphereError(
            f"host {host.name}: {op.device} is no longer the vmknic on {op.portgroup}; nothing was changed "
            "on it; rerun to plan again"
        )
    spec = vim.host.VirtualNic.Specification()
    if op.ip is not None:
        spec.ip = _ip(op.ip, op.prefix)
    if op.mtu is not None:
        spec.mtu = op.mtu
    host.call("UpdateVirtualNic", op.device, spec)


def apply(ctx: RunContext, change: Change) -> None:
    run_operations(ctx, change)
