"""The Pacemaker manager: plan rules, the files it renders, the guest diff's
phases for it, and its fence-peer handler run against stand-ins for crm_node
and cibadmin (the boundary; the real ones run in tests/lab)."""

import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import pytest

from orchestrator.guest import layout
from orchestrator.guest.facts import NodeFacts, Services
from orchestrator.guest.managers import pacemaker
from orchestrator.guest.node_file import shipped
from orchestrator.guest.render import Secrets, desired_state, node_files, sha256
from orchestrator.plan import PlanError, load_plan
from orchestrator.stages.guest.diff import diff
from orchestrator.stages.guest.operations import (
    AllowDopd,
    CleanupServe,
    EnableService,
    LoadCib,
    StartService,
    WaitServing,
)
from tests.unit.test_guest_diff import CONNECTED, DEVICES, DISKS, NODES, fresh
from tests.unit.test_plan import edit

PACEMAKER = '[ha]\nmanager = "pacemaker"\ntwo_node = true\n'
SECRETS = Secrets(drbd="DRBDSECRET", cluster="COROSYNCSECRET", chap="CHAPSECRET")


@pytest.fixture
def plan(plan_text, write_plan):
    return load_plan(write_plan(with_ha(plan_text, PACEMAKER)))


def with_ha(text: str, ha: str) -> str:
    """The plan text with these [ha] keys (its own `manager = "heartbeat"` line dropped)."""
    text = edit(text, 'manager = "heartbeat"\n', "") if 'manager = "heartbeat"' in text else text
    return edit(text, "[target]", f"{ha}\n[target]") if "[ha]" not in text else edit(text, "[ha]", ha.strip())


# ---------------------------------------------------------------- plan


def test_pacemaker_without_a_witness_or_two_node_is_refused_at_its_line(plan_text, write_plan):
    path = write_plan(with_ha(plan_text, '[ha]\nmanager = "pacemaker"\n'))
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    [issue] = caught.value.issues
    assert issue.key == "ha.manager"
    assert path.read_text().splitlines()[issue.line - 1].startswith("manager")
    assert "ha.two_node = true" in issue.message and "witness" in issue.message


def test_a_plan_naming_no_manager_is_pacemaker_and_two_hosts_are_told_every_way_out(plan_text, write_plan):
    path = write_plan(edit(plan_text, 'manager = "heartbeat"\n', ""))
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    [issue] = caught.value.issues
    assert issue.key == "ha.manager"
    for way_out in ("witness = {", "ha.two_node = true", 'ha.manager = "heartbeat"'):
        assert way_out in issue.message


def test_pacemaker_failover_bound_drives_the_initiator_timeout(plan):
    assert (plan.failover_s, plan.recovery_timeout) == (25, 35)
    assert "Pacemaker" in plan.failover_reason


# ---------------------------------------------------------------- files


def test_pacemaker_files_replace_heartbeats(plan):
    files = node_files(plan, SECRETS, DEVICES)
    assert not [path for path in files if path.startswith("/etc/ha.d/") and path != "/etc/ha.d/resource.d"]
    assert set(pacemaker.PACEMAKER.paths()) <= set(files)
    drbd = files["/etc/drbd.d/iscsi.target.0.res"].content
    assert "fencing resource-and-stonith;" in drbd
    assert f'fence-peer "{pacemaker.FENCE_PEER}";' in drbd and "drbd-peer-outdater" not in drbd


def test_drbd_timeouts_keep_drbd_confs_rule_and_let_an_idle_dead_peer_go_within_five_seconds(plan):
    drbd = node_files(plan, SECRETS, DEVICES)["/etc/drbd.d/iscsi.config.res"].content
    net = dict(re.findall(r"^\s*(timeout|ping-int|ping-timeout|connect-int) (\d+);", drbd, re.M))
    timeout_s, ping_timeout_s = int(net["timeout"]) / 10, int(net["ping-timeout"]) / 10
    # drbd.conf(5): timeout must be lower than ping-int and connect-int, or drbdadm refuses it.
    assert timeout_s < int(net["ping-int"]) and timeout_s < int(net["connect-int"])
    assert int(net["ping-int"]) + ping_timeout_s <= 5


def test_corosync_lists_each_node_on_its_iscsi_address_and_two_node_only_when_asked(
    plan, plan_text, write_plan
):
    conf = node_files(plan, SECRETS, DEVICES)[pacemaker.COROSYNC_CONF].content
    for index, node in enumerate(plan.storage_nodes, start=1):
        assert f"name: {node.node}\n        nodeid: {index}\n        ring0_addr: {node.iscsi_ip}" in conf
    assert "two_node: 1" in conf and "token: 1000" in conf and f"cluster_name: {plan.name}" in conf


def test_corosync_key_holds_the_secret_and_is_long_enough_for_knet(plan):
    key = node_files(plan, SECRETS, DEVICES)[pacemaker.AUTHKEY]
    assert key.content.startswith("COROSYNCSECRET:") and len(key.content.encode()) >= 128
    assert (key.mode, key.sensitive) == (0o400, True)
    assert key.content == pacemaker.authkey("COROSYNCSECRET")  # stable: a rerun does not rotate it


