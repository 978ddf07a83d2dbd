"""The guest half of `status` on outputs captured from lab VMs (tests/unit/fixtures):
facts -> NodeView (nodes.apply_facts) -> findings (health). No VM needed."""

import subprocess
from pathlib import Path

from orchestrator.guest.facts import ServicesFact, SplitBrainMarkers, split
from orchestrator.guest.managers.heartbeat import HEARTBEAT
from orchestrator.plan import load_plan
from orchestrator.status import health
from orchestrator.status.command import expected_of
from orchestrator.status.model import ClusterView, DatastoreView, HostView, NodeView, PathView, WitnessView
from orchestrator.status.node_facts import DrbdStatus, HeartbeatResources, LioTargets
from orchestrator.status.nodes import apply_facts, facts_for, read_command
from tests.unit.conftest import EXAMPLE_PLAN

FIXTURES = Path(__file__).with_name("fixtures")
PLAN = load_plan(EXAMPLE_PLAN)
EXPECTED = expected_of(PLAN)
NAA = EXPECTED.naa


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def node(name: str, drbd: str, services: str, rscstatus: str, lio: str = "") -> NodeView:
    view = NodeView(
        node=name, vm=f"vsa-{name}", esxi="esx", address="10.11.55.55", vm_found=True, power="poweredOn"
    )
    apply_facts(
        view,
        {
            "drbd": DrbdStatus().process(fixture(drbd)),
            "services": ServicesFact(EXPECTED.vip).process(fixture(services)),
            "heartbeat": HeartbeatResources().process(fixture(rscstatus)),
            "lio": LioTargets().process(fixture(lio) if lio else ""),
        },
        HEARTBEAT,
    )
    return view


def active() -> NodeView:
    return node(
        "node1",
        "proc_drbd_primary.txt",
        "services_active.txt",
        "heartbeat_rscstatus_active.txt",
        "lio_configfs_active.txt",
    )


def standby() -> NodeView:
    return node("node2", "proc_drbd_secondary.txt", "services_standby.txt", "heartbeat_rscstatus_standby.txt")


def host(name: str = "esx1.demo.local", **changes) -> HostView:
    values = dict(
        host=name,
        found=True,
        connection="connected",
        adapter="vmhba65",
        adapter_enabled=True,
        send_target=True,
        lun=NAA,
        paths=[PathView("vmhba65:C0:T0:L0", "active", True)],
        datastore_mounted=True,
        datastore_accessible=True,
    )
    values.update(changes)
    return HostView(**values)


DATASTORE = DatastoreView("vsa-ds0", True, NAA)
CLUSTER = ClusterView("vsa-cluster", True, exists=True, ha_enabled=True, host_monitoring="enabled")


def findings(nodes: list[NodeView], hosts: list[HostView] | None = None) -> list[str]:
    return health.findings(nodes, hosts or [host()], DATASTORE, CLUSTER, EXPECTED, ha_wanted=True)


def test_the_lab_pair_as_captured_is_healthy():
    nodes = [active(), standby()]
    assert findings(nodes) == []
    assert health.active_node(nodes) == "node1"
    first = nodes[0]
    assert [(d.resource, d.role, d.disk, d.peer_disk) for d in first.drbd] == [
        ("iscsi.config", "Primary", "UpToDate", "UpToDate"),
        ("iscsi.target.0", "Primary", "UpToDate", "UpToDate"),
    ]
    assert first.heartbeat_resources == "all" and nodes[1].heartbeat_resources == "none"
    [target] = first.targets
    assert (target.iqn, target.serial, target.naa, target.chap) == (PLAN.iqn, EXPECTED.serial, NAA, True)


def test_peer_down_names_the_node_and_the_resources():
    survivor = node(
        "node1",
        "proc_drbd_peer_down.txt",
        "services_active.txt",
        "heartbeat_rscstatus_active.txt",
        "lio_configfs_active.txt",
    )
    gone = NodeView(node="node2", vm="vsa-node2", esxi="esx2", address="10.11.55.56", vm_found=True)
    gone.power = "poweredOff"
    gone.error = "not read: the VM is poweredOff"
    found = findings([survivor, gone])
    assert found == [
        "node node1: DRBD iscsi.config is WFConnection, disks UpToDate/DUnknown, 112 KiB out of sync",
        "node node1: DRBD iscsi.target.0 is WFConnection, disks UpToDate/Outdated, 4096 KiB out of sync",
        "node node2: VM vsa-node2 is poweredOff",
    ]


def test_resync_shows_its_progress():
    syncing = node(
        "node1",
        "proc_drbd_resync.txt",
        "services_active.txt",
        "heartbeat_rscstatus_active.txt",
        "lio_configfs_active.txt",
    )
    assert findings([syncing, standby()]) == [
        "node node1: DRBD iscsi.target.0 is SyncSource, disks UpToDate/Inconsistent, "
        "resync 18.8% done, finish 0:02:51"
    ]


