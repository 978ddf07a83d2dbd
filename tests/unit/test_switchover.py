"""`switchover`'s decision, pure, on status views parsed from output captured on lab nodes."""

from dataclasses import replace

import pytest

from orchestrator.guest.facts import ServicesFact
from orchestrator.guest.managers.pacemaker import PACEMAKER
from orchestrator.plan import load_plan
from orchestrator.status.model import NodeView, SiteStatus
from orchestrator.status.node_facts import DrbdStatus
from orchestrator.status.nodes import apply_facts
from orchestrator.switchover import refusal
from tests.unit.test_pacemaker import with_ha
from tests.unit.test_status_health import EXPECTED, fixture
from tests.unit.test_status_render import CLUSTER, DATASTORE


def pacemaker_node(name: str, drbd: str, holds_vip: bool) -> NodeView:
    view = NodeView(node=name, vm=f"vsa-{name}", esxi="esx", address="10.11.55.55", vm_found=True)
    services = ServicesFact(EXPECTED.vip).process(fixture("services_pacemaker_active.txt"))
    apply_facts(
        view, {"drbd": DrbdStatus().process(fixture(drbd)), "services": services, "lio": []}, PACEMAKER
    )
    view.holds_vip = holds_vip
    return view


def site(*nodes: NodeView) -> SiteStatus:
    holders = [node.node for node in nodes if node.holds_vip]
    return SiteStatus(
        plan="vsa",
        expected=EXPECTED,
        nodes=list(nodes),
        active_node=holders[0] if len(holders) == 1 else None,
        hosts=[],
        datastore=DATASTORE,
        cluster=CLUSTER,
    )


@pytest.fixture
def plan(plan_text, write_plan):
    return load_plan(write_plan(with_ha(plan_text, '[ha]\nmanager = "pacemaker"\ntwo_node = true\n')))


ACTIVE = ("node1", "proc_drbd_primary.txt", True)
STANDBY = ("node2", "proc_drbd_secondary.txt", False)


def test_a_healthy_pair_moves_to_the_other_node(plan):
    status = site(pacemaker_node(*ACTIVE), pacemaker_node(*STANDBY))
    assert refusal(plan, status, None) == ("node1", "node2")
    assert refusal(plan, status, "node2") == ("node1", "node2")


def test_moving_to_the_serving_node_or_an_unknown_one_is_refused(plan):
    status = site(pacemaker_node(*ACTIVE), pacemaker_node(*STANDBY))
    assert "serves the LUN already" in refusal(plan, status, "node1")
    assert "not a storage node" in refusal(plan, status, "node9")


def test_a_target_that_is_not_up_to_date_is_refused_naming_its_state(plan):
    behind = pacemaker_node("node2", "proc_drbd_resync.txt", False)
    why = refusal(plan, site(pacemaker_node(*ACTIVE), behind), None)
    assert isinstance(why, str) and why.startswith("node2 has DRBD") and "stays on node1" in why


def test_no_quorum_or_an_unreachable_node_is_refused(plan):
    alone = replace(pacemaker_node(*STANDBY), quorate=False)
    assert "quorate Pacemaker" in refusal(plan, site(pacemaker_node(*ACTIVE), alone), None)
    gone = NodeView(node="node2", vm="vsa-node2", esxi="esx", address="x", error="timed out")
    assert "unreachable (timed out)" in refusal(plan, site(pacemaker_node(*ACTIVE), gone), None)


def test_nobody_serving_and_heartbeat_are_refused(plan, plan_text, write_plan):
    assert "no single node serves" in refusal(plan, site(pacemaker_node(*STANDBY)), None)
    heartbeat = load_plan(write_plan(plan_text, name="hb.toml"))
    assert "hb_standby" in refusal(heartbeat, site(pacemaker_node(*ACTIVE)), None)
