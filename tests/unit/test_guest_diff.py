"""The guest diff as a pure function on node facts shaped like the lab's
(tests/unit/fixtures), without a VM: what may be created, what is refused,
which operations run in which order; and its operations as data."""

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from orchestrator.changes import Change
from orchestrator.guest import layout
from orchestrator.guest.facts import Disk, DrbdState, NodeFacts, Services
from orchestrator.guest.render import Secrets, desired_state, managed_paths, sha256
from orchestrator.operations import operation_from_json
from orchestrator.plan import load_plan
from orchestrator.stages.guest.diff import deployed_secrets, diff, disk_problems
from orchestrator.stages.guest.operations import (
    AllowDopd,
    CreateDrbdMetadata,
    DrbdConnect,
    DrbdUp,
    EnableService,
    ForgetSplitBrain,
    InitializeDrbd,
    NodeDevices,
    RestartService,
    StartService,
    StartTarget,
    WaitServing,
    WriteFile,
    WriteTargetDefinition,
)
from tests.unit.conftest import EXAMPLE_PLAN

PLAN = load_plan(EXAMPLE_PLAN)
NODES = [node.node for node in PLAN.storage_nodes]
DISKS = [
    Disk("sdb", "2:0:1:0", 2**30, "/dev/disk/by-path/pci-0000:00:03.0-scsi-0:0:1:0", None),
    Disk("sdc", "2:0:2:0", 2**30, "/dev/disk/by-path/pci-0000:00:03.0-scsi-0:0:2:0", None),
    Disk("sdd", "2:0:3:0", 50 * 2**30, "/dev/disk/by-path/pci-0000:00:03.0-scsi-0:0:3:0", None),
]
DEVICES = {node: {"meta": DISKS[0].path, "config": DISKS[1].path, "data": DISKS[2].path} for node in NODES}
DESIRED = desired_state(PLAN, Secrets("d" * 16, "h" * 16, "c" * 16), DEVICES)
STOPPED = Services(frozenset(), frozenset(), False, False, False, False)
RUNNING = Services(
    frozenset({"heartbeat", "drbd"}), frozenset({"heartbeat", "drbd"}), False, False, False, True
)
CONNECTED = {
    r.minor: DrbdState("Connected", "Secondary/Secondary", "UpToDate/UpToDate", 0) for r in layout.RESOURCES
}


def write_variant(text: str) -> Path:
    path = Path(tempfile.mkdtemp()) / "plan.toml"
    path.write_text(text)
    return path


def kinds(change: Change) -> list[type]:
    return [type(operation) for operation in change.operations]


def of(change: Change, kind: type) -> list:
    return [operation for operation in change.operations if isinstance(operation, kind)]


def fresh() -> NodeFacts:
    return NodeFacts(disks=list(DISKS), drbd={}, metadata={}, files={}, services=STOPPED)


def healthy(node: str, active: bool) -> NodeFacts:
    files = {path: (sha256(file.content), file.mode) for path, file in DESIRED[node].files.items()}
    services = replace(RUNNING, config_mounted=active, vip_here=active, target_running=active)
    return NodeFacts(
        disks=[replace(disk, signature=None) for disk in DISKS],
        drbd=dict(CONNECTED),
        metadata={r.name: True for r in layout.RESOURCES},
        files=files,
        services=services,
        target_definition=sha256(DESIRED[node].target_definition) if active else None,
    )


def test_two_fresh_nodes_get_a_first_creation():
    changes, problems = diff(PLAN, DESIRED, {node: fresh() for node in NODES})
    assert problems == []
    assert [change.resource for change in changes] == [
        "node node1 files",
        "node node2 files",
        "drbd",
        "node node1 services",
        "node node2 services",
    ]
    assert changes[2].operations == (
        InitializeDrbd("node1", tuple(NODES), sha256(DESIRED["node1"].target_definition)),
    )


def test_a_healthy_pair_has_nothing_to_do():
    assert diff(PLAN, DESIRED, {"node1": healthy("node1", True), "node2": healthy("node2", False)}) == (
        [],
        [],
    )