def test_the_cib_holds_one_lean_resource_with_the_vip_and_no_constraints(plan):
    cib = ElementTree.fromstring(node_files(plan, SECRETS, DEVICES)[pacemaker.CIB_FILE].content)
    [primitive] = cib.findall("resources/primitive")
    assert (primitive.get("id"), primitive.get("provider"), primitive.get("type")) == (
        "vsa-serve",
        "vsa",
        "serve",
    )
    params = {p.get("name"): p.get("value") for p in primitive.findall("instance_attributes/nvpair")}
    assert params == {
        "ip": str(plan.network.vip),
        "cidr_netmask": str(plan.network.iscsi_prefix),
        "nic": "eth0",
    }
    options = {p.get("name"): p.get("value") for p in cib.findall("crm_config/cluster_property_set/nvpair")}
    assert options["stonith-enabled"] == "false" and options["no-quorum-policy"] == "stop"
    assert cib.find("constraints") is None  # the fence-peer handler's live there: never replaced


# ---------------------------------------------------------------- diff


def stopped() -> Services:
    return Services(frozenset(), frozenset(), False, False, False, False)


def running(active: bool) -> Services:
    units = frozenset({"corosync", "pacemaker", "drbd"})
    return Services(units, units, active, active, active, False, quorate=True, cib_loaded=True)


def healthy(desired, node: str, active: bool) -> NodeFacts:
    files = {path: (sha256(file.content), file.mode) for path, file in desired[node].files.items()}
    return NodeFacts(
        disks=list(DISKS),
        drbd=dict(CONNECTED),
        metadata={r.name: True for r in layout.RESOURCES},
        files=files,
        services=running(active),
        target_definition=sha256(desired[node].target_definition) if active else None,
    )


def test_a_fresh_pair_starts_corosync_then_pacemaker_then_loads_the_cib_once(plan):
    desired = desired_state(plan, SECRETS, DEVICES)
    changes, problems = diff(plan, desired, {node: fresh() for node in NODES})
    assert problems == []
    assert [c.resource for c in changes][-3:] == [
        "node node1 services",
        "node node2 services",
        "pacemaker configuration",
    ]
    assert not any(isinstance(op, AllowDopd) for c in changes for op in c.operations)
    assert changes[-2].operations == (
        EnableService("node2", "drbd"),
        EnableService("node2", "corosync"),
        EnableService("node2", "pacemaker"),
        StartService("node2", "corosync"),
        StartService("node2", "pacemaker"),
    )
    cib = desired["node1"].files[pacemaker.CIB_FILE].content
    assert changes[-1].operations == (LoadCib("node1", sha256(cib)), WaitServing())


def test_a_healthy_pacemaker_pair_has_nothing_to_do(plan):
    desired = desired_state(plan, SECRETS, DEVICES)
    facts = {"node1": healthy(desired, "node1", True), "node2": healthy(desired, "node2", False)}
    assert diff(plan, desired, facts) == ([], [])


def test_a_stale_cib_file_reloads_the_cib_without_restarting_the_cluster(plan):
    desired = desired_state(plan, SECRETS, DEVICES)
    facts = {"node1": healthy(desired, "node1", True), "node2": healthy(desired, "node2", False)}
    facts["node2"].files[pacemaker.CIB_FILE] = ("0" * 64, 0o644)
    changes, _ = diff(plan, desired, facts)
    assert [c.resource for c in changes] == ["node node2 files", "pacemaker configuration"]
    assert [type(op) for op in changes[1].operations] == [LoadCib, WaitServing]


def test_nobody_serving_with_quorum_clears_the_failed_resource(plan):
    desired = desired_state(plan, SECRETS, DEVICES)
    facts = {"node1": healthy(desired, "node1", False), "node2": healthy(desired, "node2", False)}
    changes, _ = diff(plan, desired, facts)
    assert [c.resource for c in changes] == ["pacemaker resource vsa-serve"]
    assert changes[0].operations == (CleanupServe("node1"), WaitServing())


def test_a_pair_running_heartbeat_is_refused_not_switched(plan):
    desired = desired_state(plan, SECRETS, DEVICES)
    facts = {"node1": healthy(desired, "node1", True), "node2": healthy(desired, "node2", False)}
    heartbeat = frozenset({"heartbeat", "drbd"})
    facts["node2"].services = replace(facts["node2"].services, active=heartbeat, enabled=heartbeat)
    changes, problems = diff(plan, desired, facts)
    assert changes == []
    [problem] = problems
    assert problem.resource == "node node2"
    assert "runs heartbeat" in problem.message and "systemctl disable --now heartbeat" in problem.message


# ---------------------------------------------------------------- fence-peer handler


