"""The `iscsi` diff, pure: (plan, each host's iSCSI facts) -> changes.

Per host: the software adapter enabled; exactly one send target of ours,
VIP:3260; CHAP required with the generated secret; the timeouts from
[initiator] on our target; and our IQN's LUN visible, by its naa id. Send
targets that never discovered our IQN are never touched.

ESXi never returns a CHAP secret, so a wrong one shows only as a missing LUN:
whenever the LUN is not visible the secret is pushed again before the rescan.
"""

from orchestrator.changes import Attr, Change, Problem
from orchestrator.operations import Operation, SecretRef
from orchestrator.plan import ISCSI_PORT, Plan
from orchestrator.stages.iscsi.facts import HostIscsi
from orchestrator.stages.iscsi.operations import (
    AddSendTarget,
    EnableSoftwareIscsi,
    Portal,
    RemoveSendTargets,
    RescanForLun,
    SetChap,
    SetTargetOptions,
)

STAGE = "iscsi"
CHAP_SECRET = SecretRef("chap")


def desired_options(plan: Plan) -> dict[str, int]:
    return {
        "RecoveryTimeout": plan.recovery_timeout,
        "NoopOutInterval": plan.initiator.noop_out_interval,
        "NoopOutTimeout": plan.initiator.noop_out_timeout,
        "LoginTimeout": plan.initiator.login_timeout,
    }


def diff(plan: Plan, hosts: list[HostIscsi]) -> tuple[list[Change], list[Problem]]:
    changes: list[Change] = []
    problems: list[Problem] = []
    for host in hosts:
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


def _chap_text(kind: str | None, name: str | None) -> str | None:
    if kind is None:
        return None
    return f"{kind} as {name}" if name else kind
