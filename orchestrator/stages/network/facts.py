"""Facts of the `network` stage: each host's standard vSwitches, portgroups,
physical NICs and VMkernel ports, as plain data.

Read from the snapshot's `config.network` of every host (no round trip of its
own). Distributed portgroups are known by name from the same snapshot: they are
used, never created or changed.
"""

import ipaddress
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from orchestrator.plan import Plan
from orchestrator.vsphere.inventory import Inventory


@dataclass(frozen=True)
class VswitchFact:
    name: str
    mtu: int | None
    uplinks: tuple[str, ...]  # vmnic devices


@dataclass(frozen=True)
class PortgroupFact:
    name: str
    vswitch: str
    vlan: int


@dataclass(frozen=True)
class VnicFact:
    device: str  # vmkN
    portgroup: str  # the standard portgroup's name; "" on a distributed one
    dv_portgroup: str | None  # the distributed portgroup's key
    ip: str | None  # None with DHCP
    prefix: int | None
    mtu: int | None


@dataclass(frozen=True)
class HostNetwork:
    name: str
    host_id: str
    network_system: str | None  # HostNetworkSystem moId
    pnics: tuple[str, ...] = ()
    vswitches: tuple[VswitchFact, ...] = ()
    portgroups: tuple[PortgroupFact, ...] = ()
    vnics: tuple[VnicFact, ...] = ()

    def vswitch(self, name: str) -> VswitchFact | None:
        return next((vswitch for vswitch in self.vswitches if vswitch.name == name), None)

    def portgroup(self, name: str) -> PortgroupFact | None:
        return next((portgroup for portgroup in self.portgroups if portgroup.name == name), None)

    def vnics_on(self, portgroup: str, dv_key: str | None) -> list[VnicFact]:
        if dv_key is not None:
            return [vnic for vnic in self.vnics if vnic.dv_portgroup == dv_key]
        return [vnic for vnic in self.vnics if vnic.portgroup == portgroup and vnic.dv_portgroup is None]


@dataclass(frozen=True)
class NetworkFacts:
    hosts: tuple[HostNetwork, ...]
    distributed: dict[str, str]  # distributed portgroup name -> key


def observe(plan: Plan, inventory: Inventory) -> NetworkFacts:
    hosts = []
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        if host is not None:  # a missing host is reported (or added by the hosts stage) first
            hosts.append(
                host_network(
                    entry.esxi, host.id, host.get("configManager.networkSystem"), host.get("config.network")
                )
            )
    return NetworkFacts(hosts=tuple(hosts), distributed=distributed_portgroups(inventory))


def distributed_portgroups(inventory: Inventory) -> dict[str, str]:
    return {obj.name: obj.id for obj in inventory.of_type(vim.dvs.DistributedVirtualPortgroup)}


def host_network(name: str, host_id: str, network_system: Any, info: Any) -> HostNetwork:
    """Parse a HostNetworkInfo (the snapshot's `config.network`)."""
    system = network_system._moId if network_system is not None else None
    if info is None:
        return HostNetwork(name=name, host_id=host_id, network_system=system)
    pnic_device = {pnic.key: pnic.device for pnic in info.pnic or []}
    vswitches = tuple(
        VswitchFact(
            name=vswitch.name,
            mtu=vswitch.mtu,
            uplinks=tuple(pnic_device.get(key, key) for key in vswitch.pnic or []),
        )
        for vswitch in info.vswitch or []
    )
    portgroups = tuple(
        PortgroupFact(name=pg.spec.name, vswitch=pg.spec.vswitchName, vlan=pg.spec.vlanId or 0)
        for pg in info.portgroup or []
        if pg.spec is not None
    )
    return HostNetwork(
        name=name,
        host_id=host_id,
        network_system=system,
        pnics=tuple(pnic.device for pnic in info.pnic or []),
        vswitches=vswitches,
        portgroups=portgroups,
        vnics=tuple(_vnic(vnic) for vnic in info.vnic or []),
    )


def _vnic(vnic: Any) -> VnicFact:
    spec = vnic.spec
    ip = spec.ip if spec is not None else None
    address = None if ip is None or ip.dhcp or not ip.ipAddress else ip.ipAddress
    prefix = None
    if address and ip is not None and ip.subnetMask:
        try:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{ip.subnetMask}").prefixlen
        except ValueError:
            prefix = None
    port = spec.distributedVirtualPort if spec is not None else None
    return VnicFact(
        device=vnic.device,
        portgroup=vnic.portgroup or "",
        dv_portgroup=port.portgroupKey if port is not None else None,
        ip=address,
        prefix=prefix,
        mtu=spec.mtu if spec is not None else None,
    )


def reaches(host: HostNetwork, address: ipaddress.IPv4Address) -> VnicFact | None:
    """The host's VMkernel port whose subnet holds `address`, if any."""
    for vnic in host.vnics:
        if vnic.ip and vnic.prefix is not None and address in _subnet(vnic):
            return vnic
    return None


def _subnet(vnic: VnicFact) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"{vnic.ip}/{vnic.prefix}", strict=False)