def test_a_data_disk_holding_a_filesystem_is_refused_naming_node_and_disk():
    node2 = fresh()
    node2.disks[2] = replace(node2.disks[2], signature="ext4")
    changes, problems = diff(PLAN, DESIRED, {"node1": fresh(), "node2": node2})
    assert changes == []
    [problem] = problems
    assert problem.resource == "node node2"
    assert (
        DISKS[2].path in problem.message
        and "ext4" in problem.message
        and "never overwritten" in problem.message
    )


def test_existing_metadata_is_adopted_never_recreated():
    node1 = healthy("node1", True)
    node2 = healthy("node2", False)
    node2.drbd = {}  # rebooted: resources down, metadata still on the meta disk
    changes, problems = diff(PLAN, DESIRED, {"node1": node1, "node2": node2})
    assert problems == []
    [change] = changes
    assert change.operations == (DrbdUp("node2", tuple(r.name for r in layout.RESOURCES)),)
    assert of(change, CreateDrbdMetadata) == []
    assert all(change.resource != "drbd" for change in changes)


def test_a_replaced_node_with_empty_disks_gets_metadata_and_a_full_resync():
    node2 = healthy("node2", False)
    node2.metadata = {}
    node2.drbd = {}
    changes, problems = diff(PLAN, DESIRED, {"node1": healthy("node1", True), "node2": node2})
    assert problems == []
    assert of(changes[0], CreateDrbdMetadata) == [
        CreateDrbdMetadata("node2", tuple(r.name for r in layout.RESOURCES))
    ]
    assert all(change.resource != "drbd" for change in changes)  # no forced primary, no skipped sync


def test_split_brain_is_reported_never_resolved():
    split = DrbdState("StandAlone", "Primary/Unknown", "UpToDate/DUnknown", 0)
    node1, node2 = healthy("node1", True), healthy("node2", False)
    node1.drbd = {**CONNECTED, layout.LUN.minor: split}
    node2.drbd = {**CONNECTED, layout.LUN.minor: replace(split, ro="Secondary/Unknown")}
    node2.split_brain = {layout.LUN.name}
    changes, problems = diff(PLAN, DESIRED, {"node1": node1, "node2": node2})
    assert changes == []
    [problem] = problems
    assert problem.resource == f"drbd {layout.LUN.name}"
    assert "node1 (Primary, StandAlone), node2 (Secondary, StandAlone)" in problem.message
    assert f"drbdadm connect --discard-my-data {layout.LUN.name}" in problem.message


def test_a_pair_running_the_other_manager_is_refused_never_switched():
    """A heartbeat pair under a pacemaker plan (or the reverse) gets one line per node naming the
    manual steps, and nothing else: two managers must never drive the same DRBD."""
    node1, node2 = healthy("node1", True), healthy("node2", False)
    node2.services = replace(node2.services, enabled=frozenset({"drbd", "corosync", "pacemaker"}))
    changes, problems = diff(PLAN, DESIRED, {"node1": node1, "node2": node2})
    assert changes == []
    [problem] = problems
    assert problem.resource == "node node2"
    assert "runs corosync pacemaker, but the plan's [ha] manager is 'heartbeat'" in problem.message
    assert 'keep the one it runs, [ha] manager = "pacemaker", or switch by hand' in problem.message
    assert "on both nodes `systemctl disable --now corosync pacemaker`, then rerun" in problem.message


def test_a_heartbeat_pair_under_the_pacemaker_default_is_told_how_to_keep_heartbeat():
    text = EXAMPLE_PLAN.read_text().replace('manager = "heartbeat"', "two_node = true")
    plan = load_plan(write_variant(text))
    assert plan.ha.manager == "pacemaker"
    pair = {"node1": healthy("node1", True), "node2": healthy("node2", False)}
    changes, problems = diff(plan, DESIRED, pair)
    assert changes == []
    assert [problem.resource for problem in problems] == ["node node1", "node node2"]
    message = problems[0].message
    assert "runs heartbeat, but the plan's [ha] manager is 'pacemaker' (the default when" in message
    assert 'keep the one it runs, [ha] manager = "heartbeat"' in message


