"""The guest diff's safety interlocks, on node facts shaped like the lab's
(tests/unit/fixtures), without a VM: what may be created, what is refused."""

from dataclasses import replace

from orchestrator.guest import layout
from orchestrator.guest.facts import Disk, DrbdState, NodeFacts, Services
from orchestrator.guest.render import Secrets
from orchestrator.plan import load_plan
from orchestrator.stages.guest.diff import diff, sha256
from orchestrator.stages.guest.stage import deployed_secrets, desired_state
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
STOPPED = Services(False, False, False, False, False, False, False)
RUNNING = Services(True, True, True, False, False, False, True)
CONNECTED = {
    r.minor: DrbdState("Connected", "Secondary/Secondary", "UpToDate/UpToDate", 0) for r in layout.RESOURCES
}


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
    assert changes[2].steps == ["create_md", "up", "skip_sync", "config_fs"]


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
    assert change.steps == ["up"]
    assert change.params["create_md"] == []
    assert all(change.resource != "drbd" for change in changes)


def test_a_replaced_node_with_empty_disks_gets_metadata_and_a_full_resync():
    node2 = healthy("node2", False)
    node2.metadata = {}
    node2.drbd = {}
    changes, problems = diff(PLAN, DESIRED, {"node1": healthy("node1", True), "node2": node2})
    assert problems == []
    assert changes[0].params["create_md"] == [r.name for r in layout.RESOURCES]
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


def test_a_plain_disconnect_is_reconnected():
    node2 = healthy("node2", False)
    node2.drbd = {
        **CONNECTED,
        layout.LUN.minor: DrbdState("StandAlone", "Secondary/Unknown", "UpToDate/DUnknown", 0),
    }
    [change] = diff(PLAN, DESIRED, {"node1": healthy("node1", True), "node2": node2})[0]
    assert change.params["connect"] == [layout.LUN.name]


def test_a_resolved_split_brain_only_loses_its_marker():
    node2 = healthy("node2", False)
    node2.split_brain = {layout.LUN.name}
    [change] = diff(PLAN, DESIRED, {"node1": healthy("node1", True), "node2": node2})[0]
    assert change.steps == ["forget_split_brain"]
    assert change.params["resolved_split_brain"] == [layout.LUN.name]


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
    assert files.params["write"] == ["/etc/ha.d/ha.cf"]
    assert services.steps == ["restart"]

    node1 = healthy("node1", True)
    node1.files["/etc/hosts"] = ("0" * 64, 0o644)
    node1.files.pop("/etc/ha.d/resource.d/vsa-target")
    [files] = diff(PLAN, DESIRED, {"node1": node1, "node2": healthy("node2", False)})[0]
    assert files.params["write"] == ["/etc/hosts", "/etc/ha.d/resource.d/vsa-target"]


def test_a_lost_secret_is_adopted_from_the_nodes_unless_they_disagree():
    node1, node2 = healthy("node1", True), healthy("node2", False)
    node1.secrets = {"drbd": "same", "heartbeat": "secret-A", "chap": "only-on-active"}
    node2.secrets = {"drbd": "same", "heartbeat": "secret-B"}
    deployed, problems = deployed_secrets({"node1": node1, "node2": node2}, ["drbd", "chap"])
    assert deployed == {"drbd": "same", "chap": "only-on-active"} and problems == []
    deployed, problems = deployed_secrets({"node1": node1, "node2": node2}, ["heartbeat"])
    assert deployed == {}
    [problem] = problems
    assert problem.resource == "secret heartbeat" and "restore secrets/heartbeat" in problem.message
    assert "secret-A" not in problem.message and "secret-B" not in problem.message


def test_a_lost_secret_held_but_unreadable_is_never_replaced():
    node1, node2 = healthy("node1", True), healthy("node2", False)
    node1.secrets = {"heartbeat": "secret-A"}  # node2's authkeys exists, but nothing was read from it
    deployed, problems = deployed_secrets({"node1": node1, "node2": node2}, ["heartbeat", "chap"])
    assert deployed == {}
    assert [problem.resource for problem in problems] == ["secret heartbeat", "secret chap"]
    assert "(node2)" in problems[0].message and "(node1)" in problems[1].message
