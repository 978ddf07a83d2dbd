"""The `network` diff, pure: (plan, each host's network facts) -> changes.

Per host that needs them (a storage node's host: both portgroups; any host with
a `vmk_ip`: the iSCSI portgroup): the plan's standard vSwitch (created when the
plan gives its uplinks; its MTU and missing uplinks healed, an uplink never
removed), the portgroups (adopted when present, created on the plan's vSwitch
when missing, their VLAN healed when the plan gives one) and a VMkernel port on
the iSCSI portgroup with the planned address and MTU. Nothing the plan does not
name is touched: no other vSwitch, portgroup or vmknic, and never vmk0.
Distributed portgroups are used as they are.
"""

from orchestrator.changes import Action, Attr, Change, Problem
from orchestrator.operations import Operation
from orchestrator.plan import HostEntry, Plan
from orchestrator.stages.network.facts import HostNetwork, NetworkFacts, VnicFact
from orchestrator.stages.network.operations import (
    AddPortgroup,
    AddVmknic,
    AddVswitch,
    SetPortgroupVlan,
    UpdateVmknic,
    UpdateVswitch,
)

STAGE = "network"
DEFAULT_MTU = 1500
MANAGEMENT_VMKNIC = "vmk0"


def needed_portgroups(plan: Plan, entry: HostEntry) -> list[str]:
    """Replication only where a storage node lives; iSCSI there and wherever a vmknic goes."""
    if entry.node:
        return [plan.network.iscsi_portgroup, plan.network.replication_portgroup]
    return [plan.network.iscsi_portgroup] if entry.vmk_ip else []


def created_portgroups(changes: list[Change]) -> dict[str, set[str]]:
    """Per host, the portgroups these changes create (the vms stage attaches NICs to them)."""
    created: dict[str, set[str]] = {}
    for change in changes:
        for op in change.operations:
            if isinstance(op, AddPortgroup):
                created.setdefault(op.host, set()).add(op.name)
    return created


def diff(plan: Plan, facts: NetworkFacts) -> tuple[list[Change], list[Problem]]:
    changes: list[Change] = []
    problems: list[Problem] = []
    by_name = {host.name: host for host in facts.hosts}
    for index, entry in enumerate(plan.hosts):
        host = by_name.get(entry.esxi)
        if host is None or not needed_portgroups(plan, entry):
            continue
        if host.network_system is None:
            problems.append(
                Problem(
                    STAGE,
                    f"host {host.name} network",
                    "vSphere shows no network system for this host; check that it is connected, then rerun",
                )
            )
            continue
        _HostDiff(plan, facts, index, entry, host, host.network_system).run(changes, problems)
    return changes, problems


