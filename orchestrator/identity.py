"""A storage node's identity as cloud-init documents (guestinfo on vSphere,
a NoCloud seed in the lab): hostname, static IPs, the admin's SSH public key,
and the SSH host key the orchestrator generated so it can pin it later.

NIC MAC addresses are derived from the plan (VMware's manual range
00:50:56:00:00:00-3F:FF:FF), so the network config can match NICs by MAC and
name them eth0 (iSCSI) and eth1 (replication) whatever the PCI order.
"""

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from orchestrator.plan import Plan, StorageNode, VmNode
from orchestrator.state import HostKey

NIC_ROLES = ("iscsi", "replication")


def nic_roles(node: VmNode) -> tuple[str, ...]:
    """A storage node's NICs; the witness has only the iSCSI one (Corosync runs there)."""
    return NIC_ROLES if isinstance(node, StorageNode) else NIC_ROLES[:1]


@dataclass(frozen=True)
class NodeIdentity:
    metadata: str
    userdata: str

    def guestinfo(self) -> dict[str, str]:
        return {
            "guestinfo.metadata": _b64(self.metadata),
            "guestinfo.metadata.encoding": "base64",
            "guestinfo.userdata": _b64(self.userdata),
            "guestinfo.userdata.encoding": "base64",
        }


def nic_mac(plan: Plan, node: str, role: str) -> str:
    digest = hashlib.sha256(f"{plan.name}/{node}/{role}".encode()).digest()
    return f"00:50:56:{digest[0] & 0x3F:02x}:{digest[1]:02x}:{digest[2]:02x}"


def ssh_public_key(plan: Plan) -> str:
    """The admin key installed for ssh_user; ValueError says how to make one."""
    private = plan.ssh_key_file
    public = private.with_name(private.name + ".pub")
    try:
        return public.read_text().strip()
    except OSError:
        raise ValueError(
            f"storage_vm.ssh_key: public key {public} not found; create the pair with "
            f"ssh-keygen -t ed25519 -f {private}"
        ) from None


def node_identity(plan: Plan, node: VmNode, host_key: HostKey, admin_key: str) -> NodeIdentity:
    net = plan.network
    iscsi: dict[str, Any] = {
        "match": {"macaddress": nic_mac(plan, node.node, "iscsi")},
        "set-name": "eth0",
        "addresses": [f"{node.iscsi_ip}/{net.iscsi_prefix}"],
    }
    if net.iscsi_gateway:
        iscsi["routes"] = [{"to": "default", "via": str(net.iscsi_gateway)}]
    ethernets = {"eth0": iscsi}
    if isinstance(node, StorageNode):
        ethernets["eth1"] = {
            "match": {"macaddress": nic_mac(plan, node.node, "replication")},
            "set-name": "eth1",
            "addresses": [f"{node.replication_ip}/{net.replication_prefix}"],
        }
    network = {"version": 2, "ethernets": ethernets}
    body = {"local-hostname": node.node, "network": network}
    # A new instance-id makes cloud-init apply changed network settings again.
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    metadata = {"instance-id": f"{plan.vm_name(node.node)}-{digest}", **body}
    userdata = {
        "hostname": node.node,
        "disable_root": False,
        "ssh_pwauth": False,
        "ssh_authorized_keys": [admin_key],
        "ssh_deletekeys": True,
        # Only the key type we pin; ours is given below, so nothing is generated.
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public_openssh,
        },
    }
    if plan.storage_vm.ssh_user != "root":
        userdata["users"] = [{"name": plan.storage_vm.ssh_user, "ssh_authorized_keys": [admin_key]}]
    return NodeIdentity(
        metadata=json.dumps(metadata, indent=1, sort_keys=True),
        userdata="#cloud-config\n" + json.dumps(userdata, indent=1, sort_keys=True),
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
