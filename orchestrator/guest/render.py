"""The files a storage node should hold, rendered from the plan (jinja2).

Pure: (plan, secrets, device paths) -> {path: NodeFile}. Secrets are passed
in, never looked up here, and files holding one are marked sensitive so a
diff shows them redacted. The guest stage renders them while planning (its
diff compares their sha256) and again while applying (its handlers write them
only if the sha256 is still the one the diff showed).
"""

import hashlib
import json
from dataclasses import dataclass

from orchestrator.guest import layout
from orchestrator.guest.managers import manager_for
from orchestrator.guest.managers.pacemaker import PACEMAKER
from orchestrator.guest.node_file import NodeFile, render, shipped
from orchestrator.plan import Plan


@dataclass(frozen=True)
class Secrets:
    drbd: str
    cluster: str  # the cluster manager's (heartbeat's authkeys, Corosync's authkey)
    chap: str | None


@dataclass(frozen=True)
class Desired:
    files: dict[str, NodeFile]  # path -> file this node must hold
    target_definition: str  # JSON kept on the config volume


HOSTS = "/etc/hosts"
SCRIPT_PATH = f"/etc/ha.d/resource.d/{layout.TARGET_SCRIPT}"


def drbd_config(resource: layout.DrbdResource) -> str:
    return f"/etc/drbd.d/{resource.name}.res"


def managed_paths(plan: Plan) -> list[str]:
    """Every managed file's path, in the order desired_state renders them (no rendering:
    paths depend on neither secrets nor devices)."""
    return [*map(drbd_config, layout.RESOURCES), *manager_for(plan).paths(), HOSTS, SCRIPT_PATH]


def lun_serial(plan: Plan) -> str:
    """The LUN's unit serial, identical on both nodes: ESXi identifies the
    datastore's device by the NAA id derived from it."""
    return hashlib.sha256(plan.iqn.encode()).hexdigest()[:32]


LIO_OUI = "6001405"  # LIO's NAA-6 prefix: NAA 6 + IEEE company id 00:14:05 (default company_id)


def naa_from_serial(serial: str) -> str:
    """The NAA id LIO derives from a unit serial: naa.6001405 + its first 25 hex digits.

    The kernel (spc_gen_naa_6h_vendor_specific) skips characters that are not
    hex digits, so a serial with dashes gives the same id as without them.
    """
    digits = "".join(char for char in serial.lower() if char in "0123456789abcdef")
    return f"naa.{LIO_OUI}{digits[:25]}"


def lun_naa(plan: Plan) -> str:
    """The NAA id (VPD 0x83) every host sees for the LUN, on either node."""
    return naa_from_serial(lun_serial(plan))


def node_files(plan: Plan, secrets: Secrets, devices: dict[str, dict[str, str]]) -> dict[str, NodeFile]:
    """Files on every storage node; devices: node -> disk role -> stable device path."""
    nodes = plan.storage_nodes
    manager = manager_for(plan)
    common = {"plan": plan, "nodes": nodes, "devices": devices, "layout": layout}
    files = {
        drbd_config(resource): NodeFile(
            render("drbd.res.j2", resource=resource, secret=secrets.drbd, fencing=manager.fencing, **common),
            0o600,
            True,
            "drbd",
        )
        for resource in layout.RESOURCES
    }
    files.update(manager.files(plan, secrets.cluster))
    files[HOSTS] = NodeFile(render("hosts.j2", **common), 0o644, False, "hosts")
    return files


def desired_state(
    plan: Plan, secrets: Secrets, node_devices: dict[str, dict[str, str]]
) -> dict[str, Desired]:
    """What every node must hold: its files and the target definition (the active one's);
    the witness holds Corosync's files only."""
    files = node_files(plan, secrets, node_devices)
    files[SCRIPT_PATH] = NodeFile(shipped(layout.TARGET_SCRIPT), 0o755, False, "target")
    definition = target_definition(plan, lun_serial(plan), secrets.chap)
    desired = {node.node: Desired(files=files, target_definition=definition) for node in plan.storage_nodes}
    if plan.witness is not None:
        desired[plan.witness.node] = witness_desired(plan, secrets)
    return desired


def witness_desired(plan: Plan, secrets: Secrets) -> Desired:
    """The witness holds Corosync's files only (no DRBD, no target)."""
    return Desired(files=PACEMAKER.corosync_files(plan, secrets.cluster), target_definition="")


def target_definition(plan: Plan, serial: str, chap_secret: str | None) -> str:
    chap = {"userid": plan.chap_name, "password": chap_secret} if plan.target.chap else None
    body = {"iqn": plan.iqn, "device": layout.LUN.device, "serial": serial, "chap": chap}
    return json.dumps(body, indent=1, sort_keys=True) + "\n"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
