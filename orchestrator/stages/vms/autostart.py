"""Host autostart of the storage VMs, part of the `vms` stage.

A storage VM must come back when its host reboots. Outside an HA cluster the
host's autostart manager does that (powerOn, first in order; guest shutdown
when the host shuts down). VMware documents that autostart has no effect on
hosts in an HA cluster: there the cluster stage's HA override (restart
priority highest) brings it back, so autostart is left as it is.

observe() reads the snapshot; diff() is pure; apply.py runs SetAutostart.
"""

from dataclasses import dataclass

from pyVmomi import vim

from orchestrator.changes import Attr, Change
from orchestrator.plan import Plan
from orchestrator.stages.vms.operations import SetAutostart
from orchestrator.vsphere.inventory import Inventory

STAGE = "vms"
WANTED = ("powerOn", 1, "guestShutdown")  # start action, start order, stop action


@dataclass(frozen=True)
class HostAutostart:
    host: str
    node: str
    manager_id: str | None
    in_ha_cluster: bool
    enabled: bool
    entry: tuple | None  # WANTED's shape for our VM, or None
    vm_id: str | None


def observe(plan: Plan, inventory: Inventory) -> list[HostAutostart]:
    vms = {obj.name: obj.id for obj in inventory.folder_vms()}
    found = []
    for node in plan.vm_nodes:
        host = inventory.named(vim.HostSystem, node.esxi)
        if host is None:
            continue  # reported by the VM diff
        parent = inventory.by_ref(host.get("parent"))
        config = parent.get("configurationEx") if parent is not None else None
        in_ha = bool(config is not None and config.dasConfig and config.dasConfig.enabled)
        autostart = host.get("config.autoStart")
        vm_id = vms.get(plan.vm_name(node.node))
        entry = next(
            (
                (info.startAction, info.startOrder, info.stopAction)
                for info in (autostart.powerInfo if autostart else None) or []
                if vm_id is not None and info.key._moId == vm_id
            ),
            None,
        )
        manager = host.get("configManager.autoStartManager")
        found.append(
            HostAutostart(
                host=node.esxi,
                node=node.node,
                manager_id=manager._moId if manager is not None else None,
                in_ha_cluster=in_ha,
                enabled=bool(autostart and autostart.defaults and autostart.defaults.enabled),
                entry=entry,
                vm_id=vm_id,
            )
        )
    return found


def diff(plan: Plan, hosts: list[HostAutostart]) -> list[Change]:
    changes = []
    for host in hosts:
        if host.in_ha_cluster or host.manager_id is None:
            continue
        attrs = []
        if not host.enabled:
            attrs.append(Attr("autostart", "off", "on"))
        if host.entry != WANTED:
            shown = ", ".join(map(str, WANTED))
            attrs.append(Attr(plan.vm_name(host.node), _text(host.entry), f"{shown}"))
        if attrs:
            changes.append(
                Change(
                    stage=STAGE,
                    action="update",
                    resource=f"host {host.host} autostart",
                    attrs=attrs,
                    operations=(SetAutostart(host.host, host.manager_id, plan.vm_name(host.node)),),
                )
            )
    return changes


def _text(entry: tuple | None) -> str | None:
    return None if entry is None else ", ".join(map(str, entry))
