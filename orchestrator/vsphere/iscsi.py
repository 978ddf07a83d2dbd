"""The `iscsi` stage: every host's software iSCSI adapter logs in to the VIP.

Per host: the software adapter enabled (found afterwards as the
InternetScsiHba with isSoftwareBased, never by vmhba name); exactly one send
target of ours, VIP:3260; CHAP required with the generated secret; the
timeouts from [initiator] on our target; and our IQN's LUN visible, by its
naa id. A send target is ours when the static targets it discovered carry
our IQN; other send targets are never touched.

ESXi never returns a CHAP secret, so a wrong one shows only as a missing LUN:
whenever the LUN is not visible the secret is pushed again before the rescan.
"""

from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from orchestrator.changes import Attr, Change, Problem
from orchestrator.plan import Plan
from orchestrator.vsphere.inventory import Inventory

STAGE = "iscsi"
ISCSI_PORT = 3260


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


def desired_options(plan: Plan) -> dict[str, int]:
    return {
        "RecoveryTimeout": plan.recovery_timeout,
        "NoopOutInterval": plan.initiator.noop_out_interval,
        "NoopOutTimeout": plan.initiator.noop_out_timeout,
        "LoginTimeout": plan.initiator.login_timeout,
    }


def observe(plan: Plan, inventory: Inventory) -> list[HostIscsi]:
    found = []
    for entry in plan.hosts:
        host = inventory.named(vim.HostSystem, entry.esxi)
        if host is None:
            continue  # reported once, before any stage (stages.missing_hosts)
        found.append(
            host_iscsi(
                plan,
                entry.esxi,
                host.id,
                host.get("configManager.storageSystem"),
                host.get("config.storageDevice"),
            )
        )
    return found


def host_iscsi(plan: Plan, name: str, host_id: str, storage: Any, device_info: Any) -> HostIscsi:
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
        if static.iScsiName == plan.iqn and static.parent
    )
    return HostIscsi(
        name=name,
        host_id=host_id,
        storage_id=storage_id,
        enabled=bool(device_info.softwareInternetScsiEnabled),
        adapter=adapter.device,
        send_targets=targets,
        our_portals=ours,
        lun=our_lun(plan, device_info, adapter),
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


def our_lun(plan: Plan, device_info: Any, adapter: Any) -> str | None:
    """The canonical (naa) name of the first LUN behind our IQN on this adapter."""
    luns = {lun.key: lun for lun in device_info.scsiLun or []}
    topology = device_info.scsiTopology
    for topo_adapter in (topology.adapter if topology else None) or []:
        if topo_adapter.adapter != adapter.key:
            continue
        for target in topo_adapter.target or []:
            transport = target.transport
            if (
                isinstance(transport, vim.host.InternetScsiTargetTransport)
                and transport.iScsiName == plan.iqn
            ):
                for lun in target.lun or []:
                    if lun.scsiLun in luns:
                        return luns[lun.scsiLun].canonicalName
    return None


def diff(plan: Plan, hosts: list[HostIscsi]) -> tuple[list[Change], list[Problem]]:
    changes: list[Change] = []
    problems: list[Problem] = []
    vip = f"{plan.network.vip}:{ISCSI_PORT}"
    for host in hosts:
        resource = f"host {host.name} iscsi"
        attrs: list[Attr] = []
        steps: list[str] = []
        if not host.enabled or host.adapter is None:
            attrs.append(Attr("software adapter", "disabled", "enabled"))
            steps.append("enable")
        ours = next((t for t in host.send_targets if t.portal == vip), None)
        stale = [t.portal for t in host.send_targets if t.portal != vip and t.portal in host.our_portals]
        for portal in stale:
            attrs.append(Attr("send targets", portal, None))
        if stale:
            steps.append("remove_stale")
        if ours is None:
            attrs.append(Attr("send targets", None, vip))
            steps.append("add_target")
        chap_wanted = "chapRequired" if plan.target.chap else "chapProhibited"
        chap_name = plan.chap_name if plan.target.chap else None
        chap_now = (ours.chap_type, ours.chap_name if plan.target.chap else None) if ours else (None, None)
        if chap_now != (chap_wanted, chap_name):
            attrs.append(Attr("chap", _chap_text(*chap_now), _chap_text(chap_wanted, chap_name)))
        options_now = ours.options if ours else {}
        for key, value in desired_options(plan).items():
            if options_now.get(key) != value:
                attrs.append(Attr(key, options_now.get(key), value))
        if any(attr.name in desired_options(plan) for attr in attrs):
            steps.append("options")
        lun_missing = host.lun is None
        if chap_now != (chap_wanted, chap_name) or (lun_missing and plan.target.chap):
            steps.append("chap")
            if plan.target.chap:
                attrs.append(Attr("chap secret", None, "(generated)", sensitive=True))
        if lun_missing:
            attrs.append(Attr("LUN", None, f"{plan.iqn} via {vip} (rescan, wait for login)"))
        if steps or lun_missing:
            steps.append("rescan")
            changes.append(
                Change(
                    stage=STAGE,
                    action="update",
                    resource=resource,
                    attrs=attrs,
                    steps=steps,
                    params={
                        "host": host.name,
                        "storage": host.storage_id,
                        "adapter": host.adapter,
                        "stale": stale,
                    },
                )
            )
    return changes, problems


def _chap_text(kind: str | None, name: str | None) -> str | None:
    if kind is None:
        return None
    return f"{kind} as {name}" if name else kind