def test_a_plain_disconnect_is_reconnected():
    node2 = healthy("node2", False)
    node2.drbd = {
        **CONNECTED,
        layout.LUN.minor: DrbdState("StandAlone", "Secondary/Unknown", "UpToDate/DUnknown", 0),
    }
    [change] = diff(PLAN, DESIRED, {"node1": healthy("node1", True), "node2": node2})[0]
    assert of(change, DrbdConnect) == [DrbdConnect("node2", (layout.LUN.name,))]


def test_a_resolved_split_brain_only_loses_its_marker():
    node2 = healthy("node2", False)
    node2.split_brain = {layout.LUN.name}
    [change] = diff(PLAN, DESIRED, {"node1": healthy("node1", True), "node2": node2})[0]
    assert change.operations == (ForgetSplitBrain("node2", (layout.LUN.name,)),)


def test_secret_files_show_redacted():
    changes, _ = diff(PLAN, DESIRED, {node: fresh() for node in NODES})
    sensitive = [attr for attr in changes[0].attrs if attr.sensitive]
    assert {attr.name for attr in sensitive} == {
        "/etc/drbd.d/iscsi.config.res",
        "/etc/drbd.d/iscsi.target.0.res",
        "/etc/ha.d/authkeys",
    }


def test_only_heartbeat_files_restart_heartbeat():
    node1 = healthy("node1", True)
    node1.files["/etc/ha.d/ha.cf"] = ("0" * 64, 0o644)
    [files, services] = diff(PLAN, DESIRED, {"node1": node1, "node2": healthy("node2", False)})[0]
    assert [op.path for op in of(files, WriteFile)] == ["/etc/ha.d/ha.cf"]
    assert services.operations == (RestartService("node1", "heartbeat"), WaitServing())

    node1 = healthy("node1", True)
    node1.files["/etc/hosts"] = ("0" * 64, 0o644)
    node1.files.pop("/etc/ha.d/resource.d/vsa-target")
    [files] = diff(PLAN, DESIRED, {"node1": node1, "node2": healthy("node2", False)})[0]
    assert [op.path for op in of(files, WriteFile)] == ["/etc/hosts", "/etc/ha.d/resource.d/vsa-target"]


def test_a_lost_secret_is_adopted_from_the_nodes_unless_they_disagree():
    node1, node2 = healthy("node1", True), healthy("node2", False)
    node1.secrets = {"drbd": "same", "heartbeat": "secret-A", "chap": "only-on-active"}
    node2.secrets = {"drbd": "same", "heartbeat": "secret-B"}
    deployed, problems = deployed_secrets(PLAN, {"node1": node1, "node2": node2}, ["drbd", "chap"])
    assert deployed == {"drbd": "same", "chap": "only-on-active"} and problems == []
    deployed, problems = deployed_secrets(PLAN, {"node1": node1, "node2": node2}, ["heartbeat"])
    assert deployed == {}
    [problem] = problems
    assert problem.resource == "secret heartbeat" and "restore secrets/heartbeat" in problem.message
    assert "secret-A" not in problem.message and "secret-B" not in problem.message


def test_a_lost_secret_held_but_unreadable_is_never_replaced():
    node1, node2 = healthy("node1", True), healthy("node2", False)
    node1.secrets = {"heartbeat": "secret-A"}  # node2's authkeys exists, but nothing was read from it
    deployed, problems = deployed_secrets(PLAN, {"node1": node1, "node2": node2}, ["heartbeat", "chap"])
    assert deployed == {}
    assert [problem.resource for problem in problems] == ["secret heartbeat", "secret chap"]
    assert "(node2)" in problems[0].message and "(node1)" in problems[1].message