def fence(
    tmp_path: Path,
    quorate: str,
    partition: str,
    constraints: str = "",
    resource: str = "iscsi.target.0",
    role: str = "Secondary/Unknown",
    disk: str = "UpToDate/DUnknown",
) -> tuple[int, list[str]]:
    """Run the shipped handler with corosync-quorumtool/cibadmin/drbdadm/logger stand-ins;
    returns its exit code and the cibadmin calls it made (a sysrq written lands in tmp_path/sysrq)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    members = "\\n".join(f"         {n}          1 {name}" for n, name in enumerate(partition.split(), 1))
    stand_ins = {
        "corosync-quorumtool": f'printf "Quorate:   {quorate}\\n    Nodeid  Votes Name\\n{members}\\n"',
        "cibadmin": f'echo "$*" >> {calls}; case "$1" in --create) [ -z "{constraints}" ];; '
        f"-Q) echo '{constraints}';; esac",
        "logger": "exit 0",
        "drbdadm": f'case "$1 $2" in "role {resource}") echo {role};; '
        f'"dstate {resource}") echo {disk};; esac',
        "uname": "echo node1",
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    handler = tmp_path / "fence-peer"
    handler.write_text(shipped("vsa-fence-peer").replace("/var/lib/vsa-orchestrate", str(tmp_path / "state")))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DRBD_RESOURCE": resource,
        "DRBD_PEER": "node2",
        "VSA_FENCE_CATCH_UP_S": "1",
        "VSA_FENCE_RUN_DIR": str(tmp_path / "run"),
        "VSA_FENCE_SYSRQ": str(tmp_path / "sysrq"),
    }
    code = subprocess.run(["sh", str(handler)], env=env, check=False).returncode
    return code, calls.read_text().splitlines() if calls.exists() else []


def test_without_quorum_the_handler_refuses_and_places_nothing(tmp_path):
    code, calls = fence(tmp_path, quorate="No", partition="node1")
    assert code == 1 and calls == []  # DRBD keeps the I/O frozen
    assert not (tmp_path / "sysrq").exists()  # a secondary (promoting) is not reset


def test_a_primary_cut_off_without_quorum_resets_itself(tmp_path):
    code, calls = fence(tmp_path, quorate="No", partition="node1", role="Primary/Unknown")
    assert code == 1 and calls == []
    assert (tmp_path / "sysrq").read_text() == "b\n"


def test_with_quorum_and_the_peer_gone_it_outdates_the_peer_by_a_constraint(tmp_path):
    code, calls = fence(tmp_path, quorate="Yes", partition="node1")
    assert code == 5
    [create] = calls
    assert create.startswith("--create -o constraints") and 'rsc="vsa-serve"' in create
    assert 'operation="ne" value="node1"' in create
    assert (tmp_path / "state" / "fenced").exists()  # the serve monitor lifts it once resynced


def test_with_the_peer_still_a_member_only_replication_is_down_and_it_is_outdated(tmp_path):
    code, _ = fence(tmp_path, quorate="Yes", partition="node1 node2")
    assert code == 4


def test_a_constraint_the_peer_placed_first_wins(tmp_path):
    theirs = '<expression id="vsa-fence-expr" attribute="#uname" operation="ne" value="node2"/>'
    code, calls = fence(tmp_path, quorate="Yes", partition="node1", constraints=theirs)
    assert code == 1 and calls[0].startswith("--create") and calls[1].startswith("-Q")


def test_the_second_resource_takes_the_first_decision_without_another_constraint(tmp_path):
    assert fence(tmp_path, quorate="Yes", partition="node1")[0] == 5
    code, calls = fence(tmp_path, quorate="Yes", partition="node1", resource="iscsi.config")
    assert code == 5 and len(calls) == 1  # the first handler's --create only


def test_the_decision_is_not_taken_without_quorum(tmp_path):
    assert fence(tmp_path, quorate="Yes", partition="node1")[0] == 5
    assert fence(tmp_path, quorate="No", partition="node1", resource="iscsi.config")[0] == 1


@pytest.mark.parametrize("members", ["node1", "node1 node2"])
def test_a_node_whose_disk_is_not_up_to_date_outdates_nobody(tmp_path, members):
    """Exit 4 would make DRBD promote a Consistent disk to UpToDate; a constraint would ban the peer."""
    code, calls = fence(tmp_path, quorate="Yes", partition=members, disk="Consistent/DUnknown")
    assert code == 1 and calls == []
    assert not (tmp_path / "sysrq").exists() and not (tmp_path / "state" / "fenced").exists()


def test_the_second_resource_does_not_reuse_the_decision_with_a_disk_not_up_to_date(tmp_path):
    assert fence(tmp_path, quorate="Yes", partition="node1")[0] == 5
    code, _ = fence(
        tmp_path, quorate="Yes", partition="node1", resource="iscsi.config", disk="Outdated/DUnknown"
    )
    assert code == 1


def test_drbd_resources_keep_heartbeats_fencing_under_heartbeat():
    heartbeat_plan = load_plan(Path(__file__).resolve().parents[2] / "plans" / "two-node.toml")
    drbd = node_files(heartbeat_plan, SECRETS, DEVICES)["/etc/drbd.d/iscsi.config.res"].content
    assert "fencing resource-only;" in drbd and "drbd-peer-outdater -t 5" in drbd
