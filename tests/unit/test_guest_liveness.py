"""A powered-on storage VM whose guest does not answer: reset only while the peer
serves (orchestrator/stages/vms/guest_liveness.py). The decision and the diff are
pure; observe() is driven with a fake probe, clock and sleep (no network)."""

from dataclasses import replace

import pytest
from rich.console import Console

from orchestrator.changes import render_text
from orchestrator.plan import load_plan
from orchestrator.progress import Reporter
from orchestrator.stages.vms import guest_liveness
from orchestrator.stages.vms.facts import NodeVmFacts, Placement, VmsFacts
from orchestrator.stages.vms.guest_liveness import Silence, decide, serving_gap
from orchestrator.stages.vms.operations import ResetVm
from orchestrator.status.model import DrbdView, NodeView
from orchestrator.vsphere.vm_facts import MARKER_PLAN, VmFact
from tests.unit.conftest import EXAMPLE_PLAN

PLAN = load_plan(EXAMPLE_PLAN)  # reset_after_s unset: 120
THRESHOLD = PLAN.reset_after_s


def serving(node: str = "node2") -> NodeView:
    """A peer that serves the LUN UpToDate: VIP, both resources Primary/UpToDate, target running."""
    drbd = [
        DrbdView(name, minor, True, "WFConnection", "Primary", "Unknown", "UpToDate", "DUnknown")
        for minor, name in enumerate(("iscsi.config", "iscsi.target.0"))
    ]
    return NodeView(
        node=node,
        vm=f"vsa-{node}",
        esxi="esx2.demo.local",
        address="10.11.55.56",
        vm_found=True,
        power="poweredOn",
        reachable=True,
        drbd=drbd,
        heartbeat_running=True,
        holds_vip=True,
        config_mounted=True,
        target_running=True,
    )


def silence(peer: NodeView, seconds: float = 131.7) -> Silence:
    return Silence(node="node1", vm="vsa-node1", vm_id="vm-1", silent_s=seconds, peer=peer)


def test_a_serving_peer_has_no_gap():
    assert serving_gap(serving()) is None


@pytest.mark.parametrize(
    ("change", "gap"),
    [
        (
            {"reachable": False, "error": "node2 (10.11.55.56): cannot open SSH"},
            "node2 could not be read either",
        ),
        ({"holds_vip": False}, "node2 does not hold the VIP"),
        ({"target_running": False}, "node2's iSCSI target is not running"),
        ({"drbd": []}, "node2 shows no DRBD resource"),
    ],
)
def test_a_peer_that_does_not_serve_is_named(change, gap):
    assert serving_gap(replace(serving(), **change)).startswith(gap)


@pytest.mark.parametrize(
    ("role", "disk", "shown"),
    [("Secondary", "UpToDate", "Secondary/UpToDate"), ("Primary", "Inconsistent", "Primary/Inconsistent")],
)
def test_a_peer_not_primary_uptodate_on_every_resource_does_not_serve(role, disk, shown):
    peer = serving()
    peer.drbd[1] = replace(peer.drbd[1], role=role, disk=disk)
    assert serving_gap(peer) == f"node2's DRBD iscsi.target.0 is {shown}, not Primary/UpToDate"
    peer.drbd[1] = replace(peer.drbd[1], configured=False)
    assert serving_gap(peer) == "node2's DRBD iscsi.target.0 is down"


def test_decide_resets_only_after_the_threshold_and_only_while_the_peer_serves():
    assert decide(silence(serving(), THRESHOLD - 0.5), THRESHOLD) is None
    verdict = decide(silence(serving()), THRESHOLD)
    assert (verdict.action, verdict.reason) == ("reset", "guest not answering for 131 s; node2 serves")
    refused = decide(silence(replace(serving(), holds_vip=False)), THRESHOLD)
    assert refused.action == "refuse"
    assert "has not answered SSH for 131 s and it is not reset: node2 does not hold the VIP" in refused.reason
    assert "only good copy" in refused.reason and "\n" not in refused.reason