def test_two_fresh_nodes_get_their_files_then_first_creation_then_services_in_order():
    changes, _ = diff(PLAN, DESIRED, {node: fresh() for node in NODES})
    files = changes[0]
    assert kinds(files) == [WriteFile] * len(managed_paths(PLAN)) + [AllowDopd]
    assert [op.path for op in of(files, WriteFile)] == managed_paths(PLAN)
    devices = of(files, WriteFile)[0].devices
    assert devices == tuple(NodeDevices(node, DISKS[0].path, DISKS[1].path, DISKS[2].path) for node in NODES)
    assert kinds(changes[3]) == [EnableService, EnableService, StartService]
    assert [op.unit for op in changes[3].operations] == ["drbd", "heartbeat", "heartbeat"]
    assert changes[4].operations == (
        EnableService("node2", "drbd"),
        EnableService("node2", "heartbeat"),
        StartService("node2", "heartbeat"),
        WaitServing(),  # once, after the last node's heartbeat starts
    )


def test_file_operations_carry_no_content_only_its_sha256():
    changes, _ = diff(PLAN, DESIRED, {node: fresh() for node in NODES})
    text = json.dumps([change.as_json() for change in changes])
    for secret in ("d" * 16, "h" * 16, "c" * 16):
        assert secret not in text
    authkeys = next(op for op in of(changes[0], WriteFile) if op.path == "/etc/ha.d/authkeys")
    assert authkeys.content_sha256 == sha256(DESIRED["node1"].files["/etc/ha.d/authkeys"].content)
    assert authkeys.sensitive and authkeys.mode == 0o600


def test_a_stale_target_definition_is_rewritten_and_the_target_restarted():
    node1 = healthy("node1", True)
    node1.target_definition = "0" * 64
    [services] = diff(PLAN, DESIRED, {"node1": node1, "node2": healthy("node2", False)})[0]
    assert services.resource == "node node1 services"
    assert services.operations == (
        WriteTargetDefinition("node1", sha256(DESIRED["node1"].target_definition)),
        StartTarget("node1"),
    )


def test_a_node_without_its_data_disks_is_a_problem():
    node2 = fresh()
    node2.disks = node2.disks[:2]
    [problem] = disk_problems({"node1": fresh(), "node2": node2})
    assert problem.resource == "node node2" and "found 2 data disk(s)" in problem.message
    assert disk_problems({node: fresh() for node in NODES}) == []


def test_managed_paths_are_the_rendered_files_without_rendering():
    assert managed_paths(PLAN) == list(DESIRED["node1"].files)


def every_operation() -> list:
    changes, _ = diff(PLAN, DESIRED, {node: fresh() for node in NODES})
    node2 = healthy("node2", False)
    node2.metadata, node2.drbd, node2.split_brain = {}, {}, {layout.LUN.name}
    node1 = healthy("node1", True)
    node1.target_definition = None
    node1.files["/etc/drbd.d/iscsi.config.res"] = ("0" * 64, 0o600)
    node1.files["/etc/ha.d/ha.cf"] = ("0" * 64, 0o644)
    more, _ = diff(PLAN, DESIRED, {"node1": node1, "node2": node2})
    return [op for change in changes + more for op in change.operations] + [
        DrbdConnect("node1", (layout.LUN.name,)),
        ForgetSplitBrain("node1", (layout.LUN.name,)),
    ]


def test_every_operation_round_trips_through_json():
    operations = every_operation()
    assert {type(op).__name__ for op in operations} >= {
        "WriteFile",
        "AllowDopd",
        "ForgetSplitBrain",
        "CreateDrbdMetadata",
        "DrbdUp",
        "DrbdAdjust",
        "DrbdConnect",
        "InitializeDrbd",
        "EnableService",
        "StartService",
        "RestartService",
        "WriteTargetDefinition",
        "StartTarget",
        "WaitServing",
    }
    for operation in operations:
        assert operation_from_json(json.loads(json.dumps(operation.as_json()))) == operation
        assert operation.describe()
    assert CreateDrbdMetadata.destructive and InitializeDrbd.destructive and not WriteFile.destructive
