"""Facts of the `iscsi` stage: each host's software iSCSI adapter, as plain data.

Read from the inventory snapshot (no round trip of its own). A send target is
ours when the static targets it discovered carry our IQN.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pyVmomi import vim

from orchestrator.plan import ISCSI_PORT, Plan
from orchestrator.stages.network.facts import HostNetwork, distributed_portgroups, host_network
from orchestrator.vsphere.inventory import Inventory

# Reads the vmknics bound to one adapter: (IscsiManager moId, adapter device) -> devices.
BoundVnics = Callable[[str, str], tuple[str, ...]]


@dataclass(frozen=True)
class SendTarget:
    address: str
    port: int
    chap_type: str | None
    chap_name: str | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def portal(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class HostIscsi:
    """One host's software iSCSI state, as plain data."""

    name: str
    host_id: str
    storage_id: str | None = None
    enabled: bool = False
    adapter: str | None = None
    send_targets: tuple[SendTarget, ...] = ()
    our_portals: frozenset[str] = frozenset()  # send targets that discovered our IQN
    lun: str | None = None  # naa id of our IQN's LUN, when visible
    network: HostNetwork | None = None  # its vmknics, for reachability and port binding
    iscsi_manager: str | None = None  # IscsiManager moId
    bound: tuple[str, ...] | None = None  # vmknics bound to the adapter; None: not asked
    iscsi_dv_key: str | None = None  # the iSCSI portgroup's key when it is a distributed one


def observe(plan: Plan, inventory: Inventory, bound_vnics: BoundVnics | None = None) -> list[HostIscsi]:
    """Every host's adapter from the snapshot; with network.bind and `bound_vnics`, one
    QueryBoundVnics per host whose adapter exists (the only call of its own)."""
    found = []
    dv_key = distributed_portgroups(inventory).get(plan.network.iscsi_portgroup)
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        if host is None:
            continue  # reported once, before any stage (stages.missing_hosts), or being added
        facts = host_iscsi(
            plan.iqn,
            entry.esxi,
            host.id,
            host.get("configManager.storageSystem"),
            host.get("config.storageDevice"),
        )
        manager = host.get("configManager.iscsiManager")
        facts = replace(
            facts,
            network=host_network(
                entry.esxi, host.id, host.get("configManager.networkSystem"), host.get("config.network")
            ),
            iscsi_manager=manager._moId if manager is not None else None,
            iscsi_dv_key=dv_key,
        )
        if bound_vnics and plan.network.bind and facts.adapter and facts.iscsi_manager:
            facts = replace(facts, bound=bound_vnics(facts.iscsi_manager, facts.adapter))
        found.append(facts)
    return found


def host_iscsi(iqn: str, name: str, host_id: str, storage: Any, device_info: Any) -> HostIscsi:
    """Parse a HostStorageDeviceInfo (from the snapshot, or re-read while waiting)."""
    storage_id = storage._moId if storage is not None else None
    if device_info is None:
        return HostIscsi(name=name, host_id=host_id, storage_id=storage_id)
    adapter = software_adapter(device_info)
    if adapter is None:
        return HostIscsi(
            name=name,
            host_id=host_id,
            storage_id=storage_id,
            enabled=bool(device_info.softwareInternetScsiEnabled),
        )
    targets = tuple(
        SendTarget(
            address=target.address,
            port=target.port or ISCSI_PORT,
            chap_type=getattr(target.authenticationProperties, "chapAuthenticationType", None),
            chap_name=getattr(target.authenticationProperties, "chapName", None),
            options={option.key: option.value for option in target.advancedOptions or []},
        )
        for target in adapter.configuredSendTarget or []
    )
    ours = frozenset(
        static.parent
        for static in adapter.configuredStaticTarget or []
        if static.iScsiName == iqn and static.parent
    )
    return HostIscsi(
        name=name,
        host_id=host_id,
        storage_id=storage_id,
        enabled=bool(device_info.softwareInternetScsiEnabled),
        adapter=adapter.device,
        send_targets=targets,
        our_portals=ours,
        lun=our_lun(iqn, device_info, adapter),
    )


def software_adapter(device_info: Any) -> Any | None:
    return next(
        (
            hba
            for hba in device_info.hostBusAdapter or []
            if isinstance(hba, vim.host.InternetScsiHba) and hba.isSoftwareBased
        ),
        None,
    )


def our_lun(iqn: str, device_info: Any, adapter: Any) -> str | None:
    """The canonical (naa) name of the first LUN behind our IQN on this adapter."""
    luns = {lun.key: lun for lun in device_info.scsiLun or []}
    topology = device_info.scsiTopology
    for topo_adapter in (topology.adapter if topology else None) or []:
        if topo_adapter.adapter != adapter.key:
            continue
        for target in topo_adapter.target or []:
            transport = target.transport
            if isinstance(transport, vim.host.InternetScsiTargetTransport) and transport.iScsiName == iqn:
                for lun in target.lun or []:
                    if lun.scsiLun in luns:
                        return luns[lun.scsiLun].canonicalName
    return None