def test_diff_shows_the_reset_and_carries_what_the_executor_needs():
    changes, problems = guest_liveness.diff(PLAN, [silence(serving())])
    assert problems == []
    [change] = changes
    assert (change.stage, change.action, change.resource, [type(op) for op in change.operations]) == (
        "vms",
        "update",
        "vm vsa-node1",
        [ResetVm],
    )
    assert change.operations == (ResetVm(node="node1", name="vsa-node1", vm="vm-1", peer="node2"),)
    console = Console(record=True, width=200)
    render_text(console, changes)
    text = console.export_text()
    assert "~ vm vsa-node1" in text
    assert "power: poweredOn -> reset (guest not answering for 131 s; node2 serves)" in text


def test_diff_refuses_with_one_problem_when_the_peer_does_not_serve():
    peer = replace(serving(), reachable=False, error="node2 (10.11.55.56): cannot open SSH (timed out)")
    changes, problems = guest_liveness.diff(PLAN, [silence(peer)])
    assert changes == []
    [problem] = problems
    assert problem.resource == "vm vsa-node1" and "node2 could not be read either" in problem.message


# ---------------------------------------------------------------- observe, without a network


def vm(node: str, power: str = "poweredOn") -> VmFact:
    return VmFact(
        id=f"vm-{node}",
        name=PLAN.vm_name(node),
        template=False,
        host_id="host-1",
        pool_id="pool-1",
        power=power,
        tools_running=False,
        cpus=1,
        memory_mb=1024,
        annotation="",
        extra={MARKER_PLAN: PLAN.name},
    )


def facts(**power: str) -> VmsFacts:
    placement = Placement("host-1", "cr-1", "pool-1", "ds-1", True, {})
    nodes = [
        NodeVmFacts(node, placement, vm(node.node, power.get(node.node, "poweredOn")))
        for node in PLAN.storage_nodes
    ]
    return VmsFacts(nodes=nodes, folder_exists=True, template=None, orphans=[])


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def peers_read(monkeypatch):
    """observe_nodes stubbed: every peer read serves; the views asked for are recorded."""
    asked = []

    def fake(plan, views, keys):
        for view in views:
            asked.append(view.node)
            served = serving(view.node)
            for name in ("reachable", "drbd", "holds_vip", "target_running"):
                setattr(view, name, getattr(served, name))

    monkeypatch.setattr(guest_liveness, "observe_nodes", fake)
    return asked


def observe(state: dict, answers, fake: FakeTime, vms: VmsFacts | None = None):
    return guest_liveness.observe(
        PLAN, vms or facts(), {}, state, Reporter(None), answers=answers, clock=fake.clock, sleep=fake.sleep
    )


def test_answering_guests_cost_one_probe_each_and_read_no_peer(peers_read):
    probes = []
    assert observe({}, lambda address: probes.append(address) or True, FakeTime()) == []
    assert probes == ["10.11.55.55", "10.11.55.56"] and peers_read == []


def test_a_vm_that_is_off_is_not_probed(peers_read):
    probes = []
    assert (
        observe(
            {},
            lambda address: probes.append(address) or False,
            FakeTime(),
            facts(node1="poweredOff", node2="poweredOff"),
        )
        == []
    )
    assert probes == []


def test_a_guest_that_answers_within_the_window_is_left_alone(peers_read):
    fake = FakeTime()
    state: dict = {}
    assert observe(state, lambda address: address != "10.11.55.55" or fake.now >= 1030, fake) == []
    assert state == {} and peers_read == []


def test_a_silent_guest_is_waited_for_then_its_peer_is_read(peers_read):
    fake, state = FakeTime(), {}
    [found] = observe(state, lambda address: address != "10.11.55.55", fake)
    assert (found.node, found.vm_id, found.peer.node) == ("node1", "vm-node1", "node2")
    assert found.silent_s == THRESHOLD and fake.now == 1000 + THRESHOLD
    assert state == {"node1": 1000.0} and peers_read == ["node2"]
    # The same run observing again (the apply's re-plan) probes once and does not wait again.
    probes = []
    [again] = observe(state, lambda address: probes.append(address) or address != "10.11.55.55", fake)
    assert again.silent_s == THRESHOLD and fake.now == 1000 + THRESHOLD
    assert probes.count("10.11.55.55") == 1