def test_unreachable_node_and_nobody_serving():
    lost = NodeView(node="node1", vm="vsa-node1", esxi="esx1", address="10.11.55.55", vm_found=True)
    lost.power, lost.error = "poweredOn", "node1 (10.11.55.55): cannot open SSH (timed out)"
    found = findings([lost, standby()])
    assert found == [
        "node node1: unreachable (node1 (10.11.55.55): cannot open SSH (timed out))",
        "no reachable storage node holds the VIP 10.11.55.50: the LUN is not served",
    ]


def test_a_changed_serial_is_called_out():
    changed = active()
    changed.targets[0].serial = "0" * 32
    changed.targets[0].naa = "naa.6001405" + "0" * 25
    [line] = findings([changed, standby()])
    assert line.startswith("node node1 (active): LUN serial 000")
    assert "ESXi would see a different disk" in line


def test_the_vip_on_both_nodes_is_a_finding():
    both = standby()
    both.holds_vip = True
    assert findings([active(), both]) == [
        "the VIP 10.11.55.50 is up on several nodes (node1, node2): split brain risk"
    ]


def test_heartbeat_stopped_and_target_not_running():
    first = active()
    first.target_running = False
    second = standby()
    second.manager_running = False
    assert findings([first, second]) == [
        "node node2: heartbeat is not running",
        "node node1 (active): the iSCSI target is not running as defined",
    ]


def test_host_findings_name_the_host():
    hosts = [
        host(),
        host("esx2.demo.local", datastore_mounted=False, datastore_accessible=False),
        host("esx3.demo.local", paths=[PathView("vmhba65:C0:T0:L0", "dead", False)]),
        host("esx4.demo.local", lun="naa.6001405aaaaaaaaaaaaaaaaaaaaaaaaa"),
        host("esx5.demo.local", found=False),
    ]
    assert findings([active(), standby()], hosts) == [
        "host esx2.demo.local: datastore vsa-ds0 not mounted",
        "host esx3.demo.local: no active path to " + NAA + " (vmhba65:C0:T0:L0 dead)",
        "host esx4.demo.local: sees our LUN as naa.6001405aaaaaaaaaaaaaaaaaaaaaaaaa, the target presents "
        + NAA,
        "host esx5.demo.local: not found in the datacenter",
    ]


def test_primary_on_both_nodes_is_a_finding():
    other = node(
        "node2",
        "proc_drbd_peer_down.txt",
        "services_standby.txt",
        "heartbeat_rscstatus_standby.txt",
    )
    found = findings([active(), other])
    assert "DRBD iscsi.config is Primary on node1 and node2: split brain risk" in found
    assert "DRBD iscsi.target.0 is Primary on node1 and node2: split brain risk" in found


def test_the_read_command_runs_and_yields_every_section():
    """Run here (not a storage node): every fact's section is present and parses."""
    facts = facts_for(PLAN)
    result = subprocess.run(["sh", "-c", read_command(facts)], capture_output=True, text=True)
    sections = split(result.stdout)
    assert sorted(sections) == sorted(facts)
    assert HeartbeatResources().process(sections["heartbeat"]) in (None, "all", "local", "foreign", "none")


def test_heartbeat_disagreeing_with_the_vip_and_a_transition():
    by_hand = active()
    by_hand.heartbeat_resources = "none"
    moving = standby()
    moving.heartbeat_resources = "transition"
    assert findings([by_hand, moving]) == [
        "node node2: heartbeat is moving the resources (transition)",
        "node node1 (active): holds the VIP but heartbeat says it holds no resources (VIP set by hand?)",
    ]


def test_a_split_brain_marker_is_reported_until_the_resource_replicates_again():
    survivor = active()
    survivor.drbd[1].split_brain = True
    assert findings([survivor, standby()]) == []  # resolved by hand: Connected again
    survivor.drbd[1].connection = "StandAlone"
    survivor.drbd[1].peer_disk = "DUnknown"
    assert (
        "node node1: DRBD iscsi.target.0: split brain; resolve it by hand (the plan run says how)"
        in findings([survivor, standby()])
    )
    markers = SplitBrainMarkers().process("split-brain-iscsi.target.0\nunrelated\n")
    assert markers == {"iscsi.target.0"}


def witness(**seen: bool) -> WitnessView:
    view = WitnessView(node="witness", vm="vsa-witness", esxi="esx3", address="10.11.55.57")
    view.vm_found, view.power, view.reachable = True, "poweredOn", True
    for name, value in seen.items():
        setattr(view, name, value)
    return view


def test_a_witness_voting_and_holding_the_cib_is_no_finding():
    assert health.witness_findings(witness(corosync_running=True, pacemaker_running=True)) == []


def test_a_witness_without_corosync_or_pacemaker_is_a_finding_naming_what_to_do():
    [no_vote] = health.witness_findings(witness(corosync_running=False, pacemaker_running=False))
    assert "corosync is not running" in no_vote and "no vote to spare" in no_vote
    [no_cib] = health.witness_findings(witness(corosync_running=True, pacemaker_running=False))
    assert "pacemaker is not running" in no_cib and "rerun the plan" in no_cib