class _HostDiff:
    """One host's vSwitch, portgroups and vmknic against the plan."""

    def __init__(
        self, plan: Plan, facts: NetworkFacts, index: int, entry: HostEntry, host: HostNetwork, system: str
    ) -> None:
        self.plan, self.net, self.facts = plan, plan.network, facts
        self.index, self.entry, self.host = index, entry, host
        self.on = (host.name, system)
        self.changes: list[Change] = []
        self.problems: list[Problem] = []
        uplinks = entry.uplinks if entry.uplinks is not None else plan.network.uplinks
        self.uplinks = uplinks
        self.uplinks_key = f"hosts[{index}].uplinks" if entry.uplinks is not None else "network.uplinks"
        self.vswitch_usable = True  # the plan's vSwitch exists or is created in this run

    def run(self, changes: list[Change], problems: list[Problem]) -> None:
        if self.net.vswitch is not None:
            self._vswitch(self.net.vswitch)
        for name in needed_portgroups(self.plan, self.entry):
            self._portgroup(name)
        if self.entry.vmk_ip is not None:
            self._vmknic(str(self.entry.vmk_ip))
        changes += self.changes
        problems += self.problems

    def _change(
        self, action: Action, resource: str, attrs: list[Attr], operation: Operation, note: str | None = None
    ) -> None:
        resource = f"host {self.host.name} {resource}"
        self.changes.append(Change(STAGE, action, resource, attrs, note=note, operations=(operation,)))

    def _problem(self, resource: str, message: str) -> None:
        self.problems.append(Problem(STAGE, f"host {self.host.name} {resource}", message))

    def _vswitch(self, name: str) -> None:
        host, resource = self.host, f"vswitch {name}"
        uplinks = list(self.uplinks or [])
        unknown = [uplink for uplink in uplinks if uplink not in host.pnics]
        if unknown:
            have = ", ".join(host.pnics) or "none"
            self._problem(
                resource,
                f"has no physical NIC {', '.join(unknown)} (it has {have}); fix {self.uplinks_key}",
            )
        busy = [
            f"{uplink} (on {other.name})"
            for other in host.vswitches
            if other.name != name
            for uplink in other.uplinks
            if uplink in uplinks
        ]
        if busy:
            self._problem(
                resource,
                f"{', '.join(busy)} already serve another vSwitch; name free uplinks in {self.uplinks_key}",
            )
        if unknown or busy:
            self.vswitch_usable = False
            return
        vswitch = host.vswitch(name)
        if vswitch is None:
            if not uplinks:
                self.vswitch_usable = False
                self._problem(
                    resource,
                    f"vSwitch {name!r} does not exist; give network.uplinks (or hosts[{self.index}].uplinks) "
                    "so the run creates it, or create it on the host",
                )
                return
            new_mtu = self.net.mtu or DEFAULT_MTU
            self._change(
                "create",
                resource,
                [Attr("uplinks", None, ", ".join(uplinks)), Attr("mtu", None, new_mtu)],
                AddVswitch(*self.on, name=name, uplinks=tuple(uplinks), mtu=new_mtu),
            )
            return
        attrs: list[Attr] = []
        mtu = self.net.mtu if self.net.mtu is not None and vswitch.mtu != self.net.mtu else None
        if mtu is not None:
            attrs.append(Attr("mtu", vswitch.mtu, mtu))
        added = tuple(uplink for uplink in uplinks if uplink not in vswitch.uplinks)
        if added:
            attrs.append(
                Attr("uplinks", ", ".join(vswitch.uplinks) or None, ", ".join(vswitch.uplinks + added))
            )
        if attrs:
            self._change(
                "update", resource, attrs, UpdateVswitch(*self.on, name=name, mtu=mtu, add_uplinks=added)
            )

    def _portgroup(self, name: str) -> None:
        host, net = self.host, self.net
        vlan, vlan_key = (
            (net.iscsi_vlan, "network.iscsi_vlan")
            if name == net.iscsi_portgroup
            else (net.replication_vlan, "network.replication_vlan")
        )
        resource = f"portgroup {name}"
        if name in self.facts.distributed:
            if vlan is not None:
                self._problem(
                    resource,
                    f"{name!r} is a distributed portgroup: its VLAN is vCenter's to set, never this plan's; "
                    f"remove {vlan_key}",
                )
            return
        portgroup = host.portgroup(name)
        if portgroup is None:
            if net.vswitch is None:
                self._problem(
                    resource,
                    f"has no portgroup {name!r}; create it, or set network.vswitch (with network.uplinks "
                    "for a new vSwitch) so the run creates it",
                )
            elif self.vswitch_usable:
                self._change(
                    "create",
                    resource,
                    [Attr("vswitch", None, net.vswitch), Attr("vlan", None, vlan or 0)],
                    AddPortgroup(*self.on, name=name, vswitch=net.vswitch, vlan=vlan or 0),
                )
            return
        if vlan is not None and portgroup.vlan != vlan:
            self._change(
                "update",
                resource,
                [Attr("vlan", portgroup.vlan, vlan)],
                SetPortgroupVlan(*self.on, name=name, vlan=vlan),
            )
        if name == net.iscsi_portgroup and net.mtu is not None and portgroup.vswitch != net.vswitch:
            vswitch = host.vswitch(portgroup.vswitch)
            if vswitch is not None and vswitch.mtu is not None and vswitch.mtu < net.mtu:
                self._problem(
                    resource,
                    f"is on {vswitch.name} with MTU {vswitch.mtu}, below network.mtu {net.mtu}; lower "
                    f'network.mtu, or set network.vswitch = "{vswitch.name}" so the run raises its MTU',
                )

    def _vmknic(self, address: str) -> None:
        host, net = self.host, self.net
        portgroup = net.iscsi_portgroup
        resource = f"vmknic on {portgroup}"
        dv_key = self.facts.distributed.get(portgroup)
        ours = host.vnics_on(portgroup, dv_key)
        taken = [vnic for vnic in host.vnics if vnic.ip == address and vnic not in ours]
        if taken:
            where = taken[0].portgroup or "a distributed portgroup"
            self._problem(
                resource,
                f"{address} is already the address of {taken[0].device} on {where}; "
                f"give hosts[{self.index}].vmk_ip a free address",
            )
            return
        prefix = net.iscsi_prefix
        if not ours:
            if dv_key is not None:
                self._problem(
                    resource,
                    f"has no VMkernel port on the distributed portgroup {portgroup!r}; this plan never "
                    "changes a distributed switch: add the vmknic in vCenter (it is then adopted)",
                )
                return
            attrs = [Attr("address", None, f"{address}/{prefix}")]
            if net.mtu is not None:
                attrs.append(Attr("mtu", None, net.mtu))
            self._change(
                "create",
                resource,
                attrs,
                AddVmknic(*self.on, portgroup=portgroup, ip=address, prefix=prefix, mtu=net.mtu),
            )
            return
        vnic = next((vnic for vnic in ours if vnic.ip == address), ours[0])
        self._update_vmknic(vnic, address, prefix, resource)

    def _update_vmknic(self, vnic: VnicFact, address: str, prefix: int, resource: str) -> None:
        attrs: list[Attr] = []
        readdress = vnic.ip != address or vnic.prefix != prefix
        if readdress:
            now = f"{vnic.ip}/{vnic.prefix}" if vnic.ip else "dhcp"
            attrs.append(Attr("address", now, f"{address}/{prefix}"))
        mtu = self.net.mtu if self.net.mtu is not None and vnic.mtu != self.net.mtu else None
        if mtu is not None:
            attrs.append(Attr("mtu", vnic.mtu, mtu))
        if not attrs:
            return
        if vnic.device == MANAGEMENT_VMKNIC:
            self._problem(
                resource,
                f"{vnic.device} is the management VMkernel port and is never changed by this plan; put the "
                "iSCSI vmknic on its own portgroup (network.iscsi_portgroup)",
            )
            return
        if vnic.dv_portgroup is not None:
            self._problem(
                resource,
                f"{vnic.device} is on a distributed portgroup, which this plan never changes; set its "
                + " and ".join(f"{attr.name} to {attr.after}" for attr in attrs)
                + " in vCenter",
            )
            return
        self._change(
            "update",
            resource,
            attrs,
            UpdateVmknic(
                *self.on,
                device=vnic.device,
                portgroup=vnic.portgroup,
                ip=address if readdress else None,
                prefix=prefix,
                mtu=mtu,
            ),
            note=f"{vnic.device}",
        )


def created_vmknics(changes: list[Change]) -> dict[str, str]:
    """Per host, the iSCSI vmknic address these changes create or re-address."""
    created: dict[str, str] = {}
    for change in changes:
        for op in change.operations:
            if isinstance(op, AddVmknic | UpdateVmknic) and op.ip is not None:
                created[op.host] = f"{op.ip}/{op.prefix}"
    return created
