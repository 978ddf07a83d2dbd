"""`status` output (table and JSON shape), host-key pinning and which nodes are contacted."""

import io
import json
from pathlib import Path

from rich.console import Console

from orchestrator.state import StateDir, new_ed25519_key
from orchestrator.status import render
from orchestrator.status.model import NodeView, SiteStatus
from orchestrator.status.nodes import observe_nodes, pinned_key
from tests.unit.test_status_health import CLUSTER, DATASTORE, EXPECTED, NAA, PLAN, active, host, standby

TOP = [
    "plan",
    "healthy",
    "exit_code",
    "expected",
    "nodes",
    "active_node",
    "hosts",
    "datastore",
    "cluster",
    "problems",
    "witness",
]
NODE = [
    "node", "vm", "esxi", "address", "vm_found", "power", "vm_host", "reachable", "error", "drbd",
    "heartbeat_running", "heartbeat_resources", "holds_vip", "config_mounted", "target_running", "targets",
    "manager", "manager_running", "quorate", "votes", "expected_votes",
]  # fmt: skip
HOST = [
    "host", "found", "connection", "adapter", "adapter_enabled", "send_target", "lun", "paths",
    "datastore_mounted", "datastore_accessible",
]  # fmt: skip


def site(problems: list[str]) -> SiteStatus:
    return SiteStatus(
        plan="vsa",
        expected=EXPECTED,
        nodes=[active(), standby()],
        active_node="node1",
        hosts=[host(), host("esx2.demo.local")],
        datastore=DATASTORE,
        cluster=CLUSTER,
        problems=problems,
    )


def text_of(status: SiteStatus) -> str:
    out = io.StringIO()
    console = Console(file=out, width=80, markup=False, highlight=False, soft_wrap=True)  # as make_console
    render.render_text(console, status)
    return out.getvalue()


def test_json_document_shape_is_stable():
    document = json.loads(render.as_json(site([]), 0))
    assert list(document) == TOP
    assert (document["healthy"], document["exit_code"], document["active_node"]) == (True, 0, "node1")
    assert list(document["nodes"][0]) == NODE
    assert list(document["hosts"][0]) == HOST
    assert document["nodes"][0]["targets"][0]["naa"] == NAA
    assert [d["resource"] for d in document["nodes"][1]["drbd"]] == ["iscsi.config", "iscsi.target.0"]
    error = json.loads(render.error_json("vsa", "cannot reach vSphere", 1))
    assert error == {"plan": "vsa", "healthy": False, "exit_code": 1, "error": "cannot reach vSphere"}


def test_table_of_a_healthy_pair_fits_80_columns():
    text = text_of(site([]))
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert len(table) > 10 and max(len(line) for line in table) <= 80
    assert "Healthy." in text
    assert f"on node1: LUN 0 /dev/drbd1, serial {EXPECTED.serial}, {NAA}, CHAP, enabled" in text
    assert "VIP + target" in text and "standby" in text
    assert "Degraded" not in text


def test_table_of_a_degraded_site_lists_each_finding():
    text = text_of(site(["node node2: heartbeat is not running", "host esx2.demo.local: no LUN of x"]))
    assert "Degraded: 2 finding(s)" in text
    assert "  - node node2: heartbeat is not running" in text
    assert "Healthy." not in text


def test_pinned_key_comes_from_the_state_folder_else_the_vm_and_is_never_generated(tmp_path: Path):
    state = StateDir(tmp_path / "plan.toml.state", persist=False)
    deployed = new_ed25519_key("root@node1")
    assert pinned_key(state, "node1", None) is None
    assert pinned_key(state, "node1", deployed) == deployed
    stored = StateDir(tmp_path / "plan.toml.state", persist=True).host_key("node1")
    assert pinned_key(state, "node1", deployed) == stored
    assert sorted(p.name for p in (tmp_path / "plan.toml.state" / "hostkeys").iterdir()) == [
        "node1_ssh_host_ed25519_key",
        "node1_ssh_host_ed25519_key.pub",
    ]


def test_nodes_that_are_off_or_unpinned_are_not_contacted():
    off = NodeView(node="node1", vm="vsa-node1", esxi="esx1", address="10.11.55.55", vm_found=True)
    off.power = "poweredOff"
    unpinned = NodeView(node="node2", vm="vsa-node2", esxi="esx2", address="10.11.55.56", vm_found=True)
    unpinned.power = "poweredOn"
    observe_nodes(PLAN, [off, unpinned], {"node1": new_ed25519_key("x"), "node2": None})
    assert off.error == "not read: the VM is poweredOff" and not off.reachable
    assert unpinned.error.startswith("no pinned SSH host key for node2")
