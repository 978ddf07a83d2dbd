"""The `iscsi` diff, pure: (plan, each host's iSCSI facts) -> changes.

Per host: the software adapter enabled; exactly one send target of ours,
VIP:3260; CHAP required with the generated secret; the timeouts from
[initiator] on our target; and our IQN's LUN visible, by its naa id. Send
targets that never discovered our IQN are never touched.

ESXi never returns a CHAP secret, so a wrong one shows only as a missing LUN:
whenever the LUN is not visible the secret is pushed again before the rescan.
"""

import ipaddress

from orchestrator.changes import Attr, Change, Problem
from orchestrator.operations import Operation, SecretRef
from orchestrator.plan import ISCSI_PORT, Plan
from orchestrator.stages.iscsi.facts import HostIscsi
from orchestrator.stages.iscsi.operations import (
    AddSendTarget,
    BindVnic,
    EnableSoftwareIscsi,
    Portal,
    RemoveSendTargets,
    RescanForLun,
    SetChap,
    SetTargetOptions,
)
from orchestrator.stages.network.facts import reaches

STAGE = "iscsi"
CHAP_SECRET = SecretRef("chap")


def desired_options(plan: Plan) -> dict[str, int]:
    return {
        "RecoveryTimeout": plan.recovery_timeout,
        "NoopOutInterval": plan.initiator.noop_out_interval,
        "NoopOutTimeout": plan.initiator.noop_out_timeout,
        "LoginTimeout": plan.initiator.login_timeout,
    }


def diff(
    plan: Plan, hosts: list[HostIscsi], pending_vmknics: dict[str, str] | None = None
) -> tuple[list[Change], list[Problem]]:
    """`pending_vmknics`: per host, the iSCSI vmknic address ("ip/prefix") the network
    stage makes in this run."""
    changes: list[Change] = []
    problems: list[Problem] = []
    pending = pending_vmknics or {}
    for host in hosts:
        unreachable = _unreachable(plan, host, pending.get(host.name))
        if unreachable is not None:
            problems.append(unreachable)
            continue
        if host.storage_id is None:
            problems.append(
                Problem(
                    STAGE,
                    f"host {host.name} iscsi",
                    "vSphere shows no storage system for this host; check that it is connected, then rerun",
                )
            )
        elif change := _host_change(plan, host, host.storage_id):
            changes.append(change)
    return changes, problems


def _host_change(plan: Plan, host: HostIscsi, storage: str) -> Change | None:
    vip = Portal(str(plan.network.vip), ISCSI_PORT)
    adapter = host.adapter if host.enabled else None
    on = (host.name, storage, adapter)
    attrs: list[Attr] = []
    operations: list[Operation] = []
    if not host.enabled or host.adapter is None:
        attrs.append(Attr("software adapter", "disabled", "enabled"))
        operations.append(EnableSoftwareIscsi(*on))
    binding = _binding(plan, host, on)
    if binding is not None:
        attrs.append(Attr("port binding", None, binding.vnic or f"the vmknic on {binding.portgroup}"))
        operations.append(binding)
    ours = next((t for t in host.send_targets if t.portal == str(vip)), None)
    stale = [t for t in host.send_targets if t.portal != str(vip) and t.portal in host.our_portals]
    for target in stale:
        attrs.append(Attr("send targets", target.portal, None))
    if stale:
        portals = tuple(Portal(target.address, target.port) for target in stale)
        operations.append(RemoveSendTargets(*on, portals=portals))
    if ours is None:
        attrs.append(Attr("send targets", None, str(vip)))
        operations.append(AddSendTarget(*on, portal=vip))
    chap_wanted = "chapRequired" if plan.target.chap else "chapProhibited"
    chap_name = plan.chap_name if plan.target.chap else None
    chap_now = (ours.chap_type, ours.chap_name if plan.target.chap else None) if ours else (None, None)
    if chap_now != (chap_wanted, chap_name):
        attrs.append(Attr("chap", _chap_text(*chap_now), _chap_text(chap_wanted, chap_name)))
    options_now = ours.options if ours else {}
    wanted = desired_options(plan)
    for key, value in wanted.items():
        if options_now.get(key) != value:
            attrs.append(Attr(key, options_now.get(key), value))
    options = SetTargetOptions(*on, portal=vip, options=tuple(wanted.items()))
    lun_missing = host.lun is None
    if chap_now != (chap_wanted, chap_name) or (lun_missing and plan.target.chap):
        operations.append(
            SetChap(*on, portal=vip, name=chap_name, secret=CHAP_SECRET if plan.target.chap else None)
        )
        if plan.target.chap:
            attrs.append(Attr("chap secret", None, "(generated)", sensitive=True))
    if any(attr.name in wanted for attr in attrs):
        operations.append(options)
    if lun_missing:
        attrs.append(Attr("LUN", None, f"{plan.iqn} via {vip} (rescan, wait for login)"))
    if not operations and not lun_missing:
        return None
    operations.append(RescanForLun(*on, portal=vip, iqn=plan.iqn))
    return Change(
        stage=STAGE,
        action="update",
        resource=f"host {host.name} iscsi",
        attrs=attrs,
        operations=tuple(operations),
    )


def _unreachable(plan: Plan, host: HostIscsi, pending: str | None) -> Problem | None:
    """A host that has no VMkernel port in the VIP's subnet (or the gateway's) could
    never log in: refused before a send target is added (a configured one is left)."""
    net = plan.network
    vip = Portal(str(net.vip), ISCSI_PORT)
    if host.network is None or any(t.portal == str(vip) for t in host.send_targets):
        return None
    subnet = ipaddress.IPv4Network(f"{net.vip}/{net.iscsi_prefix}", strict=False)
    if pending is not None and net.vip in ipaddress.IPv4Interface(pending).network:
        return None
    if reaches(host.network, net.vip) or (net.iscsi_gateway and reaches(host.network, net.iscsi_gateway)):
        return None
    index = next(i for i, entry in enumerate(plan.hosts) if entry.esxi == host.name)
    return Problem(
        STAGE,
        f"host {host.name} iscsi",
        f"has no VMkernel port in {subnet} (the VIP's subnet), so its iSCSI adapter could never log in to "
        f'{net.vip}; add hosts[{index}].vmk_ip = "<a free address in {subnet}>" to the plan (the network '
        "stage then creates it)",
    )


def _binding(plan: Plan, host: HostIscsi, on: tuple[str, str, str | None]) -> BindVnic | None:
    """With network.bind: the iSCSI portgroup's vmknic bound to the adapter."""
    if not plan.network.bind or host.network is None or host.iscsi_manager is None:
        return None
    system = host.network.network_system
    if system is None:
        return None
    portgroup = plan.network.iscsi_portgroup
    vnics = host.network.vnics_on(portgroup, host.iscsi_dv_key)
    vnic = vnics[0].device if vnics else None
    if vnic is not None and vnic in (host.bound or ()):
        return None
    return BindVnic(
        *on, iscsi_manager=host.iscsi_manager, network_system=system, portgroup=portgroup, vnic=vnic
    )


def _chap_text(kind: str | None, name: str | None) -> str | None:
    if kind is None:
        return None
    return f"{kind} as {name}" if name else kind
