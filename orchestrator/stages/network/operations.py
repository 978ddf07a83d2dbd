"""What the `network` stage does on a host: HostNetworkSystem calls, as data.

Every operation names the host and its HostNetworkSystem (by managed object id).
The updates carry only what changes; the handler reads the current spec right
before and changes just that (a vSwitch's policy, a portgroup's teaming and
the other vmknic settings are kept as the site has them).
"""

from dataclasses import dataclass

from orchestrator.operations import Operation


@dataclass(frozen=True)
class HostNetworkOperation(Operation):
    side = "vsphere"
    host: str
    network_system: str  # HostNetworkSystem moId

    def _on(self, call: str) -> str:
        return f"host {self.host}: HostNetworkSystem.{call}"


@dataclass(frozen=True)
class AddVswitch(HostNetworkOperation):
    name: str
    uplinks: tuple[str, ...]
    mtu: int

    def describe(self) -> str:
        return self._on(f"AddVirtualSwitch({self.name}, uplinks {', '.join(self.uplinks)}, mtu {self.mtu})")


@dataclass(frozen=True)
class UpdateVswitch(HostNetworkOperation):
    name: str
    mtu: int | None  # None: unchanged
    add_uplinks: tuple[str, ...]  # added beside the ones it has (none is removed)

    def describe(self) -> str:
        parts = [f"mtu {self.mtu}"] if self.mtu is not None else []
        if self.add_uplinks:
            parts.append(f"add uplinks {', '.join(self.add_uplinks)}")
        return self._on(f"UpdateVirtualSwitch({self.name}, {', '.join(parts)})")


@dataclass(frozen=True)
class AddPortgroup(HostNetworkOperation):
    name: str
    vswitch: str
    vlan: int

    def describe(self) -> str:
        return self._on(f"AddPortGroup({self.name} on {self.vswitch}, vlan {self.vlan})")


@dataclass(frozen=True)
class SetPortgroupVlan(HostNetworkOperation):
    name: str
    vlan: int

    def describe(self) -> str:
        return self._on(f"UpdatePortGroup({self.name}, vlan {self.vlan})")


@dataclass(frozen=True)
class AddVmknic(HostNetworkOperation):
    portgroup: str
    ip: str
    prefix: int
    mtu: int | None  # None: the host's default

    def describe(self) -> str:
        mtu = f", mtu {self.mtu}" if self.mtu is not None else ""
        return self._on(f"AddVirtualNic({self.portgroup}, {self.ip}/{self.prefix}{mtu})")


@dataclass(frozen=True)
class UpdateVmknic(HostNetworkOperation):
    """Re-address or re-size our vmknic; the handler first checks it is still
    the one on our portgroup (never the management vmknic)."""

    device: str
    portgroup: str
    ip: str | None  # None: address unchanged
    prefix: int
    mtu: int | None  # None: unchanged

    def describe(self) -> str:
        parts = [f"{self.ip}/{self.prefix}"] if self.ip is not None else []
        if self.mtu is not None:
            parts.append(f"mtu {self.mtu}")
        return self._on(f"UpdateVirtualNic({self.device} on {self.portgroup}, {', '.join(parts)})")
