"""Pacemaker and Corosync: one lean resource (ocf:vsa:serve) holds everything the
active node does; quorum and DRBD's resource-and-stonith fencing through our
fence-peer handler keep a cut-off node from acknowledging writes.

The CIB is not a file Pacemaker reads: the guest stage writes our part of it to
CIB_FILE and loads it section by section (LoadCib), so constraints the
fence-peer handler placed are never replaced (ours, the witness ban, is merged in).
"""

import hashlib
from dataclasses import dataclass, field

from orchestrator.guest import layout
from orchestrator.guest.managers.base import DrbdFencing
from orchestrator.guest.node_file import NodeFile, render, shipped
from orchestrator.plan import Plan

COROSYNC_CONF = "/etc/corosync/corosync.conf"
AUTHKEY = "/etc/corosync/authkey"
SERVE_AGENT = "/usr/lib/ocf/resource.d/vsa/serve"
FENCE_PEER = "/usr/lib/vsa/fence-peer"
CIB_FILE = "/etc/vsa-orchestrate/cib.xml"
SERVE = "vsa-serve"  # the primitive's id
WITNESS_BAN = "vsa-serve-never-on-witness"  # the location constraint keeping it off the witness
FENCED_FLAG = f"{layout.SPLIT_BRAIN_DIR}/fenced"  # set by fence-peer where it outdated the peer
AUTHKEY_HEX_BYTES = 128  # knet wants 1024 bits at least
# DRBD declares a dead peer lost within ~3 s with writes in flight (timeout, tenths) and
# within ~5 s when idle (ping-int + ping-timeout), not 6 and 10.5 s: the survivor cannot
# promote before both resources let the peer go. (drbd.conf: timeout < ping-int and connect-int.)
PEER_LOST = {"timeout": "30", "ping-int": "4", "ping-timeout": "10", "connect-int": "5"}


def authkey(secret: str) -> str:
    """Corosync's key: the secret (readable back when the state folder lost it) and
    key material derived from it, past knet's minimum length."""
    return f"{secret}:{hashlib.shake_256(secret.encode()).hexdigest(AUTHKEY_HEX_BYTES)}\n"


@dataclass(frozen=True)
class Pacemaker:
    name: str = "pacemaker"
    units: tuple[str, ...] = ("corosync", "pacemaker")
    secret: str = "corosync"
    dopd: bool = False
    fencing: DrbdFencing = field(
        default_factory=lambda: DrbdFencing("resource-and-stonith", {"fence-peer": FENCE_PEER}, PEER_LOST)
    )

    def corosync_files(self, plan: Plan, secret: str) -> dict[str, NodeFile]:
        """Corosync's configuration and key: every member's, the witness's too."""
        corosync = render("corosync.conf.j2", plan=plan, nodes=plan.vm_nodes)
        return {
            COROSYNC_CONF: NodeFile(corosync, 0o644, False, "corosync"),
            AUTHKEY: NodeFile(authkey(secret), 0o400, True, "corosync"),
        }

    def files(self, plan: Plan, secret: str) -> dict[str, NodeFile]:
        serve = render(
            "vsa-serve.j2",
            resources=layout.RESOURCES,
            nodes=[node.node for node in plan.storage_nodes],
            three_votes=plan.witness is not None,
            config=layout.CONFIG,
            mount=layout.CONFIG_MOUNT,
            fstype=layout.CONFIG_FSTYPE,
            mount_options=layout.CONFIG_MOUNT_OPTIONS,
            target_script=f"/etc/ha.d/resource.d/{layout.TARGET_SCRIPT}",
            fenced_flag=FENCED_FLAG,
        )
        cib = render("cib.xml.j2", plan=plan, serve=SERVE, witness_ban=WITNESS_BAN)
        return {
            **self.corosync_files(plan, secret),
            SERVE_AGENT: NodeFile(serve, 0o755, False, "agent"),
            FENCE_PEER: NodeFile(shipped("vsa-fence-peer"), 0o755, False, "agent"),
            CIB_FILE: NodeFile(cib, 0o644, False, "cib"),
        }

    def paths(self) -> list[str]:
        return [COROSYNC_CONF, AUTHKEY, SERVE_AGENT, FENCE_PEER, CIB_FILE]

    def secret_path(self) -> str:
        return AUTHKEY

    def secret_readback(self) -> str:
        return f"cut -d: -f1 {AUTHKEY} 2>/dev/null"


PACEMAKER = Pacemaker()
