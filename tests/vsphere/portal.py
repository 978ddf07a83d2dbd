"""Test scaffolding for tests/vsphere and bench/, not shipped: until the lab boots
real storage VMs, the simulator's iSCSI data path is told that a portal answers
at the plan's VIP, serving one LUN with the plan's IQN, size and CHAP secret
(the secret the guest stage will configure)."""

from pathlib import Path

import requests

from orchestrator.guest.render import lun_naa
from orchestrator.lab.simulator import SimInfo
from orchestrator.plan import ISCSI_PORT, load_plan
from orchestrator.state import StateDir


def serve_portal(info: SimInfo, plan_path: Path) -> str:
    """Register the plan's portal with the simulator; returns the LUN's naa id."""
    plan = load_plan(plan_path)
    naa = lun_naa(plan)
    body = {
        "address": str(plan.network.vip),
        "port": ISCSI_PORT,
        "iqn": plan.iqn,
        "lun_size_bytes": plan.storage_vm.data_disk_gb * 2**30,
        "naa": naa,
    }
    if plan.target.chap:
        body["chap_name"] = plan.chap_name
        body["chap_secret"] = StateDir(plan.state_dir, persist=True).secret("chap")
    requests.post(f"{info.control_url}/portals", json=body, timeout=10).raise_for_status()
    return naa


def stop_portal(info: SimInfo, address: str) -> None:
    requests.delete(f"{info.control_url}/portals/{address}", timeout=10).raise_for_status()
