"""heartbeat v1 in haresources mode, as in the original recipe: one resource
group ending in the VIP, dopd outdating the peer over heartbeat's links."""

from dataclasses import dataclass, field

from orchestrator.guest import layout
from orchestrator.guest.managers.base import DrbdFencing
from orchestrator.guest.node_file import NodeFile, render
from orchestrator.plan import Plan

HA_CF = "/etc/ha.d/ha.cf"
AUTHKEYS = "/etc/ha.d/authkeys"
HARESOURCES = "/etc/ha.d/haresources"


@dataclass(frozen=True)
class Heartbeat:
    name: str = "heartbeat"
    units: tuple[str, ...] = ("heartbeat",)
    secret: str = "heartbeat"
    dopd: bool = True
    fencing: DrbdFencing = field(
        default_factory=lambda: DrbdFencing(
            "resource-only", {"fence-peer": "/usr/libexec/heartbeat/drbd-peer-outdater -t 5"}
        )
    )

    def files(self, plan: Plan, secret: str) -> dict[str, NodeFile]:
        common = {"plan": plan, "nodes": plan.storage_nodes}
        haresources = render(
            "haresources.j2",
            config=layout.CONFIG,
            lun=layout.LUN,
            mount=layout.CONFIG_MOUNT,
            fstype=layout.CONFIG_FSTYPE,
            mount_options=layout.CONFIG_MOUNT_OPTIONS,
            target_resource=layout.TARGET_SCRIPT,
            **common,
        )
        return {
            HA_CF: NodeFile(render("ha.cf.j2", **common), 0o644, False, "heartbeat"),
            AUTHKEYS: NodeFile(render("authkeys.j2", secret=secret), 0o600, True, "heartbeat"),
            HARESOURCES: NodeFile(haresources, 0o644, False, "heartbeat"),
        }

    def paths(self) -> list[str]:
        return [HA_CF, AUTHKEYS, HARESOURCES]

    def secret_path(self) -> str:
        return AUTHKEYS

    def secret_readback(self) -> str:
        return f"awk '$1 == \"1\" {{print $3}}' {AUTHKEYS} 2>/dev/null"


HEARTBEAT = Heartbeat()
